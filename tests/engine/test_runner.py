"""runner: one-shot and --listening syncs (Router.sync) around a reload that fails."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from servicerouter.engine.runner import Router, RouterSettings, run_once
from servicerouter.render.fragments import load_fragments


class _Snapshot:
    """A Marathon that answers one fixed state."""

    def __init__(self, apps: list[dict]) -> None:
        self.body = json.dumps({"apps": apps}).encode()

    def fetch_apps_body(self) -> bytes:
        return self.body


APP = {"id": "/web", "ports": [10001], "labels": {}, "env": {},
       "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]}


def test_a_failed_reload_is_not_applied_and_the_next_sync_retries(tmp_path: Path) -> None:
    """What one-shot and live syncs do: a sync whose reload fails is an error, and the
    next sync (the next event, or the next one-shot run) writes and reloads again."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("previous\n")
    reloads = tmp_path / "reloads"
    # Fails the first time, works afterwards.
    command = ("sh", "-c", f"test -e {reloads} || {{ touch {reloads}; echo busy >&2; exit 1; }}; "
                           f"echo ok >> {reloads}")
    settings = RouterSettings(config_path=str(cfg), groups=("*",), validate=False,
                              reload=command, state_dir=str(tmp_path / "state"),
                              certs_dir=None)
    router = Router(_Snapshot([APP]), load_fragments(), settings, resolver=lambda h: h)
    assert run_once(router) == 1
    first = router.last
    assert first is not None and not first.ok and not first.reloaded
    assert "busy" in (first.error or "")
    assert cfg.read_text() == "previous\n"  # not the config HAProxy did not load

    second = router.sync()
    assert second.ok and second.changed and second.reloaded
    assert "backend web_10001" in cfg.read_text() and reloads.read_text() == "ok\n"
    assert router.sync().changed is False  # applied: now it is current


def test_without_a_reload_command_a_write_is_success(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    settings = RouterSettings(config_path=str(cfg), groups=("*",), validate=False,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None)
    router = Router(_Snapshot([APP]), load_fragments(), settings, resolver=lambda h: h)
    result = router.sync()
    assert result.ok and result.changed and not result.reloaded
    router.settings = replace(settings, reload=("false",))
    assert router.sync().ok  # unchanged: nothing to reload
