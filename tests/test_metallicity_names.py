"""One metallicity, the same forms everywhere: ssp_grid and ssp_magnitudes take ``logzsol`` (log10 Z / Zsun)
as ssp_spectrum does, through the same rule (smnet_sps.ssp._resolve_z)."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.isochrones import load_isochrones
from smnet_sps.photometry import ssp_magnitudes
from smnet_sps.ssp import ssp_grid, ssp_spectrum

AGES = [1e9, 5e9]


def test_ssp_grid_takes_logzsol_as_ssp_spectrum_does():
    zsun = load_isochrones("parsec").zsun
    by_logzsol = ssp_grid(AGES, logzsol=[-0.5, 0.0], generator="blackbody", progress=False)
    by_z = ssp_grid(AGES, zsun * 10.0 ** np.array([-0.5, 0.0]), generator="blackbody", progress=False)
    assert np.allclose(by_logzsol.ssp_lgmet, np.log10(zsun) + np.array([-0.5, 0.0]), atol=1e-12)
    assert np.allclose(by_logzsol.ssp_flux, by_z.ssp_flux, rtol=1e-10, atol=0)
    # a u.dex Quantity, as ssp_spectrum takes it; and ssp_spectrum's SSP at the same logzsol
    dex = ssp_grid([1e9], logzsol=[-0.5] * u.dex, generator="blackbody", progress=False)
    assert np.allclose(dex.ssp_flux, by_logzsol.ssp_flux[:1, :1], rtol=1e-10, atol=0)
    one = ssp_spectrum(1e9, logzsol=-0.5, generator="blackbody")
    assert np.allclose(one.flux.value, by_logzsol.ssp_flux[0, 0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(Zs=[0.01], logzsol=[0.0]), r"give Zs \(metal mass fraction\) or logzsol .*not both"),
    (dict(logzsol=[]), r"logzsol is empty.*-2\.18\.\.\+0\.59"),
    (dict(logzsol=[1.0]), r"logzsol 1 outside the parsec isochrone grid.*logzsol is -2\.18\.\.\+0\.59"),
    (dict(logzsol=[np.nan]), r"logzsol must be finite"),
    (dict(logzsol=[0.0] * u.Gyr), r"logzsol \(log10 Z / Zsun\) must be a number or a u\.dex quantity"),
])
def test_ssp_grid_logzsol_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ssp_grid([1e9], generator="blackbody", progress=False, **kwargs)


def test_ssp_magnitudes_takes_logzsol():
    zsun = load_isochrones("parsec").zsun
    quick = dict(generator="blackbody", progress=False)
    by_logzsol = ssp_magnitudes(AGES, filters=["sdss2010-r"], logzsol=-0.5, **quick)
    by_z = ssp_magnitudes(AGES, zsun * 10**-0.5, ["sdss2010-r"], **quick)
    assert np.allclose(by_logzsol["M_sdss2010-r"], by_z["M_sdss2010-r"], rtol=0, atol=1e-9)
    assert by_logzsol.meta["Z"] == pytest.approx(zsun * 10**-0.5, rel=1e-12)
    assert by_logzsol.meta["logzsol"] == pytest.approx(-0.5, abs=1e-12)
    with pytest.raises(ValueError, match=r"give Z \(metal mass fraction\) or logzsol .*not both"):
        ssp_magnitudes(AGES, 0.01, ["sdss2010-r"], logzsol=-0.5, **quick)
    with pytest.raises(ValueError, match="one metallicity logzsol"):
        ssp_magnitudes(AGES, filters=["sdss2010-r"], logzsol=[-0.5, 0.0], **quick)
    with pytest.raises(ValueError, match="needs filters"):
        ssp_magnitudes(AGES, logzsol=-0.5, **quick)


def test_plugin_arrays_logzsol_uses_the_grids_zsun():
    """SSPArrays.logzsol() took PARSEC's 0.0152 whatever the grid stated: a Padova grid at its solar Z
    (0.019) came out at [M/H] +0.097."""
    from smnet_sps.plugins._common import as_ssp_arrays
    grid = ssp_grid([1e9], [0.019], isochrones="padova", generator="blackbody", progress=False)
    arrays = as_ssp_arrays(grid)
    assert arrays.meta["zsun"] == 0.019
    assert np.allclose(arrays.logzsol(), 0.0, atol=1e-12)
    assert np.allclose(arrays.logzsol(0.0152), np.log10(0.019 / 0.0152), atol=1e-12)   # given: that one


def test_sspgrid_logzsol_is_mh_with_the_grids_zsun(tmp_path):
    """SSPGrid.ssp_lgmet is log10 Z (DSPS's layout, kept); .logzsol() gives the [M/H] that ssp_grid(logzsol=)
    took, with the family's Zsun (Padova 0.019, not 0.0152), also after a save / load round trip."""
    from smnet_sps.ssp import SSPGrid, load_ssp_grid, save_ssp_grid
    grid = ssp_grid([1e9], logzsol=[-0.5, 0.0], isochrones="padova", generator="blackbody", progress=False)
    assert grid._fields[:4] == ("ssp_lgmet", "ssp_lg_age_gyr", "ssp_wave", "ssp_flux")
    assert np.allclose(grid.ssp_lgmet, np.log10(0.019) + np.array([-0.5, 0.0]), atol=1e-12)
    assert np.allclose(grid.logzsol(), [-0.5, 0.0], atol=1e-12)
    assert np.allclose(grid.logzsol(0.0152), np.log10(0.019 / 0.0152) + np.array([-0.5, 0.0]), atol=1e-12)
    path = tmp_path / "g.npz"
    save_ssp_grid(grid, path)
    assert np.allclose(load_ssp_grid(path).logzsol(), [-0.5, 0.0], atol=1e-12)
    bare = SSPGrid(*grid[:9], {})                          # states no zsun: PARSEC's, as the plugins take it
    assert np.allclose(bare.logzsol(), grid.ssp_lgmet - np.log10(0.0152), atol=1e-12)
    with pytest.raises(ValueError, match="zsun must be a metal mass fraction"):
        grid.logzsol(-1)


def test_names_and_units_table_matches_the_signatures():
    """docs/CONTRACTS.md maps each quantity's public names; the metallicity names it gives are the ones the
    entry points take."""
    import inspect
    from pathlib import Path

    from smnet_sps.generator import Generator
    from smnet_sps.plugins.fsps_backend import write_fsps_library
    from smnet_sps.population import StellarPopulation
    text = (Path(__file__).parents[1] / "docs" / "CONTRACTS.md").read_text()
    section = text.split("## Names and units of the public API")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    ssp_row = rows["metallicity of an SSP, [M/H]"]
    for func in (ssp_spectrum, ssp_grid, ssp_magnitudes, write_fsps_library):
        assert "logzsol" in inspect.signature(func).parameters, func.__name__
        assert f"{func.__name__}" in ssp_row
    assert "logzsol" in StellarPopulation().params
    assert "logz" in inspect.signature(Generator.spectra).parameters
    star = rows["metallicity of a star"]
    assert "`logz` = [M/H] [dex]" in star and "fit_star" in star
    assert "log10 Z (absolute, not [M/H])" in rows["metallicity, DSPS layout"]


def test_a_logzsol_outside_the_isochrones_is_named_as_given_in_python_too():
    """`smnet-sps ssp --logzsol -5` named '--logzsol -5' (cli_metallicities), but ssp_spectrum(age,
    logzsol=-5), ssp_grid, ssp_magnitudes and StellarPopulation(logzsol=-5) said 'Z = 1.52e-07 outside the
    parsec isochrone grid' (1.9e-07 for Padova), a number never given. Each now names the logzsol given and
    the valid logzsol (and Z) range, through the one rule (_resolve_z)."""
    from smnet_sps import StellarPopulation
    parsec = (r"^logzsol -5 outside the parsec isochrone grid: valid logzsol is -2\.18\.\.\+0\.59 "
              r"\(Z 0\.0001-0\.06")
    calls = [lambda: ssp_spectrum(1e9, logzsol=-5, generator="blackbody"),
             lambda: ssp_grid([1e9], logzsol=[0.0, -5], generator="blackbody", progress=False),
             lambda: ssp_magnitudes([1e9], filters=["sdss2010-g"], logzsol=-5, generator="blackbody")]
    for call in calls:
        with pytest.raises(ValueError, match=parsec):
            call()
    sp = StellarPopulation(zcontinuous=1, logzsol=-5, generator="blackbody")       # Padova 2007 by default
    with pytest.raises(ValueError, match=r"^logzsol -5 outside the padova isochrone grid: valid logzsol is "
                                         r"-1\.97\.\.\+0\.19 \(Z 0\.0002-0\.03"):
        sp.get_spectrum(tage=1.0)
