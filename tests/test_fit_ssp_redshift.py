"""fit_ssp on redshifted galaxies: the known redshift taken out (``redshift=``), and ages older than the
universe at the galaxy's redshift flagged."""
import json
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.fit import C_KMS, FitWarning, fit_ssp
from test_fit import _binned_mock


@pytest.fixture(scope="module")
def grid():
    from smnet_sps.ssp import ssp_grid
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ssp_grid([3e9, 6e9, 1.2e10], [0.0076, 0.0152], progress=False)


def _galaxy(grid, z, ia=1, sigma=250.0, fwhm=12.0):
    """A template (solar, age ``grid``'s ``ia``) with a LOSVD of ``sigma`` km/s at redshift ``z``, seen at
    ``fwhm`` [observed A], 3800-7000 A in the rest frame on 2 (1 + z) A pixels, with its ivar at S/N 1e4."""
    wo, flux = _binned_mock(grid, 1, ia, sigma, C_KMS * z, fwhm=fwhm, pix=2.0 * (1 + z),
                            lo=3800.0 * (1 + z), hi=7000.0 * (1 + z))
    return wo, flux, (1e4 / flux) ** 2


def test_a_known_redshift_is_fitted_in_the_rest_frame(grid):
    """A galaxy of known redshift could only be fitted through rv: rv_guess = c z, max_rv above it. The
    velocity scan then spans +-max_rv in half-pixel steps and every working pixel's kernel the model pixels
    of both ends (band 187 model pixels at z 0.2 instead of 22): on 800 pixels a fit took 6 s at rest, 23 s
    at z 0.05, 152 s at z 0.2 and 910 s at z 0.5 (same result). ``redshift=z`` takes the spectrum to its
    rest frame (wavelengths and the LSF / (1 + z)), rv is relative to z, and the fit is the rest-frame
    fit."""
    z = 0.4
    wo, flux, ivar = _galaxy(grid, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        r = fit_ssp(wo, flux, ivar, templates=grid, resolution_fwhm=12.0, redshift=z)
        rest = fit_ssp(wo / (1 + z), flux, ivar, templates=grid, resolution_fwhm=12.0 / (1 + z))
    np.testing.assert_allclose(r.values, rest.values, rtol=1e-9, atol=1e-9)
    assert r.sigma == pytest.approx(250.0, abs=15.0) and abs(r.rv) < 5.0
    assert r.log_age == pytest.approx(np.log10(6e9), abs=0.02) and abs(r.logz) < 0.03
    # results in the observed frame: the working pixels, the data's LSF; the redshift recorded
    np.testing.assert_allclose(r.wave, rest.wave * (1 + z))
    assert wo[0] - 20 < r.wave[0] and r.wave[-1] < wo[-1] + 20
    assert r.meta["data_fwhm"] == pytest.approx(12.0) and r.as_dict()["redshift"] == z
    for bad in (-0.1, np.nan, "0.4", True):
        with pytest.raises(ValueError, match="redshift"):
            fit_ssp(wo, flux, ivar, templates=grid, redshift=bad)


def test_cli_fit_takes_the_redshift(grid, tmp_path, capsys):
    from smnet_sps.cli import main
    from smnet_sps.ssp import save_ssp_grid

    z = 0.3
    wo, flux, ivar = _galaxy(grid, z)
    path = save_ssp_grid(grid, tmp_path / "g.h5")
    spec = tmp_path / "gal.txt"
    np.savetxt(spec, np.column_stack([wo, flux, 1 / np.sqrt(ivar)]))
    out = tmp_path / "gal.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        assert main(["fit", str(spec), "--ssp-grid", str(path), "--resolution-fwhm", "12", "--redshift",
                     str(z), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["redshift"] == z and abs(res["rv"]) < 5.0 and res["sigma"] == pytest.approx(250.0, abs=15.0)
    assert "rv is relative to z = 0.3" in capsys.readouterr().out
    # a star's velocity is its rv: --redshift with a star fit is refused, not ignored
    assert main(["fit", str(spec), "--redshift", "0.3"]) == 1
    assert "--redshift applies to population fits" in capsys.readouterr().err


def test_an_age_beyond_the_universe_at_the_redshift_is_flagged(grid):
    """The templates reach 12 Gyr here (PARSEC's 12.6), the universe at z 0.4 is 9.4 Gyr old (Planck18): a
    12 Gyr galaxy there was fitted at log age 10.08 without a word. Now meta["age_of_universe"] holds the
    age at the total redshift (1 + z)(1 + rv / c) - 1, a FitWarning says when the fit is older, and the
    JSON carries it; a 6 Gyr galaxy at rest is not flagged."""
    from astropy.cosmology import Planck18, WMAP9
    z = 0.4
    wo, flux, ivar = _galaxy(grid, z, ia=2)
    with pytest.warns(FitWarning, match=r"exceeds the age of the universe at z = 0\.4.*Planck18"):
        r = fit_ssp(wo, flux, ivar, templates=grid, resolution_fwhm=12.0, redshift=z)
    z_total = (1 + z) * (1 + r.rv / C_KMS) - 1
    assert r.meta["age_of_universe"] == pytest.approx(Planck18.age(z_total).value, rel=1e-9)
    assert r.age > r.meta["age_of_universe"] and r.as_dict()["age_of_universe"] == r.meta["age_of_universe"]
    # a nearby galaxy, its velocity in rv alone: the total redshift is rv / c, the universe older than 12 Gyr
    wo1, flux1, ivar1 = _galaxy(grid, 0.003, ia=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        near = fit_ssp(wo1, flux1, ivar1, templates=grid, resolution_fwhm=12.0, cosmology="WMAP9")
    assert near.rv == pytest.approx(0.003 * C_KMS, abs=10.0)
    assert near.meta["age_of_universe"] == pytest.approx(WMAP9.age(near.rv / C_KMS).value, rel=1e-9)
    assert not [w for w in caught if "age of the universe" in str(w.message)]
    with pytest.raises(ValueError, match="cosmology must be"):
        fit_ssp(wo, flux, ivar, templates=grid, redshift=z, cosmology="Planck99")


def test_the_json_of_an_ssp_fit_names_the_solar_z_of_its_metallicity(tmp_path, rng):
    """[M/H] = log10(Z / zsun) with the grid's own zsun (Padova 0.019, PARSEC 0.0152: 0.097 dex apart), but
    the JSON of `fit --ssp-grid` (and as_dict) did not say which: the same galaxy's logz read alike from
    both. Now it records zsun."""
    from smnet_sps.cli import main
    from smnet_sps.ssp import save_ssp_grid
    from test_fit import _toy_galaxy, _toy_ssp_grid

    grid = _toy_ssp_grid(rng)
    grid = grid._replace(outside_fraction=np.zeros(grid.ssp_flux.shape[:2]),
                         ssp_lgmet=grid.ssp_lgmet + np.log10(0.019 / 0.0152), attrs={"zsun": 0.019})
    path = save_ssp_grid(grid, tmp_path / "padova_like.npz")
    wave, m = _toy_galaxy(grid)
    spec = tmp_path / "gal.txt"
    np.savetxt(spec, np.column_stack([wave, m, m / 300]))
    out = tmp_path / "gal.json"
    assert main(["fit", str(spec), "--ssp-grid", str(path), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["zsun"] == 0.019 and res["logz"] == pytest.approx(-0.7, abs=0.03)
