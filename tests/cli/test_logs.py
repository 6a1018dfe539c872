"""Logs an operator can read: timestamps and levels on stderr, JSON lines, the first lines.

syslog keeps servicerouter.py's ``%(name)s: %(message)s`` (syslogd stamps it);
stderr has nothing around it, so its lines carry the time and the level.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter import __version__
from servicerouter.apply.haproxy import haproxy_version
from servicerouter.cli import flags, logs, modes
from tests.harness import free_port, wait_until
from tests.paths import MARATHON_FIXTURES, REPO

SNAPSHOT = f"file:{MARATHON_FIXTURES / 'marathon-1.5-apps-embed-tasks.json'}"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicerouter.cli.main", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def syslogd() -> Iterator[tuple[str, socket.socket]]:
    directory = tempfile.mkdtemp(prefix="sr-syslog-", dir="/tmp")  # short: AF_UNIX path limit
    path = os.path.join(directory, "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        yield path, server
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(directory)


def _datagrams(server: socket.socket) -> list[str]:
    server.settimeout(0.2)
    out = []
    try:
        while True:
            out.append(server.recv(65536).decode())
    except TimeoutError:
        return out


def test_first_lines_say_version_haproxy_and_mode_with_time_and_level(tmp_path: Path) -> None:
    proc = run_cli("-m", SNAPSHOT, "--dry", "--syslog-socket", "/dev/null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stderr.splitlines()[:2]
    assert re.fullmatch(
        STAMP + rf" INFO servicerouter: servicerouter {re.escape(__version__)} "
        r"\(Python 3\.\d+\.\d+\), mode: dry \(print the config, touch nothing\)", first), first
    version = haproxy_version("haproxy")
    assert version and re.fullmatch(
        STAMP + rf" INFO servicerouter: HAProxy {re.escape(version)} \(/\S+/haproxy\)", second)
    for line in proc.stderr.splitlines():
        if not line.startswith(("---", "+++", "@@", " ", "+", "-")):  # the --dry diff
            assert re.match(STAMP + " (DEBUG|INFO|WARNING|ERROR) servicerouter", line), line


def test_run_mode_names_every_mode() -> None:
    def mode(*argv: str) -> str:
        args = flags.parse_args(["-m", "http://m:8080", *argv])
        return modes.describe(modes.choose(args), args)

    assert mode() == "one-shot"
    assert mode("--dry").startswith("dry")
    assert mode("--sse").startswith("sse")
    assert mode("-l", "http://lb:8000").startswith("listening")
    assert mode("--manage-haproxy") == "sse (Marathon's event stream), managed HAProxy"
    snapshot = flags.parse_args(["-m", "file:apps.json", "--manage-haproxy"])
    assert modes.describe(modes.choose(snapshot), snapshot).startswith("poll")


def test_syslog_keeps_servicerouter_py_format_and_log_format_wins_on_both(
        tmp_path: Path, syslogd: tuple[str, socket.socket]) -> None:
    path, server = syslogd
    proc = run_cli("-m", SNAPSHOT, "--dry", "--syslog-socket", path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    received = _datagrams(server)
    assert received[0].endswith(f"servicerouter: servicerouter {__version__} (Python "
                                f"{sys.version.split()[0]}), mode: dry (print the config, "
                                "touch nothing)\x00")
    assert not re.search(STAMP, received[0])  # syslogd stamps it
    assert re.match(STAMP + " INFO ", proc.stderr)

    proc = run_cli("-m", SNAPSHOT, "--dry", "--syslog-socket", path,
                   "--log-format", "%(levelname)s|%(message)s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"INFO|servicerouter {__version__} ")
    assert _datagrams(server)[0].endswith(f"INFO|servicerouter {__version__} (Python "
                                          f"{sys.version.split()[0]}), mode: dry (print the "
                                          "config, touch nothing)\x00")


def test_log_json_writes_one_object_per_line(tmp_path: Path) -> None:
    proc = run_cli("-m", f"file:{tmp_path}/missing.json", "--dry", "--log-json",
                   "--syslog-socket", "/dev/null", cwd=tmp_path)
    entries = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert len(entries) == len([x for x in proc.stderr.splitlines() if x.strip()])
    assert entries[0]["message"].startswith(f"servicerouter {__version__} ")
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert re.fullmatch(STAMP, entries[0]["time"]) and entries[0]["level"] == "info"
    error = next(e for e in entries if e["logger"] == "servicerouter.marathon")
    assert error["level"] == "error" and "missing.json" in error["message"]


def test_json_lines_carry_structured_fields_and_exceptions() -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("servicerouter.live", logging.WARNING, __file__, 1,
                               "app %s held", ("/web",), None)
    record.app = "/web"  # as extra={"app": "/web"} sets it
    record.servers = 3
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "app /web held" and entry["logger"] == "servicerouter.live"
    assert entry["level"] == "warning" and entry["app"] == "/web" and entry["servers"] == 3
    assert "args" not in entry and "msg" not in entry and "lineno" not in entry
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(record))["exception"]


@pytest.mark.e2e
def test_managed_haproxy_start_is_logged_as_a_start_not_a_reload(tmp_path: Path) -> None:
    """The first config is written, then HAProxy *starts*: no "reloading" line before it."""
    cmd = [sys.executable, "-m", "servicerouter.cli.main", "-m", SNAPSHOT, "--manage-haproxy",
           "--haproxy-stop-on-exit", "--haproxy-config", str(tmp_path / "haproxy.cfg"),
           "--syslog-socket", "/dev/null", "--bind-addr", "127.0.0.1",
           "--http-port", str(free_port()), "--https-port", str(free_port()),
           "--appid-port", str(free_port()), "--stats-port", str(free_port())]
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=log_file, stdout=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_until(lambda: "HAProxy master" in log_path.read_text(), 30,
                   message="HAProxy to start")
        time.sleep(0.3)  # the sync after the start
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = log_path.read_text()
    up_to_start = text[:text.index("HAProxy master")]
    assert "writing the config HAProxy will start on" in up_to_start
    assert "starting HAProxy: " in up_to_start
    assert "reload" not in up_to_start.replace("reload_", ""), up_to_start
    assert "-> written" in up_to_start
