"""Benchmark and validation of smnet_sps.fit (results in benchmarks/results_fit.md, docs/fit.md).

Parts (``--part``):

* ``coverage``: noisy generator mocks (random Teff 4000-8000 K, log g 1-5, [M/H] -1.5..+0.3, rv +-100 km/s,
  S/N 30-100, random degree-2 continuum) on the model's pixels 3600-7400 A; the fraction whose 68 % interval
  covers the truth, per parameter, for the Laplace errors (all mocks) and emcee (a subset); fit times.
* ``miles``: the MILES calibration stars (vacuum), 2-fold cross-validated empirical correction (derived on one
  half at catalogue parameters, applied to the other), fits at lambda >= 4500 A with 1 % relative errors;
  bias and robust scatter (1.4826 MAD) per Teff class, with and without the correction.
* ``ssp``: galaxy mocks from PARSEC SSPs at nodes *between* those of the fitting grid (ages 10^8-10^10.1 yr in
  0.1 dex with every other node held out, Z every other node), noise S/N 50, fitted by fit_ssp and by pPXF
  with the same templates (light-weighted mean age and [M/H]).

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_fit.py`` (all parts, ~1 h on 2 loaded cores) or
``--part coverage --n 200`` etc.; each part writes benchmarks/fit_<part>.json, and every run (or
``--part report``) rebuilds benchmarks/results_fit.md from the JSON files present.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from results_file import write_results

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MILES = HERE.parent.parent / "shared" / "data" / "empirical" / "miles_calibration"
PARAMS = ("teff", "logg", "logz", "rv")


def robust(d):
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan, np.nan
    med = np.median(d)
    return float(med), float(1.4826 * np.median(np.abs(d - med)))


def part_coverage(n, n_emcee, seed=0):
    from smnet_sps.fit import fit_star, mock_star
    from smnet_sps.neural import load_generator

    gen = load_generator()
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        t = 10 ** rng.uniform(np.log10(4000), np.log10(8000))
        g, z = rng.uniform(1.0, 5.0), rng.uniform(-1.5, 0.3)
        if not np.asarray(gen.in_coverage(t, g, z)).ravel()[0]:
            continue
        rv, snr = rng.uniform(-100, 100), rng.uniform(30, 100)
        cont = [1.0, rng.normal(0, 0.2), rng.normal(0, 0.05)]
        k = len(rows)
        w, f, iv, _ = mock_star(
            np.array([3600.0, 7400.0]),
            t,
            g,
            z,
            rv,
            snr=snr,
            continuum=cont,
            generator=gen,
            seed=seed * 100000 + k,
        )
        row = {"truth": [t, g, z, rv], "snr": snr}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            r = fit_star(w, f, iv, generator=gen)
            row["seconds"] = time.perf_counter() - t0
            row["laplace"] = [list(map(float, r.values)), list(map(float, r.errors)), float(r.chi2_red)]
            if k < n_emcee:
                t0 = time.perf_counter()
                re = fit_star(
                    w,
                    f,
                    iv,
                    generator=gen,
                    uncertainty="emcee",
                    emcee_kwargs={"n_walkers": 16, "n_steps": 300, "n_burn": 100},
                )
                row["emcee_seconds"] = time.perf_counter() - t0
                row["emcee"] = [list(map(float, re.values)), list(map(float, re.errors))]
        rows.append(row)
        if len(rows) % 20 == 0:
            print(len(rows), "mocks", flush=True)
    out = {"n": n, "rows": rows}
    for method in ("laplace", "emcee"):
        rr = [r for r in rows if method in r]
        if not rr:
            continue
        tr = np.array([r["truth"] for r in rr])
        v = np.array([r[method][0] for r in rr])
        e = np.array([r[method][1] for r in rr])
        cov = np.abs(v - tr) <= e          # a parameter ending on a bound has no error (NaN): not covered
        out[method] = {
            "n": len(rr),
            "coverage": dict(zip(PARAMS, map(float, cov.mean(0)))),
            "median_z": dict(zip(PARAMS, map(float, np.nanmedian(np.abs(v - tr) / e, 0)))),
            "at_bound": dict(zip(PARAMS, map(int, (~np.isfinite(e)).sum(0)))),
        }
    out["median_seconds"] = float(np.median([r["seconds"] for r in rows]))
    out["torch_threads"] = torch.get_num_threads()
    if any("emcee_seconds" in r for r in rows):
        out["median_emcee_seconds"] = float(
            np.median([r["emcee_seconds"] for r in rows if "emcee_seconds" in r])
        )
    return out


def part_miles(wmin=4500.0, tmin=4000.0, tmax=7000.0, raw_every=3, degree=3, prior="parsec"):
    """MILES stars 4000-7000 K: ``raw`` (the model as it is, every ``raw_every``-th star), ``corrected``
    (2-fold empirical correction) and, when ``prior`` is set, ``corrected+prior`` (the same with
    fit_star's isochrone prior); continuum degree ``degree`` for all."""
    from smnet_sps.empirical import load_empirical
    from smnet_sps.fit import empirical_correction, fit_star
    from smnet_sps.neural import load_generator

    gen = load_generator()
    st = load_empirical(MILES)
    idx = np.flatnonzero((st.teff >= tmin) & (st.teff < tmax))
    idx = idx[np.argsort(st.teff[idx])]
    half = [idx[0::2], idx[1::2]]

    def prep(i):
        f = st.flux[i]
        bad = ~np.isfinite(f) | (st.wavelength < wmin)
        fz = np.where(bad, 1.0, f)
        return np.where(bad, 0.0, f), 1.0 / (0.01 * fz) ** 2, bad

    corr = []
    for h in half:
        data = [prep(i) for i in h]
        corr.append(
            empirical_correction(
                st.wavelength,
                [d[0] for d in data],
                st.teff[h],
                st.logg[h],
                st.logz[h],
                ivars=[d[1] for d in data],
                masks=[d[2] for d in data],
                resolution_fwhm=2.5,
                generator=gen,
                degree=degree,
            )
        )
    rows = []
    for k, h in enumerate(half):
        for j, i in enumerate(h):
            f, iv, bad = prep(i)
            row = {
                "id": int(st.star_id[i]),
                "truth": [float(st.teff[i]), float(st.logg[i]), float(st.logz[i])],
            }
            # the uncorrected model on every raw_every-th star only (CPU time)
            todo = (("raw", None, None),) if j % raw_every == 0 else ()
            todo += (("corrected", corr[1 - k], None),)
            if prior:
                todo += (("corrected+prior", corr[1 - k], prior),)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for label, c, pr in todo:
                    t0 = time.perf_counter()
                    r = fit_star(
                        st.wavelength,
                        f,
                        iv,
                        mask=bad,
                        resolution_fwhm=2.5,
                        generator=gen,
                        model_correction=c,
                        degree=degree,
                        prior=pr,
                    )
                    row[label] = (
                        list(map(float, r.values))
                        + list(map(float, r.errors))
                        + [time.perf_counter() - t0, float(r.chi2_red)]
                    )
            rows.append(row)
        print("half", k, "done", flush=True)
    classes = [
        ("4000-4500", 4000, 4500),
        ("4500-5500", 4500, 5500),
        ("5500-6500", 5500, 6500),
        ("6500-7000", 6500, 7000),
        ("4500-6500 (target)", 4500, 6500),
    ]
    table = []
    tr = np.array([r["truth"] for r in rows])
    for label in ("raw", "corrected", "corrected+prior"):
        has = np.array([label in r for r in rows])
        if not has.any():
            continue
        v = np.array([r.get(label, [np.nan] * 10) for r in rows])
        for name, lo, hi in classes:
            s = (tr[:, 0] >= lo) & (tr[:, 0] < hi) & has
            bt, st_ = robust(v[s, 0] / tr[s, 0] - 1)
            bg, sg = robust(v[s, 1] - tr[s, 1])
            bz, sz = robust(v[s, 2] - tr[s, 2])
            table.append(
                {
                    "model": label,
                    "class": name,
                    "n": int(s.sum()),
                    "teff_bias": bt,
                    "teff_scatter": st_,
                    "logg_bias": bg,
                    "logg_scatter": sg,
                    "logz_bias": bz,
                    "logz_scatter": sz,
                }
            )
    return {
        "wmin": wmin,
        "degree": degree,
        "prior": prior,
        "rows": rows,
        "table": table,
        "median_seconds": float(np.median([r["corrected"][-2] for r in rows])),
        "median_seconds_prior": (
            float(np.median([r["corrected+prior"][-2] for r in rows])) if prior else None
        ),
        "raw_every": raw_every,
    }


def part_ssp(n_mocks=12, snr=50.0, seed=1):
    from smnet_sps.fit import fit_ssp
    from smnet_sps.ssp import ssp_grid
    from smnet_sps.ssp_torch import SSPInterpolator

    log_ages = np.round(np.arange(8.0, 10.1001, 0.05), 3)
    t0 = time.perf_counter()
    full = ssp_grid(10**log_ages, None, progress=False)
    t_grid = time.perf_counter() - t0
    zall = 10**full.ssp_lgmet
    zi_fit = np.arange(0, zall.size, 2)
    ai_fit = np.arange(0, log_ages.size, 2)
    fit_grid = full._replace(
        ssp_lgmet=full.ssp_lgmet[zi_fit],
        ssp_lg_age_gyr=full.ssp_lg_age_gyr[ai_fit],
        ssp_flux=full.ssp_flux[np.ix_(zi_fit, ai_fit)],
    )
    interp = SSPInterpolator(fit_grid)
    wave = full.ssp_wave
    sel = (wave >= 3600) & (wave <= 7400)
    rng = np.random.default_rng(seed)
    held_z = np.setdiff1d(np.arange(1, zall.size - 1), zi_fit)
    held_a = np.setdiff1d(np.arange(1, log_ages.size - 1), ai_fit)
    rows = []
    import ppxf.ppxf as ppxf_mod
    from ppxf import ppxf_util

    for k in range(n_mocks):
        iz, ia = rng.choice(held_z), rng.choice(held_a)
        av = rng.uniform(0.0, 0.6)
        from smnet_sps.ssp_torch import calzetti_attenuation

        f = full.ssp_flux[iz, ia][sel] * calzetti_attenuation(wave[sel], torch.tensor([av]))[0].numpy()
        f = f / np.median(f)
        err = f / snr
        obs = f + err * rng.standard_normal(f.size)
        truth = {
            "log_age": float(log_ages[ia]),
            "logz": float(full.ssp_lgmet[iz] - np.log10(interp.zsun)),
            "av": float(av),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fit_ssp(wave[sel], obs, 1 / err**2, templates=interp)
        row = {"truth": truth, "fit_ssp": r.as_dict()}
        # the same with the kinematics held at the truth, as pPXF gets them below
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rk = fit_ssp(wave[sel], obs, 1 / err**2, templates=interp,
                         bounds={"sigma": (0.0, 1.0), "rv": (-0.5, 0.5)})
        row["fit_ssp_fixed_kinematics"] = rk.as_dict()
        # pPXF with the same templates on a log grid, multiplicative degree 3, no regularisation
        try:
            lam = wave[sel]
            g_log, _ln_lam, velscale = ppxf_util.log_rebin(lam, obs)
            e_log = ppxf_util.log_rebin(lam, err**2)[0] ** 0.5
            tmpl_src = fit_grid.ssp_flux[:, :, sel]
            nz, na = tmpl_src.shape[:2]
            tmpls = np.empty((g_log.size, na, nz))
            for a in range(na):
                for z in range(nz):
                    tmpls[:, a, z] = ppxf_util.log_rebin(lam, tmpl_src[z, a], velscale=velscale)[0]
            # each template normalised to median 1, so the weights are light fractions
            tm = tmpls.reshape(g_log.size, -1)
            tm = tm / np.median(tm, axis=0)
            # kinematics fixed at the truth (v = 0, sigma = 1 km/s: the mock is not broadened)
            pp = ppxf_mod.ppxf(
                tm,
                g_log,
                e_log,
                velscale,
                [0.0, 1.0],
                moments=2,
                degree=-1,
                mdegree=3,
                quiet=True,
                fixed=[0, 1],
                plot=False,
            )
            w = pp.weights.reshape(na, nz)
            lw = w / w.sum()
            la_grid = interp.log_age
            lz_grid = interp.logz
            row["ppxf"] = {
                "log_age": float((lw.sum(1) * la_grid).sum()),
                "logz": float((lw.sum(0) * lz_grid).sum()),
            }
        except Exception as exc:  # report, do not hide
            row["ppxf"] = {"error": repr(exc)}
        rows.append(row)
        print(
            k,
            truth,
            {p: round(row["fit_ssp"][p], 3) for p in ("log_age", "logz", "av")},
            row["ppxf"],
            flush=True,
        )
    da = float(np.median(np.diff(interp.log_age)))
    dz = float(np.median(np.diff(interp.logz)))
    summ = {}
    for m in ("fit_ssp", "fit_ssp_fixed_kinematics", "ppxf"):
        ok = [r for r in rows if "log_age" in r[m]]
        ea = np.array([abs(r[m]["log_age"] - r["truth"]["log_age"]) for r in ok])
        ez = np.array([abs(r[m]["logz"] - r["truth"]["logz"]) for r in ok])
        summ[m] = {
            "n": len(ok),
            "median_abs_dlog_age": float(np.median(ea)),
            "median_abs_dlogz": float(np.median(ez)),
            "frac_age_within_spacing": float(np.mean(ea <= da)),
            "frac_z_within_spacing": float(np.mean(ez <= dz)),
        }
    return {"grid_seconds": t_grid, "age_spacing": da, "logz_spacing": dz, "rows": rows, "summary": summ}


LEVER_NOTES = {
    "base": "as `corrected` above: lambda >= 4500 A, degree 3, flat prior",
    "raw": "no empirical correction",
    "deg1": "continuum degree 1",
    "deg2": "degree 2",
    "deg5": "degree 5",
    "deg8": "degree 8",
    "deg12": "degree 12",
    "w4000": "lambda >= 4000 A",
    "w4800": "lambda >= 4800 A",
    "prior": "isochrone prior (PARSEC, Kroupa, default IsochronePrior)",
    "prior_L": "isochrone prior weighted by L^1.5 (magnitude-limited sample)",
    "rvfix": "rv held within +-5 km/s (MILES spectra are at rest)",
    "nomgb": "Mg b + MgH 5100-5250 A masked",
    "nonad": "Na D 5860-5930 A masked",
    "gwin": "only 4500-4800, 5000-5400, 5800-6000, 6100-6200, 6500-6620 A (gravity windows)",
    "mgbx4": "Mg b 5100-5250 A weighted x4 (ivar)",
    "semi": "semi-empirical generator, 5-fold: each star fitted with a correction network that did not see "
            "it; no 2-fold correction on top",
}


#: the lever results measured with the shipped default model (the other fit_levers*.json: earlier models)
CURRENT_LEVERS = "fit_levers_s3.json"


def _lever_lines(files):
    """The lever table: every configuration of fit_levers.py on the 4500-6500 K stars."""
    from fit_levers import badness, logg_bootstrap, nested, scores

    res = {}
    for f in files:
        res.update(json.loads(f.read_text()))

    def note(name):
        return "; ".join(LEVER_NOTES.get(p, p) for p in name.split("+"))

    lines = [
        "**Levers for log g** (`benchmarks/fit_levers.py`; 4500-6500 K stars, 1 % errors, the 2-fold "
        "empirical correction unless stated; one change at a time from `base`; scatter = 1.4826 MAD):",
        "",
        "| configuration | what changes | n | Teff scatter | log g bias | log g scatter (68 % bootstrap) | "
        "log g change vs `base` (paired) | [M/H] scatter | worst / target | median fit time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        sc = scores(r["rows"])
        b16, b84, dd, dsd = logg_bootstrap(res, name) if "base" in res else (np.nan,) * 4
        lines.append(
            f"| `{name}` | {note(name)} | {sc['n']} | {100 * sc['teff'][1]:.2f} % | {sc['logg'][0]:+.2f} | "
            f"{sc['logg'][1]:.3f} ({b16:.3f}-{b84:.3f}) | {dd:+.3f} +- {dsd:.3f} | {sc['logz'][1]:.3f} | "
            f"{badness(sc):.2f} | {np.median([x['seconds'] for x in r['rows']]):.2f} s |"
        )
    family = [c for c in ("base", "deg5", "deg8", "deg12", "prior", "deg5+prior", "deg8+prior") if c in res]
    every = [c for c in res if c != "raw" and not c.startswith("semi")]
    lines += [""]
    current = [f for f in files if f.name == CURRENT_LEVERS]
    if current:
        cands = list(json.loads(current[0].read_text()))
        sc, chosen = nested(res, cands)
        margin = 0.3 - sc["logg"][1]
        lines += [
            f"**Model of each lever row.** Rows {', '.join(f'`{c}`' for c in cands)} "
            f"(benchmarks/{CURRENT_LEVERS}) were measured with the shipped default model (`semi` = its "
            "semi-empirical correction, one 5-fold model per star that never saw it); every other row was "
            "measured with the earlier default (one shared MLP) and is not comparable to them at the "
            "0.01-dex level. The choices below that mix both are superseded by this one, made on the current "
            f"model only: choosing among {', '.join(f'`{c}`' for c in cands)} on one half of the stars and "
            f"scoring on the other, half 0 gets `{chosen[0]}`, half 1 `{chosen[1]}`; held-out scatter **Teff "
            f"{100 * sc['teff'][1]:.2f} %, log g {sc['logg'][1]:.3f}, [M/H] {sc['logz'][1]:.3f} dex** "
            f"(n {sc['n']}; log g target 0.3 dex, margin {margin:+.3f}).",
            "",
        ]
    cut = HERE / "fit_floor_cut.json"
    if cut.exists():
        # every lever row above was fitted with the shift's old smoothing floor (0.05 model pixels)
        after = {**res, **json.loads(cut.read_text())}
        cands = list(json.loads(cut.read_text()))
        sc, chosen = nested(after, cands)
        each = {c: scores(after[c]["rows"]) for c in cands}
        rows = "; ".join(f"`{c}` {100 * e['teff'][1]:.2f} % / {e['logg'][1]:.3f} / {e['logz'][1]:.3f}"
                         for c, e in each.items())
        lines += [
            "**After the smoothing floor was cut** (fit.py's shift, 0.05 -> 0.001 model pixels, 2026-12-02; "
            "every row above was fitted with 0.05; benchmarks/fit_floor_cut.json, re-run on 2026-12-02 "
            "night with the fit as it is now: the data's LSF (whole in bin mode), the rv start scan, errors "
            "without ivar): "
            "Teff / log g / [M/H] "
            f"scatter {rows}; choosing among them on one half and scoring on the other, half 0 gets "
            f"`{chosen[0]}`, half 1 `{chosen[1]}`; held-out **Teff {100 * sc['teff'][1]:.2f} %, "
            f"log g {sc['logg'][1]:.3f}, [M/H] {sc['logz'][1]:.3f} dex**.",
            "",
        ]
    for label, cands in (("the continuum degree x prior family", family),
                         ("every non-semi-empirical configuration", every)):
        sc, chosen = nested(res, cands)
        lines.append(
            f"Choosing among {label} ({len(cands)}: {', '.join(f'`{c}`' for c in cands)}) on one half of the "
            "stars (smallest worst scatter / target) and scoring the choice on the other half: half 0 gets "
            f"`{chosen[0]}`, half 1 `{chosen[1]}`; held-out scatter Teff {100 * sc['teff'][1]:.2f} %, "
            f"log g {sc['logg'][1]:.3f}, [M/H] {sc['logz'][1]:.3f} dex (n {sc['n']})."
        )
        lines.append("")
    return lines


def report():
    """benchmarks/results_fit.md from the fit_*.json files present."""
    lines = ["## Fitting stars and populations (`benchmarks/bench_fit.py`)", ""]
    p = HERE / "fit_coverage.json"
    if p.exists():
        c = json.loads(p.read_text())
        pe = HERE / "fit_coverage_emcee.json"
        if "emcee" in c:  # emcee on a subset of these mocks: Laplace on the same ones beside it
            same = [r for r in c["rows"] if "emcee" in r]
            tr = np.array([r["truth"] for r in same])
            v, e = (np.array([r["laplace"][k] for r in same]) for k in (0, 1))
            covered = (np.abs(v - tr) <= e).mean(0)
            c["laplace_same_mocks"] = {"n": len(same), "coverage": dict(zip(PARAMS, map(float, covered)))}
        elif pe.exists():   # emcee measured on a separate, smaller set of mocks
            ce = json.loads(pe.read_text())
            if "emcee" in ce:
                c["emcee"] = ce["emcee"]
                c["median_emcee_seconds"] = ce.get("median_emcee_seconds", float("nan"))
                c["laplace_same_mocks"] = ce.get("laplace")
        lines += [
            f"**Generator mocks** ({c['n']} mocks, Teff 4000-8000 K, log g 1-5, [M/H] -1.5..+0.3, "
            "rv +-100 km/s, S/N 30-100, random continuum; model pixels 3600-7400 A). Fraction of mocks "
            "whose 68 % interval covers the truth (target 0.60-0.76):",
            "",
            "| errors | n | Teff | log g | [M/H] | rv | median fit time |",
            "|---|---|---|---|---|---|---|",
        ]
        if c.get("laplace_same_mocks"):
            c["laplace (emcee's mocks)"] = c["laplace_same_mocks"]
        for m in ("laplace", "emcee", "laplace (emcee's mocks)"):
            if m in c:
                cv = c[m]["coverage"]
                t = c.get("median_emcee_seconds", float("nan")) if m == "emcee" else c["median_seconds"]
                lines.append(
                    f"| {m} | {c[m]['n']} | {cv['teff']:.2f} | {cv['logg']:.2f} | {cv['logz']:.2f} | "
                    f"{cv['rv']:.2f} | {t:.2f} s |"
                )
        lines += [
            "",
            f"Fit times with {c['torch_threads']} torch thread(s) while other benchmarks shared the 2 cores "
            "(see **Speed** below for the per-fit time).",
            "",
        ]
    p = HERE / "fit_miles_full.json"       # every star with both models, when that run exists
    p = p if p.exists() else HERE / "fit_miles.json"
    if p.exists():
        m = json.loads(p.read_text())
        lines += [
            (
                f"**MILES calibration stars** (vacuum, lambda >= {m['wmin']:.0f} A, 1 % relative errors, "
                f"degree-{m.get('degree', 3)} continuum; `corrected` = empirical model correction from the "
                "*other* half of the stars, 2-fold; `raw` = the model as it is"
                + ("" if m.get("raw_every", 1) == 1 else f", on 1 star in {m['raw_every']} by Teff")
                + (
                    f"; `corrected+prior` = corrected, with fit_star's `prior={m['prior']!r}` (isochrone "
                    "density, no star's catalogue value in it)"
                    if m.get("prior")
                    else ""
                )
                + "). Bias = median, scatter = 1.4826 MAD of (fit - catalogue); Teff relative. Targets for "
                "4500-6500 K: scatter Teff <= 3 %, log g <= 0.3 dex, [M/H] <= 0.2 dex."
                + (f" {m['note']}" if m.get("note") else "")
            ),
            "",
            "| model | Teff class | n | Teff bias | Teff scatter | log g bias | log g scatter | [M/H] bias | "
            "[M/H] scatter |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in m["table"]:
            lines.append(
                f"| {r['model']} | {r['class']} | {r['n']} | {100 * r['teff_bias']:+.1f} % | "
                f"{100 * r['teff_scatter']:.1f} % | {r['logg_bias']:+.2f} | {r['logg_scatter']:.2f} | "
                f"{r['logz_bias']:+.2f} | {r['logz_scatter']:.2f} |"
            )
        tp = m.get("median_seconds_prior")
        lines += [
            "",
            f"Median fit time {m['median_seconds']:.2f} s"
            + (f" ({tp:.2f} s with the prior: two optimisations)" if tp else "")
            + " (1 torch thread, loaded machine).",
            "",
        ]
    lever_files = sorted(HERE.glob("fit_levers*.json"))
    if lever_files:
        lines += _lever_lines(lever_files)
    p = HERE / "fit_timing.json"
    if p.exists():
        t = json.loads(p.read_text())
        lines += [
            "**Speed** (`bench_fit_timing.py`): one `fit_star` call with default settings on a generator "
            f"mock (182 pixels, 3 starts, Laplace errors), {t['threads']} torch thread(s): median "
            f"{t['median_seconds']:.2f} s over {t['n']} fits (min {t['min_seconds']:.2f} s; machine load "
            f"average {t['load_average'][0]:.1f} on {t.get('cores', 2)} cores). Target: < 2 s on 2 cores.",
            "",
        ]
    p = HERE / "fit_ssp.json"
    if p.exists():
        s_ = json.loads(p.read_text())
        lines += [
            f"**Galaxy mocks** ({len(s_['rows'])} PARSEC SSPs at held-out nodes between the fitting grid's, "
            f"Calzetti A_V 0-0.6, S/N 50, 3600-7400 A; grid spacing {s_['age_spacing']:.2f} dex in age, "
            f"{s_['logz_spacing']:.2f} dex in [M/H]; building the full grid, 43 ages x 15 Z, took "
            f"{s_['grid_seconds']:.0f} s):",
            "",
            "| method | n | median abs d log age | within spacing | median abs d [M/H] | within spacing |",
            "|---|---|---|---|---|---|",
        ]
        for k, v in s_["summary"].items():
            lines.append(
                f"| {k} | {v['n']} | {v['median_abs_dlog_age']:.3f} | {v['frac_age_within_spacing']:.2f} | "
                f"{v['median_abs_dlogz']:.3f} | {v['frac_z_within_spacing']:.2f} |"
            )
        lines.append("")
    write_results(HERE / "results_fit.md", "\n".join(lines) + "\n")
    print(f"wrote {HERE / 'results_fit.md'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["coverage", "miles", "ssp", "all", "report"], default="all")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-emcee", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--suffix", default="", help="appended to the JSON name (fit_<part><suffix>.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raw-every", type=int, default=3,
                    help="miles: fit the uncorrected model on every k-th star")
    ap.add_argument("--degree", type=int, default=3, help="miles: continuum polynomial degree")
    ap.add_argument("--prior", default="parsec",
                    help="miles: fit_star prior of the third variant ('' = none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = (
        ["coverage", "miles", "ssp"] if args.part == "all" else [] if args.part == "report" else [args.part]
    )
    for part in parts:
        if part == "coverage":
            out = part_coverage(args.n, args.n_emcee, seed=args.seed)
        elif part == "miles":
            out = part_miles(raw_every=args.raw_every, degree=args.degree, prior=args.prior or None)
        else:
            out = part_ssp(12 if args.part == "all" else args.n)
        (HERE / f"fit_{part}{args.suffix}.json").write_text(json.dumps(out, indent=1))
        print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
    report()


if __name__ == "__main__":
    main()
