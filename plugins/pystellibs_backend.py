"""pystellibs backend: a generator behind pystellibs' ``Stellib`` interface.

pystellibs (Fouesneau, github.com/mfouesneau/pystellibs; not on PyPI) interpolates stellar libraries
normalised to L_bol = 1 and multiplies by the star's luminosity, returning L_lambda in erg s^-1 A^-1.
:class:`SMNetStellib` reproduces that contract with a generator instead of an interpolated grid, so code
written against pystellibs (``generate_stellar_spectrum``, ``generate_individual_spectra``,
``get_boundaries``, ``points_inside``, ``get_weights``, ``get_radius``, ``wavelength``, ``logT``, ``logg``,
``Teff``, ``Z``, ``logZ``) works unchanged. Interface checked against pystellibs ``src/pystellibs/stellib.py``
(the repository's current version, commit 3bee430).

Conventions (as in pystellibs): ``Z`` is the metal mass fraction (``logZ = log10 Z``), converted to
the generator's [M/H] with ``zsun`` (0.02 by default, the BaSeL/pystellibs convention); ``logT`` =
log10 Teff [K]; ``logg`` [cgs]; ``logL`` = log10(L / L_sun). Shapes as pystellibs: one star's parameters
are numbers (``generate_stellar_spectrum``), many stars' are 1-d columns, one value per star
(``generate_individual_spectra``, ``points_inside``; a number stands for every star); other shapes raise a
``ValueError`` naming the parameter and its shape (``get_weights`` and ``get_radius`` are elementwise and
take any shape, as in pystellibs). Outside the generator's coverage spectra are
``null`` (NaN by default), never silent extrapolations; ``generate_stellar_spectrum`` raises unless
``raise_extrapolation=False``. A generated spectrum with any pixel negative or non-finite is unusable and
treated as outside, as the SSP backend treats it (:mod:`smnet_sps.backend`).
"""
from __future__ import annotations

import numpy as np
from astropy import units as u

from smnet_sps.backend import STATUS, _log_value, check_logl, check_logt, star_rule
from smnet_sps.constants import L_SUN, LLAM_UNIT, SIGMA_SB
from smnet_sps.generator import _as_float_array, _logg_value, _refuse_masked, column_quantity
from smnet_sps.mixture import widen_single_metallicity

from ._common import check_zsun

HOST = "pystellibs"
HOST_VERSIONS = "git main (interface of src/pystellibs/stellib.py @ 3bee430; not on PyPI)"
DESCRIPTION = "Generator behind pystellibs' Stellib interface (L_lambda in erg/s/A scaled by luminosity)"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "SMNetStellib", "register"]



def _dimensionless(value, meaning):
    """A Quantity as its dimensionless number (else a ValueError: ``meaning`` says what the value is);
    anything else as it is."""
    if not isinstance(value, u.Quantity):
        return value
    try:
        return value.to_value(u.dimensionless_unscaled)
    except u.UnitConversionError:
        raise ValueError(f"{meaning} (dimensionless); got unit {value.unit}") from None


# a Quantity in each parameter's unit, converted as the core backend converts it (point_spectra); the
# second argument is the name the caller's signature gives it (get_radius takes logl, logt)
_TO_VALUE = {"logT": lambda v, label: _log_value(v, label, u.K, "log10(Teff / K)"),
             "logg": lambda v, label: _logg_value(v),
             "logL": lambda v, label: _log_value(v, label, u.L_sun, "log10(L / L_sun)"),
             "Z": lambda v, label: _dimensionless(v, "Z is a metal mass fraction")}


#: what each parameter's column unit may be (column_quantity's error names it)
_EXPECTED = {"logT": "u.K (or its log, u.dex(u.K))", "logg": "u.dex or u.dex(u.cm / u.s**2)",
             "logL": "u.L_sun (or its log, u.dex(u.L_sun))", "Z": "a dimensionless one (e.g. u.percent)"}


def _parameter(value, name, label=None):
    """A star parameter (``logT``, ``logg``, ``logL``, ``Z``) as a float array (at least 1-d), checked as the
    generators check theirs: a masked element is refused (np.asarray used the value under the mask: a
    missing logL stored as 99 gave a star 1e99 too bright), a Quantity or a Column with a unit is converted
    (logL given as L * u.L_sun was read as log L), None, booleans and text are refused. ``label`` names it
    in the errors (default ``name``)."""
    label = label or name
    _refuse_masked(value, label)
    return _as_float_array(_TO_VALUE[name](column_quantity(value, label, _EXPECTED[name]), label), label)


def _as_given(value, arr):
    """``arr`` in ``value``'s shape: a number stays a number (pystellibs calls the helpers per star too)."""
    return arr.reshape(np.shape(value))


def _weights_value(weights):
    """get_weights' optional factors (e.g. numbers of stars): plain numbers, unmasked; a Quantity or a
    Column with a unit only if dimensionless."""
    _refuse_masked(weights, "weights")
    weights = _dimensionless(column_quantity(weights, "weights", "a dimensionless one"),
                             "weights are numbers that multiply each star's luminosity")
    return _as_given(weights, _as_float_array(weights, "weights"))


def _steps(lo, hi, step):
    """lo, lo + step, ... and hi itself: both edges of a box range, whatever its width."""
    return np.unique(np.append(np.arange(lo, hi, step), hi))


def _pystellibs_margins(dlogT, dlogg):
    """Margins as pystellibs' ``Stellib.get_boundaries`` reads them: None means 0.1 in log T, 0.3 in log g
    (pystellibs' ``CompositeStellib`` passes None; ``lib_a + SMNet`` failed with a TypeError)."""
    return (0.1 if dlogT is None else float(dlogT)), (0.3 if dlogg is None else float(dlogg))


class SMNetStellib:
    """A stellar library backed by an smnet-sps generator, with pystellibs' ``Stellib`` interface.

    Parameters
    ----------
    generator : smnet_sps.generator.Generator, optional
        Default: ``smnet_sps.neural.load_generator()`` (the shipped model).
    zsun : float
        Solar metal mass fraction converting ``Z`` to [M/H] = log10(Z / zsun).
    node_step : (float, float) or (float, float, float)
        (d logT, d logg[, d [M/H]]) of the representative node grid exposed as ``logT``/``logg``/``Teff``/
        ``logZ``/``Z`` (a generator has no discrete grid; the nodes sample each training library's box, at
        every [M/H] step of it, default 0.5 dex, for plotting and boundary code).
    batch_size : int, spectra per generator call.
    """

    wavelength_unit = "AA"
    #: smnet-sps works in vacuum wavelengths (pystellibs itself does not state a medium)
    wavelength_medium = "vacuum"
    #: line-spread function of the generator's grid: a box one pixel wide (``lsf_fwhm`` per pixel,
    #: smnet_sps.lsf)
    lsf_shape = "box"

    def __init__(self, generator=None, *, zsun=0.02, node_step=(0.02, 0.25), batch_size=8192):
        if generator is None:
            from smnet_sps.neural import load_generator
            generator = load_generator()
        self.zsun = check_zsun(zsun, "0.02")
        self.generator = generator
        self.batch_size = int(batch_size)
        self.name = f"smnet-sps {getattr(generator, 'name', 'generator')}"
        self._wavelength = np.asarray(generator.wavelength, float)
        self._dlogT = 0.0
        self._dlogg = 0.0
        boxes = list(generator.library_boxes.values()) or [generator.box]
        self._boxes = [b for b in boxes if np.isfinite(b.teff).all()]
        if not self._boxes:
            raise ValueError(f"generator '{generator.name}' has no finite Teff coverage box")
        if len(node_step) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in node_step):
            raise ValueError(f"node_step must be (d logT, d logg) or (d logT, d logg, d [M/H]), all > 0; "
                             f"got {node_step}")
        self._nodes = self._make_nodes(*node_step)

    # ---- grid-like attributes -------------------------------------------------------------------
    def _make_nodes(self, dlogt, dlogg, dlogz=0.5):
        pts = []
        for b in self._boxes:
            lg_lo, lg_hi = (np.clip(b.logg, -1.0, 9.5) if not np.isfinite(b.logg).all() else b.logg)
            lz = _steps(*b.logz, dlogz) if np.isfinite(b.logz).all() else np.zeros(1)
            lt = _steps(np.log10(b.teff[0]), np.log10(b.teff[1]), dlogt)
            lg = _steps(lg_lo, lg_hi, dlogg)
            T, G, Z = np.meshgrid(lt, lg, lz, indexing="ij")
            pts.append(np.column_stack([T.ravel(), G.ravel(), Z.ravel()]))
        return np.unique(np.vstack(pts), axis=0)

    @property
    def wavelength(self):
        """Wavelengths [Angstrom] as an astropy Quantity (pystellibs returns a unit-carrying array too)."""
        return self._wavelength.copy() * u.AA

    @property
    def lsf_fwhm(self):
        """Line-spread FWHM [Angstrom] per wavelength: the pixel width (box LSF of the binned grid)."""
        from smnet_sps.lsf import grid_lsf_fwhm
        return grid_lsf_fwhm(self._wavelength) * u.AA

    @property
    def flux_units(self):
        return 1.0 * LLAM_UNIT

    @property
    def logT(self):
        return self._nodes[:, 0]

    @property
    def logg(self):
        return self._nodes[:, 1]

    @property
    def Teff(self):
        return 10.0 ** self.logT

    @property
    def logZ(self):
        return np.log10(self.zsun) + self._nodes[:, 2]

    @property
    def Z(self):
        return 10.0 ** self.logZ

    def get_interpolation_data(self):
        return np.array([self.logT, self.logg, self.logZ]).T

    def set_default_extrapolation_bounds(self, dlogT=None, dlogg=None):
        if dlogT is not None:
            self._dlogT = float(dlogT)
        if dlogg is not None:
            self._dlogg = float(dlogg)

    # ---- coverage --------------------------------------------------------------------------------
    def get_boundaries(self, dlogT=0.1, dlogg=0.3, **kwargs):
        """Boundary of the coverage in (logT, logg) as a ``matplotlib.path.Path`` (one rectangle per box).

        Margins ``dlogT``/``dlogg`` widen every box, as pystellibs' margins do; None means pystellibs'
        defaults, 0.1 and 0.3 (its ``CompositeStellib`` passes None when no bounds are given).
        """
        from matplotlib.path import Path
        dlogT, dlogg = _pystellibs_margins(dlogT, dlogg)
        paths = []
        for b in self._boxes:
            t0, t1 = np.log10(b.teff[0]) - dlogT, np.log10(b.teff[1]) + dlogT
            g0, g1 = (np.clip(b.logg, -1.0, 9.5) if not np.isfinite(b.logg).all() else b.logg)
            g0, g1 = g0 - dlogg, g1 + dlogg
            paths.append(Path([(t0, g0), (t1, g0), (t1, g1), (t0, g1), (t0, g0)], closed=True))
        return Path.make_compound_path(*paths)

    def points_inside(self, xypoints, dlogT=0.1, dlogg=0.5, Z=None):
        """True for (logT, logg) pairs inside the coverage widened by the margins.

        With ``Z`` (metal mass fractions) and no margins (``dlogT = dlogg = 0``, what the spectrum methods
        use by default) this is the generator's own coverage flag (``generator.in_coverage``: inside a
        library box *and* near that library's grid nodes, so the holes of a grid are outside, and a
        single-metallicity library covers +-0.25 dex around it). With margins, or without ``Z``, it is the
        test of pystellibs' polygon: inside a training-library box widened by the margins (the [M/H] range
        of each box required when ``Z`` is given); a point accepted only by the margins gets the generator's
        extrapolation and a ``CoverageWarning``.
        """
        dlogT, dlogg = _pystellibs_margins(dlogT, dlogg)
        _refuse_masked(xypoints, "xypoints")
        xy = np.atleast_2d(np.asarray(xypoints, float))
        if xy.ndim != 2 or xy.shape[-1] != 2:
            raise ValueError(f"xypoints must be a sequence of (logT, logg) pairs, shape (n, 2); got shape "
                             f"{xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError("xypoints contain NaN or inf; logT and logg must be finite")
        logz = None if Z is None else self._mh(Z, xy.shape[0])
        if logz is not None and dlogT == 0 and dlogg == 0:
            return np.asarray(self.generator.in_coverage(10.0 ** xy[:, 0], xy[:, 1], logz), bool)
        inside = np.zeros(xy.shape[0], bool)
        for b in self._boxes:
            ok = ((xy[:, 0] >= np.log10(b.teff[0]) - dlogT) & (xy[:, 0] <= np.log10(b.teff[1]) + dlogT)
                  & (xy[:, 1] >= b.logg[0] - dlogg) & (xy[:, 1] <= b.logg[1] + dlogg))
            if logz is not None:
                lo, hi = widen_single_metallicity((b.teff, b.logg, b.logz))[2]
                ok &= (logz >= lo) & (logz <= hi)
            inside |= ok
        return inside

    def _mh(self, Z, n):
        Z = _parameter(Z, "Z")
        if Z.ndim > 1 or Z.size not in (1, n):
            raise ValueError(f"Z must be a number or a 1-d array of metal mass fractions, one per star "
                             f"({n}); got shape {Z.shape}")
        Z = np.broadcast_to(Z.reshape(-1), (n,))
        if not np.isfinite(Z).all() or (Z <= 0).any():
            raise ValueError("Z must be positive finite metal mass fractions (e.g. 0.02 for solar); "
                             f"got minimum {np.nanmin(Z) if np.isfinite(Z).any() else Z[0]}")
        return np.log10(Z / self.zsun)

    # ---- weights and radii (pystellibs units) --------------------------------------------------
    def get_weights(self, logT, logg, logL, weights=None):
        """Luminosity [erg/s] by which the L_bol-normalised spectra are multiplied (as pystellibs).

        ``logL`` is checked as :meth:`generate_individual_spectra` checks it (a masked value is refused, a
        Quantity or a Column with a unit converted); ``weights`` (optional factors) must be plain numbers or
        dimensionless."""
        L = 10.0 ** _as_given(logL, _parameter(logL, "logL")) * L_SUN
        return L if weights is None else _weights_value(weights) * L

    def get_radius(self, logl, logt):
        """Radius [m, SI as pystellibs] of a star of log(L/L_sun) and log Teff: R^2 = L / (4 pi sigma T^4).

        Both are checked as :meth:`generate_individual_spectra` checks logL and logT (masked refused,
        units converted)."""
        L_w = 10.0 ** _as_given(logl, _parameter(logl, "logL", "logl")) * L_SUN * 1e-7
        teff = 10.0 ** _as_given(logt, _parameter(logt, "logT", "logt"))
        return np.sqrt(L_w / (4.0 * np.pi * SIGMA_SB * 1e-3 * teff**4))

    # ---- spectra ---------------------------------------------------------------------------------
    def _lbol_normalised(self, logT, logg, Z):
        """f F_lambda / integral(F_lambda) [1/A]: the spectrum per unit bolometric luminosity.

        Divided by its own integral over the generator's grid and multiplied by f, the share of a blackbody
        of that Teff on the grid: the spectrum of a star of luminosity L integrates to f L there. The whole
        per-star rule of the SSP backend (:func:`smnet_sps.backend.star_rule`), so a star gets the backend's
        spectrum: a star outside the coverage (accepted by the ``dlogT``/``dlogg`` margins) whose extrapolated
        spectrum integrates more than 2x off its generator's target gets a blackbody of its Teff. Dividing by
        sigma T^4 (4 pi R^2 F_lambda) carried the generator's integral error into L_bol (0.91 L at
        150,000 K, log g 6.5); without f, a generator on a short grid (a released SM-Net checkpoint,
        3,000 A - 10 um) put a hot star's whole L into its optical (18x too bright at 40 kK).

        The row of an unusable spectrum (any pixel negative or non-finite) is NaN: the callers treat it as
        outside the coverage."""
        logT = np.atleast_1d(np.asarray(logT, float))
        teff = 10.0 ** logT
        flux, inside = self.generator.surface_flux(teff, logg, self._mh(Z, teff.size),
                                                   batch_size=self.batch_size)
        # the SSP backend's rule: a spectrum with a negative pixel is unusable (it was returned as negative
        # light, -5e30 erg/s/A); an implausible extrapolation is a blackbody (it was the rescaled untrusted
        # spectrum, V 1.1 mag off the SSP's star)
        status = np.where(inside, STATUS["generator"], STATUS["extrapolated"])
        scale = star_rule(flux, self._wavelength, teff, status, self.generator.target_fraction(teff))[0]
        return flux * scale[:, None]

    def _validate_stars(self, logT, logg, logL, Z, single=False):
        """(logT, logg, logL, Z) as 1-d float arrays of one common length, checked.

        ``single`` (one star): every parameter must be a number (a one-element array is taken as one);
        otherwise each is a number or a 1-d array with one value per star, as pystellibs' columns.
        """
        names = ("logT", "logg", "logL", "Z")
        arrays = []
        for name, a in zip(names, (logT, logg, logL, Z)):
            arr = _parameter(a, name)
            if single and arr.size != 1:
                raise ValueError(f"generate_stellar_spectrum makes one star: {name} must be a number; got "
                                 f"shape {arr.shape} (use generate_individual_spectra for many stars)")
            if not single and arr.ndim > 1:
                raise ValueError(f"{name} must be a number or a 1-d array (one value per star, as "
                                 f"pystellibs' columns); got shape {arr.shape}")
            arrays.append(np.atleast_1d(arr).reshape(-1))
        sizes = {a.size for a in arrays} - {1}
        if len(sizes) > 1:
            got = ", ".join(f"{n}: {a.size}" for n, a in zip(names, arrays))
            raise ValueError(f"logT, logg, logL, Z must have one value per star (or one for all); got {got}")
        arrays = np.broadcast_arrays(*arrays)
        for name, a in zip(names, arrays):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or inf; stellar parameters must be finite")
        check_logt(arrays[0], "logT")          # a Teff in K given as logT overflowed 10**logT: named here
        check_logl(arrays[2], "logL")          # the core backend's range (L in L_sun given as logL)
        return arrays

    def generate_stellar_spectrum(self, logT, logg, logL, Z, raise_extrapolation=True, **kwargs):
        """L_lambda [erg s^-1 A^-1] (plain array on ``wavelength``) of one star.

        ``logT``, ``logg``, ``logL``, ``Z`` are numbers (a one-element array counts as one); several values
        raise ``ValueError`` (use :meth:`generate_individual_spectra`).

        Outside the coverage, or where the generated spectrum is unusable (a negative or non-finite pixel):
        ``RuntimeError`` if ``raise_extrapolation`` (pystellibs' behaviour), else an array filled with
        ``null`` (default NaN).
        """
        null_value = kwargs.pop("null", np.nan)
        logT, logg, logL, Z = (a[0] for a in self._validate_stars(logT, logg, logL, Z, single=True))
        if not self.points_inside([[logT, logg]], dlogT=0.0, dlogg=0.0, Z=Z)[0]:
            if raise_extrapolation:
                raise RuntimeError(f"Outside library interpolation range: logT={logT:g}, logg={logg:g}, "
                                   f"Z={Z:g} (coverage of {self.name}: {self.generator.box.describe()})")
            return np.full(self._wavelength.size, null_value)
        spectrum = self._lbol_normalised(logT, logg, Z)[0]
        if not np.isfinite(spectrum).all():
            if raise_extrapolation:
                raise RuntimeError(f"unusable generated spectrum (a pixel negative or non-finite) at "
                                   f"logT={logT:g}, logg={logg:g}, Z={Z:g} from {self.name}; treated as "
                                   "outside the library's range, as the SSP backend treats it")
            return np.full(self._wavelength.size, null_value)
        return spectrum * self.get_weights(logT, logg, logL)

    def generate_individual_spectra(self, stars, **kwargs):
        """Spectra of many stars: ``(wavelength [A] Quantity, L_lambda Quantity (n_star, n_wave) [erg/s/A])``.

        ``stars`` is a mapping/DataFrame with ``logT``, ``logg``, ``logL``, ``Z``: 1-d columns, one value per
        star (a number stands for every star); other shapes raise ``ValueError``. Stars outside the coverage
        (widened by ``dlogT``/``dlogg``, default 0) get ``null`` (NaN) spectra, as in pystellibs, and so do
        stars whose generated spectrum is unusable (a negative or non-finite pixel).
        """
        null_value = kwargs.pop("null", np.nan)
        dlogT = kwargs.pop("dlogT", self._dlogT)
        dlogg = kwargs.pop("dlogg", self._dlogg)
        try:
            cols = [stars[k] for k in ("logT", "logg", "logL", "Z")]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError("stars must provide columns logT, logg, logL, Z") from exc
        logT, logg, logL, Z = self._validate_stars(*cols)
        bound = self.points_inside(np.column_stack([logT, logg]), dlogT=dlogT, dlogg=dlogg, Z=Z)
        specs = np.full((logT.size, self._wavelength.size), null_value, dtype=float)
        if bound.any():
            scaled = (self._lbol_normalised(logT[bound], logg[bound], Z[bound])
                      * self.get_weights(logT[bound], logg[bound], logL[bound])[:, None])
            usable = np.isfinite(scaled).all(axis=1)            # unusable spectra keep null, as outside
            specs[np.flatnonzero(bound)[usable]] = scaled[usable]
        return self.wavelength, specs * LLAM_UNIT

    def __repr__(self):
        return f"SMNetStellib({self.name}, {self._wavelength.size} px, zsun={self.zsun})"


def register(generator=None, *, name="SMNet", **kwargs):
    """Expose :class:`SMNetStellib` inside pystellibs (``pystellibs.<name>``) when pystellibs is importable.

    Returns the pystellibs-compatible class (a subclass of ``pystellibs.stellib.Stellib`` when available,
    so ``+`` composition with pystellibs libraries works), or ``None`` when pystellibs is not installed.
    """
    try:
        import pystellibs
        from pystellibs.stellib import Stellib
    except ImportError:
        return None

    class _Registered(SMNetStellib, Stellib):
        def __init__(self, generator=generator, **kw):      # skip Stellib.__init__ (no interpolator needed)
            SMNetStellib.__init__(self, generator, **{**kwargs, **kw})

    _Registered.__name__ = name
    setattr(pystellibs, name, _Registered)
    libs = getattr(pystellibs, "libraries", None)
    if isinstance(libs, dict):
        libs[name] = _Registered
    elif isinstance(libs, list):
        libs.append(_Registered)
    return _Registered
