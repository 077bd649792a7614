"""Readers of the native stellar libraries, one module per file format, and a registry.

Every reader takes the library's folder (below the libraries root, e.g. ``../shared/data/libraries``)
and returns a :class:`~smnet_sps.libraries._common.LibrarySpectra` of surface F_lambda
[erg s^-1 cm^-2 A^-1] on the library's native wavelength grid(s).

Two kinds of libraries:

* ``UNION_LIBRARIES`` have (Teff, log g, [M/H]) and form the union training grid;
* ``PHASE_LIBRARIES`` (Wolf-Rayet, TP-AGB) have no log g; they are kept apart and are never given an
  invented log g. The SSP stage uses them for the corresponding evolutionary phases.

FSPS' Rauch post-AGB spectra (``Hot_spectra/ipagb_*.spec``) are the same Rauch (2003) models as the
pystellibs grid (``rauch_tmap``) and are deliberately not read.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from . import basel, ck04, cm87, cmfgen, nextgen, rauch, tpagb, wmbasic
from ._common import LibrarySpectra

__all__ = ["LibraryEntry", "LIBRARIES", "UNION_LIBRARIES", "PHASE_LIBRARIES", "read_library",
           "LibrarySpectra", "IGNORED_NOTE"]

IGNORED_NOTE = ("FSPS Hot_spectra/ipagb_{solar,halo}.spec (Rauch 2003 post-AGB) duplicate the pystellibs Rauch "
                "grid (rauch_tmap) and are not used")


@dataclass(frozen=True)
class LibraryEntry:
    """Registry entry: name, folder below the libraries root, reader(folder, progress=) and kind."""

    name: str
    folder: str
    reader: Callable
    kind: str            # "union" (has log g) or "phase" (no log g)
    citation: str
    n_files: int = 1     # rough number of progress steps (for the progress bar)


LIBRARIES = {e.name: e for e in [
    LibraryEntry("ck04", ck04.FOLDER, ck04.read, "union", ck04.CITATION, 568),
    LibraryEntry("nextgen", nextgen.FOLDER, nextgen.read, "union", nextgen.CITATION, 404),
    LibraryEntry("basel22", basel.FOLDER, basel.read, "union", basel.CITATION, 467),
    LibraryEntry("wmbasic", wmbasic.FOLDER, wmbasic.read, "union", wmbasic.CITATION, 12),
    LibraryEntry("rauch_tmap", rauch.FOLDER, rauch.read, "union", rauch.CITATION, 1),
    LibraryEntry("cm87", cm87.FOLDER, cm87.read, "union", cm87.CITATION, 1),
    LibraryEntry("cmfgen_wn", cmfgen.FOLDER, partial(cmfgen.read, kind="WN"), "phase", cmfgen.CITATION, 1),
    LibraryEntry("cmfgen_wc", cmfgen.FOLDER, partial(cmfgen.read, kind="WC"), "phase", cmfgen.CITATION, 1),
    LibraryEntry("tpagb_orich", tpagb.FOLDER, partial(tpagb.read, name="tpagb_orich"), "phase", tpagb.CITE_LM, 1),
    LibraryEntry("tpagb_crich", tpagb.FOLDER, partial(tpagb.read, name="tpagb_crich"), "phase", tpagb.CITE_LM, 1),
    LibraryEntry("tpagb_crich_aringer", tpagb.FOLDER, partial(tpagb.read, name="tpagb_crich_aringer"), "phase",
                 tpagb.CITE_AR, 1),
]}
UNION_LIBRARIES = tuple(n for n, e in LIBRARIES.items() if e.kind == "union")
PHASE_LIBRARIES = tuple(n for n, e in LIBRARIES.items() if e.kind == "phase")


def read_library(name, root, progress=None):
    """Read library ``name`` from the libraries root folder ``root``.

    Parameters
    ----------
    name : str
        One of ``LIBRARIES`` (union: ck04, nextgen, basel22, wmbasic, rauch_tmap, cm87; phase: cmfgen_wn,
        cmfgen_wc, tpagb_orich, tpagb_crich, tpagb_crich_aringer).
    root : path-like
        Folder holding the library folders (e.g. ``../shared/data/libraries``).
    """
    if name not in LIBRARIES:
        raise ValueError(f"unknown library {name!r}; valid names: {', '.join(LIBRARIES)}")
    entry = LIBRARIES[name]
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"libraries folder {root} does not exist")
    return entry.reader(root / entry.folder, progress=progress)
