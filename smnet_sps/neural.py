"""Neural generators: our trained models (:class:`NeuralGenerator`) and released SM-Net checkpoints.

``load_generator()`` (or ``load_generator("default")``) returns the shipped default model (the names of the
shipped models are the keys of :data:`SHIPPED_MODELS`); ``load_generator(directory)`` a model written by
``smnet-sps train``; ``load_generator("lookup_model_....pt", meta="....meta.npz")`` a released SM-Net
checkpoint (Anwar et al. 2026, arXiv:2603.23899; Zenodo DOI 10.5281/zenodo.18883385).

The whole forward path runs in torch on the generator's device: input scaling, the network (all
libraries of a batch in one stacked pass), the blend of the libraries' log spectra, the blackbody reference,
exponentiation, optional renormalisation and the sigma Teff^4 scale. One host transfer per batch, none with
``as_tensor=True``; :meth:`NeuralGenerator.torch_surface_flux` is the differentiable entry point.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from .checksums import check_recorded_sha256, check_zip_crc, file_sha256, read_npz
from .constants import LOGG_DOMAIN, LOGZ_DOMAIN, NODE_STEPS, PACKAGE_DATA, SIGMA_SB, TEFF_DOMAIN
from .generator import (Generator, ParameterBox, _torch_parameters, box_edges, check_switch, own_wavelength,
                        validate_parameters)
from .gravity_range import GravityRange
from .mixture import (MIXTURE_FILE, SINGLE_METALLICITY_TOLERANCE, LibraryMixture, MixturePolicy,
                      library_node_trees, node_coordinates, query_workers, widen_single_metallicity)
from .model import (LOG_RATIO_FLOOR, LibraryExpertMLP, SMNet, blackbody_constants, build_model,
                    caller_torch_state_kept, load_smnet_state_dict, log1p01_inverse)
from .tail import UntrainedTails, node_hull, node_points, rows_per_pass
from .wavegrid import check_wavelength_grid

__all__ = ["NeuralGenerator", "ReleasedSMNetGenerator", "load_generator", "default_model_path",
           "resolve_device", "COVERAGE_FACTOR", "SHIPPED_MODELS", "FORWARD_CHUNK",
           "ModelNotFoundError", "weights_sha256", "load_generator_option",
           "generator_spec_option", "add_meta_option", "model_file_in_use"]

MODEL_FORMAT = "smnet-sps model"

# Coverage rule (see docs/generator.md): distances to training nodes are measured in nominal grid steps
# (constants.NODE_STEPS: 0.02 dex in log Teff, 0.5 dex in log g, 0.5 dex in [M/H]). A point is "near the
# nodes" if, for some library whose box contains the point, one of that library's COVERAGE_NEIGHBOURS nodes
# nearest the point lies within COVERAGE_FACTOR times that node's own nearest-neighbour distance (local
# spacing): the mixture's hole rule (mixture.HOLE_ZERO), so the mixture never uses a library the flag does
# not count.
COVERAGE_FACTOR = 1.5
COVERAGE_NEIGHBOURS = 16

# Rows per network pass on the CPU. Fixed, so that a spectrum never depends on batch_size or on which other
# points share its batch: oneDNN picks its kernel (and so the float32 rounding) by matrix shape, and a
# row computed in a 7-row batch differed from the same row in an 8192-row batch by up to 1.5e-4 in the
# standardised output (5e-4 in flux): shapes of 1-3 rows (and 5-7, 9-11 on 2 threads) take another kernel. On
# an AVX-512 Xeon (2026-12-02) every shape under 16 rows did, by up to 1.1e-3, multiples of 16 none: the last
# chunk is padded to a multiple of _PAD_ROWS rows.
FORWARD_CHUNK = 2048
_PAD_ROWS = 16
_LN10 = math.log(10.0)


def default_model_path():
    """Directory of the shipped default model (``smnet_sps/data/default_model``)."""
    return PACKAGE_DATA / "default_model"


# Shipped models by name: name -> zero-argument callable returning the model directory. Adding a shipped
# model is one line here (e.g. ``"semi-empirical": lambda: PACKAGE_DATA / "semi_empirical_model"``).
SHIPPED_MODELS = {
    "default": default_model_path,
    # loaded by load_generator as SemiEmpiricalGenerator
    # (the default model times a MILES-calibrated correction)
    "semi-empirical": lambda: PACKAGE_DATA / "semi_empirical_model",
}


# where the released SM-Net checkpoints come from (not shipped: 2.2 GB each)
RELEASE_SOURCE = "Zenodo, DOI 10.5281/zenodo.18883385, about 2.2 GB each"

# The released checkpoints and the meta file each was trained with (the release's CHECKPOINT_FORMAT.md).
# Seven of the eight meta files have the same 11,655 wavelengths, so the L check cannot tell them apart:
# another release's meta silently changed the flux scaling (tau, x_max) and the input box. Each meta is
# known by its tau (the release's values, all distinct), so a renamed meta file is recognised too.
RELEASED_CHECKPOINT_META = {
    "lookup_model_best_husser.pt": "phoenix_husser_all.meta.npz",
    "lookup_model_best_allard.pt": "phoenix_allard_all.meta.npz",
    "lookup_model_best_C3K.pt": "C3K_all.meta.npz",
    "lookup_model_best_TMAP.pt": "TMAP_all.meta.npz",
    "lookup_model_best_OB_PoWR.pt": "OB_PoWR_all.meta.npz",
    "lookup_model_TMAP_C3K_husser_combined.pt": "phoenix_husser_c3k_tmap_all.meta.npz",
    "lookup_model_TMAP_C3K_husser_OB_combined.pt": "phoenix_husser_c3k_tmap_OB_all.meta.npz",
}
RELEASED_META_TAU = {
    "phoenix_husser_all.meta.npz": 1.3410606849682685e-17,
    "phoenix_allard_all.meta.npz": 8.497400206366677e-12,
    "C3K_all.meta.npz": 3.1264769419225846e-13,
    "TMAP_all.meta.npz": 5.779867470051547e-12,
    "OB_PoWR_all.meta.npz": 2.411147496939048e-11,
    "phoenix_husser_c3k_all.meta.npz": 3.676263055815488e-17,
    "phoenix_husser_c3k_tmap_all.meta.npz": 3.674197688538217e-17,
    "phoenix_husser_c3k_tmap_OB_all.meta.npz": 3.7650583148407764e-17,
}


# The libraries of the release's union models and their boxes (Teff [K], log g, [M/H] = logZ), as the
# single-library meta files give them (shared/smnet_official/CHECKPOINT_FORMAT.md). A union model's meta box
# is their bounding box, which holds large regions no library computed (a 5,000 K star at log g 8, a 100 kK
# one at log g 1): its coverage is the union of these boxes, as for the default model's libraries.
RELEASED_LIBRARY_BOXES = {
    "husser": ParameterBox((2300.0, 12000.0), (0.0, 6.0), (-4.0, 1.0)),
    "c3k": ParameterBox((2000.0, 50000.0), (-1.0, 5.5), (-2.1, 0.5)),
    "tmap": ParameterBox((20000.0, 190000.0), (5.0, 9.0), (-4.0, 1.0)),
    "ob_powr": ParameterBox((15000.0, 56000.0), (2.0, 4.2), (-4.0, 1.0)),
}
RELEASED_META_LIBRARIES = {
    "phoenix_husser_c3k_all.meta.npz": ("husser", "c3k"),
    "phoenix_husser_c3k_tmap_all.meta.npz": ("husser", "c3k", "tmap"),
    "phoenix_husser_c3k_tmap_OB_all.meta.npz": ("husser", "c3k", "tmap", "ob_powr"),
}


def _released_meta_name(tau):
    """The release's meta file whose flux scaling ``tau`` is (also when renamed), or None."""
    return next((name for name, t in RELEASED_META_TAU.items() if abs(tau - t) <= 1e-6 * t), None)


def _check_released_pair(weights, meta, tau):
    """ValueError where ``weights`` has a released checkpoint's name and ``meta`` (``tau``: its 'tau') is
    the meta file of another release; a checkpoint or meta the release does not list is not checked."""
    expected = RELEASED_CHECKPOINT_META.get(Path(weights).name)
    found = _released_meta_name(tau)
    if expected is None or found is None or found == expected:
        return
    renamed = "" if Path(meta).name == found else f" (its tau = {tau:.6g} is that of {found})"
    raise ValueError(f"meta file {meta} is the release's {found}{renamed}, but the checkpoint "
                     f"{Path(weights).name} was released with {expected}: its flux scaling (tau, x_max) and "
                     f"input box differ, so the spectra would be wrong; give --meta / meta= {expected}")


class ModelNotFoundError(FileNotFoundError, ValueError):
    """No shipped model of that name and no model at that path (a FileNotFoundError and a ValueError)."""


# the torch device types the generators run on (others, e.g. "meta", hold no data: the first spectrum failed
# inside torch). Apple's "mps" has no float64, which the forward path needs (input scaling, the blackbody
# reference's large terms, the log1p01 inverse, the SSP interpolation's default dtype): it was accepted, and
# the first spectrum failed inside torch ("Cannot convert a MPS Tensor to float64 dtype")
_DEVICE_TYPES = ("cpu", "cuda")
_DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def check_device_name(device="auto"):
    """The torch.device a ``device`` names (None for ``"auto"`` or None), without asking whether this
    machine has it: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (a string or torch.device); anything else ("gpu",
    "mps", "meta", "xpu", ...) is a ValueError. For a client that sends work to Dask workers, which may have
    CUDA where it has none; :func:`resolve_device` also checks the hardware."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use {_DEVICE_CHOICES}") from exc
    if dev.type == "mps":
        raise ValueError(f"device {device!r}: Apple's MPS has no float64, which the generators' forward path "
                         f"and the SSP interpolation compute in; use 'cpu' (or 'auto'); allowed: "
                         f"{_DEVICE_CHOICES}")
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(f"device {device!r} is not one the generators run on; use {_DEVICE_CHOICES}")
    return dev


def resolve_device(device="auto"):
    """``"auto"`` (or None) -> CUDA when available, else CPU; otherwise ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` (a string or torch.device), available here; anything else ("mps", "meta", "xpu", ...) is a
    ValueError."""
    dev = check_device_name(device)
    if dev is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def _resolve_dtype(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; allowed: {sorted(_DTYPES)}")
        return dtype
    try:        # numpy dtypes and types (np.float32) by name; bfloat16 has no numpy equivalent
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except TypeError:
        name = str(dtype)
    name = name.replace("torch.", "")
    if name in _DTYPES:
        return _DTYPES[name]
    raise ValueError(f"unsupported dtype {dtype!r}; allowed: {sorted(_DTYPES)}")


def weights_sha256(path):
    """Hex sha256 of a weights file (recorded as ``weights_sha256`` in a model's config.json)."""
    return file_sha256(path)


def _torch_load(path, crc=True):
    """torch.load that turns every failure (truncated, corrupt, not a torch file) into a ValueError.

    ``crc``: check the members' CRC-32 first; False where the caller has just matched the whole file's
    recorded sha256 (a second read of the file, ~1 s per 2 GB, would find nothing more)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    # torch.load does not compare a member's bytes with the CRC-32 torch.save recorded: damage inside the
    # tensors (a bad download or copy; a released checkpoint has no recorded sha256) loaded as other weights,
    # and damage to the pickle was read as a file holding Python objects
    if crc:
        check_zip_crc(path, "weights file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:                   # noqa: BLE001 - torch raises many types for bad files
        text = str(exc)
        # only a refused class (an 'Unsupported global', a blocked module, an object built from one) is a
        # readable file holding Python objects; the unpickler's other complaints ('Unsupported operand 0')
        # are a damaged pickle, which was sent off to re-save its state_dict
        if "Weights only load failed" in text and re.search(r"GLOBAL|allowlisted|Can only (build|create)",
                                                             text):
            # a readable checkpoint holding Python objects besides tensors (numpy scalars, an argparse
            # Namespace): its reason sits deep in torch's long message, which the cut to 200 characters lost
            reason = next((line.strip() for line in text.splitlines() if "Unsupported global" in line
                           or "WeightsUnpickler error" in line), "objects other than tensors")
            raise ValueError(f"cannot read weights file {path} with torch.load(weights_only=True): it holds "
                             f"Python objects besides tensors ({reason[:200]}); save its state_dict alone "
                             "(torch.save(model.state_dict(), path))") from exc
        if "Weights only load failed" in text:     # the unpickler's own words, not torch's preamble
            text = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[-1].splitlines()
                         if line.strip()), text)
        raise ValueError(f"cannot read weights file {path}: it is truncated, corrupt or not a PyTorch "
                         f"checkpoint ({type(exc).__name__}: {text[:200]})") from exc
    return sd


def _model_weights(directory, cfg, what="weights file"):
    """(path, state_dict) of a model directory's weights, checked: its config's recorded ``weights_sha256``
    (another model's weights.pt copied in), then the file (:func:`_torch_load`: its CRCs only where no sha256
    is recorded, the whole file having just been hashed), then NaN / inf. ``what`` names the file in the
    sha256 error. A file that holds no state_dict, or NaN / inf, is a ValueError."""
    path = Path(directory) / cfg.get("weights_file", "weights.pt")
    if path.is_file():                 # a missing file is named by _torch_load
        check_recorded_sha256(path, cfg.get("weights_sha256"), "weights_sha256", what)
    sd = _torch_load(path, crc=cfg.get("weights_sha256") is None)
    if not isinstance(sd, dict):
        raise ValueError(f"weights file {path} is not a state_dict")
    _check_finite_weights(sd, path)
    return path, sd


def _check_finite_weights(state_dict, path):
    bad = [k for k, v in state_dict.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"weights file {path} holds NaN or inf values (in {bad[:5]}); the file is corrupt")


def _ln_blackbody_large_terms(inv_t, minus_4_ln_t, c64):
    """ln10 a - 4 ln T - x (n, n_wave) in float64, x = b / T: what the blackbody reference sums in float64
    (NeuralGenerator._finish_). (x (-1), + ln10 a, + (-4 ln T)) in this order: bit for bit the rank-3 matrix
    product of (1/T, 1, -4 ln T) and (-b, ln10 a, 1) it replaces (whose other two products are exact), at
    a third less time on the CPU (a K = 3 product is no matrix multiply's fast case). Autograd flows
    through it (the sums in place on the product, whose value no backward step needs)."""
    cols = c64["bb_cols"]
    return torch.outer(inv_t, cols[0]).add_(cols[1]).add_(minus_4_ln_t[:, None])


def _padded_net(net, inp, pad_rows=_PAD_ROWS):
    """``net(inp)`` with the rows padded (zeros) to a multiple of ``pad_rows``; returns the first rows."""
    m = inp.shape[0]
    mp = max(pad_rows, -(-m // pad_rows) * pad_rows)
    if mp != m:
        inp = torch.cat([inp, inp.new_zeros((mp - m, inp.shape[1]))])
    return net(inp)[:m]


# (module path, attribute) of the SM-Net layers that take the scaled inputs themselves
_SMNET_INPUT_LAYERS = (("", "layer1"), ("", "input_proj_1"), ("", "input_proj_2"), ("", "input_proj_3"),
                       ("refine", "cond_proj"))
# rows per SM-Net pass: its refinement holds ~7.7 MB per spectrum (L = 11,655), so the default chunk
# (FORWARD_CHUNK) needed ~16 GB and a batch of 8192 ~63 GB; fixed, so results stay batch-size independent
SMNET_CHUNK = {"cpu": 64, "accelerator": 512}


def _get_attr_path(module, path):
    for part in filter(None, path.split(".")):
        module = getattr(module, part)
    return module


class _Float32Input(torch.nn.Module):
    """A float32 copy of a layer that reads the network's inputs, its output cast to the network's lower
    precision."""

    def __init__(self, layer, out_dtype):
        super().__init__()
        self.layer, self.out_dtype = copy.deepcopy(layer).float(), out_dtype

    def forward(self, x):
        return self.layer(x.float()).to(self.out_dtype)


def _input_dtype(model_dtype):
    """The dtype an SM-Net's inputs are handed over in: float32 for a low-precision network, whose input
    layers stay float32 (_model_for); cast to bfloat16 first, Teff 5000-5020 K reached it as one value."""
    return model_dtype if model_dtype in (torch.float32, torch.float64) else torch.float32


def _mlp_forward(net, inp):
    """``net(inp)`` for an MLP whose first layer may be float32 while the rest runs in a lower precision."""
    first, last = net[0], net[-1]
    h = first(inp.to(first.weight.dtype))
    if last.weight.dtype == first.weight.dtype:
        return net[1:](h)
    return net[1:](h.to(last.weight.dtype))


class _TorchGenerator(Generator):
    """Shared device / dtype handling of the neural generators."""

    def _setup_torch(self, model, device, dtype):
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype) or torch.float32
        # the float32 network is kept: every other precision is made from it (a bfloat16 load used to
        # replace it, so its input layer was bf16 too and a per-call float32 was 2.6 % off)
        self._float32 = model.eval().to(self.device, torch.float32)
        for p in self._float32.parameters():
            p.requires_grad_(False)            # gradients flow to the inputs only
        self._models = {torch.float32: self._float32}
        self._consts = {}
        self._model = self._model_for(self.dtype)[0]

    def _model_for(self, dtype):
        dtype = _resolve_dtype(dtype) or self.dtype
        if dtype not in self._models:
            full = self._float32
            model = copy.deepcopy(full).to(self.device, dtype)
            if dtype in (torch.bfloat16, torch.float16):
                # the input layer stays float32: bf16 inputs alone would quantise log Teff to ~0.4 %
                pairs = (zip(model.experts, full.experts) if isinstance(model, LibraryExpertMLP)
                         else [(model, full)])
                for low, full in pairs:
                    if isinstance(getattr(low, "net", None), torch.nn.Sequential):
                        low.net[0] = copy.deepcopy(full.net[0]).to(self.device, torch.float32)
                if isinstance(model, SMNet):
                    # the layers that read SM-Net's inputs stay float32 too (bf16 inputs came in steps of
                    # 0.04 dex in log g and 0.02 dex in [M/H] on the union box)
                    for owner, name in _SMNET_INPUT_LAYERS:
                        layer = getattr(_get_attr_path(full, owner), name)
                        setattr(_get_attr_path(model, owner), name, _Float32Input(layer, dtype))
            self._models[dtype] = model
        return self._models[dtype], dtype

    @staticmethod
    def _compute_dtype(model_dtype):
        """Post-network arithmetic runs in float32 (float64 if the network does)."""
        return torch.float64 if model_dtype == torch.float64 else torch.float32

    def _tensor_dtype(self, dtype=None):
        return self._compute_dtype(self._model_for(dtype)[1])

    def _chunk(self):
        """Rows per network pass: fixed on the CPU (batch-size independence), one pass on an accelerator."""
        return FORWARD_CHUNK if self.device.type == "cpu" else None

    def _batch(self, teff, logg, logz, *, dtype=None, library=None, as_tensor=False):
        flux = self._forward(teff, logg, logz, dtype=dtype, library=library)
        return flux if as_tensor else flux.cpu().numpy()

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        return self._batch(teff, logg, logz, dtype=dtype).astype(np.float64)


def _with_metallicity_tolerance(box):
    """A library box with zero [M/H] width widened by +-SINGLE_METALLICITY_TOLERANCE (see in_coverage)."""
    return ParameterBox(*widen_single_metallicity((box.teff, box.logg, box.logz)))


def _load_wavelength(path):
    """A model's wavelength grid [A], checked: 1-d, finite, strictly increasing, in Angstrom."""
    try:
        wave = np.asarray(np.load(path, allow_pickle=False), float)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {path} is missing (the model's wavelength grid)") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy wavelength grid: {exc}") from exc
    return check_wavelength_grid(wave, f"{path}: the wavelength grid")


def _check_model_wavelength(wave, path, cfg, directory):
    """Refuse a model's wavelength grid that is not the one it was trained on (a replaced wavelength.npy, e.g.
    the same grid in nm, loaded silently: the Sun's peak moved from 4510 to 5030 A). By config.json's
    ``wavelength_sha256``; a model saved before it was recorded, by its tail table's own grid."""
    recorded = cfg.get("wavelength_sha256")
    if recorded is not None:
        check_recorded_sha256(path, recorded, "wavelength_sha256", "wavelength grid")
        return
    tail = directory / cfg["tail_file"] if "tail_file" in cfg else None
    if tail is None or not tail.is_file():
        return
    try:
        stored = read_npz(tail, "tail table", keys=("wavelength",))
    except ValueError:
        return                        # an unreadable tail table is named when the tail is loaded
    if "wavelength" not in stored:
        return
    own = np.asarray(stored["wavelength"], float)
    if own.shape != wave.shape or not np.allclose(own, wave, rtol=1e-9, atol=0):
        raise ValueError(f"wavelength grid {path} is not the model's: its tail table {tail.name} holds the "
                         f"grid the model was trained on ({own.size} values, {own[0]:g}-{own[-1]:g} A), the "
                         f"file {wave.size} values, {wave[0]:g}-{wave[-1]:g}; it was replaced (e.g. by "
                         "another model's, or in other units): put the model's own grid back")


def _load_nodes(path):
    """A model's training nodes (teff, logg, logz, library_id, split) from its .npz."""
    nodes = read_npz(path, ".npz of training nodes")
    shapes = {k: v.shape for k, v in nodes.items()}
    if len(set(shapes.values())) > 1 or any(len(shape) != 1 for shape in shapes.values()):
        raise ValueError(f"{path}: the arrays of training nodes must be 1-d and of one length (one entry per "
                         f"node); got shapes {shapes}; the file is corrupt or was replaced")
    return nodes


def _check_nodes(nodes, path, cfg, library_names, library_boxes):
    """Refuse a nodes.npz that is not this model's: by ``nodes_sha256`` where config.json records it, else by
    its library ids and boxes. Another model's nodes loaded silently and moved spectra by up to 1e6x (the
    coverage flags, the hulls the networks are held on and the tail table all index them)."""
    check_recorded_sha256(path, cfg.get("nodes_sha256"), "nodes_sha256", "training nodes")
    missing = {"teff", "logg", "logz", "library_id"} - set(nodes)
    if missing:
        raise ValueError(f"{path}: no {sorted(missing)} array; not a model's nodes.npz")
    ids = np.asarray(nodes["library_id"])
    if ids.size and (ids.min() < 0 or ids.max() >= len(library_names)):
        raise ValueError(f"{path}: library ids {int(ids.min())}..{int(ids.max())}, but the model has "
                         f"{len(library_names)} libraries {library_names}; the file is another model's")
    for i, name in enumerate(library_names):
        box, own = library_boxes.get(name), ids == i
        if box is None or not own.any():
            continue
        inside = np.asarray(box.contains(nodes["teff"][own], nodes["logg"][own], nodes["logz"][own]), bool)
        if not inside.all():
            raise ValueError(f"{path}: {int((~inside).sum())} nodes of {name!r} lie outside its box "
                             f"({box.describe()}); the file is another model's")


HOLD_STEP = 1e-6   # [dex] the central differences of NeuralGenerator._hold_jacobian
HOLD_TOL = 1e-9    # [grid steps] a point held on a library's hull by less has not moved (_held_inputs)

_REQUIRED_KEYS = ("arch", "arch_kwargs", "library_names", "box", "library_boxes", "input_scaling")


def read_model_config(directory):
    """A model directory's config.json as a dict, checked: present, valid JSON, an smnet-sps model's."""
    cfg_path = Path(directory) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory: no config.json")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:                  # JSONDecodeError, or UnicodeDecodeError for binary bytes
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != MODEL_FORMAT:
        fmt = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"{cfg_path}: format is {fmt!r}, expected {MODEL_FORMAT!r}")
    return cfg


def _input_scaling(scaling, cfg_path):
    """The network's input scaling (lo, hi: log10 Teff, log g, [M/H]), checked: three finite values each,
    lo < hi (swapped bounds loaded silently, spectra 5e4x off)."""
    try:
        lo, hi = (np.array(scaling[k], float) for k in ("lo", "hi"))
        good = lo.shape == hi.shape == (3,) and bool(np.all(np.isfinite(lo) & np.isfinite(hi) & (lo < hi)))
    except (TypeError, KeyError, ValueError, IndexError):
        good = False
    if not good:
        raise ValueError(f"{cfg_path}: input_scaling must hold lo and hi, three finite numbers each (log10 "
                         f"Teff, log g, [M/H]) with lo < hi; got {scaling!r}")
    return lo, hi


def _near_library_nodes(tree, spacing, reach, points):
    """(m,) bool: one of the COVERAGE_NEIGHBOURS nodes of a library nearest each point (grid steps) lies
    within COVERAGE_FACTOR x its local spacing. Nodes beyond ``reach`` (the largest such distance) never
    qualify: the bound prunes the search without changing the answer (missing neighbours come back with index
    == number of nodes). The nearest node alone decides most points; only the rest get the full query."""
    def qualifies(dist, idx):
        found = idx < spacing.size
        return found & (dist <= COVERAGE_FACTOR * spacing[np.where(found, idx, 0)])
    dist, idx = tree.query(points, k=1, distance_upper_bound=reach, workers=query_workers(len(points)))
    near = qualifies(dist, idx)
    rest = np.flatnonzero((idx < spacing.size) & ~near)
    k = min(COVERAGE_NEIGHBOURS, spacing.size)
    if rest.size and k > 1:
        dist, idx = tree.query(points[rest], k=k, distance_upper_bound=reach,
                               workers=query_workers(rest.size))
        near[rest] = qualifies(dist, idx).any(1)
    return near


class NeuralGenerator(_TorchGenerator):
    """A generator trained by ``smnet-sps train`` (architecture ``mlp``, ``mlp_experts`` or ``smnet``).

    Parameters
    ----------
    directory : path
        Model directory (``config.json`` + ``weights.pt`` + ``wavelength.npy`` + ``nodes.npz``). When
        config.json records ``weights_sha256``, the weights file must match it (else ``ValueError``).
    device : str, ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
    dtype : torch dtype or name, network compute dtype: ``float32`` (default), ``bfloat16`` / ``float16``
        (faster on accelerators; accuracy in docs/generator.md) or ``float64``
    library : str or None
        Default library to imitate (one of ``library_names``); None = the smooth mixture (see
        :mod:`smnet_sps.mixture`). Every call may override it with ``library=``; the generator itself never
        changes.
    renormalise : bool
        False (default): the network's output as it is; its integral is sigma Teff^4 to a median 0.1-2 %
        per library on held-out nodes (benchmarks/RESULTS.md). True: rescale each spectrum so its integral
        over the model's wavelength grid equals sigma Teff^4 exactly; this moves the network's extreme-UV
        errors of hot stars into their optical level, so shapes get worse (WM-basic median 1.9 % -> 3.2 %).
        The SSP backend conserves each star's luminosity itself, whatever this is.
    fill_tail : bool
        True (default): pixels the network was never trained on -- on either side of the peak, fainter than
        ``tail_floor`` (1e-6) x the peak at the surrounding training nodes of the library -- are those nodes
        interpolated, continuously blended with the network where only some of them are in their tail
        (:mod:`smnet_sps.tail`; needs the model's ``tail.npz``). False: the network's own, unconstrained
        output there (on the Wien side a median 3.8-5.5 dex too bright on held-out nodes, on the
        Rayleigh-Jeans side 0.01-0.12 dex off; docs/generator.md).
    """

    def __init__(self, directory, device="auto", dtype=None, library=None, renormalise=False, fill_tail=True):
        directory = Path(directory)
        cfg = read_model_config(directory)
        cfg_path = directory / "config.json"
        missing = [k for k in _REQUIRED_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"{cfg_path} lacks the key(s) {missing}; a model config needs "
                             f"{list(_REQUIRED_KEYS)}")
        self.config = cfg
        self.directory = directory
        self.name = cfg.get("name", directory.name)
        self.arch = cfg["arch"]
        wave_path = directory / cfg.get("wavelength_file", "wavelength.npy")
        self.wavelength = own_wavelength(_load_wavelength(wave_path))
        _check_model_wavelength(self.wavelength, wave_path, cfg, directory)
        self.library_names = list(cfg["library_names"])
        if sorted(cfg["library_boxes"]) != sorted(self.library_names):
            raise ValueError(f"{cfg_path}: library_boxes {sorted(cfg['library_boxes'])} do not match "
                             f"library_names {self.library_names}")
        n_lib = (cfg["arch_kwargs"].get("n_libraries", 1 if cfg["arch"] == "mlp" else None)   # SpectrumMLP's
                 if isinstance(cfg["arch_kwargs"], dict) else None)                        # default is 1
        if cfg["arch"] in ("mlp", "mlp_experts") and n_lib != len(self.library_names):
            raise ValueError(f"{cfg_path}: {len(self.library_names)} library_names {self.library_names} but "
                             f"the network takes n_libraries = {n_lib} (arch_kwargs)")
        try:
            self.box = ParameterBox.from_dict(cfg["box"])
            self.library_boxes = {k: ParameterBox.from_dict(v) for k, v in cfg["library_boxes"].items()}
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{cfg_path}: box or library_boxes: {exc}; the config is corrupt") from None
        self._in_lo, self._in_hi = _input_scaling(cfg["input_scaling"], cfg_path)
        # the output's reference: any other text was read as "none" (a typo gave spectra 1e4-1e6x off)
        if cfg.get("reference", "none") not in ("blackbody", "none"):
            raise ValueError(f"{cfg_path}: reference must be 'blackbody' or 'none'; got {cfg['reference']!r}")
        # the measured library preferences (smnet-sps validate --rank-libraries --write-mixture, which records
        # the file in config.json); a model without them weighs overlapping libraries equally (see
        # smnet_sps.mixture), but a recorded file that is missing or changed is refused, not ignored
        mix_path = directory / cfg.get("mixture_file", MIXTURE_FILE)
        if "mixture_file" in cfg and not mix_path.is_file():
            raise FileNotFoundError(f"{directory}: config.json names {cfg['mixture_file']!r} (the library "
                                    "mixture's measured preferences) but the file is missing")
        check_recorded_sha256(mix_path, cfg.get("mixture_sha256"), "mixture_sha256", "library mixture")
        recorded = "mixture_file" in cfg
        if not recorded and mix_path.is_file():
            # e.g. left by another model that `train --overwrite` replaced: not this network's measurement
            warnings.warn(f"{mix_path} is not recorded in {cfg_path} (mixture_file), so it is ignored and "
                          "overlapping libraries are weighed equally; `smnet-sps validate --rank-libraries "
                          "--write-mixture DIR --overwrite` measures and records one for this model",
                          stacklevel=3)
        self.mixture_policy = MixturePolicy.load(mix_path) if recorded else None
        # train writes the model files part way (every 50 epochs, and on Ctrl-C / SIGTERM): such a model
        # loaded without a word, so a run interrupted and never resumed (or one still training) was used as
        # if it were the trained model
        training = cfg.get("training")
        if isinstance(training, dict) and training.get("finished") is False:
            warnings.warn(f"{directory} is a model whose training has not finished "
                          f"({training.get('epochs_run')} epochs run; interrupted, or still running): its "
                          "weights are those of the run so far; finish it with "
                          f"`smnet-sps train --out {directory} --resume`",
                          UserWarning, stacklevel=3)
        self._library_mixture = None
        self.log1p01 = cfg.get("log1p01")
        self.renormalise = check_switch(renormalise, "renormalise")

        sd = _model_weights(directory, cfg)[1]
        try:
            # its random initial weights, replaced by the file's, must not advance the caller's random numbers
            with caller_torch_state_kept():
                model = build_model(self.arch, **cfg["arch_kwargs"])
        except (TypeError, ValueError) as exc:
            # e.g. an expert model's arch_kwargs under arch "mlp": a TypeError deep in torch's modules
            raise ValueError(f"{cfg_path}: arch {self.arch!r} cannot be built with arch_kwargs "
                             f"{cfg['arch_kwargs']!r} ({exc}); the config is corrupt") from None
        try:
            model.load_state_dict({k: v.float() for k, v in sd.items()})
        except (RuntimeError, AttributeError) as exc:
            raise ValueError(f"weights in {directory} do not match config.json ({self.arch}, "
                             f"{cfg['arch_kwargs']}): {str(exc)[:300]}") from exc
        # "mlp" and "mlp_experts" predict log10(F / sigma T^4); "smnet" (released layout) log1p01 flux
        self._mlp = self.arch in ("mlp", "mlp_experts")
        n_out = model.n_wave if self._mlp else model.L
        if n_out != self.wavelength.size:
            raise ValueError(f"{directory}: the model has {n_out} output pixels but wavelength.npy has "
                             f"{self.wavelength.size}")
        self._setup_torch(model, device, dtype)
        self._blackbody_reference = self._mlp and cfg.get("reference", "none") == "blackbody"
        self._coverage_index = None
        self._coverage_memo = None
        nodes_path = directory / cfg.get("nodes_file", "nodes.npz")
        if "nodes_file" in cfg and not nodes_path.is_file():
            # without the nodes the coverage flags fall back to the boxes alone: weaker, so never silently
            raise FileNotFoundError(f"{directory}: config.json names {cfg['nodes_file']!r} (the training "
                                    "nodes the coverage flags need) but the file is missing")
        self.nodes = _load_nodes(nodes_path) if nodes_path.is_file() else None
        if self.nodes is not None:
            _check_nodes(self.nodes, nodes_path, cfg, self.library_names, self.library_boxes)
        fill_tail = check_switch(fill_tail, "fill_tail")
        self.tail = self._load_tail(directory, cfg) if fill_tail and self._mlp else None
        self._node_hulls = {}          # library index -> hull of its training nodes (_node_hull), on use
        self._gravity_ranges = {}      # library index -> log g range of its grid (_gravity_range), on use
        self.default_library = self._check_library(library)
        # a specialist (train --libraries) served the libraries it was not trained on without a word: from
        # scratch, their spectra come from an untrained input, yet picked and flagged covered.
        # Said where a call asks for them (_check_library): the library is often chosen per call
        trained = cfg.get("trained_libraries")
        self._untrained_libraries = (
            [n for n in self.library_names if trained is not None and n not in trained]
            if cfg["arch"] == "mlp" else [])
        self._untrained_how = "drifted from its base" if cfg.get("init_from") else "an untrained input"
        norm = ("; each spectrum rescaled so its integral over "
                f"{self.wavelength[0]:g}-{self.wavelength[-1]:g} A = sigma*Teff^4" if self.renormalise
                else " (not renormalised)")
        self.meta = {"flux_normalisation": ("model predicts log10(F_lambda / (sigma Teff^4)) (relative to a "
                                            "blackbody); F_lambda = 10**pred * sigma Teff^4"
                                            if self._mlp else
                                            "model predicts F_lambda/(sigma Teff^4) in log1p01 space; "
                                            "F_lambda = x * sigma Teff^4") + norm,
                     "model": self.name, "arch": self.arch,
                     "tail": ("pixels below tail_floor x the peak (the Wien side; also the Rayleigh-Jeans "
                              "side where the table has it): the training nodes interpolated "
                              f"({cfg.get('tail_file')})" if self.tail is not None else
                              "the network's own output everywhere"),
                     "citation": "Anwar et al. 2026 (arXiv:2603.23899) for SM-Net; smnet-sps"}

    def target_fraction(self, teff):
        """1 with ``renormalise=True`` (each spectrum rescaled to sigma Teff^4 over the grid), else a
        blackbody's share of sigma Teff^4 on the grid (:meth:`Generator.target_fraction`)."""
        if self.renormalise:
            return np.ones(np.size(teff))
        return super().target_fraction(teff)

    def _load_tail(self, directory, cfg):
        """The model's :class:`~smnet_sps.tail.UntrainedTails`, or None for a model without a tail table."""
        if "tail_file" not in cfg:
            return None
        path = directory / cfg["tail_file"]
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: config.json names {cfg['tail_file']!r} (the tail "
                                    "table of the training nodes) but the file is missing")
        if self.nodes is None:
            raise ValueError(f"{directory}: a tail table needs the model's training nodes (nodes.npz)")
        check_recorded_sha256(path, cfg.get("tail_sha256"), "tail_sha256", "tail table")
        return UntrainedTails(path, self.nodes, self.library_names, self.wavelength.size, self.wavelength,
                              cfg.get("tail_floor"))

    def _held_inputs(self, teff, logg, logz, mix, with_tail=True):
        """Host side: where each library's network is evaluated for the points it weighs, and the tail lookup.

        Returns ``held`` (n, n_libraries, 3) float64 (log10 Teff, log g, [M/H]; NaN where the point stays
        where the training box holds it, so that its inputs keep their exact arithmetic) and ``look`` (n,
        n_libraries, 8), each library's :meth:`~smnet_sps.tail.UntrainedTails.locate` (None without a tail
        table or with ``with_tail=False``); where a library does not weigh the point, NaN and zeros.

        A point is held inside the training box, then on the hull of the library's training nodes
        (:meth:`_node_hull`): beyond its last nodes a library's network extrapolates (a 20,000 K, log g 2.0
        supergiant, half a step past CK04's and BaSeL's lowest gravity, came out at 1.90 sigma Teff^4), so
        its departure from a blackbody is taken at the hull, while the blackbody follows the true Teff (as at
        the box edge). Inside the hull nothing moves. "At the hull": the point clipped to the nodes' bounding
        box, then projected onto the hull in the sheared node coordinates the triangulation uses -- within
        0.2 grid steps of the closest hull point for covered points. A single-metallicity library (BaSeL,
        CM87) is triangulated in (Teff, log g) only and keeps the point's [M/H] within its mixture weight's
        tolerance of +-0.25 dex where a library spanning [M/H] taught the network a trend there (BaSeL), and
        is held at its own [M/H] where none did (CM87: :meth:`_metallicity_trend_taught`); nodes without a
        hull (too few, or on a plane) clip to their bounding box only, and a library without training nodes
        is held inside the training box only. Last, log g is
        clipped into the range the library's grid spans at that (Teff, [M/H]) (:meth:`_gravity_range`): the
        convex hull bridges a grid's concave edges, where a 4,300 K, log g -0.4 supergiant lay 0.4 dex below
        BaSeL's lowest model there and came out at 0.86 sigma Teff^4; and a single-metallicity library's
        [M/H] is held within its tolerance (outside coverage beyond it, where the network extrapolated).
        """
        boxed = self._boxed(np.stack([np.log10(teff), logg, logz], 1))
        n, n_lib = teff.size, len(self.library_names)
        held = np.full((n, n_lib, 3), np.nan)
        look = None if self.tail is None or not with_tail else np.zeros((n, n_lib, 8))
        for j in range(n_lib):
            sel = np.flatnonzero(mix[:, j] > 0)
            if not sel.size:
                continue
            pts = node_points(*boxed[sel].T)
            hull = self._node_hull(j)
            shared = look is not None and hull is not None and self.tail.libraries[j] is hull
            if shared:
                look[sel, j], on_hull = self.tail.locate(pts, j)     # the tail's triangulation: one search
            else:
                on_hull = pts if hull is None else hull.locate(pts)[3]
            # then into the log g range of the library's grid at that (Teff, [M/H]), which the hull bridges
            # where the grid's edge is concave, and a single-metallicity library's [M/H] within its tolerance
            # (beyond it the network extrapolated freely: CM87 at 87 kK, [M/H] -0.8, 14 sigma Teff^4); the
            # lookups again for the points that moved
            gravity = self._gravity_range(j)
            if gravity is not None:
                clipped = gravity.clip(on_hull)
                if gravity.single_metallicity:
                    m0 = gravity.columns[0, 1]
                    tol = 0.0 if self._metallicity_pinned(j) else SINGLE_METALLICITY_TOLERANCE / NODE_STEPS[2]
                    clipped[:, 2] = np.clip(clipped[:, 2], m0 - tol, m0 + tol)
                narrowed = (np.abs(clipped - on_hull) > HOLD_TOL).any(1)
                if narrowed.any():
                    rows = sel[narrowed]
                    if shared:
                        look[rows, j], clipped[narrowed] = self.tail.locate(clipped[narrowed], j)
                    elif hull is not None:                     # (clipped within rounding of the hull)
                        clipped[narrowed] = hull.locate(clipped[narrowed])[3]
                    on_hull = clipped
            if look is not None and not shared:
                look[sel, j] = self.tail.locate(on_hull, j)[0]
            # points that did not move keep their exact inputs ((x / step) * step need not give x back, and
            # the box's min-max scaling moves a node on the hull's face by an ulp)
            moved = (np.abs(on_hull - pts) > HOLD_TOL).any(1)
            held[sel, j] = np.where(moved[:, None], on_hull * np.asarray(NODE_STEPS), np.nan)
            if shared:
                # the fill then takes its weights from the held point itself (on the hull, in the simplex
                # found), not from a constant projection: torch_surface_flux keeps their derivative
                look[sel[moved], j, 5:] = np.nan
        return held, look

    def _hold_jacobian(self, teff, logg, logz, mix, held):
        """(n, n_libraries, 3, 3): d(held point) / d(log10 Teff, log g, [M/H]) where :meth:`_held_inputs`
        moved a library's input or a library pinned at its own [M/H] (:meth:`_metallicity_pinned`) weighs
        the point (zeros elsewhere), by central differences of the hold, which is piecewise affine (exact
        but within HOLD_STEP of its kinks): beyond a hull the held point slides along the hull's face as the
        star moves, so torch_surface_flux keeps that part of the derivative; a pinned [M/H] has derivative 0
        even where the point sits at that [M/H] and so did not move."""
        jac = np.zeros(held.shape + (3,))
        pinned = self._pinned_libraries()
        rows = np.flatnonzero(np.isfinite(held[..., 0]).any(1) | (mix[:, pinned] > 0).any(1))
        if not rows.size:
            return jac
        p = np.stack([np.log10(teff), logg, logz], 1)[rows]
        sides = []
        for axis in range(3):
            for sign in (1.0, -1.0):
                q = p.copy()
                q[:, axis] += sign * HOLD_STEP
                h, _ = self._held_inputs(10 ** q[:, 0], q[:, 1], q[:, 2], mix[rows], with_tail=False)
                sides.append(np.where(np.isnan(h), self._boxed(q)[:, None, :], h))
        for axis in range(3):
            jac[rows, :, :, axis] = (sides[2 * axis] - sides[2 * axis + 1]) / (2 * HOLD_STEP)
        return jac

    def _mixture_jacobian(self, teff, logg, logz, mix):
        """(n, n_libraries, 3): d(default mixture weight) / d(log10 Teff, log g, [M/H]) by central differences
        (step HOLD_STEP, inside the physical domain) where ``mix`` (n, n_libraries) blends libraries; zeros
        elsewhere (a one-hot row is stationary: the other weights are >= 0 and C1, at their minimum 0). The
        weights are C1 inside the supports; where a coordinate's two one-sided differences disagree (a kink,
        or the fallback's step across a face of one box inside another) the side along which the weights
        change less is taken for every library of the row, so the derivatives still sum to 0 and a step
        gives no spike of (step / HOLD_STEP)."""
        jac = np.zeros(mix.shape + (3,))
        rows = np.flatnonzero((mix > 0).sum(1) > 1)
        if not rows.size:
            return jac
        p = np.stack([np.log10(teff), logg, logz], 1)[rows]
        lo = np.array([np.log10(TEFF_DOMAIN[0]), LOGG_DOMAIN[0], LOGZ_DOMAIN[0]])
        hi = np.array([np.log10(TEFF_DOMAIN[1]), LOGG_DOMAIN[1], LOGZ_DOMAIN[1]])
        w0 = mix[rows]
        # the six moved copies of the points in one call (per-call costs dominate for a few rows)
        q = np.repeat(p[None], 6, axis=0)
        signs = np.array([1.0, -1.0] * 3)
        for k in range(6):
            q[k, :, k // 2] = np.clip(q[k, :, k // 2] + signs[k] * HOLD_STEP, lo[k // 2], hi[k // 2])
        w = self._library_mixture.weights(*q.reshape(-1, 3).T).reshape(6, len(rows), -1)
        for axis in range(3):
            sides = []
            for k in (2 * axis, 2 * axis + 1):
                step = np.abs(q[k, :, axis] - p[:, axis])[:, None]
                sides.append(np.where(step > 0, signs[k] * (w[k] - w0) / np.where(step > 0, step, 1.0),
                                      np.nan))
            right, left = sides
            # on the physical domain's edge: the one side there is
            right, left = np.where(np.isnan(right), left, right), np.where(np.isnan(left), right, left)
            size_r, size_l = np.abs(right).max(1), np.abs(left).max(1)
            smooth = np.abs(right - left).max(1) <= 1e-2 * np.maximum(size_r, size_l) + 1e-6
            one_side = np.where((size_r <= size_l)[:, None], right, left)
            jac[rows, :, axis] = np.where(smooth[:, None], 0.5 * (right + left), one_side)
        return jac

    def _metallicity_pinned(self, j):
        """True if :meth:`_held_inputs` holds library j's [M/H] at the library's own (a clip to a zero-width
        range): a single-metallicity library where no network learned a trend with [M/H]
        (:meth:`_metallicity_trend_taught`)."""
        gravity = self._gravity_range(j)
        return gravity is not None and gravity.single_metallicity and not self._metallicity_trend_taught(j)

    def _pinned_libraries(self):
        """(n_libraries,) bool: :meth:`_metallicity_pinned` of each library."""
        return np.array([self._metallicity_pinned(j) for j in range(len(self.library_names))], bool)

    def _metallicity_trend_taught(self, j):
        """True if library j spans several [M/H], or another library that does overlaps its Teff range: then
        the network has learned a trend with [M/H] there, which a single-metallicity library's input may
        follow within its tolerance. Otherwise (CM87 at 60-180 kK, above every library with several [M/H])
        the input is held at the library's own [M/H]: the [M/H] direction was never trained there (CM87
        at 80 kK, log g 5 integrated to 1.2 / 2.8 / 6.1 sigma Teff^4 at [M/H] -0.1 / -0.2 / -0.25)."""
        def spans_metallicity(box):
            return box.logz[1] > box.logz[0]
        own = self.library_boxes[self.library_names[j]]
        if spans_metallicity(own):
            return True
        return any(spans_metallicity(box) and box.teff[0] < own.teff[1] and own.teff[0] < box.teff[1]
                   for name, box in self.library_boxes.items() if name != self.library_names[j])

    def _gravity_range(self, j):
        """The log g range of library j's grid (:class:`~smnet_sps.gravity_range.GravityRange`, from all of
        its nodes: where it has models), or None for a model without nodes."""
        if self.nodes is None:
            return None
        if j not in self._gravity_ranges:
            own = self.nodes["library_id"] == j
            points = node_points(np.log10(self.nodes["teff"][own]), self.nodes["logg"][own],
                                 self.nodes["logz"][own])
            self._gravity_ranges[j] = GravityRange(points) if own.any() else None
        return self._gravity_ranges[j]

    def _boxed(self, p):
        """Points (n, 3) of (log10 Teff, log g, [M/H]) held inside the training box, as the network sees them
        there (the same arithmetic for the hold and its derivative)."""
        span = self._in_hi - self._in_lo
        return self._in_lo + np.clip((p - self._in_lo) / span, 0.0, 1.0) * span

    def _node_hull(self, j):
        """The hull of library j's training nodes (:func:`~smnet_sps.tail.node_hull`; the tail table's own
        triangulation where it holds the same nodes), or None for a model without nodes."""
        if self.nodes is None:
            return None
        if j not in self._node_hulls:
            split = self.nodes.get("split", np.zeros(self.nodes["teff"].size, np.int8))
            train = np.flatnonzero((split == 0) & (self.nodes["library_id"] == j))
            name = self.library_names[j]
            own = None if self.tail is None else self.tail.node_index.get(name)
            if own is not None and np.array_equal(np.sort(own), train):
                self._node_hulls[j] = self.tail.libraries[j]
            else:
                self._node_hulls[j] = (node_hull(node_points(np.log10(self.nodes["teff"][train]),
                                                             self.nodes["logg"][train],
                                                             self.nodes["logz"][train]))
                                       if train.size else None)
        return self._node_hulls[j]

    # ---- library selection ----------------------------------------------------------------------
    def _check_library(self, library):
        """The library a call imitates: ``library`` if given (checked), else the model's default."""
        if library is None:
            library = getattr(self, "default_library", None)
        elif library not in self.library_names:
            raise ValueError(f"unknown library {library!r}; this model knows {self.library_names} (or None "
                             "for the smooth mixture)")
        untrained = getattr(self, "_untrained_libraries", ())
        if untrained and (library is None or library in untrained):
            trained = [n for n in self.library_names if n not in untrained]
            asked = f"library={library!r}" if library is not None else "the default mixture"
            warnings.warn(f"{self.directory} was trained on {', '.join(trained)} only (a specialist): "
                          f"{asked} serves {', '.join(untrained)} spectra it was not trained for "
                          f"({self._untrained_how}); use library={trained[0]!r}, or combine it with its base "
                          "model (smnet-sps experts)", UserWarning, stacklevel=3)
        return library

    def mixture(self, teff, logg, logz, library=None):
        """Library-mixture weights, shape (n, n_libraries), rows sum to 1: one-hot for a named library (or the
        model's default library), else the default mixture (:class:`smnet_sps.mixture.LibraryMixture`: never
        outside a library's box or in its holes, preferences from ``mixture.json``).

        Inputs as for :meth:`surface_flux` (numbers, arrays of any shape, flattened; Quantities converted; NaN
        or values outside the physical domain a ``ValueError``)."""
        return self._mixture(*validate_parameters(teff, logg, logz), self._check_library(library))

    def _mixture(self, teff, logg, logz, library):
        """:meth:`mixture` of validated 1-d arrays; ``library`` already resolved (None: the mixture)."""
        if library is not None:
            out = np.zeros((teff.size, len(self.library_names)))
            out[:, self.library_names.index(library)] = 1.0
            return out
        if self._library_mixture is None:
            self._library_mixture = LibraryMixture(self.library_names, self.library_boxes, self.nodes,
                                                   self.mixture_policy)
        return self._library_mixture.weights(np.log10(teff), logg, logz)

    # ---- coverage -------------------------------------------------------------------------------
    def in_coverage(self, teff, logg, logz, library=None):
        """True where a point lies inside a library box AND near that library's training nodes.

        With ``library`` (or a model loaded with a default library), only that library's box and nodes
        count: an imitation is covered where that library has models, not where another library does.

        Near = for some library whose box contains the point, one of that library's 16 training nodes
        nearest the point lies within ``COVERAGE_FACTOR`` (1.5) x that node's local grid spacing, with
        distances in nominal grid steps (0.02 dex log Teff, 0.5 dex log g, 0.5 dex [M/H]): the mixture's hole
        rule, so the default mixture never uses a library this does not count. This flags holes inside a box
        (e.g. hot low-gravity corners where a library has no models). A library computed at a single
        metallicity (BaSeL 2.2 and CM87 here: [M/H] = 0) is taken to cover +-0.25 dex around it, half a
        nominal [M/H] step -- the range over which its mixture weight tapers to zero -- instead of a box of
        zero width that no isochrone off exactly solar metallicity could ever hit.

        Vectorised k-d tree queries, one per library whose box holds undecided points (each bounded by the
        largest reach of that library's nodes, so far points cost little); the last answer is remembered, so
        the usual ``in_coverage`` then ``surface_flux`` on the same points queries once.
        """
        teff, logg, logz = validate_parameters(teff, logg, logz)
        library = self._check_library(library)
        key = hashlib.blake2b(b"".join(a.tobytes() for a in (teff, logg, logz)) + str(library).encode(),
                              digest_size=16).digest()
        memo = self._coverage_memo
        if memo is not None and memo[0] == key:
            return memo[1].copy()
        result = self._in_coverage(teff, logg, logz, library)
        self._coverage_memo = (key, result)
        return result.copy()

    def _coverage_boxes(self):
        """The library boxes as coverage uses them: a single-metallicity box widened by its tolerance."""
        return {name: _with_metallicity_tolerance(self.library_boxes[name]) for name in self.library_names}

    def _library_box_matrix(self, teff, logg, logz):
        """(n, n_libraries) bool: inside each library's box (single-metallicity boxes widened)."""
        lo = np.empty((len(self.library_names), 3))
        hi = np.empty_like(lo)
        for j, box in enumerate(self._coverage_boxes().values()):      # in library_names' order
            # the faces every coverage test uses (a Teff from a log Teff on a node is inside)
            lo[j], hi[j] = box_edges(box)
        p = np.stack([teff, logg, logz], 1)[:, None, :]
        return ((p >= lo[None]) & (p <= hi[None])).all(2)

    def _in_coverage(self, teff, logg, logz, library=None):
        inbox = self._library_box_matrix(teff, logg, logz)
        if library is not None:         # an imitation: only its library's box (and so its nodes) count
            inbox &= np.arange(len(self.library_names)) == self.library_names.index(library)
        inside_box = inbox.any(1)
        if self.nodes is None or not inside_box.any():
            return inside_box
        if self._coverage_index is None:
            self._coverage_index = self._build_coverage_index()
        sel = np.flatnonzero(inside_box)
        pts = self._node_coords(teff[sel], logg[sel], logz[sel])
        # Each library whose box holds the point asks its own nodes, as the mixture's hole factor does: among
        # the nearest nodes of all libraries together, another library's (WM-basic's 16 at 33 kK, log g 3.4,
        # outside its box) hid the CK04 node the mixture took the point from, flagged outside coverage.
        near = np.zeros(sel.size, bool)
        for j, own in enumerate(self._coverage_index):
            rows = np.flatnonzero(inbox[sel, j] & ~near)       # a point covered once is decided
            if rows.size and own is not None:
                near[rows] = _near_library_nodes(*own, pts[rows])
        out = np.zeros(teff.size, bool)
        out[sel] = near
        return out

    _node_coords = staticmethod(node_coordinates)

    def _build_coverage_index(self):
        """Per library: (k-d tree of its nodes in grid steps, their local spacings, the largest reach of any
        of them), or None for a library without nodes."""
        index = []
        for own in library_node_trees(self.nodes, len(self.library_names)):
            if own is None:
                index.append(None)
                continue
            tree, spacing = own
            reach = float(np.nextafter(COVERAGE_FACTOR * spacing.max(), np.inf)) * (1 + 1e-12)
            index.append((tree, spacing, reach))
        return index

    # ---- forward --------------------------------------------------------------------------------
    def scale_inputs(self, teff, logg, logz):
        """Min-max scale (log10 Teff, log g, [M/H]) with the training box; no clipping (flags say where)."""
        p = np.stack([np.log10(teff), logg, logz], 1)
        return (p - self._in_lo) / (self._in_hi - self._in_lo)

    def _constants(self, device, dtype):
        """Per-pixel and scaling constants as tensors on ``device`` in ``dtype`` (built once per pair)."""
        key = (str(device), dtype)
        if key not in self._consts:
            a, b = blackbody_constants(self.wavelength)

            def as_t(v):          # a copy: the wavelength grid is read-only, which torch cannot share
                return torch.tensor(np.asarray(v, float), device=device).to(dtype)
            self._consts[key] = {"a": as_t(a), "b": as_t(b), "nb": as_t(-b), "wl": as_t(self.wavelength),
                                 "bb_cols": as_t(np.stack([-b, a * np.log(10.0), np.ones_like(a)])),
                                 "lo": as_t(self._in_lo), "span": as_t(self._in_hi - self._in_lo),
                                 "eye": as_t(np.eye(len(self.library_names)))}
        return self._consts[key]

    def _pairs(self, mix):
        """(row, library, weight) of every non-zero mixture weight, rows ascending, libraries ascending."""
        rows, libs = torch.nonzero(mix > 0, as_tuple=True)
        return rows, libs, mix[rows, libs]

    def _network_log_ratio(self, model, x, libs, compute, tail=None, dest=None):
        """log10(F / sigma T^4) - reference, shape (m, n_wave), for scaled inputs x (m, 3),
        library ids (m,); ``tail`` = (held parameters (m, 3), lookup (m, 8)) fills the untrained tails.
        ``dest`` (no autograd): an (m, n_wave) tensor of the compute dtype the result may be written into
        (returned, or another tensor)."""
        if isinstance(model, LibraryExpertMLP):
            # each library's rows through its expert (one network pass per row, as for a single MLP)
            def one_expert(expert, rows):
                whole = rows.numel() == x.shape[0]           # one library: the rows as they are, into dest
                return self._expert_log_ratio(expert, x if whole else x[rows], libs if whole else libs[rows],
                                              compute, dest if whole else None)
            out = x.new_empty((x.shape[0], self.wavelength.size), dtype=compute)
            out = model.route(one_expert, libs, out)
        else:
            out = self._expert_log_ratio(model, x, libs, compute, dest)
        if tail is not None:
            held, look = tail
            out = self.tail.fill_(out, held, libs, look)
        return out

    def _expert_log_ratio(self, model, x, libs, compute, dest=None):
        """:meth:`_network_log_ratio` of one :class:`SpectrumMLP`."""
        inp = torch.cat([x, self._constants(x.device, x.dtype)["eye"][libs]], dim=1)
        z = _padded_net(lambda t: _mlp_forward(model.net, t), inp)   # padded rows: as in any larger batch
        lo, hi = model.out_lo.to(compute), model.out_hi.to(compute)
        mean, std = model.out_mean.to(compute), model.out_std.to(compute)
        if torch.is_grad_enabled():
            return torch.addcmul(mean, std, torch.clamp(z.to(compute), lo, hi))
        # the same arithmetic in place (two fewer (m, n_wave) tensors), into dest where given
        z = z.to(compute).clamp_(lo, hi)
        return torch.addcmul(mean, std, z, out=z if dest is None else dest)

    @torch.no_grad()
    def _forward(self, teff, logg, logz, dtype=None, library=None):
        """F_lambda [erg s^-1 cm^-2 A^-1] of one validated batch as a tensor on the device (no autograd)."""
        model, mdtype = self._model_for(dtype)
        compute = self._compute_dtype(mdtype)
        library = self._check_library(library)
        n, n_lib = teff.size, len(self.library_names)
        # one host -> device transfer: parameters, mixture weights and tail lookup (rules living on the host)
        mix = self._mixture(teff, logg, logz, library) if self._mlp else np.zeros((n, n_lib))
        held, look = self._held_inputs(teff, logg, logz, mix) if self._mlp else (None, None)
        host = np.empty((n, 3 + n_lib + (3 * n_lib if held is not None else 0)
                         + (8 * n_lib if look is not None else 0)))
        host[:, 0], host[:, 1], host[:, 2] = teff, logg, logz
        host[:, 3:3 + n_lib] = mix
        if held is not None:
            host[:, 3 + n_lib:3 + 4 * n_lib] = held.reshape(n, -1)
        if look is not None:
            host[:, 3 + 4 * n_lib:] = look.reshape(n, -1)      # indices: small integers, exact in float64
        params = torch.from_numpy(host).to(self.device)
        c64 = self._constants(self.device, torch.float64)
        t64 = params[:, 0]
        scaled = (torch.stack([torch.log10(t64), params[:, 1], params[:, 2]], 1) - c64["lo"]) / c64["span"]
        inv_t = 1.0 / t64
        rows_q = {"inv_t": inv_t.to(compute), "norm": (SIGMA_SB * t64**4).to(compute),
                  # float64 per-row terms of ln10 a - 4 ln T - x (see _finish_)
                  "inv_t64": inv_t, "m4lnt": -4.0 * torch.log(t64)}
        out = torch.empty((n, self.wavelength.size), dtype=compute, device=self.device)
        chunk = self._chunk() or max(n, 1)
        if not self._mlp:
            # held at the box edge, as the MLP path holds them (and the released SM-Net clips them): the
            # network extrapolated freely, 4e6 x sigma T^4 at [M/H] +1, inf at -3 (CoverageWarning only)
            boxed = scaled.clamp(0.0, 1.0)
            for s in range(0, n, chunk):
                sl = slice(s, min(s + chunk, n))
                y = _padded_net(model, boxed[sl].to(_input_dtype(mdtype)))
                self._finish_(self._smnet_ratio(y).to(compute), rows_q, sl, out)
            return out
        # Outside the training box, and beyond a library's last nodes, the network's departure from a
        # blackbody is held at its value on the box edge and on the nodes' hull (_held_inputs), while the
        # blackbody itself follows the true Teff: a free MLP extrapolation was measured 30x too bright at
        # 220 kK. Points outside the box are always flagged (CoverageWarning / inside).
        rows, libs, w = self._pairs(params[:, 3:3 + n_lib])
        w = w.to(compute)
        unit = bool((w == 1).all())
        boxed = scaled.clamp(0.0, 1.0)[rows]
        moved_to = params[:, 3 + n_lib:3 + 4 * n_lib].reshape(n, n_lib, 3)[rows, libs]    # NaN: not moved
        stays = torch.isnan(moved_to[:, :1])
        x = torch.where(stays, boxed, (moved_to - c64["lo"]) / c64["span"]).to(compute)
        # (log10 Teff, log g, [M/H]) as each library's network sees them
        held = torch.where(stays, c64["lo"] + boxed * c64["span"], moved_to)
        if self.tail is not None:
            look = params[:, 3 + 4 * n_lib:].reshape(n, n_lib, 8)[rows, libs]

        n_pairs = rows.numel()
        if n_pairs == n and (n == 0 or bool((libs == libs[0]).all())):
            # one library for every point (an imitation, or a strip inside one library's box): no blend;
            # each chunk finished while in cache
            tail_all = None if self.tail is None else (held, look)
            for s in range(0, n, chunk):
                sl = slice(s, min(s + chunk, n))
                lr = self._network_log_ratio(model, x[sl], libs[sl], compute,
                                             None if tail_all is None else (tail_all[0][sl], tail_all[1][sl]))
                self._finish_(lr if unit else lr.mul_(w[sl, None]), rows_q, sl, out)
            return out
        # Blend the libraries' *outputs* (weighted geometric mean of their spectra), never their one-hot
        # inputs: the network only ever saw one-hot vectors, and a fractional one is off its manifold (the Sun
        # with CK04+NextGen+BaSeL at 1/3 each came out 8 % faint). The (point, library) pairs of the batch go
        # through the network grouped by library (points ascending within), each library's in fixed-size
        # chunks of its own: one expert and one tail table per chunk, so no row gathers and scatters between
        # libraries (chunks of mixed libraries cost 0.3 of the MLP's time in them). Each point then sums its
        # pairs in library order (gathers, no scatter: a zero row pads points with fewer libraries).
        order = torch.argsort(libs, stable=True)
        libs, x, w = libs[order], x[order], w[order]
        if self.tail is not None:
            held, look = held[order], look[order]
        lr_all = torch.empty((n_pairs + 1, self.wavelength.size), dtype=compute, device=self.device)
        lr_all[n_pairs] = 0.0
        first = 0
        for count in torch.bincount(libs, minlength=n_lib).tolist():
            for s in range(first, first + count, chunk):
                sl = slice(s, min(s + chunk, first + count))
                lr = self._network_log_ratio(model, x[sl], libs[sl], compute,
                                             None if self.tail is None else (held[sl], look[sl]), lr_all[sl])
                if not unit:
                    lr.mul_(w[sl, None])
                if lr.data_ptr() != lr_all[sl].data_ptr():
                    lr_all[sl] = lr
            first += count
        # where pair p (rows ascending, then libraries) lies in lr_all; the zero row stays last
        where = torch.empty(n_pairs + 1, dtype=torch.long, device=self.device)
        where[order] = torch.arange(n_pairs, device=self.device)
        where[n_pairs] = n_pairs
        counts = torch.bincount(rows, minlength=n)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(max(int(counts.max().item()), 1), device=self.device)
        pos = where[torch.where(rank[None, :] < counts[:, None], start[:, None] + rank[None, :], n_pairs)]
        # in blocks of rows_per_pass points (one CPU thread: in cache from the sum to _finish_'s last step)
        step = min(rows_per_pass(self.device, n), chunk)
        for s in range(0, n, step):
            sl = slice(s, min(s + step, n))
            acc = lr_all.index_select(0, pos[sl, 0])
            for k in range(1, pos.shape[1]):
                # only the points with a k-th library (a point's zero row added nothing but a sign to a 0)
                more = torch.nonzero(counts[sl] > k).squeeze(1)
                if more.numel() == acc.shape[0]:
                    acc.add_(lr_all.index_select(0, pos[sl, k]))
                elif more.numel():
                    acc.index_add_(0, more, lr_all.index_select(0, pos[sl][more, k]))
            self._finish_(acc, rows_q, sl, out)
        return out

    def _smnet_ratio(self, y):
        """F / (sigma Teff^4) [A^-1] from the output ``y`` of a network trained with ``--arch smnet``:
        log1p01's inverse in float64 (as :class:`ReleasedSMNetGenerator` does), where float32's exp overflows
        once y * log1p(x_max / tau) passes ~88 (inf flux)."""
        return log1p01_inverse(y.to(torch.float64), self.log1p01["tau"], self.log1p01["x_max"])

    def _finish_(self, v, rows_q, sl, out):
        """Rows ``sl``: network log10 ratio (``mlp``; the linear ratio for ``smnet``) -> F_lambda into
        out[sl].

        In place, in the compute dtype: + blackbody reference, exponentiation, optional renormalisation,
        x sigma Teff^4; in blocks of :func:`~smnet_sps.tail.rows_per_pass` rows (in cache on one CPU thread).
        """
        step = rows_per_pass(self.device, v.shape[0])
        for s in range(0, v.shape[0], step):
            e = min(s + step, v.shape[0])
            self._finish_rows_(v[s:e], rows_q, slice(sl.start + s, sl.start + e), out)

    def _finish_rows_(self, v, rows_q, sl, out):
        """:meth:`_finish_` of one block of rows."""
        compute = v.dtype
        c = self._constants(self.device, compute)
        if self._mlp:
            if self._blackbody_reference:
                # ln(pi B / sigma T^4) = ln10 a - 4 ln T - x - ln(-expm1(-x)), x = h c / (lambda k T). The
                # large terms (x reaches ~70 where the reference meets its floor) are summed in float64, so
                # the float32 result carries one rounding instead of float32's 1e-7 relative error of x (1e-5
                # in flux there); the small log term is fine in float32.
                bb = _ln_blackbody_large_terms(rows_q["inv_t64"][sl], rows_q["m4lnt"][sl],
                                               self._constants(self.device, torch.float64)).to(compute)
                xn = torch.outer(rows_q["inv_t"][sl], c["nb"])                 # -x
                bb.sub_(torch.expm1(xn).neg_().log_()).clamp_(min=LOG_RATIO_FLOOR * _LN10)
                v = bb.add_(v, alpha=_LN10)
            else:
                v = v.mul_(_LN10)
            if self.tail is not None:
                # the training targets' floor, 1e-30 sigma T^4 per A: a filled tail pixel below it (a node's
                # far tail, held at the box edge for a far cooler star) would otherwise underflow to 0
                v.clamp_(min=LOG_RATIO_FLOOR * _LN10)
            ratio = v.exp_()
        else:
            ratio = v
        if self.renormalise:
            # ratio = F / (sigma T^4) [A^-1] must integrate to 1 over wavelength
            ratio.div_(torch.trapezoid(ratio, c["wl"], dim=1)[:, None])
        torch.mul(ratio, rows_q["norm"][sl, None], out=out[sl])

    def _ln_blackbody_ratio(self, teff, dtype):
        """ln(pi B_lambda / sigma T^4), floored, shape (n, n_wave), differentiable (autograd path).

        The same arithmetic as the fast path (:meth:`_finish_`): float64 for the large terms, ``dtype`` for
        ln(-expm1(-x)), whose derivative 1 + 1/(e^x - 1) is finite for every x > 0.
        """
        c, c64 = self._constants(self.device, dtype), self._constants(self.device, torch.float64)
        t64 = teff.to(torch.float64)
        bb = _ln_blackbody_large_terms(1.0 / t64, -4.0 * torch.log(t64), c64).to(dtype)
        xn = torch.outer(1.0 / teff, c["nb"])
        return torch.clamp(bb - torch.log(-torch.expm1(xn)), min=LOG_RATIO_FLOOR * _LN10)

    # ---- differentiable entry point -------------------------------------------------------------
    def torch_surface_flux(self, teff, logg, logz, library=None):
        """F_lambda [erg s^-1 cm^-2 A^-1] as a torch tensor (n, n_wave), differentiable in the parameters.

        Parameters
        ----------
        teff : tensor [K]; logg : tensor, log10(g / cm s^-2); logz : tensor, [M/H] [dex]
            Any device and floating dtype; broadcast together. float64 inputs run the network in float64
            (for gradient checks); otherwise float32. The result lives on the generator's device.
        library : training library to imitate, or None (the model's default, usually the smooth mixture)

        Notes
        -----
        Autograd flows from F_lambda to (Teff, log g, [M/H]) through the input scaling, the network, the
        blackbody reference and sigma Teff^4: no ``no_grad``, no numpy in between. The library-mixture
        weights are computed on the host; where they blend libraries their derivative joins the graph, by
        central differences of the mixture (:meth:`_mixture_jacobian`; C1 inside the tapers, one side taken
        at a kink or step). Outside the training box the network input is held at the box edge
        (gradient zero for the clipped coordinates), and beyond a library's training nodes on their hull, as
        in :meth:`surface_flux`: there the derivative follows the held point as it slides along the hull
        (central differences of the piecewise-affine hold, :meth:`_hold_jacobian`); a library held at its
        own [M/H] (CM87) has zero [M/H] gradient, at that [M/H] too. Points are
        not validated against coverage here: check them once with :meth:`in_coverage`.
        """
        tensors = _torch_parameters(teff, logg, logz)
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
        teff, logg, logz = (t.to(self.device, dtype) for t in torch.broadcast_tensors(*tensors))
        teff, logg, logz = teff.reshape(-1), logg.reshape(-1), logz.reshape(-1)
        with torch.no_grad():
            validate_parameters(teff.detach().cpu().numpy(), logg.detach().cpu().numpy(),
                                logz.detach().cpu().numpy())
        model, _ = self._model_for(dtype)
        c = self._constants(self.device, dtype)
        c64 = self._constants(self.device, torch.float64)
        # scaled in float64 as in the fast path (float32 log10 Teff alone moved far-UV pixels by 7e-5)
        p64 = torch.stack([torch.log10(teff.to(torch.float64)), logg.to(torch.float64),
                           logz.to(torch.float64)], 1)
        scaled = ((p64 - c64["lo"]) / c64["span"]).to(dtype)
        norm = SIGMA_SB * teff**4
        if not self._mlp:
            # clipped to the box and inverted in float64 as in the fast path (_forward)
            ratio = self._smnet_ratio(model(scaled.clamp(0.0, 1.0))).to(dtype)
        else:
            library = self._check_library(library)
            # float64 on the host, as in the fast path: float32 put points on a hull face on another side
            host = [a.detach().cpu().numpy().astype(np.float64) for a in (teff, logg, logz)]
            mix = self._mixture(*host, library)
            moved_to, look = self._held_inputs(*host, mix)
            jac = self._hold_jacobian(*host, mix, moved_to)
            # where the mixture blends libraries its weights carry their derivative (as constants the
            # gradient missed their change: d sum ln F / d log g 3,040 by finite differences, -270 by
            # autograd, at 26,430 K, log g 3.57, [M/H] -1.31, CK04 / WM-basic 0.18 / 0.82)
            mix_jac = self._mixture_jacobian(*host, mix) if library is None else None
            mix = torch.as_tensor(mix, device=self.device, dtype=dtype)
            rows, libs, w = self._pairs(mix)
            zero = (p64 - p64.detach())[rows]
            if mix_jac is not None and mix_jac.any():
                w = w + (torch.as_tensor(mix_jac, device=self.device)[rows, libs] * zero).sum(1).to(dtype)
            # as in the fast path; a point held on a library's hull keeps the derivative of the hold (its
            # slide along the hull's face): value moved_to, gradient jac through a zero-valued difference
            moved_to = torch.as_tensor(moved_to, device=self.device)[rows, libs]
            stays = torch.isnan(moved_to[:, :1])
            jac = torch.as_tensor(jac, device=self.device)[rows, libs]
            shift = torch.einsum("mij,mj->mi", jac, zero)
            slide = torch.nan_to_num(moved_to) + shift
            # a point already at a library's pinned [M/H] does not move, yet the hold fixes that coordinate
            # (its gradient was the network's, 0.35 in ln F at 2 um for CM87 at [M/H] 0, against 0 by finite
            # differences): its value as it stays, its derivative the hold's
            pinned = stays & torch.as_tensor(self._pinned_libraries(), device=self.device)[libs, None]

            def kept(live, scale):
                return torch.where(pinned, live.detach() + (shift / scale).to(live.dtype), live)
            x = torch.where(stays, kept(scaled.clamp(0.0, 1.0)[rows], c64["span"]),
                            ((slide - c64["lo"]) / c64["span"]).to(dtype))
            tail = None
            if look is not None:
                held = c64["lo"] + ((p64 - c64["lo"]) / c64["span"]).clamp(0.0, 1.0) * c64["span"]
                tail = (torch.where(stays, kept(held[rows], 1.0), slide),
                        torch.as_tensor(look, device=self.device)[rows, libs])
            lr = self._network_log_ratio(model, x, libs, dtype, tail) * w[:, None]
            lr = torch.zeros((teff.numel(), self.wavelength.size), dtype=dtype,
                             device=self.device).index_add(0, rows, lr)
            ln_ratio = lr * _LN10
            if self._blackbody_reference:
                ln_ratio = ln_ratio + self._ln_blackbody_ratio(teff, dtype)
            if self.tail is not None:
                ln_ratio = torch.clamp(ln_ratio, min=LOG_RATIO_FLOOR * _LN10)     # as in _finish_
            ratio = torch.exp(ln_ratio)
        if self.renormalise:
            ratio = ratio / torch.trapezoid(ratio, c["wl"], dim=1)[:, None]
        return ratio * norm[:, None]


def _float32_decimal(value):
    """The shortest decimal a meta value that is a float32 number stands for (-2.0999999046325684, stored in
    float32 or float64, -> -2.1); other values as they are."""
    v = float(np.asarray(value).reshape(()))
    as32 = np.float32(v)
    return float(str(as32)) if float(as32) == v else v         # str: the shortest repr of the float32


class ReleasedSMNetGenerator(_TorchGenerator):
    """A released SM-Net checkpoint (``lookup_model_*.pt`` + ``*.meta.npz``).

    Inputs (Teff [K, linear], log g, [M/H] = the release's logZ) are min-max scaled with the meta box and
    clipped to [0, 1], as the release does; points outside the box are flagged (CoverageWarning, or
    ValueError with ``strict=True``), and for a union model (its meta recognised by ``tau``) points outside
    every one of its libraries' boxes too (:data:`RELEASED_LIBRARY_BOXES`, ``library_boxes``).
    Output y (log1p01) -> x = tau * (exp(y * log1p(x_max / tau)) - 1); each spectrum is then rescaled so that
    its integral over the covered wavelengths equals sigma Teff^4 (``normalisation="covered"``), or equals
    sigma Teff^4 times the fraction of a blackbody's flux inside the covered range (``"blackbody"``).
    """

    NORMALISATIONS = ("covered", "blackbody")

    def __init__(self, weights, meta, device="auto", dtype=None, normalisation="covered"):
        weights, meta = Path(weights), Path(meta)
        if normalisation not in self.NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; allowed: {self.NORMALISATIONS}")
        self.normalisation = normalisation
        if not meta.is_file():
            raise FileNotFoundError(f"meta file not found: {meta}")
        try:
            with np.load(meta) as m:
                md = {k: m[k] for k in m.files}
        except Exception as exc:               # noqa: BLE001
            raise ValueError(f"cannot read meta file {meta}: not a valid .npz ({exc})") from exc
        need = ["wave", "tau", "x_max", "Teff_min", "Teff_max", "logG_min", "logG_max", "logZ_min",
                "logZ_max"]
        missing = [k for k in need if k not in md]
        if missing:
            raise ValueError(f"meta file {meta} lacks keys {missing}; a released meta.npz has {need}")
        for key in need[1:]:
            # one number each (per-library arrays, or a re-saved file, were a bare TypeError from numpy)
            value = np.asarray(md[key])
            if value.size != 1 or value.dtype.kind not in "iuf":
                raise ValueError(f"meta file {meta}: {key!r} must be one number, as the release's; got an "
                                 f"array of shape {value.shape} ({value.dtype})")
            md[key] = value.reshape(())
        # before reading the weights (2.2 GB): another release's meta has the same wavelengths
        _check_released_pair(weights, meta, float(md["tau"]))
        sd = _torch_load(weights)
        try:
            model = load_smnet_state_dict(sd)
            _check_finite_weights(model.state_dict(), weights)
        except ValueError as exc:
            raise ValueError(f"{weights}: {exc}") from exc
        L = md["wave"].size
        if model.L != L:
            raise ValueError(f"weights {weights.name} have L = {model.L} output pixels but meta {meta.name} "
                             f"has {L} wavelengths; use the meta.npz released with this checkpoint")
        # a decreasing grid gave negative integrals, so every flux came out negative
        wave = check_wavelength_grid(md["wave"], f"meta file {meta}: the wavelength grid 'wave'")
        self.wavelength = own_wavelength(wave)
        self.tau, self.x_max = float(md["tau"]), float(md["x_max"])
        # the meta's box went through float32 (C3K's -2.1 is stored as -2.0999999046): back to the decimal it
        # stands for, so that a point on the box's face is inside it
        self._lo = np.array([_float32_decimal(md[k]) for k in ("Teff_min", "logG_min", "logZ_min")])
        self._hi = np.array([_float32_decimal(md[k]) for k in ("Teff_max", "logG_max", "logZ_max")])
        finite = np.isfinite([self.tau, self.x_max, *self._lo, *self._hi]).all()
        ordered = (self._lo < self._hi).all() and self._lo[0] > 0
        if not (finite and ordered and self.tau > 0 and self.x_max > 0):
            raise ValueError(f"meta file {meta}: tau and x_max must be positive and finite, and each of "
                             f"Teff, log g, [M/H] (Teff_, logG_, logZ_min / _max) a finite range min < max "
                             f"(Teff > 0); got tau {self.tau}, x_max {self.x_max}, min {self._lo.tolist()}, "
                             f"max {self._hi.tolist()}")
        self.box = ParameterBox((self._lo[0], self._hi[0]), (self._lo[1], self._hi[1]),
                                (self._lo[2], self._hi[2]))
        # a union model (recognised by its tau, also when renamed) covers its libraries' boxes, not its whole
        # meta box; a single-library model (or one the release does not list) covers its meta box
        union = RELEASED_META_LIBRARIES.get(_released_meta_name(self.tau), ())
        self.library_boxes = {name: RELEASED_LIBRARY_BOXES[name] for name in union}
        self.name = weights.stem
        self.B, self.L = model.B, model.L
        self._setup_torch(model, device, dtype)
        self.meta = {"flux_normalisation": (
            f"released SM-Net output rescaled per spectrum: integral over {self.wavelength[0]:g}-"
            f"{self.wavelength[-1]:g} A = sigma*Teff^4" + (" x blackbody fraction in that range"
                                                          if normalisation == "blackbody" else
                                                          " (flux outside that range is ignored)")),
            "weights": str(weights), "meta_file": str(meta),
            "citation": "Anwar, Robotham, Cortese & Vinsen 2026, arXiv:2603.23899; Zenodo "
                        "10.5281/zenodo.18883385"}

    def scale_inputs(self, teff, logg, logz):
        """The release's scaling: min-max with the meta box (Teff linear), clipped to [0, 1]."""
        p = np.stack([teff, logg, logz], 1)
        return np.clip((p - self._lo) / (self._hi - self._lo), 0.0, 1.0)

    def target_fraction(self, teff):
        """Fraction of sigma Teff^4 the covered range must hold: 1 (``normalisation="covered"``), or a
        blackbody's fraction there (``"blackbody"``)."""
        if self.normalisation != "blackbody":
            return np.ones(np.size(teff))
        return super().target_fraction(teff)

    def _flux(self, model, mdtype, scaled, target):
        """F_lambda from inputs already min-max scaled (n, 3; float64) and each spectrum's target integral
        sigma Teff^4 x fraction (n,; float64): network, log1p01 inverse, rescaling. One arithmetic for the
        fast path (under no_grad) and the differentiable one."""
        inp = scaled.to(_input_dtype(mdtype))
        chunk = SMNET_CHUNK["cpu" if self.device.type == "cpu" else "accelerator"]
        y = torch.cat([_padded_net(model, inp[i:i + chunk]) for i in range(0, max(len(inp), 1), chunk)]
                      ).to(torch.float64)
        x = log1p01_inverse(y, self.tau, self.x_max)
        if "wl" not in self._consts:
            self._consts["wl"] = torch.tensor(self.wavelength, device=self.device)   # a read-only grid's copy
        integral = torch.trapezoid(x, self._consts["wl"], dim=1)
        return (x * (target / integral)[:, None]).to(self._compute_dtype(mdtype))

    @torch.no_grad()
    def _forward(self, teff, logg, logz, dtype=None, library=None):
        """F_lambda of one batch as a float32 tensor on the device; post-processing in float64 there."""
        model, mdtype = self._model_for(dtype)
        host = np.empty((teff.size, 4))
        host[:, :3] = self.scale_inputs(teff, logg, logz)
        host[:, 3] = SIGMA_SB * np.asarray(teff, float) ** 4 * self.target_fraction(teff)
        params = torch.from_numpy(host).to(self.device)          # one transfer
        return self._flux(model, mdtype, params[:, :3], params[:, 3])

    def torch_surface_flux(self, teff, logg, logz, library=None):
        """F_lambda [erg s^-1 cm^-2 A^-1] as a torch tensor (n, n_wave), differentiable in the parameters.

        Parameters
        ----------
        teff : tensor [K]; logg : tensor, log10(g / cm s^-2); logz : tensor, [M/H] [dex] (the release's
            logZ, within its meta box)
            Any device and floating dtype; broadcast together. float64 inputs run the network in float64
            (for gradient checks); otherwise float32. The result lives on the generator's device.
        library : must be None (a released checkpoint has no library to imitate)

        Notes
        -----
        The same arithmetic as :meth:`surface_flux` (scaling, network, log1p01 inverse, rescaling to sigma
        Teff^4, or to its blackbody fraction in range with ``normalisation="blackbody"``), with autograd
        from F_lambda to (Teff, log g, [M/H]). As in the release, inputs are clipped to the meta box: outside
        it the clipped coordinates have derivative zero. Points are not validated against coverage here:
        check them once with :meth:`in_coverage`.
        """
        if library is not None:
            raise ValueError("library= applies to models trained by smnet-sps; a released checkpoint has no "
                             f"library to imitate (got {library!r})")
        tensors = _torch_parameters(teff, logg, logz)
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
        teff, logg, logz = (t.to(self.device, dtype).reshape(-1) for t in torch.broadcast_tensors(*tensors))
        with torch.no_grad():
            validate_parameters(teff.detach().cpu().numpy(), logg.detach().cpu().numpy(),
                                logz.detach().cpu().numpy())
        model, mdtype = self._model_for(dtype)
        lo, hi = (torch.as_tensor(a, device=self.device) for a in (self._lo, self._hi))
        t64 = teff.to(torch.float64)
        p64 = torch.stack([t64, logg.to(torch.float64), logz.to(torch.float64)], 1)
        scaled = ((p64 - lo) / (hi - lo)).clamp(0.0, 1.0)
        fraction = torch.ones_like(t64)
        if self.normalisation == "blackbody":
            # the fraction's value as in the fast path, its first derivative in Teff analytic
            from .generator import planck_fraction_derivative
            t_host = t64.detach().cpu().numpy()
            f0, df = (torch.as_tensor(a, device=self.device) for a in (
                self.target_fraction(t_host),
                planck_fraction_derivative(self.wavelength[0], self.wavelength[-1], t_host)))
            fraction = f0 + df * (t64 - t64.detach())
        return self._flux(model, mdtype, scaled, SIGMA_SB * t64**4 * fraction)


def warn_if_model_folder_shadowed(name):
    """Warn where ``name``, a generator name (``"default"``, ``"semi-empirical"``, ``"blackbody"``), is also
    a model folder in the current directory: the name wins, so ``smnet-sps train --out default`` followed
    by ``smnet-sps ssp --generator default`` made the SSP with the shipped model without a word (the
    folder's model is used when given as a path, ``./default``)."""
    if not (isinstance(name, str) and (name in SHIPPED_MODELS or name == "blackbody")):
        return
    folder = Path(name)
    if (folder / "config.json").is_file():
        what = "the analytic blackbody" if name == "blackbody" else f"the shipped model {name!r}"
        warnings.warn(f"generator {name!r} means {what}, not the model folder {str(folder.resolve())!r} "
                      f"here; to use that folder give it as a path: './{name}'", UserWarning, stacklevel=3)


def _resolve_model_path(path):
    if path is None:
        path = "default"
    if isinstance(path, str) and path in SHIPPED_MODELS:
        directory = Path(SHIPPED_MODELS[path]())
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"the shipped model {path!r} is not installed at {directory}")
        return directory
    try:
        return Path(path)
    except TypeError as exc:
        raise ValueError(f"model must be a shipped model name {sorted(SHIPPED_MODELS)}, a model directory or "
                         f"a released .pt checkpoint path; got {type(path).__name__}") from exc


def _files_version(path):
    """What changes when a model on disk is retrained, recalibrated or replaced: (name, inode, size, mtime)
    of a directory's files (README.md aside) or of one file. Read from the file system, not the files, so
    it is cheap enough to check on every call that names a model by its path (``train`` and ``calibrate``
    write through a new file renamed over the old one: a new inode even within one mtime tick)."""
    path = Path(path)
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".md")
    out = []
    for p in files:
        try:
            st = p.stat()
        except OSError:                     # removed while listed: part of what changed
            continue
        out.append((p.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _model_version(path, meta=None):
    """(real path, version) of a model on disk: a model directory, a released ``.pt`` checkpoint with its
    ``meta`` file, or a semi-empirical correction with its base model. The one rule by which the caches that
    load a model by its path (:func:`smnet_sps.ssp.resolve_generator`, a Dask worker's
    :func:`smnet_sps.distributed.worker_generator`) know it: a relative and an absolute path to it are one
    entry, and a model changed on disk (one of its files, its meta file, a correction's base model retrained
    in place) is loaded again."""
    import os
    real = os.path.realpath(path)
    version = _files_version(real)
    if meta is not None:
        version += _files_version(os.path.realpath(meta))
    if _is_semi_empirical(real):
        from .semi_empirical import _read_config, _recorded_base_directory
        try:
            base = _recorded_base_directory(_read_config(Path(real) / "config.json"), real)
        except (OSError, ValueError, KeyError, TypeError):
            base = None                     # no base there: loading the correction says what to do
        if base is not None:
            version += (("base", _model_version(base)),)
    return real, version


def _config_format(directory):
    """The ``format`` a folder's config.json declares (a model, a semi-empirical correction), or None where
    there is no readable config.json."""
    try:
        return json.loads((Path(directory) / "config.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def _is_semi_empirical(directory):
    """True for a folder written by ``smnet-sps calibrate`` (its config.json says so)."""
    from .semi_empirical import FORMAT
    return _config_format(directory) == FORMAT


def _model_not_found(path):
    """The :class:`ModelNotFoundError` for a model name or path that is not there."""
    if Path(path).suffix == ".pt":
        # README's example names a released checkpoint, which is not shipped: say where it comes from
        where = "" if Path(path).is_absolute() else f"; looked in {Path.cwd()}"
        return ModelNotFoundError(f"no released SM-Net checkpoint at {str(path)!r} (file not found{where}): "
                                  "the released checkpoints are not shipped -- download "
                                  f"one ({RELEASE_SOURCE}) and give its path, with its .meta.npz as meta= "
                                  "(--meta)")
    return ModelNotFoundError(f"no model named or at {str(path)!r}: the shipped models are "
                              f"{sorted(SHIPPED_MODELS)}; otherwise give a model directory written by "
                              "`smnet-sps train` or a released .pt checkpoint with meta=")


def load_generator(path=None, meta=None, device="auto", library=None, dtype=None, **kwargs):
    """Load a generator.

    Parameters
    ----------
    path : None, a shipped model name, a model directory, or a released ``.pt`` file
        None or ``"default"`` -> the shipped default model; ``"semi-empirical"`` -> the default model
        calibrated on observed stars (:class:`smnet_sps.semi_empirical.SemiEmpiricalGenerator`); names: the
        keys of :data:`SHIPPED_MODELS`. A correction directory written by ``smnet-sps calibrate --out`` loads
        as a semi-empirical generator on the base it records.
    meta : path, the released ``.meta.npz`` (required with a ``.pt`` file)
    device : ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    library : default library to imitate for our models (None = smooth mixture)
    dtype : compute dtype, ``float32`` (default) or ``bfloat16`` / ``float16`` / ``float64``
    **kwargs : passed to :class:`NeuralGenerator` (``renormalise``, ``fill_tail``) or
        :class:`ReleasedSMNetGenerator` (``normalisation``)

    Returns
    -------
    Generator

    Raises
    ------
    ModelNotFoundError (a ValueError and a FileNotFoundError)
        ``path`` is neither a shipped model name nor an existing path; the message lists the shipped models.
    """
    warn_if_model_folder_shadowed(path)
    # a wrapper of the default model, not a directory
    if isinstance(path, str) and path == "semi-empirical":
        from .semi_empirical import SemiEmpiricalGenerator
        if library is not None or meta is not None or set(kwargs) - {"renormalise", "fill_tail"}:
            raise ValueError("the semi-empirical model takes only device=, dtype=, renormalise= and "
                             "fill_tail=")
        return SemiEmpiricalGenerator(device=device, dtype=dtype, **kwargs)
    path = _resolve_model_path(path)
    if path.is_dir() and _is_semi_empirical(path):
        # a correction written by `smnet-sps calibrate --out DIR`: loaded with the base it records
        from .semi_empirical import SemiEmpiricalGenerator
        if library is not None or meta is not None or set(kwargs) - {"renormalise", "fill_tail"}:
            raise ValueError(f"{path} is a semi-empirical correction: it takes only device=, dtype=, "
                             "renormalise= and fill_tail=")
        return SemiEmpiricalGenerator(path, device=device, dtype=dtype, **kwargs)
    if path.is_dir():
        if meta is not None:
            warnings.warn("meta= is only used with a released .pt checkpoint; ignored for a model directory")
        return NeuralGenerator(path, device=device, dtype=dtype, library=library, **kwargs)
    if not path.exists():
        raise _model_not_found(path)
    if path.name.endswith(".meta.npz"):
        # the meta file given as the model: 'needs its meta file' was the answer, which it already was
        raise ValueError(f"{path} is a released checkpoint's meta file, not its weights: give the checkpoint "
                         f"(.pt, {RELEASE_SOURCE}) as the model and this file as meta= (--generator "
                         "CHECKPOINT.pt --meta META.npz on the command line)")
    if meta is None:
        raise ValueError(f"{path} is a file: a released SM-Net checkpoint needs its meta file "
                         "(meta='....meta.npz'; --meta on the command line), or give a model directory")
    if library is not None:
        raise ValueError("library= applies to models trained by smnet-sps; a released checkpoint has no "
                         "library conditioning (use library=None)")
    return ReleasedSMNetGenerator(path, meta, device=device, dtype=dtype, **kwargs)


def load_generator_option(name=None, meta=None, device="auto"):
    """The generator a command's ``--generator NAME [--meta META.npz]`` names.

    None or ``"default"`` -> None (the command's default, the shipped model); ``"blackbody"`` -> the
    analytic :class:`~smnet_sps.generator.BlackbodyGenerator`; a released SM-Net ``.pt`` checkpoint with
    its ``meta`` file (the weights-and-meta pair the release's CHECKPOINT_FORMAT asks for); otherwise
    :func:`load_generator`.
    """
    _check_meta_option(name, meta)
    if name in ("default", "blackbody"):            # the other names are load_generator's to check
        warn_if_model_folder_shadowed(name)
    if name in (None, "default"):
        return None
    if name == "blackbody":
        from .generator import BlackbodyGenerator
        return BlackbodyGenerator()
    return load_generator(name, meta=meta, device=device)


def generator_spec_option(name=None, meta=None):
    """What the distributed commands hand their workers for ``--generator NAME [--meta META.npz]``: None
    (the shipped model), the name or path, or for a released checkpoint with its meta file a picklable
    ``functools.partial`` of :func:`load_generator` (``--meta`` was dropped there: the workers failed with
    "needs its meta file")."""
    import functools
    _check_meta_option(name, meta)
    warn_if_model_folder_shadowed(name)
    if name in (None, "default"):
        return None
    # a model on disk by its absolute path: a worker started elsewhere resolved a relative one in its own
    # folder (another model there was used silently)
    if name not in SHIPPED_MODELS and name != "blackbody" and Path(name).exists():
        name = str(Path(name).resolve())
    return name if meta is None else functools.partial(load_generator, name, meta=str(Path(meta).resolve()))


def add_meta_option(parser,
                    help="with --generator CHECKPOINT.pt: the released SM-Net checkpoint's .meta.npz"):
    """``--meta META.npz`` beside a command's ``--generator`` (read by :func:`load_generator_option` and
    :func:`generator_spec_option`)."""
    parser.add_argument("--meta", default=None, metavar="META.npz", help=help)


def model_file_in_use(directory, key, filename):
    """The name of the file a model's config.json records under ``key``, or ``filename`` where that file is in
    the folder unrecorded; None if neither (what a command must not replace without --overwrite)."""
    recorded = read_model_config(directory).get(key)
    return recorded or (filename if (Path(directory) / filename).is_file() else None)


def _check_meta_option(name, meta):
    if meta is not None and name not in (None, "default", "blackbody") and name not in SHIPPED_MODELS \
            and not Path(name).exists():
        # --generator CHECKPOINT.pt not downloaded yet: was answered "give it with --generator CHECKPOINT.pt"
        raise _model_not_found(name)
    if meta is not None and (name is None or not Path(name).is_file()):
        raise ValueError("--meta is the .meta.npz of a released SM-Net checkpoint: give it with "
                         "--generator CHECKPOINT.pt (the checkpoint file)")
