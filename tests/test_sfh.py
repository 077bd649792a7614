"""Star-formation histories: closed-form masses, exact SSP weights, the SSP limit (smnet_sps.sfh)."""
import numpy as np
import pytest
from scipy.integrate import quad

from smnet_sps.sfh import (mass_formed_closed_form, parametric_sfh, ssp_weights, tabular_sfh)

LOG_AGES = np.arange(5.5, 10.1501, 0.05)       # Padova-like SSP grid [log yr]


@pytest.mark.parametrize("sfh", [1, 4])
@pytest.mark.parametrize("tage,tau", [(13.0, 1.0), (5.0, 20.0), (0.3, 0.05)])
def test_parametric_sfr_matches_closed_form(sfh, tage, tau):
    h = parametric_sfh(sfh, tage, tau=tau)
    T = tage * 1e9
    norm = mass_formed_closed_form(sfh, tage, tau) * (1e9 if sfh == 1 else 1e18)   # in yr (yr^2)
    t = np.linspace(0, T * 0.999, 7)
    s = T - t                                           # time since the start [yr]
    expected = (np.exp(-s / (tau * 1e9)) if sfh == 1 else s * np.exp(-s / (tau * 1e9))) / norm
    assert np.allclose(h.sfr(t), expected, rtol=1e-12, atol=0)
    assert h.mass_formed() == pytest.approx(1.0, rel=1e-10)


def test_closed_form_limits():
    # tau model: tau (1 - exp(-T/tau)) -> T for tau >> T; delayed: tau^2 (1 - (1+x) e^-x) -> T^2 / 2
    assert mass_formed_closed_form(1, 2.0, 1e6) == pytest.approx(2.0, rel=1e-5)
    assert mass_formed_closed_form(4, 2.0, 1e6) == pytest.approx(2.0, rel=1e-5)  # T^2/2 = 2
    assert mass_formed_closed_form(1, 50.0, 1.0) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("sfh,tau,tage", [(1, 1.0, 10.0), (4, 3.0, 7.5), (1, 0.2, 2.0)])
def test_weights_equal_independent_quadrature(sfh, tau, tage):
    """Weight of SSP i = int SFR(t) hat_i(log t) dt, integrated here by scipy.quad with np.interp hats."""
    h = parametric_sfh(sfh, tage, tau=tau)
    young, old = ssp_weights(h, LOG_AGES, split_yr=1e7)
    w = young + old
    assert w.sum() == pytest.approx(1.0, rel=1e-10)
    T = tage * 1e9
    for i in (0, 20, 60, int(np.searchsorted(LOG_AGES, np.log10(T))) - 1):
        onehot = np.zeros(LOG_AGES.size)
        onehot[i] = 1.0

        def integrand(lt):
            t = 10.0 ** lt
            return h.sfr(np.array([t]))[0] * np.interp(lt, LOG_AGES, onehot) * t * np.log(10)
        pts = [p for p in LOG_AGES if p < np.log10(T)]
        ref = quad(integrand, LOG_AGES[0], np.log10(T), points=pts[:50], limit=400, epsabs=0, epsrel=1e-10)[0]
        if i == 0:              # plus everything younger than the first SSP (nearest neighbour, as FSPS)
            ref += quad(lambda t: h.sfr(np.array([t]))[0], 0, 10 ** LOG_AGES[0], epsabs=0, epsrel=1e-12)[0]
        assert w[i] == pytest.approx(ref, rel=1e-7, abs=1e-15)
    # the young/old split at 10 Myr: young is all mass formed in the last 10 Myr
    young_ref = quad(lambda t: h.sfr(np.array([t]))[0], 0, 1e7, epsabs=0, epsrel=1e-12)[0]
    assert young.sum() == pytest.approx(young_ref, rel=1e-9)


def test_ssp_limit_of_a_short_tau_model():
    """tau -> 0: all mass at lookback time tage, i.e. the SSP's linear-in-log-age weights."""
    tage = 3.0
    h = parametric_sfh(1, tage, tau=1e-6)
    young, old = ssp_weights(h, LOG_AGES)
    w = young + old
    la = np.log10(tage * 1e9)
    j = np.searchsorted(LOG_AGES, la) - 1
    f = (la - LOG_AGES[j]) / (LOG_AGES[j + 1] - LOG_AGES[j])
    expected = np.zeros_like(w)
    expected[j], expected[j + 1] = 1 - f, f
    assert np.allclose(w, expected, atol=2e-5)


def test_constant_burst_truncation():
    tage, tburst = 10.0, 8.0
    h = parametric_sfh(1, tage, tau=2.0, const=0.3, fburst=0.2, tburst=tburst, sf_start=1.0, sf_trunc=9.0)
    assert h.mass_formed() == pytest.approx(1.0, rel=1e-10)
    t = np.array([0.5e9, 0.99e9, 1.01e9, 5e9, 8.99e9, 9.01e9])       # lookback [yr]
    sfr = h.sfr(t)
    assert np.all(sfr[:2] == 0)                  # truncated 1 Gyr ago (sf_trunc = 9 of tage = 10)
    assert np.all(sfr[2:5] > 0) and sfr[5] == 0  # started at sf_start = 1 Gyr (lookback 9 Gyr)
    # at lookback 5 Gyr (4 Gyr after the start): tau part (0.5 of the mass over the 8 Gyr of star formation)
    # plus the constant part (0.3 over 8 Gyr)
    expected = 0.5 * np.exp(-4 / 2) / (2e9 * -np.expm1(-8 / 2)) + 0.3 / 8e9
    assert sfr[3] == pytest.approx(expected, rel=1e-12)
    assert h.bursts == [(2e9, 0.2)]
    young, old = ssp_weights(h, LOG_AGES)
    assert (young + old).sum() == pytest.approx(1.0, rel=1e-10)
    # a burst after tage does not happen; the rest still sums to one
    h2 = parametric_sfh(1, 5.0, tau=2.0, const=0.3, fburst=0.2, tburst=8.0)
    assert h2.bursts == [] and h2.mass_formed() == pytest.approx(1.0, rel=1e-10)


def test_tabular_masses_in_closed_form():
    # 2 M_sun/yr from 1 to 4 Gyr, then a linear ramp down to 0 at 6 Gyr; observed at tage = 5 Gyr
    age = np.array([1.0, 4.0, 6.0])
    sfr = np.array([2.0, 2.0, 0.0])
    h = tabular_sfh(age, sfr, tage=5.0)
    expected = 2.0 * 3e9 + (2.0 + 1.0) / 2 * 1e9           # flat part + ramp from 2 to 1 M_sun/yr over 1 Gyr
    assert h.mass_formed() == pytest.approx(expected, rel=1e-12)
    young, old = ssp_weights(h, LOG_AGES)
    assert (young + old).sum() == pytest.approx(expected, rel=1e-10)
    assert h.sfr(np.array([0.0]))[0] == pytest.approx(1.0)   # current SFR on the ramp


@pytest.mark.parametrize("kwargs,match", [
    (dict(sfh=1, tage=1.0, sf_start=2.0), "sf_start"),
    (dict(sfh=1, tage=1.0, const=0.7, fburst=0.5), "const \\+ fburst"),
    (dict(sfh=1, tage=1.0, tau=0.0), "tau"),
    (dict(sfh=2, tage=1.0), "sfh=1"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parametric_sfh(**kwargs)


def test_mass_older_than_the_grid_is_refused():
    h = parametric_sfh(1, 13.7, tau=1.0)
    with pytest.raises(ValueError, match="older than the oldest SSP"):
        ssp_weights(h, np.arange(5.5, 10.1001, 0.05))        # PARSEC stops at 12.58 Gyr


def test_no_split_puts_every_star_in_old():
    """split_yr=None is documented as "everything in 'old'"; it put everything in 'young'."""
    h = parametric_sfh(1, 5.0, tau=1.0, fburst=0.2, tburst=4.0)
    young, old = ssp_weights(h, LOG_AGES)
    assert not young.any() and old.sum() == pytest.approx(1.0, rel=1e-10)
    split = ssp_weights(h, LOG_AGES, split_yr=1e7)
    np.testing.assert_allclose(split[0] + split[1], old, rtol=1e-12, atol=1e-15)
    assert 0 < split[0].sum() < 0.01


@pytest.mark.parametrize("age,sfr,match", [
    ([0.0, 5.0], [-1.0, -1.0], "sfr cannot be negative"),        # was -5e9 M_sun formed (negative weights)
    ([0.0, np.nan], [1.0, 1.0], "finite"),                       # was NaN
    ([0.0, 5.0, 3.0], [1.0, 1.0, 1.0], "strictly increasing"),   # was accepted
    (["0", "1"], [1.0, 1.0], "tabular age must be real numbers"),  # was read as 0 and 1 Gyr
    ([0.0, 1.0], [True, True], "tabular sfr must be real numbers"),
    ([1e8, 1e9, 1e10], [1.0, 1.0, 1.0], "given in yr"),        # ages in yr: nothing formed, flux 0, no word
])
def test_tabular_sfh_checks_its_table(age, sfr, match):
    """tabular_sfh (public, FSPS sfh=3) did not check its table as set_tabular_sfh does."""
    with pytest.raises(ValueError, match=match):
        tabular_sfh(age, sfr, tage=10.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(tage="5"), "tage must be a single real number in Gyr; got '5'"),     # numpy's TypeError before
    (dict(tau=None), "tau must be a single real number in Gyr"),
    (dict(const="0.1"), "const must be a single real number; got '0.1'"),
    (dict(fburst=True), "fburst must be a single real number; got True"),
    (dict(sf_start=[0.0, 1.0]), "sf_start must be a single real number"),
    (dict(sf_trunc=float("nan")), "sf_trunc must be a finite forward time"),  # meant "no truncation"
    (dict(sf_trunc=np.inf), "sf_trunc must be a finite forward time"),
    # a truncation before the Big Bang formed the untruncated SFH, silently (sf_trunc = 1 before
    # sf_start = 3 warns); FSPS, too, reads every sf_trunc <= 0 as "none"
    (dict(sf_trunc=-2.0), r"sf_trunc must be a finite forward time in Gyr, >= 0 \(0: no truncation\)"),
    (dict(tburst="11"), "tburst must be a single real number"),
])
def test_parametric_sfh_refuses_what_is_not_a_number(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parametric_sfh(**{"sfh": 1, "tage": 5.0, "tau": 1.0, **kwargs})


def _weights_in_time_since_start(sfh, tage, tau, const=0.0, sf_trunc=0.0):
    """Independent SSP weights: the SFR integrated in time since the start s (where a short tau or window
    keeps its digits), 32-point Gauss-Legendre between multiples of tau and the SSP ages."""
    T, tau_yr = tage * 1e9, tau * 1e9
    s_end = sf_trunc * 1e9 if 0 < sf_trunc < tage else T
    shape = (lambda s: np.exp(-s / tau_yr)) if sfh == 1 else (lambda s: s * np.exp(-s / tau_yr))
    edges = np.concatenate([[0.0, s_end], tau_yr * 2.0 ** np.arange(-6, 60), T - 10 ** LOG_AGES])
    edges = np.unique(edges[(edges >= 0) & (edges <= s_end)])
    x, wgl = np.polynomial.legendre.leggauss(32)
    tau_part, const_part, norm = np.zeros(LOG_AGES.size), np.zeros(LOG_AGES.size), 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        s = 0.5 * (b - a) * x + 0.5 * (a + b)
        dm = 0.5 * (b - a) * wgl
        pos = np.interp(np.log10(T - s), LOG_AGES, np.arange(LOG_AGES.size))   # hat functions in log age
        j = np.minimum(pos.astype(int), LOG_AGES.size - 2)
        for part, m in ((tau_part, dm * shape(s)), (const_part, dm)):
            np.add.at(part, j, m * (1 - (pos - j)))
            np.add.at(part, j + 1, m * (pos - j))
        norm += dm @ shape(s)
    return (1 - const) * tau_part / norm + const * const_part / s_end


@pytest.mark.parametrize("sfh", [1, 4])
@pytest.mark.parametrize("tage,tau,const,sf_trunc", [
    (10.0, 1e-15, 0.0, 0.0), (10.0, 1e-16, 0.0, 0.0), (10.0, 1e-20, 0.0, 0.0), (10.0, 1e-300, 0.0, 0.0),
    (10 ** LOG_AGES[80] / 1e9, 1e-15, 0.0, 0.0),                  # at an SSP age (a kink of the hats)
    (10.0, 2e-8, 0.0, 0.0), (10.0, 5e-8, 0.0, 0.0),               # either side of UNRESOLVED_FRACTION
    (3.0, 1e-9, 0.0, 0.0), (3.0, 1e-12, 0.0, 0.0),
    (10.0, 1.0, 1.0, 1e-15), (10.0, 1.0, 0.5, 1e-7), (10.0, 3.0, 0.3, 3e-8), (10.0, 1.0, 0.5, 1e-4),
])
def test_a_tau_or_window_shorter_than_float_resolution_forms_one_msun(sfh, tage, tau, const, sf_trunc):
    """Lookback times near the start (~1e10 yr) are ~2e-6 yr apart: tau = 1e-15 Gyr formed 1.98 M_sun,
    1e-16 Gyr 19.1, 1e-20 Gyr none (delayed: 0.28, 4e-14, 0); a constant SFR over 1e-15 Gyr formed 1.91.
    Now 1 M_sun, on the SSP weights an integration in time since the start gives (tau -> 0: the SSP)."""
    h = parametric_sfh(sfh, tage, tau=tau, const=const, sf_trunc=sf_trunc)
    assert h.mass_formed() == pytest.approx(1.0, rel=2e-8)          # ~1e-8 at UNRESOLVED_FRACTION
    young, old = ssp_weights(h, LOG_AGES)
    if tau > 1e-200:                                                 # the reference underflows below
        expected = _weights_in_time_since_start(sfh, tage, tau, const, sf_trunc)
        np.testing.assert_allclose(young + old, expected, rtol=0, atol=5e-8)
    if tau < 1e-12 and const == 0:                                 # the limit: the SSP at tage
        la = np.log10(tage * 1e9)
        j = min(np.searchsorted(LOG_AGES, la) - 1, LOG_AGES.size - 2)
        f = (la - LOG_AGES[j]) / (LOG_AGES[j + 1] - LOG_AGES[j])
        ssp = np.zeros(LOG_AGES.size)
        ssp[j], ssp[j + 1] = 1 - f, f
        np.testing.assert_allclose(young + old, ssp, rtol=0, atol=1e-9)


@pytest.mark.parametrize("sf_trunc", [1.0, 2.0])
def test_a_truncation_at_or_before_sf_start_is_ignored_as_fsps_with_a_warning(sf_trunc):
    """sf_trunc <= sf_start is ignored (FSPS's convert_sfhparams: sf_trunc - sf_start <= 0 -> no truncation)
    but was ignored silently: sf_start = 2, tage = 6, delayed tau 1 Gyr gave the untruncated SFH (L_bol
    +0.247 dex) at sf_trunc = 2 and a burst at 2 Gyr (-0.274 dex) at sf_trunc = 2 + 1e-6. Now a UserWarning
    names both; sf_trunc = 0 (no truncation) stays silent."""
    import warnings
    kwargs = dict(tau=1.0, sf_start=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        untruncated = ssp_weights(parametric_sfh(4, 6.0, sf_trunc=0.0, **kwargs), LOG_AGES)
    with pytest.warns(UserWarning, match=rf"sf_trunc \({sf_trunc:g} Gyr\) is not later than sf_start "
                                         r"\(2 Gyr\): ignored"):
        h = parametric_sfh(4, 6.0, sf_trunc=sf_trunc, **kwargs)
    for got, expected in zip(ssp_weights(h, LOG_AGES), untruncated):
        np.testing.assert_array_equal(got, expected)
    assert h.sfr(np.array([0.0]))[0] > 0                       # still forming stars at tage: not truncated


def test_masked_table_entries_are_refused():
    """A masked SFR or age (a MaskedColumn read from ECSV / FITS) was used with the value under the mask:
    5 of 20 masked rows holding 1e3 M_sun/yr formed 2.61e12 M_sun by 10 Gyr instead of 9.9e9. A masked
    array without a masked element is the plain table."""
    from astropy import units as u
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    from smnet_sps import StellarPopulation
    age = np.linspace(0.1, 10.0, 20)
    sfr = np.ma.masked_array(np.full(20, 1e3), mask=np.arange(20) // 5 == 1)
    sfr[~sfr.mask] = 1.0
    with pytest.raises(ValueError, match=r"tabular sfr is a masked array with 5 masked value\(s\) \(first at "
                                         r"flat index 5\)"):
        tabular_sfh(age, sfr, tage=10.0)
    sp = StellarPopulation(zcontinuous=1, sfh=3, logzsol=0.0)
    with pytest.raises(ValueError, match="tabular sfr is a masked array"):
        sp.set_tabular_sfh(age, MaskedColumn(sfr.data, mask=sfr.mask))
    with pytest.raises(ValueError, match="tabular age is a masked array with 1 masked"):
        sp.set_tabular_sfh(Masked(age * u.Gyr, mask=age > 9.9), np.ones(20))
    with pytest.raises(ValueError, match="tage is a masked array"):
        parametric_sfh(1, np.ma.masked_array([5.0], mask=[True]))
    plain = tabular_sfh(age, np.ones(20), tage=10.0).mass_formed()
    assert plain == pytest.approx(9.9e9, rel=1e-12)
    assert tabular_sfh(age, np.ma.masked_array(np.ones(20), mask=False), tage=10.0).mass_formed() == plain


@pytest.mark.parametrize("sfh", [1, 4])
def test_table_mass_fraction_follows_fsps_sfhinfo_with_start_truncation_and_burst(sfh):
    # FSPS sfhinfo.f90 for the tage=0 table, written out for tau = 2, sf_start = 1, sf_trunc = 6, const 0.1,
    # fburst 0.2 at tburst = 3, oldest SSP age 12 Gyr: the tau part by its own mass over [start, trunc], the
    # constant part linear over that window, the burst once age passes tburst
    from smnet_sps.sfh import table_mass_fraction
    tau, start, trunc, const, fburst, tburst, t_max = 2.0, 1.0, 6.0, 0.1, 0.2, 3.0, 12.0
    shape = (lambda s: np.exp(-s / tau)) if sfh == 1 else (lambda s: s / tau * np.exp(-s / tau))
    grid = np.linspace(0.0, trunc - start, 200001)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (shape(grid[1:]) + shape(grid[:-1])) * np.diff(grid))])
    for age in (0.5, 2.0, 3.5, 5.0, 8.0):
        s = min(max(age - start, 0.0), trunc - start)
        tau_share = np.interp(s, grid, cum) / cum[-1]
        mfrac = (1 - const - fburst) * tau_share + const * s / (trunc - start) + fburst * (age > tburst)
        sfr = 0.0 if not (0 < age - start <= trunc - start) else \
            ((1 - const - fburst) * shape(s) / cum[-1] + const / (trunc - start)) / 1e9
        got = table_mass_fraction(sfh, age, t_max, tau=tau, const=const, sf_start=start, sf_trunc=trunc,
                                  fburst=fburst, tburst=tburst)
        assert got[0] == pytest.approx(mfrac, abs=1e-8), age
        assert got[1] == pytest.approx(sfr, rel=1e-6, abs=1e-20), age


@pytest.mark.parametrize("tburst", [0.1, 1.0, 10.0])
def test_table_row_at_exactly_tburst_counts_the_burst_its_spectrum_holds(tburst):
    # 0.1, 1 and 10 Gyr are SSP grid ages (log t = 8, 9, 10), so the tage=0 table has a row at exactly tburst;
    # parametric_sfh (the row's spectrum) forms the burst there (no burst only if tburst > tage), while
    # table_mass_fraction followed sfhinfo's strict "Tprime > tburst": formed_mass 0.316 for tau = 1,
    # fburst = 0.5 at 1 Gyr beside a spectrum holding the 0.5 M_sun burst
    from smnet_sps.sfh import table_mass_fraction
    age = 10.0 ** np.log10(tburst * 1e9) / 1e9                 # the table's age, as population computes it
    t_max = 10.0 ** 10.15 / 1e9
    assert parametric_sfh(1, age, tau=1.0, fburst=0.5, tburst=tburst).bursts      # the spectrum has it
    expected = 0.5 * -np.expm1(-age) / -np.expm1(-t_max) + 0.5                    # tau share + the burst
    got, _ = table_mass_fraction(1, age, t_max, tau=1.0, fburst=0.5, tburst=tburst)
    assert got == pytest.approx(expected, rel=1e-12)
    before, _ = table_mass_fraction(1, age * (1 - 1e-9), t_max, tau=1.0, fburst=0.5, tburst=tburst)
    assert before == pytest.approx(expected - 0.5, rel=1e-6)                     # not yet a moment before


def test_ssp_weights_refuse_ages_that_are_not_log_years_and_a_split_that_is_not_a_time():
    # a 1 Gyr constant SFH on the grid's ages in yr put all of its 1 M_sun on the first (0.3 Myr) SSP; in Gyr
    # on the SSPs that read ~9 (8.9-10 Gyr); a NaN or negative split made no star young; all without a word
    from astropy import units as u
    h = parametric_sfh(1, 1.0, const=1.0)
    young, old = ssp_weights(h, LOG_AGES, split_yr=1e7)
    assert young.sum() == pytest.approx(0.01, rel=1e-12)                          # 10 Myr of 1 Gyr
    ages = 10.0 ** LOG_AGES
    for wrong in (ages, ages / 1e9, LOG_AGES - 9.0):                              # yr, Gyr, log Gyr
        with pytest.raises(ValueError, match=r"log10\(age / yr\), within 3..11"):
            ssp_weights(h, wrong)
    for split in (np.nan, -1e7, 10 * u.kg):
        with pytest.raises(ValueError, match="split_yr"):
            ssp_weights(h, LOG_AGES, split_yr=split)
    # the ages and the split as time Quantities are converted
    q_young, q_old = ssp_weights(h, ages / 1e9 * u.Gyr, split_yr=10 * u.Myr)
    assert np.allclose(q_young, young, rtol=1e-9, atol=1e-15)
    assert np.allclose(q_old, old, rtol=1e-9, atol=1e-15)


def test_closed_form_refuses_a_tau_or_duration_that_is_not_one_and_converts_quantities():
    # tau = -1 gave 6.39 "Gyr" formed over T = 2, T = -2 the same negative, tau = 0 a ZeroDivisionError and
    # sfh=True the tau model
    from astropy import units as u
    for sfh, T, tau in ((1, 2.0, -1.0), (1, 2.0, 0.0), (4, -2.0, 1.0), (1, np.nan, 1.0), (True, 2.0, 1.0)):
        with pytest.raises(ValueError, match="sfh=1 or 4|tau_gyr|T_gyr"):
            mass_formed_closed_form(sfh, T, tau)
    expected = 0.5 * -np.expm1(-4.0)                                      # Gyr, T / tau = 4
    assert mass_formed_closed_form(1, 2 * u.Gyr, 500 * u.Myr) == pytest.approx(expected, rel=1e-12)
    both = mass_formed_closed_form(4, np.array([0.0, 2.0]), 1.0)
    assert both[0] == 0.0 and both[1] == pytest.approx(1 - 3 * np.exp(-2.0), rel=1e-12)
    # an array of tau broadcasts as before the checks (the review: it became "a single real number")
    taus = mass_formed_closed_form(4, 2.0, np.array([1.0, 2.0]))
    assert taus == pytest.approx([1 - 3 * np.exp(-2.0), 4 * (1 - 2 * np.exp(-1.0))], rel=1e-12)
    for tau in (np.array([1.0, -1.0]), np.array([1.0, np.nan]), True):
        with pytest.raises(ValueError, match="tau_gyr"):
            mass_formed_closed_form(1, 2.0, tau)


def test_a_tabular_sfh_read_from_a_table_file_takes_its_columns_units(tmp_path):
    """A tabular SFH read with Table.read (big-endian columns, TUNIT as unit) lost its units: an sfr column
    in M_sun/Gyr was taken as M_sun/yr (1.05e19 M_sun formed for 1.05e10), an age column in Myr as Gyr
    (refused as 1.3e4 Gyr, 'pass a Quantity'). The columns' units are now converted; a column without one is
    in Gyr and M_sun/yr, as plain numbers are."""
    from astropy.io import fits
    from astropy.table import Table

    age, sfr = np.array([0.0, 1.0, 5.0, 13.0]), np.array([0.0, 1.0, 1.0, 0.5])
    path = tmp_path / "sfh.fits"
    fits.BinTableHDU.from_columns([
        fits.Column(name="age_myr", format="D", array=age * 1e3, unit="Myr"),
        fits.Column(name="sfr_gyr", format="D", array=sfr * 1e9, unit="solMass / Gyr"),
        fits.Column(name="age", format="D", array=age), fits.Column(name="sfr", format="E", array=sfr)
    ]).writeto(path)
    t = Table.read(path)
    assert t["sfr_gyr"].dtype.byteorder == ">"
    expected = tabular_sfh(age, sfr, 13.0).mass_formed()
    assert expected == pytest.approx(1.05e10, rel=1e-12)
    for a, r in (("age_myr", "sfr_gyr"), ("age", "sfr"), ("age_myr", "sfr")):
        assert tabular_sfh(t[a], t[r], 13.0).mass_formed() == pytest.approx(expected, rel=1e-9), (a, r)
