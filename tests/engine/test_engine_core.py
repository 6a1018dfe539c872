"""One engine, two sizes: a one-shot run is the engine's core, the live engine adds events.

A one-shot run is a fresh process per run (cron, servicerouter.py's contract),
so every module it imports is paid on every run.  It applies through the
engine's core (servicerouter.engine.core.EngineCore), which the live engine
extends; these tests keep that split from silently eroding: a one-shot run that
writes and reloads a config must not load the event path (event stream, event
intake, task and app paths, /status server, managed HAProxy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from servicerouter.engine.core import EngineCore
from servicerouter.engine.live import LiveRouter
from tests.cli.test_cli import common, web_app
from tests.paths import REPO

# Modules only the long-running engine uses: a one-shot run must not import them.
EVENT_PATH = (
    "servicerouter.engine.live",
    "servicerouter.engine.wiring",
    "servicerouter.engine.intake",
    "servicerouter.engine.mirror",
    "servicerouter.engine.task_path",
    "servicerouter.engine.app_path",
    "servicerouter.engine.group_path",
    "servicerouter.engine.report",
    "servicerouter.source.events",
    "servicerouter.source.changes",
    "servicerouter.serve.status",
    "servicerouter.serve.httpd",
    "servicerouter.apply.managed",
)

# Runs the command line in-process, then says which servicerouter modules it loaded.
_CHILD = """
import json, sys
from servicerouter.cli.main import main
status = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.startswith("servicerouter") or m == "difflib")
print(json.dumps({"status": status, "modules": loaded}))
"""


def _argv(tmp_path: Path, haproxy_bin: str) -> list[str]:
    """A one-shot run's command line: one app, validated, reloaded by a command that counts."""
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app("/web", HAPROXY_0_VHOST="web.test")]}))
    reloads = tmp_path / "reloads"
    return ["-m", f"file:{snapshot}", *common(tmp_path), "--haproxy-bin", haproxy_bin,
            "--command", f"sh -c 'echo x >> {reloads}'"]


def _one_shot(tmp_path: Path, argv: list[str]) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_a_one_shot_applies_through_the_core_without_the_event_path(
        tmp_path: Path, haproxy_bin: str) -> None:
    result, log = _one_shot(tmp_path, _argv(tmp_path, haproxy_bin))
    # It did the whole apply: validated, wrote and reloaded.
    assert result["status"] == 0, log
    assert "backend web_10004" in (tmp_path / "haproxy.cfg").read_text()
    assert (tmp_path / "reloads").read_text() == "x\n"
    loaded = set(result["modules"])
    assert {"servicerouter.engine.core", "servicerouter.engine.full_apply",
            "servicerouter.engine.quarantine"} <= loaded
    assert sorted(loaded.intersection(EVENT_PATH)) == []
    # --dry's preview and difflib (also the "did you mean" of an unknown label, which
    # this app has none of), the Runtime API (certificate swaps, live servers) load only
    # when used: every import is start-up time.
    assert sorted(loaded.intersection({"servicerouter.engine.dry_preview", "difflib",
                                       "servicerouter.apply.runtime_api"})) == []


def test_a_one_shot_that_only_writes_parses_no_config(
        tmp_path: Path, haproxy_bin: str) -> None:
    # --skip-validation (and a first run: no config on disk) reads no config back, so
    # the config parser (servicerouter.apply.confdiff: its import alone was 2% of a
    # run with no apps) stays unloaded.
    result, log = _one_shot(tmp_path, [*_argv(tmp_path, haproxy_bin), "--skip-validation"])
    assert result["status"] == 0, log
    assert "backend web_10004" in (tmp_path / "haproxy.cfg").read_text()
    assert "servicerouter.apply.confdiff" not in result["modules"]


def test_an_unchanged_answer_loads_neither_rules_nor_model(
        tmp_path: Path, haproxy_bin: str) -> None:
    # Every run opens the state dir's rule store; with Marathon's answer unchanged the
    # run parses no rule and derives nothing, so the rule model and the label parsers
    # under it stay unloaded (they were a fifth of such a run's imports).
    argv = _argv(tmp_path, haproxy_bin)
    _one_shot(tmp_path, argv)
    result, log = _one_shot(tmp_path, argv)
    assert result["status"] == 0 and "unchanged: Marathon's answer" in log, log
    assert (tmp_path / "reloads").read_text() == "x\n"  # nothing applied the second time
    loaded = set(result["modules"])
    assert "servicerouter.rules.store" in loaded  # the rules were read (as an input)
    assert sorted(loaded.intersection({
        "servicerouter.rules.model", "servicerouter.rules.overlay",
        "servicerouter.model.labels", "servicerouter.model.services",
        "servicerouter.render.config", "servicerouter.engine.core"})) == []


def test_the_live_engine_is_the_core_with_the_event_path_on_top() -> None:
    # One engine: the live engine's apply is the core's, not a copy of it.
    assert issubclass(LiveRouter, EngineCore)
    for name in ("_apply", "_validate_or_quarantine", "_cert_plan", "mark_running",
                 "_set_services", "stop"):
        assert hasattr(EngineCore, name), name
    for name in ("_apply", "_validate_or_quarantine", "_cert_plan", "mark_running",
                 "_set_services"):
        assert getattr(LiveRouter, name) is getattr(EngineCore, name), name
