"""The task path (servicerouter.engine.task_path) against a render from scratch.

Random sequences of task events (starts, kills, killings, health flips, on
several kinds of app) go through the live engine one small burst at a time;
after each sync the config HAProxy runs, and the file once its deferred write
lands, must be the very bytes a fresh router renders from the same apps.  And
the task path must actually be what applied most of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.apply.confdiff import RuntimePlan, parse_config
from servicerouter.apply.managed import ReloadResult
from servicerouter.apply.runtime_api import RuntimeStats
from servicerouter.engine.holds import HoldSettings
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.removal_guard import routed_of
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.model.app_fields import RoutedBefore
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.changes import Pending, apply_task_event

SHA512 = "$6$salt$" + "a" * 86
HTTP_CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0, "maxConsecutiveFailures": 2}]
APPS: list[dict[str, Any]] = [
    {"id": "/web", "portDefinitions": [{"port": 10001}], "healthChecks": HTTP_CHECK,
     "labels": {"HAPROXY_0_VHOST": "web.example.com"}},
    {"id": "/tcp", "portDefinitions": [{"port": 10002}, {"port": 10003}], "labels": {}},
    {"id": "/sticky", "portDefinitions": [{"port": 10004}],
     "labels": {"HAPROXY_0_VHOST": "sticky.example.com", "HAPROXY_0_STICKY": "true"}},
    {"id": "/ippt", "container": {"portMappings": [{"containerPort": 8080}]},
     "networks": [{"mode": "container"}], "labels": {}},
    {"id": "/hash", "portDefinitions": [{"port": 10005}],
     "labels": {"HAPROXY_0_BALANCE": "source"}},
    # A userlist opens these backends' sections, before their backend line: the first
    # app of all (its userlist ends the config's head) and one after another backend.
    {"id": "/auth", "portDefinitions": [{"port": 10006}],
     "labels": {"HAPROXY_0_VHOST": "auth.example.com", "HAPROXY_0_AUTH": f"r:u:{SHA512}"}},
    {"id": "/web-auth", "portDefinitions": [{"port": 10007}],
     "labels": {"HAPROXY_0_MODE": "http", "HAPROXY_0_AUTH": f"ops:bob:{SHA512}"}},
]
HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "bad host!"]


@dataclass
class Source:
    """Marathon as the events say it is (full resyncs read this)."""

    apps: dict[str, dict[str, Any]]

    def fetch_apps_body(self) -> bytes:
        return json.dumps({"apps": list(self.apps.values())}).encode()

    def fetch_app(self, app_id: str) -> dict[str, Any]:
        return self.apps[app_id]


@dataclass
class Reloader:
    calls: int = 0

    def reload(self) -> ReloadResult:
        self.calls += 1
        return ReloadResult(True, "fake")


@dataclass
class Runtime:
    plans: list[RuntimePlan] = field(default_factory=list)
    stats: RuntimeStats = field(default_factory=RuntimeStats)

    def apply(self, plan: RuntimePlan) -> None:
        self.plans.append(plan)

    def forget(self) -> None:
        pass


def _settings(tmp: Path, health_check: bool, maps: bool = True) -> RouterSettings:
    """``maps``: vhosts routed through map files (the command line's default) or ACLs.

    Removal holds are off: a held sync keeps the old config on purpose, so it would
    differ from a render from scratch (holds have their own tests in test_holds.py and
    test_removal_hold_live.py).
    """
    options = RenderOptions(bind_addr="127.0.0.1", map_dir=str(tmp / "maps") if maps else None)
    return RouterSettings(config_path=str(tmp / "haproxy.cfg"), groups=("*",), validate=False,
                          render_options=options,
                          state_dir=str(tmp / "state"), certs_dir=None,
                          health_check=health_check, removal_hold=HoldSettings(fetches=0))


def live_router(apps: dict[str, dict[str, Any]], tmp: Path, health_check: bool = False,
                maps: bool = True) -> tuple[LiveRouter, Source, Runtime, Reloader]:
    """A live engine over ``apps`` (fake reloader and Runtime API) after its first sync."""
    source = Source(apps)
    router = Router(source, load_fragments(), _settings(tmp, health_check, maps),
                    resolver=lambda host: host)
    reloader, runtime = Reloader(), Runtime()
    live = LiveRouter(router, reloader=reloader, runtime=runtime,  # type: ignore[arg-type]
                      settings=LiveSettings(resync_interval=1e9))
    live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
    full = Pending()
    full.request_full("start")
    assert live.sync(full)
    return live, source, runtime, reloader


def _from_scratch(apps: Mapping[str, Any], tmp: Path, health_check: bool,
                  serving: str | None = None, maps: bool = True) -> str:
    """A fresh router's config for ``apps``; ``serving``: the config HAProxy runs (with
    --health-check, tasks of unknown health routed there stay, as in every sync)."""
    router = Router(Source(dict(apps)), load_fragments(), _settings(tmp, health_check, maps),
                    resolver=lambda host: host)
    routed = None
    if health_check and serving is not None:
        routed = RoutedBefore(routed_of(parse_config(serving)))
    model = router.build_model(apps.values(), routed)
    options = router._prepare_certificates(router.settings.render_options, model.services,
                                           stable_paths=True)
    model = router._label_templates(model, options)
    return router.render_guarded(model.services, options).text


def _event(op: tuple[Any, ...], apps: Mapping[str, Any], serial: int) -> dict[str, Any] | None:
    kind, app_index, pick, host_index, alive = op
    app = apps[APPS[app_index]["id"]]
    tasks = app.get("tasks") or []
    if kind == "start" or not tasks:
        host = HOSTS[host_index]
        event = {"eventType": "status_update_event", "appId": app["id"],
                 "taskId": f"{app['id'][1:]}.{serial}", "taskStatus": "TASK_RUNNING",
                 "host": host, "ports": [31000 + pick, 32000 + pick]}
        if app["id"] == "/ippt":
            event["ipAddresses"] = [{"ipAddress": f"10.1.0.{pick}", "protocol": "IPv4"}]
        return event
    task = tasks[pick % len(tasks)]
    if kind == "health":
        return {"eventType": "health_status_changed_event", "appId": app["id"],
                "taskId": task["id"], "alive": alive}
    if kind == "unknown":  # Marathon 1.4+: no verdict (yet), as after a leader change
        prefix, _, suffix = task["id"].partition(".")
        return {"eventType": "instance_health_changed_event", "runSpecId": app["id"],
                "instanceId": f"{prefix}.marathon-{suffix}", "healthy": None}
    status = "TASK_KILLING" if kind == "killing" else "TASK_KILLED"
    return {"eventType": "status_update_event", "appId": app["id"], "taskId": task["id"],
            "taskStatus": status, "host": task.get("host"), "ports": task.get("ports", [])}


OPS = st.tuples(st.sampled_from(["start", "start", "kill", "health", "killing", "unknown"]),
                st.integers(0, len(APPS) - 1), st.integers(0, 20),
                st.sampled_from([0, 0, 1, 1, 2, 2, 2, 3]), st.booleans())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(health_check=st.booleans(), maps=st.booleans(), bursts=st.lists(st.lists(OPS, min_size=1, max_size=3),
                                                   min_size=1, max_size=12))
def test_incremental_syncs_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, health_check: bool, maps: bool,
        bursts: list[list[tuple[Any, ...]]]) -> None:
    tmp = tmp_path_factory.mktemp("task-path")
    apps = {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING",
                                     "ipAddresses": [{"ipAddress": "10.1.0.200"}],
                                     "healthCheckResults": [{"alive": True}]}])
            for a in APPS}
    live, source, _runtime, _reloader = live_router(apps, tmp, health_check, maps)
    router = live.router
    serial = 1
    for burst in bursts:
        for op in burst:
            event = _event(op, source.apps, serial)
            serial += 1
            assert event is not None
            app_id = event.get("appId") or event["runSpecId"]
            source.apps[app_id] = apply_task_event(source.apps[app_id], event)
            live.submit(event)
        serving = live._applied_text
        assert live.step()
        expected = _from_scratch(source.apps, tmp, health_check, serving, maps)
        assert live._applied_text == expected
    assert live._config_file.flush()
    assert Path(router.settings.config_path).read_text() == live._applied_text
    live.stop()


def test_the_task_path_applies_plain_task_churn(tmp_path: Path) -> None:
    """Starts and kills on a plain HTTP app: no full sync, no reload, the same bytes."""
    apps = {"/web": dict(APPS[0], tasks=[])}
    apps["/web"]["tasks"] = [{"id": "web.0", "appId": "/web", "host": "10.0.0.1",
                              "ports": [31000], "state": "TASK_RUNNING"}]
    live, source, runtime, reloader = live_router(apps, tmp_path)
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    for serial in range(1, 6):
        event = {"eventType": "status_update_event", "appId": "/web",
                 "taskId": f"web.{serial}", "taskStatus": "TASK_RUNNING",
                 "host": "10.0.0.2", "ports": [31000 + serial]}
        source.apps["/web"] = apply_task_event(source.apps["/web"], event)
        live.submit(event)
        kill = {"eventType": "status_update_event", "appId": "/web",
                "taskId": f"web.{serial - 1}", "taskStatus": "TASK_KILLED"}
        source.apps["/web"] = apply_task_event(source.apps["/web"], kill)
        live.submit(kill)
        assert live.step()
        assert live.state.last_apply == "runtime"
    router.build_model = built  # type: ignore[method-assign]
    assert reloader.calls == 1  # the start only
    assert len(runtime.plans) == 5
    assert all(len(p.add) == 1 and len(p.remove) == 1 for p in runtime.plans)
    assert live.state.task_path_syncs == 5
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert live._config_file.flush()
    assert Path(router.settings.config_path).read_text() == live._applied_text
    live.stop()


def test_health_changes_take_the_task_path_with_health_check(tmp_path: Path) -> None:
    """--health-check: a task turning unhealthy leaves its backend, healthy again it comes
    back, a task of unknown health keeps its place: Runtime API only, no model of the
    cluster, and the bytes of a render from scratch; another app routing the same
    address does not tie the two apps together."""
    apps = {a["id"]: dict(a) for a in (APPS[0], APPS[1])}
    apps["/web"]["tasks"] = [
        {"id": f"web.{n}", "appId": "/web", "host": "10.0.0.1", "ports": [31000 + n],
         "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}]} for n in (1, 2)]
    apps["/tcp"]["tasks"] = [{"id": "tcp.1", "appId": "/tcp", "host": "10.0.0.1",
                              "ports": [31001, 31002], "state": "TASK_RUNNING"}]
    live, source, runtime, reloader = live_router(apps, tmp_path, health_check=True)
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    steps = [
        ({"eventType": "health_status_changed_event", "appId": "/web", "taskId": "web.1",
          "alive": False}, (0, 1)),
        ({"eventType": "health_status_changed_event", "appId": "/web", "taskId": "web.1",
          "alive": True}, (1, 0)),
        # health not known (results gone, as after a leader change): it stays routed
        ({"eventType": "instance_health_changed_event", "runSpecId": "/web",
          "instanceId": "web.marathon-2", "healthy": None}, (0, 0)),
    ]
    for event, (added, removed) in steps:
        serving = live._applied_text
        source.apps["/web"] = apply_task_event(source.apps["/web"], event)
        live.submit(event)
        assert live.step()
        assert live.state.last_path == "task", live.state.last_full_reason
        assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)
        plan = runtime.plans[-1] if added or removed else RuntimePlan()
        assert (len(plan.add), len(plan.remove)) == (added, removed)
        assert [line.port for _b, line in plan.add + plan.remove] == ["31001"] * (added + removed)
    assert "10.0.0.1:31002" in live._applied_text
    router.build_model = built  # type: ignore[method-assign]
    assert reloader.calls == 1  # the start only
    assert live.state.task_path_syncs == 3


def test_a_due_periodic_resync_lets_the_events_go_first(tmp_path: Path) -> None:
    """An event that arrives when the periodic resync is due takes the task path; the
    resync (seconds on a big cluster) runs at the next step, not in the event's sync."""
    apps = {"/web": dict(APPS[0], tasks=[{"id": "web.0", "appId": "/web", "host": "10.0.0.1",
                                          "ports": [31000], "state": "TASK_RUNNING"}])}
    live, source, _runtime, _reloader = live_router(apps, tmp_path)
    live._last_full -= 1e10  # the resync is overdue
    event = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}
    source.apps["/web"] = apply_task_event(source.apps["/web"], event)
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert live.trigger.due_at() is not None  # the resync is due at once
    assert live.step()
    assert live.state.last_full_reason == "full resync: periodic resync"
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_a_quarantined_app_does_not_send_every_event_the_full_way(tmp_path: Path) -> None:
    """One app left out (its port busy, its config refused) must not make the task events
    of every other app rebuild the whole cluster: they keep the task path."""
    from servicerouter.engine.live_state import Quarantined, _fingerprint

    apps = {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING"}]) for a in APPS[:2]}
    live, source, _runtime, _reloader = live_router(apps, tmp_path)
    tcp = tuple(s for s in live._running.model.services if s.app_id == "/tcp")
    live.quarantine["/tcp"] = Quarantined("/tcp", "cannot bind", 0.0, _fingerprint(tcp))
    full = Pending()
    full.request_full("quarantine")
    assert live.sync(full)
    assert "tcp_10002" not in live._applied_text
    event = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}
    source.apps["/web"] = apply_task_event(source.apps["/web"], event)
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert "10.0.0.2:31001" in live._applied_text and "tcp_10002" not in live._applied_text
    # an event of the quarantined app: the full path (and its quarantine rules) decide
    event = dict(event, appId="/tcp", taskId="tcp.1")
    source.apps["/tcp"] = apply_task_event(source.apps["/tcp"], event)
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "full"
