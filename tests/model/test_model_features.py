"""model + render for the label-driven routing features (pure: no I/O, no HAProxy).

Vhost lists and path routing (rule order), vhost conflicts decided by app age
with servicerouter.py's bytes kept when the oldest app sorts first, per-port
groups, HAPROXY_{n}_ENABLED with strict mode. IP-per-task and --health-check are in
test_model_task_selection.py, backend options in test_model_backend_options.py,
several path prefixes in test_model_path_prefixes.py; the shared apps in features.py.
"""

from __future__ import annotations

from servicerouter.render.config import host_acl_name, render_config
from tests.model.features import (
    DEFAULTS,
    LEGACY_SET,
    NEW,
    OLD,
    OPTIONS,
    SHA512,
    app,
    model,
    render,
    section,
    use_backends,
)

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
