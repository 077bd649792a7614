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
