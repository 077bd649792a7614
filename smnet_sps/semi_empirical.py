"""The semi-empirical generator: a theoretical base model times a correction learned from observed stars.

F_semi(lambda; p) = s(p) * F_base(lambda; p) * exp(w(p) * c(lambda; p))

* ``F_base`` is a theoretical generator (the shipped default model unless told otherwise).
* ``c`` is a small network's output on the base model's optical pixels (3560-7400 A, vacuum), trained on
  MILES stars (:mod:`smnet_sps.calibrate`). It carries no low-order shape: it is orthogonal to a cubic in
  1/lambda (so the theoretical continuum, colours and bolometric correction stay those of the base model,
  and the observed stars' untrusted flux calibration and reddening are never learned), and it is tapered
  smoothly to zero over 140 A at each end of the MILES range (no step at 3540 or 7410 A).
* ``w(p)`` in [0, 1] (:meth:`SemiEmpiricalGenerator.empirical_weight`) measures how well observed stars
  constrain the point: a smooth function of the kernel density of the calibration stars in scaled
  (log Teff, log g, [M/H]). It is ~1 among the stars and falls smoothly to 0 (below 1e-9) a few kernel widths
  away, so the spectrum is continuous across the edge of the observed parameter space and equals the base
  model far from it.
* ``s(p)`` rescales each spectrum so that its integral equals the base model's (sigma Teff^4 to the base
  model's accuracy; exactly when the base model is built with ``renormalise=True``).

Outside 3560-7400 A and far from the observed stars the spectrum is the base model's. Resolution: the base
grid's (~20 A per pixel in the optical); the correction was learned from MILES binned flux-conservingly onto
those pixels (after air -> vacuum).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checksums import check_recorded_sha256, file_sha256
from .constants import PACKAGE_DATA
from .generator import Generator, _torch_parameters, own_wavelength, validate_parameters

__all__ = ["SemiEmpiricalGenerator", "CorrectionNet", "semi_empirical_model_path", "file_sha256",
           "base_fingerprint",
           "wavelength_taper", "low_order_basis", "kernel_density", "density_to_weight", "FORMAT"]

FORMAT = "smnet-sps semi-empirical correction"
NAME = "semi-empirical"


def semi_empirical_model_path():
    """Directory of the shipped correction (``smnet_sps/data/semi_empirical_model``)."""
    return PACKAGE_DATA / "semi_empirical_model"


def correction_name(directory):
    """The generator name of the correction in ``directory``: ``"semi-empirical"`` for the shipped one,
    ``"semi-empirical:<absolute directory>"`` for any other. Every correction was "semi-empirical", so an SSP
    file (GENERATR, .h5/.npz attributes) from a user's correction read as the shipped one's (fluxes up to
    5.8 % apart)."""
    directory = Path(directory).resolve()
    return NAME if directory == semi_empirical_model_path().resolve() else f"{NAME}:{directory}"


# ---- pure functions shared with the calibration ---------------------------------------------------------
def wavelength_taper(wavelength, lo, hi, width):
    """Smooth window [0, 1]: 0 outside [lo, hi], sin^2 ramps of ``width`` [A] inside each end, 1 between.

    Continuous with a continuous first derivative, so a correction multiplied by it has no step at lo / hi.
    """
    w = np.asarray(wavelength, float)
    a = np.clip((w - lo) / width, 0.0, 1.0)
    b = np.clip((hi - w) / width, 0.0, 1.0)
    return np.sin(0.5 * np.pi * a) ** 2 * np.sin(0.5 * np.pi * b) ** 2


def low_order_basis(wavelength, order):
    """Legendre polynomials P_0..P_order of 1/lambda mapped to [-1, 1] over ``wavelength``: (n_pix, order+1).

    A polynomial in 1/lambda describes flux-calibration errors and interstellar reddening (A_lambda ~
    lambda^-1.3..-1.7) to < 0.05 % at this order, so this is the shape the correction must not carry.
    """
    inv = 1.0 / np.asarray(wavelength, float)
    x = 2.0 * (inv - inv.min()) / (inv.max() - inv.min()) - 1.0
    return np.polynomial.legendre.legvander(x, order)


def kernel_density(points, stars, scales, chunk=4096):
    """Sum over calibration stars of exp(-d^2 / 2), d = distance in units of ``scales``.

    points : (n, 3) (log10 Teff, log g, [M/H]); stars : (m, 3) the same for the calibration stars;
    scales : (3,) kernel widths [dex, dex, dex]. Returns (n,) float64 (an effective number of stars).
    NumPy arrays in and out; torch tensors in, a tensor out that carries gradients in ``points``.
    """
    if isinstance(points, torch.Tensor):
        return _kernel_density(points, stars, scales, chunk)
    with torch.no_grad():
        return _kernel_density(torch.as_tensor(np.asarray(points, float)), stars, scales, chunk).numpy()


def _kernel_density(points, stars, scales, chunk=4096):
    scales = torch.as_tensor(np.asarray(scales, float), device=points.device)
    p = points.double() / scales
    s = torch.as_tensor(np.asarray(stars, float), device=points.device) / scales
    s2 = (s ** 2).sum(1)
    # |q - s|^2 expanded: one matrix product per chunk instead of an (n, m, 3) difference array
    parts = [torch.exp(-0.5 * torch.clamp((q ** 2).sum(1)[:, None] + s2[None, :] - 2.0 * q @ s.T, min=0.0))
             .sum(1) for q in torch.split(p, chunk)]
    return torch.cat(parts) if parts else p.new_zeros(0)


def density_to_weight(n_eff, n_half):
    """Empirical weight 1 - exp(-(n_eff / n_half)^2): ~0.63 at n_eff = n_half, -> 1 among many stars, ~0 far
    away.

    Smooth in n_eff, hence in the parameters. NumPy or torch in, the same out.
    """
    if isinstance(n_eff, torch.Tensor):
        return -torch.expm1(-(n_eff / n_half) ** 2)
    return -np.expm1(-(np.asarray(n_eff, float) / n_half) ** 2)


def _apply_correction(flux, c, wavelength, start, stop):
    """flux (n, n_wave) x exp(c) on pixels start:stop, rescaled so each row keeps its integral (torch).

    c (n, stop - start) is the weighted correction in natural log; the pixel on each side (c = 0) closes
    the trapezoid.
    """
    lo, hi = start - 1, stop + 1
    pad = torch.nn.functional.pad(c, (1, 1))
    added = torch.trapezoid(flux[:, lo:hi] * torch.expm1(pad), wavelength[lo:hi], dim=1)
    total = torch.trapezoid(flux, wavelength, dim=1)
    ones = torch.ones_like(flux)
    factor = torch.cat([ones[:, :lo], torch.exp(pad), ones[:, hi:]], dim=1)
    return flux * factor * (total / (total + added))[:, None]


class CorrectionNet(nn.Module):
    """MLP (scaled log Teff, log g, [M/H]) -> u (n_pix); correction c = taper * (u - Q Q^T u).

    Each input is scaled to [0, 1] over the calibration stars' range (``in_lo``, ``in_hi``) and clamped; an
    input with no range (all stars share one value) is a constant 0.

    Q is an orthonormal basis of taper x (low-order polynomials in 1/lambda), so c is exactly orthogonal to
    those polynomials and vanishes where the taper does.
    """

    def __init__(self, n_pix, width=64, depth=2, taper=None, basis=None, in_lo=None, in_hi=None):
        super().__init__()
        layers, n_in = [], 3
        for _ in range(depth):
            layers += [nn.Linear(n_in, width), nn.SiLU()]
            n_in = width
        layers.append(nn.Linear(n_in, n_pix))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():          # start from "no correction"
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()
        taper = torch.ones(n_pix) if taper is None else torch.as_tensor(taper, dtype=torch.float32)
        if basis is None:
            basis = torch.zeros(n_pix, 0)
        q, _ = torch.linalg.qr(torch.as_tensor(basis, dtype=torch.float64) * taper.double()[:, None])
        self.register_buffer("taper", taper.float())
        self.register_buffer("q", q.float())
        self.register_buffer("in_lo", torch.as_tensor(np.zeros(3) if in_lo is None else in_lo,
                                                      dtype=torch.float32))
        self.register_buffer("in_hi", torch.as_tensor(np.ones(3) if in_hi is None else in_hi,
                                                      dtype=torch.float32))

    def forward(self, params, shaped=True):
        """params: (n, 3) (log10 Teff, log g, [M/H]) -> c (n, n_pix), natural log of the flux factor.

        ``shaped=False`` returns the raw u, used in training: the loss removes each star's low-order shape
        itself, and fitting u without the taper keeps u at the data's amplitude in the taper zones (a tapered
        fit would inflate u there to undo the taper, i.e. no taper at all).
        """
        span = self.in_hi - self.in_lo
        varies = span > 0
        # an input every calibration star shares (e.g. all at [M/H] 0) carries no information: it is held at
        # 0 (0/0 gave NaN spectra at exactly the shared value, and the correction learned nothing of it)
        x = torch.where(varies, (params - self.in_lo) / torch.where(varies, span, torch.ones_like(span)), 0.0)
        u = self.net(x.clamp(0.0, 1.0))
        if not shaped:
            return u
        u = u - (u @ self.q) @ self.q.T
        return u * self.taper


# ---- the generator -------------------------------------------------------------------------------------
class SemiEmpiricalGenerator(Generator):
    """A base generator times a correction calibrated on observed stars (see the module docstring).

    Parameters
    ----------
    directory : path or None
        Correction directory written by ``smnet-sps calibrate`` (``config.json``, ``correction_<k>.pt``,
        ``stars.npz``);
        None -> the shipped one (:func:`semi_empirical_model_path`).
    base : Generator or None
        The theoretical base model; None -> the model named in ``config.json`` (the shipped default). It must
        be the model the correction was calibrated on (sha256 of its weights and mixture files, and its
        spectra at 8 probe points, checked in its own dtype, not for bfloat16 / float16: ValueError
        otherwise), loaded without ``library=`` (the default mixture), unless ``check_base=False``.
    device, dtype : as :func:`smnet_sps.neural.load_generator` (for the base model; the correction runs
        on CPU).
    renormalise : bool, passed to the base model when it is loaded here: True makes every base spectrum,
        and so every semi-empirical one, integrate to sigma Teff^4 exactly (see
        :class:`~smnet_sps.neural.NeuralGenerator`).
    fill_tail : bool, passed to the base model when it is loaded here (default True: the untrained Wien
        tail filled from the training nodes; the correction only acts at 3,540-7,410 A).
    """

    def __init__(self, directory=None, base=None, device="auto", dtype=None, check_base=True,
                 renormalise=False, fill_tail=True):
        directory = Path(semi_empirical_model_path() if directory is None else directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{directory} is not a semi-empirical correction directory: no "
                                    "config.json (write one with `smnet-sps calibrate`)")
        cfg = _read_config(cfg_path)
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: format is {cfg.get('format')!r}, expected {FORMAT!r}")
        _check_config(cfg, cfg_path)
        self.config, self.directory = cfg, directory
        if base is None:
            from .neural import load_generator
            base_path = _recorded_base_directory(cfg, directory)
            if check_base:
                _check_base_sha(cfg, base_path, directory)
            base = load_generator(base_path, device=device, dtype=dtype, renormalise=renormalise,
                                  fill_tail=fill_tail)
        elif check_base:
            base_dir = getattr(base, "directory", None)
            if base_dir is None:
                raise ValueError("base= must be a NeuralGenerator with a model directory (to check its "
                                 "weights against the calibration), or pass check_base=False")
            _check_base_sha(cfg, Path(base_dir), directory)
            _check_base_mixture(base)
        self.base = base
        self.name = correction_name(directory)
        self.device = getattr(base, "device", "cpu")   # the base model's: the correction runs there
        self.wavelength = own_wavelength(base.wavelength)
        self.box = base.box
        self.library_boxes = base.library_boxes
        pix = cfg["pixels"]
        self._i0, self._i1 = int(pix["start"]), int(pix["stop"])
        if not 1 <= self._i0 < self._i1 < self.wavelength.size:
            raise ValueError(f"{directory}: correction pixels {self._i0}:{self._i1} must lie strictly inside "
                             f"the base model's {self.wavelength.size} pixels")
        wl = self.wavelength[self._i0:self._i1]
        if wl.size != pix["n"] or not np.allclose(wl, np.asarray(pix["wavelength"], float)):
            raise ValueError(f"{directory}: the correction's pixels do not match the base model's wavelength "
                             "grid")
        dens = cfg["density"]
        _check_sha(directory / dens["stars_file"], dens.get("stars_sha256"), "stars_sha256")
        stars = _load_stars(directory / dens["stars_file"], self._i1 - self._i0)
        self._stars = np.stack([stars["log_teff"], stars["logg"], stars["logz"]], 1).astype(float)
        self._scales = np.asarray(dens["scales"], float)
        self._n_half = float(dens["n_half"])
        self._w_floor = float(dens.get("weight_floor", 1e-9))
        self._net = _load_net(directory, cfg)
        if check_base and "probe_params" in stars:
            # the base's own precision, however it was loaded (a supplied bfloat16 base is reduced precision
            # too: checked as float32 it differed by 0.018 and read as a changed model)
            _check_base_probe(base, self._i0, self._i1, stars["probe_params"], stars["probe_ln_flux"],
                              getattr(base, "dtype", dtype),
                              _recalibrate_hint(cfg, directory, getattr(base, "directory", None)))
        taper = cfg["taper"]
        self.meta = {"flux_normalisation": ("base model x exp(empirical weight x correction), rescaled so "
                                            "that the integral equals the base model's; base: "
                                            + str(base.meta.get("flux_normalisation", ""))),
                     "model": self.name, "base_model": _base_label(cfg, getattr(base, "directory", None)),
                     "empirical_range_aa": f"{taper['lo']:g}-{taper['hi']:g} (vacuum)",
                     "empirical_set": cfg.get("empirical_set", ""),
                     "citation": cfg.get("citation", "")}

    # coverage flags are the base model's: the correction never extends where the theory is absent
    def in_coverage(self, teff, logg, logz, library=None):
        """As the base model's :meth:`Generator.in_coverage` (no library conditioning: ``library`` None)."""
        self._check_library(library)
        return self.base.in_coverage(teff, logg, logz)

    def _coverage_boxes(self):
        return self.base._coverage_boxes()

    def target_fraction(self, teff):
        """The base model's (the correction only reshapes 3,540-7,410 A)."""
        return self.base.target_fraction(teff)

    def calibration_stars(self, teff, logg, logz):
        """(n,) bool: which of these stars (Teff [K], log g [cgs], [M/H] [dex]) are calibration stars of
        this correction, i.e. have their parameters within float32 rounding (1e-4 dex in log Teff, 1e-3 in
        log g and [M/H]) of a star in ``stars.npz``. A score on such stars is in-sample, not a result."""
        points = np.stack([np.log10(np.asarray(teff, float)), np.asarray(logg, float),
                           np.asarray(logz, float)], 1)
        close = np.abs(points[:, None, :] - self._stars[None, :, :]) <= np.array([1e-4, 1e-3, 1e-3])
        return close.all(-1).any(-1)

    def empirical_weight(self, teff, logg, logz):
        """How strongly observed stars set the spectrum at each point, in [0, 1] (0: purely theoretical).

        1 - exp(-(n_eff / n_half)^2), with n_eff the Gaussian-kernel density of calibration stars in scaled
        (log10 Teff, log g, [M/H]) (kernel widths in ``config.json["density"]["scales"]``); values below
        1e-9 are returned as 0.
        """
        teff, logg, logz = validate_parameters(teff, logg, logz)
        with torch.no_grad():
            return self._weight(torch.as_tensor(np.stack([np.log10(teff), logg, logz], 1))).numpy()

    def _weight(self, points):
        """:meth:`empirical_weight` of (n, 3) (log10 Teff, log g, [M/H]) as a float64 tensor (with
        gradients)."""
        w = density_to_weight(_kernel_density(points, self._stars, self._scales), self._n_half)
        return torch.where(w < self._w_floor, torch.zeros_like(w), w)

    def _correction_rows(self, p):
        """The ensemble's correction c for (n, 3) float32 inputs (log10 Teff, log g, [M/H]), as the base
        model's network passes run: in fixed chunks of :data:`~smnet_sps.neural.FORWARD_CHUNK` rows, padded
        to a multiple of 16 (:func:`~smnet_sps.neural._padded_net`), so that a point's spectrum does not
        depend on the other points of its batch (oneDNN picks its float32 kernel by shape: a star alone
        differed from the same star in a batch of 20 by 6e-8 in c, 1.2e-7 in flux). Carries gradients."""
        from .neural import FORWARD_CHUNK, _padded_net
        return torch.cat([_padded_net(self._net, p[i:i + FORWARD_CHUNK])
                          for i in range(0, max(len(p), 1), FORWARD_CHUNK)])

    @torch.no_grad()
    def _weighted_correction(self, teff, logg, logz):
        """(rows with a non-zero weight, w * c on the correction's pixels (n_rows, n_pix)) for validated
        inputs."""
        w = self.empirical_weight(teff, logg, logz)
        rows = np.flatnonzero(w > 0)
        if not rows.size:
            return rows, np.zeros((0, self._i1 - self._i0))
        p = torch.as_tensor(np.stack([np.log10(teff[rows]), logg[rows], logz[rows]], 1), dtype=torch.float32)
        return rows, self._correction_rows(p).double().numpy() * w[rows, None]

    def correction(self, teff, logg, logz):
        """ln(F_semi / (s F_base)) = w * c on the model's wavelength grid: (n, n_wave) float64 (0 where
        unset)."""
        teff, logg, logz = validate_parameters(teff, logg, logz)
        out = np.zeros((teff.size, self.wavelength.size))
        rows, c = self._weighted_correction(teff, logg, logz)
        out[rows, self._i0:self._i1] = c
        return out

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        flux = self.base._surface_flux_batch(teff, logg, logz, dtype=dtype)
        rows, c = self._weighted_correction(teff, logg, logz)
        if rows.size:       # only rows near observed stars change
            with torch.no_grad():
                f = torch.as_tensor(flux[rows], dtype=torch.float64)   # integrals in float64 always
                flux[rows] = _apply_correction(f, torch.as_tensor(c), torch.tensor(self.wavelength),
                                               self._i0, self._i1).numpy()
        return flux

    def _batch(self, teff, logg, logz, *, dtype=None, library=None, as_tensor=False):
        flux = self._surface_flux_batch(teff, logg, logz, dtype=dtype)
        if not as_tensor:
            return flux
        # on the base model's device in its compute dtype, as every generator's tensors (it came back float32
        # on the host for a float64 model)
        return torch.as_tensor(flux, dtype=self._tensor_dtype(dtype), device=self.device)

    def _tensor_dtype(self, dtype=None):
        return self.base._tensor_dtype(dtype)

    def torch_surface_flux(self, teff, logg, logz, library=None):
        """F_lambda as a torch tensor (n, n_wave), differentiable in the parameters (for fitting).

        The same spectrum as :meth:`surface_flux` (the same weight and correction functions, here on every
        row): the base model's :meth:`~smnet_sps.neural.NeuralGenerator.torch_surface_flux`, the correction
        network and the kernel-density weight all carry gradients. The correction runs on CPU in float32;
        the result is on the base model's device in its dtype. ``library`` is passed to the base model.
        """
        tensors = _torch_parameters(teff, logg, logz)
        flux = self.base.torch_surface_flux(*tensors, library=library)
        t, g, z = (v.reshape(-1) for v in torch.broadcast_tensors(*[v.double() for v in tensors]))
        p = torch.stack([torch.log10(t), g, z], 1).cpu()
        c = self._correction_rows(p.float()).double() * self._weight(p)[:, None]
        wl = torch.tensor(self.wavelength, dtype=flux.dtype, device=flux.device)   # copy of a read-only grid
        return _apply_correction(flux, c.to(flux.device, flux.dtype), wl, self._i0, self._i1)

    def spectra(self, teff, logg, logz, **kwargs):
        """As :meth:`Generator.spectra`; ``meta["empirical_weight"]`` holds :meth:`empirical_weight` per
        point."""
        spec, inside = super().spectra(teff, logg, logz, **kwargs)
        spec.meta["empirical_weight"] = self.empirical_weight(teff, logg, logz)
        return spec, inside


def _base_directory(name):
    """The model directory of a base model given by the user: ``"default"`` (the shipped one) or the path of a
    model directory (written by ``smnet-sps train`` or ``experts``)."""
    from .neural import MODEL_FORMAT, _config_format, default_model_path
    if name == "default":
        return default_model_path()
    path = Path(name)
    fmt = _config_format(path)
    if fmt == MODEL_FORMAT:
        return path.resolve()
    what = ("is a semi-empirical correction, not a model: give the model it corrects (its config.json "
            "'base')" if fmt == FORMAT else
            "is not a model directory (no config.json of format " + repr(MODEL_FORMAT) + ")")
    raise ValueError(f"base model {name!r} {what}; give 'default' (the shipped model) or a model directory "
                     "written by `smnet-sps train` or `smnet-sps experts`")


def is_shipped_model(directory):
    """True for the shipped default model's directory, however it is spelled."""
    from .neural import default_model_path
    return Path(directory).resolve() == Path(default_model_path()).resolve()


def base_record(base_dir, correction_dir):
    """How a correction in ``correction_dir`` names its base model: ``"default"`` for the shipped model, else
    the model's absolute path and its path relative to the correction (a project folder holding both can
    move, or go to another machine, and still load)."""
    import os

    base_dir = Path(base_dir).resolve()
    if is_shipped_model(base_dir):
        return {"name": "default"}
    return {"name": str(base_dir), "relative_path": os.path.relpath(base_dir, Path(correction_dir).resolve())}


def _recorded_base_directory(cfg, correction_dir):
    """The base model directory a correction's config records: the shipped model, the model at its recorded
    path relative to the correction, or at its absolute path; a ValueError saying what to do otherwise."""
    from .neural import MODEL_FORMAT, _config_format, default_model_path
    rec = cfg["base"]
    if rec["name"] == "default":
        return default_model_path()
    candidates = ([Path(correction_dir) / rec["relative_path"]] if rec.get("relative_path") else [])
    candidates.append(Path(rec["name"]))
    for path in candidates:
        if _config_format(path) == MODEL_FORMAT:
            return path.resolve()
    raise ValueError(
        f"the semi-empirical correction in {correction_dir} was calibrated on the base model "
        f"{rec.get('model_name') or rec['name']!r} at {rec['name']}"
        + (f" ({rec['relative_path']} from the correction)" if rec.get("relative_path") else "")
        + ", and no model is there: put the model back, or load it and pass it: "
        f"SemiEmpiricalGenerator({str(correction_dir)!r}, base=load_generator(PATH)) (its weights are "
        "still checked against the calibration)")


def base_fingerprint(base_dir):
    """sha256 of what makes a base model's spectra: its weights file and its library-mixture file (if any)."""
    from .mixture import MIXTURE_FILE
    base_dir = Path(base_dir)
    cfg = json.loads((base_dir / "config.json").read_text())
    mix = base_dir / MIXTURE_FILE
    return {"weights_sha256": file_sha256(base_dir / cfg.get("weights_file", "weights.pt")),
            "mixture_sha256": file_sha256(mix) if mix.is_file() else "none"}


def _base_label(cfg, base_dir):
    """How messages and meta name the base model: "default", or the directory it was loaded from (after a
    move, not the path recorded at calibration)."""
    return "default" if cfg["base"]["name"] == "default" or base_dir is None else str(base_dir)


def _recalibrate_hint(cfg, directory, base_dir):
    """The command that fits this correction again on its base model as it is now."""
    return (f"Re-run `smnet-sps calibrate --empirical DIR --base {_base_label(cfg, base_dir)} --out "
            f"{directory} --overwrite` (docs/semi_empirical.md)")


def _check_base_sha(cfg, base_dir, directory):
    have = base_fingerprint(base_dir)
    for key, what in (("weights_sha256", "weights"), ("mixture_sha256", "library mixture (mixture.json)")):
        want = cfg["base"].get(key)
        if want is not None and have[key] != want:
            raise ValueError(
                f"the semi-empirical correction was calibrated on base model {cfg['base']['name']!r} with "
                f"{what} sha256 {want[:16]}..., but the installed base model in {base_dir} has "
                f"{have[key][:16]}...: the base model has changed. "
                f"{_recalibrate_hint(cfg, directory, base_dir)}, or pass check_base=False to apply the old "
                "correction anyway.")


def _check_base_mixture(base):
    """A supplied base must give the default library mixture the correction was calibrated on: one loaded
    with ``library=`` imitates one library instead (its files unchanged, it read as "the base model has
    changed")."""
    library = getattr(base, "default_library", None)
    if library is not None:
        raise ValueError(f"base= imitates the library {library!r} (loaded with library={library!r}); the "
                         "correction was calibrated on the base model's default library mixture: load the "
                         "base without library=")


PROBE_PARAMS = np.array([(5777.0, 4.44, 0.0), (4500.0, 2.0, 0.0), (3600.0, 4.7, 0.0), (9000.0, 4.0, 0.0),
                         (5000.0, 2.5, -1.5), (15000.0, 4.0, 0.0), (6500.0, 4.2, -0.5), (4000.0, 1.0, 0.3)])
PROBE_TOLERANCE = 2e-3          # max |change of ln F| (after removing the mean) at the probe points


def probe_ln_flux(base, start, stop, params=PROBE_PARAMS, dtype=None):
    """ln F_base on the correction's pixels at ``params`` (n, 3), mean removed per point: the base model's
    spectra as the correction saw them (a changed mixture or code changes them without changing any file)."""
    from .generator import _quiet_coverage
    p = np.asarray(params, float)
    with _quiet_coverage():
        f = base.surface_flux(p[:, 0], p[:, 1], p[:, 2], dtype=dtype)[0][:, start:stop]
    lf = np.log(f)
    return lf - lf.mean(1, keepdims=True)


def _check_base_probe(base, start, stop, params, ln_flux, dtype, hint):
    if dtype is not None and str(dtype).replace("torch.", "") not in ("float32", "float64"):
        return                               # reduced precision moves the spectra by more than the tolerance
    diff = np.abs(probe_ln_flux(base, start, stop, params) - ln_flux).max()
    if diff > PROBE_TOLERANCE:
        raise ValueError(
            "the base model's spectra differ from those the semi-empirical correction was calibrated on "
            f"(max |change of ln F| {diff:.3g} at the probe points > {PROBE_TOLERANCE:g}): the base model "
            f"has changed. {hint}, or pass check_base=False.")


def _read_config(cfg_path):
    """A correction's config.json as a dict; a ValueError naming the file where it is not a JSON object (an
    empty file was a JSONDecodeError, a JSON list an AttributeError)."""
    try:
        cfg = json.loads(Path(cfg_path).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc}); the config is corrupt (re-run smnet-sps "
                         "calibrate)") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: holds a JSON {type(cfg).__name__}, not an object of fields; the "
                         "config is corrupt (re-run smnet-sps calibrate)")
    return cfg


STAR_KEYS = ("log_teff", "logg", "logz")


def _load_stars(path, n_pix):
    """The calibration stars' file (``stars.npz``): log_teff, logg, logz, one finite value per star (>= 1
    star), and the probe spectra (n_probe, 3) / (n_probe, n_pix) where present. A ValueError naming the file
    and what is wrong: a missing key was a KeyError, ragged arrays a numpy error, a NaN coordinate a NaN
    weight that silently dropped the correction."""
    def fail(what):
        raise ValueError(f"{path}: {what}; the file is corrupt (re-run smnet-sps calibrate)")
    with np.load(path) as z:
        stars = {k: np.asarray(z[k]) for k in z.files}
    missing = [k for k in STAR_KEYS if k not in stars]
    if missing:
        fail(f"lacks {missing} (it needs {list(STAR_KEYS)})")
    shapes = {k: stars[k].shape for k in STAR_KEYS}
    if len(set(shapes.values())) != 1 or stars["logg"].ndim != 1 or stars["logg"].size == 0:
        fail(f"{', '.join(STAR_KEYS)} must be 1-d arrays of one length (one value per star, >= 1 star); got "
             f"shapes {shapes}")
    for k in STAR_KEYS:
        if not np.issubdtype(stars[k].dtype, np.number):
            fail(f"{k} must hold numbers; got dtype {stars[k].dtype}")
        bad = int(np.sum(~np.isfinite(stars[k])))
        if bad:
            fail(f"{k} must hold finite numbers; {bad} of {stars[k].size} are NaN or inf")
    if "probe_params" in stars:
        params, ln_flux = stars["probe_params"], stars.get("probe_ln_flux")
        if (params.ndim != 2 or params.shape[1] != 3 or ln_flux is None
                or ln_flux.shape != (params.shape[0], n_pix)):
            fail(f"probe_params must be (n, 3) and probe_ln_flux (n, {n_pix}); got {params.shape} and "
                 f"{None if ln_flux is None else ln_flux.shape}")
    return stars


def _check_config(cfg, cfg_path):
    """The fields a correction config needs, checked before any is used: a missing key was a KeyError, a
    shorter weights_sha256 list silently dropped ensemble members, n_half 0 put full empirical weight where
    no star is, zero density scales a NaN weight that dropped the correction."""
    def fail(what):
        raise ValueError(f"{cfg_path}: {what}; the config is corrupt (re-run smnet-sps calibrate)")
    try:
        name = cfg["base"]["name"]
        pix = cfg["pixels"]
        int(pix["start"]), int(pix["stop"]), int(pix["n"]), list(pix["wavelength"])
        dens, net = cfg["density"], cfg["network"]
        stars_file, n_half = dens["stars_file"], float(dens["n_half"])
        scales = np.asarray(dens["scales"], float)
        files, width, depth = list(net["weights_files"]), net["width"], net["depth"]
        order, taper = cfg["basis_order"], cfg["taper"]
        float(taper["lo"]), float(taper["hi"])
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"missing or malformed field ({type(exc).__name__}: {exc})")
    if not isinstance(name, str) or not isinstance(stars_file, str):
        fail("base.name and density.stars_file must be text")
    if scales.shape != (3,) or not np.all(np.isfinite(scales) & (scales > 0)):
        fail(f"density.scales must be three positive numbers; got {dens['scales']!r}")
    if not (np.isfinite(n_half) and n_half > 0):
        fail(f"density.n_half must be a positive number; got {dens['n_half']!r}")
    floor = dens.get("weight_floor", 1e-9)
    # a weight is in [0, 1]: a floor of 1 or more zeroed every weight, i.e. silently no correction at all
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor < 1:
        fail(f"density.weight_floor must be a number in [0, 1); got {floor!r}")
    n_pix, wavelength = int(pix["n"]), list(pix["wavelength"])
    if len(wavelength) != n_pix or int(pix["stop"]) - int(pix["start"]) != n_pix:
        fail(f"pixels.n ({n_pix}) must equal stop - start ({int(pix['stop']) - int(pix['start'])}) and the "
             f"length of pixels.wavelength ({len(wavelength)})")
    if not files:
        fail("network.weights_files is empty")
    shas = net.get("weights_sha256")
    if shas is not None and (not isinstance(shas, list) or len(shas) != len(files)):
        fail(f"network.weights_sha256 must give one sha256 per weights file ({len(files)}); got {shas!r}")
    for key, value, least in (("network.width", width, 1), ("network.depth", depth, 1),
                              ("basis_order", order, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            fail(f"{key} must be a whole number >= {least}; got {value!r}")


def _check_sha(path, expected, key):
    """Refuse a file its config.json does not describe (corrupt, or left by an interrupted calibration)."""
    if Path(path).is_file():           # a missing file is named where it is read
        check_recorded_sha256(path, expected, key, "correction file",
                              "the file is corrupt or from another calibration: re-run smnet-sps calibrate")


def _load_net(directory, cfg):
    from .neural import _check_finite_weights, _torch_load
    net_cfg = cfg["network"]
    n = int(cfg["pixels"]["n"])
    nets = []
    shas = net_cfg.get("weights_sha256") or [None] * len(net_cfg["weights_files"])
    for fname, sha in zip(net_cfg["weights_files"], shas):
        _check_sha(directory / fname, sha, "weights_sha256")
        from .model import caller_torch_state_kept
        with caller_torch_state_kept():          # random initial weights, replaced: the caller's RNG is kept
            net = CorrectionNet(n, width=net_cfg["width"], depth=net_cfg["depth"],
                                basis=np.ones((n, int(cfg["basis_order"]) + 1)))
        sd = _torch_load(directory / fname, crc=sha is None)
        _check_finite_weights(sd, directory / fname)
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise ValueError(f"{directory / fname} does not match config.json: {str(exc)[:300]}") from exc
        nets.append(net.eval())
    ensemble = _Ensemble(nets)
    # frozen once here: gradients flow to the inputs (torch_surface_flux), none are stored in the weights
    ensemble.requires_grad_(False)
    return ensemble


class _Ensemble(nn.Module):
    """Mean of the members' corrections."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, params):
        return torch.stack([n(params) for n in self.nets]).mean(0)
