"""End to end: a live servicerouter (--sse --manage-haproxy on the emulator) takes rules
through its API: routes by them at once, map-only changes without a reload, Bamboo's
README examples, and two routers sharing one real ZooKeeper."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import LoadGenerator, RouterProcess, http_port
from tests.harness import Backend, free_port, http_get, wait_until
from tests.paths import REPO
from tests.rules.zk import ZooKeeper

pytestmark = pytest.mark.e2e

TOKEN = "rules-test-token"
BAMBOO = json.loads((REPO / "tests" / "fixtures" / "bamboo" / "readme_api.json").read_text())


def api(router: RouterProcess, method: str, path: str, body: Any = None,
        token: str | None = TOKEN, raw: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["X-Actor"] = "tester"
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return requests.request(method, f"http://127.0.0.1:{router.status_port}{path}", data=data,
                            headers=headers, timeout=10)


def routed(port: int, host: str, path: str = "/") -> str:
    reply = http_get(f"http://127.0.0.1:{port}{path}", host_header=host)
    return reply.text.strip() if reply.status_code == 200 else str(reply.status_code)


def web(emu: MarathonEmulator, backend: Backend, app_id: str, **labels: str) -> int:
    port = free_port()
    emu.put_app({"id": app_id, "portDefinitions": [{"port": port}], "labels": labels})
    emu.add_task(app_id, "127.0.0.1", [backend.port])
    return port


def test_rules_through_the_api_route_and_host_changes_need_no_reload(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    one, two = backend_factory("one"), backend_factory("two")
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web(emu, one, "/one", HAPROXY_0_VHOST="label.test")
        web(emu, two, "/two")
        router = start_router(emu, "--status-token", TOKEN)
        http = http_port(router)
        wait_until(lambda: routed(http, "label.test") == "one", 15)
        # writes need the token; a bad rule is refused and changes nothing
        assert api(router, "POST", "/api/rules", {"app_id": "/one"}, token=None).status_code == 401
        bad = api(router, "POST", "/api/rules", {"app_id": "/one", "hosts": ["a.test\n  bind :1"]})
        assert bad.status_code == 400 and bad.json()["field"] == "hosts"
        # preview: the diff the rule would cause, nothing applied
        preview = api(router, "POST", "/api/rules/preview",
                      {"app_id": "/one", "hosts": ["rule.test"]})
        assert preview.status_code == 200 and "rule.test" in preview.json()["diff"]
        assert routed(http, "rule.test") == "503" and routed(http, "label.test") == "one"
        before = router.status()
        start = time.monotonic()
        made = api(router, "PUT", "/api/rules//one:0", {"hosts": ["rule.test"]})
        assert made.status_code == 200, made.text
        wait_until(lambda: routed(http, "rule.test") == "one", 20.0, interval=0.02)
        took = time.monotonic() - start
        assert routed(http, "label.test") == "503"  # the rule won over the label
        wait_until(lambda: [s["rule"] for s in router.status()["services"]
                            if s["app"] == "/one"] == ["/one:0"], 20)  # origin shown
        for hosts in (["rule.test", "more.test"], ["moved.test"], ["*.wild.test"]):
            assert api(router, "PUT", "/api/rules//one:0", {"hosts": hosts}).status_code == 200
            probe = hosts[-1].replace("*", "x")
            wait_until(lambda probe=probe: routed(http, probe) == "one", 20, interval=0.02)
        changed = router.status()
        assert changed["reloads"] == before["reloads"], "host-only rule changes reloaded"
        assert changed["runtime_updates"] > before["runtime_updates"]
        # a ruled app's task events still take the task path (no full build)
        extra = backend_factory("one-b")
        emu.add_task("/one", "127.0.0.1", [extra.port])
        wait_until(lambda: {routed(http, "x.wild.test") for _ in range(8)} == {"one", "one-b"},
                   10)
        scaled = router.status()
        assert scaled["task_path_syncs"] > changed["task_path_syncs"]
        assert scaled["reloads"] == before["reloads"]
        # a rule for an app that does not exist yet: kept, shown as such, routes once it does
        assert api(router, "PUT", "/api/rules//three:0", {"hosts": ["three.test"]}).ok
        listed = api(router, "GET", "/api/rules").json()
        assert {r["id"]: r["standing"] for r in listed["rules"]} == {
            "/one:0": "ok", "/three:0": "no such app"}
        wait_until(lambda: router.status()["rules"]["unmatched"] == {"/three:0": "no such app"}, 20)
        web(emu, two, "/three")
        wait_until(lambda: routed(http, "three.test") == "two", 10)
        history = api(router, "GET", "/api/rules/history?limit=3").json()["changes"]
        assert [c["action"] for c in history] == ["create", "update", "update"]
        assert history[0]["actor"].startswith("tester") and history[1]["old"]["hosts"]
        assert api(router, "DELETE", "/api/rules//one:0").status_code == 200
        wait_until(lambda: routed(http, "label.test") == "one", 20)
    print(f"rule write to first routed request: {took:.3f}s")


def test_bamboo_readme_examples_replayed(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    app1 = backend_factory("app1")
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web(emu, app1, "/ExampleAppGroup/app1")
        web(emu, app1, "/anchor", HAPROXY_0_VHOST="anchor.test")  # the shared frontends bind
        router = start_router(emu, "--status-token", TOKEN)
        http = http_port(router)
        answers = []
        for request in BAMBOO["requests"]:
            reply = api(router, request["method"], request["path"], raw=request["body"])
            assert reply.status_code == 200, (request, reply.text)
            answers.append(reply.json())
            if request["method"] == "POST":
                wait_until(lambda: routed(http, "app-1.example.com") == "app1", 5)
            if request["method"] == "PUT":
                wait_until(lambda: routed(http, "any.test", "/GROUP/app-1/x") == "app1", 5)
        state, services, created, updated, deleted = answers
        assert set(state) == {"Apps", "Services"}
        apps = {app["Id"]: app for app in state["Apps"]}
        assert apps["/ExampleAppGroup/app1"]["Tasks"][0]["Host"] == "127.0.0.1"
        assert services == {}
        example = BAMBOO["example_services_answer"]["/payment-service"]
        assert set(example) <= set(created)  # Bamboo's shape: Id, Acl
        assert created["Id"] == "/ExampleAppGroup/app1"
        assert created["Acl"] == "hdr(host) -i app-1.example.com"
        assert updated["Acl"] == "path_beg -i /group/app-1"
        assert deleted == {}
        wait_until(lambda: routed(http, "any.test", "/group/app-1") == "503", 5)
        listed = api(router, "GET", "/api/services").json()
        assert listed == {}
        refused = api(router, "POST", "/api/services",
                      raw='{"id": "/x", "acl": "hdr(host) -i a.test or src 10.0.0.1"}')
        assert refused.status_code == 400 and "supported:" in refused.json()["error"]


def test_two_routers_share_rules_through_zookeeper(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
    zookeeper: ZooKeeper, tmp_path: Path,
) -> None:
    """A rule written through A's API routes through B's HAProxy within 1 s; ZooKeeper
    stopped for 10 s loses no request through B and no rule on either router."""
    shop = backend_factory("shop")
    store = f"zk://{zookeeper.hosts}/servicerouter"
    extra = ("--status-token", TOKEN, "--rules-store", store, "--rules-zk-auth", "edge:pw")
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web(emu, shop, "/shop")
        web(emu, shop, "/anchor", HAPROXY_0_VHOST="anchor.test")  # the shared frontends bind
        one = start_router(emu, *extra)
        two = start_router(emu, *extra)
        http_two = http_port(two)
        wait_until(lambda: two.status()["rules"]["connected"], 15)
        # a first write warms the fresh ZooKeeper (JVM) up; the measured one comes next
        assert api(one, "PUT", "/api/rules//anchor:0", {"hosts": ["warm.test"]}).ok
        wait_until(lambda: routed(http_two, "warm.test") == "shop", 10)
        start = time.monotonic()
        assert api(one, "PUT", "/api/rules//shop:0", {"hosts": ["shop.test"]}).ok
        wait_until(lambda: routed(http_two, "shop.test") == "shop", 1.0, interval=0.01,
                   message="a rule written through router A did not route through B in 1 s")
        took = time.monotonic() - start
        load = LoadGenerator([(http_two, "shop.test")], max_seconds=60).start()
        try:
            time.sleep(1)
            zookeeper.stop()
            wait_until(lambda: not two.status()["rules"]["connected"], 15)
            down = two.status()["rules"]
            assert down["disconnected_since"] and down["rules"] == 2
            refused = api(one, "PUT", "/api/rules//shop:0", {"hosts": ["x.test"]})
            assert refused.status_code == 503  # no write while ZooKeeper is away
            time.sleep(10)
            zookeeper.start()
            wait_until(lambda: one.status()["rules"]["connected"]
                       and two.status()["rules"]["connected"], 30)
            time.sleep(1)
        finally:
            load.stop()
        assert load.sent > 100 and not load.failures, load.failures[:5]
        for router in (one, two):
            listed = api(router, "GET", "/api/rules").json()["rules"]
            assert [r["id"] for r in listed] == ["/anchor:0", "/shop:0"]
        # and changes flow again, through B this time
        assert api(two, "PUT", "/api/rules//shop:0", {"hosts": ["shop2.test"]}).ok
        wait_until(lambda: routed(http_port(one), "shop2.test") == "shop", 2.0)
    print(f"router A write -> router B routes: {took:.3f}s; {load.sent} requests "
          "through B across a 10 s ZooKeeper outage, 0 failed")
