"""pPXF adapter checked against the real ppxf: sps_lib reads our file and a fit recovers a known mix."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.plugins import ppxf_backend as pb
from smnet_sps.plugins._toy import toy_ssp_arrays

ppxf_mod = pytest.importorskip("ppxf.ppxf")


@pytest.fixture(scope="module")
def toy(fixtures_dir):
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    return toy_ssp_arrays(np.linspace(-2.0, 1.1, 11), d["logz"], d["teff"], d["flux"], d["wavelength"])


def test_file_layout_read_by_sps_lib(tmp_path, toy):
    path = pb.write_sps_lib(tmp_path / "smnet", toy, lam_range=(3000, 9000))
    assert path.name == "smnet.npz"
    # the file a bare name becomes is the one checked for existence; another extension is refused
    with pytest.raises(FileExistsError, match="smnet.npz exists"):
        pb.write_sps_lib(tmp_path / "smnet", toy)
    with pytest.raises(ValueError, match=r"must end in \.npz; got '\.txt'"):
        pb.write_sps_lib(tmp_path / "x.txt", toy)
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "x.txt.npz").exists()
    assert pb.write_sps_lib(tmp_path / "tmpl_z0.02", toy).name == "tmpl_z0.02.npz"    # a dot, no extension
    a = np.load(path)
    keep = (toy.ssp_wave >= 3000) & (toy.ssp_wave <= 9000)
    assert a["templates"].shape == (keep.sum(), toy.n_age, toy.n_met)
    assert np.array_equal(a["templates"][:, 3, 2], toy.ssp_flux[2, 3, keep])   # (pix, age, met) order
    assert np.allclose(a["ages"], 10 ** toy.ssp_lg_age_gyr) and np.allclose(a["metals"], [-1.5, -0.5, 0.2])
    assert np.allclose(a["masses"], toy.surviving_mass.T)
    sps = pb.load_sps_lib(path, 300.0, lam_range=(3600, 7400))
    assert sps.templates.shape[1:] == (toy.n_age, toy.n_met)
    assert np.allclose(sps.age_grid[:, 0], a["ages"]) and np.allclose(sps.metal_grid[0], a["metals"])


def test_fit_recovers_two_populations(tmp_path, toy):
    """Mock = 40% young metal-poor + 60% old metal-rich V-band light, noise S/N 100; unregularised fit."""
    path = pb.write_sps_lib(tmp_path / "smnet.npz", toy, lam_range=(3000, 9000))
    velscale = 300.0                        # km/s; the grid is 20 A (~1200 km/s) sampled, log-rebinned finer
    # norm_range -> every template has mean 1 in 5070-5950 A, so ppxf's weights are V-band light fractions
    sps = pb.load_sps_lib(path, velscale, lam_range=(3600, 7400), norm_range=(5070, 5950))
    tpl = sps.templates
    (ia1, iz1), (ia2, iz2) = (2, 0), (8, 2)
    sel = (sps.lam_temp > 3800) & (sps.lam_temp < 7200)
    gal = (0.4 * tpl[:, ia1, iz1] + 0.6 * tpl[:, ia2, iz2])[sel]
    noise = np.full_like(gal, np.median(gal) / 100)
    gal = gal + np.random.default_rng(3).normal(0, noise)
    pp = ppxf_mod.ppxf(tpl.reshape(tpl.shape[0], -1), gal, noise, velscale, [0, 50], moments=2, degree=-1,
                       mdegree=-1, lam=sps.lam_temp[sel], lam_temp=sps.lam_temp, quiet=True)
    w = pp.weights.reshape(tpl.shape[1:])
    top2 = [np.unravel_index(i, w.shape) for i in np.argsort(w.ravel())[::-1][:2]]
    for truth in ((ia1, iz1), (ia2, iz2)):
        assert any(abs(a - truth[0]) <= 1 and abs(z - truth[1]) <= 1 for a, z in top2), (top2, truth)
    assert abs(pp.sol[0]) < 30                   # no spurious velocity shift
    light = w / w.sum()
    assert abs(light[:5].sum() - 0.4) < 0.1                         # light from < 0.2 Gyr populations
    # light-weighted, eq. 39 of Cappellari 2023
    lg_age, mh = sps.mean_age_metal(w, quiet=True)
    true_lg_age = 0.4 * np.log10(sps.age_grid[ia1, iz1]) + 0.6 * np.log10(sps.age_grid[ia2, iz2]) + 9
    true_mh = 0.4 * sps.metal_grid[ia1, iz1] + 0.6 * sps.metal_grid[ia2, iz2]
    step = np.diff(np.log10(sps.age_grid[:, 0])).max()                # one age-grid step (0.31 dex)
    assert abs(lg_age - true_lg_age) < step and abs(mh - true_mh) < 0.2
    print(f"pPXF light-weighted <lg age/yr> = {lg_age:.3f}, <[M/H]> = {mh:.3f}; top-2 (age, [M/H]) = "
          f"{[(float(sps.age_grid[a, z]), float(sps.metal_grid[a, z])) for a, z in top2]}")
    assert 0.5 < pp.chi2 < 2


def test_bad_arguments(tmp_path, toy):
    with pytest.raises(ValueError, match="lam_range"):
        pb.write_sps_lib(tmp_path / "x.npz", toy, lam_range=(9000, 3000))
    with pytest.raises(ValueError, match="zsun"):
        pb.write_sps_lib(tmp_path / "x.npz", toy, zsun=-1)
    pb.write_sps_lib(tmp_path / "x.npz", toy)
    with pytest.raises(FileExistsError):
        pb.write_sps_lib(tmp_path / "x.npz", toy)
    with pytest.raises(FileNotFoundError):
        pb.load_sps_lib(tmp_path / "missing.npz", 300.0)
    # velscale without gaussian_fwhm did nothing (sps_lib rebins with its own): refused, not ignored
    with pytest.raises(ValueError, match="velscale applies only with gaussian_fwhm"):
        pb.write_sps_lib(tmp_path / "v.npz", toy, velscale=70.0)
    assert not (tmp_path / "v.npz").exists()


def test_from_smnet_refuses_lsf_options_that_do_not_go_together_before_computing(tmp_path, monkeypatch):
    """from_smnet(velscale=...) without gaussian_fwhm (or position_share without it, or gaussian_fwhm without
    velscale) computed the whole SSP grid (23 s for 20 ages x 5 Z) before write_sps_lib refused."""
    def computed(*args, **kwargs):
        raise AssertionError("the SSP grid was computed before the options were checked")

    monkeypatch.setattr(pb, "smnet_ssp_grid", computed)
    ages, Zs = np.array([1e9, 5e9]), np.array([0.01, 0.02])
    for kwargs, match in (({"velscale": 60.0}, "velscale applies only with gaussian_fwhm"),
                          ({"position_share": 0.5}, "position_share applies only with gaussian_fwhm"),
                          ({"gaussian_fwhm": 2.5}, "gaussian_fwhm needs velscale")):
        with pytest.raises(ValueError, match=match):
            pb.from_smnet(tmp_path / "t.npz", ages, Zs, **kwargs)
    assert not (tmp_path / "t.npz").exists()


def test_from_smnet_refuses_an_existing_or_misnamed_file_before_computing(tmp_path, monkeypatch):
    """pPXF's and bagpipes' from_smnet computed the whole SSP grid, then refused to overwrite the file (or a
    .txt name): minutes lost. The path is checked first now."""
    from smnet_sps.plugins import bagpipes_backend as bb

    def computed(*args, **kwargs):
        raise AssertionError("the SSP grid was computed before the path was checked")

    ages, Zs = np.array([1e9, 5e9]), np.array([0.01, 0.02])
    for module, name in ((pb, "t.npz"), (bb, "t.fits")):
        monkeypatch.setattr(module, "smnet_ssp_grid", computed)
        (tmp_path / name).write_bytes(b"a user's file")
        with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
            module.from_smnet(tmp_path / name, ages, Zs)
        assert (tmp_path / name).read_bytes() == b"a user's file"
    with pytest.raises(ValueError, match="must end in .fits"):
        bb.from_smnet(tmp_path / "grid.txt", ages, Zs)


def test_a_folder_given_as_path_is_refused_not_written_beside(tmp_path, toy):
    """np.savez's convention appends .npz to a bare name; a folder got it too: write_sps_lib('templates')
    with 'templates' a folder wrote 'templates.npz' beside it (for '/tmp': /tmp.npz at the root). The DSPS and
    bagpipes writers name the folder the same way."""
    from smnet_sps.plugins import bagpipes_backend as bb, dsps_backend as db
    folder = tmp_path / "templates"
    folder.mkdir()
    for write in (pb.write_sps_lib, db.write_ssp_templates, bb.write_stellar_grid):
        with pytest.raises(ValueError, match=r"is a directory; give a .* ending in \.(npz|h5|fits)"):
            write(folder, toy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["templates"] and not any(folder.iterdir())


def test_a_fwhm_array_of_the_wrong_length_is_named(tmp_path, toy):
    """fwhm with one value per kept pixel (after lam_range) failed inside numpy's broadcasting."""
    from smnet_sps.plugins import ppxf_backend
    n = toy.ssp_wave.size
    with pytest.raises(ValueError, match=rf"fwhm must be a number or an array of the grid's {n} pixels"):
        ppxf_backend.write_sps_lib(tmp_path / "b.npz", toy, fwhm=np.full(n - 5, 20.0))
    ppxf_backend.write_sps_lib(tmp_path / "c.npz", toy, fwhm=np.full(n, 20.0))


def test_a_fwhm_quantity_is_converted_to_angstrom(tmp_path, toy):
    """fwhm=2.5 nm was written as 2.5 (pPXF reads Angstrom) while gaussian_fwhm=2.5 nm became 25 A."""
    import astropy.units as u
    keep = (toy.ssp_wave >= 3000) & (toy.ssp_wave <= 9000)
    a = np.load(pb.write_sps_lib(tmp_path / "q.npz", toy, lam_range=(3000, 9000), fwhm=2.5 * u.nm))
    assert np.allclose(a["fwhm"], 25.0)
    per_pixel = np.linspace(20.0, 30.0, toy.ssp_wave.size) * u.AA
    b = np.load(pb.write_sps_lib(tmp_path / "p.npz", toy, lam_range=(3000, 9000), fwhm=per_pixel.to(u.um)))
    assert np.allclose(b["fwhm"], per_pixel.value[keep])
    with pytest.raises(ValueError, match=r"fwhm must be a length \[Angstrom\].*km / s"):
        pb.write_sps_lib(tmp_path / "v.npz", toy, fwhm=100.0 * u.km / u.s)


def test_a_lam_range_of_quantities_is_converted_and_a_malformed_one_named(tmp_path, toy):
    """lam_range=(300 nm, 900 nm), or (3000, 9000) * u.AA, stopped with astropy's TypeError 'only
    dimensionless scalar quantities can be converted to Python scalars' (fwhm and gaussian_fwhm take length
    Quantities), and a lam_range of one or three values with Python's 'not enough values to unpack'."""
    import astropy.units as u
    plain = np.load(pb.write_sps_lib(tmp_path / "a.npz", toy, lam_range=(3000, 9000)))["lam"]
    assert plain.min() >= 3000 and plain.max() <= 9000 and plain.size < toy.ssp_wave.size
    for i, lam_range in enumerate([(300 * u.nm, 900 * u.nm), [3000, 9000] * u.AA, (0.3 * u.um, 9000 * u.AA)]):
        lam = np.load(pb.write_sps_lib(tmp_path / f"q{i}.npz", toy, lam_range=lam_range))["lam"]
        assert np.array_equal(lam, plain)
    for bad in [(3 * u.s, 4 * u.s), 5000 * u.AA, 5000, (3000,), (3000, 5000, 9000), ("a", "b")]:
        with pytest.raises(ValueError, match="lam_range"):
            pb.write_sps_lib(tmp_path / "bad.npz", toy, lam_range=bad)


def _doc_section(path, heading):
    """The text of ``path`` from the line ``heading`` to the next heading of the same or a higher level
    (lines inside code fences, such as Python comments, are not headings)."""
    lines = path.read_text().split("\n")
    start = lines.index(heading)
    level = len(heading.split(" ", 1)[0])
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        mark = lines[end].split(" ", 1)[0]
        if not fenced and mark and set(mark) == {"#"} and len(mark) <= level:
            break
    else:
        end = len(lines)
    return "\n".join(lines[start:end]) + "\n"


@pytest.mark.hosts
@pytest.mark.slow
def test_sfh_example_in_docs(tmp_path, monkeypatch):
    """docs/plugins.md's worked star-formation-history example runs as written (one thread, ~20 s of CPU),
    recovers the history it was made with (young mass fraction within 0.1, light-weighted log age within
    0.15 dex, [M/H] within 0.15 dex) and prints the numbers the doc states (to 0.02, 0.02 dex, 0.03 dex)."""
    import re
    from pathlib import Path

    import matplotlib
    import torch
    from test_readme import readme_blocks

    section = _doc_section(Path(__file__).resolve().parents[1] / "docs" / "plugins.md",
                           "### Worked example: recovering a star-formation history with regularised pPXF")
    blocks = readme_blocks(section)
    assert len(blocks) == 1
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ns = {"__name__": "__doc__"}
        exec(compile(blocks[0][1], "docs/plugins.md: SFH example", "exec"), ns)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "sfh_weights.png").stat().st_size > 10_000
    assert ns["young_true"] == pytest.approx(0.2, abs=0.005)       # the history's burst, on the template ages
    assert abs(ns["young"] - ns["young_true"]) < 0.1
    assert abs(ns["lw_age"] - ns["lw_age_true"]) < 0.15
    assert abs(ns["lw_mh"]) < 0.15
    stated = re.search(r"young mass fraction ([\d.]+) \(truth ([\d.]+)\); light-weighted log age ([\d.]+) "
                       r"\(([\d.]+)\), \[M/H\] ([-+][\d.]+)", " ".join(section.split()))
    assert stated, "the doc must state the example's output"
    young, young_true, age, age_true, mh = map(float, stated.groups())
    assert ns["young"] == pytest.approx(young, abs=0.02)
    assert ns["young_true"] == pytest.approx(young_true, abs=0.01)
    assert ns["lw_age"] == pytest.approx(age, abs=0.02)
    assert ns["lw_age_true"] == pytest.approx(age_true, abs=0.01)
    assert ns["lw_mh"] == pytest.approx(mh, abs=0.03)


@pytest.mark.parametrize("backend, name, kwargs, match", [
    ("ppxf", "t.npz", {"medium": "vaccum"}, "medium must be one of"),
    ("ppxf", "t.npz", {"zsun": -1}, "zsun must be a metal mass fraction"),
    ("ppxf", "t.npz", {"lam_range": (9000, 3000)}, "min < max"),
    ("ppxf", "t.npz", {"lam_range": (3000 * u.m, 9000 * u.s)}, "lam_range must be wavelengths"),
    ("ppxf", "t.npz", {"fwhm": -2.0}, "fwhm must be finite and >= 0"),
    ("ppxf", "t.npz", {"gaussian_fwhm": 20.0, "velscale": -5.0}, "velscale must be one positive velocity"),
    ("ppxf", "t.npz", {"gaussian_fwhm": 20.0, "velscale": 150 * u.AA}, "velscale must be a velocity step"),
    ("ppxf", "t.npz", {"gaussian_fwhm": 20.0, "velscale": [150.0, 75.0]}, "velscale must be one positive"),
    ("ppxf", "t.npz", {"gaussian_fwhm": 20.0, "velscale": 150.0, "position_share": 2.0},
     r"position_share must be one number in \[0, 1\]"),
    ("bagpipes", "t.fits", {"medium": "vaccum"}, "medium must be one of"),
    ("bagpipes", "t.fits", {"zsun": -1}, "zsun must be a metal mass fraction")])
def test_from_smnet_checks_every_argument_before_computing(tmp_path, monkeypatch, backend, name, kwargs,
                                                           match):
    """pPXF's and bagpipes' from_smnet computed the SSP grid (minutes for a full one) before write_* refused
    medium='vaccum', zsun=-1 or pPXF's lam_range=(9000, 3000): every argument checked without the grid is
    now checked first, by the one helper the writer uses too. So are the values of velscale and
    position_share (a negative velscale was refused after the grid: 7.9 s for 6 ages x 2 Z)."""
    import importlib

    module = importlib.import_module(f"smnet_sps.plugins.{backend}_backend")

    def computed(*args, **kwargs):
        raise AssertionError("the SSP grid was computed before the arguments were checked")

    monkeypatch.setattr(module, "smnet_ssp_grid", computed)
    with pytest.raises(ValueError, match=match):
        module.from_smnet(tmp_path / name, np.array([1e9, 5e9]), np.array([0.01, 0.02]), **kwargs)
    assert not (tmp_path / name).exists()


def test_a_one_element_velscale_is_taken_as_its_value(tmp_path, toy):
    """velscale = c * np.diff(ln_lam[:2]), a one-element array as pPXF users compute it, stopped in float()'s
    TypeError ('only 0-dimensional arrays can be converted to Python scalars'); now it is its value."""
    from smnet_sps.lsf import C_KMS
    ln_lam = np.log(np.geomspace(3600.0, 7400.0, 500))
    velscale = C_KMS * np.diff(ln_lam[:2])
    assert velscale.shape == (1,)
    one = pb.write_sps_lib(tmp_path / "one.npz", toy, gaussian_fwhm=20.0, velscale=velscale,
                           lam_range=(3300, 7800))
    plain = pb.write_sps_lib(tmp_path / "plain.npz", toy, gaussian_fwhm=20.0, velscale=float(velscale[0]),
                             lam_range=(3300, 7800))
    a, b = np.load(one), np.load(plain)
    assert np.array_equal(a["lam"], b["lam"]) and np.array_equal(a["templates"], b["templates"])


def test_the_file_records_how_its_grid_was_made(tmp_path):
    """The templates file names the generator (and its weights' sha256), the isochrones, the IMF and its
    limits and the options, as the DSPS file's meta_* attributes do: it named only its creator
    (smnet_sps.plugins.ppxf_backend), so templates from two models or IMFs could not be told apart. pPXF's
    own loader still reads it."""
    from smnet_sps import __version__
    from smnet_sps.imf import get_imf
    from smnet_sps.ssp import ssp_grid
    grid = ssp_grid([10 ** 5.5, 1e9, 1e10], [0.004, 0.0152], imf=get_imf("salpeter", m_low=0.1, m_up=100.0),
                    progress=False)
    path = pb.write_sps_lib(tmp_path / "made.npz", grid, lam_range=(3000, 9000))
    with np.load(path, allow_pickle=False) as a:
        assert str(a["generator"]) == grid.attrs["generator"] and len(str(a["generator_sha256"])) == 64
        assert str(a["generator_sha256"]) == grid.attrs["generator_sha256"]
        assert (str(a["isochrones"]), str(a["imf"])) == ("parsec", "salpeter")
        np.testing.assert_array_equal(a["imf_mass_range"], [0.1, 100.0])
        assert (str(a["special_phases"]), str(a["outside"])) == (grid.attrs["special_phases"],
                                                                  grid.attrs["outside"])
        assert str(a["smnet_sps_version"]) == __version__
        # whether the generator fills its untrained tails (the far UV depends on it), as TAILFILL / meta_
        assert a["tail_filled"].dtype == bool and bool(a["tail_filled"]) is grid.attrs["tail_filled"] is True
    sps = pb.load_sps_lib(path, 300.0, lam_range=(3600, 7400))
    assert sps.templates.shape[1:] == (3, 2)
