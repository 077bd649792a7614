"""atomic_output's file permissions and what it does to an existing target."""
import os
import threading

import pytest

from smnet_sps import output_files


def test_atomic_output_never_changes_the_process_umask(tmp_path, monkeypatch):
    """_finish read the umask with os.umask(0); os.umask(umask) at every write: for a moment the whole
    process had umask 0, so a file another thread created then (save_ssp_grid and convert_fsps_isochrones
    are library calls) was world-writable. It is read from /proc; the new file's mode is unchanged."""
    calls = []
    monkeypatch.setattr(output_files.os, "umask", lambda *a: calls.append(a) or 0o022)
    path = tmp_path / "out.txt"
    with output_files.atomic_output(path, overwrite=True, option="path") as tmp:
        tmp.write_text("x")
    assert calls == []
    assert path.stat().st_mode & 0o777 == 0o666 & ~output_files._umask()


def test_atomic_output_gives_a_new_file_the_umasks_permissions_from_threads(tmp_path):
    """The mode a file gets is 0666 less the process's umask (not mkstemp's 0600), also written from
    several threads at once."""
    umask = os.umask(0o027)
    os.umask(umask)
    assert output_files._umask() == umask

    def write(i):
        with output_files.atomic_output(tmp_path / f"f{i}.txt", overwrite=True) as tmp:
            tmp.write_text(str(i))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert (tmp_path / f"f{i}.txt").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_atomic_output_replaces_a_symlink_target_by_a_file(tmp_path):
    """As its docstring says: an existing target is replaced, a symlink by the new file; what the link
    pointed to is left as it was."""
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with output_files.atomic_output(link, overwrite=True) as tmp:
        tmp.write_text("new")
    assert not link.is_symlink() and link.read_text() == "new"
    assert real.read_text() == "old"


def test_a_umask_set_after_import_is_followed(tmp_path):
    """The umask was read once at import: a user's os.umask(0o077) afterwards (to keep outputs private)
    still gave a world-readable 0644 file. It is read at each write (from /proc, which changes nothing)."""
    if output_files._proc_umask() is None:
        pytest.skip("no /proc: the umask is read at import")
    old = os.umask(0o077)
    try:
        with output_files.atomic_output(tmp_path / "private.txt", overwrite=True) as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600


def test_a_write_when_proc_cannot_be_read_keeps_a_usual_mode(tmp_path, monkeypatch):
    """With /proc readable at import but not at the write (no file descriptor left, a sandbox), the mode was
    0o666 & ~None: a TypeError after the file was written. It falls back to the usual 0o022 (or the umask
    read at import where /proc never existed)."""
    monkeypatch.setattr(output_files, "_proc_umask", lambda: None)
    with output_files.atomic_output(tmp_path / "x.txt", overwrite=True) as tmp:
        tmp.write_text("x")
    expected = 0o022 if output_files._IMPORT_UMASK is None else output_files._IMPORT_UMASK
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~expected
