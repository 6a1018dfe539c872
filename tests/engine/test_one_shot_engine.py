"""One engine: a one-shot run puts its config in place as the live engine's full sync does.

servicerouter.py's default mode (no --listening/--sse) runs the CLI once; these
tests drive it as an operator's cron job would and check what only the shared
apply step (servicerouter.engine.full_apply) does: leave out the app HAProxy
rejects, or whose port another process holds, and put the rest in place.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli import common, run_cli

# An operator's backend fragment that copies a label into the config: an app with
# a directive HAProxy does not know makes `haproxy -c` reject the whole config.
BAD_TEMPLATE = "\nbackend {{ backend }}\n  mode {{ mode }}\n  {{ labels.get('EXTRA', '') }}\n"


def _app(app_id: str, port: int, task_port: int, **labels: str) -> dict:
    return {"id": app_id, "ports": [port], "labels": labels, "env": {},
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "127.0.0.1", "ports": [task_port]}]}


def _run(tmp_path: Path, apps: list[dict], *extra: str) -> tuple[int, str]:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    templates = tmp_path / "tpl"
    templates.mkdir(exist_ok=True)
    (templates / "HAPROXY_BACKEND_HEAD.j2").write_text(BAD_TEMPLATE)
    reloads = tmp_path / "reloads"
    argv = [*common(tmp_path), "--templates-dir", str(templates),
            "--command", f"sh -c 'echo x >> {reloads}'", *extra]
    proc = run_cli("-m", f"file:{snapshot}", *argv, cwd=tmp_path)
    return proc.returncode, proc.stderr


def _reloads(tmp_path: Path) -> int:
    path = tmp_path / "reloads"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_app_haproxy_rejects_is_left_out_and_the_rest_put_in_place(
        tmp_path: Path, haproxy_bin: str) -> None:
    """Before: the whole config was refused and the old one kept (exit 1)."""
    cfg = tmp_path / "haproxy.cfg"
    good = [_app("/alpha", 10101, 31001), _app("/gamma", 10103, 31003)]
    status, stderr = _run(tmp_path, good)
    assert status == 0, stderr
    before = cfg.read_text()
    assert _reloads(tmp_path) == 1

    bad = _app("/beta", 10102, 31002, EXTRA="no-such-directive here")
    changed = [good[0], bad, _app("/gamma", 10103, 31004)]  # /gamma moved to a new task
    status, stderr = _run(tmp_path, changed)
    assert status == 0, stderr
    text = cfg.read_text()
    assert text != before and "127.0.0.1:31004" in text and "alpha_10101" in text
    assert "beta_10102" not in text and "no-such-directive" not in text
    assert "app /beta quarantined: HAProxy rejects its config" in stderr
    assert "no-such-directive" in stderr  # HAProxy's own words
    assert _reloads(tmp_path) == 2


def test_every_app_rejected_keeps_the_config_in_place(tmp_path: Path, haproxy_bin: str) -> None:
    """With no earlier good version the templates are the likelier fault: nothing changes."""
    cfg = tmp_path / "haproxy.cfg"
    status, stderr = _run(tmp_path, [_app("/alpha", 10101, 31001)])
    assert status == 0, stderr
    before = cfg.read_bytes()
    apps = [_app("/alpha", 10101, 31001, EXTRA="bogus-one"),
            _app("/beta", 10102, 31002, EXTRA="bogus-two")]
    status, stderr = _run(tmp_path, apps)
    assert status == 1
    assert cfg.read_bytes() == before and _reloads(tmp_path) == 1
    assert "HAProxy rejects the config of every app; keeping the config in place" in stderr


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process (this one) listens on, without sharing it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_an_app_whose_port_another_process_holds_is_left_out(
        tmp_path: Path, haproxy_bin: str, held_port: int) -> None:
    """HAProxy would fail to reload for every app; the engine leaves that one out first."""
    cfg = tmp_path / "haproxy.cfg"
    apps = [_app("/alpha", 10101, 31001), _app("/clash", held_port, 31002)]
    status, stderr = _run(tmp_path, apps)
    assert status == 0, stderr
    text = cfg.read_text()
    assert "alpha_10101" in text and f"clash_{held_port}" not in text
    assert f"127.0.0.1:{held_port}" in stderr and "/clash" in stderr
    assert _reloads(tmp_path) == 1
