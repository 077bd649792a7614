"""Madau (1995) IGM transmission against its published coefficients and synphot's implementation."""
import numpy as np
import pytest

from smnet_sps.igm import igm_transmission, madau_tau


@pytest.mark.parametrize("z", [0.5, 2.0, 3.0, 4.5])
def test_matches_synphot_madau(z):
    """synphot.reddening.etau_madau is BPZ's Madau (1995): Ly alpha-delta, footnote-3 continuum, no metals."""
    from synphot.reddening import etau_madau
    rest = np.linspace(700.0, 1400.0, 2000)
    rest = rest[np.all(np.abs(rest[:, None] - np.array([1216, 1026, 973, 950, 912])) > 2.0, axis=1)]
    ref = etau_madau(rest * (1 + z), z)(rest * (1 + z)).value
    ours = np.exp(-madau_tau(rest, z, n_lines=4, metals=False, cap=False))
    ok = ref > 1e-6
    # synphot rounds the line and limit wavelengths (1216, 1026, 973, 950, 912 A; FSPS 1215.67, ..., 911.75),
    # which moves tau by up to ~1 % (and by ~0.005 just below the Lyman limit, where tau starts from 0)
    assert np.allclose(-np.log(ours[ok]), -np.log(ref[ok]), rtol=1e-2, atol=5e-3)
    assert np.all(ours[rest > 1220] == 1.0)


def test_published_lyman_alpha_forest_formula():
    """Between Ly beta and alpha: tau = 0.0036 (l_obs/1216)^3.46 + 0.0017 (l_obs/1216)^1.68 (Madau 1995)."""
    z = 3.0
    rest = np.linspace(1030.0, 1210.0, 50)
    lobs = rest * (1 + z)
    expected = 0.0036 * (lobs / 1215.67) ** 3.46 + 0.0017 * (lobs / 1215.67) ** 1.68
    assert np.allclose(madau_tau(rest, z), expected, rtol=1e-12)
    # mean Ly alpha decrement D_A over 1050-1170 A rest grows with redshift and is ~0.2-0.4 at z = 3
    da = [1 - igm_transmission(np.linspace(1050, 1170, 200), zz).mean() for zz in (2.0, 3.0, 4.0)]
    assert da[0] < da[1] < da[2] and 0.15 < da[1] < 0.45


def test_factor_zero_redshift_and_cap():
    rest = np.geomspace(91.0, 2000.0, 500)
    assert np.all(igm_transmission(rest, 0.0) == 1.0)
    t1, t2 = igm_transmission(rest, 3.0, 1.0), igm_transmission(rest, 3.0, 2.0)
    assert np.allclose(t2, t1 ** 2)
    tau = madau_tau(rest, 6.0)
    k = np.argmax(tau)
    assert np.all(tau[:k] == tau[k])           # held at its maximum bluewards (as FSPS)
    with pytest.raises(ValueError, match="igm_factor"):
        igm_transmission(rest, 3.0, -1.0)
    with pytest.raises(ValueError, match="redshift"):
        madau_tau(rest, -0.5)


def test_transmission_at_a_wavelength_does_not_depend_on_the_others():
    """FSPS's hold at the maximum below the Lyman limit was taken over the wavelengths given: 300 A at z = 3
    was 0.067 alone and 0.020 beside 600 A; a scalar wavelength raised IndexError."""
    from smnet_sps.igm import igm_transmission, madau_tau
    alone = igm_transmission([300.0], 3.0)[0]
    assert igm_transmission([300.0, 600.0], 3.0)[0] == pytest.approx(alone, rel=1e-12)
    grid = np.linspace(100.0, 2000.0, 777)
    on_grid = igm_transmission(grid, 3.0)
    np.testing.assert_allclose(on_grid[::50], [igm_transmission([g], 3.0)[0] for g in grid[::50]], rtol=1e-12)
    assert np.ndim(madau_tau(800.0, 3.0)) == 0 and madau_tau(800.0, 3.0) == madau_tau([800.0], 3.0)[0]
    # held below the maximum: tau is flat there, and the maximum of the unheld fit
    fine = np.linspace(50.0, 911.0, 3000)
    tau = madau_tau(fine, 3.0)
    assert np.all(np.diff(tau[: np.argmax(tau)]) == 0)


def test_wavelengths_in_other_units_are_converted_and_bad_ones_refused():
    """A Quantity's unit was dropped (100 nm gave the transmission at 100 A: 0.0198 instead of 0.655 at
    z = 3), and NaN / negative / zero wavelengths were accepted ([nan, -100, 0] -> [1.0, 0.0198, 0.0198])."""
    from astropy import units as u
    lam = np.array([950.0, 1000.0, 1100.0])
    expected = igm_transmission(lam, 3.0)
    np.testing.assert_allclose(igm_transmission(lam / 10 * u.nm, 3.0), expected, rtol=1e-12)
    np.testing.assert_allclose(madau_tau(lam * u.AA, 3.0), -np.log(expected), rtol=1e-12)
    assert 0.6 < float(igm_transmission(100 * u.nm, 3.0)) < 0.7
    for bad in (np.nan, np.inf, -100.0, 0.0):
        with pytest.raises(ValueError, match=r"wave_rest must be finite and > 0 \[Angstrom\]; got .*1 of 2"):
            igm_transmission(np.array([1000.0, bad]), 3.0)
    with pytest.raises(ValueError, match="must be a wavelength"):
        madau_tau(1.0 * u.kg, 3.0)


def _fsps_igm_absorb_tau(rest, z):
    """FSPS igm_absorb.f90 on a fine increasing grid: every term at any l_obs, then held at MAXLOC."""
    lines = np.array([1215.67, 1025.72, 972.537, 949.743, 937.803, 930.748, 926.226, 923.150, 920.963,
                      919.352, 918.129, 917.181, 916.429, 915.824, 915.329, 914.919, 914.576])
    coeffs = np.array([0.0036, 0.0017, 0.0011846, 0.0009410, 0.0007960, 0.0006967, 0.0006236, 0.0005665,
                       0.0005200, 0.0004817, 0.0004487, 0.0004200, 0.0003947, 0.000372, 0.000352, 0.0003334,
                       0.00031644])
    z1, lobs = 1 + z, rest * (1 + z)
    tau = np.zeros_like(rest)
    for lj, aj in zip(lines, coeffs):
        tau += np.where(rest <= lj, aj * (lobs / lj) ** 3.46, 0.0)
    tau += np.where(rest <= lines[0], 0.0017 * (lobs / lines[0]) ** 1.68, 0.0)
    xc = lobs / 911.75
    tau += np.where(rest <= 911.75, 0.25 * xc ** 3 * (z1 ** 0.46 - xc ** 0.46) + 9.4 * xc ** 1.5
                    * (z1 ** 0.18 - xc ** 0.18) - 0.7 * xc ** 3 * (xc ** -1.32 - z1 ** -1.32)
                    - 0.023 * (z1 ** 1.68 - xc ** 1.68), 0.0)
    k = np.argmax(tau)
    tau[:k] = tau[k]
    return tau


def test_no_absorbers_at_negative_redshift():
    """Madau's terms act only where their absorbers lie between source and observer (line j at l_obs > l_j,
    the footnote-3 continuum at l_obs > 911.75 A). FSPS applied them at any l_obs: below 500 A rest the
    transmission was 0.776 at z = 0.001 (but 1 at z = 0) and 0.742 at z = 0.1; rest 1100 A at z = 0.1
    (l_obs 1210 A, bluer than Ly alpha itself) lost 0.5 % to Ly alpha absorbers at z_abs < 0."""
    # -> 1 as z -> 0 (was 0.776 at z = 1e-3), but for the forest at z_abs ~ 0 just redwards of each line in
    # the observed frame (Ly beta: tau 0.0017)
    assert np.all(igm_transmission(np.linspace(50.0, 1200.0, 2000), 1e-4) > 0.998)
    assert igm_transmission([1100.0], 0.1)[0] == 1.0               # l_obs 1210 A < 1215.67 A (was 0.9948)
    # at l_obs > l_alpha the published forest law, at l_obs just above 911.75 A the footnote-3 continuum alone
    z = 0.1
    lobs = 1200.0 * (1 + z)
    assert madau_tau([1200.0], z)[0] == pytest.approx(0.0036 * (lobs / 1215.67) ** 3.46
                                                      + 0.0017 * (lobs / 1215.67) ** 1.68, rel=1e-12)
    xc, z1 = 913.0 / 911.75, 1 + z
    cont = (0.25 * xc ** 3 * (z1 ** 0.46 - xc ** 0.46) + 9.4 * xc ** 1.5 * (z1 ** 0.18 - xc ** 0.18)
            - 0.7 * xc ** 3 * (xc ** -1.32 - z1 ** -1.32) - 0.023 * (z1 ** 1.68 - xc ** 1.68))
    assert madau_tau([913.0 / z1], z, cap=False)[0] == pytest.approx(cont, rel=1e-12)
    assert np.all(igm_transmission(np.linspace(50.0, 500.0, 50), 0.1) > 0.9)        # was 0.742
    # where FSPS's maximum lies at l_obs > 1216 A (z >= 1.45) nothing changes
    fine = np.linspace(1.0, 1300.0, 13000)
    for z in (1.5, 3.0):
        np.testing.assert_allclose(madau_tau(fine, z), _fsps_igm_absorb_tau(fine, z), rtol=1e-7, atol=1e-12)


def test_a_boolean_redshift_or_factor_is_refused():
    """igm_transmission(w, True) ran as z = 1 without a word."""
    w = np.array([900.0, 1100.0, 1300.0])
    for bad in (True, np.bool_(True), "1"):
        with pytest.raises(ValueError, match="redshift"):
            igm_transmission(w, bad)
    # None (a TypeError from np.isfinite) and an array ("truth value ... ambiguous") did not name igm_factor
    for bad in (True, None, np.array([1.0, 2.0]), [1.0], "1", np.nan, -1.0):
        with pytest.raises(ValueError, match="igm_factor .* one finite number >= 0"):
            igm_transmission(w, 2.0, igm_factor=bad)
    assert igm_transmission(w, 2.0, igm_factor=np.float32(2.0))[0] == pytest.approx(
        igm_transmission(w, 2.0)[0] ** 2)
    assert igm_transmission(w, 0)[0] == 1.0
