"""StellarPopulation's python-fsps methods sfr_avg, smoothspec, filter_data and set_lsf, each against an
independent calculation (scipy quadrature, a direct Gaussian sum, numpy integrals over the filter curves)."""
import numpy as np
import pytest
from astropy import constants
from astropy import units as u
from scipy.integrate import quad

from smnet_sps import StellarPopulation
from smnet_sps.filters import get_bandpass
from smnet_sps.lsf import C_KMS
from smnet_sps.photometry import sun_spectrum, vega_spectrum
from smnet_sps.population import FSPS_BANDS

C_AA = 2.99792458e18            # [A / s]


def _fsps_window_mass(sfh, t0, t1, tage, tau, const, sf_start, sf_trunc, fburst, tburst):
    """Mass formed in forward times (t0, t1] [Gyr] by FSPS's SFH normalised to 1 M_sun by tage, by quad."""
    end = min(tage, sf_trunc) if sf_trunc > sf_start else tage

    def shape(t):
        s = t - sf_start
        return np.exp(-s / tau) * (s if sfh == 4 else 1.0)

    def part(f):           # share of the part's own mass by tage that lies in (t0, t1]
        lo, hi = max(t0, sf_start), min(t1, end)
        inside = quad(f, lo, hi, epsabs=0, epsrel=1e-12)[0] if hi > lo else 0.0
        return inside / quad(f, sf_start, end, epsabs=0, epsrel=1e-12)[0]
    f_burst = fburst if tburst <= tage else 0.0
    return ((1 - const - f_burst) * part(shape) + const * part(lambda t: 1.0)
            + f_burst * float(t0 < tburst <= t1))


@pytest.mark.parametrize("sfh, kw", [
    (1, dict(tau=1.5, const=0.0, sf_start=0.0, sf_trunc=0.0, fburst=0.0)),
    (4, dict(tau=2.0, const=0.2, sf_start=1.0, sf_trunc=0.0, fburst=0.1, tburst=9.95)),
    (1, dict(tau=0.7, const=0.3, sf_start=0.5, sf_trunc=8.0, fburst=0.2, tburst=6.0)),
    (4, dict(tau=3.0, const=0.0, sf_start=2.0, sf_trunc=9.5, fburst=0.0)),
])
def test_sfr_avg_equals_a_quadrature_of_the_sfh(blackbody, sfh, kw):
    kw = {"tburst": 11.0, **kw}
    tage, dt = 10.0, 0.1
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, sfh=sfh, tage=tage, **kw)
    times = np.array([[kw["sf_start"] + 0.3, 3.0], [6.0, 7.9], [9.0, tage]])
    got = sp.sfr_avg(times, dt=dt)
    assert got.shape == times.shape
    ref = np.array([_fsps_window_mass(sfh, t - dt, t, tage, **kw) for t in times.ravel()]) / (dt * 1e9)
    np.testing.assert_allclose(got.ravel(), ref, rtol=1e-6, atol=0)
    # default: the last dt before tage, as one float; a Quantity dt is converted
    assert isinstance(sp.sfr_avg(), float)
    assert sp.sfr_avg(dt=100 * u.Myr) == pytest.approx(ref[-1], rel=1e-6)


def test_sfr_avg_follows_python_fsps_conventions(blackbody):
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, sfh=4, tau=2.0, sf_start=1.0, tage=5.0)
    # after tage: 0; a window opening before sf_start: NaN (python-fsps's gammainc of a negative time)
    assert sp.sfr_avg(6.0) == 0.0
    assert np.isnan(sp.sfr_avg(1.05, dt=0.1))
    # the gammainc closed form python-fsps evaluates, 1 M_sun formed by tage
    from scipy.special import gammainc
    t = np.array([2.0, 3.5, 5.0])
    x = lambda t: (t - 1.0) / 2.0                           # noqa: E731
    fsps = (gammainc(2, x(t)) - gammainc(2, x(t - 0.25))) / gammainc(2, x(5.0)) / 0.25e9
    np.testing.assert_allclose(sp.sfr_avg(t, dt=0.25), fsps, rtol=1e-9)
    # tage = 0: normalised by the oldest SSP age (python-fsps)
    sp.params["tage"] = 0.0
    t_max = 10.0 ** (sp.ssp_ages[-1] - 9)
    ref = _fsps_window_mass(4, 4.9, 5.0, t_max, 2.0, 0.0, 1.0, 0.0, 0.0, 11.0) / 1e8
    assert sp.sfr_avg(5.0) == pytest.approx(ref, rel=1e-6)
    for bad in (dict(dt=0.0), dict(dt=-1.0), dict(times="5")):
        with pytest.raises(ValueError):
            sp.sfr_avg(**{"times": 5.0, **bad})
    sp.params["sfh"] = 0
    with pytest.raises(ValueError, match="sfh 1, 3 or 4"):
        sp.sfr_avg(5.0)


def test_sfr_avg_of_a_tabular_sfh_is_the_tables_average(blackbody):
    age, sfr = np.array([0.5, 3.0, 7.0, 12.0]), np.array([0.0, 4.0, 1.0, 2.0])
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, sfh=3, tage=10.0)
    sp.set_tabular_sfh(age, sfr)
    for t, dt in ((2.0, 0.5), (3.2, 1.0), (10.0, 0.1)):
        ref = quad(lambda x: np.interp(x, age, sfr), t - dt, t, epsabs=0, epsrel=1e-12, points=[3.0, 7.0])
        assert sp.sfr_avg(t, dt) == pytest.approx(ref[0] / dt, rel=1e-6)


def _direct_gaussian(wave, flux, sigma_aa):
    """Each pixel the Gaussian-weighted mean of the spectrum, by a direct sum on its own sigma [A]."""
    out = np.empty_like(flux)
    dw = np.gradient(wave)
    for i, (w, s) in enumerate(zip(wave, sigma_aa)):
        k = np.exp(-0.5 * ((wave - w) / s) ** 2) * dw
        out[i] = k @ flux / k.sum()
    return out


@pytest.mark.parametrize("velocity, sigma", [(True, 150.0), (False, 2.5)])
def test_smoothspec_is_a_gaussian_convolution(blackbody, velocity, sigma):
    wave = np.linspace(4000.0, 6000.0, 4001)                       # 0.5 A pixels
    rng = np.random.default_rng(3)
    spec = 1.0 + 0.5 * np.sin(wave / 7.0) + rng.normal(0, 0.1, wave.size)
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, smooth_velocity=velocity)
    got = sp.smoothspec(wave, spec, sigma, minw=4500.0, maxw=5500.0)
    sigma_aa = wave * sigma / C_KMS if velocity else np.full(wave.shape, sigma)
    inside = (wave >= 4500.0) & (wave <= 5500.0)
    np.testing.assert_allclose(got[inside], _direct_gaussian(wave, spec, sigma_aa)[inside], rtol=2e-4)
    assert np.abs(got[inside] - spec[inside]).max() > 0.1          # it did smooth
    np.testing.assert_array_equal(got[~inside], spec[~inside])
    # default window: the whole spectrum; sigma 0: an unchanged copy
    assert not np.array_equal(sp.smoothspec(wave, spec, sigma)[:100], spec[:100])
    same = sp.smoothspec(wave, spec, 0.0)
    np.testing.assert_array_equal(same, spec)
    assert same is not spec
    with pytest.raises(ValueError):
        sp.smoothspec(wave, spec, -1.0)
    with pytest.raises(ValueError):
        sp.smoothspec(wave, spec[:-1], sigma)


def test_size_one_arrays_are_numbers_as_in_python_fsps(blackbody):
    """sfr_avg's dt, smoothspec's sigma / minw / maxw and set_lsf's wmin / wmax took a size-1 array by their
    size check (or none), then float() of it raised numpy 2's TypeError "only 0-dimensional arrays can be
    converted to Python scalars"; python-fsps broadcasts them. Now each gives what the number gives, and
    more than one value is a ValueError naming the parameter."""
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, sfh=4, tau=2.0, sf_start=1.0, tage=5.0)
    one = sp.sfr_avg(dt=[0.1])
    assert isinstance(one, float) and one == sp.sfr_avg(dt=0.1) > 0
    times = [3.0, 4.0]
    np.testing.assert_array_equal(sp.sfr_avg(times, dt=np.array([0.25])), sp.sfr_avg(times, dt=0.25))
    wave = np.linspace(4000.0, 6000.0, 2001)
    spec = 1.0 + 0.5 * np.sin(wave / 7.0)
    ref = sp.smoothspec(wave, spec, 50.0, minw=4500.0, maxw=5500.0)
    assert not np.array_equal(ref, spec)
    got = sp.smoothspec(wave, spec, np.array([50.0]), minw=[4500], maxw=[5500.0])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(sp.smoothspec(wave, spec, [0.0]), spec)
    for name in ("minw", "maxw"):
        with pytest.raises(ValueError, match=f"{name} must be one number in Angstrom.*got 2"):
            sp.smoothspec(wave, spec, 50.0, **{name: [4500.0, 5000.0]})
    lsf_wave, lsf_sigma = np.array([3000.0, 9000.0]), np.array([1500.0, 3000.0])          # [km/s]
    kw = dict(zcontinuous=1, generator=blackbody, sfh=0, smooth_lsf=True)
    spectra = []
    for lo, hi in ((4000.0, 7000.0), ([4000.0], np.array([7000.0]))):
        lsf = StellarPopulation(**kw)
        lsf.set_lsf(lsf_wave, lsf_sigma, wmin=lo, wmax=hi)
        spectra.append(lsf.get_spectrum(tage=1.0, peraa=True)[1])
    np.testing.assert_array_equal(spectra[1], spectra[0])
    for name in ("wmin", "wmax"):
        with pytest.raises(ValueError, match=f"{name} must be one number in Angstrom.*got 2"):
            lsf.set_lsf(lsf_wave, lsf_sigma, **{name: [4000.0, 5000.0]})


def _ab_mag(wave, flam, band):
    """AB magnitude of f_lambda [erg s^-1 cm^-2 A^-1] on ``wave`` [A] through ``band``, by numpy trapezoids
    on a fine grid (photon counting: <f_nu> = int f_lambda T l dl / int T c / l dl)."""
    bp = get_bandpass(FSPS_BANDS[band])[1]
    wb = bp.waveset.to_value(u.AA)
    grid = np.linspace(wb[0], wb[-1], 200001)
    t = bp(grid).value
    f = np.interp(grid, wave, flam, left=0.0, right=0.0)
    fnu = np.trapezoid(f * t * grid, grid) / np.trapezoid(t * C_AA / grid, grid)
    return -2.5 * np.log10(fnu) - 48.60


def test_filter_data_pivots_vega_and_sun(blackbody):
    sp = StellarPopulation(zcontinuous=1, generator=blackbody)
    lambda_eff, magvega, magsun = sp.filter_data()
    n = len(sp.available_bands)
    assert lambda_eff.shape == magvega.shape == magsun.shape == (n,)
    wv, fv = vega_spectrum()
    ws, fs = sun_spectrum()
    fs = fs * (constants.au / (10 * constants.pc)).decompose().value ** 2                 # the Sun at 10 pc
    for band in ("v", "sdss_r", "2mass_ks", "galex_fuv", "wfc3_ir_f160w", "irac_1"):
        i = sp.available_bands.index(band)
        bp = get_bandpass(FSPS_BANDS[band])[1]
        wb, tb = bp.waveset.to_value(u.AA), bp(bp.waveset).value
        pivot = np.sqrt(np.trapezoid(tb * wb, wb) / np.trapezoid(tb / wb, wb))
        assert lambda_eff[i] == pytest.approx(pivot, rel=1e-8)
        assert magvega[i] == pytest.approx(_ab_mag(wv, fv, band), abs=2e-3)
        if band == "irac_1":                              # beyond the CALSPEC Sun (2.70 micron)
            assert np.isnan(magsun[i])
        else:
            assert magsun[i] == pytest.approx(_ab_mag(ws, fs, band), abs=2e-3)
    assert magsun[sp.available_bands.index("v")] == pytest.approx(4.80, abs=0.05)     # M_V,sun (AB)
    # magvega is the offset of this class's Vega magnitudes: m_Vega = m_AB - magvega
    bands = ["v", "sdss_g", "2mass_ks"]
    idx = [sp.available_bands.index(b) for b in bands]
    ab = sp.get_mags(tage=5.0, bands=bands)
    sp.compute_vega_mags = True
    np.testing.assert_allclose(ab - sp.get_mags(tage=5.0, bands=bands), magvega[idx], atol=1e-3)
    np.testing.assert_allclose(sp.filter_data()[2][idx], magsun[idx] - magvega[idx], atol=1e-5)


def test_set_lsf_smooths_the_ssps(default_generator):
    kw = dict(zcontinuous=1, generator=default_generator, sfh=0)
    plain = StellarPopulation(**kw)
    wave, ref = plain.get_spectrum(tage=1.0, peraa=True)
    sp = StellarPopulation(smooth_lsf=True, **kw)
    with pytest.raises(ValueError, match="set_lsf"):
        sp.get_spectrum(tage=1.0)
    lsf_wave = np.array([3000.0, 9000.0])
    lsf_sigma = np.array([1500.0, 3000.0])                          # [km/s], rising with wavelength
    sp.set_lsf(lsf_wave, lsf_sigma, wmin=3500.0, wmax=8000.0)
    _, got = sp.get_spectrum(tage=1.0, peraa=True)
    inside = (wave >= 3500.0) & (wave <= 8000.0)
    np.testing.assert_array_equal(got[~inside], ref[~inside])
    sigma_aa = wave * np.interp(wave, lsf_wave, lsf_sigma) / C_KMS
    core = (wave >= 4000.0) & (wave <= 7500.0)                    # 4 sigma inside the window
    direct = _direct_gaussian(wave, ref, sigma_aa)
    assert np.abs(got[core] / ref[core] - 1).max() > 1e-2          # it did smooth the lines
    np.testing.assert_allclose(got[core], direct[core], rtol=1e-4)
    # a new LSF makes the results stale, as in python-fsps (dirtiness 2)
    sp.set_lsf(lsf_wave, lsf_sigma / 3)
    assert not np.allclose(sp.get_spectrum(tage=1.0, peraa=True)[1][core], got[core], rtol=1e-3)
    sp.params["smooth_velocity"] = False
    with pytest.raises(ValueError, match="smooth_velocity"):
        sp.get_spectrum(tage=1.0)
    with pytest.warns(UserWarning, match="smooth_lsf=True"):
        plain.set_lsf(lsf_wave, lsf_sigma)
    for bad in ((lsf_wave, -lsf_sigma), (lsf_wave[::-1], lsf_sigma), (lsf_wave, lsf_sigma[:1])):
        with pytest.raises(ValueError):
            plain.set_lsf(*bad)


@pytest.mark.parametrize("minw, maxw", [(5500.0, 4500.0), (5000.0, 5000.0), (6500.0, None), (None, 3500.0)])
def test_smoothspec_refuses_an_empty_or_reversed_window(blackbody, minw, maxw):
    """smoothspec(minw=5500, maxw=4500) returned the spectrum unsmoothed without a word (as FSPS's Fortran
    loop skips every pixel); min_wave_smooth / set_lsf's wmin already refuse such a window. Now a ValueError
    naming both, whatever sigma (0 included)."""
    wave = np.linspace(4000.0, 6000.0, 2001)
    spec = 1.0 + 0.5 * np.sin(wave / 7.0)
    sp = StellarPopulation(zcontinuous=1, generator=blackbody)
    for sigma in (100.0, 0.0):
        with pytest.raises(ValueError, match=r"minw must be below maxw .*got minw=.*maxw="):
            sp.smoothspec(wave, spec, sigma, minw=minw, maxw=maxw)
    assert not np.array_equal(sp.smoothspec(wave, spec, 100.0, minw=4500.0, maxw=5500.0), spec)


def test_a_list_of_quantities_is_refused_naming_the_parameter(blackbody):
    """sfr_avg(times=[1 * u.Gyr, 2 * u.Gyr]), dt=[100 * u.Myr], set_tabular_sfh with a list of Quantities and
    smoothspec(minw=[4100 * u.AA]) raised numpy's TypeError "only dimensionless scalar quantities can be
    converted to Python scalars" from np.asarray; now the package's ValueError for a list of Quantities (as
    the generator's), and the one array Quantity it suggests gives the answer."""
    sp = StellarPopulation(zcontinuous=1, generator=blackbody, sfh=1, tau=1.0, tage=5.0)
    wave = np.linspace(4000.0, 5000.0, 101)
    calls = {"times": lambda: sp.sfr_avg([1 * u.Gyr, 2 * u.Gyr]),
             "dt": lambda: sp.sfr_avg(3.0, dt=[100 * u.Myr]),
             "tabular age": lambda: sp.set_tabular_sfh([1 * u.Gyr, 5 * u.Gyr], [1.0, 1.0] * u.Msun / u.yr),
             "minw": lambda: sp.smoothspec(wave, np.ones(wave.size), 50.0, minw=[4100 * u.AA])}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"^{name}: a list of Quantities loses their units; give one "
                                             r"array Quantity"):
            call()
    np.testing.assert_array_equal(sp.sfr_avg(np.array([1.0, 2.0]) * u.Gyr), sp.sfr_avg([1.0, 2.0]))
    assert sp.sfr_avg(3.0, dt=np.array([100.0]) * u.Myr) == sp.sfr_avg(3.0, dt=0.1)


def test_set_lsf_keeps_its_own_copy_so_the_callers_arrays_do_not_change_it(blackbody):
    """set_lsf kept the caller's wave array: ``wave /= 1.5`` afterwards moved the LSF of every age computed
    later while the ages already cached kept the old one (default model, tage = 3 Gyr: 31 % off a fresh
    population's spectrum in one pixel). Now the population holds read-only copies of wave and sigma."""
    kw = dict(zcontinuous=1, generator=blackbody, smooth_lsf=True, sfh=0)
    wave, sigma = np.linspace(3000.0, 9000.0, 50), np.linspace(100.0, 3000.0, 50)     # [A], [km/s]
    sp = StellarPopulation(**kw)
    sp.set_lsf(wave, sigma)
    sp.get_spectrum(tage=1.0, peraa=True)
    wave /= 1.5                                # the caller's arrays, reused
    sigma *= 3.0
    fresh = StellarPopulation(**kw)
    fresh.set_lsf(np.linspace(3000.0, 9000.0, 50), np.linspace(100.0, 3000.0, 50))
    for tage in (3.0, 1.0):
        np.testing.assert_array_equal(sp.get_spectrum(tage=tage, peraa=True)[1],
                                      fresh.get_spectrum(tage=tage, peraa=True)[1])
