"""The ``smnet-sps`` command line. Each stage module registers its own sub-commands via ``add_cli``."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import stat
import sys
import warnings

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
    "smnet_sps.ssp_cli",      # ssp / ssp-grid
    "smnet_sps.photometry",   # mags
    "smnet_sps.plugin_registry",  # plugins
    "smnet_sps.fit_cli",      # fit (stars, SSPs)
]


# ---- option values shared by commands: `ssp-grid` and `mags` read --ages and --Z (--logzsol) alike ----
# (each had its own grammar: `--ages 1Gyr 3Gyr` was refused by mags, `--ages 1,3Gyr` by ssp-grid)
AGE_UNITS = {"yr": 1.0, "kyr": 1e3, "myr": 1e6, "gyr": 1e9}
AGES_HELP = ("ages, each with its unit (1Gyr 3Gyr, '500 Myr'), comma lists (0.1,1,10Gyr; 100Myr,1Gyr) or "
             "log-spaced ranges 'lo-hi<unit>' of --n-ages ages (0.01-12.5Gyr, 100Myr-1Gyr, 1e-2-1Gyr)")
# --n-ages: a range's default and upper limit. PARSEC tabulates 93 ages 0.05 dex apart; 1000 log-spaced ages
# over 0.01-12.5 Gyr are 0.003 dex apart, far finer than the isochrones, and each is an SSP per Z (ssp-grid
# keeps n_Z x n_ages x 1221 spectra and an isochrone plan per SSP): --n-ages 100000000 (a typo) grew to
# 14 GB before anything refused it
DEFAULT_N_AGES = 20
MAX_N_AGES = 1000
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
# a range's '-' is the one after a complete number: 1e-2-1Gyr is 0.01 .. 1 Gyr
_AGE_ITEM = re.compile(rf"(?P<lo>{_NUMBER})(?P<lo_unit>[a-zA-Z]*)"
                       rf"(?:-(?P<hi>{_NUMBER})(?P<hi_unit>[a-zA-Z]*))?")


def _as_list(values):
    """An option's value(s): one value (an option's default, a ``type=float`` option) or the list argparse
    gives for nargs="+"."""
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _age_unit(unit, token, option):
    """Years per ``unit`` (yr, kyr, Myr, Gyr in any case, or any time unit astropy knows)."""
    if unit.lower() in AGE_UNITS:
        return AGE_UNITS[unit.lower()]
    try:
        import astropy.units as u
        return float(u.Unit(unit).to(u.yr))
    except (TypeError, ValueError):
        raise ValueError(f"unknown age unit {unit!r} in {option} {token!r}; use one of yr, kyr, Myr, "
                         "Gyr") from None


def bare_age_hint(text, value):
    """Units to suggest for an age typed without one, the likelier first: a number above 1e4 is surely years
    (1e4 Gyr is 700 times the age of the universe), one below 20 surely Gyr; between, Myr. ``'1e10'`` gave
    "e.g. 1e10Gyr or 1e10yr", the impossible reading first."""
    first, second = ("yr", "Gyr") if value > 1e4 else ("Gyr", "Myr") if value < 20 else ("Myr", "yr")
    return f"{text}{first} or {text}{second}"


def parse_ages_option(values, n_ages=None, option="--ages"):
    """Ages typed on the command line -> ages [yr] (float array, in the order typed; a range increasing).

    ``values`` is one string or a list of them (``--ages 1Gyr 3Gyr``); each holds one age with its unit
    (``1Gyr``, ``'500 Myr'``, ``1e9yr``), a comma list (``0.1,1,10Gyr``: a number without a unit takes the
    unit of the list's last item; ``100Myr,1Gyr``) or a range ``lo-hi<unit>`` / ``lo<unit>-hi<unit>`` of
    ``n_ages`` log-spaced ages (``0.01-12.5Gyr``, ``100Myr-1Gyr``, ``1e-2-1Gyr``). A unit is required: a bare
    '1' would be 1 yr here but 1 Gyr to many users, so neither is guessed. ``n_ages``: 2 to
    :data:`MAX_N_AGES` per range (None: :data:`DEFAULT_N_AGES`); given for ages without a range, it is
    ignored with a warning.
    """
    import numpy as np

    given = n_ages is not None
    n_ages = DEFAULT_N_AGES if n_ages is None else n_ages
    has_range = False

    ages = []
    for token in _as_list(values):
        text = str(token).replace(" ", "")
        items = []
        for item in text.split(","):
            m = _AGE_ITEM.fullmatch(item)
            if m is None:
                raise ValueError(f"cannot read {option} {token!r}; give {AGES_HELP}")
            items.append(m)
        last = items[-1]["hi_unit"] or items[-1]["lo_unit"]
        if not last:
            number = float(items[-1]["hi"] or items[-1]["lo"])
            raise ValueError(f"{option} {token!r} has no unit; give one, e.g. {bare_age_hint(text, number)} "
                             "(yr, kyr, Myr or Gyr)")
        for m in items:
            hi_unit = m["hi_unit"] or last
            lo_unit = m["lo_unit"] or hi_unit
            if m["hi"] is None:
                ages.append(np.array([float(m["lo"]) * _age_unit(lo_unit, token, option)]))
                continue
            has_range = True
            if int(n_ages) < 2:          # one age of a range would silently be its lower end
                raise ValueError(f"--n-ages must be >= 2 for a range of ages, got {n_ages}")
            if int(n_ages) > MAX_N_AGES:
                raise ValueError(f"--n-ages must be at most {MAX_N_AGES} per range of ages (0.003 dex apart "
                                 f"over 0.01-12.5 Gyr, the isochrones are tabulated 0.05 dex apart), got "
                                 f"{n_ages}")
            lo = float(m["lo"]) * _age_unit(lo_unit, token, option)
            hi = float(m["hi"]) * _age_unit(hi_unit, token, option)
            if lo > hi:       # '5-1Gyr' came out decreasing, against the documented increasing range
                raise ValueError(f"cannot read {option} {token!r}: a range lo-hi needs lo <= hi (got "
                                 f"{lo:.4g} yr > {hi:.4g} yr)")
            ages.append(np.geomspace(lo, hi, int(n_ages)) if lo > 0 and hi > 0 else np.array([lo, hi]))
    if given and not has_range:
        typed = " ".join(map(str, _as_list(values)))
        warn_n_ages_unused(n_ages, f"{option} {typed} has no range lo-hi<unit>")
    ages = np.concatenate(ages) if ages else np.array([])
    if not np.all(np.isfinite(ages)) or np.any(ages <= 0):
        raise ValueError(f"{option} ages must be positive and finite; got "
                         f"{' '.join(map(str, _as_list(values)))}")
    return ages


def warn_n_ages_unused(n_ages, why):
    """--n-ages given where no range of ages reads it: said, not silently ignored."""
    warnings.warn(f"--n-ages {n_ages} is ignored: it is the number of ages of a range lo-hi<unit>, and {why}",
                  UserWarning, stacklevel=3)


def parse_numbers_option(values, option):
    """Numbers typed as several values and / or comma lists (``--Z 0.002 0.0152``, ``--Z 0.002,0.0152``)
    -> a float array in the order typed."""
    import numpy as np

    numbers = []
    for token in _as_list(values):
        for item in str(token).split(","):
            try:
                numbers.append(float(item))
            except ValueError:
                raise ValueError(f"cannot read {option} {token!r}: give numbers, several or comma-separated "
                                 f"(e.g. {option} 0.002 0.0152 or {option} 0.002,0.0152)") from None
    numbers = np.array(numbers)
    if not np.all(np.isfinite(numbers)):
        raise ValueError(f"{option} must be finite; got {' '.join(map(str, _as_list(values)))}")
    return numbers


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


def show_progress(args=None):
    """Whether a command draws its progress bars (tqdm, on stderr): only onto a terminal (or in a notebook's
    kernel, :func:`smnet_sps.progress.want_progress`'s rule, the library's too), and not with
    ``--no-progress`` where the command has it. Into a file or a pipe (a batch job's ``2> log``) a bar wrote
    a carriage-return segment per update, the whole bar again each time."""
    if getattr(args, "no_progress", False):
        return False
    from .progress import want_progress
    return want_progress(None)


# `smnet-sps ... | head`: the reader stopped reading. Quiet, with the status of a Unix tool ended by SIGPIPE
# (128 + 13), as the shell reports for `yes | head`; output files are written before anything is printed.
PIPE_CLOSED_STATUS = 141
# SIGTERM (`kill PID`, a batch system's time limit) and SIGHUP (the terminal closed, an ssh link dropped)
TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")


def terminate_as_interrupt(signum, frame):
    """SIGTERM (``kill PID``, a batch system's time limit) or SIGHUP (the terminal closed) as Ctrl-C: the
    command's ``finally`` blocks run (temporary files removed, a Dask cluster closed) and ``train`` saves its
    checkpoint before exiting. The KeyboardInterrupt carries the signal's name (``"SIGTERM"``)."""
    import signal
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _terminating_signal(exc):
    """The name of the signal (SIGTERM, SIGHUP) an interruption came from, None for Ctrl-C's."""
    name = exc.args[0] if len(exc.args) == 1 else None
    return name if name in TERMINATING_SIGNALS else None


def _interrupted(exc):
    """What an interruption ``exc`` did, for the command's line: "interrupted" (Ctrl-C), "terminated
    (SIGTERM)"."""
    name = _terminating_signal(exc)
    return f"terminated ({name})" if name else "interrupted"


def interrupt_status(exc):
    """The exit status of an interruption ``exc`` (KeyboardInterrupt): 128 + its signal's number, as the
    shell reports a process that signal ended (Ctrl-C 130, SIGTERM 143, SIGHUP 129)."""
    import signal
    return 128 + int(getattr(signal, _terminating_signal(exc) or "SIGINT"))


def add_note(exc, note):
    """``exc.add_note(note)`` (Python >= 3.11); on 3.10 the note is kept in ``__notes__`` as well, where
    :func:`main` reads it for the one line it prints."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt("SIGTERM") / ("SIGHUP") inside the block (main thread only,
    and each only where it still has the operating system's default action: a handler the caller set is
    kept, and so is an ignored SIGHUP -- ``nohup smnet-sps ...`` goes on when the terminal closes). By default
    SIGTERM ended the process at once: no message, status -15, the temporary file of a write in progress
    (``.g.h5.XXXX.part.h5``) and a Dask cluster's semaphores left behind, a new stars store with no chunk
    done kept; SIGHUP (a closed terminal, a dropped ssh connection) alike, status -1."""
    import signal
    import threading
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in TERMINATING_SIGNALS:
            signum = getattr(signal, name, None)        # no SIGHUP on Windows
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, terminate_as_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    """(inode, mtime in ns) of a file, None where there is none: a file written since (atomically, a new
    inode) differs. A folder's state is that of its entries (name, inode, mtime), so that a folder written
    into differs and one only checked does not: its own mtime changed when the output check created and
    removed a probe file, or a write its temporary file, so an existing report folder interrupted before
    anything was written into it was not named ("interrupted", no "not written: --out DIR")."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return st.st_ino, st.st_mtime_ns
        with os.scandir(path) as entries:
            return st.st_ino, frozenset((e.name, e.inode(), e.stat(follow_symlinks=False).st_mtime_ns)
                                        for e in entries)
    except OSError:
        return None


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


def _warning_line(command):
    """A ``warnings.formatwarning`` giving one line, ``smnet-sps CMD: warning: <message>``, as errors are:
    Python's own format showed a source path, line number, category and the source line of the call."""
    def format_warning(message, category, filename, lineno, line=None):
        return f"smnet-sps {command}: warning: {_one_line(message)}\n"
    return format_warning


def _command_label(args):
    """The command as its lines name it: ``ssp-grid``, or with its sub-command (``<command>_command``),
    ``grid build``, as argparse's own errors name it (the one-line errors said ``smnet-sps grid:``)."""
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def main(argv=None):
    """Run ``smnet-sps``; returns the exit status (0 ok, 1 a clear one-line error, also for an argument
    argparse refuses; 2 with the usage when no command is given; 141 when stdout's reader stopped reading,
    as in ``| head``, after every output was written; 1 naming the outputs not written otherwise; 130 after
    Ctrl-C, 143 after SIGTERM and 129 after SIGHUP under ``console_main``, with one line naming the outputs
    not written).
    Called from Python with a list it leaves SIGTERM and SIGHUP as the caller has them (by default they end
    the process);
    without one (``main()`` reads sys.argv, as the console script pip wrote before ``console_main`` existed
    does) it is :func:`console_main`, so that an older install keeps SIGTERM's one line and cleanup."""
    if argv is None:
        return console_main()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except BadArgument as exc:
        with contextlib.suppress(OSError):      # the terminal closed: EIO, and still the status
            print(f"{exc.prog}: error: {_one_line(exc)} (see {exc.prog} --help)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        # while the commands' modules are imported (~1.5 s of CPU: torch, astropy): the status came without
        # a line, as if the run had ended on its own; a terminal that closed (SIGHUP) fails the write (EIO)
        with contextlib.suppress(OSError):
            print(f"smnet-sps: {_interrupted(exc)} while starting; nothing written", file=sys.stderr)
        return interrupt_status(exc)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    planned = _output_states(args)
    command = _command_label(args)
    previous_format = warnings.formatwarning
    warnings.formatwarning = _warning_line(command)
    try:
        _use_file_backend(args)
        status = args.func(args) or 0
        sys.stdout.flush()              # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError as exc:
        if not _stdout_reader_gone():
            with contextlib.suppress(OSError):      # the terminal closed: EIO, and still the status
                print(f"smnet-sps {command}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        _silence_stdout()
        unwritten = _unwritten_outputs(planned)
        if unwritten:
            # quiet only when nothing is lost: a command that printed before writing lost its files silently
            with contextlib.suppress(OSError):
                print(f"smnet-sps {command}: error: stdout was closed (its reader stopped reading) before "
                      f"the files were written; not written: {', '.join(unwritten)}", file=sys.stderr)
            return 1
        return PIPE_CLOSED_STATUS
    except USER_ERRORS as exc:
        # with what was kept of the work, where the command says (train's checkpoint after a full disk)
        notes = "".join(f"; {_one_line(note)}" for note in getattr(exc, "__notes__", None) or [])
        # a terminal that closed under the run (ssh dropped) fails the write with EIO: still status 1
        with contextlib.suppress(OSError):
            print(f"smnet-sps {command}: error: {_one_line(exc)}{notes}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        # one line, not the ~40-line traceback of wherever the work was; outputs are written under a
        # temporary name and renamed, so an output asked for is either complete or not there (nor replaced)
        unwritten = _unwritten_outputs(planned)
        # and what was kept of the work, where the command keeps some (a Dask run's store: how to resume)
        kept = [_one_line(note) for note in getattr(exc, "__notes__", None) or []]
        with contextlib.suppress(OSError):      # the terminal closed (SIGHUP): EIO, and still its status
            print(f"smnet-sps {command}: {_interrupted(exc)}"
                  + (f"; not written: {', '.join(unwritten)}" if unwritten else "")
                  + "".join(f"; {note}" for note in kept), file=sys.stderr)
        return interrupt_status(exc)
    finally:
        warnings.formatwarning = previous_format     # main may be called from Python (tests, notebooks)


def console_main(argv=None):
    """The ``smnet-sps`` console command (and ``python -m smnet_sps.cli``): ``main`` with SIGTERM and SIGHUP
    (unless ignored, as under ``nohup``) acting as Ctrl-C. Only here: a Python script calling ``main``
    (docs/ssp.md) would otherwise no longer be ended by SIGTERM; main returned 143 and the script went on.
    A signal after the command returned (while the interpreter exits) ends the process as Python does (its
    status the signal's); the outputs named on the command's "wrote ..." line are complete by then."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with _signals_as_interrupt():
            return main(argv)
    except KeyboardInterrupt as exc:        # a second one while main printed its line
        return interrupt_status(exc)


if __name__ == "__main__":
    sys.exit(console_main())
