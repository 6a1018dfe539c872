"""One-shot runs: a Marathon answer that would empty the load balancer is held.

Each run is a new process reading a ``file:`` snapshot, validating with the
real HAProxy; a held run exits 75 and leaves the config byte for byte as it
was, a confirmed one or one whose removal persisted (kept in the state dir
across runs) applies it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from servicerouter.engine.removal_guard import EXIT_HELD, HOLD_FILE
from tests.cli.test_cli import common, run_cli

CHECK = {"protocol": "TCP", "portIndex": 0}


def app(index: int, tasks: int = 2, **task_fields: object) -> dict:
    return {"id": f"/app{index}", "ports": [10100 + index], "labels": {}, "env": {},
            "tasks": [{"id": f"app{index}.{t}", "host": "127.0.0.1",
                       "ports": [31000 + 10 * index + t], "state": "TASK_RUNNING",
                       **task_fields} for t in range(tasks)]}


class OneShot:
    """A config, a snapshot file and the command line around them."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.tmp = tmp_path
        self.snapshot = tmp_path / "apps.json"
        self.config = tmp_path / "haproxy.cfg"
        self.argv = ["-m", f"file:{self.snapshot}", "--group", "*", *common(tmp_path), *extra]

    def run(self, apps: list[dict], *extra: str):  # -> CompletedProcess[str]
        self.snapshot.write_text(json.dumps({"apps": apps}))
        return run_cli(*self.argv, *extra, cwd=self.tmp)

    def backends(self) -> list[str]:
        return [line.split()[1] for line in self.config.read_text().splitlines()
                if line.startswith("backend ")]

    def servers(self) -> int:
        return sum(1 for line in self.config.read_text().splitlines()
                   if line.strip().startswith("server "))

    @property
    def hold_file(self) -> Path:
        return self.tmp / ".servicerouter" / HOLD_FILE


def held_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "removal held" in line]


def test_zero_apps_is_held_config_untouched_and_confirm_applies(tmp_path: Path) -> None:
    run = OneShot(tmp_path)
    first = run.run([app(i) for i in range(4)])
    assert first.returncode == 0, first.stderr
    assert run.backends() == ["app0_10100", "app1_10101", "app2_10102", "app3_10103"]
    before = run.config.read_bytes()

    held = run.run([])
    assert held.returncode == EXIT_HELD, held.stderr
    assert run.config.read_bytes() == before
    [line] = held_lines(held.stderr)  # one clear warning: what, how many, why
    assert "Marathon answered no apps; this sync would remove 8 of 8 servers and " \
           "4 of 4 backends (e.g. app0_10100, app1_10101, app2_10102)" in line
    assert "--confirm-removal" in line
    assert run.hold_file.exists()

    preview = run.run([], "--dry")
    assert preview.returncode == 0 and run.config.read_bytes() == before
    assert "a run without --dry would hold this removal (Marathon answered no apps)" \
        in preview.stderr
    assert json.loads(run.hold_file.read_text())["fetches"] == 1  # --dry counts nothing

    confirmed = run.run([], "--confirm-removal")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "confirmed by the operator" in confirmed.stderr
    assert run.backends() == [] and not run.hold_file.exists()


def test_most_apps_gone_is_held_but_a_small_removal_is_not(tmp_path: Path) -> None:
    run = OneShot(tmp_path)
    assert run.run([app(i) for i in range(4)]).returncode == 0
    one_gone = run.run([app(i) for i in range(3)])
    assert one_gone.returncode == 0 and len(run.backends()) == 3
    before = run.config.read_bytes()
    most_gone = run.run([app(0)])
    assert most_gone.returncode == EXIT_HELD
    assert "2 of 3 backends would go (more than 50%)" in held_lines(most_gone.stderr)[0]
    assert run.config.read_bytes() == before
    # Marathon is back to normal: the hold ends, nothing waits to be applied
    assert run.run([app(i) for i in range(3)]).returncode == 0
    assert not run.hold_file.exists()


def test_a_removal_persisting_over_runs_is_applied(tmp_path: Path) -> None:
    run = OneShot(tmp_path, "--removal-hold-fetches", "3", "--removal-hold-seconds", "1")
    assert run.run([app(i) for i in range(2)]).returncode == 0
    assert run.run([]).returncode == EXIT_HELD
    kept = json.loads(run.hold_file.read_text())
    assert kept["fetches"] == 1
    assert run.run([]).returncode == EXIT_HELD
    assert json.loads(run.hold_file.read_text())["since"] == kept["since"]
    # The window starts when the first held run saw the removal (its "since", wall
    # clock), not when this test started it: wait for that instant plus the window.
    time.sleep(max(0.0, kept["since"] + 1.1 - time.time()))
    third = run.run([])
    assert third.returncode == 0, third.stderr
    assert "persisted for 3 syncs" in third.stderr
    assert run.backends() == [] and not run.hold_file.exists()


def test_holds_can_be_turned_off(tmp_path: Path) -> None:
    run = OneShot(tmp_path, "--removal-hold-fetches", "0")
    assert run.run([app(0)]).returncode == 0
    assert run.run([]).returncode == 0 and run.backends() == []


def test_health_check_keeps_tasks_whose_health_is_unknown(tmp_path: Path) -> None:
    run = OneShot(tmp_path, "--health-check")
    healthy = [dict(app(0), healthChecks=[CHECK])]
    for task in healthy[0]["tasks"]:
        task["healthCheckResults"] = [{"alive": True}]
    assert run.run(healthy).returncode == 0 and run.servers() == 2
    before = run.config.read_bytes()
    # a leader change: no results yet for anyone, and a task started meanwhile
    unknown = [dict(app(0, tasks=3), healthChecks=[CHECK])]
    result = run.run(unknown)
    assert result.returncode == 0, result.stderr
    assert run.config.read_bytes() == before  # the two routed stay, the new one waits
    unknown[0]["tasks"][2]["healthCheckResults"] = [{"alive": True}]
    assert run.run(unknown).returncode == 0 and run.servers() == 3
