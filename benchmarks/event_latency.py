"""Event-to-route latency: a Marathon event -> HAProxy routing by it, with a floor.

    python benchmarks/event_latency.py                  # 1k, 10k and 50k tasks
    python benchmarks/event_latency.py --quick          # CI smoke: 200 tasks, few trials
    python benchmarks/event_latency.py --product /work/main   # another checkout (before/after)

Setup, all on 127.0.0.1: the Marathon emulator (in this process) holds N
tasks (10 per app, every app with its own frontend); a real servicerouter
process follows its event stream (``--sse``) and manages a real HAProxy
(``--manage-haproxy``), with the DEFAULT settings and fragments (only ports
and paths are given; ``--drain-timeout 0`` for removals).  Two target apps,
one HTTP (``HAPROXY_0_MODE=http``) and one TCP, route to real backend
processes that answer with their name.  Trials, timed from just before the
emulator emits the event to what a client sees through HAProxy on fresh
connections:

- add: a task on the other backend is started -> its first answer;
- remove: the old task is killed -> three answers in a row from the survivor;
- vhost (HTTP): the app's ``HAPROXY_0_VHOST`` label changes (an app update:
  ``api_post_event`` and a deployment) -> the new virtual host's first answer
  through the shared HTTP frontend;
- health (second servicerouter run with ``--health-check``, where Marathon's
  health routes): the task turns unhealthy -> three answers in a row from the
  other; healthy again -> its first answer.

servicerouter logs every sync with the path it took (task or full) and why a
full one could not take the task path; the table's last columns count them
over the trials, and ``--json`` lists the reasons.

Where a trial's time went: servicerouter logs each sync's steps on the
machine's monotonic clock ("sync timing ... at event=...,start=...,api=...,
answered=...,end=..."), which this process reads too, so every trial splits
into: ``to_sr`` (the emulator emits -> servicerouter's event reader has it),
``wake`` (-> its sync loop woke up), ``lock`` (-> the sync began), ``plan``
(-> the first Runtime API command), ``api`` (-> HAProxy's last answer) and
``seen`` (-> a client's request routed by it; with the number of requests and
the slowest one, and this process's own garbage-collector pauses).  The
slowest trial of each kind is printed that way, every trial with
``--verbose`` (``--json``: in the result), and each step's p50/p99 with
servicerouter's own part (its reading the event -> HAProxy's last answer)
and one request through HAProxy's (the probes' durations).  Probes pause
2 ms between requests (``latency_probes.PACE``): unpaced they took a core
and this process's GIL from the emulator; the pause can only add to a trial.

Reloads are counted from HAProxy itself (new worker processes of its master).
The floor, per trial in the same run: SSE delivery of that event to a client
in this process plus one Runtime API round trip (``get weight``) to the same
HAProxy: what any router needs at least.  Filler servers are checked as the
default fragment says, unless HAProxy could not get the file descriptors
(one per checked server) under this machine's hard limit: then they are not,
and the ``checks`` column says so.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.latency_probes import (  # noqa: E402
    EventClock,
    first_answer,
    first_vhost_answer,
    only_answers,
    runtime_round_trip,
    start_busy,
    stop_busy,
)
from benchmarks.latency_trace import (  # noqa: E402
    PHASES,
    GcPauses,
    describe,
    explain,
    sync_paths,
    sync_stamps,
)
from servicerouter.emulator.marathon import MarathonEmulator  # noqa: E402
from tests.harness import Backend, find_haproxy, http_get  # noqa: E402

TASKS_PER_APP = 10
NO_CHECK_SERVER = "  server {serverName} {host_ipv4}:{port}{cookieOptions}\n"
HEALTH = {"/target-http": [{"protocol": "HTTP", "path": "/", "portIndex": 0}],
          "/target-tcp": [{"protocol": "TCP", "portIndex": 0}]}


def reserve_ports(count: int) -> list[int]:
    """``count`` ports free now, outside the kernel's ephemeral range (see README)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    candidates = [p for p in range(10000, 65536) if not low <= p <= high
                  and not 20000 <= p < 20000 + TASKS_PER_APP]
    start = (os.getpid() * 7919) % len(candidates)
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
    raise RuntimeError(f"fewer than {count} free ports")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))]


def haproxy_workers(state_dir: Path) -> set[int]:
    """Worker processes of the managed HAProxy master (a reload starts a new one)."""
    try:
        master = int((state_dir / "haproxy.pid").read_text().split()[0])
        return {int(p) for p in Path(f"/proc/{master}/task/{master}/children")
                .read_text().split()}
    except (OSError, ValueError, IndexError):
        return set()


class Run:
    """One servicerouter + managed HAProxy over an emulated cluster of ``tasks`` tasks."""

    def __init__(self, tasks: int, product: Path, workdir: Path, haproxy_bin: str,
                 health_check: bool, verbose: bool, extra_args: tuple[str, ...] = (),
                 setup: Callable[[Run], None] | None = None) -> None:
        """``setup`` adds apps before servicerouter starts, ``extra_args`` are its flags
        (benchmarks/event_latency_paths.py's trials)."""
        # The backends listen first: the ports reserved next can never be theirs (a fill
        # app's frontend on a backend's port was quarantined as "address in use").
        self.backends = [Backend("blue"), Backend("green")]
        for backend in self.backends:
            backend.start()
        ports = reserve_ports(tasks // TASKS_PER_APP + 8)
        self.http_port, self.tcp_port, status_port, *shared = ports[-8:]
        self.workdir = workdir
        self.need_fds = tasks + tasks // TASKS_PER_APP + 300
        self.checks = resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= self.need_fds
        self.emulator = MarathonEmulator(keepalive_interval=5.0)
        self.emulator.load_state({"apps": [
            {"id": f"/fill/app{i:05d}", "instances": TASKS_PER_APP,
             "portDefinitions": [{"port": ports[i]}],
             "tasks": [{"id": f"fill_app{i:05d}.{t}", "appId": f"/fill/app{i:05d}",
                        "host": "127.0.0.1", "ports": [20000 + t], "state": "TASK_RUNNING"}
                       for t in range(TASKS_PER_APP)]}
            for i in range(tasks // TASKS_PER_APP)]})
        self.emulator.start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.current: dict[str, tuple[str, int]] = {}  # target -> (task id, backend index)
        for target, port, labels in (("/target-http", self.http_port,
                                      {"HAPROXY_0_MODE": "http", "HAPROXY_0_VHOST": "v0.bench.test"}),
                                     ("/target-tcp", self.tcp_port, {})):
            app = {"id": target, "portDefinitions": [{"port": port}], "labels": labels}
            if health_check:
                app["healthChecks"] = HEALTH[target]
            self.emulator.put_app(app)
            task = self.emulator.add_task(target, "127.0.0.1", [self.backends[0].port],
                                          healthy=True if health_check else None)
            self.current[target] = (task["id"], 0)
        if setup is not None:
            setup(self)
        templates = workdir / "templates"
        templates.mkdir(parents=True, exist_ok=True)
        if not self.checks:
            (templates / "HAPROXY_BACKEND_SERVER_OPTIONS").write_text(NO_CHECK_SERVER)
        argv = [sys.executable, "-m", "servicerouter", "-m", self.emulator.url, "--sse",
                "--manage-haproxy", "--haproxy-stop-on-exit", "--haproxy-bin", haproxy_bin,
                "--haproxy-config", str(workdir / "haproxy.cfg"), "--group", "*",
                "--templates-dir", str(templates), "--syslog-socket", "/dev/null",
                "--bind-addr", "127.0.0.1", "--http-port", str(shared[0]),
                "--https-port", str(shared[1]), "--appid-port", str(shared[2]),
                "--stats-port", str(shared[3]), "--status-listen", str(status_port),
                "--drain-timeout", "0", "--log-level", "info"]  # info: each sync's path
        if health_check:
            argv.append("--health-check")
        argv += extra_args
        self.status_url = f"http://127.0.0.1:{status_port}/status"
        self.frontend = shared[0]  # the shared HTTP frontend (virtual hosts)
        self.vhost_serial = 0
        with open(workdir / "servicerouter.log", "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=str(product)))
        first_answer(self.http_port, "blue", timeout=300)
        first_answer(self.tcp_port, "blue", timeout=60)
        self.settle()
        self.clock = EventClock(self.emulator.url)
        # The emulator's apps and tasks live as long as the run: out of the collector's
        # reach, or a full collection over 50,000 tasks (hundreds of ms on a loaded
        # machine) stalls the emulator and the probes in the middle of a trial.
        gc.collect()
        gc.freeze()
        self.gc_pauses = GcPauses()
        self.state_dir = workdir / ".servicerouter"
        self.socket = str(self.state_dir / "haproxy.sock")
        self.workers = haproxy_workers(self.state_dir)
        self.reloads = 0
        self.latencies: dict[str, list[float]] = {}
        self.floors: list[float] = []
        self.trials: list[dict] = []  # each trial's times (see explain)
        self.probes: list[tuple[float, float]] = []  # this trial's requests (start, duration)
        self.requests: list[float] = []  # every trial's request durations
        self.log_mark = (workdir / "servicerouter.log").stat().st_size

    def log_since_start(self) -> str:
        """servicerouter's log since the trials began (start-up excluded)."""
        with open(self.workdir / "servicerouter.log", "rb") as log:
            log.seek(self.log_mark)
            return log.read().decode(errors="replace")

    def probe(self, start: float, duration: float) -> None:
        self.probes.append((start, duration))

    def paths(self) -> tuple[int, int, collections.Counter[str], float]:
        """Sync paths since the trials began."""
        return sync_paths(self.log_since_start())

    def explained_trials(self) -> list[dict]:
        """Every trial with where its time went (see explain)."""
        syncs = sync_stamps(self.log_since_start())
        return [dict(t, phases=explain(t, syncs)) for t in self.trials]

    def settle(self, quiet: float = 2.0, timeout: float = 300.0) -> None:
        """Wait for start-up to end: the event stream connected, the resync that its
        connection asks for logged as done (at 50k tasks on a loaded machine it runs for
        seconds, and "no new sync for a while" alone once let the first trial wait 2.5 s
        for it) and no sync for ``quiet`` seconds, so no start-up work lands in a trial."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        log_path = self.workdir / "servicerouter.log"
        while time.monotonic() < deadline:
            status = self.status()
            text = log_path.read_text(errors="replace")
            connects = len(re.findall(r"^(?!.*sync timing).*event stream connected to ", text,
                                      re.MULTILINE))
            resyncs = len(re.findall(r"sync timing: .*event stream connected to ", text))
            resynced = connects and resyncs >= connects
            if status["syncs"] != last:
                last, since = status["syncs"], time.monotonic()
            elif resynced and time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)
        raise TimeoutError("servicerouter never settled after start")

    def status(self) -> dict:
        return json.loads(http_get(self.status_url).text)

    def trial(self, kind: str, target: str, act: Callable[[], tuple], wait: Callable[[], float],
              backend: str) -> None:
        time.sleep(0.3)  # the previous change settles (drains, deferred writes)
        self.probes = []
        start = time.monotonic()
        key = act()
        routed = wait()
        self.requests += [d for _, d in self.probes]
        latency = routed - start
        delivered = self.clock.delivered(key) - start
        rtt = runtime_round_trip(self.socket, f"get weight {backend}")
        name = f"{kind} {target[8:]}"
        self.latencies.setdefault(name, []).append(latency)
        self.floors.append(delivered + rtt)
        self.trials.append({"kind": name, "sent": start, "routed": routed,
                            "ms": round(latency * 1000, 2),
                            "floor_ms": round((delivered + rtt) * 1000, 2),
                            "requests": len(self.probes),
                            "bench_gc_ms": round(self.gc_pauses.within(start, routed) * 1000, 2),
                            "slowest_request_ms": round(max((d for _, d in self.probes), default=0.0) * 1000, 2),
                            "load": os.getloadavg()[0]})
        now = haproxy_workers(self.state_dir)
        self.reloads += len(now - self.workers)
        self.workers |= now

    def add_remove(self, target: str, port: int) -> None:
        emu, old_id, old_index = self.emulator, *self.current[target]
        new = self.backends[1 - old_index]
        server = f"{target[1:]}_{port}/127_0_0_1_{new.port}"
        added: dict = {}

        def add() -> tuple:
            added.update(emu.add_task(target, "127.0.0.1", [new.port]))
            return ("status_update_event", added["id"], "TASK_RUNNING", None)

        self.trial("add", target, add, lambda: first_answer(port, new.name, record=self.probe), server)

        def remove() -> tuple:
            emu.kill_task(target, old_id)
            return ("status_update_event", old_id, "TASK_KILLED", None)

        self.trial("remove", target, remove, lambda: only_answers(port, new.name, record=self.probe), server)
        self.current[target] = (added["id"], 1 - old_index)

    def vhost(self, target: str) -> None:
        """The app's virtual host changes (an app update): its first answer there."""
        self.vhost_serial += 1
        host = f"v{self.vhost_serial}.bench.test"
        port = self.http_port
        name = self.backends[self.current[target][1]].name
        server = f"{target[1:]}_{port}/127_0_0_1_{self.backends[self.current[target][1]].port}"

        def change() -> tuple:
            self.emulator.put_app({"id": target, "portDefinitions": [{"port": port}],
                                   "labels": {"HAPROXY_0_MODE": "http",
                                              "HAPROXY_0_VHOST": host}})
            return ("api_post_event", None, None, None)

        self.trial("vhost", target, change,
                   lambda: first_vhost_answer(self.frontend, host, name, record=self.probe),
                   server)

    def health(self, target: str, port: int) -> None:
        emu, task_id, index = self.emulator, *self.current[target]
        if not hasattr(self, "_second"):
            self._second = {}
        if target not in self._second:  # a second, healthy task on the other backend
            other = self.backends[1 - index]
            second = emu.add_task(target, "127.0.0.1", [other.port], healthy=True)
            self._second[target] = second["id"]
            first_answer(port, other.name)
        other = self.backends[1 - index]
        mine = self.backends[index]
        server = f"{target[1:]}_{port}/127_0_0_1_{other.port}"

        def down() -> tuple:
            emu.set_task_health(target, task_id, False)
            return ("health_status_changed_event", task_id, None, False)

        self.trial("health-down", target, down, lambda: only_answers(port, other.name, record=self.probe), server)

        def up() -> tuple:
            emu.set_task_health(target, task_id, True)
            return ("health_status_changed_event", task_id, None, True)

        self.trial("health-up", target, up, lambda: first_answer(port, mine.name, record=self.probe), server)

    def close(self) -> None:
        if hasattr(self, "gc_pauses"):
            self.gc_pauses.close()
            gc.unfreeze()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:  # if servicerouter could not stop its HAProxy: ours by pidfile + cmdline
            pid = int((self.workdir / ".servicerouter" / "haproxy.pid").read_text().split()[0])
            if str(self.workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass
        self.emulator.stop()
        for backend in self.backends:
            backend.stop()


def measure(tasks: int, trials: int, product: Path, haproxy_bin: str, health: bool,
            verbose: bool, vhosts: bool = True, busy: int = 0) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="sr-bench-latency-"))
    run = None
    spinners: list[subprocess.Popen[bytes]] = []
    failed = False
    try:
        run = Run(tasks, product, workdir, haproxy_bin, health, verbose)
        before = run.status()
        spinners = start_busy(busy)
        for _ in range(trials):
            for target, port in (("/target-http", run.http_port), ("/target-tcp", run.tcp_port)):
                if health:
                    run.health(target, port)
                else:
                    run.add_remove(target, port)
                    if vhosts and target == "/target-http":
                        run.vhost(target)
        stop_busy(spinners)
        after = run.status()
        task_syncs, full_syncs, reasons, slowest = run.paths()
        result = {"tasks": tasks + 2, "checks": run.checks, "reloads": run.reloads,
                  "syncs": after["syncs"] - before["syncs"],
                  "task_path_syncs": (after.get("task_path_syncs", 0)
                                      - before.get("task_path_syncs", 0)),
                  "floor_p50_ms": percentile(run.floors, 50) * 1000,
                  "floor_p99_ms": percentile(run.floors, 99) * 1000,
                  "paths": {"task": task_syncs, "full": full_syncs,
                            "slowest_task_sync_ms": round(slowest * 1000, 1),
                            "full_reasons": dict(reasons.most_common())},
                  "load_average": [round(v, 2) for v in os.getloadavg()], "busy": busy,
                  "kinds": {}}
        trials = run.explained_trials()
        for kind, values in run.latencies.items():
            slowest = max((t for t in trials if t["kind"] == kind), key=lambda t: t["ms"])
            result["kinds"][kind] = {"p50_ms": percentile(values, 50) * 1000,
                                     "p99_ms": percentile(values, 99) * 1000,
                                     "max_ms": max(values) * 1000, "n": len(values),
                                     "slowest": describe(slowest)}
        result["phase_p50_p99_ms"] = {
            name: [round(percentile(got, 50), 2), round(percentile(got, 99), 2)]
            for name in [name for name, _, _ in PHASES] + ["servicerouter"]
            if (got := [t["phases"][name] for t in trials if name in t["phases"]])}
        result["request_p50_p99_ms"] = [round(percentile(run.requests, 50) * 1000, 2),
                                        round(percentile(run.requests, 99) * 1000, 2)]
        if verbose:
            result["trials"] = trials
        return result
    except Exception:
        failed = True
        log = workdir / "servicerouter.log"
        tail = [line for line in (log.read_text(errors="replace").splitlines()
                                  if log.exists() else []) if "haproxy.process" not in line]
        print(f"{tasks} tasks failed; kept {workdir}:\n" + "\n".join(tail[-30:]),
              file=sys.stderr)
        raise
    finally:
        stop_busy(spinners)
        if run is not None:
            run.close()
        if not failed and run is not None and run.proc is not None \
                and run.proc.returncode in (0, -15):
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: 200 tasks, 3 trials")
    parser.add_argument("--sizes", default="1000,10000,50000", help="task counts")
    parser.add_argument("--trials", type=int, default=0,
                        help="trials per kind (default 40, 20 from 50k tasks)")
    parser.add_argument("--product", type=Path, default=ROOT,
                        help="servicerouter checkout to run (default this one)")
    parser.add_argument("--no-health", action="store_true", help="skip the health runs")
    parser.add_argument("--only-health", action="store_true", help="only the health runs")
    parser.add_argument("--no-vhost", action="store_true", help="skip the vhost trials")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="N CPU-spinning processes run during the trials (a loaded "
                             "machine, reproducibly; the load average is printed)")
    parser.add_argument("--verbose", action="store_true",
                        help="where every trial's time went, not only the slowest's")
    args = parser.parse_args(argv)
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    haproxy_bin = find_haproxy("haproxy")
    if not args.json:
        print(f"event-to-route latency, default settings (--drain-timeout 0), product "
              f"{args.product}; floor = SSE delivery + one Runtime API round trip, same trials")
        print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"{'tasks':>7} {'kind':<18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>4} "
              f"{'floor p50/p99':>14} {'reloads':>8} {'checks':>7} {'task/full':>10}")
    for size in sizes:
        trials = 3 if args.quick else args.trials or (20 if size >= 50000 else 40)
        runs = (True,) if args.only_health else (False,) if args.no_health else (False, True)
        for health in runs:
            result = measure(size, trials, args.product, haproxy_bin, health, args.verbose,
                             vhosts=not args.no_vhost, busy=args.busy)
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            for kind, row in result["kinds"].items():
                print(f"{result['tasks']:>7} {kind:<18} {row['p50_ms']:>8.1f} "
                      f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['n']:>4} "
                      f"{result['floor_p50_ms']:>6.1f}/{result['floor_p99_ms']:<7.1f} "
                      f"{result['reloads']:>8} {'yes' if result['checks'] else 'no':>7} "
                      f"{result['paths']['task']:>4}/{result['paths']['full']:<5}",
                      flush=True)
            print(f"{'':>7} where the slowest trial of each kind went (ms): ", flush=True)
            for kind, row in result["kinds"].items():
                print(f"{'':>9} {kind:<18} {row['slowest']}", flush=True)
            print(f"{'':>7} phases p50/p99 ms: " + ", ".join(
                f"{name} {p50:.1f}/{p99:.1f}"
                for name, (p50, p99) in result["phase_p50_p99_ms"].items())
                + "; one request through HAProxy {:.1f}/{:.1f}".format(
                    *result["request_p50_p99_ms"]), flush=True)
            for trial in result.get("trials", ()):
                print(f"{'':>9} {trial['kind']:<18} {describe(trial)}", flush=True)
            reasons = "; ".join(f"{n}x {r}" for r, n in result["paths"]["full_reasons"].items())
            print(f"{'':>7} full-path syncs: {reasons or 'none'}; slowest task-path sync "
                  f"{result['paths']['slowest_task_sync_ms']} ms; load average "
                  f"{' '.join(map(str, result['load_average']))}"
                  f"{f' ({args.busy} spinning processes)' if args.busy else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
