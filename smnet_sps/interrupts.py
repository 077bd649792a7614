"""Ctrl-C / SIGTERM / SIGHUP held back while a group of writes that belong together is done (train,
experts)."""
from __future__ import annotations

import contextlib

__all__ = ["interrupts_held"]


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C / SIGTERM (/ SIGHUP under the command) that arrive inside the block take effect when it ends
    (main thread only).

    Around one batch's update (optimizer step, moving average, the record of the batches done): a signal
    landing there raised KeyboardInterrupt with the step taken but not recorded, so the checkpoint named
    the batch undone and the resume trained on it twice (cut right after the 6th step of 4 epochs: val
    2.5559 for the uninterrupted 2.6037, weights 6.3e-3 apart). Around a model's files: a signal between
    weights.pt and config.json left a model load_generator refuses. Only Python handlers (Ctrl-C's, the
    command's SIGTERM) are held; a signal the operating system handles keeps its own behaviour.

    A block that fails (an OSError: a full disk) after a signal was held still delivers it: the
    KeyboardInterrupt is raised from the error (its ``__context__``), carrying the error and its notes as
    notes of its own. Dropped, a caller that catches OSError went on as if Ctrl-C had never been pressed.
    """
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():     # handlers live in the main thread
        yield
        return
    caught, previous = [], {}
    # SIGHUP: the console command's too (a closed terminal); not on Windows
    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        handler = None if signum is None else signal.getsignal(signum)
        if callable(handler):
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    except KeyboardInterrupt:           # already an interruption (raised, not signalled): the held one too
        raise
    except BaseException as error:
        if caught:
            _deliver(previous, caught, error)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:                  # the block is complete: the interruption happens now
        _deliver(previous, caught, None)


def _deliver(previous, caught, error):
    """Run the held signal's handler (Ctrl-C's raises KeyboardInterrupt); after a failed block ``error``,
    the interruption carries what failed, as the one line the command prints."""
    import signal
    signum, frame = caught[0]
    for restore, handler in previous.items():      # the handler runs as outside the block
        signal.signal(restore, handler)
    try:
        previous[signum](signum, frame)
    except KeyboardInterrupt as exc:
        if error is not None:
            from .cli import _one_line, add_note
            add_note(exc, _one_line(error))
            for note in getattr(error, "__notes__", None) or []:
                add_note(exc, note)
        raise
