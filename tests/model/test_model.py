"""model: every Marathon app shape, settings, tasks, and bad input skipped per app/port."""

from __future__ import annotations

import json

import pytest

from servicerouter.model.services import build_model, has_group, service_ports
from tests.paths import MARATHON_FIXTURES

FIXTURES = MARATHON_FIXTURES


def ident(host: str) -> str | None:
    return {"srv1.example.com": "192.0.2.10"}.get(host, host if host[0].isdigit() else None)


def app(app_id: str = "/web", ports=(10000,), tasks=(), **extra) -> dict:
    base = {"id": app_id, "ports": list(ports), "env": {}, "labels": {}, "healthChecks": [],
            "tasks": [{"id": f"{app_id[1:]}.{i}", "host": h, "ports": list(p)}
                      for i, (h, p) in enumerate(tasks)]}
    base.update(extra)
    return base


def load(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())["apps"]


# --- real payloads ---------------------------------------------------------------

def test_marathon_15_container_port_mappings() -> None:
    model = build_model(load("marathon-1.5-apps-embed-tasks.json"), ("external",), ident)
    (svc,) = model.services
    assert (svc.app_id, svc.service_port, svc.bind_port, svc.backend) == (
        "/pywebserver", 10101, 10101, "pywebserver_10101")
    assert svc.vhosts == ("myvhost.com",) and svc.mode == "http"
    assert [(s.host, s.port) for s in svc.servers] == [("10.0.2.148", 1565)]


def test_marathon_1x_zdd_port_definitions_and_docker_mappings() -> None:
    model = build_model(load("marathon-1.x-apps-zdd.json"), ("external",), ident)
    # One deployment group (marathon-lb's zdd labels): one service named after the group,
    # on the old colour's port and settings (green started first), both colours' tasks.
    (svc,) = model.services
    assert svc.app_id == "/nginx" and svc.bind_port == 10000 and svc.backend == "nginx_10000"
    assert svc.health_check is not None and svc.health_check.path == "/"
    assert svc.health_check.falls == 11 and svc.mode == "http"
    assert [s.port for s in svc.servers] == [25724, 16916, 23336, 31184]  # by (host, port)
    # the one healthy blue task drains one green task, the lowest task id (no
    # NEW_INSTANCES label: target 1, as marathon-lb)
    assert [s.port for s in svc.servers if s.draining] == [31184]
    assert [p for p in model.problems if p.kind != "label"] == []
    # the deployment labels are implemented: no "not implemented" notice
    assert not any("DEPLOYMENT" in (p.key or "") for p in model.problems)


def test_marathon_011_ports_without_tasks_are_not_rendered() -> None:
    model = build_model(load("marathon-0.11-app_list.json"), (), ident)
    assert model.services == () and model.problems == ()


@pytest.mark.parametrize("name", ["app-definition-docker-bridge.json",
                                  "app-definition-marathon1.5.json"])
def test_app_definitions_service_ports(name: str) -> None:
    definition = json.loads((FIXTURES / name).read_text())
    assert service_ports(definition) == [10000]
    definition["tasks"] = [{"id": "nginx.1", "host": "10.0.0.1", "ports": [31000]}]
    definition["id"] = "/nginx"
    model = build_model([definition], ("external",), ident)
    (svc,) = model.services
    # Only protocol HTTP (not MESOS_HTTP) makes the default mode http.
    assert svc.mode == ("http" if "bridge" in name else "tcp")


# --- settings and defaults ---------------------------------------------------------

@pytest.mark.parametrize(
    ("labels", "env", "check"),
    [
        ({}, {"HAPROXY_0_STICKY": "Yes"}, lambda s: s.settings.sticky),
        ({}, {"HAPROXY_0_STICKY": "nope"}, lambda s: not s.settings.sticky),
        ({"HAPROXY_0_REDIRECT_TO_HTTPS": "y"}, {}, lambda s: s.settings.redirect_to_https),
        ({"HAPROXY_0_BIND_ADDR": "10.1.2.3"}, {}, lambda s: s.bind_addr == "10.1.2.3"),
        ({}, {}, lambda s: s.bind_addr == "*" and s.mode == "tcp"),
        ({"HAPROXY_0_PORT": " 8080 "}, {}, lambda s: (s.bind_port, s.backend) == (8080, "web_8080")),
        ({"HAPROXY_0_MODE": "HTTP"}, {}, lambda s: s.mode == "http"),
        ({"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_MODE": "tcp"}, {},
         lambda s: s.mode == "http"),
        ({"HAPROXY_0_SSL_CERT": "/etc/ssl/a.pem"}, {}, lambda s: s.settings.ssl_cert == "/etc/ssl/a.pem"),
        ({"HAPROXY_0_VHOST": "label.example.com"}, {"HAPROXY_0_VHOST": "env.example.com"},
         lambda s: s.vhosts == ("label.example.com",)),
    ],
)
def test_port_settings(labels: dict, env: dict, check) -> None:
    model = build_model([app(labels=labels, env=env, tasks=[("10.0.0.1", [31000])])], (), ident)
    (svc,) = model.services
    assert check(svc), svc


def test_keys_only_read_below_number_of_service_ports() -> None:
    model = build_model([app(env={"HAPROXY_1_PORT": "x"}, tasks=[("10.0.0.1", [1, 2])])], (), ident)
    assert len(model.services) == 1 and model.problems == ()


def test_health_check_by_port_index() -> None:
    checks = [{"protocol": "TCP", "portIndex": 1}, {"protocol": "HTTP", "portIndex": 0, "path": "/a"},
              {"protocol": "HTTP", "portIndex": 0, "path": "/b"}]
    model = build_model([app(ports=(10000, 10001), healthChecks=checks,
                             tasks=[("10.0.0.1", [31000, 31001])])], (), ident)
    first, second = model.services
    assert first.health_check.path == "/a" and first.mode == "http"
    assert second.health_check.protocol == "TCP" and second.mode == "tcp"


def test_groups() -> None:
    assert has_group(frozenset(), ())
    assert not has_group(frozenset(), ("a",))
    assert has_group(frozenset({"*"}), ("a",))
    assert has_group(frozenset({"a", "b"}), ("b", "c"))
    assert not has_group(frozenset({"a"}), ())


# --- tasks ------------------------------------------------------------------------

def test_task_port_matching_uses_the_shorter_list() -> None:
    model = build_model([app(ports=(10000, 10001, 10002),
                             tasks=[("10.0.0.1", [31000, 31001]), ("10.0.0.2", [32000, 32001, 32002, 32003])])],
                        (), ident)
    counts = {s.service_port: len(s.servers) for s in model.services}
    assert counts == {10000: 2, 10001: 2, 10002: 1}


def test_host_resolution_and_bad_hosts() -> None:
    model = build_model([app(tasks=[("srv1.example.com", [31000]), ("", [31001]),
                                    ("unknown.invalid", [31002]), ("10.0.0.7", [31003])])], (), ident)
    (svc,) = model.services
    assert [(s.host, s.ipv4) for s in svc.servers] == [("10.0.0.7", "10.0.0.7"),
                                                      ("srv1.example.com", "192.0.2.10")]
    reasons = " ".join(p.reason for p in model.problems)
    assert "no host" in reasons and "could not resolve" in reasons


def test_service_whose_hosts_do_not_resolve_keeps_its_frontend() -> None:
    model = build_model([app(tasks=[("unknown.invalid", [31000])])], (), ident)
    (svc,) = model.services
    assert svc.servers == ()


def test_duplicate_task_endpoint_is_one_server() -> None:
    model = build_model([app(tasks=[("10.0.0.1", [31000]), ("10.0.0.1", [31000])])], (), ident)
    assert len(model.services[0].servers) == 1


def test_services_sorted_by_app_id_then_bind_port() -> None:
    apps = [app("/b", tasks=[("10.0.0.1", [1])]), app("/a", ports=(20000, 10001),
                                                       tasks=[("10.0.0.1", [1, 2])])]
    model = build_model(apps, (), ident)
    assert [(s.app_id, s.bind_port) for s in model.services] == [
        ("/a", 10001), ("/a", 20000), ("/b", 10000)]


# --- bad input: only the offending app or port is skipped ----------------------------

@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (app("/bad", env={"HAPROXY_0_PORT": "eighty"}), "HAPROXY_0_PORT"),
        (app("/bad", env={"HAPROXY_0_PORT": "70000"}), "out of range"),
        (app("/bad", labels={"HAPROXY_0_MODE": "udp"}), "HAPROXY_0_MODE"),
        (app("/bad", labels={"HAPROXY_0_VHOST": "a.com\n  bind :1"}), "HAPROXY_0_VHOST"),
        (app("/bad", labels={"HAPROXY_0_BIND_ADDR": "1.2.3.4 ssl"}), "HAPROXY_0_BIND_ADDR"),
        (app("/bad", labels={"HAPROXY_0_SSL_CERT": "/a.pem # x"}), "HAPROXY_0_SSL_CERT"),
        (app("/bad", labels={"HAPROXY_0_STICKY": 1}), "not a string"),
        (app("/bad", labels=["not", "a", "dict"]), "labels"),
        ({**app("/bad"), "ports": "10000"}, "ports"),
        (app("/bad", ports=[-1]), "service port"),
        ({**app("/bad"), "tasks": "nope"}, "tasks"),
        (app("/bad id"), "app id"),
        ({"ports": [1]}, "app id"),
        ("not an app", "JSON object"),
        (app("/bad", healthChecks=[{"protocol": "HTTP", "portIndex": 0, "path": "/x\nbind :1"}]),
         "health check path"),
        (app("/bad", healthChecks=[{"protocol": "HTTP", "portIndex": 0, "intervalSeconds": "5"}]),
         "intervalSeconds"),
    ],
)
def test_bad_app_is_skipped_and_named(bad, fragment: str) -> None:
    if isinstance(bad, dict) and "tasks" in bad and isinstance(bad["tasks"], list) and not bad["tasks"]:
        bad["tasks"] = [{"id": "bad.1", "host": "10.0.0.1", "ports": [31000]}]
    good = app("/good", ports=(11000,), tasks=[("10.0.0.2", [32000])])
    model = build_model([bad, good], (), ident)
    assert [s.app_id for s in model.services] == ["/good"]
    assert len(model.problems) == 1
    assert fragment in str(model.problems[0]), str(model.problems[0])


def test_bad_port_skips_only_that_port() -> None:
    model = build_model([app(ports=(10000, 10001), env={"HAPROXY_1_PORT": "x"},
                             tasks=[("10.0.0.1", [31000, 31001])])], (), ident)
    assert [s.service_port for s in model.services] == [10000]
    (problem,) = model.problems
    assert problem.port_index == 1 and problem.key == "HAPROXY_1_PORT"
    assert "port index 1" in str(problem) and "'/web'" in str(problem)


def test_bad_task_is_skipped() -> None:
    model = build_model([app(tasks=[("10.0.0.1", ["x"]), ("10.0.0.2", [31000]),
                                    ("bad host;", [31001])])], (), ident)
    assert [s.host for s in model.services[0].servers] == ["10.0.0.2"]
    assert len(model.problems) == 2


def test_shared_frontend_port_is_refused() -> None:
    model = build_model([app(labels={"HAPROXY_0_PORT": "80"}, tasks=[("10.0.0.1", [1])])], (), ident,
                        reserved_ports=(80, 443))
    assert model.services == () and "shared frontend" in model.problems[0].reason
