"""The generator's forward path and coverage rule as they were before the torch rewrite (numpy, float64
after the network, one pass per library): the reference the new path must reproduce."""
import numpy as np
import torch
from scipy.spatial import cKDTree

from smnet_sps.constants import SIGMA_SB
from smnet_sps.model import blackbody_log_ratio
from smnet_sps.neural import COVERAGE_FACTOR, _with_metallicity_tolerance


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
        spacing = np.zeros(len(pts_n))
        for j in np.unique(lib):
            sel = np.flatnonzero(lib == j)
            if sel.size < 2:
                spacing[sel] = 1.0
                continue
            d, _ = cKDTree(pts_n[sel]).query(pts_n[sel], k=2)
            spacing[sel] = np.maximum(d[:, 1], 1.0)
        _TREES[id(gen)] = (cKDTree(pts_n), spacing, lib)
    tree, spacing, lib = _TREES[id(gen)]
    pts = gen._node_coords(teff, logg, logz)
    k = min(16, spacing.size)
    dist, idx = tree.query(pts, k=k)
    dist, idx = dist.reshape(len(pts), k), idx.reshape(len(pts), k)
    near = np.zeros(teff.size, bool)
    for j, name in enumerate(gen.library_names):
        in_box = boxes[name].contains(teff, logg, logz)
        ok = (dist <= COVERAGE_FACTOR * spacing[idx]) & (lib[idx] == j)
        near |= in_box & ok.any(1)
    return inside_box & near
