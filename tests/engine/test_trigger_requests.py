"""SyncTrigger: the router's own requests (resyncs, retries, rules) are not events.

A full resync asked for by SIGHUP, a reconnect or the periodic timer runs at once,
and an event that arrives while it runs is not taken for the second event of a
burst: it is due as soon as the resync ends (measured by
``benchmarks/event_latency_paths.py --kinds resync``: an event 50 ms into a
resync waited the whole ``--min-wait`` of 200 ms after it before this).
"""

from __future__ import annotations

import time
from pathlib import Path

from servicerouter.engine.runner import SyncTrigger
from servicerouter.source.changes import apply_task_event
from tests.engine.test_task_path import APPS, live_router


def _timed_wait(trigger: SyncTrigger) -> float:
    start = time.monotonic()
    assert trigger.wait()
    return time.monotonic() - start


def test_an_event_right_after_a_resync_request_is_due_at_once() -> None:
    trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)
    trigger.fire(event=False)  # a resync request: at once
    assert _timed_wait(trigger) < 1.0
    trigger.fire()  # an event while (or right after) the resync runs
    assert _timed_wait(trigger) < 1.0


def test_events_still_coalesce_after_a_resync_request() -> None:
    trigger = SyncTrigger(min_wait=0.3, max_wait=5.0)
    trigger.fire(event=False)
    assert _timed_wait(trigger) < 0.2
    trigger.fire()
    assert _timed_wait(trigger) < 0.2  # the first event leads
    trigger.fire()  # right after it: a burst
    assert _timed_wait(trigger) >= 0.25


def test_a_request_does_not_end_a_burst_early() -> None:
    trigger = SyncTrigger(min_wait=0.3, max_wait=5.0)
    trigger.fire()
    assert _timed_wait(trigger) < 0.2
    trigger.fire()  # a burst is waiting for quiet time
    trigger.fire(event=False)  # joins it: the burst's own timing stands
    assert _timed_wait(trigger) >= 0.25


def test_a_task_event_during_a_sighup_resync_is_not_held_back(tmp_path: Path) -> None:
    """The live engine: SIGHUP's resync, then an event submitted while it runs is due the
    moment the resync ends, and takes the task path."""
    apps = {"/web": dict(APPS[0], tasks=[{"id": "web.0", "appId": "/web", "host": "10.0.0.1",
                                          "ports": [31000], "state": "TASK_RUNNING"}])}
    live, source, _runtime, _reloader = live_router(apps, tmp_path)
    live.trigger.min_wait = 5.0
    fetch = source.fetch_apps_body
    event = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}

    def fetch_then_event() -> bytes:
        body = fetch()
        source.apps["/web"] = apply_task_event(source.apps["/web"], event)
        live.submit(event)
        return body

    live.resync_from_signal()
    assert _timed_wait(live.trigger) < 1.0
    source.fetch_apps_body = fetch_then_event  # type: ignore[method-assign]
    assert live.step()
    source.fetch_apps_body = fetch  # type: ignore[method-assign]
    assert live.state.last_full_reason == "full resync: SIGHUP"
    assert _timed_wait(live.trigger) < 1.0  # not min_wait (5 s) after the SIGHUP
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert "10.0.0.2:31001" in live._applied_text
