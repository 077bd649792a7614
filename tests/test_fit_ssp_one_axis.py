"""Fitting with an SSP grid of one metallicity (a user's CMD isochrone file of one Z, CMD's commonest
download) or of one age: SSPInterpolator refused such grids ('needs at least 2 ages and 2 metallicities'), so
fit_ssp and `smnet-sps fit --ssp-grid` could not use them. That axis is now held at the grid's one value.

The grids are built with ssp_grid from the CMD fixture cut to one Z or one age, as test_cmd_isochrones does.
"""
import json
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.fit import SpectralOperator, _ssp_model_fn, fit_ssp
from smnet_sps.ssp_torch import SSPInterpolator
from test_cmd_isochrones import CMD_FILE, _single

LOGZ_017 = float(np.log10(0.017 / 0.0152))       # [M/H] of the fixture's Z = 0.017 (PARSEC's zsun)


def _grid(path, generator, Z=None):
    from smnet_sps.ssp import ssp_grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ssp_grid(None, Z, isochrones=path, generator=generator, progress=False)


def _one_z(tmp_path, generator):
    return _grid(_single(tmp_path, lambda z, a: z == "0.0170000", "one_z.dat"), generator)


def _one_age(tmp_path, generator, Z=(0.014, 0.0155, 0.017)):
    return _grid(_single(tmp_path, lambda z, a: a == "9.9500", "one_age.dat"), generator, list(Z))


def _mock(interp, theta, seed, snr=100.0):
    """(wave, flux, ivar): the fit's own model at theta = (log age, [M/H], sigma, A_V, rv), 3500-9000 A, with
    Gaussian noise at S/N ``snr``."""
    wave = interp.wavelength[(interp.wavelength > 3500) & (interp.wavelength < 9000)]
    one = np.ones(wave.size)
    op = SpectralOperator(interp.wavelength, wave, one, one, np.ones(wave.size, bool), max_rv=1000,
                          max_sigma=1000)
    with torch.no_grad():
        m = _ssp_model_fn(interp, op)(torch.tensor([list(theta)], dtype=torch.float64))[0].numpy()
    err = m / snr
    return wave, m + err * np.random.default_rng(seed).standard_normal(m.size), 1 / err**2


def test_an_interpolator_of_one_metallicity_is_that_row_of_a_two_z_grid_and_differentiable_in_age(
        tmp_path, blackbody):
    """One Z: the grid's spectra exactly on the [M/H] axis (the Z = 0.017 row of the two-Z grid, at any age),
    its nodes bit for bit (the next test), the age derivative as finite differences, d/d[M/H] 0; another
    [M/H] is refused naming the one value."""
    one, two = SSPInterpolator(_one_z(tmp_path, blackbody)), SSPInterpolator(_grid(CMD_FILE, blackbody))
    assert one.bounds[1] == (pytest.approx(LOGZ_017, abs=1e-12),) * 2 and one.logz.size == 1
    assert two.logz[1] == one.logz[0]
    for la in (9.95, 9.97, 9.9871, 10.0):
        np.testing.assert_allclose(one(la, one.logz[0]).numpy(), two(la, two.logz[1]).numpy(), rtol=1e-13,
                                   atol=0)
    nodes = one(torch.as_tensor(one.log_age), torch.as_tensor(one.logz)).numpy()
    np.testing.assert_allclose(nodes, _one_z(tmp_path, blackbody).ssp_flux[0], rtol=1e-12, atol=0)
    # through the fit's model (Calzetti, shift, broadening): the free parameters' gradient is the finite
    # differences'; [M/H] stays in the graph with derivative 0
    wave = one.wavelength[(one.wavelength > 4000) & (one.wavelength < 8000)]
    unit = np.ones(wave.size)
    op = SpectralOperator(one.wavelength, wave, unit, unit, unit > 0, max_rv=500.0, max_sigma=800.0)
    spec = _ssp_model_fn(one, op)
    held = torch.tensor([[one.logz[0]]], dtype=torch.float64)
    free = torch.tensor([[9.973, 250.0, 0.4, 21.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spec(torch.cat([t[:, :1], held, t[:, 1:]], 1))[:, ::7], (free,),
                                    eps=1e-5, atol=1e-7, rtol=1e-3)
    la = torch.tensor([9.97], dtype=torch.float64, requires_grad=True)
    lz = torch.tensor([one.logz[0]], dtype=torch.float64, requires_grad=True)
    d_age, d_mh = torch.autograd.grad(one(la, lz)[0, np.searchsorted(one.wavelength, 5500.0)], (la, lz))
    assert d_mh.item() == 0.0 and d_age.item() != 0.0
    with pytest.raises(ValueError, match=r"the SSP grid holds one logz, 0\.0486053\d* \(\[M/H\], dex\): logz "
                                         r"must be that value; got \[0\.\]"):
        one(9.97, 0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_an_interpolator_gives_the_grids_spectra_bit_for_bit_at_its_nodes(tmp_path, blackbody, dtype):
    """At the one [M/H] of a one-Z grid (and at every node of a grid of two Z) and a tabulated age, the
    grid's spectrum bit for bit, as ssp_spectrum gives it: the geometric age step returned exp(log f) rescaled
    by its integral, f to 8e-15 (float64). The age derivative there is still the interpolation's (that of
    the interval above the node)."""
    for grid in (_one_z(tmp_path, blackbody), _grid(CMD_FILE, blackbody)):
        interp = SSPInterpolator(grid, dtype=dtype)
        for iz, lz in enumerate(interp.logz):
            got = interp(torch.as_tensor(interp.log_age), lz).numpy()
            np.testing.assert_array_equal(got, grid.ssp_flux[iz].astype(got.dtype))
    pixel = np.searchsorted(interp.wavelength, 5500.0)
    slopes = []
    for la in (interp.log_age[0], interp.log_age[0] + 1e-6):
        x = torch.tensor([la], dtype=torch.float64, requires_grad=True)
        slopes.append(torch.autograd.grad(interp(x, interp.logz[0])[0, pixel], x)[0].item())
    assert slopes[0] != 0 and slopes[0] == pytest.approx(slopes[1], rel=1e-3)


def test_an_interpolator_of_one_age_or_one_ssp_gives_the_grids_spectra(tmp_path, blackbody):
    """One age: the grid's spectra exactly on the age axis, linear in [M/H] (d/d[M/H] as finite differences);
    one age and one Z (a single SSP): that spectrum, at its one point only."""
    grid = _one_age(tmp_path, blackbody)
    interp = SSPInterpolator(grid)
    assert interp.bounds[0] == (9.95, 9.95)
    for iz, lz in enumerate(interp.logz):
        np.testing.assert_array_equal(interp(9.95, lz).numpy()[0], grid.ssp_flux[iz, 0])
    # halfway in [M/H]: the mean of the two neighbours' spectra
    mid = 0.5 * (interp.logz[0] + interp.logz[1])
    np.testing.assert_allclose(interp(9.95, mid).numpy()[0], grid.ssp_flux[:2, 0].mean(0), rtol=1e-12)
    lz = torch.tensor([mid + 0.003], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: interp(9.95, z)[:, ::50], (lz,), eps=1e-6, atol=1e-9, rtol=1e-4)
    with pytest.raises(ValueError, match=r"the SSP grid holds one log_age, 9\.95 \(log10 yr\)"):
        interp(10.0, mid)
    single = SSPInterpolator(_one_age(tmp_path, blackbody, Z=(0.017,)))
    np.testing.assert_array_equal(single(9.95, LOGZ_017).numpy()[0],
                                  _one_age(tmp_path, blackbody, Z=(0.017,)).ssp_flux[0, 0])
    with pytest.raises(ValueError, match="the SSP grid holds one logz"):
        single(9.95, 0.0)


@pytest.mark.parametrize("axis", ["logz", "log_age"])
def test_the_one_value_an_error_names_is_taken_back(tmp_path, blackbody, axis):
    """A one-Z grid of Z = 0.01 (a CMD download's Z) and a one-age grid of 13.7 Gyr: the error named the value
    to 7 digits (-0.1818436, 10.13672), and that value typed back (float64) was refused as "must be that
    value; got [-0.1818436]", 1.2e-8 (5.7e-7) off. The value named is now taken, giving the grid's spectra."""
    import re
    if axis == "logz":
        grid = _one_z(tmp_path, blackbody)._replace(ssp_lgmet=np.array([np.log10(0.01)]))
    else:
        grid = _one_age(tmp_path, blackbody)._replace(ssp_lg_age_gyr=np.array([np.log10(13.7)]))
    interp = SSPInterpolator(grid)
    one = getattr(interp, axis)[0]
    point = {"log_age": 9.97 if axis == "logz" else one, "logz": interp.logz[1] if axis == "log_age" else one}

    def ask(value):          # float64 values, as a script passes numpy's
        return interp(**{**{k: np.array([v]) for k, v in point.items()}, axis: np.array([value])})

    with pytest.raises(ValueError, match=f"the SSP grid holds one {axis}, ") as refused:
        ask(one + 0.1)
    named = float(re.search(rf"holds one {axis}, (\S+) \(", str(refused.value)).group(1))
    np.testing.assert_array_equal(ask(named).numpy(), ask(one).numpy())


@pytest.mark.parametrize("axis", ["logz", "log_age"])
def test_the_grid_bounds_an_error_names_are_taken_back(tmp_path, blackbody, axis):
    """Grid Z 1e-4 - 0.03 with zsun 0.0152: "logz must lie inside the SSP grid, -2.182-0.295" (3 decimals) for
    the true -2.18184, so the lower bound typed back was refused, and a refused -2.18199992 looked inside the
    printed range. The bounds are named to 12 digits: each typed back is taken, giving the bound's spectra."""
    import re
    grid = _grid(CMD_FILE, blackbody)._replace(ssp_lgmet=np.log10([1e-4, 0.03]))
    interp = SSPInterpolator(grid, zsun=0.0152)
    lo, hi = interp.bounds[0 if axis == "log_age" else 1]
    point = {"log_age": np.array([float(np.mean(interp.log_age))]), "logz": np.array([-1.0])}
    # "LO to HI"; until 2026-12 "LO-HI" (read too, so the old message fails on its bound, not on this)
    bounds_named = r"inside the SSP grid, (-?[\d.]+)(?: to |-)(-?[\d.]+) \("

    def ask(value):          # float64 values, as a script passes numpy's
        return interp(**{**point, axis: np.array([value])})

    for outside, bound in ((lo - 0.1, lo), (hi + 0.1, hi)):
        with pytest.raises(ValueError, match=f"{axis} must lie inside the SSP grid, ") as refused:
            ask(outside)
        named = re.search(bounds_named, str(refused.value)).groups()
        typed = float(named[0] if bound == lo else named[1])
        # 12 digits: within 5e-12 of the bound, so its spectra to ~1e-11 (the weight is not exactly 0)
        ref = ask(bound).numpy()
        np.testing.assert_allclose(ask(typed).numpy(), ref, rtol=1e-9, atol=1e-12 * ref.max())
    if axis == "logz":           # the bound's 3 decimals, refused (below the grid), outside what is named
        with pytest.raises(ValueError, match="SSP grid, ") as refused:
            ask(round(lo, 3))
        assert round(lo, 3) < float(re.search(bounds_named, str(refused.value)).group(1))


@pytest.fixture(scope="module")
def one_z_grid(tmp_path_factory, default_generator):
    torch.set_num_threads(1)
    return _one_z(tmp_path_factory.mktemp("one_z"), default_generator)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_fit_ssp_with_a_grid_of_one_metallicity_holds_mh_and_recovers_the_rest(one_z_grid):
    """A mock made from the one-Z grid (log age 9.97, sigma 200, A_V 0.4, rv 120; S/N 100): age, A_V and rv
    recovered, [M/H] reported as the grid's own value exactly, error 0, held in meta; fixing it at that value
    (to 1e-4 dex) gives the same fit, another value or bounds on it are refused naming it. (The starts'
    spacing in [M/H] steps was the median of no steps: NaN, numpy's 'Mean of empty slice'.)"""
    interp = SSPInterpolator(one_z_grid)
    truth = (9.97, interp.logz[0], 200.0, 0.4, 120.0)
    for seed in (1, 2):
        wave, flux, ivar = _mock(interp, truth, seed)
        r = fit_ssp(wave, flux, ivar, templates=one_z_grid, degree=1)
        assert r.logz == interp.logz[0] and r.logz_err == 0.0 and r.meta["held"] == ["logz"]
        assert r.meta["fixed"] == {} and "logz" not in r.at_bound
        assert r.covariance[1].tolist() == [0.0] * 5
        assert abs(r.log_age - 9.97) < max(3 * r.log_age_err, 0.01)
        assert abs(r.av - 0.4) < max(3 * r.av_err, 0.05)
        assert abs(r.rv - 120.0) < max(3 * r.rv_err, 20.0)
        assert abs(r.sigma - 200.0) < max(3 * r.sigma_err, 40.0)
        assert r.chi2_red < 1.3
        # the dof count no [M/H]: pixels - 4 parameters - 2 continuum coefficients
        assert r.dof == wave.size - 4 - 2
    again = fit_ssp(wave, flux, ivar, templates=interp, degree=1, fixed={"logz": round(interp.logz[0], 5)})
    assert again.meta["fixed"] == {"logz": interp.logz[0]} and again.logz == interp.logz[0]
    np.testing.assert_allclose(again.values, r.values, rtol=1e-6)
    # bounds written for a grid of many Z that hold its one value: held there, the same fit (the review:
    # they were refused)
    bounded = fit_ssp(wave, flux, ivar, templates=interp, degree=1, bounds={"logz": (-0.5, 0.5)})
    assert bounded.logz == interp.logz[0] and bounded.meta["held"] == ["logz"]
    np.testing.assert_allclose(bounded.values, r.values, rtol=1e-6)
    only = r"the SSP grid holds one \[M/H\], 0\.04860533: logz is held there"
    for kw, match in (({"fixed": {"logz": 0.0}}, only + r"; fixed\['logz'\] = 0 is not that value"),
                      ({"bounds": {"logz": (0.1, 0.5)}},
                       only + r", so bounds\['logz'\] = \(0\.1, 0\.5\) leave it out: drop them \(or pass "
                              r"fixed=\{'logz': 0\.0486053")):
        with pytest.raises(ValueError, match=match):
            fit_ssp(wave, flux, ivar, templates=interp, **kw)


def test_fit_ssp_with_a_grid_of_one_age_holds_the_age_and_recovers_mh(tmp_path, default_generator):
    """A one-age grid (three Z): [M/H] recovered, log age held at 9.95; emcee gives no walker to it."""
    torch.set_num_threads(1)
    grid = _one_age(tmp_path, default_generator)
    interp = SSPInterpolator(grid)
    wave, flux, ivar = _mock(interp, (9.95, 0.0, 200.0, 0.4, 120.0), 1)
    r = fit_ssp(wave, flux, ivar, templates=grid, degree=1)
    assert r.log_age == 9.95 and r.log_age_err == 0.0 and r.meta["held"] == ["log_age"]
    assert abs(r.logz - 0.0) < max(3 * r.logz_err, 0.02)
    assert abs(r.av - 0.4) < max(3 * r.av_err, 0.05)
    with pytest.raises(ValueError, match=r"the SSP grid holds one age \(log10 yr\), 9\.95: log_age is held "
                                         r"there; fixed\['log_age'\] = 10 is not that value"):
        fit_ssp(wave, flux, ivar, templates=grid, fixed={"log_age": 10.0})
    mc = fit_ssp(wave, flux, ivar, templates=interp, degree=1, uncertainty="emcee",
                 emcee_kwargs={"n_steps": 60, "n_burn": 20})
    assert np.all(mc.samples[:, 0] == 9.95) and mc.log_age_err == 0.0 and np.isfinite(mc.logz_err)


def test_cli_fit_with_a_grid_file_of_one_metallicity(tmp_path, one_z_grid, capsys):
    """`smnet-sps fit --ssp-grid` of a one-Z grid file: exit 0, the JSON holds [M/H] at the grid's value with
    error 0 and lists it in `held` (not in `fixed`); --fix of another [M/H] exits 1 naming the grid's."""
    from smnet_sps.cli import main
    from smnet_sps.ssp import save_ssp_grid
    path = save_ssp_grid(one_z_grid, tmp_path / "one_z_grid.npz")
    interp = SSPInterpolator(one_z_grid)
    wave, flux, ivar = _mock(interp, (9.97, interp.logz[0], 200.0, 0.4, 120.0), 3)
    spec = tmp_path / "gal.txt"
    np.savetxt(spec, np.column_stack([wave, flux, 1 / np.sqrt(ivar)]), header="wave flux err")
    out = tmp_path / "gal.json"
    assert main(["fit", str(spec), "--ssp-grid", str(path), "--degree", "1", "--out", str(out)]) == 0
    assert "(logz held at the one value the SSP grid has: not fitted, error 0)" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["logz"] == pytest.approx(LOGZ_017, abs=1e-12) and res["logz_err"] == 0.0
    assert res["held"] == ["logz"] and res["fixed"] == {}
    assert abs(res["log_age"] - 9.97) < max(3 * res["log_age_err"], 0.01)
    assert abs(res["rv"] - 120.0) < max(3 * res["rv_err"], 20.0)
    assert main(["fit", str(spec), "--ssp-grid", str(path), "--fix", "logz=0"]) == 1
    assert "the SSP grid holds one [M/H], 0.04860533: logz is held there" in capsys.readouterr().err
