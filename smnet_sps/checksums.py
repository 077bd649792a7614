"""File checksums: the identity of grids, weights and source files (one helper for every stage)."""
from __future__ import annotations

import hashlib

__all__ = ["file_sha256", "check_recorded_sha256"]


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
