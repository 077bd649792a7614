"""bagpipes backend: the stellar-grid FITS file bagpipes' ``config.py`` reads, and a switch to use it.

Layout of ``bagpipes/models/grids/bc03_miles_stellar_grids.fits`` as read by bagpipes 1.3.x ``config.py``
(checked against bagpipes 1.3.6)::

    HDU 0                 primary: header cards (metallicities, MEDIUM, LSFSHAPE); data = LSF FWHM [A] per
                          wavelength (bagpipes ignores HDU 0)
    HDU 1 .. n_met        one image per metallicity, flux [n_age, n_wave] in L_sun/A per M_sun formed
    HDU -3 LIV_MSTAR_FRAC [n_age, 1 + n_met]: column 0 = log10(age/yr) (0 for age 0), then the mass in
                          living stars (no remnants) per M_sun formed, per metallicity
    HDU -2 STELLAR_AGE_YR [n_age] ages in years
    HDU -1 WAVELENGTHS_AA [n_wave] Angstrom

bagpipes' own BC03 grid holds living stars only in LIV_MSTAR_FRAC (0.50 at 4.5 Gyr, solar Z; stars + remnants
would be 0.62), and its ``stellar_mass`` is that living mass: the grid's ``living_mass`` (an SSPGrid's
``mass_stars``) is written. A grid that carries only the surviving (stars + remnants) mass gets that instead,
and one with neither gets 1; the ``LIVEFRAC`` header card says which.

Each metallicity HDU carries cards ``OUTF0000``... = share of L_bol from stars outside the generator's
coverage, per age. Wavelengths are vacuum (smnet-sps' medium; ``MEDIUM`` card), or air with ``medium="air"``.
bagpipes' own BC03 grid is MILES-based in the optical, i.e. air wavelengths there.
The metallicities are not in the file: bagpipes keeps them in ``config.metallicities`` (Z / Z_sun), so
:func:`use_smnet_grid` sets them (from this file's header) together with the arrays bagpipes derives.

Nebular emission: bagpipes' nebular grids were computed with Cloudy from *its own* stellar grid, at its own
7 metallicities; they are inconsistent with (and index-incompatible with) ours. While an smnet grid is
active, asking for ``"nebular"`` in ``model_components`` raises ``ValueError`` instead of silently mixing.
"""
from __future__ import annotations

import contextlib
import numbers
import re
import warnings
from pathlib import Path

import numpy as np

from smnet_sps.constants import L_SUN
from smnet_sps.output_files import atomic_output, ssp_provenance_cards, ssp_provenance_from_header

from ._common import (SSPArrays, as_ssp_arrays, check_zsun_and_medium, in_medium, output_path, resolve_zsun,
                      smnet_ssp_grid, template_lsf, warn_if_no_young_ssps)

HOST = "bagpipes"
HOST_VERSIONS = ">=1.0,<1.4"
DESCRIPTION = "SSP grid as bagpipes' stellar-grid FITS file + use_smnet_grid() switch (nebular emission off)"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "BAGPIPES_ZSUN", "BAGPIPES_L_SUN", "write_stellar_grid",
           "from_arrays", "from_smnet", "read_stellar_grid", "use_smnet_grid", "restore_bagpipes_grid",
           "smnet_grid"]

# bagpipes' metallicities are Z / Z_sun with its BC03 convention Z_sun = 0.02.
BAGPIPES_ZSUN = 0.02
# bagpipes turns its grid (L_sun/A) into erg/s/A with this L_sun (model_galaxy.py); ours is IAU 2015's
# 3.828e33 (smnet_sps.constants.L_SUN), so the grid handed to bagpipes is rescaled by L_SUN / BAGPIPES_L_SUN.
BAGPIPES_L_SUN = 3.826e33
_CONFIG_KEYS = ("stellar_file", "metallicities", "wavelengths", "raw_stellar_ages", "live_frac",
                "raw_stellar_grid", "metallicity_bins")
#: the flux images' BUNIT: L_sun / Angstrom per M_sun formed, in the FITS standard's spelling
FLUX_BUNIT = "solLum Angstrom-1 solMass-1"
_saved_state = []       # stack of saved config states (use_smnet_grid may be called more than once)


def _check_bagpipes_shape(n_age, n_met, what):
    """bagpipes bins ages between neighbouring grid points (``utils.make_bins`` reads the second point,
    ``stellar_model._resample_in_age``), so a grid needs at least 2 ages; it fails with an IndexError
    otherwise. One metallicity is fine: bagpipes weighs metallicities by position among the grid's (one
    Z: weight 1) or by bins, whose edges :func:`use_smnet_grid` sets itself ([0, 10] Z_sun for one Z)."""
    if n_age < 2:
        raise ValueError(f"{what} has {n_age} age(s) and {n_met} metallicity(ies); bagpipes needs at least 2 "
                         "ages (it bins the ages between neighbouring grid points); one metallicity is fine")


def _metallicity_bins(zmet):
    """Edges of bagpipes' metallicity bins [Z / Z_sun] (``config.metallicity_bins``): halfway between
    neighbours, the outer edges 0 and 10 as bagpipes' config.py sets them for its own grid; one Z (which
    bagpipes' make_bins cannot bin: it reads a second point) gets the one bin [0, 10]."""
    if zmet.size == 1:
        return np.array([0.0, 10.0])
    from bagpipes.utils import make_bins
    bins = make_bins(zmet, make_rhs=True)[0]
    bins[0], bins[-1] = 0.0, 10.0
    return bins


def write_stellar_grid(path, grid=None, *, zsun=BAGPIPES_ZSUN, medium="vacuum", overwrite=False, **arrays):
    """Write an SSP grid as a bagpipes stellar-grid FITS file.

    Parameters
    ----------
    path : str or Path
    grid : SSP grid in the DSPS layout (L_sun/A per M_sun formed); its living-star mass (``mass_stars``)
        goes into LIV_MSTAR_FRAC
    zsun : float, Z_sun used to express the metallicities as Z / Z_sun (bagpipes' convention: 0.02)
    medium : "vacuum" (default, smnet-sps' own) or "air": medium of WAVELENGTHS_AA (``MEDIUM`` card)
    overwrite : bool

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        A grid with fewer than 2 ages (bagpipes cannot bin it); one metallicity is fine.

    Warns
    -----
    UserWarning when the grid's youngest SSP is older than 1 Myr: bagpipes gives younger stars its spectrum
    (a constant SFH on a grid from 10 Myr: 44 % low at 1500 A); start the grid at the isochrones' youngest
    age, 10^5.5 yr
    """
    from astropy.io import fits
    from smnet_sps import __version__

    ssp = grid if isinstance(grid, SSPArrays) and not arrays else as_ssp_arrays(grid, **arrays)
    _check_bagpipes_shape(ssp.n_age, ssp.n_met, "the SSP grid")
    # bagpipes stretches the youngest raw age bin down to age 0 (stellar_model._resample_in_age)
    warn_if_no_young_ssps(ssp, "bagpipes", "the spectrum of that SSP")
    path = _check_arguments(path, zsun, medium, overwrite)
    zsun = resolve_zsun(ssp, zsun)
    zmet = 10.0 ** ssp.ssp_lgmet / zsun
    ages_yr = ssp.age_gyr * 1e9
    wave, flux, fwhm = in_medium(ssp, medium)
    primary = fits.PrimaryHDU(np.asarray(fwhm, float))
    hdr = primary.header
    hdr["MEDIUM"] = (medium, "wavelength medium of WAVELENGTHS_AA")
    hdr["LSFSHAPE"] = (template_lsf(ssp)[1], "line-spread function shape; data = its FWHM [A]")
    hdr["BUNIT"] = ("Angstrom", "primary data: LSF FWHM per wavelength")
    hdr["CREATOR"] = f"smnet-sps {__version__}"
    hdr["FLUXUNIT"] = "L_sun/Angstrom per M_sun formed"
    hdr["ZSUN"] = (zsun, "Z_sun used for the Z/Z_sun metallicities")
    # how the grid was made (generator, isochrones, IMF, options), as `smnet-sps ssp --out .fits` records it:
    # the file said only "smnet-sps 0.1.0", so two grids from different models or IMFs could not be told apart
    for key, value, comment in ssp_provenance_cards(ssp.meta):
        hdr[key] = (value, comment)
    hdr["NMET"] = ssp.n_met
    for i, z in enumerate(zmet):
        hdr[f"ZMET{i}"] = (float(z), "Z/Z_sun of image HDU %d" % (i + 1))
    hdus = [primary]
    for i, z in enumerate(zmet):
        img = fits.ImageHDU(flux[i], name=f"ZMET_{z:.4g}ZSOL")
        # the unit in the FITS standard's spelling, as `ssp --out .fits` has it (FLUXUNIT is free text, and
        # the images had none: astropy's CCDData / Spectrum readers found no flux unit)
        img.header["BUNIT"] = (FLUX_BUNIT, "per M_sun formed")
        if ssp.outside_fraction is not None:
            for j, f in enumerate(ssp.outside_fraction[i]):
                img.header[f"OUTF{j:04d}"] = (float(f), f"L_bol share outside coverage, age {j}")
        hdus.append(img)
    live, kind, note = _live_fraction(ssp)
    hdr["LIVEFRAC"] = (kind, note)
    table = np.column_stack([np.log10(ages_yr), live.T])
    hdus.append(fits.ImageHDU(table, name="LIV_MSTAR_FRAC"))
    hdus.append(fits.ImageHDU(ages_yr, name="STELLAR_AGE_YR"))
    hdus[-1].header["BUNIT"] = "yr"
    hdus.append(fits.ImageHDU(wave, name="WAVELENGTHS_AA"))
    hdus[-1].header["BUNIT"] = "Angstrom"
    with atomic_output(path, overwrite=overwrite, option="path") as tmp:     # never a half-written file
        fits.HDUList(hdus).writeto(tmp)
    return path


def _check_arguments(path, zsun, medium, overwrite):
    """:func:`write_stellar_grid`'s checks that need no grid, so that :func:`from_smnet` makes them before
    the grid is computed (minutes for a full one): ``zsun``, ``medium`` and the output path (returned)."""
    check_zsun_and_medium(zsun, medium)
    return output_path(path, (".fits",), "bagpipes stellar grid", overwrite)


def _live_fraction(ssp):
    """(mass fraction (n_met, n_age), LIVEFRAC card value, its comment) for LIV_MSTAR_FRAC: living stars
    as bagpipes' own grid holds them, else the best the grid carries."""
    if ssp.living_mass is not None:
        return ssp.living_mass, "living", "mass in living stars per M_sun formed"
    if ssp.surviving_mass is not None:
        return ssp.surviving_mass, "surviving", "grid carried no living mass: stars + remnants"
    return np.ones((ssp.n_met, ssp.n_age)), "unity", "grid carried no mass: mass formed"


from_arrays = write_stellar_grid


def from_smnet(path, ages, Zs, *, zsun=BAGPIPES_ZSUN, medium="vacuum", overwrite=False, **kwargs):
    """Run ``smnet_sps.ssp.ssp_grid(ages, Zs, **kwargs)`` and write the bagpipes grid file to ``path``."""
    _check_arguments(path, zsun, medium, overwrite)         # before the grid is computed, not after it
    return write_stellar_grid(path, smnet_ssp_grid(ages, Zs, **kwargs), zsun=zsun, medium=medium,
                              overwrite=overwrite)


def read_stellar_grid(path):
    """Read a file written by :func:`write_stellar_grid`.

    Returns
    -------
    dict with ``metallicities`` (Z/Z_sun), ``ages_yr``, ``wavelengths`` [A], ``flux`` (n_met, n_age, n_wave)
    [L_sun/A per M_sun formed], ``live_frac`` (n_age, n_met), ``zsun``, ``medium``, ``lsf_fwhm`` [A] (or
    None), ``lsf_shape``, ``outside_fraction`` (n_met, n_age) (or None), ``provenance`` (the grid's
    ``generator``, ``generator_sha256``, ``isochrones``, ``imf``, ``imf_mass_range``, ``special_phases``,
    ``outside`` and the ``smnet_sps_version`` that wrote the file, where recorded:
    :func:`smnet_sps.output_files.ssp_provenance_from_header`).
    """
    from astropy.io import fits
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no bagpipes stellar grid at {path}")
    try:
        with fits.open(path) as hdul:
            hdr = hdul[0].header
            if "NMET" not in hdr:
                raise ValueError(f"{path} has no NMET/ZMETi header cards: it was not written by "
                                 "plugins.bagpipes_backend.write_stellar_grid (bagpipes' own grids keep "
                                 "their metallicities in bagpipes/config.py)")
            n_met = int(hdr["NMET"])
            if len(hdul) != n_met + 4:
                raise ValueError(f"{path} has {len(hdul)} HDUs; expected {n_met + 4} (primary, {n_met} "
                                 "metallicities, LIV_MSTAR_FRAC, STELLAR_AGE_YR, WAVELENGTHS_AA)")
            out = {"metallicities": np.array([hdr[f"ZMET{i}"] for i in range(n_met)], float),
                   "zsun": float(hdr["ZSUN"]),
                   "flux": np.stack([np.asarray(hdul[i + 1].data, float) for i in range(n_met)]),
                   "live_frac": np.asarray(hdul[-3].data, float)[:, 1:],
                   "ages_yr": np.asarray(hdul[-2].data, float),
                   "wavelengths": np.asarray(hdul[-1].data, float),
                   "medium": hdr.get("MEDIUM", "vacuum"), "lsf_shape": hdr.get("LSFSHAPE"),
                   "lsf_fwhm": None if hdul[0].data is None else np.asarray(hdul[0].data, float),
                   "provenance": ssp_provenance_from_header(hdr)}
            n_age = out["ages_yr"].size
            have = all(f"OUTF{j:04d}" in hdul[i + 1].header for i in range(n_met) for j in range(n_age))
            out["outside_fraction"] = (np.array([[hdul[i + 1].header[f"OUTF{j:04d}"] for j in range(n_age)]
                                                 for i in range(n_met)]) if have else None)
    except OSError as exc:
        raise ValueError(f"{path} is not a readable FITS file: {exc}") from exc
    return out


def _raise_nebular(*args, **kwargs):
    raise ValueError("bagpipes' nebular grids were computed from its own BC03 stellar grid and do not match "
                     "the smnet-sps grid in use; remove 'nebular' from model_components (or call "
                     "plugins.bagpipes_backend.restore_bagpipes_grid() to go back to bagpipes' grid)")


def use_smnet_grid(path):
    """Point bagpipes at an smnet-sps stellar grid file for every model built afterwards.

    Patches ``bagpipes.config`` (``stellar_file``, ``metallicities``, ``wavelengths``, ``raw_stellar_ages``,
    ``live_frac``, ``raw_stellar_grid``, ``metallicity_bins``), which bagpipes' models read at construction
    time, makes nebular emission raise ``ValueError``, and has bagpipes' metallicity weights
    (``chemical_enrichment_history``) warn about a metallicity outside the grid's range. Undo with
    :func:`restore_bagpipes_grid`, or use the context manager :func:`smnet_grid`.

    Returns
    -------
    dict, the grid as read by :func:`read_stellar_grid`

    Warns
    -----
    UserWarning
        A grid of one metallicity: bagpipes gives every component its spectra, whatever ``metallicity`` the
        component asks for (a free metallicity is degenerate). With several, a model built while the grid is
        active warns (once) when a component asks for a metallicity outside the grid's range: bagpipes gives
        it the spectra of the nearest edge.

    Raises
    ------
    ValueError
        A grid with fewer than 2 ages; bagpipes' config is then left as it was.
    """
    import importlib

    from bagpipes import config
    # the module (bagpipes.models re-exports the class under the same name)
    mg = importlib.import_module("bagpipes.models.model_galaxy")

    grid = read_stellar_grid(path)
    _check_bagpipes_shape(grid["ages_yr"].size, grid["metallicities"].size, str(path))
    # everything is computed before bagpipes' config is touched: a grid it cannot use leaves it as it was
    bins = _metallicity_bins(grid["metallicities"])
    # bagpipes indexes raw_stellar_grid[i].data; plain arrays wrapped to keep that interface. The file is in
    # IAU L_sun; bagpipes multiplies by its own L_sun (3.826e33 erg/s), so rescale for exact erg/s output.
    images = [_Image(f * (L_SUN / BAGPIPES_L_SUN)) for f in grid["flux"]]
    values = {"stellar_file": str(Path(path).resolve()), "metallicities": grid["metallicities"],
              "wavelengths": grid["wavelengths"], "raw_stellar_ages": grid["ages_yr"],
              "live_frac": grid["live_frac"], "raw_stellar_grid": images, "metallicity_bins": bins}
    ceh = importlib.import_module("bagpipes.models.chemical_enrichment_history").chemical_enrichment_history
    _saved_state.append(({k: getattr(config, k) for k in _CONFIG_KEYS}, mg.nebular, ceh.__init__))
    for key, value in values.items():
        setattr(config, key, value)
    mg.nebular = _raise_nebular
    if grid["metallicities"].size > 1:
        ceh.__init__ = _warn_beyond_grid(ceh.__init__, grid["metallicities"], path)
    else:
        # bagpipes gives the one bin weight 1 whatever a component asks for: a 'metallicity' (fixed or free
        # in a fit) was ignored without a word
        zmet = float(grid["metallicities"][0])
        warnings.warn(f"{path} holds one metallicity (Z/Z_sun = {zmet:.4g}, Z = {zmet * grid['zsun']:.4g}): "
                      "every bagpipes component gets its spectra whatever 'metallicity' it asks for, so a "
                      "free metallicity in a fit is degenerate (fix it, or write a grid of several "
                      "metallicities)", UserWarning, stacklevel=2)
    return grid


def _warn_beyond_grid(init, zmet, path):
    """``chemical_enrichment_history.__init__`` that first warns (once per activation) when a component asks
    for a metallicity (``metallicity``, ``metallicity1``, ... in Z / Z_sun) outside the grid's range: bagpipes
    gives it the spectra of the nearest edge, so 2.5 and 1.5 made the same model on a grid ending at 1.5
    (bagpipes' own grid reaches 5, and its examples' priors 2.5), without a word."""
    init = getattr(init, "_smnet_original", init)       # nested activations: bagpipes' own method, once
    lo, hi = float(zmet[0]), float(zmet[-1])
    warned = []

    def __init__(self, model_comp, sfh_weights, *args, **kwargs):
        if not warned:
            asked = [(comp, key, float(value)) for comp in sfh_weights if comp != "total"
                     and isinstance(model_comp.get(comp), dict)
                     for key, value in model_comp[comp].items()
                     if re.fullmatch(r"metallicity\d*", key) and isinstance(value, numbers.Real)]
            beyond = [a for a in asked if not lo * (1 - 1e-9) <= a[2] <= hi * (1 + 1e-9)]
            if beyond:
                warned.append(True)
                comp, key, value = beyond[0]
                warnings.warn(f"component {comp!r} asks for {key} = {value:g} (Z / Z_sun, bagpipes' Z_sun "
                              f"= {BAGPIPES_ZSUN}), outside the grid's {lo:.4g}-{hi:.4g} ({path}): bagpipes "
                              "gives it the spectra of the nearest edge, so every metallicity beyond it "
                              "makes the same model (in a fit, limit the prior to this range, or write a "
                              "grid that covers it); warned once per use_smnet_grid", UserWarning,
                              stacklevel=2)
        init(self, model_comp, sfh_weights, *args, **kwargs)

    __init__._smnet_original = init
    return __init__


class _Image:
    """Minimal stand-in for an astropy HDU: bagpipes only reads ``.data``."""

    def __init__(self, data):
        self.data = data


def restore_bagpipes_grid():
    """Undo the most recent :func:`use_smnet_grid` (no-op when none is active)."""
    if not _saved_state:
        return
    import importlib

    from bagpipes import config
    mg = importlib.import_module("bagpipes.models.model_galaxy")
    ceh = importlib.import_module("bagpipes.models.chemical_enrichment_history").chemical_enrichment_history
    values, nebular, ceh_init = _saved_state.pop()
    for key, value in values.items():
        setattr(config, key, value)
    mg.nebular = nebular
    ceh.__init__ = ceh_init


@contextlib.contextmanager
def smnet_grid(path):
    """Context manager: ``with smnet_grid(path): bagpipes.model_galaxy(...)``; restores bagpipes' grid
    after. Build, update and fit models inside it: bagpipes holds its grid in module-level arrays, and a
    model used after the restore would combine the two grids."""
    # use_smnet_grid changes nothing when it fails, so only a successful activation is restored here (a
    # restore after a failed one would undo the enclosing activation of a nested ``with``)
    grid = use_smnet_grid(path)
    try:
        yield grid
    finally:
        restore_bagpipes_grid()
