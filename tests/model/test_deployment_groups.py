"""Blue/green deployment groups in the model (servicerouter.model.deployment_groups).

The apps of one ``HAPROXY_DEPLOYMENT_GROUP`` are one service named after the group,
on the old colour's routes; old tasks drain as new ones turn healthy (marathon-lb's
count), new tasks take traffic only once healthy; and every step of a deployment,
rendered with the built-in fragments, is a change the Runtime API can apply (no reload).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply import haproxy
from servicerouter.apply.confdiff import parse_config, plan_runtime_update
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments


def ident(host: str) -> str:
    return host


def colour(name: str, started: str, tasks: list[tuple[str, int, bool | None]], *,
           instances: int | None = None, target: int = 3, new_instances: int = 0,
           service_port: int = 10000, scaled: str = "2026-01-01T00:00:00.000Z",
           checks: bool = True) -> dict[str, Any]:
    """An app as zdd posts it: ``tasks`` are (task id suffix, host port, alive)."""
    app: dict[str, Any] = {
        "id": f"/web-{name}", "instances": len(tasks) if instances is None else instances,
        "portDefinitions": [{"port": service_port}],
        "versionInfo": {"lastScalingAt": scaled, "lastConfigChangeAt": scaled},
        "labels": {"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
                   "HAPROXY_0_PORT": "10000", "HAPROXY_0_VHOST": "web.test",
                   "HAPROXY_DEPLOYMENT_COLOUR": name, "HAPROXY_DEPLOYMENT_STARTED_AT": started,
                   "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": str(target),
                   "HAPROXY_DEPLOYMENT_NEW_INSTANCES": str(new_instances)},
        "tasks": [],
    }
    if checks:
        app["healthChecks"] = [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                                "intervalSeconds": 1, "maxConsecutiveFailures": 2}]
    for suffix, port, alive in tasks:
        task: dict[str, Any] = {"id": f"web-{name}.{suffix}", "host": "127.0.0.1",
                                "ports": [port]}
        if alive is not None:
            task["healthCheckResults"] = [{"alive": alive}]
        app["tasks"].append(task)
    return app


BLUE_STARTED = "2026-01-01T10:00:00.000000"
GREEN_STARTED = "2026-01-01T11:00:00.000000"


def blue(tasks: list[tuple[str, int, bool | None]] | None = None, **kw: Any) -> dict[str, Any]:
    default = [("a", 31001, True), ("b", 31002, True), ("c", 31003, True)]
    return colour("blue", BLUE_STARTED, default if tasks is None else tasks, **kw)


def green(tasks: list[tuple[str, int, bool | None]], **kw: Any) -> dict[str, Any]:
    kw.setdefault("service_port", 10001)
    return colour("green", GREEN_STARTED, tasks, **kw)


def served(apps: list[dict[str, Any]]) -> dict[int, bool]:
    """port -> draining (weight 0) of the one service's servers."""
    model = build_model(apps, ("*",), ident)
    (service,) = model.services
    assert service.app_id == "/web" and service.backend == "web_10000"
    assert service.bind_port == 10000 and service.vhosts == ("web.test",)
    assert not [p for p in model.problems if p.kind == "conflict"]
    return {s.port: s.draining for s in service.servers}


def test_one_colour_alone_is_served_under_the_group_name() -> None:
    assert served([blue()]) == {31001: False, 31002: False, 31003: False}
    assert served([green([("x", 32001, True)])]) == {32001: False}


def test_new_tasks_wait_at_weight_zero_until_healthy_and_drain_as_many_old_ones() -> None:
    # green posted: its task not healthy yet -> in the backend, no traffic; blue intact
    state = served([blue(), green([("x", 32001, False)])])
    assert state == {31001: False, 31002: False, 31003: False, 32001: True}
    # one green healthy: one blue task drains (the lowest task id), target 3
    state = served([blue(), green([("x", 32001, True)])])
    assert state == {31001: True, 31002: False, 31003: False, 32001: False}
    # the drained blue task killed with scale (blue at 2 instances), green at 3 with
    # 2 healthy: 2 + 2 - 3 = 1 more blue task drains, 3 serve (the target)
    state = served([blue([("b", 31002, True), ("c", 31003, True)]),
                    green([("x", 32001, True), ("y", 32002, True), ("z", 32003, None)])])
    assert state == {31002: True, 31003: False, 32001: False, 32002: False, 32003: True}


def test_marathon_order_does_not_matter_and_started_at_decides() -> None:
    apps = [green([("x", 32001, True)]), blue()]
    assert served(apps) == {31001: True, 31002: False, 31003: False, 32001: False}


def test_drains_never_exceed_what_keeps_the_target_serving() -> None:
    # target 4 with blue at 4: one healthy green drains 1 (1 + 4 - 4), two drain 2
    four = [("a", 31001, True), ("b", 31002, True), ("c", 31003, True), ("d", 31004, True)]
    state = served([blue(four, target=4), green([("x", 32001, True)], target=4)])
    assert sum(state.values()) == 1
    state = served([blue(four, target=4),
                    green([("x", 32001, True), ("y", 32002, True)], target=4)])
    assert [p for p, d in state.items() if d] == [31001, 31002]


def test_hybrid_canary_the_app_scaled_last_is_the_new_one() -> None:
    # canary: green NEW_INSTANCES=1 of target 4; blue was scaled (killed with scale)
    # after green was posted -> blue counts as new: none of green's serving task drains
    three = [("b", 31002, True), ("c", 31003, True), ("d", 31004, True)]
    apps = [blue(three, target=4, scaled="2026-01-01T11:00:05.000Z"),
            green([("x", 32001, True)], target=4, new_instances=1,
                  scaled="2026-01-01T11:00:01.000Z")]
    assert served(apps) == {31002: False, 31003: False, 31004: False, 32001: False}


def test_new_colour_without_health_checks_counts_its_instances() -> None:
    state = served([blue(), green([("x", 32001, None)], checks=False)])
    assert state == {31001: True, 31002: False, 31003: False, 32001: False}


def test_a_group_that_is_no_app_id_is_reported_and_the_app_served_alone() -> None:
    app = blue()
    app["labels"]["HAPROXY_DEPLOYMENT_GROUP"] = "we b"
    model = build_model([app], ("*",), ident)
    (service,) = model.services
    assert service.app_id == "/web-blue"
    (problem,) = [p for p in model.problems if p.key == "HAPROXY_DEPLOYMENT_GROUP"]
    assert "not a valid app id" in problem.reason


def test_apps_outside_the_group_are_untouched() -> None:
    other = {"id": "/other", "portDefinitions": [{"port": 10500}],
             "tasks": [{"id": "other.1", "host": "127.0.0.1", "ports": [33001]}]}
    model = build_model([blue(), green([("x", 32001, True)]), other], ("*",), ident)
    assert [s.app_id for s in model.services] == ["/other", "/web"]


def _render(apps: list[dict[str, Any]], bind_http_https: bool = True) -> str:
    model = build_model(copy.deepcopy(apps), ("*",), ident)
    return render_config(model.services, load_fragments(),
                         RenderOptions(runtime_socket="/tmp/sr-test.sock",
                                       bind_http_https=bind_http_https))


@pytest.mark.parametrize("checks", [True, False])
def test_every_step_of_a_deployment_is_a_runtime_api_change(checks: bool) -> None:
    ok = True if checks else None
    steps = [
        [blue()],
        [blue(), green([("x", 32001, False if checks else None)], instances=1)],
        [blue(), green([("x", 32001, ok)])],
        [blue([("b", 31002, True), ("c", 31003, True)]), green([("x", 32001, ok)])],
        [blue([("b", 31002, True), ("c", 31003, True)]),
         green([("x", 32001, ok), ("y", 32002, ok), ("z", 32003, ok)])],
        [blue([], instances=0), green([("x", 32001, ok), ("y", 32002, ok), ("z", 32003, ok)])],
        [green([("x", 32001, ok), ("y", 32002, ok), ("z", 32003, ok)])],
    ]
    texts = [_render(step) for step in steps]
    names = {line.split()[1] for text in texts for line in text.splitlines()
             if line.strip().startswith("server ")}
    assert names >= {"127_0_0_1_31001", "127_0_0_1_32001"}  # host_port: stable per task
    weights = []
    for before, after in zip(texts, texts[1:], strict=False):
        verdict = plan_runtime_update(parse_config(before), parse_config(after))
        assert verdict.plan is not None, verdict.reason
        weights.append(len(verdict.plan.reweight))
    assert sum(weights) > 0  # traffic moved by weights, not by new backends
    assert "backend web_10000" in texts[0] and "backend web_10000" in texts[-1]


def weights(apps: list[dict[str, Any]]) -> dict[int, int | None]:
    """port -> weight of the one service's servers (0: drained or waiting)."""
    (service,) = build_model(copy.deepcopy(apps), ("*",), ident).services
    return {s.port: 0 if s.draining else s.weight for s in service.servers}


def canary(percent: str | None, tasks: list[tuple[str, int, bool | None]], **kw: Any,
           ) -> dict[str, Any]:
    app = green(tasks, **kw)
    if percent is not None:
        app["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = percent
    return app


def new_share(state: dict[int, int | None]) -> float:
    """The green servers' (ports 32xxx) share of the summed weights, in percent."""
    total = sum(1 if w is None else w for w in state.values())
    return 100.0 * sum(1 if w is None else w for p, w in state.items() if p >= 32000) / total


@pytest.mark.parametrize("blue_scaled", ["2026-01-01T10:30:00.000Z",  # green counts as new
                                         "2026-01-01T11:00:05.000Z"])  # blue, as in a hold
@pytest.mark.parametrize(("percent", "old", "new"), [
    (10, 3, 1), (10, 4, 4), (25, 3, 1), (50, 2, 6), (1, 7, 5), (99, 5, 3), (33, 1, 1)])
def test_canary_weight_percent_splits_by_weights_not_instances(
        percent: int, old: int, new: int, blue_scaled: str) -> None:
    # hybrid hold: old at target - new (the drained ones killed), new at its canary size
    blues = [(chr(ord("a") + i), 31001 + i, True) for i in range(old)]
    greens = [(chr(ord("a") + i), 32001 + i, True) for i in range(new)]
    apps = [blue(blues, target=old + new, scaled=blue_scaled),
            canary(str(percent), greens, target=old + new, new_instances=new,
                   scaled="2026-01-01T11:00:01.000Z")]
    state = weights(apps)
    assert 0 not in state.values() and None not in state.values()
    assert all(1 <= w <= 256 for w in state.values() if w is not None)
    assert abs(new_share(state) - percent) < 0.5
    # without the label: the share of instances, as marathon-lb
    apps[1]["labels"].pop("HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT")
    assert set(weights(apps).values()) == {None}


def test_canary_weights_leave_waiting_and_drained_servers_at_zero() -> None:
    # green posted with 2 of its canary's 2: one healthy, one not; target 4 with blue at 4
    four = [("a", 31001, True), ("b", 31002, True), ("c", 31003, True), ("d", 31004, True)]
    apps = [blue(four, target=4),
            canary("10", [("x", 32001, True), ("y", 32002, False)], target=4,
                   new_instances=2)]
    state = weights(apps)
    assert state[32002] == 0 and state[31001] == 0  # waiting green, drained blue
    assert abs(new_share(state) - 10) < 0.5  # 1 green vs 3 serving blue: 1 : 3 each
    assert state[32001] == 1 and state[31002] == state[31003] == state[31004] == 3


@pytest.mark.parametrize("label", ["0", "100", "ten", "-5", ""])
def test_unusable_weight_percent_keeps_the_instance_rule(label: str) -> None:
    apps = [blue([("a", 31001, True)], target=2),
            canary(label, [("x", 32001, True)], target=2, new_instances=1)]
    assert set(weights(apps).values()) == {None}


def test_canary_weights_end_when_the_new_colour_grows_past_its_canary() -> None:
    # --complete-cur grows green past NEW_INSTANCES: marathon-lb's rule again
    apps = [blue([("b", 31002, True), ("c", 31003, True)], target=3),
            canary("10", [("x", 32001, True), ("y", 32002, None)], target=3,
                   new_instances=1, instances=2)]
    assert None in weights(apps).values() and not [
        w for w in weights(apps).values() if w not in (None, 0)]


def test_complete_prev_keeps_the_canary_share_until_its_tasks_drain() -> None:
    # --complete-prev grows blue (scaled last: blue counts as new); green serves at its
    # share until a third blue task is healthy, then drains
    growing = [blue([("b", 31002, True), ("c", 31003, True), ("d", 31004, False)], target=3,
                    scaled="2026-01-01T11:00:09.000Z"),
               canary("10", [("x", 32001, True)], target=3, new_instances=1,
                      scaled="2026-01-01T11:00:01.000Z")]
    state = weights(growing)
    assert abs(new_share(state) - 10) < 0.5 and state[31004] == 0
    growing[0]["tasks"][2]["healthCheckResults"] = [{"alive": True}]
    state = weights(growing)
    assert state[32001] == 0 and set(state.values()) == {0, None}


def test_a_canary_reweight_is_a_runtime_api_change_and_valid_haproxy(
        tmp_path: Path, haproxy_bin: str) -> None:
    blues = [("b", 31002, True), ("c", 31003, True), ("d", 31004, True)]
    plain = [blue(blues, target=4), green([("x", 32001, True)], target=4, new_instances=1)]
    weighted = copy.deepcopy(plain)
    weighted[1]["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = "10"
    before, after = _render(plain), _render(weighted)
    assert "server 127_0_0_1_32001 127.0.0.1:32001 check" in after
    assert " weight 1" in after and " weight 3" in after
    verdict = plan_runtime_update(parse_config(before), parse_config(after))
    assert verdict.plan is not None, verdict.reason
    assert len(verdict.plan.reweight) == 4 and not verdict.plan.add
    config = tmp_path / "haproxy.cfg"
    config.write_text(_render(weighted, bind_http_https=False))  # no :443 certificate here
    ok, message = haproxy.check_config(str(config), haproxy_bin)
    assert ok, message


def test_full_deployment_steps_traffic_by_weights_as_new_tasks_turn_healthy() -> None:
    # target 4, steps 10,25,50(,100): h healthy green tasks -> step ceil(3 * h / 4)
    def state_with(healthy: int) -> dict[int, int | None]:
        blues = [(chr(ord("a") + i), 31001 + i, True) for i in range(4)]
        greens = [(chr(ord("a") + i), 32001 + i, i < healthy) for i in range(healthy + 1)]
        app = green(greens[:4], target=4)
        app["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = "10,25,50"
        return weights([blue(blues, target=4), app])

    shares = [round(new_share(state_with(h))) for h in (1, 2, 3)]
    assert shares == [10, 25, 50]  # by instances: 25, 50, 75
    # all four healthy: the old tasks are all drained, the split is over
    assert set(state_with(4).values()) == {0, None}
    # nothing healthy yet: the new colour waits at weight 0, old ones keep defaults
    assert set(state_with(0).values()) == {0, None}


@pytest.mark.parametrize("label", ["10,5", "10,10", "0,50", "10,,50", "10;50", "101"])
def test_unusable_weight_steps_keep_the_instance_rule(label: str) -> None:
    app = green([("x", 32001, True)], target=3)
    app["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = label
    assert set(weights([blue(), app]).values()) == {0, None}


def test_a_canary_takes_one_percentage_not_steps() -> None:
    apps = [blue([("a", 31001, True)], target=2),
            canary("10,50", [("x", 32001, True)], target=2, new_instances=1)]
    assert set(weights(apps).values()) == {None}
