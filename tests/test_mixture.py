"""The default library mixture: boxes are hard limits, weights are a continuous partition of unity."""
import json
import shutil
import warnings

import numpy as np
import pytest

from smnet_sps.mixture import (EDGE_TAPER, FALLBACK_TRIM, SINGLE_METALLICITY_TOLERANCE, LibraryMixture,
                               MixturePolicy, band_memberships, box_taper, rank_libraries, stacked_weights)


@pytest.fixture(scope="module")
def shipped(default_generator):
    g = default_generator
    return LibraryMixture(g.library_names, g.library_boxes, g.nodes, g.mixture_policy)


@pytest.fixture(scope="module")
def scrambled(default_generator):
    """A policy whose orders differ in every region (stresses the handover between regions)."""
    g = default_generator
    rng = np.random.default_rng(1)
    pol = MixturePolicy.default(g.library_names)
    pol.orders = [[list(rng.permutation(g.library_names)) for _ in row] for row in pol.orders]
    return LibraryMixture(g.library_names, g.library_boxes, g.nodes, pol)


def _closed_log_boxes(gen):
    """Per library ((lo, hi) x 3) in (log10 Teff, log g, [M/H]), single metallicity widened."""
    out = []
    for n in gen.library_names:
        b = gen.library_boxes[n]
        z = tuple(b.logz) if b.logz[1] > b.logz[0] else (b.logz[0] - SINGLE_METALLICITY_TOLERANCE,
                                                         b.logz[1] + SINGLE_METALLICITY_TOLERANCE)
        out.append(((np.log10(b.teff[0]), np.log10(b.teff[1])), tuple(b.logg), z))
    return out


def _face_sweeps(gen):
    """Points crossing every face of every library box (each dimension, both faces), the other two
    coordinates at 3 x 3 positions inside the box; +-3 taper widths around the face, plus the face itself."""
    pts = []
    for box in _closed_log_boxes(gen):
        for d in range(3):
            others = [k for k in range(3) if k != d]
            grids = [np.linspace(box[k][0], box[k][1], 5)[1:-1] for k in others]
            for face in box[d]:
                steps = np.concatenate([np.linspace(-3, 3, 121) * EDGE_TAPER[d], [0.0, 1e-9, -1e-9]])
                for a in grids[0]:
                    for b in grids[1]:
                        p = np.empty((steps.size, 3))
                        p[:, d] = face + steps
                        p[:, others[0]], p[:, others[1]] = a, b
                        pts.append(p)
    return np.concatenate(pts)


@pytest.mark.parametrize("which", ["shipped", "scrambled"])
def test_never_weights_a_library_outside_its_box(default_generator, which, request):
    gen = default_generator
    mix = request.getfixturevalue(which)
    p = _face_sweeps(gen)
    assert len(p) > 5000
    w = mix.weights(p[:, 0], p[:, 1], p[:, 2])
    assert np.allclose(w.sum(1), 1.0, atol=1e-12) and (w >= 0).all()
    covered = mix.support(p[:, 0], p[:, 1], p[:, 2]).max(1) > 0
    assert covered.mean() > 0.5
    for j, box in enumerate(_closed_log_boxes(gen)):
        outside = np.zeros(len(p), bool)
        for d in range(3):
            outside |= (p[:, d] < box[d][0]) | (p[:, d] > box[d][1])
        # wherever some library supports the point, a library outside its box gets exactly nothing
        bad = outside & covered & (w[:, j] > 0)
        assert not bad.any(), f"{gen.library_names[j]} weighted outside its box at {p[bad][:3]}"
        # where nothing supports the point (outside every box, or on a face with no other library), the
        # point is flagged as outside coverage unless it is on (not beyond) the face of this library
        beyond = outside & ~covered & (w[:, j] > 0)
        if beyond.any():
            t = 10 ** p[beyond, 0]
            assert not gen.in_coverage(t, p[beyond, 1], p[beyond, 2]).any()


def test_single_metallicity_tolerance(default_generator, shipped):
    """BaSeL (solar only) covers +-0.25 dex: alone (M giants) it has all the weight there, and beyond it the
    point is outside coverage; where CK04 overlaps, BaSeL has no weight beyond 0.25 dex."""
    j = default_generator.library_names.index("basel22")
    z = np.linspace(-0.4, 0.4, 161)
    w = shipped.weights(np.full(z.size, np.log10(3000.0)), np.full(z.size, 0.5), z)[:, j]
    assert np.all(w[np.abs(z) <= SINGLE_METALLICITY_TOLERANCE] == 1)      # the only library there
    assert shipped.support(np.full(z.size, np.log10(3000.0)), np.full(z.size, 0.5), z)[
        np.abs(z) >= SINGLE_METALLICITY_TOLERANCE].max() == 0
    beyond = np.abs(z) > SINGLE_METALLICITY_TOLERANCE
    assert not default_generator.in_coverage(np.full(beyond.sum(), 3000.0), 0.5, z[beyond]).any()
    # where CK04 overlaps, BaSeL hands over within the tolerance's inner 0.05 dex
    w = shipped.weights(np.full(z.size, np.log10(4500.0)), np.full(z.size, 4.6), z)
    jc = default_generator.library_names.index("ck04")
    assert np.all(w[np.abs(z) > SINGLE_METALLICITY_TOLERANCE, j] == 0)
    assert np.allclose(w[np.abs(z) > SINGLE_METALLICITY_TOLERANCE, jc], 1)


def test_issue_cases(default_generator):
    g = default_generator
    names = g.library_names
    # WM-basic stops at [M/H] = +0.3: no weight at +0.5
    assert g.mixture(30000.0, 4.0, 0.5)[0, names.index("wmbasic")] == 0
    # BaSeL is solar: no weight at [M/H] = -1 or +0.5
    assert g.mixture(5000.0, 4.5, -1.0)[0, names.index("basel22")] == 0
    assert g.mixture(5000.0, 4.5, 0.5)[0, names.index("basel22")] == 0
    # a 3900 K solar dwarf is one library, not three thirds
    assert g.mixture(3900.0, 4.6, 0.0).max() == 1.0
    # library= imitation is unchanged: one-hot
    assert np.array_equal(g.mixture(5777.0, 4.44, 0.0, library="nextgen")[0], np.eye(len(names))[1])


@pytest.mark.parametrize("which", ["shipped", "scrambled"])
def test_weights_are_continuous(default_generator, which, request):
    """A small step in any parameter changes the weights by little (no step in the spectrum)."""
    mix = request.getfixturevalue(which)
    rng = np.random.default_rng(7)
    n = 20000
    # points inside the union box, concentrated around faces and region edges
    p = np.stack([rng.uniform(np.log10(2100), np.log10(170000), n), rng.uniform(-0.9, 7.9, n),
                  rng.uniform(-2.45, 0.45, n)], 1)
    step = np.array([1e-4, 1e-3, 5e-4])         # 0.023 % in Teff, 0.001 dex in log g, 0.0005 dex in [M/H]
    w0 = mix.weights(*p.T)
    for d in range(3):
        q = p.copy()
        q[:, d] += step[d]
        dw = np.abs(mix.weights(*q.T) - w0).max(1)
        # smoothstep's slope is 1.5 / width: 1.5 * 1e-4 / 0.01 = 0.015 per library taper
        assert np.percentile(dw, 99.9) < 0.05, (d, np.sort(dw)[-5:])
        assert dw.max() < 0.2, (d, p[np.argmax(dw)], dw.max())


def test_teff_sweep_spectrum_has_no_step(default_generator):
    """Across CK04's 3500 K face (CK04 -> NextGen) and the region edges at 4000 and 5500 K, the spectrum
    (3000-10000 A) is continuous: where 0.1 % steps in Teff change it most, 10x smaller steps change it
    ~10x less (a step in the spectrum would not shrink)."""
    g = default_generator

    def jumps(t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, _ = g.surface_flux(t, 4.6, -0.1)
        band = (g.wavelength > 3000) & (g.wavelength < 10000)
        return np.abs(np.diff(np.log(f[:, band]), axis=0)).mean(1)

    t = 3300.0 * 1.001 ** np.arange(560)        # 3300 -> 5770 K
    coarse = jumps(t)
    worst = t[np.argmax(coarse)]
    fine = jumps(worst * 1.0001 ** np.arange(11))
    assert fine.max() < 0.2 * coarse.max()
    assert coarse.max() < 0.05                  # and the handover is spread: < 5 % per 0.1 % in Teff


def test_building_blocks():
    p = np.array([[0.5, 0.5, 0.5], [0.0, 0.5, 0.5], [0.005, 0.5, 0.5], [1.2, 0.5, 0.5]])
    box = ((0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
    t = box_taper(p, box, (0.01, 0.1, 0.1))
    assert t[0] == 1 and t[1] == 0 and 0 < t[2] < 1 and t[3] == 0
    s = stacked_weights(np.array([[1.0, 1.0], [0.25, 1.0], [0.0, 0.5]]), [0, 1])
    assert np.allclose(s, [[1, 0], [0.25, 0.75], [0, 0.5]])
    m = band_memberships(np.linspace(-1, 3, 401), [0.0, 1.0, 2.0], 0.1)
    assert np.allclose(m.sum(1), 1) and (m >= 0).all()


def test_rank_libraries_follows_significant_data():
    rng = np.random.default_rng(0)
    n = 60
    teff = np.concatenate([rng.uniform(4100, 5400, n // 2), rng.uniform(5600, 6900, n // 2)])
    logg = np.full(n, 4.5)
    scores = np.stack([np.full(n, 0.010), np.full(n, 0.012), np.full(n, 0.011)])
    scores[2, n // 2:] = 0.005                # basel better than ck04 for the hotter half only
    scores[1, :] += rng.normal(0, 1e-4, n)
    supported = np.ones((3, n), bool)
    pol = rank_libraries(["ck04", "nextgen", "basel22"], scores, teff, logg, supported)
    assert pol.orders[1][1][0] == "ck04"      # 4000-5500 K dwarfs
    assert pol.orders[2][1][0] == "basel22"   # 5500-7000 K dwarfs
    assert pol.orders[0][0] == ["ck04", "nextgen", "basel22"]   # no stars: default order
    # too few stars -> the default order, recorded as not decided by the data
    pol = rank_libraries(["ck04", "nextgen", "basel22"], scores[:, -3:], teff[-3:], logg[-3:],
                         supported[:, -3:])
    assert pol.orders[2][1][0] == "ck04" and not pol.evidence
    # equal on most stars: not significant
    tie = np.stack([np.full(n, 0.01), np.full(n, 0.02), np.full(n, 0.01)])
    tie[2, :3] = 0.009
    pol = rank_libraries(["ck04", "nextgen", "basel22"], tie, teff, logg, supported)
    assert pol.orders[2][1][0] == "ck04"


def test_policy_roundtrip_and_model_without_mixture_file(tmp_path, default_generator):
    from smnet_sps.neural import NeuralGenerator, default_model_path
    pol = MixturePolicy.default(default_generator.library_names)
    pol.save(tmp_path / "m.json")
    again = MixturePolicy.load(tmp_path / "m.json")
    assert again.orders == pol.orders and again.teff_edges == pol.teff_edges
    bad = json.loads((tmp_path / "m.json").read_text())
    bad["format"] = "something else"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="not a mixture file"):
        MixturePolicy.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="not a mixture file: it holds a JSON list"):
        MixturePolicy.load(tmp_path / "list.json")
    # a model directory built without mixture.json (none recorded in config.json): equal weights where
    # libraries overlap, still inside boxes
    d = tmp_path / "model"
    shutil.copytree(default_model_path(), d)
    (d / "mixture.json").unlink(missing_ok=True)
    cfg = json.loads((d / "config.json").read_text())
    del cfg["mixture_file"], cfg["mixture_sha256"]
    (d / "config.json").write_text(json.dumps(cfg))
    g = NeuralGenerator(d, device="cpu")
    assert g.mixture_policy is None
    w = g.mixture(5777.0, 4.44, -0.3)[0]
    names = g.library_names
    assert np.isclose(w[names.index("ck04")], w[names.index("nextgen")]) and w[names.index("basel22")] == 0


def test_a_recorded_mixture_file_must_be_there_and_unchanged(tmp_path, default_generator):
    """The shipped config.json records mixture.json: a model directory that lost it, or holds another one,
    is refused instead of silently weighing the libraries equally (5,000 K dwarfs moved by up to 0.18 dex)."""
    from smnet_sps.neural import NeuralGenerator, default_model_path
    from smnet_sps.validate import write_mixture
    d = tmp_path / "model"
    shutil.copytree(default_model_path(), d)
    (d / "mixture.json").rename(tmp_path / "kept.json")
    with pytest.raises(FileNotFoundError, match="config.json names 'mixture.json'.*missing"):
        NeuralGenerator(d, device="cpu")
    pol = MixturePolicy.load(tmp_path / "kept.json")
    pol.orders[0][0] = list(reversed(pol.orders[0][0]))
    pol.save(d / "mixture.json")                                      # another ranking, not recorded
    with pytest.raises(ValueError, match="does not match its config.json"):
        NeuralGenerator(d, device="cpu")
    write_mixture(pol, d)                                             # as validate --write-mixture does
    g = NeuralGenerator(d, device="cpu")
    assert g.mixture_policy.orders == pol.orders
    assert not list(d.glob(".*part*"))                                # no partial file left behind


def test_mixture_and_coverage_rules_agree(default_generator, shipped):
    """The mixture's hole rule is the coverage flag's: a library supported at a point counts it as covered."""
    from smnet_sps import mixture, neural
    assert mixture.HOLE_ZERO == neural.COVERAGE_FACTOR
    rng = np.random.default_rng(3)
    n = 4000
    p = np.stack([rng.uniform(np.log10(2100), np.log10(170000), n), rng.uniform(-0.9, 7.9, n),
                  rng.uniform(-2.45, 0.45, n)], 1)
    supported = shipped.support(*p.T).max(1) > 0
    assert 0.2 < supported.mean() < 0.95
    assert default_generator.in_coverage(10 ** p[supported, 0], p[supported, 1], p[supported, 2]).all()



def test_bounded_and_threaded_node_queries_give_the_same_weights_and_flags(default_generator, shipped,
                                                                         monkeypatch):
    """The hole factor's node queries are bounded by the distance beyond which no node of the library can
    give a ratio below HOLE_ZERO, and large queries (the coverage flag's too) run on torch's threads: the hole
    ratios below HOLE_ZERO, the weights and the flags are those of unbounded queries on one thread, bit for
    bit, with fewer points than a parallel query needs as well (so both paths are checked)."""
    import torch

    from smnet_sps import mixture
    rng = np.random.default_rng(8)
    n = 6000
    p = np.stack([rng.uniform(np.log10(2100), np.log10(170000), n), rng.uniform(-0.9, 7.9, n),
                  rng.uniform(-2.45, 0.45, n)], 1)
    for j in range(len(shipped.library_names)):
        full, bounded = shipped._hole_ratio(j, p), shipped._hole_ratio(j, p, beyond_zero=True)
        below = full < mixture.HOLE_ZERO
        assert below.any() and (~below).any()
        np.testing.assert_array_equal(bounded[below], full[below])
        assert (bounded[~below] >= mixture.HOLE_ZERO).all()
    def flags():
        return default_generator._in_coverage(10 ** p[:, 0], p[:, 1], p[:, 2])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        weights, flags_one = shipped.weights(*p.T), flags()
        torch.set_num_threads(2)
        for parallel in (mixture.PARALLEL_QUERY, 1):
            monkeypatch.setattr(mixture, "PARALLEL_QUERY", parallel)
            np.testing.assert_array_equal(shipped.weights(*p.T), weights)
            np.testing.assert_array_equal(flags(), flags_one)
    finally:
        torch.set_num_threads(threads)


def test_coverage_asks_each_library_its_own_nodes(default_generator, shipped):
    """Early-B/O giants just below WM-basic's box (log g 3.5): CK04 supports them, but the 16 nearest nodes of
    all libraries together were WM-basic's, so the CK04 node the mixture used ranked 17-23rd and the point was
    flagged outside (13 of 200,000 random points; 32,930 K, log g 3.407, [M/H] -0.239 is CK04 alone, its node
    at 1.28 local spacings, strict=True raised). Each library now asks its own nodes, as the mixture does."""
    from smnet_sps.mixture import HOLE_ZERO
    gen = default_generator
    ck04 = gen.library_names.index("ck04")
    point = (32930.0, 3.407, -0.239)
    np.testing.assert_array_equal(gen.mixture(*point)[0], np.eye(len(gen.library_names))[ck04])
    assert shipped._hole_ratio(ck04, [[np.log10(point[0]), *point[1:]]])[0] < HOLE_ZERO
    assert gen.in_coverage(*point).all()
    gen.surface_flux(*point, strict=True)
    rng = np.random.default_rng(0)
    n = 4000
    p = np.stack([rng.uniform(np.log10(32000), np.log10(42000), n), rng.uniform(3.25, 3.5, n),
                  rng.uniform(-1.0, 0.2, n)], 1)
    supported = shipped.support(*p.T).max(1) > 0
    assert 0.5 < supported.mean() < 0.95
    assert gen.in_coverage(10 ** p[supported, 0], p[supported, 1], p[supported, 2]).all()

def test_default_spectrum_is_the_blend_of_imitations(default_generator):
    """The default's spectrum is the weighted geometric mean of the library imitations (what the empirical
    k-fold scoring computes with smnet_sps.mixture.blend_log_flux), above the 1e-30 sigma Teff^4 per A floor
    that each spectrum is held to (a blend of floored imitations is not the floor of their blend)."""
    from smnet_sps.mixture import blend_log_flux
    g = default_generator
    teff = np.array([3300.0, 3545.0, 3900.0, 5777.0, 26000.0, 45000.0])
    logg = np.array([4.9, 4.9, 4.6, 4.44, 4.0, 4.5])
    logz = np.array([-0.1, -0.3, 0.22, 0.0, -0.2, 0.1])
    w = g.mixture(teff, logg, logz)
    assert (np.count_nonzero(w, axis=1) > 1).any()           # some handovers among these points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default, _ = g.surface_flux(teff, logg, logz)
        lf = np.array([np.log10(g.surface_flux(teff, logg, logz, library=n)[0]) for n in g.library_names])
    from smnet_sps.constants import SIGMA_SB
    floor = np.log10(1e-30 * SIGMA_SB * teff ** 4)[:, None] + 0.01
    above = (lf > floor).all(0)
    assert above.mean() > 0.9
    assert np.allclose(np.log10(default)[above], blend_log_flux(lf, w)[above], atol=2e-5)


def test_outside_every_support_few_libraries_and_continuous(default_generator, shipped):
    """Far outside every box the distance^-8 weights lose FALLBACK_TRIM each: libraries with a negligible
    weight get exactly 0 (no network pass for them), and the weights stay continuous along a sweep."""
    # a cool, low-gravity, metal-poor giant: outside every box (as a third of PARSEC's points are)
    logg = np.linspace(-1.5, -0.5, 2001)
    w = shipped.weights(np.full(logg.size, np.log10(3200.0)), logg, np.full(logg.size, -1.5))
    assert np.allclose(w.sum(1), 1.0, atol=1e-12)
    names = default_generator.library_names
    # CK04 and BaSeL are nearest; the others (boxes far away, weights ~1e-5 before the trim) get exactly 0
    assert (w > 0).sum(1).max() <= 2
    for far in ("wmbasic", "cm87"):
        assert (w[:, names.index(far)] == 0).all()
    assert 0 < FALLBACK_TRIM <= 1e-3
    # continuous: steps between neighbouring sweep points shrink with the step (no jump at the trim)
    assert np.abs(np.diff(w, axis=0)).max() < 0.01
    assert not default_generator.in_coverage(np.full(5, 3200.0), logg[:5], np.full(5, -1.5)).any()


def test_a_training_node_takes_only_libraries_with_nodes_near_it(default_generator, shipped):
    """At every training node of the shipped model, each library with weight has a node within HOLE_ZERO x
    its spacing: on the face of its own box a library's support is 0, and the fallback used to share such a
    node equally with the libraries whose boxes hold it in a hole (WM-basic's node at 50,000 K, log g 3.5
    took a third each of WM-basic, CK04 and BaSeL: 1.85 sigma Teff^4)."""
    from smnet_sps.mixture import HOLE_ZERO
    nodes = default_generator.nodes
    p = np.stack([np.log10(nodes["teff"]), nodes["logg"], nodes["logz"]], 1)
    w = shipped.weights(*p.T)
    ratio = np.stack([shipped._hole_ratio(j, p) for j in range(w.shape[1])], 1)
    assert (ratio[w > 0] < HOLE_ZERO).all()
    # WM-basic's nodes on its 50,000 K face take it alone, except those also on its log g 4.5 or [M/H] -2.3 /
    # +0.3 face: there WM-basic's support is 0 just inside 50,000 K too, and the node is split as there
    # (CK04, whose nodes are near), else the weights step along those faces at 50,000 K
    wm = default_generator.library_names.index("wmbasic")
    own = (nodes["library_id"] == wm) & (nodes["teff"] == 50000.0)
    lz = nodes["logz"]
    interior = own & (nodes["logg"] < 4.5) & (lz > -2.3) & (lz < 0.3)
    assert interior.sum() > 5 and (w[interior, wm] == 1).all()
    edge = own & ~interior
    inside = shipped.weights(np.log10(50000.0 * (1 - 1e-9)) + 0 * lz[edge], nodes["logg"][edge], lz[edge])
    assert edge.sum() > 5 and np.abs(w[edge] - inside).max() < 1e-3


def test_hot_stars_on_wmbasic_faces_keep_their_luminosity(default_generator):
    """The default spectrum at WM-basic's training nodes on its hottest face integrates to sigma Teff^4 (the
    blackbody's share of the wavelength grid) within 3 % (3.5 %: the nodes also on its log g 4.5 or [M/H]
    faces are CK04's, as just inside 50,000 K; CK04's imitation is 3.4 % bright at [M/H] -2.3)."""
    from smnet_sps.generator import planck_surface_flux
    g = default_generator
    nodes = g.nodes
    sel = (nodes["library_id"] == g.library_names.index("wmbasic")) & (nodes["teff"] == 50000.0)
    teff, logg, logz = nodes["teff"][sel], nodes["logg"][sel], nodes["logz"][sel]
    flux, inside = g.surface_flux(teff, logg, logz)
    assert inside.all()
    blackbody = np.trapezoid(planck_surface_flux(g.wavelength, teff), g.wavelength, axis=1)
    ratio = np.trapezoid(flux, g.wavelength, axis=1) / blackbody
    wm_alone = g.mixture(teff, logg, logz)[:, g.library_names.index("wmbasic")] == 1
    assert wm_alone.sum() > 20 and np.abs(ratio[wm_alone] - 1).max() < 0.03
    assert np.abs(ratio - 1).max() < 0.035


def test_boxes_ending_on_one_face_keep_the_order_of_preference(default_generator, shipped):
    """CK04, BaSeL and WM-basic all end at 50,000 K. Their tapers fall together there, and stacked absolute
    supports tended to equal weights (t : (1 - t) t -> 1 : 1): at 49,999 K, log g 4, [M/H] -1 CK04 and
    WM-basic took half each, 1.16 sigma Teff^4. Relative supports keep the preferred WM-basic up to and on
    the face."""
    from smnet_sps.generator import planck_surface_flux
    names = default_generator.library_names
    teff = np.linspace(48000.0, 50000.0, 401)
    w = shipped.weights(np.log10(teff), np.full(teff.size, 4.0), np.full(teff.size, -1.0))
    assert (w[:, names.index("wmbasic")] > 0.99).all()
    assert np.abs(np.diff(w, axis=0)).max() < 0.01                       # no step, the face included
    flux, inside = default_generator.surface_flux(teff[-3:], 4.0, -1.0)
    assert inside.all()
    ratio = (np.trapezoid(flux, default_generator.wavelength, axis=1)
             / np.trapezoid(planck_surface_flux(default_generator.wavelength, teff[-3:]),
                            default_generator.wavelength, axis=1))
    assert np.abs(ratio - 1).max() < 0.03


def test_mixture_follows_the_default_library_and_checks_its_input():
    """mixture() of a generator loaded with library="nextgen" returned the default mixture (CK04 at 5000 K)
    while its spectra were NextGen's; Quantities were read as plain numbers (log g 1e4 cm/s^2 as log g
    10,000) and NaN gave an all-zero row."""
    import astropy.units as u
    from smnet_sps.neural import load_generator
    nextgen = load_generator(library="nextgen")
    np.testing.assert_array_equal(nextgen.mixture(5000.0, 4.0, 0.0)[0],
                                  np.eye(len(nextgen.library_names))[nextgen.library_names.index("nextgen")])
    gen = load_generator()
    as_quantity = gen.mixture(30000.0, 1e4 * u.cm / u.s ** 2, 0.0)
    np.testing.assert_array_equal(as_quantity, gen.mixture(30000.0, 4.0, 0.0))
    assert gen.mixture(np.full((2, 3), 5000.0), 4.0, 0.0).shape == (6, len(gen.library_names))
    with pytest.raises(ValueError, match="teff"):
        gen.mixture(np.nan, 4.0, 0.0)
    # the public LibraryMixture too: a NaN row was all zeros, an infinite [M/H] NaN weights
    mix = LibraryMixture(gen.library_names, gen.library_boxes, gen.nodes, gen.mixture_policy)
    for bad in ((np.nan, 4.0, 0.0), (np.log10(5777.0), 4.44, np.inf)):
        with pytest.raises(ValueError, match="need finite log10 Teff"):
            mix.weights(*bad)
    assert np.allclose(mix.weights([np.log10(5777.0)] * 2, 4.44, 0.0).sum(1), 1.0)


def test_library_mixture_takes_log_teff_arrays_of_any_shape_and_refuses_a_teff_in_kelvin(
        default_generator, shipped):
    """LibraryMixture.weights / support take log10 Teff. The Sun given as Teff 5772 (K) came out WM-basic's
    alone (weights [0, 0, 0, 1, 0]) without a word, though no library reaches log10 Teff 5772; and a (2, 3)
    array crashed in numpy ('operands could not be broadcast together with shapes (2,3,2) (3,)'), while the
    generators' mixture() flattens any shape. Now a ValueError names log10 Teff's range, and arrays of any
    shape are flattened as the generators flatten them."""
    with pytest.raises(ValueError, match=r"log10 Teff = 5772 .*not Teff"):
        shipped.weights(5772.0, 4.44, 0.0)
    with pytest.raises(ValueError, match="log g"):
        shipped.support(np.log10(5772.0), 44.4, 0.0)
    teff = np.array([[5000.0, 6000.0, 7000.0], [3000.0, 20000.0, 40000.0]])
    w = shipped.weights(np.log10(teff), 4.0, np.array([0.0, -0.3, -1.0]))
    assert w.shape == (6, len(shipped.library_names))
    np.testing.assert_array_equal(w, default_generator.mixture(teff, 4.0, np.array([0.0, -0.3, -1.0])))
    np.testing.assert_array_equal(w[4], shipped.weights(np.log10(20000.0), 4.0, -0.3)[0])
    assert shipped.support(np.log10(teff), 4.0, 0.0).shape == (6, len(shipped.library_names))


@pytest.mark.parametrize("logg", [3.5, 4.0, 4.5])
def test_no_step_just_beyond_the_face_where_three_boxes_end(default_generator, logg):
    """CK04, BaSeL and WM-basic end at 50,000 K: on the face the preferred library took the point, just
    beyond it the equidistant boxes a third each, and the optical spectrum stepped by 5-7 % (15 % at a pixel)
    across 1e-9 of Teff. Beyond the face the weights now go on as on it."""
    gen = default_generator
    teff = np.array([50000.0, 50000.0 * (1 + 1e-9)])
    w = gen.mixture(teff, logg, 0.0)
    np.testing.assert_allclose(w[1], w[0], atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flux, _ = gen.surface_flux(teff, logg, 0.0)
    optical = (gen.wavelength > 3000) & (gen.wavelength < 10000)
    assert np.abs(np.log(flux[1, optical] / flux[0, optical])).max() < 1e-4


def _bisected_steps(weights_at, x, w, threshold):
    """Every change of the weights ``w`` (at the sweep ``x``) larger than ``threshold`` between neighbouring
    points, bisected with ``weights_at(x)`` to 1e-12: the largest weight difference left across it (0 for
    a steep but continuous change, the step itself for a jump)."""
    steps = []
    for k in np.flatnonzero(np.abs(np.diff(w, axis=0)).max(1) > threshold):
        a, b, wa = x[k], x[k + 1], w[k]
        while b - a > 1e-12:
            m = 0.5 * (a + b)
            a, b = (m, b) if np.abs(weights_at(m)[0] - wa).max() < threshold else (a, m)
        steps.append(np.abs(weights_at(b) - weights_at(a)).max())
    return steps


def test_no_step_where_a_hole_is_entered_inside_the_boxes(shipped):
    """Inside CK04's and BaSeL's boxes both can be beyond their nodes' reach (a hole of each); there the
    fallback gave them equal weights while just outside the hole the preferred library took everything (its
    relative support 1): at 7,951 K, log g 0.1 the weights went 1 -> 0.5 within 1e-9 K and the near-UV
    stepped by up to 25 %. Along Teff sweeps at the giants' log g that enter such holes, every steep change
    of the weights, bisected to 1e-12 dex, must be a continuous one (log g off the boxes' faces: within 1e-15
    dex of a face a support of 1e-29 still counts, relative to the others)."""
    steps, in_holes = [], 0
    for logg in np.r_[0.1, np.arange(-0.85, 3.6, 0.4)]:
        x = np.linspace(np.log10(3000.0), np.log10(49000.0), 3000)
        g, z = np.full_like(x, logg), np.zeros_like(x)
        w = shipped.weights(x, g, z)
        inside_a_box = np.stack([box_taper(np.c_[x, g, z], b) > 0 for b in shipped.boxes], 1).any(1)
        in_holes += int((inside_a_box & (shipped.support(x, g, z).max(1) == 0)).sum())
        steps += _bisected_steps(lambda t, logg=logg: shipped.weights(t, logg, 0.0), x, w, 0.3)
    # and along log g through CK04's log g 0 face inside BaSeL's box, both in holes there: beyond the face
    # BaSeL alone holds the point, so CK04 must come in from 0 (the closeness rule without the box taper
    # flipped the weights across the face, 0.41 in ln F at 1500-3000 A at 12,000 K)
    for teff in (8000.0, 12000.0, 20000.0, 40000.0):
        x = np.linspace(-0.5, 0.5, 2001)
        log_t = np.log10(teff)
        w = shipped.weights(np.full_like(x, log_t), x, np.zeros_like(x))
        steps += _bisected_steps(lambda g, log_t=log_t: shipped.weights(log_t, g, 0.0), x, w, 0.02)
    assert in_holes > 100, in_holes            # the sweeps do enter holes inside the boxes
    assert max(steps, default=0.0) < 0.01, np.sort(steps)[-5:]


def _optical_step(gen, teff, logg, logz):
    """Mean |d ln F| at 3000-10,000 A between the default spectra at the two Teff of ``teff``, and the largest
    change of a weight."""
    teff = np.asarray(teff, float)
    w = gen.mixture(teff, logg, logz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flux, _ = gen.surface_flux(teff, logg, logz)
    optical = (gen.wavelength > 3000) & (gen.wavelength < 10000)
    return np.abs(np.log(flux[1, optical] / flux[0, optical])).mean(), np.abs(w[1] - w[0]).max()


@pytest.mark.parametrize("logg", [3.9, 4.0, 4.1])
@pytest.mark.parametrize("logz", [0.295, -2.28])
def test_no_step_across_50kk_where_wmbasic_tapers_in_metallicity(default_generator, logg, logz):
    """Just inside 50,000 K (where CK04, BaSeL and WM-basic end) the supports share the face's factor and
    split the point by the rest of their tapers: at [M/H] +0.295 (PARSEC's Z = 0.03), 0.005 dex from
    WM-basic's +0.3 face, WM-basic 4 %, CK04 96 %. Just beyond it the preference share went to WM-basic alone,
    and the optical stepped by 8-14 % (2 % at -2.28) within 1e-9 of Teff.
    It now splits the point the same way."""
    step, dw = _optical_step(default_generator, [50000.0 * (1 - 1e-9), 50000.0 * (1 + 1e-9)], logg, logz)
    assert step < 1e-3 and dw < 1e-3, (step, dw)


def test_no_step_beside_a_shared_face_beyond_another(shipped):
    """Along Teff through 50,000 K where every box is left behind on both sides: beyond CK04's log g 5 face
    (log g 5.2: CK04 keeps the point, CM87's box is far) and in CK04's and BaSeL's holes (log g 3-3.4: CK04
    kept it just inside 50,000 K, then CK04 and BaSeL took half each beyond it, 0.4-0.7 % in the optical).
    Every steep change, bisected to 1e-12 dex, must be a continuous one; and so along log g and [M/H] just
    beyond the face."""
    x = np.linspace(np.log10(49000.0), np.log10(52000.0), 1201)
    steps = []
    for logg, logz in ((5.2, -1.0), (5.2, 0.0), (5.05, 0.295), (3.0, 0.0), (3.2, 0.2), (3.4, -1.0),
                       (4.0, 0.295), (4.0, -2.28), (4.5, 0.0), (3.5, 0.3)):
        w = shipped.weights(x, np.full_like(x, logg), np.full_like(x, logz))
        steps += _bisected_steps(lambda t, g=logg, z=logz: shipped.weights(t, g, z), x, w, 0.02)
    assert np.allclose(shipped.weights(np.log10([49999.9, 50000.1]), 5.2, -1.0)[:, 0], 1.0)
    log_t = np.log10(50000.0 * (1 + 1e-9))
    g = np.linspace(2.5, 5.5, 1201)
    w = shipped.weights(np.full_like(g, log_t), g, np.full_like(g, 0.295))
    steps += _bisected_steps(lambda q: shipped.weights(log_t, q, 0.295), g, w, 0.02)
    z = np.linspace(-2.6, 0.6, 1201)
    w = shipped.weights(np.full_like(z, log_t), np.full_like(z, 4.0), z)
    steps += _bisected_steps(lambda q: shipped.weights(log_t, 4.0, q), z, w, 0.02)
    assert max(steps, default=0.0) < 0.01, np.sort(steps)[-5:]


def test_no_step_where_wmbasic_face_meets_a_ck04_hole_edge(default_generator, shipped):
    """On WM-basic's log g 3.5 face (its support 0 there) CK04's hole edge near 41,060 K handed the point from
    CK04 (relative support 1 however small) to WM-basic within 1e-9 K (optical 4-13 %). CK04 now keeps it at
    the edge and hands over over the hole taper's width beyond it."""
    j = default_generator.library_names.index("ck04")
    for logz in (-2.0, 0.0, 0.3):
        a, b = np.log10(40000.0), np.log10(43000.0)
        for _ in range(80):
            m = 0.5 * (a + b)
            a, b = (m, b) if shipped.support(m, 3.5, logz)[0, j] > 0 else (a, m)
        step, dw = _optical_step(default_generator, 10 ** a * np.array([1 - 1e-9, 1 + 1e-9]), 3.5, logz)
        assert step < 1e-4 and dw < 1e-4, (logz, step, dw)
        x = np.linspace(np.log10(40000.0), np.log10(50000.0), 2001)
        w = shipped.weights(x, np.full_like(x, 3.5), np.full_like(x, logz))
        steps = _bisected_steps(lambda t: shipped.weights(t, 3.5, logz), x, w, 0.02)
        assert max(steps, default=0.0) < 0.01, (logz, np.sort(steps)[-5:])
