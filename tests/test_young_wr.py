"""Wolf-Rayet spectra under ``special_phases="dedicated"`` (smnet_sps.backend): WR stars hotter than the
CMFGEN grid's top, and the massive hot stripped stars the isochrones do not flag as WR (docs/ssp.md, "Young
populations")."""
import numpy as np
import pytest

from smnet_sps.backend import STATUS, StellarLibraryBackend


@pytest.fixture(scope="module")
def dedicated_bb():
    return StellarLibraryBackend("blackbody", special_phases="dedicated")


def _unit(ps):
    """Each point's spectrum per unit of its own integral [1/A]."""
    w = ps.wavelength
    return ps.llam / np.trapezoid(ps.llam, w, axis=1)[:, None]


def test_wr_star_hotter_than_the_cmfgen_top_takes_its_hottest_spectrum(dedicated_bb):
    """A phase-9 star above the CMFGEN grid's top (WN 120 kK, WC 140 kK) got the generator's spectrum
    (with the default model a windless CM87 / extrapolated one: log Q(He+)/Q(H) -0.55 at 150 kK, [M/H] +0.3,
    against -8.29 from the +0.3 WN set); it now takes the hottest WR spectrum, as FSPS holds phase-9 stars at
    the grid's edges, keeping its own luminosity and the share of it a blackbody of its Teff puts on the grid.
    A post-AGB star above Rauch's 190 kK top still goes to the generator."""
    from smnet_sps.generator import planck_fraction
    teff = np.array([120e3, 150e3, 200e3, 140e3, 170e3, 195e3])
    phase = np.array([9, 9, 9, 9, 9, 6])
    co = np.array([0.5, 0.5, 0.5, 2.0, 2.0, 0.5])
    ps = dedicated_bb.point_spectra(teff=teff, logg=5.5, logz=0.3, logl=5.0, phase=phase, co=co)
    assert list(ps.status[:5]) == [STATUS["dedicated"]] * 5
    assert ps.status[5] != STATUS["dedicated"]
    assert list(ps.inside[:5]) == [True, False, False, True, False]     # held: outside the grid's range
    unit = _unit(ps)
    np.testing.assert_allclose(unit[1:3], unit[[0, 0]], rtol=1e-6)     # WN: the 120 kK spectrum
    np.testing.assert_allclose(unit[4], unit[3], rtol=1e-6)            # WC: the 140 kK spectrum
    wave = dedicated_bb.wavelength
    integral = np.trapezoid(ps.llam, wave, axis=1) / ps.luminosity
    share = planck_fraction(*dedicated_bb._dedicated_range, teff)
    # (rtol: Teff goes through 1e-4 dex keys)
    np.testing.assert_allclose(integral[1:3] / integral[0], share[1:3] / share[0], rtol=1e-4)


def _ages(iso, z=False):
    """log10(age / yr) of every row of an isochrone set (with ``z``: and its Z)."""
    age, zrow = np.empty((2, iso.columns["mini"].size))
    for iz in range(iso.Z.size):
        for ia in range(iso.log_age.size):
            age[iso.rows(iz, ia)], zrow[iso.rows(iz, ia)] = iso.log_age[ia], iso.Z[iz]
    return (age, zrow) if z else age


@pytest.mark.parametrize("family", ["parsec", "padova"])
def test_wr_like_rule_on_the_shipped_tables(family):
    """The rule catches every stripped star of docs/ssp.md's audit (80-150 kK, log g 4.4-6, up to 10 Myr)
    that the default IMF (to 120 M_sun) holds -- the only ones it leaves are 3 PARSEC points at Z 1e-4, log t
    6.35, 300-305 M_sun, back from 6 kK with 0.93-0.94 of their mass -- and no post-AGB star or white dwarf:
    nothing older than 100 Myr or below the mass threshold, though Padova holds thousands of > 50 kK points
    there (phase 6, <= 4.8 M_sun, log t >= 8.15). Every star it catches has lost > 20 % of its mass."""
    from smnet_sps.backend import WR_LIKE_MAX_MASS_RATIO, WR_LIKE_MIN_MASS, WR_LIKE_MIN_TEFF, wr_like
    from smnet_sps.isochrones import load_isochrones
    iso = load_isochrones(family)
    c = iso.columns
    teff, age = 10.0 ** c["logt"], _ages(iso)
    caught = wr_like(c["mini"], c["mact"], teff)
    stripped = (teff >= 80e3) & (teff <= 150e3) & (c["logg"] >= 4.4) & (c["logg"] <= 6.0) & (age <= 7.0)
    assert stripped.sum() > 100 and caught[stripped & (c["mini"] <= 120.0)].all()
    missed = stripped & ~caught
    assert missed.sum() == (3 if family == "parsec" else 0)
    assert (c["mini"][missed] > 290.0).all() and (c["mact"][missed] > 0.9 * c["mini"][missed]).all()
    assert not caught[(age > 8.0) | (c["mini"] < WR_LIKE_MIN_MASS)].any()
    assert (teff[caught] > WR_LIKE_MIN_TEFF).all()
    assert (c["mact"][caught] < WR_LIKE_MAX_MASS_RATIO * c["mini"][caught]).all()
    if family == "padova":
        old_hot = (age > 8.0) & (teff > WR_LIKE_MIN_TEFF)
        assert old_hot.sum() > 1000 and set(np.unique(c["phase"][old_hot])) == {6}


@pytest.mark.parametrize("family", ["parsec", "padova"])
def test_wr_like_rule_spares_metal_poor_zero_age_o_stars(family):
    """The zero-age and main-sequence O stars above 50 kK of metal-poor isochrones (Z <= 0.001, log t <= 6.3:
    PARSEC 34-349 M_sun, Padova 41-118 M_sun; >= 0.98 of their mass up to 120 M_sun) are not WR-like: the
    rule on initial mass and Teff alone gave them all WN spectra (57 % of L_bol at [M/H] -1, 1 Myr)."""
    from smnet_sps.backend import WR_LIKE_MIN_MASS, WR_LIKE_MIN_TEFF, wr_like
    from smnet_sps.isochrones import load_isochrones
    iso = load_isochrones(family)
    c = iso.columns
    teff, (age, zrow) = 10.0 ** c["logt"], _ages(iso, z=True)
    o_stars = (zrow <= 0.001) & (age <= 6.3) & (c["mini"] >= WR_LIKE_MIN_MASS) & (teff > WR_LIKE_MIN_TEFF)
    assert o_stars.sum() > 1000
    in_imf = o_stars & (c["mini"] <= 120.0)
    assert (c["mact"][in_imf] >= 0.98 * c["mini"][in_imf]).all()
    assert not wr_like(c["mini"], c["mact"], teff)[o_stars].any()


def test_dedicated_leaves_metal_poor_zero_age_o_stars_to_the_model(default_generator):
    """[M/H] -1, 1 Myr: the 50-55 kK zero-age O stars carry 57 % (PARSEC) / 42 % (Padova) of L_bol; with
    ``special_phases="dedicated"`` they got WN spectra (outside_fraction 0) and now keep the model's
    extrapolations: the SSP is the "model" one (docs/ssp.md, "Young populations"; to 5e-7: a "dedicated"
    backend also snaps keys onto its libraries' Teff faces, within half a key step, as before the rule)."""
    from astropy import units as u

    from smnet_sps.ssp import ssp_spectrum
    for family in ("parsec", "padova"):
        model, dedicated = (ssp_spectrum(1 * u.Myr, logzsol=-1.0, isochrones=family,
                                         generator=default_generator, special_phases=mode)
                            for mode in ("model", "dedicated"))
        np.testing.assert_allclose(dedicated.flux.value, model.flux.value, rtol=1e-5, atol=0)
        assert dedicated.meta["outside_fraction"] == model.meta["outside_fraction"] > 0.4


def test_dedicated_gives_wr_like_stars_the_phase9_spectra(dedicated_bb):
    """PARSEC Z = 0.014, log t 6.5 (no phase 9 in PARSEC): with the initial and current masses, the massive
    stripped stars above 50 kK get exactly what the same points flagged phase 9 get (CMFGEN, status
    "dedicated"); every other point what it got without the masses."""
    from smnet_sps.backend import wr_like
    from smnet_sps.isochrones import load_isochrones
    iso = load_isochrones("parsec")
    iz, ia = int(np.argmin(abs(iso.Z - 0.014))), int(np.argmin(abs(iso.log_age - 6.5)))
    sl = iso.rows(iz, ia)
    c = {k: v[sl] for k, v in iso.columns.items()}
    pts = dict(logt=c["logt"], logg=c["logg"], logz=np.log10(iso.Z[iz] / iso.zsun), logl=c["logl"],
               co=c["co"])
    caught = wr_like(c["mini"], c["mact"], 10.0 ** c["logt"])
    assert caught.sum() > 20 and not np.any(c["phase"] == 9)
    with_mass = dedicated_bb.point_spectra(phase=c["phase"], mini=c["mini"], mact=c["mact"], **pts)
    as_phase9 = dedicated_bb.point_spectra(phase=np.where(caught, 9, c["phase"]), **pts)
    without = dedicated_bb.point_spectra(phase=c["phase"], **pts)
    assert np.array_equal(with_mass.llam, as_phase9.llam)
    assert np.array_equal(with_mass.status, as_phase9.status)
    assert (with_mass.status[caught] == STATUS["dedicated"]).all()
    assert np.array_equal(with_mass.llam[~caught], without.llam[~caught])
    assert (without.status[caught] != STATUS["dedicated"]).all()


def test_model_mode_keys_ignore_the_masses():
    """special_phases="model" (the default): the initial and current masses change no key, so no spectrum: its
    SSPs are bit-identical to those made before the rule (every young PARSEC and Padova point, log t <= 7)."""
    from smnet_sps.isochrones import load_isochrones
    be = StellarLibraryBackend("blackbody")
    for family in ("parsec", "padova"):
        iso = load_isochrones(family)
        c = iso.columns
        young = _ages(iso) <= 7.0
        args = (c["logt"][young], c["logg"][young], np.zeros(young.sum()), c["phase"][young], c["co"][young])
        assert np.array_equal(be.point_keys(*args, c["mini"][young], c["mact"][young]), be.point_keys(*args))


def test_point_spectra_refuses_bad_masses(dedicated_bb):
    from astropy import units as u
    kw = dict(teff=[100e3, 100e3], logg=5.0, logz=0.0, logl=5.0, phase=0)
    with pytest.raises(ValueError, match=r"mini = -3 \(index 1\) is negative"):
        dedicated_bb.point_spectra(mini=[20.0, -3.0], mact=5.0, **kw)
    with pytest.raises(ValueError, match=r"mact = -1 \(index 0\) is negative"):
        dedicated_bb.point_spectra(mini=20.0, mact=[-1.0, 5.0], **kw)
    with pytest.raises(ValueError, match="mini has 3 values for 2 points"):
        dedicated_bb.point_spectra(mini=[20.0, 20.0, 20.0], mact=5.0, **kw)
    with pytest.raises(ValueError, match="mini must be initial masses in M_sun"):
        dedicated_bb.point_spectra(mini=[20.0, 20.0] * u.K, mact=5.0, **kw)
    with pytest.raises(ValueError, match="mact must be current masses in M_sun"):
        dedicated_bb.point_spectra(mini=20.0, mact=[5.0, 5.0] * u.K, **kw)
    # the rule needs both masses: one alone was half the rule (zero-age O stars became WR stars)
    for one in ({"mini": 20.0}, {"mact": 5.0}):
        with pytest.raises(ValueError, match="needs both the initial .mini. and current .mact. masses"):
            dedicated_bb.point_spectra(**one, **kw)
        with pytest.raises(ValueError, match="give both, or neither"):
            dedicated_bb.point_keys(np.log10([100e3, 100e3]), 5.0, 0.0, 0, **one)
    in_kg = dedicated_bb.point_spectra(mini=(np.array([20.0, 5.0]) * u.M_sun).to(u.kg),
                                       mact=(np.array([5.0, 2.0]) * u.M_sun).to(u.kg), **kw)
    assert list(in_kg.status) == [STATUS["dedicated"], STATUS["generator"]]
    # massive and hot but holding 0.9 of its mass: an O star, not WR-like
    kept = dedicated_bb.point_spectra(mini=[20.0, 20.0], mact=[18.0, 15.0], **kw)
    assert list(kept.status) == [STATUS["generator"], STATUS["dedicated"]]
    # "model" ignores the masses, one or both
    assert StellarLibraryBackend("blackbody").point_spectra(mini=20.0, **kw).status[0] == STATUS["generator"]


def test_dedicated_he_ionising_photons_of_young_parsec_ssps(default_generator):
    """PARSEC 3 Myr: the stripped stars' CMFGEN spectra lower log Q(He+)/Q(H) of the SSP from the model's
    -1.29 to -1.79 at [M/H] 0 and from -2.65 to -5.74 at +0.3 (docs/ssp.md, "Young populations"). At
    [M/H] 0 it stays above Starburst99 / BPASS's -3..-2: the solar CMFGEN WN spectrum at 120 kK (held for
    the 120-220 kK stars) has a thin He+ continuum, log Q(He+)/Q(H) -1.08."""
    from astropy import units as u

    from smnet_sps.ssp import ssp_spectrum
    from test_young_ssp import _photon_rate
    ratio = {}
    for lz in (0.0, 0.3):
        for mode in ("model", "dedicated"):
            s = ssp_spectrum(3 * u.Myr, logzsol=lz, generator=default_generator, special_phases=mode)
            ratio[lz, mode] = np.log10(_photon_rate(s, 228.0) / _photon_rate(s, 912.0))
    assert ratio[0.0, "dedicated"] < ratio[0.0, "model"] - 0.4
    assert ratio[0.3, "dedicated"] < -3.0 < ratio[0.3, "model"] + 0.5

