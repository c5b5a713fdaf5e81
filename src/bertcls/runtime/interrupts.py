"""SIGTERM / SIGINT during a run become one `RunInterrupted`, raised where it cannot cut a write short.

A process-level effect kept at the edge: `raising_interrupts()` installs the handlers for the length of a
run and restores the previous ones; `signals_deferred()` holds a signal back until a critical section
(writing the model, or a whole training loop that polls `pending()` at step boundaries to write a resume
checkpoint first) has finished; sections nest. `status_guard.py` deals with what `mlflow run` does afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT during a run: the run is marked KILLED."""


_state = {"deferred": 0, "pending": None, "raised": False}  # deferred: depth of nested sections
_HANDLED = (signal.SIGTERM, signal.SIGINT)


def _interrupted(signum: int) -> RunInterrupted:
    _state["raised"] = True
    return RunInterrupted(f"received {signal.Signals(signum).name}")


def _on_signal(signum, frame) -> None:
    if _state["raised"]:
        return  # one interrupt is enough: a second one (mlflow run's SIGTERM after Ctrl-C) must not cut cleanup
    if _state["deferred"]:
        _state["pending"] = signum
        return
    raise _interrupted(signum)


@contextlib.contextmanager
def raising_interrupts() -> Iterator[None]:
    """SIGTERM and SIGINT raise RunInterrupted inside the block; the previous handlers come back after it."""
    _state.update(deferred=0, pending=None, raised=False)
    previous = {s: signal.signal(s, _on_signal) for s in _HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Finish a critical section (writing the model) before a pending SIGTERM/SIGINT takes effect.

    The signal is raised when the outermost section ends (or earlier, by `raise_pending()`). Signals reach the
    main thread only, so another thread's section (the background logger's uploads) needs no deferral, and must
    not take the main thread's pending signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
        if not _state["deferred"]:
            raise_pending()


def pending() -> bool:
    """A signal arrived inside a deferred section and waits: stop at the next safe point."""
    return _state["pending"] is not None


def raise_pending() -> None:
    """Raise the waiting signal as RunInterrupted now (nothing happens if none waits)."""
    if _state["pending"] is not None:
        signum, _state["pending"] = _state["pending"], None
        raise _interrupted(signum)
