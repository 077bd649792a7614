"""``smnet-sps fit``: fit a star (or, with ``--ssp-grid``, a population) to a spectrum file; plot and JSON.

Reading files, the command line and the plot live here; the fitting itself is :mod:`smnet_sps.fit`.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

__all__ = ["read_spectrum", "read_ssp_grid", "plot_fit", "add_cli"]

_WAVE_NAMES = ("wave", "wavelength", "lambda", "lam", "wl")
_FLUX_NAMES = ("flux", "f_lambda", "flam")
#: log10 of the wavelength in Angstrom (SDSS's spec files: vacuum)
_LOGLAM_NAMES = ("loglam",)
#: a frequency or energy axis (c / nu or h c / E is the vacuum wavelength): read only with a unit
_FREQ_NAMES = ("freq", "frequency", "nu", "energy")
_IVAR_NAMES = ("ivar", "inverse_variance")
_ERR_NAMES = ("err", "error", "sigma", "flux_err", "uncertainty")
#: a pixel-quality column, nonzero = bad pixel: ESO Phase 3's QUAL, SDSS's and_mask, specutils' mask
_MASK_NAMES = ("qual", "quality", "mask", "and_mask")


def _column(table, names):
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n in lower:
            return table[lower[n]]
    return None


_TEXT_SUFFIXES = (".txt", ".dat", ".asc")


def _unreadable(path, why):
    """One line: the file, why it could not be read (an exception or text), and what ``read_spectrum``
    accepts."""
    reason = " ".join(str(why).split()) or type(why).__name__
    return (f"{path}: cannot read a spectrum from this file ({reason}); accepted: a FITS, ECSV or CSV table "
            "with wavelength and flux columns, a FITS 1-d image (CRVAL1, CDELT1 or CD1_1), or a text file "
            f"({', '.join(_TEXT_SUFFIXES)}) with columns "
            "wave, flux[, error or, so named in a header line, ivar]")


def read_spectrum(path, medium=None):
    """(wave [A], flux, ivar or None) from a table file (FITS, ECSV, CSV), a FITS 1-d image or a 2-3 column
    text file.

    ``medium``: that of the file's wavelengths, ``"air"`` to return them converted to vacuum
    (:func:`smnet_sps.medium.air_to_vacuum`), ``"vacuum"`` or None (the default) to return them as they are,
    except that None follows a file that states air (a FITS image's CTYPE1 ``AWAV``: converted), and
    ``"vacuum"`` for such a file is a ValueError. A frequency or energy column has no medium (c / nu is the
    vacuum wavelength): with ``"air"`` it is a ValueError.

    A FITS file without a table holding a 1-d image is read as its flux (:func:`_fits_image_table`: the
    wavelengths from CRVAL1, CDELT1 or CD1_1, CRPIX1; IRAF's DC-FLAG 1 log10-linear; CTYPE1 WAVE-LOG; CUNIT1,
    else Angstrom; BUNIT; an ERR / IVAR / QUAL image extension); more spectra in one image, or another
    dispersion, is a ValueError naming it.

    Table columns: ``wave``/``wavelength``/``lambda`` (or ``loglam``, log10 of it in Angstrom, as in SDSS's
    spec files; or ``freq``/``frequency``/``nu``/``energy`` with a frequency or energy unit), ``flux``,
    and ``ivar`` or ``err``/``error``/``sigma``,
    and a pixel quality ``qual``/``quality``/``mask``/``and_mask``, nonzero for a bad pixel (ESO Phase 3's
    QUAL, SDSS's and_mask, specutils' mask), which is returned as flux NaN and ivar 0;
    one row whose cells are arrays (ESO's Phase 3 spectra: WAVE, FLUX, ERR) is read as those arrays.
    A wavelength column with a unit is converted to Angstrom; one in frequency or energy (e.g. Hz, eV) with
    u.spectral(), every column then reordered by the converted wavelength. A flux with a unit is converted to
    F_lambda at each wavelength (f_nu such as Jy to erg/s/cm^2/A; an F_lambda unit is kept), its
    ``err``/``ivar`` alike; a unit that is no spectral flux density, or a unit on only one of flux and its
    error, is a ValueError. A unit the format does not know (FITS TUNIT '1E-17 erg/s/cm^2/Angstrom') is
    parsed in astropy's generic format; one still unrecognised is a ValueError naming the column and the unit.
    Without a unit the flux is taken as F_lambda. Text files: wave, flux[, error] columns, wavelengths in
    Angstrom or in the unit a header line names (``# wave[nm] flux``: Angstrom, nm, um; without one,
    wavelengths ending below 1000 are refused as probably nm or um); a header line
    naming the third column ``ivar`` (``# wave flux ivar``, or the names without ``#`` on the first line)
    makes it an inverse variance. An error of 0 or
    NaN marks a pixel without data (ivar 0); a negative error is a ValueError (as a negative ivar is in
    :func:`smnet_sps.fit.fit_star`).
    """
    return _read_spectrum(path, medium)[:3]


def _read_spectrum(path, medium=None):
    """:func:`read_spectrum`'s (wave [A, vacuum], flux, ivar or None) and the medium the file's wavelengths
    were taken in: "air" (``medium`` "air", or a file that states it: CTYPE1 AWAV), else "vacuum"."""
    import astropy.units as u

    if medium is not None:
        from .medium import check_medium

        check_medium(medium)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no spectrum file at {path}")
    if path.suffix.lower() in _TEXT_SUFFIXES:
        header, skip = _text_header(path)
        try:
            a = np.loadtxt(path, ndmin=2, skiprows=skip)
        except ValueError as exc:                   # binary junk, text that is not numbers
            raise ValueError(_unreadable(path, exc)) from exc
        if not 2 <= a.shape[1] <= 3:
            # a fourth column (a mask, an ivar after the error) was ignored without a word
            raise ValueError(f"{path}: a text spectrum has columns wave, flux[, error]; this one has "
                             f"{a.shape[1]}: use a table (FITS, ECSV, CSV) with named columns for more")
        _check_column_order(path, a)
        a[:, 0] = _text_wavelengths(path, header, a[:, 0])
        third = header[2] if header is not None and len(header) == a.shape[1] == 3 else None
        if third in _IVAR_NAMES:
            # a header "# wave flux ivar" (SDSS's name) was ignored and the ivar read as an error: 1 / ivar^2
            # as the ivar (MILES star 208 at S/N 100: Teff 5455 +- 1.9e6 K, log g 5 on its bound, chi2 0.0)
            iv = a[:, 2]
            if np.any(iv < 0):
                raise ValueError(f"{path}: column 3 ({third}) has {int((iv < 0).sum())} negative inverse "
                                 "variance(s); an ivar must be >= 0 (0: a pixel without data)")
            return _in_vacuum(medium, *_increasing(path, a[:, 0], a[:, 1], iv))
        err = a[:, 2] if a.shape[1] > 2 else None
        ivar = None if err is None else _ivar_from_err(path, "3 (error)", err, a[:, 0])
        return _in_vacuum(medium, *_increasing(path, a[:, 0], a[:, 1], ivar))
    from astropy.io.registry import IORegistryError
    from astropy.table import QTable

    # a FITS file without a table: a 1-d image spectrum (SDSS, IRAF, ESO), refused as "No table found"
    t, stated = _fits_image_table(path)
    if stated == "air":
        if medium == "vacuum":
            raise ValueError(f"{path}: CTYPE1 'AWAV' states air wavelengths, but the medium given is "
                             "vacuum (--medium vacuum): give 'air', or nothing")
        medium = "air"
    # IORegistryError (no format recognised: random bytes, an empty file) is no ValueError/OSError, so the
    # command line would show a traceback; a corrupt FITS file gives an OSError that names no format
    try:
        if t is None:
            with warnings.catch_warnings():
                # a TUNIT the FITS standard does not know is parsed once more, or refused, by _unit_of
                warnings.simplefilter("ignore", u.UnitsWarning)
                t = QTable.read(path)
    except IORegistryError as exc:          # its message lists ~60 astropy formats: keep the line short
        raise ValueError(_unreadable(path, "no table format recognised in its contents")) from exc
    except (OSError, ValueError) as exc:
        raise ValueError(_unreadable(path, exc)) from exc
    w, f = _column(t, _WAVE_NAMES), _column(t, _FLUX_NAMES)
    if w is not None and f is not None and w.ndim == 2:
        t = _one_row_of_arrays(path, t, w)
        w, f = _column(t, _WAVE_NAMES), _column(t, _FLUX_NAMES)
    loglam = _column(t, _LOGLAM_NAMES) if w is None else None
    if loglam is not None:
        # SDSS's spec files (COADD: flux, loglam, ivar, and_mask) were refused as having no wavelength column
        if _unit_of(path, loglam) is not None:
            raise ValueError(f"{path}: column {loglam.info.name!r} is log10 of the wavelength in Angstrom "
                             f"and takes no unit; it has {loglam.unit}")
        t["wave"] = 10.0 ** _masked_as_nan(loglam)
        w = t["wave"]
    freq = _column(t, _FREQ_NAMES) if w is None else None
    if freq is not None:
        # a column 'freq' in Hz was refused as no wavelength column (a unit on 'wave' may be a frequency)
        if _unit_of(path, freq) is None:
            raise ValueError(f"{path}: column {freq.info.name!r} names a frequency or energy axis but has no "
                             "unit; give it one (e.g. Hz, GHz, eV), or give the wavelengths in Angstrom as "
                             "column 'wave'")
        w = freq
    if w is None or f is None:
        raise ValueError(
            f"{path}: needs a wavelength column ({', '.join(_WAVE_NAMES + _LOGLAM_NAMES)}; or a frequency or "
            f"energy with a unit: {', '.join(_FREQ_NAMES)}) and a flux column "
            f"({', '.join(_FLUX_NAMES)}); found {t.colnames}"
        )
    w_allowed = "a wavelength, frequency or energy unit (e.g. Angstrom, nm, um), or none (Angstrom)"
    w_unit = _unit_of(path, w, w_allowed)
    if w_unit is not None and not w_unit.is_equivalent(u.AA, equivalencies=u.spectral()):
        # it stopped with astropy's bare "'A' (electrical current) and 'Angstrom' (length) are not
        # convertible", naming neither file nor column: FITS reads the TUNIT 'A' as the ampere (the hint
        # only for 'A' itself)
        from .medium import _wavelength_ampere_hint
        raise ValueError(f"{path}: column {w.info.name!r} is in {w_unit}, which is no wavelength"
                         f"{_wavelength_ampere_hint(w_unit)}; allowed: {w_allowed}")
    wave = (
        (np.asarray(w.value, float) * w_unit).to_value(u.AA, equivalencies=u.spectral())
        if w_unit is not None
        else np.asarray(w, float)
    )
    f_name = f.info.name
    flux_unit = _unit_of(path, f)
    # per-pixel factor to the F_lambda the fit assumes: f_nu (Jy) read as F_lambda fitted MILES star 257 as
    # Teff 4591, log g 1.1, [M/H] -2.5 instead of 6039, 4.2, -0.7
    to_f_lambda = 1.0 if flux_unit is None else _f_lambda_factor(path, f_name, flux_unit, wave)
    flux = _masked_as_nan(f) * to_f_lambda
    iv = _column(t, _IVAR_NAMES)
    err = _column(t, _ERR_NAMES)
    ivar = None
    if iv is not None:
        ivar = _masked_as_nan(iv) * _ivar_factor(path, iv.info.name, _unit_of(path, iv), f_name, flux_unit,
                                                 wave)
        if np.any(ivar < 0):
            # it reached fit_star, whose "ivar must be >= 0" named neither the file nor the column
            raise ValueError(f"{path}: column {iv.info.name!r} has {int((ivar < 0).sum())} negative inverse "
                             "variance(s); an ivar must be >= 0 (0: a pixel without data)")
    elif err is not None:
        err_unit = _unit_of(path, err)
        _check_units_agree(path, err.info.name, err_unit, f_name, flux_unit)
        err_name = err.info.name
        err = _masked_as_nan(err) * (1.0 if err_unit is None else _f_lambda_factor(path, err_name,
                                                                                  err_unit, wave, flux_unit))
        ivar = _ivar_from_err(path, repr(err_name), err, wave)
    quality = _column(t, _MASK_NAMES)
    if quality is not None:
        # it was ignored: flagged pixels (cosmic rays, bad columns) with finite flux and error were fitted at
        # full weight (MILES star 208 as an ESO Phase 3 file, 3 % of pixels x4 and QUAL 1: Teff 4716 +- 500,
        # log g 2.87, chi2 294800 / 130 instead of 4978 +- 53, 4.51, 6536 unflagged and clean)
        bad = ~(_masked_as_nan(quality) == 0)               # a masked (unknown) quality is bad too
        flux = np.where(bad, np.nan, flux)
        ivar = None if ivar is None else np.where(bad, 0.0, ivar)
    if w_unit is not None and not w_unit.is_equivalent(u.AA):
        if medium == "air":
            # c / nu is the vacuum wavelength: --medium air converted it once more (MILES star 208 at
            # 3541.51 A vacuum fitted at 3542.52 A, 2.9e-4 or 86 km/s to the red)
            raise ValueError(f"{path}: column {w.info.name!r} is in {w_unit}, a frequency or energy, which "
                             "is the same in air and vacuum (c / nu is the vacuum wavelength): drop medium "
                             "'air' (--medium air), which would shift it by a further 2.8e-4")
        # a frequency (or energy) column ascending is a wavelength descending: every column (masked entries,
        # NaN here, included) follows the converted wavelength, which the fit needs increasing
        order = np.argsort(wave, kind="stable")
        wave, flux = wave[order], flux[order]
        ivar = None if ivar is None else ivar[order]
    return _in_vacuum(medium, *_increasing(path, wave, flux, ivar))


_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
#: CTYPE1 of a 1-d image's wavelength axis: linear ones (IRAF writes LINEAR, or nothing), and FITS's
#: logarithmic WAVE-LOG (lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1), Greisen et al. 2006)
_LINEAR_CTYPES = ("", "LINEAR", "WAVE", "AWAV", "WAVELENGTH", "LAMBDA", "FREQ", "ENER")
_LOG_CTYPES = ("WAVE-LOG", "AWAV-LOG")


def _fits_image_table(path):
    """(a table wave, flux[, err or ivar], the medium the file states or None) from a FITS file whose spectrum
    is a 1-d image -- the first HDU with data, its wavelengths from CRVAL1, CD1_1 or CDELT1 (times PC1_1),
    CRPIX1 (default 1), linear or, with IRAF's DC-FLAG = 1 (SDSS, IRAF), in log10; CTYPE1 WAVE-LOG logarithmic
    as the FITS standard has it; in CUNIT1 (or IRAF's WAT1_001 units=), else Angstrom; the flux in BUNIT; an
    image extension of the same shape named as an error or ivar column is that. (None, None) for a file that
    is no FITS or holds a table (read as a table). CTYPE1 'AWAV' states air. What stays unsupported -- more
    than one spectrum (a 2-d image: SDSS spSpec, IRAF multispec), a non-linear dispersion (DC-FLAG 2, other
    CTYPE1), no wavelength keywords -- is a ValueError naming it."""
    from astropy.io import fits
    from astropy.table import Table

    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"SIMPLE" and not path.name.lower().endswith(_FITS_SUFFIXES):
        return None, None
    try:
        hdul = fits.open(path, memmap=False)
    except (OSError, ValueError):
        return None, None                             # the table reader says what is wrong
    with hdul:
        if any(isinstance(h, (fits.BinTableHDU, fits.TableHDU)) for h in hdul):
            return None, None
        images = [h for h in hdul if h.is_image and h.data is not None and h.data.size]
        if not images:
            raise ValueError(_unreadable(path, "no table, and no image with data"))
        hdu, hdr = images[0], images[0].header
        data = np.asarray(hdu.data, float)
        n = data.shape[-1]
        if "multispec" in str(hdr.get("WAT0_001", "")).lower() or data.size != n:
            raise ValueError(f"{path}: HDU {hdul.index(hdu)} is an image of shape {data.shape} (FITS axes "
                             f"{data.shape[::-1]}): more than one spectrum (e.g. SDSS spSpec, IRAF "
                             "multispec) is not supported; give a 1-d image (NAXIS1 pixels along the "
                             "wavelength) or a table")
        where = f"{path}: HDU {hdul.index(hdu)}, a 1-d image,"
        ctype = str(hdr.get("CTYPE1", "")).strip().upper()
        if ctype not in _LINEAR_CTYPES + _LOG_CTYPES:
            raise ValueError(f"{where} has CTYPE1 {ctype!r}; supported: "
                             f"{', '.join(map(repr, _LINEAR_CTYPES))} (linear) and "
                             f"{', '.join(map(repr, _LOG_CTYPES))}")
        step = hdr.get("CD1_1", None)
        if step is None and "CDELT1" in hdr:
            step = hdr["CDELT1"] * hdr.get("PC1_1", 1.0)
        if "CRVAL1" not in hdr or step is None:
            raise ValueError(f"{where} has no wavelength keywords: needs CRVAL1 and CDELT1 or CD1_1 (CRPIX1 "
                             "default 1)")
        crval, crpix = float(hdr["CRVAL1"]), float(hdr.get("CRPIX1", 1.0))
        x = crval + (np.arange(1, n + 1) - crpix) * float(step)
        dc = hdr.get("DC-FLAG", 0)
        if dc not in (0, 1):
            raise ValueError(f"{where} has DC-FLAG {dc}: only 0 (linear) and 1 (log10-linear) dispersions "
                             "are supported")
        if ctype in _LOG_CTYPES:
            x = crval * np.exp((x - crval) / crval)
        elif dc == 1:
            x = 10.0 ** x
        unit = hdr.get("CUNIT1")
        if unit is None:
            from .medium import spelled_wave_unit

            stated = re.search(r"\bunits=(\S+)", str(hdr.get("WAT1_001", "")), re.IGNORECASE)
            unit = spelled_wave_unit(stated.group(1)) if stated else None
            unit = None if unit is None else unit.to_string()
        columns = {"wave": x, "flux": data.ravel()}
        units = {"wave": unit, "flux": hdr.get("BUNIT")}
        for other in hdul:
            name = str(other.header.get("EXTNAME", "")).strip().lower()
            if other is not hdu and name in _ERR_NAMES + _IVAR_NAMES + _MASK_NAMES and other.is_image and \
                    other.data is not None and other.data.size == n:
                columns[name] = np.asarray(other.data, float).ravel()
                units[name] = other.header.get("BUNIT")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # a unit FITS does not know: parsed by _unit_of
        t = Table({k: v for k, v in columns.items()}, units={k: v for k, v in units.items() if v})
    return t, ("air" if ctype.startswith("AWAV") else None)


def _in_vacuum(medium, wave, flux, ivar):
    """(wave, flux, ivar, medium read): air wavelengths (``medium`` "air") taken to vacuum; others as they
    are, read as "vacuum"."""
    if medium == "air":
        from .medium import air_to_vacuum

        return air_to_vacuum(wave), flux, ivar, "air"
    return wave, flux, ivar, "vacuum"


def _text_header(path):
    """(column names, lines to skip) of a text spectrum: the names of its last comment line before the
    numbers (``# wave flux ivar``), or of a first line that is names, not numbers (then skipped); None
    without either. Names are lower case."""
    names, skip = None, 0
    with open(path, errors="replace") as fh:
        for i, line in enumerate(fh):
            text = line.strip()
            if not text:
                continue
            if text.startswith("#"):
                names = text.lstrip("#").replace(",", " ").lower().split() or names
                continue
            words = text.split("#")[0].replace(",", " ").split()
            try:
                [float(w) for w in words]
            except ValueError:
                if not any(_is_number(w) for w in words):      # a header line without '#'
                    names, skip = [w.lower() for w in words], i + 1
            break
    return names, skip


def _check_column_order(path, a):
    """Refuse a text spectrum whose first column is not monotonic but another is: its wavelengths are not
    first. Columns flux, wave, err were refused as 'wavelengths end at 1.1, ... if they are nm or um' (a
    flux of ~1), and with a flux above 1000 as an axis 'neither increasing nor decreasing': neither named the
    column order. Only from 20 rows (as many as a fit needs): a few pixels of a smooth flux are monotonic;
    and only where column 1 turns back more than twice (a flux: a hot star's smooth continuum with four
    Balmer lines turns ~50 times): wavelengths with a step or two out of order (a repeated one, two arms
    joined; ties, e.g. rounded to 1 A at 0.5 A sampling, are no turn) are left to :func:`_increasing`,
    naming the row."""
    def turns(col):                     # strict steps against the column's main direction
        d = np.diff(col[np.isfinite(col)])
        return min(int((d > 0).sum()), int((d < 0).sum()))
    if a.shape[0] < 20 or turns(a[:, 0]) <= 2:
        return
    for k in range(1, a.shape[1]):
        col = a[:, k][np.isfinite(a[:, k])]
        if turns(col) == 0 and np.ptp(col) > 0:
            raise ValueError(f"{path}: column {k + 1} runs monotonically from {a[0, k]:g} to {a[-1, k]:g}, "
                             "column 1 does not: a text spectrum's columns are wave, flux[, error], in that "
                             "order; reorder them (or use a table with named columns)")


def _text_wavelengths(path, header, wave):
    """A text file's first column in Angstrom: the unit its header names (``# wave[nm] flux``, ``wave(um)``;
    Angstrom, nm or um, spelled as :data:`smnet_sps.medium.WAVE_UNIT_SPELLINGS` has them), else Angstrom.
    Unstated and ending below 1000 A, it is refused: an optical spectrum in nm read as A went on to an
    extreme-UV fit (MILES star 208 in nm: Teff 64,653 K, log g 8, exit 0), and a command-line user cannot
    pass a Quantity."""
    first = header[0] if header else ""
    match = re.fullmatch(r"[a-z_]*\s*[\[(]\s*([^\])]+?)\s*[\])]", first)
    if match:
        import astropy.units as u

        from .medium import WAVE_UNIT_SPELLINGS, spelled_wave_unit

        unit = spelled_wave_unit(match.group(1))
        if unit is None:
            known = "; ".join(f"{k}: {', '.join(v)}" for k, v in WAVE_UNIT_SPELLINGS.items())
            raise ValueError(f"{path}: the wavelength column's unit {match.group(1)!r} is not one of "
                             f"{known} (a header such as '# wave[nm] flux')")
        return wave * unit.to(u.AA)
    if wave.size and np.nanmax(wave) < 1000.0:
        raise ValueError(f"{path}: the wavelengths end at {np.nanmax(wave):g}, read as Angstrom the spectrum "
                         "lies below 1000 A; if they are nm or um, name the unit in a header line "
                         "('# wave[nm] flux' or '# wave[um] flux err'), or write them in Angstrom")
    return wave


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True


def _increasing(path, wave, flux, ivar):
    """The columns in increasing wavelength: a file written from red to blue is reversed (it was refused with
    "wave must be strictly increasing", naming no file); one neither increasing nor decreasing is a
    ValueError naming the file and the first row out of order."""
    step = np.diff(wave)
    if wave.size > 1 and np.all(step < 0):
        return wave[::-1], flux[::-1], None if ivar is None else ivar[::-1]
    bad = np.flatnonzero(~(step > 0))
    if bad.size:
        # the row (1-based, of the data) of the wavelength out of order: bad[0] + 1 named the one before it
        raise ValueError(f"{path}: wavelengths must increase (or decrease) strictly; row {int(bad[0]) + 2} "
                         f"({wave[bad[0] + 1]:g}) follows {wave[bad[0]]:g}")
    return wave, flux, ivar


def _one_row_of_arrays(path, t, w):
    """A table of one row whose columns are arrays (ESO's Phase 3 spectra: WAVE, FLUX, ERR, each one cell of
    n pixels) as a table of n rows (its array columns of ``w``'s length; scalar columns dropped). It was
    refused with "wave and flux must be 1-d arrays; got shapes (1, n) and (1, n)". More rows are more
    spectra: a ValueError."""
    from astropy.table import QTable

    if len(t) != 1:
        raise ValueError(f"{path}: column {w.info.name!r} holds {len(t)} spectra (a row of {w.shape[1]} "
                         "wavelengths each); give a file with one spectrum")
    n = w.shape[1]
    return QTable({c: t[c][0] for c in t.colnames if t[c].ndim == 2 and t[c].shape[1] == n})


def _ivar_from_err(path, name, err, wave):
    """Inverse variance from the error column ``name``: an error of 0 or NaN is a pixel without data (ivar 0);
    a negative one is refused (it was silently given ivar 0, as fit_star refuses a negative ivar: a file with
    every other error negative lost half its pixels without a word, and one with all of them negative was
    reported as 'fewer than 20 usable pixels')."""
    neg = np.flatnonzero(err < 0)
    if neg.size:
        raise ValueError(f"{path}: column {name} has {neg.size} negative error(s) (the first at "
                         f"{wave[neg[0]]:g} A, {err[neg[0]]:g}); an error must be >= 0 (0 or NaN: a pixel "
                         "without data)")
    return 1.0 / np.where(err > 0, err, np.inf) ** 2


#: what a flux, error or inverse-variance column's unit may be (read_spectrum's error messages)
FLUX_UNITS_ALLOWED = ("a spectral flux density, F_lambda (e.g. erg / (s cm2 Angstrom), "
                      "1E-17 erg/s/cm^2/Angstrom) or f_nu (e.g. Jy, nanomaggies), its inverse square for an "
                      "ivar, or none")


def _unit_of(path, column, allowed=FLUX_UNITS_ALLOWED):
    """A table column's unit, None for none or a dimensionless one (a relative flux). A unit the file's
    format did not recognise -- the FITS TUNIT '1E-17 erg/s/cm^2/Angstrom' of many surveys (FITS has no
    numeric factor, no '^') -- is parsed again in astropy's lenient generic format (knowing the spellings
    'Angstroms', 'ANGSTROM', 'microns', 'nanomaggies' and the like: :func:`smnet_sps.medium._reparse_unit`,
    as the Python API reads a table column); if it is still not recognised, a ValueError names the column,
    the unit and what is ``allowed`` (astropy's own error named neither column nor what is allowed)."""
    import astropy.units as u

    from .medium import _reparse_unit

    # astropy knows Angstrom, micron, maggy, not the plural or upper-case spellings files write (IRAF's and
    # many archives' 'Angstroms' was refused as unrecognised)
    unit = _reparse_unit(getattr(column, "unit", None))
    if isinstance(unit, u.UnrecognizedUnit):
        raise ValueError(f"{path}: column {column.info.name!r} has the unit {unit.name!r}, which astropy "
                         f"does not recognise; allowed: {allowed}")
    return None if unit is None or unit == u.dimensionless_unscaled else unit


def _f_lambda_factor(path, name, unit, wave, flux_unit=None):
    """Per-pixel factor taking column ``name``'s values in ``unit`` to F_lambda (:func:`smnet_sps.medium.
    f_lambda_factor`, as for a flux Quantity given to fit_star): the flux's own unit if that is one (any
    F_lambda unit: the continuum polynomial absorbs the scale), else erg/s/cm^2/A; with ``flux_unit``, to the
    unit the flux column was converted to (so that an error agrees with its flux)."""
    import astropy.units as u

    from .medium import LINEAR_FLUX_UNITS, _ampere_hint, f_lambda_factor   # one rule: files and Quantities

    try:
        return f_lambda_factor(unit, wave, flux_unit, name=f"{path}: column {name!r}")
    except u.UnitConversionError:
        # the common TUNIT / BUNIT 'erg/s/cm2/A' was refused without a word of why: FITS's 'A' is the ampere
        raise ValueError(f"{path}: column {name!r} is in {unit}, which is no spectral flux density"
                         f"{_ampere_hint(unit)}; "
                         f"allowed: {LINEAR_FLUX_UNITS}, or none"
                         + ("" if flux_unit is None else f" convertible to the flux's {flux_unit}")) from None


def _check_units_agree(path, name, unit, flux_name, flux_unit):
    """An error column needs a unit exactly when its flux has one: a unit on only one of them leaves the
    other's scale unknown (an err in Jy beside a unitless flux was taken as its value). Stricter than
    :func:`smnet_sps.fit.check_spectrum`, which reads a plain ivar beside a flux Quantity in the flux's
    unit^-2: a caller passes plain numbers on purpose, while a file's column without a unit beside one with a
    unit may as well be F_lambda, or a unit lost on the way (a CSV header)."""
    if (unit is None) != (flux_unit is None):
        raise ValueError(f"{path}: column {name!r} is in {unit or 'no unit'} but column {flux_name!r} in "
                         f"{flux_unit or 'no unit'}; give both a unit or neither (in a file, a column "
                         "without a unit beside one with a unit is ambiguous)")


def _ivar_factor(path, name, unit, flux_name, flux_unit, wave):
    """Per-pixel factor taking the inverse variance column ``name`` in ``unit`` to the F_lambda the flux was
    converted to (1 for neither having a unit): :func:`smnet_sps.fit._ivar_factor`, as for an ivar Quantity
    given to fit_star."""
    from .fit import _ivar_factor as ivar_factor          # one rule for files and Quantities

    _check_units_agree(path, name, unit, flux_name, flux_unit)
    if unit is None:
        return 1.0
    return ivar_factor(unit, wave, flux_unit, name=f"{path}: column {name!r}",
                       flux_name=f"column {flux_name!r}")


def _masked_as_nan(column):
    """A table column's values as floats, its masked entries NaN (the fit masks them): ECSV and CSV read
    them as masked columns whose plain values are 0, fitted at full weight (a MILES star with 400 A masked:
    Teff 4368 instead of 5127, chi^2 x250)."""
    mask = None
    if hasattr(column, "unmasked"):                    # astropy's Masked (a masked Quantity)
        mask, column = np.asarray(column.mask), column.unmasked
    elif isinstance(column, np.ma.MaskedArray):        # MaskedColumn
        mask, column = np.ma.getmaskarray(column), column.data
    values = np.asarray(getattr(column, "value", column), float)
    return values if mask is None else np.where(mask, np.nan, values)


def read_ssp_grid(path):
    """An :class:`smnet_sps.ssp.SSPGrid` from a file written by :func:`smnet_sps.ssp.save_ssp_grid` (its
    reader: one place knows the file layout and the flux unit on disk)."""
    from .ssp import load_ssp_grid

    return load_ssp_grid(path)


#: how the plot's title names each fitted parameter (a log quantity's unit is in its name)
_TITLE_NAMES = {"teff": "Teff", "logg": "log g [cgs]", "logz": "[M/H]", "rv": "rv", "log_age": "log age [yr]",
                "sigma": "sigma", "av": "A_V"}


_TITLE_WIDTH = 95          # characters of a title line of plot_fit (9 pt on its 9-inch-wide figure)


def _title_value(name, value, error):
    """``"Teff = 6224 +- 49 K"``: the parameter's name as astronomers write it and its unit
    (:data:`smnet_sps.fit.PARAMETER_UNITS`; none after a log quantity, whose unit its name carries)."""
    import astropy.units as u

    from .fit import PARAMETER_UNITS
    unit = u.Unit(PARAMETER_UNITS.get(name, ""))
    unit = "" if isinstance(unit, u.LogUnit) or unit == u.dimensionless_unscaled else " " + unit.to_string()
    return f"{_TITLE_NAMES.get(name, name)} = {value:.4g} +- {error:.2g}{unit}"


def plot_fit(result, title=None, generator=None):
    """Data, best model and normalised residuals of a :class:`smnet_sps.fit.StarFit` or ``SSPFit``.

    The title gives each parameter with its unit, chi^2 / dof and the model (``generator``: its name, default
    the fit's ``meta["generator"]``; ``title`` replaces the whole title).
    Returns a matplotlib Figure (two panels: spectra, residuals / sigma).
    """
    import matplotlib.pyplot as plt

    fig, (ax, rax) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    # pixels without weight (clipped by --clip, ivar 0) are not data the fit used: a clipped cosmic ray
    # stretched the axis 100x and drew a zero residual
    used = np.asarray(result.ivar) > 0
    flux = np.where(used, result.flux, np.nan)
    with np.errstate(divide="ignore"):
        err = np.where(used, 1.0 / np.sqrt(np.where(used, result.ivar, 1.0)), np.nan)
    ax.fill_between(result.wave, flux - err, flux + err, color="0.8", step="mid", label="data +-1 sigma")
    ax.plot(result.wave, flux, color="k", lw=0.8, drawstyle="steps-mid", label="data")
    if not used.all():
        ax.plot(result.wave[~used], result.model[~used], "x", color="0.5", ms=4,
                label=f"{int((~used).sum())} pixel(s) left out (clipped or no weight)")
    ax.plot(result.wave, result.model, color="C3", lw=1.0, label="model")
    ax.plot(
        result.wave,
        result.continuum * np.median(result.model / result.continuum),
        color="C0",
        lw=0.8,
        ls="--",
        label="continuum polynomial (scaled)",
    )
    ax.set_ylabel("flux (normalised)")
    ax.legend(fontsize=8, loc="best")
    rax.plot(result.wave, np.where(used, result.residual, np.nan), color="k", lw=0.7, drawstyle="steps-mid")
    rax.axhline(0, color="C3", lw=0.8)
    rax.set_ylabel("(data - model) / sigma")
    # the data's own frame (a fit at --redshift keeps them observed): "vacuum wavelength" alone read as rest
    rax.set_xlabel("observed vacuum wavelength [A]")
    # the title gave "teff = 6224 +- 49, ..., rv = -3.1 +- 50": no unit, and no word of the model fitted;
    # an SSP fit's five values ran past the figure's edge ("rv = -37.96 +- 21" lost its km / s): wrapped
    # between values
    vals = [_title_value(p, v, e) for p, v, e in zip(result.parameters, result.values, result.errors)]
    lines = [vals[0]]
    for val in vals[1:]:
        if len(lines[-1]) + len(val) + 2 > _TITLE_WIDTH:
            lines[-1] += ","
            lines.append(val)
        else:
            lines[-1] += ", " + val
    vals = "\n".join(lines)
    model = generator or result.meta.get("generator")
    ax.set_title(
        title or f"{vals}\nchi2 = {result.chi2:.1f} / {result.dof} ({result.mode}, {result.method})"
        + (f"; model: {model}" if model else ""),
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _fit_inputs(args, medium):
    """What the command fitted and how: the files (as given and resolved) and the options that change the
    result. The JSON named neither the spectrum nor the SSP grid, nor the wavelength cut, degree or LSF: two
    fits of one galaxy with different --wmin / --ssp-grid wrote files that could not be told apart (nor, until
    the review, --max-rv, --rv-guess or --clip). ``medium``: that the spectrum's wavelengths were read in
    (:func:`_read_spectrum`), not ``--medium`` as given: null for a FITS image whose CTYPE1 AWAV had them
    converted from air, the JSON could not tell that fit from one of the same numbers as vacuum."""
    def path(p):
        return None if p is None else str(Path(p).resolve())
    return {"spectrum": path(args.spectrum), "ssp_grid": path(args.ssp_grid), "medium": medium,
            "wmin": args.wmin, "wmax": args.wmax, "degree": args.degree,
            # None: the default guess from the pixel width (--help); the value used is in the fit's meta
            "resolution_fwhm": args.resolution_fwhm, "uncertainty": args.uncertainty,
            "max_rv": args.max_rv, "rv_guess": args.rv_guess, "clip": args.clip,
            "units": {"wmin": "Angstrom", "wmax": "Angstrom", "resolution_fwhm": "Angstrom",
                      "max_rv": "km / s", "rv_guess": "km / s",
                      "clip": "sigma (of the errors, inflated by sqrt(chi2_red) > 1)"}}


def _fit_record(result, generator_name, inputs=None, generator_sha256=None):
    """The fit as JSON-ready dict, with the provenance every output records (the SSP grid's generator for
    an SSP fit, whose result did not name one, and its weights' sha256 where it has one; the smnet-sps
    version) and, from the command, ``input``: the files and options fitted (:func:`_fit_inputs`, with its
    own ``units``)."""
    from .output_files import provenance
    record = {**result.as_dict(json_safe=True), **provenance(generator_name, generator_sha256)}
    if inputs is not None:
        record["input"] = inputs
    return record


def _parse_fix(items):
    """``--fix NAME=VALUE`` options (repeatable, or a comma list ``logz=-0.3,logg=4.4``) -> {name: value}.
    Which names exist, and the range of each value, fit_star / fit_ssp check (``fixed=``)."""
    fixed = {}
    for token in items or ():
        for item in str(token).split(","):
            name, sep, value = (part.strip() for part in item.partition("="))
            try:
                number = float(value) if sep and name else None
            except ValueError:
                number = None
            if number is None:
                raise ValueError(f"--fix {token!r}: expected NAME=VALUE (several as repeated --fix or a "
                                 "comma list), e.g. --fix logz=-0.3 or --fix logz=-0.3,logg=4.4")
            if name in fixed and fixed[name] != number:         # the last one would silently win
                raise ValueError(f"--fix names {name!r} twice ({name}={fixed[name]:g}, {name}={number:g}); "
                                 "a parameter is held at one value")
            fixed[name] = number
    return fixed


def _cmd_fit(args):
    from .fit import fit_ssp, fit_star
    from .output_files import check_outputs, matplotlib_formats, write_out_and_plot

    # refuse bad or existing outputs before the (slow) fit, as every command does
    outputs = check_outputs(args, {"out": ((".json",), "JSON result"),
                                   "plot": (matplotlib_formats(), "plot")})
    for option, value in (("--wmin", args.wmin), ("--wmax", args.wmax)):
        if value is not None and not (np.isfinite(value) and value > 0):      # nan masked nothing, silently
            raise ValueError(f"{option} must be a finite, positive wavelength [A]; got {value}")
    if args.wmin is not None and args.wmax is not None and args.wmin >= args.wmax:
        raise ValueError(f"--wmin ({args.wmin:g} A) must be below --wmax ({args.wmax:g} A)")
    star_only = [f"--{name}" for name in ("generator", "meta", "library", "prior", "clip")
                 if getattr(args, name) is not None]
    if args.redshift is not None and not args.ssp_grid:
        raise ValueError("--redshift applies to population fits (--ssp-grid) only; a star's velocity is "
                         "--rv-guess / --max-rv")
    if args.ssp_grid and args.device != "auto":
        star_only.append("--device")          # fit_ssp loads no model: the grid file holds the spectra
    if args.ssp_grid and star_only:
        # they were silently ignored: an SSP fit uses the grid's spectra and no stellar prior
        verb = "applies" if len(star_only) == 1 else "apply"
        raise ValueError(f"{', '.join(star_only)} {verb} to star fits only; with --ssp-grid the templates "
                         "come from the grid file")
    fixed = _parse_fix(args.fix)
    wave, flux, ivar, medium = _read_spectrum(args.spectrum, medium=args.medium)
    mask = ~np.isfinite(flux)
    if ivar is not None:
        mask |= ~np.isfinite(ivar)
    if args.wmin is not None:
        mask |= wave < args.wmin
    if args.wmax is not None:
        mask |= wave > args.wmax
    flux = np.where(mask, 0.0, flux)
    if ivar is not None:
        ivar = np.where(mask, 0.0, ivar)
    common = dict(
        resolution_fwhm=args.resolution_fwhm, mask=mask, degree=args.degree, uncertainty=args.uncertainty,
        max_rv=args.max_rv, rv_guess=args.rv_guess, shift=args.shift, fixed=fixed,
    )
    if args.ssp_grid:
        templates = read_ssp_grid(args.ssp_grid)
        res = fit_ssp(wave, flux, ivar, templates=templates, redshift=args.redshift or 0.0, **common)
        attrs = getattr(templates, "attrs", None) or {}
        generator_name, generator_sha = attrs.get("generator", "unknown"), attrs.get("generator_sha256")
    else:
        from .neural import load_generator_option
        from .ssp import _weights_sha256, resolve_generator

        # the model on --device: the shipped default (None) was loaded on "auto" whatever the user had
        gen = resolve_generator(load_generator_option(args.generator, args.meta, device=args.device),
                                device=args.device)
        res = fit_star(wave, flux, ivar, generator=gen, library=args.library, prior=args.prior,
                       clip=args.clip, **common)
        generator_name = res.meta.get("generator", "unknown")
        generator_sha = _weights_sha256(gen)
    # strict JSON: a NaN error (a parameter at a bound) is null, not the non-standard NaN
    wrote = write_out_and_plot(
        args, outputs,
        lambda path: path.write_text(json.dumps(
            _fit_record(res, generator_name, _fit_inputs(args, medium), generator_sha), indent=1,
            allow_nan=False)),
        lambda: plot_fit(res, generator=generator_name), dpi=120)
    print(res)
    # held without --fix: a model box or SSP grid of one value there (a grid from an isochrone file of one Z)
    grid_held = [k for k in res.meta.get("held", []) if k not in (res.meta.get("fixed") or {})]
    if grid_held:
        source = "SSP grid" if args.ssp_grid else "model's (or --library's) box"
        print(f"  ({', '.join(grid_held)} held at the one value the {source} has: not fitted, error 0)")
    if res.meta.get("redshift"):
        print(f"  (rv is relative to z = {res.meta['redshift']:g})")
    if "age_of_universe" in res.meta and res.age > res.meta["age_of_universe"]:
        print(f"  (the fitted age exceeds the age of the universe at the galaxy's redshift, "
              f"{res.meta['age_of_universe']:.3g} Gyr)")
    if medium == "air" and args.medium is None:
        print("  (the file states air wavelengths (CTYPE1 AWAV): converted to vacuum before the fit)")
    if res.meta.get("template_medium") == "air":
        print("  (the SSP grid states air wavelengths: converted to vacuum before the fit, as the "
              "spectrum's are)")
    if ivar is None:
        # the fit's stand-in error (fit.check_spectrum): "relative to the median flux" read 1e4x too low
        print("  (no ivar or err column: every pixel's error is taken as 1 % of the median |flux|, so chi2 = "
              "sum((residual / (0.01 median))^2); the errors come from the residuals' scatter)")
    for path in wrote.values():
        print(f"wrote {path}")
    return 0


def add_cli(sub):
    from .neural import add_meta_option
    from .ssp_cli import add_device_option
    p = sub.add_parser(
        "fit",
        help="fit Teff, log g, [M/H], rv of a star (or an SSP with --ssp-grid) to a spectrum",
        description="Fit a spectrum with the generator (smnet_sps.fit.fit_star) or with SSP "
        "templates (fit_ssp). Input: FITS/ECSV/CSV table (wave, flux, ivar or err), a FITS 1-d image "
        "(CRVAL1, CDELT1 or CD1_1, CRPIX1; DC-FLAG 1 for log10) or "
        "a text file (wave flux [err], or wave flux ivar under a header line '# wave flux ivar'), "
        "wavelengths in Angstrom.",
    )
    p.add_argument("spectrum", help="spectrum file")
    p.add_argument(
        "--medium", choices=["vacuum", "air"], default=None,
        help="medium of the file's wavelengths (default: as the file states -- a FITS image's CTYPE1 AWAV: "
             "air --, else vacuum); a frequency or energy column has none: 'air' is refused for it"
    )
    p.add_argument(
        "--resolution-fwhm", type=float, default=None,
        help="data's LSF FWHM [A] (default: 2 pixels, less the model's 2 pixels in quadrature)"
    )
    p.add_argument("--degree", type=int, default=3,
                   help="degree of the multiplicative continuum polynomial (default 3)")
    p.add_argument("--wmin", type=float, default=None,
                   help="ignore wavelengths below this [A, vacuum, as read: the observed frame] (default: "
                        "none, from the spectrum's first pixel)")
    p.add_argument("--wmax", type=float, default=None,
                   help="ignore wavelengths above this [A, vacuum, as read: the observed frame] (default: "
                        "none, to the spectrum's last pixel)")
    p.add_argument("--uncertainty", choices=["laplace", "emcee"], default="laplace",
                   help="errors from the Laplace approximation at the best fit (default), or from an emcee "
                        "ensemble (needs the emcee package; slower)")
    # without them a galaxy at cz 5,000 km/s was fitted inside +-1000 km/s and ended on every bound (exit 0)
    p.add_argument("--max-rv", type=float, default=1000.0, metavar="KM_S",
                   help="largest |radial velocity| the fit may reach [km/s], 0 < max-rv < c; the start is "
                        "scanned over +-max-rv (default 1000; a galaxy of known redshift: --redshift, rv "
                        "relative to it)")
    p.add_argument("--shift", choices=["model", "data"], default="model",
                   help="what the velocity moves: 'model' (default; the most precise rv for a spectrum the "
                        "model describes well) or 'data' (re-binned onto the model's rest-frame pixels at "
                        "each trial rv: Teff / log g / [M/H] independent of the star's velocity; data "
                        "pixels at most a tenth of the model's; docs/fit.md)")
    p.add_argument("--rv-guess", type=float, default=0.0, metavar="KM_S",
                   help="radial velocity to try first [km/s], within +-max-rv (default 0; relative to "
                        "--redshift when given: a galaxy's known z goes there, not here)")
    p.add_argument("--redshift", type=float, default=None, metavar="REDSHIFT",
                   help="with --ssp-grid: the galaxy's known redshift; the fit works in its rest frame and "
                        "rv (--rv-guess, --max-rv) is relative to it (z 0.5 through --max-rv took 15 min; "
                        "default 0)")
    p.add_argument("--generator", default=None,
                   help="'default' (shipped model), 'semi-empirical', a model directory trained by "
                        "smnet-sps, or a released SM-Net checkpoint CHECKPOINT.pt with --meta "
                        "(default: the shipped model)")
    add_meta_option(p)
    add_device_option(p)
    p.add_argument("--library", default=None, help="library to imitate (default: the mixture)")
    p.add_argument("--clip", type=float, default=None, metavar="SIGMA",
                   help="stars: drop pixels whose residual exceeds SIGMA errors and refit, up to 3 times "
                        "(cosmic rays; default: no clipping)")
    p.add_argument(
        "--prior",
        choices=["parsec", "padova"],
        default=None,
        help="stars: isochrone prior on (Teff, log g, [M/H]) (default: flat; docs/fit.md)",
    )
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="hold a parameter at a known value (repeatable, or a comma list), in the units of "
                        "the results: stars teff [K], logg [log10 cm s^-2], logz ([M/H], dex), rv [km/s]; "
                        "with --ssp-grid log_age (log10 yr), logz, sigma [km/s], av [mag], rv. E.g. --fix "
                        "logz=-0.3 --fix logg=2.45. "
                        "Error 0, the others' errors conditional on it; recorded as 'fixed' in the JSON")
    p.add_argument(
        "--ssp-grid", default=None, help="SSP grid file (.h5/.npz from smnet-sps ssp-grid): fit_ssp"
    )
    p.add_argument("--out", default=None,
                   help="write the result as JSON (.json): values, errors (name_err), their units (units), "
                        "chi2, dof, the input files and options (input), ...; a non-finite number (e.g. the "
                        "error of a parameter at a bound) is written as null")
    p.add_argument("--plot", default=None,
                   help="save a plot of data, model and residuals (.png, .pdf, ...: any matplotlib format)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_fit)
