"""A prior on stellar parameters from isochrones: where stars are in the Kiel diagram.

Spectroscopic surveys regularise fits of Teff, log g and [M/H] with the density of stars predicted by
stellar evolution (e.g. the Gaia DR3 GSP-Phot and the Bayesian isochrone priors of many survey pipelines):
a spectrum that allows both a subgiant of 5000 K and log g 3.8, where stars hardly ever are, and a red giant
or a dwarf, is pulled towards where stars live. :class:`IsochronePrior` is that density, built only from the
package's isochrone tables (:mod:`smnet_sps.isochrones`) and an IMF (:mod:`smnet_sps.imf`); no observed star
enters it.

Construction (per tabulated metallicity Z):

* every isochrone point of ages ``log_age_range`` weighted by the number of stars it represents: the IMF
  number in its initial-mass interval (:func:`smnet_sps.imf.imf_weights_many`) times the time its age bin
  spans (constant star formation), optionally times L^``luminosity_power`` (1.5: a magnitude-limited sample,
  whose volume grows as L^1.5);
* the weights are summed in cells of (log10 Teff, log g) and smoothed with a Gaussian kernel of widths
  ``bandwidth`` (dex log10 Teff, dex log g): the spread of real stars (ages, binaries, abundance mixtures)
  and of model errors around thin isochrones;
* normalised to unit integral over the Kiel diagram, raised to ``power`` (< 1 flattens the contrast between
  dwarfs and giants, keeping the emptiness of the gaps) and floored at ``floor`` x its maximum, so that a
  star where no isochrone goes is penalised by at most -ln(floor) but never excluded.

Between metallicities the density is a Gaussian-weighted mean over the tabulated Z (width ``logz_width``
dex), so the prior is smooth in all three parameters and differentiable in torch (:meth:`log_prob`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IsochronePrior"]


class IsochronePrior:
    """ln p(Teff, log g, [M/H]) from isochrones x IMF (see the module docstring).

    Parameters
    ----------
    family : ``"parsec"`` (default) or ``"padova"``, the shipped isochrone tables
    imf : IMF name or callable (:func:`smnet_sps.imf.get_imf`), default ``"kroupa"``
    log_age_range : (lo, hi), log10(age / yr) of the isochrones used (default 8.0-10.1: older than 100 Myr)
    luminosity_power : float, weight each point by L^power in addition (0: number of stars; 1.5: a
        magnitude-limited sample)
    bandwidth : (dex log10 Teff, dex log g), Gaussian kernel widths (default 0.01, 0.15)
    power : float in (0, 1], exponent of the density (default 0.5)
    floor : float in (0, 1), smallest density relative to the peak of each metallicity (default 1e-3)
    logz_width : float [dex], width of the Gaussian weights between tabulated metallicities (default 0.15)
    cell : (dex log10 Teff, dex log g), cell size of the summed weights (default 0.005, 0.05)

    Raises
    ------
    ValueError for an unknown family, an empty age range, or settings outside their ranges, not finite, or
    not pairs where a pair is asked for.
    """

    def __init__(
        self,
        family="parsec",
        imf="kroupa",
        log_age_range=(8.0, 10.1),
        luminosity_power=0.0,
        bandwidth=(0.01, 0.15),
        power=0.5,
        floor=1e-3,
        logz_width=0.15,
        cell=(0.005, 0.05),
    ):
        from .imf import imf_weights_many
        from .isochrones import load_isochrones

        if not 0 < power <= 1:
            raise ValueError(f"power must be in (0, 1]; got {power}")
        if not 0 < floor < 1:
            raise ValueError(f"floor must be in (0, 1); got {floor}")
        # NaN passed these checks as it compares False: logz_width or luminosity_power NaN made every
        # log_prob NaN, bandwidth (nan, 0.15) gave another prior (ln p 0.058 for 0.032 at the Sun); a scalar
        # bandwidth, a one-value age range or an infinite bandwidth stopped in Python or scipy (TypeError,
        # IndexError, OverflowError)
        bandwidth = _pair("bandwidth", bandwidth, "(dex log10 Teff, dex log g)", positive=True)
        cell = _pair("cell", cell, "(dex log10 Teff, dex log g)", positive=True)
        log_age_range = _pair("log_age_range", log_age_range, "(lo, hi) in log10(age / yr)")
        if not (np.isfinite(logz_width) and logz_width > 0):
            raise ValueError(f"logz_width must be a finite number > 0 [dex]; got {logz_width}")
        if not np.isfinite(luminosity_power):
            raise ValueError(f"luminosity_power must be a finite number; got {luminosity_power}")
        iso = load_isochrones(family)
        in_range = (iso.log_age >= log_age_range[0] - 1e-9) & (iso.log_age <= log_age_range[1] + 1e-9)
        sel_age = np.flatnonzero(in_range)
        if sel_age.size == 0:
            raise ValueError(
                f"log_age_range {log_age_range} holds no {family} isochrone (ages "
                f"{iso.log_age[0]:.2f}-{iso.log_age[-1]:.2f})"
            )
        # time spanned by each age bin (constant star formation), from the mid-points in log age
        la = iso.log_age
        edges = np.concatenate([[la[0] - 0.5 * (la[1] - la[0])], 0.5 * (la[1:] + la[:-1]),
                                [la[-1] + 0.5 * (la[-1] - la[-2])]])
        dt = 10 ** edges[1:] - 10 ** edges[:-1]
        self.family, self.settings = iso.name, {
            "family": iso.name, "imf": imf if isinstance(imf, str) else getattr(imf, "name", "custom"),
            "log_age_range": tuple(map(float, log_age_range)), "luminosity_power": float(luminosity_power),
            "bandwidth": tuple(map(float, bandwidth)), "power": float(power), "floor": float(floor),
            "logz_width": float(logz_width), "cell": tuple(map(float, cell)),
        }
        c = iso.columns
        lt_lo, lt_hi = 3.3, 4.8            # 2000-63,000 K: where the isochrones matter for spectra
        lg_lo, lg_hi = -1.0, 6.0
        nt = int(round((lt_hi - lt_lo) / cell[0])) + 1
        ng = int(round((lg_hi - lg_lo) / cell[1])) + 1
        self._t_axis = lt_lo + cell[0] * np.arange(nt)
        self._g_axis = lg_lo + cell[1] * np.arange(ng)
        dens = np.zeros((iso.Z.size, nt, ng))
        for iz in range(iso.Z.size):
            counts = iso.count[iz, sel_age]
            keep = counts > 0
            if not keep.any():
                continue
            rows = np.concatenate([np.arange(iso.start[iz, a], iso.start[iz, a] + iso.count[iz, a])
                                   for a in sel_age[keep]])
            w = imf_weights_many(c["mini"][rows], counts[keep], imf)
            w = w * np.repeat(dt[sel_age[keep]], counts[keep])
            if luminosity_power:
                w = w * 10 ** (luminosity_power * c["logl"][rows])
            it = np.clip(np.round((c["logt"][rows] - lt_lo) / cell[0]).astype(int), 0, nt - 1)
            ig = np.clip(np.round((c["logg"][rows] - lg_lo) / cell[1]).astype(int), 0, ng - 1)
            np.add.at(dens[iz], (it, ig), w)
            dens[iz] = _gaussian_smooth(dens[iz], bandwidth[0] / cell[0], bandwidth[1] / cell[1])
            dens[iz] /= dens[iz].sum() * cell[0] * cell[1]
        dens = dens ** power
        peak = dens.max(axis=(1, 2), keepdims=True)
        dens = np.maximum(dens, floor * np.where(peak > 0, peak, 1.0))
        self.logz = np.asarray(iso.logz, float)
        self._logz_width = float(logz_width)
        self._density = dens              # (n_z, n_teff, n_logg), floored, not normalised after the power
        self._dens_t = torch.as_tensor(dens, dtype=torch.float64)
        self._cell = tuple(map(float, cell))
        self._lo = (lt_lo, lg_lo)

    def __repr__(self):
        s = self.settings
        return (f"IsochronePrior({s['family']}, {s['imf']}, log age {s['log_age_range'][0]:g}-"
                f"{s['log_age_range'][1]:g}, L^{s['luminosity_power']:g}, bandwidth {s['bandwidth']}, "
                f"power {s['power']:g}, floor {s['floor']:g})")

    def log_prob(self, teff, logg, logz):
        """ln p (up to a constant) at (Teff [K], log g [cgs dex], [M/H] [dex]); differentiable in torch.

        Accepts torch tensors (returns a float64 tensor on the same device) or arrays (returns an ndarray);
        where any argument is a tensor the others (numbers, arrays: e.g. a fixed [M/H]) join it on its device
        and a tensor comes back, carrying the gradients. A NaN input (or Teff <= 0) gives NaN there, as
        numpy's functions do, and leaves the other points and their gradients alone (it was an IndexError:
        the NaN became a table index).
        """
        tensors = [v for v in (teff, logg, logz) if isinstance(v, torch.Tensor)]
        is_np = not tensors
        # a number beside a tensor (log_prob(t, g, 0.0)) stopped in AttributeError ('float' has no 'double'),
        # a tensor that needs its gradient beside a number in numpy's RuntimeError
        device = tensors[0].device if tensors else None
        t, g, z = (v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, float), device=device)
                   for v in (teff, logg, logz))
        t, g, z = torch.broadcast_tensors(t.double(), g.double(), z.double())
        bad = ~(t > 0) | torch.isnan(g) | torch.isnan(z)
        # evaluated at a harmless point there, so that neither the index nor the gradient sees the NaN
        t, g, z = (torch.where(bad, torch.full_like(v, ok), v) for v, ok in ((t, 5000.0), (g, 4.0), (z, 0.0)))
        dens = self._dens_t.to(t.device)
        # bilinear interpolation in (log10 Teff, log g) on each metallicity's table
        x = (torch.log10(t) - self._lo[0]) / self._cell[0]
        y = (g - self._lo[1]) / self._cell[1]
        nt, ng = dens.shape[1:]
        x = x.clamp(0.0, nt - 1.000001)
        y = y.clamp(0.0, ng - 1.000001)
        i, j = x.floor().long(), y.floor().long()
        fx, fy = x - i, y - j
        p = (dens[:, i, j] * (1 - fx) * (1 - fy) + dens[:, i + 1, j] * fx * (1 - fy)
             + dens[:, i, j + 1] * (1 - fx) * fy + dens[:, i + 1, j + 1] * fx * fy)   # (n_z, ...)
        lz = torch.as_tensor(self.logz, dtype=torch.float64, device=t.device).reshape(-1, *[1] * z.dim())
        # held 50 widths beyond the table's metallicities, where all weight already sits on the nearest one
        # (an infinite [M/H] gave NaN, while an infinite Teff or log g was held at the table's edge)
        margin = 50.0 * self._logz_width
        z = z.clamp(float(np.min(self.logz)) - margin, float(np.max(self.logz)) + margin)
        wz = torch.softmax(-0.5 * ((z[None] - lz) / self._logz_width) ** 2, dim=0)
        out = torch.where(bad, torch.full_like(t, float("nan")), torch.log((wz * p).sum(0)))
        return out.detach().cpu().numpy() if is_np else out


def _pair(name, value, what, positive=False):
    """``value`` as a pair of finite floats (> 0 with ``positive``), else a ValueError naming ``name`` and
    ``what`` it holds."""
    try:
        v = np.asarray(value, float)
    except (TypeError, ValueError):
        v = np.empty(0)
    if v.shape != (2,) or not np.all(np.isfinite(v)) or (positive and not np.all(v > 0)):
        raise ValueError(f"{name} must be a pair of finite numbers{' > 0' if positive else ''}, {what}; got "
                         f"{value!r}")
    return tuple(float(x) for x in v)


def _gaussian_smooth(a, sx, sy):
    """Separable Gaussian smoothing of a 2-d array (sigmas in cells; zero outside)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(a, (sx, sy), mode="constant", truncate=4.0)
