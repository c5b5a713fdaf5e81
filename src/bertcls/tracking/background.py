"""Tracking calls in a background thread, in order, retried while the tracking server cannot be reached.

Training never waits on tracking: each epoch's logging (metrics, tags, the resume checkpoint's upload, epoch
models) is handed to one worker thread and fit() goes on. When a call fails because the store is unreachable,
the worker prints one warning line, waits and retries the same call (MLflow's own HTTP retries run inside
each attempt); when the server answers again it catches up in order and says so. At the end of a job
`flush(timeout_s)` tells whether everything reached the store; what did not is kept locally by the resume
checkpoint (its progress holds every epoch's metrics), which `train --resume-run-id` logs later.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bertcls")

RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # between attempts while unreachable; the last repeats
WAIT_AT_END_ENV = "BERTCLS_TRACKING_WAIT_S"  # how long the end of a job waits for an unreachable server
WAIT_AT_END_S = 120.0


def wait_at_end_s() -> float:
    """Seconds the end of a job waits for logging to catch up (BERTCLS_TRACKING_WAIT_S, default 120)."""
    return float(os.environ.get(WAIT_AT_END_ENV) or WAIT_AT_END_S)


def is_unreachable(error: BaseException) -> bool:
    """The tracking store could not be reached (connection refused or reset, timeout, a 5xx proxy answer), as
    opposed to a call the store refused: only the former is retried."""
    import requests

    if isinstance(
        error, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError | TimeoutError
    ):
        return True
    text = str(error)
    if "API request to" not in text:
        return False
    return "failed with exception" in text or any(f"error code {code}" in text for code in (500, 502, 503, 504))


class BackgroundLogger:
    """One worker thread running submitted tracking calls in order; see the module docstring."""

    def __init__(self, where: str, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S):
        self.where = where  # the tracking URI, for messages
        self.retry_delays_s = retry_delays_s
        self.unreachable_since: float | None = None  # wall time of the current outage's first failure
        self.last_problem: str | None = None
        self.failed: list[tuple[str, BaseException]] = []  # calls the store refused (not retried)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0  # submitted and not yet done
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="bertcls-tracking", daemon=True)
        self._thread.start()

    def submit(self, what: str, call: Callable[..., Any], *args, **kwargs) -> None:
        """Run `call(*args, **kwargs)` after everything submitted before it; `what` names it in messages."""
        with self._lock:
            self._pending += 1
        self._queue.put((what, call, args, kwargs))

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted call is done, at most `timeout_s`; True if nothing is left."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 1.0))
        return True

    def _work(self) -> None:
        while True:
            what, call, args, kwargs = self._queue.get()
            self._attempt(what, call, args, kwargs)
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()

    def _attempt(self, what: str, call, args, kwargs) -> None:
        failures = 0
        while True:
            try:
                call(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - sorted below: retried, or recorded for the job
                if not is_unreachable(error):
                    log.warning("tracking refused %s: %s", what, str(error).splitlines()[0][:300])
                    self.failed.append((what, error))
                    return
                self._note_outage(error)
                time.sleep(self.retry_delays_s[min(failures, len(self.retry_delays_s) - 1)])
                failures += 1
                continue
            if self.unreachable_since is not None:
                down = time.time() - self.unreachable_since
                log.warning(
                    "tracking server %s answers again after %.0f s; catching up (%d calls queued)",
                    self.where,
                    down,
                    max(self.pending - 1, 0),
                )
                self.unreachable_since = None
            return

    def _note_outage(self, error: BaseException) -> None:
        self.last_problem = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
            log.warning("tracking server %s unreachable since %s, retrying; training continues", self.where, since)
