"""App updates of blue/green group members on the app path (servicerouter.engine.app_path).

Apps sharing ``HAPROXY_DEPLOYMENT_GROUP`` are one backend under the old colour's
routes.  An update of one member (a new canary share, a scale that changes how
many old tasks drain, the old colour's virtual hosts) re-decides the group from
all its members' documents and moves servers, weights and map entries through
the Runtime API; anything else (a colour swap, a member leaving the group) goes
the full way.  After every sync the config must be the bytes of a render from
scratch, on random sequences of updates and task events.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servicerouter.engine.live import LiveRouter
from servicerouter.source.changes import apply_task_event
from tests.engine.test_group_task_path import OPS as TASK_OPS
from tests.engine.test_group_task_path import _event, _weight, cluster
from tests.engine.test_task_path import Source, _from_scratch, live_router


def _update(live: LiveRouter, source: Source, app_id: str, **changes: Any) -> None:
    """Marathon's app ``app_id`` with ``changes`` (``labels`` merged; a None label is
    taken out), then its api_post_event, then one sync."""
    app = copy.deepcopy(source.apps[app_id])
    labels = {**app["labels"], **changes.pop("labels", {})}
    app["labels"] = {k: v for k, v in labels.items() if v is not None}
    app.update(changes)
    source.apps[app_id] = app
    live.submit({"eventType": "api_post_event", "appDefinition": {"id": app_id}})
    assert live.step()


def _no_full_model(live: LiveRouter) -> Any:
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment]  # the full path must not be needed
    return built


def test_a_canary_share_change_reweights_the_group_backend(tmp_path: Path) -> None:
    apps = cluster(canary=True)
    apps["/shop-green"]["tasks"] = [dict(t, healthCheckResults=[{"alive": True}])
                                    for t in apps["/shop-green"]["tasks"]]
    apps["/shop-green"]["instances"] = 1  # no larger than its canary: the share holds
    live, source, runtime, reloader = live_router(apps, tmp_path, True)
    built = _no_full_model(live)
    serving = live._applied_text
    _update(live, source, "/shop-green", labels={"HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT": "50"})
    assert live.state.last_path == "task", live.state.last_full_reason
    plan = runtime.plans[-1]
    # one blue task drained, 2 blue and 1 green serving: 10% was 9 per blue server and
    # 2 for green's, 50% is 1 per blue server (green keeps 2)
    assert "31002 check inter 60s fastinter 1s fall 3 weight 1\n" in live._applied_text
    assert sorted((line.port, _weight(line.args)) for _b, line in plan.reweight) == [
        ("31002", "1"), ("31003", "1")]
    assert not plan.add and not plan.remove and not plan.map_add
    live.router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)
    assert reloader.calls == 1  # the start only


def test_a_scale_and_a_relabel_of_the_old_colour_take_the_app_path(tmp_path: Path) -> None:
    apps = cluster(canary=False)
    apps["/shop-green"]["tasks"] = [dict(t, healthCheckResults=[{"alive": True}])
                                    for t in apps["/shop-green"]["tasks"]]
    live, source, runtime, reloader = live_router(apps, tmp_path, True)
    # green healthy, target 3, blue 3 instances: one blue task drains (weight 0)
    built = _no_full_model(live)
    serving = live._applied_text
    _update(live, source, "/shop-blue", instances=2)  # zdd scaling the old colour down
    assert live.state.last_path == "task", live.state.last_full_reason
    # 1 healthy green + 2 blue instances - target 3: nothing drains any more (the
    # drained server's line loses its "weight 0": HAProxy's default weight again)
    assert "10.0.0.1:31001 check inter 60s fastinter 1s fall 3 weight 0\n" in serving
    assert [(line.port, _weight(line.args)) for _b, line in runtime.plans[-1].reweight] \
        == [("31001", None)]
    live.router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)
    _no_full_model(live)
    _update(live, source, "/shop-blue", labels={"HAPROXY_0_VHOST": "shop.example.com,b.test"})
    assert live.state.last_path == "task", live.state.last_full_reason
    assert sorted(key for _p, key, _v in runtime.plans[-1].map_add) == ["b.test/"] * 2
    # the new colour's routes are not the group's: its vhost changes nothing HAProxy runs
    plans = len(runtime.plans)
    _update(live, source, "/shop-green", labels={"HAPROXY_0_VHOST": "elsewhere.test"})
    assert live.state.last_path == "task", live.state.last_full_reason
    assert len(runtime.plans) == plans
    live.router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)
    assert reloader.calls == 1


def test_what_the_app_path_cannot_show_goes_the_full_way(tmp_path: Path) -> None:
    live, source, _runtime, _reloader = live_router(cluster(canary=False), tmp_path)
    # green started first now: it is the old colour, its service port is the group's
    _update(live, source, "/shop-green",
            labels={"HAPROXY_DEPLOYMENT_STARTED_AT": "2026-01-01T09:00:00"})
    assert live.state.last_path == "full"
    assert "ports, bind ports or modes" in (live.state.last_full_reason or "")
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    _update(live, source, "/shop-green", labels={"HAPROXY_DEPLOYMENT_GROUP": None})
    assert live.state.last_full_reason == "app /shop-green: its deployment group changed"
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_task_events_of_a_group_updated_in_the_same_sync_are_not_lost(tmp_path: Path) -> None:
    """A green task event and a blue update in one burst: the group is re-decided from
    both new documents (the task path leaves it to the app path)."""
    live, source, runtime, _reloader = live_router(cluster(canary=False), tmp_path, True)
    serving = live._applied_text
    event = {"eventType": "health_status_changed_event", "appId": "/shop-green",
             "taskId": "shop-green.4", "alive": True}
    source.apps["/shop-green"] = apply_task_event(source.apps["/shop-green"], event)
    live.submit(event)
    _update(live, source, "/shop-blue", labels={"HAPROXY_0_VHOST": "shop.example.com,b.test"})
    assert live.state.last_path == "task", live.state.last_full_reason
    plan = runtime.plans[-1]
    assert [(backend, line.port) for backend, line in plan.add] == [("shop_10010", "31004")]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, True, serving)


# Updates that move only the group's servers, weights or exact-host map entries ...
EXPRESSIBLE = [
    ("/shop-blue", {"instances": 2}), ("/shop-blue", {"instances": 3}),
    ("/shop-green", {"instances": 1}), ("/shop-green", {"instances": 3}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT": "25"}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT": "10,50"}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT": None}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "2"}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0"}}),
    ("/shop-blue", {"labels": {"HAPROXY_0_VHOST": "shop.example.com,b.test"}}),
    ("/shop-blue", {"labels": {"HAPROXY_0_BACKEND_WEIGHT": "3"}}),
]
# ... and ones the full path must decide (a colour swap, a member leaving, a vhost
# another app claims, a mode change).
STRUCTURAL = [
    ("/shop-blue", {"labels": {"HAPROXY_0_VHOST": "plain.test"}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_STARTED_AT": "2026-01-01T09:00:00"}}),
    ("/shop-green", {"labels": {"HAPROXY_DEPLOYMENT_GROUP": None}}),
    ("/plain", {"labels": {"HAPROXY_0_VHOST": "plain.test", "HAPROXY_0_MODE": "http"}}),
]
STEPS = st.one_of(st.sampled_from(EXPRESSIBLE + STRUCTURAL),
                  st.lists(TASK_OPS, min_size=1, max_size=2))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(health_check=st.booleans(), canary=st.booleans(),
       steps=st.lists(st.lists(STEPS, min_size=1, max_size=2), min_size=1, max_size=8))
# Task events shortened the text before an app update: the map block's place was kept
# from the start of the text and went stale (the app path saw rules that were not there).
@example(health_check=False, canary=False,
         steps=[[[("kill", 0, 0, False), ("kill", 0, 0, False)]],
                [("/shop-blue", {"instances": 2})]])
# Every blue task killed or down, green not yet healthy: the group routes nothing, and
# an update that leaves it so moves nothing (it went the full way).
@example(health_check=True, canary=False,
         steps=[[[("kill", 0, 0, False), ("health", 0, 1, False)], [("kill", 0, 0, False)]],
                [("/shop-blue", {"instances": 2})]])
def test_group_updates_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, health_check: bool, canary: bool, steps: list[list[Any]]) -> None:
    tmp = tmp_path_factory.mktemp("group-app-path")
    live, source, _runtime, reloader = live_router(cluster(canary), tmp, health_check)
    serial = 10
    structural = False  # once a member left or the colours swapped, anything may go full
    for burst in steps:
        serving = live._applied_text
        for step in burst:
            if isinstance(step, tuple):
                app_id, changes = step
                structural = structural or step in STRUCTURAL
                app = copy.deepcopy(source.apps[app_id])
                changes = copy.deepcopy(changes)
                labels = {**app["labels"], **changes.pop("labels", {})}
                app["labels"] = {k: v for k, v in labels.items() if v is not None}
                app.update(changes)
                source.apps[app_id] = app
                live.submit({"eventType": "api_post_event", "appDefinition": {"id": app_id}})
                continue
            for op in step:
                event = _event(op, source.apps, serial)
                serial += 1
                source.apps[event["appId"]] = apply_task_event(source.apps[event["appId"]],
                                                               event)
                live.submit(event)
        assert live.step()
        assert live._applied_text == _from_scratch(source.apps, tmp, health_check, serving)
        if not structural and all(isinstance(step, tuple) for step in burst):
            assert live.state.last_path == "task", live.state.last_full_reason
    if not structural and not health_check:  # (with it a port can lose its last task)
        assert reloader.calls == 1  # the start only
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    live.stop()
