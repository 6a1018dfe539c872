"""HAProxy's own logs out of the box: httplog/tcplog and --haproxy-log, with a real HAProxy.

servicerouter.py sent HAProxy's logs to syslog on 127.0.0.1 only, without
``option httplog``: in a container nothing listened there, and had something
listened, a request would have logged one bare connection line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from servicerouter.render.config import RenderOptions
from servicerouter.render.log_target import haproxy_log_target
from tests.harness import Backend, free_port, http_get, tcp_exchange, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.e2e


def test_log_targets_are_addresses_and_nothing_else() -> None:
    for good in ("stderr", "stdout", "/dev/log", "127.0.0.1:514", "logs.example.com:5140",
                 "udp@10.0.0.1:514", "tcp@[::1]:601", "[fe80::1]:514"):
        assert haproxy_log_target(good) == good
    for bad in ("", "stderr local0", "127.0.0.1:514\n  stats socket /tmp/x", "host:514 # x",
                "/dev/log level admin", "host", "'stderr'", "[::1]"):
        with pytest.raises(ValueError):
            haproxy_log_target(bad)
    assert RenderOptions().haproxy_log is None


def _snapshot(tmp_path: Path, web: Backend, tcp: Backend, tcp_port: int) -> str:
    apps = [
        {"id": "/web", "ports": [free_port()], "labels": {"HAPROXY_0_VHOST": "web.test"},
         "env": {}, "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [web.port]}]},
        {"id": "/tcp", "ports": [tcp_port], "labels": {"HAPROXY_0_MODE": "tcp"}, "env": {},
         "tasks": [{"id": "tcp.1", "host": "127.0.0.1", "ports": [tcp.port]}]},
    ]
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": apps}))
    return f"file:{path}"


class ManagedRun:
    """servicerouter --manage-haproxy on a snapshot, its stderr in a file."""

    def __init__(self, tmp_path: Path, snapshot: str, *extra: str) -> None:
        self.http_port = free_port()
        self.stderr = tmp_path / "stderr.log"
        self.config = tmp_path / "haproxy.cfg"
        self.cmd = [sys.executable, "-m", "servicerouter.cli.main", "-m", snapshot,
                    "--manage-haproxy", "--haproxy-stop-on-exit",
                    "--haproxy-config", str(self.config), "--syslog-socket", "/dev/null",
                    "--bind-addr", "127.0.0.1", "--http-port", str(self.http_port),
                    "--https-port", str(free_port()), "--appid-port", str(free_port()),
                    "--stats-port", str(free_port()), *extra]
        self.cwd = tmp_path

    def __enter__(self) -> ManagedRun:
        with open(self.stderr, "wb") as handle:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stderr=handle,
                                         stdout=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_until(lambda: "HAProxy master" in self.stderr.read_text(), 30,
                   message="HAProxy to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_access_logs_on_servicerouter_stderr_with_http_and_tcp_detail(tmp_path: Path) -> None:
    tcp_port = free_port()
    with Backend("web-1") as web, Backend("tcp-1", mode="tcp") as tcp:
        snapshot = _snapshot(tmp_path, web, tcp, tcp_port)
        with ManagedRun(tmp_path, snapshot, "--haproxy-log", "stderr") as run:
            config = run.config.read_text()
            assert "  log stderr format raw local0\n" in config
            assert "log 127.0.0.1" not in config
            response = wait_until(lambda: http_get(
                f"http://127.0.0.1:{run.http_port}/logged-path", host_header="web.test"), 10)
            assert response.status_code == 200 and "web-1" in response.text
            tcp_exchange(tcp_port, b"ping\n")
            # httplog: frontend, backend/server, status and the request line
            wait_until(lambda: "GET /logged-path HTTP/1.1" in run.stderr.read_text(), 10,
                       message="an access log line on stderr")
            # tcplog: frontend, backend/server, Tw/Tc/Tt timers, bytes, termination state
            tcplog = re.compile(rf"tcp_{tcp_port} tcp_{tcp_port}/127_0_0_1_{tcp.port} "
                                r"\d+/\d+/\d+ \d+ -- ")
            wait_until(lambda: tcplog.search(run.stderr.read_text()), 10,
                       message="a tcplog line on stderr")
    (line,) = [x for x in run.stderr.read_text().splitlines() if "GET /logged-path" in x]
    assert re.search(rf"marathon_http_in web_\d+/127_0_0_1_{web.port} \S+ 200 ", line), line


def test_access_logs_to_a_syslog_address(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as syslog, \
            Backend("web-1") as web, Backend("tcp-1", mode="tcp") as tcp:
        syslog.bind(("127.0.0.1", 0))  # bound first: HAProxy only sends to it
        syslog.settimeout(10)
        address = f"127.0.0.1:{syslog.getsockname()[1]}"
        snapshot = _snapshot(tmp_path, web, tcp, free_port())
        with ManagedRun(tmp_path, snapshot, "--haproxy-log", address) as run:
            assert f"  log {address} local0\n" in run.config.read_text()
            wait_until(lambda: http_get(f"http://127.0.0.1:{run.http_port}/via-syslog",
                                        host_header="web.test").status_code == 200, 10)
            received = b""
            while b"GET /via-syslog" not in received:
                received += syslog.recv(65536) + b"\n"
    line = next(x for x in received.decode().splitlines() if "GET /via-syslog" in x)
    assert line.startswith("<134>")  # local0.info, a syslog header
    assert "marathon_http_in" in line and " 200 " in line
