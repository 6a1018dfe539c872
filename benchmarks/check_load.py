"""Health-check load of a big cluster: checks per second HAProxy really sends, and its CPU.

    python benchmarks/check_load.py                 # 1,000, 10,000 and 50,000 servers
    python benchmarks/check_load.py --sizes 1000,10000 --limits 0,1000

Each size is rendered once per ``--max-check-rate`` value in ``--limits`` (0: the
intervals exactly as Marathon's health checks say, the behaviour before the
flag; 1000: the default), so one run gives the before/after table.

servicerouter renders the config of N tasks (10 per app, the default
fragments, every app with a Marathon HTTP health check every 2 s, HAProxy's own
default interval, so the checks can be counted as requests) pointing at counting listeners
on 127.0.0.1; a real HAProxy runs it (frontends left out: nothing to bind);
after a settling time the
connections the listener accepts in ``--seconds`` are its health checks.
Printed beside: the rate servicerouter computes for the same config (the
``N checked servers: about R health checks per second`` line it logs before
a start or reload), HAProxy's CPU share, and, when the file descriptors it
needs exceed this machine's hard limit, the message servicerouter gives
instead of starting it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servicerouter.apply.fd_budget import fd_need, fd_problem  # noqa: E402
from servicerouter.engine.runner import Router, RouterSettings  # noqa: E402
from servicerouter.render.config import RenderOptions  # noqa: E402
from servicerouter.render.fragments import load_fragments  # noqa: E402
from tests.harness import find_haproxy  # noqa: E402

TASKS_PER_APP = 10


class Counter:
    """Accepts and closes connections on ``TASKS_PER_APP`` ports, counting them."""

    def __init__(self) -> None:
        self.socks = []
        for _ in range(TASKS_PER_APP):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(4096)
            self.socks.append(sock)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.count = 0
        self._lock = threading.Lock()
        for sock in self.socks:
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:  # an HTTP check: one request, one answer
                conn.settimeout(2)
                if conn.recv(4096):
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                    with self._lock:
                        self.count += 1
            except OSError:
                pass
            finally:
                conn.close()


class Snapshot:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def fetch_apps_body(self) -> bytes:
        return self.body


def render(tasks: int, ports: list[int], workdir: Path, max_check_rate: float = 0) -> str:
    """servicerouter's config for ``tasks`` tasks on the counter's ports, frontends left
    out (HAProxy checks the servers of every backend; nothing needs to bind)."""
    apps = [{"id": f"/app{i:05d}", "portDefinitions": [{"port": 12000 + i}],
             "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0,
                               "intervalSeconds": 2, "timeoutSeconds": 5}],
             "tasks": [{"id": f"app{i:05d}.{t}", "host": "127.0.0.1", "ports": [ports[t]],
                        "state": "TASK_RUNNING"} for t in range(TASKS_PER_APP)]}
            for i in range(tasks // TASKS_PER_APP)]
    settings = RouterSettings(config_path=str(workdir / "haproxy.cfg"), groups=("*",),
                              validate=False, state_dir=str(workdir / "state"), certs_dir=None,
                              render_options=RenderOptions(bind_addr="127.0.0.1",
                                                           max_check_rate=max_check_rate or None),
                              dry=True)
    router = Router(Snapshot(json.dumps({"apps": apps}).encode()), load_fragments(), settings,
                    resolver=lambda h: h, out=open(os.devnull, "w"))  # noqa: SIM115
    derived = router.derive_config(apps)
    assert derived.rendered is not None
    kept: list[str] = []
    skipping = False
    for line in derived.rendered.text.splitlines(keepends=True):
        if line[:1].strip():
            skipping = line.split()[0] in ("frontend", "listen")
        if not skipping:
            kept.append(line)
    # HAProxy runs no checks for a backend no frontend uses, and will not run without a
    # listener: one frontend on a UNIX socket of our own names every backend (never used).
    backends = [line.split()[1] for line in kept if line.startswith("backend ")]
    kept.append(f"\nfrontend keep\n  mode tcp\n  bind {workdir / 'keep.sock'}\n")
    kept.extend(f"  use_backend {name} if FALSE\n" for name in backends)
    return "".join(kept)


def _seconds(value: str) -> float:
    """An HAProxy time as servicerouter writes check intervals ("2s", "1500ms")."""
    if value.endswith("ms"):
        return float(value[:-2]) / 1000
    return float(value.rstrip("s") or 0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(servers: int, haproxy_bin: str, seconds: float, settle: float,
            max_check_rate: float = 0) -> dict:
    counter = Counter()
    workdir = Path(tempfile.mkdtemp(prefix="sr-bench-checks-"))
    text = render(servers, counter.ports, workdir, max_check_rate)
    need = fd_need(text)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    inter = sorted({line.split(" inter ", 1)[1].split()[0] for line in text.splitlines()
                    if line.lstrip().startswith("server ") and " inter " in line})
    result = {"servers": need.checked_servers, "computed_checks_per_s": need.checks_per_second,
              "max_check_rate": max_check_rate, "inter": ",".join(inter) or "-",
              "fds_needed": need.descriptors, "fd_hard_limit": hard}
    problem = fd_problem(need, hard, "this process")
    if problem:
        result["problem"] = problem
        return result
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(text)
    proc = subprocess.Popen([haproxy_bin, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # HAProxy spreads the first checks over one interval after its start: settle past
    # the longest one, and count over at least two of them.
    longest = max((_seconds(value) for value in inter), default=0.0)
    settle, seconds = max(settle, longest + 2), max(seconds, 2 * longest)
    try:
        time.sleep(settle)
        start_count, start_cpu, start = counter.count, cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        result["measured_checks_per_s"] = (counter.count - start_count) / elapsed
        result["haproxy_cpu_percent"] = 100 * (cpu_seconds(proc.pid) - start_cpu) / elapsed
    finally:
        proc.terminate()
        proc.wait(10)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="checked servers")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--limits", default="0,1000",
                        help="--max-check-rate values to render each size with (0: none)")
    args = parser.parse_args(argv)
    haproxy_bin = find_haproxy("haproxy")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'servers':>8} {'max rate':>9} {'inter':>6} {'computed/s':>11} {'measured/s':>11} "
          f"{'HAProxy CPU':>12} {'fds needed':>11} {'hard limit':>11}")
    for size in (int(s) for s in args.sizes.split(",")):
        for limit in (float(v) for v in args.limits.split(",")):
            r = measure(size, haproxy_bin, args.seconds, args.settle, limit)
            measured = r.get("measured_checks_per_s")
            cpu = r.get("haproxy_cpu_percent")
            shown_rate = "-" if measured is None else f"{measured:.0f}"
            shown_cpu = "-" if cpu is None else f"{cpu:.0f}%"
            shown_limit = f"{limit:.0f}" if limit else "none"
            print(f"{r['servers']:>8} {shown_limit:>9} {r['inter']:>6} "
                  f"{r['computed_checks_per_s']:>11.0f} {shown_rate:>11} {shown_cpu:>12} "
                  f"{r['fds_needed']:>11} {r['fd_hard_limit']:>11}", flush=True)
            if "problem" in r:
                print(f"         servicerouter says: {r['problem']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
