"""DSPS adapter checked against the real dsps: file round trip through load_ssp_templates and a composite
SED."""
import numpy as np
import pytest

from smnet_sps.plugins import dsps_backend as db
from smnet_sps.plugins._common import as_ssp_arrays
from smnet_sps.plugins._toy import toy_ssp_arrays
from smnet_sps.constants import C_ANGSTROM

dsps = pytest.importorskip("dsps")


@pytest.fixture(scope="module")
def toy(fixtures_dir):
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    return toy_ssp_arrays(np.linspace(-2.5, 1.1, 19), d["logz"], d["teff"], d["flux"], d["wavelength"])


def test_lnu_conversion_is_lambda2_over_c():
    wave = np.array([1000.0, 5000.0])
    assert np.allclose(db.llambda_to_lnu(wave, [1.0, 2.0]), np.array([1e6, 2 * 2.5e7]) / C_ANGSTROM)


def test_file_round_trip_with_dsps_loader(tmp_path, toy):
    path = db.write_ssp_templates(tmp_path / "ssp.h5", toy)
    sd = db.load_ssp_templates(path)
    assert isinstance(sd, dsps.SSPData)
    assert np.array_equal(sd.ssp_lgmet, toy.ssp_lgmet) and np.array_equal(sd.ssp_wave, toy.ssp_wave)
    assert np.array_equal(sd.ssp_lg_age_gyr, toy.ssp_lg_age_gyr)
    # DSPS units: L_sun/Hz; back to L_sun/A must give the input exactly
    back = sd.ssp_flux * C_ANGSTROM / toy.ssp_wave ** 2
    assert np.allclose(back, toy.ssp_flux, rtol=1e-12, atol=0)
    with pytest.raises(FileExistsError):
        db.write_ssp_templates(path, toy)
    with pytest.raises(ValueError, match=r"must end in \.h5, \.hdf5"):     # HDF5 never hides in d.txt
        db.write_ssp_templates(tmp_path / "d.txt", toy)
    assert not (tmp_path / "d.txt").exists()


def test_composite_sed_matches_direct_sum(tmp_path, toy):
    sd = db.load_ssp_templates(db.write_ssp_templates(tmp_path / "ssp.h5", toy))
    t = np.linspace(0.05, 13.7, 200)
    sfr = 3.0 * np.exp(-(t - 4.0) ** 2 / 8.0)             # M_sun/yr
    lgmet = np.full_like(t, toy.ssp_lgmet[1])
    res = dsps.calc_rest_sed_sfh_table_met_table(t, sfr, lgmet, 0.1, sd.ssp_lgmet, sd.ssp_lg_age_gyr,
                                                 sd.ssp_flux, 13.7)
    sed = np.asarray(res.rest_sed)
    w = np.asarray(res.weights)
    optical = (toy.ssp_wave > 3000) & (toy.ssp_wave < 3e4)
    # CK04 is 0 in the far UV
    assert np.isfinite(sed).all() and (sed >= 0).all() and (sed[optical] > 0).all()
    assert w.shape == (toy.n_met, toy.n_age) and abs(w.sum() - 1) < 1e-6
    assert np.argmax(w.sum(axis=1)) == 1                    # the metallicity we asked for dominates
    # independent: mass formed from the SFH table (trapezoid, Gyr -> yr) times the weighted L_lambda sum,
    # converted to L_nu with lambda^2/c
    mstar = np.trapezoid(sfr, t) * 1e9
    direct = mstar * np.einsum("za,zaw->w", w, toy.ssp_flux) * toy.ssp_wave ** 2 / C_ANGSTROM
    assert np.allclose(sed, direct, rtol=2e-3)


def test_bad_input_is_rejected(toy):
    with pytest.raises(ValueError, match="shape"):
        as_ssp_arrays(ssp_lgmet=toy.ssp_lgmet, ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                      ssp_flux=toy.ssp_flux[:, :3])
    bad = toy.ssp_flux.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        db.to_ssp_data(ssp_lgmet=toy.ssp_lgmet, ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                       ssp_flux=bad)
    with pytest.raises(ValueError, match=r"\[M/H\]"):
        db.to_ssp_data(ssp_lgmet=[-1.0, 0.0, 0.2], ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                       ssp_flux=toy.ssp_flux)
    with pytest.raises(ValueError, match="missing"):
        db.to_ssp_data({"ssp_lgmet": toy.ssp_lgmet})
    with pytest.raises(FileNotFoundError):
        db.load_ssp_templates("/nonexistent/ssp.h5")


def test_a_grid_dsps_cannot_integrate_is_flagged(tmp_path, toy):
    # DSPS's SED-from-SFH functions fail inside JAX (IndexError) with fewer than 3 metallicities or ages
    with pytest.warns(UserWarning, match="need at least 3 of each"):
        db.write_ssp_templates(tmp_path / "two.h5", ssp_lgmet=toy.ssp_lgmet[:2],
                               ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                               ssp_flux=toy.ssp_flux[:2])


def test_a_grid_without_young_ssps_is_flagged(tmp_path, fixtures_dir):
    """DSPS spreads the mass formed after its youngest age bin's lower edge over all bins (it renormalises the
    age weights), so a grid from 10 Myr lost about half of a constant SFH's ultraviolet without a word (the
    docs' grid started there: 57 % low at 1500 A with the default model); the writers now warn."""
    import warnings
    d = np.load(fixtures_dir / "plugins" / "ck04_cut.npz")
    lg = np.linspace(-3.5, 1.1, 24)                        # log10(age / Gyr) from 10^5.5 yr
    k = np.searchsorted(lg, -2.0)                          # first age >= 10 Myr (12.6 Myr)
    full, cut = (toy_ssp_arrays(a, d["logz"], d["teff"], d["flux"], d["wavelength"]) for a in (lg, lg[k:]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd_full = db.to_ssp_data(full)
    with pytest.warns(UserWarning, match=r"youngest SSP of this grid is 12\.6 Myr old: DSPS .*10\*\*5\.5"):
        sd_cut = db.load_ssp_templates(db.write_ssp_templates(tmp_path / "cut.h5", cut))
    with pytest.warns(UserWarning, match="youngest SSP"):
        db.to_ssp_data(cut)
    # what the warning is about: a constant SFH seen through DSPS, with and without the young SSPs
    t = np.linspace(0.05, 13.7, 100)
    seds = [np.asarray(dsps.calc_rest_sed_sfh_table_met_table(
        t, np.ones_like(t), np.full_like(t, sd.ssp_lgmet[1]), 0.1, sd.ssp_lgmet, sd.ssp_lg_age_gyr,
        sd.ssp_flux, 13.7).rest_sed) for sd in (sd_full, sd_cut)]
    uv = np.argmin(np.abs(full.ssp_wave - 2000.0))
    assert seds[1][uv] / seds[0][uv] < 0.7


def test_dsps_own_ssp_data_is_read_as_lnu(tmp_path, toy):
    """dsps.SSPData holds L_nu: every writer converts it back to L_lambda instead of taking L_nu per Hz as
    L_sun per Angstrom (a factor lambda^2 / c, ~1e-11 in the optical), and the DSPS file states one unit."""
    import h5py
    from smnet_sps.plugins import ppxf_backend
    sd = db.to_ssp_data(toy)
    back = as_ssp_arrays(sd)
    np.testing.assert_allclose(back.ssp_flux, toy.ssp_flux, rtol=1e-12)
    np.testing.assert_allclose(db.to_ssp_data(sd).ssp_flux, sd.ssp_flux, rtol=1e-12)   # idempotent
    loaded = db.load_ssp_templates(db.write_ssp_templates(tmp_path / "a.h5", toy))
    np.testing.assert_allclose(as_ssp_arrays(loaded).ssp_flux, toy.ssp_flux, rtol=1e-12)
    with np.load(ppxf_backend.write_sps_lib(tmp_path / "p.npz", sd)) as a:
        direct = np.load(ppxf_backend.write_sps_lib(tmp_path / "q.npz", toy))
        np.testing.assert_allclose(a["templates"], direct["templates"], rtol=1e-10)
    grid = {"ssp_lgmet": toy.ssp_lgmet, "ssp_lg_age_gyr": toy.ssp_lg_age_gyr, "ssp_wave": toy.ssp_wave,
            "ssp_flux": toy.ssp_flux, "meta": {"flux_unit": "L_sun / Angstrom per M_sun formed"}}
    with h5py.File(db.write_ssp_templates(tmp_path / "b.h5", as_ssp_arrays(grid, meta=grid["meta"]))) as h:
        assert h.attrs["ssp_flux_unit"] == "L_sun / Hz per M_sun formed"
        assert not any("Angstrom per" in str(v) for k, v in h.attrs.items() if k != "ssp_wave_unit")


def test_unit_slips_in_the_axes_are_refused(toy):
    arrays = dict(ssp_lgmet=toy.ssp_lgmet, ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                  ssp_flux=toy.ssp_flux)
    with pytest.raises(ValueError, match=r"log10\(age / yr\)"):
        as_ssp_arrays(**{**arrays, "ssp_lg_age_gyr": toy.ssp_lg_age_gyr + 9})
    with pytest.raises(ValueError, match="microns"):
        as_ssp_arrays(**{**arrays, "ssp_wave": toy.ssp_wave / 1e4})
    sub_solar_mh = np.linspace(-1.5, -0.5, toy.n_met)          # [M/H], all negative: read as Z 0.03-0.3
    with pytest.raises(ValueError, match=r"\[M/H\]"):
        as_ssp_arrays(**{**arrays, "ssp_lgmet": sub_solar_mh})
    as_ssp_arrays(**{**arrays, "ssp_lg_age_gyr": np.linspace(-3.0, np.log10(20.0), toy.n_age)})  # 20 Gyr ok


def test_z_and_ages_given_unlogged_get_their_own_hint(toy):
    """Z itself for ssp_lgmet was refused with 'Did you pass [M/H] instead?' and ages in Gyr for
    ssp_lg_age_gyr with 'Did you pass log10(age / yr)?': hints that send the user after the wrong slip."""
    arrays = dict(ssp_lgmet=toy.ssp_lgmet, ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=toy.ssp_wave,
                  ssp_flux=toy.ssp_flux)
    with pytest.raises(ValueError, match=r"look like Z itself: pass np\.log10\(Z\)") as err:
        as_ssp_arrays(**{**arrays, "ssp_lgmet": 10 ** toy.ssp_lgmet})          # Z = 0.0005-0.024
    assert "[M/H]" not in str(err.value)
    with pytest.raises(ValueError, match=r"look like ages in Gyr: pass np\.log10\(age_gyr\)") as err:
        as_ssp_arrays(**{**arrays, "ssp_lg_age_gyr": 10 ** toy.ssp_lg_age_gyr})  # 0.003-12.6 Gyr
    assert "age / yr" not in str(err.value)


def test_metal_poor_mh_and_nm_wavelengths_are_refused():
    # a globular-cluster grid's [M/H] (-2 ... -1) passed the bound log10 0.1 and went to bagpipes as Z/Z_sun
    # 0.5-5; a full grid in nm (ending at 16,000 "A") passed the Lyman-limit check, its DSPS file 160x too
    # faint at 5500 A. Real SSPs from the package, 1-10 Gyr.
    from smnet_sps.generator import BlackbodyGenerator
    from smnet_sps.ssp import ssp_grid
    grid = ssp_grid([1e8, 1e9, 1e10], [0.0003, 0.002, 0.0152, 0.06], generator=BlackbodyGenerator())
    arrays = dict(ssp_lgmet=grid.ssp_lgmet, ssp_lg_age_gyr=grid.ssp_lg_age_gyr, ssp_wave=grid.ssp_wave,
                  ssp_flux=grid.ssp_flux)
    as_ssp_arrays(**arrays)                                     # Z up to PARSEC's 0.06: accepted
    with pytest.raises(ValueError, match=r"\[M/H\]"):
        as_ssp_arrays(**{**arrays, "ssp_lgmet": np.array([-2.0, -1.5, -1.2, -1.0])})
    with pytest.raises(ValueError, match="nm given"):
        as_ssp_arrays(**{**arrays, "ssp_wave": grid.ssp_wave / 10.0})


def test_an_ssp_data_is_never_converted_to_air_a_second_time(tmp_path, toy):
    """A dsps.SSPData cannot record its medium and was taken as vacuum: one made with medium="air" and written
    for pPXF with medium="air" was shifted again (5000 A vacuum at 4997.21 instead of 4998.61, 84 km/s).
    Converting an SSPData to another medium is refused; with its medium given, it is written as it is."""
    from smnet_sps.plugins import ppxf_backend
    sd_air = db.to_ssp_data(toy, medium="air")
    with pytest.raises(ValueError, match="does not record its wavelength medium"):
        ppxf_backend.write_sps_lib(tmp_path / "x.npz", sd_air, medium="air")
    given = as_ssp_arrays(sd_air, meta={"wavelength_medium": "air"})
    with np.load(ppxf_backend.write_sps_lib(tmp_path / "y.npz", given, medium="air")) as a:
        np.testing.assert_allclose(a["lam"], sd_air.ssp_wave[(sd_air.ssp_wave >= a["lam"][0])
                                                             & (sd_air.ssp_wave <= a["lam"][-1])], rtol=1e-12)
    ppxf_backend.write_sps_lib(tmp_path / "z.npz", db.to_ssp_data(toy))       # vacuum to vacuum: fine
    stated = as_ssp_arrays(db.to_ssp_data(toy), meta={"wavelength_medium": "vacuum"})   # a medium stated:
    with np.load(ppxf_backend.write_sps_lib(tmp_path / "w.npz", stated, medium="air")) as a:  # converted
        assert str(a["wavelength_medium"]) == "air"


def test_the_packages_own_dsps_unit_arrays_are_read_as_lnu(tmp_path):
    """SSPGrid.to_dsps_units() (L_nu per Hz, the docs' way to DSPS's unit) was taken as L_lambda by every
    adapter: to_ssp_data converted it a second time (fluxes 1e-11 of the truth at 5510 A) and the pPXF file
    held L_nu as L_sun/A, silently. Read as L_nu, as dsps.SSPData is, and known to be vacuum."""
    from smnet_sps.plugins import ppxf_backend
    from smnet_sps.ssp import ssp_grid
    g = ssp_grid([1e9, 3e9], [0.0152], generator="blackbody", progress=False)
    arr = g.to_dsps_units()
    back = as_ssp_arrays(arr)
    np.testing.assert_allclose(back.ssp_flux, g.ssp_flux, rtol=1e-12)
    assert back.meta["wavelength_medium"] == "vacuum" and "wavelength_medium_assumed" not in back.meta
    np.testing.assert_allclose(db.to_ssp_data(arr).ssp_flux, db.to_ssp_data(g).ssp_flux, rtol=1e-12)
    with np.load(ppxf_backend.write_sps_lib(tmp_path / "a.npz", arr)) as a, \
            np.load(ppxf_backend.write_sps_lib(tmp_path / "b.npz", g)) as b:
        np.testing.assert_allclose(a["templates"], b["templates"], rtol=1e-10)


def test_the_nm_check_leaves_zeroed_ssps_and_far_uv_grids_alone():
    # the old-SSP peak check refused a grid with one old SSP zeroed (as the non-finite error asks: "mask or
    # drop the bad SSPs") and a far-UV grid ending at 1950 A, both as "nm given?"
    from smnet_sps.generator import BlackbodyGenerator
    from smnet_sps.ssp import ssp_grid
    grid = ssp_grid([1e9, 1e10], [0.002, 0.0152], generator=BlackbodyGenerator())
    flux = grid.ssp_flux.copy()
    flux[0, 1] = 0.0
    arrays = dict(ssp_lgmet=grid.ssp_lgmet, ssp_lg_age_gyr=grid.ssp_lg_age_gyr, ssp_wave=grid.ssp_wave,
                  ssp_flux=flux)
    as_ssp_arrays(**arrays)
    uv = (grid.ssp_wave >= 912) & (grid.ssp_wave <= 1950)
    as_ssp_arrays(**{**arrays, "ssp_wave": grid.ssp_wave[uv], "ssp_flux": grid.ssp_flux[:, :, uv]})
    with pytest.raises(ValueError, match="nm given"):
        as_ssp_arrays(**{**arrays, "ssp_wave": grid.ssp_wave / 10.0})


def _per_air_angstrom(toy):
    """The toy grid on the air axis with L_lambda per air Angstrom, computed here without the medium
    module's converters: d lambda_vac / d lambda_air from the Morton (2000) index by central differences."""
    from smnet_sps.medium import _index_at_vacuum
    lam = toy.ssp_wave
    n2000 = _index_at_vacuum(2000.0)

    def to_air(v):                   # the axis convention: index at 2,000 A below it
        return v / np.where(v >= 2000.0, _index_at_vacuum(v), n2000)
    h = 1e-4 * lam
    jac = 2 * h / (to_air(lam + h) - to_air(lam - h))
    return to_air(lam), toy.ssp_flux * jac


def test_air_files_hold_the_lnu_of_the_vacuum_frequency(tmp_path, toy):
    """L_nu is per Hz and a pixel's frequency is c / lambda_vac in either medium. With medium="air" the file
    held L_lambda(per air A) lambda_air^2 / c instead: 3.3e-4 low at 3000 A, 2.9e-4 at 5000 A, 2.8e-4 at
    9000 A. Now the same L_nu as the vacuum file, on the air axis; an air grid (per air A) gives it too, and
    an SSPData made in air reads back as the air grid."""
    import h5py
    from smnet_sps.plugins._common import in_medium
    lnu = toy.ssp_flux * toy.ssp_wave ** 2 / C_ANGSTROM               # vacuum L_lambda, vacuum lambda
    lam_air, flux_air = _per_air_angstrom(toy)
    with h5py.File(db.write_ssp_templates(tmp_path / "a.h5", toy, medium="air"), "r") as f:
        np.testing.assert_allclose(f["ssp_flux"][()], lnu, rtol=1e-12)
        np.testing.assert_allclose(f["ssp_wave"][()], lam_air, rtol=1e-12)
    np.testing.assert_allclose(db.to_ssp_data(toy, medium="air").ssp_flux, lnu, rtol=1e-12)
    # a grid tabulated in air: the secant Jacobian of the axis is within 4e-5 of the derivative at the
    # 2,000 A kink of the axis convention, 1e-7 elsewhere
    air = as_ssp_arrays(ssp_lgmet=toy.ssp_lgmet, ssp_lg_age_gyr=toy.ssp_lg_age_gyr, ssp_wave=lam_air,
                        ssp_flux=flux_air, meta={"wavelength_medium": "air"})
    far = np.abs(toy.ssp_wave - 2000.0) > 50
    for medium in ("air", "vacuum"):
        with h5py.File(db.write_ssp_templates(tmp_path / f"{medium}.h5", air, medium=medium), "r") as f:
            np.testing.assert_allclose(f["ssp_flux"][()][..., far], lnu[..., far], rtol=1e-6)
            np.testing.assert_allclose(f["ssp_flux"][()], lnu, rtol=5e-5)
    back = as_ssp_arrays(db.to_ssp_data(toy, medium="air"), meta={"wavelength_medium": "air"})
    np.testing.assert_allclose(back.ssp_flux, in_medium(toy, "air")[1], rtol=1e-9)
    np.testing.assert_allclose(back.ssp_flux[..., far], flux_air[..., far], rtol=1e-6)
    assert db.llambda_to_lnu(lam_air, flux_air, medium="air")[1, 5, 600] == pytest.approx(lnu[1, 5, 600],
                                                                                          rel=1e-6)


def test_dsps_unit_arrays_keep_medium_and_solar_z_through_jax():
    """DSPSArrays held wavelength_medium and zsun as instance attributes, which JAX's pytree unflatten (a
    rebuild by type from the four fields: jax.device_put, jax.jit, tree_map) dropped: an air Padova grid came
    back "vacuum" with zsun None, so SSPInterpolator took [M/H] from 0.0152 for 0.019 (0.0 became +0.097 dex)
    and to_ssp_data read the air axis as vacuum (1.4 A off at 5000 A). Now kept."""
    jax = pytest.importorskip("jax")
    from smnet_sps.medium import to_medium
    from smnet_sps.ssp import ssp_grid
    from smnet_sps.ssp_torch import SSPInterpolator
    g = ssp_grid([1e9, 3e9], [0.008, 0.019], isochrones="padova", generator="blackbody", progress=False)
    arrays = to_medium(g, "air").to_dsps_units()
    assert (arrays.wavelength_medium, arrays.zsun) == ("air", 0.019)
    for moved in (jax.device_put(arrays), jax.jit(lambda a: a)(arrays),
                  jax.tree_util.tree_map(np.asarray, arrays)):
        assert (moved.wavelength_medium, moved.zsun) == ("air", 0.019)
        np.testing.assert_allclose(SSPInterpolator(moved).logz, [np.log10(0.008 / 0.019), 0.0], atol=1e-12)
        np.testing.assert_allclose(db.to_ssp_data(moved).ssp_wave, g.ssp_wave, rtol=1e-6)    # back to vacuum
    plain = db.to_ssp_data(arrays)                                   # the same vacuum SSPData either way
    np.testing.assert_allclose(db.to_ssp_data(jax.device_put(arrays)).ssp_flux, plain.ssp_flux, rtol=1e-6)
