"""Safe output files for the command line: check the path before the work, write atomically after it.

Every ``smnet-sps`` writer goes through :func:`check_output` (a file; :func:`check_output_folder` for a
folder of outputs: a model, a correction, a report) before any slow computation and :func:`atomic_output`
(around the write). Together they guarantee:

* a clear ``ValueError`` naming the option, instead of a traceback, for a directory given as a file, a
  folder where no file can be created (checked by creating and removing one), or an extension the writer
  does not support (nothing is ever written in a format its extension does not say); a missing folder is
  created (like ``mkdir -p``);
* an existing file is never replaced unless ``overwrite=True`` (``--overwrite``);
* a failed or interrupted write never leaves a truncated file: the data goes to a temporary file in the
  same folder, which is renamed over the target only once complete (``os.replace`` is atomic on POSIX and
  Windows within one file system).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["IMF_RANGE_FITS_KEYS", "PROVENANCE_FITS_KEYS", "SSP_OPTION_FITS_KEYS", "SSP_PROVENANCE_KEYS",
           "atomic_output", "check_creatable_folder", "check_output", "check_output_folder",
           "matplotlib_formats", "provenance", "save_figure", "save_plot", "ssp_provenance",
           "ssp_provenance_cards", "ssp_provenance_from_header", "staged_outputs", "suffix_of", "json_attr",
           "json_safe", "write_out_and_plot"]


def json_attr(value):
    """A file attribute stored as JSON text (str, bytes, or the 0-d string array np.load / h5py give back)
    decoded; any other value as it is. ValueError where the text is not JSON."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "US":
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    return json.loads(value) if isinstance(value, str) else value


def json_safe(obj):
    """``obj`` (nested dicts, lists, tuples, numpy arrays, numbers) with every non-finite float (NaN, inf) as
    None, so that ``json.dumps(..., allow_nan=False)`` writes strict JSON (``null``); numpy scalars (bool,
    integer, float) become Python ones and numpy arrays (nested) lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# What every output file records about how it was made, under the same keys in every format (ECSV / text
# meta, HDF5 / NPZ / Zarr attributes, JSON); FITS headers take 8-character keywords, the same in every FITS
# output (`ssp --out`, `mags --out .fits`). The `mags` tables held only the --generator option ("default")
# and no output held the package version. generator_sha256 is the sha256 of the generator's weights (as its
# config.json records it): a name alone does not tell a model retrained into the same folder from the old one.
PROVENANCE_FITS_KEYS = {"generator": "GENERATR", "smnet_sps_version": "SMNETVER",
                        "generator_sha256": "GENSHA"}

# The FITS keywords of the SSP options, in every FITS output of SSPs (`ssp --out .fits`, `mags --out .fits`):
# mags wrote its meta keys as astropy does (HIERARCH special_phases, HIERARCH isochrones) where ssp wrote
# SPECIAL and ISOCHRON, so one setting had two keywords.
SSP_OPTION_FITS_KEYS = {"isochrones": "ISOCHRON", "special_phases": "SPECIAL", "outside": "OUTSIDE"}

# The IMF's lower and upper mass limits [M_sun] (meta / attrs "imf_mass_range"), in both FITS outputs of SSPs:
# `mags --out .fits` recorded the IMF's name only, so a Kroupa IMF to 40 M_sun read as the 0.08-120 default.
IMF_RANGE_FITS_KEYS = ("IMFMLOW", "IMFMUP")


def provenance(generator_name, generator_sha256=None):
    """``{"generator": <the generator's name>, "smnet_sps_version": <smnet_sps.__version__>}``, and
    ``"generator_sha256"`` where the generator's weights have one (:func:`smnet_sps.ssp._weights_sha256`;
    None for the blackbody, a released checkpoint or a semi-empirical correction: the key is left out)."""
    from . import __version__
    record = {"generator": str(generator_name), "smnet_sps_version": __version__}
    if generator_sha256:
        record["generator_sha256"] = str(generator_sha256)
    return record


#: The keys of an SSP grid's ``attrs`` / ``meta`` that say how it was made (the generator, its weights'
#: sha256, whether it fills its untrained tails from its nodes, the isochrones, the IMF and its mass limits,
#: the special-phase and outside-coverage rules), which the files written from a grid carry over
SSP_PROVENANCE_KEYS = ("generator", "generator_sha256", "tail_filled", "isochrones", "imf", "imf_mass_range",
                       "special_phases", "outside")

# their FITS keywords (imf_mass_range: the two cards IMF_RANGE_FITS_KEYS), for the writer and the reader
_SSP_FITS_KEYS = {**PROVENANCE_FITS_KEYS, **SSP_OPTION_FITS_KEYS, "imf": "IMF", "tail_filled": "TAILFILL"}


def ssp_provenance(meta):
    """The :data:`SSP_PROVENANCE_KEYS` of an SSP grid's ``meta`` that it holds (not None), with
    ``smnet_sps_version``, the smnet-sps version writing the file (:func:`provenance`)."""
    from . import __version__
    record = {k: meta[k] for k in SSP_PROVENANCE_KEYS if meta.get(k) is not None}
    record["smnet_sps_version"] = __version__
    return record


def ssp_provenance_cards(meta):
    """FITS header cards ``(keyword, value, comment)`` saying how an SSP grid was made, from its ``attrs`` /
    ``meta``: the generator, SMNETVER (the smnet-sps version writing the file), the sha256 of the generator's
    weights, whether it fills its untrained tails, the isochrones, the IMF and its mass limits [M_sun], the
    special-phase and outside-coverage rules, under the keywords and in the order ``smnet-sps ssp --out
    .fits`` writes them (GENERATR, SMNETVER, GENSHA, TAILFILL, ISOCHRON, IMF, IMFMLOW / IMFMUP, SPECIAL,
    OUTSIDE). A key ``meta`` lacks gives no card; text is made FITS-safe (:func:`fits_text`), and a value too
    long for its comment keeps its card without one."""
    comments = {"generator": "stellar spectrum generator",
                "smnet_sps_version": "smnet-sps version that wrote this file",
                "generator_sha256": "sha256 of the generator's weights",
                "tail_filled": "untrained tails from training nodes",
                "isochrones": "isochrone family", "imf": "initial mass function",
                "imf_mass_range": None,             # two cards: IMF_RANGE_FITS_KEYS
                "special_phases": "treatment of TP-AGB / WR stars",
                "outside": "rule for stars outside coverage"}
    record = ssp_provenance(meta)
    cards = []
    for k, comment in comments.items():
        value = record.get(k)
        if k == "imf_mass_range":
            if value is not None and len(value) == 2:
                cards += [(IMF_RANGE_FITS_KEYS[0], float(value[0]), "IMF lower mass limit [Msun]"),
                          (IMF_RANGE_FITS_KEYS[1], float(value[1]), "IMF upper mass limit [Msun]")]
        elif k == "tail_filled":
            if value is not None:
                cards.append((_SSP_FITS_KEYS[k], bool(value), comment))     # a numpy bool as FITS T / F
        elif value is not None and not (isinstance(value, str) and not value):
            cards.append((_SSP_FITS_KEYS[k], value, comment))
    out = []
    for key, value, comment in cards:
        if not isinstance(value, (bool, int, float, np.number)):
            value = fits_text(value)
        if isinstance(value, str) and len(value) + len(comment) > 64:
            comment = ""
        out.append((key, value, comment))
    return out


def ssp_provenance_from_header(header):
    """The ``meta`` keys :func:`ssp_provenance_cards` wrote, read back from a FITS ``header`` (``generator``,
    ``generator_sha256``, ``tail_filled``, ``isochrones``, ``imf``, ``imf_mass_range``, ``special_phases``,
    ``outside``, ``smnet_sps_version``); those it lacks are left out."""
    meta = {k: header[card] for k, card in _SSP_FITS_KEYS.items() if card in header}
    if all(card in header for card in IMF_RANGE_FITS_KEYS):
        meta["imf_mass_range"] = [float(header[card]) for card in IMF_RANGE_FITS_KEYS]
    return meta


def suffix_of(path):
    """Lower-case extension of ``path`` including a compression suffix, e.g. ``".fits.gz"`` or ``".h5"``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in (".gz", ".bz2", ".xz"):
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def fits_text(value):
    """A string as a FITS header can hold it (printable ASCII): other characters escaped (\\u00e8), so that a
    model named "modèle" neither fails the write after the work nor is dropped from the header."""
    text = str(value).encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if 32 <= ord(c) < 127 else f"\\x{ord(c):02x}" for c in text)


def matplotlib_formats():
    """Extensions matplotlib can save (``.png``, ``.pdf``, ``.svg``, ...) here, without importing pyplot.

    ``.pgf`` only where a TeX engine is installed: matplotlib lists it anyway, and the save failed after the
    work was done (RuntimeError: 'xelatex' not found)."""
    import shutil

    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase
    formats = {"." + ext for ext in FigureCanvasBase.get_supported_filetypes()}
    if not shutil.which(matplotlib.rcParams["pgf.texsystem"]):        # the engine matplotlib will call
        formats.discard(".pgf")
    return tuple(sorted(formats))


def check_creatable_folder(folder, path, *, option="--out"):
    """A missing folder is created at write time (like `mkdir -p`): its nearest existing ancestor must be a
    folder in which a file can be created (tried). ``path`` and ``option`` name what was asked for in the
    messages."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {str(path)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r}: folder {str(existing)!r} is not writable")
    # os.access trusts the permission bits, which root ignores and which say nothing of a read-only mount,
    # /proc or a full quota: create (and remove) a real file, as the writer will after the slow work
    try:
        fd, probe = tempfile.mkstemp(prefix=".smnet-sps-write-check.", dir=existing)
    except OSError as exc:
        raise ValueError(f"{option} {str(path)!r}: cannot create a file in folder {str(existing)!r} "
                         f"({exc.strerror or exc}); give a path in a writable folder") from exc
    os.close(fd)
    os.unlink(probe)


def check_output_folder(path, holds, *, option="--out", overwrite=False, what="outputs",
                        remedy="pass --overwrite to replace it"):
    """A CLI option naming a folder of outputs, checked before any work: not a file, creatable and writable
    (:func:`check_creatable_folder`), and, where it already holds files matching ``holds`` (glob patterns),
    only replaced with ``overwrite`` (``remedy`` says how, in the message). Returns the folder as a Path."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {str(out)!r} is a file; give a folder for {what}")
    check_creatable_folder(out, out, option=option)
    if out.is_dir() and not overwrite:
        present = sorted({p.name for pattern in holds for p in out.glob(pattern)})
        if present:
            listed = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
            raise ValueError(f"{option} {str(out)!r} already holds {what} ({listed}); {remedy}")
    return out


def check_output(path, suffixes, *, option="--out", overwrite=False, what="output file"):
    """Validate an output file path before any work is done.

    Parameters
    ----------
    path : str or path-like
    suffixes : sequence of str
        Allowed extensions (lower case, with the dot, e.g. ``(".fits", ".fit")``).
    option : str
        Name of the option or parameter, used in the messages.
    overwrite : bool
        Allow replacing an existing file.
    what : str
        What the file holds, for the messages.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        With one line naming ``option`` and what is allowed.
    """
    p = Path(path)
    allowed = ", ".join(suffixes)
    if str(path).strip() == "":
        raise ValueError(f"{option}: an empty path is not a file name; give a {what} ending in {allowed}")
    if p.is_dir():
        raise ValueError(f"{option} {str(p)!r} is a directory; give a {what} name ending in {allowed}")
    _check_suffix(p, suffixes, option, what)
    check_creatable_folder(p.parent, p, option=option)
    if p.exists() and not overwrite:
        raise ValueError(f"{option} {str(p)!r} already exists; pass --overwrite to replace it")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{option} {str(p)!r} exists and is read-only")
    return p


def _check_suffix(path, suffixes, option, what):
    """Refuse a file name whose extension is not one of ``suffixes`` (nothing is written in a format its
    name does not say)."""
    suffix = suffix_of(path)
    if suffix not in suffixes:
        raise ValueError(f"{option} {str(path)!r}: unknown output format {suffix or '(none)'!r} for the "
                         f"{what}; use one of {', '.join(suffixes)}")


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False, option="--out"):
    """Context manager yielding a temporary path in the target's folder; renamed to ``path`` on success.

    The temporary file keeps the target's extension, so writers that pick the format from the extension
    (astropy, matplotlib, h5py) behave as for the real name. A gzip-compressed target (``.gz``, ``.svgz``) is
    the exception: the writer gets an uncompressed temporary file (``.fits``, ``.svg``), compressed here so
    that the gzip header names the final file (``a.fits`` for ``a.fits.gz``, what ``gunzip -N`` restores),
    not the temporary one. On an exception the temporary files are removed and the target is untouched.
    Re-checks ``overwrite`` at the end, in case the file appeared meanwhile. An existing target (with
    ``overwrite``) is replaced, not written into: a symlink is replaced by the new file (what it points to
    stays as it was), and the file gets a new file's permissions (0666 less the umask), not the old one's.
    """
    path = Path(path)
    tmp = _temporary_beside(path)
    plain = _compressed_content(tmp) or tmp
    try:
        yield plain
        _check_written(plain, path, overwrite, option)
        _finish(plain, tmp, path)
        os.replace(tmp, path)
    finally:
        for leftover in {tmp, plain}:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _compressed_content(path):
    """For a gzip-compressed file name (``a.fits.gz``, ``a.svgz``) the name of what it holds (``a.fits``,
    ``a.svg``); None for any other."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return path.with_suffix("")
    if suffix == ".svgz":
        return path.with_suffix(".svg")
    return None


def _finish(plain, tmp, path):
    """The written temporary file ``tmp`` made ready to be renamed to ``path``: compressed from the writer's
    ``plain`` file where the two differ (the gzip header naming what ``path`` holds), with the permissions
    of a new file (mkstemp's 0600 would make outputs private)."""
    if plain != tmp:
        _gzip_as(plain, tmp, _compressed_content(path).name)
    os.chmod(tmp, 0o666 & ~_umask())


def _proc_umask():
    """The process's umask from Linux's /proc/self/status, which reads it without changing it (None
    elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return None


def _import_umask():
    """Where /proc is missing: the umask set to 0 and back once, at import (``os.umask`` is the only way
    there, and it changes the whole process's umask: a thread creating a file meanwhile would make it
    world-writable)."""
    if _proc_umask() is not None:
        return None
    umask = os.umask(0)
    os.umask(umask)
    return umask


#: :func:`_finish` set the process's umask to 0 for a moment at every write (save_ssp_grid,
#: convert_fsps_isochrones and the like are library calls, maybe in threads); read at import only where
#: /proc is missing, else at each write, so a later os.umask(0o077) still makes outputs private
_IMPORT_UMASK = _import_umask()


def _umask():
    """The process's umask now (/proc), or as it was at import where /proc is missing; 0o022 (the usual one)
    where /proc was readable at import but is not now (no file descriptor left, a sandbox)."""
    umask = _proc_umask()
    if umask is not None:
        return umask
    return 0o022 if _IMPORT_UMASK is None else _IMPORT_UMASK


def _temporary_beside(path):
    """A fresh temporary name in ``path``'s folder (created if missing), keeping its extension; no file is
    left there: writers create the file themselves (some refuse to overwrite an empty one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix_of(path)}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def _check_written(tmp, path, overwrite, option):
    """Before the rename: the writer made ``tmp``, and ``path`` did not appear meanwhile (without
    ``overwrite``); ``option`` names the output in the errors."""
    if not tmp.exists():
        raise OSError(f"{option} {str(path)!r}: the writer produced no file")
    if path.exists() and not overwrite:
        raise ValueError(f"{option} {str(path)!r} appeared while writing; pass --overwrite to replace it")


@contextlib.contextmanager
def staged_outputs(paths, *, overwrite=False, option=None):
    """Context manager for several outputs of one command that must appear together or not at all.

    ``paths`` maps a key (an option's attribute name, as :func:`check_outputs` returns them: ``"phase_out"``
    for ``--phase-out``) to a target path; yields the same keys mapped to temporary paths in each target's
    folder (keeping its extension, so writers that pick the format from it behave as for the real name;
    nothing is created there, the writers create the files; a gzip-compressed target is written uncompressed
    and compressed here, as in :func:`atomic_output`). Only once the block has finished without an
    exception is every temporary file renamed over its target; on an exception they are all removed and the
    targets, an old file under ``--overwrite`` included, are untouched. Cleaning up after a failure by
    removing what was already renamed lost the user's old grid when ``--overwrite`` had replaced it.
    ``option`` names every output in the errors (e.g. ``"--out"`` for the files of a report folder); by
    default each key as its option.
    """
    staged, plain = {}, {}
    try:
        for key, path in paths.items():
            staged[key] = _temporary_beside(Path(path))
            # a .gz / .svgz target: the writer writes it uncompressed (see atomic_output)
            plain[key] = _compressed_content(staged[key]) or staged[key]
        yield dict(plain)
        for key, tmp in staged.items():
            _check_written(plain[key], Path(paths[key]), overwrite, option or f"--{key.replace('_', '-')}")
            _finish(plain[key], tmp, Path(paths[key]))
        # only renames left, each atomic: a failure can no longer come half way through a write
        for key, tmp in staged.items():
            os.replace(tmp, paths[key])
    finally:
        for tmp in [*staged.values(), *plain.values()]:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_out_and_plot(args, outputs, write_out, make_plot, *, dpi=110):
    """Write a command's ``--out`` and ``--plot`` together (``ssp``, ``mags``, ``fit``); returns
    ``{"out": ..., "plot": ...}`` for those written, the paths as the user typed them (the "wrote" lines).

    ``outputs`` is what :func:`check_outputs` returned for them; ``write_out(path)`` writes the result to
    ``path``, ``make_plot()`` returns the Figure (drawn only when ``--plot`` was given). Callers print their
    summary after this: files first, as `| head` closing stdout at the summary's first line lost them. Both
    files are staged (:func:`staged_outputs`) and renamed into place together once both are written: a failed
    --plot left the new --out behind (exit status 1), and the rerun was refused because it existed.
    """
    with staged_outputs(outputs, overwrite=args.overwrite) as staged:
        if "out" in staged:
            write_out(staged["out"])
        if "plot" in staged:
            save_figure(make_plot(), staged["plot"], overwrite=True, dpi=dpi)
    return {attr: getattr(args, attr) for attr in ("out", "plot") if attr in outputs}


def _gzip_as(source, target, name):
    """Compress ``source`` into ``target`` with ``name`` as the gzip header's file name (what the archive
    holds, ``a.fits`` or ``a.svg``): a writer's own compression stored the temporary name
    (``.a.fits.gz.x1y2.part.fits``)."""
    import gzip
    import shutil
    with open(source, "rb") as fin, open(target, "wb") as raw, \
            gzip.GzipFile(filename=name, mode="wb", fileobj=raw) as fout:
        shutil.copyfileobj(fin, fout)


def check_outputs(args, specs):
    """Check several CLI outputs at once; ``specs`` maps attribute name -> (allowed suffixes, what).

    Attributes that are None (option not given) are skipped; two options naming the same file are refused.
    Returns ``{attribute: Path}`` for the given ones.
    """
    overwrite = bool(getattr(args, "overwrite", False))
    out = {}
    for attr, (suffixes, what) in specs.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        option = "--" + attr.replace("_", "-")
        out[attr] = check_output(value, suffixes, option=option, overwrite=overwrite, what=what)
    resolved = {}
    for attr, p in out.items():
        key = p.resolve()
        if key in resolved:
            raise ValueError(f"--{resolved[key].replace('_', '-')} and --{attr.replace('_', '-')} name the "
                             f"same file {str(p)!r}; give two different files")
        resolved[key] = attr
    return out


def save_figure(fig, path, *, overwrite=False, option="--plot", dpi=110):
    """Save a matplotlib Figure atomically to ``path`` (format from the extension) and close it."""
    import matplotlib.pyplot as plt
    try:
        _write_figure(fig, path, overwrite=overwrite, option=option, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


def save_plot(fig, path, *, dpi=110, option="path"):
    """For the plotting functions' ``path=`` (:func:`~smnet_sps.ssp_cli.plot_ssp`, ...): save the Figure they
    drew to ``path`` when it is given, and return the figure, open (the caller closes it).

    A path (str or path-like) is written as the command line's plots are: the format comes from the extension
    (one matplotlib can write here, or a ValueError naming them), a missing folder is created and the file is
    replaced atomically. When saving fails the figure is closed before the error propagates: the caller never
    got it, and each failed call left one more figure open in pyplot. A file object (``io.BytesIO``) goes to
    ``fig.savefig`` as it is."""
    if path is None:
        return fig
    import matplotlib.pyplot as plt
    try:
        if not isinstance(path, (str, os.PathLike)):
            # a file object (io.BytesIO, an open file): matplotlib writes it, in its default format
            fig.savefig(path, dpi=dpi)
            return fig
        _check_suffix(path, matplotlib_formats(), option, "plot")
        _write_figure(fig, path, overwrite=True, option=option, dpi=dpi)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _write_figure(fig, path, *, overwrite, option, dpi):
    with atomic_output(path, overwrite=overwrite, option=option) as tmp:
        # the temporary file's format: .svg for a .svgz target, compressed by atomic_output
        fig.savefig(tmp, dpi=dpi, format=suffix_of(tmp).lstrip("."))
