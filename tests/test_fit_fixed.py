"""Holding a parameter at a known value: ``fixed=`` of fit_star / fit_ssp and ``smnet-sps fit --fix``.

Before it, a user who knew a star's [M/H] (or log g from asteroseismology, or a galaxy's A_V) could only pass
narrow bounds (``bounds`` needs lo < hi): the parameter was then fitted inside them, got an error, a degree of
freedom and emcee walkers."""
import json
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.fit import FitWarning, fit_ssp, fit_star, mock_star
from test_fit import _toy_fit_files, _toy_galaxy, _toy_ssp_grid


@pytest.fixture(scope="module")
def gen(default_generator):
    torch.set_num_threads(1)
    return default_generator


_STARS = ((5200.0, 3.0, -0.5), (4800.0, 2.5, -1.0), (6200.0, 4.2, -0.3), (4300.0, 4.6, 0.1))


def test_a_known_metallicity_is_held_and_teff_logg_come_out_at_least_as_well(gen):
    """Four mocks (S/N 40, rv 35 km/s) fitted free and with [M/H] fixed at the truth: the fixed value is
    reported exactly, with error 0, outside the covariance and the degrees of freedom, and Teff / log g are
    recovered at least as well (rms about the truth) with errors no larger (conditional on [M/H])."""
    d_free, d_fixed = [], []
    for seed, (teff, logg, logz) in enumerate(_STARS):
        w, f, iv, _ = mock_star(np.array([4000.0, 7000.0]), teff, logg, logz, 35.0, snr=40.0, generator=gen,
                                seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            free = fit_star(w, f, iv, generator=gen)
            held = fit_star(w, f, iv, generator=gen, fixed={"logz": logz})
        assert held.logz == logz and held.logz_err == 0.0          # exactly, not (v / scale) * scale
        assert np.all(held.covariance[2] == 0) and np.all(held.covariance[:, 2] == 0)
        assert held.dof == free.dof + 1
        assert held.meta["fixed"] == {"logz": logz} and held.meta["held"] == ["logz"]
        d = held.as_dict(json_safe=True)
        assert d["fixed"] == {"logz": logz} and d["held"] == ["logz"] and d["logz_err"] == 0.0
        json.dumps(d, allow_nan=False)
        assert free.meta["fixed"] == {} and free.meta["held"] == []
        for name in ("teff", "logg", "rv"):
            assert getattr(held, name + "_err") <= 1.05 * getattr(free, name + "_err")
        d_free.append([free.teff - teff, free.logg - logg])
        d_fixed.append([held.teff - teff, held.logg - logg])
    rms_free, rms_fixed = (np.sqrt(np.mean(np.square(x), 0)) for x in (d_free, d_fixed))
    assert np.all(rms_fixed <= 1.1 * rms_free), (rms_fixed, rms_free)


def test_emcee_runs_with_a_fixed_parameter(gen):
    """A fixed log g gets no walkers: every sample holds it exactly, its spread is 0, and the free
    parameters' spread is the sampler's (of the same order as the conditional Laplace errors)."""
    w, f, iv, _ = mock_star(np.array([4000.0, 6500.0]), 5800.0, 4.4, -0.2, snr=50.0, generator=gen, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # no numpy warnings from a collapsed sampler
        warnings.simplefilter("ignore", FitWarning)
        lap = fit_star(w, f, iv, generator=gen, fixed={"logg": 4.4})
        mc = fit_star(w, f, iv, generator=gen, fixed={"logg": 4.4}, uncertainty="emcee",
                      emcee_kwargs={"n_steps": 80, "n_burn": 30})
    assert np.all(mc.samples[:, 1] == 4.4) and mc.logg == 4.4 and mc.logg_err == 0.0
    assert mc.dof == lap.dof == np.count_nonzero(lap.ivar > 0) - 3 - 4
    for name in ("teff", "logz"):
        assert 0.4 < getattr(mc, name + "_err") / getattr(lap, name + "_err") < 2.5
    assert abs(lap.teff - 5800.0) < 4 * lap.teff_err


@pytest.mark.parametrize("kw, match", [
    ({"fixed": {"mh": -0.3}}, r"unknown fixed parameter 'mh'; fit_star's parameters are \('teff'"),
    ({"fixed": {"logz": -0.3}, "bounds": {"logz": (-0.5, 0.0)}}, "'logz' is both fixed"),
    ({"fixed": {"logg": 9.5}}, r"fixed\['logg'\] = 9.5 lies outside fit_star's range for logg, -?\d"),
    ({"fixed": {"rv": 1500.0}}, r"fixed\['rv'\] = 1500 lies outside fit_star's range for rv, -1000 .. 1000"),
    ({"fixed": {"rv": 20.0}, "rv_guess": 300.0}, "rv is fixed at 20 km/s, so there is no velocity to search"),
    ({"fixed": {"teff": "5000"}}, r"fixed\['teff'\] must be a finite number"),
    ({"fixed": {"teff": 5000.0, "logg": 4.0, "logz": 0.0, "rv": 0.0}}, "nothing is left to fit"),
    ({"fixed": [("logz", 0.0)]}, "fixed must be a dict name -> value"),
])
def test_fixed_conflicts_are_named_before_the_fit(gen, kw, match):
    w, f, iv, _ = mock_star(np.array([4000.0, 6500.0]), 5800.0, 4.4, 0.0, snr=50.0, generator=gen, seed=1)
    with pytest.raises(ValueError, match=match):
        fit_star(w, f, iv, generator=gen, **kw)


def test_fit_ssp_holds_a_known_av(rng):
    """A galaxy's A_V known from elsewhere held at its value: reported exactly with error 0, the age and
    [M/H] recovered; a fixed sigma beyond max_sigma or an unknown name is named."""
    grid = _toy_ssp_grid(rng)
    wave, m = _toy_galaxy(grid)                       # log age 9.2, [M/H] -0.7, sigma 100, A_V 0.2, rv 0
    noisy = m + m / 100.0 * np.random.default_rng(5).standard_normal(m.size)
    ivar = (100.0 / m) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        free = fit_ssp(wave, noisy, ivar, templates=grid, n_starts=1)
        held = fit_ssp(wave, noisy, ivar, templates=grid, n_starts=1, fixed={"av": 0.2, "rv": 0.0})
    assert held.av == 0.2 and held.av_err == 0.0 and held.rv == 0.0 and held.rv_err == 0.0
    assert held.meta["fixed"] == {"av": 0.2, "rv": 0.0} and held.meta["held"] == ["av", "rv"]
    assert held.dof == free.dof + 2
    assert abs(held.log_age - 9.2) < 4 * held.log_age_err and abs(held.logz + 0.7) < 4 * held.logz_err
    for kw, match in (({"sigma": 2000.0}, r"fixed\['sigma'\] = 2000 lies outside fit_ssp's range for sigma, "
                                          r"0 .. 1000"),
                      ({"teff": 5000.0}, "unknown fixed parameter 'teff'; fit_ssp's parameters are")):
        with pytest.raises(ValueError, match=match):
            fit_ssp(wave, noisy, ivar, templates=grid, fixed=kw)


def test_cli_fit_fix_round_trip(tmp_path, rng, capsys):
    """`smnet-sps fit --fix NAME=VALUE` (repeatable, or a comma list) holds the parameters and the JSON
    records them; a malformed or contradictory --fix is named."""
    from smnet_sps.cli import main

    path, spec = _toy_fit_files(tmp_path, rng)
    for i, fix in enumerate((["--fix", "av=0.2", "--fix", "sigma=100"], ["--fix", "av=0.2,sigma=100"])):
        out = tmp_path / f"gal{i}.json"
        assert main(["fit", str(spec), "--ssp-grid", str(path), "--out", str(out), *fix]) == 0
        res = json.loads(out.read_text())
        assert res["fixed"] == {"av": 0.2, "sigma": 100.0} and res["held"] == ["sigma", "av"]
        assert res["av"] == 0.2 and res["av_err"] == 0.0 and res["sigma"] == 100.0 and res["sigma_err"] == 0.0
        assert res["log_age"] == pytest.approx(9.2, abs=0.03)
    capsys.readouterr()
    for fix, message in (
            (["--fix", "av"], "--fix 'av': expected NAME=VALUE"),
            (["--fix", "av=x"], "--fix 'av=x': expected NAME=VALUE"),
            (["--fix", "av=0.1", "--fix", "av=0.2"], "--fix names 'av' twice (av=0.1, av=0.2)"),
            (["--fix", "rv=10", "--rv-guess", "200"], "rv is fixed at 10 km/s"),
            (["--fix", "age=9"], "unknown fixed parameter 'age'; fit_ssp's parameters are")):
        assert main(["fit", str(spec), "--ssp-grid", str(path), *fix]) == 1
        assert message in capsys.readouterr().err


def test_cli_fit_star_fix(gen, tmp_path):
    """The star path of --fix: [M/H] held, recorded in the JSON."""
    from smnet_sps.cli import main

    w, f, iv, _ = mock_star(np.array([4000.0, 6500.0]), 5800.0, 4.4, -0.4, snr=80.0, generator=gen, seed=2)
    spec = tmp_path / "star.txt"
    np.savetxt(spec, np.column_stack([w, f, 1.0 / np.sqrt(iv)]))
    out = tmp_path / "star.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        assert main(["fit", str(spec), "--fix", "logz=-0.4", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["fixed"] == {"logz": -0.4} and res["logz"] == -0.4 and res["logz_err"] == 0.0
    assert abs(res["teff"] - 5800.0) < 4 * res["teff_err"]
