"""The README's demo command: emulator + servicerouter + real HAProxy route real requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.e2e


def test_demo_routes_real_requests(tmp_path: Path, haproxy_bin: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "servicerouter.emulator.demo", "--free-ports", "--duration", "1",
         "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("  ok  ") == 4, proc.stdout
    assert "curl -H 'Host: web.demo.local'" in proc.stdout
    log = (tmp_path / "servicerouter.log").read_text()
    assert "shutting down" in log


@pytest.mark.parametrize("flag", ["--http-port", "--stats-port", "--status-port"])
def test_a_busy_port_stops_the_demo_at_once_with_one_line(tmp_path: Path, flag: str) -> None:
    import socket
    import time

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "servicerouter.emulator.demo", flag, str(port),
             "--duration", "1", "--workdir", str(tmp_path)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    assert time.monotonic() - started < 10
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert f"port {port} ({flag})" in line and "--free-ports" in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "servicerouter.log").exists()  # stopped before starting anything


def test_a_router_that_dies_stops_the_wait_with_its_reason(tmp_path: Path) -> None:
    """HAProxy cannot start (a port taken after the check): one line, not a 30 s timeout."""
    import time

    from servicerouter.emulator.demo import DemoStopped, wait_for

    log_path = tmp_path / "servicerouter.log"
    log_path.write_text("servicerouter.live: cannot start HAProxy: HAProxy exited at start "
                        "(status 1): cannot bind socket (Address already in use) "
                        "for [127.0.0.1:8080]\n")
    router = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    router.wait(30)
    started = time.monotonic()
    with pytest.raises(DemoStopped) as stopped:
        wait_for(lambda: False, 30, "routes", router, log_path)
    assert time.monotonic() - started < 5
    message = str(stopped.value)
    assert "status 1" in message and "127.0.0.1:8080" in message and str(log_path) in message
    assert "\n" not in message
