"""Filter (bandpass) lookup: speclite and astro-sedpy names, two-column files, synphot objects.

Every filter, whatever its origin, becomes a :class:`synphot.SpectralElement` (wavelength [Angstrom],
dimensionless throughput) with a name. Nothing here touches the network: speclite and sedpy ship
their curves inside their packages.

Name conventions
----------------
* speclite: ``"group-band"``, e.g. ``"sdss2010-r"``, ``"bessell-V"``, ``"twomass-Ks"``, ``"galex-nuv"``.
* astro-sedpy (installed with the package): its own names, e.g. ``"sdss_r0"``, ``"bessell_V"``, ``"wise_w1"``.
* a path to a text file with two columns: wavelength and throughput (``#`` comments allowed; blanks or commas
  between them, a CSV header line allowed); the wavelength is Angstrom unless a comment line (or the CSV
  header) states nm or micron (``# wavelength [nm]``, :func:`read_filter_file`).
* a ready :class:`synphot.SpectralElement` (its ``meta["name"]`` or ``meta["expr"]`` names the column); it
  needs a finite wavelength set (``waveset``), and one built from sampled curves is zero beyond it.

Every filter's throughput is zero beyond the ends of its curve, as in sedpy and speclite (synphot holds a
sampled curve's end values beyond it unless they are zero).

Throughputs are used as given, as photon-counting response functions (fraction of photons detected), which
is what synphot's photon-counting effective stimulus expects and how speclite and sedpy use them. One
exception in origin: speclite's ``bessell-*`` curves are Bessell's (1990) tables, which Bessell & Murphy
(2012) replaced with photonic passbands, the 1990 ones being energy responses; docs/photometry.md gives the
size of the difference.
"""
from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

import numpy as np
from astropy import units as u

from .igm import LYMAN_LIMIT
from .medium import WAVE_UNIT_SPELLINGS, spelled_wave_unit

__all__ = ["get_bandpass", "resolve_filters", "speclite_filter_names", "sedpy_filter_names",
           "available_filter_names", "read_filter_file", "split_filter_names"]


@functools.lru_cache(maxsize=1)
def speclite_filter_names():
    """All speclite filter names ("group-band"), read from the package's data folder (no network)."""
    import speclite.filters as sf
    folder = Path(sf.__file__).parent / "data" / "filters"
    return tuple(sorted(p.stem for p in folder.glob("*.ecsv")))


@functools.lru_cache(maxsize=1)
def sedpy_filter_names():
    """All astro-sedpy filter names, or an empty tuple when sedpy is not installed."""
    try:
        import sedpy.observate as ob
    except ImportError:
        return ()
    return tuple(sorted(ob.list_available_filters()))


def available_filter_names():
    """Every filter name understood by :func:`get_bandpass` (speclite, then sedpy)."""
    return speclite_filter_names() + sedpy_filter_names()


def _element(wave_aa, throughput, name):
    from synphot import SpectralElement
    from synphot.models import Empirical1D
    wave_aa = np.asarray(wave_aa, float)
    throughput = np.asarray(throughput, float)
    # zero outside the curve: synphot holds a curve's end values beyond it unless its ends are zero (134 of
    # the named filters end above zero: decam_u took the spectrum out to 160 um, 0.34 mag too bright)
    bp = SpectralElement(Empirical1D, points=wave_aa * u.AA, lookup_table=throughput, keep_neg=True,
                         fill_value=0.0, meta={"name": name})
    return bp


_ZERO_FILLED: dict = {}


def _waveset_aa(bp, name):
    """The element's wavelength set [A]; a ValueError when it has none (a Const1D element is flat over all
    wavelengths: no finite integral)."""
    waveset = bp.waveset
    wave = None if waveset is None else np.asarray(waveset.to_value(u.AA), float)
    if wave is None or wave.ndim != 1 or wave.size < 2 or not np.all(np.isfinite(wave)):
        raise ValueError(f"filter {name!r} ({type(bp.model).__name__}) has no finite wavelength set "
                         f"(waveset {waveset!r}): a filter needs one, e.g. an Empirical1D curve of "
                         "(wavelength, throughput) points or a Box1D / Gaussian1D element")
    return wave


def _user_element(bp, name):
    """A user's ``SpectralElement``, checked (a finite wavelength set, throughput > 0 on it, negative values
    only as noise: the rule of files, :data:`NEGATIVE_NOISE_MAX`) and with zero throughput beyond its curve
    (:func:`_zero_beyond_curve`); one with negative noise (``keep_neg=True``) comes back sampled on its
    wavelength set with that noise at zero."""
    wave = _waveset_aa(bp, name)
    # _bandpass_support failed with an IndexError on no positive throughput; a negative lobe (keep_neg=True)
    # was integrated as it was: -0.5 over 5000-5300 A made a 6000 K blackbody 0.066 mag brighter in AB
    thr = np.asarray(bp(wave).value, float)
    clipped = _without_negative_noise(wave, thr, name, "build the element without them (synphot's default "
                                      "keep_neg=False sets them to zero)")
    if np.any(thr < 0):
        return _zero_beyond_curve(bp, wave, name, clipped)
    return _zero_beyond_curve(bp, wave, name)


def _zero_beyond_curve(bp, wave, name, throughput=None):
    """``bp`` with zero throughput beyond its wavelength set ``wave`` [A] if it is built from sampled curves
    (Empirical1D) whose end values synphot holds beyond them, as :func:`_element` gives named filters and
    files; analytic elements (Box1D, Gaussian1D, ...) as they are: they have their own values everywhere.

    A held end value took in the spectrum far from the filter: a flat curve over 5000-6000 A saw a flat
    spectrum's light over 1000-20000 A (ST 12.50 instead of 16.40), sedpy's decam_u read with
    ``SpectralElement.from_file`` a 10 Gyr SSP's out to 160 um (8.556 instead of 8.889 by name).

    ``throughput``: the values on ``wave`` to rebuild it with in any case (its negative noise set to zero,
    :func:`_user_element`)."""
    from synphot.models import Empirical1D
    if throughput is None:
        models = (list(bp.model.traverse_postorder()) if hasattr(bp.model, "traverse_postorder")
                  else [bp.model])
        if not any(isinstance(m, Empirical1D) for m in models):
            return bp
        beyond = np.asarray(bp(wave[[0, -1]] * np.array([1 - 1e-9, 1 + 1e-9])).value, float)
        if not np.any(beyond != 0):
            return bp
    hit = _ZERO_FILLED.get(id(bp))
    if hit is not None and hit[0] is bp:
        return hit[1]
    # sampled on its own wavelength set: exactly the curve for one Empirical1D (the usual case); a product
    # of curves becomes linear between the points of that set
    zeroed = _element(wave, np.asarray(bp(wave).value, float) if throughput is None else throughput, name)
    if len(_ZERO_FILLED) > 256:
        _ZERO_FILLED.clear()
    _ZERO_FILLED[id(bp)] = (bp, zeroed)
    return zeroed


#: negative throughputs down to this fraction of the curve's peak are noise around zero and are set to zero
#: (17 of sedpy's curves hold such values, down to -0.4 % of the peak, in VISTA's; sedpy drops them); a more
#: negative value is not noise (a sign error, a wrong column) and is refused
NEGATIVE_NOISE_MAX = 1e-2


def _without_negative_noise(wave, thr, name, hint):
    """``thr`` with its negative noise (no lower than -:data:`NEGATIVE_NOISE_MAX` x the peak) set to zero; a
    ValueError (ending in ``hint``) for a deeper negative value or no positive one. ``wave``: for the
    message."""
    peak = thr.max()
    if not peak > 0:
        raise ValueError(f"filter {name!r}: throughput must be > 0 somewhere on its wavelengths "
                         f"({wave[0]:.6g}-{wave[-1]:.6g}; got min {thr.min():g}, max {peak:g})")
    # measured curves scatter around zero out of band (sedpy's sdss_r0 has -0.0013 for a peak of 0.48, VISTA's
    # down to -0.4 % of theirs; all 17 such sedpy files were refused when given as paths, while sedpy reads
    # them): noise, set to zero, as a throughput cannot be negative; a deeper value is no such noise
    deep = thr < -NEGATIVE_NOISE_MAX * peak
    if deep.any():
        k = int(np.argmin(thr))
        raise ValueError(f"filter {name!r}: {int(deep.sum())} throughput value(s) below "
                         f"-{NEGATIVE_NOISE_MAX:g} x the peak ({peak:g}), the lowest {thr[k]:g} at "
                         f"wavelength {wave[k]:.6g}: a throughput must be >= 0 (negative values down to "
                         f"-{NEGATIVE_NOISE_MAX:g} x the peak are taken as noise and set to zero); {hint}")
    return np.maximum(thr, 0.0)


def _validate_curve(wave, thr, name):
    """Check a sampled curve (wavelength [A], throughput); return the throughput with its negative noise
    (no lower than -:data:`NEGATIVE_NOISE_MAX` x the peak) set to zero."""
    if wave.ndim != 1 or wave.size < 2 or wave.shape != thr.shape:
        raise ValueError(f"filter {name!r}: need >= 2 (wavelength, throughput) pairs, got shapes "
                         f"{wave.shape} and {thr.shape}")
    if not (np.all(np.isfinite(wave)) and np.all(np.isfinite(thr))):
        raise ValueError(f"filter {name!r}: wavelengths and throughputs must be finite (found NaN/inf)")
    if np.any(np.diff(wave) <= 0) or wave[0] <= 0:
        raise ValueError(f"filter {name!r}: wavelengths must be positive and strictly increasing (Angstrom)")
    return _without_negative_noise(wave, thr, name, "check the file's sign and columns")


# a comment line stating the wavelength column's unit: a wavelength word followed by the unit in brackets or
# after "in" / "unit": "Wavelength(nm)", "# wavelength [nm]", "lambda (micron)", '"lambda" is in Angstroms';
# a bare "A" only in brackets ("wavelength (A)": "wavelengths in a vacuum" states none). The spellings are
# medium.WAVE_UNIT_SPELLINGS' (longest first: "nanometers" before "nm")
_SPELLINGS = sorted((s for spellings in WAVE_UNIT_SPELLINGS.values() for s in spellings), key=len,
                    reverse=True)
_ANY_UNIT = "|".join(re.escape(s) for s in _SPELLINGS if s != "a")
_UNIT_STATEMENT = re.compile(
    r"\b(?:wave\w*|lambda|wl)\b[\"'\s]*(?:[(\[]\s*(?P<bracket>" + _ANY_UNIT + r"|a)\s*[)\]]"
    r"|(?:(?:is\s+)?in|units?\s*[:=]?)\s*(?P<unit>" + _ANY_UNIT + r")\b)", re.IGNORECASE)
#: a curve stating no unit whose Angstrom reading has its mean below this could as well be a near-infrared
#: curve in nm (1000-3200 nm): warned unless it looks like a built-in filter
AMBIGUOUS_BELOW_AA = 3200.0
#: where both readings of a unit-less file look like built-in filters, the one whose shape distance is this
#: many times smaller wins (a curve and its own built-in: ~0; against the other unit's lookalike: >= 0.046)
CLEARLY_CLOSER = 3.0
#: a reading (Angstrom, nm, micron) of a file that states no wavelength unit looks like a built-in (speclite /
#: sedpy) filter when its pivot wavelength is within UNIT_MATCH_PIVOT_RTOL of the filter's, its width
#: (int T dl / max T) within UNIT_MATCH_WIDTH_RTOL, and the two curves, put at one pivot with unit area,
#: differ by less than UNIT_MATCH_SHAPE_MAX in total variation (one filter from speclite and from sedpy:
#: <= 0.012; a 1800-2200 A box read as nm against NIRISS F200W, pivot and width within 1 % / 7 %: 0.14)
UNIT_MATCH_PIVOT_RTOL = 0.01
UNIT_MATCH_WIDTH_RTOL = 0.10
UNIT_MATCH_SHAPE_MAX = 0.08
_READINGS = ((u.AA, 1.0, "Angstrom"), (u.nm, 10.0, "nm"), (u.micron, 1e4, "micron"))


def _pivot_width(wave, thr):
    """(pivot wavelength, width int T dl / max T) of a curve, in ``wave``'s unit."""
    return (float(np.sqrt(np.trapezoid(thr * wave, wave) / np.trapezoid(thr / wave, wave))),
            float(np.trapezoid(thr, wave) / thr.max()))


@functools.lru_cache(maxsize=1)
def _builtin_curves():
    """((name, wavelength [A], throughput >= 0, pivot [A], width [A]), ...) of every built-in filter, read
    from speclite's and sedpy's data once (~2 s for all, no synphot element made)."""
    curves = []
    for name in available_filter_names():
        if name in speclite_filter_names():
            import speclite.filters as sf
            f = sf.load_filter(name)
            wave, thr = f.wavelength, f.response
        else:
            import sedpy.observate as ob
            f = ob.Filter(name)
            wave, thr = f.wavelength, f.transmission
        wave, thr = np.asarray(wave, float), np.maximum(np.asarray(thr, float), 0.0)
        if wave.size > 1 and thr.max() > 0:
            curves.append((name, wave, thr, *_pivot_width(wave, thr)))
    return tuple(curves)


def _shape_distance(wave1, thr1, wave2, thr2):
    """Total variation distance (0: same, 1: disjoint) of two curves normalised to unit area."""
    grid = np.union1d(wave1, wave2)
    a = np.interp(grid, wave1, thr1, left=0.0, right=0.0)
    b = np.interp(grid, wave2, thr2, left=0.0, right=0.0)
    return 0.5 * float(np.trapezoid(np.abs(a / np.trapezoid(a, grid) - b / np.trapezoid(b, grid)), grid))


def _builtin_lookalikes(wave, thr):
    """The built-in filters the curve (wavelength [A], throughput >= 0) looks like (pivot, width and shape:
    :data:`UNIT_MATCH_PIVOT_RTOL`), closest pivot first, as (name, shape distance)."""
    pivot, width = _pivot_width(wave, thr)
    found = []
    for name, bwave, bthr, bpivot, bwidth in _builtin_curves():
        off = abs(pivot / bpivot - 1)
        if off < UNIT_MATCH_PIVOT_RTOL and abs(width / bwidth - 1) < UNIT_MATCH_WIDTH_RTOL:
            shape = _shape_distance(wave * bpivot / pivot, thr, bwave, bthr)
            if shape < UNIT_MATCH_SHAPE_MAX:
                found.append((off, name, shape))
    return [(name, shape) for _, name, shape in sorted(found)]


def _unstated_unit(path, wave, thr):
    """The unit of a file that states none: Angstrom, the documented default, unless another reading
    looks like a built-in filter (a ValueError naming it: a file in nm or micron). Where both readings look
    like one (JWST F1500W in nm reads as F150W in Angstrom), the one whose shape is :data:`CLEARLY_CLOSER`
    closer wins, and neither winning is a ValueError: the unit is truly ambiguous. One that looks like none
    (a custom filter) is taken as Angstrom, with a warning where its Angstrom reading lies below 3200 A:
    there a near-infrared curve in nm lands too (a 1950-2350 nm box)."""
    import warnings
    found = {unit: _builtin_lookalikes(wave * scale, thr) for unit, scale, _ in _READINGS}
    closest = {unit: min((shape for _, shape in hits), default=None) for unit, hits in found.items()}
    other_unit = next((unit for unit, _, _ in _READINGS[1:] if found[unit]), None)
    if found[u.AA] and other_unit is not None:
        # both readings look like a built-in filter (NIRCam F150W in A read as nm is MIRI F1500W's pivot and
        # width): the one whose shape is clearly closer wins (distances 0.0 against 0.065 either way round)
        if closest[u.AA] < closest[other_unit] / CLEARLY_CLOSER:
            found = {**found, other_unit: []}
        elif closest[other_unit] < closest[u.AA] / CLEARLY_CLOSER:
            found = {**found, u.AA: []}
    looks = {unit: [name for name, _ in hits] for unit, hits in found.items()}
    other = next(((word, looks[unit][0]) for unit, _, word in _READINGS[1:] if looks[unit]), None)
    pivot = _pivot_width(wave, thr)[0]
    where = f"its curve ({wave[0]:.6g}-{wave[-1]:.6g}, pivot {pivot:.5g})"
    word = other[0] if other else "nm"
    how = (f"state the unit in a comment line before the data, '# wavelength [{word}]' (or [A], [nm], "
           f"[micron]; a CSV file: in its header line, 'wavelength [{word}],throughput'), or read it with "
           f"get_bandpass(path, wave_unit='{word}') and pass that element")
    if other and not looks[u.AA]:
        # twomass-Ks in nm (1927-2399) was read as 1927-2399 A without a word
        raise ValueError(f"filter file {str(path)!r} states no wavelength unit, and {where} read as Angstrom "
                         f"looks like no built-in filter, while read as {other[0]} it looks like the "
                         f"built-in {other[1]!r} (pivot, width and shape): {how}; or give the filter by "
                         f"name ({other[1]!r})")
    if other:
        # neither shape clearly closer: read as Angstrom with a warning, JWST curves in nm were 10x off
        raise ValueError(f"filter file {str(path)!r} states no wavelength unit, and {where} is ambiguous: "
                         f"read as Angstrom it looks like the built-in {looks[u.AA][0]!r}, read as "
                         f"{other[0]} like {other[1]!r}: state its unit ('# wavelength [A]' or '# wavelength "
                         f"[{other[0]}]' in a comment line before the data, or get_bandpass(path, "
                         "wave_unit=...)), or give the filter by name")
    if not looks[u.AA]:
        mean = float(np.trapezoid(thr * wave, wave) / np.trapezoid(thr, wave))
        if mean < LYMAN_LIMIT:
            warnings.warn(
                f"filter file {str(path)!r} states no wavelength unit, and read as Angstrom its curve "
                f"({wave[0]:.6g}-{wave[-1]:.6g} A, mean {mean:.4g} A) lies below the Lyman limit (912 A): "
                f"if it is in nm or micron, {how}; '# wavelength [A]' says it is Angstrom (and silences this "
                "warning)", UserWarning, stacklevel=4)
        elif mean < AMBIGUOUS_BELOW_AA:
            warnings.warn(
                f"filter file {str(path)!r} states no wavelength unit and looks like no built-in filter; "
                f"read as Angstrom its curve ({wave[0]:.6g}-{wave[-1]:.6g} A, mean {mean:.4g} A) lies in the "
                f"ultraviolet (below 3200 A), where a near-infrared curve in nm lands too: if it is in nm or "
                f"micron, {how}; "
                "'# wavelength [A]' says it is Angstrom (and silences this warning)", UserWarning,
                stacklevel=4)
    return u.AA


def _wave_unit_argument(wave_unit):
    """``wave_unit=`` (None, a length unit or its name: "nm", "micron", "Angstrom") as an astropy unit."""
    if wave_unit is None:
        return None
    unit = spelled_wave_unit(wave_unit) if isinstance(wave_unit, str) else None
    try:
        unit = unit or u.Unit(wave_unit)
        unit.to(u.AA)
    except (ValueError, TypeError, u.UnitConversionError):
        raise ValueError(f"wave_unit must be a wavelength unit (u.AA, u.nm, u.micron or their names, e.g. "
                         f"'nm'); got {wave_unit!r}") from None
    return unit


def _numbers(line):
    """Whether ``line`` (comma or blank separated) is numbers only."""
    try:
        return bool([float(w) for w in line.replace(",", " ").split()])
    except ValueError:
        return False


def _layout(path):
    """(header line or None, lines to skip before the data, delimiter: "," or None for blanks) of a filter
    file: a CSV file (``wavelength [nm],throughput`` then ``537.9,0.0``) has a header line without ``#``,
    naming the columns, followed by data lines."""
    header, skip = None, 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if _numbers(text.split("#")[0]):
                return header, skip, ("," if "," in text else None)
            if header is not None:
                break                               # two lines of text: no table (loadtxt says so)
            header, skip = text, i + 1
    return None, 0, None


def _stated_wave_unit(path, header=None):
    """The wavelength unit the first comment line that states one names, else the ``header`` line (u.AA,
    u.nm or u.micron), or None."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            text = line.strip()
            if not text.startswith("#"):
                continue
            m = _UNIT_STATEMENT.search(text)
            if m:
                return spelled_wave_unit(m.group("bracket") or m.group("unit"))
    m = _UNIT_STATEMENT.search(header or "")
    return spelled_wave_unit(m.group("bracket") or m.group("unit")) if m else None


def read_filter_file(path, name=None, wave_unit=None):
    """Read a two-column text file: wavelength, throughput (dimensionless, >= 0), separated by blanks or
    commas (CSV); a first line (without ``#``) naming the columns, ``wavelength [nm],throughput``, is skipped.

    Negative throughputs no lower than -1 % of the curve's peak (:data:`NEGATIVE_NOISE_MAX`) are measurement
    noise around zero and are set to zero (sedpy drops them); a lower value raises ValueError.

    The wavelength is in Angstrom unless a comment line states another unit for it: the first line with a
    wavelength word followed by a unit in brackets or after "in" -- ``# wavelength [nm]``,
    ``# Wavelength(nm)  Throughput(0-1)`` (LSST's throughput files), ``# lambda (micron)``,
    ``# "lambda" is in Angstroms`` (sedpy's) -- in Angstrom, nm or micron (um) is converted to Angstrom;
    without one, a CSV header line that states it so (``wavelength [nm],throughput``).
    ``wave_unit`` (u.AA, u.nm, u.micron or a name, "nm") gives the unit instead; a file that states
    another is refused.

    A file that states no unit is compared with the built-in (speclite / sedpy) filters read as Angstrom,
    nm and micron (pivot within 1 %, width within 10 %, the same shape: :data:`UNIT_MATCH_PIVOT_RTOL`):
    only the nm or micron reading looking like one (``twomass-Ks`` in nm, 1927-2399, which as Angstrom is
    a far-UV curve) is refused, naming that filter; the Angstrom reading looking like one is taken (a
    warning if another reading looks like one too), and a curve that looks like none (a custom filter) is
    Angstrom, with a warning below the Lyman limit (912 A).

    Raises
    ------
    ValueError
        If the file cannot be parsed as two numeric columns, or the curve is invalid.
    """
    path = Path(path)
    name = name or path.stem
    # a CSV file (commas, a header line naming the columns) was refused: "could not convert string
    # 'wavelength' to float64"
    header, skip, delimiter = _layout(path)
    try:
        data = np.loadtxt(path, comments="#", ndmin=2, skiprows=skip, delimiter=delimiter)
    except (ValueError, OSError) as exc:
        raise ValueError(f"filter file {str(path)!r} is not a two-column numeric table "
                         f"(wavelength [A], throughput): {exc}") from exc
    if data.size == 0:
        # an empty file (or comments only) was said to have "1 column(s)"
        raise ValueError(f"filter file {str(path)!r} holds no data rows (empty, or only comment lines); "
                         "expected two columns (wavelength [A], throughput)")
    if data.shape[1] < 2:
        raise ValueError(f"filter file {str(path)!r} has {data.shape[1]} column(s); expected 2 "
                         f"(wavelength [A], throughput)")
    wave = data[:, 0]
    thr = _validate_curve(wave, data[:, 1], name)
    given = _wave_unit_argument(wave_unit)
    unit = _stated_wave_unit(path, header)
    if given is not None and unit is not None and given != unit:
        raise ValueError(f"filter file {str(path)!r} states its wavelength unit as {unit}, but wave_unit="
                         f"{wave_unit!r} was given: drop one")
    unit = unit or given
    if unit is None:
        unit = _unstated_unit(path, wave, thr)
    return _element(wave * unit.to(u.AA), thr, name)


def _named_bandpass(name):
    """A named filter, made once per curve and handed to every caller (the photometry weight cache knows it by
    identity), so its curve is a read-only copy: a caller's in-place edit of ``bp.model.lookup_table`` changed
    the filter of every later call in the process (and speclite's own cached curve), but not the weights
    already cached for it.

    A speclite name is resolved as speclite resolves it at the time of the call: a ``FilterResponse`` the user
    makes under a shipped name replaces that curve in speclite's registry, and here from then on. The name
    alone was the cache key, so whether a session saw the user's curve depended on which came first, the
    registration or smnet-sps' first use of the name (sdss2010-r: 0.11 mag apart on an F_lambda ~ lambda^-4
    spectrum)."""
    if name in speclite_filter_names():
        return _filter_element(name, _speclite_response(name))
    if name in sedpy_filter_names():
        return _filter_element(name, None)
    raise KeyError(name)


def _speclite_response(name):
    """speclite's curve for ``name`` as speclite resolves it now: one the user made under that name sits in
    speclite's registry (``_filter_cache``, private: read defensively) and wins; else the shipped file, read
    once (``load_filter`` re-reads a file whose curve registers under another name, lsst2016-i as lsst-i:
    ~4 ms a call, 22 ms of every get_mags call over 100 bands)."""
    import speclite.filters as sf
    registered = getattr(sf, "_filter_cache", {}).get(name)
    return registered if registered is not None else _shipped_speclite_response(name)


@functools.lru_cache(maxsize=256)
def _shipped_speclite_response(name):
    import speclite.filters as sf
    return sf.load_filter(name)


@functools.lru_cache(maxsize=256)
def _filter_element(name, response):
    """:func:`_named_bandpass`'s element of speclite's ``response`` (a FilterResponse: it keys the cache,
    which holds it, so its id is never reused for another curve) or, with None, of sedpy's ``name``."""
    if response is not None:
        wave, thr = response.wavelength, response.response
    else:
        import sedpy.observate as ob
        f = ob.Filter(name)
        wave, thr = f.wavelength, f.transmission
    bp = _element(np.array(wave, float), np.array(thr, float), name)
    for a in (bp.model.lookup_table, *bp.model.points):
        a.flags.writeable = False
    return bp


def _named_pivot(name):
    """The pivot wavelength [A] of the named filter ``name`` (KeyError for another name), computed once per
    curve: synphot's pivot() took ~0.3 ms a filter, 31 ms for get_mags' 109 default bands on every call."""
    return _element_pivot(_named_bandpass(name))


@functools.lru_cache(maxsize=256)
def _element_pivot(bp):
    """The pivot wavelength [A] of a named filter's element (held by :func:`_filter_element`'s cache)."""
    return float(bp.pivot().to_value(u.AA))


def pivot_wavelength(spec):
    """The pivot wavelength [A] (synphot's ``pivot()``, on the filter's own points) of a filter as
    :func:`get_bandpass` takes it; a named filter's is computed once per process."""
    if isinstance(spec, str) and not Path(spec).is_file():      # get_bandpass's order: a file wins
        try:
            return _named_pivot(spec)
        except KeyError:
            pass                                                # get_bandpass names the unknown filter
    return float(get_bandpass(spec)[1].pivot().to_value(u.AA))


def get_bandpass(spec, wave_unit=None):
    """Resolve one filter to ``(name, synphot.SpectralElement)``.

    Parameters
    ----------
    spec : str, path-like or synphot.SpectralElement
        A speclite name ("sdss2010-r"), a sedpy name ("sdss_r0"), a path to a two-column file
        (wavelength [Angstrom, or as a comment line states: :func:`read_filter_file`], throughput), or a
        bandpass object. A bandpass object built from sampled
        curves (Empirical1D) whose ends are above zero comes back rebuilt with zero throughput beyond its
        wavelength set, as named filters and files have.
    wave_unit : astropy unit or str, optional
        The wavelength unit of a filter file (u.nm, "nm", "micron", "A"), for a file that states none
        (:func:`read_filter_file`); only for a file.

    Raises
    ------
    ValueError
        For an unknown name (with the closest known names suggested), an invalid filter file, or a bandpass
        object without a finite wavelength set (e.g. ``SpectralElement(Const1D, amplitude=1)``) or with no
        throughput on it.
    """
    from synphot import SpectralElement
    if isinstance(spec, SpectralElement) and wave_unit is None:
        name = str(spec.meta.get("name") or spec.meta.get("expr") or "bandpass")
        return name, _user_element(spec, name)
    if isinstance(spec, Path) or (isinstance(spec, str) and Path(spec).is_file()):
        bp = read_filter_file(spec, wave_unit=wave_unit)
        return bp.meta["name"], bp
    if wave_unit is not None:
        raise ValueError(f"wave_unit={wave_unit!r} is the unit of a filter file, but {spec!r} is not an "
                         "existing file (a filter name or object has its own wavelengths)")
    if not isinstance(spec, str):
        raise ValueError(f"a filter must be a name, a file path or a synphot.SpectralElement; "
                         f"got {type(spec).__name__}")
    try:
        return spec, _named_bandpass(spec)
    except KeyError:
        pass
    names = available_filter_names()
    if not spec.strip():
        raise ValueError(f"empty filter name {spec!r}: give a speclite name ('group-band', e.g. "
                         "'sdss2010-r'), a sedpy name (e.g. 'sdss_r0') or a file path")
    # Case-insensitive matches first ("galex-NUV" -> "galex-nuv"), then, for a bare band ("V", "Ks", "r"),
    # the names of that band (same case first: "V" had only vista_vircam_* and "Ks" nothing), then difflib,
    # then prefix hints.
    low = spec.lower().replace("_", "-")
    close = [n for n in names if n.lower().replace("_", "-") == low]
    if not re.search(r"[-_\s]", spec.strip()):
        bands = {n: re.split(r"[-_]", n)[-1] for n in names}
        close += [n for n in names if bands[n] == spec.strip() and n not in close]
        close += [n for n in names if bands[n].lower() == spec.strip().lower() and n not in close]
    # an instrument-qualified band ("NIRCam_F150W", SVO's "JWST/NIRCam.F150W", "hst_wfc3_f160w"): the names
    # ending in that band, those sharing most of the other words first ("NIRCam_F150W" got no hint, and
    # "nircam_f150w" NIRISS's curve first)
    words = [w for w in re.split(r"[^a-z0-9]+", spec.lower()) if w]
    if len(words) > 1 and re.fullmatch(r"[a-z]*\d+[a-z]*", words[-1]):       # a band such as f150w, w1
        same_band = [n for n in names if re.split(r"[-_]", n.lower())[-1] == words[-1] and n not in close]
        shared = {n: (len(set(words[:-1]) & set(re.split(r"[-_]", n.lower())[:-1])),
                      len(set(re.split(r"[-_]", n.lower())[:-1]) - set(words[:-1]))) for n in same_band}
        close += sorted(same_band, key=lambda n: (-shared[n][0], shared[n][1]))
    close += [n for n in difflib.get_close_matches(spec, names, n=6, cutoff=0.5) if n not in close]
    stem = low.split("-")[0].split("_")[0]
    close += [n for n in names if n.lower().startswith(stem) and n not in close][:6]
    hint = f" Did you mean: {', '.join(close[:10])}?" if close else ""
    sedpy_note = ("" if sedpy_filter_names()
                  else " (astro-sedpy is not installed, so its names are unavailable)")
    raise ValueError(f"unknown filter {spec!r}: not a speclite name ('group-band', e.g. 'sdss2010-r'), "
                     f"not a sedpy name (e.g. 'sdss_r0'){sedpy_note}, and not an existing file.{hint} "
                     f"See smnet_sps.filters.available_filter_names() for all {len(names)} names.")


def split_filter_names(text, option="filters"):
    """A comma-separated list of filter names or files -> the names, stripped; an empty item (``a,,b``,
    a trailing comma) is refused, naming its position: it was skipped silently, one column short."""
    names = [name.strip() for name in str(text).split(",")]
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise ValueError(f"{option} {text!r} has an empty name at position {', '.join(map(str, empty))} "
                         f"of {len(names)}; give comma-separated names or files, e.g. sdss2010-g,sdss2010-r")
    return names


def resolve_filters(filters):
    """Resolve a filter or a list of filters (or a comma-separated string) to ``[(name, bandpass)]``.

    Duplicate names get a numeric suffix so every table column is unique.
    """
    from synphot import SpectralElement
    if isinstance(filters, (str, Path, SpectralElement)):
        if isinstance(filters, str) and "," in filters and not Path(filters).is_file():
            filters = split_filter_names(filters)
        else:
            filters = [filters]
    if isinstance(filters, (bytes, dict)) or not np.iterable(filters):
        raise ValueError("filters must be a filter name, a file path, a synphot.SpectralElement or a list "
                         "of them (e.g. ['sdss2010-g', 'sdss2010-r']); got "
                         f"{type(filters).__name__} {filters!r}")
    filters = list(filters)
    if not filters:
        raise ValueError("no filters given; pass at least one filter name, file or SpectralElement")
    out, seen, taken = [], {}, set()
    for f in filters:
        name, bp = get_bandpass(f)
        base = name
        # a suffix can meet a later filter's own name ("r", "r", a file r_1.dat): the table had two
        # columns for three filters, the second r's magnitudes overwritten by the file's
        while name in taken:
            seen[base] = seen.get(base, 0) + 1
            name = f"{base}_{seen[base]}"
        taken.add(name)
        out.append((name, bp))
    return out
