"""servicerouter-bridge / servicerouter bridge: haproxy-marathon-bridge's command line.

The printed config is loaded by a real HAProxy on a fresh directory (no state
dir, no certificates yet) and routes a real TCP connection, as the bridge's
``> haproxy.cfg`` did; the bridge's other forms map onto servicerouter's runs.
"""

from __future__ import annotations

import configparser
import importlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import HAProxy, HAProxyError, free_port, http_get, tcp_exchange, wait_for_port
from tests.paths import REPO

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def bridge(*argv: str, cwd: Path,
           entry: tuple[str, ...] = ("-m", "servicerouter.cli.bridge")
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *entry, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=ENV)


def edge_flags(tmp_path: Path, http: int) -> list[str]:
    """Local ports for the shared frontends; nothing under tmp_path exists yet (fresh host)."""
    return ["--haproxy-config", str(tmp_path / "etc" / "haproxy.cfg"),
            "--syslog-socket", "/dev/null", "--bind-addr", "127.0.0.1",
            "--http-port", str(http), "--https-port", str(free_port()),
            "--appid-port", str(free_port()), "--stats-port", str(free_port())]


def tcp_app(app_id: str, port: int, backends: list, **labels: str) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}], "labels": labels,
            "tasks": [{"id": f"{app_id[1:]}.{b.name}", "host": "127.0.0.1",
                       "ports": [b.port], "state": "TASK_RUNNING"} for b in backends]}


@pytest.fixture
def refused_address() -> Iterator[str]:
    """HOST:PORT where nothing listens, held bound (not listening) so no one else can."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def start_on_free_ports(tmp_path: Path, attempt: Callable[[int, int, int], HAProxy],
                        tries: int = 3) -> tuple[HAProxy, int, int, int]:
    """Run ``attempt(http, tcp, vhost_port)``; new ports when another process took one
    between picking and HAProxy binding (the ports are baked into the config)."""
    for left in range(tries, 0, -1):
        ports = (free_port(), free_port(), free_port())
        try:
            return (attempt(*ports), *ports)
        except HAProxyError as err:
            if left == 1 or "cannot bind" not in str(err).lower():
                raise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("entry", [("-m", "servicerouter.cli.bridge"),
                                   ("-m", "servicerouter", "bridge")],
                         ids=["servicerouter-bridge", "servicerouter bridge"])
def test_printed_config_runs_on_a_fresh_host_and_routes(
        tmp_path: Path, entry: tuple[str, ...], backend_factory, haproxy_factory,
        haproxy_bin: str, refused_address: str) -> None:
    t1, t2 = backend_factory("t1", mode="tcp"), backend_factory("t2", mode="tcp")
    web = backend_factory("web")
    runs: list[subprocess.CompletedProcess[str]] = []

    def attempt(http: int, tcp_port: int, vhost_port: int) -> HAProxy:
        apps = [tcp_app("/db", tcp_port, [t1, t2]),
                tcp_app("/grouped/web", vhost_port, [web], HAPROXY_GROUP="external",
                        HAPROXY_0_VHOST="web.example.com")]
        with MarathonEmulator(apps) as marathon:
            live = marathon.url.removeprefix("http://")  # the bridge's HOST:PORT form
            proc = bridge(refused_address, live, *edge_flags(tmp_path, http),
                          "--haproxy-bin", haproxy_bin, cwd=tmp_path, entry=entry)
        runs.append(proc)
        assert proc.returncode == 0, proc.stderr
        cfg = tmp_path / f"haproxy-{len(runs)}.cfg"
        cfg.write_text(proc.stdout)
        check = subprocess.run([haproxy_bin, "-c", "-f", str(cfg)], capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        return haproxy_factory(cfg)

    _proxy, http, tcp_port, _ = start_on_free_ports(tmp_path, attempt)
    proc = runs[-1]
    # stdout is the config and nothing else; the dead first host is the only thing said
    assert proc.stdout.startswith("global\n") and refused_address not in proc.stdout
    assert "frontend db_" in proc.stdout and "global" not in proc.stderr
    wait_for_port(tcp_port)
    greetings = {tcp_exchange(tcp_port, b"ping\n").split(b"\n")[0] for _ in range(6)}
    assert greetings == {b"t1", b"t2"}
    # an app in a group is routed, as the bridge routed every app
    wait_for_port(http)
    answer = http_get(f"http://127.0.0.1:{http}/", host_header="web.example.com")
    assert answer.status_code == 200 and answer.text.strip() == "web"
    # the certificate material it names was written where a normal run keeps it
    state = tmp_path / "etc" / ".servicerouter"
    assert (state / "default.pem").is_file()
    assert not (tmp_path / "etc" / "haproxy.cfg").exists()  # printed, not installed


def test_nothing_is_printed_when_marathon_cannot_be_read(tmp_path: Path,
                                                         refused_address: str) -> None:
    proc = bridge(refused_address, *edge_flags(tmp_path, free_port()), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no config printed" in proc.stderr and refused_address in proc.stderr


def test_group_flag_still_narrows_the_apps(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [
        {"id": "/a", "ports": [10001], "labels": {},
         "tasks": [{"id": "a.1", "host": "127.0.0.1", "ports": [31001]}]},
        {"id": "/b", "ports": [10002], "labels": {"HAPROXY_GROUP": "external"},
         "tasks": [{"id": "b.1", "host": "127.0.0.1", "ports": [31002]}]}]}))
    flags = edge_flags(tmp_path, free_port())
    every = bridge(f"file:{snapshot}", *flags, cwd=tmp_path)
    external = bridge(f"file:{snapshot}", *flags, "--group", "external", cwd=tmp_path)
    assert every.returncode == 0 == external.returncode, every.stderr + external.stderr
    assert "backend a_10001" in every.stdout and "backend b_10002" in every.stdout
    assert "backend a_10001" not in external.stdout and "backend b_10002" in external.stdout


def test_refresh_system_haproxy_is_the_one_shot_run(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [
        {"id": "/a", "ports": [10001], "labels": {},
         "tasks": [{"id": "a.1", "host": "127.0.0.1", "ports": [31001]}]}]}))
    marker = tmp_path / "reloaded"
    proc = bridge("refresh_system_haproxy", f"file:{snapshot}",
                  *edge_flags(tmp_path, free_port()), "--command", f"touch {marker}",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "backend a_10001" in (tmp_path / "etc" / "haproxy.cfg").read_text()
    assert marker.exists()


def test_logged_sends_the_lines_to_syslog_not_stderr(tmp_path: Path,
                                                     refused_address: str) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(path)
        syslogd.settimeout(30)
        flags = edge_flags(tmp_path, free_port())
        flags[flags.index("--syslog-socket") + 1] = path
        proc = bridge("logged", refused_address, *flags, cwd=tmp_path)
        received = syslogd.recv(65536).decode()
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ""
    assert refused_address in received


@pytest.mark.parametrize("form, message", [
    ("header", "rendered as a whole"),
    ("cronjob", "servicerouter install --cron"),
    ("frobnicate", "expected HOST:PORT"),
])
def test_other_bridge_forms_are_one_line_refusals(tmp_path: Path, form: str,
                                                  message: str) -> None:
    proc = bridge(form, "m:8080", cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_arguments_is_the_usage_on_stderr(tmp_path: Path) -> None:
    proc = bridge(cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "usage: servicerouter-bridge" in proc.stderr


def test_servicerouter_flag_only_command_line_is_unchanged(tmp_path: Path) -> None:
    """A subcommand word must not change how servicerouter.py's flags parse."""
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": []}))
    proc = subprocess.run([sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m",
                           f"file:{snapshot}", "--dry", *edge_flags(tmp_path, free_port())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("global\n")
    bad = subprocess.run([sys.executable, "-m", "servicerouter", "bridges", "-m", "a:1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV)
    assert bad.returncode == 2 and "unrecognized arguments: bridges" in bad.stderr


def test_console_scripts_are_declared() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in
                   parser["options.entry_points"]["console_scripts"].strip().splitlines())
    for name in ("servicerouter", "servicerouter-bridge"):
        module, _, function = scripts[name].partition(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("argv", [["m:8080", "--sse"], ["m:8080", "--dry"],
                                  ["m:8080", "--manage-haproxy"],
                                  ["m:8080", "--listening", "http://lb:8000"],
                                  ["--longhelp"], ["--list-certs"]])
def test_servicerouter_modes_are_not_bridge_forms(tmp_path: Path, argv: list[str]) -> None:
    proc = bridge(*argv, cwd=tmp_path)
    assert proc.returncode == 2 and "is not a bridge form" in proc.stderr and proc.stdout == ""
