"""``smnet-sps validate``: generators against observed stars, and the default mixture's library ranking.

::

    smnet-sps validate --empirical DIR [--generator NAME_OR_PATH] [--library NAME] [--ids FILE] [--out DIR]
                       [--grid GRID.h5] [--imitations] [--kfold K] [--seed S]
    smnet-sps validate --empirical DIR --rank-libraries [--ids FILE] --write-mixture MODEL_DIR

The first form scores the generator (and, with ``--imitations``, each of its library imitations; with
``--grid``, linear interpolation of CK04 + BaSeL; always the nearest other observed star) with the procedure
of :mod:`smnet_sps.empirical`, prints a median per Teff / log g class, and writes to ``--out``: ``classes.md``
and ``classes.ecsv`` (median and p90 per class and source; classes.md and stdout also list the stars
without a score), ``per_star.csv`` (one row per star, one column per
source: the star's median |residual| [%]) and ``worst_residuals.png``. ``--kfold K`` adds the honest test of
the default mixture: stars are split into K stratified folds; for each, the library preferences are ranked on
the other K-1 folds and the default mixture so obtained is scored on the held-out fold (the nearest-star
baseline draws from the other folds too).

The second form ranks the libraries per region on the given (tuning) stars and writes the model's
``mixture.json`` (:mod:`smnet_sps.mixture`).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .empirical import (COMPARISON_GRID, DEFAULT_WORST_STARS, MAX_WORST_STARS, EmpiricalScore, check_scorable,
                        class_table, format_class_table, kfold_ids, load_empirical, plot_worst_residuals,
                        score_generator, score_spectra, unscored_lines)
from .mixture import MIXTURE_FILE, LibraryMixture, blend_log_flux, rank_libraries
from .progress import want_progress

__all__ = ["imitation_log_flux", "imitation_scores", "rank_on_stars", "mixture_score", "kfold_validation",
           "baseline_scores", "interpolation_libraries", "load_any_generator", "add_cli"]

#: what ``smnet-sps validate --out DIR`` writes
REPORT_FILES = ("classes.md", "classes.ecsv", "per_star.csv", "worst_residuals.png")
# the catalogue parameters' columns in the per-star CSVs (here and calibrate's cv_per_star.csv), with units as
# the score columns carry theirs ([M/H] is MILES's [Fe/H], used as [M/H])
PARAMETER_COLUMNS = ("teff [K]", "logg [cgs]", "logz [dex]")


def load_any_generator(name_or_path=None, device="cpu", meta=None):
    """``None`` (the shipped model), ``"blackbody"``, a model directory or a released ``.pt`` with
    ``meta``."""
    from .neural import load_generator, load_generator_option
    return load_generator_option(name_or_path, meta, device=device) or load_generator(None, device=device)


def imitation_log_flux(gen, stars):
    """log10 F_lambda of every library imitation at the stars, shape (n_libraries, n_stars, n_wave)."""
    from .generator import _quiet_coverage
    out = []
    with _quiet_coverage():
        for lib in gen.library_names:
            f, _ = gen.surface_flux(stars.teff, stars.logg, stars.logz, library=lib)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.log10(f))
    return np.array(out)


def _support(gen, stars, policy=None):
    mix = LibraryMixture(gen.library_names, gen.library_boxes, gen.nodes, policy)
    return mix, mix.support(np.log10(stars.teff), stars.logg, stars.logz).T > 0


def imitation_scores(gen, stars, log_flux=None):
    """One :class:`EmpiricalScore` per library imitation (scored at every star, in or outside its box)."""
    log_flux = imitation_log_flux(gen, stars) if log_flux is None else log_flux
    _, supported = _support(gen, stars)
    return [score_spectra(f"{lib} imitation", gen.wavelength, 10.0 ** log_flux[j], stars, supported[j])
            for j, lib in enumerate(gen.library_names)]


def rank_on_stars(gen, stars, scores=None, log_flux=None, meta=None):
    """:func:`smnet_sps.mixture.rank_libraries` from the library imitations' scores on ``stars``."""
    scores = imitation_scores(gen, stars, log_flux) if scores is None else scores
    _, supported = _support(gen, stars)
    m = {"stars": len(stars), "empirical_set": stars.name, "model": gen.name,
         "command": "smnet-sps validate --empirical DIR --rank-libraries --write-mixture MODEL_DIR"}
    m.update(meta or {})
    return rank_libraries(gen.library_names, np.array([s.score for s in scores]), stars.teff, stars.logg,
                          supported, meta=m)


def mixture_score(gen, stars, policy, log_flux, name="default mixture"):
    """Score of the default mixture under ``policy`` (a MixturePolicy, or None = equal weights), computed as
    the generator does: the weighted geometric mean of the library imitations."""
    mix, _ = _support(gen, stars, policy)
    w = mix.weights(np.log10(stars.teff), stars.logg, stars.logz)
    inside = gen.in_coverage(stars.teff, stars.logg, stars.logz)
    return score_spectra(name, gen.wavelength, 10.0 ** blend_log_flux(log_flux, w), stars, inside)


#: the nearest-star baseline's column when a one-star set has no other star to draw from
NO_OTHER_STAR = "nearest other star: none (the set holds one star)"


def interpolation_libraries(grid, option="grid"):
    """The libraries of the interpolation baseline that ``grid`` holds: CK04, and BaSeL below 3500 K;
    ValueError naming ``option`` and the grid's libraries when it holds neither (the baseline failed after
    the scoring with numpy's "zero-size array to reduction operation minimum")."""
    libs = [n for n in ("ck04", "basel22") if n in grid.library_names]
    if not libs:
        raise ValueError(f"{option} {getattr(grid, 'path', '')!r}: holds {list(grid.library_names)}; the "
                         "interpolation baseline needs ck04 (and basel22 below 3500 K): give a grid built "
                         "with them, or leave out the option")
    return libs


def baseline_scores(stars, grid=None, pool=None):
    """Scores of the baselines: CK04 (+ BaSeL below 3500 K) interpolation (if ``grid``), nearest other star
    (from ``pool``, default ``stars``; a set of one star with no other pool gets an empty column named
    :data:`NO_OTHER_STAR`: the baseline is skipped, the rest of the report made)."""
    from .baselines import InterpolatedLibraryGenerator, lonely_stars, nearest_star_flux
    out = []
    if grid is not None:
        libs = interpolation_libraries(grid)
        interp = InterpolatedLibraryGenerator(grid, libs, name="interpolated " + "+".join(libs))
        out.append(score_generator(interp, stars))
    if lonely_stars(stars, pool).any():
        none = np.full((len(stars), COMPARISON_GRID.size), np.nan)
        out.append(EmpiricalScore(NO_OTHER_STAR, stars.star_id.copy(), stars.teff.copy(), stars.logg.copy(),
                                  stars.logz.copy(), none, np.full(len(stars), np.nan),
                                  np.ones(len(stars), bool)))
        return out
    flux, _ = nearest_star_flux(stars, pool)
    out.append(score_spectra("nearest other star", stars.wavelength, flux, stars))
    return out


def _concat(parts, name):
    """One EmpiricalScore from per-fold pieces."""
    cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in
           ("star_id", "teff", "logg", "logz", "residual", "score", "inside")}
    return EmpiricalScore(name, cat["star_id"], cat["teff"], cat["logg"], cat["logz"], cat["residual"],
                          cat["score"], cat["inside"], parts[0].grid, parts[0].fwhm)


def kfold_validation(gen, stars, k=5, seed=0, grid=None, progress=False):
    """Held-out scores: for each of k stratified folds, rank the libraries on the other folds and score the
    resulting default mixture on the fold. Returns (list of EmpiricalScore over all held-out stars: default
    (k-fold ranked), equal-weight mixture, each library imitation, baselines; list of the k policies).
    ``progress``: a tqdm bar over the folds (off by default; None: on a terminal or in a Jupyter kernel only,
    :mod:`smnet_sps.progress`)."""
    progress = want_progress(progress)
    log_flux = imitation_log_flux(gen, stars)
    imit = imitation_scores(gen, stars, log_flux)
    folds = kfold_ids(stars.star_id, stars.teff, k=k, seed=seed)
    interp = None
    if grid is not None:
        from .baselines import InterpolatedLibraryGenerator
        libs = interpolation_libraries(grid)
        interp = score_generator(InterpolatedLibraryGenerator(grid, libs), stars,
                                 name="interpolated " + "+".join(libs))
    parts = {"default": [], "equal": [], "nearest": []}
    policies = []
    it = range(len(folds))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="folds")
    for f in it:
        tune_ids, test_ids = folds[f]
        tr, te = stars.rows(tune_ids), stars.rows(test_ids)
        tune = stars.select(tune_ids)
        test = stars.select(test_ids)
        policy = rank_on_stars(gen, tune, [s.subset(tr) for s in imit],
                               meta={"fold": f, "k": k, "seed": seed})
        policies.append(policy)
        parts["default"].append(mixture_score(gen, test, policy, log_flux[:, te],
                                              "default (ranked on other folds)"))
        parts["equal"].append(mixture_score(gen, test, None, log_flux[:, te], "equal-weight mixture"))
        flux, _ = _nearest(test, tune)
        parts["nearest"].append(score_spectra("nearest tuning star", stars.wavelength, flux, test))
    order = np.concatenate([stars.rows(te) for _, te in folds])
    out = [_concat(parts["default"], "default (ranked on other folds)"),
           _concat(parts["equal"], "equal-weight mixture")]
    out += [s.subset(order) for s in imit]
    if interp is not None:
        out.append(interp.subset(order))
    out.append(_concat(parts["nearest"], "nearest tuning star"))
    return out, policies


def _nearest(stars, pool):
    from .baselines import nearest_star_flux
    return nearest_star_flux(stars, pool)


# --------------------------------------------------------------------------------------------- CLI
def add_cli(sub):
    from .neural import add_meta_option
    p = sub.add_parser("validate", help="score generators against observed stars; rank the default mixture",
                       description="Score a generator against observed stars with the MILES calibration "
                                   "set's procedure (per Teff / log g class, per star, worst residuals), "
                                   "and rank the libraries per region for the default mixture.")
    p.add_argument("--empirical", required=True, help="directory (or .npz) of observed stars, MILES layout")
    p.add_argument("--generator", default=None,
                   help="model directory, 'blackbody' or a released SM-Net checkpoint (.pt, with --meta) "
                        "(default: the shipped model)")
    add_meta_option(p)
    p.add_argument("--library", default=None, help="score this library imitation instead of the default "
                                                   "mixture")
    p.add_argument("--ids", default=None, help="text file of star numbers to use (default: all)")
    p.add_argument("--out", default=None, help="directory for " + ", ".join(REPORT_FILES)
                   + " (an existing report there is replaced only with --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing report in --out, and with --write-mixture the model's "
                        f"existing {MIXTURE_FILE}")
    p.add_argument("--grid", default=None, help="union grid file: adds the CK04 (+BaSeL) interpolation "
                                                "baseline")
    p.add_argument("--imitations", action="store_true", help="also score every library imitation")
    p.add_argument("--kfold", type=int, default=0, metavar="K",
                   help="held-out test of the default mixture: rank on K-1 folds, score the K-th (default "
                        "0: off)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the k-fold split (with --kfold; default 0)")
    p.add_argument("--rank-libraries", action="store_true",
                   help="rank the libraries per region on the stars (tuning stars: --ids) and print the "
                        "ranking")
    p.add_argument("--write-mixture", default=None, metavar="MODEL_DIR",
                   help=f"with --rank-libraries: write the ranking as MODEL_DIR/{MIXTURE_FILE}")
    p.add_argument("--worst", type=int, default=None,
                   help=f"stars in the worst-residual plot of --out, 1 to {MAX_WORST_STARS} (default "
                        f"{DEFAULT_WORST_STARS})")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    p.set_defaults(func=_cli)


def write_mixture(policy, model_dir):
    """Write ``policy`` as MODEL_DIR/mixture.json and record it in MODEL_DIR/config.json (``mixture_file``,
    ``mixture_sha256``), each file written whole or not at all; loading then refuses a missing or changed
    mixture file instead of silently falling back to equal weights. Returns the mixture file's path."""
    import json

    from .mixture import recorded_mixture
    from .output_files import atomic_output
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"--write-mixture {str(model_dir)!r}: not a model directory (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    path = model_dir / MIXTURE_FILE
    with atomic_output(path, overwrite=True, option="--write-mixture") as partial:
        policy.save(partial)
    # config.json last: between the two renames, loading refuses the pair (sha256 mismatch), never mixes them
    cfg.update(recorded_mixture(model_dir))
    with atomic_output(cfg_path, overwrite=True, option="model config") as partial:
        partial.write_text(json.dumps(cfg, indent=1))
    return path


def _cli(args):
    from .cli import show_progress
    from .neural import NeuralGenerator, model_file_in_use
    from .output_files import check_output_folder
    # option errors before the stars and the model are loaded and the (slow) ranking runs
    if args.worst is not None and not args.out:
        # it sizes the report's plot only: `validate ... --worst 20` without --out ran with exit 0 and no plot
        raise ValueError("--worst sets how many stars worst_residuals.png shows, a file of the --out report; "
                         "give --out DIR with it (without --out no plot is made)")
    args.worst = DEFAULT_WORST_STARS if args.worst is None else args.worst
    if not 1 <= args.worst <= MAX_WORST_STARS:
        # order[:n] with n < 0 drew all but |n| stars (a 700-inch figure that never finished); a panel per
        # star: --worst 1000 ran for minutes and wrote nothing
        raise ValueError(f"--worst must be a number of stars from 1 to {MAX_WORST_STARS}; got {args.worst}")
    if args.write_mixture and not args.rank_libraries:
        raise ValueError("--write-mixture needs --rank-libraries")
    if args.write_mixture and not (Path(args.write_mixture) / "config.json").is_file():
        raise ValueError(f"--write-mixture {args.write_mixture!r}: not a model directory (no config.json)")
    if args.write_mixture:
        # the ranking measures the imitations of the model it is written into: without --generator that
        # model, with it the same one (the shipped model's ranking went silently into another model's folder)
        if args.generator is None:
            args.generator = args.write_mixture
        elif not (Path(args.generator).is_dir()
                  and Path(args.generator).resolve() == Path(args.write_mixture).resolve()):
            raise ValueError(f"--write-mixture {args.write_mixture!r} ranks that model's own library "
                             f"imitations: leave out --generator, or give the same directory "
                             f"(got --generator {args.generator!r})")
    ignored = [name for name, given in (("--out", args.out), ("--kfold", args.kfold),
                                         ("--library", args.library), ("--imitations", args.imitations),
                                         ("--grid", args.grid)) if given]
    if args.rank_libraries and ignored:
        raise ValueError(f"--rank-libraries ranks and prints (and with --write-mixture writes) the mixture; "
                         f"{', '.join(ignored)} belong to scoring: run them without --rank-libraries")
    if args.seed is not None and not args.kfold:
        # it seeds the k-fold split only: without --kfold it was ignored without a word (a warning, not an
        # error: scripts that passed the old default --seed 0 keep running)
        warnings.warn(f"--seed {args.seed} seeds the --kfold split; without --kfold nothing is random and "
                      "it is ignored", UserWarning, stacklevel=2)
    if args.kfold:
        # numpy's seeding refused a negative --seed only after the model and its imitations were loaded, as
        # "expected non-negative integer", naming no option
        from .calibrate import _check_seed
        args.seed = 0 if args.seed is None else args.seed
        _check_seed(args.seed, "--seed")
    if args.kfold and args.library is not None:
        raise ValueError("--kfold tests the default mixture, ranked on the other folds; --library scores one "
                         "library imitation: give one of them")
    if (args.write_mixture and not args.overwrite
            and model_file_in_use(args.write_mixture, "mixture_file", MIXTURE_FILE)):
        # the model's measured preferences are replaced only when asked, as every output file is
        raise ValueError(f"--write-mixture {args.write_mixture!r}: the model already has a library mixture "
                         f"({MIXTURE_FILE}); --overwrite replaces it")
    out = (check_output_folder(args.out, REPORT_FILES, overwrite=args.overwrite, what="a validation report")
           if args.out else None)
    ids = _read_ids(args.ids) if args.ids else None
    all_stars = stars = load_empirical(args.empirical)
    if ids is not None:
        stars = stars.select(ids)
    if args.kfold and not 2 <= args.kfold <= len(stars.star_id):
        # kfold_ids says so too, but only after the model, the imitations and the report folder
        raise ValueError(f"--kfold must be between 2 and the number of stars ({len(stars.star_id)}); got "
                         f"{args.kfold}")
    grid = None
    if args.grid:
        # read and checked before the model and the scoring (a grid without CK04 failed after them)
        from .train import read_grid
        grid = read_grid(args.grid)
        interpolation_libraries(grid, "--grid")
    gen = load_any_generator(args.generator, device=args.device, meta=args.meta)
    check_scorable(stars, gen.wavelength)           # a set no star of which can be scored: say why, not '-'
    if (args.rank_libraries or args.kfold or args.imitations) and not isinstance(gen, NeuralGenerator):
        raise ValueError("--rank-libraries, --kfold and --imitations need a model trained by smnet-sps "
                         "(a model directory with library imitations)")
    if args.library is not None and not isinstance(gen, NeuralGenerator):
        raise ValueError("--library needs a model trained by smnet-sps")

    if args.rank_libraries:
        policy = rank_on_stars(gen, stars, meta={"ids_file": args.ids})
        # the mixture file first, then the ranking: `| head` closing stdout lost it
        written = write_mixture(policy, args.write_mixture) if args.write_mixture else None
        names = policy.region_names()
        for i, row in enumerate(policy.orders):
            for k, order in enumerate(row):
                print(f"{names[i][k]:40s} {' > '.join(order)}")
        for e in policy.evidence:
            how = "measured" if e["decided_by_data"] else "not significant, default order"
            print(f"  Teff {e['teff'][0]:g}-{e['teff'][1]:g} K, log g {e['logg'][0]:g}..{e['logg'][1]:g}: "
                  f"{e['pair'][0]} {100 * e['median_score'][0]:.2f} % vs {e['pair'][1]} "
                  f"{100 * e['median_score'][1]:.2f} % on {e['n_stars']} stars ({e['pair'][0]} better on "
                  f"{e['n_first_better']}, sign test p = {e['sign_test_p']:.3f}: {how}) -> {e['preferred']}")
        if written:
            print(f"wrote {written} (recorded in its config.json)")
        return 0

    in_sample = _calibration_overlap(gen, stars)
    if in_sample:
        # the shipped semi-empirical model was calibrated on the MILES calibration stars: its score there
        # (0.50 %) looked like a held-out result; its cross-validated score is in the calibration report
        warnings.warn(f"{in_sample} of the {len(stars)} stars scored are calibration stars of this "
                      f"semi-empirical model: its score on them is in-sample, not a held-out result (the "
                      f"cross-validated score is in its calibration report; score other stars with --ids)",
                      UserWarning, stacklevel=2)
    if args.kfold:
        scores, _ = kfold_validation(gen, stars, k=args.kfold, seed=args.seed, grid=grid,
                                       progress=show_progress(args))
        main = scores[0]
    else:
        main = score_generator(gen, stars, library=args.library)
        scores = [main]
        if args.imitations:
            scores += imitation_scores(gen, stars)
        # the nearest other star of the whole set, as without --ids (the subset alone made the baseline worse)
        scores += baseline_scores(stars, grid, pool=all_stars)
    unscored = unscored_lines(scores)
    if out:
        from .output_files import save_figure, staged_outputs
        # everything made before anything is written, the figure closed; the four files written aside and
        # renamed into place together once all are written (one after the other, a failure half way left
        # three of them, or under --overwrite a mix of the old report and the new); the folder made only now
        # (a refused --kfold left an empty one) and the files written before the table is printed (`| head`
        # closing stdout lost all of them)
        text = ("Median of per-star median |residual| [%] (number of stars)\n\n" + format_class_table(scores)
                + "\n\n90th percentile [%]\n\n" + format_class_table(scores, "p90")
                + "\n\nStars without a score\n\n" + "\n".join(unscored) + "\n")
        table = class_table(scores)
        fig = plot_worst_residuals(main, n=args.worst)
        with staged_outputs({name: out / name for name in REPORT_FILES}, overwrite=True,
                            option="--out") as staged:
            save_figure(fig, staged["worst_residuals.png"], overwrite=True, option="--out", dpi=90)
            _write_per_star(staged["per_star.csv"], scores)
            table.write(staged["classes.ecsv"], format="ascii.ecsv")
            staged["classes.md"].write_text(text)
    print(format_class_table(scores))
    if any(not np.isfinite(s.score).all() for s in scores):
        # the tables' counts alone do not say which stars are missing, nor why
        print("\n" + "\n".join(unscored) + ("\n(listed in classes.md too)" if out else ""))
    if out:
        print(f"wrote {', '.join(str(out / name) for name in REPORT_FILES)}")
    return 0


def _calibration_overlap(gen, stars):
    """How many of ``stars`` calibrated ``gen`` (a semi-empirical model, or one wrapping it); 0 otherwise."""
    for g in (gen, getattr(gen, "base", None)):
        if hasattr(g, "calibration_stars"):
            return int(g.calibration_stars(stars.teff, stars.logg, stars.logz).sum())
    return 0


def _read_ids(path):
    """Star numbers (one integer per line) from ``--ids``; a ValueError naming the file otherwise (also for
    several columns or none: lines of "2 3" crashed in the lookup, an empty file gave a report of no star)."""
    expected = f"--ids {str(path)!r}: expected a text file of star numbers, one integer per line"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)        # numpy's "input contained no data": see below
            # ndmin=2: with ndmin=1 a single line "2 3" became the two stars [2, 3]
            ids = np.loadtxt(path, dtype=int, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{expected} ({exc})") from None
    if ids.size == 0:
        raise ValueError(f"{expected}; it holds none")
    if ids.shape[1] != 1:
        raise ValueError(f"{expected}; got {ids.shape[1]} columns")
    return ids.ravel()


def _write_per_star(path, scores):
    import csv
    ref = scores[0]
    rows = {int(s): i for i, s in enumerate(ref.star_id)}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        # per cent, as classes.md / classes.ecsv and calibrate's cv_per_star.csv (a fraction read 100x small)
        w.writerow(["star_id", *PARAMETER_COLUMNS, "inside"] + [f"{s.name} median_abs_residual [%]"
                                                                    for s in scores])
        cols = []
        for s in scores:
            v = np.full(len(ref.star_id), np.nan)
            for sid, val in zip(s.star_id, s.score):
                v[rows[int(sid)]] = val
            cols.append(v)
        for i in range(len(ref.star_id)):
            w.writerow([int(ref.star_id[i]), f"{ref.teff[i]:.0f}", f"{ref.logg[i]:.3f}", f"{ref.logz[i]:.3f}",
                        bool(ref.inside[i])] + [f"{100 * c[i]:.4f}" for c in cols])
