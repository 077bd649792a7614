"""A real SDSS galaxy (shipped with ppxf) fitted with smnet-sps templates from the pPXF plugin."""
from importlib import resources

import numpy as np
import pytest

ppxf_mod = pytest.importorskip("ppxf.ppxf")

C_KMS = 299792.458


def _sdss(name):
    from astropy.io import fits
    path = resources.files("ppxf") / "spectra" / f"{name}_SDSS_DR18.fits"
    if not path.is_file():
        pytest.skip(f"{path} not shipped with this ppxf")
    with fits.open(path) as hdu:
        t = hdu["COADD"].data
        z = float(hdu["SPECOBJ"].data["z"].item())
        lam = 10.0 ** np.asarray(t["loglam"], float)                 # SDSS: vacuum, like smnet-sps
        flux = np.asarray(t["flux"], float)
        fwhm = 2.3548 * np.asarray(t["wdisp"], float) * np.gradient(lam)
    return lam / (1 + z), flux / np.median(flux), fwhm / (1 + z)


def test_sdss_galaxy_fit_runs_and_kinematics_are_not_at_a_bound(tmp_path, default_generator):
    import ppxf.ppxf_util as util
    import ppxf.sps_util as lib
    from ppxf.ppxf import ppxf

    from smnet_sps.lsf import degrade_to_fwhm
    from smnet_sps.plugins import ppxf_backend
    from smnet_sps.ssp import ssp_grid

    fwhm = 20.0                                    # the native box FWHM of the 1,221-pixel grid
    lam, flux, fwhm_gal = _sdss("NGC3522")
    keep = (lam > 3800) & (lam < 7000)
    galaxy = degrade_to_fwhm(lam, flux, fwhm_gal, fwhm)[keep]
    lam = lam[keep]
    velscale = C_KMS * np.log(lam[-1] / lam[0]) / (lam.size - 1)
    grid = ssp_grid([2e9, 6e9, 12e9], [0.008, 0.02], generator=default_generator, progress=False)
    path = ppxf_backend.write_sps_lib(tmp_path / "smnet.npz", grid, gaussian_fwhm=fwhm, velscale=velscale,
                                      lam_range=(3500, 7400))
    a = np.load(path)
    assert str(a["wavelength_medium"]) == "vacuum" and str(a["lsf_shape"]) == "gaussian"
    assert np.allclose(a["fwhm"], fwhm) and a["outside_fraction"].shape == (3, 2)
    sps = lib.sps_lib(str(path), velscale, None)
    templates = sps.templates.reshape(sps.templates.shape[0], -1)
    mask = util.determine_mask(np.log(lam), [sps.lam_temp[0], sps.lam_temp[-1]], 0.0, width=1800)
    pp = ppxf(templates, galaxy, np.full(lam.size, 0.01), velscale, [0.0, 150.0], degree=-1, mdegree=6,
              lam=lam, lam_temp=sps.lam_temp, mask=mask, quiet=True)
    v, sigma = pp.sol[:2]
    # pPXF's bounds: V within +-2000 km/s of the start, velscale/100 < sigma < 1000 km/s
    assert abs(v) < 1900 and velscale / 100 * 1.5 < sigma < 950
    # the galaxy is at the SDSS redshift: the residual velocity is small (the grid's pixels are 1,200 km/s)
    assert abs(v) < 100
    rms = np.std((galaxy - pp.bestfit)[pp.goodpixels]) / np.median(galaxy)
    assert rms < 0.03
