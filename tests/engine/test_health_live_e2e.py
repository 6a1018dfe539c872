"""End to end: --health-check health changes go through the Runtime API, never a reload.

A real servicerouter follows the emulator's event stream and runs a real HAProxy
with two apps whose tasks share one address (the same backend process): one
app's health changes must move only its own servers, through the task path.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.test_live_e2e import RouterProcess, answer, servers_of, start_router
from tests.harness import Backend, free_port, wait_until

pytestmark = pytest.mark.e2e
__all__ = ["start_router"]  # the fixture, used by name

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0}]


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
        wait_until(lambda: (router.status()["marathon"].get("event_stream") or {})
                   .get("connected"), 20)
        seen: list[int] = []

        def quiet() -> bool:  # no sync for 1 s (polled every 0.1 s)
            seen.append(router.status()["syncs"])
            return len(seen) > 10 and seen[-11] == seen[-1]

        wait_until(quiet, 30, interval=0.1)
        before = router.status()
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
