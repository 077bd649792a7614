"""Beyond one machine: SSP grid families and star photometry for 10^8-10^9 stars on Dask.

Optional extra: ``pip install "smnet-sps[dask]"`` (``dask[distributed]``, ``zarr``, ``pyarrow``). The
scheduling, fault tolerance and data movement are Dask's (``distributed.Client`` on a ``LocalCluster``, an
SSH / HPC / Kubernetes cluster, or a scheduler address); this module only says what one task is.

Two workloads
-------------
* :func:`ssp_grids` -- many SSP grids (IMF x isochrones x generator x ages x Z). One task per (grid, Z, block
  of ages) calls the single-process :func:`smnet_sps.ssp.ssp_grid` on that block, so a grid from here is the
  grid from there (to float32 round-off of the generator's batches, < 1e-6 relative).
* :func:`magnitudes` / :func:`surface_flux` over a Dask array of stars (Teff [K], log g, [M/H], L [L_sun]) of
  any length, and :func:`write_points`, which writes them chunk by chunk. A chunk streams through the
  generator in batches; when only magnitudes are asked for, a batch of spectra lives only inside one task and
  only ``n_filters`` numbers per star leave it, so 10^9 spectra are never held anywhere.

Generators are never pickled into tasks. A task carries a *generator spec* -- ``None`` / ``"default"`` (the
shipped model), ``"blackbody"``, a model directory or a released ``.pt`` path, or a picklable zero-argument
callable that returns a generator (e.g. ``functools.partial(load_generator, "x.pt", meta="x.meta.npz")``) --
and each worker process loads it once into a worker-local cache (:func:`worker_generator`). A store's spec
must be picklable (a lambda is refused there): a rerun recognises the store by it.

Stores and resuming
-------------------
Every result goes to a Zarr group (a directory; local disk or any path every worker can write to). A task
writes its block of data, then its completion marker (``done``). A rerun -- after a crash, a killed
worker, ``Ctrl-C`` or on purpose -- reads the markers and submits only the missing blocks; a block whose
worker died between writing data and marker is simply written again (the same bytes at the same place), so
nothing is duplicated. The group's attributes hold units and provenance (see :func:`ssp_grids`,
:func:`write_points`); :func:`load_ssp_store` and :func:`load_points_store` read them back.

Star magnitudes follow docs/CONTRACTS.md: L_lambda = L f F_lambda / integral(F_lambda) [erg s^-1 A^-1], f the
share of a blackbody of that Teff on the grid, an extrapolation > 2x off its generator's target replaced by a
blackbody of that Teff and L (the SSP backend's whole per-star rule, :func:`smnet_sps.backend.star_rule`: one
star, one spectrum on every path); magnitudes are those of
:func:`smnet_sps.photometry.magnitudes` for that luminosity density (absolute magnitudes at 10 pc unless
``distance`` is given). Wavelengths are vacuum (smnet_sps.medium).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy import units as u

from .generator import _check_count, _check_out_dtype, _quiet_coverage
from .progress import want_progress

__all__ = ["worker_generator", "ssp_grids", "load_ssp_store", "SSPConfig", "RunSummary", "surface_flux",
           "magnitudes", "write_points", "load_points_store", "read_points", "points_array", "local_cluster",
           "get_client", "POINT_COLUMNS"]

SSP_STORE_FORMAT = "smnet-sps ssp grid store"
POINTS_STORE_FORMAT = "smnet-sps points store"
STORE_VERSION = 1           # the points store's layout
#: the SSP store's layout: 2 added mass_uncovered and top_cut, 3 the first IMF interval's stars at their own
#: masses (a version-1 store is refused; a finished version-2 one is read with a warning, never resumed
#: under two mass rules)
SSP_STORE_VERSION = 3
POINT_COLUMNS = ("teff", "logg", "logz", "L")   # Teff [K], log g [cgs], [M/H] [dex], L [L_sun]


def _require_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("smnet_sps.distributed needs the 'dask' extra: pip install "
                                  f"\"smnet-sps[dask]\" (missing: {exc.name})") from exc


# ---------------------------------------------------------------------------------------------------
# Generators: loaded once per worker process, never shipped inside a task
# ---------------------------------------------------------------------------------------------------
_WORKER_GENERATORS: dict = {}
_WORKER_VERSIONS: dict = {}          # key -> version of a model path's files when it was loaded


def _spec_key(spec, device):
    if spec is None or spec == "default":
        return ("default", str(device))
    if isinstance(spec, (str, Path)):
        return ("path", str(spec), str(device))
    if callable(spec):
        # a partial's arguments are part of its identity; an unpicklable callable (cloudpickle still ships
        # it) is known by its repr within this process only (_check_resumable refuses it for a store)
        blob = _pickled(spec)
        return ("callable", hashlib.sha1(blob or repr(spec).encode()).hexdigest(), str(device))
    raise ValueError("generator must be None/'default', 'blackbody', a model path, or a picklable "
                     f"zero-argument callable returning a Generator; got {type(spec).__name__}. Loaded "
                     "models are not shipped to workers: give what loads one")


def _pickled(spec):
    """pickle.dumps(spec), or None where it cannot be pickled (a lambda, a closure)."""
    import pickle
    try:
        return pickle.dumps(spec)
    except Exception:                               # noqa: BLE001 - pickling fails in many ways
        return None


def _check_resumable(spec, where):
    """Refuse a callable spec that cannot be pickled for a store: its identity was repr(spec), a memory
    address, another in each process, so a rerun refused its own store ("holds another run", write_points)
    or recomputed every block into a new one (ssp_grids)."""
    if callable(spec) and not isinstance(spec, (str, Path)) and _pickled(spec) is None:
        raise ValueError(f"{where}: the generator spec {_spec_label(spec)!r} cannot be pickled (a lambda or "
                         "a nested function), so a rerun could not recognise its store; give a model path, a "
                         "module-level function, or functools.partial(load_generator, PATH, ...) of one")
    return spec


def _spec_model_files(spec):
    """(model path, meta file or None) of a spec naming a model on disk: a path, or the commands'
    ``functools.partial(load_generator, CHECKPOINT.pt, meta=META.npz)``; (None, None) otherwise."""
    import functools

    from .neural import SHIPPED_MODELS, load_generator
    if isinstance(spec, Path) or (isinstance(spec, str) and spec not in ("blackbody", *SHIPPED_MODELS)):
        return spec, None
    if (isinstance(spec, functools.partial) and spec.func is load_generator and spec.args
            and isinstance(spec.args[0], (str, Path)) and spec.args[0] not in SHIPPED_MODELS):
        return spec.args[0], spec.keywords.get("meta")
    return None, None


def _check_spec(spec):
    """``spec`` checked, as the workers get it: a model path that exists here made absolute (a worker started
    in another folder resolved a relative one there and silently used another model of that name), by the
    commands' rule (neural.generator_spec_option)."""
    from .generator import Generator
    if isinstance(spec, Generator):
        raise ValueError("pass the generator as a spec (None/'default', 'blackbody', a model path, or a "
                         "zero-argument callable), not a loaded Generator: each worker loads it once itself")
    _spec_key(spec, "cpu")
    if isinstance(spec, (str, Path)):
        from .neural import generator_spec_option
        spec = generator_spec_option(spec)
    return spec


def _spec_label(spec):
    if spec is None or spec == "default":
        return "default"
    if isinstance(spec, (str, Path)):
        return Path(str(spec)).name or str(spec)
    return getattr(spec, "__name__", None) or getattr(getattr(spec, "func", None), "__name__", "callable")


def _spec_id(spec):
    """A stable identity of a generator spec for store names and rerun checks (a path, or a pickle hash)."""
    key = _spec_key(spec, "")
    return key[0] if key[0] == "default" else f"{key[0]}:{key[1]}"


def worker_generator(spec=None, device="auto"):
    """The generator named by ``spec``, loaded once per process (worker-local cache; a model path again when
    its files change).

    Parameters
    ----------
    spec : None or "default" (the shipped model), "blackbody", a model directory / released ``.pt`` path,
        or a picklable zero-argument callable returning a :class:`~smnet_sps.generator.Generator`
    device : "auto" (CUDA when present), "cpu", "cuda", ...
    """
    key = _spec_key(spec, device)
    version = None
    path, meta = _spec_model_files(spec)
    if path is not None and Path(path).exists():
        # a model retrained or replaced at that path is loaded again (the first load was kept for the
        # worker's life, and its stores stamped with the new files' fingerprint), by ssp.resolve_generator's
        # rule: a released checkpoint given with its meta file (the commands' spec) was never, and a
        # relative and an absolute path were two loads
        from .neural import _model_version
        real, version = _model_version(path, meta)
        if key[0] == "path":
            key = ("path", real, str(device))
    from .ssp import _key_lock
    with _key_lock(("worker", *key)):       # a multithreaded worker's threads: one load, as resolve_generator
        gen = _WORKER_GENERATORS.get(key)
        if gen is None or _WORKER_VERSIONS.get(key) != version:
            if spec is None or spec == "default":
                from .neural import load_generator
                gen = load_generator(device=device)
            elif spec == "blackbody":
                from .generator import BlackbodyGenerator
                gen = BlackbodyGenerator()
            elif isinstance(spec, (str, Path)):
                from .neural import load_generator
                gen = load_generator(spec, device=device)
            else:
                gen = spec()
            old = _WORKER_GENERATORS.get(key)
            if old is not None:
                # the replaced model's shared backends and cached SSPs (ssp_grid on this worker) go with it
                from .ssp import _forget_generator
                _forget_generator(old)
            _WORKER_GENERATORS[key] = gen
            _WORKER_VERSIONS[key] = version
    return gen


def _generator_fingerprint(gen):
    """sha1 of what defines a generator's spectra: its files (weights, config, meta) or name + wavelengths.

    Part of every store's identity, so a retrained model (same path, new weights) never fills in a store
    computed with the old one.
    """
    # load options that change the spectra of the same files
    options = {k: getattr(gen, k) for k in ("renormalise",) if hasattr(gen, k)}
    options["fill_tail"] = getattr(gen, "tail", None) is not None
    h = hashlib.sha1(f"{type(gen).__name__}:{gen.name}:{sorted(options.items())}".encode())
    h.update(np.ascontiguousarray(gen.wavelength, float).tobytes())
    files = []
    directory = getattr(gen, "directory", None)
    if directory is not None:
        files = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix != ".md")
    for key in ("weights", "meta_file"):
        if isinstance(gen.meta, dict) and key in gen.meta:
            files.append(Path(gen.meta[key]))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    base = getattr(gen, "base", None)             # a wrapper (e.g. semi-empirical): its base model too
    if base is not None and base is not gen and hasattr(base, "wavelength"):
        h.update(_generator_fingerprint(base).encode())
    return h.hexdigest()


def _generator_info(spec, device):
    """(name, wavelength [A], fingerprint, tail filled, weights' sha256 or None) of a generator, computed
    where it is loaded (a worker)."""
    from .ssp import _tail_filled, _weights_sha256
    gen = worker_generator(spec, device)
    return (gen.name, np.asarray(gen.wavelength, float), _generator_fingerprint(gen), _tail_filled(gen),
            _weights_sha256(gen))


# ---------------------------------------------------------------------------------------------------
# Clients, progress
# ---------------------------------------------------------------------------------------------------
def local_cluster(n_workers=2, threads_per_worker=1, memory_limit="auto", dashboard=True):
    """A ``distributed.LocalCluster`` of worker *processes* on the loopback interface.

    Each worker loads its generator once; torch inside a worker uses one thread (Dask sets OMP_NUM_THREADS=1
    for the processes it starts), so ``n_workers`` is the number of cores used.
    """
    _require_dask()
    from distributed import LocalCluster
    if int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    return LocalCluster(n_workers=int(n_workers), threads_per_worker=int(threads_per_worker), processes=True,
                        host="127.0.0.1", memory_limit=memory_limit,
                        dashboard_address="127.0.0.1:0" if dashboard else None)


def get_client(client=None):
    """``client`` if given, else the current default ``distributed.Client``, else None (run here)."""
    if client is not None:
        return client
    try:
        from distributed import default_client
        return default_client()
    except (ModuleNotFoundError, ValueError):
        return None


def _run_tasks(tasks, client, progress, desc):
    """Run ``tasks`` [(function, args)] on ``client`` (or here, in order); yield results as they complete."""
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(tasks), desc=desc, unit="task")
    try:
        if client is None:
            for fn, args in tasks:
                yield fn(*args)
                if bar is not None:
                    bar.update()
            return
        from distributed import as_completed
        # pure=False: a rerun after a failure must run again, never reuse a cached failed key
        futures = [client.submit(fn, *args, pure=False) for fn, args in tasks]
        try:
            for fut in as_completed(futures):
                yield fut.result()
                if bar is not None:
                    bar.update()
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------------
# SSP grid families
# ---------------------------------------------------------------------------------------------------
class SSPConfig(NamedTuple):
    """One SSP grid: isochrone family (a name: parsec, padova, mist; a file of isochrones is
    :func:`smnet_sps.ssp.ssp_grid`'s), IMF, generator spec, ages [yr] and Z (metal mass fraction)."""

    isochrones: str = "parsec"
    imf: str = "kroupa"
    generator: object = None
    ages: object = None          # Quantity [time] or years; None = all tabulated ages of the family
    Zs: object = None            # metal mass fractions; None = all tabulated Z of the family
    special_phases: str = "model"
    outside: str = "extrapolate"
    name: str | None = None      # store name; default: from the content (stable across reruns)


class RunSummary(NamedTuple):
    """What a distributed run did: ``stores`` (paths), and counts of blocks (tasks)."""

    stores: list
    n_blocks: int                # blocks in all stores
    n_skipped: int               # already complete in the store before this run
    n_computed: int              # computed (and written) by this run
    seconds: float
    dashboard: str | None = None


def _as_config(cfg):
    if isinstance(cfg, SSPConfig):
        return cfg
    if isinstance(cfg, dict):
        unknown = set(cfg) - set(SSPConfig._fields)
        if unknown:
            raise ValueError(f"unknown SSP config key(s) {sorted(unknown)}; "
                             f"allowed: {list(SSPConfig._fields)}")
        return SSPConfig(**cfg)
    if isinstance(cfg, (tuple, list)) and 1 <= len(cfg) <= len(SSPConfig._fields):
        return SSPConfig(*cfg)
    raise ValueError("each config must be an SSPConfig, a dict with keys "
                     f"{list(SSPConfig._fields)}, or a tuple (isochrones, imf, generator, ages, Zs)")


def _resolve_config(cfg, age_chunk):
    """Validated, JSON-able description of one grid (ages in yr, Z, ages per task) and its store name."""
    from .imf import get_imf
    from .isochrones import FAMILY_CHOICES, is_family_name, load_isochrones
    from .ssp import parse_age

    cfg = _as_config(cfg)
    if not isinstance(cfg.imf, str):
        raise ValueError("imf must be a name (kroupa, salpeter, chabrier) in a distributed run")
    get_imf(cfg.imf)
    cfg = cfg._replace(generator=_check_resumable(_check_spec(cfg.generator), "ssp_grids"))
    if cfg.special_phases not in ("model", "dedicated"):
        raise ValueError(f"special_phases must be 'model' or 'dedicated', got {cfg.special_phases!r}")
    if cfg.outside not in ("extrapolate", "blackbody", "exclude"):
        raise ValueError(f"outside must be 'extrapolate', 'blackbody' or 'exclude', got {cfg.outside!r}")
    if not is_family_name(cfg.isochrones):
        # the workers load a family by name: a CMD file or an IsochroneSet was "unknown isochrone family
        # '.../my_cmd.dat'", which did not say that a file is not taken here nor where it is
        raise ValueError(f"isochrones {cfg.isochrones!r}: a distributed run takes an isochrone family "
                         f"({FAMILY_CHOICES}); a file of isochrones (a CMD output, a converted .npz) or an "
                         "IsochroneSet runs in one process: smnet_sps.ssp_grid(ages, Z, isochrones=...) "
                         "(the command: ssp-grid without --scheduler / --workers)")
    iso = load_isochrones(cfg.isochrones)
    if cfg.ages is None:
        ages_yr = 10.0 ** iso.log_age
    else:
        log_ages = np.atleast_1d(parse_age(cfg.ages)).astype(float)
        # an age within the set's printed digits beyond its first / last age is that age, as in ssp_grid
        # (the store kept the asked years while the spectra were the end age's)
        checked = iso.check_age(log_ages)
        clipped, log_ages = not np.array_equal(checked, log_ages), checked
        # years as given stay the caller's exact numbers (so a grid equals ssp_grid(ages, ...) bit for bit)
        plain = not isinstance(cfg.ages, (u.Quantity, str)) and all(
            isinstance(a, (int, float, np.integer, np.floating)) for a in np.atleast_1d(np.asarray(cfg.ages,
                                                                                             object)))
        ages_yr = np.atleast_1d(np.asarray(cfg.ages, float)) if plain and not clipped else 10.0 ** log_ages
    Zs = iso.Z.copy() if cfg.Zs is None else np.atleast_1d(np.asarray(cfg.Zs, float))
    Zs = iso.check_z(Zs)
    ages_yr, Zs = np.unique(ages_yr), np.unique(Zs)      # increasing, distinct axes, as ssp_grid's
    if age_chunk is not None:
        # 2.5 ran as blocks of 2 and True as blocks of 1; "2" and NaN failed in int() naming no option
        age_chunk = _check_count(age_chunk, "age_chunk", 1, "ages per block, or None for all")
    desc = {"isochrones": iso.name, "imf": cfg.imf, "generator": _spec_label(cfg.generator),
            "ages_yr": [float(a) for a in ages_yr], "Z": [float(z) for z in Zs],
            "generator_id": _spec_id(cfg.generator),
            "special_phases": cfg.special_phases, "outside": cfg.outside,
            "age_chunk": int(min(age_chunk or ages_yr.size, ages_yr.size))}
    if cfg.special_phases == "dedicated":
        # the WR rule the spectra follow (a "model" store's output never depended on it: its config, and
        # so its name and config_sha1, stay as before and it resumes)
        from .backend import WR_RULE_VERSION
        desc["wr_rule"] = WR_RULE_VERSION
    return cfg, desc


_SSP_SCALARS = ("log_lbol", "log_mass", "mass_stars", "mass_remnants", "missing_fraction", "outside_fraction",
                "mass_uncovered")


def _top_cut_rows(age_chunk):
    """Rows of /top_cut per block: its SSPs interpolate between at most 2 tabulated Z and 2 ages each."""
    return 4 * int(age_chunk)


def _check_ssp_version(path, group, reading=False):
    """Refuse a store of another layout. ``reading`` a finished store: a version-2 one is read, with a
    warning (its stellar masses count the first IMF interval's stars at the first point's mass, FSPS's
    rule: up to 1.7 % more than now, light the same); only resuming it would mix the two rules."""
    version = group.attrs.get("format_version")
    if reading and version == 2:
        warnings.warn(f"{path}: an SSP grid store of format_version 2, made before the first IMF interval's "
                      "stars were counted at their own masses: its mass_stars / log_mass follow FSPS's rule "
                      "(up to 1.7 % higher; light unchanged); rerun ssp_grids into a new store for the "
                      "current rule", UserWarning, stacklevel=3)
        return
    if version != SSP_STORE_VERSION:
        raise ValueError(f"{path}: SSP grid store format_version {version}, this smnet-sps reads "
                         f"{SSP_STORE_VERSION} (version 2 added mass_uncovered and top_cut, which a "
                         "version-1 store lacks; version 3 counts the stars of the first IMF interval at "
                         "their own masses, imf.first_interval_excess, so a version-2 store resumed now "
                         "would mix two mass rules); delete the store and rerun ssp_grids")


def _other_wr_rule(config):
    """For the ``config`` of an SSP grid store: None unless it is special_phases="dedicated" and made under
    another Wolf-Rayet rule than :data:`smnet_sps.backend.WR_RULE_VERSION` (none recorded: before 2026-12,
    when WR stars took the model's spectra above the CMFGEN top and stripped massive stars kept
    planetary-nebula-nucleus spectra); then the words naming both rules, for the refusal and the warning."""
    from .backend import WR_RULE_VERSION
    if config.get("special_phases") != "dedicated" or config.get("wr_rule") == WR_RULE_VERSION:
        return None
    was = f"rule {config['wr_rule']}" if "wr_rule" in config else "no rule recorded: before 2026-12"
    return (f"{was}; this smnet-sps applies rule {WR_RULE_VERSION}: WR stars held at the CMFGEN grid's top, "
            "stripped massive stars given WR spectra, backend.wr_like, e.g. PARSEC Z 0.0304, 4 Myr: "
            "log Q(He+) 45.10 -> 38.07, docs/ssp.md")


def _check_wr_rule(path, group, desc):
    """Refuse to resume a special_phases="dedicated" store begun under another Wolf-Rayet rule
    (:func:`_other_wr_rule`): its remaining blocks would follow the new rule, two rules in one grid."""
    # a config of another special_phases is another grid: config_sha1's refusal names it
    other = desc["special_phases"] == "dedicated" and _other_wr_rule(group.attrs.get("config") or {})
    if other:
        raise ValueError(f"{path}: a special_phases='dedicated' SSP grid store begun under another "
                         f"Wolf-Rayet rule ({other}); resumed, its remaining blocks would follow the new "
                         "rule, two rules in one grid. Delete the store or give ssp_grids another store "
                         "folder, and rerun")


def _refuse_foreign_folder(path):
    """A store is created only where nothing is: zarr's mode "w" empties a folder, and an existing folder
    that is not a store (a user's results, a Zarr v2 store) was wiped without --overwrite."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path} exists and is not an smnet-sps store: it is not replaced; give another "
                         "store path or remove it")


def _imf_mass_range(imf):
    """[m_low, m_up] [M_sun] of the IMF named ``imf``, as ssp_grid's attrs record it: a store held the name
    alone, though the limits set the mass formed per M_sun and the light of the most massive stars."""
    from .imf import get_imf
    imf_obj = get_imf(imf)
    return [float(imf_obj.m_low), float(imf_obj.m_up)]


def _open_ssp_store(path, desc, digest, gen_name, wave, tail_filled, gen_sha=None):
    """Create the Zarr group of one grid, or reopen it after checking it holds the same grid."""
    import zarr
    from .output_files import provenance
    path = Path(path)
    n_z, n_age = len(desc["Z"]), len(desc["ages_yr"])
    n_blocks = math.ceil(n_age / desc["age_chunk"])
    if (path / "zarr.json").exists():
        group = zarr.open_group(str(path), mode="r+")
        if group.attrs.get("format") == SSP_STORE_FORMAT:
            _check_wr_rule(path, group, desc)       # before config_sha1: the rule is part of the config
        if group.attrs.get("format") != SSP_STORE_FORMAT or group.attrs.get("config_sha1") != digest:
            raise ValueError(f"{path} holds another SSP grid (or is not an smnet-sps store); give another "
                             "store directory or delete it")
        _check_ssp_version(path, group)
        group.attrs.setdefault("tail_filled", bool(tail_filled))     # a store begun before it was recorded
        if gen_sha:             # the same generator files (their fingerprint is in config_sha1)
            group.attrs.setdefault("generator_sha256", gen_sha)
        group.attrs.setdefault("imf_mass_range", _imf_mass_range(desc["imf"]))     # begun before it was
        return group
    _refuse_foreign_folder(path)
    group = zarr.open_group(str(path), mode="w")
    ac = desc["age_chunk"]
    group.create_array("ssp_flux", shape=(n_z, n_age, wave.size), chunks=(1, ac, wave.size), dtype="f8",
                       fill_value=np.nan)
    for key in _SSP_SCALARS:
        group.create_array(key, shape=(n_z, n_age), chunks=(1, ac), dtype="f8", fill_value=np.nan)
    # ssp_grid's attrs["top_cut"] of each block: rows (Z, log t, top mass) of its tabulated isochrones cut
    # at the top (the isochrones bracketing its SSPs, not the SSPs'), 0 beyond; the grid's is their union
    rows = _top_cut_rows(ac)
    group.create_array("top_cut", shape=(n_z, n_blocks, rows, 3), chunks=(1, 1, rows, 3), dtype="f8",
                       fill_value=0.0)
    group.create_array("done", shape=(n_z, n_blocks), chunks=(1, 1), dtype="u1", fill_value=0)
    group.create_array("ssp_wave", data=wave)
    group.create_array("ssp_lgmet", data=np.log10(np.asarray(desc["Z"])))
    group.create_array("ssp_lg_age_gyr", data=np.log10(np.asarray(desc["ages_yr"])) - 9.0)
    group.attrs.update({
        "format": SSP_STORE_FORMAT, "format_version": SSP_STORE_VERSION, "config_sha1": digest,
        "config": desc, "flux_unit": "L_sun / Angstrom per M_sun formed", "wavelength_unit": "Angstrom",
        "wavelength_medium": "vacuum", "ssp_lgmet": "log10 Z (metal mass fraction)",
        "ssp_lg_age_gyr": "log10(age / Gyr)", "generator": gen_name, "tail_filled": bool(tail_filled),
        "isochrones": desc["isochrones"],
        "imf": desc["imf"], "imf_mass_range": _imf_mass_range(desc["imf"]),
        "generator_sha1": desc["generator_sha1"],
        "special_phases": desc["special_phases"], "outside": desc["outside"],
        "done": "1 where block (Z index, age block of age_chunk ages) is complete; written after its data",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # the version and the weights' sha256, under the keys of every output (the generator's name is above)
        **{k: v for k, v in provenance(gen_name, gen_sha).items() if k != "generator"},
    })
    # what ssp_grid's attrs carry besides: the family's solar Z (a Padova grid read without it was taken
    # as Zsun = 0.0152, 0.1 dex off in [M/H]), its citation, and the grid's medium and LSF
    from .isochrones import load_isochrones
    from .lsf import lsf_meta
    iso = load_isochrones(desc["isochrones"])
    group.attrs.update({"zsun": float(iso.zsun), "citation": iso.citation,
                        "isochrone_file": iso.source_file,
                        **{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                           for k, v in lsf_meta(np.asarray(wave, float)).items()}})
    return group


def _ssp_block(store, desc, spec, device, iz, ib):
    """One task: SSPs at Z[iz] for the ib-th block of ages, written to the store, then marked done."""
    import zarr
    from .ssp import ssp_grid

    gen = worker_generator(spec, device)
    ac = desc["age_chunk"]
    ages = np.asarray(desc["ages_yr"])[ib * ac:(ib + 1) * ac]
    with _quiet_coverage():                      # coverage is recorded in outside_fraction
        grid = ssp_grid(ages, [desc["Z"][iz]], imf=desc["imf"], isochrones=desc["isochrones"], generator=gen,
                        special_phases=desc["special_phases"], outside=desc["outside"], progress=False,
                        device=device)
    group = zarr.open_group(str(store), mode="r+")
    sl = slice(ib * ac, ib * ac + ages.size)
    group["ssp_flux"][iz, sl] = grid.ssp_flux[0]
    for key in _SSP_SCALARS:
        group[key][iz, sl] = getattr(grid, key)[0]
    cuts = np.zeros((_top_cut_rows(ac), 3))
    cuts[:len(grid.attrs["top_cut"])] = np.asarray(grid.attrs["top_cut"], float).reshape(-1, 3)
    group["top_cut"][iz, ib] = cuts
    group["done"][iz, ib] = 1                    # after the data: a marker never points at missing data
    return str(store), iz, ib


def _ssp_blocks(items, spec, device):
    """One task: several blocks that share generator, isochrones and Z (e.g. an IMF family), in one worker.

    The worker's stellar-library backend caches spectra per isochrone point, so the second and later grids of
    the group reuse the first one's spectra instead of each worker generating them again. A block already
    marked done (the task is a retry after its worker died) is not computed again.
    """
    import zarr
    out = []
    for store, desc, iz, ib in items:
        if not zarr.open_group(str(store), mode="r")["done"][iz, ib]:
            _ssp_block(store, desc, spec, device, iz, ib)
        out.append((store, iz, ib))
    return out


def ssp_grids(configs, client=None, store="ssp_grids", *, age_chunk=None, device="auto", progress=None):
    """Many SSP grids as Dask tasks, one Zarr store per grid, resumable.

    Parameters
    ----------
    configs : list of :class:`SSPConfig`, dicts with its fields, or tuples
        (isochrones, imf, generator, ages, Zs)
        ``generator`` is a spec (see :func:`worker_generator`), never a loaded model; ``ages`` a time Quantity
        or years (None: all tabulated), ``Zs`` metal mass fractions (None: all tabulated).
    client : distributed.Client, or None (the default client if one exists, else this process, serially)
    store : directory holding one ``<name>.zarr`` group per grid (created if missing)
    age_chunk : ages per block (default: all ages of a grid, i.e. one block per (grid, Z)). One task computes
        the blocks of all grids that share generator, isochrones, options, Z and ages -- grids that differ
        only in the IMF -- so their stellar spectra are generated once, on one worker.
    device : where workers run the generator ("auto": CUDA when present)
    progress : bool or None, a tqdm bar (on stderr) over tasks; None (default): drawn when stderr is a
        terminal or in a Jupyter kernel, never into a log file (:mod:`smnet_sps.progress`)

    Returns
    -------
    RunSummary
        ``stores`` in the order of ``configs``; read one with :func:`load_ssp_store` (an
        :class:`smnet_sps.ssp.SSPGrid`, ``ssp_flux`` in L_sun / A per M_sun formed, vacuum wavelengths [A]).
        A KeyboardInterrupt (Ctrl-C) or an OSError (a full disk) part way carries a note of the blocks of
        these configs kept (the rerun resumes from them).
    """
    _require_dask()
    progress = want_progress(progress)
    t0 = time.perf_counter()
    client = get_client(client)
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: give at least one (isochrones, imf, generator, ages, Zs)")
    root = Path(store).absolute()                 # workers may not share this process's working directory
    if root.exists() and not root.is_dir():
        # mkdir's bare "FileExistsError: [Errno 17] File exists" named neither the option nor what it needs
        raise ValueError(f"store={str(store)!r} is a file; ssp_grids needs a folder (one Zarr store per "
                         "config inside it): give a new or existing folder")
    resolved = [_resolve_config(cfg, age_chunk) for cfg in configs]     # every config checked before any work
    # generator name, wavelengths and fingerprint, read on a worker (so the client never loads a model)
    infos = {}
    for cfg, _ in resolved:
        key = _spec_key(cfg.generator, device)
        if key not in infos:
            infos[key] = (_generator_info(cfg.generator, device) if client is None else
                          client.submit(_generator_info, cfg.generator, device, pure=False).result())
    stores = []
    for cfg, desc in resolved:
        gen_name, wave, fingerprint, tail_filled, gen_sha = infos[_spec_key(cfg.generator, device)]
        desc = dict(desc, generator_sha1=fingerprint)
        digest = hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:10]
        name = cfg.name or f"ssp_{desc['isochrones']}_{desc['imf']}_{desc['generator']}_{digest}"
        stores.append((cfg, desc, digest, root / f"{name}.zarr", gen_name, wave, tail_filled, gen_sha))
    paths = [st[3] for st in stores]
    if len(set(paths)) < len(paths):
        raise ValueError("two configs map to the same store: remove the duplicate or give distinct names")
    # made only now that every config is checked: a refused run (bad isochrones, age, option) left an
    # empty folder behind
    root.mkdir(parents=True, exist_ok=True)
    # one task per (generator, isochrones, options, Z, age block); grids that differ only in the IMF share it
    groups, specs, n_blocks, n_missing = {}, {}, 0, 0
    try:
        for cfg, desc, digest, path, gen_name, wave, tail_filled, gen_sha in stores:
            group = _open_ssp_store(path, desc, digest, gen_name, wave, tail_filled, gen_sha)
            done = np.asarray(group["done"][:])
            n_blocks += done.size
            for iz, ib in zip(*np.nonzero(done == 0)):
                ac = desc["age_chunk"]
                key = (_spec_key(cfg.generator, device), desc["isochrones"], desc["special_phases"],
                       desc["outside"], desc["Z"][iz], tuple(desc["ages_yr"][ib * ac:(ib + 1) * ac]))
                groups.setdefault(key, []).append((str(path), desc, int(iz), int(ib)))
                specs[key] = cfg.generator
                n_missing += 1
        tasks = [(_ssp_blocks, (items, specs[key], device)) for key, items in groups.items()]
        n_computed = sum(len(r) for r in _run_tasks(tasks, client, progress, "SSP tasks"))
    except (KeyboardInterrupt, OSError) as exc:       # OSError: a full disk, a quota
        # what is kept of these configs' stores only: the folder may hold other runs' (another IMF's)
        _note_kept_blocks(exc, [p for p in paths if p.exists()], "block")
        raise
    return RunSummary(paths, n_blocks, n_blocks - n_missing, n_computed, time.perf_counter() - t0,
                      getattr(client, "dashboard_link", None) if client is not None else None)


def _open_finished_store(path, store_format, what, parts, how_to_finish, allow_incomplete):
    """Open a Zarr store of ``store_format`` read-only: ``(group, done flags)``; refuse an unfinished one."""
    import zarr
    group = zarr.open_group(str(path), mode="r")
    if group.attrs.get("format") != store_format:
        raise ValueError(f"{path} is not an smnet-sps {what}")
    done = np.asarray(group["done"][:])
    if not allow_incomplete and not done.all():
        raise ValueError(f"{path}: {int((done == 0).sum())} of {done.size} {parts} are not computed yet; "
                         f"{how_to_finish} (or pass allow_incomplete=True)")
    return group, done


def load_ssp_store(path, allow_incomplete=False):
    """Read one grid store of :func:`ssp_grids` as an :class:`smnet_sps.ssp.SSPGrid`.

    Raises ValueError if some blocks are not complete yet (unless ``allow_incomplete``: they are NaN).
    ``attrs`` are :func:`smnet_sps.ssp.ssp_grid`'s units and provenance (generator, ``tail_filled``,
    isochrones and their ``zsun`` and citation, IMF, rules, medium, LSF), not its costs and per-isochrone
    statistics of one process (``n_points``, ``n_unique``, ``seconds``, ``timing``,
    ``luminosity_correction``): the blocks were computed apart; the run's wall time is
    :func:`ssp_grids`' ``seconds``. ``attrs["top_cut"]`` and ``mass_uncovered`` are ssp_grid's (the
    top cut over the computed blocks only, when ``allow_incomplete``). A store of an older layout
    (``format_version`` other than :data:`SSP_STORE_VERSION`) is refused, except a finished version-2 store,
    read with a warning (its masses follow FSPS's first-interval rule, up to 1.7 % higher). A
    special_phases="dedicated" store whose ``wr_rule`` is not :data:`smnet_sps.backend.WR_RULE_VERSION`
    (none recorded: made before 2026-12) is read with a warning naming both rules too.
    """
    from .ssp import SSPGrid

    group, done = _open_finished_store(path, SSP_STORE_FORMAT, "SSP grid store", "blocks",
                                       "rerun ssp_grids with the same configs to finish it", allow_incomplete)
    _check_ssp_version(path, group, reading=True)
    other = _other_wr_rule(group.attrs.get("config") or {})
    if other:           # as _check_wr_rule refuses to resume
        warnings.warn(f"{path}: a special_phases='dedicated' store made under another Wolf-Rayet rule "
                      f"({other}); rerun ssp_grids into a new store for the current rule", UserWarning,
                      stacklevel=2)
    arr = {k: np.asarray(group[k][:]) for k in ("ssp_lgmet", "ssp_lg_age_gyr", "ssp_wave", "ssp_flux",
                                                 *_SSP_SCALARS)}
    attrs = dict(group.attrs)
    # the union of the blocks' cuts, in ssp_grid's order (its isochrones sorted by Z, then age)
    cuts = np.asarray(group["top_cut"][:])[done.astype(bool)].reshape(-1, 3)
    attrs["top_cut"] = [list(c) for c in sorted({tuple(float(v) for v in row) for row in cuts if row[2] > 0})]
    return SSPGrid(arr["ssp_lgmet"], arr["ssp_lg_age_gyr"], arr["ssp_wave"], arr["ssp_flux"], arr["log_lbol"],
                   arr["log_mass"], arr["mass_stars"], arr["mass_remnants"], arr["missing_fraction"], attrs,
                   arr["outside_fraction"], arr["mass_uncovered"])


# ---------------------------------------------------------------------------------------------------
# Stars: (Teff, log g, [M/H], L) -> spectra or magnitudes, chunk by chunk
# ---------------------------------------------------------------------------------------------------
def points_array(points, chunk_rows=100_000):
    """A Dask array (n, 4) of (Teff [K], log g, [M/H], L [L_sun]) chunked along rows only.

    ``points`` may be a Dask or NumPy array (n, 4) in that column order, or a (Dask) DataFrame with columns
    ``teff``, ``logg``, ``logz`` and ``L`` [L_sun] or ``logl`` = log10 L/L_sun (one of them: both is a
    ValueError). ``chunk_rows``: stars per chunk, an integer >= 1.
    """
    _require_dask()
    # checked before it sizes anything: 0 was a ZeroDivisionError (or a Dask chunks error), 2.5 ran as 2
    chunk_rows = _check_count(chunk_rows, "chunk_rows", 1, "stars per chunk")
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    if isinstance(points, (pd.DataFrame, dd.DataFrame)):
        from .star_tables import check_points_columns
        cols = check_points_columns(points.columns)     # the rule (and message) of star_tables' tables
        need = ["teff", "logg", "logz"]
        if isinstance(points, pd.DataFrame):
            points = dd.from_pandas(points, npartitions=max(1, math.ceil(len(points) / chunk_rows)))
        lum = points["L"] if "L" in cols else 10.0 ** points["logl"]
        frame = points[need].assign(L=lum)
        arr = frame.to_dask_array(lengths=True).astype(float)
    elif isinstance(points, da.Array):
        arr = points.astype(float)
    else:
        arr = da.from_array(np.asarray(points, float), chunks=(chunk_rows, -1))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"points must have shape (n, 4) = (teff, logg, logz, L); got {arr.shape}")
    return arr.rechunk((chunk_rows, 4))


def read_points(path, chunk_rows=100_000):
    """Stars from a Parquet file or folder (columns teff, logg, logz, L or logl) as :func:`points_array`."""
    _require_dask()
    import dask.dataframe as dd
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"points table not found: {path}")
    return points_array(dd.read_parquet(str(path)), chunk_rows)


def _points_block(block, spec, device, *args, **kwargs):
    """:func:`smnet_sps.star_tables.stars_block` with the generator ``spec`` loaded once per worker."""
    # imported here, not with the module: star_tables brings astropy.table (~0.3-0.6 s of a worker's start),
    # which the SSP tasks and the main process's import do not need
    from .star_tables import stars_block
    return stars_block(block, worker_generator(spec, device), *args, **kwargs)


def _points_chunk(block, *args, n_wave=None, block_info=None):
    """:func:`_points_block` of one Dask chunk, its bad rows named by their row in the table: the chunk's
    first row comes from Dask's ``block_info`` (without it, a NaN Teff at row 23 in chunks of 10 was
    "row 3")."""
    offset = 0 if block_info is None else int(block_info[0]["array-location"][0][0])
    return _points_block(block, *args, offset=offset, n_wave=n_wave)


def _check_batch_size(batch_size):
    """``batch_size`` as an int >= 1 (Generator.stream's rule), checked before any work: 2.5 ran as 2 and
    True as 1 (int() truncated it), None was int()'s TypeError, and surface_flux checked nothing until a
    worker's stream refused 0."""
    return _check_count(batch_size, "batch_size", 1, "stars per generator pass")


def _map_points(points, spec, device, what, filters, system, distance, batch_size, chunk_rows, k, out_dtype):
    from .photometry import _positive_length
    arr = points_array(points, chunk_rows)
    distance_cm = None if distance is None else _positive_length(distance, "distance")
    # meta given: without it Dask called the task on an empty block to infer it, which loaded the generator
    # in this process (6 s for the default model, kept in its memory) when only lazy arrays were asked for
    both = arr.map_blocks(_points_chunk, spec, device, what, tuple(filters or ()), system, distance_cm,
                          int(batch_size), out_dtype, chunks=(arr.chunks[0], (k + 1,)), dtype=out_dtype,
                          meta=np.empty((0, 0), out_dtype), n_wave=k if what == "spectra" else None)
    return both[:, :k], both[:, k].astype(bool)


def magnitudes(points, filters, system="AB", *, generator=None, distance=None, batch_size=4096,
               chunk_rows=100_000, device="auto"):
    """Magnitudes of stars (Teff, log g, [M/H], L) as lazy Dask arrays: no spectrum leaves a task.

    Parameters
    ----------
    points : see :func:`points_array` (Dask/NumPy array (n, 4), or a DataFrame with teff, logg, logz, L/logl)
    filters : list of filter names or files (as :func:`smnet_sps.photometry.magnitudes`)
    system : "AB", "ST" or "Vega"
    generator : spec (see :func:`worker_generator`)
    distance : Quantity [length] or None (10 pc: absolute magnitudes)
    batch_size : stars per generator pass inside a task (memory: ~batch_size x n_wave x 8 bytes)
    chunk_rows : stars per task

    Returns
    -------
    (mags, inside) : Dask arrays (n, n_filters) [mag] and (n,) bool (inside the generator's coverage), two
        views of one task per chunk: compute them together, ``dask.compute(mags, inside)`` (one generator
        pass); ``mags.compute()`` then ``inside.compute()`` runs every chunk's generator pass twice. Nothing
        is loaded or computed here.
    """
    from .filters import resolve_filters, split_filter_names
    from .photometry import _system
    generator = _check_spec(generator)
    filters = split_filter_names(filters) if isinstance(filters, str) else list(filters)
    resolve_filters(filters)                      # a bad name fails here, not on a worker
    system = _system(system)
    batch_size = _check_batch_size(batch_size)
    return _map_points(points, generator, device, "magnitudes", filters, system, distance, batch_size,
                       chunk_rows, len(filters), "f8")


def surface_flux(points, *, generator=None, batch_size=4096, chunk_rows=10_000, device="auto",
                 wavelength=None, out_dtype="f4"):
    """Surface fluxes F_lambda [erg s^-1 cm^-2 A^-1] of stars as lazy Dask arrays (n, n_wave) and (n,) inside.

    ``points`` as :func:`points_array` (L is not used). ``wavelength`` [A]: the generator's grid, needed for
    the output shape; None loads the generator here once to read it. ``out_dtype``: float32 (default) or
    float64 (None: float64), else a ValueError, as :meth:`Generator.stream`. Write the result chunk by chunk
    with :func:`write_points` (``what="spectra"``) or ``dask.array.to_zarr``. As for :func:`magnitudes`, the
    two arrays share one task per chunk: compute them in one ``dask.compute(flux, inside)``.
    """
    generator = _check_spec(generator)
    batch_size = _check_batch_size(batch_size)
    # Generator.stream's rule: float16 made 1693 of 2442 pixels inf, an integer dtype truncated
    out_dtype = _check_out_dtype(out_dtype) or np.dtype("f8")
    if wavelength is None:
        wavelength = worker_generator(generator, device).wavelength
    return _map_points(points, generator, device, "spectra", None, None, None, batch_size, chunk_rows,
                       int(np.size(wavelength)), out_dtype)


def _is_points_store(path, what):
    """True for a Zarr store of ``what`` ("magnitudes" / "spectra") written by :func:`write_points`."""
    import json
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return attrs.get("format") == POINTS_STORE_FORMAT and attrs.get("what") == what


def _open_points_store(path, n, chunk_rows, k, n_blocks, attrs, wave, out_dtype):
    import zarr
    path = Path(path)
    if (path / "zarr.json").exists():
        group = zarr.open_group(str(path), mode="r+")
        if (group.attrs.get("format") != POINTS_STORE_FORMAT
                or group.attrs.get("config_sha1") != attrs["config_sha1"]):
            # the hint named only "delete it"; the command line replaces it with --overwrite (write_points
            # itself has no overwrite option)
            raise ValueError(f"{path} holds another run (other points, filters, generator or chunking); give "
                             "another store, delete it, or pass --overwrite (smnet-sps mags --points) to "
                             "replace it")
        # out_dtype is not part of the run's identity: a store begun in float32 resumed with out_dtype="f8"
        # filled the rest in float32 without a word (float64 over float32: chunks of two precisions)
        stored = group["magnitudes" if attrs["what"] == "magnitudes" else "flux"].dtype
        if stored != np.dtype(out_dtype):
            raise ValueError(f"{path} holds {stored} values (the out_dtype of the run that began it), not "
                             f"{np.dtype(out_dtype)}: resume it with out_dtype={stored.str[1:]!r}, or give "
                             "another store")
        group.attrs.setdefault("tail_filled", attrs["tail_filled"])   # a store begun before it was recorded
        return group
    _refuse_foreign_folder(path)
    group = zarr.open_group(str(path), mode="w")
    name = "magnitudes" if attrs["what"] == "magnitudes" else "flux"
    group.create_array(name, shape=(n, k), chunks=(chunk_rows, k), dtype=out_dtype, fill_value=np.nan)
    group.create_array("inside", shape=(n,), chunks=(chunk_rows,), dtype="u1", fill_value=0)
    group.create_array("done", shape=(n_blocks,), chunks=(1,), dtype="u1", fill_value=0)
    if wave is not None:
        group.create_array("wavelength", data=np.asarray(wave, float))
    group.attrs.update(attrs)
    return group


def _write_block(block, store, what, ib, start, spec, device, filters, system, distance_cm, batch_size,
                 out_dtype):
    import zarr
    out = _points_block(block, spec, device, what, filters, system, distance_cm, batch_size, out_dtype, start)
    group = zarr.open_group(str(store), mode="r+")
    k = out.shape[1] - 1
    group["magnitudes" if what == "magnitudes" else "flux"][start:start + out.shape[0]] = out[:, :k]
    group["inside"][start:start + out.shape[0]] = out[:, k].astype("u1")
    group["done"][ib] = 1                         # after the data
    return ib


def write_points(points, store, filters=None, system="AB", *, what="magnitudes", generator=None,
                 distance=None, client=None, batch_size=4096, chunk_rows=100_000, device="auto",
                 progress=None, out_dtype=None):
    """Magnitudes (or spectra) of any number of stars, written chunk by chunk to a resumable Zarr store.

    Parameters
    ----------
    points : see :func:`points_array`; or a path to a Parquet table (:func:`read_points`)
    store : path of the Zarr group (created; rerunning with the same inputs fills in only missing chunks --
        a Parquet path, a NumPy array or a Dask array with a deterministic graph are recognised as the same)
    filters, system, distance : as :func:`magnitudes` (``what="magnitudes"``)
    what : "magnitudes" (n x n_filters numbers per run, the default) or "spectra" (F_lambda, n x n_wave)
    client : distributed.Client or None (the default client if one exists, else this process)
    chunk_rows : stars per task and per Zarr chunk
    progress : bool or None, a tqdm bar (on stderr) over chunks; None (default): on a terminal or in a
        Jupyter kernel only (:mod:`smnet_sps.progress`)
    out_dtype : float32 or float64 (else a ValueError, as :meth:`Generator.stream`); "f8" for magnitudes,
        "f4" for spectra by default. A store is resumed only with the dtype it was begun in (a ValueError
        names it)

    Returns
    -------
    RunSummary (one store); read it with :func:`load_points_store`. A KeyboardInterrupt (Ctrl-C) or an
    OSError (a full disk) while the chunks are computed and written carries a note of the chunks kept (the
    rerun resumes from them). The group holds ``magnitudes`` (n,
    n_filters) [mag] or ``flux`` (n, n_wave) [erg s^-1 cm^-2 A^-1] with ``wavelength`` [A, vacuum],
    ``inside`` (n,) and ``done`` per chunk; attributes give units, filters, system, generator.
    """
    _require_dask()
    from .filters import resolve_filters, split_filter_names
    from .photometry import _system
    progress = want_progress(progress)
    t0 = time.perf_counter()
    if what not in ("magnitudes", "spectra"):
        raise ValueError(f"what must be 'magnitudes' or 'spectra', got {what!r}")
    generator = _check_resumable(_check_spec(generator), "write_points")
    client = get_client(client)
    if isinstance(points, (str, Path)):
        source = _file_identity(points)           # stable across processes, unlike a parquet graph's token
        points = read_points(points, chunk_rows)
    else:
        source = None
    arr = points_array(points, chunk_rows)
    n = arr.shape[0]
    if what == "magnitudes":
        if not filters:
            raise ValueError("filters are required for magnitudes (e.g. ['sdss2010-g', 'sdss2010-r'])")
        filters = split_filter_names(filters) if isinstance(filters, str) else list(filters)
        resolve_filters(filters)
        # a filter file by its absolute path (a worker resolved a relative one in its own folder) and its
        # contents in the run's identity (an edited file resumed a store of the old curve's magnitudes)
        filters = [str(Path(f).resolve()) if isinstance(f, (str, Path)) and Path(f).is_file() else f
                   for f in filters]
        system = _system(system)
    else:
        filters, system = [], None
    # Generator.stream's rule (float16 stored 1693 of 2442 pixels as inf in a store marked complete; an
    # integer dtype failed inside zarr on its NaN fill value)
    out_dtype = _check_out_dtype(out_dtype or ("f8" if what == "magnitudes" else "f4"))
    batch_size = _check_batch_size(batch_size)
    gen_name, wave, fingerprint, tail_filled, gen_sha = (
        _generator_info(generator, device) if client is None else
        client.submit(_generator_info, generator, device, pure=False).result())
    from .photometry import _positive_length
    distance_cm = None if distance is None else _positive_length(distance, "distance")
    k = len(filters) if what == "magnitudes" else wave.size
    # the identity of a run: points (dask's deterministic token), filters, generator, chunking
    from dask.base import tokenize
    from .checksums import file_sha256
    filter_files = {f: file_sha256(f) for f in filters if isinstance(f, str) and Path(f).is_file()}
    ident = {"points": source or tokenize(arr), "what": what, "filters": filters, "system": system,
             "filter_files": filter_files,
             "generator": _spec_id(generator), "generator_sha1": fingerprint, "distance_cm": distance_cm,
             "chunk_rows": int(chunk_rows),
             "n": int(n)}
    if what == "magnitudes":
        # stars scaled by luminosity_scale since 2026-12-03 (L F / sigma Teff^4 before), then by
        # backend.star_rule (a blackbody for an extrapolation > EXTRAPOLATION_LIMIT off): a store begun
        # with an older rule is another run, not one to complete
        ident["star_rule"] = "star_rule"
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    from .output_files import provenance
    attrs = {"format": POINTS_STORE_FORMAT, "format_version": STORE_VERSION, "config_sha1": digest,
             "what": what, "n_points": int(n), "chunk_rows": int(chunk_rows), "generator": gen_name,
             "generator_sha1": fingerprint, "tail_filled": bool(tail_filled),
             "filters": filters, "system": system,
             "unit": ("mag (" + str(system) + "); absolute (10 pc)" if distance_cm is None else
                      f"mag ({system}) at distance {distance_cm:.6g} cm") if what == "magnitudes" else
             "erg s^-1 cm^-2 Angstrom^-1 (surface flux F_lambda)",
             "star_luminosity_density": "L_lambda = L f F_lambda / integral(F_lambda) over the grid, f the "
                                        "share of a blackbody of that Teff on the grid; a blackbody of "
                                        "that Teff instead where an extrapolated F_lambda integrates "
                                        "more than EXTRAPOLATION_LIMIT x off f sigma Teff^4 "
                                        "(smnet_sps.backend.star_rule)",
             "wavelength_unit": "Angstrom", "wavelength_medium": "vacuum",
             "inside": "1 where the star lies inside the generator's training coverage",
             "done": "1 where the chunk of chunk_rows stars is complete; written after its data",
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             **provenance(gen_name, gen_sha)}     # name, version, weights' sha256, as every output
    blocks = arr.to_delayed().ravel()
    store = Path(store).absolute()                # workers may not share this process's working directory
    created = not store.exists()
    group = _open_points_store(store, n, int(chunk_rows), k, len(blocks), attrs,
                               wave if what == "spectra" else None, out_dtype)
    done = np.asarray(group["done"][:])
    starts = np.concatenate([[0], np.cumsum(arr.chunks[0])[:-1]])
    todo = np.flatnonzero(done == 0)
    args = (generator, device, tuple(filters), system, distance_cm, int(batch_size), out_dtype)
    try:
        if client is None:
            tasks = [(_compute_and_write, (blocks[i], str(store), what, int(i), int(starts[i]), *args))
                     for i in todo]
            n_computed = sum(1 for _ in _run_tasks(tasks, None, progress, what))
        else:
            import dask
            # one delayed task per missing chunk: read that chunk of points and write its results
            writes = [dask.delayed(_write_block, pure=False)(blocks[i], str(store), what, int(i),
                                                             int(starts[i]), *args) for i in todo]
            futures = client.compute(writes)
            n_computed = _collect(futures, progress, what)
    except BaseException as exc:
        # a store this call created and that holds no finished chunk is nothing to resume: removed, so that
        # a corrected table (e.g. one NaN Teff fixed) is not refused as "another run" next time
        if created and not np.asarray(group["done"][:]).any():
            import shutil
            shutil.rmtree(store, ignore_errors=True)
        elif isinstance(exc, (KeyboardInterrupt, OSError)):    # OSError: a full disk, a quota
            # here only, where the chunks are computed and written: an input that cannot be read (a
            # missing points file) fails the same way when the command is run again
            _note_kept_blocks(exc, [store], "chunk")
        raise
    return RunSummary([store], len(blocks), len(blocks) - todo.size, n_computed,
                      time.perf_counter() - t0,
                      getattr(client, "dashboard_link", None) if client is not None else None)


def _file_identity(path):
    """Path, sizes and modification times of a file or of the files in a folder."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return f"{path}:" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def _compute_and_write(block, *args):
    return _write_block(block.compute(scheduler="sync"), *args)


def _collect(futures, progress, desc):
    from distributed import as_completed
    bar = None
    if progress and futures:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(futures), desc=desc, unit="chunk")
    n = 0
    try:
        for fut in as_completed(futures):
            fut.result()
            n += 1
            if bar is not None:
                bar.update()
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        if bar is not None:
            bar.close()
    return n


def load_points_store(path, allow_incomplete=False):
    """Read a :func:`write_points` store: ``(values, inside, attrs)`` as NumPy arrays (zarr for a slice)."""
    group, done = _open_finished_store(path, POINTS_STORE_FORMAT, "points store", "chunks",
                                       "rerun write_points with the same inputs to finish it",
                                       allow_incomplete)
    name = "magnitudes" if group.attrs["what"] == "magnitudes" else "flux"
    return np.asarray(group[name][:]), np.asarray(group["inside"][:]).astype(bool), dict(group.attrs)


# ---------------------------------------------------------------------------------------------------
# Command line (registered by smnet_sps.ssp and smnet_sps.photometry; the logic lives here)
# ---------------------------------------------------------------------------------------------------
def add_cluster_args(parser):
    """``--scheduler`` / ``--workers`` (and ``--chunk-rows``) for a sub-command that can run on Dask."""
    parser.add_argument("--scheduler", default=None,
                        help="run on the Dask cluster at this address, e.g. tcp://host:8786 (pip install "
                             "'smnet-sps[dask]')")
    parser.add_argument("--workers", type=int, default=None,
                        help="run on a local Dask cluster of N worker processes (1 thread each). With "
                             "--scheduler or --workers the finished blocks are kept in a Zarr store beside "
                             "the output (OUT.store/): the same command resumes from it; delete it when done")


def wants_cluster(args):
    return getattr(args, "scheduler", None) is not None or getattr(args, "workers", None) is not None


class _CliClient:
    """Context: a Client on --scheduler, or on a LocalCluster of --workers processes; prints the dashboard."""

    def __init__(self, scheduler, workers):
        if scheduler is not None and workers is not None:
            raise ValueError("give --scheduler (an existing cluster) or --workers (a local one), not both")
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        self.scheduler, self.workers, self.cluster, self.client = scheduler, workers, None, None

    def __enter__(self):
        _require_dask()
        from distributed import Client
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"cannot reach the Dask scheduler at {self.scheduler!r}: {exc}") from exc
        else:
            self.cluster = local_cluster(self.workers)
            self.client = Client(self.cluster)
        n = len(self.client.scheduler_info().get("workers", {}))
        # on stderr, as the progress: stdout carries what follows the files (`| head` would stop them)
        print(f"Dask: {n} worker(s) at {self.client.scheduler.address}; "
              f"dashboard: {self.client.dashboard_link}", file=sys.stderr, flush=True)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


def cli_ssp_grid(args, out):
    """``smnet-sps ssp-grid ... --workers N | --scheduler ADDR``: one grid as Dask tasks, then .h5/.npz.

    ``out`` is the output path the command has already checked (extension, ``--overwrite``).
    """
    from .cli import show_progress
    from .output_files import atomic_output
    from .ssp import cli_ages, save_ssp_grid
    out = Path(out)
    ages = cli_ages(args.ages or None)
    from .neural import generator_spec_option
    spec = generator_spec_option(args.generator, getattr(args, "meta", None))
    cfg = SSPConfig(args.isochrones, args.imf, spec, ages, args.Z, args.special_phases, args.outside)
    store = Path(getattr(args, "store", None) or out.with_name(out.name + ".store"))
    # an interruption carries ssp_grids' note of the blocks kept in this config's store (in main's line)
    run = None
    try:
        with _CliClient(args.scheduler, args.workers) as client:
            run = ssp_grids([cfg], client=client, store=store, age_chunk=getattr(args, "age_chunk", None),
                            device=args.device, progress=show_progress(args))
    except BaseException as exc:
        if run is None:
            raise
        if not isinstance(exc, Exception):
            # Ctrl-C while the cluster closed, the store complete: the line said only "not written: --out",
            # not that the store is complete and the same command writes --out from it
            _note_kept_blocks(exc, run.stores, "block")
            raise
        _warn_close_failed(exc, f"{run.stores[0]} holds its {run.n_computed + run.n_skipped} block(s); "
                                "--out is written from it")
    grid = load_ssp_store(run.stores[0])
    try:
        with atomic_output(out, overwrite=getattr(args, "overwrite", False)) as tmp:
            save_ssp_grid(grid, tmp)
    except (KeyboardInterrupt, OSError) as exc:
        _note_kept_blocks(exc, run.stores, "block")
        raise
    n_z, n_age, n_wave = grid.ssp_flux.shape
    print(f"wrote {out}: {n_z} Z x {n_age} ages x {n_wave} wavelengths; "
          f"{run.n_computed} block(s) computed, {run.n_skipped} already in {run.stores[0]} "
          f"({run.seconds:.1f} s)")
    return 0


def _warn_close_failed(exc, done):
    """A command run on Dask whose cluster failed to close (a close that timed out) after its work was
    complete (``done`` says where it is): a warning, and the command goes on to its "wrote" line and status 0.
    It failed with status 1, and workflow tools (Snakemake, make's .DELETE_ON_ERROR) delete a failed job's
    outputs: the complete store was lost."""
    from .cli import _one_line
    warnings.warn(f"the Dask cluster failed to close ({type(exc).__name__}: {_one_line(exc)}) after the "
                  f"work was complete: {done}", UserWarning, stacklevel=3)


def _units_done(path):
    """(finished, all) blocks or chunks of a store, by its ``done`` flags; (0, 0) where it has none."""
    import zarr
    try:
        flags = np.asarray(zarr.open_group(str(path), mode="r")["done"][:])
    except Exception:           # noqa: BLE001 (no store, or one too new to hold its flags: nothing to count)
        return 0, 0
    return int(flags.sum()), int(flags.size)


def _note_kept_blocks(exc, stores, unit):
    """On an interruption (or a failed write: a full disk) of a command that keeps its finished ``unit``s
    (blocks, chunks) in Zarr ``stores``, a note for its one-line message: how many are kept where, and that
    the same command resumes from them (the message said only "interrupted; not written: --out g.h5", or
    "error: [Errno 28] No space left on device", and a user deleted the store or started afresh elsewhere,
    the finished work lost). Nothing where none is kept."""
    from .cli import add_note
    done = total = 0
    for path in stores:
        d, t = _units_done(path)
        done, total = done + d, total + t
    if done:
        # absolute: the library notes the store by its absolute path, the CLI by --out as typed; one note
        where = str(Path(stores[0]).absolute() if len(stores) == 1 else Path(stores[0]).absolute().parent)
        note = f"{done} of {total} {unit}(s) finished are kept in {where}: the same command resumes from them"
        if note not in (getattr(exc, "__notes__", None) or []):       # noted once (the library, the CLI)
            add_note(exc, note)


def refuse_ssp_options(args):
    """``smnet-sps mags --points``: the SSP options mean nothing for a table of stars."""
    # the SSP options mean nothing for a table of stars: refused, not silently dropped (--redshift 0.5 gave
    # absolute magnitudes at 10 pc and --plot no plot, with exit status 0)
    ssp_only = [name for name, given in (
        ("--Z", args.Z is not None), ("--ages", args.ages != "0.01-12.5Gyr"),
        ("--n-ages", args.n_ages is not None),
        ("--redshift", args.redshift != 0), ("--imf", args.imf != "kroupa"),
        ("--isochrones", args.isochrones != "parsec"), ("--extrapolate", args.extrapolate),
        ("--special-phases", getattr(args, "special_phases", "model") != "model"),
        ("--outside", getattr(args, "outside", "extrapolate") != "extrapolate"),
        ("--igm", getattr(args, "igm", False)),
        ("--plot", args.plot is not None)) if given]
    if ssp_only:
        verb = "applies" if len(ssp_only) == 1 else "apply"
        raise ValueError(f"{', '.join(ssp_only)} {verb} to SSP magnitudes only; with --points each star's "
                         "absolute magnitudes (10 pc) are written (a table for a CSV / ECSV / FITS --points, "
                         "a Zarr store for Parquet)")


def _set_aside(out, overwrite, check_inputs):
    """``mags --points --overwrite``: the store at ``out`` renamed ``OUT.replaced`` (returned; None where
    nothing is set aside), to be put back if the new run fails and removed once it succeeds; only a
    magnitude store of this command (a run with other points or filters is refused otherwise; the same run
    resumes), and once ``check_inputs()`` read the points and filters (it was deleted first: a failed rerun
    lost it).

    An ``OUT.replaced`` already there is left by an --overwrite run killed outright (SIGKILL, a power cut)
    between setting the old store aside and removing it: the old store, maybe the user's only complete
    copy, was removed without a word. Now: where ``out`` is complete (that run had finished) it is removed
    with a warning; else it stays the copy set aside (``out``, that run's unfinished store, is what is
    replaced), with a warning. Without --overwrite a warning says where it is."""
    import shutil
    replaced = out.with_name(out.name + ".replaced")
    left = replaced.exists()
    # what that run left at OUT: nothing where it was killed before it began its store
    its_store = f"{out} is that run's" if out.exists() else f"that run had not begun {out}"
    if not overwrite:
        if left:
            warnings.warn(f"{replaced} holds the store an earlier 'mags --points --overwrite' set aside "
                          f"before it was killed ({its_store}); rename it back to keep it, else remove it",
                          UserWarning, stacklevel=2)
        return None
    if not (out.exists() or left):
        return None
    for path in (out, replaced):
        if path.exists() and not _is_points_store(path, "magnitudes"):
            raise ValueError(f"--overwrite: {path} is not a magnitude store written by 'mags --points'; "
                             "not removed" + (f" (it is where {out} is set aside while the new run computes: "
                                              "move it)" if path == replaced else ""))
    check_inputs()
    if left:
        done, total = _units_done(out)
        if total and done == total:
            warnings.warn(f"removed {replaced}: the store an earlier --overwrite run (killed before it "
                          f"ended) replaced by the complete {out}", UserWarning, stacklevel=2)
            shutil.rmtree(replaced)
        else:
            warnings.warn(f"{replaced} holds the store an earlier --overwrite run set aside before it was "
                          f"killed: kept as the copy put back should this run fail; {its_store}"
                          + (f", {done} of {total} chunk(s), and is replaced" if out.exists() else ""),
                          UserWarning, stacklevel=2)
            if out.exists():
                shutil.rmtree(out)
            return replaced
    out.rename(replaced)
    return replaced


def cli_points_mags(args):
    """``smnet-sps mags --points stars.parquet``: magnitudes of every star, chunk by chunk, to Zarr."""
    from .cli import show_progress
    refuse_ssp_options(args)
    if getattr(args, "colors", None):
        raise ValueError("--colors applies to tables (SSP magnitudes, or --points from a CSV, ECSV or FITS "
                         "table); a Parquet --points run writes a Zarr store of magnitudes: take the colours "
                         "from its columns")
    points = Path(args.points)
    from .filters import split_filter_names
    filters = split_filter_names(args.filters, "--filters")
    out = Path(args.out) if args.out else points.with_name(points.stem + "_mags.zarr")
    if out.suffix != ".zarr":
        raise ValueError(f"with --points, --out is a Zarr store written chunk by chunk: name it *.zarr "
                         f"(got {out})")
    from .neural import generator_spec_option
    spec = generator_spec_option(args.model, getattr(args, "meta", None))
    import shutil

    from .filters import resolve_filters
    replaced = _set_aside(out, args.overwrite, lambda: (read_points(points, args.chunk_rows),
                                                        resolve_filters(filters)))
    # write_points' run, None until it returned (as cli_ssp_grid): an error after it is the cluster's close
    run = None
    try:
        if wants_cluster(args):
            with _CliClient(args.scheduler, args.workers) as client:
                run = write_points(points, out, filters, args.system, generator=spec, client=client,
                                   chunk_rows=args.chunk_rows, progress=show_progress(args),
                                   device=getattr(args, "device", "auto"))
        else:
            run = write_points(points, out, filters, args.system, generator=spec, client=None,
                               chunk_rows=args.chunk_rows, progress=show_progress(args),
                               device=getattr(args, "device", "auto"))
    except BaseException as exc:
        # an error while the Dask cluster closed (a close that timed out), the store complete: warned, and
        # the normal path below (the old store removed, the "wrote" line, status 0)
        close_failed = run is not None and isinstance(exc, Exception)
        if close_failed:
            _warn_close_failed(exc, f"{out} holds its {run.n_computed + run.n_skipped} chunk(s)")
        elif run is not None:
            # Ctrl-C while the Dask cluster closed, the store complete: it stays (the old one was put back
            # over it, --overwrite) and the line says so (it said "4 of 4 chunk(s) ... kept: ... resumes")
            if replaced is not None:
                shutil.rmtree(replaced)
            from .cli import add_note
            add_note(exc, f"{out} is complete: its {run.n_computed + run.n_skipped} chunk(s) were written "
                          "before the interruption (while the Dask cluster closed)")
        elif replaced is not None:
            if out.exists():
                shutil.rmtree(out)
            replaced.rename(out)
            # the chunks write_points noted as kept went with the new run's store: the old one is back
            kept = f"kept in {out.absolute()}:"
            if getattr(exc, "__notes__", None):
                exc.__notes__ = [note for note in exc.__notes__ if kept not in note]
        elif isinstance(exc, KeyboardInterrupt):
            # the chunks kept (write_points notes those of an interruption or a failed write while they were
            # computed; an OSError before that, a missing --points file, is not one the rerun gets past)
            _note_kept_blocks(exc, [out] if out.exists() else [], "chunk")
        if not close_failed:
            raise
    if replaced is not None:
        shutil.rmtree(replaced)
    import zarr
    group = zarr.open_group(str(out), mode="r")
    inside = group["inside"]
    n_outside = sum(int((inside[i:i + 10**6] == 0).sum()) for i in range(0, inside.shape[0], 10**6))
    print(f"wrote {out}: magnitudes of {group.attrs['n_points']} stars in {', '.join(filters)} "
          f"({args.system}, absolute, 10 pc); {run.n_computed} chunk(s) computed, "
          f"{run.n_skipped} already there "
          f"({run.seconds:.1f} s); {n_outside} star(s) outside the generator's coverage")
    return 0
