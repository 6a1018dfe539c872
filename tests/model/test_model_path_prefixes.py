"""model + render: HAPROXY_{n}_PATH with several prefixes (pure: no I/O, no HAProxy).

Each prefix is ranked by its own length, -i prefixes fold case, a root prefix is
the whole host, and conflicts are decided one prefix at a time.
"""

from __future__ import annotations

from servicerouter.render.config import render_config
from tests.model.features import (
    DEFAULTS,
    NEW,
    OLD,
    OPTIONS,
    app,
    model,
    render,
    section,
    use_backends,
)

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
