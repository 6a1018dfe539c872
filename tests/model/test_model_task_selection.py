"""model + render: which tasks become servers (pure: no I/O, no HAProxy).

IP-per-task apps (task IP and container port, assigned service ports from a range)
and --health-check task selection and draining.
"""

from __future__ import annotations

from servicerouter.model.services import ip_per_task_ports
from servicerouter.render.config import render_config
from tests.model.features import (
    DEFAULTS,
    NEW,
    OLD,
    OPTIONS,
    app,
    model,
)

# --------------------------------------------------------------------------- IP-per-task


def container_app(app_id: str, mappings: list[dict], tasks: list[dict], **extra) -> dict:
    return {"id": app_id, "labels": {}, "networks": [{"mode": "container", "name": "dcos"}],
            "container": {"type": "MESOS", "portMappings": mappings}, "tasks": tasks, **extra}


def ip_task(task_id: str, ip: str | None, host: str = "agent1") -> dict:
    task = {"id": task_id, "host": host, "ports": [], "state": "TASK_RUNNING"}
    if ip is not None:
        task["ipAddresses"] = [{"ipAddress": "fd00::1", "protocol": "IPv6"},
                               {"ipAddress": ip, "protocol": "IPv4"}]
    return task


def test_ip_per_task_routes_to_task_ip_and_container_port() -> None:
    apps = [container_app("/ipt", [{"containerPort": 8080, "servicePort": 10101},
                                   {"containerPort": 9090, "servicePort": 10102}],
                          [ip_task("ipt.1", "172.17.0.2"), ip_task("ipt.2", "172.17.0.3")])]
    result = model(apps)
    assert [(s.bind_port, [(srv.ipv4, srv.port) for srv in s.servers]) for s in result.services] \
        == [(10101, [("172.17.0.2", 8080), ("172.17.0.3", 8080)]),
            (10102, [("172.17.0.2", 9090), ("172.17.0.3", 9090)])]
    text = render_config(result.services, DEFAULTS, OPTIONS)
    assert "  server 172_17_0_2_8080 172.17.0.2:8080 check" in text


def test_ip_per_task_without_address_is_skipped_with_a_problem() -> None:
    apps = [container_app("/ipt", [{"containerPort": 8080, "servicePort": 10101}],
                          [ip_task("ipt.1", None), ip_task("ipt.2", "10.1.0.2")])]
    result = model(apps)
    assert [srv.ipv4 for srv in result.services[0].servers] == ["10.1.0.2"]
    assert any("no IPv4 address" in p.reason for p in result.problems)


def legacy_ip_app(app_id: str, ports: list[int]) -> dict:
    return {"id": app_id, "labels": {}, "ports": [], "portDefinitions": [],
            "ipAddress": {"networkName": "calico",
                          "discovery": {"ports": [{"number": p, "name": f"p{p}",
                                                   "protocol": "tcp"} for p in ports]}},
            "tasks": [ip_task(f"{app_id[1:]}.1", "10.2.0.9")]}


def test_ip_per_task_ports_assigned_from_range_stable_and_never_stolen() -> None:
    assert ip_per_task_ports(legacy_ip_app("/x", [80, 443])) == [80, 443]
    older = legacy_ip_app("/calico", [80, 443])
    older["versionInfo"] = {"lastConfigChangeAt": OLD}
    explicit = app("/explicit", 10055)
    first = model([older, explicit], ip_per_task_ports=(10050, 10060))
    ports = {(s.app_id, s.index): s.bind_port for s in first.services}
    assert ports[("/explicit", 0)] == 10055  # an explicit service port is never taken
    assert all(10050 <= p <= 10060 for p in ports.values()) and len(set(ports.values())) == 3
    assert [s.servers[0].port for s in first.services if s.app_id == "/calico"] == [80, 443]
    # A newer IP-per-task app (even one sorting first) never moves the older app's ports.
    for count in range(1, 6):
        newcomers = []
        for i in range(count):
            newer = legacy_ip_app(f"/aaa-{i}", [80])
            newer["versionInfo"] = {"lastConfigChangeAt": NEW}
            newcomers.append(newer)
        again = model([*newcomers, explicit, older], ip_per_task_ports=(10050, 10060))
        now = {(s.app_id, s.index): s.bind_port for s in again.services}
        assert {k: v for k, v in now.items() if not k[0].startswith("/aaa-")} == ports
        assert len(set(now.values())) == len(now)


def test_ip_per_task_range_exhausted_is_a_problem() -> None:
    result = model([legacy_ip_app("/big", [1, 2, 3])], ip_per_task_ports=(10050, 10051))
    assert len(result.services) == 2
    assert any("no free service port" in p.reason for p in result.problems)


def test_bridge_network_is_not_ip_per_task() -> None:
    bridged = {"id": "/b", "networks": [{"mode": "container/bridge"}],
               "container": {"portMappings": [{"containerPort": 80, "hostPort": 0,
                                               "servicePort": 10101}]}}
    assert ip_per_task_ports(bridged) is None


# --------------------------------------------------------------------------- --health-check

CHECK = {"protocol": "HTTP", "portIndex": 0, "path": "/health"}


def hc_task(name: str, state: str = "TASK_RUNNING", alive: list[bool] | None = None,
            port: int = 31001) -> dict:
    task = {"id": f"hc.{name}", "host": "10.0.0.5", "ports": [port], "state": state}
    if alive is not None:
        task["healthCheckResults"] = [{"alive": a} for a in alive]
    return task


def test_health_check_selects_running_healthy_ready_tasks_and_drains_killing() -> None:
    tasks = [hc_task("ok", alive=[True, True], port=31001),
             hc_task("sick", alive=[True, False], port=31002),
             hc_task("unknown", alive=None, port=31003),
             hc_task("half", alive=[True], port=31004),
             hc_task("staging", state="TASK_STAGING", alive=[True, True], port=31005),
             hc_task("killing", state="TASK_KILLING", alive=[True, True], port=31006),
             hc_task("notready", alive=[True, True], port=31007)]
    the_app = app("/hc", 10001, tasks=tasks,
                  healthChecks=[CHECK, dict(CHECK, protocol="TCP")],
                  readinessCheckResults=[{"taskId": "hc.notready", "ready": False},
                                         {"taskId": "hc.ok", "ready": True}])
    legacy = model([the_app])
    assert len(legacy.services[0].servers) == 7  # servicerouter.py: every task with a host
    checked = model([the_app], health_check=True)
    servers = {s.port: s.draining for s in checked.services[0].servers}
    assert servers == {31001: False, 31006: True}
    text = render_config(checked.services, DEFAULTS, OPTIONS)
    drained = [line for line in text.splitlines() if "31006" in line and "server " in line]
    assert drained and drained[0].endswith(" weight 0")
    assert not [line for line in text.splitlines() if "31001" in line and "weight 0" in line]


def test_health_check_without_marathon_checks_takes_running_tasks() -> None:
    tasks = [hc_task("a", port=31001), hc_task("b", state="TASK_FAILED", port=31002)]
    checked = model([app("/plain", 10001, tasks=tasks)], health_check=True)
    assert [s.port for s in checked.services[0].servers] == [31001]
