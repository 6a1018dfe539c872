"""servicerouter's one-shot against the floor: one command, whole processes, real HTTP.

For each size (apps x tasks per app) and address shape (``hosts``: tasks on a
pool of agents; ``distinct``: an address per task, as on IP-per-task clusters)
this generates a deterministic Marathon state (benchmarks/generate.py), serves
it with the Marathon emulator in its own process on 127.0.0.1, then times
fresh processes, interleaved round by round:

* floor (orjson), the one to judge by: ``gc.disable(); orjson.loads(requests.get(url).content)``,
  the least a Python router must do (servicerouter parses with orjson and pauses
  the cyclic garbage collector during a sync);
* floor (json): ``requests.get(url).json()``;
* servicerouter cold: a one-shot with no state from earlier runs (config and
  state directory deleted first), writing the config (``--skip-validation``:
  HAProxy's own time is not counted, ``haproxy -c`` is timed separately);
* servicerouter unchanged: the same one-shot again right after, Marathon's
  answer unchanged: the unchanged-body fast path.

Wall time, CPU time and peak RSS (``ru_maxrss``) come from ``os.wait4`` on each
child; per-stage times from servicerouter's own ``sync timing:`` log line.  One
untimed warm-up round comes first.  Ratios are medians of the per-round ratios
(paired runs: both sides of a ratio ran back to back).  Then, in this process,
a long-running router syncs the largest size up to 5,000 apps three times: the
first sync, one that changes nothing (no write, no reload), and one after a
single task was added.

Usage: ``python benchmarks/run.py [--sizes 1000,5000,10000] [--addresses hosts,distinct]
[--runs 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.children import APPS_PATH, Run, child_env, emulator, run_process  # noqa: E402
from benchmarks.generate import ADDRESS_SHAPES, app_id, dumps_state, generate_state  # noqa: E402

STAGES = ("fetch", "parse", "model", "certs", "render", "write", "total")
_TIMING_RE = re.compile(r"sync timing: (.*)")
_FIELD_RE = re.compile(r"(\w+)=([0-9.]+)s")

FLOOR_JSON = "import sys, requests; requests.get(sys.argv[1]).json()"
FLOOR_ORJSON = ("import gc, sys, orjson, requests; gc.disable(); "
                "orjson.loads(requests.get(sys.argv[1]).content)")


@dataclass
class SizeResult:
    """Every timed run of one size and address shape."""

    apps: int
    tasks: int
    addresses: str = "hosts"
    body_bytes: int = 0
    floor_json: list[Run] = field(default_factory=list)
    floor_orjson: list[Run] = field(default_factory=list)
    router: list[Run] = field(default_factory=list)  # cold one-shots
    unchanged: list[Run] = field(default_factory=list)  # the same answer again
    stages: dict[str, list[float]] = field(default_factory=dict)
    unchanged_stages: dict[str, list[float]] = field(default_factory=dict)
    haproxy_check: list[float] = field(default_factory=list)
    config_bytes: int = 0

    def paired(self, runs: list[Run], floor: list[Run], what: str = "wall") -> float:
        """Median of the per-round ratios runs[i] / floor[i]."""
        return _median([getattr(a, what) / getattr(b, what) for a, b in zip(runs, floor, strict=True)])

    def rss_ratio(self, runs: list[Run], floor: list[Run]) -> float:
        return _median([a.rss_kb for a in runs]) / _median([b.rss_kb for b in floor])


def router_command(url: str, config: str, state_dir: str) -> list[str]:
    return [sys.executable, "-m", "servicerouter", "-m", url, "--haproxy-config", config,
            "--group", "*", "--command", "true", "--syslog-socket", "/dev/null",
            "--state-dir", state_dir, "--skip-validation"]


def parse_timings(stderr: str) -> dict[str, float]:
    match = _TIMING_RE.search(stderr)
    if match is None:
        return {}
    return {name: float(value) for name, value in _FIELD_RE.findall(match.group(1))}


def measure_size(apps: int, tasks: int, addresses: str, runs: int, workdir: str,
                 env: dict[str, str], haproxy_bin: str | None) -> SizeResult:
    result = SizeResult(apps, tasks, addresses)
    size_dir = os.path.join(workdir, f"{apps}x{tasks}-{addresses}")
    os.makedirs(size_dir, exist_ok=True)
    state_file = os.path.join(size_dir, "state.json")
    body = dumps_state(generate_state(apps, tasks, addresses=addresses))
    result.body_bytes = len(body)
    with open(state_file, "wb") as handle:
        handle.write(body)
    del body
    config = os.path.join(size_dir, "haproxy.cfg")
    state_dir = os.path.join(size_dir, "state")
    log_path = os.path.join(size_dir, "child.log")
    with emulator(state_file, size_dir, env) as url:
        router = router_command(url, config, state_dir)
        commands = {
            "floor_json": [sys.executable, "-c", FLOOR_JSON, url + APPS_PATH],
            "floor_orjson": [sys.executable, "-c", FLOOR_ORJSON, url + APPS_PATH],
            "router": router,
            "unchanged": router,
        }
        for round_no in range(runs + 1):  # round 0 is the warm-up
            for name, cmd in commands.items():
                if name == "router":  # cold: nothing from earlier runs
                    shutil.rmtree(state_dir, ignore_errors=True)
                    if os.path.exists(config):
                        os.unlink(config)
                run = run_process(cmd, size_dir, env, log_path)
                if run.returncode != 0:
                    raise RuntimeError(f"{name} failed ({run.returncode}) at {apps} apps:\n"
                                       f"{run.stderr[-2000:]}")
                if round_no == 0:
                    continue
                getattr(result, name).append(run)
                if name in ("router", "unchanged"):
                    timings = parse_timings(run.stderr)
                    if not timings:
                        raise RuntimeError(f"no 'sync timing:' line from servicerouter:\n"
                                           f"{run.stderr[-2000:]}")
                    if name == "unchanged" and "unchanged:" not in run.stderr:
                        raise RuntimeError("the unchanged run did not take the fast path:\n"
                                           f"{run.stderr[-2000:]}")
                    stages = result.stages if name == "router" else result.unchanged_stages
                    for stage, value in timings.items():
                        stages.setdefault(stage, []).append(value)
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


# The goals of issue 10 (one-shot), judged against the orjson floor of the same run.
TARGET_TIME = 2.0  # cold one-shot / floor at 5,000 apps, distinct addresses (aim: 1.5)
TARGET_RSS = 1.5  # peak RSS / the floor's
TARGET_UNCHANGED = 1.0  # an unchanged answer costs less than the floor


def _targets(results: Sequence[SizeResult]) -> list[str]:
    """The one-shot goals, where the sizes they name were measured."""
    checks: list[tuple[str, float, float, str]] = []
    for r in results:
        if r.apps == 5000 and r.addresses == "distinct":
            checks.append(("cold time / floor orjson at 5000 apps, distinct addresses",
                           r.paired(r.router, r.floor_orjson), TARGET_TIME, "<="))
            # CPU time (user + sys) moves far less with other load than wall time does
            checks.append(("cold CPU time / floor orjson CPU at 5000 apps, distinct addresses",
                           r.paired(r.router, r.floor_orjson, "cpu"), TARGET_TIME, "<="))
            checks.append(("peak RSS / floor orjson at 5000 apps, distinct addresses",
                           r.rss_ratio(r.router, r.floor_orjson), TARGET_RSS, "<="))
    for r in results:
        checks.append((f"unchanged time / floor orjson at {r.apps} apps, {r.addresses}",
                       r.paired(r.unchanged, r.floor_orjson), TARGET_UNCHANGED, "<"))
    lines = []
    for name, value, limit, op in checks:
        met = value <= limit if op == "<=" else value < limit
        lines.append(f"target: {name} = {value:.2f} ({op} {limit:g}: "
                     f"{'met' if met else 'MISSED'})")
    return lines


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
    import orjson
    import requests

    lines = [f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu}, "
             f"{platform.system()} {platform.release()}, load {os.getloadavg()[0]:.1f}",
             f"python {platform.python_version()}, orjson {orjson.__version__}, "
             f"requests {requests.__version__}"]
    if haproxy_bin:
        proc = subprocess.run([haproxy_bin, "-v"], capture_output=True, text=True, check=False)
        lines.append(proc.stdout.splitlines()[0] if proc.stdout else "haproxy ?")
    return lines


SHOWN_STAGES = ("fetch", "parse", "model", "certs", "render", "write")


def report(results: Sequence[SizeResult], resync: ResyncResult | None,
           info: Sequence[str]) -> str:
    out: list[str] = list(info)
    out.append("times in seconds: median±half-range over the runs; ratios: median of the "
               "per-round ratios; RSS = peak, MiB")
    out.append("")
    header = (f"{'apps':>6} {'tasks':>6} {'addresses':>9} {'MB':>5} | {'floor oj':>11} "
              f"{'floor json':>11} {'cold':>11} {'unchanged':>11} | {'cold/oj':>7} "
              f"{'cpu/oj':>6} {'cold/js':>7} {'unch/oj':>7} | "
              + " ".join(f"{s:>6}" for s in SHOWN_STAGES) + f" {'start':>6} | "
              f"{'RSS oj':>6} {'RSS sr':>6} {'ratio':>5} {'RSS un':>6} | {'haproxy -c':>11}")
    out.append(header)
    out.append("-" * len(header))
    for r in results:
        stage_medians = [_median(r.stages.get(s, [])) for s in SHOWN_STAGES]
        startup = _median([x.wall for x in r.router]) - _median(r.stages.get("total", []))
        rss_oj = _median([x.rss_kb for x in r.floor_orjson]) / 1024
        rss_sr = _median([x.rss_kb for x in r.router]) / 1024
        rss_un = _median([x.rss_kb for x in r.unchanged]) / 1024
        check = _fmt(r.haproxy_check) if r.haproxy_check else "n/a"
        out.append(
            f"{r.apps:>6} {r.apps * r.tasks:>6} {r.addresses:>9} {r.body_bytes / 1e6:>5.1f} | "
            f"{_fmt([x.wall for x in r.floor_orjson]):>11} "
            f"{_fmt([x.wall for x in r.floor_json]):>11} "
            f"{_fmt([x.wall for x in r.router]):>11} "
            f"{_fmt([x.wall for x in r.unchanged]):>11} | "
            f"{r.paired(r.router, r.floor_orjson):>7.2f} "
            f"{r.paired(r.router, r.floor_orjson, 'cpu'):>6.2f} "
            f"{r.paired(r.router, r.floor_json):>7.2f} "
            f"{r.paired(r.unchanged, r.floor_orjson):>7.2f} | "
            + " ".join(f"{v:>6.3f}" for v in stage_medians) + f" {startup:>6.3f} | "
            f"{rss_oj:>6.0f} {rss_sr:>6.0f} {rss_sr / rss_oj:>5.2f} {rss_un:>6.0f} | {check:>11}")
    out.append("")
    out.append("floor oj = gc.disable(); orjson.loads(requests.get(url).content) (the one to "
               "judge by); floor json = requests.get(url).json();")
    out.append("cold = servicerouter one-shot with no state from earlier runs; unchanged = the "
               "same one-shot again, Marathon's answer unchanged;")
    out.append("cold/oj, cold/js, unch/oj: wall-time ratios; cpu/oj: cold/oj in CPU time "
               "(user+sys); start = cold wall time outside the sync")
    by_key = {(r.apps, r.addresses): r for r in results}
    sizes = sorted({r.apps for r in results})
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for shape in ("hosts", "distinct"):
            if (small, shape) in by_key and (large, shape) in by_key:
                a, b = by_key[(small, shape)], by_key[(large, shape)]
                growth = [_median(b.stages.get(s, [])) / _median(a.stages.get(s, []))
                          for s in ("render", "model")]
                out.append(f"growth {large}/{small} apps ({large / small:.0f}x), {shape}: "
                           f"render {growth[0]:.1f}x, model {growth[1]:.1f}x")
    out.extend(_targets(results))
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
    parser.add_argument("--addresses", default="hosts,distinct",
                        help="address shapes: hosts (a pool of agents), distinct (one per "
                             "task); default both")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per app (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="1000 and 5000 apps, distinct addresses, 3 runs, no long-running "
                             "router: the goal's figures in about a minute")
    parser.add_argument("--no-resync", action="store_true",
                        help="skip the in-process long-running sync measurement")
    parser.add_argument("--workdir", help="keep generated states and configs here")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.addresses, args.runs, args.no_resync = "1000,5000", "distinct", 3, True
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    shapes = [a for a in ADDRESS_SHAPES if a in args.addresses.split(",")]
    if not shapes or set(args.addresses.split(",")) - set(ADDRESS_SHAPES):
        parser.error(f"--addresses takes {', '.join(ADDRESS_SHAPES)}")
    if not sizes or min(sizes) < 1 or args.runs < 1 or args.tasks < 1:
        parser.error("sizes, --runs and --tasks must be positive")
    haproxy_bin = shutil.which("haproxy")
    workdir = args.workdir or tempfile.mkdtemp(prefix="servicerouter-bench-")
    os.makedirs(workdir, exist_ok=True)
    env = child_env(workdir)
    started = time.monotonic()
    try:
        results = []
        for apps in sizes:
            for shape in shapes:
                print(f"... {apps} apps x {args.tasks} tasks, {shape} addresses",
                      file=sys.stderr, flush=True)
                results.append(measure_size(apps, args.tasks, shape, args.runs, workdir, env,
                                            haproxy_bin))
        resync = None
        if not args.no_resync:
            target = max(s for s in sizes if s <= 5000) if min(sizes) <= 5000 else min(sizes)
            print(f"... long-running router at {target} apps", file=sys.stderr, flush=True)
            resync = measure_resync(target, args.tasks, workdir, env)
        print(report(results, resync, machine_info(haproxy_bin)))
        print(f"\nbenchmark took {time.monotonic() - started:.0f}s; load average at the end "
              f"{os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")
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
    return {"apps": result.apps, "tasks": result.tasks, "addresses": result.addresses,
            "body_bytes": result.body_bytes, "config_bytes": result.config_bytes,
            "floor_json": runs(result.floor_json), "floor_orjson": runs(result.floor_orjson),
            "servicerouter": runs(result.router), "unchanged": runs(result.unchanged),
            "stages": result.stages, "unchanged_stages": result.unchanged_stages,
            "haproxy_check": result.haproxy_check,
            "ratios": {"cold_orjson": result.paired(result.router, result.floor_orjson),
                       "cold_orjson_cpu": result.paired(result.router, result.floor_orjson,
                                                        "cpu"),
                       "cold_json": result.paired(result.router, result.floor_json),
                       "unchanged_orjson": result.paired(result.unchanged, result.floor_orjson),
                       "rss_orjson": result.rss_ratio(result.router, result.floor_orjson)}}


if __name__ == "__main__":
    sys.exit(main())
