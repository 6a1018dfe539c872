"""--health-check sees Marathon's readiness results: the fetch asks for them.

Marathon includes ``readinessCheckResults`` only with ``embed=apps.readiness``
(``embed=app.readiness`` for one app); without --health-check the request stays
exactly servicerouter.py's ``/v2/apps?embed=apps.tasks``.  Everything runs
against the Marathon emulator on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import SnapshotSource, make_source

FRAGMENTS = load_fragments([])
TASKS = [{"id": "web.1", "host": "127.0.0.1", "ports": [31001], "state": "TASK_RUNNING"},
         {"id": "web.2", "host": "127.0.0.1", "ports": [31002], "state": "TASK_RUNNING"}]
NOT_READY = [{"name": "ready", "taskId": "web.2", "ready": False, "lastResponse": None}]


def emulator() -> MarathonEmulator:
    emu = MarathonEmulator([{"id": "/web", "portDefinitions": [{"port": 10001}],
                             "tasks": TASKS}])
    emu.set_readiness("/web", NOT_READY)
    return emu


def targets(emu: MarathonEmulator) -> list[str]:
    return [target for method, target in emu.request_log if method == "GET"]


def test_client_asks_for_readiness_only_when_told() -> None:
    with emulator() as emu:
        plain = make_source([emu.url])
        app = plain.fetch_app("/web")
        assert b"readinessCheckResults" not in plain.fetch_apps_body()
        assert "readinessCheckResults" not in app
        assert targets(emu) == ["/v2/apps/web?embed=app.tasks", "/v2/apps?embed=apps.tasks"]

        emu.request_log.clear()
        ready = make_source([emu.url], embed_readiness=True)
        assert b'"readinessCheckResults":[{"name"' in ready.fetch_apps_body()
        assert ready.fetch_app("/web")["readinessCheckResults"] == NOT_READY
        assert targets(emu) == ["/v2/apps?embed=apps.tasks&embed=apps.readiness",
                                "/v2/apps/web?embed=app.tasks&embed=app.readiness"]
        plain.close()
        ready.close()
    # a snapshot is a saved body: nothing to ask for
    assert isinstance(make_source(["file:/nonexistent"], embed_readiness=True), SnapshotSource)


def test_router_with_health_check_leaves_out_a_task_not_ready(tmp_path: Path) -> None:
    def servers(embed_readiness: bool) -> list[str]:
        settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), validate=False,
                                  reload=None, state_dir=str(tmp_path / "state"),
                                  certs_dir=None, health_check=True)
        router = Router(make_source([emu.url], embed_readiness=embed_readiness), FRAGMENTS,
                        settings)
        result = router.sync()
        assert result.ok and result.model is not None
        return [f"{s.ipv4}:{s.port}" for svc in result.model.services for s in svc.servers]

    with emulator() as emu:
        # The bug this fixes: without the embed, readiness was never seen.
        assert servers(False) == ["127.0.0.1:31001", "127.0.0.1:31002"]
        assert servers(True) == ["127.0.0.1:31001"]
        emu.set_readiness("/web", [])  # the deployment finished
        assert servers(True) == ["127.0.0.1:31001", "127.0.0.1:31002"]


def run_cli(emu: MarathonEmulator, tmp_path: Path, *flags: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "servicerouter", "-m", emu.url, "--dry",
         "--haproxy-config", str(tmp_path / "haproxy.cfg"), "--state-dir",
         str(tmp_path / "state"), "--syslog-socket", "/dev/null", *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)})  # --dry's preview files
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_health_check_flag_adds_the_readiness_embed(tmp_path: Path) -> None:
    with emulator() as emu:
        text = run_cli(emu, tmp_path)
        assert targets(emu) == ["/v2/apps?embed=apps.tasks"]  # as servicerouter.py
        assert "127.0.0.1:31002" in text

        emu.request_log.clear()
        text = run_cli(emu, tmp_path, "--health-check")
        assert targets(emu) == ["/v2/apps?embed=apps.tasks&embed=apps.readiness"]
        assert "127.0.0.1:31001" in text and "127.0.0.1:31002" not in text
