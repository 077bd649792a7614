"""Each library's network held within the log g range its grid spans at the star's Teff and [M/H]
(``smnet_sps.gravity_range``), inside the convex hull that bridges the grid's concave edges.

Before: red supergiants at 4,230-4,450 K, log g -0.3 to -0.45 (PARSEC, solar, 5 Myr) lay inside BaSeL's
convex hull, 0.3-0.45 dex below its lowest models at those Teff (log g 0 from 3,500 K up), and came out at
0.86-0.95 of a blackbody's integral: 7 % of the population's L_bol was more than 10 % off.
"""
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.constants import SIGMA_SB
from smnet_sps.generator import CoverageWarning, planck_surface_flux
from smnet_sps.gravity_range import GravityRange
from smnet_sps.tail import node_points


def held_for(gen, teff, logg, logz, library):
    mix = gen.mixture(teff, logg, logz, library=library)
    return gen._held_inputs(teff, logg, logz, mix)[0][:, gen.library_names.index(library)]


def flux_of(gen, teff, logg, logz, library=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        return gen.surface_flux(np.atleast_1d(teff).astype(float), np.atleast_1d(logg).astype(float),
                                np.atleast_1d(logz).astype(float), library=library)


def test_red_supergiants_below_basels_lowest_gravity_keep_their_bolometric_flux(default_generator):
    gen = default_generator
    teff = np.array([4265.0, 4360.0, 4411.0, 4230.0])
    logg = np.array([-0.42, -0.43, -0.43, -0.33])
    flux, inside = flux_of(gen, teff, logg, np.full(4, np.log10(0.014 / 0.0152)))
    assert inside.all()                     # covered: within 1.5 grid spacings of BaSeL's nodes
    bb = planck_surface_flux(gen.wavelength, teff)
    ratio = np.trapezoid(flux, gen.wavelength, axis=1) / np.trapezoid(bb, gen.wavelength, axis=1)
    assert np.all(np.abs(ratio - 1) < 0.02), ratio          # before: 0.870, 0.858, 0.870, 0.946


def test_held_at_the_lowest_gravity_of_the_neighbouring_columns(default_generator):
    """BaSeL's columns at 4,250 and 4,500 K start at log g 0: a star below is evaluated at log g 0, its Teff
    and [M/H] kept; the spectrum is the log g 0 one (the Teff is the same, so no blackbody factor)."""
    gen = default_generator
    held = held_for(gen, np.array([4300.0]), np.array([-0.4]), np.array([0.0]), "basel22")
    np.testing.assert_allclose(held[0], [np.log10(4300.0), 0.0, 0.0], atol=1e-9)
    below, _ = flux_of(gen, 4300.0, -0.4, 0.0, library="basel22")
    at_edge, _ = flux_of(gen, 4300.0, 0.0, 0.0, library="basel22")
    np.testing.assert_allclose(below, at_edge, rtol=1e-6)


def test_between_columns_the_range_is_interpolated(default_generator):
    """Between BaSeL's 3,350 K (log g down to -0.5) and 3,500 K (down to 0) columns the lowest gravity is
    linear in log Teff, so a sweep in Teff at log g -0.7 is continuous: no step where a column is passed."""
    gen = default_generator
    j = gen.library_names.index("basel22")
    gravity = gen._gravity_range(j)
    t = np.log10([3350.0, 3500.0])
    mid = node_points(np.array([t.mean()]), np.array([0.0]), np.array([0.0]))
    low, _ = gravity.limits(mid)
    assert low[0] * 0.5 == pytest.approx(-0.25, abs=1e-9)
    teff = np.geomspace(3300.0, 3600.0, 121)
    flux, _ = flux_of(gen, teff, np.full(teff.size, -0.7), np.zeros(teff.size), library="basel22")
    optical = (gen.wavelength > 4000) & (gen.wavelength < 25000)
    step = np.median(np.abs(np.diff(np.log(flux[:, optical]), axis=0)), axis=1)
    assert step.max() < 5 * np.median(step), (step.max(), np.median(step))


def test_no_grid_node_moves(default_generator):
    """Training, validation and test nodes alike lie within their own library's range: the test split's
    figures are those of the network itself."""
    gen = default_generator
    for j, library in enumerate(gen.library_names):
        own = gen.nodes["library_id"] == j
        pts = node_points(np.log10(gen.nodes["teff"][own]), gen.nodes["logg"][own], gen.nodes["logz"][own])
        np.testing.assert_array_equal(gen._gravity_range(j).clip(pts), pts, err_msg=library)


def test_the_range_follows_each_column():
    """A toy grid: two [M/H] rows, columns whose lowest log g steps down; the range at a column is its own,
    halfway between two columns the mean, and a point outside every column's hull is left alone."""
    teff = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    logg = np.array([2.0, 5.0, 0.0, 5.0, 0.0, 5.0, 2.0, 5.0, 2.0, 5.0, 0.0, 5.0])
    logz = np.array([0.0] * 6 + [1.0] * 6)
    gravity = GravityRange(np.stack([teff, logg, logz], 1))
    q = np.array([[1.0, -3.0, 0.0], [0.5, -3.0, 0.0], [1.0, -3.0, 1.0], [1.0, 9.0, 0.5], [5.0, -3.0, 0.0]])
    out = gravity.clip(q)
    np.testing.assert_allclose(out[:, 1], [0.0, 1.0, 2.0, 5.0, -3.0])
    np.testing.assert_array_equal(out[:, [0, 2]], q[:, [0, 2]])
    single = GravityRange(np.stack([teff[:6], logg[:6], logz[:6]], 1))     # one [M/H]: along Teff
    np.testing.assert_allclose(single.clip(np.array([[0.25, -1.0, 7.0], [9.0, -1.0, 0.0]]))[:, 1], [1.5, 0.0])


def test_below_the_range_log_g_has_no_derivative(default_generator):
    """Below the range the held log g follows the range's edge, not the star: d/d(log g) is 0 while d/d(Teff)
    is not (the edge moves with Teff between BaSeL's 3,350 and 3,500 K columns). The derivatives are checked
    against finite differences with the hull's in tests/test_hull_hold.py."""
    gen = default_generator
    x = [3420.0, -0.7, 0.0]
    assert np.isfinite(held_for(gen, *(np.array([v]) for v in x), "basel22")).all()
    tensors = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in x]
    band = (gen.wavelength > 3000) & (gen.wavelength < 20000)
    value = torch.log(gen.torch_surface_flux(*tensors, library="basel22"))[0, band].sum()
    d_teff, d_logg, _ = torch.autograd.grad(value, tensors)
    assert d_logg.item() == pytest.approx(0.0, abs=1e-6) and abs(d_teff.item()) > 1e-3


@pytest.mark.parametrize("library, teff, logg", [("cm87", 87327.0, 5.54), ("basel22", 3000.0, 0.0)])
def test_a_single_metallicity_library_is_held_within_its_tolerance(default_generator, library, teff, logg):
    """Beyond +-0.25 dex of its one [M/H] (outside coverage) the network extrapolated freely: CM87 at
    87,327 K, log g 5.54 integrated to 2.0 / 10.1 / 14.1 sigma Teff^4 at [M/H] -0.3 / -0.5 / -0.8, BaSeL's
    3,000 K giant changed 40x in the optical between -0.25 and -1. Within the tolerance BaSeL's input keeps
    the star's [M/H] (CK04 and NextGen taught the network a trend there); CM87's is held at its own [M/H]
    everywhere, since no library with several [M/H] reaches 60 kK."""
    gen = default_generator
    logz = np.array([-0.25, -0.5, -0.8, -1.5])
    flux, inside = flux_of(gen, np.full(4, teff), np.full(4, logg), logz, library=library)
    assert not inside[1:].any()
    np.testing.assert_allclose(flux[1:], np.repeat(flux[:1], 3, axis=0), rtol=1e-6)
    within = held_for(gen, np.array([teff]), np.array([logg]), np.array([-0.2]), library)
    follows = library == "basel22"
    assert (np.isnan(within).all() or within[0, 2] == pytest.approx(-0.2)) == follows
    assert gen._metallicity_trend_taught(gen.library_names.index(library)) == follows


def test_cm87_does_not_depend_on_metallicity_within_its_tolerance(default_generator):
    """CM87 ([M/H] = 0 only) at 80 kK, log g 5: covered from -0.25 to +0.25 dex. The network's input used to
    follow the star's [M/H] there, a direction it never learned above 50 kK: the spectrum integrated to 1.2 /
    2.8 / 6.1 sigma Teff^4 at -0.1 / -0.2 / -0.25 (all in the EUV), and the backend, which keeps L, made the
    optical 6x too faint. Now it is the [M/H] = 0 spectrum, integrating to sigma Teff^4."""
    gen = default_generator
    logz = np.array([0.0, -0.1, -0.2, -0.25, 0.2])
    flux, inside = flux_of(gen, np.full(5, 80000.0), np.full(5, 5.0), logz)
    assert inside.all()
    assert gen.mixture(80000.0, 5.0, logz)[:, gen.library_names.index("cm87")] == pytest.approx(1.0)
    np.testing.assert_allclose(flux[1:], np.repeat(flux[:1], 4, axis=0), rtol=1e-6)
    integral = np.trapezoid(flux, gen.wavelength, axis=1) / (SIGMA_SB * 80000.0**4)
    np.testing.assert_allclose(integral, 1.0, atol=0.01)
