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


def test_igm_option_applies_madau_transmission_to_the_rest_frame_spectrum():
    """Apparent magnitudes at z = 4 ignored the IGM with no way to add it (u 5.4 mag too bright for a flat
    L_lambda); igm=True equals the magnitudes of the spectrum times Madau's transmission."""
    from smnet_sps.igm import igm_transmission
    from smnet_sps.photometry import ssp_photometry
    w = np.geomspace(300, 30000, 4000)
    lum = np.ones_like(w) * u.L_sun / u.AA
    bands = ["sdss2010-u", "sdss2010-g", "sdss2010-r", "sdss2010-z"]
    plain = magnitudes((w * u.AA, lum), bands, redshift=4)
    with_igm = magnitudes((w * u.AA, lum), bands, redshift=4, igm=True)
    by_hand = magnitudes((w * u.AA, lum * igm_transmission(w, 4)), bands, redshift=4)
    d = {b: float(np.asarray(with_igm[b])[0] - np.asarray(plain[b])[0]) for b in bands}
    assert d["sdss2010-u"] > 4 and d["sdss2010-g"] > 1 and d["sdss2010-z"] == pytest.approx(0, abs=1e-12)
    for b in bands:
        assert np.asarray(with_igm[b])[0] == pytest.approx(np.asarray(by_hand[b])[0], abs=1e-9)
    assert with_igm.meta["igm"] == "Madau (1995)" and plain.meta["igm"] == "none"
    at_rest = magnitudes((w * u.AA, lum), bands, igm=True)
    assert np.allclose([np.asarray(at_rest[b])[0] for b in bands],
                       [np.asarray(magnitudes((w * u.AA, lum), bands)[b])[0] for b in bands], atol=0)
    with pytest.raises(ValueError, match="igm"):
        magnitudes((w * u.AA, lum), bands, redshift=4, igm="yes")
    # the SSP table passes it on to its apparent magnitudes
    ssp = {igm: ssp_photometry([1e9] * u.yr, (w * u.AA, lum[None]), bands[:1], redshift=4, igm=igm)
           for igm in (False, True)}
    assert float(ssp[True]["m_obs_sdss2010-u"][0] - ssp[False]["m_obs_sdss2010-u"][0]) == pytest.approx(
        d["sdss2010-u"], abs=1e-9)
    assert ssp[True]["M_sdss2010-u"][0] == ssp[False]["M_sdss2010-u"][0]


def test_mags_cli_igm_needs_a_redshift(capsys):
    from smnet_sps.cli import main
    rc = main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--igm",
               "--generator", "blackbody"])
    assert rc != 0 and "--redshift" in capsys.readouterr().err
