"""The demo: a whole edge on one machine, routing real requests.

``python -m servicerouter.emulator.demo`` starts the Marathon emulator with a few apps,
real HTTP backends on 127.0.0.1, servicerouter in event mode (Marathon posts
callbacks to it) and a real HAProxy on unprivileged ports, then checks the
routes itself and prints the curl lines to try.  ``--duration`` bounds the
run (CI uses it); otherwise it runs until Ctrl-C and stops everything it
started by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import urllib3

from servicerouter.emulator.marathon import MarathonEmulator

LOCALHOST = "127.0.0.1"


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        name = self.server.name  # type: ignore[attr-defined]
        body = f"{name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # health checks hang up early; that is not worth a traceback


def start_backend(name: str) -> ThreadingHTTPServer:
    """A real HTTP server on 127.0.0.1 answering its own name."""
    server = _QuietServer((LOCALHOST, 0), _EchoHandler)
    server.daemon_threads = True
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _ephemeral_low() -> int:
    """The first port the kernel hands out for outgoing connections (Linux: 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, drawn at random below the ephemeral range.

    The demo hands these ports to HAProxy and servicerouter, which bind them a moment
    later. A port the kernel picked (bind to 0) lies in the ephemeral range, where any
    outgoing connection on the host may take it meanwhile; a random draw below that
    range is taken only by someone else binding it on purpose.
    """
    rng = random.SystemRandom()
    high = max(_ephemeral_low() - 1, 20001)
    for _ in range(200):
        port = rng.randint(20000, high)
        with socket.socket() as sock:
            try:
                sock.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: let the kernel pick
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def busy_port(ports: dict[str, int]) -> tuple[str, int] | None:
    """The first of ``ports`` (name -> port) something already listens on, or None.

    Checked before anything starts: otherwise HAProxy fails to bind deep inside
    the run and the demo only says "timed out".  SO_REUSEADDR as HAProxy binds,
    so a port merely in TIME_WAIT is not reported busy.
    """
    for name, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOCALHOST, port))
            except OSError:
                return name, port
    return None


class DemoStopped(Exception):
    """The demo cannot go on; the message is the one line to print."""


def router_failure(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    """One line on why servicerouter exited: its last error line, and where the log is."""
    reason = ""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if "cannot " in line or "error" in line.lower():
            reason = ": " + line.split(": ", 1)[-1]
            break
    return (f"servicerouter exited (status {proc.returncode}){reason} "
            f"[log: {log_path}]")


def demo_apps(backends: dict[str, int], service_ports: dict[str, int]) -> list[dict[str, Any]]:
    """Three apps showing vhosts, stickiness, app-id routing and a TCP port."""
    check = {"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 2,
             "timeoutSeconds": 2, "gracePeriodSeconds": 5, "maxConsecutiveFailures": 2,
             "ignoreHttp1xx": False}
    return [
        {"id": "/demo/web", "portDefinitions": [{"port": service_ports["web"]}],
         "labels": {"HAPROXY_0_VHOST": "web.demo.local"}, "healthChecks": [check],
         "instances": 2, "version": "2026-01-01T00:00:00.000Z"},
        {"id": "/demo/api", "portDefinitions": [{"port": service_ports["api"]}],
         "labels": {"HAPROXY_0_VHOST": "api.demo.local", "HAPROXY_0_STICKY": "true"},
         "healthChecks": [check], "instances": 1, "version": "2026-01-01T00:00:00.000Z"},
        {"id": "/demo/tcp", "portDefinitions": [{"port": service_ports["tcp"]}],
         "labels": {}, "instances": 1, "version": "2026-01-01T00:00:00.000Z"},
    ]


@contextlib.contextmanager
def running(cmd: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped by PID on exit."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(predicate: Any, timeout: float, what: str,
             router: subprocess.Popen[bytes] | None = None,
             log_path: Path | None = None) -> None:
    """Poll ``predicate``; stop at once (DemoStopped) if ``router`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if router is not None and router.poll() is not None:
            raise DemoStopped(router_failure(router, log_path or Path("servicerouter.log")))
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.1)
    raise DemoStopped(f"timed out waiting for {what}")


def check_routes(ports: dict[str, int], service_ports: dict[str, int]) -> list[str]:
    """Send real requests through HAProxy; one line per route."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # self-signed default
    session = requests.Session()
    session.trust_env = False
    results = []
    web = {session.get(f"http://{LOCALHOST}:{ports['http']}/", headers={"Host": "web.demo.local"},
                       timeout=5).text.strip() for _ in range(4)}
    results.append(f"Host: web.demo.local on :{ports['http']} -> {sorted(web)}")
    api = session.get(f"https://{LOCALHOST}:{ports['https']}/", headers={"Host": "api.demo.local"},
                      verify=False, timeout=5)
    results.append(f"Host: api.demo.local on :{ports['https']} (TLS) -> {api.text.strip()} "
                   f"(sticky cookie: {'mesosphere_server_id' in api.cookies})")
    appid = session.get(f"http://{LOCALHOST}:{ports['appid']}/",
                        headers={"X-Marathon-App-Id": "/demo/web"}, timeout=5)
    results.append(f"X-Marathon-App-Id: /demo/web on :{ports['appid']} -> {appid.text.strip()}")
    tcp = session.get(f"http://{LOCALHOST}:{service_ports['tcp']}/", timeout=5)
    results.append(f"TCP service port :{service_ports['tcp']} -> {tcp.text.strip()}")
    if not (web == {"web-1", "web-2"} and api.text.strip() == "api-1"
            and appid.text.strip().startswith("web-") and tcp.text.strip() == "tcp-1"):
        raise RuntimeError("routing check failed:\n  " + "\n  ".join(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="servicerouter demo on 127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--https-port", type=int, default=8443)
    parser.add_argument("--appid-port", type=int, default=8081)
    parser.add_argument("--stats-port", type=int, default=9090)
    parser.add_argument("--status-port", type=int, default=9091,
                        help="servicerouter's /status port")
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--workdir", help="where config and logs go (default: a temp dir)")
    args = parser.parse_args(argv)

    haproxy = shutil.which("haproxy")
    if haproxy is None:
        print("haproxy is not installed (apt-get install -y haproxy)", file=sys.stderr)
        return 2
    ports = {"http": args.http_port, "https": args.https_port, "appid": args.appid_port,
             "stats": args.stats_port, "status": args.status_port}
    if args.free_ports:
        ports = {name: free_port() for name in ports}
    taken = busy_port(ports)
    if taken is not None:
        name, port = taken
        hint = " (8080 is also Marathon's default port)" if port == 8080 else ""
        print(f"demo: port {port} (--{name}-port) is already in use on {LOCALHOST}{hint}; "
              f"run with --free-ports, or pick another with --{name}-port", file=sys.stderr)
        return 2
    service_ports = {"web": free_port(), "api": free_port(), "tcp": free_port()}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="servicerouter-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "haproxy.cfg"
    router_log = workdir / "servicerouter.log"

    names = ["web-1", "web-2", "api-1", "tcp-1"]
    backends = {name: start_backend(name) for name in names}
    spare = start_backend("web-3")  # not in Marathon yet: the scale-up example uses it
    emulator = MarathonEmulator(demo_apps({}, service_ports), keepalive_interval=1.0).start()
    try:
        for name, server in backends.items():
            app_id = "/demo/" + name.split("-")[0]
            emulator.add_task(app_id, LOCALHOST, [server.server_address[1]])
        # The production shape: Marathon's event stream, a managed master-worker HAProxy
        # (seamless reloads, Runtime API for server changes) and the status endpoint.
        router_cmd = [
            sys.executable, "-m", "servicerouter", "-m", emulator.url, "--sse",
            "--manage-haproxy", "--haproxy-bin", haproxy, "--haproxy-stop-on-exit",
            "--status-listen", f"{LOCALHOST}:{ports['status']}",
            "--haproxy-config", str(cfg), "--syslog-socket", "/dev/null",
            "--bind-addr", LOCALHOST, "--http-port", str(ports["http"]),
            "--https-port", str(ports["https"]), "--appid-port", str(ports["appid"]),
            "--stats-port", str(ports["stats"]), "--state-dir", str(workdir / "state"),
            "--min-wait", "0.1", "--max-wait", "0.5",
        ]
        with running(router_cmd, router_log) as router:
            wait_for(lambda: emulator.sse_clients, 30,
                     f"servicerouter to follow the event stream (see {router_log})",
                     router, router_log)
            wait_for(lambda: check_routes(ports, service_ports), 60, "routes to answer",
                     router, router_log)
            print(f"servicerouter demo is up (config, logs: {workdir})\n")
            for line in check_routes(ports, service_ports):
                print("  ok  " + line)
            print("\nTry:")
            print(f"  curl -H 'Host: web.demo.local' http://{LOCALHOST}:{ports['http']}/")
            print(f"  curl -k -H 'Host: api.demo.local' https://{LOCALHOST}:{ports['https']}/")
            print(f"  curl -H 'X-Marathon-App-Id: /demo/web' http://{LOCALHOST}:{ports['appid']}/")
            print(f"  curl http://{LOCALHOST}:{service_ports['tcp']}/")
            print(f"  curl 'http://{LOCALHOST}:{ports['stats']}/haproxy?stats;csv'")
            print(f"  curl {emulator.url}/v2/apps?embed=apps.tasks   # the emulated Marathon")
            print(f"  curl http://{LOCALHOST}:{ports['status']}/status   # servicerouter's state")
            print(f"  curl http://{LOCALHOST}:{ports['status']}/metrics")
            print("\nScale the web app (a Runtime API update, no reload):")
            print(f"  curl -X POST {emulator.url}/_emulator/apps/demo/web/tasks "
                  f"-d '{json.dumps({'host': LOCALHOST, 'ports': [spare.server_address[1]]})}'")
            print("\nCtrl-C stops everything.", flush=True)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            while router.poll() is None and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
            if router.poll() not in (None, 0):
                print(f"demo: {router_failure(router, router_log)}", file=sys.stderr)
                return 1
    except DemoStopped as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for server in [*backends.values(), spare]:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
