"""The untrained tails: where the network never learned, the library's own training nodes fill in.

Training leaves out every pixel fainter than ``tail_floor`` (1e-6) x its spectrum's peak
(docs/generator.md). On the Wien side that is the far and extreme UV of cool stars and the EUV of hot stars
beyond their ionisation edges: there the network came out a median 3.8 (CK04) to 5.5 (WM-basic) dex too
bright on the held-out test nodes, p95 11-12 dex, enough for red giants' tails to make most of an old
population's far UV and for B stars to emit He+-ionising photons. On the Rayleigh-Jeans side it is the mid
and far infrared of hot stars (WM-basic from ~5 um, CK04 A stars from ~20 um): there the network's output,
held near the blackbody reference, was off by a median 0.01-0.12 dex and a p95 0.2-0.7 dex at the training
nodes themselves, against 0.0002-0.002 dex at the pixels it learned (until 2026-12-03 only the Wien side was
filled). Both sides are filled alike; the table holds a block at each end of the grid.

So the pixels where the nodes of the enclosing simplex of the library's training nodes lie in their tail --
where the network had no training signal nearby -- take the linear interpolation of those nodes, in the
network's own output space (log10 F_lambda/(sigma Teff^4) minus the blackbody reference, i.e. log10 F_lambda
/ pi B_lambda), with barycentric weights over a Delaunay triangulation in nominal grid steps
(:data:`~smnet_sps.constants.NODE_STEPS`), at the point clipped to the nodes' bounding box and, where that
is still outside the nodes' hull (a grid's holes), projected onto the hull: continuous everywhere, unlike
the nearest node. Where only some of the nodes are in their tail, the interpolation of those is blended with
the network's output by f^8, f their total weight: the nodes alone where all of them are in their tail, the
network alone where none is, continuous in Teff, log g and [M/H] across every simplex face. Pixels the
network learned at the surrounding nodes keep its output (but for the 1e-30 sigma Teff^4 per A floor, the
training targets', that every spectrum is then held to). The table (``tail.npz`` of a model directory) holds
the tail pixels of the training nodes only, so held-out nodes stay held out: per library a blue block
(``log_ratio:<name>``, the first pixels of the grid up to its reddest Wien-tail pixel) and a red block
(``red_log_ratio:<name>``, from its bluest Rayleigh-Jeans-tail pixel to the end; absent in tables written
before 2026-12-03).

A library may be left out of the table (its spectra cannot be shipped) and take another's tail instead (a
"stand-in": the shipped model's BaSeL takes CK04's), then on the Wien side only :data:`STAND_IN_DEPTH` pixels
or more inside that tail, and on the Rayleigh-Jeans side only within the stand-in's Teff range. Where a
library has no red block of its own to use (no table: CM87; beyond its stand-in's Teff range; an older
table), its Rayleigh-Jeans tail is *held*: from the first pixel the network's output puts below the floor,
the network's log10(F / pi B) of the pixel before (a constant ratio of brightness temperature to Teff),
where the untrained output was off by up to 20x.

Pure numpy for the table and the host-side lookup; :meth:`UntrainedTails.fill_` is torch (device, dtype and
autograd follow the network's output).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .checksums import read_npz
from .constants import BOLTZMANN_K, LIGHT_C, NODE_STEPS, PLANCK_H
from .output_files import atomic_output

__all__ = ["TAIL_FILE", "wien_tail_mask", "red_tail_mask", "tabulate_tail", "save_table", "write_tail_table",
           "write_without_nodes", "UntrainedTails", "node_hull", "node_points"]

TAIL_FILE = "tail.npz"
TAIL_FORMAT = "smnet-sps wien tail"
MAX_LOG_RATIO = 100.0  # [dex] largest |log10 F / pi B| a table may hold (real ones: within 40)
BLEND_SQUARINGS = 3    # f^(2^3) = f^8: near 0 until nearly all the weight is on tail nodes (see fill_)
LOCATE_TOL = 1e-9      # barycentric coordinate by which a point may lie outside a simplex and still be in it
STAND_IN_DEPTH = 5     # [pixels] see UntrainedTails
HOLD_BLEND = 0.02      # [dex of Teff] a stand-in's red block fades into the hold beyond its Teff range
HOLD_SOFT = 0.03       # [dex of flux] a pixel moves from its own value to the held one this near the floor
HOLD_DEPTH = 0.005     # [dex of flux] a crossing of the floor sets the level held once this deep below it
NEAR_FACE = 1e-6       # a barycentric coordinate this small: the point may be on a face (see _find)
PROJECT_FIRST = 24     # facets of lowest distance bound measured first per point (see _LibraryTail._project)
PROJECT_CHUNK = 256    # points per block of _LibraryTail._project
PROJECT_NEAR = (32, 256)  # small facets per point found by their centres, in turn (_LibraryTail._project)
SMALL_FACET = 1.5      # [grid steps] facets with a larger bounding radius are measured for every point
PROJECT_TOL = 1e-7     # a point projected onto the hull lies on it to rounding: tolerance to find its simplex
BLOCK_CACHE = 16       # contiguous column blocks of the tail tables kept (UntrainedTails._block_tables)
SHEAR = np.array([[1.0, 0.137, 0.071], [0.0, 1.0, 0.113], [0.0, 0.0, 1.0]])   # see _LibraryTail


def _faint_side(wavelength, flux, mask, tail_floor, blue):
    flux = np.where(mask, flux, -np.inf)
    peak_col = np.argmax(flux, axis=1)
    peak = np.take_along_axis(flux, peak_col[:, None], 1)
    col = np.arange(np.size(wavelength))[None, :]
    side = col < peak_col[:, None] if blue else col > peak_col[:, None]
    return mask & side & (flux < tail_floor * peak)


def wien_tail_mask(wavelength, flux, mask, tail_floor):
    """Known pixels shortward of the spectrum's peak, fainter than ``tail_floor`` x the peak; (n, n_wave):
    the pixels training left out on the Wien side."""
    return _faint_side(wavelength, flux, mask, tail_floor, blue=True)


def red_tail_mask(wavelength, flux, mask, tail_floor):
    """Known pixels longward of the spectrum's peak, fainter than ``tail_floor`` x the peak; (n, n_wave):
    the pixels training left out on the Rayleigh-Jeans side (the mid and far infrared of hot stars)."""
    return _faint_side(wavelength, flux, mask, tail_floor, blue=False)


def _closest_on_segments(q, a, b):
    """Closest points to q (m, 2) on segments a-b (m, k, 2) -> (m, k, 2)."""
    ab = b - a
    t = np.clip(np.einsum("mkd,mkd->mk", q[:, None] - a, ab) / np.maximum(np.einsum("mkd,mkd->mk", ab, ab),
                                                                           1e-300), 0.0, 1.0)
    return a + t[..., None] * ab


def _closest_on_triangles(p, a, b, c):
    """Closest points to p (m, 3) on triangles a, b, c (m, k, 3) -> (m, k, 3) (Ericson 2005, 5.1.5). The
    readable stacked form: the tail runs :func:`_closest_on_triangles_parts`, which the tests hold to it bit
    for bit."""
    p = np.broadcast_to(p[:, None], a.shape)
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = 1e-300
    # face region by default, then the edges and vertices override it
    denom = np.where(np.abs(va + vb + vc) > tiny, va + vb + vc, tiny)
    v, w = vb / denom, vc / denom
    out = a + v[..., None] * ab + w[..., None] * ac
    cases = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),                                  # edge bc
         lambda: b + ((d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), tiny))[..., None] * (c - b)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0),                                             # edge ac
         lambda: a + (d2 / np.maximum(d2 - d6, tiny))[..., None] * ac),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0),                                             # edge ab
         lambda: a + (d1 / np.maximum(d1 - d3, tiny))[..., None] * ab),
        ((d6 >= 0) & (d5 <= d6), lambda: c),                                            # vertex c
        ((d3 >= 0) & (d4 <= d3), lambda: b),                                            # vertex b
        ((d1 <= 0) & (d2 <= 0), lambda: a),                                             # vertex a
    ]
    for mask, value in cases:
        out = np.where(mask[..., None], value(), out)
    return out


def _closest_on_triangles_parts(p, a, b, c):
    """:func:`_closest_on_triangles` on coordinates held apart: p a list of ndim arrays broadcasting against
    the corners' (a, b, c: lists of ndim arrays (m, k)) -> list of ndim arrays (m, k). The same operations in
    the same order, each on a contiguous (m, k) array instead of the strided last axis of (m, k, 3) arrays
    (a dot product as numpy's sum over that axis adds, (x0 y0 + x1 y1) + x2 y2): bit for bit the same points,
    in a third of the time."""
    def dot(u, v):
        out = u[0] * v[0]
        for d in range(1, len(u)):
            out = out + u[d] * v[d]
        return out
    ab = [bd - ad for ad, bd in zip(a, b)]
    ac = [cd - ad for ad, cd in zip(a, c)]
    ap = [pd - ad for ad, pd in zip(a, p)]
    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = [pd - bd for bd, pd in zip(b, p)]
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = [pd - cd for cd, pd in zip(c, p)]
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = 1e-300
    total = va + vb + vc
    denom = np.where(np.abs(total) > tiny, total, tiny)
    v, w = vb / denom, vc / denom
    out = [ad + v * abd + w * acd for ad, abd, acd in zip(a, ab, ac)]
    t_bc = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), tiny)
    t_ac = d2 / np.maximum(d2 - d6, tiny)
    t_ab = d1 / np.maximum(d1 - d3, tiny)
    cases = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), [bd + t_bc * (cd - bd) for bd, cd in zip(b, c)]),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), [ad + t_ac * acd for ad, acd in zip(a, ac)]),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), [ad + t_ab * abd for ad, abd in zip(a, ab)]),
        ((d6 >= 0) & (d5 <= d6), c),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d1 <= 0) & (d2 <= 0), a),
    ]
    for mask, value in cases:
        out = [np.where(mask, vd, od) for vd, od in zip(value, out)]
    return out


def node_points(log_teff, logg, logz):
    """(log10 Teff, log g, [M/H]) -> node coordinates (n, 3), each in grid steps (NODE_STEPS)."""
    return np.stack([log_teff, logg, logz], 1) / np.asarray(NODE_STEPS)


def tabulate_tail(wavelength, log_ratio_ref, tail, library_id, split, library_names, libraries=None,
                  stand_ins=None, red_tail=None):
    """The tail table: per library, its training nodes' tail pixels in the network's output space.

    Parameters
    ----------
    wavelength : (n_wave,) [A]; log_ratio_ref : (n, n_wave) training targets, log10(F/(sigma T^4)) minus
        the blackbody reference (as in ``smnet_sps.train``); tail, red_tail : (n, n_wave) bool from
        :func:`wien_tail_mask` and :func:`red_tail_mask` (red_tail None: no red block); library_id, split :
        (n,) as in the model's nodes.npz (split 0 = training);
    libraries : names to tabulate (default: all); a library left out keeps the network's own tail, unless
        it has a stand-in.
    stand_ins : dict, library left out -> tabulated library whose tail it takes (``{"basel22": "ck04"}``).

    Returns
    -------
    dict of arrays for ``np.savez_compressed``, per library: ``node:<name>`` (indices into nodes.npz),
    ``log_ratio:<name>`` (float16, (n_nodes, n_cols), NaN off the tail) over the first n_cols pixels, the
    blue end of the grid up to the library's reddest Wien-tail pixel, and ``red_log_ratio:<name>`` likewise
    over the last pixels, from the library's bluest Rayleigh-Jeans-tail pixel to the red end.
    """
    n_wave = np.size(wavelength)
    table = {"format": np.array(TAIL_FORMAT), "wavelength": np.asarray(wavelength, float)}
    for j, name in enumerate(library_names):
        if libraries is not None and name not in libraries:
            continue
        nodes = np.flatnonzero((np.asarray(library_id) == j) & (np.asarray(split) == 0))
        blue, red = tail[nodes], (red_tail[nodes] if red_tail is not None else None)
        cols = np.flatnonzero(blue.any(0))
        n_cols = int(cols.max()) + 1 if cols.size else 0
        start = n_wave
        if red is not None:
            cols = np.flatnonzero(red.any(0))
            start = int(cols.min()) if cols.size else n_wave
            if start < n_cols:
                # the two sides overlap across the library's nodes: the blue block takes both sides' pixels
                # up to its end, the red block starts there (each side keeps a block, so the red side is
                # never mistaken for one without). Known limit: for a stand-in, the red-side pixels inside
                # the blue block get the Wien side's depth and no Teff-range weight (no shipped table has
                # such an overlap: CK04's blocks end at pixel 294 and start at 980)
                blue, start = blue | red, n_cols
        table[f"node:{name}"] = nodes.astype(np.int32)
        table[f"log_ratio:{name}"] = np.where(blue[:, :n_cols], log_ratio_ref[nodes, :n_cols],
                                              np.nan).astype(np.float16)
        if red is not None:
            table[f"red_log_ratio:{name}"] = np.where(red[:, start:], log_ratio_ref[nodes, start:],
                                                      np.nan).astype(np.float16)
    for name, stand_in in (stand_ins or {}).items():
        if f"node:{stand_in}" not in table or f"node:{name}" in table:
            raise ValueError(f"stand-in {name}={stand_in}: {stand_in!r} must be tabulated and {name!r} not")
        table[f"stand_in:{name}"] = np.array(stand_in)
    return table


def save_table(table, path):
    """Write a tail table (:func:`tabulate_tail`'s dict) to ``path`` atomically (an interrupted write never
    leaves half a file); returns its sha256 (config.json's ``tail_sha256``)."""
    from .checksums import file_sha256
    with atomic_output(path, overwrite=True, option="tail table") as partial:
        np.savez_compressed(partial, **table)
        sha = file_sha256(partial)
    return sha


def write_tail_table(model_dir, grid_path, libraries=None, stand_ins=None):
    """Tabulate the untrained tails (both sides) of a model's training nodes from its grid into
    ``model_dir/tail.npz``.

    ``libraries``: the names to tabulate (default all); the others keep the network's own tail (the shipped
    model leaves out BaSeL 2.2 and CM87, whose copies came from GPL-3 repositories: the table holds pieces of
    the spectra themselves, not a fit). ``stand_ins``: library left out -> tabulated library whose tail it
    takes (the shipped model: BaSeL 2.2 takes CK04's, whose Kurucz models BaSeL's above 3,500 K are
    corrections of; giants cooler than CK04's nodes take its 3,500 K face).

    Records ``tail_file`` and ``tail_sha256`` in config.json (checked when the model is loaded). The grid
    must be the one the model was trained on: its nodes are checked against the model's nodes.npz.
    """
    from .grid import load_grid
    from .model import blackbody_log_ratio
    from .neural import read_model_config       # here: neural imports this module
    from .train import log_ratio_targets

    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    cfg = read_model_config(model_dir)
    if cfg.get("arch") not in ("mlp", "mlp_experts") or cfg.get("reference") != "blackbody":
        raise ValueError(f"{model_dir}: a tail table is for a model trained by smnet-sps (arch 'mlp' or "
                         f"'mlp_experts', blackbody reference); this one has arch {cfg.get('arch')!r}, "
                         f"reference {cfg.get('reference')!r}")
    if "tail_floor" not in cfg:
        raise ValueError(f"{cfg_path} records no tail_floor: the pixels its training left out are unknown")
    tail_floor = float(cfg["tail_floor"])
    if not tail_floor > 0:
        raise ValueError(f"{model_dir}: trained with tail_floor = {tail_floor} (every pixel in the loss); it "
                         "has no untrained tail to fill")
    nodes_path = model_dir / cfg.get("nodes_file", "nodes.npz")
    if not nodes_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {nodes_path.name} (its training nodes and split)")
    remedy = "the file is truncated or corrupt: retrain the model or put back a good copy"
    need = ("teff", "logg", "logz", "library_id", "split")
    nodes = read_npz(nodes_path, "nodes file", remedy, keys=need)
    if len(nodes) < len(need):
        raise ValueError(f"{nodes_path} is not a readable nodes file (no {sorted(set(need) - set(nodes))} "
                         f"arrays); {remedy}")
    names = list(cfg["library_names"])
    if isinstance(libraries, str):
        libraries = [name.strip() for name in libraries.split(",") if name.strip()]
    if libraries is not None and len(libraries) == 0:
        raise ValueError(f"no library to tabulate; give some of {names} (or none of the option for all)")
    stand_ins = dict(stand_ins or {})
    unknown = sorted((set(libraries or ()) | set(stand_ins) | set(stand_ins.values())) - set(names))
    if unknown:
        raise ValueError(f"unknown libraries {unknown}; {model_dir} knows {names}")
    boxes = cfg.get("library_boxes", {})
    for name, stand_in in stand_ins.items():
        (a0, a1), (b0, b1) = boxes[name]["teff"], boxes[stand_in]["teff"]
        if a1 < b0 or b1 < a0:
            raise ValueError(f"stand-in {name}={stand_in}: their Teff ranges do not overlap ({a0:g}-{a1:g} K "
                             f"and {b0:g}-{b1:g} K); a stand-in must cover some of the same stars")
    grid = load_grid(grid_path)
    same = (grid.teff.shape == nodes["teff"].shape and list(grid.library_names) == names
            and np.array_equal(grid.teff, nodes["teff"]) and np.array_equal(grid.logg, nodes["logg"])
            and np.array_equal(grid.logz, nodes["logz"])
            and np.array_equal(grid.library_id, nodes["library_id"]))
    if not same:
        raise ValueError(f"{grid_path} is not the grid {model_dir} was trained on (its nodes differ from "
                         f"nodes.npz; the model records grid_file {cfg.get('grid_file')!r})")
    model_wl = np.load(model_dir / cfg.get("wavelength_file", "wavelength.npy"))
    # shapes first: a grid built on other pixels (build_grid(wavelength=...)) made np.allclose fail with
    # "operands could not be broadcast together with shapes (611,) (1221,)"
    if grid.wavelength.shape != model_wl.shape or not np.allclose(grid.wavelength, model_wl):
        def describe(wl):
            return f"{wl.size} pixels, {wl.min():g}-{wl.max():g} A" if wl.size else "0 pixels"
        raise ValueError(f"{grid_path}: its wavelength grid ({describe(grid.wavelength)}) differs from the "
                         f"model's ({describe(model_wl)}); give the grid {model_dir} was trained on "
                         f"(grid_file {cfg.get('grid_file')!r})")
    # nodes train(exclude_nodes=...) left out (a cross-validation fold) are no training nodes: as when the
    # model was trained, their spectra stay out of the table. An expert model records those of its specialists
    # per library (build_expert_model left them out of its table; rewriting it here brought them back)
    split = np.array(nodes["split"], copy=True)
    records = (cfg.get("experts") or {}).get("libraries") or {}
    try:
        lists = [cfg.get("excluded_nodes")] + [r.get("excluded_nodes") for r in records.values()]
        excluded = np.concatenate([np.asarray(v or [], dtype=np.int64).reshape(-1) for v in lists])
    except (TypeError, ValueError, AttributeError):
        excluded = None
    if excluded is None or (excluded.size and (excluded.min() < 0 or excluded.max() >= split.size)):
        raise ValueError(f"{cfg_path}: excluded_nodes must be a list of node indices in [0, {split.size}); "
                         "the config is damaged")
    split[excluded] = -1
    log_ratio = log_ratio_targets(grid.flux, grid.mask, grid.teff)
    known = grid.mask & np.isfinite(log_ratio)
    log_ratio_ref = log_ratio - blackbody_log_ratio(grid.wavelength, grid.teff).astype(np.float32)
    table = tabulate_tail(grid.wavelength, log_ratio_ref,
                          wien_tail_mask(grid.wavelength, grid.flux, known, tail_floor), grid.library_id,
                          split, names, libraries, stand_ins,
                          red_tail=red_tail_mask(grid.wavelength, grid.flux, known, tail_floor))
    # each file written beside its target and renamed over it: an interrupted call leaves the old pair, or
    # (between the two renames) a table that config.json's tail_sha256 does not match, which loading refuses
    out = model_dir / TAIL_FILE
    cfg["tail_file"] = TAIL_FILE
    cfg["tail_sha256"] = save_table(table, out)
    with atomic_output(cfg_path, overwrite=True, option="model config") as partial_cfg:
        partial_cfg.write_text(json.dumps(cfg, indent=1))
    return out


def write_without_nodes(path, out, nodes):
    """Copy the tail table ``path`` to ``out`` without the given node indices (nodes a member network was not
    trained on, e.g. a cross-validation fold), written atomically; returns ``out``'s sha256."""
    drop = np.asarray(sorted({int(i) for i in nodes}), np.int64)
    data = read_npz(path, "tail table")
    for key in [k for k in data if k.startswith("node:")]:
        name = key[len("node:"):]
        keep = ~np.isin(data[key], drop)
        for block in (f"log_ratio:{name}", f"red_log_ratio:{name}"):
            if block in data:
                data[block] = data[block][keep]
        data[key] = data[key][keep]
    return save_table(data, out)


def _read_table(path, library_names, n_wave):
    """The arrays of a tail.npz, checked; ValueError naming the file otherwise."""
    data = read_npz(path, "tail table")
    if str(data.get("format", "")) != TAIL_FORMAT:
        raise ValueError(f"{path}: format {str(data.get('format'))!r}, expected {TAIL_FORMAT!r}")
    for name in library_names:
        if f"node:{name}" not in data and f"log_ratio:{name}" not in data:
            continue                        # not tabulated: the network's own tail
        if f"node:{name}" not in data or f"log_ratio:{name}" not in data:
            raise ValueError(f"{path}: the table of library {name!r} is incomplete")
        idx = data[f"node:{name}"]
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{path}: node indices of {name!r} must be a 1-d integer array; got {idx.dtype} "
                             f"of shape {idx.shape}")
        blocks = [k for k in (f"log_ratio:{name}", f"red_log_ratio:{name}") if k in data]
        if sum(data[k].shape[1] if data[k].ndim == 2 else 0 for k in blocks) > n_wave:
            raise ValueError(f"{path}: the blocks of {name!r} hold more than the model's {n_wave} pixels")
        for key in blocks:
            values = data[key]
            if values.ndim != 2 or values.shape[0] != idx.size or values.shape[1] > n_wave:
                raise ValueError(f"{path}: table {key!r} has shape {values.shape}, inconsistent with its "
                                 f"{idx.size} nodes and {n_wave} pixels")
            # log10 F / pi B of real spectra lies within tens of dex; more is a damaged table (inf flux)
            finite = values[np.isfinite(values)]
            if np.isinf(values).any() or (finite.size and np.abs(finite.astype(float)).max() > MAX_LOG_RATIO):
                raise ValueError(f"{path}: table of {name!r} holds values beyond +-{MAX_LOG_RATIO:g} dex")
    return data


class _LibraryTail:
    """One library's training nodes: triangulation (host) and tail values (tensors per device/dtype).

    A query point is first clipped to the nodes' bounding box (as the network input is held at its box):
    a cooler giant than the coolest node takes the interpolation on that face, continuous across it.
    Where the clipped point is still outside the nodes' hull (holes, corners) it is projected onto the hull;
    the nearest node stands in only where the nodes have no hull (fewer than ndim + 2, which qhull needs, or
    all on a plane).
    """

    def __init__(self, points, values, red_values=None, n_wave=None):
        from scipy.spatial import Delaunay, QhullError, cKDTree
        self.values = values
        self.n_cols = values.shape[1]
        # the table's blocks: (first pixel, values (n_nodes, n_cols) with NaN off the tail, True for the blue
        # block, whose tail ends toward the peak on its red side)
        self.blocks = [(0, values, True)] if self.n_cols else []
        if red_values is not None and red_values.shape[1]:
            self.blocks.append((n_wave - red_values.shape[1], red_values, False))
        # dimensions along which the nodes vary (a single-[M/H] library is triangulated in 2-D)
        self.kept = np.flatnonzero(np.ptp(points, axis=0) > 0) if len(points) > 1 else np.array([], int)
        self.ndim = self.kept.size
        nodes = points[:, self.kept]
        self.lo, self.hi = (nodes.min(0), nodes.max(0)) if self.ndim else (np.zeros(0), np.zeros(0))
        self.tree = cKDTree(nodes) if self.ndim else None     # no dimension: one node (or copies), node 0
        self.tri = None                  # None: 1-D (sorted nodes) or too few nodes (nearest node only)
        if self.ndim >= 2 and len(nodes) > self.ndim:
            # Triangulated after a fixed shear: on a regular lattice every cell's corners are cospherical,
            # so qhull returns flat simplices (13 % for CK04) whose NaN transforms make locating a point fall
            # back to a search of every simplex (190 us per point instead of 2). Barycentric weights are
            # affine invariant, so the shear changes no weight, only which diagonal splits each cell.
            self.shear = SHEAR[:self.ndim, :self.ndim]
            try:
                self.tri = Delaunay(nodes @ self.shear.T, qhull_options="Qbb Qc Q12")
            except QhullError:           # nodes on one hyperplane: nearest node only
                self.tri = None
            if self.tri is not None:
                self.flat = ~np.isfinite(self.tri.transform).all(axis=(1, 2))
                self.hull_planes, self.hull_depth = _hull_planes(self.tri.points)
                # the hull's facets (in sheared coordinates), for projecting points outside it onto it
                self.facets = self.tri.points[self.tri.convex_hull]                # (n_facets, ndim, ndim)
                # outward unit normals and offsets of the hull's facets: the closest point of the hull to a
                # point outside it lies on a facet that faces the point (positive distance to its plane)
                edges = self.facets[:, 1:] - self.facets[:, :1]
                normal = (np.cross(edges[:, 0], edges[:, 1]) if self.ndim == 3
                          else np.stack([-edges[:, 0, 1], edges[:, 0, 0]], 1))
                normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
                inward = self.tri.points.mean(0) - self.facets[:, 0]
                normal *= np.where((normal * inward).sum(1) > 0, -1.0, 1.0)[:, None]
                self.facet_normal, self.facet_offset = normal, -(normal * self.facets[:, 0]).sum(1)
                # bounding spheres of the facets: with the planes' heights, a lower bound on a point's
                # distance to each facet, so that only the few facets near its closest point are measured
                self.facet_centre = self.facets.mean(1)
                # the same per coordinate, each contiguous (_project_among, _closest_parts)
                dims = range(self.ndim)
                self.facet_corner_parts = [[np.ascontiguousarray(self.facets[:, v, d]) for d in dims]
                                           for v in dims]
                self.facet_centre_parts = [np.ascontiguousarray(self.facet_centre[:, d]) for d in dims]
                self.facet_normal_parts = [np.ascontiguousarray(normal[:, d]) for d in dims]
                self.facet_radius = np.linalg.norm(self.facets - self.facet_centre[:, None], axis=2).max(1)
                # a point's candidates: the small facets whose centres are nearest (a k-d tree) and the few
                # large ones (CK04: 2,476 facets, 121 of them large), instead of bounds on every facet
                small = self.facet_radius <= SMALL_FACET
                self.small_facets, self.large_facets = np.flatnonzero(small), np.flatnonzero(~small)
                self.small_radius = self.facet_radius[small].max() if small.any() else 0.0
                self.centre_tree = cKDTree(self.facet_centre[small]) if small.any() else None
                # the simplices around each node (padded with -1), for points on an edge or at a node
                owner = np.repeat(np.arange(len(self.tri.simplices)), self.ndim + 1)
                node = self.tri.simplices.ravel()
                order = np.argsort(node, kind="stable")
                count = np.bincount(node, minlength=len(nodes))
                slot = np.arange(node.size) - np.repeat(np.cumsum(count) - count, count)
                self.incident = np.full((len(nodes), max(int(count.max()), 1)), -1, np.int64)
                self.incident[node[order], slot] = owner[order]
        if self.ndim == 1:
            self.axis, self.order = np.unique(nodes[:, 0], return_index=True)    # copies of a node: once
        self._tensors = {}

    def locate(self, points):
        """Per query point (node coordinates, grid steps): vertex indices (n, 4), simplex (n,) (-1 where the
        nearest node stands in), the point projected onto the hull (n, 3; kept dimensions first, NaN where the
        point was inside it) and the point held on the hull (n, 3: clipped to the nodes' bounding box, then,
        outside the hull, projected onto it; unchanged along dimensions the nodes do not vary in, and where
        the nodes have no hull: continuous in the query point, unlike the nearest node).

        Vertex slots: the ndim nodes whose barycentric weights the inverse transform gives, padding (weight
        0), then the simplex's last node.
        """
        q = np.clip(points[:, self.kept], self.lo, self.hi)
        n = len(q)
        verts = np.zeros((n, 4), np.int64)
        simplex = np.full(n, -1, np.int64)
        if self.tri is not None:
            # a point on a face of the hull (clipped there, or a node's Teff) sits ~1e-14 outside it after
            # the shear: a tolerance keeps it in its simplex instead of sending it through the projection
            simplex = self._find(q @ self.shear.T, LOCATE_TOL)
            inside = np.flatnonzero(simplex >= 0)
            verts[inside] = self._slots(simplex[inside])
        elif self.ndim == 1 and len(self.axis) > 1:
            x = q[:, 0]
            k = np.clip(np.searchsorted(self.axis, x) - 1, 0, len(self.axis) - 2)
            simplex = k.astype(np.int64)              # clipped: always between two nodes
            verts[:, :3] = self.order[k][:, None]
            verts[:, 3] = self.order[k + 1]
        projected = np.full((n, 3), np.nan)
        held = np.array(points, dtype=float)
        held[:, self.kept] = q
        outside = np.flatnonzero(simplex < 0)
        if outside.size and self.tri is not None:
            # outside the hull (a grid's holes, e.g. CK04's hot low-gravity corner): the closest point of the
            # hull, continuous in the query point, unlike the nearest node
            sheared = self._project(q[outside] @ self.shear.T)
            on_hull = sheared @ np.linalg.inv(self.shear).T
            held[np.ix_(outside, self.kept)] = on_hull
            s2 = self._find(sheared, PROJECT_TOL)
            hit = s2 >= 0
            rows = outside[hit]
            simplex[rows] = s2[hit]
            verts[rows] = self._slots(s2[hit])
            projected[rows, :self.ndim] = on_hull[hit]
        outside = simplex < 0
        if outside.any() and self.tree is not None:
            verts[outside] = np.asarray(self.tree.query(q[outside])[1])[:, None]
        return verts, simplex, projected, held

    def _slots(self, simplex):
        """The vertex slots of :meth:`locate` for simplices ``simplex``: the first ndim nodes, padding (the
        first node again, weight 0), then the last node."""
        corners = self.tri.simplices[simplex]
        return np.concatenate([corners[:, :self.ndim], np.repeat(corners[:, :1], 3 - self.ndim, axis=1),
                               corners[:, self.ndim:]], 1)

    def _find(self, x, tol):
        """The simplex holding each point x (sheared coordinates; -1: none, or a flat one), the same whatever
        the other points. qhull's walk starts from the previous point's simplex, so a point on a face shared
        by two simplices could land in either (their weights then differ by rounding): such a point takes the
        lower-numbered of the two; a point on an edge or a vertex (several zero coordinates) the first simplex
        of all that hold it. "On" is judged loosely (NEAR_FACE, well above ``tol``), so that the simplex qhull
        happened to return cannot change which rule applies."""
        # qhull's walk to a point outside the hull is long (CK04: 37 us a point, 1.2 us inside): a point
        # beyond a plane of the hull by more than any of its tolerances can accept (_hull_planes) is none's
        simplex = np.full(len(x), -1, np.int64)
        ask = np.arange(len(x))
        if self.hull_planes is not None and len(x):
            margin = 2.0 * (self.ndim + 1) * np.sqrt(max(tol, 100 * np.finfo(float).eps)) * self.hull_depth
            height = x @ self.hull_planes[:, :-1].T + self.hull_planes[:, -1]
            ask = np.flatnonzero(~(height > margin).any(1))
        # and it walks from the previous point's simplex: in grid-cell order the walks are short (CK04, 6,700
        # random stars inside: 126 -> 1.2 ms); which simplex a point gets does not depend on it (below)
        order = ask[np.lexsort(np.floor(x[ask]).T[::-1])] if ask.size > 1 else ask
        simplex[order] = self.tri.find_simplex(x[order], tol=tol)
        found = np.flatnonzero(simplex >= 0)
        if found.size:
            zero = self._barycentric(x[found], simplex[found]) <= NEAR_FACE
            one = zero.sum(1) == 1
            rows = found[one]
            across = self.tri.neighbors[simplex[rows], np.argmax(zero[one], axis=1)]     # -1: a hull face
            lower = across >= 0
            lower[lower] = across[lower] < simplex[rows[lower]]
            if lower.any():
                inside = self._barycentric(x[rows[lower]], across[lower]).min(1) >= -tol
                simplex[rows[lower][inside]] = across[lower][inside]
            several = found[zero.sum(1) > 1]
            if several.size:
                # every simplex holding a point on an edge or at a node holds its heaviest node
                bary = self._barycentric(x[several], simplex[several])
                heaviest = self.tri.simplices[simplex[several], np.argmax(bary, axis=1)]
                cand = self.incident[heaviest]                                   # (k, max degree), -1 pads
                inside = np.full(cand.shape, False)
                for col in range(cand.shape[1]):
                    ok = cand[:, col] >= 0
                    if ok.any():
                        inside[ok, col] = self._barycentric(x[several[ok]], cand[ok, col]).min(1) >= -tol
                first = np.where(inside, cand, np.iinfo(np.int64).max).min(1)
                simplex[several] = np.where(inside.any(1), first, simplex[several])
        simplex[simplex >= 0] = np.where(self.flat[simplex[simplex >= 0]], -1, simplex[simplex >= 0])
        return simplex

    def _barycentric(self, x, simplex):
        """All ndim + 1 barycentric coordinates of points x (sheared) in the given simplices."""
        tr = self.tri.transform[simplex]
        b = np.einsum("mij,mj->mi", tr[:, :self.ndim], x - tr[:, self.ndim])
        return np.concatenate([b, 1.0 - b.sum(1, keepdims=True)], 1)

    def _project(self, x):
        """Closest points of the hull to points x (m, ndim) outside it, in sheared coordinates: the nearest of
        the closest points on the facets that face x (exact for a convex hull; ties go to the lower facet
        number), PROJECT_CHUNK points at a time (their (points, facets) arrays then stay in the L3 cache).

        Measuring every facing facet cost up to a few ms per point far from the hull, and bounding every
        facet's distance still 50-500 us for CK04. So a point's candidates are first the facets near it
        (:meth:`_near_facets`, PROJECT_NEAR[0] small ones), then, where the closest point found is not nearer
        than every facet left out, more (PROJECT_NEAR[1]), then all. Each search measures a facet only if a
        lower bound on its distance (from its plane's height and its bounding sphere) is within the distance
        found (:meth:`_project_among`).
        """
        closest = np.empty_like(x)
        for start in range(0, len(x), PROJECT_CHUNK):
            xs = x[start:start + PROJECT_CHUNK]
            todo = np.arange(len(xs))
            for near in PROJECT_NEAR + (None,):
                ids, reach = self._near_facets(xs[todo], near)
                out, best = self._project_among(xs[todo], ids)
                closest[start + todo] = out
                # a facet left out is at least ``reach`` away: where the best is not nearer, it could win
                todo = todo[~(best * (1 + 1e-9) + 1e-9 < reach)]
                if not todo.size:
                    break
        return closest

    def _near_facets(self, xs, near):
        """Candidate facets of points xs: (m, C) facet numbers, ascending (the large facets and the ``near``
        small ones whose centres are nearest), and per point the distance within which no other facet lies:
        the last of those centres' distance less the largest small radius. (None, inf): every facet is a
        candidate (``near`` None, or at least the number of small facets)."""
        k = len(self.small_facets) if near is None else min(near, len(self.small_facets))
        if k == len(self.small_facets):
            return None, np.full(len(xs), np.inf)
        dist, near = self.centre_tree.query(xs, k=k)
        dist, near = dist.reshape(len(xs), k), near.reshape(len(xs), k)
        large = np.broadcast_to(self.large_facets, (len(xs), len(self.large_facets)))
        ids = np.sort(np.concatenate([self.small_facets[near], large], 1), axis=1)     # facet order: ties
        return ids, dist[:, -1] - self.small_radius - 1e-6

    def _project_among(self, xs, ids):
        """:meth:`_project` of points xs among candidate facets ``ids`` ((m, C) facet numbers, ascending;
        None: all facets): (closest points (m, ndim), their distances (m,); inf where no candidate faces the
        point, which is then left as it is).

        The PROJECT_FIRST candidates of lowest bound are measured first, then, for the points where more
        bounds are within the distance found (e.g. a hull corner, where ~20 facets meet at the closest
        point), all of those.
        """
        def facet(values):                       # a per-facet array, per point's candidate (or all facets)
            return values if ids is None else values[ids]

        def numbers(cols, among=slice(None)):    # candidate columns -> facet numbers (-1 stays -1)
            if ids is None:
                return cols
            return np.where(cols >= 0, np.take_along_axis(ids[among], np.maximum(cols, 0), 1), -1)
        rows = np.arange(len(xs))
        # elementwise, not a matrix product: BLAS rounds a row differently in batches of different sizes,
        # and whether a facet faces the point must not depend on the batch (per coordinate, contiguous (m,
        # candidates) arrays: the same sums as over the last axis of (m, candidates, ndim) ones, faster)
        normal = self.facet_normal_parts
        height = facet(self.facet_offset) + xs[:, :1] * facet(normal[0])             # (m, candidates)
        for axis in range(1, self.ndim):
            height = height + xs[:, axis:axis + 1] * facet(normal[axis])
        # The facet lies in its plane within its bounding sphere: its distance is at least the height
        # combined with the in-plane distance from the foot of x to that sphere. For all facets |x - c|^2 is
        # expanded (no (m, n_facets, ndim) array); the 1e-6 covers its rounding (~1e-10 for coordinates of a
        # few hundred grid steps, as here, against the smallest facet radius, ~0.3).
        if ids is None:
            square = ((xs ** 2).sum(1)[:, None] - 2 * xs @ self.facet_centre.T
                      + (self.facet_centre ** 2).sum(1))
        else:
            centre = self.facet_centre_parts
            square = (xs[:, :1] - centre[0][ids]) ** 2
            for axis in range(1, self.ndim):
                square = square + (xs[:, axis:axis + 1] - centre[axis][ids]) ** 2
        in_plane = np.sqrt(np.maximum(square - height ** 2, 0.0)) - facet(self.facet_radius) - 1e-6
        bound = np.sqrt(height ** 2 + np.maximum(in_plane, 0.0) ** 2) - 1e-9
        bound = np.where(height > -1e-12, bound, np.inf)                                # inf: not facing
        k = max(1, min(PROJECT_FIRST, bound.shape[1]))
        cand = (np.argpartition(bound, k - 1, axis=1)[:, :k] if k < bound.shape[1]
                else np.broadcast_to(np.arange(k), bound.shape))
        cand = np.sort(cand, axis=1)                                      # facet order, for the ties
        cand = np.where(np.isfinite(np.take_along_axis(bound, cand, 1)), cand, -1)
        d, closest = self._facet_distances(xs, numbers(cand))
        best = d.min(1)
        # a facet whose bound is within the distance found (to rounding) could be as near: measured too
        within = (bound <= np.sqrt(best[:, None]) * (1 + 1e-9) + 1e-12) & np.isfinite(bound)
        more = np.flatnonzero(within.sum(1) > (cand >= 0).sum(1))
        # the closest point on the nearest facet, as measured (the same arithmetic as measuring it again)
        col = np.argmin(d, axis=1)
        out = np.stack([part[rows, col] for part in closest], 1)
        if more.size:
            width = int(within[more].sum(1).max())
            wide = np.argsort(~within[more], axis=1, kind="stable")[:, :width]         # in facet order
            wide = numbers(np.where(np.take_along_axis(within[more], wide, 1), wide, -1), more)
            d, closest = self._facet_distances(xs[more], wide)
            best[more] = d.min(1)
            col = np.argmin(d, axis=1)
            out[more] = np.stack([part[np.arange(len(more)), col] for part in closest], 1)
        # no facet faces a point inside the hull (not reached: _find found none there): left as it is
        none = (cand < 0).all(1)
        out[none] = xs[none]
        return out, np.sqrt(best)

    def _closest_parts(self, xs, cand):
        """Closest points of facets cand (m, k; -1: none, facet 0 stands in) to points xs, as ndim arrays
        (m, k), one per coordinate."""
        f = np.maximum(cand, 0)
        if self.ndim == 2:
            seg = self.facets[f]
            closest = _closest_on_segments(xs, seg[:, :, 0], seg[:, :, 1])
            return [closest[..., d] for d in range(2)]
        corners = [[part[f] for part in vertex] for vertex in self.facet_corner_parts]
        return _closest_on_triangles_parts([xs[:, d:d + 1] for d in range(3)], *corners)

    def _facet_distances(self, xs, cand):
        """Squared distances (m, k) from points xs to facets cand (inf where cand is -1), and the closest
        points (:meth:`_closest_parts`)."""
        closest = self._closest_parts(xs, cand)
        square = (closest[0] - xs[:, :1]) ** 2
        for d in range(1, self.ndim):
            square = square + (closest[d] - xs[:, d:d + 1]) ** 2
        return np.where(cand >= 0, square, np.inf), closest

    def weights(self, points, simplex, projected=None):
        """Barycentric weights (m, 4), float64 torch, differentiable in ``points`` (node coordinates, all
        three dimensions); in :meth:`locate`'s vertex slots; (1, 0, 0, 0) where the nearest node stands in.
        ``projected`` (m, 3): where finite, the point's projection onto the hull (kept dimensions first),
        used instead of it (a constant: no derivative outside the hull)."""
        inside = simplex >= 0
        w = torch.zeros((points.shape[0], 4), dtype=torch.float64, device=points.device)
        w[:, 0] = 1.0
        if not bool(inside.any()):
            return w
        dev = points.device
        q = points[inside][:, self._tensor("kept", dev, torch.long, lambda: self.kept)]
        q = torch.clamp(q, self._tensor("lo", dev, torch.float64, lambda: self.lo),
                        self._tensor("hi", dev, torch.float64, lambda: self.hi))
        if projected is not None:
            proj = projected[inside][:, :self.ndim].to(torch.float64)
            q = torch.where(torch.isfinite(proj), proj, q)
        k = simplex[inside]
        if self.tri is not None:
            tr = self._tensor("transform", dev, torch.float64, lambda: self.tri.transform)[k]
            q = q @ self._tensor("shear", dev, torch.float64, lambda: self.shear).T
            b = torch.einsum("mij,mj->mi", tr[:, :self.ndim, :], q - tr[:, self.ndim, :])
        else:
            axis = self._tensor("axis", dev, torch.float64, lambda: self.axis)
            b = ((axis[k + 1] - q[:, 0]) / (axis[k + 1] - axis[k]))[:, None]
        pad = b.new_zeros((b.shape[0], 3 - self.ndim))
        return w.index_copy(0, inside.nonzero()[:, 0], torch.cat([b, pad, 1.0 - b.sum(1, keepdim=True)], 1))

    def _tensor(self, key, device, dtype, make):
        k = (key, str(device), dtype)
        if k not in self._tensors:
            self._tensors[k] = torch.as_tensor(np.asarray(make()), device=device).to(dtype)
        return self._tensors[k]

    def tables(self, device, dtype, depth=0):
        """Per block: (first pixel, which way its tail ends toward the peak, tail values with NaN -> 0, tail
        mask, each node's extent) as tensors; zeros, not NaN, so that no NaN reaches a gradient through a
        pixel that is not filled. ``depth`` > 0: in the blue block only pixels with ``depth`` more tail pixels
        redward of them count as tail. The extent is the number of the block's pixels, counted from its outer
        end, that reach the node's innermost tail pixel (0: none): a batch fills only as far as its nodes
        reach."""
        out = []
        for b, (start, values, redward) in enumerate(self.blocks):
            def tail(values=values, redward=redward):
                # a stand-in's depth keeps the edge of the Wien tail only: on the Rayleigh-Jeans side CK04 and
                # BaSeL agree, and a depth there withheld the 5 wide far-infrared pixels that begin the tail
                # (BaSeL's test nodes: p95 0.165 dex with it, 0.030 without)
                return _eroded(np.isfinite(values), depth) if redward else np.isfinite(values)

            def extent(redward=redward, tail=tail):
                deep = tail()
                inner = np.argmax(deep[:, ::-1] if redward else deep, 1)   # from the block's inner end
                return np.where(deep.any(1), deep.shape[1] - inner, 0)
            out.append((start, redward,
                        self._tensor(f"values{b}", device, dtype,
                                     lambda values=values: np.nan_to_num(values.astype(np.float32))),
                        self._tensor(f"tail{b},{depth}", device, torch.bool, tail),
                        self._tensor(f"extent{b},{depth}", device, torch.int64, extent)))
        return out


def _hull_planes(points):
    """The distinct planes of the convex hull of ``points`` (m, ndim; sheared node coordinates) as rows
    (unit outward normal, offset), and how far below each the farthest point lies; (None, None) where qhull
    finds no hull.

    For :meth:`_LibraryTail._find`: a point p with height h = normal . p + offset > 0 has, in any simplex of
    the nodes, a barycentric coordinate below -h / ((ndim + 1) depth) (the nodes' heights are in [-depth, 0]
    and their weights sum to 1), so beyond 2 (ndim + 1) sqrt(tol) depth neither qhull's walk (tolerance tol)
    nor its brute-force search (sqrt(tol) toward a degenerate simplex) can place it in one."""
    from scipy.spatial import ConvexHull, QhullError
    try:
        eq = ConvexHull(points).equations
    except (QhullError, ValueError):
        return None, None
    planes = np.unique(np.round(eq, 12), axis=0)
    depth = np.maximum(-(points @ planes[:, :-1].T + planes[:, -1]).min(0), 0.0)
    return planes, depth


def node_hull(points):
    """The triangulated hull of one library's nodes (n, 3; node coordinates, grid steps), without tail values:
    its ``locate`` holds points on it (:mod:`smnet_sps.neural` evaluates a library's network there)."""
    return _LibraryTail(np.asarray(points, float), np.zeros((len(points), 0), np.float32))


def _eroded(tail, depth):
    """Tail pixels with at least ``depth`` tail pixels redward of them (beyond the table: not tail)."""
    deep = tail.copy()
    for k in range(1, depth + 1):
        deep[:, :-k] &= tail[:, k:]
        deep[:, -k:] = False
    return deep


class UntrainedTails:
    """The tail table of a model, ready to fill a network's output (see the module docstring).

    Parameters
    ----------
    path : the model's tail.npz; nodes : dict of the model's nodes.npz arrays; library_names : list;
    n_wave : the model's number of pixels.
    """

    def __init__(self, path, nodes, library_names, n_wave, wavelength=None, tail_floor=None):
        data = _read_table(path, library_names, n_wave)
        self.library_names = list(library_names)
        points = node_points(np.log10(nodes["teff"]), nodes["logg"], nodes["logz"])
        self.libraries = []
        self.node_index = {}          # library -> the model's nodes its own table holds
        for name in self.library_names:
            if f"node:{name}" not in data:
                self.libraries.append(None)         # the network's own tail, or a stand-in's (below)
                continue
            idx = data[f"node:{name}"]
            if idx.size and (idx.min() < 0 or idx.max() >= len(points)):
                raise ValueError(f"{path}: node indices of {name!r} outside the model's {len(points)} nodes")
            self.libraries.append(_LibraryTail(points[idx], data[f"log_ratio:{name}"],
                                               data.get(f"red_log_ratio:{name}"), n_wave))
            self.node_index[name] = idx
        self.stand_ins = {}
        for j, name in enumerate(self.library_names):
            stand_in = str(data[f"stand_in:{name}"]) if f"stand_in:{name}" in data else None
            if stand_in is not None:
                k = self.library_names.index(stand_in) if stand_in in self.library_names else None
                if k is None or self.libraries[k] is None:
                    raise ValueError(f"{path}: {name!r} takes the tail of {stand_in!r}, which has no table")
                self.libraries[j] = self.libraries[k]
                self.stand_ins[name] = stand_in
        # a stand-in fills only pixels STAND_IN_DEPTH pixels or more inside its own Wien tail: near the edge
        # the library's own network was trained, and there another library's tail cost BaSeL's coolest test
        # nodes UV p95 45 % -> 61 % (5 pixels: 47 %; its tail median 0.23 -> 0.24 dex)
        self.depth = [STAND_IN_DEPTH if name in self.stand_ins else 0 for name in self.library_names]
        # the Rayleigh-Jeans side of a library without a red block of its own (no table: CM87; a table from
        # before 2026-12-03) is held at the network's departure from the blackbody where the network last
        # learned (hold_): its untrained output was far off (CM87 at 40 um: 17-23x too bright), a constant
        # ratio of brightness temperature to Teff is not (CM87's nodes: median 0.003 dex). A stand-in's red
        # block serves inside the stand-in's Teff range only (BaSeL with CK04's: median 0.001-0.008 dex at
        # 10-160 um above 3,500 K), beyond it the hold (cooler BaSeL stars took CK04's 3,500 K face: 0.11 dex
        # median, 1.8x at 2,500 K; held 0.0003), blended over HOLD_BLEND dex of log Teff
        self.held_red = [lib is None or name in self.stand_ins
                         or not any(not redward for *_, redward in lib.blocks)
                         for name, lib in zip(self.library_names, self.libraries)]
        self.red_teff_range = np.tile([np.inf, -np.inf], (len(self.library_names), 1))   # log10 Teff
        for name, stand_in in self.stand_ins.items():
            if any(not redward for *_, redward in self.libraries[self.library_names.index(name)].blocks):
                teff = np.log10(nodes["teff"][self.node_index[stand_in]])
                self.red_teff_range[self.library_names.index(name)] = teff.min(), teff.max()
        self.wavelength = None if wavelength is None else np.asarray(wavelength, float)
        self.tail_floor = tail_floor
        self._steps = {}
        self._blocks = {}             # _block_tables: (library, block, columns, device, dtype) -> tables

    def locate(self, points, library_index):
        """Host side, once per batch, for points of library ``library_index`` in node coordinates (n, 3; grid
        steps, :data:`~smnet_sps.constants.NODE_STEPS`) already held inside the training box: (n, 8) float64
        -- vertex indices (4), simplex (1; -1: the nearest node), the point projected onto the nodes' hull (3;
        NaN: inside) -- and the points as located (n, 3; see :meth:`_LibraryTail.locate`)."""
        n = len(points)
        out = np.full((n, 8), np.nan)
        lib = self.libraries[library_index]
        if lib is None:
            out[:, :4], out[:, 4] = 0, -1
            return out, np.array(points, dtype=float)
        out[:, :4], out[:, 4], out[:, 5:], held = lib.locate(points)
        return out, held

    def fill_(self, log_ratio, params, libs, located):
        """In place: tail pixels of ``log_ratio`` (m, n_wave; network output space) from the nodes.

        params : (m, 3) tensor (log10 Teff, log g, [M/H]) as held inside the box (differentiable); libs (m,)
        library index; located (m, 8) float64 from :meth:`locate` (a tensor on the same device).
        """
        verts, simplex, projected = located[:, :4].long(), located[:, 4].long(), located[:, 5:]
        steps = self._steps.get(params.device)
        if steps is None:
            steps = self._steps[params.device] = torch.as_tensor(NODE_STEPS, dtype=torch.float64,
                                                                 device=params.device)
        points = params.to(torch.float64) / steps
        plan = self._hold_plan(log_ratio, params, libs)
        held_all = None
        if plan is not None:       # per row and pixel, how much it is held (0 for rows without a hold)
            held_all = torch.zeros(log_ratio.shape, dtype=log_ratio.dtype, device=log_ratio.device)
            # kept in the graph: the fill's strength follows the hold weight with its derivative
            held_all = (held_all.index_copy(0, plan[0], plan[1]) if plan[1].requires_grad
                        else held_all.index_put_((plan[0],), plan[1]))
        for j in torch.unique(libs).tolist():
            lib = self.libraries[j]
            if lib is None or not lib.blocks or len(lib.values) == 0:
                continue
            rows = (libs == j).nonzero()[:, 0]
            whole = rows.numel() == libs.numel()          # one library in this chunk: views, no row gathers
            w = lib.weights(points if whole else points[rows], simplex if whole else simplex[rows],
                            projected if whole else projected[rows])
            v = verts if whole else verts[rows]
            weights = w.to(log_ratio.dtype)
            # a stand-in's red block only inside the stand-in's Teff range: its weight there scales the fill
            # where nothing is held; where the hold acts _hold blends the full fill with the held value
            strength = held = None
            if self.held_red[j] and np.isfinite(self.red_teff_range[j, 0]):
                log_t = (params if whole else params[rows])[:, 0].to(torch.float64)
                strength = self._red_weight(torch.full_like(log_t, j, dtype=torch.long), log_t)
                strength = strength.to(log_ratio.dtype)[:, None]
                held = None if held_all is None else (held_all if whole else held_all[rows])
            for start, redward, values, tail, extent in lib.tables(log_ratio.device, log_ratio.dtype,
                                                                  self.depth[j]):
                # only as far into the block as these points' nodes have tail pixels: elsewhere the blend
                # weight is 0 and the network's output stays as it is, bit for bit
                reach = int(extent[v].max())
                if reach == 0:
                    continue
                keep = slice(0, reach) if redward else slice(values.shape[1] - reach, values.shape[1])
                block_strength = None
                if strength is not None and not redward:
                    block_strength = strength
                    if held is not None:
                        h = held[:, start + keep.start:start + keep.stop]
                        block_strength = strength + h * (1.0 - strength)
                block_values, block_tail = values[:, keep], tail[:, keep]
                if not torch.is_grad_enabled():
                    block_values, block_tail = self._block_tables(j, start, keep, block_values, block_tail,
                                                                  log_ratio.dtype)
                log_ratio = _fill_block(log_ratio, start + keep.start, block_values, block_tail, v,
                                        weights, rows, whole, block_strength)
        return log_ratio if plan is None else self._hold(log_ratio, plan)

    def _block_tables(self, j, start, keep, values, tail, dtype):
        """The columns ``keep`` of library j's block at ``start``: its values made contiguous and its tail
        mask in ``dtype``, as _fill_block_no_grad takes them, kept for the next batches (a batch's reach
        mostly repeats: random stars at 8192 a batch converted ~5 MB per chunk and block). The last
        BLOCK_CACHE made are kept (no lock: threads sharing a generator at worst make one twice)."""
        key = (j, self.depth[j], start, keep.start, keep.stop, str(values.device), dtype)
        cache = self._blocks
        got = cache.get(key)
        if got is None:
            got = cache[key] = (values.contiguous(), tail.to(dtype))
            for old in list(cache)[:-BLOCK_CACHE]:
                cache.pop(old, None)
        return got

    def _hold_plan(self, log_ratio, params, libs):
        """Where and at what the Rayleigh-Jeans tail of the libraries in :attr:`held_red` is held, read from
        the network's own output (before any fill): per row, where redward of the peak it falls below
        ``tail_floor`` x the peak (where training left out the nodes around it), the network's log10(F / pi B)
        where that floor is first crossed (continuously: a crossing bluer than another weighs in as it
        reaches deeper, up to HOLD_DEPTH), a constant ratio of brightness temperature to Teff from there on;
        with the weight of a stand-in's red block (1 inside its Teff range, 0 beyond HOLD_BLEND of it). None
        where there is nothing to hold (or an older caller gave no wavelengths or floor)."""
        held_libs = [j for j, held in enumerate(self.held_red) if held]
        if not held_libs or self.wavelength is None or not self.tail_floor:
            return None
        rows = torch.isin(libs, torch.as_tensor(held_libs, device=libs.device)).nonzero()[:, 0]
        if rows.numel() == 0:
            return None
        lr = log_ratio[rows]
        consts = self._hold_constants(log_ratio.device, lr.dtype)
        # log10 F up to a constant: the network's ratio + log10 B_lambda(T), B ~ lambda^-5 / (e^x - 1), with
        # ln(e^x - 1) = x + ln(1 - e^-x) (no overflow in the far UV of cool stars); in the network's dtype,
        # which places a threshold 6 dex below the peak well enough
        x = consts["hc_over_k"][None, :] * (10.0 ** -params[rows, 0]).to(lr.dtype)[:, None]
        log_planck = consts["minus5_log_lam"][None, :] - (x + torch.log1p(-torch.exp(-x))) / np.log(10.0)
        log_flux = lr + log_planck
        peak = log_flux.detach().argmax(1, keepdim=True)
        threshold = log_flux.gather(1, peak) + np.log10(self.tail_floor)
        # a pixel is faint if the blackbody times the smaller of its own ratio and its blue neighbour's is: an
        # untrained pixel the network made brighter (ratio ~0 where the library has -0.4) then cannot pass
        # for a learned one and be held (a 2,082 K BaSeL dwarf held one: 2.4x at 80-160 um)
        low = torch.minimum(lr, torch.cat([lr[:, :1], lr[:, :-1]], 1))
        low_flux = low + log_planck
        red = consts["cols"][None, :] > peak
        # the level held: the ratio where the floor is crossed, interpolated between the pixel before a
        # crossing and the one after, so that it moves continuously when the crossing moves from one pixel to
        # the next (the ratio of the pixel before jumped by up to 0.09 dex per K, a review found) ...
        before_flux = torch.cat([low_flux[:, :1], low_flux[:, :-1]], 1)
        before = torch.cat([low[:, :1], low[:, :-1]], 1)
        gap = before_flux - low_flux
        u = torch.where(gap > 0, (before_flux - threshold) / torch.where(gap > 0, gap, torch.ones_like(gap)),
                        torch.zeros_like(gap)).clamp(0.0, 1.0)
        crossing = before + u * (low - before)
        # ... of the first crossing, taken as each pixel's depth below the floor (up to HOLD_DEPTH) adds to
        # the greatest depth bluer than it: one pixel as deep below it as that settles the level as before,
        # while a pixel touching the floor bluer than the first crossing comes in from 0. Taking the first
        # pixel below the floor outright jumped when another dipped below it (CM87 at 78 kK, log g 6.02:
        # 0.0095 dex over 2-160 um, V-K 0.024 mag across 1e-12 dex of Teff)
        depth = torch.where(red, ((threshold - low_flux) / HOLD_DEPTH).clamp(0.0, 1.0), torch.zeros_like(low))
        reached = torch.cummax(depth, dim=1).values
        gain = torch.diff(reached, dim=1, prepend=torch.zeros_like(reached[:, :1]))
        total = reached[:, -1:]
        last_learned = (gain * crossing).sum(1, keepdim=True) / torch.where(total > 0, total,
                                                                            torch.ones_like(total))
        # how much each pixel is held: 0 above the floor by HOLD_SOFT dex, 1 below it by as much, linear
        # between and never less than at a bluer pixel of the red side, so that a pixel passing the floor
        # moves continuously (pixel by pixel it jumped between its own value and the held one); times how
        # deep the spectrum reaches below the floor, so that nothing jumps where it first touches it
        soft = ((threshold + HOLD_SOFT - low_flux) / (2 * HOLD_SOFT)).clamp(0.0, 1.0)
        soft = torch.where(red, soft, torch.zeros_like(soft))
        held = torch.cummax(soft, dim=1).values * total
        # (the blend weight follows Teff with its derivative)
        weight = self._red_weight(libs[rows], params[rows, 0].to(torch.float64))
        return rows, held, last_learned, weight.to(lr.dtype)[:, None]

    def _red_weight(self, libs, log_t):
        """Per row, the weight of the library's stand-in red block: 1 inside the stand-in's Teff range, 0
        beyond HOLD_BLEND dex of it (and for a library without one)."""
        lo, hi = (torch.as_tensor(self.red_teff_range[:, k], dtype=torch.float64, device=libs.device)[libs]
                  for k in (0, 1))
        return ((log_t - lo) / HOLD_BLEND + 1).clamp(0, 1) * ((hi - log_t) / HOLD_BLEND + 1).clamp(0, 1)

    def _hold(self, log_ratio, plan):
        """The hold of :meth:`_hold_plan` applied after the fill: each pixel moved toward the held value by
        how much it is held, less a stand-in's red-block weight (which keeps the filled value)."""
        rows, held, last_learned, inside = plan
        lr = log_ratio[rows]
        new = lr + held * (1.0 - inside) * (last_learned - lr)
        if torch.is_grad_enabled() and log_ratio.requires_grad:
            return log_ratio.index_copy(0, rows, new)
        log_ratio[rows] = new
        return log_ratio

    def _hold_constants(self, device, dtype=torch.float64):
        key = ("hold", str(device), dtype)
        if key not in self._steps:
            lam_cm = self.wavelength * 1e-8
            h, c, k = PLANCK_H, LIGHT_C, BOLTZMANN_K
            self._steps[key] = {
                "hc_over_k": torch.as_tensor(h * c / k / lam_cm, device=device).to(dtype),
                "minus5_log_lam": torch.as_tensor(-5.0 * np.log10(lam_cm), device=device).to(dtype),
                "cols": torch.arange(self.wavelength.size, device=device)}
        return self._steps[key]


# Rows per pass of the elementwise steps after the network (the tail fill, NeuralGenerator._finish_ and its
# blend) on a CPU running torch on one thread: their (rows, n_wave) temporaries, ~0.6 MB each, stay in the
# core's cache, where a network chunk's 10-20 MB ones went out to memory and back at every step (surface_flux
# on 8192 random stars 1.09-1.18x faster). Per element the same operations, bit for bit. With more threads
# every step is a parallel region whose start costs more than that (2 threads: 128-512 rows 0.61-0.85x), and
# an accelerator wants whole chunks: all rows in one pass there (docs/generator.md, "Passes in cache").
CACHE_ROWS = 128


def rows_per_pass(device, m):
    """Rows per pass of the elementwise steps over m rows on ``device`` (see CACHE_ROWS)."""
    return CACHE_ROWS if device.type == "cpu" and torch.get_num_threads() == 1 else max(m, 1)


def _fill_block(log_ratio, start, values, tail, verts, weights, rows, whole, strength=None):
    """Pixels start .. start + width of a library's table (values, tail mask) filled into ``log_ratio``;
    ``strength`` (rows, 1 or width): a factor on the blend weight (None: 1)."""
    # The tail value at a pixel is the interpolation of the nodes in their tail there (renormalised to them),
    # blended with the network's output by f^8, f = those nodes' total weight: where every node that weighs
    # is in its tail only they count, where none is the network stands, and across a simplex face, where a
    # node's weight goes to 0, the spectrum stays continuous. Only plain products and sums: pow, lerp and
    # addcmul round differently in their vectorised and scalar loops, so the last row of a chunk came out
    # 1e-6 dex apart from the same row elsewhere.
    if not torch.is_grad_enabled():
        m = verts.shape[0]
        step = rows_per_pass(log_ratio.device, m)
        for s in range(0, m, step):
            b = slice(s, s + step)
            _fill_block_no_grad(log_ratio[b] if whole else log_ratio, start, values, tail, verts[b],
                                weights[b], None if whole else rows[b], whole,
                                None if strength is None else strength[b])
        return log_ratio
    t = tail[verts[:, 0]].to(log_ratio.dtype) * weights[:, :1]
    wsum = t
    interp = values[verts[:, 0]] * t
    for k in range(1, 4):                 # slot by slot: half the time of one (m, 4, n_cols) gather
        t = tail[verts[:, k]].to(log_ratio.dtype) * weights[:, k:k + 1]
        wsum = wsum + t
        interp = interp + values[verts[:, k]] * t
    f = wsum.clamp(0.0, 1.0)
    for _ in range(BLEND_SQUARINGS):
        f = f * f
    if strength is not None:
        f = f * strength
    # (below 1e-6, f < 1e-48: the interpolation does not count, and dividing by ~0 would give NaN gradients)
    interp = interp / torch.where(wsum > 1e-6, wsum, torch.ones_like(wsum))
    cols = slice(start, start + values.shape[1])
    if not (torch.is_grad_enabled() and log_ratio.requires_grad):
        if whole:                                  # the fast path: in place
            block = log_ratio[:, cols]
            block.add_(f * (interp - block))
        else:
            old = log_ratio[rows, cols]
            log_ratio[rows, cols] = old + f * (interp - old)
        return log_ratio
    # autograd: no in-place on what backward keeps
    old = log_ratio if whole else log_ratio[rows]
    new = torch.cat([old[:, :cols.start], old[:, cols] + f * (interp - old[:, cols]), old[:, cols.stop:]], 1)
    return new if whole else log_ratio.index_copy(0, rows, new)


def _fill_block_no_grad(log_ratio, start, values, tail, verts, weights, rows, whole, strength):
    """:func:`_fill_block` without autograd: the same products and sums in the same order, in place on its
    own temporaries, the node tables made contiguous (and the mask float) once and their rows gathered with
    index_select (advanced indexing of the column slices took twice the time; random stars: 108 -> 58 ms)."""
    dtype = log_ratio.dtype
    values, mask = values.contiguous(), tail.to(dtype)
    slots = verts.t().contiguous()
    t = mask.index_select(0, slots[0]).mul_(weights[:, :1])
    wsum = t
    interp = values.index_select(0, slots[0]).mul_(t)
    for k in range(1, 4):
        t = mask.index_select(0, slots[k]).mul_(weights[:, k:k + 1])
        wsum.add_(t)
        interp.add_(values.index_select(0, slots[k]).mul_(t))
    f = wsum.clamp(0.0, 1.0)
    for _ in range(BLEND_SQUARINGS):
        f.mul_(f)
    if strength is not None:
        f.mul_(strength)
    interp.div_(torch.where(wsum > 1e-6, wsum, torch.ones_like(wsum)))
    cols = slice(start, start + values.shape[1])
    if whole:
        block = log_ratio[:, cols]
        block.add_(interp.sub_(block).mul_(f))
    else:
        old = log_ratio[rows, cols]
        log_ratio[rows, cols] = old.add_(interp.sub_(old).mul_(f))
    return log_ratio


def add_cli(sub):
    p = sub.add_parser("tail", help="tabulate a model's untrained tails from its training grid",
                       description="Write tail.npz into a model directory: the tail pixels (fainter than the "
                                   "model's tail_floor x peak, on either side of the peak) of its training "
                                   "nodes, which fill the network's output where it was never trained "
                                   "(docs/generator.md). `smnet-sps train` writes it itself; this adds it to "
                                   "a model trained before.")
    p.add_argument("--model", required=True, help="model directory (arch mlp or mlp_experts)")
    p.add_argument("--grid", required=True, help="the union grid the model was trained on (.h5)")
    p.add_argument("--libraries", default=None, help="comma-separated library names to tabulate (default: "
                                                     "all); the others keep the network's own tail")
    p.add_argument("--stand-in", action="append", default=[], metavar="LIBRARY=TABULATED",
                   help="a library left out of --libraries takes the tail of a tabulated one (repeatable), "
                        "e.g. basel22=ck04")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model's existing tail table (one config.json already records)")
    p.set_defaults(func=_cli)


def _cli(args):
    stand_ins = {}
    for item in args.stand_in:
        name, sep, stand_in = item.partition("=")
        if not sep or not name or not stand_in:
            raise ValueError(f"--stand-in {item!r}: expected LIBRARY=TABULATED, e.g. basel22=ck04")
        if name in stand_ins and stand_ins[name] != stand_in:      # the last one silently won
            raise ValueError(f"--stand-in names {name!r} twice ({name}={stand_ins[name]}, {item}); a library "
                             "takes the tail of one tabulated library")
        stand_ins[name] = stand_in
    from .neural import model_file_in_use       # here: neural imports this module
    present = model_file_in_use(args.model, "tail_file", TAIL_FILE)
    if present and not args.overwrite:
        # a tail table changes the model's spectra: replaced only when asked, as every output file is
        raise ValueError(f"{args.model}: the model already has a tail table ({present}); --overwrite "
                         "replaces it")
    out = write_tail_table(args.model, args.grid, args.libraries, stand_ins)      # a comma-separated list
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0

