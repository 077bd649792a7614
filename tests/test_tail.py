"""The untrained tails filled from the training nodes (smnet_sps.tail): exact at training nodes, right at
held-out CK04 nodes where the network alone is orders of magnitude off (far UV) or tens of per cent off (far
infrared), kept out of every learned pixel, the far UV of an old SSP, gradients, training writes the table,
and damaged tables refused."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.constants import SIGMA_SB
from smnet_sps.generator import CoverageWarning
from smnet_sps.model import blackbody_log_ratio
from smnet_sps.neural import default_model_path, load_generator
from smnet_sps.tail import TAIL_FILE, red_tail_mask, wien_tail_mask


@pytest.fixture(scope="module")
def raw_generator():
    return load_generator(device="cpu", fill_tail=False)


@pytest.fixture(scope="module")
def ck04_fixture_grid(fixtures_dir):
    """Real CK04 spectra (5750 K at [M/H] = 0 and -1, every log g) on the model's grid."""
    from smnet_sps.grid import build_grid
    return build_grid(fixtures_dir / "libraries", only=["ck04"], progress=False, log=lambda s: None)


def _model_log_ratio(gen, flux, teff):
    """log10(F / sigma T^4) minus the blackbody reference: the space the table is stored in."""
    with np.errstate(divide="ignore"):
        return (np.log10(flux / (SIGMA_SB * np.asarray(teff)[:, None] ** 4))
                - blackbody_log_ratio(gen.wavelength, np.asarray(teff)))


def test_training_nodes_get_their_own_tail_back(default_generator, raw_generator):
    gen = default_generator
    with np.load(default_model_path() / TAIL_FILE) as table:
        nodes, values = table["node:ck04"][::97], table["log_ratio:ck04"][::97].astype(float)
    teff, logg, logz = (gen.nodes[k][nodes] for k in ("teff", "logg", "logz"))
    assert (gen.nodes["split"][nodes] == 0).all() and (gen.nodes["library_id"][nodes] == 0).all()
    tail = np.isfinite(values)
    assert tail.sum() > 1000
    flux, _ = gen.surface_flux(teff, logg, logz, library="ck04")
    got = _model_log_ratio(gen, flux, teff)[:, :values.shape[1]]
    # the stored values are float16: 0.008 dex at |value| < 32
    np.testing.assert_allclose(got[tail], values[tail], atol=0.01)
    raw, _ = raw_generator.surface_flux(teff, logg, logz, library="ck04")
    off = np.abs(_model_log_ratio(gen, raw, teff)[:, :values.shape[1]][tail] - values[tail])
    assert np.median(off) > 1.0                  # the network alone is far off there: the test has teeth


@pytest.mark.parametrize("library", ["ck04", "wmbasic"])
def test_training_nodes_get_their_own_rayleigh_jeans_tail_back(default_generator, raw_generator, library):
    """The red block: the mid / far infrared of hot stars, below 1e-6 of their peak (left out of training)."""
    gen = default_generator
    with np.load(default_model_path() / TAIL_FILE) as table:
        nodes = table[f"node:{library}"][::13]
        values = table[f"red_log_ratio:{library}"][::13].astype(float)
    start = gen.wavelength.size - values.shape[1]
    assert gen.wavelength[start] > 2e4                       # the infrared only
    teff, logg, logz = (gen.nodes[k][nodes] for k in ("teff", "logg", "logz"))
    tail = np.isfinite(values)
    assert tail.sum() > 500
    flux, _ = gen.surface_flux(teff, logg, logz, library=library)
    np.testing.assert_allclose(_model_log_ratio(gen, flux, teff)[:, start:][tail], values[tail], atol=0.01)
    raw, _ = raw_generator.surface_flux(teff, logg, logz, library=library)
    off = np.abs(_model_log_ratio(gen, raw, teff)[:, start:][tail] - values[tail])
    assert np.percentile(off, 90) > 0.05          # the network alone was tens of per cent off there


@pytest.mark.parametrize("logg", [1.5, 4.0])
def test_held_out_node_far_infrared_matches_ck04(default_generator, raw_generator, ck04_fixture_grid, logg):
    """5750 K test nodes: at 60-160 um (below 1e-6 of the peak) the filled spectrum follows CK04's own to 2 %;
    the network alone was 1.3-1.4x too bright there."""
    g = ck04_fixture_grid
    i = np.flatnonzero((g.teff == 5750.0) & (g.logz == 0.0) & (g.logg == logg))[0]
    wave = default_generator.wavelength
    band = wave >= 5.5e5
    assert np.nanmax(g.flux[i, band]) < 1e-6 * np.nanmax(g.flux[i])
    ratio = {}
    for name, gen in (("filled", default_generator), ("raw", raw_generator)):
        flux, _ = gen.surface_flux(5750.0, logg, 0.0, library="ck04")
        ratio[name] = flux[0, band] / g.flux[i, band]
    np.testing.assert_allclose(ratio["filled"], 1.0, rtol=0.02)
    assert np.median(ratio["raw"]) > 1.15, ratio


@pytest.mark.parametrize("logg", [1.5, 4.0])
def test_held_out_node_far_uv_matches_ck04(default_generator, raw_generator, ck04_fixture_grid, logg):
    """5750 K, [M/H] = 0, log g 1.5 and 4.0 are test nodes of the shipped model (never trained on, not in the
    table); their 1000-1300 A flux is below 1e-6 of the peak."""
    g = ck04_fixture_grid
    i = np.flatnonzero((g.teff == 5750.0) & (g.logz == 0.0) & (g.logg == logg))[0]
    nodes = default_generator.nodes
    node = np.flatnonzero((nodes["teff"] == 5750.0) & (nodes["logg"] == logg) & (nodes["logz"] == 0.0)
                          & (nodes["library_id"] == 0))
    assert nodes["split"][node[0]] == 2
    wave = default_generator.wavelength
    band = (wave >= 1000.0) & (wave < 1300.0)
    assert np.nanmax(g.flux[i, band]) < 1e-6 * np.nanmax(g.flux[i])
    truth = np.trapezoid(g.flux[i, band], wave[band])
    ratio = {}
    for name, gen in (("filled", default_generator), ("raw", raw_generator)):
        flux, _ = gen.surface_flux(5750.0, logg, 0.0, library="ck04")
        ratio[name] = np.trapezoid(flux[0, band], wave[band]) / truth
    assert 0.7 < ratio["filled"] < 1.4, ratio
    assert ratio["raw"] > 10.0, ratio                # what the fill corrects


def test_no_pixel_the_network_learned_changes(default_generator, raw_generator, ck04_fixture_grid):
    """Above 1e-6 of the peak (where the loss reached) filled and raw spectra are the same."""
    g = ck04_fixture_grid
    filled, _ = default_generator.surface_flux(g.teff, g.logg, g.logz, library="ck04")
    raw, _ = raw_generator.surface_flux(g.teff, g.logg, g.logz, library="ck04")
    learned = g.flux >= 1e-5 * np.nanmax(g.flux, 1, keepdims=True)         # by the library's own spectra
    np.testing.assert_array_equal(filled[learned], raw[learned])
    assert (filled != raw).sum(1).min() > 10        # and every one of these stars had pixels filled


def test_old_ssp_far_uv_no_longer_comes_from_red_giants(raw_generator):
    """10 Gyr, solar PARSEC: the far UV of an SSP without hot horizontal-branch stars is the turn-off's; the
    unconstrained tails of the giants made 72 % of it before."""
    import astropy.units as u

    from smnet_sps import ssp_spectrum
    share = {}
    for name, gen in (("filled", None), ("raw", raw_generator)):
        ssp = ssp_spectrum(10 * u.Gyr, Z=0.0152, by_phase=True, generator=gen)
        wave = ssp.spectral_axis.to_value(u.AA)
        band = (wave > 1350.0) & (wave < 1750.0)
        total = np.trapezoid(ssp.flux.value[band], wave[band])
        giants = sum(np.trapezoid(ssp.meta["phase_flux"][p][band], wave[band])
                     for p in ("red giant branch", "early AGB", "TP-AGB"))
        share[name] = giants / total
        assert ssp.meta["tail_filled"] is (name == "filled")          # the provenance says which
    assert share["filled"] < 0.05 and share["raw"] > 0.5, share


def test_gradients_through_filled_pixels_match_finite_differences(default_generator):
    gen = default_generator
    pix = np.flatnonzero((gen.wavelength > 1000.0) & (gen.wavelength < 1700.0))[::6]
    point = (4530.0, 2.46, 0.07)                      # off every node and face: the fill is linear here
    args = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in point]

    def log_flux(teff, logg, logz):
        return torch.log(gen.torch_surface_flux(teff, logg, logz, library="ck04"))[:, pix]
    assert torch.autograd.gradcheck(log_flux, args, eps=1e-6, atol=1e-5, rtol=1e-3)
    fast, _ = gen.surface_flux(*point, library="ck04")
    slow = gen.torch_surface_flux(*[torch.tensor([v]) for v in point], library="ck04").numpy()
    np.testing.assert_allclose(slow, fast, rtol=3e-5)
    # these pixels are filled (the network alone would be > 10x off), so the check covers the fill
    raw = load_generator(device="cpu", fill_tail=False).surface_flux(*point, library="ck04")[0]
    assert np.median(np.abs(np.log10(raw[0, pix] / fast[0, pix]))) > 1.0


def test_points_outside_the_nodes_use_the_nearest_node(default_generator):
    """Held at the training box like the network input; the fill stays finite and bounded there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, inside = default_generator.surface_flux([2100.0, 3600.0, 250000.0], [8.4, -0.9, 5.0],
                                                      [0.9, -2.9, 0.0])
    assert not inside.any() and np.isfinite(flux).all() and (flux >= 0).all()


def test_shipped_table_holds_no_gpl_distributed_spectra_and_basel_takes_ck04s(default_generator):
    """BaSeL 2.2 and CM87 were trained from GPL-3 copies: the table (pieces of the spectra) leaves them out;
    BaSeL fills its tail from CK04's nodes, CM87 keeps the network's own."""
    with np.load(default_model_path() / TAIL_FILE) as table:
        assert not any(k.endswith((":basel22", ":cm87")) and not k.startswith("stand_in:")
                       for k in table.files)
        assert str(table["stand_in:basel22"]) == "ck04"
    tail = default_generator.tail
    names = default_generator.library_names
    assert tail.stand_ins == {"basel22": "ck04"} and tail.libraries[names.index("cm87")] is None
    # a 3000 K M giant, BaSeL alone covers it: its far UV now follows CK04's coolest giant, not the network
    wave = default_generator.wavelength
    band = (wave > 1300) & (wave < 1800)
    f = {}
    for name, gen in (("filled", default_generator), ("raw", load_generator(device="cpu", fill_tail=False))):
        flux, _ = gen.surface_flux(3000.0, 0.5, 0.0, library="basel22")
        f[name] = np.trapezoid(flux[0, band], wave[band]) / np.trapezoid(flux[0], wave)
    ck04, _ = default_generator.surface_flux(3500.0, 0.5, 0.0, library="ck04")
    ck04_share = np.trapezoid(ck04[0, band], wave[band]) / np.trapezoid(ck04[0], wave)
    assert f["filled"] < ck04_share < 1e-3 * f["raw"], (f, ck04_share)


def test_the_fill_is_continuous_across_a_librarys_edge(default_generator):
    """On NextGen's coolest face (2600 K) and just across it the far UV moves smoothly: a point on the face
    once fell outside the sheared hull (the nearest node then stood in, 1.4 dex off), and a point beyond it
    is clipped onto the face."""
    gen = default_generator
    pix = np.flatnonzero((gen.wavelength > 1000) & (gen.wavelength < 2500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, _ = gen.surface_flux([2600.0, 2600.0 * (1 + 1e-9), 2599.9, 2600.1], 5.284, -0.294)
    step = np.abs(np.log10(flux[1:, pix] / flux[0, pix])).max(1)
    assert step[0] < 1e-4 and step[1:].max() < 0.05, step
    # the float32 autograd path agrees there (its host lookup is float64 too)
    slow = gen.torch_surface_flux(torch.tensor([2600.0]), torch.tensor([5.284]), torch.tensor([-0.294]))
    assert np.abs(np.log10(slow.numpy()[0, pix] / flux[0, pix])).max() < 1e-3


@pytest.mark.parametrize("library, teff, logg, logz", [
    (None, 4350.0, 5.7, -0.2),          # NextGen's hull face inside its box (log g 5.5 stops at some Teff)
    ("ck04", 14500.0, 1.805293, -2.0),  # CK04's hot low-gravity hole
    (None, 7800.0, 0.536775, -1.75),
])
def test_the_fill_is_continuous_across_inner_hull_faces(default_generator, library, teff, logg, logz):
    """Outside a library's node hull but inside its box the point is projected onto the hull (the nearest
    node made jumps of 0.7-15 dex there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, _ = default_generator.surface_flux([teff] * 2, [logg - 1e-6, logg + 1e-6], [logz] * 2,
                                                 library=library)
    assert np.abs(np.log10(flux[0] / flux[1])).max() < 1e-3


def _nearest_facing(lib, x, closest):
    """The nearest of every facet's closest points (closest: (m, n_facets, ndim)) over the facets that face
    x, the lowest facet number on a tie: what the pruned search must return, bit for bit."""
    height = lib.facet_offset + x[:, :1] * lib.facet_normal[:, 0]
    for axis in range(1, lib.ndim):
        height = height + x[:, axis:axis + 1] * lib.facet_normal[:, axis]
    d = np.where(height > -1e-12, ((closest - x[:, None]) ** 2).sum(-1), np.inf)
    return closest[np.arange(len(x)), np.argmin(d, axis=1)]


_BRUTE_FORCE = {}


def _outside_points_and_their_projection(lib, library):
    """Points outside a 3-D library's hull, far (clipped to the box's corners) and near, and their closest
    hull points by measuring every facing facet; the same for every search setting, so computed once."""
    from smnet_sps.tail import _closest_on_triangles, node_points
    if library not in _BRUTE_FORCE:
        rng = np.random.default_rng(5)
        n = 3000
        far = node_points(rng.uniform(np.log10(2000.0), np.log10(200000.0), n), rng.uniform(-1.5, 8.5, n),
                           rng.uniform(-3.0, 1.0, n))
        far = np.clip(far[:, lib.kept], lib.lo, lib.hi) @ lib.shear.T
        hull = lib.tri.points[np.unique(lib.tri.convex_hull)]
        near = hull + rng.normal(size=hull.shape) * 0.3
        x = np.concatenate([far, near])
        x = x[lib._find(x, 1e-9) < 0][:600]
        f = np.broadcast_to(lib.facets, (len(x),) + lib.facets.shape)
        _BRUTE_FORCE[library] = x, _nearest_facing(lib, x, _closest_on_triangles(x, f[:, :, 0], f[:, :, 1],
                                                                                 f[:, :, 2]))
    x, every = _BRUTE_FORCE[library]
    assert len(x) > 100
    return x, every


# the pruned search's settings: (PROJECT_FIRST, PROJECT_NEAR, SMALL_FACET); None keeps the shipped value.
# (4, (1,), ...): nearly every point falls through to the search of all facets; SMALL_FACET 0: no k-d tree
SEARCHES = [(None, None, None), (4, (1,), None), (64, (4, 16), None), (None, (32,), 0.0), (None, None, 100.0)]


def _set_search(monkeypatch, search):
    from smnet_sps import tail
    for name, value in zip(("PROJECT_FIRST", "PROJECT_NEAR", "SMALL_FACET"), search):
        if value is not None:
            monkeypatch.setattr(tail, name, value)


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("library", ["ck04", "nextgen", "wmbasic"])
def test_the_projection_onto_the_hull_is_the_closest_point_of_any_facet(default_generator, library, search,
                                                                       monkeypatch):
    """The pruned search of _LibraryTail._project (candidate facets near the point, then only those whose
    distance bound is within reach) finds the same point, bit for bit, as measuring every facing facet (ties
    to the lower facet number), for points far outside the hull (clipped to the box's corners: ~20 facets
    meet at the closest point) and just outside it (fewer facing facets than it measures first), whatever
    the numbers of facets measured first and taken as candidates, and which facets count as small."""
    from smnet_sps.neural import default_model_path
    from smnet_sps.tail import TAIL_FILE, _LibraryTail, node_points, _read_table
    _set_search(monkeypatch, search)
    # the shipped library's nodes triangulated afresh: SMALL_FACET is read then
    gen = default_generator
    table = _read_table(default_model_path() / TAIL_FILE, gen.library_names, gen.wavelength.size)
    nodes = node_points(np.log10(gen.nodes["teff"]), gen.nodes["logg"], gen.nodes["logz"])
    lib = _LibraryTail(nodes[table[f"node:{library}"]], table[f"log_ratio:{library}"])
    x, every = _outside_points_and_their_projection(lib, library)
    np.testing.assert_array_equal(lib._project(x), every)
    assert np.linalg.norm(every - x, axis=1).min() > 0


def test_closest_points_on_triangles_by_coordinate_are_those_of_the_stacked_arrays():
    """_closest_on_triangles_parts (each coordinate a contiguous array; what _project measures with) gives
    the points of _closest_on_triangles bit for bit, in every region: the face, its three edges, its three
    corners, and degenerate triangles (a segment, a point)."""
    from smnet_sps.tail import _closest_on_triangles, _closest_on_triangles_parts
    rng = np.random.default_rng(11)
    m, k = 400, 7
    a, b, c = (rng.normal(size=(m, k, 3)) * rng.uniform(0.1, 50.0, (m, k, 1)) for _ in range(3))
    c[:, 0] = a[:, 0] + 0.5 * (b[:, 0] - a[:, 0])          # on a line
    b[:, 1] = c[:, 1] = a[:, 1]                            # one point
    p = rng.normal(size=(m, 3)) * 30.0
    stacked = _closest_on_triangles(p, a, b, c)
    parts = _closest_on_triangles_parts([p[:, d:d + 1] for d in range(3)],
                                        *[[v[..., d] for d in range(3)] for v in (a, b, c)])
    np.testing.assert_array_equal(np.stack(parts, -1), stacked)
    # every region was met: the point is a corner, on an edge, or inside the face
    corner = np.isclose(stacked, a).all(-1) | np.isclose(stacked, b).all(-1) | np.isclose(stacked, c).all(-1)
    inside = ~corner
    assert inside.sum() > 100 and (~inside).sum() > 100


@pytest.mark.parametrize("search", [(None, None, None), (2, (2,), None), (None, (8,), 0.0)])
def test_the_projection_in_two_dimensions_is_the_closest_point_of_any_edge(search, monkeypatch):
    """A single-[M/H] library is triangulated in 2-D: its hull's facets are segments."""
    from smnet_sps.tail import _closest_on_segments, _LibraryTail
    _set_search(monkeypatch, search)
    rng = np.random.default_rng(3)
    t, g = np.meshgrid(np.arange(180.0, 200.0), np.arange(0.0, 10.0))
    keep = (t - 180.0) > 2 * g - 4                      # a lattice with a cut-off corner, like CK04's
    points = np.stack([t[keep], g[keep], np.full(keep.sum(), -1.0)], 1)
    lib = _LibraryTail(points, np.zeros((len(points), 2)))
    assert lib.ndim == 2
    x = np.stack([rng.uniform(170, 210, 4000), rng.uniform(-5, 15, 4000)], 1) @ lib.shear.T
    x = x[lib._find(x, 1e-9) < 0]
    f = np.broadcast_to(lib.facets, (len(x),) + lib.facets.shape)
    every = _nearest_facing(lib, x, _closest_on_segments(x, f[:, :, 0], f[:, :, 1]))
    np.testing.assert_array_equal(lib._project(x), every)


def test_a_spectrum_does_not_depend_on_its_batch(default_generator):
    """Bit for bit: a point on a face shared by two simplices, or in the last row of a chunk, gets the same
    spectrum whatever the other points are."""
    rng = np.random.default_rng(2)
    teff = 10 ** rng.uniform(np.log10(2000.0), np.log10(200000.0), 5000)
    logg, logz = rng.uniform(-1.5, 8.5, 5000), rng.uniform(-3.0, 1.0, 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        for library in (None, "ck04"):
            forward, _ = default_generator.surface_flux(teff, logg, logz, library=library)
            backward, _ = default_generator.surface_flux(teff[::-1], logg[::-1], logz[::-1], library=library)
            np.testing.assert_array_equal(forward, backward[::-1])


def test_degenerate_libraries_load_and_interpolate():
    """One node (or copies of one) and a 1-D library with a repeated node: no crash, no NaN."""
    from smnet_sps.tail import _LibraryTail
    one = _LibraryTail(np.zeros((1, 3)), np.zeros((1, 4), np.float16))
    verts, simplex, *_ = one.locate(np.array([[1.0, 2.0, 3.0]]))
    assert (verts == 0).all() and (simplex == -1).all()
    points = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    line = _LibraryTail(points, np.arange(8, dtype=np.float16).reshape(4, 2))
    query = np.array([[0.0, 1.0, 1.0], [0.5, 1.0, 1.0], [-3.0, 1.0, 1.0]])
    verts, simplex, *_ = line.locate(query)
    w = line.weights(torch.tensor(query, dtype=torch.float64), torch.tensor(simplex)).numpy()
    assert np.isfinite(w).all() and np.allclose(w.sum(1), 1.0)
    values = (w[:, :, None] * line.values.astype(float)[verts]).sum(1)
    np.testing.assert_allclose(values[:, 0], [0.0, 2.0, 0.0])     # node 0 (value 0) .. node 2 (value 4)


@pytest.mark.parametrize("side, expected", [
    (wien_tail_mask, [True, False, False, False, False, False]),      # 200 A is not known
    (red_tail_mask, [False, False, False, False, True, False]),       # 600 A is not known
])
def test_each_tail_mask_is_its_side_of_the_peak_below_the_floor(side, expected):
    wave = np.array([100.0, 200.0, 300.0, 400.0, 500.0, 600.0])
    flux = np.array([[1e-9, 1e-7, 1e-3, 1.0, 1e-8, 1e-9]])
    mask = np.array([[True, False, True, True, True, False]])
    np.testing.assert_array_equal(side(wave, flux, mask, 1e-6), [expected])


def test_basel_takes_ck04s_rayleigh_jeans_tail_without_the_wien_sides_depth(default_generator, raw_generator):
    """A 9,000 K BaSeL dwarf: its 40-160 um (below 1e-6 of its peak) come from CK04's nodes from the first
    tail pixel on; the Wien side's 5-pixel depth withheld the 5 wide far-infrared pixels (0.1-0.3 dex off)."""
    wave = default_generator.wavelength
    far = wave >= 4e5
    filled, _ = default_generator.surface_flux(9000.0, 4.0, 0.0, library="basel22")
    raw, _ = raw_generator.surface_flux(9000.0, 4.0, 0.0, library="basel22")
    ck04, _ = default_generator.surface_flux(9000.0, 4.0, 0.0, library="ck04")
    np.testing.assert_allclose(filled[0, far], ck04[0, far], rtol=0.02)
    assert np.abs(np.log10(raw[0, far] / ck04[0, far])).max() > 0.05


def test_training_writes_the_table_and_it_fills(tmp_path):
    from test_train import make_synthetic_grid

    from smnet_sps.train import train
    torch.set_num_threads(1)
    grid_path = make_synthetic_grid(tmp_path / "grid.h5")
    out = tmp_path / "m"
    cfg = train(grid_path, out, width=32, depth=2, epochs=3, batch_size=32, progress=False, device="cpu")
    assert cfg["tail_file"] == TAIL_FILE and (out / TAIL_FILE).is_file()
    gen = load_generator(out, device="cpu")
    with np.load(out / TAIL_FILE) as table:
        nodes, values = table["node:liba"], table["log_ratio:liba"].astype(float)
        assert table["red_log_ratio:liba"].shape[0] == nodes.size        # the red block too (empty here)
    assert (gen.nodes["split"][nodes] == 0).all()
    coolest = np.argmin(gen.nodes["teff"][nodes])
    i = nodes[coolest]
    tail = np.isfinite(values[coolest])
    assert tail.sum() >= 3                            # the far UV of a 4000 K blackbody
    flux, _ = gen.surface_flux(*(gen.nodes[k][i] for k in ("teff", "logg", "logz")), library="liba")
    got = _model_log_ratio(gen, flux, [gen.nodes["teff"][i]])[0, :values.shape[1]]
    np.testing.assert_allclose(got[tail], values[coolest, tail], atol=0.01)


@pytest.fixture
def model_copy(tmp_path):
    out = tmp_path / "model"
    shutil.copytree(default_model_path(), out)
    return out


def test_damaged_or_missing_tables_are_refused(model_copy):
    (model_copy / TAIL_FILE).write_bytes((model_copy / TAIL_FILE).read_bytes()[:1000])
    with pytest.raises(ValueError, match="tail table .* does not match its config.json"):
        load_generator(model_copy, device="cpu")
    cfg = json.loads((model_copy / "config.json").read_text())
    del cfg["tail_sha256"]
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a readable tail table"):
        load_generator(model_copy, device="cpu")
    (model_copy / TAIL_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="tail.npz"):
        load_generator(model_copy, device="cpu")
    assert load_generator(model_copy, device="cpu", fill_tail=False).tail is None
    with pytest.raises(ValueError, match="fill_tail is a switch: True or False"):
        load_generator(model_copy, device="cpu", fill_tail="yes")


@pytest.mark.parametrize("damage", [{"method": 99}, {"encrypted": True}])
def test_a_tail_table_with_a_damaged_header_is_named(model_copy, tmp_path, damage):
    """Two hand-written readers of tail.npz caught less than checksums.read_npz: a damaged compression
    method (NotImplementedError) or 'encrypted' flag (RuntimeError) of its wavelength array was a raw
    traceback from load_generator (the model records no wavelength_sha256, so the grid is compared with the
    tail table's), and any damage one from write_without_nodes (build_expert_model's copy)."""
    from zip_damage import damage_zip_member
    from smnet_sps.tail import write_without_nodes
    cfg = json.loads((model_copy / "config.json").read_text())
    del cfg["tail_sha256"]                      # as a model saved before the checksum was recorded
    (model_copy / "config.json").write_text(json.dumps(cfg))
    damage_zip_member(model_copy / TAIL_FILE, model_copy / TAIL_FILE, "wavelength.npy", **damage)
    message = r"tail.npz is not a readable tail table \((NotImplementedError|RuntimeError): "
    with pytest.raises(ValueError, match=message):
        load_generator(model_copy, device="cpu")
    with pytest.raises(ValueError, match=message):
        write_without_nodes(model_copy / TAIL_FILE, tmp_path / "out.npz", [0])
    assert not (tmp_path / "out.npz").exists()


def test_a_model_without_a_table_still_loads(model_copy):
    cfg = json.loads((model_copy / "config.json").read_text())
    del cfg["tail_file"], cfg["tail_sha256"]
    (model_copy / "config.json").write_text(json.dumps(cfg))
    (model_copy / TAIL_FILE).unlink()
    assert load_generator(model_copy, device="cpu").tail is None


def test_a_table_from_before_the_red_block_fills_its_blue_side_and_holds_its_red_one(model_copy,
                                                                                    default_generator):
    """A table from before 2026-12-03 has no red block: its far UV is filled as before, and its Rayleigh-Jeans
    tail is held at the network's log10(F / pi B) where it last learned (a constant brightness-temperature
    ratio), as for a library without a table, instead of the network's untrained output."""
    from smnet_sps.checksums import file_sha256
    with np.load(model_copy / TAIL_FILE) as f:
        data = {k: f[k] for k in f.files if not k.startswith("red_log_ratio:")}
    np.savez_compressed(model_copy / TAIL_FILE, **data)
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg["tail_sha256"] = file_sha256(model_copy / TAIL_FILE)
    (model_copy / "config.json").write_text(json.dumps(cfg))
    old = load_generator(model_copy, device="cpu")
    wave = old.wavelength
    got, _ = old.surface_flux(9000.0, 4.1, -0.3, library="ck04")
    now, _ = default_generator.surface_flux(9000.0, 4.1, -0.3, library="ck04")
    blue, red = wave < 3000.0, wave > 1e5
    np.testing.assert_array_equal(got[0, blue], now[0, blue])
    held = _model_log_ratio(old, got, [9000.0])[0, red][-6:]              # beyond the floor crossing
    np.testing.assert_allclose(held, held[-1], atol=1e-5)               # held: one value (float32)
    # within 15 % of today's interpolated red block (CK04's brightness-temperature ratio drifts by ~10 % over
    # 10-160 um at 9,000 K: why the shipped table interpolates the nodes)
    np.testing.assert_allclose(got[0, red], now[0, red], rtol=0.15)


def test_libraries_without_a_red_block_hold_their_rayleigh_jeans_tail(default_generator, raw_generator):
    """CM87 (no table) at its 100 kK, log g 6 node: the network's untrained 40 um pixel was ~20x too bright;
    held, its far infrared keeps the brightness-temperature ratio of the last learned pixel. A BaSeL M dwarf
    (2,500 K, below CK04's 3,500 K, so beyond its stand-in's Teff range) is held too: CK04's 3,500 K face gave
    1.8x at 60-160 um."""
    wave = default_generator.wavelength
    far = wave >= 1e5
    for teff, logg, lib in ((100000.0, 6.0, "cm87"), (2500.0, 5.0, "basel22")):
        flux, _ = default_generator.surface_flux(teff, logg, 0.0, library=lib)
        raw, _ = raw_generator.surface_flux(teff, logg, 0.0, library=lib)
        held = _model_log_ratio(default_generator, flux, [teff])[0, far]
        assert np.ptp(held[-5:]) < 1e-5, (lib, held)
        assert np.abs(np.log10(raw[0, far] / flux[0, far])).max() > 0.2, lib   # what the hold replaced


def test_a_hand_made_table_with_impossible_values_is_refused(model_copy):
    """A table whose sha256 matches (config.json updated too) but whose values would give inf flux."""
    from smnet_sps.checksums import file_sha256
    with np.load(model_copy / TAIL_FILE) as f:
        data = {k: f[k] for k in f.files}
    known = np.isfinite(data["log_ratio:ck04"])
    data["log_ratio:ck04"] = np.where(known, np.float16(6e4), np.float16(np.nan))
    np.savez_compressed(model_copy / TAIL_FILE, **data)
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg["tail_sha256"] = file_sha256(model_copy / TAIL_FILE)
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="beyond"):
        load_generator(model_copy, device="cpu")


def test_meta_says_whether_the_tail_is_filled(default_generator, raw_generator):
    assert "training nodes interpolated" in default_generator.meta["tail"]
    assert raw_generator.meta["tail"] == "the network's own output everywhere"


@pytest.mark.parametrize("extra, message", [
    (["--libraries", ","], "no library to tabulate"),
    (["--libraries", ""], "no library to tabulate"),
    (["--libraries", "ck04", "--stand-in", "cm87=ck04"], "Teff ranges do not overlap"),
    (["--libraries", "ck04", "--stand-in", "basel22"], "expected LIBRARY=TABULATED"),
    # the last of two stand-ins for one library silently won
    (["--libraries", "ck04,nextgen", "--stand-in", "basel22=ck04", "--stand-in", "basel22=nextgen"],
     "--stand-in names 'basel22' twice (basel22=ck04, basel22=nextgen)"),
])
def test_tail_cli_explains_bad_options(model_copy, extra, message, capsys):
    from smnet_sps.cli import main
    before = (model_copy / TAIL_FILE).read_bytes()
    assert main(["tail", "--model", str(model_copy), "--grid", "nowhere.h5", "--overwrite", *extra]) == 1
    assert message in capsys.readouterr().err
    assert (model_copy / TAIL_FILE).read_bytes() == before               # nothing written


def test_tail_cli_on_what_is_not_a_model(tmp_path, capsys):
    from smnet_sps.cli import main
    assert main(["tail", "--model", str(tmp_path / "none"), "--grid", "g.h5"]) == 1
    assert "is not a model directory: no config.json" in capsys.readouterr().err


def test_tail_cli_refuses_a_grid_the_model_was_not_trained_on(model_copy, tmp_path):
    from test_train import make_synthetic_grid

    from smnet_sps.cli import main
    grid_path = make_synthetic_grid(tmp_path / "other.h5")
    assert main(["tail", "--model", str(model_copy), "--grid", str(grid_path), "--overwrite"]) == 1
    with pytest.raises(ValueError, match="is not the grid"):
        from smnet_sps.tail import write_tail_table
        write_tail_table(model_copy, grid_path)


def test_tail_cli_replaces_a_recorded_table_only_with_overwrite(model_copy, capsys):
    """`smnet-sps tail` rewrote a model's tail table (and so its spectra) without being asked; every other
    command replaces an existing file only with --overwrite. Refused before the grid is read."""
    from smnet_sps.cli import main
    before = (model_copy / TAIL_FILE).read_bytes()
    assert main(["tail", "--model", str(model_copy), "--grid", "nowhere.h5"]) == 1
    assert "already has a tail table (tail.npz); --overwrite replaces it" in capsys.readouterr().err
    assert (model_copy / TAIL_FILE).read_bytes() == before


def test_tail_cli_also_guards_an_unrecorded_table(model_copy, capsys):
    """A tail.npz in the folder that config.json does not record was replaced silently (validate's mixture
    check looks at the file too)."""
    import json

    from smnet_sps.cli import main
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg.pop("tail_file", None)
    cfg.pop("tail_sha256", None)
    (model_copy / "config.json").write_text(json.dumps(cfg))
    assert main(["tail", "--model", str(model_copy), "--grid", "nowhere.h5"]) == 1
    assert "already has a tail table (tail.npz)" in capsys.readouterr().err


def test_gradients_through_the_held_tail_and_its_blend_match_finite_differences(default_generator):
    """BaSeL at 3,450 K, inside the 0.02 dex over which CK04's red block fades into the hold: the blend
    weight follows Teff with its derivative; CM87's held far infrared too; and BaSeL at 2,270 K, where pixels
    near the floor are partly held (the hold weight scales the stand-in's fill: its derivative counts)."""
    gen = default_generator
    pix = np.flatnonzero(gen.wavelength > 5e4)
    for point, lib in (((3450.0, 4.8, 0.05), "basel22"), ((90000.0, 5.7, 0.1), "cm87"),
                       ((2270.0, 1.0, 0.05), "basel22")):
        args = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in point]

        def log_flux(teff, logg, logz, lib=lib):
            return torch.log(gen.torch_surface_flux(teff, logg, logz, library=lib))[:, pix]
        assert torch.autograd.gradcheck(log_flux, args, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_tail_blocks_that_overlap_keep_a_red_block():
    """A library whose nodes' Wien tails reach past other nodes' Rayleigh-Jeans tails: the blue block takes
    both sides up to its end and the red block starts there, so the library still has a red block of its own
    (it is not held) and every tail pixel is tabulated once."""
    from smnet_sps.tail import tabulate_tail
    wave = np.arange(1.0, 11.0)
    values = np.arange(20.0).reshape(2, 10)
    blue = np.zeros((2, 10), bool)
    red = np.zeros((2, 10), bool)
    blue[0, :7] = True                  # a cool node: Wien tail to pixel 6
    red[1, 4:] = True                   # a hot node: Rayleigh-Jeans tail from pixel 4
    table = tabulate_tail(wave, values, blue, np.zeros(2, int), np.zeros(2, int), ["lib"], red_tail=red)
    b, r = table["log_ratio:lib"].astype(float), table["red_log_ratio:lib"].astype(float)
    assert b.shape == (2, 7) and r.shape == (2, 3)
    np.testing.assert_array_equal(np.isfinite(np.hstack([b, r])), blue | red)
    np.testing.assert_array_equal(np.hstack([b, r])[blue | red], values[blue | red])


def test_the_hold_neither_jumps_nor_overshoots(default_generator):
    """An untrained pixel the network made brighter must not pass for a learned one and be held (BaSeL held
    one at 2,082 K but not at 2,083 K: 2.4x at 80-160 um), and across the 0.02 dex where CK04's red block
    fades into the hold the far infrared moves monotonically (blending the fill twice overshot both ends)."""
    from smnet_sps.model import blackbody_log_ratio
    gen = default_generator
    far = gen.wavelength >= 8e5
    flux, _ = gen.surface_flux([2082.0, 2083.0], [5.0, 5.0], [0.0, 0.0], library="basel22")
    assert np.abs(np.log10(flux[0, far] / flux[1, far])).max() < 0.02
    # where the floor crossing moves from one pixel to the next the held level and that pixel move
    # continuously (they jumped by 0.09 dex between 2,272 and 2,273 K at log g 1: 400x the smooth rate)
    teff = np.arange(2250.0, 2290.0)
    flux, _ = gen.surface_flux(teff, np.ones(teff.size), np.zeros(teff.size), library="basel22")
    assert np.abs(np.diff(np.log10(flux[:, far]), axis=0)).max() < 0.04
    teff = np.array([3342.0, 3380.0, 3421.0, 3460.0, 3500.0])
    flux, _ = gen.surface_flux(teff, np.full(5, 4.5), np.zeros(5), library="basel22")
    ratio = np.log10(flux / (SIGMA_SB * teff[:, None] ** 4)) - blackbody_log_ratio(gen.wavelength, teff)
    steps = np.diff(ratio[:, far].mean(1))
    assert (steps > 0).all() or (steps < 0).all(), steps


def test_the_tail_fill_keeps_few_column_blocks_and_the_same_spectra(default_generator, monkeypatch):
    """The fill keeps its contiguous column blocks of the tail tables for the next batches (at most
    BLOCK_CACHE of them): spectra with the kept blocks, with blocks made afresh and with a cache of one are
    the same bit for bit."""
    from smnet_sps import tail as tail_module
    rng = np.random.default_rng(4)
    n = 300
    teff, logg, logz = 10 ** rng.uniform(np.log10(2500), np.log10(60000), n), rng.uniform(0, 5, n), \
        rng.uniform(-1.5, 0.3, n)
    gen = default_generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen.tail._blocks.clear()
        first, _ = gen.surface_flux(teff, logg, logz)
        assert 0 < len(gen.tail._blocks) <= tail_module.BLOCK_CACHE
        again, _ = gen.surface_flux(teff, logg, logz)
        monkeypatch.setattr(tail_module, "BLOCK_CACHE", 1)
        gen.tail._blocks.clear()
        small, _ = gen.surface_flux(teff, logg, logz)
        assert len(gen.tail._blocks) == 1
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(small, first)


@pytest.mark.parametrize("teff, logg", [(78421.98, 6.024899609), (99068.98, 7.076108669)])
def test_the_held_level_does_not_jump_where_the_output_touches_the_floor_twice(default_generator, teff, logg):
    """CM87's network output crosses the hold's floor twice near 2 um here: a pixel bluer than the first
    crossing touches the floor. The level held was the ratio at the first pixel below it, so it jumped when
    that pixel dipped below: 0.0095 dex over 2-160 um (V-K 0.024 mag) across 1e-12 dex of Teff. Bisected,
    the steepest step along Teff shrinks to nothing."""
    gen = default_generator
    red = gen.wavelength >= 2e4

    def level(t):
        flux, _ = gen.surface_flux(t, np.full(np.size(t), logg), np.zeros(np.size(t)), library="cm87")
        return np.log10(flux[:, red]).mean(1)

    t = np.linspace(teff - 0.5, teff + 0.5, 41)
    v = level(t)
    i = int(np.argmax(np.abs(np.diff(v))))
    a, b, va, vb = t[i], t[i + 1], v[i], v[i + 1]
    for _ in range(40):
        m = 0.5 * (a + b)
        vm = level(np.array([m]))[0]
        if abs(vm - va) >= abs(vb - vm):
            b, vb = m, vm
        else:
            a, va = m, vm
    assert b - a < 1e-6                                   # K: a step left there is a jump
    assert abs(vb - va) < 1e-4, (a, b, vb - va)
