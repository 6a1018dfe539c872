"""Modes: --dry is always a checkable one-shot preview, --manage-haproxy alone follows
Marathon's events, flags a mode ignores are named once, HAProxy that cannot start is one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servicerouter.cli import flags, modes
from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import free_port, self_signed_cert, wait_until
from tests.paths import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicerouter", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**ENV, **(env or {})})


def ports() -> list[str]:
    return ["--bind-addr", "127.0.0.1", "--http-port", str(free_port()),
            "--https-port", str(free_port()), "--appid-port", str(free_port()),
            "--stats-port", str(free_port())]


def tls_apps(certs: Path) -> list[dict]:
    """A vhost on the shared HTTPS frontend and a port serving its own certificate."""
    own = self_signed_cert(certs / "own.pem", ["own.test"])
    return [
        {"id": "/web", "ports": [10001], "env": {},
         "labels": {"HAPROXY_0_VHOST": "web.test", "HAPROXY_0_REDIRECT_TO_HTTPS": "true"},
         "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]},
        {"id": "/own", "ports": [10002], "env": {},
         "labels": {"HAPROXY_0_VHOST": "own.test", "HAPROXY_0_SSL_CERT": own},
         "tasks": [{"id": "own.1", "host": "127.0.0.1", "ports": [31001]}]},
    ]


# --- choosing the mode (pure) ------------------------------------------------------------

@pytest.mark.parametrize(("argv", "mode"), [
    ([], modes.ONCE),
    (["--runtime-socket", "/run/h.sock"], modes.ONCE),
    (["--sse"], modes.SSE),
    (["--listening", "http://lb:9000"], modes.LISTENING),
    (["--manage-haproxy"], modes.SSE),
    (["--manage-haproxy", "--listening", "http://lb:9000"], modes.LISTENING),
    (["--dry", "--sse", "--manage-haproxy", "--listening", "http://lb:9000"], modes.DRY),
])
def test_the_mode_the_flags_ask_for(argv: list[str], mode: str) -> None:
    args = flags.parse_args(["-m", "http://m:8080", *argv])
    assert modes.choose(args).name == mode


def test_managed_haproxy_on_a_snapshot_says_how_it_updates() -> None:
    args = flags.parse_args(["-m", "file:/x.json", "--manage-haproxy"])
    mode = modes.choose(args)
    assert mode.name == modes.POLL and mode.note and "SIGHUP" in mode.note


def test_ignored_flags_are_named_in_one_line() -> None:
    args = flags.parse_args(["-m", "http://m:8080", "--status-listen", "9091", "--min-wait",
                             "1", "--hard-stop-after", "5s"])
    (line,) = modes.ignored_flags(args, modes.choose(args), args.given)
    assert "--status-listen" in line and "--min-wait" in line and "--hard-stop-after" in line
    # Defaults are not "given": a plain one-shot run warns about nothing.
    args = flags.parse_args(["-m", "http://m:8080"])
    assert modes.ignored_flags(args, modes.choose(args), args.given) == []
    args = flags.parse_args(["-m", "http://m:8080", "--manage-haproxy", "--command", "x",
                             "--listening-addr", "127.0.0.1", "--runtime-socket", "/r.sock",
                             "--status-token", "t"])
    (line,) = modes.ignored_flags(args, modes.choose(args), args.given)
    for flag in ("--command", "--listening-addr", "--runtime-socket", "--status-token"):
        assert flag in line
    # What a live run uses is not named.
    args = flags.parse_args(["-m", "http://m:8080", "--sse", "--runtime-socket", "/r.sock",
                             "--status-listen", "9091", "--status-token", "t", "--min-wait", "1"])
    assert modes.ignored_flags(args, modes.choose(args), args.given) == []


def test_a_one_shot_run_warns_once_about_live_flags(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text('{"apps": []}')
    proc = run_cli("-m", f"file:{snapshot}", "--haproxy-config", str(tmp_path / "h.cfg"),
                   "--syslog-socket", "/dev/null", "--skip-validation", "--command", "true",
                   "--status-listen", "9091", "--min-wait", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "--status-listen" in line]
    assert len(lines) == 1 and "ignored in a one-shot run" in lines[0] and "--min-wait" in lines[0]


# --- --dry ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_dry_output_passes_haproxy_check_on_a_fresh_host(tmp_path: Path,
                                                         haproxy_bin: str) -> None:
    host = tmp_path / "fresh"  # never ran servicerouter: no state directory, no config
    host.mkdir()
    certs = tmp_path / "certs"
    certs.mkdir()
    shared = self_signed_cert(certs / "shared.pem", ["shared.test"])
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": tls_apps(certs)}))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with MarathonEmulator([]) as marathon:
        # Every live flag at once: --dry must still be a one-shot preview.
        proc = run_cli("-m", f"file:{snapshot}", "--haproxy-config", str(host / "haproxy.cfg"),
                       "--ssl-certs", shared, "--syslog-socket", "/dev/null", *ports(),
                       "--dry", "--sse", "--manage-haproxy", "--haproxy-bin", haproxy_bin,
                       cwd=host, env={"TMPDIR": str(scratch)})
        assert marathon.sse_clients == 0 and marathon.subscriptions == []
    assert proc.returncode == 0, proc.stderr
    assert list(host.iterdir()) == []  # nothing written where the real run would write
    preview = tmp_path / "preview.cfg"
    preview.write_text(proc.stdout)
    assert "crt-list" in proc.stdout and "own.pem" in proc.stdout
    check = subprocess.run([haproxy_bin, "-c", "-f", str(preview)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    (dry_dir,) = scratch.iterdir()  # the temporary directory, named on stderr
    assert f"are in {dry_dir} " in proc.stderr and str(dry_dir) in proc.stdout
    assert f"{dry_dir}/maps/" in proc.stdout  # the vhost maps too, in the same place
    assert "--dry is a one-shot preview: ignoring --sse, --manage-haproxy" in proc.stderr


@pytest.mark.e2e
def test_dry_never_subscribes_nor_binds(tmp_path: Path) -> None:
    with socket.socket() as held, MarathonEmulator([]) as marathon:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = run_cli("-m", marathon.url, "--haproxy-config", str(tmp_path / "h.cfg"),
                       "--syslog-socket", "/dev/null", "--dry", "--listening",
                       f"http://127.0.0.1:{port}/", "--status-listen", str(port), *ports(),
                       cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
        assert marathon.subscriptions == []
    assert proc.returncode == 0, proc.stderr
    assert "cannot listen" not in proc.stderr


# --- --manage-haproxy without an event source ------------------------------------------

@pytest.mark.e2e
def test_managed_haproxy_alone_follows_marathon_events(tmp_path: Path, haproxy_bin: str) -> None:
    app = {"id": "/web", "portDefinitions": [{"port": 10011}], "labels": {}}
    config = tmp_path / "haproxy.cfg"
    with MarathonEmulator([app]) as marathon:
        marathon.add_task("/web", "127.0.0.1", [31010])
        log_path = tmp_path / "router.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "servicerouter", "-m", marathon.url, "--manage-haproxy",
                 "--haproxy-stop-on-exit", "--haproxy-bin", haproxy_bin, "--haproxy-config",
                 str(config), "--syslog-socket", "/dev/null", "--resync-interval", "300",
                 "--min-wait", "0.05", "--max-wait", "0.5", *ports()],
                cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT, env=ENV)
        try:
            wait_until(lambda: marathon.sse_clients, 30,
                       message="servicerouter did not follow the event stream")
            wait_until(lambda: "127.0.0.1:31010" in config.read_text(), 30)
            marathon.add_task("/web", "127.0.0.1", [31011])
            # An event, not the 300 s resync, brings the new task in.
            wait_until(lambda: "127.0.0.1:31011" in config.read_text(), 20,
                       message="the new task never reached the config")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    log = log_path.read_text()
    assert "follows Marathon's event stream" in log


# --- HAProxy that cannot start ----------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("cause", ["busy-port", "bad-config"])
def test_haproxy_that_cannot_start_is_one_line(tmp_path: Path, haproxy_bin: str,
                                               cause: str) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text('{"apps": []}')
    argv = ["-m", f"file:{snapshot}", "--manage-haproxy", "--haproxy-stop-on-exit",
            "--haproxy-bin", haproxy_bin, "--haproxy-config", str(tmp_path / "haproxy.cfg"),
            "--syslog-socket", "/dev/null", *ports()]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        if cause == "busy-port":
            argv += ["--stats-port", str(held.getsockname()[1])]
            reason = f"127.0.0.1:{held.getsockname()[1]}"
        else:  # a head HAProxy rejects, written because validation is off
            templates = tmp_path / "templates"
            templates.mkdir()
            (templates / "HAPROXY_HEAD").write_text("global\n  no-such-keyword\n")
            argv += ["--templates-dir", str(templates), "--skip-validation"]
            reason = "no-such-keyword"
        started = time.monotonic()
        proc = run_cli(*argv, cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "cannot start HAProxy" in ln]
    assert reason in line, proc.stderr
