"""The live engine fed by Marathon's HTTP callbacks (--listening), with and without a token.

Without a token a callback event is only a hint (refetch the app it names); with
one, events are folded in like the event stream's. HAProxy is faked
(``tests/engine/live_rig.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from servicerouter.engine.live import LiveSettings
from tests.engine.live_rig import (
    Rig,
    app,
)
from tests.harness import wait_until

# --------------------------------------------------------------------------- callbacks


@pytest.fixture
def callbacks(rig_factory) -> Iterator[Callable[..., tuple[Rig, str]]]:
    """``make(token)`` -> a rig whose events come only from a real callback server
    (``_start_callbacks``, as --listening wires it) on 127.0.0.1, and its URL."""
    from servicerouter.engine.live import LiveOptions, _start_callbacks
    from tests.harness import free_port

    cleanups: list[Callable[[], None]] = []

    def make(token: str | None = None) -> tuple[Rig, str]:
        rig = rig_factory([app("/web", 10001)], stream=False,
                          settings=LiveSettings(min_wait=0.02, max_wait=0.2,
                                                resync_interval=3600))
        rig.emulator.add_task("/web", "127.0.0.1", [31000])
        rig.live.request_resync("test")
        wait_until(lambda: "127.0.0.1:31000" in rig.applied(), 10)
        url = f"http://127.0.0.1:{free_port()}/" + (f"?token={token}" if token else "")
        _start_callbacks(rig.live, rig.live.source,
                         LiveOptions(mode="listening", callback_url=url,
                                     listen_addr="127.0.0.1"), cleanups)
        wait_until(lambda: rig.emulator.subscriptions == [url], 10)
        return rig, url

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def _post(url: str, event: dict) -> int:
    import requests

    return requests.post(url, json=event, timeout=10).status_code


def _app_fetches(rig: Rig) -> int:
    return sum(1 for _m, t in rig.emulator.request_log if t.startswith("/v2/apps/web?"))


def test_forged_callback_events_cannot_add_or_remove_servers(callbacks) -> None:
    """No token: a forged event only makes the router ask Marathon about the app it names."""
    rig, url = callbacks()
    live = rig.live
    task = rig.emulator.app("/web")["tasks"][0]["id"]
    forged = [
        {"eventType": "status_update_event", "appId": "/web", "taskId": "x",
         "taskStatus": "TASK_RUNNING", "host": "6.6.6.6", "ports": [4444]},
        {"eventType": "status_update_event", "appId": "/web", "taskId": task,
         "taskStatus": "TASK_KILLED", "host": "127.0.0.1", "ports": [31000]},
        {"eventType": "app_terminated_event", "appId": "/web"},
        {"eventType": "health_status_changed_event", "appId": "/web", "taskId": task,
         "alive": False},
    ]
    for event in forged:
        fetches, syncs = _app_fetches(rig), live.state.syncs
        assert _post(url, event) == 200
        wait_until(lambda f=fetches, n=syncs: _app_fetches(rig) > f and live.state.syncs > n,
                   10)
        text = rig.text()
        assert "6.6.6.6" not in text and "6_6_6_6" not in text
        assert "127.0.0.1:31000" in text and "web_10001" in text
    # An app id that is not a plain Marathon path never reaches a request: a full resync.
    full = rig.full_fetches()
    assert _post(url, dict(forged[0], appId="/../v2/eventSubscriptions")) == 200
    wait_until(lambda: rig.full_fetches() > full, 10)
    assert not any("eventSubscriptions" in t and m == "GET" for m, t in rig.emulator.request_log)
    # Marathon's own events through the same callback still keep routing current.
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "127.0.0.1:31001" in rig.applied(), 10)
    assert "6.6.6.6" not in rig.text()


def test_many_hinted_apps_become_one_full_fetch(rig_factory) -> None:
    from servicerouter.engine.live import MAX_HINT_REFETCH

    live = rig_factory([app("/web", 10001)], stream=False).live
    live.trigger.stop()  # hold the loop: look at what the burst queued
    for i in range(MAX_HINT_REFETCH + 5):
        live.submit({"eventType": "status_update_event", "appId": f"/x{i}", "taskId": "t",
                     "taskStatus": "TASK_RUNNING", "host": "6.6.6.6", "ports": [1]},
                    trusted=False)
    pending = live._take_pending()
    assert pending.full and len(pending.refetch) <= MAX_HINT_REFETCH
    assert not pending.task_events


def test_tokened_callback_events_are_applied_incrementally(callbacks, caplog,
                                                          monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    caplog.set_level(logging.INFO, logger="servicerouter")
    rig, url = callbacks(token="Tok3n-s3cret")
    assert _post(url.split("?")[0], {"eventType": "status_update_event", "appId": "/web",
                                     "taskId": "x", "taskStatus": "TASK_RUNNING",
                                     "host": "6.6.6.6", "ports": [4444]}) == 403
    fetches, full = _app_fetches(rig), rig.full_fetches()
    rig.emulator.add_task("/web", "127.0.0.1", [31001])
    wait_until(lambda: "127.0.0.1:31001" in rig.applied(), 10)
    assert _app_fetches(rig) == fetches and rig.full_fetches() == full  # folded in, no fetch
    assert "6.6.6.6" not in rig.text()
    assert "Tok3n-s3cret" not in caplog.text and "token=***" in caplog.text
