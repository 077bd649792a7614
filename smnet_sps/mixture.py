"""The default library mixture: which training library a neural generator imitates where.

A union model imitates any of its training libraries (``library="ck04"``); the default (``library=None``)
blends them with weights w_l(Teff, log g, [M/H]) >= 0 that sum to 1, as a weighted geometric mean of the
libraries' own predictions. This module computes those weights:

1. **Support -- never outside a library's box, never in its holes.** Library l's *support factor*
   ``t_l = taper_l x hole_l`` in [0, 1]:

   * ``taper_l`` = product over (log10 Teff, log g, [M/H]) of smoothstep(depth_d / width_d), depth_d =
     distance from the point to the nearest face of the box along d (<= 0 outside). It is 1 deeper than
     :data:`EDGE_TAPER` = (0.01 dex in Teff, 0.1 dex in log g, 0.05 dex in [M/H]) inside the box and falls
     smoothly (C1) to exactly 0 **at** the face. A library computed at a single metallicity (BaSeL 2.2 and
     CM87 at [M/H] = 0) has a box of zero [M/H] width; it is given +-:data:`SINGLE_METALLICITY_TOLERANCE`
     (0.25 dex, half a nominal [M/H] step), so its weight is 1 for |[M/H]| <= 0.20 and 0 from |[M/H]| = 0.25.
   * ``hole_l`` (when the model's training nodes are known): 1 where a node of library l lies within
     :data:`HOLE_FULL` (1.25) x that node's local spacing, falling smoothly to 0 at :data:`HOLE_ZERO` (1.5) --
     the distance at which ``NeuralGenerator.in_coverage`` stops counting the library (distances in nominal
     grid steps, 0.02 dex / 0.5 dex / 0.5 dex). So the mixture never uses a library where the coverage flag
     would not count it.

2. **Preference -- by measured fidelity.** Parameter space is cut into regions (Teff classes x giants /
   dwarfs, :class:`MixturePolicy`); each region has an order of preference of the libraries, measured
   against observed stars (:func:`rank_libraries`) or, where no star decides, :data:`DEFAULT_ORDER`. Within a
   region the weights are stacked in that order: w_1 = t_1, w_2 = (1 - t_1) t_2, w_3 = (1 - t_1)(1 - t_2)
   t_3 ..., with each t_l relative to the point's largest support factor, then normalised: the preferred
   library takes everything where it is as well supported as any and hands over to the next one only within
   its edge taper. (Relative, because where every library that supports a point tapers at once -- boxes that
   end on one face, as CK04, BaSeL and WM-basic at 50,000 K -- absolute factors tend to equal weights, t :
   (1 - t) t -> 1 : 1, whatever the order.) Between regions the stacked weights are blended with
   smooth (C1) memberships over :data:`REGION_TRANSITION` (0.01 dex in Teff, 0.1 dex in log g), so the
   spectrum never steps.

3. **Outside every support** (outside all boxes, on a face where no other library takes over, or in a hole
   that no other library fills) the weights go to the libraries as distance^-8 to their boxes (in taper
   widths: practically the nearest box; on a face, that box's library alone; strictly inside boxes, in holes
   of all their libraries, as (b_min / b_l)^8 with b_l how far the point lies beyond library l's nodes' reach,
   relative and stacked in the order of preference, so that at a hole's edge the library whose support just
   ended keeps the point), except that the libraries
   whose boxes are nearest (on a face: hold the point) and whose training nodes are near their box's closest
   point take a share max(h_l) of it in their order of preference, h_l = that hole factor x (d_min / d_l)^8:
   at WM-basic's nodes on its own faces, WM-basic rather than the libraries whose boxes hold the point in a
   hole (but not at the edge of a hole inside a box: there the share is 0 and grows to max(h_l) over the
   hole taper's width, so the library whose support just ended keeps the point). Each weight is then less
   :data:`FALLBACK_TRIM` (1e-3) and clipped
   at 0, then renormalised, so that libraries with a negligible weight cost no network pass. Continuous,
   except across a face of one box that lies inside another (the set of boxes holding the point changes
   there, as it always did). **Beside faces** (within a taper width of the nearest box) the libraries are
   compared as their supports are just inside: by each box's taper continued beyond its faces, per dimension
   smoothstep(max(|u|, d_l)) (u = depth in taper widths, < 0 beyond the face; d_l = distance to the box),
   in logarithms so that the factor of a face several boxes share cancels on it (|u| floored at
   :data:`BESIDE_FLOOR`). So where several boxes end on one face (CK04, BaSeL and WM-basic at 50,000 K)
   the libraries split the point just inside (relative supports, 2.), on the face and just beyond it alike,
   also where one box also tapers in another dimension (WM-basic at [M/H] +0.295: 4 %, CK04 96 %), and in
   the boxes' holes by the reach of their nodes (as in holes, below); a taper width or more from every box
   the closeness alone decides. Except on a face, such points are flagged as outside coverage.

Without a policy (a model directory without ``mixture.json``) the weights are the supports normalised:
equal weights wherever libraries overlap, still never outside a box.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checksums import file_sha256
from .constants import LOGG_DOMAIN, LOGZ_DOMAIN, NODE_STEPS, TEFF_DOMAIN

__all__ = ["EDGE_TAPER", "SINGLE_METALLICITY_TOLERANCE", "HOLE_FULL", "HOLE_ZERO", "REGION_TRANSITION",
           "DEFAULT_ORDER", "FALLBACK_TRIM", "TEFF_EDGES", "LOGG_EDGES", "MIXTURE_FILE", "smoothstep",
           "box_taper", "stacked_weights", "band_memberships", "MixturePolicy", "LibraryMixture",
           "rank_libraries", "blend_log_flux", "plot_mixture_map", "widen_single_metallicity",
           "recorded_mixture"]

# [dex] log10 Teff, log g, [M/H]: inside width over which a weight -> 0
EDGE_TAPER = (0.01, 0.1, 0.05)
SINGLE_METALLICITY_TOLERANCE = 0.25     # [dex] +- around a single-metallicity library (half a nominal step)
HOLE_FULL, HOLE_ZERO = 1.25, 1.5        # node distance / local spacing: full weight below, none above
REGION_TRANSITION = (0.01, 0.1)         # [dex] log10 Teff, log g: width of the handover between regions
TEFF_EDGES = (4000.0, 5500.0, 7000.0, 10000.0, 25000.0)   # [K] region edges (the empirical Teff classes + O)
LOGG_EDGES = (3.5,)                                       # giants / dwarfs
# Preference where no observed star decides: WM-basic (non-LTE, winds) for O/early-B stars as FSPS does,
# then the Kurucz models (CK04) for everything they cover, NextGen (M dwarfs), BaSeL (M giants, the only
# library there), CM87 (the only one above 60 kK).
DEFAULT_ORDER = ("wmbasic", "ck04", "nextgen", "basel22", "cm87")
# outside every support: weights ~ distance^-8 (nearly the nearest box), less FALLBACK_TRIM each (clipped at
# 0, renormalised): continuous, and a library with a negligible weight costs no network pass (a third of
# the PARSEC isochrone points lie outside every support and went through all five libraries)
FALLBACK_POWER = 8
FALLBACK_TRIM = 1e-3
REACH_DISTANCE = 100.0      # [node spacings] _fallback: a box's distance as a reach, in its b_min
BESIDE_FLOOR = 1e-9         # [taper widths] least |depth| in the fallback's comparison (_beside_faces)
MIXTURE_FILE = "mixture.json"
MIXTURE_FORMAT = "smnet-sps mixture"
MIN_STARS = 5                           # stars needed to let a pair of libraries be ranked by the data
MAX_P = 0.05                            # ... and the sign test's p-value they must reach


def smoothstep(u):
    """3u^2 - 2u^3 on [0, 1], 0 below, 1 above (C1)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def node_coordinates(teff, logg, logz):
    """Parameters in nominal grid steps (:data:`NODE_STEPS`), where node distances are measured (mixture,
    coverage)."""
    return np.stack([np.log10(teff), np.asarray(logg, float), np.asarray(logz, float)], 1) / NODE_STEPS


# a k-d tree query of at least this many points runs on torch's intra-op threads (query_workers)
PARALLEL_QUERY = 4096


def query_workers(n_points):
    """Threads for a k-d tree query of ``n_points`` points: torch's intra-op thread count (what the caller
    gave the package's computations: ``torch.set_num_threads``) for large queries, else 1. Each point's
    answer is its own, whatever the thread: the same neighbours and distances bit for bit."""
    if n_points < PARALLEL_QUERY:
        return 1
    import torch
    return max(1, int(torch.get_num_threads()))


def library_node_spacing(points, library_id):
    """Each node's local grid spacing: distance to its nearest node of the same library, at least one nominal
    step (1 for a library with a single node). ``points`` from :func:`node_coordinates`."""
    from scipy.spatial import cKDTree
    spacing = np.ones(len(points))
    for j in np.unique(library_id):
        sel = np.flatnonzero(library_id == j)
        if sel.size >= 2:
            d, _ = cKDTree(points[sel]).query(points[sel], k=2)
            spacing[sel] = np.maximum(d[:, 1], 1.0)
    return spacing


def library_node_trees(nodes, n_libraries):
    """Per library j < ``n_libraries``: (k-d tree of its nodes in grid steps, their local spacings), or None
    for a library without nodes. ``nodes``: dict with ``teff`` [K], ``logg``, ``logz``, ``library_id``. The
    mixture's hole factor and the generators' coverage flag both ask these trees."""
    from scipy.spatial import cKDTree
    pts = node_coordinates(nodes["teff"], nodes["logg"], nodes["logz"])
    lib = np.asarray(nodes["library_id"]).astype(int)
    spacing = library_node_spacing(pts, lib)
    trees = []
    for j in range(n_libraries):
        own = np.flatnonzero(lib == j)
        trees.append((cKDTree(pts[own]), spacing[own]) if own.size else None)
    return trees


def widen_single_metallicity(box):
    """(lo, hi) per dimension of a log box, with a zero-width [M/H] range widened by the tolerance."""
    (t0, t1), (g0, g1), (z0, z1) = box
    if z1 <= z0:
        z0, z1 = z0 - SINGLE_METALLICITY_TOLERANCE, z1 + SINGLE_METALLICITY_TOLERANCE
    return ((t0, t1), (g0, g1), (z0, z1))


def _log_box(box):
    """ParameterBox (Teff linear) or ((lo, hi) x 3 in log Teff) -> log box widened for single metallicity."""
    if hasattr(box, "teff"):
        box = ((np.log10(box.teff[0]), np.log10(box.teff[1])), tuple(box.logg), tuple(box.logz))
    return widen_single_metallicity(tuple(tuple(map(float, b)) for b in box))


def _bounds(log_box):
    """(lo (3,), hi (3,)) of a box ((lo, hi) x 3)."""
    return np.array([b[0] for b in log_box]), np.array([b[1] for b in log_box])


def box_taper(points, log_box, widths=EDGE_TAPER):
    """Support factor of one box: 1 deeper than ``widths`` inside, smoothly 0 at and outside the faces.

    points (n, 3) in (log10 Teff, log g, [M/H]); log_box ((lo, hi) x 3); widths [dex] per dimension.
    """
    p = np.asarray(points, float)
    lo, hi = _bounds(log_box)
    depth = np.minimum(p - lo, hi - p)                  # < 0 outside
    return np.prod(smoothstep(depth / np.asarray(widths, float)), axis=1)


def _box_distance(points, log_box, widths=EDGE_TAPER):
    """Euclidean distance outside the box, in units of ``widths`` (0 inside)."""
    p = np.asarray(points, float)
    lo, hi = _bounds(log_box)
    d = (np.maximum(lo - p, 0) + np.maximum(p - hi, 0)) / np.asarray(widths, float)
    return np.sqrt((d ** 2).sum(1))


def stacked_weights(support, order):
    """Weights (n, L) from support factors (n, L) stacked in ``order`` (column indices, most preferred first).

    w_order[0] = t, w_order[1] = (1 - t_order[0]) t, ...; columns not in ``order`` get 0. Not normalised.
    """
    w = np.zeros_like(support)
    remaining = np.ones(support.shape[0])
    for j in order:
        w[:, j] = remaining * support[:, j]
        remaining = remaining * (1.0 - support[:, j])
    return w


def band_memberships(x, edges, width):
    """Smooth partition of unity over the len(edges) + 1 bands cut at ``edges`` (C1 over ``width``),
    (n, B)."""
    x = np.asarray(x, float)
    above = [np.ones_like(x)] + [smoothstep((x - e) / width + 0.5) for e in edges] + [np.zeros_like(x)]
    return np.stack([above[k] - above[k + 1] for k in range(len(edges) + 1)], 1)


# ------------------------------------------------------------------------------------------ policy
@dataclass
class MixturePolicy:
    """Per region (Teff band x log g band), the order of preference of the libraries.

    ``orders[i][k]`` is the list of library names (most preferred first) of Teff band i, log g band k; bands
    are cut at ``teff_edges`` [K] and ``logg_edges``. ``orders`` None = equal weights (no preference).
    ``evidence`` records the measurements behind each order (see :func:`rank_libraries`).
    """

    teff_edges: tuple = TEFF_EDGES
    logg_edges: tuple = LOGG_EDGES
    orders: list | None = None
    evidence: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def default(cls, library_names=None):
        """:data:`DEFAULT_ORDER` everywhere (restricted to ``library_names``, others appended)."""
        order = _default_order(library_names or DEFAULT_ORDER)
        n_t, n_g = len(TEFF_EDGES) + 1, len(LOGG_EDGES) + 1
        return cls(orders=[[list(order) for _ in range(n_g)] for _ in range(n_t)],
                   meta={"source": "default order (no measurement)"})

    def region_names(self):
        te = [0.0, *self.teff_edges, np.inf]
        ge = [-np.inf, *self.logg_edges, np.inf]
        return [[f"Teff {te[i]:g}-{te[i + 1]:g} K, log g {ge[k]:g}..{ge[k + 1]:g}"
                 for k in range(len(ge) - 1)]
                for i in range(len(te) - 1)]

    def to_dict(self):
        return {"format": MIXTURE_FORMAT, "format_version": 1, "teff_edges": list(self.teff_edges),
                "logg_edges": list(self.logg_edges), "orders": self.orders, "evidence": self.evidence,
                "edge_taper": list(EDGE_TAPER), "single_metallicity_tolerance": SINGLE_METALLICITY_TOLERANCE,
                "hole": [HOLE_FULL, HOLE_ZERO], "region_transition": list(REGION_TRANSITION),
                "meta": self.meta}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"not a mixture file: it holds a JSON {type(d).__name__}, expected an object "
                             f"with format {MIXTURE_FORMAT!r}")
        if d.get("format") != MIXTURE_FORMAT:
            raise ValueError(f"not a mixture file: format is {d.get('format')!r}, expected "
                             f"{MIXTURE_FORMAT!r}")
        orders = d.get("orders")
        n_t, n_g = len(d["teff_edges"]) + 1, len(d["logg_edges"]) + 1
        if orders is not None and (len(orders) != n_t or any(len(r) != n_g for r in orders)):
            raise ValueError(f"mixture file: orders must be {n_t} Teff bands x {n_g} log g bands")
        return cls(tuple(d["teff_edges"]), tuple(d["logg_edges"]), orders, d.get("evidence", []),
                   d.get("meta", {}))

    def save(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(d)


def recorded_mixture(model_dir):
    """The config.json entries that record MODEL_DIR's mixture file (``mixture_file``, ``mixture_sha256``;
    loading refuses a recorded file that is missing or changed); {} where the directory has none."""
    path = Path(model_dir) / MIXTURE_FILE
    return {"mixture_file": MIXTURE_FILE, "mixture_sha256": file_sha256(path)} if path.is_file() else {}


def _default_order(names):
    names = list(names)
    known = [n for n in DEFAULT_ORDER if n in names]
    return known + [n for n in names if n not in known]


class LibraryMixture:
    """Default mixture weights of a union model (see the module doc).

    Parameters
    ----------
    library_names : list of str
    library_boxes : dict name -> ParameterBox (Teff [K], log g, [M/H])
    nodes : dict with ``teff``, ``logg``, ``logz``, ``library_id`` (the model's training nodes) or None
        (no hole factor)
    policy : MixturePolicy or None (equal weights)
    """

    def __init__(self, library_names, library_boxes, nodes=None, policy=None):
        self.library_names = list(library_names)
        self.boxes = [_log_box(library_boxes[n]) for n in self.library_names]
        self.policy = policy
        self._orders = None
        if policy is not None and policy.orders is not None:
            self._orders = [[[self.library_names.index(n) for n in _complete(o, self.library_names)]
                             for o in row] for row in policy.orders]
        self._trees = None if nodes is None else library_node_trees(nodes, len(self.library_names))

    def _hole_ratio(self, j, points, beyond_zero=False):
        """min over nearby nodes of library j of distance / local spacing (inf without nodes).

        ``beyond_zero``: only ratios below HOLE_ZERO are wanted as they are (the hole factor, 0 from there
        on); a ratio of HOLE_ZERO or more may come back as any value >= HOLE_ZERO (inf). The queries are then
        bounded by the largest distance at which a node of the library can give less (as the coverage flag's
        are): the same nodes, distances and ratios below HOLE_ZERO bit for bit, and far points cost little."""
        if self._trees is None:
            return np.zeros(len(points))
        if self._trees[j] is None:
            return np.full(len(points), np.inf)
        tree, spacing = self._trees[j]
        q = np.asarray(points) / NODE_STEPS
        bound = {}
        if beyond_zero:
            reach = float(np.nextafter(HOLE_ZERO * spacing.max(), np.inf)) * (1 + 1e-12)
            bound["distance_upper_bound"] = reach
        d1, i1 = tree.query(q, k=1, workers=query_workers(len(q)), **bound)
        found = i1 < spacing.size                      # (always, unbounded)
        ratio = np.where(found, d1, np.inf) / spacing[np.where(found, i1, 0)]
        # the nearest node alone settles most points (ratio <= HOLE_FULL: full weight); the others need the
        # minimum over the nearby nodes, whose local spacings differ
        far = np.flatnonzero(ratio > HOLE_FULL)
        if far.size and spacing.size > 1:
            k = min(16, spacing.size)
            d, i = tree.query(q[far], k=k, workers=query_workers(far.size), **bound)
            found = i < spacing.size
            ratio[far] = np.min(np.where(found, d, np.inf) / spacing[np.where(found, i, 0)], axis=1)
        return ratio

    def support(self, log_teff, logg, logz):
        """Support factors t_l in [0, 1], shape (n, n_libraries) (box taper x hole factor); inputs as for
        :meth:`weights`."""
        p = _mixture_points(log_teff, logg, logz)
        t = np.stack([box_taper(p, b) for b in self.boxes], 1)
        return t * self._hole_factors(p, t > 0)

    def _hole_factors(self, p, where):
        """hole_l (module doc, 1.) at points p (n, 3) where ``where`` (n, L) is True, else 1 (no node
        query there: most points need few libraries')."""
        h = np.ones(where.shape)
        for j in range(where.shape[1]):
            rows = np.flatnonzero(where[:, j])
            if rows.size:
                ratio = self._hole_ratio(j, p[rows], beyond_zero=True)
                h[rows, j] = smoothstep((HOLE_ZERO - ratio) / (HOLE_ZERO - HOLE_FULL))
        return h

    def weights(self, log_teff, logg, logz):
        """Mixture weights, shape (n, n_libraries), rows sum to 1 (see the module doc).

        ``log_teff`` is log10(Teff / K) (not Teff), ``logg`` and ``logz`` [dex]: numbers or arrays of any
        shape, broadcast together and flattened in C order (n points); NaN / inf or a value outside the
        generators' physical domain (log10 Teff 2.70-6, log g -3..15, [M/H] -6..2) a ``ValueError``."""
        p = _mixture_points(log_teff, logg, logz)
        out, total = self._preferred(p, self.support(p[:, 0], p[:, 1], p[:, 2]))
        none = np.flatnonzero(total <= 0)
        if none.size:
            out[none] = self._fallback(p[none])
        return out

    def _preferred(self, p, t):
        """Support-like factors t (n, n_libraries), relative to each row's largest, stacked in each region's
        order of preference, blended across regions and normalised (rows of 0 where t is all 0); and the
        rows' totals before that."""
        top = t.max(1, keepdims=True)
        t = np.where(top > 0, t / np.where(top > 0, top, 1.0), 0.0)
        if self._orders is None:
            w = t
        else:
            pol = self.policy
            mt = band_memberships(p[:, 0], np.log10(pol.teff_edges), REGION_TRANSITION[0])
            mg = band_memberships(p[:, 1], pol.logg_edges, REGION_TRANSITION[1])
            w = np.zeros_like(t)
            cache = {}
            for i, row in enumerate(self._orders):
                for k, order in enumerate(row):
                    m = mt[:, i] * mg[:, k]
                    if not m.any():
                        continue
                    key = tuple(order)
                    if key not in cache:
                        s = stacked_weights(t, order)
                        tot = s.sum(1, keepdims=True)
                        cache[key] = np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 0.0)
                    w += m[:, None] * cache[key]
        total = w.sum(1, keepdims=True)
        return np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0), total[:, 0]

    def _fallback(self, p):
        """Weights at points outside every support (module doc, 3.)."""
        d = np.stack([_box_distance(p, b) for b in self.boxes], 1)
        inv = 1.0 / (d + 1e-9) ** FALLBACK_POWER
        # on the face of a box (distance 0) only the libraries whose box it is
        inv = np.where((d == 0).any(1, keepdims=True), (d == 0).astype(float), inv)
        w = inv / inv.sum(1, keepdims=True)
        if self._trees is not None:
            closeness = ((d.min(1, keepdims=True) + 1e-9) / (d + 1e-9)) ** FALLBACK_POWER
            # hole factor and reach b (hole ratio - HOLE_ZERO, >= 0) of each library at its box's closest
            # point
            h = np.zeros_like(d)
            reach = np.full(d.shape, np.inf)
            for j, box in enumerate(self.boxes):
                rows = np.flatnonzero(closeness[:, j] > 1e-12)       # below: no node query, h < 1e-12
                if rows.size:
                    ratio = self._hole_ratio(j, np.clip(p[rows], *_bounds(box)))
                    hole = smoothstep((HOLE_ZERO - ratio) / (HOLE_ZERO - HOLE_FULL))
                    h[rows, j] = closeness[rows, j] * hole
                    reach[rows, j] = np.maximum(ratio - HOLE_ZERO, 0.0)
            beside = self._beside_faces(p, d)
            # Within a taper width of the nearest box the distance weights hand over to those of the boxes'
            # inside just across their faces (_in_holes: taper x (b_min / b)^8, relative, stacked in the order
            # of preference), continued beyond the faces: closeness x the tapers continued (_beside_faces) x
            # (b_min / b)^8 (at most 1; b_min over the nearest boxes: b + REACH_DISTANCE x (1 - closeness),
            # so that a farther box whose library's nodes are near it does not outweigh the nearest). Where
            # several boxes end on one face (50,000 K) their distances were equal and so were their weights
            # beyond it, while just inside it the preferred library took the point, or in CK04's and BaSeL's
            # holes the one whose nodes are nearer (log g 0-3.4: CK04 1 -> 0.5 within 1e-9 K, 0.4-0.7 % in
            # the optical).
            face = 1.0 - smoothstep(d.min(1))
            rows = np.flatnonzero(face > 0)
            if rows.size:
                c, b = closeness[rows], reach[rows]
                b_min = (b + REACH_DISTANCE * (1.0 - c)).min(1, keepdims=True)
                with np.errstate(invalid="ignore"):
                    near_nodes = ((b_min + 1e-9) / (np.maximum(b, b_min) + 1e-9)) ** FALLBACK_POWER
                # on a face or inside a box only the boxes that hold the point, as the distance weights
                held = np.where((d[rows] == 0).any(1, keepdims=True), d[rows] == 0, c)
                inner = self._preferred(p[rows], _relative(held * near_nodes, beside[rows]))[0]
                w[rows] = face[rows, None] * inner + (1.0 - face[rows, None]) * w[rows]
            w, into_holes = self._in_holes(p, d == 0, w)
            # The libraries whose boxes are nearest to the point (on a face: the boxes that hold it, where its
            # support is 0) and whose training nodes are near the box's closest point take a share max(h) of
            # it, h = that hole factor x closeness (d_min / d)^8, in their order of preference (as the
            # supports are), compared with their tapers continued beyond the faces (_beside_faces). The
            # libraries whose boxes held the point in a hole took an equal share: WM-basic's node at 50,000 K,
            # log g 3.5 on its box's face came out 1.85 sigma Teff^4 from a third each of WM-basic, CK04 and
            # BaSeL. On the face only its boxes count (closeness 1, the others ~0); just beyond it the same
            # boxes are equally near, their closest points are the face point and the face's factor cancels,
            # so the weights go on as on the face and as just inside it (a third each stepped by 7-15 % in the
            # optical across 50,000 K; then WM-basic alone beyond the face, where just inside it its [M/H]
            # +0.3 face left it 4 %: 8-14 %). The share -> 0 as h -> 0, so nothing steps where h does, and it
            # is 0 at the edge of a hole inside a box (_in_holes: the library whose support just ended keeps
            # the point). Where one of the boxes that hold the point (on a face or inside) has nodes near,
            # only those boxes: a library on two of whose faces the point lies (factor 3e-18 each) lost to one
            # whose box lies 1e-8 widths away (NextGen's corner at 10,000 K, [M/H] 0: BaSeL, beyond its log g
            # 5.5 face).
            holds = ((d == 0) & (h > 0)).any(1, keepdims=True)
            near = self._preferred(p, _relative(np.where(holds & (d > 0), 0.0, h), beside))[0]
            share = h.max(1, keepdims=True) * into_holes[:, None]
            w = share * near + (1 - share) * w
        fb = np.maximum(w - FALLBACK_TRIM, 0.0)
        return fb / fb.sum(1, keepdims=True)

    def _beside_faces(self, p, d):
        """log of each box's taper continued beyond its faces, (n, L): the sum over dimensions of
        log smoothstep(max(|u|, d_l)), u = the point's depth inside box l along it in taper widths (< 0 beyond
        a face), d_l its distance to the box (``d``, taper widths), |u| floored at :data:`BESIDE_FLOOR`.

        Just inside a face where several boxes end (50,000 K) their supports share that face's factor and
        split the point by the rest of their tapers (WM-basic's [M/H] +0.3 face at +0.295); compared with
        these factors (:func:`_relative`, in logarithms) the libraries split it the same way on the face and
        just beyond it, where their distances are equal and the shared factor (the same u) cancels. Farther
        than a taper width from a box (d_l >= 1) every factor is 1: the closeness alone decides, and a box
        beside one of whose faces the point lies while beyond another (49,999.9 K, log g 5.2: CK04's Teff
        face, beyond its log g 5 face) is not weighed down against farther boxes (CM87). The floor is the
        closeness's regularisation (d + 1e-9)."""
        lo = np.stack([_bounds(b)[0] for b in self.boxes])              # (L, 3)
        hi = np.stack([_bounds(b)[1] for b in self.boxes])
        u = np.minimum(p[:, None, :] - lo, hi - p[:, None, :]) / np.asarray(EDGE_TAPER, float)
        a = np.maximum(np.maximum(np.abs(u), d[:, :, None]), BESIDE_FLOOR)
        return np.log(smoothstep(a)).sum(2)

    def _in_holes(self, p, held, w):
        """``(w, into)``: ``w`` with the rows strictly inside a box that holds them (in holes of all those
        libraries) weighted as the supports are just outside the holes: box taper x closeness to each
        library's nodes, (b_min / b)^8 with b = hole ratio - HOLE_ZERO (their reach), relative and stacked in
        the order of preference. At a hole's edge the preferred library whose reach just ended takes the
        point, as it did just inside its reach; equal weights stepped there (7,951 K, log g 0.1, where CK04
        and BaSeL share their nodes: CK04 1 -> 0.5 and the near-UV by up to 25 % within 1e-9 K); and per row
        how far the fallback's preference share may go (1 outside the boxes): 1 - max_l taper_l (1 -
        smoothstep(b_l / (HOLE_ZERO - HOLE_FULL))) over the libraries whose boxes hold the point, so 0 at a
        hole's edge inside a box, where the library whose support just ended keeps the point whichever face of
        another box the point lies on (on WM-basic's log g 3.5 face CK04's hole edge near 41,060 K handed it
        to WM-basic within 1e-9 K, 3-13 % in the optical), and 1 a hole taper's width beyond that edge or on
        the box's face."""
        taper = np.stack([box_taper(p, b) for b in self.boxes], 1)
        inside = held & (taper > 0)
        rows = np.flatnonzero(inside.any(1))      # a box on whose face the point lies counts 0 (taper 0)
        into = np.ones(len(p))
        if rows.size == 0:
            return w, into
        beyond = np.full((rows.size, held.shape[1]), np.inf)
        for j in range(held.shape[1]):
            sel = np.flatnonzero(inside[rows, j])
            if sel.size:
                beyond[sel, j] = np.maximum(self._hole_ratio(j, p[rows[sel]]) - HOLE_ZERO, 0.0)
        # times the box taper, as the supports: a library whose face the point has just crossed comes in from
        # 0 (just beyond that face the other boxes alone hold the point; without the taper the weight
        # flipped across CK04's log g 0 face inside BaSeL's box)
        closeness = taper[rows] * ((beyond.min(1, keepdims=True) + 1e-9) / (beyond + 1e-9)) ** FALLBACK_POWER
        w = w.copy()
        w[rows] = self._preferred(p[rows], closeness)[0]
        edge = np.where(inside[rows], taper[rows] * (1.0 - smoothstep(beyond / (HOLE_ZERO - HOLE_FULL))), 0.0)
        into[rows] = 1.0 - edge.max(1)
        return w, into


def _mixture_points(log_teff, logg, logz):
    """(n, 3) float64 points (log10 Teff, log g, [M/H]) from inputs of any shape (broadcast, flattened),
    checked: finite and inside the generators' physical domain (log10 Teff of :data:`TEFF_DOMAIN`)."""
    try:
        arrays = np.broadcast_arrays(*(np.asarray(a, float) for a in (log_teff, logg, logz)))
    except ValueError as exc:
        raise ValueError(f"log10 Teff, log g and [M/H] cannot be broadcast together: shapes "
                         f"{[np.shape(a) for a in (log_teff, logg, logz)]}") from exc
    # (2, 3) arrays crashed deep in numpy (shapes (2,3,2) and (3,) could not be broadcast)
    p = np.stack([np.ravel(a) for a in arrays], 1)
    bad = np.flatnonzero(~np.isfinite(p).all(1))
    if bad.size:
        # a NaN row came out all zeros (not summing to 1), an infinite [M/H] as NaN weights
        raise ValueError(f"mixture weights need finite log10 Teff, log g and [M/H]; row {int(bad[0])} is "
                         f"{p[bad[0]].tolist()} ({bad.size} such row(s))")
    # a Teff in K where log10 Teff belongs (5772 for the Sun) came out WM-basic's alone, without a word
    domains = (("log10 Teff", np.log10(TEFF_DOMAIN), " (log10 of Teff in K, not Teff)"),
               ("log g", LOGG_DOMAIN, ""), ("[M/H]", LOGZ_DOMAIN, ""))
    for d, (name, (lo, hi), hint) in enumerate(domains):
        out = np.flatnonzero((p[:, d] < lo) | (p[:, d] > hi))
        if out.size:
            raise ValueError(f"{name} = {p[out[0], d]:g} (row {int(out[0])}) is outside the physical domain "
                             f"{lo:g} .. {hi:g}{hint} ({out.size} value(s) outside)")
    return p


def _relative(factor, log_factor):
    """factor x exp(log_factor) relative to each row's largest (rows of 0 where ``factor`` is 0), computed in
    logarithms: a factor shared by a row's libraries cancels however small it is."""
    with np.errstate(divide="ignore"):
        lg = np.log(factor) + log_factor
    top = lg.max(1, keepdims=True)
    ok = np.isfinite(top)
    return np.where(ok, np.exp(lg - np.where(ok, top, 0.0)), 0.0)


def _complete(order, names):
    """``order`` restricted to ``names``, then the libraries it lacks in the default order."""
    order = [n for n in order if n in names]
    return order + [n for n in _default_order(names) if n not in order]


# ------------------------------------------------------------------------------------------ ranking
def blend_log_flux(log_flux_by_library, weights):
    """The default's spectrum from the libraries' own: sum_l w_l log F_l (geometric mean), (n, n_wave).

    ``log_flux_by_library``: (n_libraries, n, n_wave); libraries with zero weight may hold NaN.
    """
    lf = np.asarray(log_flux_by_library, float)
    w = np.asarray(weights, float).T[:, :, None]
    with np.errstate(invalid="ignore"):
        return np.sum(np.where(w > 0, w * lf, 0.0), axis=0)


def rank_libraries(library_names, scores, teff, logg, supported, teff_edges=TEFF_EDGES, logg_edges=LOGG_EDGES,
                   min_stars=MIN_STARS, max_p=MAX_P, meta=None):
    """Measured order of preference per region, from per-star scores of each library's imitation.

    Parameters
    ----------
    library_names : list of str
    scores : (n_libraries, n_stars) per-star median |residual| of each library imitation (NaN = not scored)
    teff, logg : (n_stars,) the stars' parameters
    supported : (n_libraries, n_stars) bool, the library can get weight at the star (support factor > 0)
    min_stars, max_p : a pair of libraries is ordered by the data when at least ``min_stars`` stars of the
        region are supported and scored by both and a two-sided sign test on their per-star scores gives
        p < ``max_p`` (one library better on significantly more stars); otherwise by :data:`DEFAULT_ORDER`

    Returns
    -------
    MixturePolicy. In a region, library A is preferred to B when the data decide it (above) and the median
    over their common stars of (score_A - score_B) is negative (a paired comparison); libraries are ordered
    by their number of such wins (Copeland), ties by the default order. ``evidence`` lists every measured
    pair.
    """
    from scipy.stats import binomtest
    names = list(library_names)
    scores = np.asarray(scores, float)
    supported = np.asarray(supported, bool) & np.isfinite(scores)
    default = _default_order(names)
    rank0 = {n: default.index(n) for n in names}
    t_band = np.searchsorted(np.asarray(teff_edges, float), np.asarray(teff, float), side="right")
    g_band = np.searchsorted(np.asarray(logg_edges, float), np.asarray(logg, float), side="right")
    orders, evidence = [], []
    te = [0.0, *teff_edges, np.inf]
    ge = [-np.inf, *logg_edges, np.inf]
    for i in range(len(teff_edges) + 1):
        row = []
        for k in range(len(logg_edges) + 1):
            in_region = (t_band == i) & (g_band == k)
            wins = {n: 0.0 for n in names}
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    common = in_region & supported[a] & supported[b]
                    na, nb = names[a], names[b]
                    winner = na if rank0[na] < rank0[nb] else nb          # the default, unless measured
                    if common.sum() >= min_stars:
                        d = scores[a, common] - scores[b, common]
                        n_a = int((d < 0).sum())
                        n_dec = int((d != 0).sum())
                        p = float(binomtest(n_a, n_dec, 0.5).pvalue) if n_dec else 1.0
                        decided = p < max_p and np.median(d) != 0
                        if decided:
                            winner = na if np.median(d) < 0 else nb
                        evidence.append({"teff": [te[i], te[i + 1]], "logg": [ge[k], ge[k + 1]],
                                         "pair": [na, nb],
                                         "n_stars": int(common.sum()), "n_first_better": n_a,
                                         "median_score": [float(np.median(scores[a, common])),
                                                          float(np.median(scores[b, common]))],
                                         "median_difference": float(np.median(d)), "sign_test_p": p,
                                         "decided_by_data": bool(decided), "preferred": winner})
                    wins[winner] += 1
            row.append(sorted(names, key=lambda n: (-wins[n], rank0[n])))
        orders.append(row)
    return MixturePolicy(tuple(float(e) for e in teff_edges), tuple(float(e) for e in logg_edges), orders,
                         evidence, dict(meta or {}))


# ------------------------------------------------------------------------------------------ plot
def panel_grid(what, logz_values, n):
    """The [M/H] [dex] of a map's panels (one or more, as a 1-d array) and its ``n`` x ``n`` grid size (an
    integer >= 2), or a ValueError naming ``what`` needs them (the Teff x log g maps here and in calibrate)
    """
    logz_values = np.atleast_1d(np.asarray(logz_values, float))
    if logz_values.ndim != 1 or not logz_values.size or isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"{what} needs one or more [M/H] values (one panel each) and n >= 2 grid points per "
                         f"axis; got logz_values {logz_values.tolist()}, n {n!r}")
    return logz_values, int(n)


def plot_mixture_map(mixture, logz_values=(-1.0, -0.3, 0.0, 0.3), teff_range=(2000.0, 60000.0),
                     logg_range=(-1.0, 6.0), n=240):
    """Figure: the library with the largest default weight over Teff x log g, one panel per [M/H].

    Colour = dominant library; pale where its weight < 0.9 (a handover); white where no library supports
    the point (outside coverage). ``logz_values``: the panels' [M/H] [dex], one or more; ``teff_range`` [K]
    and ``logg_range`` [cgs] span an ``n`` x ``n`` grid (n >= 2).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    # checked before the figure exists: no [M/H] (ValueError from matplotlib) or n = 0 (IndexError) left the
    # figure open in pyplot
    logz_values, n = panel_grid("plot_mixture_map", logz_values, n)
    lt = np.linspace(np.log10(teff_range[0]), np.log10(teff_range[1]), n)
    lg = np.linspace(logg_range[0], logg_range[1], n)
    LT, LG = np.meshgrid(lt, lg)
    colours = [to_rgb(f"C{j}") for j in range(len(mixture.library_names))]
    fig, axes = plt.subplots(1, len(logz_values), figsize=(3.2 * len(logz_values), 3.4), sharey=True,
                             squeeze=False)
    for ax, z in zip(axes[0], logz_values):
        w = mixture.weights(LT.ravel(), LG.ravel(), np.full(LT.size, z))
        covered = mixture.support(LT.ravel(), LG.ravel(), np.full(LT.size, z)).max(1) > 0
        top = w.argmax(1)
        rgb = np.array(colours)[top]
        pale = (w.max(1) < 0.9)[:, None]
        rgb = np.where(pale, 0.55 * rgb + 0.45, rgb)
        rgb[~covered] = 1.0
        ax.imshow(rgb.reshape(n, n, 3), origin="lower", aspect="auto",
                  extent=(lt[0], lt[-1], lg[0], lg[-1]))
        ax.set_title(f"[M/H] = {z:+.2f}", fontsize=9)
        ax.set_xlabel("log10 Teff [K]")
        ax.invert_yaxis()
    axes[0, 0].set_ylabel("log g [cgs]")
    handles = [Patch(color=c, label=nm) for c, nm in zip(colours, mixture.library_names)]
    # the key to the two shades that are no library's colour (the map drew them unexplained: white read as
    # the background, the pale handovers as more libraries)
    # the pale key is a neutral grey: a pale shade of one library's colour read as that library's handovers
    handles += [Patch(facecolor=(0.55 * 0.5 + 0.45,) * 3, label="pale: weight < 0.9 (handover)"),
                Patch(facecolor="white", edgecolor="0.4", lw=0.6, label="white: outside coverage")]
    # about two library names per panel's width fit on a row (all on one row ran off a one-panel figure)
    ncol = min(len(handles), 2 * len(logz_values))
    rows = -(-len(handles) // ncol)
    fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97 - 0.07 * rows))
    return fig
