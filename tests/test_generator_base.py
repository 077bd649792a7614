import numpy as np
import pytest
from astropy import units as u

from smnet_sps.constants import SIGMA_SB
from smnet_sps.generator import CoverageWarning, validate_parameters


def test_blackbody_integrates_to_sigma_t4(blackbody):
    teff = np.array([3000.0, 5800.0, 20000.0])
    flux, inside = blackbody.surface_flux(teff, 4.0, 0.0)
    assert inside.all()
    integral = np.trapezoid(flux, blackbody.wavelength, axis=1)
    np.testing.assert_allclose(integral / (SIGMA_SB * teff**4), 1.0, rtol=0.01)


def test_spectra_returns_specutils_with_units(blackbody):
    spec, inside = blackbody.spectra([5000.0, 6000.0] * u.K, 4.4, 0.0)
    assert spec.flux.shape == (2, blackbody.wavelength.size)
    assert spec.flux.unit == u.Unit("erg s-1 cm-2 AA-1")
    assert spec.spectral_axis.unit == u.AA
    assert inside.tolist() == [True, True]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise(blackbody, bad):
    with pytest.raises(ValueError, match="non-finite"):
        blackbody.spectra([5000.0, bad], 4.0, 0.0)


def test_negative_teff_raises():
    with pytest.raises(ValueError, match="positive"):
        validate_parameters(-10.0, 4.0, 0.0)


def test_out_of_box_warns_or_raises(blackbody):
    with pytest.warns(CoverageWarning, match="outside the coverage"):
        _, inside = blackbody.spectra([5000.0, 2e6], 4.0, 0.0)
    assert inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="outside the coverage"):
        blackbody.spectra([2e6], 4.0, 0.0, strict=True)


def test_stream_is_batched(blackbody):
    teff = np.linspace(3000, 9000, 25)
    chunks = list(blackbody.stream(teff, 4.0, 0.0, batch_size=10))
    assert [c[1].shape[0] for c in chunks] == [10, 10, 5]
