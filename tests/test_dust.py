"""Dust curves against dust_extinction, sedpy and published Calzetti values; the Charlot & Fall screen."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.dust import DUST_TYPES, attenuate, attenuation_curve, calzetti2000, ccm89, power_law, smc_bar

pytest.importorskip("dust_extinction")
WAVE = np.geomspace(91.0, 1.6e6, 400)          # the generator's range [A]


@pytest.mark.parametrize("rv", [2.5, 3.1, 5.0])
def test_ccm89_is_dust_extinction_inside_its_range(rv):
    from dust_extinction.parameter_averages import CCM89
    w = np.geomspace(1000.1, 33333.0, 300)
    assert np.allclose(ccm89(w, rv), CCM89(Rv=rv)(w * u.AA), rtol=1e-12)
    assert ccm89(np.array([5500.0]), 3.1)[0] == pytest.approx(1.0, abs=2e-3)   # A_V / A_V
    full = ccm89(WAVE, rv)
    assert np.all(np.isfinite(full)) and np.all(full > 0)
    # continuous where the extensions take over (IR power law, far-UV polynomial)
    for edge in (1e4 / 0.3, 1e4 / 10.0):
        lo, hi = ccm89(np.array([edge * 0.999, edge * 1.001]), rv)
        assert lo == pytest.approx(hi, rel=0.02)


def test_smc_bar_is_dust_extinction():
    from dust_extinction.averages import G03_SMCBar
    w = np.geomspace(1000.1, 33333.0, 200)
    assert np.allclose(smc_bar(w), G03_SMCBar()(w * u.AA), rtol=1e-12)
    assert np.all(np.isfinite(smc_bar(WAVE)))


def test_calzetti_published_values_and_sedpy():
    k = calzetti2000(np.array([1500.0, 4400.0, 5500.0])) * 4.05       # k'(lambda), R_V = 4.05
    assert k[0] == pytest.approx(10.33, abs=0.01)                      # A_1500 = 10.33 E(B-V) (Calzetti 2000)
    assert k[1] - k[2] == pytest.approx(1.0, abs=0.02)          # k(B) - k(V) = 1: the definition of E(B-V)
    sedpy_att = pytest.importorskip("sedpy.attenuation")
    w = np.geomspace(1200.0, 22000.0, 300)
    ours = calzetti2000(w) / calzetti2000(np.array([5500.0]))[0]
    assert np.allclose(ours, sedpy_att.calzetti(w), rtol=1e-10)        # sedpy normalises at 5500 A
    assert np.all(calzetti2000(np.array([4e4, 1e5])) == 0)              # k' < 0 beyond ~3.1 um -> 0


def test_power_law_and_birth_cloud_screen():
    assert np.allclose(power_law(WAVE, -0.7), (WAVE / 5500.0) ** -0.7)
    young = np.full(WAVE.size, 2.0)
    old = np.full(WAVE.size, 3.0)
    out = attenuate(WAVE, young, old, dust_type=0, dust1=1.0, dust2=0.3, dust_index=-0.7, dust1_index=-1.0)
    tau2 = 0.3 * (WAVE / 5500) ** -0.7
    expected = (2.0 * np.exp(-(WAVE / 5500) ** -1.0) + 3.0) * np.exp(-tau2)
    assert np.allclose(out, expected, rtol=1e-12)
    # frac_nodust / frac_obrun as FSPS add_dust
    out = attenuate(WAVE, young, old, dust_type=2, dust1=1.0, dust2=0.3, frac_nodust=0.2, frac_obrun=0.1)
    cal = calzetti2000(WAVE)
    cspi = 2.0 * (np.exp(-(WAVE / 5500) ** -1.0) * 0.9 + 0.1) + 3.0
    assert np.allclose(out, cspi * (0.8 * np.exp(-0.3 * cal) + 0.2), rtol=1e-12)
    assert np.array_equal(attenuate(WAVE, young, old), young + old)    # no dust


@pytest.mark.parametrize("dust_type", [0, 1, 2, 4, 5, 6])
def test_every_dust_type_is_finite_and_one_near_v(dust_type):
    c = attenuation_curve(WAVE, dust_type, dust_index=-0.7 if dust_type == 0 else 0.0)
    assert np.all(np.isfinite(c)) and np.all(c >= 0)
    v = attenuation_curve(np.array([5500.0]), dust_type, dust_index=0.0)[0]
    assert v == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("kwargs,match", [(dict(dust_type=3), "Witt & Gordon"),
                                          (dict(dust_type=9), "dust_type"),
                                          (dict(dust_type=True), "got True"),     # ran as type 1
                                          (dict(dust_type=1, uvb=0.5), "uvb")])
def test_curve_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attenuation_curve(WAVE, **kwargs)


@pytest.mark.parametrize("bad", [-5500.0, 0.0, np.nan, np.inf])
def test_a_wavelength_that_is_no_wavelength_is_named_with_the_first(bad):
    """Every curve refuses NaN, inf and wavelengths <= 0 by the package's one rule (medium._as_angstrom),
    which names the first bad value and how many there are."""
    for dust_type in DUST_TYPES:
        with pytest.raises(ValueError, match=rf"wave must be finite and > 0 \[Angstrom\]; got {bad!r} "
                                             r"\(1 of 3 values"):
            attenuation_curve([3000.0, bad, 8000.0], dust_type)


def test_attenuate_errors():
    with pytest.raises(ValueError, match="dust2"):
        attenuate(WAVE, WAVE, WAVE, dust2=-0.1)
    with pytest.raises(ValueError, match="frac_nodust"):
        attenuate(WAVE, WAVE, WAVE, dust2=0.1, frac_nodust=1.5)


@pytest.mark.parametrize("kwargs,name", [(dict(dust2=None), "dust2"),
                                         (dict(dust2=np.array([0.1, 0.2])), "dust2"),
                                         (dict(dust1="0.3"), "dust1"), (dict(dust2=0.3 * u.mag), "dust2"),
                                         (dict(dust3=np.nan), "dust3"),
                                         (dict(frac_obrun=[0.5]), "frac_obrun"),
                                         (dict(frac_nodust=None), "frac_nodust")])
def test_a_dust_parameter_that_is_not_one_number_is_a_named_error(kwargs, name):
    """dust2=None (or text) raised a TypeError from np.isfinite, an array numpy's "truth value ... is
    ambiguous", an A_V in u.mag astropy's UnitTypeError from exp, frac_nodust=None a TypeError: none named the
    parameter. Each is now a ValueError saying what it must be; numpy scalars still work."""
    one = np.ones(WAVE.size)
    with pytest.raises(ValueError, match=rf"{name} is .* must be one finite number"):
        attenuate(WAVE, one, one, **{"dust2": 0.3, **kwargs})
    assert np.array_equal(attenuate(WAVE, one, one, dust2=np.float32(0.5), frac_nodust=np.float64(0.1)),
                          attenuate(WAVE, one, one, dust2=0.5, frac_nodust=0.1))


def test_mwr_outside_ccm89s_range_names_mwr():
    """dust_type 1 with mwr=-1 raised dust_extinction's error about 'Rv', an option the user never set."""
    with pytest.raises(ValueError, match=r"mwr \(R_V.*2-6"):
        ccm89(np.array([5000.0]), -1.0)


@pytest.mark.parametrize("kwargs,name", [(dict(dust_index=np.nan), "dust_index"),
                                         (dict(dust_type=4, dust_index=np.inf), "dust_index"),
                                         (dict(dust1=0.3, dust1_index=np.nan), "dust1_index"),
                                         (dict(dust1=0.3, dust1_index=-np.inf), "dust1_index")])
def test_non_finite_index_is_a_named_error(kwargs, name):
    """dust_index = NaN (dust_type 0 or 4, inf too) or dust1_index = NaN gave a NaN spectrum without a word;
    StellarPopulation refuses them ("must be finite"), attenuate now too."""
    one = np.ones(WAVE.size)
    with pytest.raises(ValueError, match=rf"{name} .*must be one finite number; got -?(nan|inf)"):
        attenuate(WAVE, one, one, dust2=0.5, **kwargs)
    if name == "dust_index":
        with pytest.raises(ValueError, match="dust_index"):
            attenuation_curve(WAVE, kwargs.get("dust_type", 0), dust_index=kwargs["dust_index"])
    # a finite index still attenuates: less light than without dust, all finite
    finite_kwargs = {k: (-0.7 if "index" in k else v) for k, v in kwargs.items()}
    finite = attenuate(WAVE, one, one, dust2=0.5, **finite_kwargs)
    assert np.all(np.isfinite(finite)) and np.all(finite < 2.0)


@pytest.mark.parametrize("dust_type", [0, 1, 2, 4, 5, 6])
def test_any_shape_of_wavelengths(dust_type):
    """dust_type 5 (SMC bar) raised dust_extinction's "too many values to unpack" for a 2-d wavelength array
    (the other curves took it); every curve now gives the 1-d values in the input's shape, scalars too."""
    wave = np.geomspace(500.0, 5e4, 12).reshape(3, 4)                 # both extensions and the inside
    flat = attenuation_curve(wave.ravel(), dust_type)
    np.testing.assert_array_equal(attenuation_curve(wave, dust_type), flat.reshape(3, 4))
    assert np.shape(attenuation_curve(5500.0, dust_type)) == ()
    if dust_type == 5:
        from dust_extinction.averages import G03_SMCBar
        inside = (wave > 1000.0) & (wave < 3.3e4)
        np.testing.assert_allclose(smc_bar(wave)[inside], G03_SMCBar()(wave[inside] * u.AA), rtol=1e-12)
