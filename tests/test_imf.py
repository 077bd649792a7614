"""IMFs and FSPS point weights: normalisation, shapes, remnants, and the FSPS reference SSP."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from smnet_sps.imf import IMF_NAMES, get_imf, imf_weights, mass_intervals, remnant_mass, tpagb_factor
from smnet_sps.isochrones import load_isochrones

REF = "references/fsps_SSP.out.mags_padova2007_Zsun_kroupa_mass_lbol.txt"


def salpeter_callable(m):
    return m ** -2.35


@pytest.mark.parametrize("imf", list(IMF_NAMES) + [salpeter_callable, lambda m: np.exp(-m / 3.0)])
def test_weights_integrate_to_one_msun(imf):
    # a dense isochrone spanning the IMF limits: sum(w * m) is the mass formed, 1 Msun by construction
    mini = np.geomspace(0.08, 120.0, 40001)
    w = imf_weights(mini, imf)
    assert np.all(w >= 0)
    assert np.sum(w * mini) == pytest.approx(1.0, abs=2e-4)
    obj = get_imf(imf)
    m = np.geomspace(0.08, 120, 200001)
    assert np.trapezoid(m * obj.dndm(m), m) == pytest.approx(obj.mass_formed, rel=1e-6)
    assert np.trapezoid(obj.dndm(m), m) == pytest.approx(float(obj.number(0.08, 120)), rel=1e-6)


def test_callable_reproduces_builtin_salpeter():
    mini = np.sort(np.random.default_rng(1).uniform(0.1, 100, 300))
    assert np.allclose(imf_weights(mini, salpeter_callable), imf_weights(mini, "salpeter"), rtol=1e-5)


def test_callable_imf_on_narrow_isochrone_intervals():
    """PARSEC's mass intervals are often far narrower than the callable's 20,001-point grid step: the
    cumulative interpolated linearly inside a step put weights 2.3e-4 off the analytic IMF's; integrated as
    a power law they agree to 1e-7, and to 6e-6 / 1.1e-5 where Kroupa's / Chabrier's break falls inside a
    step. (Weights below 1e-6 of the isochrone's total are left out: differences of nearly equal
    cumulatives, rounding-limited in both.)"""
    iso = load_isochrones("parsec")
    for name, rtol in (("kroupa", 2e-5), ("chabrier", 2e-5), ("salpeter", 1e-6)):
        builtin = get_imf(name)
        custom = get_imf(lambda m, b=builtin: b.dndm(m))
        for iz, ia in ((0, 84), (4, 88), (6, 12), (12, 92), (14, 48)):
            mini = iso.columns["mini"][iso.rows(iz, ia)]
            a, b = imf_weights(mini, builtin), imf_weights(mini, custom)
            sig = a > 1e-6 * a.sum()
            np.testing.assert_allclose(b[sig], a[sig], rtol=rtol)


def test_shapes_and_continuity():
    k = get_imf("kroupa")
    assert k.dndm(0.4) / k.dndm(0.2) == pytest.approx(2 ** -1.3)
    assert k.dndm(4.0) / k.dndm(2.0) == pytest.approx(2 ** -2.3)
    assert k.dndm(0.5 - 1e-9) == pytest.approx(k.dndm(0.5 + 1e-9), rel=1e-6)
    c = get_imf("chabrier")
    assert c.dndm(1 - 1e-9) == pytest.approx(c.dndm(1 + 1e-9), rel=1e-6)
    assert c.dndm(8.0) / c.dndm(4.0) == pytest.approx(2 ** -2.3)
    s = get_imf("salpeter")
    assert s.dndm(2.0) / s.dndm(1.0) == pytest.approx(2 ** -2.35)


def test_intervals_follow_fsps_rule():
    m1, m2 = mass_intervals([0.1, 0.2, 0.4, 130.0, 140.0])
    assert m1[0] == 0.08 and m2[0] == pytest.approx(0.15)
    assert m1[2] == pytest.approx(0.3) and m2[2] == pytest.approx(65.2)
    assert m1[-1] == 120 and m2[-1] == 120     # above the upper limit: empty interval, zero weight
    assert imf_weights([0.1, 0.2, 0.4, 130.0, 140.0])[-1] == 0.0


def test_remnants():
    assert remnant_mass(120.0) == 0.0
    k = get_imf("kroupa")
    m = np.geomspace(1.0, 120.0, 400001)
    rem = np.where(m > 40, 0.5 * m, np.where(m > 8.5, 1.4, 0.48 + 0.077 * m))
    expected = np.trapezoid(rem * k.dndm(m), m) / k.mass_formed
    assert remnant_mass(1.0, "kroupa") == pytest.approx(expected, rel=1e-4)


def test_tpagb_factor():
    assert tpagb_factor(8.0) == pytest.approx(0.1)
    assert tpagb_factor(7.0) == pytest.approx(0.1)
    assert tpagb_factor(10.5) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="salpeter, kroupa, chabrier"):
        get_imf("kroupa93")
    with pytest.raises(ValueError, match="non-negative"):
        get_imf(lambda m: -m)
    with pytest.raises(ValueError, match="sorted"):
        imf_weights([1.0, 0.5])
    with pytest.raises(ValueError, match="finite and positive"):
        imf_weights([0.1, np.nan])
    with pytest.raises(ValueError, match="m_low < m_up"):
        get_imf("kroupa", m_low=1.0, m_up=0.5)
    # a boolean is no mass: m_low=True was taken as 1 M_sun (an IMF of 1-120 M_sun, mass_formed 1.27)
    for limits in ({"m_low": True}, {"m_up": np.True_}):
        with pytest.raises(ValueError, match="m_low < m_up"):
            get_imf("kroupa", **limits)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.05, 200.0), min_size=1, max_size=50), st.sampled_from(IMF_NAMES))
def test_weights_nonnegative_and_bounded(masses, name):
    w = imf_weights(np.sort(masses), name)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    # the intervals are disjoint, so the weights cannot exceed all the stars formed per Msun
    imf = get_imf(name)
    assert np.sum(w) <= float(imf.number(0.08, 120)) / imf.mass_formed * (1 + 1e-9)


def test_fsps_reference_every_tabulated_age(fixtures_dir):
    """log M (stars + remnants) and log Lbol of FSPS (Padova 2007, Z = 0.019, Kroupa) to 1e-3 dex."""
    ref = np.loadtxt(fixtures_dir / REF)
    iso = load_isochrones("padova")
    iz = int(np.flatnonzero(np.isclose(iso.Z, 0.019))[0])
    n = 0
    for ia, la in enumerate(iso.log_age):
        row = ref[np.isclose(ref[:, 0], la)]
        assert row.shape[0] == 1
        c = iso.isochrone(iz, ia)
        w = imf_weights(c.mini, "kroupa")
        w = np.where(c.phase == 5, w * tpagb_factor(la), w)
        log_l = np.log10(np.sum(w * 10**c.logl))
        log_m = np.log10(np.sum(w * c.mact) + remnant_mass(c.mini.max(), "kroupa"))
        assert abs(log_l - row[0, 2]) < 1e-3, la
        assert abs(log_m - row[0, 1]) < 1e-3, la
        n += 1
    assert n == 94


def test_power_law_weights_keep_their_digits_on_narrow_intervals():
    """The weights were differences of cumulatives from 1e-3 M_sun (Salpeter N(<m) ~ 1e4): on an interval
    5e-7 M_sun wide at 12 M_sun (PARSEC has such) 2e-3 off. Compared with the exact power-law integral."""
    from smnet_sps.imf import get_imf
    salpeter = get_imf("salpeter")
    m1, m2 = 12.009395125, 12.0093956
    exact = (m1 ** -1.35 - m2 ** -1.35) / 1.35            # A = 1 on the single segment
    assert salpeter.number(m1, m2) == pytest.approx(exact, rel=1e-9)
    kroupa = get_imf("kroupa")
    np.testing.assert_allclose(kroupa.number([0.1, 0.6], [0.6, 0.1]), [kroupa.number(0.1, 0.6),
                                                                       -kroupa.number(0.1, 0.6)])
    assert kroupa.mass(0.08, 120.0) == pytest.approx(kroupa._mcum(120.0) - kroupa._mcum(0.08), rel=1e-12)


def test_limits_given_with_an_imf_object_are_applied_not_dropped():
    """get_imf(get_imf("kroupa"), m_up=100) returned the 120 M_sun IMF without a word."""
    from smnet_sps.imf import get_imf
    kroupa = get_imf("kroupa")
    capped = get_imf(kroupa, m_up=100)
    assert (capped.m_low, capped.m_up) == (kroupa.m_low, 100.0)
    assert get_imf(kroupa) is kroupa                       # no limits given: the object itself
    assert get_imf(kroupa, m_low=0.1).m_up == kroupa.m_up
    assert capped.mass(1, 2) == kroupa.mass(1, 2)          # the same function, other limits
    with pytest.raises(ValueError, match="0 < m_low < m_up"):
        get_imf(kroupa, m_up=0.05)
    # a callable IMF's cumulatives are tables over its own limits: new limits rebuild them
    salpeter_like = get_imf(lambda m: m ** -2.35, m_up=100)
    wider = get_imf(salpeter_like, m_up=200)
    fresh = get_imf(lambda m: m ** -2.35, m_up=200)
    assert wider.number(100, 200) > 0
    assert wider.number(100, 200) == pytest.approx(fresh.number(100, 200), rel=1e-10)
    assert wider.mass_formed == pytest.approx(fresh.mass_formed, rel=1e-10)


def test_kroupa_below_008_msun_follows_kroupa_2001_eq2():
    """Kroupa (2001, MNRAS 322, 231) eq. 2 has alpha_0 = 0.3 for 0.01-0.08 M_sun; slope 1.3 was continued
    there, so an IMF given m_low = 0.01 (m_up = 120) had 61 % of its stars and 7.5 % of its mass in brown
    dwarfs for eq. 2's 37 % and 4.1 % (its M/L 3.7 % high). Both figures are for m_up = 120 M_sun: to
    Kroupa's own m_up = 50 M_sun eq. 2 gives 37 % and 4.29 % of the mass. Compared with eq. 2 written out and
    integrated by quad."""
    from scipy.integrate import quad

    def eq2(m):                      # continuous at 0.08 and 0.5 M_sun, any normalisation
        if m < 0.08:
            return 0.08 ** -1.0 * m ** -0.3
        return m ** -1.3 if m < 0.5 else 0.5 * m ** -2.3

    kw = {"points": [0.08, 0.5], "limit": 200}
    mass = quad(lambda m: m * eq2(m), 0.01, 120.0, **kw)[0]
    number = quad(eq2, 0.01, 120.0, **kw)[0]
    k = get_imf("kroupa", m_low=0.01)
    bd_mass = float(k.mass(0.01, 0.08)) / k.mass_formed
    bd_number = float(k.number(0.01, 0.08) / k.number(0.01, 120.0))
    assert bd_mass == pytest.approx(quad(lambda m: m * eq2(m), 0.01, 0.08)[0] / mass, rel=1e-8)
    assert bd_number == pytest.approx(quad(eq2, 0.01, 0.08)[0] / number, rel=1e-8)
    # to m_up = 120 M_sun (the IMF's); 0.0429 to m_up = 50
    assert bd_mass == pytest.approx(0.041, abs=0.001) and bd_number == pytest.approx(0.37, abs=0.01)
    assert float(k.number(8.0, 120.0)) / k.mass_formed == pytest.approx(
        quad(eq2, 8.0, 120.0)[0] / mass, rel=1e-8)
    # the shape below 0.08 M_sun, continuous at the break; FSPS's default range (from 0.08) is unchanged
    assert k.dndm(0.04) / k.dndm(0.02) == pytest.approx(2 ** -0.3)
    assert k.dndm(0.08 * (1 - 1e-9)) == pytest.approx(k.dndm(0.08 * (1 + 1e-9)), rel=1e-6)
    assert get_imf("kroupa").mass_formed == pytest.approx(quad(lambda m: m * eq2(m), 0.08, 120.0, **kw)[0],
                                                          rel=1e-8)
