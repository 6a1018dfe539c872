"""--health-check: a task whose health is not known yet keeps the place it had.

Just after a Marathon leader change (marathon#3419) every task comes back
without health results; dropping them all would empty the load balancer.
"""

from __future__ import annotations

from servicerouter.model.app_fields import RoutedBefore
from servicerouter.model.services import build_model

CHECK = {"protocol": "HTTP", "portIndex": 0, "path": "/health"}


def task(name: str, port: int, alive: list[bool] | None = None, **extra: object) -> dict:
    body: dict = {"id": f"web.{name}", "host": "10.0.0.5", "ports": [port],
                  "state": "TASK_RUNNING", **extra}
    if alive is not None:
        body["healthCheckResults"] = [{"alive": a} for a in alive]
    return body


def web(tasks: list[dict], checks: int = 1) -> dict:
    return {"id": "/web", "ports": [10001], "labels": {}, "env": {}, "tasks": tasks,
            "healthChecks": [CHECK] * checks}


def web_routes(*addresses: str) -> RoutedBefore:
    """What the serving config routes in /web's backend (web_10001)."""
    return RoutedBefore({"web_10001": frozenset(addresses)})


def ports(apps: list[dict], routed_before: RoutedBefore | None) -> set[int]:
    model = build_model(apps, (), lambda host: host, health_check=True,
                        routed_before=routed_before)
    return {s.port for svc in model.services for s in svc.servers}


def test_unknown_health_keeps_a_routed_task_and_leaves_a_new_one_out() -> None:
    tasks = [task("was", 31001), task("new", 31002), task("empty", 31003, alive=[]),
             task("ok", 31004, alive=[True]), task("sick", 31005, alive=[False])]
    routed = web_routes("10.0.0.5:31001", "10.0.0.5:31003", "10.0.0.5:31005")
    assert ports([web(tasks)], routed) == {31001, 31003, 31004}
    # without the serving config's servers: as before, only known-healthy tasks
    assert ports([web(tasks)], None) == {31004}
    assert ports([web(tasks)], RoutedBefore({})) == {31004}


def test_only_the_apps_own_backends_keep_an_unknown_task() -> None:
    """The same address routed by ANOTHER app's backend keeps nothing here: one app's
    servers depend on its own backends only (so the live engine can derive it alone)."""
    tasks = [task("was", 31001)]
    elsewhere = RoutedBefore({"other_10009": frozenset({"10.0.0.5:31001"}),
                              "web_10002": frozenset({"10.0.0.5:31001"})})
    assert ports([web(tasks)], elsewhere) == set()
    assert ports([web(tasks)], web_routes("10.0.0.5:31001")) == {31001}


def test_an_unknown_task_keeps_only_the_ports_that_routed_it() -> None:
    app = {"id": "/two", "ports": [10001, 10002], "labels": {}, "env": {},
           "healthChecks": [CHECK],
           "tasks": [{"id": "two.1", "host": "10.0.0.5", "ports": [31001, 31002],
                      "state": "TASK_RUNNING"}]}
    routed = RoutedBefore({"two_10002": frozenset({"10.0.0.5:31002"})})
    model = build_model([app], (), lambda host: host, health_check=True, routed_before=routed)
    assert {svc.service_port: [s.port for s in svc.servers] for svc in model.services} \
        == {10002: [31002]}


def test_a_failing_result_is_not_unknown_even_with_results_missing() -> None:
    routed = web_routes("10.0.0.5:31001", "10.0.0.5:31002")
    tasks = [task("half", 31001, alive=[False]), task("partial", 31002, alive=[True])]
    assert ports([web(tasks, checks=2)], routed) == {31002}  # one check not reported yet


def test_unknown_tasks_of_an_app_with_no_routed_task_give_no_backend() -> None:
    model = build_model([web([task("new", 31002)])], (), lambda host: host,
                        health_check=True, routed_before=web_routes("10.0.0.9:1"))
    assert model.services == ()


def test_ip_per_task_unknown_task_keeps_its_container_address() -> None:
    app = {"id": "/ip", "labels": {}, "env": {}, "ports": [],
           "ipAddress": {"networkName": "calico",
                         "discovery": {"ports": [{"number": 8080, "name": "http",
                                                  "protocol": "tcp"}]}},
           "healthChecks": [CHECK],
           "tasks": [{"id": "ip.1", "host": "agent1", "ports": [], "state": "TASK_RUNNING",
                      "ipAddresses": [{"ipAddress": "10.2.0.9", "protocol": "IPv4"}]},
                     {"id": "ip.2", "host": "agent1", "ports": [], "state": "TASK_RUNNING",
                      "ipAddresses": [{"ipAddress": "10.2.0.10", "protocol": "IPv4"}]}]}
    # its bind port is assigned after derivation: any backend of the app counts
    model = build_model([app], (), lambda host: host, health_check=True,
                        routed_before=RoutedBefore({"ip_10050": frozenset({"10.2.0.9:8080"})}))
    assert [s.ipv4 for svc in model.services for s in svc.servers] == ["10.2.0.9"]
