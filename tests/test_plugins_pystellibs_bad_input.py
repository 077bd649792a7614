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
