"""servicerouter against the floor: one command, whole processes, real HTTP.

For each size (apps x tasks per app) this generates a deterministic Marathon
state (benchmarks/generate.py), serves it with the Marathon emulator in its own
process on 127.0.0.1, then times fresh processes, interleaved round by round:

* floor (json):   ``requests.get(url).json()``
* floor (orjson): ``gc.disable(); orjson.loads(requests.get(url).content)``:
  servicerouter parses with orjson when it is installed and pauses the cyclic
  garbage collector during a sync, so this stricter floor is reported too;
* servicerouter:  a one-shot writing the config (``--skip-validation``, so
  HAProxy's own time is not counted; ``haproxy -c`` is timed separately).

Wall time and peak RSS come from ``os.wait4`` on each child; per-stage times
come from servicerouter's own ``sync timing:`` log line.  One untimed warm-up
run of each command comes first (byte-code caches, the generated default
certificate, the emulator's body cache).  Times are medians over ``--runs``,
with the half-range as spread.  Then, in this process, a long-running router
syncs the largest size up to 5,000 apps three times: the first sync, one that
changes nothing (no write, no reload), and one after a single task was added.

Usage: ``python benchmarks/run.py [--sizes 1000,5000,10000] [--runs 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generate import app_id, dumps_state, generate_state  # noqa: E402

APPS_PATH = "/v2/apps?embed=apps.tasks"
STAGES = ("fetch", "parse", "model", "certs", "render", "write", "total")
_TIMING_RE = re.compile(r"sync timing: (.*)")
_FIELD_RE = re.compile(r"(\w+)=([0-9.]+)s")

FLOOR_JSON = "import sys, requests; requests.get(sys.argv[1]).json()"
FLOOR_ORJSON = ("import gc, sys, orjson, requests; gc.disable(); "
                "orjson.loads(requests.get(sys.argv[1]).content)")


@dataclass
class Run:
    """One child process: wall and CPU seconds, peak RSS (KiB) and what it logged."""

    wall: float
    cpu: float  # user + system: less sensitive than wall time to other load
    rss_kb: int
    returncode: int
    stderr: str


@dataclass
class SizeResult:
    apps: int
    tasks: int
    body_bytes: int = 0
    floor_json: list[Run] = field(default_factory=list)
    floor_orjson: list[Run] = field(default_factory=list)
    router: list[Run] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    haproxy_check: list[float] = field(default_factory=list)
    config_bytes: int = 0


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(name, None)
    return env


def run_process(cmd: Sequence[str], cwd: str, env: dict[str, str], log_path: str,
                timeout: float = 600.0) -> Run:
    """Run ``cmd`` to completion; time it and read its peak RSS with wait4."""
    with open(log_path, "w+b") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
        reaped = threading.Event()

        def kill_if_hung() -> None:
            if not reaped.is_set():
                proc.kill()

        killer = threading.Timer(timeout, kill_if_hung)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            reaped.set()
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss, proc.returncode, text)


@contextmanager
def emulator(state_file: str, workdir: str, env: dict[str, str]) -> Iterator[str]:
    """The Marathon emulator serving ``state_file`` in its own process; yields its URL."""
    port_file = os.path.join(workdir, "emulator.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    log = open(os.path.join(workdir, "emulator.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicerouter.emulator.marathon", "--host", "127.0.0.1",
         "--state", state_file, "--port-file", port_file],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        port = None
        while port is None:
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start within 300s")
            try:
                with open(port_file, encoding="utf-8") as handle:
                    port = int(handle.read().strip())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        # Build the emulator's cached body before anything is timed.
        with urllib.request.urlopen(url + APPS_PATH, timeout=300) as answer:
            answer.read()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def router_command(url: str, config: str, state_dir: str) -> list[str]:
    return [sys.executable, "-m", "servicerouter", "-m", url, "--haproxy-config", config,
            "--group", "*", "--command", "true", "--syslog-socket", "/dev/null",
            "--state-dir", state_dir, "--skip-validation"]


def parse_timings(stderr: str) -> dict[str, float]:
    match = _TIMING_RE.search(stderr)
    if match is None:
        return {}
    return {name: float(value) for name, value in _FIELD_RE.findall(match.group(1))}


def measure_size(apps: int, tasks: int, runs: int, workdir: str, env: dict[str, str],
                 haproxy_bin: str | None) -> SizeResult:
    result = SizeResult(apps, tasks)
    size_dir = os.path.join(workdir, f"{apps}x{tasks}")
    os.makedirs(size_dir, exist_ok=True)
    state_file = os.path.join(size_dir, "state.json")
    body = dumps_state(generate_state(apps, tasks))
    result.body_bytes = len(body)
    with open(state_file, "wb") as handle:
        handle.write(body)
    del body
    config = os.path.join(size_dir, "haproxy.cfg")
    state_dir = os.path.join(size_dir, "state")
    log_path = os.path.join(size_dir, "child.log")
    with emulator(state_file, size_dir, env) as url:
        commands = {
            "floor_json": [sys.executable, "-c", FLOOR_JSON, url + APPS_PATH],
            "floor_orjson": [sys.executable, "-c", FLOOR_ORJSON, url + APPS_PATH],
            "router": router_command(url, config, state_dir),
        }
        if importlib.util.find_spec("orjson") is None:
            del commands["floor_orjson"]  # reported as nan: servicerouter parses with json too
        for round_no in range(runs + 1):  # round 0 is the warm-up
            for name, cmd in commands.items():
                if name == "router" and os.path.exists(config):
                    os.unlink(config)  # every timed run really writes
                run = run_process(cmd, size_dir, env, log_path)
                if run.returncode != 0:
                    raise RuntimeError(f"{name} failed ({run.returncode}) at {apps} apps:\n"
                                       f"{run.stderr[-2000:]}")
                if round_no == 0:
                    continue
                getattr(result, name).append(run)
                if name == "router":
                    timings = parse_timings(run.stderr)
                    if not timings:
                        raise RuntimeError(f"no 'sync timing:' line from servicerouter:\n"
                                           f"{run.stderr[-2000:]}")
                    for stage in STAGES:
                        result.stages.setdefault(stage, []).append(timings.get(stage, 0.0))
    result.config_bytes = os.path.getsize(config)
    if haproxy_bin:
        for _ in range(max(1, min(runs, 3))):
            start = time.perf_counter()
            proc = subprocess.run([haproxy_bin, "-c", "-q", "-f", config],
                                  capture_output=True, check=False)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr.decode("utf-8", "replace")[-2000:])
                raise RuntimeError(f"haproxy -c rejected the config at {apps} apps")
            result.haproxy_check.append(elapsed)
    return result


@dataclass
class ResyncResult:
    apps: int
    first: dict[str, float]
    unchanged: dict[str, float]
    unchanged_written: bool
    unchanged_reloaded: bool
    one_task: dict[str, float]
    one_task_written: bool


def measure_resync(apps: int, tasks: int, workdir: str, env: dict[str, str]) -> ResyncResult:
    """A long-running router: first sync, a sync with no change, one after a task change."""
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import MarathonClient

    size_dir = os.path.join(workdir, f"{apps}x{tasks}")
    state_file = os.path.join(size_dir, "state.json")
    if not os.path.exists(state_file):
        os.makedirs(size_dir, exist_ok=True)
        with open(state_file, "wb") as handle:
            handle.write(dumps_state(generate_state(apps, tasks)))
    config = os.path.join(size_dir, "resync.cfg")
    settings = RouterSettings(config_path=config, groups=("*",), validate=False,
                              reload=("true",), state_dir=os.path.join(size_dir, "state"),
                              certs_dir=None)
    with emulator(state_file, size_dir, env) as url:
        client = MarathonClient([url])
        router = Router(client, load_fragments(), settings)
        first = router.sync()
        unchanged = router.sync()
        request = urllib.request.Request(
            f"{url}/_emulator/apps{app_id(0)}/tasks", method="POST",
            data=json.dumps({"host": "10.200.0.1", "ports": [31999, 31998]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
        one_task = router.sync()
        client.close()
    for result in (first, unchanged, one_task):
        if not result.ok:
            raise RuntimeError(f"in-process sync failed: {result.error}")
    return ResyncResult(apps, first.timings, unchanged.timings, unchanged.changed,
                        unchanged.reloaded, one_task.timings, one_task.changed)


# ---------------------------------------------------------------------------- report

def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: Sequence[float]) -> float:
    return (max(values) - min(values)) / 2 if values else float("nan")


def _fmt(values: Sequence[float]) -> str:
    return f"{_median(values):.3f}±{_spread(values):.3f}"


def _targets(by_apps: dict[int, SizeResult]) -> list[str]:
    """Issue 5's targets, where the sizes they name were measured."""
    checks = []
    if 5000 in by_apps:
        r = by_apps[5000]
        ratio = _median([x.wall for x in r.router]) / _median([x.wall for x in r.floor_json])
        rss = _median([x.rss_kb for x in r.router]) / _median([x.rss_kb for x in r.floor_json])
        checks.append(("time / floor at 5000 apps", ratio, 2.0))
        checks.append(("peak RSS / floor at 5000 apps", rss, 2.0))
    if 1000 in by_apps and 10000 in by_apps:
        growth = (_median(by_apps[10000].stages.get("render", []))
                  / _median(by_apps[1000].stages.get("render", [])))
        checks.append(("render time 10000 / 1000 apps", growth, 12.0))
    return [f"target: {name} = {value:.2f} (<= {limit:g}: {'met' if value <= limit else 'MISSED'})"
            for name, value, limit in checks]


def machine_info(haproxy_bin: str | None) -> list[str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu}, "
             f"{platform.system()} {platform.release()}",
             f"python {platform.python_version()}"]
    try:
        import orjson
        lines[-1] += f", orjson {orjson.__version__}"
    except ImportError:
        lines[-1] += ", orjson not installed (servicerouter parses with json)"
    import requests
    lines[-1] += f", requests {requests.__version__}"
    if haproxy_bin:
        proc = subprocess.run([haproxy_bin, "-v"], capture_output=True, text=True, check=False)
        lines.append(proc.stdout.splitlines()[0] if proc.stdout else "haproxy ?")
    return lines


def report(results: Sequence[SizeResult], resync: ResyncResult | None,
           info: Sequence[str]) -> str:
    out: list[str] = list(info)
    out.append("times in seconds: median±half-range over the runs; RSS = peak, MiB")
    out.append("")
    header = (f"{'apps':>6} {'tasks':>6} {'body MB':>7} | {'floor json':>11} {'floor orjson':>12} "
              f"{'servicerouter':>13} | {'ratio':>5} {'ratio/oj':>8} {'cpu':>5} | "
              + " ".join(f"{s:>6}" for s in STAGES[:-1]) + f" {'start':>6} | "
              f"{'RSS fl':>6} {'RSS oj':>6} {'RSS sr':>6} {'ratio':>5} | {'haproxy -c':>10}")
    out.append(header)
    out.append("-" * len(header))
    for r in results:
        floor = _median([x.wall for x in r.floor_json])
        floor_oj = _median([x.wall for x in r.floor_orjson])
        router = _median([x.wall for x in r.router])
        cpu_ratio = _median([x.cpu for x in r.router]) / _median([x.cpu for x in r.floor_json])
        stage_medians = [_median(r.stages.get(s, [])) for s in STAGES]
        startup = router - stage_medians[-1]
        rss = [_median([x.rss_kb for x in runs]) / 1024
               for runs in (r.floor_json, r.floor_orjson, r.router)]
        check = _fmt(r.haproxy_check) if r.haproxy_check else "n/a"
        out.append(
            f"{r.apps:>6} {r.apps * r.tasks:>6} {r.body_bytes / 1e6:>7.1f} | "
            f"{_fmt([x.wall for x in r.floor_json]):>11} "
            f"{_fmt([x.wall for x in r.floor_orjson]):>12} "
            f"{_fmt([x.wall for x in r.router]):>13} | {router / floor:>5.2f} "
            f"{router / floor_oj:>8.2f} {cpu_ratio:>5.2f} | "
            + " ".join(f"{v:>6.3f}" for v in stage_medians[:-1]) + f" {startup:>6.3f} | "
            f"{rss[0]:>6.0f} {rss[1]:>6.0f} {rss[2]:>6.0f} {rss[2] / rss[0]:>5.2f} | {check:>10}")
    out.append("")
    out.append("ratio = servicerouter / floor (json), ratio/oj = servicerouter / floor (orjson), "
               "cpu = the same as ratio in CPU time (user+sys);")
    out.append("start = servicerouter's wall time outside the sync (interpreter, imports, "
               "flags, exit)")
    by_apps = {r.apps: r for r in results}
    if len(results) >= 2:
        small, large = min(by_apps), max(by_apps)
        r_small = _median(by_apps[small].stages.get("render", []))
        r_large = _median(by_apps[large].stages.get("render", []))
        m_small = _median(by_apps[small].stages.get("model", []))
        m_large = _median(by_apps[large].stages.get("model", []))
        out.append(f"growth {large}/{small} apps ({large / small:.0f}x): render "
                   f"{r_large / r_small:.1f}x, model {m_large / m_small:.1f}x")
    out.extend(_targets(by_apps))
    if resync is not None:
        def stages(t: dict[str, float]) -> str:
            return " ".join(f"{s}={t.get(s, 0.0):.3f}" for s in STAGES)
        out.append("")
        out.append(f"long-running router, {resync.apps} apps, in one process:")
        out.append(f"  first sync:          {stages(resync.first)}")
        out.append(f"  nothing changed:     {stages(resync.unchanged)}  "
                   f"written={resync.unchanged_written} reloaded={resync.unchanged_reloaded}")
        out.append(f"  one task added:      {stages(resync.one_task)}  "
                   f"written={resync.one_task_written}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000",
                        help="comma-separated app counts (default 1000,5000,10000)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per app (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="one size (1000 apps), 3 runs: a fast check while working")
    parser.add_argument("--no-resync", action="store_true",
                        help="skip the in-process long-running sync measurement")
    parser.add_argument("--workdir", help="keep generated states and configs here")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.runs = "1000", 3
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not sizes or min(sizes) < 1 or args.runs < 1 or args.tasks < 1:
        parser.error("sizes, --runs and --tasks must be positive")
    haproxy_bin = shutil.which("haproxy")
    env = child_env()
    workdir = args.workdir or tempfile.mkdtemp(prefix="servicerouter-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    try:
        results = []
        for apps in sizes:
            print(f"... {apps} apps x {args.tasks} tasks", file=sys.stderr, flush=True)
            results.append(measure_size(apps, args.tasks, args.runs, workdir, env, haproxy_bin))
        resync = None
        if not args.no_resync:
            target = max(s for s in sizes if s <= 5000) if min(sizes) <= 5000 else min(sizes)
            print(f"... long-running router at {target} apps", file=sys.stderr, flush=True)
            resync = measure_resync(target, args.tasks, workdir, env)
        print(report(results, resync, machine_info(haproxy_bin)))
        print(f"\nbenchmark took {time.monotonic() - started:.0f}s")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"sizes": [_as_json(r) for r in results],
                           "resync": resync.__dict__ if resync else None}, handle, indent=1)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _as_json(result: SizeResult) -> dict[str, Any]:
    def runs(items: list[Run]) -> list[dict[str, Any]]:
        return [{"wall": r.wall, "cpu": r.cpu, "rss_kb": r.rss_kb} for r in items]
    return {"apps": result.apps, "tasks": result.tasks, "body_bytes": result.body_bytes,
            "config_bytes": result.config_bytes, "floor_json": runs(result.floor_json),
            "floor_orjson": runs(result.floor_orjson), "servicerouter": runs(result.router),
            "stages": result.stages, "haproxy_check": result.haproxy_check}


if __name__ == "__main__":
    sys.exit(main())
