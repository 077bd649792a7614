"""Simple stellar populations: ``ssp_spectrum(age, Z)`` and ``ssp_grid(ages, Zs)`` (DSPS layout).

An SSP is the IMF-weighted sum of the spectra of the stars on one isochrone:

    L_lambda(t, Z) = sum_i w_i L_i f_i(lambda)       [L_sun / A per M_sun formed]

with FSPS's point weights ``w_i`` (:mod:`smnet_sps.imf`), the isochrone luminosities ``L_i``, and the
unit-integral stellar spectra ``f_i`` from the :class:`~smnet_sps.backend.StellarLibraryBackend` (so the
spectrum integrates to the isochrone's L_bol minus the luminosity of stars without a spectrum, which is
reported as ``missing_fraction``). Stars outside the generator's coverage are, by default
(``outside="extrapolate"``), still generated (a smooth, luminosity-conserving extrapolation of the learned
manifold); the fraction of L_bol they carry is always reported as ``outside_fraction``. The generator's metallicity is [M/H] = log10(Z / Zsun) with the
family's Zsun (PARSEC 0.0152, Padova 0.019).

Between tabulated ages and metallicities we interpolate like FSPS, from the four neighbouring tabulated
SSPs: the spectrum and every bookkeeping quantity (L_bol, masses, per-phase luminosity, missing
luminosity) are interpolated log-linearly (geometrically) in log age and masses linearly -- which
reproduces FSPS's own intermediate ages (time_res_incr=2) to 5e-5 dex -- and then linearly in the spectra with weights linear in
log Z. At a tabulated node this is exactly the tabulated SSP.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from astropy import units as u

from .backend import STATUS, StellarLibraryBackend

OUTSIDE_STATUSES = [STATUS[k] for k in ("blackbody", "extrapolated", "missing")]
from .constants import SSP_UNIT
from .imf import get_imf, imf_weights, remnant_mass, tpagb_factor
from .isochrones import PHASE_NAMES, load_isochrones
from .lsf import lsf_meta

__all__ = ["ssp_spectrum", "ssp_grid", "SSPGrid", "get_backend", "parse_age", "save_ssp_grid", "add_cli"]

_PHASES = sorted(PHASE_NAMES)                      # FSPS phase codes, -1 .. 9
_PHASE_INDEX = {p: i for i, p in enumerate(_PHASES)}
_BACKENDS = {}
_DEFAULT_GENERATOR = {}
_SSP_CACHE = OrderedDict()
_SSP_CACHE_SIZE = 512


# ---- inputs -----------------------------------------------------------------------------------
def parse_age(age):
    """Age -> log10(age / yr). Accepts a time Quantity, a string such as "10 Gyr", or years as a number."""
    if isinstance(age, str):
        try:
            age = u.Quantity(age)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot parse age {age!r}; use e.g. '10 Gyr', '500 Myr' or '1e9 yr'") from exc
        if age.unit == u.dimensionless_unscaled:
            age = age.value
    if isinstance(age, u.Quantity):
        try:
            age = age.to_value(u.yr)
        except u.UnitConversionError as exc:
            raise ValueError(f"age must be a time (e.g. Gyr, Myr, yr); got unit {age.unit}") from exc
    age = np.asarray(age, float)
    if not np.all(np.isfinite(age)):
        raise ValueError("age must be a finite, positive time; got NaN or inf")
    if (age <= 0).any():
        raise ValueError(f"age must be positive; got {np.atleast_1d(age)[np.atleast_1d(age) <= 0][0]:g} yr")
    return np.log10(age)


def _resolve_z(iso, Z, logzsol):
    if Z is not None and logzsol is not None:
        raise ValueError("give Z (metal mass fraction) or logzsol (log10 Z/Zsun), not both")
    if Z is None:
        logzsol = 0.0 if logzsol is None else logzsol
        logzsol = np.asarray(logzsol, float)
        if not np.all(np.isfinite(logzsol)):
            raise ValueError("logzsol must be finite")
        Z = iso.zsun * 10.0**logzsol
    Z = np.asarray(Z, float)
    iso.check_z(Z)
    return Z


def get_backend(generator=None, special_phases="model", outside="extrapolate", device="auto"):
    """A shared :class:`StellarLibraryBackend` per (generator, options), so repeated SSPs hit its cache.

    ``generator=None`` -> the shipped default model (:func:`smnet_sps.neural.load_generator`), loaded once; a
    string names a shipped model (``"default"``, ``"semi-empirical"``) or a model directory.
    """
    if isinstance(generator, StellarLibraryBackend):
        return generator
    if generator is None or isinstance(generator, str):      # None / a shipped model's name, loaded once
        name = generator or "default"
        if (name, device) not in _DEFAULT_GENERATOR:
            from .neural import load_generator
            _DEFAULT_GENERATOR[(name, device)] = load_generator(name, device=device)
        generator = _DEFAULT_GENERATOR[(name, device)]
    key = (id(generator), special_phases, outside)
    backend = _BACKENDS.get(key)
    if backend is None or backend.generator is not generator:
        backend = StellarLibraryBackend(generator, special_phases=special_phases, outside=outside)
        _BACKENDS[key] = backend
    return backend


# ---- tabulated SSPs -----------------------------------------------------------------------------
def _isochrone_weights(iso, iz, ia, imf):
    """FSPS weights (TP-AGB re-weighted for Padova) and remnant mass of isochrone (iz, ia)."""
    sl = iso.rows(iz, ia)
    c = iso.columns
    w = imf_weights(c["mini"][sl], imf)
    if iso.name == "padova":           # FSPS tpagb_norm_type=2 applies to Padova 2007 only
        w = np.where(c["phase"][sl] == 5, w * tpagb_factor(iso.log_age[ia]), w)
    return sl, w, remnant_mass(c["mini"][sl].max(), imf)


def _tabulated(iso, pairs, imf, backend, progress=False, by_phase=False):
    """Tabulated SSPs for a list of (iz, ia): flux [L_sun/A/M_sun] and linear bookkeeping quantities."""
    import scipy.sparse as sp

    c = iso.columns
    n = len(pairs)
    n_ph = len(_PHASES)
    out = {"lbol": np.zeros(n), "mass_stars": np.zeros(n), "mass_remnants": np.zeros(n),
           "phase_lum": np.zeros((n, n_ph)), "n_points": np.zeros(n, int)}
    cols, rows, data, logz_pts = [], [], [], []
    for k, (iz, ia) in enumerate(pairs):
        sl, w, rem = _isochrone_weights(iso, iz, ia, imf)
        lum = 10.0 ** c["logl"][sl]
        wl = w * lum
        out["lbol"][k] = wl.sum()
        out["mass_stars"][k] = np.dot(w, c["mact"][sl])
        out["mass_remnants"][k] = rem
        ph_idx = np.searchsorted(_PHASES, c["phase"][sl])
        out["phase_lum"][k] = np.bincount(ph_idx, weights=wl, minlength=n_ph)
        keep = np.flatnonzero(w > 0)                # stars above the IMF's upper limit carry no weight
        out["n_points"][k] = keep.size
        cols.append(np.arange(sl.start, sl.stop)[keep])
        rows.append((k * n_ph + ph_idx[keep]) if by_phase else np.full(keep.size, k))
        data.append(wl[keep])
        logz_pts.append(np.full(keep.size, np.log10(iso.Z[iz] / iso.zsun)))
    cols = np.concatenate(cols)
    logz_pts = np.concatenate(logz_pts)
    # one row per SSP (or per SSP and phase); columns: the points of all requested isochrones
    n_rows = n * n_ph if by_phase else n
    W = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.arange(cols.size))),
                      shape=(n_rows, cols.size))
    keys = backend.point_keys(c["logt"][cols], c["logg"][cols], logz_pts, c["phase"][cols], c["co"][cols])
    flux, covered, status, corr = backend.weighted_sum(keys, W, progress=progress, desc="isochrone points")
    # light of stars not generated inside the generator's coverage (extrapolated, blackbody or missing)
    outside = np.asarray(W @ np.isin(status, OUTSIDE_STATUSES).astype(float)).ravel()
    if by_phase:
        out["phase_flux"] = flux.reshape(n, n_ph, -1)
        flux = out["phase_flux"].sum(axis=1)
        covered = covered.reshape(n, n_ph).sum(axis=1)
        outside = outside.reshape(n, n_ph).sum(axis=1)
    out["outside_lum"] = outside
    out["flux"] = flux
    missing = out["lbol"] - covered
    # round-off of the sparse sums must not read as missing light
    out["missing_lum"] = np.where(missing > 1e-10 * out["lbol"], missing, 0.0)
    good = np.isfinite(corr)
    out["correction"] = ({"min": float(corr[good].min()), "median": float(np.median(corr[good])),
                          "max": float(corr[good].max())} if good.any() else {})
    return out


def _neighbours(grid, x):
    """Bracketing indices and linear weights of x on an increasing grid (exact nodes -> one weight 1)."""
    j = int(np.clip(np.searchsorted(grid, x) - 1, 0, grid.size - 2))
    t = (x - grid[j]) / (grid[j + 1] - grid[j])
    if abs(t) < 1e-9:
        return [(j, 1.0)]
    if abs(1 - t) < 1e-9:
        return [(j + 1, 1.0)]
    return [(j, 1.0 - t), (j + 1, t)]


def _plan(iso, log_age, Z):
    """Neighbouring tabulated SSPs of (log_age, Z): [(iz, wz, [(ia, wa), ...]), ...]."""
    return [(iz, wz, _neighbours(iso.log_age, log_age)) for iz, wz in _neighbours(np.log10(iso.Z), np.log10(Z))]


def _pairs(plan):
    return [(iz, ia) for iz, _, ages in plan for ia, _ in ages]


_LINEAR_KEYS = ("flux", "lbol", "mass_stars", "mass_remnants", "phase_lum", "missing_lum", "outside_lum",
                "phase_flux")


def _combine(tab, index, plan):
    """Interpolate tabulated results: in log age, luminosities (spectrum, L_bol, per phase, missing)
    geometrically (log-linear) and masses linearly, then linearly between metallicities with log Z weights.

    This is what FSPS does between its tabulated ages: it reproduces FSPS's time_res_incr=2 Padova ages to
    5e-5 dex in L_bol and mass (linear-in-L would be off by 2.5e-3 dex); between metallicities FSPS combines
    spectra linearly.
    """
    res = {}
    for key in _LINEAR_KEYS:
        if key not in tab:
            continue
        total = 0.0
        for iz, wz, ages in plan:
            if len(ages) == 1:
                val = tab[key][index[(iz, ages[0][0])]]
            elif key.startswith("mass"):       # masses: linear in log age (as FSPS; checked to 5e-5 dex)
                val = sum(w * tab[key][index[(iz, ia)]] for ia, w in ages)
            else:
                (ia0, w0), (ia1, w1) = ages
                a, b = tab[key][index[(iz, ia0)]], tab[key][index[(iz, ia1)]]
                with np.errstate(divide="ignore", invalid="ignore"):
                    # zero stays zero (a pixel or a phase absent at either age); negatives cannot occur
                    val = np.where((a > 0) & (b > 0), np.exp(w0 * np.log(np.where(a > 0, a, 1.0))
                                                             + w1 * np.log(np.where(b > 0, b, 1.0))),
                                   w0 * a + w1 * b)
            total = total + wz * val
        res[key] = total
    if "phase_lum" in res and res["phase_lum"].sum() > 0:
        # geometric interpolation of each phase does not sum to that of the total: keep the per-phase
        # fractions and make them add up to L_bol
        res["phase_lum"] = res["phase_lum"] * (res["lbol"] / res["phase_lum"].sum())
    res["n_points"] = int(sum(tab["n_points"][index[p]] for p in _pairs(plan)))
    return res


# ---- public API -----------------------------------------------------------------------------------
def ssp_spectrum(age, Z=None, *, logzsol=None, imf="kroupa", isochrones="parsec", generator=None,
                 special_phases="model", outside="extrapolate", by_phase=False, device="auto"):
    """The spectrum of a simple stellar population of one age and metallicity.

    Parameters
    ----------
    age : Quantity [time], str ("10 Gyr") or float [yr]
        Within the isochrone grid (PARSEC: log t = 5.5-10.1; Padova: 5.5-10.15).
    Z : float, metal mass fraction (PARSEC 1e-4..0.06; Padova 2e-4..0.03), or
    logzsol : float, log10(Z / Zsun) with the family's Zsun (0.0152 PARSEC, 0.019 Padova).
        Neither given -> solar.
    imf : "kroupa" (default), "salpeter", "chabrier", or a callable dN/dm(m [M_sun])
    isochrones : "parsec" (default) or "padova"
    generator : Generator, StellarLibraryBackend, or None (the shipped default model)
    special_phases : "model" (default) or "dedicated"; see :mod:`smnet_sps.backend`
    outside : "extrapolate" (default), "blackbody" or "exclude": what stars outside the generator's coverage
        contribute (see :mod:`smnet_sps.backend`); their share of L_bol is ``meta["outside_fraction"]``
    by_phase : bool, also return per-phase spectra in ``meta["phase_flux"]`` (dict name -> ndarray)

    Returns
    -------
    specutils.Spectrum
        flux in L_sun / A **per M_sun formed**; ``meta`` holds: ``log_lbol`` (isochrone, L_sun per M_sun
        formed), ``mass_stars``, ``mass_remnants``, ``log_mass`` (log10 of stars + remnants, as FSPS),
        ``missing_fraction`` (of L_bol from stars without a spectrum), ``phase_luminosity`` (dict phase
        name -> L_sun), ``n_points``, ``generator``, ``isochrones``, ``imf``, ``log_age``, ``age_yr``,
        ``Z``, ``logzsol``, ``zsun``, ``special_phases``, ``outside``, ``flux_unit``.
    """
    from specutils import Spectrum

    iso = load_isochrones(isochrones)
    log_age = float(parse_age(age))
    iso.check_age(log_age)
    Z = float(_resolve_z(iso, Z, logzsol))
    imf_obj = get_imf(imf)
    backend = get_backend(generator, special_phases, outside, device)

    plan = _plan(iso, log_age, Z)
    pairs = _pairs(plan)
    cache_key = None
    if isinstance(imf, str):
        cache_key = (iso.name, tuple(pairs), imf_obj.name, backend.key, by_phase)
    # backend.key holds id(generator): an entry keeps its generator alive and is only used for that very
    # object, so a later generator that reuses a freed id never gets another generator's spectra
    hit = _SSP_CACHE.get(cache_key) if cache_key is not None else None
    tab = hit[1] if hit is not None and hit[0] is backend.generator else None
    if tab is None:
        tab = _tabulated(iso, pairs, imf_obj, backend, by_phase=by_phase)
        if cache_key is not None:
            _SSP_CACHE[cache_key] = (backend.generator, tab)
            while len(_SSP_CACHE) > _SSP_CACHE_SIZE:
                _SSP_CACHE.popitem(last=False)
    else:
        _SSP_CACHE.move_to_end(cache_key)
    res = _combine(tab, {p: i for i, p in enumerate(pairs)}, plan)
    lbol = float(res["lbol"])
    mass = float(res["mass_stars"] + res["mass_remnants"])
    meta = {
        "log_lbol": float(np.log10(lbol)), "lbol": lbol,
        "mass_stars": float(res["mass_stars"]), "mass_remnants": float(res["mass_remnants"]),
        "mass_total": mass, "log_mass": float(np.log10(mass)),
        "missing_fraction": float(res["missing_lum"] / lbol),
        "outside_fraction": float(res["outside_lum"] / lbol),
        "phase_luminosity": {PHASE_NAMES[p]: float(res["phase_lum"][i]) for i, p in enumerate(_PHASES)
                             if res["phase_lum"][i] > 0},
        "n_points": res["n_points"], "generator": backend.generator.name, "isochrones": iso.name,
        "imf": imf_obj.name, "log_age": log_age, "age_yr": 10.0**log_age, "Z": Z,
        "logzsol": float(np.log10(Z / iso.zsun)), "zsun": iso.zsun, "special_phases": backend.special_phases,
        "outside": backend.outside, "flux_unit": "L_sun / Angstrom per M_sun formed",
        "interpolated_from": [(float(iso.Z[iz]), float(iso.log_age[ia]), float(wz * wa))
                              for iz, wz, ages in plan for ia, wa in ages],
        "luminosity_correction": tab["correction"],
    }
    meta.update(lsf_meta(backend.wavelength))          # vacuum wavelengths; box LSF FWHM per pixel [A]
    if by_phase:
        meta["phase_flux"] = {PHASE_NAMES[p]: res["phase_flux"][i] for i, p in enumerate(_PHASES)
                              if res["phase_lum"][i] > 0}
    return Spectrum(flux=res["flux"] * SSP_UNIT, spectral_axis=backend.wavelength * u.AA, meta=meta)


class SSPGrid(NamedTuple):
    """SSP templates in DSPS's layout (first four fields), plus bookkeeping.

    ssp_lgmet : (n_met,) log10 Z (absolute metal mass fraction)
    ssp_lg_age_gyr : (n_age,) log10(age / Gyr)
    ssp_wave : (n_wave,) [Angstrom]
    ssp_flux : (n_met, n_age, n_wave) [L_sun / A per M_sun formed]
    log_lbol, log_mass, mass_stars, mass_remnants, missing_fraction : (n_met, n_age)
    attrs : dict of units and provenance; also ``wavelength_medium`` ("vacuum"), ``lsf_shape`` ("box") and
        ``lsf_fwhm`` (list, n_wave) [A], the line-spread FWHM per pixel (:mod:`smnet_sps.lsf`)
    outside_fraction : (n_met, n_age) share of L_bol from stars outside the generator's coverage
    """

    ssp_lgmet: np.ndarray
    ssp_lg_age_gyr: np.ndarray
    ssp_wave: np.ndarray
    ssp_flux: np.ndarray
    log_lbol: np.ndarray
    log_mass: np.ndarray
    mass_stars: np.ndarray
    mass_remnants: np.ndarray
    missing_fraction: np.ndarray
    attrs: dict
    outside_fraction: np.ndarray = None    # (n_met, n_age) L_bol fraction of stars outside coverage


def ssp_grid(ages=None, Zs=None, *, imf="kroupa", isochrones="parsec", generator=None,
             special_phases="model", outside="extrapolate", progress=True, device="auto"):
    """A grid of SSP spectra (DSPS layout), from ONE batched generator pass over all isochrone points.

    Parameters
    ----------
    ages : Quantity array, array of years, or None (all tabulated ages of the family)
    Zs : array of metal mass fractions, or None (all tabulated Z of the family)
    imf, isochrones, generator, special_phases, outside : as :func:`ssp_spectrum`
    progress : bool, tqdm progress bar over the generator batches

    Returns
    -------
    SSPGrid (``ssp_flux`` in L_sun / A per M_sun formed; see ``attrs``)
    """
    iso = load_isochrones(isochrones)
    if ages is None:
        log_ages = iso.log_age.copy()
    else:
        log_ages = np.atleast_1d(parse_age(ages)).astype(float)
        iso.check_age(log_ages)
    Zs = iso.Z.copy() if Zs is None else np.atleast_1d(_resolve_z(iso, Zs, None)).astype(float)
    imf_obj = get_imf(imf)
    backend = get_backend(generator, special_phases, outside, device)
    plans = [_plan(iso, la, z) for z in Zs for la in log_ages]
    pairs = sorted({p for plan in plans for p in _pairs(plan)})
    t0 = time.perf_counter()
    tab = _tabulated(iso, pairs, imf_obj, backend, progress=progress)
    index = {p: i for i, p in enumerate(pairs)}
    shape = (Zs.size, log_ages.size)
    flux = np.empty(shape + (backend.wavelength.size,))
    lbol, mst, mrem, miss, outf = (np.empty(shape) for _ in range(5))
    for k, plan in enumerate(plans):
        i, j = divmod(k, log_ages.size)
        r = _combine(tab, index, plan)
        flux[i, j] = r["flux"]
        lbol[i, j], mst[i, j], mrem[i, j] = r["lbol"], r["mass_stars"], r["mass_remnants"]
        miss[i, j] = r["missing_lum"] / r["lbol"]
        outf[i, j] = r["outside_lum"] / r["lbol"]
    attrs = {"flux_unit": "L_sun / Angstrom per M_sun formed", "wavelength_unit": "Angstrom",
             "ssp_lgmet": "log10 Z (metal mass fraction)", "ssp_lg_age_gyr": "log10(age / Gyr)",
             "generator": backend.generator.name, "isochrones": iso.name, "zsun": iso.zsun,
             "imf": imf_obj.name, "special_phases": backend.special_phases, "outside": backend.outside,
             "n_points": int(tab["n_points"].sum()), "seconds": time.perf_counter() - t0,
             "citation": iso.citation, "luminosity_correction": tab["correction"]}
    # medium and LSF (a list, so that the attrs stay JSON/HDF5 friendly)
    attrs.update({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                  for k, v in lsf_meta(backend.wavelength).items()})
    return SSPGrid(np.log10(Zs), log_ages - 9.0, backend.wavelength.copy(), flux, np.log10(lbol),
                   np.log10(mst + mrem), mst, mrem, miss, attrs, outf)


def save_ssp_grid(grid, path):
    """Write an :class:`SSPGrid` to ``.h5``/``.hdf5`` (datasets + attrs) or ``.npz``."""
    import json
    from pathlib import Path

    path = Path(path)
    arrays = {k: v for k, v in grid._asdict().items() if k != "attrs"}
    attrs = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in grid.attrs.items()}
    if path.suffix in (".h5", ".hdf5"):
        import h5py
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v, compression="gzip" if v.ndim == 3 else None)
            for k, v in attrs.items():
                f.attrs[k] = v
    elif path.suffix == ".npz":
        np.savez_compressed(path, **arrays, attrs=json.dumps(attrs))
    else:
        raise ValueError(f"unknown output format {path.suffix!r}; use .h5, .hdf5 or .npz")
    return path


# ---- command line -------------------------------------------------------------------------------
def _generator_from_arg(name, device):
    if name in (None, "default"):
        return None
    if name == "blackbody":
        from .generator import BlackbodyGenerator
        return BlackbodyGenerator()
    from .neural import load_generator
    return load_generator(name, device=device)


def _write_fits(spec, path):
    from astropy.io import fits
    from astropy.table import Table

    t = Table([spec.spectral_axis.to_value(u.AA), spec.flux.value], names=("WAVELENGTH", "FLUX"))
    if "lsf_fwhm" in spec.meta:
        t["LSF_FWHM"] = np.asarray(spec.meta["lsf_fwhm"], float)
        t["LSF_FWHM"].unit = "Angstrom"
    t["WAVELENGTH"].unit = "Angstrom"
    t["FLUX"].unit = "solLum / (Angstrom solMass)"
    hdu = fits.table_to_hdu(t)
    m = spec.meta
    h = hdu.header
    h["EXTNAME"] = "SSP"
    cards = [("LOGAGE", m["log_age"], "log10(age / yr)"), ("AGE_GYR", m["age_yr"] / 1e9, "age [Gyr]"),
             ("Z", m["Z"], "metal mass fraction"), ("LOGZSOL", m["logzsol"], "log10(Z / Zsun)"),
             ("ZSUN", m["zsun"], "solar Z of the isochrone family"),
             ("LOGLBOL", m["log_lbol"], "log10 Lbol [Lsun per Msun formed] (isochrone)"),
             ("LOGMASS", m["log_mass"], "log10 (stars+remnants) [Msun per Msun formed]"),
             ("MSTARS", m["mass_stars"], "surviving stellar mass [Msun per Msun formed]"),
             ("MREMNANT", m["mass_remnants"], "remnant mass [Msun per Msun formed]"),
             ("MISSFRAC", m["missing_fraction"], "fraction of Lbol without a spectrum"),
             ("OUTFRAC", m["outside_fraction"], "fraction of Lbol from stars outside coverage"),
             ("NPOINTS", m["n_points"], "isochrone points used"),
             ("GENERATR", m["generator"], "stellar spectrum generator"),
             ("ISOCHRON", m["isochrones"], "isochrone family"), ("IMF", m["imf"], "initial mass function"),
             ("SPECIAL", m["special_phases"], "treatment of TP-AGB / WR stars"),
             ("OUTSIDE", m["outside"], "rule for stars outside coverage"),
             ("MEDIUM", m.get("wavelength_medium", "vacuum"), "wavelength medium of WAVELENGTH"),
             ("LSFSHAPE", m.get("lsf_shape", "box"), "line-spread function shape (column LSF_FWHM)"),
             ("BUNIT", "Lsun/Angstrom/Msun", "FLUX per solar mass formed")]
    for key, val, comment in cards:
        h[key] = (val, comment)
    for i, (name, lum) in enumerate(m["phase_luminosity"].items()):
        h[f"PHLUM{i}"] = (lum, f"L [Lsun/Msun] of phase: {name}"[:47])
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def plot_ssp(spec, path=None):
    """Log-log SSP spectrum (912 A - 5 um) stacked by evolutionary phase, and L_bol fraction per phase.

    Returns the :class:`matplotlib.figure.Figure` (drawn with the caller's matplotlib backend, which is left
    unchanged); also saves it to ``path`` when given (format from the extension). Close it with
    ``matplotlib.pyplot.close(fig)`` when done.
    """
    import matplotlib.pyplot as plt

    m = spec.meta
    wave = spec.spectral_axis.to_value(u.AA)
    flux = spec.flux.value
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 1.2]})
    vis = (wave >= 912) & (wave <= 5e4)
    if "phase_flux" in m:
        ph = m["phase_flux"]
        names = sorted(ph, key=lambda k: -m["phase_luminosity"][k])
        base = np.zeros_like(flux)
        for name in names:
            top = base + ph[name]
            ax.fill_between(wave[vis], np.maximum(base[vis], 1e-30), np.maximum(top[vis], 1e-30), alpha=0.55,
                            label=name, lw=0)
            base = top
    ax.plot(wave[vis], flux[vis], "k", lw=0.8, label="total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    fv = flux[vis]
    fv = fv[fv > 0]
    if fv.size:
        ax.set_ylim(fv.max() * 1e-5, fv.max() * 3)
    ax.set_xlim(912, 5e4)
    ax.set_xlabel("wavelength [Angstrom]")
    ax.set_ylabel(r"$L_\lambda$ [$L_\odot\,\AA^{-1}\,M_\odot^{-1}$]")
    ax.set_title(f"SSP {m['isochrones']} {m['imf']}  age {m['age_yr'] / 1e9:.3g} Gyr  Z={m['Z']:.4g}\n"
                 f"({m['generator']}; outside coverage {100 * m['outside_fraction']:.2g}%, "
                 f"missing {100 * m['missing_fraction']:.2g}% Lbol)", fontsize=9)
    ax.legend(fontsize=7, loc="best", ncol=2, framealpha=0.8)
    pl = m["phase_luminosity"]
    names = sorted(pl, key=lambda k: -pl[k])
    frac = np.array([pl[k] for k in names]) / m["lbol"]
    bx.barh(names, frac, color="C0")
    bx.set_xlabel("fraction of L_bol")
    bx.set_xlim(0, 1)
    bx.invert_yaxis()
    bx.tick_params(labelsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
GRID_SUFFIXES = (".h5", ".hdf5", ".npz")


def _cmd_ssp(args):
    from .output_files import atomic_output, check_outputs, matplotlib_formats, save_figure
    # every output is checked before the SSP is computed: a bad path fails in a second, not after a minute
    outputs = check_outputs(args, {"out": (FITS_SUFFIXES, "FITS table"),
                                   "plot": (matplotlib_formats(), "plot")})
    gen = _generator_from_arg(args.generator, args.device)
    spec = ssp_spectrum(args.age, Z=args.Z, logzsol=args.logzsol, imf=args.imf, isochrones=args.isochrones,
                        generator=gen, special_phases=args.special_phases, outside=args.outside,
                        by_phase=bool(args.plot), device=args.device)
    m = spec.meta
    print(f"SSP {m['isochrones']} / {m['imf']} / {m['generator']}: age {m['age_yr'] / 1e9:.4g} Gyr "
          f"(log t = {m['log_age']:.3f}), Z = {m['Z']:.4g} (logzsol {m['logzsol']:+.2f})")
    print(f"  log Lbol = {m['log_lbol']:.4f} Lsun/Msun   log M = {m['log_mass']:.4f} "
          f"(stars {m['mass_stars']:.4f} + remnants {m['mass_remnants']:.4f} Msun per Msun formed)")
    print(f"  {m['n_points']} isochrone points; Lbol fraction from stars outside coverage "
          f"{m['outside_fraction']:.3g} (outside={m['outside']}), "
          f"without a spectrum {m['missing_fraction']:.3g}")
    top = sorted(m["phase_luminosity"].items(), key=lambda kv: -kv[1])[:4]
    print("  Lbol by phase: " + ", ".join(f"{k} {v / m['lbol']:.1%}" for k, v in top))
    if "out" in outputs:
        with atomic_output(outputs["out"], overwrite=args.overwrite) as tmp:
            _write_fits(spec, tmp)
        print(f"  wrote {args.out}")
    if "plot" in outputs:
        save_figure(plot_ssp(spec), outputs["plot"], overwrite=args.overwrite)
        print(f"  wrote {args.plot}")
    return 0


def _cmd_ssp_grid(args):
    from .output_files import atomic_output, check_outputs
    outputs = check_outputs(args, {"out": (GRID_SUFFIXES, "SSP grid")})   # fail before the (slow) grid
    # `--ages` / `--Z` given without a value must not silently mean "all tabulated" (that is: omit the option)
    for option, values in (("--ages", args.ages), ("--Z", args.Z)):
        if values is not None and len(values) == 0:
            raise ValueError(f"{option} was given without a value; give one or more values "
                             f"(e.g. --ages 1Gyr 3Gyr, --Z 0.002 0.0152) or leave {option} out for all "
                             "tabulated values")
    from . import distributed
    if distributed.wants_cluster(args):        # --scheduler / --workers: the same grid as Dask tasks
        return distributed.cli_ssp_grid(args, outputs["out"])
    gen = _generator_from_arg(args.generator, args.device)
    ages = None if args.ages is None else 10.0 ** np.array([parse_age(a) for a in args.ages])
    grid = ssp_grid(ages, args.Z, imf=args.imf, isochrones=args.isochrones, generator=gen,
                    special_phases=args.special_phases, outside=args.outside, progress=True,
                    device=args.device)
    with atomic_output(outputs["out"], overwrite=args.overwrite) as tmp:
        save_ssp_grid(grid, tmp)
    print(f"wrote {args.out}: {grid.ssp_flux.shape[0]} Z x {grid.ssp_flux.shape[1]} ages x "
          f"{grid.ssp_flux.shape[2]} wavelengths ({grid.attrs['n_points']} isochrone points, "
          f"{grid.attrs['seconds']:.1f} s); max missing Lbol fraction {np.max(grid.missing_fraction):.3g}")
    return 0


def _common_args(p):
    p.add_argument("--imf", default="kroupa", help="kroupa (default), salpeter or chabrier")
    p.add_argument("--isochrones", default="parsec", help="parsec (default) or padova")
    p.add_argument("--generator", default=None,
                   help="'default' (shipped model), 'semi-empirical' (calibrated on MILES stars), 'blackbody', "
                        "or a model directory")
    p.add_argument("--special-phases", default="model", choices=("model", "dedicated"))
    p.add_argument("--outside", default="extrapolate", choices=("exclude", "blackbody", "extrapolate"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def add_cli(sub):
    p = sub.add_parser("ssp", help="spectrum of one simple stellar population",
                       description="Spectrum of an SSP [L_sun/A per M_sun formed] -> FITS table and a plot.")
    p.add_argument("--age", required=True, help="age with unit, e.g. '10Gyr', '500 Myr', '1e9 yr'")
    p.add_argument("--Z", type=float, default=None, help="metal mass fraction (default: solar of the family)")
    p.add_argument("--logzsol", type=float, default=None, help="log10(Z/Zsun) instead of --Z")
    _common_args(p)
    p.add_argument("--out", default=None,
                   help="output FITS table (WAVELENGTH, FLUX); extension .fits, .fit, .fts or .fits.gz")
    p.add_argument("--plot", default=None, help="output plot (.png, .pdf, .svg, ...: any matplotlib format)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_ssp)

    g = sub.add_parser("ssp-grid", help="grid of SSP spectra (DSPS layout) to .h5 or .npz",
                       description="SSP grid over ages x Z in one batched generator pass.")
    g.add_argument("--ages", nargs="*", default=None, help="ages with units (default: all tabulated)")
    g.add_argument("--Z", nargs="*", type=float, default=None, help="metallicities (default: all tabulated)")
    _common_args(g)
    g.add_argument("--out", required=True, help="output .h5, .hdf5 or .npz (format from the extension)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    from .distributed import add_cluster_args
    add_cluster_args(g)                         # --scheduler / --workers (smnet-sps[dask])
    g.set_defaults(func=_cmd_ssp_grid)
