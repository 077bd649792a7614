"""Baselines a neural stellar library must beat: interpolated libraries and the nearest observed star.

* :class:`InterpolatedLibraryGenerator` -- linear interpolation of a library's grid nodes in
  (log10 Teff, log g, [M/H]) on log flux (the classic way SPS codes use a library), with an ordered list of
  libraries: each point takes the first one whose nodes enclose it (``("ck04", "basel22")``: CK04, and
  BaSeL 2.2 below CK04's 3500 K). A single-metallicity library is interpolated in (log Teff, log g) only.
* :func:`nearest_star_flux` -- each observed star predicted by its nearest *other* observed star in
  (log Teff, log g, [M/H]), an empirical library used as plain look-up.
"""
from __future__ import annotations

import numpy as np

from .constants import NODE_STEPS
from .generator import Generator, ParameterBox

__all__ = ["NodeInterpolator", "InterpolatedLibraryGenerator", "nearest_star_flux", "lonely_stars"]


def node_coordinates(params):
    """The interpolation baseline's coordinates of nodes ``params`` (n, 3) = (log10 Teff, log g, [M/H]): each
    axis in :data:`~smnet_sps.constants.NODE_STEPS`, only the axes the nodes vary; returns them (n, k) and
    the (3,) mask of the axes kept."""
    p = np.asarray(params, float) / NODE_STEPS
    keep = np.ptp(p, axis=0) > 1e-9
    return p[:, keep], keep


class NodeInterpolator:
    """Linear interpolation of ``values`` (n, m) given at parameter nodes ``params`` (n, 3) =
    (log10 Teff, log g, [M/H]); call it with query points (k, 3) to get (k, m), NaN rows outside the nodes'
    convex hull.

    Each axis is measured in :data:`~smnet_sps.constants.NODE_STEPS` (so the triangulation is about isotropic)
    and axes the nodes do not vary are dropped (a single-metallicity library is interpolated in
    (log Teff, log g) only; a library varying one axis, along that axis).
    """

    def __init__(self, params, values):
        p, self.keep = node_coordinates(params)
        self.values = np.asarray(values, float)
        if p.shape[1] >= 2:
            from scipy.interpolate import LinearNDInterpolator
            self._interp = LinearNDInterpolator(p, self.values)
        elif p.shape[1] == 1:
            order = np.argsort(p[:, 0])
            self._axis, self._ordered = p[order, 0], self.values[order]

    def __call__(self, query):
        q = (np.asarray(query, float) / NODE_STEPS)[:, self.keep]
        if q.shape[1] >= 2:
            return self._interp(q)
        if q.shape[1] == 0:                          # every node at one point: that spectrum everywhere
            return np.repeat(self.values[:1], len(q), axis=0)
        return np.stack([np.interp(q[:, 0], self._axis, self._ordered[:, j], left=np.nan, right=np.nan)
                         for j in range(self._ordered.shape[1])], 1)


class InterpolatedLibraryGenerator(Generator):
    """Linear interpolation of grid libraries in (log10 Teff, log g, [M/H]) on log10 F_lambda.

    Parameters
    ----------
    grid : UnionGrid or TrainingGrid (``wavelength``, ``teff``, ``logg``, ``logz``, ``library_id``,
        ``library_names``, ``flux``, ``mask``)
    libraries : sequence of library names, in order of preference: each point takes the first library whose
        nodes' convex hull contains it. Points no library encloses get NaN spectra and ``inside`` False.
    rows : optional boolean or index selector of the grid nodes to use (e.g. training nodes only)
    """

    def __init__(self, grid, libraries=("ck04", "basel22"), rows=None, name=None):
        libraries = list(libraries)
        unknown = [n for n in libraries if n not in grid.library_names]
        if unknown:
            raise ValueError(f"libraries {unknown} are not in the grid (it holds {list(grid.library_names)})")
        use = np.ones(len(grid.teff), bool)
        if rows is not None:
            sel = np.zeros(len(grid.teff), bool)
            sel[rows] = True
            use &= sel
        self.wavelength = np.asarray(grid.wavelength, float)
        self.libraries = libraries
        self.name = name or "interpolated " + "+".join(libraries)
        self._interp = []
        boxes = {}
        for lib in libraries:
            sel = np.flatnonzero(use & (np.asarray(grid.library_id) == grid.library_names.index(lib)))
            if sel.size < 2:
                raise ValueError(f"library {lib!r} has {sel.size} usable node(s); interpolation needs >= 2")
            flux = np.asarray(grid.flux[sel], float)
            ok = np.asarray(grid.mask[sel], bool) & (flux > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                logf = np.where(ok, np.log10(np.where(ok, flux, 1.0)), np.nan)
            p = np.stack([np.log10(grid.teff[sel]), grid.logg[sel], grid.logz[sel]], 1)
            self._interp.append(NodeInterpolator(p, logf))
            boxes[lib] = ParameterBox((float(grid.teff[sel].min()), float(grid.teff[sel].max())),
                                      (float(grid.logg[sel].min()), float(grid.logg[sel].max())),
                                      (float(grid.logz[sel].min()), float(grid.logz[sel].max())))
        self.library_boxes = boxes
        lo = np.min([[b.teff[0], b.logg[0], b.logz[0]] for b in boxes.values()], 0)
        hi = np.max([[b.teff[1], b.logg[1], b.logz[1]] for b in boxes.values()], 0)
        self.box = ParameterBox((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]))
        self.meta = {"flux_normalisation": "library fluxes, interpolated linearly in log flux",
                     "libraries": ",".join(libraries)}

    def _log_flux(self, teff, logg, logz):
        q = np.stack([np.log10(teff), logg, logz], 1)
        out = np.full((len(q), self.wavelength.size), np.nan)
        todo = np.ones(len(q), bool)
        for interp in self._interp:
            if not todo.any():
                break
            v = interp(q[todo])
            hit = np.isfinite(v).any(1)
            rows = np.flatnonzero(todo)[hit]
            out[rows] = v[hit]
            todo[rows] = False
        return out

    def in_coverage(self, teff, logg, logz, library=None):
        """True where some library's nodes enclose the point (a spectrum can be interpolated)."""
        from .generator import validate_parameters
        teff, logg, logz = validate_parameters(teff, logg, logz)
        self._check_library(library)                    # no library conditioning: only None
        return np.isfinite(self._log_flux(teff, logg, logz)).any(1)

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        return 10.0 ** self._log_flux(teff, logg, logz)


def lonely_stars(stars, pool=None):
    """Mask (n,) of the stars of ``stars`` with no *other* star in ``pool`` (default: ``stars``): all of
    them for an empty pool, the pool's own star for a pool of one."""
    pool = stars if pool is None else pool
    if len(pool) >= 2:
        return np.zeros(len(stars), bool)
    return np.isin(stars.star_id, pool.star_id) | (len(pool) == 0)


def nearest_star_flux(stars, pool=None):
    """Each star of ``stars`` predicted by its nearest *other* star of ``pool`` (default: ``stars``).

    Distance in (log10 Teff, log g, [M/H]) with axes in :data:`NODE_STEPS` units; the nearest star of the
    pool that has data on half the comparison grid (:func:`~smnet_sps.empirical.observed_fraction`), else
    the nearest of any (a row of gaps predicts nothing). Both sets must share the
    wavelength grid. A pool apart from ``stars`` needs one star, the set itself two (ValueError naming the
    stars that have no other: :func:`lonely_stars`). Returns (flux (n, n_pix) on ``stars.wavelength``,
    neighbour star numbers (n,)).
    """
    from scipy.spatial import cKDTree
    pool = stars if pool is None else pool
    if pool.wavelength.shape != stars.wavelength.shape or not np.allclose(pool.wavelength, stars.wavelength):
        raise ValueError("stars and pool must share one wavelength grid")
    lonely = lonely_stars(stars, pool)
    if lonely.any():
        which = ", ".join(str(int(i)) for i in stars.star_id[lonely][:10])
        many = lonely.sum() > 1
        raise ValueError(f"{'stars' if many else 'star'} {which} {'have' if many else 'has'} no other star "
                         f"in the pool ({len(pool)} stars); the nearest-star baseline needs one")

    from .empirical import MIN_VALID_FRACTION, observed_fraction
    from .mixture import node_coordinates
    at = node_coordinates(pool.teff, pool.logg, pool.logz)
    query = node_coordinates(stars.teff, stars.logg, stars.logz)
    # a neighbour with data on half the comparison grid first (one that cannot be scored itself, a row of
    # gaps or NaN, predicted nothing: its nearest stars went unscored, 4 of 30 in a set with 2 such rows);
    # else any other star, as before
    scorable = np.flatnonzero(observed_fraction(pool, pool.wavelength) >= MIN_VALID_FRACTION)
    pick = np.full(len(stars), -1)
    for rows in (scorable, np.arange(len(pool))):
        todo = np.flatnonzero(pick < 0)
        if todo.size == 0 or rows.size == 0:
            continue
        k = min(2, rows.size)               # the star itself may be the nearest: then the second
        _, idx = cKDTree(at[rows]).query(query[todo], k=k)
        idx = rows[np.reshape(idx, (todo.size, k))]
        same = pool.star_id[idx[:, 0]] == stars.star_id[todo]
        cand = np.where(same, idx[:, -1], idx[:, 0])
        other = pool.star_id[cand] != stars.star_id[todo]
        pick[todo[other]] = cand[other]
    return pool.flux[pick], pool.star_id[pick]
