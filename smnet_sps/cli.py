"""The ``smnet-sps`` command line. Each stage module registers its own sub-commands via ``add_cli``."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

# argparse reads "-1Gyr" as an unknown option; treat anything starting like a negative number as a value,
# so that `--age -1Gyr` reaches our validation and gets a clear "age must be positive" message.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")

# (module, what it adds); modules are imported lazily so `smnet-sps --help` stays fast.
COMMAND_MODULES = [
    "smnet_sps.grid",         # grid build / grid info
    "smnet_sps.train",        # train
    "smnet_sps.experts",      # experts (combine per-library specialists)
    "smnet_sps.tail",         # tail (tabulate the untrained tails into a model)
    "smnet_sps.evaluate",     # evaluate
    "smnet_sps.validate",     # validate (observed stars, mixture ranking)
    "smnet_sps.calibrate",    # calibrate (semi-empirical correction)
    "smnet_sps.ssp",          # ssp / ssp-grid
    "smnet_sps.photometry",   # mags
    "smnet_sps.plugin_registry",  # plugins
    "smnet_sps.fit_cli",      # fit (stars, SSPs)
]


class BadArgument(ValueError):
    """An argument argparse refused (an invalid value or choice, a missing or unknown option)."""

    def __init__(self, prog, message):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors go through ``main``'s one-line path (exit status 1), as the README
    promises for bad input: argparse's own ``error`` printed a usage block and exited with status 2.
    Sub-command parsers are of this class too (``add_subparsers`` uses the parent's class)."""

    def error(self, message):
        raise BadArgument(self.prog, message)


def build_parser():
    parser = _Parser(
        prog="smnet-sps",
        description="Neural stellar libraries (SM-Net) for stellar population synthesis.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"smnet-sps {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:      # stage not written yet
                continue
            raise
        module.add_cli(sub)
    for p in [parser, *sub.choices.values()]:
        p._negative_number_matcher = _NEGATIVE_VALUE
    return parser


# Errors that mean "bad input or an unusable path", reported as one line with exit status 1. Anything else
# (TypeError, RuntimeError, ...) is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError)     # OSError covers FileNotFoundError, PermissionError, IsADirectoryError


def _one_line(exc):
    """The exception as one line: its message with newlines folded (OSError: with the file name)."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if not text:
        text = type(exc).__name__
    return " ".join(text.split())


def _use_file_backend(args):
    """The CLI only writes plots to files: pick matplotlib's file backend (Agg) before anything draws.

    Library plotting functions never choose a backend; this is the one place that does, only for a command
    that makes a plot, and only where nobody has set one up: a backend chosen explicitly (``matplotlib.use``,
    ``MPLBACKEND``, a ``backend:`` line in a matplotlibrc) is kept, and so is the backend of a session that
    already imported pyplot (a notebook); the CLI saves and closes its figures, which every backend can do.
    """
    if getattr(args, "plot", None) and "matplotlib.pyplot" not in sys.modules and not _backend_chosen():
        import matplotlib
        matplotlib.use("Agg")


def _backend_chosen():
    """Whether matplotlib's backend was set explicitly (else rcParams holds its "choose later" sentinel):
    checking only for pyplot switched a caller's matplotlib.use("svg") or MPLBACKEND to Agg."""
    import matplotlib

    rc = matplotlib.rcParams
    if hasattr(rc, "_get_backend_or_none"):             # matplotlib >= 3.5
        return rc._get_backend_or_none() is not None
    from matplotlib import rcsetup
    return dict.__getitem__(rc, "backend") is not rcsetup._auto_backend_sentinel


# `smnet-sps ... | head`: the reader stopped reading. Quiet, with the status of a Unix tool ended by SIGPIPE
# (128 + 13), as the shell reports for `yes | head`; output files are written before anything is printed.
PIPE_CLOSED_STATUS = 141


def _stdout_reader_gone():
    """Whether stdout is a pipe whose reader has gone (POLLERR on its end): a BrokenPipeError from
    elsewhere (a socket, a worker's pipe) stays an error. False where it cannot be told (no poll, no file
    descriptor)."""
    try:
        import select
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


# the options whose value is a file or folder the command writes (the safety net of a closed stdout)
OUTPUT_OPTIONS = ("out", "plot", "phase_out", "write_mixture")


def _file_state(path):
    """(inode, mtime in ns) of a file or folder, None where there is none: a file written since (atomically,
    a new inode) or a folder written into differs."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _output_states(args):
    """{option: (path, its state)} of the outputs the command was asked to write, taken before it runs."""
    paths = {attr: getattr(args, attr, None) for attr in OUTPUT_OPTIONS}
    return {attr: (path, _file_state(path)) for attr, path in paths.items()
            if isinstance(path, (str, os.PathLike))}


def _unwritten_outputs(before):
    """The outputs in ``before`` (:func:`_output_states`) still as they were, as options: ``--out m.ecsv``."""
    return [f"--{attr.replace('_', '-')} {path}" for attr, (path, state) in before.items()
            if _file_state(path) == state]


def _silence_stdout():
    """Point stdout at /dev/null, so that what is left in its buffer does not fail again at exit (Python's
    recipe for SIGPIPE: "Exception ignored ... BrokenPipeError" and status 120 otherwise)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None):
    """Run ``smnet-sps``; returns the exit status (0 ok, 1 a clear one-line error, also for an argument
    argparse refuses; 2 with the usage when no command is given; 141 when stdout's reader stopped reading,
    as in ``| head``, after every output was written; 1 naming the outputs not written otherwise)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BadArgument as exc:
        print(f"{exc.prog}: error: {_one_line(exc)} (see {exc.prog} --help)", file=sys.stderr)
        return 1
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    planned = _output_states(args)
    try:
        _use_file_backend(args)
        status = args.func(args) or 0
        sys.stdout.flush()              # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError as exc:
        if not _stdout_reader_gone():
            print(f"smnet-sps {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        _silence_stdout()
        unwritten = _unwritten_outputs(planned)
        if unwritten:
            # quiet only when nothing is lost: a command that printed before writing lost its files silently
            print(f"smnet-sps {args.command}: error: stdout was closed (its reader stopped reading) before "
                  f"the files were written; not written: {', '.join(unwritten)}", file=sys.stderr)
            return 1
        return PIPE_CLOSED_STATUS
    except USER_ERRORS as exc:
        print(f"smnet-sps {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
