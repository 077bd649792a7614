"""The generator's forward path as it was before the torch rewrite (numpy, float64 after the network, one
pass per library) and the coverage rule written out plainly: the references the new path must reproduce."""
import numpy as np
import torch
from scipy.spatial import cKDTree

from smnet_sps.constants import SIGMA_SB
from smnet_sps.model import blackbody_log_ratio
from smnet_sps.neural import COVERAGE_FACTOR, COVERAGE_NEIGHBOURS, _with_metallicity_tolerance


@torch.no_grad()
def old_surface_flux(gen, teff, logg, logz, library=None):
    teff, logg, logz = (np.atleast_1d(np.asarray(a, float)) for a in np.broadcast_arrays(teff, logg, logz))
    model = gen._model
    scaled = np.clip(gen.scale_inputs(teff, logg, logz), 0.0, 1.0)
    x = torch.as_tensor(scaled.astype(np.float32))
    norm = SIGMA_SB * teff ** 4
    mix = gen.mixture(teff, logg, logz, library)
    # since 2026-12-02 each library's input is held on the hull of its training nodes (tested on its own in
    # test_tail and test_hull_hold); where it moved, the network sees the held point
    held = gen._held_inputs(teff, logg, logz, mix)[0]
    acc = torch.zeros((len(teff), gen.wavelength.size), dtype=torch.float32)
    for j in np.flatnonzero(mix.max(0) > 0):
        rows = np.flatnonzero(mix[:, j] > 0)
        onehot = np.zeros((rows.size, mix.shape[1]), np.float32)
        onehot[:, j] = 1.0
        rows_t = torch.as_tensor(rows)
        moved = np.isfinite(held[rows, j, 0])
        xj = x[rows_t].clone()
        if moved.any():
            h = held[rows[moved], j]
            xj[torch.as_tensor(moved)] = torch.as_tensor(
                gen.scale_inputs(10 ** h[:, 0], h[:, 1], h[:, 2]).astype(np.float32))
        lr = model.log_ratio(xj, torch.as_tensor(onehot)).float()
        acc.index_add_(0, rows_t, lr * torch.as_tensor(mix[rows, j, None].astype(np.float32)))
    log_ratio = acc.numpy().astype(np.float64)
    if gen.config.get("reference", "none") == "blackbody":
        log_ratio += blackbody_log_ratio(gen.wavelength, teff)
    ratio = 10.0 ** log_ratio
    if gen.renormalise:
        ratio /= np.trapezoid(ratio, gen.wavelength, axis=1)[:, None]
    return ratio * norm[:, None]


_TREES = {}


def old_in_coverage(gen, teff, logg, logz):
    """The documented coverage rule, written out without the fast path's shortcuts: a point is covered by a
    library whose box holds it if one of the COVERAGE_NEIGHBOURS nodes of that library nearest it lies within
    COVERAGE_FACTOR times that node's nearest-neighbour distance (>= 1 grid step). Each library asks its own
    nodes (per-library trees, as the mixture's hole factor; until 49ad975 one tree held all libraries, and
    WM-basic's nodes crowded CK04's out of the 16 nearest at 32-42 kK, log g 3.25-3.5)."""
    teff, logg, logz = (np.atleast_1d(np.asarray(a, float)) for a in np.broadcast_arrays(teff, logg, logz))
    boxes = {name: _with_metallicity_tolerance(box) for name, box in gen.library_boxes.items()}
    inside_box = np.zeros(teff.shape, bool)
    for box in boxes.values():
        inside_box |= box.contains(teff, logg, logz)
    if gen.nodes is None or not inside_box.any():
        return inside_box
    if id(gen) not in _TREES:                       # built once per generator, as the old code did
        nodes = gen.nodes
        pts_n = gen._node_coords(nodes["teff"], nodes["logg"], nodes["logz"])
        lib = nodes["library_id"].astype(int)
        trees = {}
        for j in np.unique(lib):
            own = pts_n[lib == j]
            if len(own) < 2:
                trees[j] = (cKDTree(own), np.ones(len(own)))
                continue
            d, _ = cKDTree(own).query(own, k=2)
            trees[j] = (cKDTree(own), np.maximum(d[:, 1], 1.0))
        _TREES[id(gen)] = trees
    trees = _TREES[id(gen)]
    pts = gen._node_coords(teff, logg, logz)
    near = np.zeros(teff.size, bool)
    for j, name in enumerate(gen.library_names):
        in_box = boxes[name].contains(teff, logg, logz)
        if j not in trees or not in_box.any():
            continue
        tree, spacing = trees[j]
        k = min(COVERAGE_NEIGHBOURS, spacing.size)
        dist, idx = tree.query(pts[in_box], k=k)
        dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
        near[in_box] |= (dist <= COVERAGE_FACTOR * spacing[idx]).any(1)
    return inside_box & near
