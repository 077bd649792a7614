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

A library may name several specialists (``--expert wmbasic=DIR1,DIR2,DIR3``: the same training settings
with different ``--seed``, fine-tuned from one start): its expert is then their weight average, one network
as fast as each, meant to carry less of each run's seed noise. A weight average is not an average of the
outputs; whether it helps is measured per library (docs/generator.md: for WM-basic it did not).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = ["build_expert_model"]

# files of a model directory that travel unchanged from the base model
_COPIED = ("wavelength.npy", "nodes.npz", "README.md")


def _nodes(directory):
    path = Path(directory) / "nodes.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no nodes.npz (the grid nodes and split of its training)")
    with np.load(path) as f:
        return {k: f[k] for k in ("teff", "logg", "logz", "library_id", "split") if k in f}


def _read_model(directory):
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory: no config.json")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("arch") != "mlp":
        raise ValueError(f"{directory}: experts are built from 'mlp' models; this one is {cfg.get('arch')!r}")
    from .neural import _torch_load         # a clear ValueError for a missing, truncated or corrupt file
    sd = _torch_load(directory / cfg.get("weights_file", "weights.pt"))
    return cfg, sd


def _earlier_stages(init_from, lib):
    """Training records of the runs a specialist continued (``--init-from`` an earlier specialist of the
    same library), oldest first; empty when it started from the shared model."""
    stages = []
    while init_from and (Path(init_from) / "config.json").is_file():
        cfg = json.loads((Path(init_from) / "config.json").read_text())
        if cfg.get("trained_libraries") != [lib] or len(stages) > 20:
            break
        stages.insert(0, {"from": str(init_from), "training": cfg.get("training"),
                          "input_jitter": cfg.get("input_jitter", 0.0)})
        init_from = cfg.get("init_from")
    return stages


def _read_specialist(directory, lib, base, base_cfg, base_sd, base_nodes):
    """A specialist's (config, weights), checked against the base it must have started from."""
    cfg, sd = _read_model(directory)
    for key in ("arch_kwargs", "input_scaling", "library_names", "reference"):
        if cfg.get(key) != base_cfg.get(key):
            raise ValueError(f"specialist {directory} differs from the base {base} in {key!r}: "
                             f"{cfg.get(key)} vs {base_cfg.get(key)}")
    # the same grid nodes and split (a grid rebuilt since the base was trained, e.g. converted to
    # vacuum wavelengths, has a new hash but the same nodes): the held-out test nodes stay held out
    nodes = _nodes(directory)
    if base_nodes.keys() != nodes.keys() or not all(np.array_equal(base_nodes[k], nodes[k])
                                                    for k in base_nodes):
        raise ValueError(f"specialist {directory} was trained on other grid nodes or another "
                         f"train/validation/test split than the base {base}")
    trained = cfg.get("trained_libraries")
    if trained != [lib]:
        raise ValueError(f"specialist {directory} was trained on {trained}, not on [{lib!r}] alone "
                         "(smnet-sps train --init-from BASE --libraries NAME)")
    for buf in ("out_mean", "out_std"):
        if not torch.equal(sd[buf], base_sd[buf]):
            raise ValueError(f"specialist {directory}: its output scaling {buf} differs from the base's")
    return cfg, sd


def build_expert_model(base, experts, out, *, half=False, name=None, overwrite=False):
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

    Returns
    -------
    dict, the written config.
    """
    from .neural import weights_sha256

    base, out = Path(base), Path(out)
    base_cfg, base_sd = _read_model(base)
    names = list(base_cfg["library_names"])
    if not experts:
        raise ValueError("no experts given: pass at least one library=model_dir pair")
    unknown = sorted(set(experts) - set(names))
    if unknown:
        raise ValueError(f"experts for unknown libraries {unknown}; the base model knows {names}")
    if out.exists() and any((out / f).exists() for f in ("config.json", "weights.pt")) and not overwrite:
        raise ValueError(f"{out} already holds a model; pass overwrite=True (--overwrite) to replace it")
    members, cfgs, grids = [base_sd], {}, set()
    expert_index = [0] * len(names)
    base_nodes = _nodes(base)
    for lib in names:
        if lib not in experts:
            continue
        runs = [experts[lib]] if isinstance(experts[lib], (str, Path)) else list(experts[lib])
        if not runs:
            raise ValueError(f"no specialist directory given for {lib!r}")
        read = [_read_specialist(run, lib, base, base_cfg, base_sd, base_nodes) for run in runs]
        cfg = read[0][0]
        for run, (other, _) in zip(runs[1:], read[1:]):
            # a weight average only makes sense for runs of one setting from one start
            for key in ("init_from", "input_jitter", "pixel_loss", "uv_weight", "excluded_nodes"):
                if other.get(key) != cfg.get(key):
                    raise ValueError(f"specialists {runs[0]} and {run} of {lib!r} differ in {key!r} "
                                     f"({cfg.get(key)} vs {other.get(key)}); only runs of one setting that "
                                     "differ in --seed can be averaged")
        grids.update(c.get("grid_sha256") for c, _ in read)
        sd = {k: (torch.stack([s[k].float() for _, s in read]).mean(0) if v.is_floating_point()
                  and not k.startswith("out_") else v) for k, v in read[0][1].items()}
        expert_index[names.index(lib)] = len(members)
        members.append(sd)
        cfgs[lib] = {"from": str(runs[0]) if len(runs) == 1 else [str(r) for r in runs],
                     "training": cfg.get("training"),
                     "pixel_loss": cfg.get("pixel_loss"), "uv_weight": cfg.get("uv_weight"),
                     "input_jitter": cfg.get("input_jitter", 0.0), "init_from": cfg.get("init_from"),
                     "earlier_stages": _earlier_stages(cfg.get("init_from"), lib)}
        if len(runs) > 1:
            cfgs[lib]["weight_average_of_seeds"] = [c.get("seed", 0) for c, _ in read]
    dtype = torch.float16 if half else torch.float32
    state = {f"experts.{i}.{k}": (v.to(dtype) if v.is_floating_point() and not k.startswith("out_") else v)
             for i, sd in enumerate(members) for k, v in sd.items()}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / "weights.pt")
    for fname in _COPIED:
        if (base / fname).is_file():
            shutil.copy2(base / fname, out / fname)
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
                "weights_sha256": weights_sha256(out / "weights.pt")})
    # the library ranking was measured for the base model's spectra: re-rank for the new ones
    # (smnet-sps validate --rank-libraries --write-mixture OUT); until then the base's preferences apply
    if (base / "mixture.json").is_file() and not (out / "mixture.json").is_file():
        shutil.copy2(base / "mixture.json", out / "mixture.json")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return cfg


def add_cli(sub):
    p = sub.add_parser("experts", help="combine per-library specialists into one model",
                       description="Combine a shared MLP model and per-library specialists (smnet-sps train "
                                   "--init-from BASE --libraries NAME) into one library-expert model.")
    p.add_argument("--base", required=True, help="the shared model directory")
    p.add_argument("--expert", action="append", required=True, metavar="LIBRARY=DIR[,DIR...]",
                   help="a specialist: library name = its model directory (repeat per library); several "
                        "directories, comma-separated (runs of one setting with different --seed), are "
                        "averaged into one network")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the size)")
    p.add_argument("--name", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    p.set_defaults(func=_cli)


def _cli(args):
    experts = {}
    for item in args.expert:
        lib, sep, path = item.partition("=")
        if not sep or not lib or not path:
            raise ValueError(f"--expert {item!r}: expected LIBRARY=DIR, e.g. nextgen=work/experts/nextgen")
        experts[lib] = path.split(",") if "," in path else path
    cfg = build_expert_model(args.base, experts, args.out, half=args.half, name=args.name,
                             overwrite=args.overwrite)
    size = (Path(args.out) / "weights.pt").stat().st_size / 1e6
    print(f"wrote {args.out}: {len(cfg['arch_kwargs']['expert_index'])} libraries, "
          f"{max(cfg['arch_kwargs']['expert_index']) + 1} networks, weights {size:.1f} MB")
    return 0

