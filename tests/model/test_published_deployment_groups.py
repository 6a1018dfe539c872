"""Published blue/green apps (tests/fixtures/published) deployed as a group.

Each definition marathon-lb's README or DC/OS's docs give for zero-downtime
deployments is made into a blue and a green colour the way ``servicerouter zdd``
makes them (:func:`servicerouter.cli.zdd_plan.prepare`), both running, and goes
through a one-shot sync to a config that the real ``haproxy -c`` accepts: one
backend named after the group carries both colours' servers, the green's alt port
gets no frontend of its own, a green task not healthy yet waits at weight 0, and a
canary's share is held by the servers' weights.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from servicerouter.cli.zdd_plan import DeployOptions, backend_of, prepare, service_port
from tests.render.test_published_apps import PUBLISHED, _sync

BLUE_GREEN_FIXTURES = ["mlb-tests-1-nginx.json", "dcos-docs-dcos-website-zdd.json"]
BLUE_AT, GREEN_AT = datetime(2026, 12, 7, 8, 0, 0), datetime(2026, 12, 7, 9, 0, 0)


def _published(fixture: str) -> dict[str, Any]:
    (app,) = json.loads((PUBLISHED / fixture).read_text())["apps"]
    return {k: v for k, v in app.items() if k != "tasks"}


def _running(app: dict[str, Any], first_port: int, healthy: list[bool],
             scaled: str) -> dict[str, Any]:
    """``app`` as Marathon reports it with one task per entry of ``healthy``."""
    app = copy.deepcopy(app)
    app["versionInfo"] = {"lastScalingAt": scaled, "lastConfigChangeAt": scaled}
    name = app["id"].strip("/")
    app["tasks"] = [{"id": f"{name}.t{i}", "host": "127.0.0.1", "ports": [first_port + i],
                     "state": "TASK_RUNNING", "startedAt": scaled,
                     "healthCheckResults": [{"alive": alive}]}
                    for i, alive in enumerate(healthy)]
    return app


def _backend_servers(text: str, backend: str) -> dict[int, int]:
    """port -> weight of the server lines in ``backend`` (1: HAProxy's default)."""
    section = text.split(f"\nbackend {backend}\n", 1)[1].split("\nbackend ", 1)[0]
    servers = {}
    for line in section.splitlines():
        match = re.match(r"\s*server \S+ 127\.0\.0\.1:(\d+)", line)
        if match:
            weight = re.search(r" weight (\d+)", line)
            servers[int(match.group(1))] = int(weight.group(1)) if weight else 1
    return servers


@pytest.mark.parametrize("canary", [False, True], ids=["blue-green", "canary-10"])
@pytest.mark.parametrize("fixture", BLUE_GREEN_FIXTURES)
def test_published_blue_green_app_renders_as_one_group_backend(
        tmp_path: Path, haproxy_bin: str, fixture: str, canary: bool) -> None:
    app = _published(fixture)
    blue = prepare(app, [], DeployOptions(), BLUE_AT)
    instances = blue["instances"]
    options = (DeployOptions(initial_instances=2, new_instances=2, weight_percent=10) if canary
               else DeployOptions(initial_instances=2))
    green = prepare(app, [blue], options, GREEN_AT)
    assert green["instances"] == 2 and service_port(green) != service_port(blue)
    apps = [_running(blue, 31001, [True] * instances, "2026-12-07T08:00:01.000Z"),
            _running(green, 32001, [True, False], "2026-12-07T09:00:01.000Z")]
    source = tmp_path / "apps.json"
    source.write_text(json.dumps({"apps": apps}))
    # an absolute path: PUBLISHED / it is itself; the sync haproxy -c's the config
    text, problems = _sync(tmp_path, str(source), haproxy_bin)
    assert not [p for p in problems if p.kind == "conflict"], problems
    backend = backend_of(green)
    assert backend == backend_of(blue)
    servers = _backend_servers(text, backend)
    assert set(servers) == {31001 + i for i in range(instances)} | {32001, 32002}
    assert servers[32002] == 0  # green's second task is not healthy yet: no traffic
    assert f"_{service_port(green)}\n" not in text  # the alt port has no frontend
    blue_weight = sum(w for p, w in servers.items() if p < 32000)
    green_weight = sum(w for p, w in servers.items() if p >= 32000)
    if canary:  # 10% of the requests on the one healthy green task, by weights
        assert green_weight * 100 == 10 * (blue_weight + green_weight)
    else:  # marathon-lb's count: one blue task drained for the healthy green one
        assert [p for p, w in servers.items() if p < 32000 and w == 0] == [31001]
        assert green_weight == 1


def test_marathon_lb_mid_deployment_group_is_one_backend(tmp_path: Path,
                                                         haproxy_bin: str) -> None:
    # marathon-lb's own two-colour state: blue (started later) is the new colour with
    # its one task healthy, so one green task (the lowest id) drains
    text, problems = _sync(tmp_path, "mlb-tests-zdd-apps.json", haproxy_bin)
    assert not [p for p in problems if p.kind == "conflict"], problems
    section = text.split("\nbackend nginx_10000\n", 1)[1].split("\nbackend ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("server ")]
    assert len(lines) == 4 and "backend nginx_10001" not in text
    drained = [line for line in lines if line.endswith(" weight 0")]
    assert len(drained) == 1 and "10.0.6.25:31184" in drained[0]
