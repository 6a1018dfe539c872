"""SyncTrigger: an isolated event is due at once, bursts are coalesced."""

from __future__ import annotations

import threading
import time

from servicerouter.engine.runner import SyncTrigger


def _timed_wait(trigger: SyncTrigger) -> float:
    start = time.monotonic()
    assert trigger.wait()
    return time.monotonic() - start


def test_an_event_after_a_quiet_period_is_due_at_once() -> None:
    """The default --min-wait is a quiet time for bursts, not a delay for a lone event."""
    trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)
    trigger.fire()
    assert _timed_wait(trigger) < 1.0
    time.sleep(0.05)
    trigger._previous = time.monotonic() - 6.0  # pretend 6 s of quiet passed
    trigger.fire()
    assert _timed_wait(trigger) < 1.0


def test_events_in_a_burst_wait_for_quiet_time() -> None:
    trigger = SyncTrigger(min_wait=0.3, max_wait=5.0)
    trigger.fire()
    assert _timed_wait(trigger) < 0.2  # the first one leads
    trigger.fire()  # right after it: a burst
    assert _timed_wait(trigger) >= 0.25


def test_a_burst_is_bounded_by_max_wait() -> None:
    trigger = SyncTrigger(min_wait=0.2, max_wait=0.5)
    trigger.fire()
    trigger.wait()
    stop = threading.Event()

    def keep_firing() -> None:
        while not stop.is_set():
            trigger.fire()
            time.sleep(0.05)

    thread = threading.Thread(target=keep_firing)
    thread.start()
    try:
        waited = _timed_wait(trigger)
    finally:
        stop.set()
        thread.join()
    assert 0.3 <= waited < 2.0
