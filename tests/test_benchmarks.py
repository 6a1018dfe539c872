"""The benchmark tooling works: a deterministic generator and a smoke run.

No timings are asserted here (speed belongs in benchmarks/); these tests only
guard that ``python benchmarks/run.py`` keeps running and printing its table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.generate import app_id, dumps_state, generate_state
from benchmarks.run import parse_timings
from servicerouter.model.services import build_model, service_ports
from tests.paths import REPO


def test_generator_is_deterministic() -> None:
    first = dumps_state(generate_state(60, 3))
    assert first == dumps_state(generate_state(60, 3))
    assert first != dumps_state(generate_state(60, 3, seed=2))
    assert first != dumps_state(generate_state(61, 3))


def test_generator_cli_writes_the_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "generate.py"), "--apps", "25",
                    "--tasks", "2", "--out", str(out)], check=True, timeout=60)
    assert out.read_bytes() == dumps_state(generate_state(25, 2))


def test_generator_mix_covers_the_features() -> None:
    apps = generate_state(200, 2)["apps"]
    assert [a["id"] for a in apps] == sorted(a["id"] for a in apps)
    assert app_id(0) in {a["id"] for a in apps}
    labels = Counter(key.split("_", 2)[-1] if key[8:9].isdigit() else key
                     for app in apps for key in app["labels"])
    for key in ("VHOST", "STICKY", "REDIRECT_TO_HTTPS", "HAPROXY_GROUP"):
        assert labels[key] > 0, key
    protocols = Counter(c["protocol"] for app in apps for c in app["healthChecks"])
    assert protocols["HTTP"] > 0 and protocols["TCP"] > 0
    shapes = Counter("docker" if (a.get("container") or {}).get("docker", {}).get("portMappings")
                     else "1.5" if (a.get("container") or {}).get("portMappings")
                     else "portDefinitions" for a in apps)
    assert set(shapes) == {"docker", "1.5", "portDefinitions"}
    ports = [p for app in apps for p in service_ports(app)]
    assert len(ports) == len(set(ports)), "service ports are unique"
    assert {len(service_ports(a)) for a in apps} == {1, 2}
    assert any(a["id"].count("/") > 2 for a in apps), "nested groups"
    assert all(len(a["tasks"]) == 2 for a in apps)


def test_generated_state_routes_every_port() -> None:
    state = generate_state(120, 3)
    model = build_model(state["apps"], ["*"], lambda host: host)
    assert not model.problems, [str(p) for p in model.problems[:5]]
    assert len(model.services) == sum(len(service_ports(a)) for a in state["apps"])
    assert model.task_count == 360


def test_parse_timings_reads_the_sync_timing_line() -> None:
    line = ("servicerouter: sync timing: fetch=0.010s parse=0.020s model=0.030s certs=0.001s "
            "render=0.040s write=0.005s total=0.106s apps=3 tasks=9 services=4 skipped=0\n")
    assert parse_timings("other\n" + line) == {
        "fetch": 0.01, "parse": 0.02, "model": 0.03, "certs": 0.001, "render": 0.04,
        "write": 0.005, "total": 0.106}
    assert parse_timings("nothing here") == {}


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    """The whole command at a tiny size: it runs and prints its table."""
    results = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--sizes", "20,40", "--tasks", "2",
         "--runs", "1", "--workdir", str(tmp_path / "work"), "--json", str(results)],
        capture_output=True, text=True, timeout=240, env=env, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "floor json" in out and "servicerouter" in out and "RSS sr" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:2] in (["20", "40"],
                                                                             ["40", "80"])]
    assert len(rows) == 2, out
    assert "growth 40/20 apps" in out
    assert "nothing changed:" in out and "written=False reloaded=False" in out
    assert "one task added:" in out
    data = json.loads(results.read_text())
    assert [s["apps"] for s in data["sizes"]] == [20, 40]
    assert all(len(s["servicerouter"]) == 1 and s["stages"]["render"] for s in data["sizes"])
    assert data["resync"]["one_task_written"] is True


def test_dataplane_benchmark_smoke_run() -> None:
    """benchmarks/dataplane.py at tiny sizes, both routings: real HAProxy, wrk, its table."""
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (Debian package wrk)")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "dataplane.py"), "--sizes", "1,20",
         "--seconds", "1", "--rounds", "1", "--connections", "2", "--compare-acl"],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("\n\n")[-2].splitlines()
    rows = [line.split() for line in table[2:]]
    assert [(row[0], row[1]) for row in rows] == [("1", "maps"), ("1", "acl"),
                                                  ("20", "maps"), ("20", "acl")]
    for row in rows:
        first, last, ratio = float(row[4]), float(row[5]), float(row[6])
        assert first > 0 and last > 0 and abs(ratio - last / first) < 0.02
        assert int(row[9]) > 0 and int(row[10]) > 0  # requests served, all 2xx
