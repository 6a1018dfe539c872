"""When a sync runs: isolated events at once, bursts coalesced; signals that stop or resync."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

log = logging.getLogger("servicerouter")


class SyncTrigger:
    """Decides when a sync runs: at once for an isolated event, coalesced for bursts.

    Leading edge: an event that comes after ``min_wait`` seconds of quiet is due
    immediately, so a lone task event is not held back by a debounce.  Events
    that follow within ``min_wait`` of another are a burst: their sync waits
    until ``min_wait`` of quiet, or ``max_wait`` after the first of them,
    whichever is first.  Syncs run on one thread, never two at once.
    ``resync_interval`` forces a sync when nothing happened.
    """

    def __init__(self, min_wait: float = 0.2, max_wait: float = 2.0,
                 resync_interval: float = 300.0) -> None:
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.resync_interval = resync_interval
        self._cond = threading.Condition()
        self._first: float | None = None  # oldest event waiting for a sync
        self._last: float | None = None  # newest event waiting for a sync
        self._previous: float | None = None  # newest event ever seen (quiet-time clock)
        self._leading = False  # the waiting events started after a quiet period
        self._stopped = False

    def fire(self, event: bool = True) -> None:
        """A sync is wanted.  ``event=False``: not a Marathon event but a request of the
        router's own (a resync on SIGHUP or reconnect, a retry, changed rules): due at
        once, and not counted on the quiet-time clock, so an event that follows it (say
        while the resync runs) is not taken for a burst and held back ``min_wait``."""
        with self._cond:
            self._record(time.monotonic(), event)
            self._cond.notify_all()

    def fire_and_claim(self) -> bool:
        """fire(); True when that made a sync due at once (an event after a quiet
        period, nothing else waiting) and the caller takes it: it runs the sync on
        its own thread now, and the loop thread is not woken for it.

        The thread that read the event then applies it without handing it to
        another one: on a loaded machine each hand-over is a wait to be
        scheduled (tens of ms measured at load 6 on 2 cores).
        """
        with self._cond:
            now = time.monotonic()
            self._record(now)
            if not self._stopped and self._leading and self._first == now:
                self._first = self._last = None
                self._leading = False
                return True
            self._cond.notify_all()
            return False

    def _record(self, now: float, event: bool = True) -> None:
        """(Holding the condition.) Note a wanted sync at ``now`` (see fire)."""
        if not event:
            if self._first is None:
                self._first = self._last = now
                self._leading = True
            return
        if self._first is None:
            self._first = now
            self._leading = (self._previous is None
                             or now - self._previous >= self.min_wait)
        self._last = self._previous = now

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def due_at(self) -> float | None:
        """Monotonic time the waiting events are due (None: none waiting)."""
        if self._first is None or self._last is None:
            return None
        if self._leading:
            return self._first
        return min(self._last + self.min_wait, self._first + self.max_wait)

    def wait(self) -> bool:
        """Block until a sync is due; False when stopped."""
        deadline = time.monotonic() + self.resync_interval
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = self.due_at()
                if due is not None:
                    if now >= due:
                        self._first = self._last = None
                        self._leading = False
                        return True
                    self._cond.wait(due - now)
                    continue
                if now >= deadline:
                    return True
                self._cond.wait(deadline - now)
            return False


def install_signal_handlers(trigger: SyncTrigger) -> None:
    """SIGTERM/SIGINT stop the loop cleanly; SIGHUP asks for a full resync."""

    def _stop(signum: int, _frame: Any) -> None:
        log.info("received signal %d, shutting down", signum)
        trigger.stop()

    def _resync(_signum: int, _frame: Any) -> None:
        log.info("received SIGHUP, full resync")
        trigger.fire()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _resync)
