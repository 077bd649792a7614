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



def test_an_ssp_interpolator_keeps_its_axis_when_the_grid_is_edited_afterwards():
    """SSPInterpolator kept the grid's own ssp_wave: the owner's later ``grid.ssp_wave[:] *= 1.5`` moved the
    interpolator's axis (91 -> 136.5 A, the one fit_ssp places the model on) while its spectra stayed."""
    import torch

    from smnet_sps.ssp import ssp_grid
    from smnet_sps.ssp_torch import SSPInterpolator
    grid = ssp_grid([1e9, 2e9], [0.008, 0.0152], generator="blackbody", progress=False)
    interp = SSPInterpolator(grid)
    axis, spectra = np.array(interp.wavelength), interp(9.1, -0.2)
    grid.ssp_wave[:] *= 1.5
    assert np.array_equal(interp.wavelength, axis)
    assert torch.equal(interp(9.1, -0.2), spectra)
    with pytest.raises(ValueError, match="read-only"):
        interp.wavelength[0] = 1.0
