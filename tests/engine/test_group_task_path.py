"""Task events of blue/green group apps on the task path (servicerouter.engine.group_path).

Apps sharing ``HAPROXY_DEPLOYMENT_GROUP`` are one backend: a task event of one
colour re-derives the group from all its members (old tasks drain as new ones
turn healthy, a canary's weights), applied through the Runtime API; the config
must stay the bytes of a render from scratch, on random event sequences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.source.changes import apply_task_event
from tests.engine.test_task_path import _from_scratch, live_router

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0, "maxConsecutiveFailures": 2}]


def colour(name: str, started: str, *, new_instances: int = 0, weight: str | None = None,
           ports: int = 1) -> dict[str, Any]:
    """A colour of group ``shop`` as zdd posts it (no tasks yet)."""
    labels = {"HAPROXY_DEPLOYMENT_GROUP": "shop", "HAPROXY_DEPLOYMENT_ALT_PORT": "10011",
              "HAPROXY_0_PORT": "10010", "HAPROXY_0_VHOST": "shop.example.com",
              "HAPROXY_DEPLOYMENT_STARTED_AT": started,
              "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3",
              "HAPROXY_DEPLOYMENT_NEW_INSTANCES": str(new_instances)}
    if weight is not None:
        labels["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = weight
    return {"id": f"/shop-{name}", "instances": 3, "healthChecks": CHECK, "labels": labels,
            "portDefinitions": [{"port": 10010 + n + (0 if name == "blue" else 20)}
                                for n in range(ports)],
            "versionInfo": {"lastScalingAt": started + "Z"}}


def task(app: dict[str, Any], serial: int, host: str = "10.0.0.1",
         alive: bool | None = True) -> dict[str, Any]:
    found: dict[str, Any] = {"id": f"{app['id'][1:]}.{serial}", "appId": app["id"],
                             "host": host, "ports": [31000 + serial, 32000 + serial],
                             "state": "TASK_RUNNING"}
    if alive is not None:
        found["healthCheckResults"] = [{"alive": alive}]
    return found


def cluster(canary: bool) -> dict[str, dict[str, Any]]:
    blue = colour("blue", "2026-01-01T10:00:00")
    green = colour("green", "2026-01-01T11:00:00", new_instances=1 if canary else 0,
                   weight="10" if canary else None)
    blue["tasks"] = [task(blue, n) for n in (1, 2, 3)]
    green["tasks"] = [task(green, 4, alive=None)]
    plain = {"id": "/plain", "portDefinitions": [{"port": 10002}], "labels": {},
             "tasks": [{"id": "plain.1", "appId": "/plain", "host": "10.0.0.2",
                        "ports": [31500], "state": "TASK_RUNNING"}]}
    return {a["id"]: a for a in (plain, blue, green)}


def _event(op: tuple[str, int, int, bool], apps: dict[str, Any], serial: int) -> dict[str, Any]:
    kind, which, pick, alive = op
    app = apps[("/shop-blue", "/shop-green", "/plain")[which]]
    tasks = app.get("tasks") or []
    if kind == "start" or len(tasks) <= 1:  # keep a task per colour: the same ports stay
        return {"eventType": "status_update_event", "appId": app["id"],
                "taskId": f"{app['id'][1:]}.{serial}", "taskStatus": "TASK_RUNNING",
                "host": "10.0.0.3", "ports": [31000 + serial, 32000 + serial]}
    chosen = tasks[pick % len(tasks)]
    if kind == "health":
        return {"eventType": "health_status_changed_event", "appId": app["id"],
                "taskId": chosen["id"], "alive": alive}
    status = "TASK_KILLING" if kind == "killing" else "TASK_KILLED"
    return {"eventType": "status_update_event", "appId": app["id"], "taskId": chosen["id"],
            "taskStatus": status, "host": chosen["host"], "ports": chosen["ports"]}


OPS = st.tuples(st.sampled_from(["start", "kill", "health", "health", "killing"]),
                st.sampled_from([0, 1, 1, 2]), st.integers(0, 9), st.booleans())


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(health_check=st.booleans(), canary=st.booleans(),
       bursts=st.lists(st.lists(OPS, min_size=1, max_size=3), min_size=1, max_size=10))
def test_group_task_events_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, health_check: bool, canary: bool,
        bursts: list[list[tuple[str, int, int, bool]]]) -> None:
    tmp = tmp_path_factory.mktemp("group-path")
    live, source, _runtime, reloader = live_router(cluster(canary), tmp, health_check)
    serial = 10
    task_syncs = 0
    for burst in bursts:
        for op in burst:
            event = _event(op, source.apps, serial)
            serial += 1
            source.apps[event["appId"]] = apply_task_event(source.apps[event["appId"]], event)
            live.submit(event)
        serving = live._applied_text
        assert live.step()
        task_syncs += live.state.last_path == "task"
        assert live._applied_text == _from_scratch(source.apps, tmp, health_check, serving)
    if not health_check:  # with it, a colour's port can lose its last routed task
        # every event keeps a task on each colour's port: all of them are servers only
        assert task_syncs == len(bursts), live.state.last_full_reason
        assert reloader.calls == 1  # the start only
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    live.stop()


def test_a_green_task_turning_healthy_drains_a_blue_one_through_the_runtime_api(
        tmp_path: Path) -> None:
    """The event names green; the server it reweights is blue's: the group is re-derived
    from both colours, no model of the cluster, no reload."""
    live, source, runtime, reloader = live_router(cluster(False), tmp_path, True)
    assert "shop_10010" in live._applied_text and "shop-green" not in live._applied_text
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    event = {"eventType": "health_status_changed_event", "appId": "/shop-green",
             "taskId": "shop-green.4", "alive": True}
    source.apps["/shop-green"] = apply_task_event(source.apps["/shop-green"], event)
    serving = live._applied_text
    live.submit(event)
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert live.state.last_apply == "runtime"
    plan = runtime.plans[-1]
    # blue's first task drains (weight 0), green's (of unknown health until now) comes in
    assert [(line.port, _weight(line.args)) for _b, line in plan.reweight] == [("31001", "0")]
    assert [(backend, line.port) for backend, line in plan.add] == [("shop_10010", "31004")]
    router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)
    assert reloader.calls == 1


def _weight(args: tuple[str, ...]) -> str | None:
    return args[args.index("weight") + 1] if "weight" in args else None
