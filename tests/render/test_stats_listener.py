"""--stats-bind-addr: where HAProxy's stats and health listener binds (default unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from servicerouter.cli import flags
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.harness import HAProxy, free_port, http_get
from tests.paths import LEGACY_TEMPLATES, REPO


def _head(options: RenderOptions, dirs: list[Path] | None = None) -> str:
    model = build_model([], [], lambda host: host)
    return render_config(model.services, load_fragments(dirs or []), options)


def test_default_is_unchanged_and_the_flag_reaches_the_listener() -> None:
    args = flags.parse_args(["-m", "http://m:8080"])
    assert args.stats_bind_addr == "127.0.0.1"
    assert "  bind 127.0.0.1:9090\n" in _head(RenderOptions())
    for given in ("*", "0.0.0.0", "::", "lb1.example.com"):
        args = flags.parse_args(["-m", "http://m:8080", "--stats-bind-addr", given])
        text = _head(RenderOptions(stats_bind_addr=args.stats_bind_addr, stats_port=9090))
        assert f"listen stats\n  bind {given}:9090\n" in text


@pytest.mark.parametrize("bad", ["", "1.2.3.4 ssl", "a\nb", "-x"])
def test_an_address_that_is_not_one_is_a_usage_error(bad: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flags.parse_args(["-m", "http://m:8080", f"--stats-bind-addr={bad}"])
    assert exit_info.value.code == 2
    assert "--stats-bind-addr" in capsys.readouterr().err


def test_legacy_fragments_are_byte_identical_whatever_the_address() -> None:
    legacy = [LEGACY_TEMPLATES]
    assert _head(RenderOptions(stats_bind_addr="*"), legacy) == _head(RenderOptions(), legacy)


@pytest.mark.e2e
def test_haproxy_answers_health_checks_on_the_given_address(
        tmp_path: Path, haproxy_factory: Callable[[str], HAProxy]) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": []}))
    config = tmp_path / "haproxy.cfg"
    stats_port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "servicerouter", "-m", f"file:{snapshot}", "--haproxy-config",
         str(config), "--syslog-socket", "/dev/null", "--command", "true",
         "--bind-addr", "127.0.0.1", "--http-port", str(free_port()),
         "--https-port", str(free_port()), "--appid-port", str(free_port()),
         "--stats-port", str(stats_port), "--stats-bind-addr", "127.0.0.1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr  # haproxy -c accepted it
    assert f"listen stats\n  bind 127.0.0.1:{stats_port}\n" in config.read_text()
    haproxy_factory(str(config))
    answer = http_get(f"http://127.0.0.1:{stats_port}/_haproxy_health_check")
    assert answer.status_code == 200
