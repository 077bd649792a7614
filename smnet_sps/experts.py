"""Library experts: one fine-tuned copy of the shared MLP per training library, combined into one model.

The shared :class:`~smnet_sps.model.SpectrumMLP` learns every library at once and underfits each: its error
at its own *training* nodes (NextGen 0.35 %, BaSeL 0.46 %, WM-basic 0.87 % median at >= 3000 A) is above
linear interpolation's at held-out nodes. A specialist -- the shared model fine-tuned on one library's
nodes (``smnet-sps train --init-from BASE --libraries NAME``) -- spends all its capacity on that library.
:func:`build_expert_model` combines specialists into a :class:`~smnet_sps.model.LibraryExpertMLP` model
directory: a pass for library j runs j's expert, so the cost per spectrum is that of one shared MLP and
the default mixture, coverage and every API work unchanged. Libraries without a specialist keep the shared
model.

Workflow (docs/generator.md)::

    smnet-sps train --grid work/grid.h5 --init-from BASE --libraries nextgen --out work/experts/nextgen ...
    smnet-sps experts --base BASE --expert nextgen=work/experts/nextgen [--expert ...] --out MODEL_DIR

:func:`replace_experts` swaps one library's expert in an existing expert model and keeps every other network
as it is (``smnet-sps experts --model MODEL_DIR --expert wmbasic=DIR --out NEW_DIR``): the way to update a
shipped model whose other specialists' run directories are not kept.

A library may name several specialists (``--expert wmbasic=DIR1,DIR2,DIR3``: the same training settings
with different ``--seed``, fine-tuned from one start): its expert is then their weight average, one network
as fast as each, meant to carry less of each run's seed noise. A weight average is not an average of the
outputs; whether it helps is measured per library (docs/experiments.md: for WM-basic it did not).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

from .mixture import MIXTURE_FILE, recorded_mixture

__all__ = ["build_expert_model", "replace_experts"]

# files of a model directory that travel unchanged from the base model
_COPIED = ("wavelength.npy", "nodes.npz", "tail.npz", "README.md")


def _nodes(directory):
    path = Path(directory) / "nodes.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no nodes.npz (the grid nodes and split of its training)")
    with np.load(path) as f:
        return {k: f[k] for k in ("teff", "logg", "logz", "library_id", "split") if k in f}


def _read_model(directory, arch="mlp"):
    from .neural import _torch_load, read_model_config   # clear errors for a missing or corrupt file
    directory = Path(directory)
    cfg = read_model_config(directory)
    if cfg.get("arch") != arch:
        raise ValueError(f"{directory}: expected an {arch!r} model here; this one is {cfg.get('arch')!r}")
    sd = _torch_load(directory / cfg.get("weights_file", "weights.pt"))
    return cfg, sd


def _earlier_stages(init_from, lib):
    """Training records of the runs a specialist continued (``--init-from`` an earlier specialist of the
    same library), oldest first; empty when it started from the shared model."""
    stages = []
    from .neural import read_model_config
    while init_from and (Path(init_from) / "config.json").is_file():
        cfg = read_model_config(init_from)
        if cfg.get("trained_libraries") != [lib] or len(stages) > 20:
            break
        stages.insert(0, {"from": str(init_from), "training": cfg.get("training"),
                          "input_jitter": cfg.get("input_jitter", 0.0)})
        init_from = cfg.get("init_from")
    return stages


def _shape(cfg):
    """A model's network shape; an expert model's routing table (``expert_index``) is not part of it."""
    return {k: v for k, v in cfg.get("arch_kwargs", {}).items() if k != "expert_index"}


def _wavelength(directory, cfg):
    """A model directory's wavelength grid [A] (its config's ``wavelength_file``), read and checked as a
    loaded model's is."""
    from .neural import _load_wavelength
    return _load_wavelength(Path(directory) / cfg.get("wavelength_file", "wavelength.npy"))


def _describe(wavelength):
    return f"{wavelength.size} pixels, {wavelength.min():g}-{wavelength.max():g} A" if wavelength.size else \
        "0 pixels"


def _read_specialist(directory, lib, ref, ref_cfg, ref_scaling, ref_nodes):
    """A specialist's (config, weights), checked against the model ``ref`` it is to join: the shared model
    it must have started from, or an expert model built from that shared model."""
    cfg, sd = _read_model(directory)
    if _shape(cfg) != _shape(ref_cfg):
        raise ValueError(f"specialist {directory} differs from {ref} in its network shape: "
                         f"{_shape(cfg)} vs {_shape(ref_cfg)}")
    for key in ("input_scaling", "library_names", "reference"):
        if cfg.get(key) != ref_cfg.get(key):
            raise ValueError(f"specialist {directory} differs from {ref} in {key!r}: "
                             f"{cfg.get(key)} vs {ref_cfg.get(key)}")
    # the same grid nodes and split (a grid rebuilt since the base was trained, e.g. converted to
    # vacuum wavelengths, has a new hash but the same nodes): the held-out test nodes stay held out
    nodes = _nodes(directory)
    if ref_nodes.keys() != nodes.keys() or not all(np.array_equal(ref_nodes[k], nodes[k]) for k in ref_nodes):
        raise ValueError(f"specialist {directory} was trained on other grid nodes or another "
                         f"train/validation/test split than {ref}")
    if ref_cfg.get("tail_file") and cfg.get("tail_floor") != ref_cfg.get("tail_floor"):
        # the tail table fills the pixels below the model's floor: a specialist that learned them loses them
        raise ValueError(f"specialist {directory} was trained with tail_floor {cfg.get('tail_floor')}, {ref} "
                         f"with {ref_cfg.get('tail_floor')}, whose tail table would overwrite what the "
                         f"specialist learned; train it with --tail-floor {ref_cfg.get('tail_floor')}")
    # the same pixels: the expert model keeps the base's wavelength.npy, so a specialist trained on a grid
    # of other wavelengths with as many pixels (train --init-from does not compare them) had its spectra put
    # on the base's wavelengths without a word
    wl, ref_wl = _wavelength(directory, cfg), _wavelength(ref, ref_cfg)
    if wl.shape != ref_wl.shape or not np.allclose(wl, ref_wl, rtol=1e-6, atol=0.0):
        raise ValueError(f"specialist {directory} was trained on other wavelengths ({_describe(wl)}) than "
                         f"{ref} ({_describe(ref_wl)}): train it on the base model's grid")
    trained = cfg.get("trained_libraries")
    if trained != [lib]:
        raise ValueError(f"specialist {directory} was trained on {trained}, not on [{lib!r}] alone "
                         "(smnet-sps train --init-from BASE --libraries NAME)")
    for buf, ref_value in ref_scaling.items():
        if not torch.equal(sd[buf].float(), ref_value.float()):
            raise ValueError(f"specialist {directory}: its output scaling {buf} differs from {ref}'s")
    return cfg, sd


# what makes runs "one setting": every training option a specialist's config.json records, but its seed
_SAME_SETTING = ("init_from", "input_jitter", "jitter_floor", "jitter_quantile", "pixel_loss", "uv_weight",
                 "tail_floor", "excluded_nodes", "node_loss", "node_blend", "node_blend_kind", "ema_decay",
                 "sampling_weights", "training.lr", "training.lr_final", "training.weight_decay",
                 "training.batch_size", "training.kept")
# options config.json did not record before 2026-12-03, with the values every run before then trained with
# (the jitter options: those a resume assumes for an older checkpoint, smnet_sps.train._RECIPE_BEFORE)
_RECORDED_LATER = {"training.lr_final": 0.02, "training.weight_decay": 0.0}


def _settings(cfg):
    """The training options of a config.json (``training.lr``: inside its ``training`` record), spelled so
    that runs which trained alike compare equal: an option recorded later at its earlier value, one input
    jitter as three equal ones, a start path resolved, the jitter floor and quantile and the blend kind as
    nothing where they act on nothing (as a resume compares them, smnet_sps.train)."""
    from .train import _RECIPE_BEFORE, _canonical_jitter_shares
    recorded_later = {**_RECIPE_BEFORE, **_RECORDED_LATER}
    out = {}
    for key in _SAME_SETTING:
        value = (cfg.get("training", {}).get(key.split(".", 1)[1]) if key.startswith("training.")
                 else cfg.get(key))
        out[key] = recorded_later.get(key) if value is None else value
    if out["init_from"]:
        out["init_from"] = str(Path(out["init_from"]).resolve())
    jitter = out["input_jitter"] or 0.0
    out["input_jitter"] = [float(v) for v in (jitter if isinstance(jitter, list) else [jitter] * 3)]
    out["jitter_floor"], out["jitter_quantile"] = _canonical_jitter_shares(
        out["input_jitter"], out["jitter_floor"], out["jitter_quantile"])
    if not out["node_blend"]:
        out["node_blend_kind"] = None
    return out


def _expert_of(lib, runs, ref, ref_cfg, ref_scaling, ref_nodes, same_setting=True):
    """One library's expert from its specialist run(s): (float32 state dict, provenance record, grid hashes).
    Several runs (seeds of one setting from one start; any runs with ``same_setting=False``) are
    weight-averaged into one network."""
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not runs:
        raise ValueError(f"no specialist directory given for {lib!r}")
    if len({Path(r).resolve() for r in runs}) < len(runs):
        raise ValueError(f"a specialist of {lib!r} is named twice in {[str(r) for r in runs]}")
    read = [_read_specialist(run, lib, ref, ref_cfg, ref_scaling, ref_nodes) for run in runs]
    cfg = read[0][0]
    first = _settings(cfg)
    for run, (other, _) in zip(runs[1:], read[1:]):
        # a weight average only makes sense for runs of one setting from one start (experiments that average
        # across settings say so: same_setting=False)
        theirs = _settings(other)
        for key in _SAME_SETTING if same_setting else ():
            if theirs[key] != first[key]:
                raise ValueError(f"specialists {runs[0]} and {run} of {lib!r} differ in {key!r} "
                                 f"({first[key]} vs {theirs[key]}); only runs of one setting that differ "
                                 "in --seed can be averaged")
    sd = {k: (torch.stack([s[k].float() for _, s in read]).mean(0) if v.is_floating_point()
              and not k.startswith("out_") else v) for k, v in read[0][1].items()}
    record = {"from": str(runs[0]) if len(runs) == 1 else [str(r) for r in runs],
              "training": cfg.get("training"),
              "pixel_loss": cfg.get("pixel_loss"), "uv_weight": cfg.get("uv_weight"),
              "input_jitter": cfg.get("input_jitter", 0.0), "init_from": cfg.get("init_from"),
              "earlier_stages": _earlier_stages(cfg.get("init_from"), lib)}
    for key in ("sampling_weights", "node_loss", "node_blend", "node_blend_kind", "jitter_floor",
                "jitter_quantile", "seed"):
        if key in cfg:
            record[key] = cfg[key]
    if cfg.get("excluded_nodes"):
        record["excluded_nodes"] = list(cfg["excluded_nodes"])
    if len(runs) > 1:
        record.pop("seed", None)                    # the first run's alone would mislead
        record["weight_average_of_seeds"] = [c.get("seed", 0) for c, _ in read]
        if not same_setting:
            record["settings_of_each_run"] = [{k: v for k, v in _settings(c).items() if v != first[k]}
                                              for c, _ in read]
    return sd, record, {c.get("grid_sha256") for c, _ in read}


def _tail_without_excluded(source, dest, cfg, records):
    """Nodes a specialist was not trained on (a cross-validation fold) leave the model's tail table too,
    or their tails would come back through it: ``source``'s table is written to ``dest`` (folders) without
    them; updates ``cfg["tail_sha256"]``."""
    from .tail import TAIL_FILE, write_without_nodes
    excluded = sorted({int(i) for r in records.values() for i in r.get("excluded_nodes", [])})
    if excluded and cfg.get("tail_file") and (Path(source) / TAIL_FILE).is_file():
        cfg["tail_sha256"] = write_without_nodes(Path(source) / TAIL_FILE, Path(dest) / TAIL_FILE, excluded)


# staging folders: .partial.<host>.<pid>.<random>, so that a later run can tell whether the process that
# made one still runs (a SIGKILL skips every cleanup and left the folder, weights included, in the model)
_STAGING = ".partial."
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_STAGING_NAME = re.compile(r"\.partial\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]+")


def _process_running(pid):
    """True unless this machine has no process ``pid`` (one of another user counts as running)."""
    if os.name == "nt":
        return True              # os.kill(pid, 0) would terminate it there; never guess
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:              # PermissionError: it exists, another user's
        return True
    return True


def _remove_stale_staging(out):
    """Remove the staging folders in ``out`` that a killed ``experts`` run left: only our own name pattern,
    made on this machine by a process that no longer runs (one still writing, or made on another machine of
    a shared file system, is left alone). Says what it removed; an unnamed old-style ``.partial.*`` folder
    (no pid in its name) is named but kept: it cannot be told from a live one."""
    for path in sorted(out.glob(f"{_STAGING}*")):
        if not path.is_dir() or path.is_symlink():
            continue
        m = _STAGING_NAME.fullmatch(path.name)
        if m is None:
            print(f"note: {path} looks like a staging folder of an interrupted experts run (no process id "
                  "in its name); remove it if no experts run is writing to this folder")
        elif m["host"] == _HOST and not _process_running(int(m["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            print(f"removed {path}: the staging folder of an experts run that was killed (process "
                  f"{m['pid']} is not running)")


@contextlib.contextmanager
def _staged_model(out):
    """A fresh hidden folder inside ``out`` (created if missing) to write a model's new files into; the
    block ends with :func:`_publish`. On an exception the folder goes, with ``out`` if this call created
    it, and every file of the model already in ``out`` is untouched (writing in place had left new weights
    beside the old config.json: a model load_generator refuses, and the old one lost). Staging folders a
    killed run left in ``out`` are removed first (:func:`_remove_stale_staging`)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    partial = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{_HOST}.{os.getpid()}.", dir=out))
    try:
        yield partial
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _publish(partial, out, stale=()):
    """Rename every file written in ``partial`` over ``out``'s, config.json last, once all are complete;
    ``stale`` names old files of ``out`` the new model does not have (removed before its config.json
    appears). Only renames and removals are left here: a crash between two leaves an old config.json beside
    new files, which load_generator refuses (sha256 mismatch) rather than running a model its config does
    not describe. Ctrl-C / SIGTERM arriving during the renames takes effect once they are done: it left the
    new weights beside the old config.json (neither model loads) and the rest of the new one removed with
    its staging folder."""
    from .interrupts import interrupts_held
    files = sorted(p.name for p in partial.iterdir() if p.name != "config.json")
    with interrupts_held():
        for fname in files:
            os.replace(partial / fname, out / fname)
        for fname in set(stale) - set(files):
            (out / fname).unlink(missing_ok=True)
        os.replace(partial / "config.json", out / "config.json")


def _check_request(experts, names, model, out, overwrite):
    """Refuse an empty or unknown set of libraries, an ``out`` that is a file or cannot be written (named
    before anything is staged: these were raw OS errors, "[Errno 17] File exists"), and an ``out`` that
    holds a model unless ``overwrite``."""
    from .output_files import check_output_folder
    check_output_folder(out, (), option="--out", what="the expert model")
    if not experts:
        raise ValueError("no experts given: pass at least one library=model_dir pair")
    unknown = sorted(set(experts) - set(names))
    if unknown:
        raise ValueError(f"experts for unknown libraries {unknown}; {model} knows {names}")
    if out.exists() and any((out / f).exists() for f in ("config.json", "weights.pt")) and not overwrite:
        raise ValueError(f"{out} already holds a model; pass overwrite=True (--overwrite) to replace it")


def _refuse_out_among_sources(out, experts, base=None):
    """``out`` may not be the base model or a specialist run being read: weights.pt was replaced before the
    sources' own files were read or copied, and the run was lost."""
    if not Path(out).exists():
        return
    sources = ([Path(base)] if base is not None else []) + [
        Path(p) for v in (experts or {}).values() for p in ([v] if isinstance(v, (str, Path)) else v)]
    for source in sources:
        if source.exists() and Path(out).resolve() == source.resolve():
            what = "the base model" if base is not None and source == Path(base) else "a specialist"
            raise ValueError(f"--out {out} is {what} itself; write the expert model to another folder")


def _same_base(out, base_cfg):
    """True when ``out`` holds an expert model built on the same base weights (by their sha256)."""
    try:
        previous = json.loads((Path(out) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    sha = base_cfg.get("weights_sha256")
    return sha is not None and previous.get("experts", {}).get("base_weights_sha256") == sha


def build_expert_model(base, experts, out, *, half=False, name=None, overwrite=False, same_setting=True):
    """Combine a shared MLP and per-library specialists into one ``mlp_experts`` model directory.

    Parameters
    ----------
    base : path, the shared model (``arch`` ``"mlp"``); libraries without a specialist run it.
    experts : dict library name -> path of its specialist model directory (same architecture, grid and split
        as ``base``, trained with ``--init-from base --libraries NAME``), or a list of such paths: runs of one
        setting with different seeds, whose weights are averaged into the library's expert.
    out : path, the model directory to write.
    half : bool, store the weights as float16 (half the file; loaded as float32). Rounding the weights
        to float16 moves the spectra by ~1e-4 relative (measured in docs/generator.md).
    name : model name (default: the base's name + " + library experts").
    overwrite : replace a model already in ``out``.
    same_setting : False averages several runs of a library whatever their settings (an experiment, e.g.
        ``benchmarks/bench_node_cv.py``'s ``soup_of`` across settings; the record lists where each run
        differs from the first); True (the default) refuses runs that differ in more than their seed.

    Returns
    -------
    dict, the written config.
    """
    from .neural import weights_sha256

    base, out = Path(base), Path(out)
    _refuse_out_among_sources(out, experts, base)
    base_cfg, base_sd = _read_model(base)
    names = list(base_cfg["library_names"])
    _check_request(experts, names, base, out, overwrite)
    members, cfgs, grids = [base_sd], {}, set()
    expert_index = [0] * len(names)
    base_nodes = _nodes(base)
    base_scaling = {buf: base_sd[buf] for buf in ("out_mean", "out_std")}
    for lib in names:
        if lib not in experts:
            continue
        sd, cfgs[lib], shas = _expert_of(lib, experts[lib], base, base_cfg, base_scaling, base_nodes,
                                         same_setting)
        grids.update(shas)
        expert_index[names.index(lib)] = len(members)
        members.append(sd)
    dtype = torch.float16 if half else torch.float32
    state = {f"experts.{i}.{k}": (v.to(dtype) if v.is_floating_point() and not k.startswith("out_") else v)
             for i, sd in enumerate(members) for k, v in sd.items()}
    # another model's files (its measured library preferences, its notes) must not pass as the new model's:
    # its mixture.json was kept and recorded as this model's ranking. A ranking made for an expert model of
    # the same base (re-ranked in OUT, then rebuilt with a new specialist) is kept.
    same_base = _same_base(out, base_cfg)
    stale = (MIXTURE_FILE, "README.md") if overwrite and not same_base else ()
    with _staged_model(out) as partial:
        # torch writes the file name into the archive: weights.pt in a folder of its own keeps the same
        # weights' weights_sha256
        torch.save(state, partial / "weights.pt")
        for fname in _COPIED:
            if (base / fname).is_file():
                shutil.copy2(base / fname, partial / fname)
        cfg = dict(base_cfg)
        cfg.pop("history", None)
        # the grid the specialists were trained on (kept: the base's, beside it)
        grid_sha = grids.pop() if len(grids) == 1 else base_cfg.get("grid_sha256")
        cfg.update({"grid_sha256": grid_sha, "arch": "mlp_experts",
                    "name": name or f"{base_cfg.get('name', base.name)} + library experts",
                    "arch_kwargs": dict(base_cfg["arch_kwargs"], expert_index=expert_index),
                    "experts": {"base": str(base), "base_weights_sha256": base_cfg.get("weights_sha256"),
                                "base_grid_sha256": base_cfg.get("grid_sha256"),
                                "libraries": cfgs, "weights_dtype": str(dtype).replace("torch.", "")},
                    "weights_sha256": weights_sha256(partial / "weights.pt")})
        _tail_without_excluded(partial, partial, cfg, cfgs)
        # the library ranking was measured for the base model's spectra: re-rank for the new ones
        # (smnet-sps validate --rank-libraries --write-mixture OUT --overwrite); until then the base's
        # preferences apply
        kept = out / MIXTURE_FILE
        source = kept if kept.is_file() and MIXTURE_FILE not in stale else base / MIXTURE_FILE
        if source.is_file():
            shutil.copy2(source, partial / MIXTURE_FILE)
        # the config records the mixture file the model holds (re-ranked there, or the base's), not the
        # base's checksum: loading refuses a recorded file that does not match
        cfg.pop("mixture_file", None)
        cfg.pop("mixture_sha256", None)
        cfg.update(recorded_mixture(partial))
        (partial / "config.json").write_text(json.dumps(cfg, indent=1))
        _publish(partial, out, stale)
    return cfg


def replace_experts(model, experts, out, *, name=None, overwrite=False):
    """Replace some libraries' experts in an existing ``mlp_experts`` model; every other network is kept
    bit for bit, in the dtype the model stores.

    Parameters
    ----------
    model : path, a library-expert model directory (e.g. ``smnet_sps/data/default_model``).
    experts : dict library name -> path of the new specialist (or a list of seed runs, averaged), trained
        with ``--init-from`` the shared model this expert model was built from (same shape, grid nodes, split
        and output scaling: checked).
    out : path, the model directory to write; all of ``model``'s other files (mixture.json, README.md, ...)
        are copied there. ``out`` may be ``model`` itself (with ``overwrite``): the new files are written
        beside the old ones and renamed over them, so an interrupted call never leaves a half-written file.
    name : model name (default: the model's name + " + new <library> expert", so that a modified model
        cannot be taken for the one it came from in outputs: FITS ``GENERATR``, summaries); pass the old name
        to keep it (e.g. when updating the shipped model in place).
    overwrite : replace a model already in ``out``.

    A library whose expert it shares with others (e.g. several libraries on the shared network) gets a network
    of its own; the others keep theirs. The library's record in ``config.json["experts"]`` says what the new
    expert replaced. The mixture's library ranking (``mixture.json``) was measured for the old spectra:
    re-rank with ``smnet-sps validate --rank-libraries --write-mixture OUT --overwrite``.

    Returns
    -------
    dict, the written config.
    """
    from .neural import weights_sha256

    model, out = Path(model), Path(out)
    cfg, state = _read_model(model, arch="mlp_experts")
    names = list(cfg["library_names"])
    _refuse_out_among_sources(out, experts)                    # out = model itself is allowed (in place)
    _check_request(experts, names, model, out, overwrite)      # out = model needs overwrite too
    in_place = out.resolve() == model.resolve()
    index = list(cfg["arch_kwargs"]["expert_index"])
    stored = state[f"experts.{index[0]}.net.0.weight"].dtype      # float16 in the shipped model
    scaling = {buf: state[f"experts.{index[0]}.{buf}"] for buf in ("out_mean", "out_std")}
    nodes = _nodes(model)
    records = dict(cfg.get("experts", {}).get("libraries", {}))
    for lib in names:
        if lib not in experts:
            continue
        sd, record, _ = _expert_of(lib, experts[lib], model, cfg, scaling, nodes)
        j = names.index(lib)
        slot = index[j] if index.count(index[j]) == 1 else max(index) + 1
        missing = [f"experts.{slot}.{k}" for k in sd
                   if slot <= max(index) and f"experts.{slot}.{k}" not in state]
        if missing:
            raise ValueError(f"{model}: its weights lack {missing[:3]} although config.json routes {lib!r} "
                             f"to expert {slot}")
        for key, value in sd.items():
            state[f"experts.{slot}.{key}"] = (value.to(stored) if value.is_floating_point()
                                              and not key.startswith("out_") else value)
        old = records.get(lib)
        record["replaces"] = {"from": old["from"] if old else f"the shared network (expert {index[j]})",
                              "model_weights_sha256": cfg.get("weights_sha256")}
        records[lib] = record
        index[j] = slot
    replaced = ", ".join(lib for lib in names if lib in experts)
    new_cfg = dict(cfg, name=name or f"{cfg.get('name', model.name)} + new {replaced} expert",
                   arch_kwargs=dict(cfg["arch_kwargs"], expert_index=index),
                   experts=dict(cfg.get("experts", {}), libraries=records))
    with _staged_model(out) as partial:
        if not in_place:
            for path in model.iterdir():
                if path.is_file() and path.name not in ("weights.pt", "config.json"):
                    shutil.copy2(path, partial / path.name)
        torch.save(state, partial / "weights.pt")
        new_cfg["weights_sha256"] = weights_sha256(partial / "weights.pt")
        _tail_without_excluded(model, partial, new_cfg, records)
        (partial / "config.json").write_text(json.dumps(new_cfg, indent=1))
        _publish(partial, out)
    return new_cfg


def add_cli(sub):
    p = sub.add_parser("experts", help="combine per-library specialists into one model, or replace one",
                       description="Combine a shared MLP model and per-library specialists (smnet-sps train "
                                   "--init-from BASE --libraries NAME) into one library-expert model "
                                   "(--base), or replace some libraries' experts in an existing one "
                                   "(--model).")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--base", help="the shared model directory: build a new expert model from it")
    start.add_argument("--model", help="an existing library-expert model: replace the experts of the "
                                       "libraries given with --expert, keep every other network")
    p.add_argument("--expert", action="append", required=True, metavar="LIBRARY=DIR[,DIR...]",
                   help="a specialist: library name = its model directory (repeat per library); several "
                        "directories, comma-separated (runs of one setting with different --seed), are "
                        "averaged into one network")
    p.add_argument("--out", required=True, help="model directory to write (with --model it may be the model "
                                                "itself, with --overwrite)")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the size; with "
                                                        "--base only: --model keeps the model's dtype)")
    p.add_argument("--name", default=None, help="model name (default: with --base, the base's name + "
                   "' + library experts'; with --model, the model's name + ' + new LIBRARY expert')")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    p.set_defaults(func=_cli)


def _cli(args):
    experts = {}
    for item in args.expert:
        lib, sep, path = item.partition("=")
        if not sep or not lib or not path:
            raise ValueError(f"--expert {item!r}: expected LIBRARY=DIR, e.g. nextgen=work/experts/nextgen")
        if lib in experts:              # the last one silently won
            raise ValueError(f"--expert names {lib!r} twice; give several specialists of one library as "
                             f"{lib}=DIR1,DIR2 (their weights are averaged)")
        runs = path.split(",")
        if not all(run.strip() for run in runs):
            # an empty name ('libb=DIR,', a trailing comma) was read as the current folder
            raise ValueError(f"--expert {item!r}: an empty directory in the comma-separated list; expected "
                             f"LIBRARY=DIR or LIBRARY=DIR1,DIR2, e.g. {lib}=work/experts/{lib}")
        experts[lib] = runs if len(runs) > 1 else path
    if args.model:
        if args.half:
            raise ValueError("--half applies to a new model (--base); --model keeps the model's dtype")
        cfg = replace_experts(args.model, experts, args.out, name=args.name, overwrite=args.overwrite)
    else:
        cfg = build_expert_model(args.base, experts, args.out, half=args.half, name=args.name,
                                 overwrite=args.overwrite)
    size = (Path(args.out) / "weights.pt").stat().st_size / 1e6
    print(f"wrote {args.out}: {len(cfg['arch_kwargs']['expert_index'])} libraries, "
          f"{max(cfg['arch_kwargs']['expert_index']) + 1} networks, weights {size:.1f} MB")
    if args.model and (Path(args.out) / "mixture.json").is_file():
        print("the library ranking (mixture.json) was measured for the old experts: re-rank with "
              f"smnet-sps validate --empirical DIR --generator {args.out} --rank-libraries "
              f"--write-mixture {args.out} --overwrite")
    return 0
