"""Each library's network input held on the hull of its training nodes (``NeuralGenerator._held_inputs``).

Beyond a library's last nodes -- still "covered" up to 1.5 grid spacings from a node -- its network
extrapolated: hot supergiants came out at 1.8-1.9 sigma Teff^4. Now the network's departure from a blackbody
is taken at the nearest point of the hull and carried to the true Teff by the blackbody reference.
"""
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.generator import CoverageWarning, planck_surface_flux
from smnet_sps.tail import node_points


def bolometric_ratio(gen, teff, flux):
    """Integral of the spectra over the model's wavelengths / the blackbody's over the same wavelengths."""
    bb = planck_surface_flux(gen.wavelength, teff)
    return np.trapezoid(flux, gen.wavelength, axis=1) / np.trapezoid(bb, gen.wavelength, axis=1)


def held_for(gen, teff, logg, logz, library):
    """(log10 Teff, log g, [M/H]) where ``library``'s network is evaluated (NaN: not moved)."""
    mix = gen.mixture(teff, logg, logz, library=library)
    return gen._held_inputs(teff, logg, logz, mix)[0][:, gen.library_names.index(library)]


def test_hot_supergiants_beyond_the_last_nodes_keep_their_bolometric_flux(default_generator):
    """Covered points past CK04's and BaSeL's lowest gravity (before: 1.90 and 1.79 sigma Teff^4), and 50 kK,
    log g 3.0 between the boxes (before: ~8x, outside coverage)."""
    teff = np.array([20000.0, 29800.0, 50000.0])
    logg = np.array([2.0, 2.77, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, inside = default_generator.surface_flux(teff, logg, np.zeros(3))
    assert inside[:2].all()
    ratio = bolometric_ratio(default_generator, teff, flux)
    assert np.all(np.abs(ratio - 1.0) < 0.03), ratio


def test_cm87_off_its_metallicity_is_its_own_metallicity_spectrum(default_generator):
    """docs/generator.md ("Beyond a library's last nodes") gave CM87 at 100 kK, log g 6, [M/H] -0.25 as
    0.79 sigma Teff^4, a figure from before CM87's [M/H] was held at its own: the shipped model gives 0.993,
    the [M/H] 0 spectrum, with the default mixture (all CM87 there) and with library='cm87'."""
    from smnet_sps.constants import SIGMA_SB
    gen = default_generator
    teff = np.array([1e5, 1e5])
    for library in (None, "cm87"):
        flux, inside = gen.surface_flux(teff, np.array([6.0, 6.0]), np.array([-0.25, 0.0]), library=library)
        assert inside.all()
        np.testing.assert_array_equal(flux[0], flux[1])
        ratio = np.trapezoid(flux[0], gen.wavelength) / (SIGMA_SB * teff[0] ** 4)
        assert abs(ratio - 1.0) < 0.01, ratio


@pytest.mark.parametrize("library, teff, logg, logz", [("ck04", 20000.0, 2.0, 0.0),
                                                       ("ck04", 9000.0, 0.6, -1.0),
                                                       ("nextgen", 9800.0, 3.6, -0.25),
                                                       ("basel22", 40570.0, 4.13, 0.0),
                                                       ("cm87", 116840.0, 5.12, 0.0)])
def test_beyond_the_hull_the_spectrum_is_the_hull_point_carried_to_the_true_teff(default_generator, library,
                                                                                   teff, logg, logz):
    gen = default_generator
    t, g, z = np.array([teff]), np.array([logg]), np.array([logz])
    held = held_for(gen, t, g, z, library)
    assert np.isfinite(held).all(), "the point was meant to lie beyond the library's training nodes"
    # the held point lies on the hull: locating it finds a simplex without projecting it again
    hull = gen._node_hull(gen.library_names.index(library))
    _, simplex, projected, _ = hull.locate(node_points(*held.T))
    assert (simplex >= 0).all() and np.isnan(projected).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, _ = gen.surface_flux(t, g, z, library=library)
        at_hull, _ = gen.surface_flux(10 ** held[:, 0], held[:, 1], held[:, 2], library=library)
    t_hull = 10 ** held[:, 0]
    expected = at_hull * planck_surface_flux(gen.wavelength, t) / planck_surface_flux(gen.wavelength, t_hull)
    bright = expected > 1e-12 * expected.max()
    np.testing.assert_allclose(flux[bright], expected[bright], rtol=2e-4)


def test_inside_the_hull_nothing_moves(default_generator):
    """Training nodes (on and inside the hull) and random points inside its simplices and within the grid's
    log g range there keep their inputs."""
    gen = default_generator
    rng = np.random.default_rng(3)
    for j, library in enumerate(gen.library_names):
        hull = gen._node_hull(j)
        train = (gen.nodes["split"] == 0) & (gen.nodes["library_id"] == j)
        teff, logg, logz = gen.nodes["teff"][train], gen.nodes["logg"][train], gen.nodes["logz"][train]
        held = held_for(gen, teff, logg, logz, library)
        assert np.isnan(held).all(), f"{library}: {np.isfinite(held[:, 0]).sum()} training nodes moved"
        if hull.tri is None:
            continue
        corners = hull.tri.points[hull.tri.simplices[rng.integers(0, len(hull.tri.simplices), 300)]]
        bary = rng.dirichlet(np.ones(corners.shape[1]), 300)
        inner = np.einsum("nk,nkd->nd", bary, corners) @ np.linalg.inv(hull.shear).T   # unshear
        pts = np.zeros((300, 3))
        pts[:, hull.kept] = inner
        pts[:, np.setdiff1d(np.arange(3), hull.kept)] = node_points(
            np.log10(teff[:1]), logg[:1], logz[:1])[0, np.setdiff1d(np.arange(3), hull.kept)]
        low, high = gen._gravity_range(j).limits(pts)
        pts = pts[(pts[:, 1] >= low + 1e-9) & (pts[:, 1] <= high - 1e-9)]
        assert len(pts) > 150, library
        p = pts * np.array([0.02, 0.5, 0.5])
        assert np.isnan(held_for(gen, 10 ** p[:, 0], p[:, 1], p[:, 2], library)).all(), library


def test_no_step_where_a_sweep_leaves_the_hull(default_generator):
    """20,000 K in log g from 3.5 (inside CK04's nodes) to 1.5 (beyond them): the spectrum changes smoothly,
    with no jump where the sweep crosses the hull."""
    gen = default_generator
    logg = np.linspace(3.5, 1.5, 201)
    teff, logz = np.full(logg.size, 20000.0), np.zeros(logg.size)
    held = held_for(gen, teff, logg, logz, "ck04")
    crossing = np.flatnonzero(np.isfinite(held[:, 0]))[0]
    assert 0 < crossing < logg.size - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, _ = gen.surface_flux(teff, logg, logz, library="ck04")
    wl = gen.wavelength
    optical = (wl > 3000) & (wl < 25000)
    step = np.median(np.abs(flux[1:, optical] / flux[:-1, optical] - 1), axis=1)
    # inside, one 0.01 dex step in log g moves the spectrum by a typical amount; at the crossing no more;
    # beyond, the held point slides along the hull's face: less still
    inside = np.median(step[:crossing - 1])
    assert step[crossing - 1] <= 3 * inside and step[crossing:].max() <= inside


def test_autograd_path_holds_the_same_points(default_generator):
    """torch_surface_flux (float64) gives surface_flux's spectra beyond the hull too; finite gradients."""
    gen = default_generator
    teff = torch.tensor([20000.0, 29800.0, 5777.0], dtype=torch.float64, requires_grad=True)
    logg = torch.tensor([2.0, 2.77, 4.44], dtype=torch.float64)
    logz = torch.zeros(3, dtype=torch.float64)
    flux = gen.torch_surface_flux(teff, logg, logz)
    fast, _ = gen.surface_flux(teff.detach().numpy(), logg.numpy(), logz.numpy())
    f = flux.detach().numpy()
    bright = fast > 1e-12 * fast.max(1, keepdims=True)
    np.testing.assert_allclose(f[bright], fast[bright], rtol=1e-4)
    flux.sum().backward()
    assert torch.isfinite(teff.grad).all() and (teff.grad != 0).all()


@pytest.mark.parametrize("library, teff, logg, logz, blue", [("ck04", 9000.0, 0.6, -1.0, 1000.0),
                                                             ("ck04", 20000.0, 2.0, 0.0, 1000.0),
                                                             ("basel22", 40570.0, 4.13, 0.0, 1000.0),
                                                             ("nextgen", 9800.0, 3.6, -0.25, 1000.0),
                                                             # below BaSeL's gravity range, inside its hull
                                                             # (from 3000 A: its stand-in tail, CK04's, is
                                                             # located beyond CK04's 3,500 K face, where
                                                             # the fill's weights are constants)
                                                             ("basel22", 3420.0, -0.7, 0.0, 3000.0),
                                                             (None, 29800.0, 2.77, 0.0, 1000.0)])
def test_gradients_beyond_the_hull_match_finite_differences(default_generator, library, teff, logg, logz,
                                                            blue):
    """Beyond the hull the held point slides along the hull's face as the star moves: autograd follows it
    (before: 0 for d/d[M/H] at 20,000 K, log g 2.0, against 44.9 by finite differences), through the network
    and the tail fill's weights."""
    gen = default_generator
    if library is not None:
        assert np.isfinite(held_for(gen, np.array([teff]), np.array([logg]), np.array([logz]), library)).all()
    band = (gen.wavelength > blue) & (gen.wavelength < 10000)

    def objective(*values):
        tensors = [torch.tensor([v], dtype=torch.float64) for v in values]
        return torch.log(gen.torch_surface_flux(*tensors, library=library))[0, band].sum()
    x = [teff, logg, logz]
    tensors = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in x]
    value = torch.log(gen.torch_surface_flux(*tensors, library=library))[0, band].sum()
    grads = torch.autograd.grad(value, tensors)
    for k in range(3):
        h = 1e-5 * (teff if k == 0 else 1.0)
        up, down = list(x), list(x)
        up[k] += h
        down[k] -= h
        with torch.no_grad():
            fd = (objective(*up) - objective(*down)).item() / (2 * h)
        assert grads[k].item() == pytest.approx(fd, rel=1e-4, abs=1e-6), (k, grads[k].item(), fd)


@pytest.mark.parametrize("nodes", [[[0, 0, 0], [2, 0, 0], [0, 2, 0]],                    # too few for qhull
                                   [[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]],
                                   [[0, 0, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0]],         # on a line
                                   [[0, 0, 0], [2, 0, 1], [0, 2, 1], [2, 2, 2], [1, 1, 1]]])   # on a plane
def test_nodes_without_a_hull_only_clip_to_their_box(nodes):
    """Where the nodes cannot be triangulated the tail takes the nearest node, but the hold must stay
    continuous: a point inside their box does not move, one outside is clipped to it."""
    from smnet_sps.tail import node_hull
    hull = node_hull(np.array(nodes, float))
    inside = np.array(nodes, float).mean(0, keepdims=True) + 0.01
    beyond = inside + 10.0
    held = hull.locate(np.concatenate([inside, beyond]))[3]
    np.testing.assert_array_equal(held[0], inside[0])
    np.testing.assert_array_equal(held[1][hull.kept], np.array(nodes, float)[:, hull.kept].max(0))


@pytest.mark.parametrize("library", [None, "cm87"])
@pytest.mark.parametrize("teff, logg", [(1e5, 6.0), (75000.0, 5.6)])
def test_cm87_at_its_own_metallicity_has_no_metallicity_gradient(default_generator, library, teff, logg):
    """CM87's [M/H] is held at its own, 0: the spectrum does not change with [M/H] there, on either side, so
    autograd must give 0 at [M/H] = 0 too, a fit's usual start (before: d ln F / d[M/H] = 0.35 at 2 um,
    0.37 at 1200 A, where the point had not moved and the network's own gradient came through), and the
    other two derivatives must still match finite differences (the hold moves nothing there)."""
    gen = default_generator
    pix = [int(np.argmin(np.abs(gen.wavelength - w))) for w in (1200.0, 2500.0, 20000.0)]

    def log_flux(*values):
        return torch.log(gen.torch_surface_flux(*values, library=library))[0, pix]
    args = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in (teff, logg, 0.0)]
    assert torch.autograd.gradcheck(log_flux, args, eps=1e-6, atol=1e-5, rtol=1e-3)
    jac = torch.autograd.functional.jacobian(log_flux, tuple(args))
    assert (jac[2] == 0).all() and (jac[1] != 0).all()
    # the fast path agrees: the same spectrum just off [M/H] 0 on either side
    flux, _ = gen.surface_flux([teff] * 3, [logg] * 3, [-1e-4, 0.0, 1e-4], library=library, dtype="float64")
    np.testing.assert_array_equal(flux[0], flux[1])
    np.testing.assert_array_equal(flux[2], flux[1])
