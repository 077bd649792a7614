"""smnet-sps fit --out writes strict JSON: a NaN error (a parameter stuck at a bound) is null."""
import json

import numpy as np
import pytest
import torch

from test_fit import _toy_galaxy, _toy_ssp_grid


def _strict(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_cli_fit_json_is_strict_when_an_error_is_nan(tmp_path, rng):
    from smnet_sps.cli import main
    from smnet_sps.fit import FitWarning, fit_ssp
    from smnet_sps.ssp import save_ssp_grid

    torch.set_num_threads(1)
    grid = _toy_ssp_grid(rng)
    grid = grid._replace(outside_fraction=np.zeros(grid.ssp_flux.shape[:2]))
    path = save_ssp_grid(grid, tmp_path / "grid.npz")
    # no velocity dispersion, data sharper than a model pixel: sigma ends on its bound 0, where the data
    # cannot move it -> error NaN
    wave, m = _toy_galaxy(grid, theta=(9.2, -0.7, 0.0, 0.2, 0.0), resolution_fwhm=5.0)
    spec = tmp_path / "gal.txt"
    np.savetxt(spec, np.column_stack([wave, m, m / 300]))
    out = tmp_path / "gal.json"
    with pytest.warns(FitWarning, match="bound of sigma"):
        assert main(["fit", str(spec), "--ssp-grid", str(path), "--out", str(out),
                     "--resolution-fwhm", "5"]) == 0
    res = _strict(out.read_text())
    assert "sigma" in res["at_bound"] and res["sigma_err"] is None
    from smnet_sps import __version__              # provenance, as in every output
    assert res["smnet_sps_version"] == __version__
    assert res["generator"] == grid.attrs.get("generator", "unknown")
    assert res["log_age"] == pytest.approx(9.2, abs=0.03) and res["log_age_err"] > 0
    # the Python API keeps NaN unless asked for JSON-safe values
    with pytest.warns(FitWarning):
        fit = fit_ssp(wave, m, (300 / m) ** 2, templates=path, resolution_fwhm=5.0)
    assert np.isnan(fit.as_dict()["sigma_err"]) and fit.as_dict(json_safe=True)["sigma_err"] is None


def test_fit_json_gives_the_units_of_its_numbers(tmp_path, rng):
    """A new user's MILES star: the JSON said teff 5730, rv -57.1, seconds 8.9 and age_of_universe 13.8 with
    no unit anywhere (as_table had them); now "units" names each, as as_table does."""
    import astropy.units as u

    from smnet_sps.cli import main
    from smnet_sps.fit import PARAMETER_UNITS, SSP_PARAMETERS, STAR_PARAMETERS, fit_ssp
    from smnet_sps.ssp import save_ssp_grid
    from test_fit_cli_hunt import _miles_star

    torch.set_num_threads(1)
    wave, flux = _miles_star()
    np.savetxt(tmp_path / "star.txt", np.column_stack([wave, flux, 0.01 * flux]))
    assert main(["fit", str(tmp_path / "star.txt"), "--medium", "air", "--resolution-fwhm", "2.5", "--wmin",
                 "5000", "--wmax", "6000", "--out", str(tmp_path / "star.json")]) == 0
    star = _strict((tmp_path / "star.json").read_text())
    assert star["units"] == {"teff": "K", "teff_err": "K", "logg": "dex(cm / s2)",
                             "logg_err": "dex(cm / s2)", "logz": "dex", "logz_err": "dex", "rv": "km / s",
                             "rv_err": "km / s", "seconds": "s"}
    assert 4000 < star["teff"] < 7000 and abs(star["rv"]) < 300      # the numbers those units belong to
    # an SSP fit: its own parameters, and the age of the universe it compares the age with
    grid = _toy_ssp_grid(rng)
    grid = grid._replace(outside_fraction=np.zeros(grid.ssp_flux.shape[:2]))
    path = save_ssp_grid(grid, tmp_path / "grid.npz")
    wave, m = _toy_galaxy(grid, theta=(9.2, -0.7, 150.0, 0.2, 0.0), resolution_fwhm=5.0)
    gal = fit_ssp(wave, m, (300 / m) ** 2, templates=path, resolution_fwhm=5.0).as_dict(json_safe=True)
    units = gal["units"]
    named = {k for k in units if not k.endswith("_err")}
    assert named == set(SSP_PARAMETERS) | {"seconds", "age_of_universe"}
    assert units["log_age"] == units["log_age_err"] == "dex(yr)" and units["age_of_universe"] == "Gyr"
    assert units["sigma"] == "km / s" and units["av"] == "mag"
    # one table of units for the JSON and as_table, each a unit astropy reads back
    assert set(PARAMETER_UNITS) == set(STAR_PARAMETERS) | set(SSP_PARAMETERS)
    assert all(str(u.Unit(v)) == v for v in PARAMETER_UNITS.values())


def test_fit_json_names_the_files_and_options_it_fitted(tmp_path, rng):
    """A new user's galaxy fitted twice (two --wmin, two grids): the JSON named neither the spectrum nor the
    SSP grid nor the cut, degree or LSF, so the two files could not be told apart; now ``input`` holds them
    (paths resolved; wavelengths and FWHM in A, as ``units`` says)."""
    from smnet_sps.cli import main
    from smnet_sps.ssp import save_ssp_grid

    torch.set_num_threads(1)
    grid = _toy_ssp_grid(rng)
    grid = grid._replace(outside_fraction=np.zeros(grid.ssp_flux.shape[:2]))
    path = save_ssp_grid(grid, tmp_path / "grid.npz")
    wave, m = _toy_galaxy(grid, theta=(9.2, -0.7, 150.0, 0.2, 0.0), resolution_fwhm=5.0)
    np.savetxt(tmp_path / "gal.txt", np.column_stack([wave, m, m / 100]))
    out = tmp_path / "gal.json"
    assert main(["fit", str(tmp_path / "gal.txt"), "--ssp-grid", str(path), "--out", str(out),
                 "--resolution-fwhm", "5", "--wmin", str(wave[20]), "--degree", "2", "--max-rv", "800"]) == 0
    res = _strict(out.read_text())
    assert res["input"] == {"spectrum": str((tmp_path / "gal.txt").resolve()),
                            "ssp_grid": str(path.resolve()), "medium": "vacuum", "wmin": float(wave[20]),
                            "wmax": None, "degree": 2,
                            "resolution_fwhm": 5.0, "uncertainty": "laplace", "max_rv": 800.0,
                            "rv_guess": 0.0, "clip": None,
                            "units": {"wmin": "Angstrom", "wmax": "Angstrom", "resolution_fwhm": "Angstrom",
                                      "max_rv": "km / s", "rv_guess": "km / s",
                                      "clip": "sigma (of the errors, inflated by sqrt(chi2_red) > 1)"}}
    assert res["log_age"] == pytest.approx(9.2, abs=0.05)


def test_fit_json_says_the_file_stated_air(tmp_path, capsys):
    """MILES star 208 as a 1-d FITS image whose CTYPE1 AWAV states air: the command converted it to vacuum
    (right), but the JSON's input said "medium": null, as for a vacuum file, so the fit could not be told
    from one of the same numbers taken as vacuum (rv ~85 km/s apart). Now it says what the wavelengths were
    read as, and the command prints the conversion."""
    from smnet_sps.cli import main
    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.medium import air_to_vacuum
    from test_fit_cli_hunt import _image, _miles_star

    torch.set_num_threads(1)
    wave, flux = _miles_star()
    keep = (wave > 5000) & (wave < 6000)
    wave, flux = wave[keep], flux[keep]
    runs = {}
    for ctype in ("AWAV", "WAVE"):
        spec = _image(tmp_path / f"{ctype}.fits", flux, extra=[("ERR", 0.01 * flux, "")], CTYPE1=ctype,
                      CUNIT1="Angstrom", CRVAL1=wave[0], CDELT1=wave[1] - wave[0], CRPIX1=1)
        out = tmp_path / f"{ctype}.json"
        assert main(["fit", str(spec), "--resolution-fwhm", "2.5", "--out", str(out)]) == 0
        runs[ctype] = (_strict(out.read_text()), capsys.readouterr().out)
    np.testing.assert_allclose(read_spectrum(tmp_path / "AWAV.fits")[0], air_to_vacuum(wave), rtol=1e-10)
    (air, air_said), (vac, vac_said) = runs["AWAV"], runs["WAVE"]
    assert air["input"]["medium"] == "air" and vac["input"]["medium"] == "vacuum"
    assert "states air wavelengths" in air_said and "states air" not in vac_said
