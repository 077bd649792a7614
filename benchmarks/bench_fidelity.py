"""Fidelity benchmark: the default mixture vs each library imitation vs interpolation; observed stars; SSPs.

Usage::

    python benchmarks/bench_fidelity.py [--model DIR] [--previous DIR] [--grid work/grid.h5]
                                        [--empirical ../shared/data/empirical/miles_calibration] [--kfold 5]

Writes ``benchmarks/results_fidelity.md`` (merged into RESULTS.md by run_all.py):

1. held-out grid nodes of the model's split, per library and Teff band: the library imitation
   (``library=NAME``), the default mixture (``library=None``) and linear interpolation of the library's
   training nodes, median / p95 of |dF/F| at >= 3000 A and in the UV (1000-3000 A, pixels > 1e-6 of peak),
   and how firm each criterion verdict is (the test nodes resampled, bootstrap);
2. observed stars (MILES calibration half): every source on all stars, and the k-fold held-out test of the
   default mixture (library preferences ranked on k-1 folds, scored on the k-th);
3. SSP g-r and M_r (PARSEC, Kroupa) of the model and of ``--previous`` at the same isochrone points.

A section this run cannot compute (no grid file: section 1, and section 2 would lack its interpolation
column; no empirical set; no ``--previous``) is kept from the existing results file as it is, and the file
says which were kept; a results file of another model, or a run that can compute nothing, is refused.

One core, < 10 min (most of it the two SSP grids).
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from results_file import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SSP_AGES_GYR = (0.005, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SSP_LOGZSOL = (-1.0, -0.5, 0.0, 0.2)
ZSUN_PARSEC = 0.0152
GRID_HEADING = "### Held-out grid nodes (the model's test split)"
EMPIRICAL_HEADING = "### Observed stars (MILES calibration half)"
SSP_HEADING = "### SSP colours against the previous model"


def _pct(v):
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"


def grid_section(gen, grid):
    from smnet_sps.evaluate import accuracy_table, format_accuracy_table, format_band_table
    table = accuracy_table(gen, grid, default=True, bands=True)
    out = [GRID_HEADING, "",
           "|dF/F| per library: imitation (`library=NAME`), default mixture (`library=None`, scored against "
           "the node's library: where the mixture prefers another library this is the libraries' "
           "disagreement, not a network error) and linear interpolation of the same library's training "
           "nodes. >= 3000 A: pixels > 1e-4 of the peak in 3000-25,000 A; UV: 1000-3000 A, pixels > 1e-6 of "
           "the spectrum's peak.", "",
           format_accuracy_table(table), "", "Per Teff band, median / p95 [%]:", "", format_band_table(table),
           "",
           "Issue criteria (imitation vs interpolation on the same nodes):", "",
           "| library | median >= 3000 A <= interp | p95 >= 3000 A <= interp | UV median <= 1.5 x interp |",
           "|---|---|---|---|"]
    for lib, r in table.items():
        if "baseline_median_ge3000" not in r:
            continue
        ok1 = r["median_ge3000"] <= r["baseline_median_ge3000"]
        ok2 = r["p95_ge3000"] <= r["baseline_p95_ge3000"]
        ok3 = r["median_uv"] <= 1.5 * r["baseline_median_uv"]
        out.append(f"| {lib} | {'yes' if ok1 else 'NO'} ({_pct(r['median_ge3000'])} vs "
                   f"{_pct(r['baseline_median_ge3000'])}) | {'yes' if ok2 else 'NO'} "
                   f"({_pct(r['p95_ge3000'])} vs {_pct(r['baseline_p95_ge3000'])}) | "
                   f"{'yes' if ok3 else 'NO'} ({_pct(r['median_uv'])} vs {_pct(r['baseline_median_uv'])}) |")
    return out + [""]


def criteria_resampling(gen, grid, n_draws=2000, seed=0):
    """How firm each criterion verdict is: the test nodes (those inside the interpolation baseline's hull)
    resampled with replacement ``n_draws`` times; per library the fraction of draws in which the imitation
    meets each criterion, and the 5-95 % range of model / interpolation for the medians and p95."""
    from smnet_sps.evaluate import UV_FLOOR, UV_RANGE, interpolate_grid_nodes, relative_errors
    split = gen.nodes["split"]
    rng = np.random.default_rng(seed)
    out = ["Resampling the test nodes (bootstrap over nodes, paired: model and interpolation on the same "
           f"draw; {n_draws} draws, seed {seed}): the fraction of draws in which each criterion holds, and "
           "the 5-95 % range of model / interpolation. A fraction near 0.5 means the test split is too small "
           "to tell the two apart.", "",
           "| library | nodes | median: holds / ratio 5-95 % | p95: holds / ratio | "
           "UV median <= 1.5x: holds / ratio |", "|---|---|---|---|---|"]
    for j, lib in enumerate(grid.library_names):
        test = np.flatnonzero((split == 2) & (grid.library_id == j))
        train = np.flatnonzero((split == 0) & (grid.library_id == j))
        if test.size == 0 or train.size < 2:
            continue
        base = interpolate_grid_nodes(grid, train, test)
        test = test[np.isfinite(base).any(1)]
        base = base[np.isfinite(base).any(1)]
        if test.size < 3:
            continue
        pred, _ = gen.surface_flux(grid.teff[test], grid.logg[test], grid.logz[test], library=lib)
        true, mask = grid.flux[test].astype(float), grid.mask[test]

        def per_node(flux, wave_range, floor, peak_over):
            return [relative_errors(flux[i:i + 1], true[i:i + 1], mask[i:i + 1], grid.wavelength, wave_range,
                                    floor, peak_over) for i in range(test.size)]
        pairs = [(per_node(pred, (3000.0, 25000.0), 1e-4, "range"), per_node(base, (3000.0, 25000.0), 1e-4,
                                                                               "range")),
                 (per_node(pred, UV_RANGE, UV_FLOOR, "all"), per_node(base, UV_RANGE, UV_FLOOR, "all"))]
        ratios = {"median": [], "p95": [], "uv": []}
        for _ in range(n_draws):
            draw = rng.integers(0, test.size, test.size)
            (m_opt, b_opt), (m_uv, b_uv) = [[np.concatenate([e[i] for i in draw]) for e in pair]
                                            for pair in pairs]
            ratios["median"].append(np.median(m_opt) / np.median(b_opt))
            ratios["p95"].append(np.percentile(m_opt, 95) / np.percentile(b_opt, 95))
            ratios["uv"].append(np.median(m_uv) / np.median(b_uv) if m_uv.size and b_uv.size else np.nan)
        cells = []
        for key, limit in (("median", 1.0), ("p95", 1.0), ("uv", 1.5)):
            r = np.asarray(ratios[key])
            r = r[np.isfinite(r)]
            cells.append(f"{np.mean(r <= limit):.2f} / {np.percentile(r, 5):.2f}-{np.percentile(r, 95):.2f}"
                         if r.size else "-")
        out.append(f"| {lib} | {test.size} | " + " | ".join(cells) + " |")
    return out + [""]


def empirical_section(gen, grid, empirical, k, seed=0):
    from smnet_sps.empirical import format_class_table, load_empirical, score_generator
    from smnet_sps.validate import baseline_scores, imitation_scores, kfold_validation
    stars = load_empirical(empirical)
    every = [score_generator(gen, stars, name="default mixture")]
    every += [s for s in imitation_scores(gen, stars) if s.name.split()[0] in ("ck04", "nextgen", "basel22")]
    every += baseline_scores(stars, grid)
    out = [EMPIRICAL_HEADING, "",
           f"{len(stars)} stars; MILES air wavelengths converted to vacuum; both spectra degraded to 40 A "
           "FWHM on a 20 A grid (3610-7350 A), a 3rd-order polynomial in 1/lambda divided out of the ratio "
           "(3-sigma clipped); per star the median |residual|, then the median over stars [%] (number of "
           "stars). Imitations are scored on every star, also outside their library's box. The default "
           "mixture's preferences were ranked on these same stars (mixture.json): this table is not a "
           "held-out test; the next one is.",
           "",
           format_class_table(every), ""]
    scores, policies = kfold_validation(gen, stars, k=k, seed=seed, grid=grid)
    keep = [s for s in scores if not s.name.startswith(("wmbasic", "cm87"))]
    med = {s.name: float(np.nanmedian(s.score)) for s in scores}
    best_imit = min((v, n) for n, v in med.items() if n.endswith("imitation"))
    interp = [n for n in med if n.startswith("interpolated")]
    out += [f"**Held-out test** ({k}-fold, stratified by Teff class, seed {seed}): for each fold the library "
            "preferences are ranked on the other folds and the resulting default mixture is scored on the "
            "fold; the nearest-star baseline draws from the other folds.", "", format_class_table(keep), "",
            f"Default (held out) {100 * med[scores[0].name]:.3f} % vs best single-library imitation "
            f"({best_imit[1]}) {100 * best_imit[0]:.3f} %"
            + (f" vs {interp[0]} {100 * med[interp[0]]:.3f} %" if interp else "") + ".", ""]
    # an order lists every library; only those whose box reaches into the region can take weight there
    te = [0.0, *policies[0].teff_edges, np.inf]
    ge = [-np.inf, *policies[0].logg_edges, np.inf]

    def reaches(name, i, kk):
        box = gen.library_boxes[name]
        return (box.teff[0] < te[i + 1] and box.teff[1] > te[i] and box.logg[0] < ge[kk + 1]
                and box.logg[1] > ge[kk])

    orders = {}
    for pol in policies:
        for i, row in enumerate(pol.orders):
            for kk, order in enumerate(row):
                orders.setdefault((i, kk), set()).add(" > ".join(n for n in order if reaches(n, i, kk)))
    names = policies[0].region_names()
    out += ["Preferences found per fold (the libraries whose box reaches into the region, in the order "
            "found; "
            "a region with several entries changed between folds):",
            "",
            "| region | orders |", "|---|---|"]
    out += [f"| {names[i][kk]} | {'; '.join(sorted(v))} |" for (i, kk), v in sorted(orders.items())]
    return out + [""]


def ssp_section(gen, previous):
    import astropy.units as u
    from smnet_sps.photometry import ssp_magnitudes
    filters = ["sdss2010-g", "sdss2010-r"]
    ages = np.array(SSP_AGES_GYR) * u.Gyr
    out = [SSP_HEADING, "",
           f"PARSEC, Kroupa IMF, the same isochrone points; model `{gen.directory}` minus previous "
           f"`{previous.directory}` ({'with' if previous.mixture_policy is not None else 'without'} "
           "mixture.json): Delta(g-r) / Delta M_r [mag] (SDSS, AB).", "",
           "| [M/H] | " + " | ".join(f"{a:g} Gyr" for a in SSP_AGES_GYR) + " |",
           "|---|" + "---|" * len(SSP_AGES_GYR)]
    worst = []
    for lz in SSP_LOGZSOL:
        Z = ZSUN_PARSEC * 10 ** lz
        a = ssp_magnitudes(ages, Z, filters, generator=gen)
        b = ssp_magnitudes(ages, Z, filters, generator=previous)
        dgr = (a["M_sdss2010-g"] - a["M_sdss2010-r"]) - (b["M_sdss2010-g"] - b["M_sdss2010-r"])
        dr = a["M_sdss2010-r"] - b["M_sdss2010-r"]
        dgr, dr = np.asarray(dgr, float), np.asarray(dr, float)
        worst.append((np.abs(dgr).max(), np.abs(dr).max()))
        out.append(f"| {lz:+.1f} | " + " | ".join(f"{x:+.4f} / {y:+.4f}" for x, y in zip(dgr, dr)) + " |")
    w = np.array(worst)
    out += ["", f"Largest |Delta(g-r)| {w[:, 0].max():.4f} mag, largest |Delta M_r| {w[:, 1].max():.4f} mag.",
            ""]
    return out


def split_sections(text):
    """(preamble lines, [(heading, lines)]) of a results file: sections start at '### ' lines, the
    closing 'Run time ...' paragraph is dropped."""
    lines = text.rstrip("\n").split("\n")
    while lines and (not lines[-1].strip() or lines[-1].startswith("Run time ")):
        lines.pop()
    preamble, sections = [], []
    for line in lines:
        if line.startswith("### "):
            sections.append((line, [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, sections


def merge_results(old_text, preamble, computed, skipped):
    """The results file's text: the sections ``computed`` this run ({heading: lines}) replace the old file's
    sections of that heading (an old heading may carry a date after it); every other section of the old file
    is kept, in its place, and the preamble names them (a run without the training grid used to rewrite the
    file without its held-out tables). ``skipped``: {heading: why this run did not compute it}."""
    old_preamble, old_sections = split_sections(old_text) if old_text else ([], [])
    out, kept, used = [], [], set()
    for heading, lines in old_sections:
        new = next((h for h in computed if heading == h or heading.startswith(h + " (")), None)
        if new is not None:
            out.append(computed[new])
            used.add(new)
            continue
        reason = next((why for h, why in skipped.items() if heading == h or heading.startswith(h + " (")),
                      "not made by this script")
        notes = [p for p in old_preamble if p.startswith("(grid ")]
        if heading.startswith(GRID_HEADING) and notes:
            # the old run's note on which grid it used belongs to the kept grid tables
            lines = [lines[0], "", *notes, *lines[1:]]
        out.append(lines)
        kept.append(f"\"{heading[4:]}\" ({reason})")
    out += [lines for h, lines in computed.items() if h not in used]
    if kept:
        preamble = preamble + ["Kept from the previous version of this file, not recomputed by this run: "
                               + "; ".join(kept) + ".", ""]
    body = []
    for lines in out:
        lines = list(lines)
        while lines and not lines[-1].strip():
            lines.pop()
        body += [*lines, ""]
    return preamble, body


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--previous", default=None, help="previous model directory, for the SSP changes")
    ap.add_argument("--grid", default=str(ROOT / "work" / "grid.h5"))
    ap.add_argument("--empirical",
                    default=str(ROOT.parent / "shared" / "data" / "empirical" / "miles_calibration"))
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results_fidelity.md"),
                    help="results file; sections this run cannot compute are kept from it as they are")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from smnet_sps.generator import CoverageWarning
    from smnet_sps.neural import load_generator
    warnings.simplefilter("ignore", CoverageWarning)
    t0 = time.perf_counter()
    gen = load_generator(args.model, device="cpu")
    pol = gen.mixture_policy
    model_line = f"Model `{gen.name}` (`{Path(gen.directory).name}`); default mixture: "
    mixture = ("measured preferences from mixture.json ("
               + ", ".join(f"{k} {v}" for k, v in pol.meta.items() if k in ("stars", "empirical_set")) + ")"
               if pol is not None else "no mixture.json (equal weights where libraries overlap)")
    preamble = ["## Fidelity: default mixture, library imitations, interpolation, observed stars", "",
                f"{model_line}{mixture}.", ""]
    out_path = Path(args.out)
    old_text = out_path.read_text() if out_path.is_file() else ""
    if old_text and not any(line.startswith(model_line) for line in split_sections(old_text)[0]):
        # its tables are another model's: keeping any of them beside this model's would mix two models
        raise SystemExit(f"bench_fidelity.py: {args.out} holds the results of another model than "
                         f"`{gen.name}` (`{Path(gen.directory).name}`); pass --out NEW_FILE; {args.out} left "
                         "unchanged")
    computed, skipped = {}, {}
    grid = None
    if Path(args.grid).is_file():
        from smnet_sps.train import read_grid
        grid = read_grid(args.grid)
        from smnet_sps.evaluate import grid_split_applies, grid_split_note
        applies = grid_split_applies(gen, grid)
        note = grid_split_note(applies, args.grid)
        if applies is None:
            skipped[GRID_HEADING] = note
        else:
            lines = grid_section(gen, grid) + criteria_resampling(gen, grid)
            computed[GRID_HEADING] = [lines[0], "", *([note, ""] if note else []), *lines[1:]]
            print("grid section done", f"{time.perf_counter() - t0:.0f} s", flush=True)
    else:
        skipped[GRID_HEADING] = f"no grid file at {args.grid}"
    if Path(args.empirical).exists():
        lines = empirical_section(gen, grid, args.empirical, args.kfold)
        print("empirical section done", f"{time.perf_counter() - t0:.0f} s", flush=True)
        if grid is None and EMPIRICAL_HEADING in old_text:
            # without the grid its tables lack the interpolation baseline's column: shown, not written over
            # the complete tables
            print("\n".join(lines))
            skipped[EMPIRICAL_HEADING] = ("its interpolation baseline needs the grid; this run's tables "
                                          "without it were printed only")
        else:
            computed[EMPIRICAL_HEADING] = lines
    else:
        skipped[EMPIRICAL_HEADING] = f"no empirical set at {args.empirical}"
    if args.previous:
        computed[SSP_HEADING] = ssp_section(gen, load_generator(args.previous, device="cpu"))
        print("SSP section done", f"{time.perf_counter() - t0:.0f} s", flush=True)
    else:
        skipped[SSP_HEADING] = "no --previous model"
    if not computed:
        raise SystemExit("bench_fidelity.py: nothing to compute ("
                         + "; ".join(skipped.values()) + f"); {args.out} left unchanged")
    preamble, body = merge_results(old_text, preamble, computed, skipped)
    missing = [f"{h[4:]}: {why}" for h, why in skipped.items() if not any(
        line.startswith(h) for line in body)]
    if missing:
        preamble += ["(not in this file: " + "; ".join(missing) + ")", ""]
    out = preamble + body + [f"Run time {time.perf_counter() - t0:.0f} s on {args.threads} thread(s).", ""]
    write_results(out_path, "\n".join(out))
    print("\n".join(out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
