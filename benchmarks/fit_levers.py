"""Which settings of fit_star move the log g scatter on MILES stars (issue #14), each one measured.

Every configuration fits the same MILES calibration stars (4500-6500 K, the target range; 4000-7000 K with
``--all``) and stores one row per star in benchmarks/fit_levers.json (key = configuration name), so that
configurations can be compared star by star and chosen without looking at the stars they are scored on
(``summarise``: for each half of the stars, the configuration is picked on the other half).

Empirical corrections ("halves") are derived exactly as in bench_fit.py: stars 4000-7000 K sorted by Teff,
dealt alternately into two halves; a star is fitted with the correction of the half it is not in.

Run: ``OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fit_levers.py --config base deg1 ...``;
``python benchmarks/fit_levers.py --summary``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MILES = HERE.parent.parent / "shared" / "data" / "empirical" / "miles_calibration"

# name -> settings (wmin, wmax [A vacuum], degree, masked windows [A], prior, correction, generator)
BASE = {"wmin": 4500.0, "wmax": 8000.0, "degree": 3, "mask": [], "prior": None, "correction": "halves",
        "generator": "default", "bounds": None, "n_starts": 3}
CONFIGS = {
    "base": {},
    "raw": {"correction": None},
    "deg0": {"degree": 0},
    "deg1": {"degree": 1},
    "deg2": {"degree": 2},
    "deg5": {"degree": 5},
    "deg8": {"degree": 8},
    "deg12": {"degree": 12},
    "w4000": {"wmin": 4000.0},
    "w4200": {"wmin": 4200.0},
    "w4800": {"wmin": 4800.0},
    "w4500_6800": {"wmax": 6800.0},
    "w4000_deg5": {"wmin": 4000.0, "degree": 5},
    "w3700": {"wmin": 3700.0},
    # gravity windows only: Mg b + MgH (5000-5400), Na D (5800-6000), 4500-4800 blends, Ca I 6162 / Halpha
    "gwin": {"mask_keep": [[4500, 4800], [5000, 5400], [5800, 6000], [6100, 6200], [6500, 6620]]},
    "nomgb": {"mask": [[5100, 5250]]},
    "nonad": {"mask": [[5860, 5930]]},
    "mgbx4": {"weight": [[5100, 5250, 4.0]]},
    "noha": {"mask": [[6520, 6610]]},
    "notell": {"mask": [[6860, 6960], [7160, 7340]]},
    "prior": {"prior": "parsec"},
    "prior_deg2": {"prior": "parsec", "degree": 2},
    "prior_raw": {"prior": "parsec", "correction": None},
    "prior_L": {"prior": {"luminosity_power": 1.5}},
    "prior_p1": {"prior": {"power": 1.0}},
    "prior_p25": {"prior": {"power": 0.25}},
    "prior_padova": {"prior": "padova"},
    "rvfix": {"bounds": {"rv": [-5.0, 5.0]}},
    "starts6": {"n_starts": 6},
    "prior_rvfix": {"prior": "parsec", "bounds": {"rv": [-5.0, 5.0]}},
    "semi": {"generator": "semi-cv", "correction": None},
    "semi_prior": {"generator": "semi-cv", "correction": None, "prior": "parsec"},
    "semi_halves": {"generator": "semi-cv"},
}


def settings(name):
    """Settings of a configuration; ``a+b`` combines configurations a and b (b wins on conflicts)."""
    s = dict(BASE)
    for part in name.split("+"):
        s.update(CONFIGS[part])
    return s


def robust(d):
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    med = np.median(d)
    return float(med), float(1.4826 * np.median(np.abs(d - med)))


def load_stars():
    from smnet_sps.empirical import load_empirical

    st = load_empirical(MILES)
    idx = np.flatnonzero((st.teff >= 4000) & (st.teff < 7000))
    idx = idx[np.argsort(st.teff[idx], kind="stable")]
    half_of = {int(i): k for k, h in enumerate([idx[0::2], idx[1::2]]) for i in h}
    return st, idx, half_of


def prep(st, i, s):
    w = st.wavelength
    f = st.flux[i]
    bad = ~np.isfinite(f) | (w < s["wmin"]) | (w > s["wmax"])
    for lo, hi in s["mask"]:
        bad |= (w >= lo) & (w <= hi)
    if s.get("mask_keep"):
        keep = np.zeros(w.shape, bool)
        for lo, hi in s["mask_keep"]:
            keep |= (w >= lo) & (w <= hi)
        bad |= ~keep
    fz = np.where(bad, 1.0, f)
    ivar = 1.0 / (0.01 * fz) ** 2
    for lo, hi, factor in s.get("weight", []):
        ivar = np.where((w >= lo) & (w <= hi), ivar * factor, ivar)
    return np.where(bad, 0.0, f), ivar, bad


_SEMI = {}


def semi_cv_generators(st, base):
    """5-fold semi-empirical generators (calibrate's fold split); star row -> its held-out generator."""
    if _SEMI:
        return _SEMI
    import tempfile

    from smnet_sps.calibrate import CalibrationSettings, _fit_members, prepare, write_correction
    from smnet_sps.empirical import kfold_ids
    from smnet_sps.semi_empirical import SemiEmpiricalGenerator, probe_ln_flux

    from smnet_sps.calibrate import _base_info

    cs = CalibrationSettings()
    _, base_info = _base_info("default", tempfile.gettempdir())     # the shipped base: recorded as "default"
    data = prepare(st, base, cs)
    probe = probe_ln_flux(base, data.start, data.stop)
    t0 = time.perf_counter()
    for f, (_, held) in enumerate(kfold_ids(st.star_id, st.teff, 5, seed=cs.seed)):
        te = st.rows(held)
        tr = np.setdiff1d(np.arange(len(st)), te)
        nets = _fit_members(data, tr, cs, seed=cs.seed * 1000 + 100 * (f + 1))
        d = Path(tempfile.mkdtemp(prefix=f"semi_fold{f}_"))
        write_correction(d, nets, data, data.params[tr], cs, base_info, base_probe=probe)
        g = SemiEmpiricalGenerator(d, base=base)
        for r in te:
            _SEMI[int(r)] = g
        print(f"semi-empirical fold {f}: {time.perf_counter() - t0:.0f} s", flush=True)
    return _SEMI


def make_prior(spec):
    if spec is None or isinstance(spec, str):
        return spec
    from smnet_sps.stellar_prior import IsochronePrior

    return IsochronePrior(**spec)


def run(name, st, idx, half_of, gen, tmin=4500.0, tmax=6500.0):
    from smnet_sps.fit import empirical_correction, fit_star

    s = settings(name)
    prior = make_prior(s["prior"])
    gens = {int(i): gen for i in idx}
    if s["generator"] == "semi-cv":
        gens = semi_cv_generators(st, gen)
    corr = [None, None]
    if s["correction"] == "halves":
        for k in (0, 1):
            h = [i for i in idx if half_of[int(i)] == k]
            data = [prep(st, i, s) for i in h]
            # always the base model's correction (derived on the other half): with "semi-cv" each star has its
            # own fold generator, and a residual correction on top of those is not defined for a set of stars
            corr[k] = empirical_correction(st.wavelength, [d[0] for d in data], st.teff[h], st.logg[h],
                                           st.logz[h], ivars=[d[1] for d in data], masks=[d[2] for d in data],
                                           resolution_fwhm=2.5, generator=gen, degree=s["degree"])
    rows = []
    t0 = time.perf_counter()
    for i in idx:
        if not tmin <= st.teff[i] < tmax:
            continue
        f, iv, bad = prep(st, i, s)
        c = None if s["correction"] is None else corr[1 - half_of[int(i)]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fit_star(st.wavelength, f, iv, mask=bad, resolution_fwhm=2.5, generator=gens[int(i)],
                         model_correction=c, degree=s["degree"], bounds=s["bounds"],
                         n_starts=s["n_starts"], prior=prior)
        rows.append({"id": int(st.star_id[i]), "half": half_of[int(i)],
                     "truth": [float(st.teff[i]), float(st.logg[i]), float(st.logz[i])],
                     "fit": list(map(float, r.values)), "err": list(map(float, r.errors)),
                     "chi2_red": float(r.chi2_red), "seconds": float(r.seconds)})
    print(f"{name}: {len(rows)} stars in {time.perf_counter() - t0:.0f} s", flush=True)
    return {"settings": s, "rows": rows}


def scores(rows, lo=4500, hi=6500, half=None):
    tr = np.array([r["truth"] for r in rows])
    v = np.array([r["fit"] for r in rows])
    sel = (tr[:, 0] >= lo) & (tr[:, 0] < hi)
    if half is not None:
        sel &= np.array([r["half"] == half for r in rows])
    return {"n": int(sel.sum()),
            "teff": robust(v[sel, 0] / tr[sel, 0] - 1),
            "logg": robust(v[sel, 1] - tr[sel, 1]),
            "logz": robust(v[sel, 2] - tr[sel, 2])}


def summarise(res):
    print(f"{'config':14s} {'n':>4s} {'Teff bias/scat %':>17s} {'logg bias/scat':>15s} "
          f"{'[M/H] bias/scat':>15s}  logg scat half0/half1  median s")
    for name, r in res.items():
        s = scores(r["rows"])
        h = [scores(r["rows"], half=k)["logg"][1] for k in (0, 1)]
        print(f"{name:14s} {s['n']:4d} {100 * s['teff'][0]:+7.1f} {100 * s['teff'][1]:6.2f}    "
              f"{s['logg'][0]:+6.2f} {s['logg'][1]:5.3f}    {s['logz'][0]:+6.2f} {s['logz'][1]:5.3f}"
              f"    {h[0]:.3f} {h[1]:.3f}   {np.median([x['seconds'] for x in r['rows']]):.2f}")


def logg_bootstrap(res, name, ref="base", n=1000, seed=0, lo=4500, hi=6500):
    """68 % bootstrap interval of the log g scatter of ``name`` and the paired change against ``ref``
    (the same resampled stars for both) -> (lo16, hi84, change, change_sd)."""
    def dlogg(c):
        rows = [r for r in res[c]["rows"] if lo <= r["truth"][0] < hi]
        return {r["id"]: r["fit"][1] - r["truth"][1] for r in rows}

    a, b = dlogg(name), dlogg(ref)
    ids = sorted(set(a) & set(b))
    da, db = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])

    def mad(x):
        return 1.4826 * np.median(np.abs(x - np.median(x)), axis=-1)

    k = np.random.default_rng(seed).integers(0, len(ids), (n, len(ids)))
    sa = np.array([mad(da[j]) for j in k])
    sb = np.array([mad(db[j]) for j in k])
    return (float(np.percentile(sa, 16)), float(np.percentile(sa, 84)), float(mad(da) - mad(db)),
            float(np.std(sa - sb)))


def badness(sc):
    """The worst of the three scatters relative to its target (Teff 3 %, log g 0.3 dex, [M/H] 0.2 dex)."""
    return max(sc["teff"][1] / 0.03, sc["logg"][1] / 0.3, sc["logz"][1] / 0.2)


def nested(res, candidates):
    """Choose the configuration on one half of the stars, score it on the other (and vice versa).

    Returns the pooled held-out scores and the choice per half. (The halves' empirical corrections cross
    over -- half k is fitted with the correction from half 1-k -- so the choice made on half 1-k has seen
    half k's spectra through that correction, never its fits.)
    """
    chosen, rows = {}, []
    for k in (0, 1):
        other = {c: badness(scores(res[c]["rows"], half=1 - k)) for c in candidates}
        best = min(other, key=other.get)
        chosen[k] = best
        rows += [r for r in res[best]["rows"] if r["half"] == k]
    return scores(rows), chosen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="*", default=[])
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--nested", nargs="*", default=[], help="candidates for the nested (per-half) choice")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--suffix", default="", help="write benchmarks/fit_levers<suffix>.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = HERE / f"fit_levers{args.suffix}.json"
    res = {}
    for p in sorted(HERE.glob("fit_levers*.json")):
        res.update(json.loads(p.read_text()))
    mine = json.loads(out.read_text()) if out.exists() else {}
    if args.config:
        from smnet_sps.neural import load_generator

        gen = load_generator(device="cpu")
        st, idx, half_of = load_stars()
        for name in args.config:
            if name in res and not args.force:
                continue
            res[name] = mine[name] = run(name, st, idx, half_of, gen)
            out.write_text(json.dumps(mine))
    summarise(res)
    if args.nested:
        sc, chosen = nested(res, [c for c in args.nested if c in res])
        print(f"nested choice among {args.nested}: half 0 <- {chosen[0]}, half 1 <- {chosen[1]}; held-out "
              f"Teff {100 * sc['teff'][1]:.2f} %, log g {sc['logg'][1]:.3f}, [M/H] {sc['logz'][1]:.3f} "
              f"(n {sc['n']})")


if __name__ == "__main__":
    main()
