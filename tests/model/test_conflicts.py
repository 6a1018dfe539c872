"""Route conflicts: structured problems, the /status list and the metric.

A vhost(+path) or bind port claimed by several apps goes to the app whose
configuration is oldest; the others are reported as conflicts naming the route,
the owner and every losing claim, in /status and as servicerouter_route_conflicts.
"""

from __future__ import annotations

import json
from pathlib import Path

from servicerouter.engine.live import LiveRouter
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.serve.status import Metrics, StatusServer, route_conflicts
from servicerouter.source.marathon import SnapshotSource
from tests.harness import http_get

OLD, MID, NEW = "2015-01-01T00:00:00.000Z", "2018-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"


def app(app_id: str, port: int, changed: str, **labels: str) -> dict:
    return {"id": app_id, "ports": [port], "labels": labels, "env": {},
            "versionInfo": {"lastConfigChangeAt": changed},
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "10.0.0.1", "ports": [31000 + port % 1000]}]}


def model(apps: list[dict]):
    return build_model(apps, (), lambda host: host, reserved_ports=(80, 443, 81, 9090))


CONTESTED = [
    app("/web-old", 10001, OLD, HAPROXY_0_VHOST="www.example.com", HAPROXY_0_PATH="/api"),
    app("/web-mid", 10002, MID, HAPROXY_0_VHOST="WWW.example.com", HAPROXY_0_PATH="/api"),
    app("/web-new", 10003, NEW, HAPROXY_0_VHOST="www.example.com", HAPROXY_0_PATH="/api"),
    app("/tcp-old", 10010, OLD),
    app("/tcp-new", 20000, NEW, HAPROXY_0_PORT="10010"),
    app("/acl-old", 10020, OLD, HAPROXY_0_VHOST="a.example.com"),
    app("/acl-new", 10021, NEW, HAPROXY_0_VHOST="a_example.com"),
    app("/alone", 10030, NEW, HAPROXY_0_VHOST="alone.example.com"),
]

EXPECTED = [
    {"route": ":10010", "owner": "/tcp-old",
     "losers": [{"app": "/tcp-new", "port_index": 0}]},
    {"route": "a_example.com", "owner": "/acl-old",
     "losers": [{"app": "/acl-new", "port_index": 0}]},
    {"route": "www.example.com/api", "owner": "/web-old",
     "losers": [{"app": "/web-mid", "port_index": 0}, {"app": "/web-new", "port_index": 0}]},
]


def test_conflict_problems_carry_route_and_owner() -> None:
    problems = [p for p in model(CONTESTED).problems if p.kind == "conflict"]
    by_app = {p.app_id: p for p in problems}
    assert set(by_app) == {"/web-mid", "/web-new", "/tcp-new", "/acl-new"}
    assert (by_app["/web-new"].route, by_app["/web-new"].owner) == ("www.example.com/api",
                                                                    "/web-old")
    assert (by_app["/tcp-new"].route, by_app["/tcp-new"].owner) == (":10010", "/tcp-old")
    assert (by_app["/acl-new"].route, by_app["/acl-new"].owner) == ("a_example.com", "/acl-old")
    # The log line is what it was: the structured fields add to it, never replace it.
    assert str(by_app["/tcp-new"]) == \
        "app '/tcp-new' port index 0: bind port 10010 is already routed for older app /tcp-old"


def test_other_problems_are_not_conflicts() -> None:
    apps = [app("/bad", 10001, OLD, HAPROXY_0_PORT="nope"),
            app("/shared", 10002, OLD, HAPROXY_0_PORT="80")]
    problems = model(apps).problems
    assert problems and all(p.kind is None for p in problems)
    assert route_conflicts(problems) == []


def test_route_conflicts_groups_losing_claims_by_route() -> None:
    assert route_conflicts(model(CONTESTED).problems) == EXPECTED
    assert route_conflicts(model(list(reversed(CONTESTED))).problems) == EXPECTED


def _live(tmp_path: Path, apps: list[dict]) -> tuple[LiveRouter, Path]:
    state = tmp_path / "apps.json"
    state.write_text(json.dumps({"apps": apps}))
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), groups=("*",),
                              validate=False, reload=None, state_dir=str(tmp_path / "state"),
                              certs_dir=None, render_options=RenderOptions(bind_addr="127.0.0.1"))
    router = Router(SnapshotSource(f"file:{state}"), load_fragments([]), settings)
    return LiveRouter(router, reloader=None, metrics=Metrics()), state


def test_status_and_metrics_list_conflicts_and_clear_them(tmp_path: Path) -> None:
    live, state = _live(tmp_path, CONTESTED)
    live.request_resync("test")
    assert live.step()
    server = StatusServer(("127.0.0.1", 0), live.metrics, live.snapshot, live.health)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert json.loads(http_get(base + "/status").text)["conflicts"] == EXPECTED
        metrics = http_get(base + "/metrics").text
        assert "# TYPE servicerouter_route_conflicts gauge" in metrics
        assert "\nservicerouter_route_conflicts 4\n" in metrics

        # The newer claimants go away: the conflicts and the gauge go with them.
        state.write_text(json.dumps({"apps": [a for a in CONTESTED
                                              if a["id"] in ("/web-old", "/tcp-old")]}))
        live.request_resync("test")
        assert live.step()
        assert json.loads(http_get(base + "/status").text)["conflicts"] == []
        assert "\nservicerouter_route_conflicts 0\n" in http_get(base + "/metrics").text
    finally:
        server.stop()


# --------------------------------------------------------------------------- takeovers
# Who really gets a request: the first use_backend of the shared HTTP frontend whose
# ACLs all match, as HAProxy evaluates them (the default fragments' ACL forms).


def first_backend(config: str, host: str, path: str = "/") -> str | None:
    lines = config.split("frontend marathon_http_in\n", 1)[1].split("\nfrontend ", 1)[0]
    name_only = host.rsplit(":", 1)[0] if ":" in host else host
    acls: dict[str, bool] = {}
    for line in lines.splitlines():
        words = line.split()
        if words[:1] == ["acl"]:
            name, fetch, value = words[1], words[2], words[-1].lower()
            if fetch == "hdr(host)":
                hit = host.lower() == value
            elif fetch == "req.hdr(host),field(1,:)" and "-m" in words:
                hit = name_only.lower().endswith(value)
            elif fetch == "req.hdr(host),field(1,:)":
                hit = name_only.lower() == value
            elif fetch == "path_beg":
                hit = path.startswith(words[-1])
            else:
                raise AssertionError(f"unknown ACL form {line!r}")
            acls[name] = acls.get(name, False) or hit
        elif words[:1] == ["use_backend"]:
            if all(acls.get(name, False) for name in words[3:]):
                return words[1]
    return None


def _render(apps: list[dict]) -> tuple[str, list]:
    result = model(apps)
    options = RenderOptions(crt_list="/state/crt-list")
    from servicerouter.render.config import render_config

    return render_config(result.services, load_fragments([]), options), list(result.problems)


def _steal_apps(newcomer_id: str, **labels: str) -> list[dict]:
    return [app("/owner", 10000, OLD, HAPROXY_0_VHOST="shop.example.com"),
            app(newcomer_id, 10001, NEW, **labels)]


def test_root_path_is_the_same_route_as_no_path() -> None:
    """PATH=/ matches everything: a newer app with it is a conflict, not a takeover."""
    for newcomer in ("/zzz-newcomer", "/aaa-newcomer"):  # sorting after and before the owner
        config, problems = _render(_steal_apps(newcomer, HAPROXY_0_VHOST="shop.example.com",
                                               HAPROXY_0_PATH="/"))
        for path in ("/", "/cart", "/api/v1"):
            assert first_backend(config, "shop.example.com", path) == "owner_10000", newcomer
        (conflict,) = [p for p in problems if p.kind == "conflict"]
        assert (conflict.app_id, conflict.route, conflict.owner) == (newcomer, "shop.example.com",
                                                                      "/owner")
        assert "newcomer" not in config.split("frontend marathon_https_in")[1].split(
            "\nfrontend ")[0]  # nor on :443


def test_root_path_of_the_oldest_app_keeps_the_host() -> None:
    apps = [app("/owner", 10000, OLD, HAPROXY_0_VHOST="shop.example.com", HAPROXY_0_PATH="/"),
            app("/aaa-newcomer", 10001, NEW, HAPROXY_0_VHOST="shop.example.com")]
    config, problems = _render(apps)
    assert first_backend(config, "shop.example.com", "/x") == "owner_10000"
    assert [p.app_id for p in problems if p.kind == "conflict"] == ["/aaa-newcomer"]


def test_a_longer_path_still_shares_the_host() -> None:
    """Path routing is the feature, not a takeover: /api goes to the app that asked."""
    config, problems = _render(_steal_apps("/zzz-api", HAPROXY_0_VHOST="shop.example.com",
                                           HAPROXY_0_PATH="/api"))
    assert first_backend(config, "shop.example.com", "/api/x") == "zzz-api_10001"
    assert first_backend(config, "shop.example.com", "/cart") == "owner_10000"
    assert not [p for p in problems if p.kind == "conflict"]


def test_exact_host_ranks_before_a_heavier_wildcard() -> None:
    """A weight orders equally specific rules only; it never lets a wildcard go first."""
    for newcomer in ("/zzz-newcomer", "/aaa-newcomer"):
        config, problems = _render(_steal_apps(newcomer, HAPROXY_0_VHOST="*.example.com",
                                               HAPROXY_0_BACKEND_WEIGHT="100"))
        wild = newcomer[1:] + "_10001"
        assert first_backend(config, "shop.example.com") == "owner_10000"
        assert first_backend(config, "shop.example.com:80") == "owner_10000"
        assert first_backend(config, "other.example.com") == wild  # the rest is its own
        assert not problems
        # ...nor with a path: the exact host's owner keeps all of its paths.
        config, _ = _render(_steal_apps(newcomer, HAPROXY_0_VHOST="*.example.com",
                                        HAPROXY_0_PATH="/api", HAPROXY_0_BACKEND_WEIGHT="100"))
        assert first_backend(config, "shop.example.com", "/api") == "owner_10000"
        assert first_backend(config, "other.example.com", "/api") == wild


def test_weight_orders_equally_specific_rules() -> None:
    """Two wildcards covering one host: the heavier goes first, whatever the ids."""
    apps = [app("/a-narrow", 10000, OLD, HAPROXY_0_VHOST="*.b.example.com"),
            app("/z-broad", 10001, NEW, HAPROXY_0_VHOST="*.example.com",
                HAPROXY_0_BACKEND_WEIGHT="10")]
    config, _ = _render(apps)
    assert first_backend(config, "x.b.example.com") == "z-broad_10001"
    apps[1]["labels"]["HAPROXY_0_BACKEND_WEIGHT"] = "0"
    config, _ = _render(apps)
    assert first_backend(config, "x.b.example.com") == "a-narrow_10000"  # id order on a tie


def test_a_lost_path_prefix_names_the_path_setting() -> None:
    """The log line names what was left out: the PATH prefix, while the port still routes."""
    result = model(CONTESTED[:3])
    lost = [p for p in result.problems if p.kind == "conflict"]
    assert {(p.app_id, p.key, p.value) for p in lost} == {
        ("/web-mid", "HAPROXY_0_PATH", "/api"), ("/web-new", "HAPROXY_0_PATH", "/api")}
    assert all(p.port_routes for p in lost)
    assert "ignored HAPROXY_0_PATH='/api'" in lost[0].log_line()
