"""The dashboard at 5,000 apps: what a page costs, stage by stage and over HTTP.

    python benchmarks/dashboard.py                 # 5,000 apps x 10 tasks, 30 rounds
    python benchmarks/dashboard.py --apps 1000 --rounds 10

The state is benchmarks/generate.py's (deterministic, Marathon 1.x shapes),
built into services by the model as a sync would.  Timed per round, in this
process, interleaved: the snapshot (rows for every routed port), one page
(filter + slice) unfiltered and filtered by text, the render of that page,
and a whole ``GET /`` over HTTP from the status server (sign-in off:
loopback, no token; no HAProxy, so no server states: those add two Runtime
API exchanges per 40 backends on the page, not timed here).  The floor for the HTTP row, in the same rounds:
``GET /healthz`` on the same server (a request that does no work).  Medians
and the spread (min..max) are printed with the load average, as the machine
is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from benchmarks.generate import generate_state  # noqa: E402
from servicerouter.engine.dashboard_snapshot import DashboardData, dashboard_snapshot  # noqa: E402
from servicerouter.model.services import build_model  # noqa: E402
from servicerouter.serve.dashboard import (  # noqa: E402
    PageQuery,
    SessionView,
    parse_query,
    render_dashboard,
    select_services,
)
from servicerouter.serve.dashboard_http import Dashboard  # noqa: E402
from servicerouter.serve.status import Metrics, StatusServer  # noqa: E402

STATUS = {"build": {"version": "bench", "haproxy": "2.6"}, "marathon": {"host": "m",
                                                                        "available": True},
          "removal_hold": {"held": False}, "certificates": [], "quarantined": [],
          "conflicts": [], "problems": []}


def lap(started: float) -> float:
    """Milliseconds since ``started``."""
    return (time.perf_counter() - started) * 1000


def one_round(times: dict[str, list[float]], services: Sequence[Any], needle: PageQuery,
              get: Callable[[str], object]) -> None:
    """Every stage once, in order, each timed on its own."""
    started = time.perf_counter()
    snap = dashboard_snapshot(STATUS, services)
    times["snapshot"].append(lap(started))
    rows = snap["services"]
    started = time.perf_counter()
    page = select_services(rows, parse_query(""))
    times["page (all)"].append(lap(started))
    started = time.perf_counter()
    select_services(rows, needle)
    times["page (filtered)"].append(lap(started))
    started = time.perf_counter()
    render_dashboard(snap, page, {}, SessionView())
    times["render"].append(lap(started))
    for name, path in (("GET / (HTTP)", "/"), ("GET /?q= (HTTP)", "/?q=" + needle.text),
                       ("GET /healthz (floor)", "/healthz")):
        started = time.perf_counter()
        get(path)
        times[name].append(lap(started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    state = generate_state(args.apps, args.tasks)
    apps = state["apps"] if isinstance(state, dict) else state
    services = build_model(apps, ["*"], lambda host: host).services
    print(f"{args.apps} apps x {args.tasks} tasks -> {len(services)} routed ports, "
          f"{sum(len(s.servers) for s in services)} servers; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data = DashboardData(status=lambda: dict(STATUS), services=lambda: services)
    server = StatusServer(("127.0.0.1", 0), Metrics(), lambda: dict(STATUS),
                          lambda: (True, "ok"), dashboard=Dashboard(data, None))
    server.start()
    session = requests.Session()
    session.trust_env = False
    base = f"http://127.0.0.1:{server.port}"
    needle = parse_query("q=" + services[len(services) // 2].app_id.split("/")[1])
    times: dict[str, list[float]] = {k: [] for k in (
        "snapshot", "page (all)", "page (filtered)", "render", "GET / (HTTP)",
        "GET /?q= (HTTP)", "GET /healthz (floor)")}
    try:
        for _ in range(args.rounds):
            one_round(times, services, needle, lambda path: session.get(base + path,
                                                                        timeout=30))
        size = len(session.get(base + "/", timeout=30).content)
    finally:
        server.stop()
    print(f"{'stage':<22} {'median ms':>10} {'min..max ms':>16}")
    for name, values in times.items():
        print(f"{name:<22} {statistics.median(values):>10.2f} "
              f"{min(values):>7.2f}..{max(values):<8.2f}")
    print(f"page size: {size} bytes (50 rows); load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
