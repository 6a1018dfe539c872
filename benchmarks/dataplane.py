"""Data plane: what a request costs HAProxy, for the first and the last virtual host.

One command::

    python3 benchmarks/dataplane.py                 # 1, 1,000 and 10,000 vhosts, maps
    python3 benchmarks/dataplane.py --compare-acl   # also one ACL per vhost (the old way)

For each size it renders the config servicerouter writes for that many apps
(one http port and one vhost each, the built-in fragments; ``--mode acl``
renders without a map directory, so one ``acl`` + ``use_backend`` per vhost),
times ``haproxy -c`` and HAProxy's start (until the shared HTTP frontend routes
the first vhost), then loads the first and the last vhost with ``wrk``
(keep-alive) and reads HAProxy's CPU time from ``/proc/<pid>/stat``
(utime + stime of all its threads) around each run: CPU per request, and wrk's
p50 latency.  The ratio last/first is the routing cost of being the last rule.

Every task points at a second HAProxy answering 200 itself, so the backend
costs next to nothing and is not counted.  The server lines carry no ``check``
(a templates directory overrides HAPROXY_BACKEND_SERVER_OPTIONS): 10,000 health
checks would add their own CPU to what is measured.  Loopback only; bounded:
about a minute for the default sizes, two with --compare-acl.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servicerouter.apply import mapfiles  # noqa: E402
from servicerouter.model.services import build_model  # noqa: E402
from servicerouter.render.config import RenderOptions, render_config  # noqa: E402
from servicerouter.render.fragments import load_fragments  # noqa: E402

LOCALHOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKEND_CONFIG = """global
  maxconn 2000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend answer
  bind {addr}:{port}
  http-request return status 200 content-type text/plain string ok
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: requests served, HAProxy CPU seconds spent, p50 latency (ms)."""

    requests: int
    cpu_seconds: float
    p50_ms: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else float("nan")


@dataclass(frozen=True)
class SizeResult:
    size: int
    mode: str
    check_seconds: float
    start_seconds: float
    first: Load
    last: Load

    @property
    def ratio(self) -> float:
        return self.last.cpu_us_per_request / self.first.cpu_us_per_request


def vhost(index: int) -> str:
    return f"app-{index:05d}.example.com"


def apps(count: int, first_port: int, backend_port: int) -> list[dict]:
    return [{
        "id": f"/app-{index:05d}",
        "ports": [first_port + index],
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http",
                   "HAPROXY_0_VHOST": vhost(index), "HAPROXY_0_BIND_ADDR": LOCALHOST},
        "tasks": [{"id": f"app-{index:05d}.1", "host": LOCALHOST, "ports": [backend_port],
                   "state": "TASK_RUNNING"}],
    } for index in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def free_range(count: int) -> int:
    """A first port of ``count`` consecutive ports nobody holds on the loopback now."""
    for base in range(10000, 65000 - count, 1000):  # below the ephemeral range first
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy
                sock.bind((LOCALHOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise SystemExit(f"no {count} consecutive free ports on {LOCALHOST}")


def self_signed(directory: Path) -> Path:
    """A throwaway certificate for the shared HTTPS frontend (it must load, not serve)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.invalid")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
            .sign(key, hashes.SHA256()))
    path = directory / "default.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def render(count: int, mode: str, workdir: Path, ports: dict[str, int], backend_port: int,
           cert: Path) -> Path:
    """The config servicerouter writes for ``count`` vhost apps, its maps in place."""
    templates = workdir / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "HAPROXY_BACKEND_SERVER_OPTIONS").write_text(
        "  server {serverName} {host_ipv4}:{port}{healthCheckOptions}\n")
    fragments = load_fragments([templates])
    model = build_model(apps(count, ports["services"], backend_port), ["*"], lambda h: h)
    if model.problems:
        raise SystemExit(f"model problems: {model.problems[:3]}")
    cfg = workdir / f"haproxy-{mode}-{count}.cfg"
    map_dir = mapfiles.default_map_dir(str(cfg)) if mode == "maps" else None
    options = RenderOptions(bind_addr=LOCALHOST, http_port=ports["http"],
                            https_port=ports["https"], appid_port=ports["appid"],
                            stats_port=ports["stats"], stats_bind_addr=LOCALHOST,
                            default_cert=str(cert), map_dir=map_dir)
    text = render_config(model.services, fragments, options)
    mapfiles.install(text, map_dir)
    cfg.write_text(text)
    return cfg


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def wait_routes(port: int, host: str, timeout: float) -> None:
    """Until the shared frontend answers 200 for ``host``."""
    request = f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=2) as sock:
                sock.sendall(request)
                if sock.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK"):
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"HAProxy did not route {host} on :{port} within {timeout:g}s")


def _p50_ms(output: str) -> float:
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "50%":
            value = words[1]
            for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
                if value.endswith(unit):
                    return float(value[:-len(unit)]) * scale
    raise ValueError(f"no p50 in wrk output:\n{output}")


def _requests(output: str) -> int:
    for line in output.splitlines():
        if " requests in " in line:
            return int(line.split()[0])
    raise ValueError(f"no request count in wrk output:\n{output}")


def load(pid: int, port: int, host: str, seconds: int, connections: int) -> Load:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-H", f"Host: {host}", f"http://{LOCALHOST}:{port}/"]
    before = cpu_seconds(pid)
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    spent = cpu_seconds(pid) - before
    failure = failed_requests(out)
    if failure:
        raise SystemExit(f"requests for {host} failed ({failure}):\n{out}")
    return Load(_requests(out), spent, _p50_ms(out))


def failed_requests(output: str) -> str | None:
    """Why a wrk run says the vhost was not served, or None when it was.

    Any non-2xx answer, refused connection or timeout fails the run.  A rare read or
    write error does not: when the server side closes a reused idle connection just
    as HAProxy sends a request on it, HAProxy closes the client's keep-alive
    connection without an answer, so the client may retry safely (documented
    behaviour, haproxy/haproxy#1423); wrk counts a read error and reconnects.  A CI
    run saw 1 in 19,917: not a route missing, nothing in CPU per request.  More than
    one in a thousand fails.
    """
    if "Non-2xx" in output:
        return "non-2xx answers: not routed?"
    for line in output.splitlines():
        words = line.replace(",", "").split()
        if words[:2] == ["Socket", "errors:"]:
            counts = dict(zip(words[2::2], map(int, words[3::2]), strict=False))
            if counts.get("connect", 0) or counts.get("timeout", 0):
                return f"socket errors {counts}"
            closed = counts.get("read", 0) + counts.get("write", 0)
            if closed * 1000 > _requests(output):
                return f"{closed} connections closed under a request"
    return None


def combine(loads: Sequence[Load]) -> Load:
    p50s = sorted(run.p50_ms for run in loads)
    return Load(sum(run.requests for run in loads), sum(run.cpu_seconds for run in loads),
                p50s[len(p50s) // 2])


def start(haproxy: str, cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(size: int, mode: str, workdir: Path, haproxy: str, backend_port: int,
            cert: Path, seconds: int, connections: int, rounds: int) -> SizeResult:
    ports = {"http": free_port(), "https": free_port(), "appid": free_port(),
             "stats": free_port(), "services": free_range(size)}
    cfg = render(size, mode, workdir, ports, backend_port, cert)
    mark = time.perf_counter()
    checked = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True,
                             text=True, timeout=300)
    check_seconds = time.perf_counter() - mark
    if checked.returncode != 0:
        raise SystemExit(f"haproxy -c rejected the {size}-vhost config:\n{checked.stderr}")
    mark = time.perf_counter()
    proc = start(haproxy, cfg)
    try:
        wait_routes(ports["http"], vhost(0), 120)
        start_seconds = time.perf_counter() - mark
        wait_routes(ports["http"], vhost(size - 1), 10)
        # First and last alternate, so a neighbour's load drifting over time weighs on
        # both alike; each figure sums (CPU, requests) over its rounds, p50 the median.
        runs: list[tuple[int, list[Load]]] = [(0, []), (size - 1, [])]  # one vhost: twice
        for _round in range(rounds):
            for index, done in runs:
                done.append(load(proc.pid, ports["http"], vhost(index), seconds, connections))
        first, last = combine(runs[0][1]), combine(runs[1][1])
    finally:
        stop(proc)
    return SizeResult(size, mode, check_seconds, start_seconds, first, last)


def table(results: Sequence[SizeResult]) -> str:
    head = (f"{'vhosts':>7} {'routing':>7} {'check s':>8} {'start s':>8} "
            f"{'first us/req':>12} {'last us/req':>12} {'last/first':>10} "
            f"{'p50 first ms':>12} {'p50 last ms':>12} {'req first':>9} {'req last':>9}")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r.size:>7} {r.mode:>7} {r.check_seconds:>8.2f} {r.start_seconds:>8.2f} "
                    f"{r.first.cpu_us_per_request:>12.1f} {r.last.cpu_us_per_request:>12.1f} "
                    f"{r.ratio:>10.2f} {r.first.p50_ms:>12.3f} {r.last.p50_ms:>12.3f} "
                    f"{r.first.requests:>9} {r.last.requests:>9}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,1000,10000",
                        help="comma-separated vhost counts (default 1,1000,10000)")
    parser.add_argument("--mode", choices=("maps", "acl"), default="maps",
                        help="maps: the built-in fragments with a map directory (default); "
                             "acl: one acl + use_backend per vhost")
    parser.add_argument("--compare-acl", action="store_true",
                        help="run every size in both modes")
    parser.add_argument("--seconds", type=int, default=2,
                        help="wrk duration of one run, whole seconds (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per vhost, first and last alternating (default 3)")
    parser.add_argument("--connections", type=int, default=8,
                        help="wrk keep-alive connections (default 8)")
    parser.add_argument("--haproxy-bin", default="haproxy")
    args = parser.parse_args(argv)
    haproxy = shutil.which(args.haproxy_bin)
    if haproxy is None:
        print(f"{args.haproxy_bin} not found", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk (Debian package)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = ("maps", "acl") if args.compare_acl else (args.mode,)
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="sr-dataplane-") as tmp:
        workdir = Path(tmp)
        cert = self_signed(workdir)
        backend_port = free_port()
        backend_cfg = workdir / "backend.cfg"
        backend_cfg.write_text(BACKEND_CONFIG.format(addr=LOCALHOST, port=backend_port))
        backend = start(haproxy, backend_cfg)
        try:
            for size in sizes:
                for mode in modes:
                    results.append(measure(size, mode, workdir, haproxy, backend_port, cert,
                                           args.seconds, args.connections, args.rounds))
                    print(table(results[-1:]).splitlines()[-1] if len(results) > 1
                          else table(results), flush=True)
        finally:
            stop(backend)
    print()
    print(table(results))
    print(f"\nHAProxy CPU per request: utime+stime of /proc/<pid>/stat over {args.rounds} wrk "
          f"runs of {args.seconds}s per vhost (first and last alternating), {args.connections} "
          "keep-alive connections; p50: median of the runs' p50; last/first = the last "
          "vhost's CPU per request over the first's.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
