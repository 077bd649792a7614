"""FSPS library writer: files read back the way FSPS's Fortran opens them (sps_setup.f90 of 4.0 and 3.3),
by an independent reader, and compared with the generator."""
import json
import re
import warnings

import numpy as np
import pytest

from smnet_sps.constants import C_ANGSTROM
from smnet_sps.generator import BlackbodyGenerator, ParameterBox
from smnet_sps.plugins import fsps_backend as fb


class BoxedBlackbody(BlackbodyGenerator):
    def __init__(self):
        super().__init__()
        self.box = ParameterBox((3000.0, 30000.0), (0.0, 5.0), (-2.0, 0.3))
        self.library_boxes = {}


def fsps_v4_open(home, spec_type, nzinit):
    """What FSPS 4.0's sps_setup.f90 opens for a C3K library (lines 225-307): the subfolder's .lambda, .res,
    logt.dat / logg.dat, and for the first nzinit lines of <spec_type>_zlegend.dat (read '(A5)') the file
    <spec_type>_feh<A5>_afe+0.0.spec.bin; the [M/H] it uses is that tag read '(F4.2)'."""
    d = home / "SPECTRA" / "C3K" / spec_type
    wave = np.loadtxt(d / f"{spec_type}.lambda")
    res = np.loadtxt(d / f"{spec_type}.res")
    logt = np.loadtxt(d / "logt.dat")[:, 0]
    logg = np.loadtxt(d / "logg.dat")
    tags = [line[:5] for line in (d / f"{spec_type}_zlegend.dat").read_text().splitlines()[:nzinit]]
    cubes = [np.fromfile(d / f"{spec_type}_feh{t}_afe+0.0.spec.bin", dtype="<f4") for t in tags]
    for cube in cubes:                  # recl = nspec * ndim_logg * ndim_logt * 4 bytes, one record
        assert cube.size == wave.size * logt.size * logg.size
    speclib = [c.reshape((wave.size, logt.size, logg.size), order="F") for c in cubes]
    return wave, res, logt, logg, [float(t[:4]) for t in tags], speclib


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    home = tmp_path_factory.mktemp("sps_home")
    gen = BoxedBlackbody()
    with pytest.warns(UserWarning, match="stock FSPS v4 build of 'c3k_lr' will not read"):
        out = fb.write_fsps_library(home, gen, logzsol=[-1.0, 0.0, 0.5])
    return gen, home, out


def test_v4_layout_is_what_fsps_4_opens(written):
    """Until 2026-12-02 the writer put 4.0's nodes and name into 3.3's flat folder with Z file names: no
    FSPS release could read it."""
    gen, home, res = written
    wave, sigma, logt, logg, fsps_mh, speclib = fsps_v4_open(home, "c3k_lr", nzinit=3)
    assert np.allclose(wave, gen.wavelength, rtol=1e-9) and sigma.shape == wave.shape
    assert logt.size == 80 and logg.size == 14 and np.allclose(logg, np.arange(-1, 5.51, 0.5))
    d = home / "SPECTRA" / "C3K" / "c3k_lr"
    assert (d / "c3k_lr_zlegend.dat").read_text().split() == ["-1.00", "+0.00", "+0.50"]
    assert fsps_mh == [-1.0, 0.0, 0.5] and np.allclose(res["logzsol"], [-1.0, 0.0, 0.5])
    meta = json.loads((d / "c3k_lr_smnet_provenance.json").read_text())
    assert meta["n_logt"] == 80 and meta["n_logg"] == 14 and meta["n_z"] == 3 and meta["zsun"] == 0.0185
    assert not list((home / "SPECTRA" / "C3K").glob(".c3k_lr.partial*"))      # the staging folder is gone
    # nothing of the old flat layout
    assert not (home / "SPECTRA" / "C3K" / "zlegend.dat").exists()


def test_binary_layout_against_generator(written):
    gen, home, res = written
    wave, _, logt, logg, _, speclib = fsps_v4_open(home, "c3k_lr", nzinit=3)
    solar = speclib[1]
    for jt, jg in [(30, 10), (5, 12), (60, 9), (40, 2), (79, 11), (0, 0)]:
        teff, g = 10 ** logt[jt], logg[jg]
        h_nu = solar[:, jt, jg].astype(float)
        if gen.in_coverage(teff, g, 0.0)[0]:
            f_lambda = h_nu * 4 * np.pi * C_ANGSTROM / wave ** 2
            expected = gen.surface_flux(teff, g, 0.0)[0][0]
            big = expected > expected.max() * 1e-6
            assert np.allclose(f_lambda[big], expected[big], rtol=1e-5), (teff, g)
        else:
            assert (h_nu == 0).all(), (teff, g)
    # coverage: Teff 3000-30000 K and log g 0-5 only
    teff_nodes = 10 ** logt
    covered = solar.max(axis=0) > 0
    expected = ((teff_nodes[:, None] >= 3000) & (teff_nodes[:, None] <= 30000)
                & (logg[None, :] >= 0) & (logg[None, :] <= 5))
    assert np.array_equal(covered, expected)
    # [M/H] +0.5 lies outside the generator's [M/H] <= 0.3: all zeros
    assert not speclib[2].any()
    assert res["n_uncovered"] == 3 * 80 * 14 - 2 * expected.sum()
    path = home / "SPECTRA/C3K/c3k_lr/c3k_lr_feh+0.00_afe+0.0.spec.bin"
    assert np.array_equal(fb.read_spectra_bin(path, n_wave=wave.size, n_logt=logt.size, n_logg=logg.size),
                          np.transpose(solar, (2, 1, 0)))
    assert np.allclose(fb.read_fsps_nodes(home)[0], logt) and fb.read_fsps_nodes(home)[1].size == 14


def test_a_stock_grid_gives_no_warning_and_fsps_reads_the_quarter_dex_tags_as_it_does(tmp_path):
    """The stock C3K_LR grid (1,936 wavelengths, 80 x 14 nodes, 11+ metallicities) passes without a
    warning; FSPS reads '-0.75' with F4.2 as -0.7, for its own files as for these (provenance says so)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb._warn_if_not_stock("v4", "c3k_lr", 1936, 80, 14, 13)
        fb._warn_if_not_stock("v4", "c3k_mine", 1221, 2, 2, 1)          # not a stock name: no numbers
    gen = BoxedBlackbody()
    wave = np.geomspace(gen.wavelength[0], gen.wavelength[-1], 1936)
    with pytest.warns(UserWarning, match=r"logt nodes 2 \(the stock build reads 80\)"):
        fb.write_fsps_library(tmp_path / "small", gen, wavelength=wave, logt=fb.C3K_LOGT[40:42],
                              logg=fb.C3K_LOGG[9:11], logzsol=fb.C3K_LR_LOGZSOL[:11])
    prov = json.loads((tmp_path / "small/SPECTRA/C3K/c3k_lr/c3k_lr_smnet_provenance.json").read_text())
    assert prov["fsps_reads_logzsol"][7] == -0.7 and prov["logzsol_effective"][7] == -0.75


def test_v33_layout(tmp_path):
    """FSPS 3.3: flat SPECTRA/C3K, zlegend.dat of Z (F6.4), <spec_type>_z<Z>.spectra.bin, on BaSeL's nodes
    from SPECTRA/BaSeL3.1 (read from the installation, or written there when absent)."""
    gen = BoxedBlackbody()
    with pytest.raises(ValueError, match="BaSeL's nodes"):
        fb.write_fsps_library(tmp_path, gen, layout="v3.3")
    with pytest.warns(UserWarning, match="stock FSPS v3.3 build"):
        res = fb.write_fsps_library(tmp_path, gen, layout="v3.3", logt=[3.7, 3.8], logg=[4.0, 4.5],
                                    logzsol=[0.0, 0.2])
    d = tmp_path / "SPECTRA" / "C3K"
    assert (d / "zlegend.dat").read_text().split() == ["0.0134", "0.0212"]
    assert np.allclose(fb.read_fsps_nodes(tmp_path, layout="v3.3")[0], [3.7, 3.8])
    spec = fb.read_spectra_bin(d / "c3k_afe+0.0_z0.0134.spectra.bin", n_wave=gen.wavelength.size, n_logt=2,
                               n_logg=2)
    f = fb.hnu_to_flambda(gen.wavelength, spec[0, 1])
    assert np.allclose(f, gen.surface_flux(10 ** 3.8, 4.0, 0.0)[0][0], rtol=1e-5)
    assert np.allclose(res["logzsol"], np.log10(np.array([0.0134, 0.0212]) / 0.0134))
    # the installation's nodes are used, and other ones refused
    with pytest.warns(UserWarning):
        fb.write_fsps_library(tmp_path, gen, layout="v3.3", logzsol=[0.0, 0.2], overwrite=True)
    with pytest.raises(ValueError, match="holds 2 nodes other than"):
        fb.write_fsps_library(tmp_path, gen, layout="v3.3", logt=[3.7, 3.9], logg=[4.0, 4.5], overwrite=True)


def test_resampled_wavelength_and_errors(tmp_path):
    gen = BoxedBlackbody()
    wave = np.geomspace(1000, 20000, 500)
    res = fb.write_fsps_library(tmp_path, gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                                wavelength=wave, spec_type="c3k_smnet")
    spec = fb.read_spectra_bin(tmp_path / "SPECTRA/C3K/c3k_smnet/c3k_smnet_feh+0.00_afe+0.0.spec.bin",
                               n_wave=500, n_logt=2, n_logg=2)
    f = fb.hnu_to_flambda(wave, spec[0, 1])
    exact = gen.surface_flux(10 ** 3.8, 4.0, 0.0)[0][0]
    assert np.allclose(f, np.interp(wave, gen.wavelength, exact), rtol=1e-5)
    assert res["wavelength"].size == 500
    with pytest.raises(FileExistsError):
        fb.write_fsps_library(tmp_path, gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=wave, spec_type="c3k_smnet")
    with pytest.raises(ValueError, match="c3k"):
        fb.write_fsps_library(tmp_path, gen, spec_type="miles")
    with pytest.raises(ValueError, match="layout"):
        fb.write_fsps_library(tmp_path, gen, layout="3.2")
    with pytest.raises(ValueError, match="increasing"):
        fb.write_fsps_library(tmp_path, gen, logt=[3.8, 3.7])
    with pytest.raises(ValueError, match="collide"):
        fb.write_fsps_library(tmp_path, gen, logzsol=[0.0, 0.001])
    with pytest.raises(ValueError, match="bytes"):
        fb.read_spectra_bin(tmp_path / "SPECTRA/C3K/c3k_smnet/c3k_smnet_feh+0.00_afe+0.0.spec.bin",
                            n_wave=501, n_logt=2, n_logg=2)
    assert np.allclose(fb.read_fsps_nodes(tmp_path, "c3k_smnet")[0], [3.7, 3.8])
    with pytest.raises(FileNotFoundError, match="no FSPS node files"):
        fb.read_fsps_nodes(tmp_path / "nothing")
    # microns for Angstrom: refused, not written as a library of zeros
    with pytest.raises(ValueError, match="microns"):
        fb.write_fsps_library(tmp_path / "um", gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=np.linspace(0.3, 1.0, 100))
    assert not (tmp_path / "um" / "SPECTRA").exists()
    lo = gen.wavelength[0]
    with pytest.warns(UserWarning, match="written as 0"):      # a grid reaching past the generator's
        fb.write_fsps_library(tmp_path / "wide", gen, logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2],
                              wavelength=np.geomspace(lo / 2, 20000, 300))


def test_a_wavelength_quantity_or_table_column_is_written_in_angstrom(tmp_path):
    """write_fsps_library took np.asarray of ``wavelength``: a Quantity or a FITS table column in nm lost its
    unit, and 300-900 nm was written as a library at 300-900 A (inside the generator's range, so no
    'microns' error). Both are now converted to Angstrom; the library equals the one written in A."""
    from astropy import units as u
    from astropy.table import Table

    gen = BoxedBlackbody()
    wave = np.linspace(3000.0, 9000.0, 301)
    kw = dict(logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2], spec_type="c3k_smnet")
    ref = fb.write_fsps_library(tmp_path / "aa", gen, wavelength=wave, **kw)
    column = Table({"w": wave / 10}, units={"w": u.nm})["w"]
    for name, given in (("quantity", wave / 10 * u.nm), ("column", column)):
        got = fb.write_fsps_library(tmp_path / name, gen, wavelength=given, **kw)
        np.testing.assert_allclose(got["wavelength"], wave, rtol=1e-12)
        compared = 0
        for mine, theirs in zip(got["files"], ref["files"]):
            assert mine.name == theirs.name
            if mine.suffix in (".lambda", ".bin"):
                read = (lambda path: np.fromfile(path, "<f4")) if mine.suffix == ".bin" else np.loadtxt
                np.testing.assert_allclose(read(mine), read(theirs), rtol=1e-6, err_msg=mine.name)
                compared += 1
        assert compared >= 2                     # the .lambda file and the spectra


def test_h_nu_conversions_take_a_wavelength_quantity_in_its_unit():
    """flambda_to_hnu / hnu_to_flambda took np.asarray of the wavelength: 500 nm was 500 A and H_nu came out
    100x too small (the inverse 100x too large). A length Quantity is now converted to A."""
    from astropy import units as u
    wave = np.array([3000.0, 5000.0, 9000.0])
    f_lambda = np.array([1.0, 2.0, 3.0])
    h_nu = fb.flambda_to_hnu(wave, f_lambda)
    np.testing.assert_allclose(fb.flambda_to_hnu(wave / 10 * u.nm, f_lambda), h_nu, rtol=1e-12)
    np.testing.assert_allclose(fb.hnu_to_flambda(wave / 1e4 * u.um, h_nu), f_lambda, rtol=1e-12)


def test_an_interrupted_write_leaves_the_previous_library(tmp_path, monkeypatch):
    gen = BoxedBlackbody()
    kw = dict(logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2], spec_type="c3k_smnet")
    first = fb.write_fsps_library(tmp_path, gen, **kw)
    before = {p: p.read_bytes() for p in first["files"]}

    def fail(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(fb, "_write_spectra", fail)
    with pytest.raises(KeyboardInterrupt):
        fb.write_fsps_library(tmp_path, gen, overwrite=True, resolution_kms=1.0, **kw)
    assert {p: p.read_bytes() for p in first["files"]} == before
    assert not list((tmp_path / "SPECTRA" / "C3K").glob(".c3k_smnet.partial*"))


def test_edge_metallicity_survives_the_file_name_rounding(tmp_path, default_generator):
    # v3.3: logzsol +0.5 is the shipped model's edge; FSPS's F6.4 name rounds Z to 0.0424, i.e. [M/H]
    # +0.50026: computed on the edge, not written as zeros (it was, silently)
    kw = dict(layout="v3.3", logt=fb.C3K_LOGT, logg=fb.C3K_LOGG)
    with pytest.warns(UserWarning, match="stock"):
        res = fb.write_fsps_library(tmp_path / "a", default_generator, logzsol=[0.0, 0.5], **kw)
    top = np.fromfile(res["directory"] / "c3k_afe+0.0_z0.0424.spectra.bin", dtype="<f4")
    assert top.any() and np.count_nonzero(top) > 0.3 * top.size
    # a metallicity beyond the coverage is written as zeros, with a warning that says so
    with pytest.warns(UserWarning, match=r"Z = 0\.1340 have less than half the covered nodes"):
        fb.write_fsps_library(tmp_path / "b", default_generator, logzsol=[0.0, 1.0], **kw)


def test_fsps_4s_two_column_lambda_file_is_explained(tmp_path):
    """FSPS 4's c3k_lr.lambda holds two columns (wavelength, a signed resolution; first lines of the real
    file below); the docs loaded it whole and write_fsps_library answered only "must be a strictly increasing
    1-d array". The error now says to take the first column, and that column works."""
    path = tmp_path / "c3k_lr.lambda"
    wave = np.geomspace(101.0, BoxedBlackbody().wavelength[-1], 1934)
    path.write_text("99.99999999999994  -1273.1333786317405\n100.50125208594005  -1273.1333786317405\n"
                    + "".join(f"{float(w)!r}  -1273.1333786317405\n" for w in wave))
    with pytest.raises(ValueError, match=r"two columns.*np.loadtxt\(path, usecols=0\)"):
        fb.write_fsps_library(tmp_path / "a", BoxedBlackbody(), wavelength=np.loadtxt(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fb.write_fsps_library(tmp_path / "b", BoxedBlackbody(), wavelength=np.loadtxt(path, usecols=0),
                              logt=fb.C3K_LOGT[40:42], logg=fb.C3K_LOGG[9:11], logzsol=[-0.25, 0.0])
    written = np.loadtxt(tmp_path / "b/SPECTRA/C3K/c3k_lr/c3k_lr.lambda")
    assert written.shape == (1936,) and written[0] == pytest.approx(99.99999999999994)


def test_resolution_and_logt_are_checked_before_anything_is_written(tmp_path):
    """FSPS reads <spec_type>.res as the spectral resolution. Until 2026-12-03 resolution_kms=NaN was written
    as 1,221 lines of 'nan', two values for 1,221 wavelengths failed in numpy's broadcasting, and Teff in K
    for logt (4000, 5000) failed deep in the generator as 'teff has 4 non-finite value(s)'."""
    gen = BoxedBlackbody()
    n = gen.wavelength.size
    kw = dict(logt=[3.7, 3.8], logg=[4.0, 4.5], logzsol=[0.0, 0.2], spec_type="c3k_smnet")
    one_nan = np.full(n, 12.0)
    one_nan[700] = np.nan
    for bad, match in [(np.nan, "finite.*got nan$"), (np.inf, "finite.*got inf$"),
                       (one_nan, f"finite.*got nan at 1 of {n} wavelengths, first index 700"),
                       ([1.0, 2.0], rf"one value or one per wavelength \({n}\).*shape \(2,\)"),
                       (np.ones((2, n)), r"one value or one per wavelength.*shape \(2, \d+\)")]:
        with pytest.raises(ValueError, match=f"resolution_kms must be {match}"):
            fb.write_fsps_library(tmp_path / "bad", gen, resolution_kms=bad, **kw)
    teff_for_logt = r"logt must be log10 Teff \[K\] within 3-6.*e\.g\. 4000; did you pass Teff instead"
    with pytest.raises(ValueError, match=teff_for_logt):
        fb.write_fsps_library(tmp_path / "bad", gen, **{**kw, "logt": [4000.0, 5000.0]})
    assert not (tmp_path / "bad").exists()
    # negative values stay allowed (stock C3K .res files mark "undefined" so; FSPS uses the absolute value)
    sigma = -np.linspace(50.0, 10.0, n)
    out = fb.write_fsps_library(tmp_path / "ok", gen, resolution_kms=sigma, **kw)
    assert np.allclose(np.loadtxt(out["directory"] / "c3k_smnet.res"), sigma, rtol=1e-6)
    fb.write_fsps_library(tmp_path / "ok", gen, resolution_kms=[-1273.1333786317405], overwrite=True, **kw)
    assert np.allclose(np.loadtxt(out["directory"] / "c3k_smnet.res"), np.full(n, -1273.1333786317405))


@pytest.mark.filterwarnings("ignore:the youngest SSP of this grid")      # the toy grid starts at 10 Myr
def test_a_file_as_sps_home_and_a_non_number_zsun_are_named(tmp_path, fixtures_dir):
    """write_fsps_library(sps_home=<a file>) raised NotADirectoryError from mkdir (after every check), and
    zsun='x' float()'s "could not convert string to float" in the plugin writers, naming no argument."""
    from smnet_sps.plugins import bagpipes_backend as bb
    from smnet_sps.plugins import ppxf_backend as pb
    from smnet_sps.plugins._toy import toy_ssp_arrays
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib

    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for home, where in ((a_file, "is a file"),
                        (a_file / "fsps", "lies under .*notes.txt.*, which is a file")):
        with pytest.raises(ValueError, match=f"sps_home .*{where}, not a folder"):
            fb.write_fsps_library(home, BoxedBlackbody(), logzsol=[0.0])
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    toy = toy_ssp_arrays(np.linspace(-2.0, 1.1, 4), d["logz"], d["teff"], d["flux"], d["wavelength"])
    for call in (lambda z: fb.write_fsps_library(tmp_path / "home", BoxedBlackbody(), zsun=z),
                 lambda z: fb.library_files(tmp_path, layout="v3.3", logzsol=[0.0], zsun=z),
                 lambda z: SMNetStellib(BoxedBlackbody(), zsun=z),
                 lambda z: bb.write_stellar_grid(tmp_path / "g.fits", toy, zsun=z),
                 lambda z: pb.write_sps_lib(tmp_path / "t.npz", toy, zsun=z)):
        for bad in ("x", [0.01, 0.02], 2.0):
            with pytest.raises(ValueError, match=r"zsun must be a metal mass fraction in \(0, 1\).*got "
                                                 + re.escape(repr(bad))):
                call(bad)
    assert not (tmp_path / "home").exists() and not (tmp_path / "g.fits").exists()
