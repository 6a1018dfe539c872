"""End to end: Marathon suddenly answers no apps; HAProxy keeps serving until it is sure.

A real servicerouter (--sse --manage-haproxy) follows the emulator; real
backends answer through a real HAProxy while a load generator counts every
failed request.  The emulator goes away and comes back with no apps (as
after a leader election gone wrong): the removal is held (/status, /metrics),
not one request fails, and the routes go only once the empty answer persisted
(a short window here) or the operator confirms it with an authenticated POST.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import (
    LoadGenerator,
    RouterProcess,
    answer,
    http_port,
    start_router,  # noqa: F401 - the router fixture
    web_app,
)
from tests.harness import Backend, free_port, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "hold-test-token-0123456789"
HOLD_SECONDS = 8  # long enough to watch traffic while held, even on a loaded machine


def serving(emu: MarathonEmulator, backend_factory: Callable[..., Backend]) -> int:
    """Two apps, three backends; returns the web app's service port."""
    web_port = free_port()
    emu.put_app(web_app(web_port))
    emu.put_app({"id": "/other", "portDefinitions": [{"port": free_port()}],
                 "labels": {"HAPROXY_0_VHOST": "other.test"}})
    for name in ("w0", "w1"):
        emu.add_task("/web", "127.0.0.1", [backend_factory(name).port])
    emu.add_task("/other", "127.0.0.1", [backend_factory("o0").port])
    return web_port


def marathon_comes_back_empty(emu: MarathonEmulator) -> None:
    """An outage, and after it an app list with nothing in it (the stream resyncs)."""
    emu.set_unavailable(True)
    emu.load_state({"apps": []})
    time.sleep(0.3)
    emu.set_unavailable(False)


def hold(router: RouterProcess) -> dict:
    return router.status()["removal_hold"]


def post_confirm(router: RouterProcess, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    session = requests.Session()
    session.trust_env = False
    with session:
        return session.post(f"http://127.0.0.1:{router.status_port}/removal/confirm",
                            headers=headers, timeout=5)


def test_empty_answer_is_held_without_a_failed_request_then_applied_once_it_persists(
    start_router: Callable[..., RouterProcess],  # noqa: F811 - the fixture
    backend_factory: Callable[..., Backend],
) -> None:
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web_port = serving(emu, backend_factory)
        router = start_router(emu, "--removal-hold-fetches", "3",
                              "--removal-hold-seconds", str(HOLD_SECONDS),
                              "--status-token", TOKEN)
        front = http_port(router)
        wait_until(lambda: {answer(web_port) for _ in range(6)} == {"w0", "w1"}, 15)
        load = LoadGenerator([(web_port, None), (front, "web.test")]).start()
        try:
            marathon_comes_back_empty(emu)
            status = wait_until(lambda: hold(router)["held"] and hold(router), 15,
                                message="the empty answer was not held")
            metrics = router.metrics()
            time.sleep(1.0)  # traffic keeps flowing while held
        finally:
            load.stop()
        assert hold(router)["held"], "applied before the load stopped: raise HOLD_SECONDS"
        assert load.failures == [], f"{len(load.failures)} of {load.sent} failed"
        assert load.sent > 20
        assert status["reason"] == "Marathon answered no apps"
        assert (status["servers_lost"], status["servers_before"]) == (3, 3)
        assert (status["backends_lost"], status["backends_before"]) == (2, 2)
        assert status["sample_backends"] and status["fetches"] >= 1 and status["since"]
        assert "servicerouter_removal_held 1" in metrics
        assert "servicerouter_removal_held_servers 3" in metrics
        held_lines = [line for line in router.log().splitlines() if "removal held" in line]
        assert len(held_lines) == 1, held_lines  # one clear warning, not one per sync

        # it persists: applied after three fetches over the window, the routes go
        wait_until(lambda: not hold(router)["held"] and router.status()["services"] == [], 20,
                   message="the persisting removal was not applied")
        assert "servicerouter_removal_held 0" in router.metrics()
        assert "persisted for 3 syncs" in router.log()
        wait_until(lambda: _refused(web_port), 10, message="the web port still routes")


def test_operator_confirms_a_held_removal_with_an_authenticated_post(
    start_router: Callable[..., RouterProcess],  # noqa: F811 - the fixture
    backend_factory: Callable[..., Backend],
) -> None:
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web_port = serving(emu, backend_factory)
        router = start_router(emu, "--removal-hold-seconds", "600",
                              "--status-token", TOKEN)
        wait_until(lambda: answer(web_port) in ("w0", "w1"), 15)
        assert post_confirm(router, TOKEN).status_code == 409  # nothing held: nothing armed
        marathon_comes_back_empty(emu)
        wait_until(lambda: hold(router)["held"], 15, message="the empty answer was not held")
        assert answer(web_port) in ("w0", "w1")
        assert post_confirm(router, None).status_code == 401
        assert post_confirm(router, "wrong").status_code == 401
        assert hold(router)["held"]
        confirmed = post_confirm(router, TOKEN)
        assert confirmed.status_code == 202 and confirmed.json()["confirmed"] is True
        wait_until(lambda: router.status()["services"] == [], 15,
                   message="the confirmed removal was not applied")
        assert not hold(router)["held"]
        assert "confirmed by the operator" in router.log()
        wait_until(lambda: _refused(web_port), 10, message="the web port still routes")


def _refused(port: int) -> bool:
    try:
        answer(port)
    except requests.RequestException:
        return True
    return False
