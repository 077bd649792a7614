"""The surface gravities a library's grid spans at each Teff and [M/H]: where its network is held.

A stellar-atmosphere grid is a set of columns, one per (Teff, [M/H]), each running over a range of log g:
hot stars stop short of the Eddington limit, BaSeL's cool giants reach log g -1 below 3,500 K but only 0 above
it. The convex hull of a library's nodes (:func:`smnet_sps.tail.node_hull`), on which
:class:`~smnet_sps.neural.NeuralGenerator` first holds each library's network input, bridges the concave
steps of that boundary: a red supergiant at 4,300 K, log g -0.4, lies inside BaSeL's hull but 0.4 dex below
its nearest model, and the network extrapolated it to 0.86-0.88 sigma Teff^4 (7 % of a 5 Myr solar
population's L_bol). :class:`GravityRange` interpolates each column's lowest and highest log g linearly
between neighbouring columns (along Teff for a single-metallicity library, over a triangulation of the
columns in (Teff, [M/H]) otherwise) and clips log g into that range: continuous in all three parameters, and
no grid node moves. The columns are the library's grid itself -- its training, validation and test nodes
alike (where the library has models; no spectrum is used).

Pure numpy on node coordinates (:func:`smnet_sps.tail.node_points`, grid steps).
"""
from __future__ import annotations

import numpy as np

__all__ = ["GravityRange"]

CLIP_TOL = 1e-9                       # [grid steps] closer to the range than this is within it
FIND_TOL = 1e-7                       # [grid steps] a point this far outside the columns' hull is still in it
SHEAR = np.array([[1.0, 0.071], [0.0, 1.0]])   # columns on a lattice are cospherical: see tail._LibraryTail


class GravityRange:
    """The log g range of a library's grid as a function of (Teff, [M/H]).

    Parameters
    ----------
    points : (n, 3) node coordinates (log10 Teff, log g, [M/H] in grid steps) of all the library's nodes.
    """

    def __init__(self, points):
        from scipy.spatial import Delaunay, QhullError
        points = np.asarray(points, float)
        columns, column = np.unique(points[:, [0, 2]], axis=0, return_inverse=True)
        column = column.ravel()
        self.low = np.full(len(columns), np.inf)
        self.high = np.full(len(columns), -np.inf)
        np.minimum.at(self.low, column, points[:, 1])
        np.maximum.at(self.high, column, points[:, 1])
        self.columns = columns
        self.tri = None
        self.single_metallicity = bool(np.ptp(columns[:, 1]) == 0) if len(columns) else True
        if not self.single_metallicity and len(columns) > 2:
            try:
                self.tri = Delaunay(columns @ SHEAR.T, qhull_options="Qbb Qc Q12")
            except QhullError:       # the columns on one line: along it, as for a single [M/H]
                self.tri = None
        if self.tri is None:
            # one [M/H] (or columns on a line): along Teff, each Teff's widest range; beyond the last column
            # its own range (np.interp holds the end values)
            teff, at = np.unique(columns[:, 0], return_inverse=True)
            at = at.ravel()
            self.teff = teff
            self.teff_low = np.full(teff.size, np.inf)
            self.teff_high = np.full(teff.size, -np.inf)
            np.minimum.at(self.teff_low, at, self.low)
            np.maximum.at(self.teff_high, at, self.high)

    def limits(self, points):
        """(low, high) log g [grid steps] of the grid at each point's (Teff, [M/H]); NaN where that lies
        outside the columns' hull (beyond FIND_TOL)."""
        points = np.asarray(points, float)
        if self.tri is None:
            x = points[:, 0]
            return np.interp(x, self.teff, self.teff_low), np.interp(x, self.teff, self.teff_high)
        x = points[:, [0, 2]] @ SHEAR.T
        simplex = self.tri.find_simplex(x, tol=FIND_TOL)
        low = np.full(len(points), np.nan)
        high = np.full(len(points), np.nan)
        found = np.flatnonzero(simplex >= 0)
        if found.size:
            tr = self.tri.transform[simplex[found]]
            b = np.einsum("mij,mj->mi", tr[:, :2], x[found] - tr[:, 2])
            bary = np.clip(np.concatenate([b, 1.0 - b.sum(1, keepdims=True)], 1), 0.0, 1.0)
            bary /= bary.sum(1, keepdims=True)
            corners = self.tri.simplices[simplex[found]]
            low[found] = (bary * self.low[corners]).sum(1)
            high[found] = (bary * self.high[corners]).sum(1)
        return low, high

    def clip(self, points):
        """The points (n, 3; node coordinates) with log g clipped into the grid's range at their (Teff,
        [M/H]); a point whose (Teff, [M/H]) lies outside every column's hull is returned as it is."""
        points = np.array(points, dtype=float)
        low, high = self.limits(points)
        known = np.isfinite(low)
        g = points[known, 1]
        clipped = np.clip(g, low[known], high[known])
        # the interpolated range at a node's own column can be an ulp narrower than the node: not a move
        points[known, 1] = np.where(np.abs(clipped - g) > CLIP_TOL, clipped, g)
        return points
