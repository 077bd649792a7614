"""The console command and the signals that end a run from outside: SIGHUP (a closed terminal, a dropped ssh
connection), a signal during the start of the process or after its command (a process hanging in its
teardown), and an --overwrite run killed outright."""
import contextlib
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP (Windows)")

# ssp-grid whose write stops part way (half a file on disk), says so on stdout and waits; after 3 s it
# finishes the file, as a run that the signal did not stop
_WRITE_THEN_WAIT = ("import os, signal, sys, time\nimport smnet_sps.ssp as ssp\n"
                    "def save(grid, path):\n"
                    "    open(path, 'wb').write(b'half a file')\n"
                    "    print('writing', flush=True)\n"
                    "    time.sleep(3)\n"
                    "    open(path, 'wb').write(b'the new result')\n"
                    "ssp.save_ssp_grid = save\n"
                    "from smnet_sps.cli import console_main\nsys.exit(console_main(sys.argv[1:]))\n")


def _ssp_grid_until_writing(tmp_path, code=_WRITE_THEN_WAIT, **popen):
    out = tmp_path / "g.h5"
    out.write_text("an older result")
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--overwrite",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            text=True, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen})
    assert proc.stdout.readline().strip() == "writing", proc.communicate()
    return proc, out


def test_sighup_during_the_write_is_one_line_status_129_and_leaves_the_older_file(tmp_path):
    """The terminal closed (or the ssh connection dropped) under `smnet-sps ssp-grid ...`: SIGHUP ended the
    process at once, status -1, no line and the temporary file of the write left beside the output
    (SIGTERM's behaviour before it became an interruption). Now as SIGTERM: one line, status 128 + 1."""
    proc, out = _ssp_grid_until_writing(tmp_path)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP, (proc.returncode, stderr)
    assert stderr.strip() == f"smnet-sps ssp-grid: terminated (SIGHUP); not written: --out {out}"
    assert out.read_text() == "an older result" and sorted(os.listdir(tmp_path)) == [out.name]


def test_sighup_after_the_terminal_closed_is_status_129(tmp_path):
    """The terminal of `smnet-sps ssp-grid ...` really closed (stderr on a pseudo-terminal whose other end
    is gone), then SIGHUP: the line's write failed with OSError(5, EIO), which escaped -- status 1. Now the
    interruption's status, 129, and the older file intact."""
    import pty
    master, slave = pty.openpty()
    try:
        proc, out = _ssp_grid_until_writing(tmp_path, stderr=slave)
    finally:
        os.close(slave)
    os.close(master)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP, proc.returncode
    assert out.read_text() == "an older result" and sorted(os.listdir(tmp_path)) == [out.name]


def test_sighup_ignored_as_by_nohup_stays_ignored(tmp_path):
    """`nohup smnet-sps ...` ignores SIGHUP before the command starts: the command keeps it ignored and its
    run completes when the terminal closes."""
    proc, out = _ssp_grid_until_writing(
        tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, stderr)
    assert out.read_text() == "the new result" and f"wrote {out}" in stdout


@pytest.mark.parametrize("signame, said", [("SIGTERM", "terminated (SIGTERM)"), ("SIGINT", "interrupted")])
def test_a_signal_while_the_commands_are_imported_says_so(tmp_path, signame, said):
    """`smnet-sps ...` spends its first ~1.5 s of CPU importing the commands' modules (torch, astropy;
    2-6 s on a busy machine), before the arguments are read: SIGTERM or Ctrl-C there ended the command with
    status 143 / 130 and no line at all, as if the run had ended by itself. It now says so."""
    (tmp_path / "slow_command.py").write_text(
        "import time\nprint('importing', flush=True)\ntime.sleep(30)\n")
    code = ("import sys\nfrom smnet_sps import cli\ncli.COMMAND_MODULES.insert(0, 'slow_command')\n"
            "sys.exit(cli.console_main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "ssp-grid", "--out", str(tmp_path / "g.h5")],
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
                                [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "importing", proc.communicate()
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signame), (proc.returncode, stderr)
    assert stderr.strip() == f"smnet-sps: {said} while starting; nothing written"
    assert not (tmp_path / "g.h5").exists()


# a complete `ssp-grid` run, then a process hanging in Python's last teardown (as a torch / OpenMP / C++
# destructor can): a __del__ of a module-level object says so and sleeps 60 s
_HANG_IN_TEARDOWN = ("import os, sys, time\nfrom smnet_sps.cli import console_main\n"
                     "class Hang:\n"
                     "    def __del__(self, write=os.write, sleep=time.sleep):\n"
                     "        write(1, b'hanging\\n')\n"
                     "        sleep(60)\n"
                     "status = console_main()\n"
                     "hang = Hang()\n"
                     "sys.exit(status)\n")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_process_hanging_in_its_last_teardown_is_still_ended_by_a_signal(tmp_path, signame):
    """After a complete `smnet-sps ...` run, a process hanging in Python's last teardown (a torch / OpenMP
    destructor) is ended at once by Ctrl-C, SIGTERM or SIGHUP, with that signal's default action (an
    earlier exit handling ignored them there: still running 6 s after each signal, only SIGKILL ended it)."""
    out = tmp_path / "g.h5"
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", _HANG_IN_TEARDOWN, *argv],
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(f"wrote {out}"), proc.communicate()
        assert proc.stdout.readline().strip() == "hanging", proc.communicate()
        proc.send_signal(getattr(signal, signame))
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        still_running = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert not still_running, f"still running 10 s after {signame}"
    assert proc.returncode == -getattr(signal, signame), proc.returncode


def _points_table(tmp_path, n=200):
    """A Parquet table of ``n`` stars (Teff [K], log g, [M/H], log L [L_sun])."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(7)
    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": 10 ** rng.uniform(3.6, 4.2, n), "logg": rng.uniform(1.5, 5.0, n),
                  "logz": rng.uniform(-1.5, 0.3, n), "logl": rng.uniform(-2, 3, n)}).to_parquet(table)
    return table


def _first_points_store(tmp_path, monkeypatch):
    """`mags --points` of :func:`_points_table` (4 chunks, sdss2010-g) written to tmp_path/mags.zarr with the
    work run here (no Dask client): (the distributed module, cli.main, the store, the command without
    --filters)."""
    pytest.importorskip("distributed")
    from smnet_sps import distributed as D
    from smnet_sps.cli import main

    table, out = _points_table(tmp_path), tmp_path / "mags.zarr"
    base = ["mags", "--points", str(table), "--model", "blackbody", "--chunk-rows", "50", "--out", str(out)]
    monkeypatch.setattr(D, "get_client", lambda client=None: client)
    assert main([*base, "--filters", "sdss2010-g"]) == 0
    return D, main, out, base


class _ClosedByError:
    """--workers without a cluster (the work runs here), whose close raises ``_ClosedByError.error``."""
    error = None

    def __init__(self, scheduler, workers):
        pass

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        raise self.error


_CLOSE_TIMED_OUT = TimeoutError("the Dask cluster did not close within 20 s")


@pytest.mark.parametrize("error", [KeyboardInterrupt(), _CLOSE_TIMED_OUT])
def test_ctrl_c_while_the_dask_cluster_closes_keeps_the_complete_store(tmp_path, capsys, monkeypatch, error):
    """Ctrl-C while `mags --points --workers N --overwrite` closed its Dask cluster (a second or two), the
    new store complete: the old store was put back over it and the line said "interrupted", the run's
    work gone. The complete store stays, and the line says so (status 130). Any other error there (a close
    that timed out) gave status 1 and no "wrote" line, and workflow tools (Snakemake, make's
    .DELETE_ON_ERROR) delete a failed job's outputs: the complete store lost. It is a warning naming the
    error now, then the "wrote" line and status 0."""
    D, main, out, base = _first_points_store(tmp_path, monkeypatch)
    monkeypatch.setattr(_ClosedByError, "error", error)
    monkeypatch.setattr(D, "_CliClient", _ClosedByError)
    capsys.readouterr()
    argv = [*base, "--filters", "sdss2010-r", "--workers", "1", "--overwrite"]
    if isinstance(error, KeyboardInterrupt):
        assert main(argv) == 130
        err = capsys.readouterr().err.strip()
        assert err == (f"smnet-sps mags: interrupted; {out} is complete: its 4 chunk(s) were written before "
                       "the interruption (while the Dask cluster closed)"), err
    else:
        with pytest.warns(UserWarning) as record:
            assert main(argv) == 0
        assert [str(w.message) for w in record] == [
            "the Dask cluster failed to close (TimeoutError: the Dask cluster did not close within 20 s) "
            f"after the work was complete: {out} holds its 4 chunk(s)"]
        captured = capsys.readouterr()
        assert captured.out.startswith(f"wrote {out}: magnitudes of 200 stars"), captured
        assert captured.err == ""
    mags, inside, attrs = D.load_points_store(out)
    assert mags.shape == (200, 1) and attrs["filters"] == ["sdss2010-r"]
    assert sorted(os.listdir(tmp_path)) == ["mags.zarr", "stars.parquet"]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), _CLOSE_TIMED_OUT])
def test_ssp_grid_when_the_dask_cluster_fails_to_close_keeps_the_complete_store(tmp_path, capsys, monkeypatch,
                                                                                  error):
    """`ssp-grid --workers N` with every block in OUT.store, then Ctrl-C while its Dask cluster closed: the
    line said "interrupted; not written: --out g.h5", nothing of the complete store that the same command
    writes --out from. It says so now (status 130). A close that failed otherwise (timed out) was status 1
    with "error: the Dask cluster did not close within 20 s" and no --out: a warning naming the error now,
    --out written and status 0."""
    pytest.importorskip("distributed")
    from smnet_sps import distributed as D
    from smnet_sps.cli import main
    from smnet_sps.ssp import load_ssp_grid

    monkeypatch.setattr(D, "get_client", lambda client=None: client)
    monkeypatch.setattr(_ClosedByError, "error", error)
    monkeypatch.setattr(D, "_CliClient", _ClosedByError)
    out = tmp_path / "g.h5"
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.004", "0.0152", "--generator", "blackbody", "--out",
            str(out), "--workers", "1"]
    if isinstance(error, KeyboardInterrupt):
        assert main(argv) == 130
        store = next(out.with_name(out.name + ".store").absolute().glob("*.zarr"))
        err = capsys.readouterr().err.strip()
        assert err == (f"smnet-sps ssp-grid: interrupted; not written: --out {out}; 2 of 2 block(s) finished "
                       f"are kept in {store}: the same command resumes from them"), err
        assert not out.exists()
        monkeypatch.setattr(_ClosedByError, "error", None)
        monkeypatch.setattr(_ClosedByError, "__exit__", lambda self, *exc: False)
        assert main(argv) == 0              # the same command: --out from the store, nothing computed
        assert "0 block(s) computed, 2 already in" in capsys.readouterr().out
    else:
        with pytest.warns(UserWarning) as record:
            assert main(argv) == 0
        store = next(out.with_name(out.name + ".store").glob("*.zarr"))
        assert [str(w.message) for w in record] == [
            "the Dask cluster failed to close (TimeoutError: the Dask cluster did not close within 20 s) "
            f"after the work was complete: {store} holds its 2 block(s); --out is written from it"]
        captured = capsys.readouterr()
        assert captured.out.startswith(f"wrote {out}: 2 Z x 1 ages"), captured
        assert captured.err == ""
    assert load_ssp_grid(out).ssp_flux.shape[:2] == (2, 1)


def test_overwrite_after_a_killed_overwrite_keeps_the_store_it_had_set_aside(tmp_path, capsys, monkeypatch):
    """`mags --points --overwrite` killed outright (SIGKILL, a power cut) leaves the old store set aside as
    OUT.replaced and its own unfinished store as OUT. The next --overwrite removed OUT.replaced without a
    word -- the old store, the only complete copy -- then set the unfinished one aside, and put that back
    when the run failed. It now keeps OUT.replaced as the copy set aside (put back on a failure), says so,
    and removes a leftover only where OUT is complete."""
    import errno
    import shutil
    import warnings

    import numpy as np

    D, main, out, base = _first_points_store(tmp_path, monkeypatch)
    aside = tmp_path / "mags.zarr.replaced"
    old, _, _ = D.load_points_store(out)
    write_block, calls = D._write_block, []

    def failing_at(n, error):
        def block(*args):
            calls.append(args)
            if len(calls) == n:
                raise error
            return write_block(*args)
        return block

    # the killed --overwrite run: the old store set aside, its own store with 1 of 4 chunks
    shutil.copytree(out, aside)
    shutil.rmtree(out)
    monkeypatch.setattr(D, "_write_block", failing_at(2, KeyboardInterrupt()))
    assert main([*base, "--filters", "sdss2010-r"]) == 130
    import zarr
    assert np.asarray(zarr.open_group(str(out), mode="r")["done"][:]).tolist() == [1, 0, 0, 0]
    # a rerun with --overwrite that fails (a full disk): the old store is back, and the warning said why
    calls.clear()
    monkeypatch.setattr(D, "_write_block", failing_at(1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main([*base, "--filters", "sdss2010-i", "--overwrite"]) == 1
    assert [str(w.message) for w in said] == [
        f"{aside} holds the store an earlier --overwrite run set aside before it was killed: kept as the "
        f"copy put back should this run fail; {out} is that run's, 1 of 4 chunk(s), and is replaced"]
    mags, _, attrs = D.load_points_store(out)
    assert attrs["filters"] == ["sdss2010-g"] and np.array_equal(mags, old)
    assert not aside.exists()



def test_a_killed_overwrite_that_had_not_begun_its_store_is_named_so(tmp_path, monkeypatch):
    """An --overwrite run killed after setting the old store aside and before making its own leaves
    OUT.replaced and no OUT: the warnings said "OUT (that run's, 0 of 0 chunk(s)) is replaced" and
    "(OUT is that run's)" of a store that was not there."""
    import errno
    import shutil
    import warnings

    D, main, out, base = _first_points_store(tmp_path, monkeypatch)
    aside = tmp_path / "mags.zarr.replaced"
    shutil.move(out, aside)
    full_disk = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with monkeypatch.context() as failing:
        failing.setattr(D, "_write_block", lambda *args: (_ for _ in ()).throw(full_disk))
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert main([*base, "--filters", "sdss2010-i", "--overwrite"]) == 1
    assert [str(w.message) for w in said] == [
        f"{aside} holds the store an earlier --overwrite run set aside before it was killed: kept as the "
        f"copy put back should this run fail; that run had not begun {out}"]
    assert D.load_points_store(out)[2]["filters"] == ["sdss2010-g"] and not aside.exists()
    shutil.move(out, aside)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main([*base, "--filters", "sdss2010-r"]) == 0
    assert [str(w.message) for w in said] == [
        f"{aside} holds the store an earlier 'mags --points --overwrite' set aside before it was killed "
        f"(that run had not begun {out}); rename it back to keep it, else remove it"]


class _ClosedTerminal:
    """stderr on a terminal that has closed: every write fails with EIO, as a tty's after its hang-up."""

    def write(self, text):
        import errno
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def flush(self):
        pass


@pytest.mark.parametrize("where", ["while starting", "during the command"])
@pytest.mark.parametrize("signame", ["SIGHUP", None])
def test_the_interruption_line_on_a_closed_terminal_keeps_the_status(tmp_path, monkeypatch, where, signame):
    """The terminal closed under `smnet-sps ssp-grid ...` (SIGHUP): the one line printed on its stderr
    failed with OSError(5, EIO), which escaped main and console_main -- status 1 and a traceback (on the dead
    terminal) instead of 129. The line is dropped there and the status is the interruption's: 129 (130 for
    Ctrl-C)."""
    import smnet_sps.ssp as ssp
    from smnet_sps import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt(*[signame] if signame else [])

    if where == "while starting":
        monkeypatch.setattr(cli, "build_parser", interrupted)
    else:
        monkeypatch.setattr(ssp, "save_ssp_grid", interrupted)
    monkeypatch.setattr(sys, "stderr", _ClosedTerminal())
    out = tmp_path / "g.h5"
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]
    assert cli.console_main(argv) == 128 + (signal.SIGHUP if signame else signal.SIGINT)
    assert not out.exists()


@pytest.mark.parametrize("error", ["a ValueError", "an argument refused", "a BrokenPipeError"])
def test_the_error_line_on_a_closed_terminal_keeps_status_1(tmp_path, monkeypatch, error):
    """The terminal closed (ssh dropped) under `smnet-sps ssp-grid ...` which then failed: its one error
    line's print raised OSError(5, EIO), which escaped main and console_main -- a traceback (on the dead
    terminal) and Python's status, not the command's. The line is dropped there, as the interruption's is,
    and the status is the error's: 1."""
    import smnet_sps.ssp as ssp
    from smnet_sps import cli

    out = tmp_path / "g.h5"
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]
    if error == "a ValueError":
        argv[4] = "-5"                                   # Z < 0: the command's own ValueError
    elif error == "an argument refused":
        argv.append("--no-such-option")
    else:                                                # from elsewhere than stdout: stays an error

        def broken(*args, **kwargs):
            raise BrokenPipeError("a worker's pipe")

        monkeypatch.setattr(ssp, "save_ssp_grid", broken)
    monkeypatch.setattr(sys, "stderr", _ClosedTerminal())
    assert cli.console_main(argv) == 1
    assert not out.exists()


def test_train_interrupted_on_a_closed_terminal_keeps_the_status(tmp_path, monkeypatch):
    """`smnet-sps train` (its own interruption line, not main's) under a terminal that closed: the line's
    print failed with OSError(5, EIO), which escaped console_main -- a traceback and status 1 instead of
    129, for the command an ssh connection that dropped most often ends."""
    from test_train import make_synthetic_grid

    import smnet_sps.train as train_module
    from smnet_sps import cli

    def interrupted(args):
        raise KeyboardInterrupt("SIGHUP")

    grid = make_synthetic_grid(tmp_path / "grid.h5")
    monkeypatch.setattr(train_module, "_cli_train", interrupted)
    monkeypatch.setattr(sys, "stderr", _ClosedTerminal())
    argv = ["train", "--grid", str(grid), "--out", str(tmp_path / "m")]
    assert cli.console_main(argv) == 128 + signal.SIGHUP


def test_sighup_is_held_in_a_block_of_writes_that_belong_together():
    """The console command turns SIGHUP into an interruption (1f2c428), and interrupts_held holds it as it
    holds Ctrl-C and SIGTERM: the block (a batch's update, a model's files) completes, then the command's
    "terminated (SIGHUP)" interruption happens."""
    from smnet_sps.cli import _signals_as_interrupt
    from smnet_sps.interrupts import interrupts_held

    done = []
    with _signals_as_interrupt():
        with pytest.raises(KeyboardInterrupt) as err:
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGHUP)
                done.append("rest of the block")
    assert done == ["rest of the block"] and err.value.args == ("SIGHUP",)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
