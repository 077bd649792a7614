"""Benchmark: the semi-empirical generator against the theoretical default (stars and SSPs).

Run: python benchmarks/bench_semi_empirical.py [--threads 1]
Writes benchmarks/results_semi_empirical.md, docs/figures/semi_empirical_ssp.png and
semi_empirical_weight.png:
* the k-fold cross-validation table written by `smnet-sps calibrate` (smnet_sps/data/semi_empirical_model/
  cv_report.md: held-out MILES stars);
* SSPs (PARSEC, Kroupa) at 1-12 Gyr and [M/H] = -1..+0.2 from both generators: g - r (SDSS, AB) and the Lick
  indices Hbeta, Mgb, Fe5270, Fe5335 (smnet_sps.lick; both SSPs on the same model grid, i.e. at one
  resolution);
* a plot of both SSP spectra and their ratio.
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
AGES_GYR = [1.0, 2.0, 4.0, 8.0, 12.0]
LOGZSOL = [-1.0, -0.5, 0.0, 0.2]
INDICES = ["Hbeta", "Mgb", "Fe5270", "Fe5335"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import astropy.units as u

    from smnet_sps.calibrate import plot_ssp_comparison
    from smnet_sps.isochrones import load_isochrones
    from smnet_sps.lick import measure_indices
    from smnet_sps.photometry import ssp_photometry
    from smnet_sps.semi_empirical import semi_empirical_model_path
    from smnet_sps.ssp import ssp_grid

    zsun = load_isochrones("parsec").zsun
    Zs = [zsun * 10 ** z for z in LOGZSOL]
    grids, secs = {}, {}
    for name in ("default", "semi-empirical"):
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grids[name] = ssp_grid(np.array(AGES_GYR) * u.Gyr, Zs, generator=name, progress=False,
                                   device="cpu")
        secs[name] = time.time() - t0
    wave = np.asarray(grids["default"].ssp_wave, float)
    lines = ["# Semi-empirical generator: results", "",
             "Produced by `python benchmarks/bench_semi_empirical.py` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
             "", "## Observed stars (k-fold cross-validation, held-out MILES stars)", ""]
    report = (semi_empirical_model_path() / "cv_report.md").read_text().splitlines()
    lines += report[2:]
    lines += ["", "## SSPs: semi-empirical minus theoretical default", "",
              "PARSEC + Kroupa, the same isochrone points for both; g - r in SDSS AB; Lick indices [A] "
              "measured on the model grid (~20 A pixels) for both, so only the differences are meaningful "
              "(absolute values are not on the Lick/IDS system). Columns: value with the default model, then "
              "semi-empirical - default.",
              "", "| age [Gyr] | [M/H] | g-r | d(g-r) | " + " | ".join(f"{i} | d{i}" for i in INDICES) + " |",
              "|---" * (4 + 2 * len(INDICES)) + "|"]
    summary = {k: [] for k in ["g-r"] + INDICES}
    for iz, z in enumerate(LOGZSOL):
        res = {}
        for name, g in grids.items():
            flux = np.asarray(g.ssp_flux[iz], float)             # (n_age, n_wave) L_sun/A per M_sun
            tab = ssp_photometry(np.array(AGES_GYR) * u.Gyr, (wave * u.AA, flux * u.L_sun / u.AA),
                                 ["sdss2010-g", "sdss2010-r"], system="AB",
                                 log_lbol=np.zeros(len(AGES_GYR)))
            res[name] = {"g-r": np.asarray(tab["M_sdss2010-g"]) - np.asarray(tab["M_sdss2010-r"]),
                         **measure_indices(wave, flux, INDICES)}
        for ia, age in enumerate(AGES_GYR):
            cells = []
            for k in ["g-r"] + INDICES:
                a, b = res["default"][k][ia], res["semi-empirical"][k][ia]
                summary[k].append(b - a)
                cells.append(f"{a:.3f} | {b - a:+.3f}")
            lines.append(f"| {age:g} | {z:+.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Largest |difference| over the grid: " + ", ".join(
        f"{k} {np.max(np.abs(v)):.3f}" + (" mag" if k == "g-r" else " A") for k, v in summary.items()) + ".",
        "",
        f"SSP grid time ({len(AGES_GYR)} ages x {len(LOGZSOL)} Z, one thread): default {secs['default']:.1f} "
        f"s, semi-empirical {secs['semi-empirical']:.1f} s.", "",
        "![SSP spectra](../docs/figures/semi_empirical_ssp.png)", ""]
    lines += throughput()
    lines += star_indices()
    picks = [(LOGZSOL.index(0.0), AGES_GYR.index(12.0)), (LOGZSOL.index(0.0), AGES_GYR.index(1.0)),
             (LOGZSOL.index(-1.0), AGES_GYR.index(12.0))]
    th = np.array([grids["default"].ssp_flux[iz][ia] for iz, ia in picks])
    se = np.array([grids["semi-empirical"].ssp_flux[iz][ia] for iz, ia in picks])
    fig = plot_ssp_comparison(wave, th, se,
                              [f"{AGES_GYR[ia]:g} Gyr, [M/H] {LOGZSOL[iz]:+.1f}" for iz, ia in picks])
    out_png = ROOT / "docs" / "figures" / "semi_empirical_ssp.png"
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    from smnet_sps.calibrate import plot_empirical_weight
    from smnet_sps.neural import load_generator
    plot_empirical_weight(load_generator("semi-empirical", device="cpu")).savefig(
        ROOT / "docs" / "figures" / "semi_empirical_weight.png", dpi=100)
    out = ROOT / "benchmarks" / "results_semi_empirical.md"
    write_results(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out_png}")


def throughput(n=20000):
    """Spectra per second of both generators on the same random FGKM points (one run: the ratio is the
    figure)."""
    from smnet_sps.neural import load_generator
    semi = load_generator("semi-empirical", device="cpu")
    rng = np.random.default_rng(0)
    pts = (10 ** rng.uniform(3.5, 4.3, n), rng.uniform(0.0, 5.0, n), rng.uniform(-2.0, 0.3, n))
    rate = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gen in (semi.base, semi):                     # warm-up: coverage trees, mixture tables, caches
            gen.surface_flux(*(a[:200] for a in pts))
        for name, gen in (("default", semi.base), ("semi-empirical", semi)):
            t0 = time.time()
            gen.surface_flux(*pts)
            rate[name] = n / (time.time() - t0)
    return ["", f"Throughput ({n} random points, 3,200-20,000 K, one thread, CPU): default "
            f"{rate['default']:.0f} spectra/s, semi-empirical {rate['semi-empirical']:.0f} spectra/s (ratio "
            f"{rate['semi-empirical'] / rate['default']:.2f})."]


def star_indices():
    """Lick indices of MILES stars averaged onto the model pixels vs the models at their parameters
    (in-sample)."""
    from smnet_sps.constants import shared_data_dir
    from smnet_sps.empirical import _pixel_edges, load_empirical, overlap_matrix, pixel_bounds
    from smnet_sps.lick import measure_indices
    from smnet_sps.neural import load_generator
    shared = shared_data_dir()
    if shared is None:
        return []
    stars = load_empirical(shared / "empirical" / "miles_calibration")
    semi = load_generator("semi-empirical", device="cpu")
    wl = semi.wavelength
    ov = overlap_matrix(pixel_bounds(stars.wavelength), _pixel_edges(wl))
    good = np.isfinite(stars.flux)
    with np.errstate(invalid="ignore", divide="ignore"):
        obs = (ov @ np.where(good, stars.flux, 0.0).T).T / (ov @ good.T.astype(float)).T
    t, g, z = stars.teff, stars.logg, stars.logz
    groups = [("K giants 4000-5000 K, log g < 3.5, [Fe/H] within +-0.3",
               (t > 4000) & (t < 5000) & (g < 3.5) & (abs(z) < 0.3)),
              ("G dwarfs 5300-6200 K, log g > 3.8, [Fe/H] within +-0.3",
               (t > 5300) & (t < 6200) & (g > 3.8) & (abs(z) < 0.3)),
              ("metal-poor giants 4300-5200 K, log g < 3, [Fe/H] < -0.8",
               (t > 4300) & (t < 5200) & (g < 3) & (z < -0.8))]
    out = ["", "## Lick indices of MILES stars at the model's resolution (in-sample)", "",
           "MILES spectra averaged onto the model pixels vs the models at the stars' parameters, median over "
           "the group [A]: the shipped correction was fitted on these stars, so this checks what it learned, "
           "not how it generalises.", "",
           "| group (n) | index | MILES | default | semi-empirical |", "|---|---|---|---|---|"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, sel in groups:
            im = measure_indices(wl, obs[sel], INDICES)
            ib = measure_indices(wl, semi.base.surface_flux(t[sel], g[sel], z[sel])[0], INDICES)
            isem = measure_indices(wl, semi.surface_flux(t[sel], g[sel], z[sel])[0], INDICES)
            for k in INDICES:
                out.append(f"| {label} ({int(sel.sum())}) | {k} | {np.nanmedian(im[k]):.2f} | "
                           f"{np.median(ib[k]):.2f} | {np.median(isem[k]):.2f} |")
    return out


if __name__ == "__main__":
    main()
