"""The app path (servicerouter.engine.app_path) against a render from scratch.

Random label changes of existing apps (virtual hosts, paths, backend weights,
wildcards, hosts another app claims) go through the live engine one update at a
time; after each sync the config HAProxy runs must be the very bytes a fresh
router renders from the same apps, and the updates that only move exact-host
map entries must have taken the cheap path (map commands, no model of the
cluster, no reload).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.apply.confdiff import RuntimePlan
from servicerouter.engine.live import LiveRouter
from servicerouter.source.changes import apply_task_event
from tests.engine.test_task_path import Source, _from_scratch, live_router

# {n}: the app's own index (mostly its own hosts); shared.test: a claim across apps
HOSTS = ["a{n}.test", "b{n}.test", "c{n}.test", "e{n}.test", "*.w{n}.test", "d{n}.test:8080",
         "shared.test"]
PATHS = [None, None, "/api", "/api /v2", "-i /x"]


def _app(index: int, hosts: tuple[str, ...] = ("a.test",), path: str | None = None,
         weight: int = 0) -> dict[str, Any]:
    labels = {"HAPROXY_0_MODE": "http"}
    if hosts:
        labels["HAPROXY_0_VHOST"] = ",".join(hosts)
    if path:
        labels["HAPROXY_0_PATH"] = path
    if weight:
        labels["HAPROXY_0_BACKEND_WEIGHT"] = str(weight)
    app_id = f"/app{index}"
    return {"id": app_id, "portDefinitions": [{"port": 10001 + index}], "labels": labels,
            "version": f"2020-01-0{index + 1}T00:00:00.000Z",
            "tasks": [{"id": f"app{index}.1", "appId": app_id, "host": "10.0.0.1",
                       "ports": [31000 + index], "state": "TASK_RUNNING"}]}


def _update(live: LiveRouter, source: Source, app: dict[str, Any]) -> None:
    source.apps[app["id"]] = dict(app, tasks=source.apps[app["id"]]["tasks"])
    live.submit({"eventType": "api_post_event", "appDefinition": {"id": app["id"]}})
    assert live.step()


def test_a_vhost_change_moves_map_entries_only(tmp_path: Path) -> None:
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, runtime, reloader = live_router(apps, tmp_path)
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    _update(live, source, _app(1, ("b.test", "e.test"), "/api /v2", weight=3))
    assert live.state.last_path == "task", live.state.last_full_reason
    plan = runtime.plans[-1]
    # each in the http and the https frontend's map
    assert sorted(key for _path, key, _value in plan.map_add) == sorted(
        ["b.test//api", "b.test//v2", "e.test//api", "e.test//v2"] * 2)
    assert [key for _path, key, _value in plan.map_del] == ["b.test/"] * 2
    assert not plan.add and not plan.remove
    router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert reloader.calls == 1  # the start only
    # a label template (ignored without --allow-label-templates): the full path says so
    _update(live, source, dict(_app(1, ("e.test",)), labels={
        "HAPROXY_0_MODE": "http", "HAPROXY_0_VHOST": "e.test",
        "HAPROXY_0_BACKEND_HEAD": "backend {backend}\n"}))
    assert live.state.last_full_reason == "app /app1 has label templates"
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    # a vhost another app has: ownership across apps, the full path decides
    _update(live, source, _app(2, ("c.test", "a.test")))
    assert live.state.last_path == "full"
    assert "another app" in (live.state.last_full_reason or "")
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.integers(0, 2),
                                  st.lists(st.sampled_from(HOSTS), max_size=3, unique=True),
                                  st.sampled_from(PATHS), st.sampled_from([0, 0, 2, 5])),
                        min_size=1, max_size=8))
def test_app_updates_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, changes: list[tuple[int, list[str], str | None, int]]) -> None:
    tmp = tmp_path_factory.mktemp("app-path")
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, _runtime, _reloader = live_router(apps, tmp)
    for index, hosts, path, weight in changes:
        _update(live, source, _app(index, tuple(h.format(n=index) for h in hosts), path,
                                   weight))
        assert live._applied_text == _from_scratch(source.apps, tmp, False)
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    live.stop()


def test_an_unchanged_refetch_keeps_the_task_path_open(tmp_path: Path) -> None:
    """A deployment's later events fetch the app again, unchanged: its tasks' next event
    still takes the task path (the running model holds the copy the mirror has)."""
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(2)}
    live, source, _runtime, _reloader = live_router(apps, tmp_path)
    _update(live, source, _app(1, ("e.test",)))
    _update(live, source, _app(1, ("e.test",)))  # deployment_success: the same definition
    assert live.state.last_path == "task", live.state.last_full_reason
    event = {"eventType": "status_update_event", "appId": "/app1", "taskId": "app1.2",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31009]}
    source.apps["/app1"] = apply_task_event(source.apps["/app1"], event)
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_a_new_backend_weight_moves_the_apps_entries_first(tmp_path: Path) -> None:
    """Same hosts, a higher HAPROXY_0_BACKEND_WEIGHT: no map command, but the entries
    move before the others' in the text, as a full render orders them."""
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, runtime, _reloader = live_router(apps, tmp_path)
    _update(live, source, _app(2, ("c2.test", "e2.test", "a2.test")))
    plans = len(runtime.plans)
    _update(live, source, _app(2, ("c2.test", "e2.test", "a2.test"), weight=2))
    assert live.state.last_path == "task", live.state.last_full_reason
    assert len(runtime.plans) == plans  # nothing to tell HAProxy: tree lookups
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_an_app_without_tasks_is_updated_without_the_full_path(tmp_path: Path) -> None:
    """An app that routes nothing (scaled to 0) relabelled: nothing moves, no model of the
    cluster is built; once its update routes something (a task), the full path adds it."""
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(2)}
    apps["/app1"]["tasks"] = []
    live, source, runtime, reloader = live_router(apps, tmp_path)
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    sent = len(runtime.plans)
    _update(live, source, _app(1, ("e.test",), "/api"))
    assert live.state.last_path == "task", live.state.last_full_reason
    assert all(p == RuntimePlan() for p in runtime.plans[sent:])  # nothing to send
    router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert "e.test" not in live._applied_text
    source.apps["/app1"] = dict(_app(1, ("e.test",), "/api"))  # a task runs: a new backend
    live.submit({"eventType": "api_post_event", "appDefinition": {"id": "/app1"}})
    assert live.step()
    assert live.state.last_path == "full"
    assert "routes something" in (live.state.last_full_reason or "")
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert "e.test" in live._applied_text
    assert reloader.calls == 2  # the start, the new backend
