"""The live engine's own cost of one task event, at growing cluster sizes, in one process.

    python benchmarks/task_event_cost.py                       # 1k, 10k, 50k tasks
    python benchmarks/task_event_cost.py --sizes 1000,50000 --events 400 --profile

Issue 10 asks that the cost of one task event not grow with the cluster.  The
end-to-end benchmark (``event_latency.py``) shows it through HAProxy, the event
stream and the machine's load; this one isolates the engine: a
:class:`~servicerouter.engine.live.LiveRouter` over a generated cluster
(``generate.py``, distinct task addresses, 10 tasks per app, the command line's
default render options with map files and ``--max-check-rate``), a fake Runtime API
and reloader (no HAProxy), and task events submitted one at a time: a task added
to an app, then killed again, round robin over the apps.  For every event it
times

- **plan**: ``plan_task_update`` (derive the app's servers, render its backend
  alone, diff it, keep the running config), the step issue 10 names;
- **sync**: the whole ``LiveRouter.step()`` (mirror update, task path, Runtime API
  plan handed to the fake, bookkeeping), what the engine adds to an event->route.

Every event must take the task path (the run fails otherwise).  The ratio line
gives the largest size's p50 over the smallest's (``50k/1k``): flat is ~1.0.  Sizes
run one after the other in this process, so note the load average printed at the end.
``--profile`` prints cProfile's top entries of the largest size's syncs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generate import generate_state  # noqa: E402
from servicerouter.apply.confdiff import RuntimePlan  # noqa: E402
from servicerouter.apply.managed import ReloadResult  # noqa: E402
from servicerouter.apply.runtime_api import RuntimeStats  # noqa: E402
from servicerouter.engine import task_path  # noqa: E402
from servicerouter.engine.live import LiveRouter, LiveSettings  # noqa: E402
from servicerouter.engine.runner import Router, RouterSettings  # noqa: E402
from servicerouter.render.fragments import load_fragments  # noqa: E402
from servicerouter.render.options import RenderOptions  # noqa: E402
from servicerouter.source.changes import Pending  # noqa: E402

TASKS_PER_APP = 10


class _Source:
    """Marathon as a dict (the first sync reads it whole; events do the rest)."""

    def __init__(self, apps: list[dict[str, Any]]) -> None:
        self.apps = {app["id"]: app for app in apps}

    def fetch_apps_body(self) -> bytes:
        import orjson

        return orjson.dumps({"apps": list(self.apps.values())})

    def fetch_app(self, app_id: str) -> dict[str, Any]:
        return self.apps[app_id]


class _Reloader:
    def __init__(self) -> None:
        self.calls = 0

    def reload(self) -> ReloadResult:
        self.calls += 1
        return ReloadResult(True, "no HAProxy in this benchmark")


class _Runtime:
    """Takes plans as HAProxy's Runtime API would, without a socket."""

    def __init__(self) -> None:
        self.stats = RuntimeStats()
        self.commands = 0

    def apply(self, plan: RuntimePlan) -> None:
        self.commands += len(plan.add) + len(plan.remove) + len(plan.readdress)

    def forget(self) -> None:
        pass


def build(tasks: int, workdir: Path) -> tuple[LiveRouter, list[str]]:
    """A live engine after its first (full) sync over ``tasks`` tasks, and the app ids
    whose task events it routes."""
    state = generate_state(max(1, tasks // TASKS_PER_APP), TASKS_PER_APP, addresses="distinct")
    config = workdir / "haproxy.cfg"
    options = RenderOptions(map_dir=str(workdir / "maps"), max_check_rate=1000)
    settings = RouterSettings(config_path=str(config), groups=("*",), validate=False,
                              render_options=options, state_dir=str(workdir / "state"),
                              certs_dir=None)
    router = Router(_Source(state["apps"]), load_fragments(), settings)
    live = LiveRouter(router, reloader=_Reloader(), runtime=_Runtime(),  # type: ignore[arg-type]
                      settings=LiveSettings(resync_interval=1e9))
    live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
    first = Pending()
    first.request_full("start")
    if not live.sync(first):
        raise SystemExit(f"the first sync failed at {tasks} tasks")
    assert live._running is not None
    routed = sorted({s.app_id for s in live._running.model.services if s.servers})
    return live, routed


def events(app_ids: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` events: a task started on an app, then killed, round robin."""
    out: list[dict[str, Any]] = []
    for serial in range(count // 2):
        app_id = app_ids[(serial * 7919) % len(app_ids)]  # spread over the whole config
        task_id = f"bench{serial}.{app_id.strip('/').replace('/', '_')}"
        host = f"172.{16 + serial // 65536 % 16}.{serial // 256 % 256}.{serial % 256 or 1}"
        out.append({"eventType": "status_update_event", "appId": app_id, "taskId": task_id,
                    "taskStatus": "TASK_RUNNING", "host": host, "ports": [40000, 40001],
                    "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}]})
        out.append({"eventType": "status_update_event", "appId": app_id, "taskId": task_id,
                    "taskStatus": "TASK_KILLED", "host": host, "ports": [40000, 40001]})
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def measure(tasks: int, count: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    """Plan and sync times (ms) of ``count`` task events at ``tasks`` tasks."""
    with tempfile.TemporaryDirectory(prefix="sr-task-cost-") as tmp:
        live, app_ids = build(tasks, Path(tmp))
        plan_times: list[float] = []
        original = task_path.plan_task_update

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                plan_times.append((time.perf_counter() - began) * 1e3)

        task_path.plan_task_update = timed  # type: ignore[assignment]
        sync_times: list[float] = []
        try:
            gc.collect()
            for event in events(app_ids, count):
                live.submit(event)
                began = time.perf_counter()
                if profile is not None:
                    profile.enable()
                ok = live.step()
                if profile is not None:
                    profile.disable()
                sync_times.append((time.perf_counter() - began) * 1e3)
                if not ok or live.state.last_path != "task":
                    raise SystemExit(f"{tasks} tasks: an event took the {live.state.last_path} "
                                     f"path ({live.state.last_full_reason})")
        finally:
            task_path.plan_task_update = original  # type: ignore[assignment]
            live.stop()
        size = len(live._applied_text or "")
    return {"tasks": tasks, "events": len(sync_times), "config_bytes": size,
            "plan_p50": percentile(plan_times, 50), "plan_p99": percentile(plan_times, 99),
            "sync_p50": percentile(sync_times, 50), "sync_p99": percentile(sync_times, 99)}


def _size(tasks: int) -> str:
    return f"{tasks // 1000}k" if tasks % 1000 == 0 else str(tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="task counts")
    parser.add_argument("--events", type=int, default=300, help="task events per size")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the largest size's syncs (top 25 by own time)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    profile = None
    print(f"{'tasks':>7} {'config':>9} {'plan p50':>9} {'p99':>7} {'sync p50':>9} {'p99':>7}"
          "   (ms per task event; fake Runtime API, no HAProxy)")
    for tasks in sizes:
        profile = cProfile.Profile() if args.profile and tasks == max(sizes) else None
        row = measure(tasks, args.events, profile)
        rows.append(row)
        print(f"{row['tasks']:>7} {row['config_bytes'] / 1e6:>7.1f}MB {row['plan_p50']:>9.3f} "
              f"{row['plan_p99']:>7.3f} {row['sync_p50']:>9.3f} {row['sync_p99']:>7.3f}",
              flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"{_size(last['tasks'])}/{_size(first['tasks'])} p50 ratio: "
              f"plan {last['plan_p50'] / first['plan_p50']:.2f}, "
              f"sync {last['sync_p50'] / first['sync_p50']:.2f} (flat: ~1.0)")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
