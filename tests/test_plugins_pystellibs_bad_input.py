"""pystellibs adapter: inputs of the wrong shape are refused with a ValueError naming them (pystellibs' own
conventions: one star's parameters are numbers, many stars' are 1-d columns)."""
import numpy as np
import pytest

from smnet_sps.plugins.pystellibs_backend import SMNetStellib
from test_plugins_pystellibs import BoxedBlackbody


@pytest.fixture(scope="module")
def lib():
    return SMNetStellib(BoxedBlackbody(), zsun=0.02)


@pytest.mark.parametrize("stars, match", [
    ({"logT": [[3.76]], "logg": [[4.4]], "logL": [[0.0]], "Z": [[0.02]]},
     r"logT must be a number or a 1-d array \(one value per star.*got shape \(1, 1\)"),
    ({"logT": [3.76, 3.8], "logg": 4.4, "logL": 0.0, "Z": [[0.02]]}, r"Z must be .* got shape \(1, 1\)"),
    ({"logT": [3.76, 3.8], "logg": [4.4, 4.0, 4.2], "logL": 0.0, "Z": 0.02},
     r"one value per star \(or one for all\); got logT: 2, logg: 3, logL: 1, Z: 1"),
])
def test_individual_spectra_want_1d_columns(lib, stars, match):
    with pytest.raises(ValueError, match=match):
        lib.generate_individual_spectra(stars)


def test_one_star_wants_numbers_many_stars_columns(lib):
    with pytest.raises(ValueError, match=r"one star: logT must be a number; got shape \(2,\)"):
        lib.generate_stellar_spectrum([3.76, 3.8], 4.4, 0.0, 0.02)      # used to return the first star only
    one = lib.generate_stellar_spectrum(3.76, 4.4, 0.0, 0.02)
    assert np.array_equal(lib.generate_stellar_spectrum([[3.76]], 4.4, 0.0, 0.02), one)
    # scalars stand for every star; 1-d columns give one spectrum per star
    wave, single = lib.generate_individual_spectra({"logT": 3.76, "logg": 4.4, "logL": 0.0, "Z": 0.02})
    _, two = lib.generate_individual_spectra({"logT": [3.76, 3.76], "logg": 4.4, "logL": [0.0, 1.0],
                                              "Z": 0.02})
    assert single.shape == (1, wave.size) and two.shape == (2, wave.size)
    assert np.allclose(single.value[0], one) and np.allclose(two.value[1], 10 * one)


def test_points_inside_shapes(lib):
    with pytest.raises(ValueError, match=r"pairs, shape \(n, 2\); got shape \(1, 1, 2\)"):
        lib.points_inside([[[3.76, 4.4]]])
    with pytest.raises(ValueError, match=r"Z must be .* one per star \(2\); got shape \(1, 1\)"):
        lib.points_inside([[3.76, 4.4], [3.8, 4.0]], Z=[[0.02]])
    assert lib.points_inside([[3.76, 4.4], [3.8, 4.0]], Z=[0.02, 0.01]).tolist() == [True, True]


def test_masked_values_are_refused_and_units_converted(lib):
    """Masked entries were used as valid (a missing logL stored as 99 under the mask of an astropy
    MaskedColumn gave a star 3e99 too bright; a fully masked logT gave a spectrum), and a Quantity lost its
    unit (logL given as L * u.L_sun made a star 1e30 too bright), while StellarLibraryBackend.point_spectra
    refuses the first and converts the second. A logL outside the backend's range is refused too."""
    from astropy import units as u
    from astropy.table import MaskedColumn, Table
    logT, logg = np.log10([5777.0, 4500.0, 9000.0]), np.array([4.44, 4.6, 4.0])
    logL, Z = np.array([0.0, -0.5, 1.5]), np.full(3, 0.02)
    _, ref = lib.generate_individual_spectra(dict(logT=logT, logg=logg, logL=logL, Z=Z))
    table = Table(dict(logT=logT, logg=logg, logL=MaskedColumn([0.0, 99.0, 1.5], mask=[False, True, False]),
                       Z=Z))
    with pytest.raises(ValueError, match="logL is a masked array with 1 masked value"):
        lib.generate_individual_spectra(table)
    with pytest.raises(ValueError, match="logT is a masked array"):
        lib.generate_stellar_spectrum(np.ma.masked_array([3.76], mask=[True]), 4.44, 0.0, 0.02)
    with pytest.raises(ValueError, match="Z is a masked array"):
        lib.points_inside([[3.76, 4.4]], Z=np.ma.masked_array([0.02], mask=[True]))
    with pytest.raises(ValueError, match="xypoints is a masked array"):
        lib.points_inside(np.ma.masked_array([[3.76, 4.4]], mask=[[True, False]]))
    for stars in (dict(logT=logT, logg=logg, logL=10**logL * u.L_sun, Z=Z),
                  dict(logT=10**logT * u.K, logg=logg * u.dex(u.cm / u.s**2), logL=logL * u.dex(u.L_sun),
                       Z=Z * u.dimensionless_unscaled)):
        _, spec = lib.generate_individual_spectra(stars)
        np.testing.assert_allclose(spec.value, ref.value, rtol=1e-10)
    with pytest.raises(ValueError, match=r"logL = 100000 \(index 0\) is outside -10 .. 10"):
        lib.generate_stellar_spectrum(3.76, 4.44, 1e5, 0.02)            # L in L_sun given as logL
    with pytest.raises(ValueError, match="Z is a metal mass fraction .* got unit K"):
        lib.generate_stellar_spectrum(3.76, 4.44, 0.0, 0.02 * u.K)


def test_weights_and_radius_refuse_masks_and_convert_units(lib):
    """get_weights / get_radius (pystellibs' element-wise helpers) read np.asarray of their input: a masked
    logL of 99 gave weights 3.8e132 erg/s, logL given as L * u.L_sun (100 L_sun read as logL 100) a star
    1e98 times too bright, and an astropy Column with a unit (a table's L column in L_sun) was taken as
    log L. They now check each input as generate_individual_spectra does (it takes such a Column too)."""
    from astropy import units as u
    from astropy.table import Column, MaskedColumn

    from smnet_sps.constants import L_SUN
    logL, logt = np.array([0.0, 2.0]), np.log10([5772.0, 9000.0])
    w_ref, r_ref = lib.get_weights(logt, 4.0, logL), lib.get_radius(logL, logt)
    np.testing.assert_allclose(w_ref, 10**logL * L_SUN, rtol=1e-12)
    masked = MaskedColumn([0.0, 99.0], mask=[False, True])
    with pytest.raises(ValueError, match=r"logL is a masked array with 1 masked value\(s\) \(first at flat "
                                         r"index 1\)"):
        lib.get_weights(logt, 4.0, masked)
    with pytest.raises(ValueError, match=r"logl is a masked array .*index 1"):
        lib.get_radius(np.ma.masked_array(logL, mask=[False, True]), logt)
    with pytest.raises(ValueError, match=r"logt is a masked array .*index 0"):
        lib.get_radius(logL, np.ma.masked_array(logt, mask=[True, False]))
    with pytest.raises(ValueError, match=r"weights is a masked array .*index 1"):
        lib.get_weights(logt, 4.0, logL, weights=np.ma.masked_array([1.0, 5.0], mask=[False, True]))
    # units converted: linear and dex Quantities, and a table Column that carries its unit
    for lum in (10**logL * u.L_sun, logL * u.dex(u.L_sun), (10**logL * L_SUN) * u.erg / u.s,
                Column(10**logL, unit=u.L_sun), Column(logL, unit=u.dex(u.L_sun))):
        np.testing.assert_allclose(lib.get_weights(logt, 4.0, lum), w_ref, rtol=1e-12)
        np.testing.assert_allclose(lib.get_radius(lum, 10**logt * u.K), r_ref, rtol=1e-12)
    np.testing.assert_allclose(lib.get_weights(logt, 4.0, logL, weights=[2.0, 3.0] * u.one),
                               [2, 3] * w_ref, rtol=1e-12)
    # ... or refused, saying what the parameter is
    with pytest.raises(ValueError, match="logL must be log10.*got unit K"):
        lib.get_weights(logt, 4.0, logL * u.K)
    with pytest.raises(ValueError, match="logt must be log10.*got unit"):
        lib.get_radius(logL, Column(logt, unit=u.m))
    with pytest.raises(ValueError, match="logL: its column's unit 'log\\(Lsun\\)' is not one astropy knows"):
        lib.get_weights(logt, 4.0, Column(logL, unit="log(Lsun)"))
    with pytest.raises(ValueError, match="weights are numbers .*dimensionless.*got unit solMass"):
        lib.get_weights(logt, 4.0, logL, weights=[1.0, 2.0] * u.M_sun)
    # the main entry point reads a table whose L column carries its unit the same way
    from astropy.table import Table
    stars = dict(logT=logt, logg=[4.0, 4.0], Z=[0.02, 0.02])
    _, plain = lib.generate_individual_spectra(Table(dict(stars, logL=logL)))
    _, with_unit = lib.generate_individual_spectra(Table(dict(stars, logL=Column(10**logL, unit=u.L_sun))))
    np.testing.assert_allclose(with_unit.value, plain.value, rtol=1e-10)
    # a number stays a number (pystellibs' scalar calls), an array keeps its shape
    assert np.ndim(lib.get_radius(0.0, np.log10(5772.0))) == 0 and lib.get_weights(3.7, 4.0, 0.0) == L_SUN
    assert lib.get_weights(logt, 4.0, logL[:, None]).shape == (2, 1)
