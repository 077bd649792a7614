"""prospector (astro-prospector from PyPI) runs on smnet-sps: a SpecModel with a parametric SFH and dust."""
import numpy as np
import pytest
from astropy import units as u

prospect = pytest.importorskip("prospect")
pytestmark = pytest.mark.filterwarnings("ignore:genfromtxt")   # prospector reads our empty emission-line list
pytest.importorskip("sedpy")


def _maggies_from_lsun_per_hz(spec_nu, mass, zred, lsun_cgs, lumdist_mpc):
    """L_sun/Hz per M_sun formed -> observed f_nu in maggies (prospector: f_nu = (1+z) L_nu / 4 pi d^2)."""
    d = lumdist_mpc * u.Mpc.to(u.cm)
    return spec_nu * mass * lsun_cgs * (1 + zred) / (4 * np.pi * d ** 2) / 3631e-23


@pytest.mark.parametrize("kind", ["CSPSpecBasis"])
def test_specmodel_parametric_sfh_with_dust(kind, default_generator):
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from prospect.sources.constants import cosmo, lightspeed, lsun
    from sedpy.observate import getSED, load_filters
    from smnet_sps.population import prospector_basis
    from smnet_sps.photometry import magnitudes

    sps = prospector_basis(kind, zcontinuous=1)
    model_params = TemplateLibrary["parametric_sfh"]                # delayed tau (sfh=4) + power-law dust
    model_params["zred"]["init"] = 0.3
    model_params["sigma_smooth"] = {"N": 1, "isfree": False, "init": 300.0}
    model = SpecModel(model_params)
    theta = model.theta.copy()
    names = model.theta_labels()
    values = {"mass": 3e10, "logzsol": -0.2, "dust2": 0.4, "tage": 5.0, "tau": 2.0}
    for k, v in values.items():
        theta[names.index(k)] = v
    filters = load_filters(["sdss_g0", "sdss_r0", "sdss_i0", "twomass_J"])
    outwave = np.linspace(4000.0, 9000.0, 600)
    obs = {"wavelength": outwave, "spectrum": None, "unc": None, "mask": np.ones(outwave.size, bool),
           "filters": filters, "maggies": None, "maggies_unc": None}
    spec, phot, mfrac = model.predict(theta, obs=obs, sps=sps)

    # direct computation with StellarPopulation
    sp = sps.ssp
    sp.params["sfh"] = 4
    sp.params["dust_type"] = 0
    for k in ("logzsol", "dust2", "tau"):
        sp.params[k] = values[k]
    wave, spec_nu = sp.get_spectrum(tage=values["tage"])                   # L_sun / Hz per M_sun formed
    assert mfrac == pytest.approx(sp.stellar_mass, rel=1e-12)
    z = 0.3
    dl = cosmo.luminosity_distance(z).to_value(u.Mpc)
    maggies = _maggies_from_lsun_per_hz(spec_nu, values["mass"], z, lsun, dl)
    obs_wave = wave * (1 + z)
    # spectrum: prospector smooths by sigma_smooth (300 km/s, finer than the model's ~4,000 km/s pixels) and
    # resamples; smoothing conserves flux, so 500 A averages must agree
    direct = np.interp(outwave, obs_wave, maggies)
    assert np.all(np.isfinite(spec)) and np.all(spec > 0)
    assert np.median(spec / direct) == pytest.approx(1.0, abs=1e-3)
    def binned(x):
        return x.reshape(10, 60).mean(axis=1)
    assert np.allclose(binned(spec), binned(direct), rtol=3e-3, atol=0)
    # photometry: prospector's = sedpy's integral of the direct spectrum (same integrator: exact) ...
    flam = maggies * 3631e-23 * 2.99792458e18 / obs_wave ** 2              # erg/s/cm^2/A
    sedpy_phot = 10 ** (-0.4 * getSED(obs_wave, flam * lightspeed / 2.99792458e18, filters))  # c = 2.998e18
    assert np.allclose(phot, sedpy_phot, rtol=1e-8, atol=0)
    # ... and = smnet_sps.magnitudes (synphot's integral; the model's coarse pixels cost up to ~1 % in J)
    table = magnitudes((obs_wave * u.AA, flam * u.Unit("erg s-1 cm-2 AA-1")),
                       ["sdss_g0", "sdss_r0", "sdss_i0", "twomass_J"])
    ours = 10 ** (-0.4 * np.array([table[c][0] for c in table.colnames]))
    assert np.allclose(phot[:3], ours[:3], rtol=1e-3, atol=0)
    assert np.allclose(phot[3], ours[3], rtol=2e-2, atol=0)

    # a second call with other parameters changes the prediction (the dirty flag propagates)
    theta2 = theta.copy()
    theta2[names.index("dust2")] = 1.0
    spec2, phot2, _ = model.predict(theta2, obs=obs, sps=sps)
    assert np.all(phot2 < phot)


def test_faststepbasis_nonparametric_sfh(default_generator):
    """prospector's binned SFH (FastStepBasis -> set_tabular_sfh, sfh=3) = a sum of constant-SFR bins."""
    from prospect.models import SpecModel
    from prospect.models.templates import TemplateLibrary
    from sedpy.observate import load_filters
    from smnet_sps.population import StellarPopulation, prospector_basis

    sps = prospector_basis("FastStepBasis", zcontinuous=1)
    model_params = TemplateLibrary["continuity_sfh"]
    model_params["zred"]["init"] = 0.0
    model_params["lumdist"] = {"N": 1, "isfree": False, "init": 1e-5}      # 10 pc: absolute magnitudes
    model_params["logzsol"]["init"] = -0.2
    model_params["dust2"]["init"] = 0.2
    model_params["logsfr_ratios"]["init"] = np.array([0.3, -0.5])
    model = SpecModel(model_params)
    filters = load_filters(["sdss_g0", "sdss_r0"])
    obs = {"wavelength": None, "spectrum": None, "filters": filters, "maggies": None}
    _, phot, mfrac = model.predict(model.theta.copy(), obs=obs, sps=sps)
    masses = np.atleast_1d(model.params["mass"])
    agebins = model.params["agebins"]
    tmax = 10 ** agebins.max() / 1e9

    # direct: every bin is a constant SFR between its edges (sfh=1, const=1, sf_start/sf_trunc)
    sp = StellarPopulation(zcontinuous=1, sfh=1, const=1.0, logzsol=-0.2, dust2=0.2, dust_type=0,
                           generator=sps.ssp.generator)
    spec, mstar = 0.0, 0.0
    for (lo, hi), m in zip(10 ** agebins, masses):
        sp.params["sf_start"] = tmax - hi / 1e9
        sp.params["sf_trunc"] = tmax - lo / 1e9
        wave, s = sp.get_spectrum(tage=tmax)
        spec = spec + m * s
        mstar += m * sp.stellar_mass
    spec /= masses.sum()
    assert mfrac == pytest.approx(mstar / masses.sum(), rel=1e-3)
    assert np.allclose(model._spec, spec, rtol=2e-3, atol=0)           # L_sun/Hz per M_sun formed
    table = magnitudes_for(wave, spec * masses.sum(), filters)
    assert np.allclose(phot, table, rtol=2e-3, atol=0)


def magnitudes_for(wave, spec_nu, filters):
    """Absolute maggies (10 pc) of L_sun/Hz through sedpy filters, with prospector's constants."""
    from prospect.sources.constants import lightspeed, to_cgs_at_10pc
    from sedpy.observate import getSED
    fnu = spec_nu * to_cgs_at_10pc                                       # erg/s/cm^2/Hz at 10 pc
    return 10 ** (-0.4 * getSED(wave, fnu * lightspeed / wave ** 2, filters))
