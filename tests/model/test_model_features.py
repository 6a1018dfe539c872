"""model + render for the label-driven routing features (pure: no I/O, no HAProxy).

Vhost lists and path routing (rule order), vhost conflicts decided by app age
with servicerouter.py's bytes kept when the oldest app sorts first, per-port
groups, HAPROXY_{n}_ENABLED with strict mode, IP-per-task apps and their
assigned service ports, --health-check task selection and draining, and the
backend options (balance, sticky cookie, auth, HSTS, redirect, bind options).
"""

from __future__ import annotations

import re

from servicerouter.model.services import build_model, ip_per_task_ports
from servicerouter.render.config import RenderOptions, host_acl_name, render_config
from servicerouter.render.fragments import load_fragments
from tests.paths import LEGACY_TEMPLATES

LEGACY = LEGACY_TEMPLATES
SHA512 = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1"
DEFAULTS = load_fragments([])
LEGACY_SET = load_fragments([LEGACY])
OPTIONS = RenderOptions(crt_list="/state/crt-list")
RESERVED = OPTIONS.reserved_ports()


def ident(host: str) -> str | None:
    return host if host[0].isdigit() else None


def app(app_id: str, port: int, labels: dict | None = None, *, changed: str | None = None,
        tasks: list[dict] | None = None, **extra) -> dict:
    body = {"id": app_id, "ports": [port], "labels": labels or {}, "env": {},
            "tasks": tasks if tasks is not None else
            [{"id": f"{app_id[1:]}.1", "host": "10.0.0.1", "ports": [31000 + port % 1000]}]}
    if changed:
        body["versionInfo"] = {"lastConfigChangeAt": changed}
    body.update(extra)
    return body


def model(apps: list[dict], **kw):
    return build_model(apps, kw.pop("groups", ()), ident, reserved_ports=RESERVED, **kw)


def render(apps: list[dict], fragments=DEFAULTS, **kw) -> str:
    return render_config(model(apps, **kw).services, fragments, OPTIONS)


def section(text: str, name: str) -> list[str]:
    """Lines of one section (e.g. 'frontend marathon_http_in'), without the header."""
    lines = text.splitlines()
    start = lines.index(name) + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i][0].isspace()),
               len(lines))
    return [line for line in lines[start:end] if line.strip()]


def use_backends(text: str, frontend: str = "frontend marathon_http_in") -> list[str]:
    return [line.split()[1] for line in section(text, frontend) if line.startswith("  use_backend")]


# --------------------------------------------------------------------------- vhosts and paths


def test_multiple_vhosts_one_rule_each_and_distinct_acl_names() -> None:
    text = render([app("/web", 10001, {"HAPROXY_0_VHOST": "a_b.example.com,a.b.example.com"})])
    http = section(text, "frontend marathon_http_in")
    assert "  use_backend web_10001 if host_a_b.example.com" in http
    assert "  use_backend web_10001 if host_a.b.example.com" in http
    # servicerouter.py's cleanedUpHostname would have merged both into host_a_b_example_com.
    assert host_acl_name("a_b.example.com") != host_acl_name("a.b.example.com")
    assert host_acl_name("*.example.com") != host_acl_name("_.example.com")
    assert section(text, "frontend marathon_https_in")[1:] == http[1:]  # same rules on :443


def test_path_routing_exact_hosts_first_then_longest_prefix_then_weight() -> None:
    apps = [
        app("/root", 10001, {"HAPROXY_0_VHOST": "shop.example.com"}),
        app("/api", 10002, {"HAPROXY_0_VHOST": "shop.example.com", "HAPROXY_0_PATH": "/api"}),
        app("/apiv2", 10003, {"HAPROXY_0_VHOST": "shop.example.com", "HAPROXY_0_PATH": "/api/v2"}),
        app("/cart", 10004, {"HAPROXY_0_VHOST": "shop.example.com", "HAPROXY_0_PATH": "/cart",
                             "HAPROXY_0_BACKEND_WEIGHT": "5"}),
        app("/wild", 10005, {"HAPROXY_0_VHOST": "*.example.com"}),
        app("/zzz", 10006, {"HAPROXY_0_VHOST": "other.example.com",
                            "HAPROXY_0_BACKEND_WEIGHT": "-1"}),
    ]
    text = render(apps)
    # A wildcard goes after every exact host, whatever the weights (zzz's is -1).
    assert use_backends(text) == ["apiv2_10003", "cart_10004", "api_10002", "root_10001",
                                  "zzz_10006", "wild_10005"]
    http = section(text, "frontend marathon_http_in")
    assert "  acl path_api_10002 path_beg /api" in http
    assert "  use_backend api_10002 if host_shop.example.com path_api_10002" in http
    assert use_backends(text, "frontend marathon_https_in") == use_backends(text)


def test_path_without_vhost_is_ignored_with_a_problem() -> None:
    result = model([app("/p", 10001, {"HAPROXY_0_PATH": "/x"})])
    (service,) = result.services
    assert service.path is None and service.mode == "tcp"
    assert any(p.key == "HAPROXY_0_PATH" and "needs a virtual host" in p.reason
               for p in result.problems)


def test_legacy_fragments_render_path_routes_with_their_own_fragment() -> None:
    # A user's legacy HAPROXY_HTTP_FRONTEND_ACL cannot express a path, so path routes
    # use HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH (default here) and never turn host-wide.
    text = render([app("/api", 10002, {"HAPROXY_0_VHOST": "x.example.com",
                                       "HAPROXY_0_PATH": "/api"})], LEGACY_SET)
    assert "HTTP-ACL" not in text
    assert "path_beg /api" in text


# --------------------------------------------------------------------------- conflicts

OLD, NEW = "2015-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"


def test_vhost_conflict_oldest_sorting_first_keeps_servicerouter_py_bytes() -> None:
    apps = [app("/a-old", 10001, {"HAPROXY_0_VHOST": "x.example.com"}, changed=OLD),
            app("/b-new", 10002, {"HAPROXY_0_VHOST": "X.example.com"}, changed=NEW)]
    result = model(apps)
    (problem,) = result.problems
    assert problem.app_id == "/b-new" and "vhost conflict" in problem.reason
    assert "/a-old" in problem.reason and problem.key == "HAPROXY_0_VHOST"
    legacy = render_config(result.services, LEGACY_SET, OPTIONS)
    # servicerouter.py wrote both claimants' ACLs in id order; HAProxy uses the first.
    assert [line for line in legacy.splitlines() if line.startswith("  HTTP-ACL")] == [
        "  HTTP-ACL x_example_com x.example.com /a-old a-old_10001",
        "  HTTP-ACL X_example_com X.example.com /b-new b-new_10002",
    ]
    default = render_config(result.services, DEFAULTS, OPTIONS)
    assert use_backends(default) == ["a-old_10001"]  # ours writes only the owner's rule
    newer = result.services[1]
    assert newer.vhosts == () and newer.rule_vhosts == ("X.example.com",)  # shadowed


def test_vhost_conflict_newer_app_sorting_first_loses_the_route() -> None:
    apps = [app("/z-old", 10001, {"HAPROXY_0_VHOST": "x.example.com"}, changed=OLD),
            app("/a-new", 10002, {"HAPROXY_0_VHOST": "x.example.com,y.example.com"},
                changed=NEW)]
    result = model(apps)
    assert [p.app_id for p in result.problems] == ["/a-new"]
    for fragments in (LEGACY_SET, DEFAULTS):
        text = render_config(result.services, fragments, OPTIONS)
        if fragments is LEGACY_SET:
            acls = [line.split()[4] for line in text.splitlines() if line.startswith("  HTTP-ACL")]
            assert acls == ["a-new_10002", "z-old_10001"]
            assert "x.example.com /a-new" not in text
        else:
            assert use_backends(text) == ["a-new_10002", "z-old_10001"]
            assert "host_x.example.com" not in " ".join(
                line for line in section(text, "frontend marathon_http_in")
                if "a-new" in line)
    # The newer app keeps its other vhost, its own frontend and mode http.
    new = next(s for s in result.services if s.app_id == "/a-new")
    assert new.vhosts == ("y.example.com",) and new.mode == "http"


def test_vhost_conflict_is_decided_by_age_then_version_then_id() -> None:
    by_version = [app("/a", 10001, {"HAPROXY_0_VHOST": "v.example.com"},
                      version="2019-01-01T00:00:00.000Z"),
                  app("/b", 10002, {"HAPROXY_0_VHOST": "v.example.com"},
                      version="2016-01-01T00:00:00.000Z")]
    assert [p.app_id for p in model(by_version).problems] == ["/a"]
    by_id = [app("/b", 10002, {"HAPROXY_0_VHOST": "v.example.com"}),
             app("/a", 10001, {"HAPROXY_0_VHOST": "v.example.com"})]
    assert [p.app_id for p in model(by_id).problems] == ["/b"]


def test_same_host_different_paths_is_no_conflict_but_same_path_is() -> None:
    apps = [app("/a", 10001, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": "/a"},
                changed=OLD),
            app("/b", 10002, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": "/b"}),
            app("/c", 10003, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": "/a"},
                changed=NEW)]
    result = model(apps)
    assert [(p.app_id, "v.example.com/a" in p.reason) for p in result.problems] == [("/c", True)]
    assert use_backends(render_config(result.services, DEFAULTS, OPTIONS)) == [
        "a_10001", "b_10002"]


# --------------------------------------------------------------------------- selection


def test_port_group_overrides_app_group() -> None:
    both = {"id": "/svc", "ports": [10001, 10002], "env": {},
            "labels": {"HAPROXY_GROUP": "internal", "HAPROXY_0_GROUP": "external"},
            "tasks": [{"id": "svc.1", "host": "10.0.0.1", "ports": [31001, 31002]}]}
    assert [s.bind_port for s in model([both], groups=["external"]).services] == [10001]
    assert [s.bind_port for s in model([both], groups=["internal"]).services] == [10002]
    assert [s.bind_port for s in model([both], groups=["*"]).services] == [10001, 10002]
    assert model([both]).services == ()  # no --group: only apps without groups


def test_enabled_and_strict_mode() -> None:
    apps = [app("/on", 10001, {"HAPROXY_0_ENABLED": "true"}),
            app("/off", 10002, {"HAPROXY_0_ENABLED": "false"}),
            app("/unset", 10003)]
    assert [s.app_id for s in model(apps).services] == ["/on", "/unset"]
    assert [s.app_id for s in model(apps, strict_mode=True).services] == ["/on"]
    assert model(apps, strict_mode=True).problems == ()


def test_auth_on_a_tcp_port_fails_closed() -> None:
    result = model([app("/db", 10001, {"HAPROXY_0_AUTH": f"r:u:{SHA512}"})])
    assert result.services == ()
    assert "needs mode http" in result.problems[0].reason


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


# --------------------------------------------------------------------------- backend options


def test_backend_options_render() -> None:
    labels = {"HAPROXY_0_VHOST": "secure.example.com", "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
              "HAPROXY_0_USE_HSTS": "true", "HAPROXY_0_STICKY": "true",
              "HAPROXY_0_STICKY_COOKIE": "SRVID", "HAPROXY_0_BALANCE": "leastconn",
              "HAPROXY_0_AUTH": f"ops:alice:{SHA512}",
              "HAPROXY_0_BIND_OPTIONS": "accept-proxy  maxconn 100"}
    text = render([app("/secure", 10001, labels)])
    assert section(text, "userlist user_secure_10001") == [f"  user alice password {SHA512}"]
    backend = section(text, "backend secure_10001")
    assert backend[:3] == ["  balance leastconn", "  mode http",
                           "  http-request redirect scheme https code 301 if !{ ssl_fc } "
                           "{ dst_port 80 }"]
    assert "  http-request auth realm ops unless { http_auth(user_secure_10001) }" in backend
    assert "  cookie SRVID insert indirect nocache dynamic" in backend
    assert sum(line.startswith("  dynamic-cookie-key ") for line in backend) == 1
    assert '  http-response set-header Strict-Transport-Security "max-age=15768000" ' \
           "if { ssl_fc }" in backend
    assert backend[-1].endswith(" 10.0.0.1:31001 check")  # the dynamic cookie: no 'cookie'
    assert section(text, "frontend secure_10001")[0] == "  bind *:10001 accept-proxy maxconn 100"
    # The redirect is not written into the shared frontends any more.
    assert "redirect" not in "\n".join(section(text, "frontend marathon_http_in"))


def test_defaults_unchanged_for_apps_without_new_labels() -> None:
    text = render([app("/plain", 10001, {"HAPROXY_0_STICKY": "true"})])
    assert section(text, "backend plain_10001")[:3] == [
        "  balance roundrobin", "  mode tcp",
        "  cookie mesosphere_server_id insert indirect nocache dynamic"]
    assert section(text, "frontend plain_10001")[0] == "  bind *:10001"
    assert "userlist" not in text and "Strict-Transport-Security" not in text


def test_new_labels_never_touch_legacy_fragment_output() -> None:
    # New keys on an app rendered with a full legacy override set: only the legacy
    # fragments' text (plus the new fragments for the new features) appears.
    labels = {"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_BALANCE": "leastconn",
              "HAPROXY_0_STICKY_COOKIE": "X", "HAPROXY_0_BIND_OPTIONS": "accept-proxy"}
    text = render([app("/a", 10001, labels)], LEGACY_SET)
    assert "leastconn" not in text and "accept-proxy" not in text
    assert re.search(r"^  HTTP-ACL a_example_com a.example.com /a a_10001$", text, re.M)


def test_sticky_server_line_says_check_once() -> None:
    """cookieOptions keeps servicerouter.py's ' check cookie NAME'; the default line
    leaves the cookie to the backend's dynamic cookie and says 'check' once."""
    check = {"protocol": "HTTP", "portIndex": 0, "path": "/health", "intervalSeconds": 5,
             "maxConsecutiveFailures": 2}
    text = render([app("/sticky", 10001, {"HAPROXY_0_STICKY": "true"}, healthChecks=[check]),
                   app("/plain", 10002, healthChecks=[check]), app("/bare", 10003)])
    assert section(text, "backend sticky_10001")[-1] == \
        "  server 10_0_0_1_31001 10.0.0.1:31001 check inter 5s fastinter 1s fall 3"
    assert section(text, "backend plain_10002")[-1] == \
        "  server 10_0_0_1_31002 10.0.0.1:31002 check inter 5s fastinter 1s fall 3"
    assert section(text, "backend bare_10003")[-1] == "  server 10_0_0_1_31003 10.0.0.1:31003 check"
    assert "check check" not in text
    # servicerouter.py's own server fragment still gets cookieOptions as it was.
    legacy = render([app("/sticky", 10001, {"HAPROXY_0_STICKY": "true"})], LEGACY_SET)
    assert " check cookie 10_0_0_1_31001" in legacy


def test_sticky_dynamic_cookie_key_is_stable_secret_and_per_backend() -> None:
    from servicerouter.render.config import dynamic_cookie_key
    from servicerouter.render.fragments import FragmentSet

    apps = [app("/a", 10001, {"HAPROXY_0_STICKY": "true"}),
            app("/b", 10002, {"HAPROXY_0_STICKY": "true"})]
    services = model(apps).services

    def keys(secret: str | None) -> list[str]:
        text = render_config(services, DEFAULTS, RenderOptions(cookie_secret=secret))
        return [line.split()[1] for line in text.splitlines()
                if line.startswith("  dynamic-cookie-key ")]

    one = keys("1" * 64)
    assert one == keys("1" * 64) and len(set(one)) == 2  # stable; one per backend
    assert set(one).isdisjoint(keys("2" * 64)) and set(one).isdisjoint(keys(None))
    assert keys(None) == [dynamic_cookie_key("a_10001", None), dynamic_cookie_key("b_10002", None)]
    assert "1" * 64 not in render_config(services, DEFAULTS, RenderOptions(cookie_secret="1" * 64))
    # only one fragment of the pair overridden: servers name their cookie again
    mixed = FragmentSet({**DEFAULTS.fragments, "HAPROXY_BACKEND_STICKY_OPTIONS":
                         LEGACY_SET["HAPROXY_BACKEND_STICKY_OPTIONS"]})
    text = render_config(services, mixed, OPTIONS)
    assert "dynamic" not in text
    assert section(text, "backend a_10001")[-1].endswith(" check cookie 10_0_0_1_31001")


# --------------------------------------------------------------------------- health-check paths


def test_health_check_path_with_a_quote_or_escape_skips_only_that_port() -> None:
    apps = [app(f"/hc{number}", 10001 + number, healthChecks=[
                {"protocol": "HTTP", "portIndex": 0, "path": path}])
            for number, path in enumerate(["/x'y", '/x"y', "/x\\x23", "/x\ny", "/" + "e" * 120_000,
                                           "/ok$;x?a=1&b=(2)"])]
    result = model(apps)
    assert [s.app_id for s in result.services] == ["/hc5"]  # '$' and ';' are literal
    reasons = {p.app_id: p.reason for p in result.problems}
    assert set(reasons) == {"/hc0", "/hc1", "/hc2", "/hc3", "/hc4"}
    assert "not a safe URL path" in reasons["/hc0"] and "'/x\\'y'" not in reasons["/hc0"]
    assert "health check path is 120001 characters long (at most 1024)" == reasons["/hc4"]
    assert all(p.port_index == 0 and p.key == "healthChecks" for p in result.problems)


def test_legacy_vhost_rules_keep_app_id_order_with_wildcards_and_weights() -> None:
    """servicerouter.py's ACL fragments match Host exactly: a wildcard gets no precedence
    there (id order, as servicerouter.py wrote it); paths and weights still rank."""
    apps = [app("/a", 10001, {"HAPROXY_0_VHOST": "*.c.example.com"}),
            app("/b", 10002, {"HAPROXY_0_VHOST": "b.example.com"}),
            app("/c", 10003, {"HAPROXY_0_VHOST": "c.example.com", "HAPROXY_0_BACKEND_WEIGHT": "5"})]
    text = render(apps, LEGACY_SET)
    assert [line.split()[2] for line in text.splitlines() if line.startswith("  HTTP-ACL")] == [
        "c.example.com", "*.c.example.com", "b.example.com"]
    # Our own fragments: exact hosts first, the weight only among them.
    assert use_backends(render(apps)) == ["c_10003", "b_10002", "a_10001"]


# --------------------------------------------------------------------------- several path prefixes

def routed_to(text: str, path: str, frontend: str = "frontend marathon_http_in") -> str | None:
    """The backend the shared frontend's rules send ``path`` to (one vhost, as HAProxy:
    the first use_backend whose path ACL matches; a rule without one matches all)."""
    acls: dict[str, list[tuple[bool, str]]] = {}
    for line in section(text, frontend):
        words = line.split()
        if words[0] == "acl" and words[2] == "path_beg":
            fold = words[3] == "-i"
            acls.setdefault(words[1], []).extend((fold, p) for p in words[4 if fold else 3:])
        elif words[0] == "use_backend":
            path_acls = [w for w in words[3:] if w in acls]
            if all(any(path.lower().startswith(p.lower()) if fold else path.startswith(p)
                       for fold, p in acls[name]) for name in path_acls):
                return words[1]
    return None


def test_several_prefixes_each_ranked_by_its_own_length() -> None:
    apps = [app("/root", 10001, {"HAPROXY_0_VHOST": "shop.example.com"}),
            app("/web", 10002, {"HAPROXY_0_VHOST": "shop.example.com",
                                "HAPROXY_0_PATH": "/api /static"}),
            app("/v2", 10003, {"HAPROXY_0_VHOST": "shop.example.com",
                               "HAPROXY_0_PATH": "/api/v2"})]
    result = model(apps)
    assert result.problems == ()
    web = next(s for s in result.services if s.app_id == "/web")
    assert web.paths == ("/api", "/static") and web.path == "/api /static"
    text = render_config(result.services, DEFAULTS, OPTIONS)
    http = section(text, "frontend marathon_http_in")
    # One ACL per prefix, distinct names: HAProxy would merge ACLs of one name.
    assert "  acl path_web_10002 path_beg /api" in http
    assert "  acl path_web_10002:1 path_beg /static" in http
    # /api/v2 and /static are as long: app id order; /api after both, the host last.
    assert use_backends(text) == ["v2_10003", "web_10002", "web_10002", "root_10001"]
    for path, backend in (("/api/v2/users", "v2_10003"), ("/api/v2", "v2_10003"),
                          ("/api/v1", "web_10002"), ("/api", "web_10002"),
                          ("/static/app.js", "web_10002"), ("/", "root_10001"),
                          ("/Static", "root_10001"), ("/apix", "web_10002")):
        assert routed_to(text, path) == backend, path
        assert routed_to(text, path, "frontend marathon_https_in") == backend, path


def test_ignore_case_prefixes_match_with_path_beg_i() -> None:
    apps = [app("/root", 10001, {"HAPROXY_0_VHOST": "shop.example.com"}),
            app("/web", 10002, {"HAPROXY_0_VHOST": "shop.example.com",
                                "HAPROXY_0_PATH": "-i /multiple /paths"})]
    text = render(apps)
    http = section(text, "frontend marathon_http_in")
    assert "  acl path_web_10002 path_beg -i /multiple" in http
    assert "  acl path_web_10002:1 path_beg -i /paths" in http
    assert routed_to(text, "/PATHS/x") == "web_10002"
    assert routed_to(text, "/Multiple") == "web_10002"
    assert routed_to(text, "/other") == "root_10001"
    assert routed_to(render([app("/web", 10002, {"HAPROXY_0_VHOST": "shop.example.com",
                                                 "HAPROXY_0_PATH": "/paths"})]),
                      "/PATHS") is None  # without -i the case counts


def test_root_among_the_prefixes_is_the_whole_host() -> None:
    result = model([app("/web", 10002, {"HAPROXY_0_VHOST": "shop.example.com",
                                        "HAPROXY_0_PATH": "/api /"})])
    (service,) = result.services
    assert service.paths == () and service.path is None
    text = render_config(result.services, DEFAULTS, OPTIONS)
    assert "path_beg" not in text and routed_to(text, "/anything") == "web_10002"


def test_prefix_conflicts_are_decided_one_prefix_at_a_time() -> None:
    apps = [app("/old", 10001, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": "/api"},
                changed=OLD),
            app("/new", 10002, {"HAPROXY_0_VHOST": "v.example.com",
                                "HAPROXY_0_PATH": "/api /static"}, changed=NEW)]
    result = model(apps)
    (problem,) = result.problems
    assert problem.app_id == "/new" and problem.kind == "conflict" and problem.owner == "/old"
    assert problem.route == "v.example.com/api" and problem.port_routes
    new = next(s for s in result.services if s.app_id == "/new")
    assert new.vhosts == ("v.example.com",)  # it keeps /static
    assert new.lost_paths == frozenset({("v.example.com", "/api")})
    text = render_config(result.services, DEFAULTS, OPTIONS)
    assert routed_to(text, "/api/x") == "old_10001"
    assert routed_to(text, "/static/x") == "new_10002"
    assert "  acl path_new_10002 path_beg /api" not in text


def test_a_port_losing_every_prefix_loses_the_vhost() -> None:
    apps = [app("/old", 10001, {"HAPROXY_0_VHOST": "v.example.com",
                                "HAPROXY_0_PATH": "/a /b"}, changed=OLD),
            app("/new", 10002, {"HAPROXY_0_VHOST": "v.example.com,w.example.com",
                                "HAPROXY_0_PATH": "/b /a"}, changed=NEW)]
    result = model(apps)
    assert [(p.app_id, p.route) for p in result.problems] == [
        ("/new", "v.example.com/a"), ("/new", "v.example.com/b")]
    new = next(s for s in result.services if s.app_id == "/new")
    assert new.vhosts == ("w.example.com",)
    text = render_config(result.services, DEFAULTS, OPTIONS)
    assert use_backends(text) == ["new_10002", "new_10002", "old_10001", "old_10001"]
    assert "use_backend new_10002 if host_v.example.com" not in text


def test_ignore_case_prefixes_conflict_with_every_spelling() -> None:
    def claims(old: str, new: str) -> list[str]:
        apps = [app("/old", 10001, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": old},
                    changed=OLD),
                app("/new", 10002, {"HAPROXY_0_VHOST": "v.example.com", "HAPROXY_0_PATH": new},
                    changed=NEW)]
        return [p.route for p in model(apps).problems]

    assert claims("/API", "-i /api") == ["v.example.com/api"]
    assert claims("-i /api", "/API /b") == ["v.example.com/API"]
    assert claims("-i /api", "-i /Api") == ["v.example.com/Api"]
    assert claims("/API", "/api") == []  # both match case: two routes
    assert claims("-i /api", "/apiv2") == []
