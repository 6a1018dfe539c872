"""End to end: health changes and virtual-host changes take the live engine's cheap paths.

A real servicerouter follows the emulator's event stream and runs a real HAProxy.
With --health-check, apps whose tasks share one address (the same backend
process): one app's health changes move only its own servers, through the task
path.  Relabelling an app's virtual hosts is an app update that moves map
entries through the Runtime API (the app path).  Neither reloads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import (
    RouterProcess,
    answer,
    http_port,
    servers_of,
    start_router,
)
from tests.harness import Backend, free_port, http_get, wait_until

pytestmark = pytest.mark.e2e
__all__ = ["start_router"]  # the fixture, used by name

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0}]


def settled(router: RouterProcess) -> dict:
    """/status once the stream is connected and no sync ran for 1 s: no event of a test
    is folded into the stream's connect resync."""
    wait_until(lambda: (router.status()["marathon"].get("event_stream") or {})
               .get("connected"), 20)
    seen: list[int] = []

    def quiet() -> bool:  # polled every 0.1 s
        seen.append(router.status()["syncs"])
        return len(seen) > 10 and seen[-11] == seen[-1]

    wait_until(quiet, 30, interval=0.1)
    return router.status()


def test_health_changes_take_the_task_path_without_reload(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    blue, green = backend_factory("blue"), backend_factory("green")
    web_port, tcp_port, twin_port = free_port(), free_port(), free_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.put_app({"id": "/web", "portDefinitions": [{"port": web_port}],
                     "labels": {"HAPROXY_0_MODE": "http"}, "healthChecks": CHECK})
        emu.put_app({"id": "/tcp", "portDefinitions": [{"port": tcp_port}],
                     "healthChecks": [{"protocol": "TCP", "portIndex": 0}]})
        # another app on blue's address: its health must not tie /web's servers to it
        emu.put_app({"id": "/twin", "portDefinitions": [{"port": twin_port}],
                     "healthChecks": CHECK})
        web = {name: emu.add_task("/web", "127.0.0.1", [b.port], healthy=True)["id"]
               for name, b in (("blue", blue), ("green", green))}
        tcp = {name: emu.add_task("/tcp", "127.0.0.1", [b.port], healthy=True)["id"]
               for name, b in (("blue", blue), ("green", green))}
        emu.add_task("/twin", "127.0.0.1", [blue.port], healthy=True)
        router = start_router(emu, "--health-check")
        both = {"blue", "green"}
        wait_until(lambda: {answer(web_port) for _ in range(6)} == both
                   and {answer(tcp_port) for _ in range(6)} == both, 20)
        # the stream's connect resync is done: no health event is folded into it
        before = settled(router)
        for app_id, port, tasks in (("/web", web_port, web), ("/tcp", tcp_port, tcp)):
            emu.set_task_health(app_id, tasks["blue"], False)
            wait_until(lambda port=port: {answer(port) for _ in range(6)} == {"green"}, 15,
                       message=f"{app_id}: unhealthy blue still answers")
            assert servers_of(router.status(), "/twin") == {f"127.0.0.1:{blue.port}"}
            emu.set_task_health(app_id, tasks["blue"], True)
            wait_until(lambda port=port: {answer(port) for _ in range(6)} == both, 15,
                       message=f"{app_id}: healthy blue does not answer again")
        after = router.status()
        assert after["reloads"] == before["reloads"], "a health change reloaded"
        assert after["failed_reloads"] == 0
        full = [line for line in router.log().splitlines() if " full path" in line]
        assert after["task_path_syncs"] - before["task_path_syncs"] >= 4, full
        assert after["runtime_updates"] - before["runtime_updates"] >= 4
        assert "task path" in router.log() or after["last_sync_path"] == "task"


def test_vhost_relabels_take_the_app_path_without_reload(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    one, two = backend_factory("one"), backend_factory("two")
    ports = {"/one": free_port(), "/two": free_port()}

    def put(app_id: str, hosts: str, **labels: str) -> None:
        emu.put_app({"id": app_id, "portDefinitions": [{"port": ports[app_id]}],
                     "labels": {"HAPROXY_0_VHOST": hosts, **labels}})

    def routes(front: int, host: str, path: str = "/") -> str:
        reply = http_get(f"http://127.0.0.1:{front}{path}", host_header=host)
        return reply.text.strip() if reply.status_code == 200 else str(reply.status_code)

    with MarathonEmulator(keepalive_interval=1.0) as emu:
        put("/one", "one.test")
        put("/two", "two.test")
        emu.add_task("/one", "127.0.0.1", [one.port])
        emu.add_task("/two", "127.0.0.1", [two.port])
        router = start_router(emu)
        front = http_port(router)
        wait_until(lambda: routes(front, "one.test") == "one" and routes(front, "two.test") == "two",
                   15)
        before = settled(router)
        put("/one", "uno.test,one.test", HAPROXY_0_PATH="/api")
        wait_until(lambda: routes(front, "uno.test", "/api/x") == "one", 15)
        assert routes(front, "one.test", "/") == "503" and routes(front, "two.test") == "two"
        put("/two", "dos.test", HAPROXY_0_BACKEND_WEIGHT="2")
        wait_until(lambda: routes(front, "dos.test") == "two" and routes(front, "two.test")
                   == "503", 15)
        # HAProxy routes by a map entry as soon as its command is in; the sync that
        # sent it counts itself just after, so the counters are waited for, not read once.
        wait_until(lambda: router.status()["runtime_updates"] - before["runtime_updates"] >= 2
                   and router.status()["task_path_syncs"] - before["task_path_syncs"] >= 2, 15)
        after = router.status()
        assert after["reloads"] == before["reloads"], "a vhost relabel reloaded"
        full = [line for line in router.log().splitlines() if " full path" in line]
        assert not [line for line in full if "(app /" in line or "backend " in line], full
        # the files follow (written off the event path)
        beg = router.workdir / "haproxy.cfg.maps" / "http-1-beg.map"
        wait_until(lambda: sorted(beg.read_text().splitlines()) == sorted([
            f"uno.test//api one_{ports['/one']}", f"one.test//api one_{ports['/one']}",
            f"dos.test/ two_{ports['/two']}"]), 10)
