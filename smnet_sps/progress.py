"""Whether to draw a progress bar (tqdm, on stderr): one rule for the library and the command line.

``progress=None`` ("auto", the default of the long-running functions) draws a bar when stderr is a terminal
or inside a Jupyter / IPython kernel (a notebook, JupyterLab, VS Code, Colab: tqdm.auto draws a widget
there although stderr is no terminal); ``True`` / ``False`` force it on / off. Into a file or a pipe (a batch
job's ``2> log``) a bar writes a carriage-return segment per update, the whole bar again each time: so no
bar there unless asked for. Imports nothing heavy: the command line uses it too
(:func:`smnet_sps.cli.show_progress`).
"""
from __future__ import annotations

import sys


def stderr_is_terminal():
    """Whether ``sys.stderr`` (as it is now) is a terminal; False for an object without ``isatty`` or a
    closed stream."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def in_notebook():
    """Whether this runs in a Jupyter / IPython kernel: ``ipykernel`` imported and an IPython shell started
    by a kernel application (tqdm.autonotebook's own test). A plain ``ipython`` console is not one (it has a
    terminal)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:                   # an IPython without get_ipython / config: not a kernel we know
        return False


def want_progress(progress=None, name="progress"):
    """Resolve a ``progress`` argument to a bool: None -> on a terminal or in a notebook only (see the module
    docstring); True / False (numpy's too) as given; anything else is a ValueError (``"False"`` would be
    truthy)."""
    if progress is None:
        return stderr_is_terminal() or in_notebook()
    from .generator import check_switch
    try:
        return check_switch(progress, name)
    except ValueError:
        raise ValueError(f"{name} is a switch: True, False or None (None: a bar on a terminal or in a "
                         f"notebook only); got {progress!r}") from None
