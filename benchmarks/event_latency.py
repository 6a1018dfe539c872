"""Event-to-route latency: a Marathon event -> the first request served by the new task.

    python benchmarks/event_latency.py            # 1k and 10k tasks
    python benchmarks/event_latency.py --quick    # CI smoke: 200 tasks, few trials

Setup, all on 127.0.0.1: the Marathon emulator (in this process) holds N tasks
(10 per app, every app with its own frontend), a real servicerouter process
follows its event stream (``--sse``) and manages a real HAProxy
(``--manage-haproxy``).  One extra app has one task on a real backend
process.  Each trial replaces that task (add a task on the other backend,
kill the old one, as a rolling deployment does) and times from just before
the emulator emits the event to the first response from the new backend,
polling HAProxy on fresh connections.  Printed beside it: the time of one
full ``/v2/apps?embed=apps.tasks`` fetch + JSON parse of the same state,
which is what a router that refetches on every event pays before it can
even start rendering.

Filler servers have no health checks (a benchmark-only server fragment), so
thousands of checks against closed ports do not steal the CPU being measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servicerouter.emulator.marathon import MarathonEmulator  # noqa: E402
from servicerouter.source.marathon import MarathonClient, parse_apps  # noqa: E402
from tests.harness import Backend, find_haproxy, http_get, wait_until  # noqa: E402

TASKS_PER_APP = 10
SERVER_FRAGMENT = "  server {serverName} {host_ipv4}:{port}{cookieOptions}\n"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def reserve_ports(count: int) -> list[int]:
    """``count`` distinct ports free now, chosen outside the kernel's ephemeral range.

    Ports handed out by ``bind(0)`` are ephemeral ones: after we let them go, the
    backends' own ``bind(0)``, every client connection and other programs may take
    them again before HAProxy binds them (a frontend that cannot bind fails the whole
    start).  Ports below or above that range are never handed out by the kernel.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 65536) if not low <= p <= high and
                  not 20000 <= p < 20000 + TASKS_PER_APP]  # the filler servers' ports
    start = (os.getpid() * 7919) % len(candidates)  # concurrent runs start apart
    ports: list[int] = []
    for port in candidates[start:] + candidates[:start]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"fewer than {count} free ports outside {low}-{high}")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(no log: {err})"


def stop_left_haproxy(workdir: Path) -> None:
    """If servicerouter could not stop its HAProxy, stop it here (ours: pidfile + cmdline)."""
    try:
        pid = int((workdir / ".servicerouter" / "haproxy.pid").read_text().split()[0])
        if str(workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        pass


def build_state(tasks: int, ports: list[int]) -> list[dict]:
    apps = []
    for index in range(tasks // TASKS_PER_APP):
        app_id = f"/fill/app{index:05d}"
        apps.append({
            "id": app_id, "instances": TASKS_PER_APP,
            "portDefinitions": [{"port": ports[index]}],
            "tasks": [{"id": f"fill_app{index:05d}.{t}", "appId": app_id,
                       "host": "127.0.0.1", "ports": [20000 + t], "state": "TASK_RUNNING"}
                      for t in range(TASKS_PER_APP)],
        })
    return apps


def first_answer_from(port: int, name: str, timeout: float = 20.0) -> float:
    """Poll until ``name`` answers through HAProxy; returns the monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if body.strip().decode() == name:
                return time.monotonic()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
    raise TimeoutError(f"{name} never answered on port {port}")


def fetch_parse_seconds(url: str, repeat: int = 5) -> float:
    client = MarathonClient([url])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        parse_apps(client.fetch_apps_body())
        times.append(time.perf_counter() - start)
    client.close()
    return statistics.median(times)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]


def run_size(tasks: int, trials: int, min_wait: float, haproxy_bin: str, workdir: Path,
             verbose: bool) -> dict:
    ports = reserve_ports(tasks // TASKS_PER_APP + 6)
    target_port, status_port, *shared = ports[-6:]
    state = build_state(tasks, ports)
    templates = workdir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "HAPROXY_BACKEND_SERVER_OPTIONS").write_text(SERVER_FRAGMENT)
    backends = [Backend("blue"), Backend("green")]
    for backend in backends:
        backend.start()
    emulator = MarathonEmulator(keepalive_interval=5.0)
    emulator.load_state({"apps": state})
    emulator.start()
    proc = None
    try:
        emulator.put_app({"id": "/target", "portDefinitions": [{"port": target_port}]})
        current = emulator.add_task("/target", "127.0.0.1", [backends[0].port])["id"]
        fetch_parse = fetch_parse_seconds(emulator.url)
        argv = [
            sys.executable, "-m", "servicerouter", "-m", emulator.url, "--sse",
            "--manage-haproxy", "--haproxy-stop-on-exit", "--haproxy-bin", haproxy_bin,
            "--haproxy-config", str(workdir / "haproxy.cfg"), "--group", "*",
            "--templates-dir", str(templates), "--syslog-socket", "/dev/null",
            "--bind-addr", "127.0.0.1", "--http-port", str(shared[0]),
            "--https-port", str(shared[1]), "--appid-port", str(shared[2]),
            "--stats-port", str(shared[3]), "--status-listen", str(status_port),
            "--min-wait", str(min_wait), "--max-wait", str(max(min_wait * 5, 0.1)),
            "--log-level", "info" if verbose else "warning",
        ]
        log = open(workdir / "servicerouter.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        log.close()
        first_answer_from(target_port, "blue", timeout=120)

        def status() -> dict:
            return json.loads(http_get(f"http://127.0.0.1:{status_port}/status").text)

        wait_until(lambda: status()["last_apply"] is not None, 60)
        before = status()
        latencies = []
        for trial in range(trials):
            new = backends[(trial + 1) % 2]
            time.sleep(0.3)  # let the previous change (and its drain) settle
            start = time.monotonic()
            added = emulator.add_task("/target", "127.0.0.1", [new.port])["id"]
            emulator.kill_task("/target", current)
            current = added
            latencies.append(first_answer_from(target_port, new.name) - start)
        after = status()
        return {
            "tasks": tasks + 1,
            "apps": len(state) + 1,
            "trials": trials,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000,
            "fetch_parse_ms": fetch_parse * 1000,
            "reloads": after["reloads"] - before["reloads"],
            "runtime_updates": after["runtime_updates"] - before["runtime_updates"],
        }
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            stop_left_haproxy(workdir)
        emulator.stop()
        for backend in backends:
            backend.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: 200 tasks, 10 trials")
    parser.add_argument("--sizes", default="1000,10000", help="task counts (comma-separated)")
    parser.add_argument("--trials", type=int, default=100, help="trials per size")
    parser.add_argument("--min-wait", type=float, default=0.02,
                        help="servicerouter --min-wait (coalescing quiet time)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    trials = 10 if args.quick else args.trials
    haproxy_bin = find_haproxy("haproxy")
    print(f"event-to-route latency, {trials} trials per size, --min-wait {args.min_wait}s "
          f"(included in every figure)")
    print(f"{'tasks':>7} {'apps':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'fetch+parse ms':>15} {'reloads':>8} {'runtime':>8}")
    for size in sizes:
        workdir = Path(tempfile.mkdtemp(prefix="sr-bench-latency-"))
        try:
            result = run_size(size, trials, args.min_wait, haproxy_bin, workdir, args.verbose)
        except Exception:
            # kept for a look: the config, the state and servicerouter's own log
            print(f"size {size} failed; kept {workdir}; servicerouter.log ends:\n"
                  + log_tail(workdir / "servicerouter.log"), file=sys.stderr, flush=True)
            raise
        shutil.rmtree(workdir, ignore_errors=True)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['tasks']:>7} {result['apps']:>6} {result['p50_ms']:>8.1f} "
                  f"{result['p99_ms']:>8.1f} {result['max_ms']:>8.1f} "
                  f"{result['fetch_parse_ms']:>15.1f} {result['reloads']:>8} "
                  f"{result['runtime_updates']:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
