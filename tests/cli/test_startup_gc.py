"""The cyclic garbage collector during start-up: paused for a one-shot run, on for a long one.

servicerouter.cli.main.main pauses the collector while the process starts (imports,
flags: objects that never become garbage); a one-shot run keeps it paused, the live
modes and the subcommands get it back, and main() leaves it as the caller had it.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servicerouter.cli import main as cli_main
from tests.cli.test_cli import common, web_app
from tests.paths import REPO


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_on = gc.isenabled()
    gc.enable()
    yield
    if not was_on:
        gc.disable()


def _snapshot(tmp_path: Path) -> str:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": [web_app("/web", HAPROXY_0_VHOST="web.test")]}))
    return f"file:{path}"


def test_a_one_shot_runs_with_the_collector_paused_and_restores_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_on: None) -> None:
    import servicerouter.engine.runner as runner

    seen: list[bool] = []
    real_run_once = runner.run_once

    def run_once(router: Any) -> int:
        seen.append(gc.isenabled())
        return real_run_once(router)

    monkeypatch.setattr(runner, "run_once", run_once)
    argv = ["-m", _snapshot(tmp_path), *common(tmp_path), "--skip-validation",
            "--state-dir", str(tmp_path / "state")]
    assert cli_main.main(argv) == 0
    assert seen == [False]  # the whole one-shot, start-up included
    assert gc.isenabled()  # the caller's state is back
    gc.disable()
    try:
        assert cli_main.main(argv) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_live_modes_run_with_the_collector_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_on: None) -> None:
    seen: list[bool] = []

    def run_live(args: Any, router: Any, mode: str) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(cli_main, "_run_live", run_live)
    argv = ["-m", _snapshot(tmp_path), *common(tmp_path), "--sse", "--skip-validation",
            "--state-dir", str(tmp_path / "state")]
    assert cli_main.main(argv, collector_was_on=False) == 0
    assert seen == [True]  # a long run collects cycles, whatever start-up did
    assert not gc.isenabled()  # then as the caller said it was
    gc.enable()


def test_a_subcommand_runs_with_the_collector_as_it_was(
        monkeypatch: pytest.MonkeyPatch, collector_on: None) -> None:
    import servicerouter.cli.bridge as bridge

    seen: list[bool] = []

    def bridge_main(argv: list[str]) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(bridge, "main", bridge_main)
    assert cli_main.main(["bridge", "127.0.0.1:1"]) == 0
    assert seen == [True]


def test_python_dash_m_pauses_it_before_the_imports(tmp_path: Path) -> None:
    # servicerouter/__main__.py pauses it first and tells main() it was on.
    code = ("import gc, runpy, sys\n"
            "import servicerouter.cli.main as m\n"
            "seen = []\n"
            "def fake(argv=None, *, collector_was_on=None):\n"
            "    seen.append((gc.isenabled(), collector_was_on))\n"
            "    return 0\n"
            "m.main = fake\n"
            "try:\n"
            "    runpy.run_module('servicerouter', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(seen)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[(False, True)]"
