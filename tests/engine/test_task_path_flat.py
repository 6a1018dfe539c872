"""What keeps a task event's cost flat: nothing on its path reads the whole cluster.

The running config's text stays in pieces (joined only by the deferred write),
the mirror of Marathon's apps is folded in place, and the routed servers are a
count kept up to date; each still gives what a whole-cluster computation gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servicerouter.engine.running_config import ConfigText
from servicerouter.engine.task_path import routed_servers
from servicerouter.source.changes import Pending, apply_task_event
from tests.engine.test_task_path import APPS, _from_scratch, live_router


def _apps() -> dict[str, dict[str, Any]]:
    return {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING"}]) for a in APPS}


def _start(app_id: str, serial: int) -> dict[str, Any]:
    return {"eventType": "status_update_event", "appId": app_id,
            "taskId": f"{app_id[1:]}.{serial}", "taskStatus": "TASK_RUNNING",
            "host": "10.0.0.2", "ports": [31000 + serial, 32000 + serial]}


def test_task_events_edit_pieces_and_the_text_is_joined_only_for_the_file(
        tmp_path: Path) -> None:
    """Every backend, those a userlist opens too, is edited in its piece; the text is
    not joined on the event path; the file gets the bytes of a render from scratch."""
    live, source, _runtime, reloader = live_router(_apps(), tmp_path)
    live._config_file.quiet = live._config_file.longest = 600.0  # the write waits for flush
    assert live._running is not None
    assert live._running.config._pieces is not None, "split by the full sync, not an event"
    assert live._running.config.pieces > len(APPS)
    for serial, app_id in enumerate(["/auth", "/web", "/web-auth", "/tcp", "/auth"], 1):
        event = _start(app_id, serial)
        source.apps[app_id] = apply_task_event(source.apps[app_id], event)
        live.submit(event)
        assert live.step()
        assert live.state.last_path == "task", live.state.last_full_reason
        config = live._running.config
        assert isinstance(config, ConfigText)
        assert config._text is None, f"{app_id}: the whole text was joined on the event path"
        assert config._pieces is not None, f"{app_id}: swapped in the whole text"
    assert reloader.calls == 1
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    live.stop()


def test_the_mirror_is_folded_in_place_and_the_old_apps_still_read_as_before(
        tmp_path: Path) -> None:
    live, source, _runtime, _reloader = live_router(_apps(), tmp_path)
    mirror = live._apps
    assert mirror is not None
    web_before = mirror["/web"]
    event = _start("/web", 1)
    source.apps["/web"] = apply_task_event(source.apps["/web"], event)
    live.submit(event)
    pending = live._take_pending()
    apps = live._fetch(pending, full=False)
    assert apps is mirror, "task events only: no copy of every app"
    assert len(mirror["/web"]["tasks"]) == 2
    before = live._apps_before(apps)
    assert before is not None
    assert before["/web"] is web_before and before["/tcp"] is mirror["/tcp"]
    assert "/web" in before and before.get("/nope") is None
    # a resync fetching everything off the step lock meanwhile leaves the fold's view alone
    resync = Pending()
    resync.request_full("periodic resync")
    assert live._fetch(resync, full=True) is not mirror
    again = live._apps_before(apps)
    assert again is not None and again["/web"] is web_before
    # an update to refetch builds a new mapping (a failed fetch leaves the mirror as it was)
    live.submit({"eventType": "api_post_event", "appDefinition": {"id": "/tcp"}})
    refetched = live._fetch(live._take_pending(), full=False)
    assert refetched is not mirror and live._apps_before(refetched) is mirror
    live.stop()


def test_the_routed_servers_are_a_count_kept_up_to_date(tmp_path: Path) -> None:
    live, source, _runtime, _reloader = live_router(_apps(), tmp_path)
    assert live._running is not None
    assert live._running.cache["servers"] == sum(
        len(s.servers) for s in live._running.model.services)
    events = [_start("/web", 1), _start("/tcp", 2),
              {"eventType": "status_update_event", "appId": "/web", "taskId": "web.0",
               "taskStatus": "TASK_KILLED"}]
    for event in events:
        source.apps[event["appId"]] = apply_task_event(source.apps[event["appId"]], event)
        live.submit(event)
        assert live.step()
        assert live.state.last_path == "task", live.state.last_full_reason
        running = live._running
        counted = sum(len(s.servers) for s in running.model.services)
        assert running.cache["servers"] == counted == routed_servers(running)
    live.stop()


def test_an_app_updates_text_is_split_once_haproxy_has_it(tmp_path: Path) -> None:
    """The app path splices a whole text; the sync splits it after the Runtime API has
    the change, so the next task event does not pay for that on its own path."""
    from tests.engine.test_app_path import _app, _update

    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, _runtime, _reloader = live_router(apps, tmp_path)
    assert live._running is not None
    before = live._running.config._pieces
    assert before is not None
    _update(live, source, _app(1, ("e.test",)))
    assert live.state.last_path == "task", live.state.last_full_reason
    pieces = live._running.config._pieces
    assert pieces is not None and len(pieces) == len(before)
    # the pieces whose bytes did not change are the same objects (index_after)
    assert sum(a is b for a, b in zip(pieces, before, strict=True)) >= len(before) - 2
    event = _start("/app2", 7)
    source.apps["/app2"] = apply_task_event(source.apps["/app2"], event)
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert live._running.config._text is None, "the backend was edited in its piece"
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    live.stop()
