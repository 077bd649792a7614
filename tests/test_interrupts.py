"""interrupts_held: Ctrl-C / SIGTERM wait for the writes that belong together, and are never lost."""

import errno
import os
import signal

import pytest

from smnet_sps.interrupts import interrupts_held


def test_a_ctrl_c_held_in_a_block_is_delivered_when_it_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)      # Python's handler runs at once, here: held
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_held_in_a_block_that_fails_is_not_dropped():
    """A block that raised OSError (a full disk during the renames) after Ctrl-C was held dropped the
    Ctrl-C: a caller catching OSError went on as if it had never been pressed. It is delivered, chained to
    the error, whose message and notes it carries for the command's one line."""
    went_on = []
    with pytest.raises(KeyboardInterrupt) as err:
        try:
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                error.add_note("writing in OUT failed; OUT/checkpoint.pt holds the run at epoch 50")
                raise error
        except OSError:                 # a library caller that handles the full disk
            went_on.append(True)
    assert not went_on
    assert isinstance(err.value.__context__, OSError)
    assert err.value.__notes__ == [f"[Errno 28] {os.strerror(errno.ENOSPC)}",
                                   "writing in OUT failed; OUT/checkpoint.pt holds the run at epoch 50"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_failing_block_with_nothing_held_raises_its_error():
    with pytest.raises(OSError, match="disk"):
        with interrupts_held():
            raise OSError("disk")
