"""smnet_sps.distributed on a real distributed.LocalCluster (2 worker processes, 1 thread each, loopback).

Checks: results equal the single-process API to 1e-6 relative; a worker killed mid-run (os._exit inside a
task) does not lose or duplicate anything; a rerun recomputes exactly the blocks without a completion marker.
"""
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u

pytest.importorskip("dask")
pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from smnet_sps import distributed as D  # noqa: E402
from smnet_sps.constants import L_SUN, LLAM_UNIT  # noqa: E402
from smnet_sps.generator import luminosity_scale  # noqa: E402
from smnet_sps.photometry import magnitudes as single_magnitudes  # noqa: E402
from smnet_sps.ssp import ssp_grid  # noqa: E402

FILTERS = ["sdss2010-g", "sdss2010-r", "twomass-Ks"]
AGES = [1e8, 1e9, 1e10]        # yr
ZS = [0.004, 0.0152]


@pytest.fixture(scope="module")
def client():
    """Two worker processes with one thread each, on 127.0.0.1; always closed, whatever the tests did."""
    from distributed import Client
    cluster = D.local_cluster(n_workers=2, threads_per_worker=1, dashboard=False)
    c = None
    try:
        c = Client(cluster)
        yield c
    finally:
        if c is not None:
            c.close()
        cluster.close()


@pytest.fixture(scope="module")
def stars():
    """3,000 stars (Teff [K], log g, [M/H], L [L_sun]) on the main sequence and giant branch."""
    rng = np.random.default_rng(7)
    n = 3000
    teff = 10 ** rng.uniform(np.log10(3500), np.log10(20000), n)
    logg = rng.uniform(1.5, 5.0, n)
    logz = rng.uniform(-1.5, 0.3, n)
    lum = 10 ** rng.uniform(-2, 3, n)
    return np.column_stack([teff, logg, logz, lum])


def _loaded_generators():
    """On a worker: the ids of the generators it holds (unchanged = nothing was reloaded)."""
    from smnet_sps import distributed
    return sorted(id(g) for g in distributed._WORKER_GENERATORS.values())


def _assert_same_flux(mags, ref):
    """Magnitudes equal to 1e-6 relative in band flux (|dm| < 1.1e-6 mag; a magnitude near 0 has no
    meaningful relative error of its own)."""
    flux, ref_flux = 10 ** (-0.4 * np.asarray(mags)), 10 ** (-0.4 * np.asarray(ref))
    np.testing.assert_allclose(flux, ref_flux, rtol=1e-6, atol=0)


def _run_cli_blocks_here(monkeypatch):
    """`--workers N` without starting a cluster: the CLI's blocks run in this process, in order. Returns the
    list of the worker counts a cluster was asked for, one entry per cluster the command would start."""
    started = []

    class Serial:
        def __init__(self, scheduler, workers):
            started.append(workers)

        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(D, "_CliClient", Serial)
    monkeypatch.setattr(D, "get_client", lambda client=None: client)
    return started


def _single_process_magnitudes(gen, pts, filters, system="AB"):
    """The reference: the generator's surface flux -> L_lambda (CONTRACTS: L f F / integral(F)) ->
    photometry.magnitudes."""
    teff, logg, logz, lum = pts.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flux, inside = gen.surface_flux(teff, logg, logz)
        wave = np.asarray(gen.wavelength, float)
        scale = luminosity_scale(np.trapezoid(flux, wave, axis=1), wave, teff, flux)
        llam = flux * (scale * lum * L_SUN)[:, None]
        tab = single_magnitudes((gen.wavelength * u.AA, llam * LLAM_UNIT), filters, system=system)
    return np.column_stack([np.asarray(tab[c], float) for c in tab.colnames]), inside


def test_in_process_path_and_input_errors(tmp_path, stars):
    # no client and no default client (this test runs before the cluster fixture exists): tasks run here
    assert D.get_client() is None
    run = D.write_points(stars[:300], tmp_path / "bb.zarr", "sdss2010-r", generator="blackbody",
                         chunk_rows=100, progress=False)
    assert (run.n_blocks, run.n_computed) == (3, 3)
    with pytest.raises(ValueError, match="another run"):
        D.write_points(stars[:300], tmp_path / "bb.zarr", "sdss2010-g", generator="blackbody", chunk_rows=100,
                       progress=False)
    # a table whose first chunk fails leaves no store behind (it was refused as "another run" once fixed)
    bad_table = stars[:300].copy()
    bad_table[5, 0] = np.nan
    with pytest.raises(ValueError, match="teff is not finite at row 5"):
        D.write_points(bad_table, tmp_path / "nan.zarr", "sdss2010-r", generator="blackbody", chunk_rows=100,
                       progress=False)
    assert not (tmp_path / "nan.zarr").exists()
    assert D.write_points(stars[:300], tmp_path / "nan.zarr", "sdss2010-r", generator="blackbody",
                          chunk_rows=100, progress=False).n_computed == 3
    from smnet_sps.generator import BlackbodyGenerator
    with pytest.raises(ValueError, match="not a loaded Generator"):
        D.magnitudes(stars, FILTERS, generator=BlackbodyGenerator())
    bad = stars[:10].copy()
    bad[3, 3] = -1.0
    with pytest.raises(ValueError, match="row 3 has L"):
        D.magnitudes(bad, FILTERS, generator="blackbody")[0].compute(scheduler="sync")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        D.points_array(stars[:, :3])
    # a named store computed with one generator is never filled in with another
    named = [D.SSPConfig("parsec", "kroupa", "blackbody", [1e9], [0.0152], name="mine")]
    assert D.ssp_grids(named, store=tmp_path, progress=False).n_computed == 1
    with pytest.raises(ValueError, match="another SSP grid"):
        D.ssp_grids([named[0]._replace(ages=[2e9])], store=tmp_path, progress=False)
    with pytest.raises(ValueError, match="age_chunk"):
        D.ssp_grids([("parsec", "kroupa", "blackbody", AGES, ZS)], store=tmp_path, age_chunk=0)



@pytest.mark.parametrize("row, column, value, message", [
    (23, 0, np.nan, "teff is not finite at row 23 "),
    (37, 3, -1.0, "row 37 has L"),
    (14, 1, 99.0, r"logg = 99 \(index 4\) .* counts from row 10 of the table")])
def test_lazy_arrays_name_a_bad_row_by_its_row_in_the_table(stars, row, column, value, message):
    """The lazy magnitudes / surface_flux name a bad star by its row in the whole table, as write_points does
    (before: by its row in its chunk, "row 3" for row 23 in chunks of 10, and "counts from row 0")."""
    table = stars[:50].copy()
    table[row, column] = value
    with pytest.raises(ValueError, match=message):
        D.magnitudes(table, "sdss2010-r", generator="blackbody", chunk_rows=10)[0].compute(scheduler="sync")
    if column < 3:                                   # spectra take no L
        flux = D.surface_flux(table, generator="blackbody", chunk_rows=10)[0]
        with pytest.raises(ValueError, match=message):
            flux.compute(scheduler="sync")

def test_ssp_grids_equal_single_process(client, tmp_path, default_generator):
    configs = [("parsec", "kroupa", None, AGES, ZS),
               {"isochrones": "parsec", "imf": "salpeter", "generator": "default", "ages": AGES,
                "Zs": [0.0152]}]
    run = D.ssp_grids(configs, client=client, store=tmp_path, progress=False)
    assert run.n_blocks == 3 and run.n_computed == 3 and run.n_skipped == 0
    for (iso, imf, Zs), path in zip([("parsec", "kroupa", ZS), ("parsec", "salpeter", [0.0152])], run.stores):
        got = D.load_ssp_store(path)
        ref = ssp_grid(AGES, Zs, imf=imf, isochrones=iso, generator=default_generator, progress=False)
        np.testing.assert_allclose(got.ssp_flux, ref.ssp_flux, rtol=1e-6, atol=0)
        np.testing.assert_allclose(got.ssp_wave, ref.ssp_wave, rtol=0)
        np.testing.assert_allclose(got.ssp_lg_age_gyr, ref.ssp_lg_age_gyr, rtol=0, atol=1e-12)
        for key in ("log_lbol", "log_mass", "missing_fraction", "outside_fraction"):
            np.testing.assert_allclose(getattr(got, key), getattr(ref, key), rtol=1e-6, atol=1e-12)
        a = got.attrs
        assert a["flux_unit"] == "L_sun / Angstrom per M_sun formed" and a["wavelength_medium"] == "vacuum"
        assert (a["isochrones"], a["imf"], a["generator"]) == (iso, imf, default_generator.name)
        # the keys a reader needs are those of ssp_grid's attrs (Zsun: a Padova grid read without it was
        # converted to [M/H] with PARSEC's 0.0152)
        for key in ("zsun", "citation", "isochrone_file", "lsf_fwhm", "lsf_shape", "wavelength_medium",
                    "tail_filled"):
            assert a[key] == ref.attrs[key], key


def test_star_magnitudes_equal_single_process(client, tmp_path, stars, default_generator):
    ref, ref_inside = _single_process_magnitudes(default_generator, stars, FILTERS)
    run = D.write_points(stars, tmp_path / "mags.zarr", FILTERS, client=client, chunk_rows=1000,
                         batch_size=512, progress=False)
    assert run.n_blocks == 3 and run.n_computed == 3
    mags, inside, attrs = D.load_points_store(run.stores[0])
    assert mags.shape == (len(stars), len(FILTERS)) and attrs["filters"] == FILTERS
    assert attrs["tail_filled"] is (default_generator.tail is not None) is True
    import smnet_sps                                # provenance, as in every output
    assert (attrs["generator"], attrs["smnet_sps_version"]) == (default_generator.name, smnet_sps.__version__)
    _assert_same_flux(mags, ref)
    np.testing.assert_array_equal(inside, ref_inside)
    loaded = client.run(_loaded_generators)
    # the lazy Dask-array API gives the same numbers on the same cluster
    lazy, lazy_inside = D.magnitudes(stars, FILTERS, chunk_rows=700)
    got, got_inside = client.compute([lazy, lazy_inside], sync=True)
    assert client.run(_loaded_generators) == loaded          # each worker loaded the model once, kept it
    _assert_same_flux(got, ref)
    np.testing.assert_array_equal(got_inside, ref_inside)


class CrashOnce:
    """Generator spec: the default model, but the first worker to reach its ``after``-th batch dies there
    (os._exit, no cleanup) -- once per marker file, so the rescheduled task then succeeds."""

    def __init__(self, marker, after):
        self.marker, self.after = str(marker), int(after)

    def __call__(self):
        from smnet_sps.neural import load_generator
        gen = load_generator(device="cpu")
        batch, calls = gen._batch, [0]     # the per-batch hook every generator's stream() goes through

        def crashing_batch(*args, **kwargs):
            calls[0] += 1
            if calls[0] >= self.after:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            return batch(*args, **kwargs)

        gen._batch = crashing_batch
        return gen


def test_killed_worker_loses_and_duplicates_nothing(client, tmp_path, stars, default_generator):
    import cloudpickle
    import sys
    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # workers need not import this test file
    marker = tmp_path / "crashed"
    pids_before = set(client.run(os.getpid).values())
    run = D.write_points(stars, tmp_path / "mags.zarr", FILTERS, generator=CrashOnce(marker, after=3),
                         client=client, chunk_rows=500, batch_size=250, progress=False)
    assert marker.exists(), "no worker was killed: the fault test did not test anything"
    client.wait_for_workers(2, timeout=120)        # the run may finish on one worker before the restart
    pids_after = set(client.run(os.getpid).values())
    assert pids_after != pids_before and len(pids_after) == 2          # the nanny restarted the dead worker
    group = zarr.open_group(str(run.stores[0]), mode="r")
    assert np.asarray(group["done"][:]).tolist() == [1] * 6 and run.n_computed == 6
    mags, inside, _ = D.load_points_store(run.stores[0])
    ref, ref_inside = _single_process_magnitudes(default_generator, stars, FILTERS)
    assert np.isfinite(mags).all()                                      # nothing lost (the fill value is NaN)
    _assert_same_flux(mags, ref)          # nothing written twice, nothing in wrong rows
    np.testing.assert_array_equal(inside, ref_inside)


def test_rerun_recomputes_only_missing_blocks(client, tmp_path):
    cfg = [("parsec", "kroupa", "blackbody", AGES, ZS)]
    first = D.ssp_grids(cfg, client=client, store=tmp_path, age_chunk=2, progress=False)
    assert (first.n_blocks, first.n_computed) == (4, 4)
    # the state a killed run leaves: markers missing (data maybe half written) for two blocks
    group = zarr.open_group(str(first.stores[0]), mode="r+")
    expected = np.asarray(group["ssp_flux"][:])
    group["done"][0, 1] = 0
    group["done"][1, 0] = 0
    group["ssp_flux"][1, 0:2] = np.nan
    again = D.ssp_grids(cfg, client=client, store=tmp_path, age_chunk=2, progress=False)
    assert (again.n_blocks, again.n_skipped, again.n_computed) == (4, 2, 2)
    np.testing.assert_allclose(D.load_ssp_store(again.stores[0]).ssp_flux, expected, rtol=1e-6)
    done = D.ssp_grids(cfg, client=client, store=tmp_path, age_chunk=2, progress=False)
    assert (done.n_skipped, done.n_computed) == (4, 0)


def test_cli_on_a_scheduler(client, tmp_path, stars, capsys):
    """`smnet-sps mags --points` and `ssp-grid --scheduler` on the test cluster: numbers as in-process."""
    import h5py
    import pandas as pd
    from smnet_sps.cli import main
    from smnet_sps.generator import BlackbodyGenerator

    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": stars[:400, 0], "logg": stars[:400, 1], "logz": stars[:400, 2],
                  "logl": np.log10(stars[:400, 3])}).to_parquet(table)
    address = client.scheduler.address
    assert main(["mags", "--points", str(table), "--filters", "sdss2010-g,sdss2010-r", "--model", "blackbody",
                 "--chunk-rows", "150", "--scheduler", address]) == 0
    captured = capsys.readouterr()
    # the cluster line goes to stderr (before any work: a closed stdout must not stop the run)
    assert "dashboard" in captured.err and "400 stars" in captured.out
    mags, _, _ = D.load_points_store(tmp_path / "stars_mags.zarr")
    # the same command again finds every chunk done (a Parquet table is recognised across processes)
    assert main(["mags", "--points", str(table), "--filters", "sdss2010-g,sdss2010-r", "--model", "blackbody",
                 "--chunk-rows", "150"]) == 0
    assert "0 chunk(s) computed, 3 already there" in capsys.readouterr().out
    ref, _ = _single_process_magnitudes(BlackbodyGenerator(), stars[:400], ["sdss2010-g", "sdss2010-r"])
    _assert_same_flux(mags, ref)

    out = tmp_path / "grid.h5"
    # a range of --n-ages and --logzsol reach the cluster (parsed before it: 1-5Gyr, 2 ages = 1, 5 Gyr)
    assert main(["ssp-grid", "--ages", "1-5Gyr", "--n-ages", "2", "--logzsol", "0", "--generator",
                 "blackbody", "--out", str(out), "--scheduler", address]) == 0
    ref = ssp_grid([1e9, 5e9], [0.0152], generator=BlackbodyGenerator(), progress=False)
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["ssp_flux"][:], ref.ssp_flux_per_hz(), rtol=1e-6)   # DSPS's unit on disk
    other = str(tmp_path / "other.h5")
    assert main(["ssp-grid", "--out", other, "--scheduler", address, "--workers", "2"]) == 1


@pytest.mark.parametrize("ages, Zs, age_chunk", [
    ([10**5.5, 1e7], [0.06], None),
    # between tabulated ages and Z, one age per block: blocks share bracketing isochrones
    ([10**5.5, 10**5.525, 1e7], [0.05, 0.06], 1)])
def test_ssp_store_keeps_top_cut_and_mass_uncovered(tmp_path, ages, Zs, age_chunk):
    """The store carried neither ssp_grid's attrs['top_cut'] nor its mass_uncovered (PARSEC Z = 0.06 at
    10^5.5 yr and 10 Myr: ssp_grid [[0.06, 5.5, 12.01], [0.06, 7.0, 12.00]] and [[0, 0]], the store None /
    None); now load_ssp_store gives both as ssp_grid does."""
    from smnet_sps.generator import BlackbodyGenerator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ssp_grid(ages, Zs, generator=BlackbodyGenerator(), progress=False)
        run = D.ssp_grids([("parsec", "kroupa", "blackbody", ages, Zs)], client=None, store=tmp_path,
                          age_chunk=age_chunk, progress=False)
    got = D.load_ssp_store(run.stores[0])
    assert len(ref.attrs["top_cut"]) >= 2
    assert got.attrs["top_cut"] == ref.attrs["top_cut"]
    assert got.mass_uncovered is not None and got.mass_uncovered.shape == ref.mass_uncovered.shape
    np.testing.assert_array_equal(got.mass_uncovered, ref.mass_uncovered)


def test_ssp_store_records_the_weights_sha256_as_ssp_grid(tmp_path, default_generator):
    """README: the ssp-grid files record the sha256 of a model's weights (generator_sha256, FITS GENSHA).
    A store (ssp_grids; `smnet-sps ssp-grid --workers / --scheduler` writes its .h5 from one) had no
    generator_sha256 (None where ssp_grid's attrs hold the shipped model's 78930ded...); now it has
    ssp_grid's, kept through load_ssp_store and save_ssp_grid, and None for the blackbody as there."""
    from smnet_sps.ssp import load_ssp_grid, save_ssp_grid
    ages, Zs = [1e9], [0.0152]
    ref = ssp_grid(ages, Zs, generator=default_generator, progress=False)
    assert isinstance(ref.attrs["generator_sha256"], str) and len(ref.attrs["generator_sha256"]) == 64
    run = D.ssp_grids([("parsec", "kroupa", None, ages, Zs), ("parsec", "kroupa", "blackbody", ages, Zs)],
                      client=None, store=tmp_path / "stores", progress=False)
    got = D.load_ssp_store(run.stores[0])
    assert got.attrs["generator_sha256"] == ref.attrs["generator_sha256"]
    written = load_ssp_grid(save_ssp_grid(got, tmp_path / "grid.h5"))
    assert written.attrs["generator_sha256"] == ref.attrs["generator_sha256"]
    assert "generator_sha256" not in D.load_ssp_store(run.stores[1]).attrs      # the blackbody: none


def test_ssp_store_of_an_older_layout_is_refused(tmp_path):
    """A version-1 store (without mass_uncovered and top_cut) is refused, naming its version, on load and on
    a rerun that would fill it in."""
    ages, Zs = [1e9], [0.0152]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = D.ssp_grids([("parsec", "kroupa", "blackbody", ages, Zs)], client=None, store=tmp_path,
                          progress=False)
    group = zarr.open_group(str(run.stores[0]), mode="r+")
    group.attrs["format_version"] = 1
    with pytest.raises(ValueError, match="format_version 1"):
        D.load_ssp_store(run.stores[0])
    with pytest.raises(ValueError, match="format_version 1"):
        D.ssp_grids([("parsec", "kroupa", "blackbody", ages, Zs)], client=None, store=tmp_path,
                    progress=False)
    # a version-2 store holds masses of the earlier rule for the first IMF interval: resumed, it would mix;
    # finished, it is read, with a warning
    group.attrs["format_version"] = 2
    with pytest.raises(ValueError, match="format_version 2.*would mix two mass rules"):
        D.ssp_grids([("parsec", "kroupa", "blackbody", ages, Zs)], client=None, store=tmp_path,
                    progress=False)
    with pytest.warns(UserWarning, match="format_version 2, made before the first IMF interval"):
        old = D.load_ssp_store(run.stores[0])
    assert np.isfinite(old.ssp_flux).all()


def test_dedicated_store_of_an_earlier_wr_rule_is_not_resumed(tmp_path):
    """special_phases="dedicated" spectra changed with the Wolf-Rayet rule of 2026-12 (PARSEC Z 0.0304, 4 Myr:
    log Q(He+) 45.10 -> 38.07), but a store recorded nothing of it: a partly written one from before was
    resumed, its remaining blocks filled under the new rule (two rules in one grid). Now a dedicated store
    records wr_rule and one without it is refused on resume (read with a warning when finished); a "model"
    store, whose output did not change, keeps its config (so its name) and resumes."""
    import hashlib
    import json

    from smnet_sps.backend import WR_RULE_VERSION

    ages, Zs = [4e6, 1e9], [0.0152]
    runs = {}
    for phases in ("dedicated", "model"):
        cfg = D.SSPConfig("parsec", "kroupa", "blackbody", ages, Zs, special_phases=phases, name=phases)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[phases] = D.ssp_grids([cfg], client=None, store=tmp_path, age_chunk=1, progress=False)
        group = zarr.open_group(str(runs[phases].stores[0]), mode="r+")
        config = dict(group.attrs["config"])
        assert config.get("wr_rule") == (WR_RULE_VERSION if phases == "dedicated" else None)
        # as a store written before: no wr_rule in its config nor its config_sha1, its last block not done
        config.pop("wr_rule", None)
        group.attrs["config"] = config
        old_sha1 = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
        group.attrs["config_sha1"] = old_sha1
        group["done"][0, 1] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if phases == "dedicated":
                with pytest.raises(ValueError, match=r"another Wolf-Rayet rule \(no rule recorded.*two "
                                                     r"rules in one grid\. Delete the store or give"):
                    D.ssp_grids([cfg], client=None, store=tmp_path, age_chunk=1, progress=False)
                assert np.asarray(group["done"][:]).tolist() == [[1, 0]]     # left as it was
            else:
                rerun = D.ssp_grids([cfg], client=None, store=tmp_path, age_chunk=1, progress=False)
                assert (rerun.n_skipped, rerun.n_computed) == (1, 1)
                assert np.asarray(group["done"][:]).all()
    # a finished dedicated store of the earlier rule is read, with a warning naming it
    zarr.open_group(str(runs["dedicated"].stores[0]), mode="r+")["done"][0, 1] = 1
    with pytest.warns(UserWarning, match=r"dedicated' store made under another Wolf-Rayet rule \(no rule "
                                         r"recorded: before 2026-12; "):
        old = D.load_ssp_store(runs["dedicated"].stores[0])
    assert np.isfinite(old.ssp_flux).all()
    # one of another rule, as resuming it is refused: the warning named only a store with no rule (wr_rule 0
    # was read without a word)
    group = zarr.open_group(str(runs["dedicated"].stores[0]), mode="r+")
    group.attrs["config"] = {**group.attrs["config"], "wr_rule": 0}
    with pytest.warns(UserWarning, match=r"dedicated' store made under another Wolf-Rayet rule \(rule 0; "
                                         rf"this smnet-sps applies rule {WR_RULE_VERSION}: "):
        D.load_ssp_store(runs["dedicated"].stores[0])
    group["done"][0, 1] = 0
    with pytest.raises(ValueError, match=r"another Wolf-Rayet rule \(rule 0; "):
        D.ssp_grids([D.SSPConfig("parsec", "kroupa", "blackbody", ages, Zs, special_phases="dedicated",
                                 name="dedicated")], client=None, store=tmp_path, age_chunk=1, progress=False)
    group.attrs["config"] = {**group.attrs["config"], "wr_rule": WR_RULE_VERSION}      # the current rule
    group["done"][0, 1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        D.load_ssp_store(runs["dedicated"].stores[0])


def test_contracts_state_the_store_versions_written():
    """docs/CONTRACTS.md gives each store's format_version; it said 2 for the SSP store after the mass rule of
    2026-12-04 made it 3 (a user checking a store against the contract would take the store written now as
    unknown)."""
    import re
    text = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md").read_text()
    stated = dict(re.findall(r'format="([^"]+)", format_version=(\d+)', text))
    assert int(stated[D.SSP_STORE_FORMAT]) == D.SSP_STORE_VERSION
    if D.POINTS_STORE_FORMAT in stated:
        assert int(stated[D.POINTS_STORE_FORMAT]) == D.STORE_VERSION


def test_config_ages_as_strings_or_quantities_like_ssp_grid():
    # ssp_grid takes ["1 Gyr", "500 Myr"] and [1 * u.Gyr, ...]; the Dask twin read them as numbers and failed
    import astropy.units as u
    for ages in (["1 Gyr", "500 Myr"], [1 * u.Gyr, 500 * u.Myr], [1e9, 5e8]):
        cfg, desc = D._resolve_config(("parsec", "kroupa", "blackbody", ages, [0.0152]), None)
        np.testing.assert_allclose(desc["ages_yr"], [5e8, 1e9], rtol=1e-12)


def test_config_age_just_beyond_the_last_is_the_last_as_in_ssp_grid():
    """ssp_grid takes an age within 1e-4 dex beyond a set's last age as that age (ages printed to 4 decimals);
    the Dask twin checked it the same way but kept the asked years in its store (the review)."""
    from smnet_sps.isochrones import load_isochrones
    top = load_isochrones("parsec").log_age[-1]
    cfg, desc = D._resolve_config(("parsec", "kroupa", "blackbody", [10 ** (top + 5e-5)], [0.0152]), None)
    assert desc["ages_yr"] == [10.0 ** top]
    assert ssp_grid([10 ** (top + 5e-5)], [0.0152], generator="blackbody").ssp_lg_age_gyr[0] == top - 9.0


def test_cli_points_refuses_ssp_options_and_overwrites_its_own_store(tmp_path, stars, capsys):
    """`mags --points` dropped --redshift, --plot, --Z, --ages ... silently (exit 0, absolute magnitudes at
    10 pc, no plot), and --overwrite did not replace a store of another run."""
    import pandas as pd
    from smnet_sps.cli import main

    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": stars[:50, 0], "logg": stars[:50, 1], "logz": stars[:50, 2],
                  "logl": np.log10(stars[:50, 3])}).to_parquet(table)
    base = ["mags", "--points", str(table), "--model", "blackbody", "--chunk-rows", "50"]
    plot = str(tmp_path / "p.png")
    assert main(base + ["--filters", "sdss2010-g", "--redshift", "0.5", "--plot", plot]) == 1
    assert "--redshift, --plot apply to SSP magnitudes only" in capsys.readouterr().err
    assert main(base + ["--filters", "sdss2010-g"]) == 0
    assert main(base + ["--filters", "sdss2010-r"]) == 1                   # another run: refused ...
    assert "holds another run" in capsys.readouterr().err
    assert main(base + ["--filters", "sdss2010-r", "--overwrite"]) == 0    # ... replaced with --overwrite
    mags, _, _ = D.load_points_store(tmp_path / "stars_mags.zarr")
    assert mags.shape[0] == 50
    other = tmp_path / "not_a_store.zarr"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(base + ["--filters", "sdss2010-r", "--out", str(other), "--overwrite"]) == 1
    assert (other / "keep.txt").exists()
    # the store is removed only once the new run's table and filters are known to be readable
    gone = ["mags", "--points", str(tmp_path / "none.parquet"), "--model", "blackbody", "--filters",
            "sdss2010-r", "--out", str(tmp_path / "stars_mags.zarr"), "--overwrite"]
    assert main(gone) == 1
    assert D.load_points_store(tmp_path / "stars_mags.zarr")[0].shape[0] == 50


def test_parquet_points_check_the_device_name_on_the_client(tmp_path, stars, capsys):
    """`mags --points stars.parquet --workers N --device gpu` never checked --device on the client: with the
    blackbody the store was written with status 0, with a model each worker failed. The client may lack
    CUDA while the workers have it, so the name only is checked, with the in-process paths' message."""
    import pandas as pd
    from smnet_sps.cli import main

    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": stars[:5, 0], "logg": stars[:5, 1], "logz": stars[:5, 2],
                  "logl": np.log10(stars[:5, 3])}).to_parquet(table)
    said = []
    for extra in (["--workers", "1"], []):
        out = tmp_path / "gpu.zarr"
        assert main(["mags", "--points", str(table), "--model", "blackbody", "--filters", "twomass_Ks",
                     "--device", "gpu", *extra, "--out", str(out)]) == 1
        said.append(capsys.readouterr().err.strip())
        assert not out.exists()
    csv = tmp_path / "stars.csv"
    csv.write_text("teff,logg,logz,L\n5000,4.5,0.0,0.5\n")
    assert main(["mags", "--points", str(csv), "--model", "blackbody", "--filters", "twomass_Ks",
                 "--device", "gpu", "--out", str(tmp_path / "t.ecsv")]) == 1
    said.append(capsys.readouterr().err.strip())
    assert len(set(said)) == 1, said
    assert "unknown device 'gpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'" in said[0]
    # a name the workers may have (no CUDA asked of this client): the blackbody's store is written
    out = tmp_path / "cuda.zarr"
    assert main(["mags", "--points", str(table), "--model", "blackbody", "--filters", "twomass_Ks",
                 "--device", "cuda", "--out", str(out)]) == 0 and out.exists()


def test_ssp_grid_on_dask_checks_the_device_name_on_the_client(tmp_path, capsys, monkeypatch):
    """`ssp-grid --workers N --device gpu` started the cluster before --device was checked: each worker
    failed with a traceback in the log, and an empty store was left beside --out. The name is checked on
    the client first, as `mags --points` does, with the in-process path's message; a name the workers may
    have ('cuda', which this client need not have) still goes to them."""
    from smnet_sps.cli import main

    started = _run_cli_blocks_here(monkeypatch)
    base = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody"]
    said = []
    for extra in (["--workers", "1"], []):
        out = tmp_path / "gpu.h5"
        assert main([*base, "--device", "gpu", *extra, "--out", str(out)]) == 1
        said.append(capsys.readouterr().err.strip())
        assert sorted(os.listdir(tmp_path)) == []
    assert started == [] and len(set(said)) == 1, said
    assert "unknown device 'gpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'" in said[0]
    # the name a worker with CUDA runs: the check lets it through to the cluster (here, no CUDA: the block
    # itself refuses it where it runs, the worker's error)
    main([*base, "--device", "cuda", "--workers", "1", "--out", str(tmp_path / "cuda.h5")])
    assert started == [1]


def test_points_stores_never_wipe_what_is_not_theirs(tmp_path, stars, capsys, monkeypatch):
    """`mags --points --out X.zarr` emptied an existing folder that was not a store (zarr's mode "w"),
    without --overwrite; --overwrite deleted the old store before the generator was checked, so a failed
    rerun lost it; an edited filter file resumed a store of the old curve's magnitudes; a relative filter
    path or model was resolved in each worker's own folder; a NaN row was named by its index in the chunk;
    and SSP `mags` ignored --workers / --scheduler."""
    import pandas as pd
    from smnet_sps.cli import main

    table = tmp_path / "stars.parquet"
    frame = pd.DataFrame({"teff": stars[:60, 0], "logg": stars[:60, 1], "logz": stars[:60, 2],
                          "logl": np.log10(stars[:60, 3])})
    frame.to_parquet(table)
    base = ["mags", "--points", str(table), "--model", "blackbody", "--chunk-rows", "20"]
    mine = tmp_path / "results.zarr"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("important")
    assert main(base + ["--filters", "sdss2010-g", "--out", str(mine)]) == 1
    assert "exists and is not an smnet-sps store" in capsys.readouterr().err
    assert (mine / "sub" / "notes.txt").read_text() == "important"
    # a failed --overwrite rerun keeps the old store
    store = tmp_path / "ow.zarr"
    assert main(base + ["--filters", "sdss2010-g", "--out", str(store)]) == 0
    assert main(base + ["--filters", "sdss2010-g", "--out", str(store), "--overwrite", "--model",
                        str(tmp_path / "no_model")]) == 1
    assert D.load_points_store(store)[0].shape == (60, 1)
    # a filter file: by absolute path, and its contents in the run's identity
    curve = tmp_path / "f.dat"
    np.savetxt(curve, np.column_stack([np.linspace(5000, 6000, 11), np.r_[0, np.ones(9), 0]]))
    monkeypatch.chdir(tmp_path)
    assert main(base + ["--filters", "f.dat", "--out", str(tmp_path / "f.zarr")]) == 0
    np.savetxt(curve, np.column_stack([np.linspace(6000, 7000, 11), np.r_[0, np.ones(9), 0]]))
    assert main(base + ["--filters", "f.dat", "--out", str(tmp_path / "f.zarr")]) == 1
    err = capsys.readouterr().err           # the hint named only "delete it"; --overwrite is what works
    assert "holds another run" in err and "or pass --overwrite (smnet-sps mags --points)" in err
    assert main(base + ["--filters", "f.dat", "--out", str(tmp_path / "f.zarr"), "--overwrite"]) == 0
    import zarr
    assert str(curve) in zarr.open_group(str(tmp_path / "f.zarr"), mode="r").attrs["filters"][0]
    # a NaN row named by its row in the table
    frame.loc[45, "teff"] = np.nan
    frame.to_parquet(table)
    assert main(base + ["--filters", "sdss2010-g", "--out", str(tmp_path / "nan.zarr")]) == 1
    assert "teff is not finite at row 45" in capsys.readouterr().err
    assert main(["mags", "--Z", "0.0152", "--ages", "1,2Gyr", "--filters", "sdss2010-g", "--model",
                 "blackbody", "--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert "--scheduler apply to --points tables only" in capsys.readouterr().err


def test_points_table_with_both_l_and_logl_is_refused(tmp_path):
    """A table with both L and logl used L and silently ignored a logl that disagreed (L = 1 L_sun, logl = 2:
    the star came out 100x fainter than its logl says); the docs offer one column or the other, so a table
    with both is refused, also through read_points (mags --points)."""
    import pandas as pd
    table = pd.DataFrame({"teff": [5772.0, 4000.0], "logg": [4.44, 2.0], "logz": [0.0, 0.0],
                          "L": [1.0, 50.0], "logl": [2.0, np.log10(50.0)]})
    with pytest.raises(ValueError, match="both an L .* and a logl .* column; give one of them"):
        D.points_array(table)
    table.to_parquet(tmp_path / "stars.parquet")
    with pytest.raises(ValueError, match="both an L"):
        D.read_points(tmp_path / "stars.parquet")
    # one of them is fine, and the same luminosity either way
    by_l = D.points_array(table.drop(columns="logl")).compute()
    by_logl = D.points_array(table.drop(columns="L").assign(logl=np.log10(table["L"]))).compute()
    np.testing.assert_allclose(by_l, by_logl, rtol=1e-12)
    np.testing.assert_allclose(by_l[:, 3], [1.0, 50.0])


def test_points_column_rules_are_one_for_parquet_frames_and_tables(tmp_path):
    """The column rules of a table of stars existed twice, with different messages: a DataFrame / Parquet
    table without logz said "needs columns teff [K], logg, logz and L [L_sun] (or logl); has [...]", the
    same astropy table "missing logz (columns found: ...)". Both now go through
    star_tables.check_points_columns: the same message, naming what is missing and what was found."""
    import pandas as pd
    from astropy.table import Table

    from smnet_sps.star_tables import points_magnitudes
    stars = {"teff": [5772.0], "logg": [4.44], "logz": [0.0], "L": [1.0], "logl": [0.0]}
    for drop, expected in ((["logz", "logl"], r"missing logz \(columns found: teff, logg, L\)"),
                           (["L", "logl"], r"missing L or logl \(columns found: teff, logg, logz\)"),
                           ([], r"both an L \[L_sun\] and a logl")):
        frame = pd.DataFrame(stars).drop(columns=drop)
        messages = []
        for call in (lambda: D.points_array(frame), lambda: points_magnitudes(Table.from_pandas(frame),
                                                                               ["bessell-V"])):
            with pytest.raises(ValueError, match=expected) as info:
                call()
            messages.append(str(info.value))
        assert messages[0] == messages[1], drop


def test_importing_the_module_leaves_star_tables_and_astropy_table_unloaded():
    """star_tables (and with it astropy.table, ~0.3-0.6 s) was imported with this module: by every Dask
    worker, the SSP tasks' too, which never use it. It is imported by the star tasks that use it."""
    import subprocess
    import sys
    code = ("import sys, smnet_sps.distributed\n"
            "print(sorted(m for m in ('smnet_sps.star_tables', 'astropy.table') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("chunk_rows", [0, -5, 2.5, True, "100"])
def test_chunk_rows_not_a_positive_integer_is_refused_up_front(chunk_rows, tmp_path):
    """chunk_rows=0 was a ZeroDivisionError from magnitudes, write_points and points_array with a NumPy or
    pandas input, because the >= 1 check ran after the array was chunked with it (-5: a Dask "Empty tuples
    are not allowed in chunks" on some Dask versions); 2.5 ran as 2. Each is now a ValueError naming
    chunk_rows, before any work."""
    import pandas as pd
    stars = np.array([[5777.0, 4.44, 0.0, 1.0]] * 3)
    table = pd.DataFrame(stars, columns=["teff", "logg", "logz", "L"])
    message = rf"chunk_rows must be an integer >= 1 \(stars per chunk\), got {chunk_rows!r}"
    for points in (stars, table):
        with pytest.raises(ValueError, match=message):
            D.points_array(points, chunk_rows)
    with pytest.raises(ValueError, match=message):
        D.magnitudes(stars, ["bessell-V"], generator="blackbody", chunk_rows=chunk_rows)
    with pytest.raises(ValueError, match=message):
        D.write_points(stars, tmp_path / "m.zarr", ["bessell-V"], generator="blackbody",
                       chunk_rows=chunk_rows, progress=False)
    assert not (tmp_path / "m.zarr").exists()
    assert D.points_array(stars, 2).chunks == ((2, 1), (4,))            # a valid size still chunks by rows


@pytest.mark.parametrize("batch_size", [0, 2.5, True, None, "64"])
def test_batch_size_not_a_positive_integer_is_refused_up_front(batch_size, tmp_path):
    """batch_size=2.5 ran as batches of 2 and True as batches of 1 in magnitudes, surface_flux and
    write_points (int() truncated it: write_points computed its store); None was int()'s bare TypeError;
    surface_flux refused nothing until a worker's stream met 0. Each is now Generator.stream's ValueError,
    before any work or store."""
    stars = np.array([[5777.0, 4.44, 0.0, 1.0]] * 3)
    message = rf"batch_size must be an integer >= 1 \(stars per generator pass\), got {batch_size!r}"
    with pytest.raises(ValueError, match=message):
        D.magnitudes(stars, ["bessell-V"], generator="blackbody", batch_size=batch_size)
    with pytest.raises(ValueError, match=message):
        D.surface_flux(stars, generator="blackbody", batch_size=batch_size)
    with pytest.raises(ValueError, match=message):
        D.write_points(stars, tmp_path / "m.zarr", ["bessell-V"], generator="blackbody",
                       batch_size=batch_size, chunk_rows=2, progress=False)
    assert not (tmp_path / "m.zarr").exists()
    flux, _ = D.surface_flux(stars, generator="blackbody", batch_size=np.int64(2))   # an integer still runs
    assert flux.compute(scheduler="sync").shape == (3, 1221)


@pytest.mark.parametrize("age_chunk", [0, 2.5, True, "2", float("nan")])
def test_age_chunk_not_a_positive_integer_is_refused(age_chunk, tmp_path):
    """age_chunk=2.5 ran as blocks of 2 ages (2 blocks for 3 ages) and True as blocks of 1 (3 blocks), with
    no word; "2" was a TypeError "'<' not supported between instances of 'int' and 'str'" and NaN
    "cannot convert float NaN to integer", neither naming age_chunk. Each is now a ValueError naming it,
    before any block is computed; an integer still splits the ages."""
    config = [("parsec", "kroupa", "blackbody", [1e8, 1e9, 1e10], [0.0152])]
    with pytest.raises(ValueError, match=r"age_chunk must be an integer >= 1 \(ages per block"):
        D.ssp_grids(config, store=tmp_path, age_chunk=age_chunk, progress=False)
    assert not list(tmp_path.glob("*.zarr"))
    assert D.ssp_grids(config, store=tmp_path, age_chunk=np.int64(2), progress=False).n_blocks == 2



def test_a_store_that_is_a_file_is_refused_with_what_is_needed(tmp_path):
    """store=<an existing file> stopped with mkdir's bare "FileExistsError: [Errno 17] File exists"."""
    config = [("parsec", "kroupa", "blackbody", [1e9], [0.0152])]
    path = tmp_path / "grids.h5"
    path.write_bytes(b"not a folder")
    with pytest.raises(ValueError, match="is a file; ssp_grids needs a folder"):
        D.ssp_grids(config, store=path, progress=False)
    assert path.read_bytes() == b"not a folder"


@pytest.mark.parametrize("config, match", [
    (("nosuchfamily", "kroupa", "blackbody", [1e9], [0.0152]), "nosuchfamily"),
    (("parsec", "kroupa", "blackbody", [1e14], [0.0152]), "age"),
    (("parsec", "kroupa", "blackbody", [1e9], [0.0152], "bogus"), "special_phases"),
])
def test_a_refused_run_leaves_no_new_store_folder(tmp_path, config, match):
    """ssp_grids made its store folder before it checked the configs: a refused run (an unknown isochrone
    family, an age beyond the isochrones, a bad option) left an empty folder behind. Nothing is made now;
    a folder that existed before is left as it was."""
    new = tmp_path / "new" / "grids"
    with pytest.raises(ValueError, match=match):
        D.ssp_grids([config], store=new, progress=False)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=match):
        D.ssp_grids([config], store=existing, progress=False)
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    assert (existing / "notes.txt").read_text() == "keep"

def test_star_magnitudes_scale_each_star_to_its_luminosity_as_the_ssp_backend_does(default_generator):
    """A star of luminosity L integrates to f L on the grid (f: a blackbody's share there), as in SSPs: scaled
    by L / sigma Teff^4, the emulator's bolometric error went into L (V 0.095 mag too faint at 150 kK,
    log g 6.5, where the spectrum integrates to 0.92 of its target)."""
    import dask

    from smnet_sps.backend import StellarLibraryBackend
    stars = np.array([[150000.0, 6.5, 0.0, 1e3], [120000.0, 6.0, 0.0, 1e3], [5772.0, 4.44, 0.0, 1.0]])
    bands = ["bessell-V", "galex-nuv"]
    with dask.config.set(scheduler="synchronous"):
        mags, _ = D.magnitudes(stars, bands)          # the default model, loaded by the task
        mags = mags.compute()
    backend = StellarLibraryBackend(default_generator)
    points = backend.point_spectra(teff=stars[:, 0], logg=stars[:, 1], logz=stars[:, 2],
                                   logl=np.log10(stars[:, 3]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = single_magnitudes((backend.wavelength * u.AA, points.llam * LLAM_UNIT), bands)
    ref = np.column_stack([np.asarray(table[c], float) for c in table.colnames])
    # the backend rounds Teff to its cache key (1e-4 dex): a few 1e-4 mag at most
    np.testing.assert_allclose(mags, ref, atol=2e-3)


def test_lazy_arrays_load_nothing_and_one_compute_passes_each_chunk_once(stars, monkeypatch):
    """Building the lazy magnitudes / surface_flux called the task on an empty block (Dask's meta inference),
    loading the generator in the calling process (6.2 s for the default model, kept in its memory). Now
    nothing runs until compute, and computing both arrays together runs each chunk once, with the numbers
    of computing each on its own (which runs each chunk's generator pass twice, as the docstring says)."""
    import dask
    calls = []
    block = D._points_block

    def counted(chunk, *args, **kwargs):
        calls.append(np.shape(chunk))
        return block(chunk, *args, **kwargs)
    monkeypatch.setattr(D, "_points_block", counted)
    loaded = dict(D._WORKER_GENERATORS)
    table = stars[:50]
    mags, inside = D.magnitudes(table, FILTERS, chunk_rows=20)            # the default model
    flux, flux_inside = D.surface_flux(table, generator="blackbody", wavelength=np.arange(1221.0),
                                       chunk_rows=20)
    assert calls == [] and D._WORKER_GENERATORS == loaded
    with dask.config.set(scheduler="synchronous"):
        got, got_inside = dask.compute(mags, inside)
        assert sorted(calls) == [(10, 4), (20, 4), (20, 4)]
        alone, alone_inside = mags.compute(), inside.compute()
        assert len(calls) == 3 + 6
        calls.clear()
        f, f_inside = dask.compute(flux, flux_inside)
        assert len(calls) == 3
    np.testing.assert_array_equal(got, alone)
    np.testing.assert_array_equal(got_inside, alone_inside)
    assert got.shape == (50, len(FILTERS)) and np.isfinite(got).all() and got_inside.dtype == bool
    assert f.shape == (50, 1221) and f_inside.shape == (50,)


@pytest.mark.parametrize("distance, message", [
    (10, "needs a length unit"), ([10, 20] * u.pc, "must be one positive"),
    (-10 * u.pc, "must be one positive"), (0 * u.pc, "must be one positive"), (3 * u.s, "must be a length")])
def test_star_magnitudes_check_the_distance_when_called(stars, distance, message):
    """A bad distance failed only at compute(), inside a worker (or in astropy without naming it)."""
    with pytest.raises(ValueError, match=f"distance {message}"):
        D.magnitudes(stars[:10], ["sdss2010-r"], generator="blackbody", distance=distance)


def test_a_worker_loads_a_model_directory_again_once_it_changed(tmp_path):
    """A worker kept the first load of a model path for its whole life: after the model there was retrained,
    its stores were stamped with the new files' fingerprint but computed with the old weights. The path's
    files' version is part of the worker's cache key now."""
    import shutil

    from smnet_sps.neural import default_model_path

    from test_ssp import _retrain_in_place

    d = tmp_path / "model"
    shutil.copytree(default_model_path(), d)
    from smnet_sps import ssp as S

    gen = D.worker_generator(str(d), "cpu")
    assert D.worker_generator(str(d), "cpu") is gen                     # unchanged: loaded once
    before = gen.surface_flux(5800.0, 4.4, 0.0)[0]
    S.get_backend(gen)                                                  # as ssp_grid on a worker
    _retrain_in_place(d)
    new = D.worker_generator(str(d), "cpu")
    assert new is not gen and D.worker_generator(str(d), "cpu") is new
    # the old model's shared backend went with it (it held the old weights for the worker's life)
    assert not any(b.generator is gen for b in list(S._BACKENDS.values()))
    assert np.abs(new.surface_flux(5800.0, 4.4, 0.0)[0] / before - 1).max() > 0.01


def test_a_worker_knows_a_model_by_resolve_generators_rule(tmp_path, monkeypatch, released_smooth):
    """worker_generator versioned a model path by its raw string, unlike ssp.resolve_generator (real path):
    a released checkpoint, which the commands hand the workers as partial(load_generator, PT, meta=META),
    was never versioned (replaced in place, the worker kept computing with the old weights while its stores
    were stamped with the new file's fingerprint), and a relative and an absolute path to one model were
    two loads. Both now go through neural._model_version."""
    import os
    import shutil

    import torch

    from smnet_sps.neural import default_model_path, generator_spec_option

    pt, meta = tmp_path / "smooth.pt", tmp_path / "small.meta.npz"
    shutil.copy(released_smooth[0], pt)
    shutil.copy(released_smooth[1], meta)
    spec = generator_spec_option(str(pt), str(meta))
    gen = D.worker_generator(spec, "cpu")
    assert D.worker_generator(spec, "cpu") is gen                       # unchanged: loaded once
    before = gen.surface_flux(5800.0, 4.4, 0.0)[0]
    sd = torch.load(pt)
    torch.save({k: v * 1.1 if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "new.pt")
    os.replace(tmp_path / "new.pt", pt)
    new = D.worker_generator(spec, "cpu")
    assert new is not gen and D.worker_generator(spec, "cpu") is new
    assert np.abs(new.surface_flux(5800.0, 4.4, 0.0)[0] / before - 1).max() > 0.01

    shutil.copytree(default_model_path(), tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert D.worker_generator("model", "cpu") is D.worker_generator(str(tmp_path / "model"), "cpu")


def _slow_blackbody():
    import time

    from smnet_sps.generator import BlackbodyGenerator
    _SLOW_LOADS.append(1)
    time.sleep(0.3)
    return BlackbodyGenerator()


_SLOW_LOADS = []


def test_a_multithreaded_worker_loads_its_model_once(monkeypatch):
    # worker_generator filled its cache without a lock: 4 threads of one worker asking at once loaded the
    # model 4 times (4 copies, each with its own backend caches)
    import threading
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(D, "_WORKER_GENERATORS", {})
    monkeypatch.setattr(D, "_WORKER_VERSIONS", {})
    _SLOW_LOADS.clear()
    start = threading.Barrier(4)

    def call(_):
        start.wait()
        return D.worker_generator(_slow_blackbody, "cpu")

    with ThreadPoolExecutor(4) as pool:
        gens = list(pool.map(call, range(4)))
    assert len(_SLOW_LOADS) == 1 and all(g is gens[0] for g in gens)


def test_a_relative_model_path_reaches_the_workers_absolute(tmp_path, monkeypatch):
    """The Python API passed a relative model path to the workers as written: a worker started in another
    folder loaded another model of that name there, silently (V = 11.00 for the Sun instead of 4.80, the store
    stamped with the other model). ssp_grids, write_points, magnitudes and surface_flux now hand the workers
    the absolute path of a model that exists here, as the commands do (neural.generator_spec_option)."""
    import shutil

    from smnet_sps.neural import default_model_path

    work = tmp_path / "work"
    shutil.copytree(default_model_path(), work / "mymodel")
    monkeypatch.chdir(work)
    seen = []
    real = D.worker_generator

    def recording(spec=None, device="auto"):
        seen.append(spec)
        return real(spec, device)

    monkeypatch.setattr(D, "worker_generator", recording)
    pts = np.array([[5777.0, 4.44, 0.0, 1.0], [9000.0, 4.0, 0.0, 10.0]])
    mags = D.magnitudes(pts, ["bessell-V"], generator="mymodel", chunk_rows=2)[0]
    flux = D.surface_flux(pts, generator=Path("mymodel"), chunk_rows=2)[0]
    D.write_points(pts, "p.zarr", ["bessell-V"], generator="mymodel", chunk_rows=2, progress=False)
    D.ssp_grids([D.SSPConfig("parsec", "kroupa", "mymodel", [1e9], [0.0152])], store="grids", progress=False)
    monkeypatch.chdir(tmp_path)                   # as a worker started elsewhere: no ./mymodel there
    v = mags.compute(scheduler="sync")
    assert flux.compute(scheduler="sync").shape == (2, 1221)
    assert set(seen) == {str((work / "mymodel").resolve())}
    np.testing.assert_allclose(v, D.load_points_store(work / "p.zarr")[0])


def test_surface_flux_refuses_a_wavelength_grid_of_another_size():
    """surface_flux(wavelength=...) sized its output by that grid alone: 1000 values for the shipped model's
    1221 pixels cut every spectrum and read flux column 1000 as the coverage flag ([True, True, True] for
    [True, False, False]). A chunk whose generator has another number of pixels is a ValueError now."""
    pts = np.array([[5777.0, 4.44, 0.0, 1.0], [1500.0, 4.0, 0.0, 1.0], [3000.0, 0.5, -2.4, 1.0]])
    flux, inside = D.surface_flux(pts, wavelength=np.linspace(3000, 10000, 1000), chunk_rows=2)
    for arr in (flux, inside):
        with pytest.raises(ValueError, match="wavelength has 1000 values but .* has 1221 pixels"):
            arr.compute(scheduler="sync")
    flux, inside = D.surface_flux(pts, wavelength=np.linspace(3000, 10000, 1221), chunk_rows=2)
    assert flux.compute(scheduler="sync").shape == (3, 1221)
    assert inside.compute(scheduler="sync").tolist() == [True, False, False]


@pytest.mark.parametrize("out_dtype", ["f2", "i4", np.float16, "no-such"])
def test_points_out_dtype_must_hold_the_fluxes(tmp_path, out_dtype):
    """write_points / surface_flux took any out_dtype: float16 stored 1693 of 2442 pixels as inf in a store
    marked complete, an integer dtype failed inside zarr (or truncated). Generator.stream's rule now: float32
    or float64, else a ValueError before any store is made."""
    pts = np.array([[5777.0, 4.44, 0.0, 1.0], [20000.0, 4.0, 0.0, 1.0]])
    message = r"unsupported out_dtype .*; allowed: float32, float64"
    for what in ("spectra", "magnitudes"):
        with pytest.raises(ValueError, match=message):
            D.write_points(pts, tmp_path / "s.zarr", "sdss2010-r", what=what, generator="blackbody",
                           out_dtype=out_dtype, chunk_rows=1, progress=False)
        assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(ValueError, match=message):
        D.surface_flux(pts, generator="blackbody", wavelength=np.arange(10), out_dtype=out_dtype)
    flux = D.surface_flux(pts, generator="blackbody", chunk_rows=1, out_dtype=None)[0]
    assert flux.dtype == np.float64 and flux.compute(scheduler="sync").dtype == np.float64


def _module_blackbody():
    from smnet_sps.generator import BlackbodyGenerator
    return BlackbodyGenerator()


def test_a_store_needs_a_generator_spec_a_rerun_recognises(tmp_path):
    """A lambda spec was known by repr(spec), a memory address that changes every run: write_points refused
    its own store on the rerun ("holds another run") and ssp_grids recomputed every block into a new store.
    A store's spec must be picklable now (a ValueError says how); a module-level function resumes; lazy
    arrays (no store) still take a lambda."""
    from smnet_sps.generator import BlackbodyGenerator

    pts = np.column_stack([np.linspace(4000, 9000, 40), np.full(40, 4.0), np.zeros(40), np.ones(40)])
    spec = lambda: BlackbodyGenerator()            # noqa: E731
    with pytest.raises(ValueError, match="write_points: .* cannot be pickled .* functools.partial"):
        D.write_points(pts, tmp_path / "p.zarr", "sdss2010-g", generator=spec, chunk_rows=10, progress=False)
    with pytest.raises(ValueError, match="ssp_grids: .* cannot be pickled"):
        D.ssp_grids([D.SSPConfig("parsec", "kroupa", spec, [1e9], [0.0152])], store=tmp_path, progress=False)
    assert not (tmp_path / "p.zarr").exists()
    runs = [D.write_points(pts, tmp_path / "p.zarr", "sdss2010-g", generator=_module_blackbody, chunk_rows=10,
                           progress=False) for _ in range(2)]
    assert [(r.n_skipped, r.n_computed) for r in runs] == [(0, 4), (4, 0)]
    mags = D.magnitudes(pts, "sdss2010-g", generator=spec, chunk_rows=10)[0].compute(scheduler="sync")
    np.testing.assert_allclose(mags, D.load_points_store(tmp_path / "p.zarr")[0])


def test_a_store_resumes_only_with_the_precision_it_was_begun_in(tmp_path):
    """out_dtype is not part of a store's identity: a spectra store begun in float32 (interrupted) and resumed
    with out_dtype="f8" filled its missing chunk in float32 without a word (and f4 over an f8 store mixed two
    precisions). The rerun is refused, naming the store's dtype; resumed with it, only the missing chunk is
    computed."""
    pts = np.column_stack([np.linspace(4000, 9000, 10), np.full(10, 4.0), np.zeros(10), np.ones(10)])
    store = tmp_path / "s.zarr"
    first = D.write_points(pts, store, what="spectra", generator="blackbody", chunk_rows=5, out_dtype="f4",
                           progress=False)
    zarr.open_group(str(store), mode="r+")["done"][1] = 0          # as a run interrupted in its 2nd chunk
    with pytest.raises(ValueError, match=r"holds float32 values .*, not float64: resume it with "
                                         r"out_dtype='f4', or give another store"):
        D.write_points(pts, store, what="spectra", generator="blackbody", chunk_rows=5, out_dtype="f8",
                       progress=False)
    again = D.write_points(pts, store, what="spectra", generator="blackbody", chunk_rows=5, out_dtype="f4",
                           progress=False)
    assert (first.n_computed, again.n_skipped, again.n_computed) == (2, 1, 1)
    assert D.load_points_store(store)[0].dtype == np.float32


@pytest.mark.parametrize("stop", ["ctrl-c", "full disk", "ctrl-c, relative path"])
def test_cli_points_stopped_says_what_is_kept_and_the_rerun_ends_it(tmp_path, stars, capsys, monkeypatch,
                                                                    stop):
    """Ctrl-C, or a full disk, part way into `mags --points stars.parquet` said only "smnet-sps mags:
    interrupted" / "error: [Errno 28] No space left on device": nothing of the chunks already kept in the
    store, nor that the same command resumes from them. The line now says both; the rerun computes only the
    missing chunks and gives the uninterrupted run's magnitudes exactly. With a relative path the note came
    twice (the library's, absolute, and the CLI's, as typed)."""
    import errno
    import os

    import pandas as pd
    from smnet_sps.cli import main

    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": stars[:200, 0], "logg": stars[:200, 1], "logz": stars[:200, 2],
                  "logl": np.log10(stars[:200, 3])}).to_parquet(table)
    if stop.endswith("relative path"):
        monkeypatch.chdir(tmp_path)
    base = ["mags", "--points", "stars.parquet" if stop.endswith("relative path") else str(table),
            "--model", "blackbody", "--chunk-rows", "50",
            "--filters", "sdss2010-g,sdss2010-r"]
    whole = tmp_path / "whole.zarr"
    assert main([*base, "--out", str(whole)]) == 0
    write_block, calls = D._write_block, []
    error = (KeyboardInterrupt() if stop.startswith("ctrl-c")
             else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def stopped_at_the_third(*args):
        calls.append(args[3])
        if len(calls) == 3:
            raise error
        return write_block(*args)

    monkeypatch.setattr(D, "_write_block", stopped_at_the_third)
    # in this process, as from a shell: not on the default Client this module's other tests may have left
    monkeypatch.setattr(D, "get_client", lambda client=None: client)
    out = tmp_path / "stars_mags.zarr"
    capsys.readouterr()
    said = "interrupted" if stop.startswith("ctrl-c") else f"error: [Errno 28] {os.strerror(errno.ENOSPC)}"
    assert main(base) == (130 if stop.startswith("ctrl-c") else 1)
    err = capsys.readouterr().err.strip()
    assert err == (f"smnet-sps mags: {said}; 2 of 4 chunk(s) finished are kept in {out.absolute()}: "
                   "the same command resumes from them"), err
    monkeypatch.setattr(D, "_write_block", write_block)
    assert main(base) == 0
    assert "2 chunk(s) computed, 2 already there" in capsys.readouterr().out
    (mags, inside, _), (ref, ref_inside, _) = D.load_points_store(out), D.load_points_store(whole)
    assert np.array_equal(mags, ref) and np.array_equal(inside, ref_inside)


def test_cli_ssp_grid_on_a_full_disk_at_the_final_write_says_the_blocks_are_kept(tmp_path, capsys,
                                                                                 monkeypatch):
    """`ssp-grid --workers 1` whose blocks were all computed but whose .h5 write found the disk full said only
    "error: [Errno 28] No space left on device", not that the blocks are kept in the store and the same
    command writes the file from them without computing anything again."""
    import errno
    import os

    import smnet_sps.ssp as ssp
    from smnet_sps.cli import main

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "g.h5"
    argv = ["ssp-grid", "--workers", "1", "--generator", "blackbody", "--ages", "1Gyr", "--Z", "0.0152",
            "--out", str(out)]
    save = ssp.save_ssp_grid
    monkeypatch.setattr(ssp, "save_ssp_grid", full_disk)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]        # after the line naming the Dask cluster
    [kept] = (tmp_path / "g.h5.store").glob("*.zarr")                  # the run's store, beside --out
    assert err == (f"smnet-sps ssp-grid: error: [Errno 28] {os.strerror(errno.ENOSPC)}; 1 of 1 block(s) "
                   f"finished are kept in {kept}: the same command resumes from them"), err
    assert not out.exists()
    monkeypatch.setattr(ssp, "save_ssp_grid", save)
    assert main(argv) == 0
    assert "0 block(s) computed" in capsys.readouterr().out and out.is_file()


def test_cli_ssp_grid_interrupted_counts_only_its_own_store(tmp_path, capsys, monkeypatch):
    """The line after an interrupted `ssp-grid --workers` counted the blocks of every store in OUT.store/:
    after a kroupa run stopped at 4 of 5, a salpeter run to the same --out stopped at 2 of 5 said "6 of 10
    block(s) finished are kept in OUT.store". It counts this config's store only now, and names it."""
    from smnet_sps.cli import main

    _run_cli_blocks_here(monkeypatch)
    ssp_block = D._ssp_block

    def interrupted_at(n):
        calls = []

        def block(*args):
            calls.append(args)
            if len(calls) == n:
                raise KeyboardInterrupt
            return ssp_block(*args)
        return block

    out = tmp_path / "g.h5"
    base = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.004", "0.008", "0.0152", "0.02", "0.03", "--generator",
            "blackbody", "--out", str(out), "--workers", "1"]
    monkeypatch.setattr(D, "_ssp_block", interrupted_at(5))
    assert main([*base, "--imf", "kroupa"]) == 130
    capsys.readouterr()
    monkeypatch.setattr(D, "_ssp_block", interrupted_at(3))
    assert main([*base, "--imf", "salpeter"]) == 130
    err = capsys.readouterr().err.strip()
    store = out.with_name(out.name + ".store").absolute()
    salpeter = [p for p in store.glob("*.zarr") if "salpeter" in p.name]
    assert len(salpeter) == 1 and len(list(store.glob("*.zarr"))) == 2
    assert err == (f"smnet-sps ssp-grid: interrupted; not written: --out {out}; 2 of 5 block(s) finished are "
                   f"kept in {salpeter[0]}: the same command resumes from them"), err


def test_cli_points_unreadable_input_says_no_chunks_kept(tmp_path, stars, capsys, monkeypatch):
    """`mags --points` rerun into a finished store with a --points file that is not there said "error: ...
    No such file ...; 4 of 4 chunk(s) finished are kept in OUT: the same command resumes from them": the
    same command fails the same way. The kept chunks are told only of an error while they are computed and
    written (the full disk and Ctrl-C of the test above)."""
    import pandas as pd
    from smnet_sps.cli import main

    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": stars[:200, 0], "logg": stars[:200, 1], "logz": stars[:200, 2],
                  "logl": np.log10(stars[:200, 3])}).to_parquet(table)
    monkeypatch.setattr(D, "get_client", lambda client=None: client)
    out = tmp_path / "mags.zarr"
    base = ["mags", "--model", "blackbody", "--chunk-rows", "50", "--filters", "sdss2010-g,sdss2010-r",
            "--out", str(out)]
    assert main([*base, "--points", str(table)]) == 0
    capsys.readouterr()
    missing = tmp_path / "moved.parquet"
    assert main([*base, "--points", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("smnet-sps mags: error: ") and "moved.parquet" in err, err
    assert "kept" not in err and "resumes" not in err, err
