"""The empirical comparison procedure on real MILES stars (tests/fixtures/empirical: 20 stars, all
classes)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from smnet_sps.empirical import (COMPARISON_GRID, EmpiricalStars, class_stats, kfold_ids, load_empirical,
                                 plot_worst_residuals, score_generator, score_spectra, teff_class)
from smnet_sps.medium import air_to_vacuum

FIXTURE = Path(__file__).parent / "fixtures" / "empirical"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE_TOOL = SHARED / "tools" / "empirical_score.py"
MILES_DIR = SHARED / "data" / "empirical" / "miles_calibration"


@pytest.fixture(scope="module")
def stars():
    return load_empirical(FIXTURE)


def test_load_converts_air_to_vacuum_and_gaps(stars):
    raw = np.load(next(FIXTURE.glob("*.npz")))
    assert np.allclose(stars.wavelength, air_to_vacuum(raw["wave"]))
    assert np.all(stars.wavelength > raw["wave"])                  # vacuum is longer by ~1-2 A here
    assert np.isnan(stars.flux[raw["flux"] == 0]).all()
    assert len(stars) == 20 and set(teff_class(stars.teff)) == {0, 1, 2, 3, 4}


def test_load_refuses_what_is_not_an_empirical_set(tmp_path):
    (tmp_path / "star.fits").write_bytes(b"SIMPLE  =                    T")
    (tmp_path / "h5.npz").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))       # an HDF5 file renamed
    for name in ("star.fits", "h5.npz"):
        with pytest.raises(ValueError, match="MILES calibration layout"):
            load_empirical(tmp_path / name)


def test_load_names_the_file_of_a_damaged_or_object_array_set(tmp_path):
    """A set whose .npz is damaged inside (a copy cut short in a member, flipped bytes) stopped validate and
    calibrate with a traceback naming neither the file nor the key ("zipfile.BadZipFile: Bad CRC-32 for file
    'wave.npy'", or zlib's "Error -3 while decompressing data"), and a key saved as a Python object array
    with numpy's bare "Object arrays cannot be loaded when allow_pickle=False"."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **raw)
    data = good.read_bytes()
    import zipfile
    members = {i.filename: i for i in zipfile.ZipFile(good).infolist()}
    # flipped bytes inside the compressed data of a member: its start (zlib's error), its middle (a CRC error)
    starts = [members[m].header_offset + 30 + len(m) + len(members[m].extra) + off
              for m, off in (("teff.npy", 20), ("flux.npy", members["flux.npy"].compress_size // 2))]
    for n, (start, length) in enumerate(zip(starts, (20, 40))):
        damaged = bytearray(data)
        damaged[start:start + length] = bytes(b ^ 0xFF for b in damaged[start:start + length])
        path = tmp_path / f"damaged{n}.npz"
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=rf"damaged{n}\.npz is not a readable empirical set .*re-copy"):
            load_empirical(path)
    objects = dict(raw, miles_id=np.array(list(raw["miles_id"]), dtype=object))
    np.savez(tmp_path / "objects.npz", **objects)
    with pytest.raises(ValueError, match=r"objects\.npz is not a readable empirical set .*Object arrays"):
        load_empirical(tmp_path / "objects.npz")
    assert len(load_empirical(good)) == 20


def test_load_refuses_a_repeated_star_number(tmp_path):
    """Two stars with one number (miles_id) loaded: lookups by number reached only the last, so calibrate's
    cross-validation gave the other no fold (fold 4607182418800017408 in cv_per_star.csv, uninitialised
    memory) and no score, and trained on it in every fold."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    raw["miles_id"] = raw["miles_id"].copy()
    raw["miles_id"][5] = raw["miles_id"][6]
    np.savez(tmp_path / "stars.npz", **raw)
    repeated = int(raw["miles_id"][6])
    with pytest.raises(ValueError, match=rf"\(miles_id\) \[{repeated}\] are given more than once"):
        load_empirical(tmp_path)


@pytest.mark.parametrize("key, change, message", [
    ("miles_id", lambda v: v[:, None], r"'miles_id' must be a 1-d array .*shape \(20, 1\)"),
    ("flux", lambda v: v[:, :-10], r"'flux' has shape \(20, \d+\); expected \(stars, pixels\)"),
    ("flux", lambda v: v.T.copy(), r"'flux' has shape \(\d+, 20\); expected \(stars, pixels\) = \(20,"),
    ("flux", lambda v: v[:-1], r"'flux' has shape \(19, \d+\); expected \(stars, pixels\) = \(20,"),
    ("flux", lambda v: v[0], r"'flux' has shape \(\d+,\); expected \(stars, pixels\) = \(20,"),
    ("teff", lambda v: v[:-5], r"'teff' has 15 values for 20 stars"),
    ("wave", lambda v: v[None, :], r"'wave' must be a 1-d array"),
    ("miles_id", lambda v: v + 0.5, r"'miles_id' must hold whole star numbers .*got \[\d+\.5"),
], ids=["ids (n,1)", "flux short of columns", "flux transposed", "flux short of a row", "flux 1-d",
        "teff short", "wave 2-d", "fractional ids"])
def test_load_refuses_arrays_that_do_not_fit_together(tmp_path, key, change, message):
    """A (n, 1) miles_id made the nearest-star baseline ask for 65 GiB; a flux of the wrong shape failed in
    numpy ("matmul: dimension mismatch") or was blamed on the prediction; star 2.5 became star 2."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    raw[key] = change(raw[key])
    np.savez(tmp_path / "stars.npz", **raw)
    with pytest.raises(ValueError, match=message) as info:
        load_empirical(tmp_path)
    assert "stars.npz" in str(info.value)


def _reversed(raw):
    return {**raw, "wave": raw["wave"][::-1].copy(), "flux": raw["flux"][:, ::-1].copy()}


def _repeated_pixel(raw):
    wave = raw["wave"].copy()
    wave[100] = wave[99]
    return {**raw, "wave": wave}


def _nan_pixel(raw):
    wave = raw["wave"].astype(float)
    wave[5] = np.nan
    return {**raw, "wave": wave}


@pytest.mark.parametrize("change, message", [
    (_reversed, r"'wave' must increase strictly .*; pixels 0 and 1 hold 7409.6 then 7408.7 A"),
    (_repeated_pixel, r"'wave' must increase strictly .*; pixels 99 and 100 hold"),
    (_nan_pixel, r"'wave' must hold finite, positive wavelengths \[A, air\]; 1 of 4300 are not \(first at "
                 r"pixel 5\)"),
], ids=["decreasing", "repeated", "nan"])
def test_load_refuses_wavelengths_that_do_not_increase(tmp_path, capsys, change, message):
    """A 'wave' not strictly increasing was loaded: validate failed after loading the model with
    "obs_wavelength must be a strictly increasing 1-d array" (no file, no key), calibrate called a decreasing
    set too narrow ("covers 7412-3541 A") and fitted a correction on one with a repeated pixel without a
    word; a NaN failed in the air-to-vacuum conversion, naming no file."""
    from smnet_sps.cli import main
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    np.savez(tmp_path / "stars.npz", **change(raw))
    with pytest.raises(ValueError, match=message) as info:
        load_empirical(tmp_path)
    assert "stars.npz" in str(info.value)
    out = tmp_path / "correction"
    assert main(["calibrate", "--empirical", str(tmp_path), "--out", str(out), "--folds", "0",
                 "--members", "1", "--steps", "2"]) == 1
    assert "stars.npz: 'wave' must" in capsys.readouterr().err
    assert not out.exists()


def test_load_refuses_an_empty_set_and_takes_whole_float_numbers(tmp_path):
    """0 stars were loaded (and refused later as "the pool needs at least 2 stars"); star numbers stored as
    whole floats are still star numbers."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    empty = {k: (v if k == "wave" else v[:0]) for k, v in raw.items()}
    np.savez(tmp_path / "stars.npz", **empty)
    with pytest.raises(ValueError, match="stars.npz: holds no stars"):
        load_empirical(tmp_path)
    np.savez(tmp_path / "stars.npz", **{**raw, "miles_id": raw["miles_id"].astype(float)})
    loaded = load_empirical(tmp_path)
    assert np.array_equal(loaded.star_id, raw["miles_id"]) and loaded.star_id.dtype.kind == "i"


@pytest.mark.parametrize("key", ["teff", "logg", "feh"])
def test_load_refuses_a_star_without_a_finite_parameter(tmp_path, key):
    """A star with a NaN [Fe/H] was loaded; validate then died inside the generator with 'logz has 1
    non-finite value(s) (first at index 3)', naming neither the file, the key nor the star."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    raw[key] = raw[key].astype(float)
    raw[key][[3, 7]] = [np.nan, np.inf]
    np.savez(tmp_path / "stars.npz", **raw)
    ids = [int(raw["miles_id"][3]), int(raw["miles_id"][7])]
    with pytest.raises(ValueError, match=rf"stars.npz: '{key}' is not finite for 2 of 20 stars \(miles_id "
                                         rf"\[{ids[0]}, {ids[1]}\]\)"):
        load_empirical(tmp_path)


@pytest.mark.parametrize("key, value", [("teff", 0.0), ("logg", 20.0), ("feh", -9.0)])
def test_load_refuses_a_star_outside_the_physical_domain_naming_it(tmp_path, capsys, key, value):
    """A star at Teff 0 K was loaded; validate refused it only after the model (calibrate after the base
    model) as 'teff = 0 (index 3) is outside the physical domain', index 3 being a row of the --ids subset,
    naming neither the file nor the star."""
    from smnet_sps.cli import main
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    raw[key] = raw[key].astype(float)
    raw[key][5] = value
    np.savez(tmp_path / "stars.npz", **raw)
    star = int(raw["miles_id"][5])
    with pytest.raises(ValueError, match=rf"stars.npz: '{key}' is outside the physical domain .* for 1 of 20 "
                                         rf"stars \(miles_id \[{star}\]: \[{value}\]\)"):
        load_empirical(tmp_path)
    (tmp_path / "ids.txt").write_text(f"{raw['miles_id'][0]}\n{star}\n")
    assert main(["validate", "--empirical", str(tmp_path), "--ids", str(tmp_path / "ids.txt"),
                 "--generator", "blackbody"]) == 1
    assert f"(miles_id [{star}]" in capsys.readouterr().err


@pytest.mark.parametrize("scale, shift", [(1.0, 5000.0), (0.45, 0.0)])
def test_a_set_beside_the_comparison_grid_is_refused_naming_it(tmp_path, capsys, scale, shift):
    """A set observed wholly outside 3610-7350 A (here 8543-12413 A) failed in validate, and in calibrate's
    cross-validation, with 'the prediction has < 3 pixels inside the observed range', naming neither the set
    nor the range it must cover, instead of check_scorable's message (so did one at 1593-3334 A)."""
    from smnet_sps.cli import main
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    raw["wave"] = raw["wave"] * scale + shift
    np.savez(tmp_path / "stars.npz", **raw)
    assert main(["validate", "--empirical", str(tmp_path), "--generator", "blackbody"]) == 1
    err = capsys.readouterr().err
    assert "stars.npz: no star can be scored: the set covers" in err
    assert "the comparison grid is 3610-7350" in err
    out = str(tmp_path / "c")
    assert main(["calibrate", "--empirical", str(tmp_path), "--out", out, "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "no star can be scored" in err and "--folds 5 would write" in err
    assert not (tmp_path / "c").exists()


def test_star_against_itself_scores_zero(stars):
    s = score_spectra("self", stars.wavelength, stars.flux, stars)
    assert np.all(s.score < 1e-6)


def test_median_of_values_is_nanmedian_without_the_all_nan_warning():
    """The one "median over the lines with a value" of star_score (per star) and fit.empirical_correction
    (per pixel): np.nanmedian where a line has a value, NaN where none, and no RuntimeWarning."""
    from smnet_sps.empirical import median_of_values, star_score
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 8))
    a[rng.random(a.shape) < 0.3] = np.nan
    a[2], a[:, 5] = np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, cols = median_of_values(a, axis=1), median_of_values(a, axis=0)
        score = star_score(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(rows, np.nanmedian(a, axis=1))
        np.testing.assert_array_equal(cols, np.nanmedian(a, axis=0))
    assert np.isnan(rows[2]) and np.isnan(cols[5]) and np.isnan(score[2])
    with pytest.raises(ValueError, match="2-d array and axis 0 or 1; got shape \\(8,\\), axis 0"):
        median_of_values(a[0], axis=0)


def test_invariant_to_a_smooth_factor(stars, default_generator):
    """A reddening-like smooth factor multiplied into the data leaves the scores unchanged (shape removed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flux, _ = default_generator.surface_flux(stars.teff, stars.logg, stars.logz)
    base = score_spectra("model", default_generator.wavelength, flux, stars)
    x = 1e4 / stars.wavelength                                      # inverse microns
    factor = 3.7 * 10 ** (-0.4 * (0.9 * (x - 1.8) + 0.15 * (x - 1.8) ** 2 - 0.05 * (x - 1.8) ** 3))  # A_V ~ 1
    redd = EmpiricalStars(stars.star_id, stars.teff, stars.logg, stars.logz, stars.wavelength,
                          stars.flux * factor, "reddened")
    moved = score_spectra("model", default_generator.wavelength, flux, redd)
    # exp(cubic in 1/lambda) is not exactly the cubic the procedure divides out, and the 3-sigma clipping may
    # drop a different pixel: nearly every star moves by < 3 %, none by more than 10 %
    close = np.isclose(moved.score, base.score, rtol=0.03, atol=2e-4)
    assert close.mean() >= 0.9 and np.allclose(moved.score, base.score, rtol=0.10, atol=2e-4)
    # but a factor with structure on the 40 A scale is not removed
    bumpy = stars.flux * (1 + 0.05 * np.sin(2 * np.pi * stars.wavelength / 300.0))
    wobbly = score_spectra("model", default_generator.wavelength, flux,
                           EmpiricalStars(stars.star_id, stars.teff, stars.logg, stars.logz, stars.wavelength,
                                          bumpy))
    assert np.median(wobbly.score) > np.median(base.score) + 0.01


def test_score_spectra_takes_a_spectrum_axis_in_its_unit(stars, default_generator):
    """A Spectrum's spectral_axis in nm was read as Angstrom (np.asarray drops the unit): scored against the
    wrong pixels, 1.67 % instead of 1.05 % median on the 20 fixture stars, without a word."""
    from astropy import units as u
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec, _ = default_generator.spectra(stars.teff, stars.logg, stars.logz)
    base = score_spectra("model", default_generator.wavelength, spec.flux.value, stars)
    for axis in (spec.spectral_axis, spec.spectral_axis.to(u.nm), spec.spectral_axis.to(u.um)):
        got = score_spectra("model", axis, spec.flux, stars)
        np.testing.assert_allclose(got.score, base.score, rtol=1e-9)
    with pytest.raises(ValueError, match="pred_wavelength must be a wavelength"):
        score_spectra("model", default_generator.wavelength * u.s, spec.flux.value, stars)


def test_model_beats_blackbody(stars, default_generator, blackbody):
    model = score_generator(default_generator, stars)
    bb = score_generator(blackbody, stars)
    assert np.nanmedian(model.score) < 0.7 * np.nanmedian(bb.score)
    assert (model.score < bb.score).mean() > 0.7
    assert model.residual.shape == (20, COMPARISON_GRID.size)


def test_class_stats_and_plot(stars, default_generator):
    s = score_generator(default_generator, stars)
    st = class_stats(s.score, s.teff, s.logg)
    assert st["all"]["n"] == 20
    assert sum(st[c]["n"] for c in st if c.startswith("Teff")) == 20
    assert st["giants (logg<3.5)"]["n"] + st["dwarfs (logg>=3.5)"]["n"] == 20
    fig = plot_worst_residuals(s, n=3)
    assert len(fig.axes) == 3
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_worst_residuals_plot_only_stars_with_a_score(stars, blackbody):
    """With fewer scored stars than --worst, the panels past them showed stars without a score, as
    "median |res| nan %", under the title "worst 8 stars"."""
    import matplotlib.pyplot as plt
    s = score_generator(blackbody, stars)
    s.score[3:] = np.nan
    fig = plot_worst_residuals(s, n=8)
    labels = [ax.get_title(loc="left") for ax in fig.axes]
    assert len(fig.axes) == 3 and all(labels) and not any("nan" in t for t in labels)
    assert "worst 3 stars" in fig.get_suptitle()
    plt.close(fig)
    s.score[:] = np.nan
    fig = plot_worst_residuals(s, n=8)
    assert len(fig.axes) == 1 and [t.get_text() for t in fig.axes[0].texts] == ["no star has a score"]
    plt.close(fig)


def test_kfold_ids_stratified_and_seeded(stars):
    z = np.load(next(FIXTURE.glob("*.npz")))
    folds = kfold_ids(z["miles_id"], z["teff"], k=5, seed=3)
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == sorted(z["miles_id"].tolist())        # every star held out once
    for tune, test in folds:
        assert not set(tune) & set(test)
        assert len(tune) + len(test) == len(z["miles_id"])
        assert len(test) == 4
    again = kfold_ids(z["miles_id"], z["teff"], k=5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    with pytest.raises(ValueError, match="k must be"):
        kfold_ids(z["miles_id"], z["teff"], k=1)


def test_nearest_star_never_itself(stars):
    from smnet_sps.baselines import nearest_star_flux
    flux, ids = nearest_star_flux(stars)
    assert np.all(ids != stars.star_id)
    s = score_spectra("nearest", stars.wavelength, flux, stars)
    assert np.all(s.score > 1e-4)


def test_nearest_star_skips_a_neighbour_without_data(stars):
    """A star of the set with no usable data (a row of gaps: NaN or 0 in the file, or negative flux) was
    still every near star's 'nearest other star': its NaN prediction left them without a baseline score (a
    damaged MILES copy, rows 3 and 7 blanked: 6 of 30 stars unscored, 4 of them with good data). It is
    passed over for the nearest star with data; it keeps none itself."""
    from smnet_sps.baselines import nearest_star_flux
    _, first = nearest_star_flux(stars)
    blank = int(np.bincount(stars.rows(first)).argmax())          # the star that most stars draw on
    drew = np.flatnonzero(stars.rows(first) == blank)
    damaged = EmpiricalStars(stars.star_id, stars.teff, stars.logg, stars.logz, stars.wavelength,
                             stars.flux.copy(), stars.name)
    damaged.flux[blank] = np.nan
    flux, ids = nearest_star_flux(damaged)
    assert np.all(ids != damaged.star_id) and not np.any(ids == damaged.star_id[blank])
    keep = np.setdiff1d(np.arange(len(stars)), drew)
    assert np.array_equal(ids[keep], first[keep])               # the others' neighbours are unchanged
    s = score_spectra("nearest", damaged.wavelength, flux, damaged)
    assert drew.size >= 1 and np.all(np.isfinite(s.score[drew[drew != blank]]))
    assert np.isnan(s.score[blank])


@pytest.mark.parametrize("ids", [[2.5], ["3"], [True]])
def test_select_refuses_star_numbers_that_are_not_whole(stars, ids):
    """EmpiricalStars.select / rows cast ids with int: star 2.5 silently became star 2 (and '3' star 3)."""
    first = stars.star_id[0]
    bad = [first + 0.5] if ids == [2.5] else [str(first)] if ids == ["3"] else ids
    with pytest.raises(ValueError, match="whole numbers"):
        stars.select(bad)
    with pytest.raises(ValueError, match="whole numbers"):
        stars.rows(bad)
    assert stars.rows([float(first)]).tolist() == stars.rows([int(first)]).tolist() == [0]


def test_select_unknown_star(stars):
    with pytest.raises(ValueError, match="not in"):
        stars.select([99999])


@pytest.mark.skipif(not (REFERENCE_TOOL.is_file() and MILES_DIR.is_dir()),
                    reason="needs ../shared (reference)")
def test_agrees_with_reference_scorer(default_generator):
    """Per-star medians of the shipped model agree with the shared reference scorer on 40 stars.

    The reference compares in air wavelengths, we in vacuum (a ~1.5 A shift) and integrate the Gaussian
    over each pixel: per star a few per cent apart, the same to ~1 % in the median."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("empirical_score_reference", REFERENCE_TOOL)
    ref_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_tool)
    full = load_empirical(MILES_DIR)
    sel = full.select(full.star_id[::12][:40])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flux, _ = default_generator.surface_flux(sel.teff, sel.logg, sel.logz)
    ref = np.array([ref_tool.star_summary(ref_tool.compare(default_generator.wavelength, f, int(i)))
                    for f, i in zip(flux, sel.star_id)])
    ours = score_spectra("model", default_generator.wavelength, flux, sel)
    rel = ours.score / ref - 1
    assert np.median(np.abs(rel)) < 0.05
    assert abs(np.median(ours.score) / np.median(ref) - 1) < 0.03


def test_validate_cli_writes_outputs(tmp_path):
    from smnet_sps.cli import main
    rc = main(["validate", "--empirical", str(FIXTURE), "--imitations", "--out", str(tmp_path),
               "--worst", "2"])
    assert rc == 0
    for f in ("classes.md", "classes.ecsv", "per_star.csv", "worst_residuals.png"):
        assert (tmp_path / f).stat().st_size > 0
    rows = (tmp_path / "per_star.csv").read_text().strip().splitlines()
    assert len(rows) == 21 and "ck04 imitation" in rows[0] and "nearest other star" in rows[0]
    assert rows[0].startswith("star_id,teff [K],logg [cgs],logz [dex],inside,")     # units, as the scores'
    from astropy.table import Table
    t = Table.read(tmp_path / "classes.ecsv")
    assert len(t) == 8


def test_validate_warns_that_a_semi_empirical_score_on_its_own_calibration_stars_is_in_sample(recwarn):
    """The shipped semi-empirical model was calibrated on the MILES calibration stars (the fixture's 20 among
    them): validate scored it there (0.50 % on all 471) without a word, like a held-out result."""
    import warnings

    from smnet_sps.cli import main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["validate", "--empirical", str(FIXTURE), "--generator", "semi-empirical"]) == 0
    said = [str(w.message) for w in caught if "in-sample" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("20 of the 20 stars scored are calibration stars")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody"]) == 0
    assert not [w for w in caught if "in-sample" in str(w.message)]


def test_a_set_whose_file_ends_in_upper_case_npz_is_found(tmp_path):
    """A directory holding STARS.NPZ was 'expected exactly one .npz file of stars, found 0'."""
    src = next(FIXTURE.glob("*.npz"))
    (tmp_path / "STARS.NPZ").write_bytes(src.read_bytes())
    assert len(load_empirical(tmp_path)) == len(load_empirical(FIXTURE))


def test_validate_cli_errors(tmp_path, capsys):
    from smnet_sps.cli import main
    # --seed seeds the k-fold split only: without --kfold it was ignored without a word
    with pytest.warns(UserWarning, match="--seed 3 seeds the --kfold split; without --kfold nothing"):
        assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--seed", "3"]) == 0
    assert main(["validate", "--empirical", str(tmp_path)]) == 1              # no .npz there
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--imitations"]) == 1
    # --worst -3 drew all but 3 stars (a 700-inch figure that never finished, after half the report)
    assert main(["validate", "--empirical", str(FIXTURE), "--worst", "-3", "--out", str(tmp_path / "r")]) == 1
    assert not (tmp_path / "r").exists()


def test_worst_is_capped_before_any_work(tmp_path, capsys, monkeypatch, stars):
    """--worst 1000 ran for minutes (one 1.5-inch panel per star: 100 took 10-22 s, a 150-inch figure) and was
    killed before writing anything; now refused up front, and by plot_worst_residuals from Python."""
    from smnet_sps import validate
    from smnet_sps.cli import build_parser, main
    from smnet_sps.empirical import MAX_WORST_STARS

    def never(*args, **kwargs):
        raise AssertionError("the stars were loaded although --worst is too large")
    monkeypatch.setattr(validate, "load_empirical", never)
    assert main(["validate", "--empirical", str(FIXTURE), "--worst", str(MAX_WORST_STARS + 1),
                 "--out", str(tmp_path / "r")]) == 1
    assert (f"--worst must be a number of stars from 1 to {MAX_WORST_STARS}; got {MAX_WORST_STARS + 1}"
            in capsys.readouterr().err)
    assert not (tmp_path / "r").exists()
    sub = next(a for a in build_parser()._subparsers._group_actions[0].choices["validate"]._actions
               if "--worst" in a.option_strings)
    assert f"1 to {MAX_WORST_STARS}" in sub.help
    score = score_spectra("self", stars.wavelength, stars.flux, stars)
    with pytest.raises(ValueError, match=f"n must be a number of stars from 1 to {MAX_WORST_STARS}"):
        plot_worst_residuals(score, n=1000)


def test_write_mixture_to_what_is_not_a_model_fails_before_any_work(tmp_path, capsys, monkeypatch):
    """--write-mixture into a folder without config.json is refused before the stars, the model and the
    ranking, not after the ranking."""
    from smnet_sps import validate
    from smnet_sps.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the stars were loaded although --write-mixture names no model directory")
    monkeypatch.setattr(validate, "load_empirical", never)
    assert main(["validate", "--empirical", str(FIXTURE), "--rank-libraries", "--write-mixture",
                 str(tmp_path)]) == 1
    assert "not a model directory (no config.json)" in capsys.readouterr().err


def test_write_mixture_replaces_a_models_mixture_only_with_overwrite(tmp_path, capsys, monkeypatch):
    """--write-mixture replaced a model's measured mixture.json without being asked (every other output is
    replaced only with --overwrite); refused before any work, and with --overwrite it goes ahead."""
    import shutil

    from smnet_sps import validate
    from smnet_sps.cli import main
    from smnet_sps.neural import default_model_path
    model = tmp_path / "model"
    shutil.copytree(default_model_path(), model)
    before = (model / "mixture.json").read_bytes()

    def never(*args, **kwargs):
        raise AssertionError("the stars were loaded although the mixture may not be replaced")
    monkeypatch.setattr(validate, "load_empirical", never)
    assert main(["validate", "--empirical", str(FIXTURE), "--rank-libraries", "--write-mixture",
                 str(model)]) == 1
    assert "already has a library mixture (mixture.json); --overwrite replaces it" in capsys.readouterr().err
    assert (model / "mixture.json").read_bytes() == before
    monkeypatch.undo()
    written = []
    monkeypatch.setattr(validate, "write_mixture", lambda policy, d: written.append(d) or Path(d) / "m")
    assert main(["validate", "--empirical", str(FIXTURE), "--rank-libraries", "--write-mixture",
                 str(model), "--overwrite"]) == 0
    assert written == [str(model)]


def test_a_failed_report_writes_nothing(tmp_path, monkeypatch):
    """The report was written file by file: a failure in the plot left three of the four files, and the
    rerun was refused ("already holds a validation report")."""
    import smnet_sps.validate as validate
    from smnet_sps.cli import main

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(validate, "plot_worst_residuals", broken)
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--out",
                 str(tmp_path / "r")]) == 1
    assert not list((tmp_path / "r").glob("*")) if (tmp_path / "r").exists() else True


def test_write_mixture_ranks_the_model_it_writes_into(tmp_path, capsys, monkeypatch):
    """Without --generator the shipped model was ranked and its ranking written into another model's
    folder; now the model of MODEL_DIR is ranked, and another --generator is refused before any work."""
    import shutil

    from smnet_sps import validate
    from smnet_sps.cli import main
    from smnet_sps.neural import default_model_path
    model = tmp_path / "model"
    shutil.copytree(default_model_path(), model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["name"] = "my own model"
    (model / "config.json").write_text(json.dumps(cfg))
    ranked = []
    real = validate.rank_on_stars
    monkeypatch.setattr(validate, "rank_on_stars", lambda gen, *a, **k: ranked.append(gen.name) or
                        real(gen, *a, **k))
    assert main(["validate", "--empirical", str(FIXTURE), "--rank-libraries", "--write-mixture", str(model),
                 "--overwrite"]) == 0
    assert ranked == ["my own model"]
    assert json.loads((model / "mixture.json").read_text())["meta"]["model"] == "my own model"
    assert main(["validate", "--empirical", str(FIXTURE), "--rank-libraries", "--write-mixture", str(model),
                 "--generator", str(default_model_path()), "--overwrite"]) == 1
    assert "ranks that model's own library imitations" in capsys.readouterr().err
    assert ranked == ["my own model"]


def test_validate_refuses_repeated_stars_and_options_it_would_ignore(tmp_path, capsys):
    from smnet_sps.cli import main
    ids = tmp_path / "ids.txt"
    z = np.load(next(FIXTURE.glob("*.npz")))
    ids.write_text(f"{z['miles_id'][0]}\n{z['miles_id'][0]}\n{z['miles_id'][1]}\n")
    assert main(["validate", "--empirical", str(FIXTURE), "--ids", str(ids)]) == 1
    assert "given more than once" in capsys.readouterr().err
    for extra, what in ((["--rank-libraries", "--out", str(tmp_path / "r")], "--out"),
                        (["--rank-libraries", "--kfold", "3"], "--kfold"),
                        (["--kfold", "3", "--library", "nextgen"], "give one of them")):
        assert main(["validate", "--empirical", str(FIXTURE), *extra]) == 1
        assert what in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("n_ids, what", [(4, "got 2 columns"), (2, "got 2 columns"), (0, "it holds none")])
def test_validate_refuses_an_ids_file_of_several_columns_or_none(tmp_path, capsys, n_ids, what):
    """--ids with lines of two numbers crashed (TypeError 'only 0-dimensional arrays can be converted to
    Python scalars', exit 1 with a traceback); an empty one gave numpy's UserWarning, a table of '-' cells and
    all four report files (exit 0). A single line of two numbers (n_ids 2) was read as two stars, one per
    column, and validated without a word."""
    from smnet_sps.cli import main
    z = np.load(next(FIXTURE.glob("*.npz")))
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(" ".join(map(str, row)) + "\n" for row in z["miles_id"][:n_ids].reshape(-1, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody",
                     "--ids", str(ids), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"--ids {str(ids)!r}: expected a text file of star numbers, one integer per line; {what}" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_nearest_other_star_of_a_subset_is_searched_in_the_whole_set(stars, capsys, tmp_path):
    """With --ids the baseline searched only the chosen stars (worse than the same stars' baseline in the
    whole set); one star alone failed after scoring."""
    from smnet_sps.baselines import nearest_star_flux
    from smnet_sps.cli import main
    sub = stars.select(stars.star_id[:4])
    _, in_whole = nearest_star_flux(sub, stars)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(int(i)) for i in sub.star_id[:1]))
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--ids", str(ids),
                 "--out", str(tmp_path / "r")]) == 0
    per_star = (tmp_path / "r" / "per_star.csv").read_text().splitlines()
    assert len(per_star) == 2 and "nan" not in per_star[1]
    _, alone = nearest_star_flux(sub, sub)
    assert (in_whole != alone).any()              # the whole set has nearer neighbours for some


def test_per_star_csv_is_in_per_cent_as_the_class_tables(tmp_path):
    """per_star.csv held each star's median |residual| as a fraction (0.019543) under a header without a unit,
    beside classes.md / classes.ecsv in per cent (1.95) and calibrate's cv_per_star.csv ('[%]'): read 100x
    too small. It is now per cent, and says so."""
    import csv

    from astropy.table import Table

    from smnet_sps.cli import main
    ids = tmp_path / "ids.txt"
    ids.write_text("85\n")
    report = tmp_path / "r"
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--ids", str(ids),
                 "--out", str(report)]) == 0
    header, row = list(csv.reader((report / "per_star.csv").open()))
    classes = Table.read(report / "classes.ecsv")
    for k, name in enumerate(header[5:]):
        assert name.endswith(" median_abs_residual [%]")
        source = name[:-len(" median_abs_residual [%]")]
        in_class = classes[classes[f"{source} n"] == 1][f"{source} median %"]      # the classes it is in
        assert len(in_class) >= 1 and np.allclose(float(row[5 + k]), in_class, atol=1e-4, rtol=0)


def test_a_failed_report_under_overwrite_keeps_the_old_one_whole(tmp_path, monkeypatch, capsys):
    """validate wrote its four report files one after the other: a failure half way (disk full writing
    per_star.csv) under --overwrite left the new worst_residuals.png beside the old tables. The four are now
    renamed into place together once all are written."""
    from smnet_sps import validate
    from smnet_sps.cli import main
    report = tmp_path / "r"
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--out", str(report),
                 "--worst", "2"]) == 0
    old = {p.name: p.read_bytes() for p in report.iterdir()}
    assert sorted(old) == sorted(validate.REPORT_FILES)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(validate, "_write_per_star", disk_full)
    assert main(["validate", "--empirical", str(FIXTURE), "--generator", "blackbody", "--out", str(report),
                 "--worst", "3", "--overwrite"]) == 1
    assert "No space left" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in report.iterdir()} == old          # no temporary file either


def test_validate_refuses_kfold_before_making_the_report_folder(tmp_path, capsys):
    """--kfold 1 was refused (by kfold_ids) only after --out's folder had been made: an empty folder
    stayed."""
    from smnet_sps.cli import main
    assert main(["validate", "--empirical", str(FIXTURE), "--kfold", "1", "--out", str(tmp_path / "r")]) == 1
    assert "--kfold must be between 2 and the number of stars (20); got 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_validate_refuses_a_negative_kfold_seed_before_loading_the_model(tmp_path, capsys, monkeypatch):
    """--kfold 3 --seed -1 loaded the model and its imitations, then stopped in numpy's seeding with
    "expected non-negative integer", naming no option; now refused first, naming --seed."""
    from smnet_sps import validate
    from smnet_sps.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although --seed is negative")
    monkeypatch.setattr(validate, "load_any_generator", never)
    assert main(["validate", "--empirical", str(FIXTURE), "--kfold", "3", "--seed", "-1",
                 "--out", str(tmp_path / "r")]) == 1
    assert "--seed must be an integer from 0 to 2**32 - 1; got -1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_validate_refuses_a_grid_without_ck04_before_loading_the_model(tmp_path, capsys, monkeypatch):
    """--grid with a union grid of other libraries (here CM87 alone) loaded the model, scored the stars and
    then failed with numpy's "zero-size array to reduction operation minimum which has no identity"; now
    refused first, naming --grid, what the grid holds and what the baseline needs."""
    from smnet_sps import validate
    from smnet_sps.cli import main
    from smnet_sps.train import read_grid
    grid = tmp_path / "cm87.h5"
    assert main(["grid", "build", "--libraries", str(Path(__file__).parent / "fixtures" / "libraries"),
                 "--out", str(grid), "--only", "cm87", "--no-progress"]) == 0
    capsys.readouterr()

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although --grid cannot give the baseline")
    monkeypatch.setattr(validate, "load_any_generator", never)
    assert main(["validate", "--empirical", str(FIXTURE), "--grid", str(grid),
                 "--out", str(tmp_path / "r")]) == 1
    assert (f"--grid {str(grid)!r}: holds ['cm87']; the interpolation baseline needs ck04"
            in capsys.readouterr().err)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match=r"grid .*: holds \['cm87'\]; the interpolation baseline needs ck04"):
        validate.baseline_scores(load_empirical(FIXTURE), read_grid(grid))


def test_validate_into_a_closed_pipe_writes_the_report_and_exits_quietly(tmp_path):
    """`smnet-sps validate ... --out DIR | head -2` printed "error: [Errno 32] Broken pipe" (status 1) and
    wrote none of the report files, which came after the table. The files are now written first, and a
    reader that stopped reading ends the command quietly with status 141 (as SIGPIPE)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "smnet_sps.cli", "validate", "--empirical", str(FIXTURE),
                             "--out", str(tmp_path / "r"), "--worst", "2"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()                             # the reader is gone before the table is printed
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err
    for name in ("classes.md", "classes.ecsv", "per_star.csv", "worst_residuals.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0


def _gap_sets(tmp_path, lo=5000.0, hi=5600.0):
    """The fixture stars with lo-hi A (air) missing: stored as zeros (the documented gap) and dropped from the
    wavelength array (a chip gap or a masked band in a user's own set)."""
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    cut = (raw["wave"] > lo) & (raw["wave"] < hi)
    zeros = {**raw, "flux": np.where(cut, 0.0, raw["flux"])}
    dropped = {**raw, "wave": raw["wave"][~cut], "flux": raw["flux"][:, ~cut]}
    np.savez(tmp_path / "zeros.npz", **zeros)
    np.savez(tmp_path / "dropped.npz", **dropped)
    return load_empirical(tmp_path / "zeros.npz"), load_empirical(tmp_path / "dropped.npz")


def test_a_gap_in_the_wavelength_array_is_not_observed(tmp_path, default_generator):
    """5000-5600 A dropped from the wavelength array was scored as observed: the pixels beside the gap were
    stretched over half of it (29 comparison points inside it with residuals up to 86 %, the MILES median
    1.127 -> 1.438 %). It now counts as no data, as the same gap stored as zeros does."""
    zeros, dropped = _gap_sets(tmp_path)
    a = score_generator(default_generator, zeros)
    b = score_generator(default_generator, dropped)
    gap = (a.grid > 5010) & (a.grid < 5600)
    assert not np.isfinite(a.residual[:, gap]).any()
    assert not np.isfinite(b.residual[:, gap]).any()
    np.testing.assert_allclose(b.score, a.score, rtol=1e-9)
    np.testing.assert_array_equal(np.isfinite(b.residual), np.isfinite(a.residual))


def test_pixel_bounds_leave_a_gap_uncovered():
    """Across a jump much larger than the local step each neighbour reaches only half its own step; a smooth
    change of step (a log grid, a coarser region) is no gap, and the bounds are the midpoints there."""
    from smnet_sps.empirical import pixel_bounds
    w = np.r_[np.arange(10.0, 20.0), np.arange(50.0, 60.0)]        # steps of 1, a 30 A jump at 19 -> 50
    lo, hi = pixel_bounds(w)
    assert hi[9] == 19.5 and lo[10] == 49.5
    assert np.array_equal(lo[1:10], hi[:9]) and np.array_equal(lo[11:], hi[10:-1])
    coarse = np.r_[np.arange(10.0, 20.0), 20.0 + 20.0 * np.arange(10)]      # a change of step 1 -> 20
    lo, hi = pixel_bounds(coarse)
    assert np.array_equal(lo[1:], hi[:-1])
    log = np.geomspace(1000.0, 20000.0, 500)
    lo, hi = pixel_bounds(log)
    assert np.array_equal(lo[1:], hi[:-1])


def test_validate_takes_a_one_star_set_and_a_one_star_tuning_fold(tmp_path, capsys, stars):
    """'the pool needs at least 2 stars' refused a one-star set (load_empirical takes n >= 1) and --ids of 3
    stars with --kfold 2 (a tuning fold of one star): a separate pool needs one star, and with a single star
    and no other the nearest-star baseline is skipped, saying so in the table."""
    from smnet_sps.baselines import nearest_star_flux
    from smnet_sps.cli import main
    flux, ids = nearest_star_flux(stars.select(stars.star_id[:3]), stars.select(stars.star_id[3:4]))
    assert np.array_equal(ids, np.repeat(stars.star_id[3], 3)) and np.array_equal(flux[0], stars.flux[3])
    with pytest.raises(ValueError, match=rf"star {stars.star_id[0]} has no other star in the pool"):
        nearest_star_flux(stars.select(stars.star_id[:1]))
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    np.savez(tmp_path / "one.npz", **{k: (v if k == "wave" else v[:1]) for k, v in raw.items()})
    assert main(["validate", "--empirical", str(tmp_path / "one.npz"), "--generator", "blackbody"]) == 0
    assert "nearest other star: none (the set holds one star)" in capsys.readouterr().out
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(int(i)) for i in stars.star_id[[0, 7, 14]]))
    assert main(["validate", "--empirical", str(FIXTURE), "--ids", str(ids), "--kfold", "2"]) == 0
    out = capsys.readouterr().out
    assert "nearest tuning star" in out and "(3)" in out


def test_validate_says_which_stars_the_set_cannot_score(tmp_path, capsys):
    """A set covering less than half of the 3610-7350 A comparison grid (MILES cut at 5300 A) gave a table of
    '-', an all-NaN per_star.csv and exit status 0. No star scorable: an error naming the set's range against
    the grid; some: they are listed in classes.md and on stdout."""
    from smnet_sps.cli import main
    raw = dict(np.load(next(FIXTURE.glob("*.npz"))))
    keep = raw["wave"] < 5300
    np.savez(tmp_path / "narrow.npz", **{**raw, "wave": raw["wave"][keep], "flux": raw["flux"][:, keep]})
    assert main(["validate", "--empirical", str(tmp_path / "narrow.npz"), "--generator", "blackbody",
                 "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "no star can be scored" in err and "3542-5301 A (vacuum)" in err and "3610-7350 A" in err
    assert not (tmp_path / "r").exists()
    part = raw["flux"].copy()
    part[[2, 9]] = np.where(raw["wave"] < 5300, part[[2, 9]], 0.0)
    np.savez(tmp_path / "part.npz", **{**raw, "flux": part})
    assert main(["validate", "--empirical", str(tmp_path / "part.npz"), "--generator", "blackbody",
                 "--out", str(tmp_path / "r")]) == 0
    listed = f"2 of 20 stars (numbers {raw['miles_id'][2]}, {raw['miles_id'][9]})"
    assert listed in capsys.readouterr().out
    assert listed in (tmp_path / "r" / "classes.md").read_text()
