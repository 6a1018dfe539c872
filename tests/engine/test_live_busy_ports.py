"""End to end: apps on ports another process holds are left out, never the whole config.

A real servicerouter (or the live engine in-process) with a real managed HAProxy:
at start-up and mid-run an app whose service port is busy is quarantined with the
reason, every other change still applies, and a freed port is taken without any
event from Marathon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import RouterProcess, answer, http_port, web_app
from tests.harness import Backend, free_port, wait_until

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------- busy ports


@pytest.fixture
def hold_port() -> Iterator[Callable[[], tuple[int, Callable[[], None]]]]:
    """``hold()`` -> (port, release): a port another process listens on (this one)."""
    import socket

    socks: list[socket.socket] = []

    def hold() -> tuple[int, Callable[[], None]]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)
        return sock.getsockname()[1], sock.close

    yield hold
    for sock in socks:
        sock.close()


def _quarantined(router: RouterProcess) -> list[str]:
    return [q["app"] for q in router.status()["quarantined"]]


def test_busy_ports(  # (short names: HAProxy socket paths are limited to 97 bytes)
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
    hold_port: Callable[[], tuple[int, Callable[[], None]]],
) -> None:
    w0, c0 = backend_factory("w0"), backend_factory("c0")
    web_port = free_port()
    busy, release = hold_port()
    busy2, release2 = hold_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.put_app(web_app(web_port))
        emu.add_task("/web", "127.0.0.1", [w0.port])
        emu.put_app({"id": "/clash", "portDefinitions": [{"port": busy}]})
        emu.add_task("/clash", "127.0.0.1", [c0.port])
        # at start-up: HAProxy starts without /clash instead of servicerouter exiting
        router = start_router(emu)
        front = http_port(router)
        assert _quarantined(router) == ["/clash"]
        assert "in use" in router.status()["quarantined"][0]["reason"]
        wait_until(lambda: answer(web_port) == "w0", 15)

        # mid-run: another app on a busy port; every other change still applies
        emu.put_app({"id": "/clash2", "portDefinitions": [{"port": busy2}]})
        emu.add_task("/clash2", "127.0.0.1", [c0.port])
        emu.put_app(web_app(web_port, HAPROXY_0_VHOST="web2.test"))
        wait_until(lambda: answer(front, "web2.test") == "w0", 15)
        wait_until(lambda: sorted(_quarantined(router)) == ["/clash", "/clash2"], 15)
        assert "servicerouter_quarantined_apps 2" in router.metrics()

        # the port is freed: the app is routed, with no event from Marathon
        release()
        wait_until(lambda: answer(busy) == "c0", 15, message="freed port not taken")
        assert _quarantined(router) == ["/clash2"]
        status = router.status()
        assert status["failed_reloads"] == 0 and status["haproxy"]["restarts"] == 0
        release2()


def test_start_up_busy_port(
    tmp_path: Path, haproxy_bin: str, backend_factory: Callable[..., Backend],
    hold_port: Callable[[], tuple[int, Callable[[], None]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HAProxy's own "cannot bind" at start (our pre-check off): the app is left out."""
    from servicerouter.apply.managed import ManagedHAProxy, ManagedSettings
    from servicerouter.engine.live import LiveRouter, _start_managed
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.config import RenderOptions
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import MarathonClient

    monkeypatch.setattr(LiveRouter, "_leave_out_busy_ports", lambda self, s, t, o: (s, t))
    w0 = backend_factory("w0")
    busy, _release = hold_port()
    web_port = free_port()
    config = tmp_path / "haproxy.cfg"
    managed = ManagedHAProxy(ManagedSettings(haproxy_bin, str(config), str(tmp_path / "state"),
                                             stop_on_exit=True))
    options = RenderOptions(bind_addr="127.0.0.1", http_port=free_port(),
                            https_port=free_port(), appid_port=free_port(),
                            stats_port=free_port(), master_worker=True, hard_stop_after="5s",
                            runtime_socket=managed.settings.runtime_socket)
    with MarathonEmulator() as emu:
        emu.put_app({"id": "/web", "portDefinitions": [{"port": web_port}]})
        emu.add_task("/web", "127.0.0.1", [w0.port])
        emu.put_app({"id": "/clash", "portDefinitions": [{"port": busy}]})
        emu.add_task("/clash", "127.0.0.1", [w0.port])
        settings = RouterSettings(config_path=str(config), groups=("*",),
                                  haproxy_bin=haproxy_bin, render_options=options,
                                  state_dir=str(tmp_path / "state"), certs_dir=None)
        router = Router(MarathonClient([emu.url]), load_fragments([]), settings)
        live = LiveRouter(router, reloader=managed, manager=managed)
        try:
            assert _start_managed(live, managed)
            assert managed.alive() and list(live.quarantine) == ["/clash"]
            assert live.quarantine["/clash"].cause == "bind"
            assert "Address already in use" in live.quarantine["/clash"].reason
            assert f"clash_{busy}" not in config.read_text()
            wait_until(lambda: answer(web_port) == "w0", 15)
        finally:
            live.stop()
            managed.stop(kill_haproxy=True)
