"""Lick indices on synthetic spectra whose index is known analytically."""
import numpy as np
import pytest

from smnet_sps.lick import LICK_INDICES, index_bands, measure_index, measure_indices
from smnet_sps.medium import air_to_vacuum


def _continuum(wave):
    return 2.0 + 3e-4 * (wave - 5000.0)           # any linear continuum: the pseudo-continuum is exact


@pytest.mark.parametrize("name", sorted(LICK_INDICES))
def test_gaussian_line_equivalent_width(name):
    wave = np.arange(4700.0, 5500.0, 0.05)
    blue, band, red = index_bands(name)
    centre, sigma, depth = 0.5 * (band[0] + band[1]), 2.0, 0.4
    flux = _continuum(wave) * (1 - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2))
    expected = depth * sigma * np.sqrt(2 * np.pi)  # tails beyond the band edges are < 1e-9 of it
    assert measure_index(wave, flux, name) == pytest.approx(expected, rel=1e-4)
    assert measure_index(wave, _continuum(wave), name) == pytest.approx(0.0, abs=1e-8)


def test_box_line_and_vacuum_bands():
    wave = np.arange(5000.0, 5400.0, 0.01)
    _, band, _ = index_bands("Mgb")
    lo, hi = band[0] + 5.0, band[0] + 15.0
    flux = _continuum(wave) * np.where((wave >= lo) & (wave < hi), 0.7, 1.0)
    assert measure_index(wave, flux, "Mgb") == pytest.approx(0.3 * 10.0, abs=2e-3)
    # bands are air in the tables, vacuum by default: shifted by air_to_vacuum (~1.4 A here)
    air = index_bands("Mgb", medium="air")[1]
    assert band[0] - air[0] == pytest.approx(float(air_to_vacuum(air[0]) - air[0]))
    assert 1.3 < band[0] - air[0] < 1.6
    # the same line measured in air: the index of a spectrum on an air axis with air bands is identical
    assert measure_index(wave - (band[0] - air[0]), flux, "Mgb", medium="air") == pytest.approx(3.0, abs=5e-3)


def test_vectorised_and_errors():
    wave = np.arange(4700.0, 5500.0, 0.5)
    flux = np.stack([_continuum(wave)] * 3)
    out = measure_indices(wave, flux)
    assert set(out) == set(LICK_INDICES) and all(v.shape == (3,) for v in out.values())
    with pytest.raises(ValueError, match="unknown Lick index"):
        measure_index(wave, flux, "Hgamma")
    with pytest.raises(ValueError, match="needs"):
        measure_index(wave[wave < 5200], flux[:, wave < 5200], "Fe5335")


def test_wavelength_units_and_a_single_name():
    import astropy.units as u
    wave = np.linspace(4000.0, 6500.0, 2000)
    flux = np.ones_like(wave)
    lo, hi = index_bands("Mgb", "vacuum")[1]
    flux[(wave > lo) & (wave < hi)] = 0.5
    ref = measure_index(wave, flux, "Mgb")
    # a Quantity in nm is converted (it was read as Angstrom: a silent -0.08 instead of ~2)
    assert measure_index((wave * u.AA).to(u.nm), flux, "Mgb") == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="must be a wavelength"):
        measure_index(wave * u.s, flux, "Mgb")
    assert list(measure_indices(wave, flux, "Mgb")) == ["Mgb"]          # a name, not its letters
    with pytest.warns(UserWarning, match="no pixel lies inside its central band"):
        coarse = np.arange(4000.0, 6500.0, 100.0)
        measure_index(coarse, np.ones_like(coarse), "Mgb")
