"""benchmarks/task_event_cost.py keeps running: every event takes the task path, a table.

No timings are asserted (speed belongs in benchmarks/); the run itself fails when
an event of its cluster leaves the task path, so this guards the benchmark's
premise at a tiny size.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.task_event_cost import measure
from tests.paths import REPO


def test_every_event_of_the_run_takes_the_task_path() -> None:
    row = measure(200, 12, None)
    assert row["tasks"] == 200 and row["events"] == 12
    assert row["config_bytes"] > 0
    assert 0 < row["plan_p50"] <= row["plan_p99"] and 0 < row["sync_p50"] <= row["sync_p99"]


def test_the_command_prints_a_row_per_size_and_the_ratio() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "task_event_cost.py"), "--sizes", "100,300",
         "--events", "6"], capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.split() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["100", "300"]
    assert "p50 ratio: plan" in proc.stdout and "load average:" in proc.stdout
