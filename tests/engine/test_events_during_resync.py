"""Events that arrive while a full resync runs (seconds on a big cluster).

They are queued in the next Pending (servicerouter.engine.intake) and the trigger
makes the next sync due at once; that sync must take the task path (or the app
path) from the config the resync just applied, not a second full one, and lose
nothing: the result is the bytes of a render from scratch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from servicerouter.source.changes import Pending, apply_task_event
from tests.engine.test_task_path import APPS, _from_scratch, live_router


def _cluster() -> dict[str, dict[str, Any]]:
    return {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING",
                                     "ipAddresses": [{"ipAddress": "10.1.0.200"}]}])
            for a in APPS}


def test_events_queued_during_a_full_resync_take_the_task_path_after_it(tmp_path: Path) -> None:
    live, source, runtime, reloader = live_router(_cluster(), tmp_path)
    fetch = source.fetch_apps_body
    arrived = []

    def fetch_while_events_arrive() -> bytes:
        body = fetch()  # the resync's answer: the events below come after it
        start = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
                 "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}
        kill = {"eventType": "status_update_event", "appId": "/tcp", "taskId": "tcp.0",
                "taskStatus": "TASK_KILLED"}
        more = {"eventType": "status_update_event", "appId": "/tcp", "taskId": "tcp.1",
                "taskStatus": "TASK_RUNNING", "host": "10.0.0.3", "ports": [31005, 32005]}
        for event in (start, more, kill):
            source.apps[event["appId"]] = apply_task_event(source.apps[event["appId"]], event)
            live.submit(event)
        relabelled = copy.deepcopy(source.apps["/sticky"])
        relabelled["labels"]["HAPROXY_0_VHOST"] = "sticky2.example.com"
        source.apps["/sticky"] = relabelled
        live.submit({"eventType": "api_post_event", "appDefinition": {"id": "/sticky"}})
        arrived.append(True)
        return body

    source.fetch_apps_body = fetch_while_events_arrive  # type: ignore[method-assign]
    resync = Pending()
    resync.request_full("periodic resync")
    assert live.sync(resync)
    source.fetch_apps_body = fetch  # type: ignore[method-assign]
    assert arrived and live.state.last_path == "full"
    assert "10.0.0.2:31001" not in live._applied_text  # not in the resync's answer
    assert live.trigger.due_at() is not None  # due at once, not after a quiet period
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    plans = len(runtime.plans)
    assert live.step()
    router.build_model = built  # type: ignore[method-assign]
    assert live.state.last_path == "task", live.state.last_full_reason
    assert len(runtime.plans) == plans + 1
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert "10.0.0.2:31001" in live._applied_text and "sticky2.example.com" in live._applied_text
    assert reloader.calls == 1  # the start only
