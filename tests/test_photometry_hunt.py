"""Synthetic photometry checked against the systems' definitions (bug hunt)."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.constants import FLAM_UNIT
from smnet_sps.photometry import magnitudes

# a filter sampled coarsely against the spectrum (bessell-R: 100-500 A steps) and two others
COARSE_FILTERS = ["bessell-R", "sdss2010-u", "galex-fuv"]


@pytest.mark.parametrize("method", ["vectorised", "synphot"])
def test_zero_point_spectra_are_zero_mag(method):
    """By definition a flat f_lambda of 10^(-0.4 21.1) erg s^-1 cm^-2 A^-1 has ST 0 and a flat f_nu of
    10^(-0.4 48.6) erg s^-1 cm^-2 Hz^-1 AB 0 in every filter, whatever its curve. The denominator and the
    pivot were taken on the filter's own points, the numerator on the union with the spectrum's (synphot's
    effstim): ST -0.00145 in bessell-R, -0.00086 in sdss u, -0.00035 in GALEX FUV; AB +0.00094, ..."""
    wave = np.geomspace(1000.0, 60000.0, 20000) * u.AA
    st_flat = np.full(wave.size, 10 ** (-0.4 * 21.1)) * FLAM_UNIT
    ab_flat = np.full(wave.size, 10 ** (-0.4 * 48.6)) * u.Unit("erg s-1 cm-2 Hz-1")
    st = magnitudes((wave, st_flat), COARSE_FILTERS, system="ST", method=method)
    ab = magnitudes((wave, ab_flat), COARSE_FILTERS, system="AB", method=method)
    for name in COARSE_FILTERS:
        assert float(st[name][0]) == pytest.approx(0.0, abs=1e-6), name
        # f_nu is sampled (photon flux ~ 1/lambda joined by straight lines): 2e-7 mag on this grid
        assert float(ab[name][0]) == pytest.approx(0.0, abs=1e-6), name


def test_zero_point_sedpy_hipparcos_b():
    """hipparcos_B (sedpy) starts with a point at 500 A then 3550 A: ST 0.0075 for the ST zero point."""
    from smnet_sps.filters import sedpy_filter_names
    if "hipparcos_B" not in sedpy_filter_names():
        pytest.skip("astro-sedpy not installed")
    wave = np.geomspace(300.0, 20000.0, 20000) * u.AA
    st = magnitudes((wave, np.full(wave.size, 10 ** (-0.4 * 21.1)) * FLAM_UNIT), "hipparcos_B", system="ST")
    assert float(st["hipparcos_B"][0]) == pytest.approx(0.0, abs=1e-6)
