"""Hypothesis fuzz of the generator API (issue 12): extreme floats, wrong types and units give a named
ValueError or finite, positive spectra -- never another exception, a NaN, an inf or an all-zero spectrum."""
import warnings

import numpy as np
import pytest
from astropy import units as u

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from smnet_sps.generator import CoverageWarning  # noqa: E402

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
PLAUSIBLE = {"teff": st.floats(300.0, 2e6), "logg": st.floats(-4.0, 16.0), "logz": st.floats(-7.0, 3.0)}
UNITS = [u.K, u.deg_C, u.cm / u.s**2, u.m / u.s**2, u.dex, u.dex(u.cm / u.s**2), u.km,
         u.dimensionless_unscaled]


def parameter(name):
    scalar = st.one_of(PLAUSIBLE[name], FLOATS, st.integers(-10**6, 10**6), st.booleans(), st.none(),
                       st.text(max_size=3))
    arrays = st.lists(st.one_of(PLAUSIBLE[name], FLOATS), min_size=0, max_size=4)
    quantity = st.builds(lambda v, unit: v * unit if not isinstance(unit, u.LogUnit) else u.Dex(v, unit),
                         PLAUSIBLE[name], st.sampled_from(UNITS))
    return st.one_of(scalar, arrays, quantity)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(teff=parameter("teff"), logg=parameter("logg"), logz=parameter("logz"))
def test_generator_refuses_or_answers_finite(default_generator, teff, logg, logz):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoverageWarning)
            flux, inside = default_generator.surface_flux(teff, logg, logz, batch_size=3)
    except ValueError:
        return
    assert flux.shape[0] == inside.shape[0]
    assert np.isfinite(flux).all() and (flux > 0).all()


@pytest.mark.parametrize("teff", [500.0, 2000.0, 2e5, 1e6])
@pytest.mark.parametrize("logg", [-3.0, 15.0])
@pytest.mark.parametrize("logz", [-6.0, 2.0])
def test_corners_of_the_physical_domain_are_finite(default_generator, teff, logg, logz):
    with pytest.warns(CoverageWarning):
        flux, inside = default_generator.surface_flux(teff, logg, logz)
    assert not inside[0] and np.isfinite(flux).all() and (flux > 0).all()
