"""Air/vacuum conversion against known lines and its own inverse."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.medium import air_to_vacuum, convert_medium, vacuum_to_air


def test_known_lines():
    # H-alpha 6562.80 A (air) = 6564.61 A (vacuum); H-beta 4861.33 / 4862.68; Na D2 5889.95 / 5891.58 (NIST)
    for air, vac in ((6562.80, 6564.61), (4861.33, 4862.68), (5889.95, 5891.58)):
        assert air_to_vacuum(air) == pytest.approx(vac, abs=0.02)
        assert vacuum_to_air(vac) == pytest.approx(air, abs=0.02)


def test_round_trip_and_uv_convention():
    lam = np.geomspace(900, 2e5, 500)
    back = air_to_vacuum(vacuum_to_air(lam))
    assert np.max(np.abs(back - lam)) < 1e-4 * 10      # < 1e-3 A everywhere
    uv = lam < 2000
    assert np.array_equal(vacuum_to_air(lam)[uv], lam[uv])
    q = convert_medium([5000.0, 7000.0] * u.AA, "vacuum", "air")
    assert q.unit == u.AA and np.all(q.value < [5000.0, 7000.0])
    with pytest.raises(ValueError, match="medium must be one of"):
        convert_medium(5000.0, "vacuum", "water")


def test_a_spectrum_axis_stays_ordered_across_2000_angstrom():
    """Vacuum 2,000.0 A is 1,999.35 A in air: with the line convention (unchanged below 2,000 A) an axis
    crossing 2,000 A ran backwards, flux densities came out negative and a Spectrum was refused."""
    from specutils import Spectrum

    from smnet_sps.medium import axis_air_to_vacuum, axis_vacuum_to_air, convert_spectrum_medium, to_medium
    lam = np.arange(1990.0, 2010.0, 0.25)
    air = axis_vacuum_to_air(lam)
    assert np.all(np.diff(air) > 0)
    np.testing.assert_allclose(air[lam >= 2000], vacuum_to_air(lam[lam >= 2000]), rtol=0, atol=1e-9)
    assert np.max(np.abs(lam - air)) < 0.7                         # below 2,000 A: at most 0.65 A
    np.testing.assert_allclose(axis_air_to_vacuum(air), lam, rtol=0, atol=1e-4)
    model = np.geomspace(91.0, 1e5, 4000)                          # a model grid from the EUV to the IR
    assert np.all(np.diff(axis_vacuum_to_air(model)) > 0)
    _, flux = convert_spectrum_medium(lam, np.ones_like(lam), "vacuum", "air")
    assert np.all((flux > 1.0) & (flux < 1.0004))                  # d lambda_vac / d lambda_air ~ n
    spec = Spectrum(flux=np.ones(lam.size) * u.erg / u.s / u.cm ** 2 / u.AA, spectral_axis=lam * u.AA)
    back = to_medium(to_medium(spec, "air"), "vacuum")
    np.testing.assert_allclose(back.spectral_axis.value, lam, rtol=0, atol=1e-4)
    np.testing.assert_allclose(back.flux.value, 1.0, rtol=1e-6)


def test_to_medium_reads_the_medium_a_spectrum_states():
    """A spectrum whose meta states its medium only as "medium" (StellarPopulation's did) was taken as vacuum:
    to_medium(s, "air") shifted an air axis a second time (1.40 A at 5000 A). An unknown medium is refused."""
    from specutils import Spectrum

    from smnet_sps.medium import axis_air_to_vacuum, to_medium
    lam = np.array([4990.0, 5000.0, 5010.0])
    flux = np.ones(3) * u.erg / u.s / u.cm ** 2 / u.AA
    air = Spectrum(flux=flux, spectral_axis=lam * u.AA, meta={"medium": "air"})
    np.testing.assert_array_equal(to_medium(air, "air").spectral_axis.value, lam)
    np.testing.assert_allclose(to_medium(air, "vacuum").spectral_axis.value, axis_air_to_vacuum(lam),
                               rtol=1e-15)
    both = {"wavelength_medium": "air", "medium": "vacuum"}
    stated = Spectrum(flux=flux, spectral_axis=lam * u.AA, meta=both)
    np.testing.assert_array_equal(to_medium(stated, "air").spectral_axis.value, lam)   # the contract's key
    water = Spectrum(flux=flux, spectral_axis=lam * u.AA, meta={"wavelength_medium": "water"})
    with pytest.raises(ValueError, match="wavelength_medium must be one of .* got 'water'"):
        to_medium(water, "air")


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -5000.0])
def test_converters_refuse_wavelengths_that_are_not_finite_and_positive(bad):
    """NaN, inf, 0 and negative wavelengths were accepted: vacuum_to_air(-5000.) returned -5000.0, and
    axis_vacuum_to_air([-5000, 5000]) converted the negative one (to -4998.6)."""
    from smnet_sps.medium import axis_air_to_vacuum, axis_vacuum_to_air, convert_spectrum_medium
    for convert in (vacuum_to_air, air_to_vacuum, axis_vacuum_to_air, axis_air_to_vacuum):
        with pytest.raises(ValueError, match=r"wavelength must be finite and > 0 \[Angstrom\]; got .*1 of 2"):
            convert(np.array([bad, 5000.0]))
    with pytest.raises(ValueError, match="finite and > 0"):
        vacuum_to_air(bad * u.AA)
    with pytest.raises(ValueError, match="finite and > 0"):
        convert_spectrum_medium(np.array([bad, 5000.0, 5010.0]), np.ones(3), "vacuum", "air")
    assert vacuum_to_air(500 * u.nm).to_value(u.AA) == pytest.approx(4998.6, abs=0.1)   # a Quantity is fine


def test_air_to_vacuum_inverts_vacuum_to_air_except_just_above_2000_angstrom():
    """air_to_vacuum's docstring: the exact inverse to < 1e-4 A, except vacuum 2,000-2,000.65 A, whose air
    wavelengths fall below the 2,000 A cutoff and come back unchanged (0.648 A off at vacuum 2,000 A)."""
    lam = np.concatenate([np.linspace(1990.0, 2010.0, 20001), np.geomspace(2010.0, 2e5, 2000)])
    err = np.abs(air_to_vacuum(vacuum_to_air(lam)) - lam)
    off = lam[err >= 1e-4]
    assert off.min() == 2000.0 and 2000.64 < off.max() < 2000.65
    assert err.max() == pytest.approx(0.648, abs=1e-3)


@pytest.mark.parametrize("medium", ["vacuum", "air"])
def test_to_medium_returns_a_copy_in_either_medium(blackbody, medium):
    """to_medium is documented to return a copy, but to the medium the object was already in it returned
    the same arrays: to_medium(g, "vacuum").ssp_flux is g.ssp_flux, and zeroing the "copy" zeroed the
    original (SSPGrid flux at pixel 600 1.1e-4 -> 0; a Spectrum's flux[0] 1 -> 5 Jy)."""
    from smnet_sps.medium import to_medium
    from smnet_sps.ssp import ssp_grid
    spec, _ = blackbody.spectra([5800.0], [4.4], [0.0])
    g = ssp_grid([1e9, 1e10], [0.0152, 0.03], generator=blackbody, progress=False)
    flux, wave, fwhm = spec.flux.copy(), spec.spectral_axis.copy(), np.array(spec.meta["lsf_fwhm"])
    c = to_medium(spec, medium)
    c.flux[...] = 5 * c.flux.unit
    c.meta["lsf_fwhm"][...] = 0.0
    c.meta["wavelength_medium"] = "changed"
    assert np.array_equal(spec.flux, flux) and np.array_equal(spec.spectral_axis, wave)
    assert np.array_equal(spec.meta["lsf_fwhm"], fwhm) and spec.meta["wavelength_medium"] == "vacuum"
    before = {k: np.array(v, copy=True) for k, v in g._asdict().items() if isinstance(v, np.ndarray)}
    attrs_fwhm = list(g.attrs["lsf_fwhm"])
    cg = to_medium(g, medium)
    for k, v in cg._asdict().items():
        if isinstance(v, np.ndarray):
            assert not np.shares_memory(v, g._asdict()[k]), k
            v[...] = 0.0
    cg.attrs["lsf_fwhm"][0] = -1.0
    for k, v in before.items():
        assert np.array_equal(getattr(g, k), v, equal_nan=True), k
    assert g.attrs["lsf_fwhm"] == attrs_fwhm and g.attrs["wavelength_medium"] == "vacuum"


def test_to_medium_leaves_a_flux_density_per_frequency_unchanged(blackbody):
    """to_medium multiplied every flux by d lambda_vac / d lambda_air, also a per-Hz one (Jy, L_sun / Hz),
    whose value cannot depend on the medium (frequency does not): 1.000268 off at 5000 A. Per wavelength
    (F_lambda) the factor stays: it keeps the integral over the converted axis."""
    from specutils import Spectrum

    from smnet_sps.medium import axis_vacuum_to_air, to_medium
    spec, _ = blackbody.spectra([5800.0], [4.4], [0.0])
    lam = spec.spectral_axis
    opt = (lam.value > 3000) & (lam.value < 9000)
    f_nu = spec.flux.to(u.Jy, u.spectral_density(lam))
    l_nu = (spec.flux * u.cm ** 2).to(u.L_sun / u.Hz, u.spectral_density(lam)) / u.M_sun
    for flux in (f_nu, l_nu, f_nu / u.sr):
        air = to_medium(Spectrum(flux=flux, spectral_axis=lam, meta=spec.meta), "air")
        np.testing.assert_array_equal(air.spectral_axis.value, axis_vacuum_to_air(lam.value))
        np.testing.assert_array_equal(air.flux, flux)                    # the same value per Hz
        assert air.flux.unit == flux.unit
    flam = to_medium(spec, "air")
    ratio = (flam.flux / spec.flux).value[0, opt]
    assert np.all((ratio > 1.00024) & (ratio < 1.0003))                  # d lambda_vac / d lambda_air
    assert np.trapezoid(flam.flux.value[0, opt], flam.spectral_axis.value[opt]) == pytest.approx(
        np.trapezoid(spec.flux.value[0, opt], lam.value[opt]), rel=1e-6)


def test_to_medium_reads_a_per_frequency_unit_of_an_ssp_grid(blackbody):
    """An SSPGrid whose attrs state flux_unit per Hz keeps its flux values; L_sun / A ones are scaled."""
    from smnet_sps.medium import to_medium
    from smnet_sps.ssp import ssp_grid
    g = ssp_grid([1e9, 1e10], [0.0152, 0.03], generator=blackbody, progress=False)
    per_hz = g._replace(ssp_flux=g.ssp_flux_per_hz(),
                        attrs={**g.attrs, "flux_unit": "L_sun / Hz per M_sun formed"})
    np.testing.assert_array_equal(to_medium(per_hz, "air").ssp_flux, per_hz.ssp_flux)
    opt = (g.ssp_wave > 3000) & (g.ssp_wave < 9000)
    ratio = to_medium(g, "air").ssp_flux[..., opt] / g.ssp_flux[..., opt]
    assert np.all((ratio > 1.00024) & (ratio < 1.0003))


def test_a_flux_stated_per_vacuum_angstrom_on_an_air_axis_changes_only_its_axis():
    """StellarPopulation(vactoair_flag=True) relabels the axis only (flux per vacuum A, as FSPS), yet
    to_medium and magnitudes() multiplied such a flux by d lambda_air / d lambda_vac as for a flux per air A:
    sdss g 2.9e-4 mag fainter than the vacuum spectrum. meta["flux_density_medium"] = "vacuum" says which
    Angstrom the flux is per; the conversion then changes only the axis."""
    from specutils import Spectrum

    from smnet_sps.constants import SSP_UNIT
    from smnet_sps.medium import axis_vacuum_to_air, to_medium
    from smnet_sps.photometry import magnitudes
    w = np.geomspace(1000, 30000, 6000)
    f = 1 / w ** 5 / (np.exp(1.4388e8 / (w * 5800.0)) - 1)
    f = f / f.max() * SSP_UNIT
    vac = Spectrum(flux=f, spectral_axis=w * u.AA, meta={"wavelength_medium": "vacuum"})
    relab = Spectrum(flux=f, spectral_axis=axis_vacuum_to_air(w) * u.AA,
                     meta={"wavelength_medium": "air", "flux_density_medium": "vacuum"})
    bands = ["sdss2010-u", "sdss2010-g", "bessell-V", "galex-nuv"]
    m_vac, m_relab = magnitudes(vac, bands), magnitudes(relab, bands)
    for b in bands:
        assert m_relab[b][0] == pytest.approx(m_vac[b][0], abs=1e-9), b
    back = to_medium(relab, "vacuum")
    assert back.meta["wavelength_medium"] == "vacuum" and back.meta["flux_density_medium"] == "vacuum"
    np.testing.assert_allclose(back.spectral_axis.value, w, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(back.flux, f)
    # stated per air A (or not stated: per the axis' medium) the Jacobian stays: to_medium's own air spectrum
    air = to_medium(vac, "air")
    assert air.meta["wavelength_medium"] == "air" and "flux_density_medium" not in air.meta
    assert np.all(air.flux.value[w > 3000] > f.value[w > 3000] * 1.0002)
    np.testing.assert_allclose(to_medium(air, "vacuum").flux.value, f.value, rtol=1e-6)
    same = to_medium(relab, "air")              # already air: nothing changes, the flux is still per vacuum A
    assert same.meta["flux_density_medium"] == "vacuum"
    np.testing.assert_array_equal(same.flux, f)
    with pytest.raises(ValueError, match="flux_density_medium must be one of"):
        to_medium(Spectrum(flux=f, spectral_axis=w * u.AA, meta={"flux_density_medium": "water"}), "air")


def test_to_medium_keeps_a_spectrums_uncertainty_and_mask(blackbody):
    """to_medium(spectrum, "air") returned a Spectrum without the input's uncertainty and mask (None, None).
    They are kept: the mask as it is (pixels map one to one), the uncertainty scaled exactly as the flux is
    (d lambda_vac / d lambda_air for a standard deviation, its square for a variance, the inverse square for
    an inverse variance; 1 for a flux per Hz)."""
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
    from specutils import Spectrum

    from smnet_sps.medium import to_medium
    spec, _ = blackbody.spectra([5800.0], [4.4], [0.0])
    lam, flux = spec.spectral_axis, spec.flux[0]
    mask = (lam.value > 8000) | (np.arange(lam.size) % 7 == 0)
    sigma = 0.05 * flux.value + 1e-3 * flux.value.max()
    for unc, power in ((StdDevUncertainty(sigma), 1), (VarianceUncertainty(sigma ** 2), 2),
                       (InverseVariance(sigma ** -2.0), -2)):
        s = Spectrum(flux=flux, spectral_axis=lam, uncertainty=unc, mask=mask, meta=spec.meta)
        air = to_medium(s, "air")
        assert type(air.uncertainty) is type(unc) and air.mask is not None
        np.testing.assert_array_equal(air.mask, mask)
        factor = (air.flux / flux).to_value(u.dimensionless_unscaled)
        assert 1.00026 < factor[np.searchsorted(lam.value, 5000.0)] < 1.00027
        np.testing.assert_allclose(air.uncertainty.array, unc.array * factor ** power, rtol=1e-14)
        back = to_medium(air, "vacuum")                  # and back: the input's uncertainty, to 1e-6
        np.testing.assert_allclose(back.uncertainty.array, unc.array, rtol=1e-6)
        np.testing.assert_array_equal(back.mask, mask)
        air.mask[0] = not air.mask[0]                    # a copy, as the flux is
        assert s.mask[0] == mask[0]
    f_nu = flux.to(u.Jy, u.spectral_density(lam))
    s = Spectrum(flux=f_nu, spectral_axis=lam, uncertainty=StdDevUncertainty(0.1 * f_nu.value), mask=mask,
                 meta=spec.meta)
    np.testing.assert_array_equal(to_medium(s, "air").uncertainty.array, 0.1 * f_nu.value)


def test_per_frequency_is_read_by_the_rule_that_converts_to_f_lambda():
    """is_per_frequency kept its own list of per-Hz units (Jy, Jy/sr, W/Hz, W/Hz/kg, photons per Hz): a
    photon L_nu per M_sun or an L_nu per sr was called per wavelength, so to_medium multiplied it by
    d lambda_vac / d lambda_air (1.00027). It now asks spectral_density_kind, the rule that lick, fit and
    photometry convert a flux unit to F_lambda with."""
    from smnet_sps.constants import FLAM_UNIT
    from smnet_sps.medium import f_lambda_factor, is_per_frequency, spectral_density_kind
    for unit in (u.photon / u.s / u.Hz / u.M_sun, u.L_sun / u.Hz / u.sr, u.MJy / u.sr, u.Jy, u.L_sun / u.Hz):
        assert is_per_frequency(unit), unit
    for unit in (u.L_sun / u.AA / u.M_sun, u.photon / u.s / u.AA, FLAM_UNIT / u.arcsec ** 2, u.count,
                 u.ABmag, None, u.dimensionless_unscaled):
        assert not is_per_frequency(unit), unit
    assert spectral_density_kind(u.L_sun / u.AA / u.M_sun) == ("luminosity", u.M_sun)
    assert spectral_density_kind(u.Jy / u.arcsec ** 2) == ("flux", u.sr)
    assert spectral_density_kind(u.Jy / u.arcsec ** 2, per=(u.M_sun,)) == (None, None)
    assert spectral_density_kind(u.count) == (None, None)
    # a surface brightness stays per solid angle, whatever its unit: Jy / arcsec^2 -> erg/s/cm^2/A per sr
    wave = np.array([4000.0, 8000.0])
    np.testing.assert_allclose(f_lambda_factor(u.Jy / u.arcsec ** 2, wave) / f_lambda_factor(u.Jy, wave),
                               (u.sr / u.arcsec ** 2).to(u.one), rtol=1e-12)
    with pytest.raises(u.UnitConversionError):
        f_lambda_factor(u.Jy, wave, reference=u.Jy / u.sr)              # an ivar per sr beside a flux not
    assert f_lambda_factor(u.count, wave, strict=False) == 1.0


def test_to_medium_moves_dsps_unit_arrays_by_their_axis_only(blackbody):
    """SSPGrid.to_dsps_units() (L_nu per Hz, recording its medium) was refused by to_medium with NamedTuple's
    "Got unexpected field names: ['attrs']". Converted as the grid is: the same L_nu (a pixel's frequency is
    c / lambda_vac), the axis and wavelength_medium changed; back to vacuum, the vacuum arrays."""
    from smnet_sps.medium import to_medium
    from smnet_sps.ssp import ssp_grid
    g = ssp_grid([1e9, 1e10], [0.0152, 0.03], generator=blackbody, progress=False)
    d = g.to_dsps_units()
    air = to_medium(d, "air")
    expect = to_medium(g, "air").to_dsps_units()
    assert air.wavelength_medium == "air"
    np.testing.assert_array_equal(air.ssp_wave, expect.ssp_wave)
    np.testing.assert_allclose(air.ssp_flux, expect.ssp_flux, rtol=1e-9)
    np.testing.assert_array_equal(air.ssp_flux, d.ssp_flux)
    back = to_medium(air, "vacuum")
    assert back.wavelength_medium == "vacuum"
    np.testing.assert_allclose(back.ssp_wave, g.ssp_wave, rtol=1e-11)      # the axis round trip
    air.ssp_flux[0, 0, 0] = -1.0                        # a copy
    assert d.ssp_flux[0, 0, 0] >= 0


def test_a_wavelength_table_column_is_read_in_its_unit(tmp_path):
    """A wavelength column read from a FITS file (Table.read: big-endian, TUNIT nm) was taken as Angstrom by
    every function that converts wavelengths through medium._as_angstrom (np.asarray dropped its unit):
    igm_transmission at z = 3 of 300-900 nm gave the Lyman-forest transmission of 300-900 A (0.02 for 1),
    vacuum_to_air, wavegrid.resample and lsf.degrade_to_fwhm worked on 10x too short wavelengths, mock_star
    failed in numpy (operands could not be broadcast), and the dust curves were an AttributeError (a column
    has no to_value). Each now reads the column as the Quantity it stands for."""
    from astropy.io import fits
    from astropy.table import Table

    from smnet_sps.dust import calzetti2000
    from smnet_sps.fit import mock_star
    from smnet_sps.igm import igm_transmission
    from smnet_sps.lsf import degrade_to_fwhm
    from smnet_sps.wavegrid import resample

    w = np.linspace(3000.0, 9000.0, 200)
    path = tmp_path / "w.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="wave", format="D", array=w / 10, unit="nm"),
                                   fits.Column(name="plain", format="D", array=w)]).writeto(path)
    t = Table.read(path)
    col, q = t["wave"], w * u.AA
    assert col.dtype.byteorder == ">" and col.unit == u.nm
    np.testing.assert_allclose(igm_transmission(col, 3.0), igm_transmission(q, 3.0), rtol=1e-12)
    np.testing.assert_allclose(vacuum_to_air(col).to_value(u.AA), vacuum_to_air(w), rtol=1e-12)
    np.testing.assert_allclose(calzetti2000(col), calzetti2000(w), rtol=1e-12)
    np.testing.assert_array_equal(calzetti2000(t["plain"]), calzetti2000(w))    # no unit: Angstrom
    flux = 1.0 + 0.1 * np.sin(w / 50.0)
    np.testing.assert_allclose(resample(col, flux, w[5:-5:3]), resample(w, flux, w[5:-5:3]), rtol=1e-12)
    np.testing.assert_allclose(degrade_to_fwhm(col, flux, 2.0, 5.0), degrade_to_fwhm(w, flux, 2.0, 5.0),
                               rtol=1e-12)
    in_col = mock_star(Table({"w": np.linspace(380.0, 700.0, 50)}, units={"w": u.nm})["w"], 5600.0, 4.3,
                       -0.2, seed=1)
    in_aa = mock_star(np.linspace(3800.0, 7000.0, 50), 5600.0, 4.3, -0.2, seed=1)
    np.testing.assert_allclose(in_col[0], in_aa[0], rtol=1e-12)
    np.testing.assert_allclose(in_col[1], in_aa[1], rtol=1e-12)


def test_spectral_density_kind_not_cached_under_global_equivalencies():
    """astropy's is_equivalent also uses globally enabled equivalencies: under dimensionless_angles a
    surface brightness per sr reads as a plain flux density. spectral_density_kind cached that answer per
    unit and gave ('flux', 1) outside the context too (per sr lost); it now skips the cache there."""
    from smnet_sps.medium import _density_kind, spectral_density_kind

    unit = u.erg / u.s / u.cm ** 2 / u.AA / u.sr
    _density_kind.cache_clear()
    with u.set_enabled_equivalencies(u.dimensionless_angles()):
        assert spectral_density_kind(unit) == ("flux", u.one)        # right inside: sr is dimensionless
    assert spectral_density_kind(unit) == ("flux", u.sr)
    spectral_density_kind(u.Jy / u.arcsec ** 2)                       # cached outside ...
    with u.set_enabled_equivalencies(u.dimensionless_angles()):
        assert spectral_density_kind(u.Jy / u.arcsec ** 2) == ("flux", u.one)   # ... not reused inside
