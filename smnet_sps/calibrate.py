"""Calibrating the semi-empirical correction (:mod:`smnet_sps.semi_empirical`) on observed stars.

Procedure (docs/semi_empirical.md):

1. Each observed star (MILES, air wavelengths, 2.5 A FWHM) is converted to vacuum and binned flux-conservingly
   onto the base model's pixels (~20 A in the optical); pixels not fully covered by good data are masked.
2. The target is y = ln(F_obs / F_base) at the star's catalogue parameters.
3. A small MLP c(lambda; log Teff, log g, [M/H]) (:class:`~smnet_sps.semi_empirical.CorrectionNet`) is fitted
   with a loss blind to each star's smooth shape: per star, the residual y - c has a cubic in 1/lambda fitted
   (masked least squares) and removed inside the loss; the loss is a pseudo-Huber of what remains (robust
   to the few peculiar stars). Catalogue parameters carry errors (~60-100 K, 0.2 dex in log g, 0.1 dex in
   [Fe/H]): the inputs are jittered each step with Gaussian noise of about half that (0.004 dex in log Teff,
   0.1 dex in log g, 0.05 dex in [M/H]; plus weight decay), so the network learns the correction smoothed over
   the error ellipsoid instead of memorising stars (cross-validated scores moved by < 0.01 % between a
   quarter and the full quoted errors). The network is fitted without the wavelength taper; the taper and the
   exact projection off the low-order polynomials are applied when it is used (fitting through the taper
   would inflate the output there and undo it).
4. k-fold cross-validation by star (stratified by Teff class) scores held-out stars with the shared empirical
   comparison procedure; the final correction is an ensemble fitted on all stars.

Everything is seeded (torch + numpy, one thread): the same inputs give the same weights.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .generator import _quiet_coverage
from .model import caller_torch_state_kept
from .progress import want_progress
from .semi_empirical import (FORMAT, PROBE_PARAMS, CorrectionNet, SemiEmpiricalGenerator, base_fingerprint,
                             file_sha256, low_order_basis, probe_ln_flux, wavelength_taper)

__all__ = ["CalibrationSettings", "CalibrationData", "prepare", "fit_correction", "check_correction_folder",
           "write_correction",
           "calibrate", "plot_ssp_comparison", "plot_empirical_weight", "add_cli"]



@dataclass
class CalibrationSettings:
    """Every choice of the calibration (written to config.json)."""

    # a set ending inside taper_lo..taper_hi has the taper end at its first / last corrected pixel instead
    taper_lo: float = 3560.0          # A (vacuum): correction 0 below; MILES starts at 3541.5 A (vacuum)
    taper_hi: float = 7400.0          # A: correction 0 above; MILES ends at 7411.6 A (vacuum)
    taper_width: float = 140.0        # A, sin^2 ramp at each end
    basis_order: int = 3              # Legendre order in 1/lambda of the shape the loss / correction ignore
    width: int = 64
    depth: int = 2
    steps: int = 1500
    lr: float = 3e-3
    weight_decay: float = 1e-4
    huber_delta: float = 0.02         # ln flux; pseudo-Huber transition
    noise: tuple = (0.004, 0.1, 0.05)  # input jitter (dex log Teff, dex log g, dex [M/H])
    members: int = 3                  # ensemble size of the final correction
    density_scales: tuple = (0.03, 0.5, 0.3)   # kernel widths (dex log Teff, log g, [M/H])
    density_n_half: float = 1.0       # effective number of stars at which the weight is 0.63
    min_coverage: float = 0.98        # fraction of a pixel covered by good observed data to use it
    seed: int = 0


# ---- data --------------------------------------------------------------------------------------------
@dataclass
class CalibrationData:
    params: np.ndarray      # (n, 3) log10 Teff, log g, [M/H]
    y: np.ndarray           # (n, n_pix) ln(F_obs / F_base), 0 where masked
    mask: np.ndarray        # (n, n_pix) bool
    start: int              # first correction pixel on the base grid
    stop: int
    wavelength: np.ndarray  # (n_pix,) vacuum [A]
    taper: np.ndarray
    basis: np.ndarray       # (n_pix, order + 1)
    taper_lo: float = None  # the taper's ends [A]: the settings', or the set's corrected range if narrower
    taper_hi: float = None


def prepare(stars, base, settings=None):
    """Targets ln(F_obs / F_base) on the base model's pixels inside the observed range (see module doc).

    ``stars``: :class:`smnet_sps.empirical.EmpiricalStars` (vacuum wavelengths, NaN in gaps).
    """
    from .empirical import _pixel_edges, overlap_matrix, pixel_bounds
    st = settings or CalibrationSettings()
    wl = np.asarray(base.wavelength, float)
    e = _pixel_edges(wl)
    # the comparison's observed pixel bounds: a gap in the wavelength array is no data (not targets)
    obs_bounds = pixel_bounds(np.asarray(stars.wavelength, float))
    obs_lo, obs_hi = obs_bounds[0][0], obs_bounds[1][-1]
    pix = np.flatnonzero((e[:-1] >= obs_lo) & (e[1:] <= obs_hi) & (wl >= st.taper_lo) & (wl <= st.taper_hi))
    taper_lo, taper_hi = _taper_range(st, obs_lo, obs_hi, wl[pix], stars.meta.get("file", stars.name))
    start, stop = int(pix[0]), int(pix[-1]) + 1
    # flux-conserving mean of the observed pixels over each model pixel, and the fraction covered by good data
    ov = overlap_matrix(obs_bounds, e[start:stop + 1])
    good = np.isfinite(stars.flux)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov_len = (ov @ good.T.astype(float)).T
        mean = (ov @ np.where(good, stars.flux, 0.0).T).T / cov_len
    cov = cov_len / np.diff(e[start:stop + 1])
    with _quiet_coverage():                   # a few stars lie outside the base model's coverage
        fbase, _ = base.surface_flux(stars.teff, stars.logg, stars.logz)
    fb = fbase[:, start:stop]
    mask = (cov >= st.min_coverage) & np.isfinite(mean) & (mean > 0) & (fb > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(mask, np.log(np.where(mask, mean, 1.0) / np.where(mask, fb, 1.0)), 0.0)
    w = wl[start:stop]
    return CalibrationData(params=np.stack([np.log10(stars.teff), stars.logg, stars.logz], 1),
                           y=y, mask=mask, start=start, stop=stop, wavelength=w,
                           taper=wavelength_taper(w, taper_lo, taper_hi, st.taper_width),
                           basis=low_order_basis(w, st.basis_order), taper_lo=taper_lo, taper_hi=taper_hi)


def _taper_range(st, obs_lo, obs_hi, w, name):
    """The taper's ends [A]: ``st.taper_lo`` / ``taper_hi``, each moved in to the first / last corrected
    pixel ``w`` where the observed set [obs_lo, obs_hi] ends inside it (MILES cut at 6000 A: the correction
    was cut off where the taper was still 1, a 1.4 % step); ValueError when the two ramps do not fit."""
    lo = st.taper_lo if obs_lo <= st.taper_lo or not w.size else float(w[0])
    hi = st.taper_hi if obs_hi >= st.taper_hi or not w.size else float(w[-1])
    if w.size < 2 or hi - lo < 2 * st.taper_width:
        raise ValueError(f"{name}: covers {obs_lo:.0f}-{obs_hi:.0f} A (vacuum): the correction needs its two "
                         f"taper ramps (2 x {st.taper_width:g} A) inside that and inside {st.taper_lo:g}-"
                         f"{st.taper_hi:g} A; calibrate on a wider set")
    return lo, hi


def _shape_projector(basis, mask):
    """Per star H = (A^T M A)^-1 A^T M: coefficients of the masked least-squares low-order fit. (n, K, P)."""
    A = np.asarray(basis, float)
    m = np.asarray(mask, float)
    G = np.einsum("pk,np,pl->nkl", A, m, A) + 1e-9 * np.eye(A.shape[1])
    return np.linalg.solve(G, np.einsum("pk,np->nkp", A, m))


def fit_correction(data, rows, settings=None, seed=0):
    """Fit one :class:`CorrectionNet` to the stars ``rows`` of ``data`` (deterministic for a given seed; the
    caller's torch random state is left as it was)."""
    with caller_torch_state_kept():
        return _fit_correction(data, rows, settings, seed)


def _fit_correction(data, rows, settings, seed):
    st = settings or CalibrationSettings()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows = np.asarray(rows)
    p = data.params[rows]
    net = CorrectionNet(data.y.shape[1], width=st.width, depth=st.depth, taper=data.taper, basis=data.basis,
                        in_lo=p.min(0), in_hi=p.max(0))
    P = torch.as_tensor(p, dtype=torch.float32)
    Y = torch.as_tensor(data.y[rows], dtype=torch.float32)
    M = torch.as_tensor(data.mask[rows], dtype=torch.float32)
    H = torch.as_tensor(_shape_projector(data.basis, data.mask[rows]), dtype=torch.float32)
    A = torch.as_tensor(data.basis, dtype=torch.float32)
    noise = torch.as_tensor(st.noise, dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, st.steps)
    d2 = st.huber_delta ** 2
    n_good = M.sum()
    for _ in range(st.steps):
        jitter = torch.randn(P.shape, generator=gen) * noise
        r = (Y - net(P + jitter, shaped=False)) * M
        coef = torch.einsum("nkp,np->nk", H, r)
        rp = (r - coef @ A.T) * M
        loss = (d2 * (torch.sqrt(1.0 + rp ** 2 / d2) - 1.0)).sum() / n_good
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


# ---- writing a correction directory --------------------------------------------------------------------
def check_correction_folder(out, base_dir=None, option="out"):
    """Refuse a folder a correction must not be written to: the base model's own folder (``base_dir``), or
    one whose config.json declares another format than a correction's (a model's: the correction replaced its
    config.json, and the model was gone). An earlier correction there may be replaced (so may a config.json
    that declares no format: an unreadable one). ``option`` names the folder in messages."""
    from .neural import MODEL_FORMAT, _config_format
    out = Path(out)
    if base_dir is not None and out.resolve() == Path(base_dir).resolve():
        raise ValueError(f"{option} {str(out)!r} is the base model's own folder; a correction goes to a "
                         "folder of its own (writing it there replaced the model's config.json)")
    fmt = _config_format(out)
    if fmt is not None and fmt != FORMAT:
        what = ("a model (config.json of format " + repr(MODEL_FORMAT) + ")" if fmt == MODEL_FORMAT
                else f"a config.json of format {fmt!r}, not a semi-empirical correction's")
        raise ValueError(f"{option} {str(out)!r} holds {what}; a correction never replaces it: give another "
                         "folder")


def write_correction(out, nets, data, star_params, settings, base_info, extra=None, base_probe=None):
    """Write a correction directory that :class:`~smnet_sps.semi_empirical.SemiEmpiricalGenerator` reads.

    ``base_probe``: :func:`~smnet_sps.semi_empirical.probe_ln_flux` of the base model, checked at every load.
    """
    st = settings
    out = Path(out)
    check_correction_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    # Every file is written under a temporary name first, then the old config.json goes, the new files are
    # renamed into place, and the new config.json comes last, recording each file's sha256 (checked at load).
    # Written in place, an interruption left new weights beside the old config and stars, and the folder
    # loaded silently with spectra up to 76 % off.
    files = []
    for m, net in enumerate(nets):
        fname = f"correction_{m}.pt"
        state = {k: v.detach().clone().float() for k, v in net.state_dict().items()}
        torch.save(state, out / (fname + ".part"))
        files.append(fname)
    sp = np.asarray(star_params, float)
    probe = {} if base_probe is None else {"probe_params": PROBE_PARAMS, "probe_ln_flux": base_probe}
    with open(out / "stars.npz.part", "wb") as handle:
        np.savez_compressed(handle, log_teff=sp[:, 0].astype(np.float32), logg=sp[:, 1].astype(np.float32),
                            logz=sp[:, 2].astype(np.float32), **probe)
    staged = files + ["stars.npz"]
    sha = {fname: file_sha256(out / (fname + ".part")) for fname in staged}
    cfg = {"format": FORMAT, "format_version": 1, "name": "semi-empirical",
           "base": base_info,
           "pixels": {"start": int(data.start), "stop": int(data.stop), "n": int(data.stop - data.start),
                      "wavelength": [float(w) for w in data.wavelength]},
           "taper": {"lo": st.taper_lo if data.taper_lo is None else data.taper_lo,
                     "hi": st.taper_hi if data.taper_hi is None else data.taper_hi, "width": st.taper_width,
                     "doc": "sin^2 ramps; correction 0 outside [lo, hi] [A, vacuum]"},
           "basis_order": st.basis_order,
           "network": {"width": st.width, "depth": st.depth, "weights_files": files,
                       "weights_sha256": [sha[f] for f in files],
                       "doc": "mean of the members; each: MLP (log10 Teff, log g, [M/H]) -> ln-flux "
                              "correction, orthogonal to Legendre P0..P3 in 1/lambda, times the taper"},
           "density": {"stars_file": "stars.npz", "stars_sha256": sha["stars.npz"],
                       "scales": list(st.density_scales),
                       "n_half": st.density_n_half,
                       "weight_floor": 1e-9,
                       "doc": "empirical weight = 1 - exp(-(n_eff/n_half)^2), n_eff = sum over calibration "
                              "stars of exp(-d^2/2), d in units of scales (dex log Teff, log g, [M/H])"},
           "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(st).items()},
           "citation": ("MILES: Sanchez-Blazquez et al. 2006, MNRAS 371, 703; Cenarro et al. 2007, MNRAS "
                        "374, 664; Falcon-Barroso et al. 2011, A&A 532, A95")}
    cfg.update(extra or {})
    (out / "config.json.part").write_text(json.dumps(cfg, indent=1))
    (out / "config.json").unlink(missing_ok=True)        # from here until the end the folder does not load
    for stale in out.glob("correction_*.pt"):             # a previous calibration may have had more members
        stale.unlink()
    for fname in staged + ["config.json"]:
        os.replace(out / (fname + ".part"), out / fname)
    return out


def _base_info(name, out):
    """The base model's directory and what the correction written to ``out`` records of it."""
    from .semi_empirical import _base_directory, base_record
    d = _base_directory(name)
    cfg = json.loads((d / "config.json").read_text())
    return d, {**base_record(d, out), "model_name": cfg.get("name", ""), **base_fingerprint(d),
               "grid_sha256": cfg.get("grid_sha256", "")}


def _fit_members(data, rows, st, seed, progress=None):
    nets = []
    for m in range(st.members):
        nets.append(fit_correction(data, rows, st, seed=seed + m))
        if progress is not None:
            progress.update(1)
    return nets


def calibrate(empirical, out, base="default", folds=5, settings=None, grid=None, progress=None):
    """Fit the semi-empirical correction on an empirical set and write it (plus a k-fold CV report) to
    ``out``.

    Parameters
    ----------
    empirical : directory of the empirical set (``shared/data/empirical/miles_calibration``)
    out : output directory (the shipped one is ``smnet_sps/data/semi_empirical_model``); an earlier
        correction there is replaced, a folder holding a model (the base's own included) refused (ValueError)
    base : ``"default"`` (the shipped model) or the path of a model directory (``smnet-sps train`` or
        ``experts`` output): the correction records "default", or the model's absolute path and its path
        relative to the correction (:func:`smnet_sps.semi_empirical.base_record`)
    folds : k of the stratified k-fold cross-validation by star: 0 (none) or 2 to the number of stars
        (ValueError otherwise, before the base model is loaded); with folds, a set none of whose stars can be
        scored (observed on under half of the comparison grid) is refused before the fit (ValueError)
    grid : optional union grid file; adds CK04 (+ BaSeL) interpolation to the report
    progress : bool or None, a tqdm bar (on stderr) over the networks fitted; None (default): drawn when
        stderr is a terminal or in a Jupyter kernel, never into a log file (:mod:`smnet_sps.progress`)
    Returns the dict of cross-validated scores (name -> EmpiricalScore).

    Runs on one torch thread (reproducible weights); the caller's thread count and torch random state are
    restored afterwards (they were left at 1 thread and the last member's seed).
    """
    progress = want_progress(progress)
    with caller_torch_state_kept():
        torch.set_num_threads(1)
        return _calibrate(empirical, out, base, folds, settings, grid, progress)


def _check_seed(seed, option):
    """ValueError unless ``seed`` is an integer from 0 to 2**32 - 1: a negative one stopped in numpy's
    random generator ('expected non-negative integer', naming no option) after the stars and the base model
    were loaded, and one above ~1.8e16 would overflow torch's seeds (seed x 1000 + fold offsets)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"{option} must be an integer from 0 to 2**32 - 1; got {seed!r}")


def _check_folds(folds, stars):
    """ValueError unless ``folds`` (``--folds``) is 0 or 2 to the number of ``stars`` (each fold holds out
    a star; 1000 folds of 471 stars were refused only after the base model and the targets, by kfold_ids,
    naming neither the option nor the file)."""
    if folds and not 2 <= folds <= len(stars):
        raise ValueError(f"--folds must be 0 (no cross-validation) or from 2 to the number of stars in "
                         f"{stars.meta.get('file', stars.name)} ({len(stars)}); got {folds}")


def _check_scorable(stars, base_gen, folds):
    """ValueError when the cross-validation could score no star of ``stars`` on the base model's pixels
    (:func:`~smnet_sps.empirical.check_scorable`): a set observed at 6500-7410 A only was fitted fold by fold
    and reported as '-' cells and an all-nan cv_per_star.csv, exit status 0."""
    from .empirical import check_scorable
    try:
        check_scorable(stars, base_gen.wavelength)
    except ValueError as exc:
        raise ValueError(f"{exc}; --folds {folds} would write a cross-validation report without a score: "
                         "give stars observed over the comparison grid, or --folds 0 to fit the correction "
                         "without a report") from None


def _calibrate(empirical, out, base, folds, settings, grid, progress):
    from tqdm.auto import tqdm

    from .empirical import kfold_ids, load_empirical, score_spectra
    from .neural import load_generator
    from .semi_empirical import SemiEmpiricalGenerator

    st = settings or CalibrationSettings()
    _check_seed(st.seed, "settings.seed")
    t0 = time.time()
    stars = load_empirical(empirical)
    _check_folds(folds, stars)                      # before the base model and the targets
    base_dir, base_info = _base_info(base, out)
    check_correction_folder(out, base_dir)          # before the (minutes-long) fit
    base_gen = load_generator(base_dir, device="cpu")
    if folds:
        _check_scorable(stars, base_gen, folds)     # before the fit and any file
    data = prepare(stars, base_gen, st)
    probe = probe_ln_flux(base_gen, data.start, data.stop)
    out = Path(out)
    n_fit = st.members * ((folds or 0) + 1)
    # closed also on an error: the error is then printed on its own line, not after the bar
    with tqdm(total=n_fit, desc="fitting corrections", unit="net", disable=not progress) as bar:
        scores = {}
        if folds:
            import tempfile
            # NaN / -1 until a fold fills them: a row no fold reaches shows, instead of uninitialised memory
            pred = np.full((len(stars), base_gen.wavelength.size), np.nan)
            fold_of = np.full(len(stars), -1)
            for f, (_, held) in enumerate(kfold_ids(stars.star_id, stars.teff, folds, seed=st.seed)):
                te = stars.rows(held)
                tr = np.setdiff1d(np.arange(len(stars)), te)
                fold_of[te] = f
                nets = _fit_members(data, tr, st, seed=st.seed * 1000 + 100 * (f + 1), progress=bar)
                with tempfile.TemporaryDirectory() as tmp:
                    write_correction(tmp, nets, data, data.params[tr], st, base_info, base_probe=probe)
                    gen = SemiEmpiricalGenerator(tmp, base=base_gen)
                    pred[te] = _quiet_flux(gen, stars.teff[te], stars.logg[te], stars.logz[te])
            scores["semi-empirical (CV)"] = score_spectra("semi-empirical (CV)", base_gen.wavelength, pred,
                                                          stars)
            scores["semi-empirical (CV)"].fold = fold_of
        nets = _fit_members(data, np.arange(len(stars)), st, seed=st.seed * 1000, progress=bar)
    write_correction(out, nets, data, data.params, st, base_info, base_probe=probe,
                     extra={"empirical_set": f"{Path(stars.meta.get('file', '')).name} ({len(stars)} stars, "
                                             f"sha256 {file_sha256(stars.meta['file'])[:16]}...)"
                                             if stars.meta.get("file")
                            else stars.name,
                            "calibrated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "fit_seconds": round(time.time() - t0, 1)})
    if folds:
        scores.update(_baseline_scores(stars, base_gen, grid))
        _write_report(out, scores, folds, st, time.time() - t0)
    else:
        for stale in ("cv_report.md", "cv_per_star.csv"):   # an earlier correction's report, not this one's
            (out / stale).unlink(missing_ok=True)
    return scores


def _quiet_flux(gen, teff, logg, logz):
    with _quiet_coverage():
        return gen.surface_flux(teff, logg, logz)[0]


def _baseline_scores(stars, base_gen, grid=None):
    from .baselines import InterpolatedLibraryGenerator, nearest_star_flux
    from .empirical import score_generator, score_spectra
    from .semi_empirical import is_shipped_model
    # the base model's own score, under its name ("default" for the shipped one)
    label = f"{'default' if is_shipped_model(base_gen.directory) else base_gen.name} (theory)"
    out = {label: score_generator(base_gen, stars, name=label)}
    if grid is not None:
        from .grid import load_grid
        interp = InterpolatedLibraryGenerator(load_grid(grid), ("ck04", "basel22"), name="CK04 interpolation")
        out["CK04 interpolation"] = score_generator(interp, stars, name="CK04 interpolation")
    flux, _ = nearest_star_flux(stars)
    out["nearest other MILES star"] = score_spectra("nearest other MILES star", stars.wavelength, flux, stars)
    return out


def _write_report(out, scores, folds, st, seconds):
    import csv

    from .empirical import format_class_table, unscored_lines
    lst = list(scores.values())
    semi = scores["semi-empirical (CV)"]
    text = [f"# Semi-empirical correction: {folds}-fold cross-validation by star", "",
            f"Held-out stars (stratified by Teff class, seed {st.seed}); each fold's correction (ensemble of "
            f"{st.members}) was fitted without its held-out stars, and its empirical weight uses only the "
            "fitted stars. Per-star median |residual| [%] with the shared comparison procedure "
            "(smnet_sps.empirical: vacuum, 40 A FWHM, cubic in 1/lambda removed); cells: median over stars "
            "(n stars). The baselines need no fit: the theoretical base model the correction sits on, and "
            "each star predicted by its nearest other MILES star.",
            "", "## Median over stars", "", format_class_table(lst, "median"), "",
            "## 90th percentile over stars", "", format_class_table(lst, "p90"), "",
            "## Stars without a score", "", *unscored_lines(lst), "",
            f"Total time {seconds:.0f} s (one CPU thread)."]
    (out / "cv_report.md").write_text("\n".join(text) + "\n")
    with open(out / "cv_per_star.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        from .validate import PARAMETER_COLUMNS
        w.writerow(["miles_id", *PARAMETER_COLUMNS, "fold"] + [f"{k} [%]" for k in scores])
        for i in range(len(semi.star_id)):
            w.writerow([int(semi.star_id[i]), semi.teff[i], semi.logg[i], semi.logz[i], int(semi.fold[i])]
                       + [f"{100 * s.score[i]:.4f}" for s in lst])


# ---- figures -------------------------------------------------------------------------------------------
def plot_ssp_comparison(wavelength, theory, semi, labels, wave_range=(3000.0, 9000.0),
                        empirical_range=(3560.0, 7400.0), theory_name="default"):
    """Figure: SSP spectra from the theoretical and the semi-empirical generator, and their ratio.

    wavelength [A, vacuum] (n_wave,); theory, semi: (n_ssp, n_wave) L_lambda; labels: one per SSP;
    theory_name: the theoretical (base) model's name in the legend.
    Top: both spectra (normalised at 5500 A, offset per SSP); bottom: semi / theory. The range where the
    correction acts is shaded.
    """
    import matplotlib.pyplot as plt
    w = np.asarray(wavelength, float)
    theory, semi = np.atleast_2d(theory), np.atleast_2d(semi)
    labels = list(labels)
    # checked before the figure exists: an IndexError from inside the loop left the figure open in pyplot
    if w.ndim != 1 or theory.shape != semi.shape or theory.shape[1] != w.size or len(labels) != len(theory):
        raise ValueError(f"plot_ssp_comparison needs theory and semi of shape (n_ssp, n_wave) = "
                         f"({len(labels)}, {w.size}) (one label per SSP, one column per wavelength); got "
                         f"theory {theory.shape}, semi {semi.shape}, {len(labels)} labels, "
                         f"wavelength {w.shape}")
    sel = (w >= wave_range[0]) & (w <= wave_range[1])
    j = int(np.argmin(np.abs(w - 5500.0)))
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for k, lab in enumerate(labels):
        off = 1.0 * k
        ax.plot(w[sel], theory[k, sel] / theory[k, j] + off, color=f"C{k}", lw=1.0, ls="--",
                label=f"{lab}: {theory_name} (theory)")
        ax.plot(w[sel], semi[k, sel] / semi[k, j] + off, color=f"C{k}", lw=1.2,
                label=f"{lab}: semi-empirical")
        axr.plot(w[sel], semi[k, sel] / theory[k, sel], color=f"C{k}", lw=1.2, label=lab)
    for a in (ax, axr):
        a.axvspan(*empirical_range, color="0.9", zorder=0)
    ax.set_ylabel("L_lambda / L_lambda(5500 A) + offset")
    ax.legend(fontsize=7, ncol=2)
    axr.axhline(1.0, color="0.5", lw=0.8)
    axr.set_ylabel("semi-empirical / theory")
    axr.set_xlabel("vacuum wavelength [A]")
    fig.suptitle("SSPs: theoretical vs semi-empirical stellar library (shaded: MILES-calibrated range)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_empirical_weight(gen, logz_values=(-1.0, 0.0), n=160):
    """Figure: the empirical weight of a :class:`~smnet_sps.semi_empirical.SemiEmpiricalGenerator` over
    (Teff, log g) at a few [M/H], with the calibration stars within 0.25 dex of each [M/H] overplotted.

    Teff [K] 2,500-40,000 and log g [cgs] -0.5..6 on an ``n`` x ``n`` grid; ``logz_values``: [M/H] [dex] of
    the panels, one or more."""
    import matplotlib.pyplot as plt
    # checked before the figure exists: the default (theoretical) model has no calibration stars, and its
    # AttributeError ('_stars') left the figure open in pyplot
    if not isinstance(gen, SemiEmpiricalGenerator):
        raise ValueError(f"plot_empirical_weight needs the semi-empirical generator "
                         f"(load_generator(\"semi-empirical\")); got {type(gen).__name__}")
    from .mixture import panel_grid
    logz_values, n = panel_grid("plot_empirical_weight", logz_values, n)
    lt = np.linspace(np.log10(2500.0), np.log10(40000.0), n)
    lg = np.linspace(-0.5, 6.0, n)
    T, G = np.meshgrid(lt, lg)
    fig, axes = plt.subplots(1, len(logz_values), figsize=(4.6 * len(logz_values) + 1.2, 4.2), squeeze=False,
                             constrained_layout=True)
    stars = gen._stars
    ticks = [3000, 4000, 6000, 10000, 20000, 40000]
    for ax, z in zip(axes[0], logz_values):
        w = gen.empirical_weight(10 ** T.ravel(), G.ravel(), np.full(T.size, z)).reshape(T.shape)
        im = ax.pcolormesh(lt, lg, w, vmin=0, vmax=1, cmap="viridis", shading="auto")
        near = np.abs(stars[:, 2] - z) < 0.25
        ax.plot(stars[near, 0], stars[near, 1], "w.", ms=3,
                label=f"MILES stars, [Fe/H] {z - 0.25:+.2f}..{z + 0.25:+.2f}")
        ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
        ax.set_xlim(lt[-1], lt[0])
        ax.set_ylim(lg[-1], lg[0])
        ax.set_xlabel("Teff [K]")
        ax.set_ylabel("log g [cgs]")
        ax.set_title(f"empirical weight, [M/H] = {z:+g}", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(im, ax=axes[0].tolist(), label="0: theoretical model, 1: set by observed stars")
    return fig


# ---- command line ---------------------------------------------------------------------------------------
def add_cli(sub):
    p = sub.add_parser("calibrate", help="fit the semi-empirical correction on observed stars (MILES)",
                       description="Fit the semi-empirical correction on top of a base model, with a k-fold "
                                   "cross-validation report (cv_report.md, cv_per_star.csv) in --out.")
    p.add_argument("--empirical", required=True,
                   help="empirical set directory (shared/data/empirical/miles_calibration)")
    p.add_argument("--base", default="default",
                   help="base model: 'default' (the shipped model, the default) or a model directory")
    p.add_argument("--out", required=True, help="output directory (shipped: "
                                                "smnet_sps/data/semi_empirical_model)")
    p.add_argument("--folds", type=int, default=5,
                   help="k of the k-fold cross-validation by star: 0 (none) or 2 to the number of stars "
                        "(default 5)")
    p.add_argument("--grid", default=None, help="union grid file: adds CK04 interpolation to the report")
    p.add_argument("--seed", type=int, default=0,
                   help="randomness of the networks' initial weights and of the fold assignment (default 0)")
    p.add_argument("--members", type=int, default=None, help="ensemble size (default 3)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per network (default 1500)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a correction already in --out (the shipped one included); a folder holding "
                        "a model is never written to")
    p.set_defaults(func=_cli)


#: what ``smnet-sps calibrate --out DIR`` writes (a correction, and the CV report with --folds)
CORRECTION_FILES = ("config.json", "stars.npz", "correction_*.pt", "cv_report.md", "cv_per_star.csv")


def _cli(args):
    from .cli import show_progress
    from .output_files import check_output_folder
    # every option checked before the stars, the base model and the (minutes-long) fit; --folds against the
    # number of stars as soon as they are loaded (_check_folds, before the base model)
    _check_seed(args.seed, "--seed")
    st = CalibrationSettings(seed=args.seed)
    for option, value in (("--members", args.members), ("--steps", args.steps)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1 (or left out for the default), got {value}")
    if args.members is not None:
        st.members = args.members
    if args.steps is not None:
        st.steps = args.steps
    if args.folds < 0 or args.folds == 1:
        raise ValueError(f"--folds must be 0 (no cross-validation) or >= 2, got {args.folds}")
    if args.grid is not None:
        # the grid is read for the baseline after the whole fit: a wrong one failed minutes later, with the
        # correction half written
        from .grid import load_grid
        libraries = load_grid(args.grid).library_names
        missing = sorted({"ck04", "basel22"} - set(libraries))
        if missing:
            raise ValueError(f"--grid {args.grid}: holds {list(libraries)}; the CK04 interpolation baseline "
                             f"(CK04, BaSeL below 3,500 K) needs {missing} too")
    from .semi_empirical import _base_directory
    # a model's folder (the base's own included) is refused, --overwrite or not: it replaces a correction only
    check_correction_folder(args.out, _base_directory(args.base), option="--out")
    check_output_folder(args.out, CORRECTION_FILES, overwrite=args.overwrite, what="a correction")
    scores = calibrate(args.empirical, args.out, base=args.base, folds=args.folds, settings=st,
                       grid=args.grid, progress=show_progress(args))
    print(f"wrote the correction to {args.out}")
    if scores:
        from .empirical import format_class_table
        print(format_class_table(list(scores.values())))
    return 0
