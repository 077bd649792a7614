"""Caches and state: a model call or a caller's reference never changes what later calls compute."""
import numpy as np
import pytest

from smnet_sps.backend import StellarLibraryBackend
from smnet_sps.ssp import resolve_generator


@pytest.mark.parametrize("name", ["default", "semi-empirical", "blackbody"])
def test_a_generators_wavelength_grid_cannot_be_edited_through_a_reference(name):
    """``w = gen.wavelength; w /= 1e4`` (to plot in micron) changed the generator's own grid, shared by the
    backend and every later SSP (their axis came out 0.0091-160 A); now the write raises and nothing moved."""
    gen = resolve_generator(name, "cpu")
    before = np.array(gen.wavelength)
    backend = StellarLibraryBackend(gen)
    for owner in (gen, backend):
        w = owner.wavelength
        with pytest.raises(ValueError, match="read-only"):
            w /= 1e4
    assert np.array_equal(gen.wavelength, before) and np.array_equal(backend.wavelength, before)

