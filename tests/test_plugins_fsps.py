"""FSPS library writer: files read back with an independent reader following FSPS's documented layout."""
import json

import numpy as np
import pytest

from smnet_sps.plugins import fsps_backend as fb
from smnet_sps.constants import C_ANGSTROM
from smnet_sps.generator import BlackbodyGenerator, ParameterBox


class BoxedBlackbody(BlackbodyGenerator):
    def __init__(self):
        super().__init__()
        self.box = ParameterBox((3000.0, 30000.0), (0.0, 5.0), (-2.0, 0.3))
        self.library_boxes = {}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    home = tmp_path_factory.mktemp("sps_home")
    gen = BoxedBlackbody()
    return gen, home, fb.write_fsps_library(home, gen, logzsol=[-1.0, 0.0, 0.5])


def test_files_and_text_formats(written):
    gen, home, res = written
    d = home / "SPECTRA" / "C3K"
    assert np.allclose(np.loadtxt(d / "c3k_lr.lambda"), gen.wavelength, rtol=1e-9)
    assert np.loadtxt(d / "c3k_lr.res").shape == gen.wavelength.shape
    tags = (d / "zlegend.dat").read_text().split()
    assert tags == ["0.0013", "0.0134", "0.0424"]                  # F6.4, as FSPS writes/reads file names
    assert all((d / f"c3k_lr_z{t}.spectra.bin").is_file() for t in tags)
    logt = np.loadtxt(d / "logt.dat")
    assert logt.shape == (80, 2) and np.allclose(10 ** logt[:, 0], logt[:, 1], rtol=1e-3)
    assert np.allclose(np.loadtxt(d / "logg.dat"), np.arange(-1, 5.51, 0.5))
    meta = json.loads((d / "c3k_lr_smnet_provenance.json").read_text())
    assert meta["n_logt"] == 80 and meta["n_logg"] == 14 and meta["n_z"] == 3
    # the spectra sit at the [M/H] of the rounded Z FSPS will read
    assert np.allclose(res["logzsol"], np.log10(np.array([0.0013, 0.0134, 0.0424]) / 0.0134))


def test_binary_layout_against_generator(written):
    gen, home, res = written
    d = home / "SPECTRA" / "C3K"
    logt = np.loadtxt(d / "logt.dat")[:, 0]
    logg = np.loadtxt(d / "logg.dat")
    n_wave = np.loadtxt(d / "c3k_lr.lambda").size
    # independent reader: direct-access record = Fortran speclib(nspec, ndim_logt, ndim_logg), float32
    raw = np.fromfile(d / "c3k_lr_z0.0134.spectra.bin", dtype="<f4")
    assert raw.size == n_wave * logt.size * logg.size
    speclib = raw.reshape((n_wave, logt.size, logg.size), order="F")
    wave = gen.wavelength
    for jt, jg in [(30, 10), (5, 12), (60, 9), (40, 2), (79, 11), (0, 0)]:
        teff, g = 10 ** logt[jt], logg[jg]
        h_nu = speclib[:, jt, jg].astype(float)
        if gen.in_coverage(teff, g, res["logzsol"][1])[0]:
            f_lambda = h_nu * 4 * np.pi * C_ANGSTROM / wave ** 2
            expected = gen.surface_flux(teff, g, 0.0)[0][0]
            big = expected > expected.max() * 1e-6
            assert np.allclose(f_lambda[big], expected[big], rtol=1e-5), (teff, g)
        else:
            assert (h_nu == 0).all(), (teff, g)
    # coverage: Teff 3000-30000 K and log g 0-5 only
    teff_nodes = 10 ** logt
    covered = (speclib.max(axis=0) > 0)
    expected = ((teff_nodes[:, None] >= 3000) & (teff_nodes[:, None] <= 30000)
                & (logg[None, :] >= 0) & (logg[None, :] <= 5))
    assert np.array_equal(covered, expected)
    # the highest Z (log 0.0424/0.0134 = +0.50) lies outside the generator's [M/H] <= 0.3: all zeros
    assert not np.fromfile(d / "c3k_lr_z0.0424.spectra.bin", dtype="<f4").any()
    assert res["n_uncovered"] == 3 * 80 * 14 - 2 * expected.sum()
    assert np.array_equal(fb.read_spectra_bin(d / "c3k_lr_z0.0134.spectra.bin", n_wave=n_wave,
                                              n_logt=logt.size, n_logg=logg.size),
                          np.transpose(speclib, (2, 1, 0)))


def test_resampled_wavelength_and_errors(tmp_path):
    gen = BoxedBlackbody()
    wave = np.geomspace(1000, 20000, 500)
    res = fb.write_fsps_library(tmp_path, gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                                wavelength=wave, spec_type="c3k_smnet")
    spec = fb.read_spectra_bin(tmp_path / "SPECTRA/C3K/c3k_smnet_z0.0134.spectra.bin", n_wave=500, n_logt=2,
                              n_logg=2)
    f = fb.hnu_to_flambda(wave, spec[0, 1])
    exact = gen.surface_flux(10 ** 3.8, 4.0, 0.0)[0][0]
    assert np.allclose(f, np.interp(wave, gen.wavelength, exact), rtol=1e-5)
    assert res["wavelength"].size == 500
    with pytest.raises(FileExistsError):
        fb.write_fsps_library(tmp_path, gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=wave, spec_type="c3k_smnet")
    with pytest.raises(ValueError, match="c3k"):
        fb.write_fsps_library(tmp_path, gen, spec_type="miles")
    with pytest.raises(ValueError, match="increasing"):
        fb.write_fsps_library(tmp_path, gen, logt=[3.8, 3.7])
    with pytest.raises(ValueError, match="collide"):
        fb.write_fsps_library(tmp_path, gen, logzsol=[0.0, 0.001])
    with pytest.raises(ValueError, match="bytes"):
        fb.read_spectra_bin(tmp_path / "SPECTRA/C3K/c3k_smnet_z0.0134.spectra.bin", n_wave=501, n_logt=2,
                                n_logg=2)
    assert np.allclose(fb.read_fsps_nodes(tmp_path)[0], [3.7, 3.8])
    # microns for Angstrom: refused, not written as a library of zeros
    with pytest.raises(ValueError, match="microns"):
        fb.write_fsps_library(tmp_path / "um", gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=np.linspace(0.3, 1.0, 100))
    assert not (tmp_path / "um" / "SPECTRA").exists()
    lo = gen.wavelength[0]
    with pytest.warns(UserWarning, match="written as 0"):      # a grid reaching past the generator's
        fb.write_fsps_library(tmp_path / "wide", gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=np.geomspace(lo / 2, 20000, 300))


def test_edge_metallicity_survives_the_file_name_rounding(tmp_path, default_generator):
    # logzsol +0.5 is the shipped model's edge; FSPS's F6.4 name rounds Z to 0.0424, i.e. [M/H] +0.50026:
    # computed on the edge, not written as zeros (it was, silently)
    res = fb.write_fsps_library(tmp_path / "a", default_generator, logzsol=[0.0, 0.5])
    top = np.fromfile(res["directory"] / "c3k_lr_z0.0424.spectra.bin", dtype="<f4")
    assert top.any() and np.count_nonzero(top) > 0.3 * top.size
    # a metallicity beyond the coverage is written as zeros, with a warning that says so
    with pytest.warns(UserWarning, match=r"Z = 0\.1340 have less than half the covered nodes"):
        fb.write_fsps_library(tmp_path / "b", default_generator, logzsol=[0.0, 1.0])

