"""File checksums: the identity of grids, weights and source files (one helper for every stage); and
reading an .npz that may be damaged, with an error that names it."""
from __future__ import annotations

import hashlib
import tokenize
import zipfile
import zlib

__all__ = ["file_sha256", "check_recorded_sha256", "check_zip_crc", "read_npz"]


def file_sha256(path):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_recorded_sha256(path, expected, key, what="file",
                          remedy="the file is corrupt or was replaced (e.g. by another model's)"):
    """Refuse ``path`` when its sha256 is not the ``expected`` one its config.json records under ``key``.

    ``expected`` None (nothing recorded, e.g. a model made before the key existed) checks nothing. The error
    names the file, the key and both digests' starts, then ``remedy``.
    """
    if expected is None:
        return
    got = file_sha256(path)
    if got != expected:
        raise ValueError(f"{what} {path} does not match its config.json: sha256 {got[:16]}... != recorded "
                         f"{key} {str(expected)[:16]}...; {remedy}")


def check_zip_crc(path, what="file", remedy="download or copy it again"):
    """Refuse a zip-format PyTorch file (``torch.save`` since 1.6) whose members fail their recorded CRC-32.

    ``torch.load`` reads the tensors' bytes without checking the CRC-32 that ``torch.save`` records for each
    of them, so a download or copy damaged inside the tensor data (not cut short) loaded as different
    weights without a word. Each member is read in 1 MiB chunks and compared with its recorded CRC; members
    recorded with CRC 0 (``torch.serialization.set_crc32_options(False)``) and files that are not zip
    archives (legacy format) are not checked. The cost is one more read of the file (~1 s for a 2.2 GB
    released SM-Net checkpoint).

    Raises
    ------
    ValueError
        Naming the file and the damaged member, then ``remedy``.
    """
    if not zipfile.is_zipfile(path):
        return
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 or info.is_dir():
                    continue            # written without a CRC: nothing to compare with
                member = info.filename
                with archive.open(info) as fh:      # zipfile compares the CRC-32 once the member is read
                    while fh.read(1 << 20):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        where = f"its member {member}" if member else "its zip directory"
        raise ValueError(f"{what} {path} is damaged: {where} does not read back as written ({exc}); "
                         f"{remedy}") from exc


def read_npz(path, what, remedy="the file is corrupt or was replaced", keys=None):
    """``{name: array}`` of every array in the .npz ``path`` (no pickles; with ``keys``, only those of them
    it holds, e.g. one tag of a large table, read without the rest), or a ValueError naming the file,
    ``what`` it should be (e.g. "tail table"), numpy's or zipfile's error and ``remedy``: a truncated or
    damaged file raises zipfile.BadZipFile ('File is not a zip file', 'Bad CRC-32'), EOFError,
    zlib.error, NotImplementedError (a damaged compression method), RuntimeError (a damaged flag read as
    'encrypted') or, from numpy's parser of a damaged .npy header (e.g. a shape "()" read as "( "),
    tokenize.TokenError or SyntaxError, which name neither the file nor what it is; a .npy file (one
    array, no archive) is refused alike."""
    import numpy as np
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):        # a .npy: an array, which has no `with` (a raw TypeError)
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as f:
            return {k: f[k] for k in f.files if keys is None or k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError, tokenize.TokenError, SyntaxError) as exc:
        raise ValueError(f"{path} is not a readable {what} ({type(exc).__name__}: {exc}); {remedy}") from exc
