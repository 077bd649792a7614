"""Neural generators: our trained models (:class:`NeuralGenerator`) and released SM-Net checkpoints.

``load_generator()`` with no argument returns the shipped default model; ``load_generator(directory)`` a model
written by ``smnet-sps train``; ``load_generator("lookup_model_....pt", meta="....meta.npz")`` a released
SM-Net checkpoint (Anwar et al. 2026, arXiv:2603.23899; Zenodo DOI 10.5281/zenodo.18883385).
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .constants import PACKAGE_DATA, SIGMA_SB
from .generator import Generator, ParameterBox
from .mixture import MIXTURE_FILE, SINGLE_METALLICITY_TOLERANCE, LibraryMixture, MixturePolicy
from .model import blackbody_log_ratio, build_model, load_smnet_state_dict, log1p01_inverse

__all__ = ["NeuralGenerator", "ReleasedSMNetGenerator", "load_generator", "default_model_path",
           "resolve_device", "COVERAGE_SPACING", "COVERAGE_FACTOR"]

MODEL_FORMAT = "smnet-sps model"

# Coverage rule (see docs/generator.md): distances to training nodes are measured in units of a nominal grid
# step per dimension: 0.02 dex in log Teff, 0.5 dex in log g, 0.5 dex in [M/H]. A point is "near the nodes"
# if some training node of a library whose box contains the point lies within COVERAGE_FACTOR times that
# node's own nearest-neighbour distance (its local grid spacing).
COVERAGE_SPACING = (0.02, 0.5, 0.5)
COVERAGE_FACTOR = 1.5


def default_model_path():
    """Directory of the shipped default model (``smnet_sps/data/default_model``)."""
    return PACKAGE_DATA / "default_model"


def resolve_device(device="auto"):
    """``"auto"`` -> CUDA when available, else CPU; any other string or torch.device is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
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
    if str(dtype) in _DTYPES:
        return _DTYPES[str(dtype)]
    raise ValueError(f"unsupported dtype {dtype!r}; allowed: {sorted(_DTYPES)}")


def _torch_load(path):
    """torch.load that turns every failure (truncated, corrupt, not a torch file) into a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:                   # noqa: BLE001 - torch raises many types for bad files
        raise ValueError(f"cannot read weights file {path}: it is truncated, corrupt or not a PyTorch "
                         f"checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc


class _TorchGenerator(Generator):
    """Shared device / dtype handling of the neural generators."""

    def _setup_torch(self, model, device, dtype):
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype) or torch.float32
        self._model = model.eval().to(self.device, self.dtype)
        self._models = {self.dtype: self._model}

    def _model_for(self, dtype):
        dtype = _resolve_dtype(dtype) or self.dtype
        if dtype not in self._models:
            import copy
            self._models[dtype] = copy.deepcopy(self._model).to(self.device, dtype)
        return self._models[dtype], dtype

    def _tensor(self, arr, dtype):
        return torch.as_tensor(np.asarray(arr, np.float32), device=self.device).to(dtype)


def _with_metallicity_tolerance(box):
    """A library box with zero [M/H] width widened by +-SINGLE_METALLICITY_TOLERANCE (see in_coverage)."""
    lo, hi = box.logz
    if hi > lo:
        return box
    return ParameterBox(box.teff, box.logg, (lo - SINGLE_METALLICITY_TOLERANCE, hi + SINGLE_METALLICITY_TOLERANCE))


class NeuralGenerator(_TorchGenerator):
    """A generator trained by ``smnet-sps train`` (architecture ``mlp`` or ``smnet``).

    Parameters
    ----------
    directory : path
        Model directory (``config.json`` + ``weights.pt`` + ``wavelength.npy`` + ``nodes.npz``).
    device : str, ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
    dtype : torch dtype or name, compute dtype (``float32`` default; ``bfloat16`` optional)
    library : str or None
        Default library to imitate (one of ``library_names``); None = the smooth mixture (see
        :mod:`smnet_sps.mixture`). Every call may override it with ``library=``.
    renormalise : bool
        False (default): the network's output as it is; its integral is sigma Teff^4 to a median 0.1-2 %
        per library on held-out nodes (benchmarks/RESULTS.md). True: rescale each spectrum so its integral
        over the model's wavelength grid equals sigma Teff^4 exactly; this moves the network's extreme-UV
        errors of hot stars into their optical level, so shapes get worse (WM-basic median 1.9 % -> 3.2 %).
        The SSP backend conserves each star's luminosity itself, whatever this is.
    """

    def __init__(self, directory, device="auto", dtype=None, library=None, renormalise=False):
        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{directory} is not a model directory: no config.json")
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
        if cfg.get("format") != MODEL_FORMAT:
            raise ValueError(f"{cfg_path}: format is {cfg.get('format')!r}, expected {MODEL_FORMAT!r}")
        self.config = cfg
        self.directory = directory
        self.name = cfg.get("name", directory.name)
        self.arch = cfg["arch"]
        self.wavelength = np.load(directory / cfg.get("wavelength_file", "wavelength.npy")).astype(float)
        self.library_names = list(cfg["library_names"])
        self.box = ParameterBox.from_dict(cfg["box"])
        self.library_boxes = {k: ParameterBox.from_dict(v) for k, v in cfg["library_boxes"].items()}
        self._in_lo = np.array(cfg["input_scaling"]["lo"], float)
        self._in_hi = np.array(cfg["input_scaling"]["hi"], float)
        mix_path = directory / MIXTURE_FILE
        # the measured library preferences (smnet-sps validate --rank-libraries --write-mixture); without
        # them the default mixture weighs overlapping libraries equally (see smnet_sps.mixture)
        self.mixture_policy = MixturePolicy.load(mix_path) if mix_path.is_file() else None
        self._library_mixture = None
        self.log1p01 = cfg.get("log1p01")
        self.renormalise = bool(renormalise)

        sd = _torch_load(directory / cfg.get("weights_file", "weights.pt"))
        model = build_model(self.arch, **cfg["arch_kwargs"])
        try:
            model.load_state_dict({k: v.float() for k, v in sd.items()})
        except (RuntimeError, AttributeError) as exc:
            raise ValueError(f"weights in {directory} do not match config.json ({self.arch}, "
                             f"{cfg['arch_kwargs']}): {str(exc)[:300]}") from exc
        n_out = model.n_wave if self.arch == "mlp" else model.L
        if n_out != self.wavelength.size:
            raise ValueError(f"{directory}: the model has {n_out} output pixels but wavelength.npy has "
                             f"{self.wavelength.size}")
        self._setup_torch(model, device, dtype)
        self._coverage_tree = None
        nodes_path = directory / cfg.get("nodes_file", "nodes.npz")
        self.nodes = dict(np.load(nodes_path)) if nodes_path.is_file() else None
        self.default_library = self._check_library(library)
        self._active_library = self.default_library
        norm = (f"; each spectrum rescaled so its integral over {self.wavelength[0]:g}-{self.wavelength[-1]:g} A "
                "= sigma*Teff^4" if self.renormalise else " (not renormalised)")
        self.meta = {"flux_normalisation": ("model predicts log10(F_lambda / (sigma Teff^4)) (relative to a "
                                            "blackbody); F_lambda = 10**pred * sigma Teff^4" if self.arch == "mlp" else
                                            "model predicts F_lambda/(sigma Teff^4) in log1p01 space; F_lambda = "
                                            "x * sigma Teff^4") + norm,
                     "model": self.name, "arch": self.arch,
                     "citation": "Anwar et al. 2026 (arXiv:2603.23899) for SM-Net; smnet-sps"}

    # ---- library selection ----------------------------------------------------------------------
    def _check_library(self, library):
        if library is None:
            return None
        if library not in self.library_names:
            raise ValueError(f"unknown library {library!r}; this model knows {self.library_names} (or None for "
                             "the smooth mixture)")
        return library

    def mixture(self, teff, logg, logz, library=None):
        """Library-mixture weights, shape (n, n_libraries), rows sum to 1: one-hot for a named library, else
        the default mixture (:class:`smnet_sps.mixture.LibraryMixture`: never outside a library's box or in its
        holes, preferences from ``mixture.json``)."""
        teff, logg, logz = (np.atleast_1d(np.asarray(a, float)) for a in np.broadcast_arrays(teff, logg, logz))
        if library is not None:
            out = np.zeros((teff.size, len(self.library_names)))
            out[:, self.library_names.index(self._check_library(library))] = 1.0
            return out
        if self._library_mixture is None:
            self._library_mixture = LibraryMixture(self.library_names, self.library_boxes, self.nodes,
                                                   self.mixture_policy)
        return self._library_mixture.weights(np.log10(teff), logg, logz)

    @contextlib.contextmanager
    def _using(self, library):
        previous = self._active_library
        # None keeps what is active: the base class calls stream() from surface_flux() without library=.
        if library is not None:
            self._active_library = self._check_library(library)
        try:
            yield
        finally:
            self._active_library = previous

    def stream(self, teff, logg, logz, *, library=None, **kwargs):
        """As :meth:`Generator.stream`; ``library`` picks a training library to imitate (None = mixture)."""
        with self._using(library):
            yield from super().stream(teff, logg, logz, **kwargs)

    def surface_flux(self, teff, logg, logz, *, library=None, **kwargs):
        """As :meth:`Generator.surface_flux`, plus ``library`` (see :meth:`stream`)."""
        with self._using(library):
            return super().surface_flux(teff, logg, logz, **kwargs)

    def spectra(self, teff, logg, logz, *, library=None, **kwargs):
        """As :meth:`Generator.spectra`, plus ``library`` (a training library name, or None = mixture)."""
        with self._using(library):
            return super().spectra(teff, logg, logz, **kwargs)

    # ---- coverage -------------------------------------------------------------------------------
    def in_coverage(self, teff, logg, logz):
        """True where a point lies inside a library box AND near that library's training nodes.

        Near = within ``COVERAGE_FACTOR`` (1.5) x the local grid spacing of some node of that library, with
        distances in nominal grid steps (0.02 dex log Teff, 0.5 dex log g, 0.5 dex [M/H]). This flags holes
        inside a box (e.g. hot low-gravity corners where a library has no models). A library computed at a
        single metallicity (BaSeL 2.2 and CM87 here: [M/H] = 0) is taken to cover +-0.25 dex around it, half
        a nominal [M/H] step -- the range over which its mixture weight tapers to zero -- instead of a box of
        zero width that no isochrone off exactly solar metallicity could ever hit.
        """
        from .generator import validate_parameters
        teff, logg, logz = validate_parameters(teff, logg, logz)
        boxes = {name: _with_metallicity_tolerance(box) for name, box in self.library_boxes.items()}
        inside_box = np.zeros(teff.shape, bool)
        for box in boxes.values():
            inside_box |= box.contains(teff, logg, logz)
        if self.nodes is None or not inside_box.any():
            return inside_box
        if self._coverage_tree is None:
            self._build_coverage_tree()
        tree, spacing, lib_of_node = self._coverage_tree
        pts = self._node_coords(teff, logg, logz)
        k = min(16, spacing.size)
        dist, idx = tree.query(pts, k=k)
        dist, idx = dist.reshape(len(pts), k), idx.reshape(len(pts), k)
        near = np.zeros(teff.size, bool)
        for j, name in enumerate(self.library_names):
            in_box = boxes[name].contains(teff, logg, logz)
            ok = (dist <= COVERAGE_FACTOR * spacing[idx]) & (lib_of_node[idx] == j)
            near |= in_box & ok.any(1)
        return inside_box & near

    @staticmethod
    def _node_coords(teff, logg, logz):
        return np.stack([np.log10(teff) / COVERAGE_SPACING[0], np.asarray(logg) / COVERAGE_SPACING[1],
                         np.asarray(logz) / COVERAGE_SPACING[2]], 1)

    def _build_coverage_tree(self):
        from scipy.spatial import cKDTree
        nodes = self.nodes
        pts = self._node_coords(nodes["teff"], nodes["logg"], nodes["logz"])
        lib = nodes["library_id"].astype(int)
        spacing = np.zeros(len(pts))
        for j in np.unique(lib):
            sel = np.flatnonzero(lib == j)
            if sel.size < 2:
                spacing[sel] = 1.0
                continue
            d, _ = cKDTree(pts[sel]).query(pts[sel], k=2)
            spacing[sel] = np.maximum(d[:, 1], 1.0)   # at least one nominal step
        self._coverage_tree = (cKDTree(pts), spacing, lib)

    # ---- forward --------------------------------------------------------------------------------
    def scale_inputs(self, teff, logg, logz):
        """Min-max scale (log10 Teff, log g, [M/H]) with the training box; no clipping (flags say where)."""
        p = np.stack([np.log10(teff), logg, logz], 1)
        return (p - self._in_lo) / (self._in_hi - self._in_lo)

    @torch.no_grad()
    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        model, dtype = self._model_for(dtype)
        scaled = self.scale_inputs(teff, logg, logz)
        if self.arch == "mlp":
            # Outside the training box the network's departure from a blackbody is held at its value on the
            # box edge, while the blackbody itself follows the true Teff: a free MLP extrapolation was
            # measured 30x too bright at 220 kK. Such points are always flagged (CoverageWarning / inside).
            scaled = np.clip(scaled, 0.0, 1.0)
        x = self._tensor(scaled, dtype)
        norm = SIGMA_SB * np.asarray(teff, float) ** 4
        if self.arch == "mlp":
            # Blend the libraries' *outputs* (geometric mean of their spectra), never their one-hot inputs:
            # the network only ever saw one-hot vectors, and a fractional one is off its manifold (the Sun with
            # CK04+NextGen+BaSeL at 1/3 each came out 8 % faint). One pass per library present in the batch.
            mix = self.mixture(teff, logg, logz, self._active_library)
            acc = torch.zeros((len(teff), self.wavelength.size), dtype=torch.float32, device=x.device)
            for j in np.flatnonzero(mix.max(0) > 0):
                rows = np.flatnonzero(mix[:, j] > 0)
                onehot = np.zeros((rows.size, mix.shape[1]))
                onehot[:, j] = 1.0
                rows_t = torch.as_tensor(rows, device=x.device)
                lr = model.log_ratio(x[rows_t], self._tensor(onehot, dtype)).float()
                acc.index_add_(0, rows_t, lr * self._tensor(mix[rows, j, None], torch.float32))
            log_ratio = acc.cpu().numpy().astype(np.float64)
            if self.config.get("reference", "none") == "blackbody":
                log_ratio += blackbody_log_ratio(self.wavelength, teff)
            ratio = 10.0 ** log_ratio
        else:
            y = model(x).float().cpu().numpy().astype(np.float64)
            ratio = log1p01_inverse(y, self.log1p01["tau"], self.log1p01["x_max"])
        if self.renormalise:
            # ratio = F / (sigma T^4) [A^-1] must integrate to 1 over wavelength
            ratio /= np.trapezoid(ratio, self.wavelength, axis=1)[:, None]
        return ratio * norm[:, None]


class ReleasedSMNetGenerator(_TorchGenerator):
    """A released SM-Net checkpoint (``lookup_model_*.pt`` + ``*.meta.npz``).

    Inputs (Teff [K, linear], log g, log Z) are min-max scaled with the meta box and clipped to [0, 1], as the
    release does; points outside the box are flagged (CoverageWarning, or ValueError with ``strict=True``).
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
        need = ["wave", "tau", "x_max", "Teff_min", "Teff_max", "logG_min", "logG_max", "logZ_min", "logZ_max"]
        missing = [k for k in need if k not in md]
        if missing:
            raise ValueError(f"meta file {meta} lacks keys {missing}; a released meta.npz has {need}")
        sd = _torch_load(weights)
        try:
            model = load_smnet_state_dict(sd)
        except ValueError as exc:
            raise ValueError(f"{weights}: {exc}") from exc
        L = md["wave"].size
        if model.L != L:
            raise ValueError(f"weights {weights.name} have L = {model.L} output pixels but meta {meta.name} has "
                             f"{L} wavelengths; use the meta.npz released with this checkpoint")
        self.wavelength = md["wave"].astype(float)
        self.tau, self.x_max = float(md["tau"]), float(md["x_max"])
        self._lo = np.array([md["Teff_min"], md["logG_min"], md["logZ_min"]], float)
        self._hi = np.array([md["Teff_max"], md["logG_max"], md["logZ_max"]], float)
        self.box = ParameterBox((self._lo[0], self._hi[0]), (self._lo[1], self._hi[1]), (self._lo[2], self._hi[2]))
        self.library_boxes = {}
        self.name = weights.stem
        self.B, self.L = model.B, model.L
        self._setup_torch(model, device, dtype)
        self.meta = {"flux_normalisation": (
            f"released SM-Net output rescaled per spectrum: integral over {self.wavelength[0]:g}-"
            f"{self.wavelength[-1]:g} A = sigma*Teff^4" + (" x blackbody fraction in that range"
                                                          if normalisation == "blackbody" else
                                                          " (flux outside that range is ignored)")),
            "weights": str(weights), "meta_file": str(meta),
            "citation": "Anwar, Robotham, Cortese & Vinsen 2026, arXiv:2603.23899; Zenodo 10.5281/zenodo.18883385"}

    def scale_inputs(self, teff, logg, logz):
        """The release's scaling: min-max with the meta box (Teff linear), clipped to [0, 1]."""
        p = np.stack([teff, logg, logz], 1)
        return np.clip((p - self._lo) / (self._hi - self._lo), 0.0, 1.0)

    @torch.no_grad()
    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        model, dtype = self._model_for(dtype)
        y = model(self._tensor(self.scale_inputs(teff, logg, logz), dtype)).float().cpu().numpy()
        x = log1p01_inverse(y.astype(np.float64), self.tau, self.x_max)
        integral = np.trapezoid(x, self.wavelength, axis=1)
        target = SIGMA_SB * np.asarray(teff, float) ** 4
        if self.normalisation == "blackbody":
            from .generator import planck_surface_flux
            wl = np.geomspace(10.0, 1e7, 4000)
            bb = planck_surface_flux(wl, teff)
            inside = (wl >= self.wavelength[0]) & (wl <= self.wavelength[-1])
            target = target * np.trapezoid(bb[:, inside], wl[inside], axis=1) / np.trapezoid(bb, wl, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(integral > 0, target / integral, np.nan)
        return x * scale[:, None]


def load_generator(path=None, meta=None, device="auto", library=None, dtype=None, **kwargs):
    """Load a generator.

    Parameters
    ----------
    path : None, a shipped model's name, model directory, or released ``.pt`` file
        None or ``"default"`` -> the shipped default model (:func:`default_model_path`); ``"semi-empirical"`` ->
        the default model calibrated on observed stars (:class:`smnet_sps.semi_empirical.SemiEmpiricalGenerator`).
    meta : path, the released ``.meta.npz`` (required with a ``.pt`` file)
    device : ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    library : default library to imitate for our models (None = smooth mixture)
    dtype : compute dtype, ``float32`` (default) or ``bfloat16`` / ``float16``
    **kwargs : passed to :class:`NeuralGenerator` (``renormalise``) or :class:`ReleasedSMNetGenerator`
        (``normalisation``)

    Returns
    -------
    Generator
    """
    if isinstance(path, str) and path == "semi-empirical":     # shipped models by name: "default", "semi-empirical"
        from .semi_empirical import SemiEmpiricalGenerator
        if library is not None or meta is not None or set(kwargs) - {"renormalise"}:
            raise ValueError("the semi-empirical model takes only device=, dtype= and renormalise=")
        return SemiEmpiricalGenerator(device=device, dtype=dtype, **kwargs)
    if path is None or (isinstance(path, str) and path == "default"):
        path = default_model_path()
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"the default model is not installed at {path}")
    path = Path(path)
    if path.is_dir():
        if meta is not None:
            warnings.warn("meta= is only used with a released .pt checkpoint; ignored for a model directory")
        return NeuralGenerator(path, device=device, dtype=dtype, library=library, **kwargs)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: give a model directory written by `smnet-sps train` or a "
                                "released .pt checkpoint with meta=")
    if meta is None:
        raise ValueError(f"{path} is a file: a released SM-Net checkpoint needs its meta file "
                         "(meta='....meta.npz'), or give a model directory")
    if library is not None:
        raise ValueError("library= applies to models trained by smnet-sps; a released checkpoint has no "
                         "library conditioning (use library=None)")
    return ReleasedSMNetGenerator(path, meta, device=device, dtype=dtype, **kwargs)
