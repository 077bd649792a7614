"""StellarLibraryBackend: luminosity conservation, coverage rules, cache, special phases, bad input."""
import warnings

import numpy as np
import pytest
from astropy import units as u

from smnet_sps.backend import STATUS, StellarLibraryBackend
from smnet_sps.constants import L_SUN
from smnet_sps.generator import BlackbodyGenerator

LOGT = np.array([3.5, 3.76, 4.0, 4.5, 5.0])
LOGG = np.array([1.0, 4.4, 4.0, 4.0, 6.0])
LOGL = np.array([2.0, 0.0, 1.5, 4.0, 3.0])


def integral(ps):
    """The luminosity each spectrum stands for: its integral over the grid / the share of L on the grid."""
    return np.trapezoid(ps.llam, ps.wavelength, axis=1) / ps.grid_fraction


def test_luminosity_conserved_blackbody(blackbody):
    be = StellarLibraryBackend(blackbody)
    ps = be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL)
    assert np.allclose(integral(ps), 10**LOGL * L_SUN, rtol=1e-6)  # cached spectra are float32
    assert np.all(ps.status == STATUS["generator"]) and ps.missing_fraction == 0
    # an exact Planck generator needs no correction: the grid holds the blackbody's share (planck_fraction)
    assert np.all(np.abs(ps.correction - 1) < 1e-4)
    spec = ps.as_spectrum()
    assert spec.flux.unit == u.Unit("erg s-1 AA-1") and spec.flux.shape == (5, blackbody.wavelength.size)


def test_default_model_luminosity_conserved(default_generator):
    be = StellarLibraryBackend(default_generator)
    ps = be.point_spectra(logt=LOGT[:3], logg=LOGG[:3], logz=0.0, logl=LOGL[:3])
    ok = ps.status == STATUS["generator"]
    assert ok.any()
    assert np.allclose(integral(ps)[ok], 10**LOGL[:3][ok] * L_SUN, rtol=1e-6)
    assert np.all(np.isfinite(ps.correction[ok])) and np.all(np.abs(ps.correction[ok] - 1) < 0.2)


def test_outside_rules():
    gen = BlackbodyGenerator(teff_range=(3000.0, 20000.0))      # 10^5 K and 10^5.0 are outside
    teff = 10**LOGT
    ex = StellarLibraryBackend(gen, outside="exclude").point_spectra(teff=teff, logg=LOGG, logz=0, logl=LOGL)
    out = teff > 20000
    assert np.all(ex.status[out] == STATUS["missing"]) and np.all(ex.llam[out] == 0)
    assert ex.missing_fraction == pytest.approx((10**LOGL[out]).sum() / (10**LOGL).sum())
    bb = StellarLibraryBackend(gen, outside="blackbody").point_spectra(teff=teff, logg=LOGG, logz=0,
                                                                       logl=LOGL)
    assert np.all(bb.status[out] == STATUS["blackbody"]) and bb.missing_fraction == 0
    assert np.allclose(integral(bb), 10**LOGL * L_SUN, rtol=1e-6)  # cached spectra are float32
    xt = StellarLibraryBackend(gen, outside="extrapolate").point_spectra(teff=teff, logg=LOGG, logz=0,
                                                                         logl=LOGL)
    assert np.all(xt.status[out] == STATUS["extrapolated"]) and not xt.inside[out].any()


class NaNGenerator(BlackbodyGenerator):
    name = "nan-above-10kK"

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        f = super()._surface_flux_batch(teff, logg, logz)
        f[teff > 1e4] = np.nan
        return f


def test_unusable_generator_output_is_missing():
    ps = StellarLibraryBackend(NaNGenerator()).point_spectra(logt=LOGT, logg=LOGG, logz=0, logl=LOGL)
    hot = 10**LOGT > 1e4
    assert np.all(ps.status[hot] == STATUS["missing"]) and np.all(np.isfinite(ps.llam))
    assert np.all(ps.status[~hot] == STATUS["generator"])


@pytest.mark.parametrize("outside", ["extrapolate", "blackbody", "exclude"])
def test_an_unusable_spectrum_is_flagged_outside(outside):
    """The module says unusable spectra (NaN, a negative pixel) are always treated as outside, but points
    inside the box whose spectrum was NaN got status missing (or blackbody) with inside still True. Now
    inside is False there, in every mode and through the cache."""
    be = StellarLibraryBackend(NaNGenerator(), outside=outside)
    hot = 10**LOGT > 1e4
    assert NaNGenerator().in_coverage(10**LOGT, LOGG, 0.0).all()
    for _ in range(2):                              # computed, then served from the cache
        ps = be.point_spectra(logt=LOGT, logg=LOGG, logz=0, logl=LOGL)
        assert ps.inside.tolist() == (~hot).tolist()
        assert np.all(ps.status[hot] == STATUS["blackbody" if outside == "blackbody" else "missing"])


class NegativePixelGenerator(BlackbodyGenerator):
    """A Planck spectrum with pixel 600 at -5x its value above 10 kK, and pixel 0 at zero below (a masked
    tail, which is legitimate)."""
    name = "negative-pixel-above-10kK"

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        f = super()._surface_flux_batch(teff, logg, logz)
        f[teff > 1e4, 600] *= -5.0
        f[teff <= 1e4, 0] = 0.0
        return f


@pytest.mark.parametrize("outside, hot_status", [("extrapolate", "missing"), ("blackbody", "blackbody")])
def test_a_generated_spectrum_with_a_negative_pixel_is_unusable(outside, hot_status):
    """A negative pixel passed as a normal spectrum (status 'generator', negative L_lambda) and went into SSPs
    as negative light (a 1 Gyr SSP's pixel at -3.7e-4 L_sun/A); now it is unusable like a NaN spectrum:
    missing, or a blackbody under outside='blackbody'. A zero pixel keeps the spectrum usable."""
    be = StellarLibraryBackend(NegativePixelGenerator(), outside=outside)
    ps = be.point_spectra(logt=LOGT, logg=LOGG, logz=0, logl=LOGL)
    hot = 10**LOGT > 1e4
    assert np.all(ps.status[hot] == STATUS[hot_status]) and np.all(ps.status[~hot] == STATUS["generator"])
    assert ps.llam.min() >= 0.0
    with np.errstate(invalid="ignore"):                 # missing points hold no share of their light
        assert np.allclose(integral(ps)[~hot], 10**LOGL[~hot] * L_SUN, rtol=1e-6)
    # the streamed path of SSPs (scale folded into the weights) and the cached one agree
    keys = be.point_keys(LOGT, LOGG, np.zeros(LOGT.size))
    for use_cache in (False, True):
        flux, covered, status, _ = be.weighted_sum(keys, np.diag(10**LOGL), use_cache=use_cache)
        assert flux.min() >= 0.0 and np.array_equal(status, ps.status)
        assert np.array_equal(covered > 0, ps.status != STATUS["missing"])


def test_cache_hits(blackbody):
    be = StellarLibraryBackend(blackbody, cache_size=100)
    be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL)
    assert (be.hits, be.misses) == (0, 5)
    ps = be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL + 1)
    assert (be.hits, be.misses) == (5, 5)
    assert np.allclose(integral(ps), 10 ** (LOGL + 1) * L_SUN, rtol=1e-6)
    be.point_spectra(logt=LOGT, logg=LOGG, logz=0.3, logl=LOGL)   # different [M/H]: new key
    assert be.misses == 10


def test_weighted_sum_streaming_equals_cached(blackbody):
    be = StellarLibraryBackend(blackbody, batch_size=2)
    keys = be.point_keys(LOGT, LOGG, np.zeros(5))
    w = np.array([[1.0, 2, 0, 0, 1], [0, 0, 3, 1, 0]])
    a, cov_a, _, _ = be.weighted_sum(keys, w, use_cache=True)
    b, cov_b, _, _ = be.weighted_sum(keys, w, use_cache=False)
    assert np.allclose(a, b, rtol=1e-6) and np.allclose(cov_a, w.sum(1))
    # each star's spectrum holds the share of its L on the grid (1 - 1e-4 at 10^5 K)
    on_grid = be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=0.0).grid_fraction
    assert np.allclose(np.trapezoid(a, be.wavelength, axis=1), w @ on_grid, rtol=1e-6)


def fake_phase_libraries(wave):
    from smnet_sps.generator import planck_surface_flux
    t = np.array([3e4, 6e4, 1e5, 1.4e5])
    tp = np.array([2000.0, 3000.0, 4000.0])
    lib = lambda tt, scale: (tt, np.zeros(tt.size), scale * planck_surface_flux(wave, tt),  # noqa: E731
                             np.ones((tt.size, wave.size), bool), "test")
    tr = np.array([5e4, 1e5, 1.9e5])
    pagb = lambda z: (tr, np.full(tr.size, z), planck_surface_flux(wave, tr),  # noqa: E731
                      np.ones((tr.size, wave.size), bool), "test")
    rauch = tuple(np.concatenate([a, b]) if isinstance(a, np.ndarray) else a
                  for a, b in zip(pagb(0.0), pagb(-1.0)))
    return {"cmfgen_wn": lib(t, 1.0), "cmfgen_wc": lib(t, 2.0), "tpagb_orich": lib(tp, 1.0),
            "tpagb_crich": lib(tp, 3.0), "rauch_pagb": rauch}


def test_dedicated_phases(blackbody):
    be = StellarLibraryBackend(blackbody, special_phases="dedicated",
                               phase_libraries=fake_phase_libraries(blackbody.wavelength))
    ps = be.point_spectra(logt=[4.9, 4.9, 3.5, 3.5, 3.8], logg=[4, 4, 0, 0, 4], logz=0, logl=[5, 5, 3, 3, 0],
                          phase=[9, 9, 5, 5, 0], co=[0.5, 2.0, 0.5, 1.5, 0.5])
    assert list(ps.status) == [STATUS["dedicated"]] * 4 + [STATUS["generator"]]
    assert np.allclose(integral(ps), 10.0 ** np.array([5, 5, 3, 3, 0]) * L_SUN, rtol=1e-6)
    # outside the dedicated library's Teff range -> the model
    ps = be.point_spectra(logt=[3.9], logg=[1], logz=0, logl=[3], phase=[5], co=[0.5])
    assert ps.status[0] == STATUS["generator"]
    # post-AGB (phase 6): halo/solar set by [M/H], model outside 50-190 kK
    ps = be.point_spectra(logt=[5.0, 5.0, 4.6], logg=6, logz=[0.0, -0.5, 0.0], logl=3, phase=6)
    assert list(ps.status) == [STATUS["dedicated"]] * 2 + [STATUS["generator"]]


def _rauch_expected(libs, wave_w, teff, logz_set):
    """Teff-linear interpolation of the unit-normalised rauch_pagb spectra of one [M/H] set."""
    r = libs["rauch_pagb"]
    sel = np.flatnonzero(r["logz"] == logz_set)
    t = r["teff"].to_value(u.K)[sel]
    f = r["flux"].value[sel]
    f = f / (f @ wave_w)[:, None]
    j = np.searchsorted(t, teff) - 1
    x = (teff - t[j]) / (t[j + 1] - t[j])
    return (1 - x) * f[j] + x * f[j + 1]


def test_dedicated_post_agb_rauch():
    from smnet_sps.backend import _trapz_weights
    from smnet_sps.grid import load_phase_libraries

    libs = load_phase_libraries()
    wave = libs["wavelength"].to_value(u.AA)
    be = StellarLibraryBackend(BlackbodyGenerator(wavelength=wave), special_phases="dedicated")
    w = _trapz_weights(wave)
    # log Teff on the cache-key resolution (1e-4 dex), so the expected spectra use the same Teff
    teff = 10 ** np.array([4.9294, 4.9294, 4.9294, 5.0915, 4.6021, 5.2900])   # 85, 85, 85, 123.4, 40, 195 kK
    logz = np.array([0.0, -1.0, -0.29, -0.31, 0.0, 0.0])
    logl = np.array([3.0, 3.0, 3.0, 2.5, 3.0, 3.0])
    ps = be.point_spectra(teff=teff, logg=6.0, logz=logz, logl=logl, phase=6)
    # inside 50-190 kK: dedicated; outside (40 kK, 195 kK): the generator, as for the other phases
    assert list(ps.status) == [STATUS["dedicated"]] * 4 + [STATUS["generator"]] * 2
    unit = ps.llam / (10**logl * L_SUN * ps.grid_fraction)[:, None]     # unit integral over the grid
    assert np.allclose(unit @ w, 1.0, rtol=1e-6)
    # halo set at [M/H] <= log10(0.5) (FSPS getspec.f90: solar only when Z/Zsun > 0.5), solar above
    for i, zset in enumerate([0.0, -1.0, 0.0, -1.0]):
        exp = _rauch_expected(libs, w, teff[i], zset)
        assert np.allclose(unit[i], exp, rtol=1e-5, atol=1e-6 * exp.max()), i
    assert not np.allclose(unit[0], unit[1], rtol=1e-2)       # the two sets differ
    assert np.allclose(unit[0], unit[2], rtol=1e-6)            # -0.29 > log10(0.5): solar
    # "model" ignores the phase
    ps_m = StellarLibraryBackend(BlackbodyGenerator(wavelength=wave)).point_spectra(
        teff=teff, logg=6.0, logz=logz, logl=logl, phase=6)
    assert np.all(ps_m.status == STATUS["generator"])


def test_dedicated_without_file_is_a_clear_error(blackbody, monkeypatch):
    import smnet_sps.grid as grid

    def missing():
        raise FileNotFoundError("smnet_sps/data/phase_libraries.npz")
    monkeypatch.setattr(grid, "load_phase_libraries", missing, raising=False)
    with pytest.raises(ValueError, match="special_phases='model'"):
        StellarLibraryBackend(blackbody, special_phases="dedicated")


def test_bad_options_and_input(blackbody):
    with pytest.raises(ValueError, match="model, dedicated"):
        StellarLibraryBackend(blackbody, special_phases="fsps")
    with pytest.raises(ValueError, match="exclude, blackbody, extrapolate"):
        StellarLibraryBackend(blackbody, outside="ignore")
    be = StellarLibraryBackend(blackbody)
    with pytest.raises(ValueError, match=r"logl has 1 non-finite value\(s\) \(first at index 4\)"):
        be.point_spectra(logt=LOGT, logg=LOGG, logz=0, logl=np.r_[LOGL[:4], np.nan])
    with pytest.raises(ValueError, match="exactly one of teff"):
        be.point_spectra(logg=LOGG, logz=0, logl=LOGL)
    with pytest.raises(ValueError, match=r"teff = -\S+ \(index 0\) is outside the physical domain 500"):
        be.point_spectra(teff=-10**LOGT, logg=LOGG, logz=0, logl=LOGL)


def test_constructor_resolves_generator_names_and_refuses_bad_arguments(blackbody, tmp_path):
    """A name ('blackbody', as ssp_spectrum takes it) raised AttributeError ('str' object has no attribute
    'wavelength'), as any non-generator did; batch_size=True / 2.7 became 1 / 2 and cache_size=1.5 became 1
    silently, cache_size=None a TypeError from int()."""
    from smnet_sps.ssp import resolve_generator
    by_name = StellarLibraryBackend("blackbody")
    assert by_name.generator is resolve_generator("blackbody")        # the one ssp_spectrum uses
    ps = by_name.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL)
    assert np.allclose(integral(ps), 10**LOGL * L_SUN, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown generator 'no-such-model'; valid: 'blackbody'"):
        StellarLibraryBackend("no-such-model")
    for bad in (object(), 3.0, StellarLibraryBackend(blackbody)):
        with pytest.raises(ValueError, match=f"generator must be None.* got {type(bad).__name__}"):
            StellarLibraryBackend(bad)
    for name, value, minimum in (("batch_size", True, 1), ("batch_size", 2.7, 1), ("batch_size", 0, 1),
                                 ("cache_size", 1.5, 0), ("cache_size", None, 0), ("cache_size", -1, 0),
                                 ("cache_size", np.bool_(True), 0)):
        with pytest.raises(ValueError, match=rf"{name} must be an integer >= {minimum}.*got {value!r}"):
            StellarLibraryBackend(blackbody, **{name: value})
    be = StellarLibraryBackend(blackbody, batch_size=np.int64(7), cache_size=np.int32(0))
    assert (be.batch_size, be.cache_size) == (7, 0) and type(be.batch_size) is int



def test_an_unknown_generator_name_lists_what_the_callers_take():
    """StellarLibraryBackend('no-such-model') showed ssp_spectrum's message, listing 'a StellarLibraryBackend'
    among the accepted types, which the constructor refuses; get_backend (ssp_spectrum) does take one."""
    from smnet_sps.ssp import get_backend
    with pytest.raises(ValueError) as own:
        StellarLibraryBackend("no-such-model")
    assert str(own.value).startswith("unknown generator 'no-such-model'; valid: 'blackbody', 'default'")
    assert str(own.value).endswith(", a model directory, None (the shipped default) or a Generator")
    assert "StellarLibraryBackend" not in str(own.value)
    with pytest.raises(ValueError, match=r"^unknown generator 'no-such-model'; valid: 'blackbody'.*, a model "
                                         r"directory, None \(the shipped default\), a Generator or a "
                                         r"StellarLibraryBackend$"):
        get_backend("no-such-model")
    with pytest.raises(ValueError, match=r"directory, a Generator or a StellarLibraryBackend; got object$"):
        get_backend(object())

def test_implausible_extrapolation_becomes_blackbody(default_generator):
    """An extrapolated spectrum whose integral is off sigma Teff^4 by more than 2x is replaced by a blackbody
    (a generator 16x too bright outside its box: CM87's network at 80 kK, [M/H] -0.75 was, until its input
    was held at CM87's one [M/H], 2026-12-02). Plausible extrapolations stay the generator's: that star now
    (CM87's solar spectrum), a cool giant off BaSeL's solar metallicity, and 50 kK, log g 3.0 (below the
    WM-basic box, between CK04's and CM87's), ~8x too bright until each library's input was held on its
    nodes' hull (2026-12-02), now within 1 %."""
    from smnet_sps.backend import STATUS, StellarLibraryBackend
    from smnet_sps.generator import BlackbodyGenerator, planck_surface_flux

    class TooBrightOutside(BlackbodyGenerator):
        def _surface_flux_batch(self, teff, logg, logz, dtype=None):
            return planck_surface_flux(self.wavelength, teff) * np.where(teff > 5000.0, 16.0, 1.0)[:, None]

    be = StellarLibraryBackend(TooBrightOutside(default_generator.wavelength, teff_range=(1000.0, 5000.0)))
    ps = be.point_spectra(logt=np.log10([4000.0, 8000.0]), logg=4.0, logz=0.0, logl=3.0)
    assert ps.status.tolist() == [STATUS["generator"], STATUS["blackbody"]]
    bb = planck_surface_flux(default_generator.wavelength, [8000.0])[0]
    bright = bb > 1e-6 * bb.max()             # float32 cache, Teff rounded to the cache key
    np.testing.assert_allclose((ps.llam[1] / ps.llam[1].max())[bright], (bb / bb.max())[bright], rtol=2e-3)
    be = StellarLibraryBackend(default_generator)
    ps = be.point_spectra(logt=np.log10([80000.0, 3300.0, 50000.0]), logg=[5.0, 0.3, 3.0],
                          logz=[-0.75, -0.4, 0.0], logl=[3.0, 3.0, 3.0])
    assert ps.status.tolist() == [STATUS["extrapolated"]] * 3
    assert abs(ps.correction[0] - 1.0) < 0.02 and abs(ps.correction[2] - 1.0) < 0.02


def test_point_cache_ring_buffer(blackbody):
    """The per-point cache holds at most cache_size spectra, evicts the oldest first, never serves a wrong
    spectrum; keys too large to pack are flagged (computed, not cached)."""
    be = StellarLibraryBackend(blackbody, cache_size=3)
    ps = be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL)          # 5 misses; the last 3 kept
    assert (be.hits, be.misses) == (0, 5) and len(be._slot_of) == 3
    again = be.point_spectra(logt=LOGT, logg=LOGG, logz=0.0, logl=LOGL)
    assert (be.hits, be.misses) == (3, 7)
    assert np.array_equal(again.llam, ps.llam)
    fresh = StellarLibraryBackend(blackbody, cache_size=0).point_spectra(logt=LOGT, logg=LOGG, logz=0.0,
                                                                        logl=LOGL)
    assert np.allclose(again.llam, fresh.llam, rtol=1e-6)
    from smnet_sps.backend import _pack_keys
    packed, fits = _pack_keys(np.array([[40000, 44000, -3000, 0], [40000, 44000, -3000, 1],
                                        [40000, 600000, 0, 0]]))
    assert fits.tolist() == [True, True, False] and packed[0] != packed[1]     # too large: not cached


def test_a_generator_on_a_short_grid_keeps_each_stars_l_lambda():
    """A generator whose grid holds only part of sigma Teff^4 (a released SM-Net checkpoint: 3,000 A -
    10 um) must give L_lambda = L pi B_lambda / (sigma Teff^4) where it has pixels. The backend used to scale
    each spectrum's grid integral to the whole L, piling a hot star's UV into its optical: 18x too bright at
    40 kK, 212x at 100 kK (exact Planck generator)."""
    from smnet_sps.backend import STATUS, StellarLibraryBackend
    from smnet_sps.constants import L_SUN, SIGMA_SB
    from smnet_sps.generator import BlackbodyGenerator, planck_surface_flux
    wave = np.geomspace(3000.0, 1e5, 900)
    teff = np.array([3500.0, 5777.0, 10000.0, 20000.0, 40000.0, 100000.0])
    backend = StellarLibraryBackend(BlackbodyGenerator(wave))
    ps = backend.point_spectra(teff=teff, logg=4.0, logz=0.0, logl=2.0)
    assert (ps.status == STATUS["generator"]).all()
    truth = 100 * L_SUN * planck_surface_flux(wave, 10 ** np.round(np.log10(teff), 4)) / (
        SIGMA_SB * 10 ** (4 * np.round(np.log10(teff), 4)))[:, None]
    bright = truth > 1e-6 * truth.max(axis=1, keepdims=True)
    np.testing.assert_allclose(ps.llam[bright], truth[bright], rtol=2e-3)
    np.testing.assert_allclose(ps.correction, 1.0, rtol=2e-3)     # an exact generator needs no correction


def test_planck_fraction_derivative_matches_finite_differences():
    """d planck_fraction / d Teff, the released checkpoints' differentiable normalisation, against central
    differences of planck_fraction itself, from the Wien to the Rayleigh-Jeans side of each range."""
    from smnet_sps.generator import planck_fraction, planck_fraction_derivative
    teff = np.array([2000.0, 3000.0, 5777.0, 40000.0, 190000.0])
    for lo, hi in ((3000.0, 1e5), (91.0, 1.6e6), (1000.0, 3000.0)):
        h = 1e-5 * teff
        numeric = (planck_fraction(lo, hi, teff + h) - planck_fraction(lo, hi, teff - h)) / (2 * h)
        np.testing.assert_allclose(planck_fraction_derivative(lo, hi, teff), numeric, rtol=1e-5, atol=1e-14)
    with pytest.raises(ValueError, match="wave_lo < wave_hi"):
        planck_fraction_derivative(5000.0, 3000.0, 5777.0)


def test_planck_fraction_matches_quadrature():
    from scipy.integrate import quad

    from smnet_sps.generator import planck_fraction

    def by_quad(lo, hi, t):
        hc_k = 1.438776877e8
        value = quad(lambda x: x**3 / np.expm1(x), hc_k / (hi * t), hc_k / (lo * t), limit=200)[0]
        return value * 15 / np.pi**4
    for lo, hi in ((91.0, 1.6e6), (3000.0, 1e5)):
        for t in (2000.0, 5777.0, 40000.0, 190000.0):
            assert planck_fraction(lo, hi, t) == pytest.approx(by_quad(lo, hi, t), rel=1e-9, abs=1e-12)
    assert planck_fraction(91.0, 1.6e6, 190000.0) == pytest.approx(0.9685, abs=1e-4)


def test_luminosity_scale_puts_the_grid_share_of_l_on_the_grid():
    """The one rule the backend and the pystellibs plugin scale stars by: a blackbody on a short grid times
    L x luminosity_scale integrates to planck_fraction x L; an unusable integral gives NaN, not inf."""
    from smnet_sps.generator import luminosity_scale, planck_fraction, planck_surface_flux
    wave = np.geomspace(3000.0, 1e5, 20000)
    teff = np.array([5777.0, 40000.0])
    flux = planck_surface_flux(wave, teff)
    llam = flux * luminosity_scale(np.trapezoid(flux, wave, axis=1), wave, teff)[:, None]
    assert np.trapezoid(llam, wave, axis=1) == pytest.approx(planck_fraction(3000.0, 1e5, teff), rel=1e-6)
    assert np.isnan(luminosity_scale(np.array([0.0, -1.0, np.nan, np.inf]), wave, np.full(4, 5777.0))).all()


def test_star_scale_is_the_one_star_rule_of_backend_distributed_and_pystellibs(default_generator):
    """star_scale (the trapezoid integral + luminosity_scale) is what the three star callers use: the
    pystellibs plugin's L_bol-normalised spectra and the distributed star photometry equal it (to the ulp
    of a differently ordered sum), and a spectrum with a negative or NaN pixel gets NaN."""
    from smnet_sps import distributed as D
    from smnet_sps.backend import star_scale
    from smnet_sps.constants import LLAM_UNIT
    from smnet_sps.generator import luminosity_scale
    from smnet_sps.photometry import magnitudes
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib
    gen = default_generator
    wave = np.asarray(gen.wavelength, float)
    teff, logg = np.array([4000.0, 9000.0, 30000.0]), np.array([1.5, 4.0, 4.5])
    logz = np.array([-1.0, 0.0, 0.2])
    flux, _ = gen.surface_flux(teff, logg, logz)
    scale, integral = star_scale(flux, wave, teff)
    np.testing.assert_allclose(integral, np.trapezoid(flux, wave, axis=1), rtol=1e-13)
    np.testing.assert_allclose(scale, luminosity_scale(np.trapezoid(flux, wave, axis=1), wave, teff, flux),
                               rtol=1e-13)
    bad = flux.copy()
    bad[0, 10], bad[1, 20] = -1.0, np.nan
    bad_scale = star_scale(bad, wave, teff)[0]
    assert np.isnan(bad_scale[:2]).all() and np.isfinite(bad_scale[2])
    lib = SMNetStellib(gen, zsun=0.0142)
    np.testing.assert_allclose(lib._lbol_normalised(np.log10(teff), logg, 0.0142 * 10 ** logz),
                               flux * scale[:, None], rtol=1e-13)
    lum = np.array([300.0, 20.0, 1e4])
    got = D._points_block(np.column_stack([teff, logg, logz, lum]), "default", "cpu", "magnitudes",
                          ("sdss2010-r",), "AB", None, 64, np.float64)
    ref = magnitudes((wave * u.AA, flux * (scale * lum * L_SUN)[:, None] * LLAM_UNIT), ["sdss2010-r"])
    np.testing.assert_allclose(got[:, 0], np.asarray(ref[ref.colnames[0]], float), rtol=0, atol=1e-12)


def test_an_implausible_extrapolation_is_the_same_blackbody_on_every_star_path(default_generator):
    """Star photometry (distributed, ``smnet-sps mags --points``) and the pystellibs plugin only rescaled an
    extrapolation whose integral is > 2x off its target to L, where the SSP backend puts a blackbody: a
    Padova Z = 0.0002 post-AGB star (log Teff 5.0175 = 104,112 K, log g 5.63, 3.8e3 L_sun) had V 3.276 there
    against 2.183 in the backend, a PARSEC Z = 1e-4 star (log Teff 4.9374, log g 4.46) -6.133 against
    -7.259. One rule (backend.star_rule) now gives every path the backend's spectrum."""
    from smnet_sps import distributed as D
    from smnet_sps.constants import LLAM_UNIT
    from smnet_sps.photometry import magnitudes
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib
    gen = default_generator
    logt, logg = np.array([5.0175, 4.9374, 4.0]), np.array([5.63, 4.46, 4.0])
    logz, lum = np.array([-1.98, -2.18, 0.0]), np.array([3.8e3, 1.34e7, 300.0])
    ps = StellarLibraryBackend(gen).point_spectra(logt=logt, logg=logg, logz=logz, logl=np.log10(lum))
    assert ps.status.tolist() == [STATUS["blackbody"]] * 2 + [STATUS["generator"]]
    filters = ["bessell-V", "galex-fuv"]
    ref = magnitudes((ps.wavelength * u.AA, ps.llam * LLAM_UNIT), filters)
    ref = np.column_stack([np.asarray(ref[c], float) for c in ref.colnames])
    got = D._points_block(np.column_stack([10**logt, logg, logz, lum]), "default", "cpu", "magnitudes",
                          tuple(filters), "AB", None, 64, np.float64)
    np.testing.assert_allclose(got[:, :2], ref, rtol=0, atol=1e-4)       # the backend's cache is float32
    assert got[:, 2].tolist() == [0.0, 0.0, 1.0]
    lib = SMNetStellib(gen, zsun=0.0142)
    with pytest.warns(Warning, match="2 of 3 point.s. lie outside"):
        per_l = lib._lbol_normalised(logt, logg, 0.0142 * 10**logz)
    np.testing.assert_allclose(per_l * (lum * L_SUN)[:, None], ps.llam, rtol=1e-5, atol=1e-6 * ps.llam.max())


@pytest.mark.parametrize("bad, match", [(dict(teff="5777"), "teff must be a number"),
                                        (dict(logl=True), "logl must be a number.*boolean"),
                                        (dict(teff=np.ma.array([5777.0, 6000.0], mask=[False, True])),
                                         "teff is a masked array")])
def test_backend_inputs_are_checked_like_the_generators(blackbody, bad, match):
    """The backend converted what the generator refuses: a string Teff, logl=True (as 10 L_sun) and a masked
    Teff (its hidden value computed as if valid)."""
    kwargs = dict(teff=5777.0, logg=4.0, logz=0.0, logl=0.0) | bad
    with pytest.raises(ValueError, match=match):
        StellarLibraryBackend(blackbody).point_spectra(**kwargs)


def test_grid_fraction_of_missing_points_and_bad_grids():
    """A point without a spectrum holds none of its light (grid_fraction was the blackbody's share there);
    a decreasing wavelength grid is refused up front (it gave negative shares and every star missing)."""
    from smnet_sps.generator import planck_fraction
    be = StellarLibraryBackend(BlackbodyGenerator(teff_range=(3000.0, 20000.0)), outside="exclude")
    ps = be.point_spectra(teff=[5777.0, 50000.0], logg=4.0, logz=0.0, logl=0.0)
    assert ps.status.tolist() == [STATUS["generator"], STATUS["missing"]]
    assert ps.grid_fraction[0] > 0.99 and ps.grid_fraction[1] == 0.0
    with pytest.raises(ValueError, match="strictly increasing"):
        StellarLibraryBackend(BlackbodyGenerator(wavelength=np.geomspace(1.6e6, 91.0, 100)))
    with pytest.raises(ValueError, match="wave_lo < wave_hi"):
        planck_fraction(1.6e6, 91.0, 5777.0)


def test_backend_reads_parameter_units_as_the_generators_do(blackbody):
    """point_spectra dropped a Quantity's unit: logl = 1 L_sun was read as log10 L = 1 (10x too bright), a
    log g acceleration was 'outside the physical domain', a Teff in nm a bare astropy error."""
    backend = StellarLibraryBackend(blackbody)
    plain = backend.point_spectra(teff=5772.0, logg=4.44, logz=0.0, logl=0.5)
    for kwargs in (dict(logl=10**0.5 * u.L_sun), dict(logl=u.Dex(0.5, u.dex(u.L_sun))),
                   dict(logl=0.5 * u.dex),
                   dict(logl=10**0.5 * 3.828e33 * u.erg / u.s), dict(logl=0.5, logg=10**4.44 * u.cm / u.s**2),
                   dict(logl=0.5, teff=5.772 * u.kK), dict(logl=0.5, logt=np.log10(5772.0) * u.dex(u.K))):
        args = dict(teff=5772.0, logg=4.44, logz=0.0) | kwargs
        if "logt" in args:
            del args["teff"]
        got = backend.point_spectra(**args)
        np.testing.assert_allclose(got.luminosity, plain.luminosity, rtol=1e-9)
        np.testing.assert_allclose(got.llam, plain.llam, rtol=1e-6)
    for bad, match in ((dict(teff=500 * u.nm), "teff must be a temperature"),
                       (dict(logl=1 * u.m), "logl must be log10"),
                       (dict(logl=-1 * u.L_sun), "must be positive")):
        with pytest.raises(ValueError, match=match):
            backend.point_spectra(**(dict(teff=5772.0, logg=4.44, logz=0.0, logl=0.0) | bad))


def test_dedicated_spectra_keep_their_light_on_a_short_grid():
    """On a generator grid of 3,000 A - 10 um the dedicated spectra got a blackbody's share of each star's
    light: a WC star 0.58x, a WN star 0.83x too faint and a post-AGB star 1.28x too bright in the optical.
    They keep their own library's share now."""
    from smnet_sps.generator import BlackbodyGenerator
    full = StellarLibraryBackend(BlackbodyGenerator(), special_phases="dedicated")
    short = StellarLibraryBackend(BlackbodyGenerator(wavelength=np.geomspace(3000, 1e5, 3000)),
                                  special_phases="dedicated")
    kwargs = dict(teff=[45000.0, 45000.0, 100000.0], logg=4.0, logz=0.0, logl=3.0, phase=[9, 9, 6],
                  co=[0.0, 10.0, 0.0])
    a, b = full.point_spectra(**kwargs), short.point_spectra(**kwargs)
    assert np.all(a.status == 1) and np.all(b.status == 1)                # dedicated
    for i in range(3):
        for x in (5500.0, 2.2e4):
            ratio = np.interp(x, short.wavelength, b.llam[i]) / np.interp(x, full.wavelength, a.llam[i])
            assert ratio == pytest.approx(1.0, abs=0.02), (i, x)
    np.testing.assert_allclose(np.trapezoid(b.llam, short.wavelength, axis=1) / (b.luminosity * 3.828e33),
                               b.grid_fraction, rtol=1e-3)


def test_points_are_checked_as_given_in_every_mode(default_generator):
    """The physical domain was checked only inside the generator, on the rounded, deduplicated keys: in
    special_phases="dedicated" a post-AGB star at log g 100, [M/H] 50 got a spectrum flagged covered, and the
    errors named the keys' index and value (index 3 for the user's index 0, teff 1.99986e6 for 2e6).
    logl had no range: 1e5 (L in L_sun given as the log) made an inf spectrum with status "generator"."""
    be = StellarLibraryBackend(default_generator, special_phases="dedicated")
    with pytest.raises(ValueError, match=r"logg = 100 \(index 0\) is outside the physical domain"):
        be.point_spectra(teff=[100000.0], logg=100.0, logz=50.0, logl=3.0, phase=[6])
    with pytest.raises(ValueError, match=r"logg = 20 \(index 0\)"):
        be.point_spectra(teff=[8000.0, 5000, 6000, 7000], logg=[20.0, 4, 4, 4], logz=0, logl=0)
    with pytest.raises(ValueError, match=r"teff = 2e\+06 \(index 0\)"):
        be.point_spectra(teff=2e6, logg=4, logz=0, logl=0)
    with pytest.raises(ValueError, match=r"logl = 100000 \(index 0\) is outside -10 .. 10"):
        be.point_spectra(teff=[40000.0, 5772.0], logg=[4.0, 4.44], logz=0.0, logl=[1e5, 0.0])
    with pytest.raises(ValueError, match=r"cannot be broadcast together: teff \(2,\), logg \(3,\)"):
        be.point_spectra(teff=[5000.0, 5000.0], logg=[4, 4, 4], logz=0, logl=0)
    # phase and C/O: a masked phase was used as its hidden value, text and NaN as ordinary stars
    for phase, match in ((np.ma.array([5, 5], mask=[0, 1]), "phase is a masked array"),
                         ([5, 5, 5], "phase has 3 values for 2 points"),
                         (["TPAGB", "x"], "phase must be numbers"), ([np.nan, 1], "phase has 1 non-finite")):
        with pytest.raises(ValueError, match=match):
            be.point_spectra(teff=[3000.0, 3000.0], logg=0.0, logz=0.0, logl=3.0, phase=phase)
    with pytest.raises(ValueError, match="co has 3 values for 2 points"):
        be.point_spectra(teff=[3000.0, 3000.0], logg=0.0, logz=0.0, logl=3.0, phase=5, co=[1, 2, 3])


def test_a_star_on_a_librarys_face_keeps_its_coverage(default_generator):
    """The dedup key rounds log Teff to 1e-4 dex and the spectrum used to be computed at the rounded value:
    50,000 K (CK04's top, a CK04 node) became 50,003 K, outside every box, so outside="exclude" dropped the
    star and "blackbody" replaced it; 2,000 K and 180,000 K likewise. Each key is now computed at the
    parameters of its first point."""
    teff, logg = np.array([2000.0, 50000.0, 180000.0]), np.array([5.5, 4.0, 6.0])
    covered = default_generator.in_coverage(teff, logg, 0.0)
    assert covered.all()
    ps = StellarLibraryBackend(default_generator).point_spectra(teff=teff, logg=logg, logz=0.0, logl=0.0)
    assert np.array_equal(ps.inside, covered) and np.all(ps.status == STATUS["generator"])
    for outside in ("exclude", "blackbody"):
        be = StellarLibraryBackend(default_generator, outside=outside)
        st = be.point_spectra(teff=[50000.0], logg=4.0, logz=0.0, logl=5.0).status
        assert st.tolist() == [STATUS["generator"]]
    # the spectrum is the generator's at the point given
    flux = default_generator.surface_flux(50000.0, 4.0, 0.0)[0][0]
    mine = ps.llam[1] / np.trapezoid(ps.llam[1], ps.wavelength)
    ref = flux / np.trapezoid(flux, default_generator.wavelength)
    assert np.allclose(mine, ref, rtol=1e-5, atol=0)


def test_a_key_gives_one_answer_whatever_came_first(default_generator):
    """Computing each key at its first point's parameters made the answer depend on call order and the cache:
    50,000 K (on CK04's face) then 50,004 K (4 K outside, the same key) gave both "generator"; the reverse
    order dropped both with outside="exclude", and the SSP path (weighted_sum) never saw the fix. A key
    within half a step of a box face now stands for the face, on every path."""
    answers = []
    for order in ([50000.0, 50004.0], [50004.0, 50000.0]):
        be = StellarLibraryBackend(default_generator, outside="exclude")
        ps = be.point_spectra(teff=order, logg=4.0, logz=0.0, logl=5.0)
        _, _, status, _ = be.weighted_sum(be.point_keys(np.log10([50000.0]), 4.0, 0.0), np.ones((1, 1)))
        answers.append((ps.status.tolist(), ps.inside.tolist(), status.tolist()))
        fresh = StellarLibraryBackend(default_generator, outside="exclude")
        _, _, status, _ = fresh.weighted_sum(fresh.point_keys(np.log10([50000.0]), 4.0, 0.0), np.ones((1, 1)))
        assert status.tolist() == [STATUS["generator"]]
    assert answers[0] == answers[1] == ([STATUS["generator"]] * 2, [True, True], [STATUS["generator"]])


@pytest.mark.parametrize("normalisation", ["covered", "blackbody"])
def test_released_extrapolations_are_judged_against_the_generators_own_target(released_smooth, normalisation):
    """A released checkpoint with normalisation="covered" (the default) rescales every spectrum to sigma
    Teff^4 on its 3,000 A - 10 um grid; the backend judged it against a blackbody's share there (0.26 at
    20 kK, 0.055 at 40 kK), so every extrapolated star above ~13 kK was "off by more than 2x" and became a
    blackbody (PARSEC Z = 1e-4 at 10 Myr: 99.4 % of L_bol), and the correction read 18x at 40 kK. It is now
    judged against the generator's own target: exactly on it, kept, correction 1, in both normalisations."""
    from smnet_sps.generator import planck_fraction
    from smnet_sps.neural import ReleasedSMNetGenerator
    gen = ReleasedSMNetGenerator(*released_smooth, device="cpu", normalisation=normalisation)
    teff = np.array([8000.0, 20000.0, 40000.0, 20000.0])
    expected_target = (np.ones(4) if normalisation == "covered"
                       else planck_fraction(gen.wavelength[0], gen.wavelength[-1], teff))
    np.testing.assert_allclose(gen.target_fraction(teff), expected_target, rtol=1e-12)
    ps = StellarLibraryBackend(gen).point_spectra(teff=teff, logg=4.0, logz=[-4.5, -4.5, -4.5, 0.0], logl=0.0)
    assert ps.status.tolist() == [STATUS["extrapolated"]] * 3 + [STATUS["generator"]]
    np.testing.assert_allclose(ps.correction, 1.0, rtol=1e-5)
    # each star still holds a blackbody's share of its L on the grid, whatever the generator aimed at
    np.testing.assert_allclose(integral(ps), L_SUN, rtol=1e-5)


def test_weighted_sum_refuses_bad_keys_and_weights(blackbody):
    """weighted_sum checked nothing: weights one column too wide ended in scipy's "matmul: dimension
    mismatch", a NaN weight gave a NaN spectrum and covered = [nan] silently, and float keys were truncated to
    int64 (37000.7 read as 37000). Each is now a ValueError naming the argument and what it must be."""
    import scipy.sparse as sp
    be = StellarLibraryBackend(blackbody)
    keys = be.point_keys(LOGT[:3], LOGG[:3], np.zeros(3))
    flux, covered, _, _ = be.weighted_sum(keys, np.ones(3))          # a 1-d array of n weights: one row
    assert flux.shape == (1, be.wavelength.size) and covered.tolist() == [3.0]
    for weights in (np.ones((1, 4)), sp.csr_matrix(np.ones((2, 2))), np.ones((1, 3, 1))):
        with pytest.raises(ValueError, match=r"weights has shape .* for 3 keys; give \(n_rows, 3\)"):
            be.weighted_sum(keys, weights)
    for weights in (np.array([[1.0, np.nan, 1.0]]), sp.csr_matrix(np.array([[1.0, 0.0, np.inf]]))):
        with pytest.raises(ValueError, match=r"weights has 1 non-finite value\(s\); weights must be finite"):
            be.weighted_sum(keys, weights)
    with pytest.raises(ValueError, match=r"keys must be the integer array point_keys returns.*got float64"):
        be.weighted_sum(keys + 0.7, np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"keys must have shape \(n, 4\).*got shape \(3, 3\)"):
        be.weighted_sum(keys[:, :3], np.ones((1, 3)))


def test_weighted_sum_takes_big_endian_weights_and_refuses_masked_ones(blackbody):
    """Big-endian weights (a FITS / HDF5 column) crashed in scipy.sparse ("does not support dtype >f8"), and
    a masked weight was summed with the value under its mask (1e6 hidden: 1.2e6 times too bright). The
    first is the native-order sum now, the second a ValueError (point_spectra refuses masked input too)."""
    import scipy.sparse as sp
    be = StellarLibraryBackend(blackbody)
    keys = be.point_keys(LOGT[:3], LOGG[:3], np.zeros(3))
    w = np.array([1.0, 2.0, 3.0])
    ref = be.weighted_sum(keys, w)[0]
    for weights in (w.astype(">f8"), w.astype(">f4").reshape(1, -1), sp.csr_matrix(w.astype(np.float32))):
        np.testing.assert_allclose(be.weighted_sum(keys, weights)[0], ref, rtol=1e-12)
    with pytest.raises(ValueError, match=r"weights is a masked array with 1 masked value\(s\) \(first at "
                                         r"flat index 1\)"):
        be.weighted_sum(keys, np.ma.masked_array([1.0, 1e6, 3.0], mask=[False, True, False]))
    unmasked = np.ma.masked_array(w, mask=False)                    # no masked element: the plain weights
    np.testing.assert_array_equal(be.weighted_sum(keys, unmasked)[0], ref)


def test_as_spectrum_states_the_medium_and_lsf_like_every_output(blackbody):
    """PointSpectra.as_spectrum() carried no wavelength_medium / lsf_fwhm / lsf_shape, which
    Generator.spectra() gives and docs/CONTRACTS.md requires of every output ("Outputs state both")."""
    spec = StellarLibraryBackend(blackbody).point_spectra(teff=[5777.0, 20000.0], logg=4.0, logz=0.0,
                                                           logl=0.0).as_spectrum()
    reference = blackbody.spectra(5777.0, 4.0, 0.0)[0].meta
    assert spec.meta["wavelength_medium"] == reference["wavelength_medium"] == "vacuum"
    assert spec.meta["lsf_shape"] == reference["lsf_shape"]
    np.testing.assert_array_equal(spec.meta["lsf_fwhm"], reference["lsf_fwhm"])
    assert spec.meta["lsf_fwhm"].shape == blackbody.wavelength.shape
    assert spec.meta["status"].tolist() == [STATUS["generator"]] * 2


def test_the_documented_grid_share_of_the_default_grid():
    """The docs said f > 0.9999 below 100 kK on 91 A - 160 um; it is 0.99990 at 100 kK (0.9998994) and
    0.99972 at 500 K. What backend.py, planck_fraction and docs/ssp.md state now: > 0.9997 from 500 K to
    100 kK, 0.99990 at 100 kK, 0.969 at 190 kK."""
    from smnet_sps.generator import planck_fraction
    f = planck_fraction(91.0, 1.6e6, np.geomspace(500.0, 1e5, 2000))
    assert f.min() > 0.9997 and not (f > 0.9999).all()
    assert planck_fraction(91.0, 1.6e6, 1e5) == pytest.approx(0.99990, abs=5e-6)
    assert planck_fraction(91.0, 1.6e6, 1.9e5) == pytest.approx(0.969, abs=5e-4)


def test_threads_sharing_a_backend_get_their_own_spectra(blackbody):
    """Threads sharing one backend (ssp_spectrum's shared backend, a multithreaded Dask worker) raced in the
    per-point cache: two keys came to share a ring-buffer slot (4 threads, cache_size=500: 300 of 8,000
    spectra another star's, relative error 2e24; 800 keys indexed for 500 slots). Lookups and stores now hold
    the backend's lock; the generator runs outside it."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    n = 2000
    logt, logg = rng.uniform(3.55, 4.6, n), rng.uniform(0.0, 5.0, n)
    logz, logl = rng.uniform(-1.0, 0.3, n), rng.uniform(-1.0, 3.0, n)
    ref = StellarLibraryBackend(blackbody, cache_size=0).point_spectra(logt=logt, logg=logg, logz=logz,
                                                                       logl=logl).llam
    chunks = [slice(i, i + 50) for i in range(0, n, 50)] * 3              # every point asked for 3 times
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                     # switch threads often: the old race showed every time
    try:
        for _ in range(3):
            be = StellarLibraryBackend(blackbody, cache_size=97, batch_size=16)

            def job(sl, be=be):
                return sl, be.point_spectra(logt=logt[sl], logg=logg[sl], logz=logz[sl], logl=logl[sl]).llam

            with ThreadPoolExecutor(8) as ex:
                res = list(ex.map(job, chunks))
            for sl, llam in res:          # (to the peak: the cache's float32 flushes the far Wien tail)
                assert np.all(np.abs(llam - ref[sl]).max(axis=1) <= 1e-6 * ref[sl].max(axis=1))
            assert len(be._slot_of) <= be.cache_size
            st_key = be._store[4]
            assert all(st_key[slot] == key for key, slot in be._slot_of.items())
            assert be.hits + be.misses == sum(sl.stop - sl.start for sl in chunks)
    finally:
        sys.setswitchinterval(switch)


def test_threads_computing_spectra_leave_the_warning_filters_alone():
    """The backend silenced its generator's CoverageWarning with warnings.catch_warnings(), which swaps the
    process-wide filter list: threads overlapping there left ('ignore', Warning) installed, and every later
    warning of the process was lost (gen.spectra(100000, 2, 0) no longer warned). The backend now asks the
    generator not to warn (a context-local switch; the coverage flags are read as before)."""
    import sys
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from smnet_sps.generator import CoverageWarning

    gen = BlackbodyGenerator(np.geomspace(1000.0, 1e5, 40), teff_range=(3000.0, 1e5))
    be = StellarLibraryBackend(gen, cache_size=0)
    logt = np.array([3.3, 3.7, 5.2])                              # 2000 K and 158 kK: outside the box

    def job(_):
        return be.point_spectra(logt=logt, logg=4.0, logz=0.0, logl=1.0).status.tolist()

    before = list(warnings.filters)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(8) as ex:
            statuses = list(ex.map(job, range(3000)))
    finally:
        sys.setswitchinterval(switch)
    assert warnings.filters == before
    expected = [STATUS["extrapolated"], STATUS["generator"], STATUS["extrapolated"]]
    assert all(s == expected for s in statuses)                   # still flagged
    with pytest.warns(CoverageWarning, match="1 of 1 point"):
        gen.spectra(2000.0, 4.0, 0.0)


def test_phase_libraries_edited_in_place_are_not_served_from_another_backends_ssps(blackbody):
    """Custom phase libraries were identified (backend.key) by id(dict), but read when the backend was made:
    the same dict edited in place and given to a second backend got the first backend's cached SSP (9.7 %
    off at 1.5 Gyr). The key now holds a hash of the processed library spectra."""
    from smnet_sps.grid import load_phase_libraries
    from smnet_sps.ssp import clear_ssp_cache, ssp_spectrum

    libs = load_phase_libraries()
    b1 = StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=libs)
    s1 = ssp_spectrum(1.5e9, Z=0.0152, isochrones="padova", generator=b1).flux.value
    wave = libs["wavelength"].value
    libs["tpagb_orich"]["flux"] = libs["tpagb_orich"]["flux"] * np.where(wave < 10000, 0.2, 1.0)
    b2 = StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=libs)
    s2 = ssp_spectrum(1.5e9, Z=0.0152, isochrones="padova", generator=b2).flux.value
    clear_ssp_cache()
    fresh = ssp_spectrum(1.5e9, Z=0.0152, isochrones="padova", generator=b2).flux.value
    np.testing.assert_allclose(s2, fresh, rtol=1e-6)
    assert np.abs(s2 / s1 - 1).max() > 0.01 and b2.key != b1.key
    assert StellarLibraryBackend(blackbody, special_phases="dedicated").key not in (b1.key, b2.key)
    # the same libraries in another dict: the same key (their SSPs are shared)
    b3 = StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=dict(libs))
    assert b3.key == b2.key


def test_table_columns_with_units_are_read_in_their_units():
    # an isochrone read with Table.read keeps its columns' units, which np.asarray dropped: a Teff column in
    # kK was read as K (refused as 5.8 K), an L column in L_sun as log10 L (100 L_sun -> 1e100 L_sun)
    from astropy.table import Table
    from smnet_sps.generator import validate_parameters
    t = Table({"teff": [5.8, 10.0], "logg": [4.4, 4.0], "L": [100.0, 1.0]},
              units={"teff": u.kK, "logg": u.dex(u.cm / u.s ** 2), "L": u.L_sun})
    teff, logg, _ = validate_parameters(t["teff"], t["logg"], 0.0)
    np.testing.assert_allclose(teff, [5800.0, 10000.0])
    backend = StellarLibraryBackend(BlackbodyGenerator())
    a = backend.point_spectra(teff=t["teff"], logg=t["logg"], logz=0.0, logl=t["L"])
    b = backend.point_spectra(teff=[5800.0, 10000.0], logg=[4.4, 4.0], logz=0.0, logl=[2.0, 0.0])
    np.testing.assert_allclose(a.llam, b.llam, rtol=1e-12)
    with pytest.raises(ValueError, match="not one astropy knows"):
        validate_parameters(Table({"t": [5800.0]}, units={"t": "kelvinz"})["t"], 4.4, 0.0)


def _shape(llam, wave):
    return llam / np.trapezoid(llam, wave, axis=-1)[..., None]


def test_orich_tpagb_spectra_take_their_teff_at_the_stars_metallicity():
    """special_phases="dedicated" placed the Lancon & Mouhcine O-rich spectra at the solar column of their own
    Teff(Z) table (teff_table / logz_table) at every [M/H]: a 3000 K star at [M/H] = -1.2 was interpolated
    between spectra 2-3 (TiO F(7000-7200)/F(7400-7600) 0.214) instead of 5-6, where the table (and FSPS,
    agb_logt_o(z,:)) puts 3000 K at that metallicity (0.295). Now each spectrum's Teff is the table at the
    star's [M/H], linear in log Z/Zsun and clipped to the table's -1.98 .. +0.2."""
    from smnet_sps.grid import load_phase_libraries
    libs = load_phase_libraries()
    lzt, tt = libs["tpagb_orich"]["logz_table"], libs["tpagb_orich"]["teff_table"]
    j, solar = int(np.argmin(np.abs(lzt + 1.2))), int(np.argmin(np.abs(lzt)))
    be = StellarLibraryBackend(BlackbodyGenerator(), special_phases="dedicated")
    w = be.wavelength

    def spectra(teff, logz, **kw):
        n = len(teff)
        ps = be.point_spectra(teff=teff, logg=0.0, logz=logz, logl=3.5, phase=[5] * n, co=0.5, **kw)
        assert np.all(ps.status == STATUS["dedicated"])
        return _shape(ps.llam, w)

    # spectrum 5 (index 4) sits at 2996 K at [M/H] = -1.2 and at 3272 K at solar: the same spectrum (to the
    # key's rounding of Teff, 1e-4 dex = 0.7 K: 0.4 % of the way to the next spectrum)
    a = spectra([tt[4, j], tt[4, solar]], [lzt[j], 0.0])
    np.testing.assert_allclose(a[0], a[1], rtol=5e-3, atol=1e-6 * a.max())
    # the bug hunter's star: 3000 K at [M/H] = -1.2 vs 0 (both in one call and through the cache)
    band, ref = (w > 7000) & (w < 7200), (w > 7400) & (w < 7600)
    for use_cache in (True, False):
        b = spectra([3000.0, 3000.0], [-1.2, 0.0], use_cache=use_cache)
        tio = b[:, band].mean(1) / b[:, ref].mean(1)
        assert tio[0] == pytest.approx(0.295, abs=0.005) and tio[1] == pytest.approx(0.214, abs=0.005)
    # between two columns: linear in log Z/Zsun (spectrum 6's Teff midway between [M/H] -1.28 and -1.2)
    mid = 0.5 * (lzt[j - 1] + lzt[j])
    c = spectra([0.5 * (tt[5, j - 1] + tt[5, j]), tt[5, j]], [mid, lzt[j]])
    np.testing.assert_allclose(c[0], c[1], rtol=5e-3, atol=1e-6 * c.max())
    # outside the table's [M/H] range: its edge columns (FSPS would extrapolate them linearly)
    d = spectra([2700.0] * 4, [-2.5, lzt[0], 0.5, lzt[-1]])
    np.testing.assert_allclose(d[0], d[1], rtol=1e-6)
    np.testing.assert_allclose(d[2], d[3], rtol=1e-6)


def test_orich_teff_table_is_checked_and_in_the_backend_key(blackbody):
    """The Teff(Z) table now sets spectra, so a custom one is checked and is part of the backend's key."""
    from smnet_sps.grid import load_phase_libraries
    libs = load_phase_libraries()
    key = StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=libs).key
    libs["tpagb_orich"] = dict(libs["tpagb_orich"], teff_table=libs["tpagb_orich"]["teff_table"] + 50.0)
    assert StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=libs).key != key
    for edit, match in (({"teff_table": np.ones((8, 22)) * 3000}, r"shape \(8, 22\); allowed: .* \(9, 22\)"),
                        ({"logz_table": np.zeros(22)}, "logz_table must be finite and increasing"),
                        ({"teff_table": None}, "has only logz_table")):
        bad = dict(libs, tpagb_orich=dict(libs["tpagb_orich"], **edit))
        with pytest.raises(ValueError, match=match):
            StellarLibraryBackend(blackbody, special_phases="dedicated", phase_libraries=bad)


def test_logt_out_of_range_is_named_as_logt(blackbody):
    """A Teff in K given as logt (5777) overflowed 10**logt and was refused as a non-finite *teff* (with a
    RuntimeWarning), logt = 2 as "teff = 100": neither named logt nor the log range. logt = log10(500), the
    domain's face, gave 499.99999999999994 K and was refused as "teff = 500 is outside 500 .."."""
    be = StellarLibraryBackend(blackbody)
    for logt in (5777.0, 2.0, 7.5):
        for call in (lambda: be.point_spectra(logt=[3.7, logt], logg=4.4, logz=0.0, logl=0.0),
                     lambda: be.point_keys([3.7, logt], 4.4, 0.0)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")            # no overflow warning on the way
                with pytest.raises(ValueError, match=rf"logt = {logt:g} \(index 1\) is outside 2.69897 .. 6, "
                                                     r"log10\(Teff / K\).*teff="):
                    call()
    # a 2-d logt (the points are raveled after the check): values[i] with the flat index i was an IndexError
    for call in (lambda: be.point_spectra(logt=[[3.6, 5777.0]], logg=4.4, logz=0.0, logl=0.0),
                 lambda: be.point_keys([[3.7, 5777.0]], 4.4, 0.0)):
        with pytest.raises(ValueError, match=r"logt = 5777 \(index 1\) is outside 2.69897 .. 6"):
            call()
    ps = be.point_spectra(logt=[np.log10(500.0), 6.0], logg=4.4, logz=0.0, logl=0.0)
    assert np.all(ps.status == STATUS["generator"])
    np.testing.assert_allclose(integral(ps), L_SUN, rtol=1e-6)


def test_device_the_backend_would_ignore_is_refused(blackbody):
    """StellarLibraryBackend(generator, device=...) dropped the device for a Generator passed in and for
    "blackbody": device="gpu" (no such device) went through, and a generator on one device asked to run on
    another computed where it was, silently. Now an unknown device is a ValueError naming it, and a Generator
    passed in must already run on the device asked for ("auto" always accepted)."""
    for gen in (blackbody, "blackbody"):
        with pytest.raises(ValueError, match="unknown device 'gpu'"):
            StellarLibraryBackend(gen, device="gpu")
        for ok in ("auto", None, "cpu", "cpu:0"):
            StellarLibraryBackend(gen, device=ok)

    class ElsewhereGenerator(BlackbodyGenerator):
        device = "cuda:1"                     # as a NeuralGenerator loaded on a GPU states it

    with pytest.raises(ValueError, match=r"device='cpu': the generator given \('blackbody'\) runs on cuda:1, "
                                         r"and the backend does not move it"):
        StellarLibraryBackend(ElsewhereGenerator(), device="cpu")
    assert StellarLibraryBackend(ElsewhereGenerator(), device="auto").generator.device == "cuda:1"


def test_get_backend_refuses_a_device_it_would_ignore(blackbody):
    """ssp.get_backend (behind ssp_spectrum, ssp_grid, StellarPopulation) took device="gpu" or "cuda" with
    "blackbody", a Generator or a backend passed in and computed on the CPU without a word; now the same rule
    as StellarLibraryBackend(generator, device=...)."""
    from smnet_sps.ssp import get_backend

    for gen in (blackbody, "blackbody", StellarLibraryBackend(blackbody)):
        with pytest.raises(ValueError, match="unknown device 'gpu'"):
            get_backend(gen, device="gpu")
        for ok in ("auto", "cpu"):
            get_backend(gen, device=ok)

    class ElsewhereGenerator(BlackbodyGenerator):
        device = "cuda:1"

    with pytest.raises(ValueError, match=r"device='cpu': the generator given \('blackbody'\) runs on cuda:1"):
        get_backend(ElsewhereGenerator(), device="cpu")


def test_an_analytic_generator_runs_wherever_the_device_is(blackbody, monkeypatch):
    """`smnet-sps ssp --generator blackbody --device cuda` on a GPU machine: the CLI loads the blackbody as an
    object, which has no device, and the device check took it for a CPU generator asked to run on CUDA (the
    run was refused). CUDA is faked here (this machine has none): the device name is valid, the blackbody
    accepted for it, a generator on another device still refused."""
    import torch

    import smnet_sps.neural as neural
    real = neural.resolve_device
    monkeypatch.setattr(neural, "resolve_device",
                        lambda d: torch.device(d) if str(d).startswith("cuda") else real(d))
    from smnet_sps.ssp import get_backend
    for gen in (blackbody, "blackbody"):
        assert get_backend(gen, device="cuda").generator.name == "blackbody"
        StellarLibraryBackend(gen, device="cuda:0")

    class CpuGenerator(BlackbodyGenerator):
        device = "cpu"

    with pytest.raises(ValueError, match="runs on cpu, and the backend does not move it"):
        get_backend(CpuGenerator(), device="cuda")


def test_a_point_gets_one_spectrum_with_or_without_the_cache(default_generator):
    """point_spectra without the cache (use_cache=False, or cache_size=0) returned the float64 unit spectra,
    with it (and weighted_sum) the float32 ones the cache holds: a PARSEC isochrone's L_lambda 6e-8 apart.
    All paths now round the same way (docs/ssp.md: one answer per key)."""
    import torch

    from smnet_sps.isochrones import load_isochrones
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        iso = load_isochrones("parsec")
        star = iso.isochrone(11, 60)
        logz = float(iso.logz[11])
        kw = dict(logt=star.logt, logg=star.logg, logz=logz, logl=star.logl)
        cached = StellarLibraryBackend(default_generator).point_spectra(**kw)
        uncached = StellarLibraryBackend(default_generator).point_spectra(**kw, use_cache=False)
        no_cache = StellarLibraryBackend(default_generator, cache_size=0).point_spectra(**kw)
        be = StellarLibraryBackend(default_generator, cache_size=0)
        keys = be.point_keys(star.logt, star.logg, logz)
        summed, *_ = be.weighted_sum(keys, np.diag(10**star.logl * L_SUN))
    finally:
        torch.set_num_threads(threads)
    assert (cached.status == STATUS["generator"]).mean() > 0.9
    for other in (uncached, no_cache):
        assert np.array_equal(other.llam, cached.llam)
        assert np.array_equal(other.grid_fraction, cached.grid_fraction)
        assert np.array_equal(other.correction, cached.correction, equal_nan=True)
    assert np.array_equal(summed, cached.llam)


@pytest.mark.parametrize("use_cache", [True, False])
def test_point_spectra_memory_is_the_output_and_one_batch(blackbody, use_cache):
    """point_spectra computed every unique point in one float64 block, then made float32 and float64 copies
    of it: 100,000 points' 0.98 GB of L_lambda peaked at +2.6 GB of RSS (+3.0 GB uncached). Each batch now
    goes straight into the output (+1.3 GB / +1.2 GB); traced here with numpy's allocations."""
    import tracemalloc

    rng = np.random.default_rng(5)
    n = 4000
    teff = rng.uniform(3500.0, 30000.0, n)
    logg, logl = rng.uniform(1.0, 5.0, n), rng.uniform(-1.0, 4.0, n)
    be = StellarLibraryBackend(blackbody, batch_size=200, cache_size=400)
    kw = dict(teff=teff, logg=logg, logz=0.0, logl=logl, use_cache=use_cache)
    tracemalloc.start()
    try:
        ps = be.point_spectra(**kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * ps.llam.nbytes, (peak, ps.llam.nbytes)
    # the same numbers as in one batch (and duplicates, many per batch, keep theirs)
    one = StellarLibraryBackend(blackbody, batch_size=n, cache_size=n).point_spectra(**kw)
    assert np.array_equal(ps.llam, one.llam) and np.array_equal(ps.grid_fraction, one.grid_fraction)
    dup = np.r_[np.arange(n), np.zeros(3 * n, int)]
    twice = be.point_spectra(teff=teff[dup], logg=logg[dup], logz=0.0, logl=logl[dup], use_cache=use_cache)
    assert np.array_equal(twice.llam, ps.llam[dup])
