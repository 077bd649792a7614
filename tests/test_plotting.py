"""Plotting functions return a Figure and never change the caller's matplotlib backend (notebooks keep
``plt.show()``); only the command line picks a backend."""
import re
from pathlib import Path

import astropy.units as u
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def svg_backend():
    """A backend that is not Agg, so that a library calling matplotlib.use("Agg") is caught."""
    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    yield "svg"
    plt.close("all")
    plt.switch_backend(before)


def _check(fig, backend, tmp_path):
    assert isinstance(fig, Figure) and fig.axes
    assert matplotlib.get_backend().lower() == backend
    fig.savefig(tmp_path / "f.png")           # still saves, whatever the backend
    assert (tmp_path / "f.png").stat().st_size > 5000


def test_plot_ssp(svg_backend, blackbody, tmp_path):
    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import plot_ssp
    spec = ssp_spectrum(1 * u.Gyr, Z=0.0152, generator=blackbody, by_phase=True)
    _check(plot_ssp(spec), svg_backend, tmp_path)
    out = tmp_path / "ssp.pdf"
    _check(plot_ssp(spec, out), svg_backend, tmp_path)
    assert out.read_bytes().startswith(b"%PDF")
    # one wavelength label across the package's plots ("wavelength [Angstrom]" here, "[A]" elsewhere), and a
    # young SSP's age in Myr (its title said "age 0.01 Gyr")
    young = plot_ssp(ssp_spectrum(10 * u.Myr, Z=0.0152, generator=blackbody, by_phase=True))
    assert young.axes[0].get_xlabel() == "vacuum wavelength [A]"
    assert "age 10 Myr" in young.axes[0].get_title() and "age 1 Gyr" in plot_ssp(spec).axes[0].get_title()


def test_plot_colour_evolution(svg_backend, blackbody, tmp_path):
    from smnet_sps.photometry import plot_colour_evolution, ssp_magnitudes
    table = ssp_magnitudes([0.1, 1.0] * u.Gyr, 0.0152, ["sdss2010-g", "sdss2010-r"], generator=blackbody)
    _check(plot_colour_evolution(table), svg_backend, tmp_path)


def test_plot_coverage(svg_backend, fixtures_dir, tmp_path):
    from smnet_sps.grid import build_grid, plot_coverage
    grid = build_grid(fixtures_dir / "libraries", only="ck04,basel22,cmfgen_wn", progress=False)
    _check(plot_coverage(grid), svg_backend, tmp_path)


def test_no_library_code_chooses_a_backend():
    """Only smnet_sps/cli.py may call matplotlib.use (for the files it writes)."""
    pattern = re.compile(r"matplotlib\.use\(|switch_backend\(")
    offenders = [str(p.relative_to(ROOT)) for folder in ("smnet_sps", "plugins")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 if p.name != "cli.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_cli_plot_writes_a_png(tmp_path):
    from smnet_sps.cli import main
    png = tmp_path / "c.png"
    assert main(["ssp", "--age", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--plot",
                 str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(png.stat().st_size)


def test_bad_input_to_the_plots_is_refused_before_a_figure_exists():
    """plot_ssp with an all-NaN spectrum or without smnet metadata, plot_colour_evolution with an unknown
    filter: errors from inside matplotlib after the figure was made, which stayed open in pyplot."""
    import matplotlib.pyplot as plt
    from astropy.table import Table

    from smnet_sps.photometry import plot_colour_evolution
    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import plot_ssp
    plt.close("all")
    spec = ssp_spectrum(1e9, Z=0.0152, generator="blackbody")
    broken = spec.__class__(flux=spec.flux * np.nan, spectral_axis=spec.spectral_axis, meta=dict(spec.meta))
    with pytest.raises(ValueError, match="no positive finite flux"):
        plot_ssp(broken)
    bare = spec.__class__(flux=spec.flux, spectral_axis=spec.spectral_axis)
    with pytest.raises(ValueError, match="needs a spectrum from ssp_spectrum"):
        plot_ssp(bare)
    with pytest.raises(ValueError, match="no M_ column for \\['nope'\\]"):
        plot_colour_evolution(Table({"log_age": [9.0], "M_g": [5.0]}), filter_names=["nope"])
    assert plt.get_fignums() == []


def test_cli_in_a_session_keeps_its_backend(svg_backend, fixtures_dir, tmp_path):
    """``smnet_sps.cli.main`` run in-process after pyplot was set up (a notebook) leaves the backend alone
    (it once switched it to Agg) and still writes the plot."""
    from smnet_sps.cli import main
    out = tmp_path / "cov.png"
    assert main(["grid", "build", "--libraries", str(fixtures_dir / "libraries"), "--only", "ck04,basel22",
                 "--out", str(tmp_path / "g.h5"), "--plot", str(out), "--no-progress"]) == 0
    assert matplotlib.get_backend().lower() == svg_backend and out.stat().st_size > 5000


@pytest.mark.parametrize("how", ["use", "MPLBACKEND", "matplotlibrc", "nothing"])
def test_cli_keeps_an_explicitly_chosen_backend(how, tmp_path):
    """``main()`` switched a backend chosen with matplotlib.use("svg"), MPLBACKEND or a matplotlibrc to Agg
    (it checked only whether pyplot was imported); it now picks Agg only where no backend was chosen. Each
    case runs in a fresh interpreter: the backend is chosen once per process."""
    import os
    import subprocess
    import sys

    rc_dir = tmp_path / "rc"
    rc_dir.mkdir()
    (rc_dir / "matplotlibrc").write_text("backend: svg\n" if how == "matplotlibrc" else "")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(MATPLOTLIBRC=str(rc_dir), **({"MPLBACKEND": "svg"} if how == "MPLBACKEND" else {}))
    png = tmp_path / "b.png"
    script = ("import matplotlib\n"
              + ("matplotlib.use('svg')\n" if how == "use" else "")
              + "from smnet_sps.cli import main\n"
              f"assert main(['ssp', '--age', '1Gyr', '--Z', '0.0152', '--generator', 'blackbody', '--plot', "
              f"{str(png)!r}]) == 0\n"
              "print(matplotlib.get_backend().lower())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == ("agg" if how == "nothing" else "svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("logz_values", [(0.0,), (-1.0, 0.0), (-1.0, -0.3, 0.0, 0.3)])
def test_mixture_map_legend_stays_inside_the_figure(default_generator, logz_values):
    """All libraries on one legend row ran off a one-panel map (-65..385 px in 320): ck04, the main colour,
    was cut from the saved image."""
    from smnet_sps.mixture import LibraryMixture, plot_mixture_map
    g = default_generator
    mixture = LibraryMixture(g.library_names, g.library_boxes, g.nodes, g.mixture_policy)
    fig = plot_mixture_map(mixture, logz_values=logz_values, n=20)
    try:
        fig.canvas.draw()
        box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
        assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
        # the panels stay below the legend
        assert all(ax.get_window_extent().y1 <= box.y0 + 1 for ax in fig.axes)
    finally:
        plt.close(fig)


def test_a_failed_save_closes_the_figure_and_a_missing_folder_is_made(blackbody, fixtures_dir, tmp_path,
                                                                      monkeypatch):
    """plot_ssp / plot_colour_evolution / plot_coverage(path=...) left the Figure open in pyplot when saving
    failed (open figures 0 -> 1 -> 2 -> 3 over three failed calls: the caller never got them), and only
    plot_coverage made a missing folder. All three now save through output_files.save_plot: the figure is
    closed before the error propagates, a missing folder is made, an unknown extension is refused."""
    from smnet_sps.grid import build_grid, plot_coverage
    from smnet_sps.photometry import plot_colour_evolution, ssp_magnitudes
    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import plot_ssp
    spec = ssp_spectrum(1 * u.Gyr, Z=0.0152, generator=blackbody, by_phase=True)
    table = ssp_magnitudes([0.1, 1.0] * u.Gyr, 0.0152, ["sdss2010-g", "sdss2010-r"], generator=blackbody)
    grid = build_grid(fixtures_dir / "libraries", only="ck04,basel22", progress=False)
    plots = {"ssp": lambda path: plot_ssp(spec, path),
             "colours": lambda path: plot_colour_evolution(table, path),
             "coverage": lambda path: plot_coverage(grid, path)}
    plt.close("all")
    for name, plot in plots.items():
        out = tmp_path / "new" / name / "plot.png"
        fig = plot(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plt.get_fignums() == [fig.number]           # returned open, for the caller to close
        plt.close(fig)
        with pytest.raises(ValueError, match="unknown output format '.fits' for the plot; use one of"):
            plot(tmp_path / f"{name}.fits")
        assert plt.get_fignums() == [] and not (tmp_path / f"{name}.fits").exists()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Figure, "savefig", disk_full)
    for name, plot in plots.items():
        with pytest.raises(OSError, match="No space left"):
            plot(tmp_path / f"{name}.png")
        assert plt.get_fignums() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]            # no temporary file left


def test_plots_write_to_a_file_object(svg_backend, blackbody):
    """``path=io.BytesIO()`` (matplotlib's own use) raised a TypeError once saving went through the atomic
    writer: a file object goes to ``fig.savefig`` as it is."""
    import io

    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import plot_ssp
    buffer = io.BytesIO()
    fig = plot_ssp(ssp_spectrum(1 * u.Gyr, Z=0.0152, generator=blackbody), buffer)
    # matplotlib's default format for a file object (the svg backend's own here)
    assert isinstance(fig, Figure) and buffer.getvalue().startswith((b"<?xml", b"\x89PNG"))


@pytest.fixture(scope="module")
def miles_star_fit(default_generator):
    """fit_star on MILES star 5442 K / 4.28 / -1.20 (the fixture's 4th star; air wavelengths, 2.5 A FWHM)."""
    import warnings

    from smnet_sps.fit import fit_star
    from smnet_sps.medium import air_to_vacuum
    d = np.load(ROOT / "tests" / "fixtures" / "empirical" / "miles_v9.1_fixture_stars.npz")
    flux = d["flux"][3].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_star(air_to_vacuum(d["wave"]), flux, np.full(flux.size, (100 / np.median(flux)) ** 2),
                        generator=default_generator, resolution_fwhm=2.5)


def test_fit_plot_title_gives_units_and_the_model(svg_backend, miles_star_fit, tmp_path):
    """The fit plot's title read "teff = 6224 +- 49, logg = 4.91 +- 0.13, logz = -0.4566 +- 0.053, rv = -3.086
    +- 50": no unit (K? km/s?) and no word of which model was fitted. Each value now carries its unit, and the
    title names the generator."""
    from smnet_sps.fit_cli import plot_fit
    r = miles_star_fit
    fig = plot_fit(r)
    _check(fig, svg_backend, tmp_path)
    title = fig.axes[0].get_title()
    assert re.search(r"Teff = [\d.]+ \+- [\d.e+]+ K,", title), title
    assert re.search(r"rv = -?[\d.]+ \+- [\d.e+]+ km / s", title), title
    assert "[M/H] = " in title and "log g [cgs] = " in title
    assert f"model: {r.meta['generator']}" in title
    fig2 = plot_fit(r, generator="my model")
    assert fig2.axes[0].get_title().endswith("model: my model")



def test_fit_plot_title_of_an_ssp_fit_fits_in_the_figure(svg_backend, tmp_path):
    """A galaxy fit's five values ran past the figure's right edge ("... rv = -37.96 +- 21" without its
    km / s, a new user's SDSS-like mock); the title now wraps between values and lies inside the figure, and
    the axis says the wavelengths are observed (at --redshift the fit works in the rest frame)."""
    import torch

    from smnet_sps.fit import fit_ssp
    from smnet_sps.fit_cli import plot_fit
    from test_fit import _toy_galaxy, _toy_ssp_grid

    torch.set_num_threads(1)
    rng = np.random.default_rng(5)
    grid = _toy_ssp_grid(rng)
    wave, m = _toy_galaxy(grid, theta=(9.2, -0.7, 150.0, 0.2, -37.96), resolution_fwhm=5.0)
    r = fit_ssp(wave, m, (30 / m) ** 2, templates=grid, resolution_fwhm=5.0)
    fig = plot_fit(r, generator="smnet-sps default (library experts, union grid)")
    _check(fig, svg_backend, tmp_path)
    title = fig.axes[0].title
    assert re.search(r"rv = -?[\d.]+ \+- [\d.e+]+ km / s", title.get_text()), title.get_text()
    renderer = fig._get_renderer()               # any backend (svg here has no canvas.get_renderer)
    box, frame = title.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, (box, frame)
    assert fig.axes[1].get_xlabel() == "observed vacuum wavelength [A]"

def test_worst_residuals_labels_do_not_cover_the_residuals(svg_backend, default_generator, tmp_path):
    """Each star's label was written inside its panel (top left), over the residual curve: on the MILES
    fixture the worst star's +28 % excursion at 3650 A ran through "#399 Teff 3620 K ...". The label is now
    the panel's title, above the axes, and no text lies inside a panel."""
    from smnet_sps.empirical import load_empirical, plot_worst_residuals, score_generator
    stars = load_empirical(ROOT / "tests" / "fixtures" / "empirical")
    score = score_generator(default_generator, stars)
    fig = plot_worst_residuals(score, n=4)
    _check(fig, svg_backend, tmp_path)
    worst = score.star_id[np.nanargmax(score.score)]
    assert fig.axes[0].get_title(loc="left").startswith(f"#{worst} ")
    for ax in fig.axes:     # a title sits above the plotting area; a text artist inside it
        assert len(ax.texts) == 0 and "median |res|" in ax.get_title(loc="left")


def test_mixture_map_legend_keys_the_pale_and_white_regions(default_generator):
    """The map shades handovers (weight < 0.9) pale and leaves points no library supports white, but its
    legend listed only the libraries: nothing in the figure said what white or pale meant (only the doc's
    caption). Both now have a legend entry, and white points are really on the map."""
    from matplotlib.colors import to_rgb

    from smnet_sps.mixture import LibraryMixture, plot_mixture_map
    g = default_generator
    mixture = LibraryMixture(g.library_names, g.library_boxes, g.nodes, g.mixture_policy)
    fig = plot_mixture_map(mixture, logz_values=(0.0,), n=40)
    try:
        handles = fig.legends[0].legend_handles
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels[:len(g.library_names)] == list(g.library_names)
        key = dict(zip(labels, handles))
        white = key["white: outside coverage"]
        assert to_rgb(white.get_facecolor()) == (1.0, 1.0, 1.0) and white.get_edgecolor()[:3] != (1, 1, 1)
        pale = to_rgb(key["pale: weight < 0.9 (handover)"].get_facecolor())
        # the key is no library's pale shade (it was the first library's: read as that library's handovers)
        assert pale[0] == pale[1] == pale[2]
        assert (fig.axes[0].get_images()[0].get_array() == 1.0).all(axis=-1).any()   # white is drawn
    finally:
        plt.close(fig)


def test_coverage_count_is_a_title_not_a_note_over_the_cool_giants(svg_backend, fixtures_dir, tmp_path):
    """With phase libraries, the "union grid: N spectra" note was drawn inside the axes' top-right corner:
    in HR orientation that is cool, low-gravity, where the grid's cool giants lie (the fixture's BaSeL node at
    log Teff 3.55, log g 0 sat under the text). It is now the panel's title."""
    from smnet_sps.grid import build_grid, plot_coverage
    grid = build_grid(fixtures_dir / "libraries", only="ck04,basel22,cmfgen_wn", progress=False)
    fig = plot_coverage(grid)
    _check(fig, svg_backend, tmp_path)
    ax = fig.axes[-1]
    assert len(ax.texts) == 0
    assert ax.get_title() == f"union grid: {len(grid)} spectra"


def test_calibration_plots_refuse_bad_input_before_a_figure_exists(default_generator):
    """plot_empirical_weight of the default (theoretical) model died with AttributeError '_stars', and
    plot_ssp_comparison with one label too many with an IndexError, each leaving its figure open in pyplot;
    both are now ValueErrors naming what is needed, raised before a figure exists."""
    import matplotlib.pyplot as plt

    from smnet_sps.calibrate import plot_empirical_weight, plot_ssp_comparison
    from smnet_sps.generator import BlackbodyGenerator
    plt.close("all")
    with pytest.raises(ValueError, match="needs the semi-empirical generator.*got NeuralGenerator"):
        plot_empirical_weight(default_generator, n=10)
    with pytest.raises(ValueError, match="needs the semi-empirical generator.*got BlackbodyGenerator"):
        plot_empirical_weight(BlackbodyGenerator())
    wave = np.linspace(3000.0, 9000.0, 200)
    flux = 1.0 + wave[None, :] / 9000.0
    with pytest.raises(ValueError, match=r"\(2, 200\).*theory \(1, 200\), semi \(1, 200\), 2 labels"):
        plot_ssp_comparison(wave, flux, flux, ["1 Gyr", "10 Gyr"])
    with pytest.raises(ValueError, match=r"theory \(1, 100\)"):
        plot_ssp_comparison(wave, flux[:, :100], flux, ["1 Gyr"])
    assert plt.get_fignums() == []
    fig = plot_ssp_comparison(wave, flux, 1.01 * flux, ["1 Gyr"])   # good input still draws
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_mixture_map_refuses_bad_input_before_a_figure_exists(default_generator):
    """plot_mixture_map with no [M/H] raised matplotlib's "Number of columns must be a positive integer" and
    with n=0 an IndexError, each leaving its figure open in pyplot: now a ValueError naming what is needed."""
    from smnet_sps.mixture import LibraryMixture, plot_mixture_map
    g = default_generator
    mixture = LibraryMixture(g.library_names, g.library_boxes, g.nodes, g.mixture_policy)
    plt.close("all")
    with pytest.raises(ValueError, match=r"one or more \[M/H\] values.*got logz_values \[\], n 20"):
        plot_mixture_map(mixture, logz_values=(), n=20)
    with pytest.raises(ValueError, match="n >= 2 grid points per axis; got logz_values \\[0.0\\], n 0"):
        plot_mixture_map(mixture, logz_values=(0.0,), n=0)
    assert plt.get_fignums() == []
    fig = plot_mixture_map(mixture, logz_values=0.0, n=10)     # one [M/H] as a number: one panel
    assert [ax.get_title() for ax in fig.axes] == ["[M/H] = +0.00"]
    plt.close(fig)
