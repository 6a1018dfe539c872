"""Event-to-route latency of the live engine's narrower paths, with the same floor.

    python benchmarks/event_latency_paths.py --sizes 1000,10000
    python benchmarks/event_latency_paths.py --product /work/main   # another checkout

The setup of ``benchmarks/event_latency.py`` (emulated cluster of N tasks, a real
servicerouter with the default settings managing a real HAProxy), plus:

- group (a blue/green deployment group, ``HAPROXY_DEPLOYMENT_GROUP``: two apps,
  one backend): the new colour's task turns unhealthy -> three answers in a row
  from the old colour's (it is no longer drained); healthy again -> three from
  the new one's (the old one drains again).  The event names one member; the
  backend is the group's.
- group-update (the same group): an app update of the new colour, its
  ``HAPROXY_DEPLOYMENT_TARGET_INSTANCES`` raised to 2 -> the first answer from
  the old colour (no longer drained); back to 1 -> only the new one answers.
  The app path re-decides the group from both members.
- resync: servicerouter is sent SIGHUP (a full resync: fetch, model and render
  of every app), and 50 ms later a task is added -> its first answer.  The
  event waits for the resync; what matters is that it takes the task path
  after it, not a second full one.
- mlb-vhost (a run with marathon-lb's ``--haproxy-map``): the HTTP app's
  virtual host changes (an app update) -> its first answer there, routed through
  ``domain2backend.map``.

The columns are event_latency.py's: p50/p99/max, the floor (SSE delivery plus
one Runtime API round trip, same trials), HAProxy reloads, and how many syncs
took the task path or the full path (with the full path's reasons below).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.event_latency import (  # noqa: E402
    TASKS_PER_APP,
    Run,
    first_answer,
    only_answers,
    percentile,
    reserve_ports,
)
from tests.harness import find_haproxy  # noqa: E402

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0}]


class GroupSetup:
    """A blue/green group whose new colour (green) serves and whose old one is drained."""

    def __init__(self, tasks: int) -> None:
        self.group_port, self.alt_port = reserve_ports(tasks // TASKS_PER_APP + 10)[-2:]
        self.green_task = ""
        self.apps: dict[str, dict] = {}

    def __call__(self, run: Run) -> None:
        for colour, started, backend, port in (
                ("blue", "2026-01-01T10:00:00", run.backends[0], self.group_port),
                ("green", "2026-01-01T11:00:00", run.backends[1], self.alt_port)):
            app_id = f"/bench-{colour}"
            self.apps[colour] = {
                "id": app_id, "instances": 1, "portDefinitions": [{"port": port}],
                "healthChecks": CHECK,
                "labels": {"HAPROXY_DEPLOYMENT_GROUP": "bench", "HAPROXY_0_MODE": "http",
                           "HAPROXY_0_PORT": str(self.group_port),
                           "HAPROXY_DEPLOYMENT_ALT_PORT": str(self.alt_port),
                           "HAPROXY_DEPLOYMENT_STARTED_AT": started,
                           # a deployment to one instance (marathon-lb's rule): 1 is the
                           # default, written out so group-update can change it
                           "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0",
                           "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "1"}}
            run.emulator.put_app(self.apps[colour])
            task = run.emulator.add_task(app_id, "127.0.0.1", [backend.port], healthy=True)
            if colour == "green":
                self.green_task = task["id"]

    def trials(self, run: Run) -> None:
        port = self.group_port
        only_answers(port, "green", timeout=300)
        server = f"bench_{port}/127_0_0_1_{run.backends[0].port}"

        def down() -> tuple:
            run.emulator.set_task_health("/bench-green", self.green_task, False)
            return ("health_status_changed_event", self.green_task, None, False)

        run.trial("group-down", "/target-group", down, lambda: only_answers(port, "blue"), server)

        def up() -> tuple:
            run.emulator.set_task_health("/bench-green", self.green_task, True)
            return ("health_status_changed_event", self.green_task, None, True)

        run.trial("group-up", "/target-group", up, lambda: only_answers(port, "green"), server)

    def update_trials(self, run: Run) -> None:
        """App updates of the new colour: its target instances 2 (the old colour's task
        serves again), then 1 (it drains)."""
        port = self.group_port
        only_answers(port, "green", timeout=300)
        server = f"bench_{port}/127_0_0_1_{run.backends[0].port}"

        def target(count: int) -> Callable[[], tuple]:
            def change() -> tuple:
                green = self.apps["green"]
                green["labels"]["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"] = str(count)
                run.emulator.put_app(green)
                return ("api_post_event", None, None, None)
            return change

        run.trial("group-update-2", "/target-group", target(2),
                  lambda: first_answer(port, "blue"), server)
        run.trial("group-update-1", "/target-group", target(1),
                  lambda: only_answers(port, "green"), server)


def resync_trial(run: Run) -> None:
    """A task added 50 ms into a full resync (SIGHUP) -> its first answer."""
    target, port = "/target-tcp", run.tcp_port
    old_id, old_index = run.current[target]
    new = run.backends[1 - old_index]
    server = f"{target[1:]}_{port}/127_0_0_1_{new.port}"
    added: dict = {}

    def add() -> tuple:
        assert run.proc is not None
        run.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
        added.update(run.emulator.add_task(target, "127.0.0.1", [new.port]))
        return ("status_update_event", added["id"], "TASK_RUNNING", None)

    run.trial("resync-add", target, add, lambda: first_answer(port, new.name), server)
    run.emulator.kill_task(target, old_id)
    only_answers(port, new.name)
    run.current[target] = (added["id"], 1 - old_index)
    run.settle(quiet=1.0)


def measure(kind: str, tasks: int, trials: int, product: Path, haproxy_bin: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="sr-bench-paths-"))
    run = None
    group = GroupSetup(tasks) if kind in ("group", "group-update") else None
    extra = ("--haproxy-map",) if kind == "mlb-vhost" else ()
    try:
        run = Run(tasks, product, workdir, haproxy_bin, False, False, extra, group)
        before = run.status()
        for _ in range(trials):
            if kind == "group-update":
                assert group is not None
                group.update_trials(run)
            elif group is not None:
                group.trials(run)
            elif kind == "resync":
                resync_trial(run)
            else:
                run.vhost("/target-http")
        after = run.status()
        task_syncs, full_syncs, reasons, slowest = run.paths()
        result = {"tasks": tasks + 2 + (2 if group else 0), "kind": kind, "reloads": run.reloads,
                  "syncs": after["syncs"] - before["syncs"],
                  "floor_p50_ms": percentile(run.floors, 50) * 1000,
                  "floor_p99_ms": percentile(run.floors, 99) * 1000,
                  "paths": {"task": task_syncs, "full": full_syncs,
                            "slowest_task_sync_ms": round(slowest * 1000, 1),
                            "full_reasons": dict(reasons.most_common())},
                  "load_average": [round(v, 2) for v in os.getloadavg()], "kinds": {}}
        for name, values in run.latencies.items():
            result["kinds"][name] = {"p50_ms": percentile(values, 50) * 1000,
                                     "p99_ms": percentile(values, 99) * 1000,
                                     "max_ms": max(values) * 1000, "n": len(values)}
        return result
    except Exception:
        log = workdir / "servicerouter.log"
        tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
        print(f"{kind} at {tasks} tasks failed; kept {workdir}:\n" + "\n".join(tail),
              file=sys.stderr)
        raise
    finally:
        if run is not None:
            run.close()
        if run is not None and run.proc is not None and run.proc.returncode in (0, -15):
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="task counts")
    parser.add_argument("--trials", type=int, default=20, help="trials per kind")
    parser.add_argument("--kinds", default="group,mlb-vhost", help="group, group-update, mlb-vhost, resync")
    parser.add_argument("--product", type=Path, default=ROOT,
                        help="servicerouter checkout to run (default this one)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    haproxy_bin = find_haproxy("haproxy")
    if not args.json:
        print(f"event-to-route latency (group / --haproxy-map), default settings, product "
              f"{args.product}; load average at start "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"{'tasks':>7} {'kind':<18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>4} "
              f"{'floor p50/p99':>14} {'reloads':>8} {'task/full':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            started = time.monotonic()
            result = measure(kind, size, args.trials, args.product, haproxy_bin)
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            for name, row in result["kinds"].items():
                print(f"{result['tasks']:>7} {name:<18} {row['p50_ms']:>8.1f} "
                      f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['n']:>4} "
                      f"{result['floor_p50_ms']:>6.1f}/{result['floor_p99_ms']:<7.1f} "
                      f"{result['reloads']:>8} "
                      f"{result['paths']['task']:>4}/{result['paths']['full']:<5}", flush=True)
            reasons = "; ".join(f"{n}x {r}" for r, n in result["paths"]["full_reasons"].items())
            print(f"{'':>7} full-path syncs: {reasons or 'none'}; load average "
                  f"{' '.join(map(str, result['load_average']))}; "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
