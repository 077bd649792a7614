"""Readers of the native stellar libraries, one module per file format, and a registry.

Every reader takes the library's folder (below the libraries root, e.g. ``../shared/data/libraries``)
and returns a :class:`~smnet_sps.libraries._common.LibrarySpectra` of surface F_lambda
[erg s^-1 cm^-2 A^-1] on the library's native wavelength grid(s).

Two kinds of libraries:

* ``UNION_LIBRARIES`` have (Teff, log g, [M/H]) and form the union training grid;
* ``PHASE_LIBRARIES`` (Wolf-Rayet, TP-AGB, Rauch post-AGB) have no log g; they are kept apart and are never
  given an invented log g. The SSP stage uses them for the corresponding evolutionary phases.

``DEFAULT_LIBRARIES`` are those ``grid build`` reads when no ``--only`` is given. ``rauch_tmap`` (the
pystellibs Rauch FITS grid) keeps its reader but is not a default: the shipped file is degenerate (102 rows,
2 distinct spectra, see :data:`DEFAULT_NOTE`); the Rauch (2003) models are used through FSPS' post-AGB files
(``Hot_spectra/ipagb_*.spec``) as the phase library ``rauch_pagb``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from . import basel, ck04, cm87, cmfgen, nextgen, rauch, rauch_pagb, tpagb, wmbasic
from ._common import LibrarySpectra

__all__ = ["LibraryEntry", "LIBRARIES", "UNION_LIBRARIES", "PHASE_LIBRARIES", "DEFAULT_LIBRARIES",
           "read_library", "LibrarySpectra", "DEFAULT_NOTE"]

DEFAULT_NOTE = ("rauch_tmap (pystellibs stellib_Rauch.grid.fits) is not built by default: that file is "
                "degenerate (102 rows, only 2 distinct spectra, one per Z, for Teff 50-190 kK and log g "
                "5-8); the Rauch (2003) post-AGB models are used instead from FSPS "
                "Hot_spectra/ipagb_{solar,halo}.spec as the phase library rauch_pagb (no log g)")


@dataclass(frozen=True)
class LibraryEntry:
    """Registry entry: name, folder below the libraries root, reader(folder, progress=) and kind."""

    name: str
    folder: str
    reader: Callable
    kind: str            # "union" (has log g) or "phase" (no log g)
    citation: str
    n_files: int = 1     # rough number of progress steps (for the progress bar)
    default: bool = True  # read by ``grid build`` when no ``--only`` is given
    medium: str = "vacuum"   # wavelength medium of the native tabulation ("vacuum" or "air")
    medium_note: str = ""    # the evidence for ``medium`` (or the assumption made)
    #: False: the spectra are used at every metallicity and their [M/H] is NaN by design; elsewhere a NaN
    #: [M/H] is a damaged file
    metallicity_specific: bool = True


LIBRARIES = {e.name: e for e in [
    LibraryEntry("ck04", ck04.FOLDER, ck04.read, "union", ck04.CITATION, 568,
                 medium=ck04.MEDIUM, medium_note=ck04.MEDIUM_NOTE),
    LibraryEntry("nextgen", nextgen.FOLDER, nextgen.read, "union", nextgen.CITATION, 404,
                 medium=nextgen.MEDIUM, medium_note=nextgen.MEDIUM_NOTE),
    LibraryEntry("basel22", basel.FOLDER, basel.read, "union", basel.CITATION, 467,
                 medium=basel.MEDIUM, medium_note=basel.MEDIUM_NOTE),
    LibraryEntry("wmbasic", wmbasic.FOLDER, wmbasic.read, "union", wmbasic.CITATION, 12,
                 medium=wmbasic.MEDIUM, medium_note=wmbasic.MEDIUM_NOTE),
    LibraryEntry("rauch_tmap", rauch.FOLDER, rauch.read, "union", rauch.CITATION, 1,
                 medium=rauch.MEDIUM, medium_note=rauch.MEDIUM_NOTE, default=False),
    LibraryEntry("cm87", cm87.FOLDER, cm87.read, "union", cm87.CITATION, 1,
                 medium=cm87.MEDIUM, medium_note=cm87.MEDIUM_NOTE),
    LibraryEntry("cmfgen_wn", cmfgen.FOLDER, partial(cmfgen.read, kind="WN"), "phase", cmfgen.CITATION, 1,
                 medium=cmfgen.MEDIUM, medium_note=cmfgen.MEDIUM_NOTE),
    LibraryEntry("cmfgen_wc", cmfgen.FOLDER, partial(cmfgen.read, kind="WC"), "phase", cmfgen.CITATION, 1,
                 medium=cmfgen.MEDIUM, medium_note=cmfgen.MEDIUM_NOTE),
    LibraryEntry("rauch_pagb", rauch_pagb.FOLDER, rauch_pagb.read, "phase", rauch_pagb.CITATION, 2,
                 medium=rauch_pagb.MEDIUM, medium_note=rauch_pagb.MEDIUM_NOTE),
    LibraryEntry("tpagb_orich", tpagb.FOLDER, partial(tpagb.read, name="tpagb_orich"), "phase",
                 tpagb.CITE_LM, 1, medium=tpagb.MEDIUM["tpagb_orich"],
                 medium_note=tpagb.MEDIUM_NOTE["tpagb_orich"],
                 metallicity_specific=tpagb.METALLICITY_SPECIFIC["tpagb_orich"]),
    LibraryEntry("tpagb_crich", tpagb.FOLDER, partial(tpagb.read, name="tpagb_crich"), "phase",
                 tpagb.CITE_LM, 1, medium=tpagb.MEDIUM["tpagb_crich"],
                 medium_note=tpagb.MEDIUM_NOTE["tpagb_crich"],
                 metallicity_specific=tpagb.METALLICITY_SPECIFIC["tpagb_crich"]),
    LibraryEntry("tpagb_crich_aringer", tpagb.FOLDER, partial(tpagb.read, name="tpagb_crich_aringer"),
                 "phase", tpagb.CITE_AR, 1, medium=tpagb.MEDIUM["tpagb_crich_aringer"],
                 medium_note=tpagb.MEDIUM_NOTE["tpagb_crich_aringer"],
                 metallicity_specific=tpagb.METALLICITY_SPECIFIC["tpagb_crich_aringer"]),
]}
#: union (log g) libraries of the default build; ``rauch_tmap`` is readable but not a default
UNION_LIBRARIES = tuple(n for n, e in LIBRARIES.items() if e.kind == "union" and e.default)
PHASE_LIBRARIES = tuple(n for n, e in LIBRARIES.items() if e.kind == "phase" and e.default)
DEFAULT_LIBRARIES = UNION_LIBRARIES + PHASE_LIBRARIES


def read_library(name, root, progress=None):
    """Read library ``name`` from the libraries root folder ``root``.

    Parameters
    ----------
    name : str
        One of ``LIBRARIES`` (union: ck04, nextgen, basel22, wmbasic, cm87, and rauch_tmap (not a default:
        its shipped file is degenerate and is rejected); phase: cmfgen_wn, cmfgen_wc, rauch_pagb, tpagb_orich,
        tpagb_crich, tpagb_crich_aringer).

    Raises
    ------
    ValueError
        Unknown name, or a damaged / degenerate file (the message names the file).
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
