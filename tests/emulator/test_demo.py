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
