"""bagpipes adapter checked against the real bagpipes: a model_galaxy built on our grid equals our SSPs."""
import numpy as np
import pytest

from smnet_sps.plugins import bagpipes_backend as bb
from smnet_sps.plugins._toy import toy_ssp_arrays

bagpipes = pytest.importorskip("bagpipes")
from smnet_sps.constants import L_SUN  # noqa: E402  IAU 2015, 3.828e33 erg/s: the L_sun our grids are in

L_SUN_BAGPIPES = 3.826e33        # erg/s, the constant bagpipes multiplies by


@pytest.fixture(scope="module")
def grid_file(fixtures_dir, tmp_path_factory):
    from bagpipes import config
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    # raw ages on bagpipes' own log-age sampling (every 3rd point) so a burst lands on one raw SSP
    lg = np.log10(config.age_sampling[::3]) - 9
    toy = toy_ssp_arrays(lg, d["logz"], d["teff"], d["flux"], d["wavelength"], zsun=0.02)
    return toy, bb.write_stellar_grid(tmp_path_factory.mktemp("bp") / "smnet_grid.fits", toy)


def test_file_layout(grid_file):
    toy, path = grid_file
    g = bb.read_stellar_grid(path)
    assert np.allclose(g["metallicities"], 10 ** toy.ssp_lgmet / 0.02)
    assert np.allclose(g["ages_yr"], 1e9 * 10 ** toy.ssp_lg_age_gyr)
    assert np.array_equal(g["flux"], toy.ssp_flux) and np.array_equal(g["wavelengths"], toy.ssp_wave)
    assert np.allclose(g["live_frac"], toy.surviving_mass.T)


def test_model_galaxy_matches_direct_computation(grid_file):
    from bagpipes import config
    toy, path = grid_file
    default_z = config.metallicities.copy()
    k = 13
    with bb.smnet_grid(path) as g:
        zmet = g["metallicities"]
        z_mid = 0.5 * (zmet[1] + zmet[2])                      # halfway: bagpipes interpolates linearly in Z
        comps = {"redshift": 0.0,
                 "burst1": {"age": 10 ** toy.ssp_lg_age_gyr[k], "massformed": 10.0, "metallicity": zmet[1]},
                 "burst2": {"age": 10 ** toy.ssp_lg_age_gyr[5], "massformed": 9.5, "metallicity": z_mid}}
        model = bagpipes.model_galaxy(comps)
        wl = model.wavelengths

        def ssp(z, a):
            return np.interp(wl, toy.ssp_wave, toy.ssp_flux[z, a])

        # erg/s/A with OUR L_sun: bagpipes' own 3.826e33 would make every spectrum 5e-4 too faint
        direct = L_SUN * (1e10 * ssp(1, k) + 10 ** 9.5 * 0.5 * (ssp(1, 5) + ssp(2, 5)))
        ok = (wl > 1000) & (wl < 5e4)
        assert np.isfinite(model.spectrum_full).all()
        assert np.allclose(model.spectrum_full[ok], direct[ok], rtol=1e-6)
        # surviving stellar mass uses our live fractions
        m_live = 1e10 * toy.surviving_mass[1, k] + 10 ** 9.5 * toy.surviving_mass[1, 5]
        assert abs(model.sfh.stellar_mass - np.log10(m_live)) < 0.01
        with pytest.raises(ValueError, match="nebular"):
            bagpipes.model_galaxy({**comps, "nebular": {"logU": -3.0}})
    assert np.array_equal(config.metallicities, default_z)     # restored


def test_rejects_foreign_or_corrupt_files(tmp_path):
    from astropy.io import fits
    foreign = tmp_path / "foreign.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)))]).writeto(foreign)
    with pytest.raises(ValueError, match="NMET"):
        bb.read_stellar_grid(foreign)
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"not a fits file at all" * 10)
    with pytest.raises(ValueError):
        bb.read_stellar_grid(corrupt)
    with pytest.raises(FileNotFoundError):
        bb.use_smnet_grid(tmp_path / "missing.fits")
