"""``GET /api/backends/{name}`` (servicerouter.serve.backends_api): a backend's servers as
a real HAProxy sees them, behind the status server's token."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from servicerouter.apply.managed import ManagedHAProxy
from servicerouter.apply.runtime_api import RuntimeAPI
from servicerouter.serve.backends_api import BackendNotFound, backend_servers
from servicerouter.serve.status import Metrics, StatusServer
from tests.apply.test_manager import managed  # noqa: F401 - fixture
from tests.harness import Backend, free_port, http_get, wait_until


@pytest.mark.e2e
def test_servers_state_weight_and_sessions_from_the_runtime_api(
    tmp_path: Path, managed: Callable[..., ManagedHAProxy],  # noqa: F811
    backend_factory: Callable[..., Backend],
) -> None:
    up = backend_factory("up")
    manager = managed()
    cfg = tmp_path / "h.cfg"
    port = free_port()
    # a frontend of the backend's name first (servicerouter.py names both APP_PORT):
    # ``show stat b`` would describe the frontend, the servers must be the backend's
    cfg.write_text(
        "global\n  daemon\n  master-worker\n  hard-stop-after 5s\n"
        f"  stats socket {manager.settings.runtime_socket} mode 600 level admin\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n"
        "  timeout server 10s\n"
        f"frontend b\n  bind 127.0.0.1:{port}\n  default_backend b\n"
        f"backend b\n  server up 127.0.0.1:{up.port} check inter 500\n"
        f"  server gone 127.0.0.1:{free_port()} check inter 500\n"
        f"  server idle 127.0.0.1:{up.port} check inter 500 weight 0\n"
        "backend empty\n")
    manager.start()
    api = RuntimeAPI(manager.settings.runtime_socket)

    def by_name() -> dict[str, dict]:
        return {s["name"]: s for s in backend_servers(api, "b")["servers"]}

    wait_until(lambda: by_name()["gone"]["status"] == "DOWN", 15)
    servers = by_name()
    assert servers["up"]["status"].startswith("UP") and servers["up"]["serving"]
    assert servers["up"]["weight"] == 1 and servers["up"]["sessions"] == 0
    assert servers["up"]["address"] == f"127.0.0.1:{up.port}"
    assert not servers["gone"]["serving"] and not servers["idle"]["serving"]
    assert servers["idle"]["weight"] == 0
    assert backend_servers(api, "empty") == {"backend": "empty", "servers": []}
    with pytest.raises(BackendNotFound):
        backend_servers(api, "nope")
    with pytest.raises(BackendNotFound):
        backend_servers(api, "b; shutdown sessions")  # never sent to the socket

    lookups: list[str] = []

    def lookup(name: str) -> dict | None:
        lookups.append(name)
        try:
            return backend_servers(api, name)
        except BackendNotFound:
            return None

    srv = StatusServer(("127.0.0.1", 0), Metrics(), dict, lambda: (True, "ok"),
                       token="t0k", backend_servers=lookup)
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.port}/api/backends/"
        assert http_get(base + "b").status_code == 401 and lookups == []
        auth = {"Authorization": "Bearer t0k"}
        answer = http_get(base + "b", headers=auth)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
        body = json.loads(answer.text)
        assert body["backend"] == "b" and {s["name"] for s in body["servers"]} == {
            "up", "gone", "idle"}
        assert http_get(base + "nope", headers=auth).status_code == 404
    finally:
        srv.stop()
