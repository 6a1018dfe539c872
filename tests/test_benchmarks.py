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
    unchanged = ("servicerouter: sync timing: fetch=0.050s digest=0.020s total=0.071s "
                 "unchanged: Marathon's answer is the one last applied to x.cfg\n")
    assert parse_timings(unchanged) == {"fetch": 0.05, "digest": 0.02, "total": 0.071}
    line = ("servicerouter: sync timing: fetch=0.010s parse=0.020s model=0.030s certs=0.001s "
            "render=0.040s write=0.005s total=0.106s apps=3 tasks=9 services=4 skipped=0\n")
    assert parse_timings("other\n" + line) == {
        "fetch": 0.01, "parse": 0.02, "model": 0.03, "certs": 0.001, "render": 0.04,
        "write": 0.005, "total": 0.106}
    assert parse_timings("nothing here") == {}


def test_distinct_addresses_give_every_task_its_own_address() -> None:
    state = generate_state(60, 4, addresses="distinct")
    tasks = [t for app in state["apps"] for t in app["tasks"]]
    hosts = [t["host"] for t in tasks]
    assert len(set(hosts)) == len(hosts) == 240
    assert all(t["ipAddresses"][0]["ipAddress"] == t["host"] for t in tasks)
    shared = generate_state(60, 4)
    assert len({t["host"] for a in shared["apps"] for t in a["tasks"]}) <= 10, "a pool of agents"
    model = build_model(state["apps"], ["*"], lambda host: host)
    assert not model.problems, [str(p) for p in model.problems[:5]]
    addresses = {s.ipv4 for svc in model.services for s in svc.servers}
    assert addresses == set(hosts), "IP-per-task apps are routed to the task's own address"
    assert any(a.get("networks") == [{"mode": "container", "name": "overlay"}]
               for a in state["apps"])


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    """The whole command at a tiny size: it runs and prints its table and verdicts."""
    results = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--sizes", "20,40", "--tasks", "2",
         "--runs", "1", "--workdir", str(tmp_path / "work"), "--json", str(results)],
        capture_output=True, text=True, timeout=400, env=env, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "floor oj" in out and "unchanged" in out and "RSS sr" in out
    rows = [line.split()[:3] for line in out.splitlines()
            if line.split()[:1] in (["20"], ["40"])]
    assert rows == [["20", "40", "hosts"], ["20", "40", "distinct"],
                    ["40", "80", "hosts"], ["40", "80", "distinct"]], out
    assert "growth 40/20 apps (2x), distinct" in out
    assert "target: unchanged time / floor orjson at 40 apps, distinct" in out
    assert "nothing changed:" in out and "written=False reloaded=False" in out
    assert "one task added:" in out
    data = json.loads(results.read_text())
    assert [(s["apps"], s["addresses"]) for s in data["sizes"]] == [
        (20, "hosts"), (20, "distinct"), (40, "hosts"), (40, "distinct")]
    for size in data["sizes"]:
        assert len(size["servicerouter"]) == len(size["unchanged"]) == 1
        assert size["stages"]["render"] and size["unchanged_stages"]["digest"]
        assert "render" not in size["unchanged_stages"], "the unchanged run renders nothing"
        assert set(size["ratios"]) == {"cold_orjson", "cold_orjson_cpu", "cold_json",
                                       "unchanged_orjson", "rss_orjson"}
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


WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:42983/
  1 threads and 2 connections
  Latency Distribution
     50%  100.00us
  {requests} requests in 1.10s, 1.25MB read
{extra}Requests/sec:  18111.32
"""


def test_dataplane_judges_wrk_failures() -> None:
    """Unrouted (non-2xx), refused or timed-out requests fail a run; a rare closed one not."""
    from benchmarks.dataplane import failed_requests

    def judge(requests: int, extra: str = "") -> str | None:
        return failed_requests(WRK_OUTPUT.format(requests=requests, extra=extra))

    assert judge(19917) is None
    assert judge(19917, "  Socket errors: connect 0, read 1, write 0, timeout 0\n") is None
    assert "closed" in judge(1000, "  Socket errors: connect 0, read 1, write 1, timeout 0\n")
    assert "connect" in judge(19917, "  Socket errors: connect 1, read 0, write 0, timeout 0\n")
    assert "timeout" in judge(19917, "  Socket errors: connect 0, read 0, write 0, timeout 3\n")
    assert "not routed" in judge(19917, "  Non-2xx or 3xx responses: 19917\n")


def test_paired_cpu_runs_two_trees_and_the_floor(tmp_path: Path) -> None:
    """benchmarks/paired_cpu.py at a tiny size: every tree and the floor, each round."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "paired_cpu.py"), "--apps", "20",
         "--rounds", "2", "--tree", f"a={REPO}", "--tree", f"b={REPO}"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]}
    assert set(rows) == {"a", "b", "floor"}
    assert float(rows["floor"][3]) == 1.0 and float(rows["a"][1]) > 0
    assert len(rows["a"]) == 4 + 2  # name, median, min, ratio, one figure per round
    refused = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "paired_cpu.py"), "--tree", f"x={tmp_path}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "checkout" in refused.stderr


def test_benchmark_rejects_unknown_address_shapes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--addresses", "hosts,nope"],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path), check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2 and "--addresses" in proc.stderr
