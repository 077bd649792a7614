"""Every plugin file carries the LSF, the wavelength medium and the out-of-coverage light, and converts
media."""
import json

import numpy as np
import pytest

from smnet_sps.lsf import grid_lsf_fwhm
from smnet_sps.medium import axis_vacuum_to_air, vacuum_to_air
from smnet_sps.plugins._common import as_ssp_arrays


@pytest.fixture(scope="module")
def grid(default_generator):
    from smnet_sps.ssp import ssp_grid
    return ssp_grid([1e9, 1e10], [0.0152, 0.03], generator=default_generator, progress=False)


def test_ppxf_file(tmp_path, grid):
    from smnet_sps.plugins import ppxf_backend as pb
    a = np.load(pb.write_sps_lib(tmp_path / "v.npz", grid, lam_range=(3000, 9000)))
    keep = (grid.ssp_wave >= 3000) & (grid.ssp_wave <= 9000)
    # the declared fwhm is the measured box LSF (20 A; 10 A at 3640 A), not the old 2-pixel guess
    assert np.allclose(a["fwhm"], grid_lsf_fwhm(grid.ssp_wave)[keep])
    assert a["fwhm"][np.argmin(np.abs(a["lam"] - 3640))] == pytest.approx(10.0)
    assert str(a["wavelength_medium"]) == "vacuum" and str(a["lsf_shape"]) == "box"
    assert np.allclose(a["outside_fraction"], grid.outside_fraction.T)
    b = np.load(pb.write_sps_lib(tmp_path / "a.npz", grid, lam_range=(3000, 9000), medium="air"))
    assert str(b["wavelength_medium"]) == "air"
    assert np.allclose(b["lam"], axis_vacuum_to_air(a["lam"]))
    i = np.argmin(np.abs(a["lam"] - 6570.0))
    assert a["lam"][i] - b["lam"][i] == pytest.approx(6570.0 - vacuum_to_air(6570.0))      # ~1.81 A
    with pytest.raises(ValueError, match="velscale"):
        pb.write_sps_lib(tmp_path / "g.npz", grid, gaussian_fwhm=25.0)
    with pytest.raises(ValueError, match="medium must be one of"):
        pb.write_sps_lib(tmp_path / "m.npz", grid, medium="glass")


def test_dsps_file(tmp_path, grid):
    import h5py
    from smnet_sps.plugins import dsps_backend as db
    path = db.write_ssp_templates(tmp_path / "d.h5", grid, medium="air")
    with h5py.File(path, "r") as f:
        assert f.attrs["wavelength_medium"] == "air" and f.attrs["lsf_shape"] == "box"
        assert np.allclose(f["ssp_wave"][()], axis_vacuum_to_air(grid.ssp_wave))
        assert np.allclose(f["lsf_fwhm"][()], grid_lsf_fwhm(grid.ssp_wave), rtol=1e-3)
        assert np.allclose(f["outside_fraction"][()], grid.outside_fraction)
    pytest.importorskip("dsps")
    data = db.load_ssp_templates(path)
    assert data.ssp_flux.shape == grid.ssp_flux.shape


def test_bagpipes_file(tmp_path, grid):
    from smnet_sps.plugins import bagpipes_backend as bb
    g = bb.read_stellar_grid(bb.write_stellar_grid(tmp_path / "b.fits", grid))
    assert g["medium"] == "vacuum" and g["lsf_shape"] == "box"
    assert np.allclose(g["lsf_fwhm"], grid_lsf_fwhm(grid.ssp_wave))
    assert np.allclose(g["outside_fraction"], grid.outside_fraction)
    g_air = bb.read_stellar_grid(bb.write_stellar_grid(tmp_path / "ba.fits", grid, medium="air"))
    assert g_air["medium"] == "air" and np.allclose(g_air["wavelengths"], axis_vacuum_to_air(grid.ssp_wave))


def test_fsps_files_state_lsf_and_medium(tmp_path, default_generator):
    from smnet_sps.plugins import fsps_backend as fb
    out = fb.write_fsps_library(tmp_path, default_generator, logt=fb.C3K_LOGT[10:14], logg=fb.C3K_LOGG[8:10],
                                logzsol=np.array([-0.5, 0.0]))
    wave = out["wavelength"]
    res = np.loadtxt(out["directory"] / "c3k_lr.res")
    fwhm = res * 2.3548 / 299792.458 * wave                     # sigma [km/s] -> FWHM [A]
    assert np.allclose(fwhm, grid_lsf_fwhm(wave), rtol=1e-4)
    prov = json.loads((out["directory"] / "c3k_lr_smnet_provenance.json").read_text())
    assert prov["wavelength_medium"].startswith("vacuum") and prov["lsf_shape"] == "box"
    assert np.allclose(prov["lsf_fwhm_aa"], grid_lsf_fwhm(wave), atol=1e-4)


def test_arrays_without_extras_still_write(tmp_path, grid):
    """Plain DSPS-layout arrays (no meta): the LSF comes from the wavelengths, the medium defaults to
    vacuum."""
    from smnet_sps.plugins import ppxf_backend as pb
    plain = as_ssp_arrays(ssp_lgmet=grid.ssp_lgmet, ssp_lg_age_gyr=grid.ssp_lg_age_gyr,
                          ssp_wave=grid.ssp_wave, ssp_flux=grid.ssp_flux)
    a = np.load(pb.write_sps_lib(tmp_path / "p.npz", plain))
    assert np.allclose(a["fwhm"], grid_lsf_fwhm(grid.ssp_wave)) and np.isnan(a["outside_fraction"]).all()


def test_pystellibs_states_lsf_and_medium(default_generator):
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib
    lib = SMNetStellib(default_generator)
    assert lib.wavelength_medium == "vacuum" and lib.lsf_shape == "box"
    assert np.allclose(lib.lsf_fwhm.to_value("AA"), grid_lsf_fwhm(lib.wavelength.to_value("AA")))
