"""bagpipes adapter checked against the real bagpipes: a model_galaxy built on our grid equals our SSPs."""
import warnings

import numpy as np
import pytest

from smnet_sps.plugins import bagpipes_backend as bb
from smnet_sps.plugins._toy import toy_ssp_arrays

bagpipes = pytest.importorskip("bagpipes")
from smnet_sps.constants import L_SUN  # noqa: E402  IAU 2015, 3.828e33 erg/s: the L_sun our grids are in

L_SUN_BAGPIPES = 3.826e33        # erg/s, the constant bagpipes multiplies by


@pytest.fixture(scope="module")
def grid_file(fixtures_dir, tmp_path_factory):
    from bagpipes import config
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    # raw ages on bagpipes' own log-age sampling (every 3rd point) so a burst lands on one raw SSP
    lg = np.log10(config.age_sampling[::3]) - 9
    toy = toy_ssp_arrays(lg, d["logz"], d["teff"], d["flux"], d["wavelength"], zsun=0.02)
    return toy, bb.write_stellar_grid(tmp_path_factory.mktemp("bp") / "smnet_grid.fits", toy)


def test_file_layout(grid_file):
    toy, path = grid_file
    g = bb.read_stellar_grid(path)
    assert np.allclose(g["metallicities"], 10 ** toy.ssp_lgmet / 0.02)
    assert np.allclose(g["ages_yr"], 1e9 * 10 ** toy.ssp_lg_age_gyr)
    assert np.array_equal(g["flux"], toy.ssp_flux) and np.array_equal(g["wavelengths"], toy.ssp_wave)
    assert np.allclose(g["live_frac"], toy.surviving_mass.T)


def test_model_galaxy_matches_direct_computation(grid_file):
    from bagpipes import config
    toy, path = grid_file
    default_z = config.metallicities.copy()
    k = 13
    with bb.smnet_grid(path) as g:
        zmet = g["metallicities"]
        z_mid = 0.5 * (zmet[1] + zmet[2])                      # halfway: bagpipes interpolates linearly in Z
        comps = {"redshift": 0.0,
                 "burst1": {"age": 10 ** toy.ssp_lg_age_gyr[k], "massformed": 10.0, "metallicity": zmet[1]},
                 "burst2": {"age": 10 ** toy.ssp_lg_age_gyr[5], "massformed": 9.5, "metallicity": z_mid}}
        model = bagpipes.model_galaxy(comps)
        wl = model.wavelengths

        def ssp(z, a):
            return np.interp(wl, toy.ssp_wave, toy.ssp_flux[z, a])

        # erg/s/A with OUR L_sun: bagpipes' own 3.826e33 would make every spectrum 5e-4 too faint
        direct = L_SUN * (1e10 * ssp(1, k) + 10 ** 9.5 * 0.5 * (ssp(1, 5) + ssp(2, 5)))
        ok = (wl > 1000) & (wl < 5e4)
        assert np.isfinite(model.spectrum_full).all()
        assert np.allclose(model.spectrum_full[ok], direct[ok], rtol=1e-6)
        # surviving stellar mass uses our live fractions
        m_live = 1e10 * toy.surviving_mass[1, k] + 10 ** 9.5 * toy.surviving_mass[1, 5]
        assert abs(model.sfh.stellar_mass - np.log10(m_live)) < 0.01
        with pytest.raises(ValueError, match="nebular"):
            bagpipes.model_galaxy({**comps, "nebular": {"logU": -3.0}})
    assert np.array_equal(config.metallicities, default_z)     # restored


def test_rejects_foreign_or_corrupt_files(tmp_path):
    from astropy.io import fits
    foreign = tmp_path / "foreign.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)))]).writeto(foreign)
    with pytest.raises(ValueError, match="NMET"):
        bb.read_stellar_grid(foreign)
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"not a fits file at all" * 10)
    with pytest.raises(ValueError):
        bb.read_stellar_grid(corrupt)
    with pytest.raises(FileNotFoundError):
        bb.use_smnet_grid(tmp_path / "missing.fits")


def _bagpipes_state():
    """bagpipes' grid as its models read it: the config values use_smnet_grid patches, the nebular hook and
    the metallicity weights' constructor."""
    import importlib

    from bagpipes import config
    mg = importlib.import_module("bagpipes.models.model_galaxy")
    ceh = importlib.import_module("bagpipes.models.chemical_enrichment_history").chemical_enrichment_history
    return [getattr(config, k) for k in bb._CONFIG_KEYS] + [mg.nebular, ceh.__init__]


@pytest.fixture(scope="module")
def thin_grids(fixtures_dir):
    """A toy grid bagpipes cannot bin: one age (2 metallicities)."""
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    one_age = toy_ssp_arrays([0.5], d["logz"][:2], d["teff"], d["flux"][:2], d["wavelength"])
    return {"1 age": one_age}


@pytest.mark.parametrize("case", ["1 age"])
def test_grid_bagpipes_cannot_bin_is_refused_and_leaves_bagpipes_as_it_was(case, thin_grids, grid_file,
                                                                         tmp_path, monkeypatch):
    """bagpipes bins ages between neighbours (utils.make_bins reads the second point). Until 2026-12-03 a
    one-age grid was written without a word and failed later, inside model_galaxy; activating a grid
    bagpipes cannot bin must leave bagpipes' config as it was, even inside ``with smnet_grid()``."""
    with pytest.raises(ValueError, match=rf"{case}\(.*needs at least 2 ages"):
        bb.write_stellar_grid(tmp_path / "thin.fits", thin_grids[case])
    assert not (tmp_path / "thin.fits").exists()
    # a file written before the writer checked (or by hand) is refused at activation, config untouched
    with monkeypatch.context() as m:
        m.setattr(bb, "_check_bagpipes_shape", lambda *args: None)
        legacy = bb.write_stellar_grid(tmp_path / "legacy.fits", thin_grids[case])
    before = _bagpipes_state()
    for activate in (bb.use_smnet_grid, lambda p: bb.smnet_grid(p).__enter__()):
        with pytest.raises(ValueError, match=rf"legacy.fits has .*{case}\("):
            activate(legacy)
        assert all(a is b for a, b in zip(_bagpipes_state(), before))
    # nested: the failed inner activation leaves the outer grid active, and leaving the outer one restores
    with bb.smnet_grid(grid_file[1]):
        outer = _bagpipes_state()
        with pytest.raises(ValueError, match="needs at least 2"):
            with bb.smnet_grid(legacy):
                pass
        assert all(a is b for a, b in zip(_bagpipes_state(), outer))
    assert all(a is b for a, b in zip(_bagpipes_state(), before))


def test_a_metallicity_beyond_the_grid_is_flagged(grid_file):
    """bagpipes gives a component whose metallicity lies outside the grid's Z / Z_sun range the spectra of
    the nearest edge: on a grid ending at 1.5, metallicity 2.5 (the top of bagpipes' example priors; its own
    grid reaches 5) made a model identical to 1.5, without a word. A model asking for it now warns, once per
    activation; one inside the range does not, and leaving the grid restores bagpipes' own constructor."""
    toy, path = grid_file
    before = _bagpipes_state()
    with bb.smnet_grid(path) as g:
        zmet = g["metallicities"]
        def model(z, name="burst"):
            return bagpipes.model_galaxy({"redshift": 0.0, name: {"age": 1.0, "massformed": 10.0,
                                                                  "metallicity": z}}).spectrum_full
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inside = [model(z) for z in (zmet[0], zmet[-1], 0.5 * (zmet[0] + zmet[-1]))]
            assert not [w for w in caught if "outside the grid" in str(w.message)]
            beyond = model(1.7 * zmet[-1], "burst1")
            model(0.5 * zmet[0])
        ours = [str(w.message) for w in caught if "outside the grid" in str(w.message)]
        assert len(ours) == 1 and f"component 'burst1' asks for metallicity = {1.7 * zmet[-1]:g}" in ours[0]
        assert f"{zmet[0]:.4g}-{zmet[-1]:.4g}" in ours[0]
        np.testing.assert_array_equal(beyond, inside[1])     # what the warning says: the edge's spectra
        outer = _bagpipes_state()
        with pytest.warns(UserWarning, match="outside the grid"):          # a new activation warns again
            with bb.smnet_grid(path):
                model(0.5 * zmet[0])
        # the inner grid's wrapper is gone again: the outer's constructor and config are back (a check of a
        # metallicity inside the range, as here until 2026-12-05, passed with the inner wrapper left in place)
        assert all(a is b for a, b in zip(_bagpipes_state(), outer))
    assert all(a is b for a, b in zip(_bagpipes_state(), before))
    # ... and it warns as the outer activation does: one that has not warned yet warns, after an inner one
    # that has warned ends
    with bb.smnet_grid(path):
        with pytest.warns(UserWarning, match="outside the grid"):
            with bb.smnet_grid(path):
                model(0.5 * zmet[0])
        with pytest.warns(UserWarning, match=f"component 'burst' asks for metallicity = {1.7 * zmet[-1]:g}"):
            model(1.7 * zmet[-1])
    assert all(a is b for a, b in zip(_bagpipes_state(), before))


def test_a_one_metallicity_grid_gives_the_spectra_of_that_metallicity(fixtures_dir, tmp_path):
    """A grid of one metallicity (from a CMD isochrone file of one Z) was refused ('bagpipes needs at least
    2 ages and at least 2 metallicities'), but bagpipes only bins metallicities with utils.make_bins in its
    config.py, for its own grid: its metallicity weights give one Z weight 1 (delta) or the whole bin
    (exp, lognorm), which use_smnet_grid sets to [0, 10] Z_sun. Any metallicity asked for now gets that Z's
    spectra: a burst equals the SSP, and a model of delta and exp components equals the one made of a grid
    holding the same spectra at two metallicities. That ignored 'metallicity' said nothing: use_smnet_grid
    now warns once, naming the grid's Z (a grid of two: no warning)."""
    from bagpipes import config
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    lg = np.log10(config.age_sampling[::3]) - 9
    one = toy_ssp_arrays(lg, d["logz"][:1], d["teff"], d["flux"][:1], d["wavelength"], zsun=0.02)
    # the same stellar spectra at a second metallicity: the same SSPs at two Z
    two = toy_ssp_arrays(lg, np.r_[d["logz"][:1], d["logz"][0] + 0.3], d["teff"],
                         np.repeat(d["flux"][:1], 2, axis=0), d["wavelength"], zsun=0.02)
    k = 13
    burst = {"redshift": 0.0, "burst": {"age": 10 ** lg[k], "massformed": 10.0, "metallicity": 0.3}}
    mixed = {"redshift": 0.0, "burst": {"age": 10 ** lg[5], "massformed": 9.5, "metallicity": 2.0},
             "exponential": {"age": 5.0, "tau": 2.0, "massformed": 10.0, "metallicity": 1.0,
                             "metallicity_type": "exp"}}
    spectra = {}
    for name, grid in (("one", one), ("two", two)):
        path = bb.write_stellar_grid(tmp_path / f"{name}.fits", grid)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with bb.smnet_grid(path) as g:
                assert g["metallicities"].size == grid.n_met
                spectra[name] = [bagpipes.model_galaxy(c).spectrum_full.copy() for c in (burst, mixed)]
                wl = bagpipes.model_galaxy(burst).wavelengths
        # the 'metallicity' asked for is ignored with one Z, which said nothing: one warning says so
        ours = [str(w.message) for w in caught if "holds one metallicity" in str(w.message)]
        zmet = 10 ** d["logz"][0]                  # the fixture's [M/H]: Z / Z_sun
        assert ours == ([] if name == "two" else [
            f"{path} holds one metallicity (Z/Z_sun = {zmet:.4g}, Z = {zmet * 0.02:.4g}): every bagpipes "
            "component gets its spectra whatever 'metallicity' it asks for, so a free metallicity in a fit "
            "is degenerate (fix it, or write a grid of several metallicities)"]), name
    ok = (wl > 1000) & (wl < 5e4)
    direct = L_SUN * 1e10 * np.interp(wl, one.ssp_wave, one.ssp_flux[0, k])
    assert np.allclose(spectra["one"][0][ok], direct[ok], rtol=1e-6)
    assert np.isfinite(spectra["one"][1]).all() and spectra["one"][1][ok].max() > 0
    np.testing.assert_allclose(spectra["one"][1], spectra["two"][1], rtol=1e-9, atol=0)


def test_live_fraction_is_living_stars_as_in_bagpipes_own_grid(tmp_path):
    """bagpipes' own BC03 grid holds the mass in living stars (no remnants) in LIV_MSTAR_FRAC, and its
    stellar_mass is that mass. The writer put the surviving mass (stars + remnants) there: 0.62 instead of
    0.50 at 4.5 Gyr, solar Z, so a 1e10 M_sun burst came out as 10^9.79 M_sun where bagpipes' own grid gives
    10^9.70. It now writes the SSPGrid's mass_stars."""
    from bagpipes import config
    from smnet_sps.ssp import ssp_grid
    ages_gyr = np.array([0.01, 0.1, 1.0, 4.5, 12.5])
    grid = ssp_grid(ages_gyr * 1e9, [0.0152, 0.03], generator="blackbody", progress=False)
    path = bb.write_stellar_grid(tmp_path / "g.fits", grid)
    live = bb.read_stellar_grid(path)["live_frac"]
    assert np.allclose(live, grid.mass_stars.T, rtol=1e-12)
    # solar Z against solar Z (bagpipes: Z / 0.02 = 1; ours: PARSEC's Z_sun 0.0152)
    bc03_solar = np.argmin(np.abs(np.asarray(config.metallicities) - 1.0))
    bc03 = np.interp(np.log10(ages_gyr * 1e9), np.log10(np.maximum(config.raw_stellar_ages, 1.0)),
                     config.live_frac[:, bc03_solar])
    assert np.allclose(live[:, 0], bc03, rtol=0.03), (live[:, 0], bc03)
    burst = {"age": 4.5, "massformed": 10.0}
    own = bagpipes.model_galaxy({"redshift": 0.0, "burst": {**burst, "metallicity": 1.0}}).sfh.stellar_mass
    with bb.smnet_grid(path):
        ours = bagpipes.model_galaxy({"redshift": 0.0, "burst": {**burst, "metallicity": 0.0152 / 0.02}})
    assert abs(ours.sfh.stellar_mass - own) < 0.01, (ours.sfh.stellar_mass, own)


def test_grid_without_mass_keeps_its_livefrac_note(grid_file, tmp_path):
    # explicit arrays carry no mass: the LIVEFRAC card's comment was too long for a FITS card (astropy's
    # VerifyWarning, the provenance note cut)
    import warnings
    from astropy.io import fits
    toy, _ = grid_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = bb.write_stellar_grid(tmp_path / "nomass.fits", ssp_lgmet=toy.ssp_lgmet,
                                     ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                                     ssp_flux=toy.ssp_flux)
    hdr = fits.getheader(path)
    assert hdr["LIVEFRAC"] == "unity" and "mass formed" in hdr.comments["LIVEFRAC"]


def test_an_air_grid_is_per_air_angstrom(tmp_path, grid_file):
    """medium="air": bagpipes reads L_lambda per Angstrom of its axis, so the file holds L_lambda_vac
    d lambda_vac / d lambda_air (1.00027 at 5000 A), the derivative of Morton's formula taken here by central
    differences. A guard: the DSPS writer's per-Hz conversion shares this one (plugins._common.in_medium)."""
    from smnet_sps.medium import vacuum_to_air
    toy, _ = grid_file
    g = bb.read_stellar_grid(bb.write_stellar_grid(tmp_path / "air.fits", toy, medium="air"))
    red = toy.ssp_wave > 2100.0                  # the line formula; the axis convention differs below 2,000 A
    lam = toy.ssp_wave[red]
    jac = 2e-4 * lam / (vacuum_to_air(lam * 1.0001) - vacuum_to_air(lam * 0.9999))
    assert jac[np.searchsorted(lam, 5000.0)] == pytest.approx(1.000266, abs=2e-6)
    np.testing.assert_allclose(g["flux"][..., red], toy.ssp_flux[..., red] * jac, rtol=1e-6)


def test_a_grid_without_young_ssps_is_flagged(grid_file, fixtures_dir, tmp_path):
    """bagpipes stretches the youngest raw age bin down to age 0: stars younger than a grid's youngest SSP get
    its spectrum (a constant SFH 44 % low at 1500 A with the docs' former grid from 10 Myr); the writer warns.
    The fixture's grid starts at bagpipes' own youngest sample, 1 Myr, and passes in silence."""
    import warnings
    toy, _ = grid_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bb.write_stellar_grid(tmp_path / "from_1myr.fits", toy)
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    old = toy_ssp_arrays(np.linspace(-2.0, 1.1, 12), d["logz"], d["teff"], d["flux"], d["wavelength"])
    with pytest.warns(UserWarning, match=r"youngest SSP of this grid is 10 Myr old: bagpipes gives"):
        bb.write_stellar_grid(tmp_path / "from_10myr.fits", old)


def test_the_file_records_how_its_grid_was_made(tmp_path):
    """The header names the generator (and its weights' sha256), the isochrones, the IMF and its limits and
    the options, under the keywords of `smnet-sps ssp --out .fits`, and read_stellar_grid reads them back: the
    file said only CREATOR 'smnet-sps 0.1.0', so grids from two models or IMFs could not be told apart."""
    from astropy.io import fits
    from smnet_sps.imf import get_imf
    from smnet_sps.ssp import ssp_grid
    grid = ssp_grid([10 ** 5.5, 1e9, 1e10], [0.0152], imf=get_imf("salpeter", m_low=0.1, m_up=100.0),
                    progress=False)
    path = bb.write_stellar_grid(tmp_path / "made.fits", grid)
    with fits.open(path) as hdul:
        hdul.verify("exception")
        hdr = hdul[0].header
    assert hdr["GENERATR"] == grid.attrs["generator"] and len(hdr["GENSHA"]) == 64
    assert (hdr["ISOCHRON"], hdr["IMF"], hdr["IMFMLOW"], hdr["IMFMUP"]) == ("parsec", "salpeter", 0.1, 100.0)
    assert (hdr["SPECIAL"], hdr["OUTSIDE"]) == (grid.attrs["special_phases"], grid.attrs["outside"])
    assert hdr["TAILFILL"] is grid.attrs["tail_filled"] is True         # as `ssp --out .fits` (and DSPS's)
    prov = bb.read_stellar_grid(path)["provenance"]
    assert prov["tail_filled"] is True
    assert prov["generator_sha256"] == grid.attrs["generator_sha256"] == hdr["GENSHA"]
    assert prov["imf"] == "salpeter" and prov["imf_mass_range"] == [0.1, 100.0]
    from smnet_sps import __version__
    assert prov["smnet_sps_version"] == __version__


def test_the_images_state_their_units_as_fits_readers_parse_them(grid_file):
    """Each flux image says its unit in BUNIT (L_sun / A per M_sun formed), the ages and wavelengths theirs;
    the flux images had none (only the primary's free-text FLUXUNIT): a FITS reader saw unitless numbers."""
    import warnings

    from astropy import units as u
    from astropy.io import fits
    toy, path = grid_file
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("error")             # a unit astropy's FITS format parses only with a warning
        hdul.verify("exception")
        units = {h.name: u.Unit(h.header["BUNIT"], format="fits") for h in hdul if "BUNIT" in h.header}
    for z in 10 ** toy.ssp_lgmet / 0.02:
        assert units[f"ZMET_{z:.4g}ZSOL"] == u.L_sun / u.AA / u.M_sun
    assert units["STELLAR_AGE_YR"] == u.yr and units["WAVELENGTHS_AA"] == u.AA and units["PRIMARY"] == u.AA
