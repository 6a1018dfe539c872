"""The dashboard's pure parts: snapshot rows, filter and pages, escaping, forms, states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply.runtime_api import RuntimeAPI
from servicerouter.apply.server_states import parse_show_stat, server_states
from servicerouter.engine.dashboard_snapshot import dashboard_snapshot
from servicerouter.model.services import build_model
from servicerouter.serve.dashboard import (
    PageQuery,
    SessionView,
    parse_query,
    render_dashboard,
    select_services,
)
from servicerouter.serve.dashboard_editor import FieldError, form_to_rule, rule_to_form
from tests.harness import Backend, HAProxy, free_port, wait_for_port

HOSTILE = '<script>alert("x")</script>'


def app(app_id: str, port: int, **labels: str) -> dict[str, Any]:
    return {"id": app_id, "ports": [port], "labels": labels, "env": {},
            "tasks": [{"id": f"{app_id[1:].replace('/', '_')}.1", "host": "10.0.0.1",
                       "ports": [31000 + port % 1000]}]}


def services(count: int = 3) -> tuple[Any, ...]:
    apps = [app(f"/team/app{i:03d}", 10000 + i, HAPROXY_0_VHOST=f"app{i:03d}.example.com")
            for i in range(count)]
    apps.append(app("/plain", 9000))
    apps.append(app("/shop", 9001, HAPROXY_0_VHOST="shop.test", HAPROXY_0_PATH="/api"))
    return build_model(apps, (), lambda host: host).services


def status(**extra: Any) -> dict[str, Any]:
    base = {"build": {"version": "9.9", "haproxy": "2.6"}, "last_sync": "2026-01-01T00:00:00Z",
            "marathon": {"host": "http://marathon.test:8080", "available": True},
            "apps": 5, "tasks": 5, "syncs": 3, "reloads": 2, "failed_reloads": 0,
            "runtime_updates": 7, "certificate_updates": 0, "certificates": [],
            "quarantined": [], "conflicts": [], "problems": [], "removal_hold": {"held": False}}
    return {**base, **extra}


def test_rows_show_origin_label_rule_or_port_and_orphan_rules() -> None:
    rule = {"id": "/shop:0", "app_id": "/shop", "port_index": 0, "hosts": ["rule.test"],
            "paths": []}
    orphan = {"id": "/later:0", "app_id": "/later", "port_index": 0, "hosts": ["later.test"]}
    snap = dashboard_snapshot(status(), services(1), [rule, orphan])
    rows = {row["app"]: row for row in snap["services"]}
    assert rows["/plain"]["origin"] == "port"
    assert rows["/team/app000"]["origin"] == "label"
    assert rows["/team/app000"]["label_vhost"] == "app000.example.com"
    shop = rows["/shop"]
    assert shop["origin"] == "rule" and shop["rule"]["hosts"] == ["rule.test"]
    assert (shop["label_vhost"], shop["label_path"]) == ("shop.test", "/api")  # both shown
    assert [r["id"] for r in snap["orphan_rules"]] == ["/later:0"]
    html = render_dashboard(snap, select_services(snap["services"], PageQuery("shop")), {},
                            SessionView())
    assert "rule: rule.test" in html and "label: shop.test" in html and "(overridden)" in html
    assert "Rules for apps not running" in html and "/later:0" in html


def test_filter_and_pages_bound_the_table() -> None:
    rows = dashboard_snapshot(status(), services(120), [])["services"]
    assert len(rows) == 122
    first = select_services(rows, PageQuery("", 1, 50))
    assert (len(first.rows), first.pages, first.matching) == (50, 3, 122)
    last = select_services(rows, PageQuery("", 99, 50))  # past the end: the last page
    assert (last.number, len(last.rows)) == (3, 22)
    by_host = select_services(rows, PageQuery("APP07", 1, 50))  # case-insensitive
    assert [r["app"] for r in by_host.rows] == [f"/team/app07{i}" for i in range(10)]
    by_path = select_services(rows, PageQuery("/api", 1, 50))
    assert [r["app"] for r in by_path.rows] == ["/shop"]
    assert parse_query("q=%20x%20&page=2&per_page=9999") == PageQuery("x", 2, 500)
    assert parse_query("page=abc&per_page=-4") == PageQuery("", 1, 1)
    assert first.link(2) == "/?page=2"
    assert select_services(rows, PageQuery("a b", 1, 10)).link(2) == "/?page=2&q=a+b&per_page=10"


def test_every_hostile_string_is_escaped() -> None:
    snap = dashboard_snapshot(status(
        quarantined=[{"app": HOSTILE, "reason": HOSTILE, "since": "t", "cause": HOSTILE,
                      "frozen_services": 1}],
        conflicts=[{"route": HOSTILE, "owner": HOSTILE,
                    "losers": [{"app": HOSTILE, "port_index": 0}]}],
        problems=[HOSTILE], last_sync_error=HOSTILE,
        marathon={"host": HOSTILE, "available": False, "outage_since": "t", "error": HOSTILE},
        certificates=[{"source": HOSTILE, "names": [HOSTILE], "not_after": HOSTILE,
                       "days_left": 3, "expiring": True}],
        removal_hold={"held": True, "reason": HOSTILE, "sample_backends": [HOSTILE]},
    ), services(1), [{"id": "/x:0", "app_id": "/x", "port_index": 0, "hosts": [HOSTILE]}])
    page = select_services(snap["services"], PageQuery(HOSTILE))
    html = render_dashboard(snap, page, {}, SessionView(), states_error=HOSTILE)
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 14
    assert "Quarantined apps" in html and "Held removal" in html and "renew" in html


def test_server_states_are_shown_by_backend_and_server() -> None:
    snap = dashboard_snapshot(status(), services(1), [])
    page = select_services(snap["services"], PageQuery("app000"))
    row = page.rows[0]
    server = row["servers"][0].name
    html = render_dashboard(snap, page, {row["backend"]: {server: {
        "status": "DOWN", "check_status": "L4CON"}}}, SessionView())
    assert 'class="tag DOWN"' in html and "L4CON" in html and "10.0.0.1:31000" in html
    html = render_dashboard(snap, page, {}, SessionView(), states_error="no Runtime API")
    assert "Server states unavailable: no Runtime API" in html


def test_show_stat_from_a_real_haproxy(tmp_path: Path, haproxy_bin: str) -> None:
    """The states come from HAProxy itself: up, down (failed check) and maintenance."""
    import time

    with Backend("up") as alive:
        dead_port = free_port()  # nothing listens: its check fails
        socket_path = tmp_path / "stats.sock"
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            "global\n"
            f"  stats socket {socket_path} mode 600 level admin\n"
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n"
            "  timeout server 5s\n"
            # a service port's frontend has its backend's name (show stat by name
            # would pick the frontend: its servers are asked for by backend id)
            f"frontend web_10000\n  bind 127.0.0.1:{front}\n  default_backend web_10000\n"
            "backend web_10000\n"
            f"  server up 127.0.0.1:{alive.port} check inter 100ms\n"
            f"  server dead 127.0.0.1:{dead_port} check inter 100ms fall 1\n"
            f"  server parked 127.0.0.1:{alive.port} disabled\n")
        proxy = HAProxy(config, haproxy_bin=haproxy_bin)
        proxy.start()
        try:
            wait_for_port(front)
            api = RuntimeAPI(str(socket_path))
            deadline = time.monotonic() + 10
            while True:
                states, error = server_states(api, ["web_10000", "missing", "bad name;x"])
                web = states.get("web_10000", {})
                if web.get("dead", {}).get("status", "").startswith("DOWN") \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            proxy.stop()
    assert error == ""
    assert web["up"]["status"].startswith("UP") and web["up"]["check_status"] == "L4OK"
    assert web["dead"]["status"].startswith("DOWN")
    assert web["parked"]["status"] == "MAINT"
    assert set(states) == {"web_10000"}  # an unknown backend answers nothing


def test_server_states_without_a_runtime_api_say_why() -> None:
    assert server_states(None, ["b"]) == ({}, "no Runtime API (run with --manage-haproxy "
                                               "or --haproxy-socket)")
    _, error = server_states(RuntimeAPI("/nonexistent/socket"), ["b"])
    assert "/nonexistent/socket" in error


def test_parse_show_stat_skips_summaries_and_reads_several_answers() -> None:
    text = ("# pxname,svname,scur,weight,status,check_status,lastchg,addr\n"
            "b1,FRONTEND,0,,OPEN,,,\nb1,s1,2,1,UP,L7OK,5,10.0.0.1:80\nb1,BACKEND,2,1,UP,,5,\n\n"
            "# pxname,svname,status\nb2,s9,no check\n")
    assert parse_show_stat(text) == {
        "b1": {"s1": {"status": "UP", "check_status": "L7OK", "weight": "1", "scur": "2",
                      "lastchg": "5", "addr": "10.0.0.1:80"}},
        "b2": {"s9": {"status": "no check", "check_status": "", "weight": "", "scur": "",
                      "lastchg": "", "addr": ""}}}


def test_form_fields_become_the_rules_json_and_back() -> None:
    form = {"app_id": " /web ", "port_index": "1", "hosts": "a.test, *.b.test  c.test",
            "paths": "/api /v2", "path_ignore_case": "on", "headers": "X-Canary = yes\n\nX-Ver ^= 2.\n",
            "allow_cidrs": "10.0.0.0/8,192.168.0.0/16", "priority": "5", "weight": "",
            "note": " canary "}
    data = form_to_rule(form)
    assert data == {"app_id": "/web", "port_index": 1, "hosts": ["a.test", "*.b.test", "c.test"],
                    "paths": ["/api", "/v2"], "path_ignore_case": True,
                    "headers": [{"name": "X-Canary", "value": "yes", "match": "exact"},
                                {"name": "X-Ver", "value": "2.", "match": "prefix"}],
                    "allow_cidrs": ["10.0.0.0/8", "192.168.0.0/16"], "priority": 5,
                    "note": "canary"}
    back = rule_to_form({**data, "id": "/web:1", "weight": 100})
    assert form_to_rule(back) == {**data, "weight": 100}


@pytest.mark.parametrize(("fields", "field"), [
    ({"port_index": "one"}, "port_index"),
    ({"priority": "1.5"}, "priority"),
    ({"weight": "lots"}, "weight"),
    ({"headers": "X-Canary yes"}, "headers"),
    ({"headers": "X-Canary ="}, "headers"),
])
def test_unreadable_form_fields_name_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(FieldError) as caught:
        form_to_rule({"app_id": "/web", **fields})
    assert caught.value.field == field


def test_a_5000_app_page_holds_one_page_of_rows() -> None:
    """The timing is in docs (benchmark note); here: the page never holds the whole table."""
    snap = dashboard_snapshot(status(), services(5000), [])
    page = select_services(snap["services"], parse_query("q=app4"))
    html = render_dashboard(snap, page, {}, SessionView())
    assert page.matching == 1100 and html.count('<tr class="svc">') == 50
    assert len(html) < 100_000


def test_labels_shown_are_the_apps_own_not_the_rule_overlay() -> None:
    """Rules are laid over a copy of the app; the dashboard shows both, so it reads the
    labels from Marathon's app as fetched."""
    from servicerouter.rules.model import rule_to_json, validate_rule
    from servicerouter.rules.overlay import overlay_rules

    raw = [app("/shop", 9001, HAPROXY_0_VHOST="shop.test")]
    rule = validate_rule({"app_id": "/shop", "hosts": ["rule.test"]})
    routed = build_model(overlay_rules(raw, {rule.id: rule}), (), lambda host: host).services
    (row,) = dashboard_snapshot(status(), routed, [rule_to_json(rule)],
                                {a["id"]: a for a in raw})["services"]
    assert row["vhosts"] == ["rule.test"] and row["label_vhost"] == "shop.test"
    assert row["origin"] == "rule"


def test_the_rule_stores_health_is_shown_and_an_outage_named() -> None:
    store = {"backend": "zookeeper", "connected": False, "last_error": "ConnectionLoss",
             "rules": 3, "unmatched": {}}
    snap = dashboard_snapshot(status(rules=store), services(1), [])
    assert snap["rules_store"] == store and snap["rules"] == []
    html = render_dashboard(snap, select_services(snap["services"], PageQuery()), {},
                            SessionView())
    assert "3 rules" in html and "DISCONNECTED" in html and "ConnectionLoss" in html
    snap = dashboard_snapshot(status(rules={**store, "connected": True}), services(1), [])
    html = render_dashboard(snap, select_services(snap["services"], PageQuery()), {},
                            SessionView())
    assert "zookeeper: connected" in html.replace("\n", " ")


def test_rows_are_built_once_per_services_and_rules_asked_about() -> None:
    """Built when a page asks, reused until a sync gives new services or a rule changes."""
    from servicerouter.engine.dashboard_snapshot import DashboardData

    current = {"services": services(2), "rules": []}
    data = DashboardData(status=status, services=lambda: current["services"],
                         rules=lambda: current["rules"])
    first = data.snapshot()["services"]
    assert data.snapshot()["services"] is first  # same sync, same rules: the same rows
    current["rules"] = [{"id": "/plain:0", "app_id": "/plain", "port_index": 0,
                         "hosts": ["p.test"]}]
    with_rule = data.snapshot()["services"]
    assert with_rule is not first
    assert {r["app"]: r["origin"] for r in with_rule}["/plain"] == "rule"
    current["services"] = services(3)  # a sync
    assert len(data.snapshot()["services"]) == len(first) + 1
