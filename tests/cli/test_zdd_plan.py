"""The pure half of ``servicerouter zdd`` (servicerouter.cli.zdd_plan): marathon-lb's
zdd.py protocol for the next colour, and each step's decisions."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from servicerouter.cli.zdd_plan import (
    DeployOptions,
    Views,
    ZddError,
    backend_of,
    canary_instances,
    finished,
    next_scale,
    parse_steps,
    prepare,
    task_servers,
    validate,
)
from tests.paths import REPO

NOW = datetime(2026, 12, 7, 8, 0, 0)
PUBLISHED = REPO / "tests" / "fixtures" / "published"


def app_json() -> dict:
    return {"id": "web", "instances": 4, "portDefinitions": [{"port": 10000}],
            "labels": {"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
                       "HAPROXY_0_VHOST": "web.test"}}


def test_first_deploy_is_blue_on_the_app_port() -> None:
    blue = prepare(app_json(), [], DeployOptions(), NOW)
    labels = blue["labels"]
    assert blue["id"] == "/web-blue" and blue["instances"] == 4
    assert blue["portDefinitions"] == [{"port": 10000}]
    assert labels["HAPROXY_0_PORT"] == "10000" and labels["HAPROXY_APP_ID"] == "/web"
    assert labels["HAPROXY_DEPLOYMENT_COLOUR"] == "blue"
    assert labels["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"] == "4"
    assert labels["HAPROXY_DEPLOYMENT_NEW_INSTANCES"] == "0"
    assert labels["HAPROXY_DEPLOYMENT_STARTED_AT"] == NOW.isoformat()
    assert backend_of(blue) == "web_10000"


def test_next_colours_alternate_ports_and_keep_the_bind_port() -> None:
    blue = prepare(app_json(), [], DeployOptions(), NOW)
    green = prepare(app_json(), [blue], DeployOptions(initial_instances=1), NOW)
    assert green["id"] == "/web-green" and green["instances"] == 1
    assert green["portDefinitions"] == [{"port": 10001}]
    assert green["labels"]["HAPROXY_0_PORT"] == "10000"
    assert green["labels"]["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"] == "4"
    assert backend_of(green) == backend_of(blue) == "web_10000"
    again = prepare(app_json(), [green], DeployOptions(), NOW)
    assert again["id"] == "/web-blue" and again["portDefinitions"] == [{"port": 10000}]
    # hybrid: NEW_INSTANCES says the canary's size, the first step never exceeds it
    canary = prepare(app_json(), [blue], DeployOptions(initial_instances=3,
                                                       new_instances=1), NOW)
    assert canary["instances"] == 1
    assert canary["labels"]["HAPROXY_DEPLOYMENT_NEW_INSTANCES"] == "1"
    assert "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT" not in canary["labels"]


def test_a_canary_share_is_a_label_only_on_a_hybrid_next_colour() -> None:
    blue = prepare(app_json(), [], DeployOptions(weight_percent=10), NOW)
    assert "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT" not in blue["labels"]
    canary = prepare(app_json(), [blue], DeployOptions(new_instances=4, weight_percent=10), NOW)
    assert canary["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] == "10"
    # a full deployment from a JSON that still carries an earlier canary's label
    stale = app_json()
    stale["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] = "10"
    full = prepare(stale, [blue], DeployOptions(weight_percent=10), NOW)
    assert "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT" not in full["labels"]
    # a full deployment's steps (a canary ignores them: it holds one share)
    stepped = prepare(app_json(), [blue], DeployOptions(weight_steps=(10, 25, 50)), NOW)
    assert stepped["labels"]["HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"] == "10,25,50"
    held = prepare(app_json(), [blue], DeployOptions(new_instances=1, weight_steps=(10,)), NOW)
    assert "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT" not in held["labels"]


def test_step_percent_parsing() -> None:
    assert parse_steps("10,25,50") == (10, 25, 50) and parse_steps("100") == (100,)
    for bad in ("", "10,5", "10,10", "0,50", "x", "10,,20", "101"):
        with pytest.raises(ZddError):
            parse_steps(bad)


def test_published_zdd_example_app_goes_blue_then_green_on_its_alt_port() -> None:
    # marathon-lb's README names tests/1-nginx.json as zdd.py's example app
    state = json.loads((PUBLISHED / "mlb-tests-1-nginx.json").read_text())
    (definition,) = state["apps"]
    definition = validate({k: v for k, v in definition.items() if k != "tasks"})
    blue = prepare(definition, [], DeployOptions(), NOW)
    assert blue["id"] == "/nginx-blue" and blue["instances"] == 5
    assert blue["container"]["docker"]["portMappings"][0]["servicePort"] == 10000
    green = prepare(definition, [blue], DeployOptions(), NOW)
    assert green["id"] == "/nginx-green"
    assert green["container"]["docker"]["portMappings"][0]["servicePort"] == 10001
    assert green["labels"]["HAPROXY_0_PORT"] == "10000"
    assert backend_of(green) == backend_of(blue) == "nginx_10000"


@pytest.mark.parametrize("bad", [{}, {"id": "x"}, {"id": "x", "labels": {
    "HAPROXY_DEPLOYMENT_GROUP": "x"}}, {"id": "x", "labels": {
        "HAPROXY_DEPLOYMENT_GROUP": "x", "HAPROXY_DEPLOYMENT_ALT_PORT": "ten"}}])
def test_validate_names_what_is_missing(bad: dict) -> None:
    with pytest.raises(ZddError):
        validate(bad)


def test_canary_share_and_growth_steps() -> None:
    assert canary_instances(4, 25) == 1 and canary_instances(10, 20) == 2
    assert canary_instances(3, 1) == 1 and canary_instances(4, 99) == 4
    labels = {"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "6", "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0"}
    new = {"instances": 1, "labels": labels}
    assert next_scale(new, {"instances": 5}, False) == 2
    assert next_scale({"instances": 2, "labels": labels}, {"instances": 4}, False) == 3
    assert next_scale({"instances": 3, "labels": labels}, {"instances": 3}, False) == 6
    assert next_scale({"instances": 6, "labels": labels}, {"instances": 0}, False) is None
    hybrid = {"instances": 1, "labels": {**labels, "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "3"}}
    assert next_scale(hybrid, {"instances": 6}, True) == 2


def test_finished_and_views() -> None:
    labels = {"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "4", "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0"}
    new = {"instances": 4, "labels": labels}
    assert finished(new, {"instances": 2, "labels": labels}, ["a", "b"], False)
    assert not finished(new, {"instances": 2, "labels": labels}, ["a"], False)
    canary = {"instances": 1, "labels": {**labels, "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "1"}}
    assert finished(canary, {"instances": 3, "labels": labels}, [], True)
    assert not finished(canary, {"instances": 4, "labels": labels}, [], True)
    app = {"tasks": [{"id": "t1", "host": "127.0.0.1", "ports": [31001]},
                     {"id": "t2", "host": "127.0.0.1", "ports": [31002]}]}
    names = task_servers(app)
    assert names == {"127_0_0_1_31001": "t1", "127_0_0_1_31002": "t2"}
    node = {"127_0_0_1_31001": {"serving": True, "weight": 1, "sessions": 3},
            "127_0_0_1_31002": {"serving": False, "weight": 0, "sessions": 1}}
    views = Views((node,))
    assert views.all_serving({"127_0_0_1_31001"})
    assert not views.all_serving(set(names))
    assert views.drained(names, idle=False) == ["t2"] and views.drained(names, idle=True) == []
    # every node must agree
    other = {**node, "127_0_0_1_31002": {"serving": False, "weight": 0, "sessions": 0}}
    assert Views((other,)).drained(names, idle=True) == ["t2"]
    assert Views((other, node)).drained(names, idle=True) == []
    assert not Views((other, {})).all_serving({"127_0_0_1_31001"})
    # a rollback waits for old tasks up in HAProxy's checks, drained or not
    checked = {"a": {"status": "UP", "weight": 0}, "b": {"status": "no check", "weight": 0},
               "c": {"status": "DOWN", "weight": 1}}
    assert Views((checked,)).all_up({"a", "b"}) and not Views((checked,)).all_up({"a", "c"})
