"""File checksums: the identity of grids, weights and source files (one helper for every stage)."""
from __future__ import annotations

import hashlib

__all__ = ["file_sha256"]


def file_sha256(path):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
