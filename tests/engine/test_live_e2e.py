"""End to end: servicerouter --sse --manage-haproxy under churn, an outage and a bad app.

A real servicerouter process follows the emulator's event stream and runs a
real HAProxy; real backend processes answer; a bounded load generator (fixed
request budget *and* deadline, 127.0.0.1 only) sends HTTP through HAProxy the
whole time and every failed request is counted. The router and the load live in
``tests/engine/live_router.py``; busy ports are in ``test_live_busy_ports.py``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servicerouter import __version__
from servicerouter.apply.haproxy import haproxy_version
from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_rig import BAD_TEMPLATE
from tests.engine.live_router import (
    LoadGenerator,
    RouterProcess,
    TwoVhostApps,
    answer,
    http_port,
    servers_of,
    web_app,
)
from tests.harness import Backend, free_port, http_get, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = float(os.environ.get("SR_E2E_OUTAGE_SECONDS", "30"))


# --------------------------------------------------------------------------- tests


def test_churn_scale_without_reloads_and_no_failed_request(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    pool = [backend_factory(f"w{i}") for i in range(4)]
    other = backend_factory("o0")
    web_port, other_port = free_port(), free_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.put_app(web_app(web_port))
        emu.put_app({"id": "/other", "portDefinitions": [{"port": other_port}],
                     "labels": {"HAPROXY_0_VHOST": "other-0.test"}})
        tasks = {0: emu.add_task("/web", "127.0.0.1", [pool[0].port])["id"]}
        emu.add_task("/other", "127.0.0.1", [other.port])
        router = start_router(emu)
        front = http_port(router)
        wait_until(lambda: answer(web_port) == "w0" and answer(front, "web.test") == "w0", 15)
        # which servicerouter, Python and HAProxy run: /status and servicerouter_build_info
        build = {"version": __version__, "python": platform.python_version(),
                 "haproxy": haproxy_version("haproxy")}
        assert router.status()["version"] == __version__ and router.status()["build"] == build
        labels = ",".join(f'{key}="{build[key]}"' for key in ("haproxy", "python", "version"))
        assert f"servicerouter_build_info{{{labels}}} 1" in router.metrics().splitlines()

        load = LoadGenerator([(web_port, None), (front, "web.test")]).start()
        try:
            before = router.status()
            rng = random.Random(7)
            for _step in range(100):
                up = len(tasks) == 1 or (len(tasks) < len(pool) and rng.random() < 0.5)
                if up:
                    index = rng.choice([i for i in range(len(pool)) if i not in tasks])
                    tasks[index] = emu.add_task("/web", "127.0.0.1", [pool[index].port])["id"]
                else:
                    index = rng.choice(sorted(tasks))
                    emu.kill_task("/web", tasks.pop(index))
                time.sleep(0.05)
            expected = {f"127.0.0.1:{pool[i].port}" for i in tasks}
            wait_until(lambda: servers_of(router.status(), "/web") == expected, 15,
                       message="scale changes did not converge")
            after_scale = router.status()
            assert after_scale["reloads"] == before["reloads"], "scale-only changes reloaded"
            assert after_scale["runtime_updates"] > before["runtime_updates"]
            wait_until(lambda: {answer(web_port) for _ in range(12)}
                       == {f"w{i}" for i in tasks}, 15)

            for change in range(1, 21):
                # a new vhost alone is a map entry (no reload): the balance change reloads
                host = f"other-{change}.test"
                emu.put_app({"id": "/other", "portDefinitions": [{"port": other_port}],
                             "labels": {"HAPROXY_0_VHOST": host,
                                        "HAPROXY_0_BALANCE": ("roundrobin", "leastconn")[
                                            change % 2]}})
                wait_until(lambda host=host: answer(front, host) == "o0", 15,
                           message=f"vhost {host} not routed")
            # the worker serves before the master confirms: the count follows shortly
            wait_until(lambda: router.status()["reloads"] - after_scale["reloads"] >= 20, 10)
            final = router.status()
        finally:
            load.stop()
        assert final["reloads"] - after_scale["reloads"] == 20
        assert load.sent > 200
        assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
        metrics = router.metrics()
        assert "servicerouter_runtime_updates_total" in metrics
        assert 'servicerouter_events_total{type="status_update_event"}' in metrics


def test_outage_and_bad_app(
    tmp_path: Path, start_router: Callable[..., RouterProcess],
    backend_factory: Callable[..., Backend],
) -> None:
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "HAPROXY_BACKEND_HEAD.j2").write_text(BAD_TEMPLATE)
    w0, w1, w2 = (backend_factory(f"w{i}") for i in range(3))
    bad = backend_factory("bad")
    web_port, bad_port = free_port(), free_port()
    emu = MarathonEmulator(keepalive_interval=1.0).start()
    try:
        emu.put_app(web_app(web_port))
        emu.add_task("/web", "127.0.0.1", [w0.port])
        router = start_router(emu, "--templates-dir", str(templates))
        wait_until(lambda: answer(web_port) == "w0", 15)
        load = LoadGenerator([(web_port, None)]).start()
        try:
            # a bad app arrives; a good change in the same moment must still apply
            emu.put_app({"id": "/bad", "portDefinitions": [{"port": bad_port}],
                         "labels": {"EXTRA": "no-such-directive at-all"}})
            emu.add_task("/bad", "127.0.0.1", [bad.port])
            emu.add_task("/web", "127.0.0.1", [w1.port])
            wait_until(lambda: [q["app"] for q in router.status()["quarantined"]] == ["/bad"], 15)
            wait_until(lambda: {answer(web_port) for _ in range(6)} == {"w0", "w1"}, 15)
            assert "servicerouter_quarantined_apps 1" in router.metrics()
            assert "quarantined" in router.log()

            # Marathon goes away for a while; its state changes meanwhile
            emu.stop()
            wait_until(lambda: not router.status()["marathon"]["available"], 15)
            emu.add_task("/web", "127.0.0.1", [w2.port])
            outage_end = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_end:
                status = router.status()
                assert status["marathon"]["available"] is False
                assert status["haproxy"]["running"]
                assert {answer(web_port) for _ in range(4)} <= {"w0", "w1"}
                time.sleep(min(2.0, max(0.0, outage_end - time.monotonic())))
            fetches_before = len(emu.request_log)
            emu.start()
            wait_until(lambda: router.status()["marathon"]["available"], 15,
                       message="outage not over after Marathon came back")
            wait_until(lambda: {answer(web_port) for _ in range(9)} == {"w0", "w1", "w2"}, 15)
            resyncs = [t for _m, t in emu.request_log[fetches_before:]
                       if t == "/v2/apps?embed=apps.tasks"]
            assert len(resyncs) == 1, resyncs
            assert [q["app"] for q in router.status()["quarantined"]] == ["/bad"]
        finally:
            load.stop()
        assert load.sent > 100
        assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
    finally:
        emu.stop()


def test_event_latency_benchmark_quick() -> None:
    """The benchmark stays runnable alone; its task events never reload, and with the
    default settings they take the task path."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "event_latency.py"),
                           "--quick", "--json"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(results) == 2  # default settings, then --health-check
    for result in results:
        assert result["reloads"] == 0
        assert all(row["n"] == 3 and row["p50_ms"] > 0 for row in result["kinds"].values())
    assert results[0]["task_path_syncs"] >= 1
    assert results[1]["task_path_syncs"] >= 1  # health changes too, with --health-check
    assert {"add http", "remove tcp", "vhost http"} <= set(results[0]["kinds"])
    for result in results:  # every trial's event took the task (or app) path
        assert result["paths"]["full"] == 0, result["paths"]["full_reasons"]
    assert {"health-down http", "health-up tcp"} <= set(results[1]["kinds"])


# --------------------------------------------------------------------------- balance kinds


def test_balance_kinds(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    """Hash balances and sticky backends scale live; a sticky client keeps its server.

    BALANCE=source scales through the Runtime API (hash-type consistent).  A sticky
    backend uses HAProxy's dynamic cookies (hash of a secret key and the server's
    address), so its server lines carry no ``cookie`` that ``add server`` would refuse:
    servers are added and removed with 0 reloads, a client holding the cookie of a
    server added live stays on it while others come and go, and still after a reload
    (the cookie the Runtime API made is the one the config gives)."""
    pool = [backend_factory(f"w{i}") for i in range(4)]
    src_port, sticky_port = free_port(), free_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.put_app({"id": "/src", "portDefinitions": [{"port": src_port}],
                     "labels": {"HAPROXY_0_BALANCE": "source"}})
        emu.put_app({"id": "/sticky", "portDefinitions": [{"port": sticky_port}],
                     "labels": {"HAPROXY_0_VHOST": "s.test", "HAPROXY_0_STICKY": "true"}})
        emu.add_task("/src", "127.0.0.1", [pool[0].port])
        tasks = {0: emu.add_task("/sticky", "127.0.0.1", [pool[0].port])["id"]}
        router = start_router(emu)
        wait_until(lambda: answer(src_port) == "w0" and answer(sticky_port) == "w0", 15)
        config = (router.workdir / "haproxy.cfg").read_text()
        assert "cookie mesosphere_server_id insert indirect nocache dynamic" in config
        assert " cookie 127_0_0_1_" not in config  # no explicit cookie on server lines
        before = router.status()
        emu.add_task("/src", "127.0.0.1", [pool[1].port])
        wait_until(lambda: len(servers_of(router.status(), "/src")) == 2, 15)
        mid = router.status()
        assert mid["reloads"] == before["reloads"], "BALANCE=source scale-up reloaded"
        assert mid["runtime_updates"] > before["runtime_updates"]

        url = f"http://127.0.0.1:{sticky_port}/"
        for index in (1, 2):
            tasks[index] = emu.add_task("/sticky", "127.0.0.1", [pool[index].port])["id"]
        wait_until(lambda: len(servers_of(router.status(), "/sticky")) == 3, 15)
        # every server, the live-added ones too, answers and sets its own cookie
        cookies: dict[str, str] = {}

        def all_cookies() -> bool:
            reply = http_get(url)
            if reply.status_code == 200 and reply.cookies.get("mesosphere_server_id"):
                cookies[reply.text.strip()] = reply.cookies["mesosphere_server_id"]
            return set(cookies) == {"w0", "w1", "w2"}

        wait_until(all_cookies, 15, message="not every sticky server set a cookie")
        assert len(set(cookies.values())) == 3
        held = cookies["w1"]  # a server added through the Runtime API

        def stuck(times: int = 8) -> bool:
            jar = {"mesosphere_server_id": held}
            return {http_get(url, cookies=jar).text.strip() for _ in range(times)} == {"w1"}

        assert stuck()
        tasks[3] = emu.add_task("/sticky", "127.0.0.1", [pool[3].port])["id"]
        wait_until(lambda: len(servers_of(router.status(), "/sticky")) == 4, 15)
        assert stuck()
        for index in (2, 3):
            emu.kill_task("/sticky", tasks.pop(index))
        wait_until(lambda: len(servers_of(router.status(), "/sticky")) == 2, 15)
        assert stuck()
        after = router.status()
        assert after["reloads"] == mid["reloads"], "sticky scale up/down reloaded"
        assert after["runtime_updates"] > mid["runtime_updates"]
        assert "Runtime API refused" not in router.log()

        # a reload (a balance change elsewhere; a new vhost is only a map entry now)
        # gives the same cookies: still stuck
        emu.put_app({"id": "/src", "portDefinitions": [{"port": src_port}],
                     "labels": {"HAPROXY_0_BALANCE": "leastconn"}})
        wait_until(lambda: router.status()["reloads"] == after["reloads"] + 1, 15)
        assert stuck()
        assert router.status()["failed_reloads"] == 0


def test_vhost_changes_are_map_entries_applied_without_reload(
    two_vhost_apps: Callable[..., TwoVhostApps],
) -> None:
    """Adding, moving and removing vhosts, paths and wildcards of existing backends
    goes through the Runtime API (add/set/del map) and the map files: 0 reloads."""
    apps = two_vhost_apps()
    router, put, routes = apps.router, apps.put, apps.routes
    port_one, port_two = apps.port_one, apps.port_two
    before = router.status()

    put("/two", port_two, HAPROXY_0_VHOST="two.test,extra.test,*.wild.test")
    wait_until(lambda: routes("extra.test", "two") and routes("a.wild.test", "two"), 15)
    put("/one", port_one, HAPROXY_0_VHOST="one.test,extra.test", HAPROXY_0_PATH="/x")
    wait_until(lambda: routes("extra.test", "one", "/x/y") and routes("one.test", "one", "/x"),
               15)
    assert routes("extra.test", "two", "/y") and routes("one.test", "503", "/")
    put("/two", port_two, HAPROXY_0_VHOST="two.test")
    wait_until(lambda: routes("a.wild.test", "503") and routes("extra.test", "503", "/y"), 15)
    # the files follow the Runtime API (written right after it answered)
    beg = router.workdir / "haproxy.cfg.maps" / "http-1-beg.map"
    wait_until(lambda: sorted(beg.read_text().splitlines()) == [
        f"extra.test//x one_{port_one}", f"one.test//x one_{port_one}",
        f"two.test/ two_{port_two}"], 10)
    wait_until(lambda: router.status()["runtime_updates"] >= before["runtime_updates"] + 3,
               10)
    after = router.status()
    assert after["reloads"] == before["reloads"], "a map-only change reloaded"
    assert after["failed_reloads"] == 0
    assert router.log().count("map entries") >= 3
