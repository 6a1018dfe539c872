"""One writer per config: a second servicerouter fails at startup naming the first's PID,
and the run that holds the lock removes a dead run's temp files at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.apply import writer_lock
from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import wait_until
from tests.paths import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _argv(config: Path, source: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "servicerouter", "-m", source, "--haproxy-config", str(config),
            "--syslog-socket", "/dev/null", "--skip-validation", "--command", "true", *extra]


def _snapshot(tmp_path: Path) -> str:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": [
        {"id": "/web", "ports": [10001], "labels": {}, "env": {},
         "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]}]}))
    return f"file:{path}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, MarathonEmulator]]:
    """A live servicerouter (--sse) writing tmp_path/etc/haproxy.cfg, stopped by PID."""
    config = tmp_path / "etc" / "haproxy.cfg"
    with MarathonEmulator([]) as marathon:
        proc = subprocess.Popen(_argv(config, marathon.url, "--sse"), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            lock = Path(writer_lock.config_lock_path(str(config)))
            wait_until(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid)
                       and marathon.sse_clients and config.exists(), 30,
                       message="the daemon did not take the lock and sync")
            yield proc, config, marathon
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_second_writer_fails_at_startup_naming_the_first(
        daemon: tuple[subprocess.Popen[bytes], Path, MarathonEmulator], tmp_path: Path) -> None:
    proc, config, _marathon = daemon
    before = config.read_bytes()
    started = time.monotonic()
    second = subprocess.run(_argv(config, _snapshot(tmp_path)), env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert time.monotonic() - started < 20
    assert "Traceback" not in second.stderr
    (line,) = [ln for ln in second.stderr.splitlines() if "another servicerouter" in ln]
    assert f"PID {proc.pid}" in line and f"{config}.lock" in line
    assert config.read_bytes() == before  # the second run wrote nothing
    # Another state directory does not make it a second config: still refused.
    other_state = subprocess.run(_argv(config, _snapshot(tmp_path), "--state-dir",
                                       str(tmp_path / "other-state")),
                                 env=ENV, capture_output=True, text=True, timeout=60)
    assert other_state.returncode == 2 and f"PID {proc.pid}" in other_state.stderr
    # A shared state directory is one writer's too, even for another config.
    shared = subprocess.run(_argv(tmp_path / "other.cfg", _snapshot(tmp_path), "--state-dir",
                                  str(config.parent / ".servicerouter")),
                            env=ENV, capture_output=True, text=True, timeout=60)
    assert shared.returncode == 2 and f"PID {proc.pid}" in shared.stderr
    # --dry writes nothing, so it takes no lock and previews while the daemon runs.
    dry = subprocess.run(_argv(config, _snapshot(tmp_path), "--dry"),
                         env={**ENV, "TMPDIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "backend web_10001" in dry.stdout
    assert proc.poll() is None  # the first one kept running


def test_the_lock_goes_with_its_holder(daemon: tuple[subprocess.Popen[bytes], Path,
                                                     MarathonEmulator],
                                       tmp_path: Path) -> None:
    proc, config, _marathon = daemon
    proc.kill()  # no cleanup at all: the kernel releases the flock
    proc.wait()
    assert Path(f"{config}.lock").exists()  # the file stays; it is the flock that counts
    after = subprocess.run(_argv(config, _snapshot(tmp_path)), env=ENV, capture_output=True,
                           text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert "backend web_10001" in config.read_text()


_KILLED_WRITER = textwrap.dedent("""
    import os, sys, tempfile
    from servicerouter.apply import haproxy, writer_lock
    from servicerouter.tls import bundles
    config, state = sys.argv[1], sys.argv[2]
    locks = writer_lock.acquire_all(config, state)
    haproxy.write_temp(os.path.dirname(config), os.path.basename(config), b"half", 0o644)
    os.close(tempfile.mkstemp(prefix=".sr-check-", suffix=".cfg",
                              dir=os.path.dirname(config))[0])
    os.replace = lambda src, dst: os.kill(os.getpid(), 9)  # die between write and rename
    bundles.write_private_file(os.path.join(state, "default.pem"), "pem")
""")


def test_a_killed_runs_temp_files_go_at_once_with_the_lock(tmp_path: Path) -> None:
    config, state = tmp_path / "etc" / "haproxy.cfg", tmp_path / "etc" / ".servicerouter"
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(config), str(state)],
                            env=ENV, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    litter = sorted(p for p in [*config.parent.iterdir(), *state.iterdir()]
                    if p.name.startswith("."))
    litter = [p for p in litter if p.is_file()]
    assert len(litter) == 3, litter  # config temp, haproxy -c candidate, certificate temp
    # Seconds old, not minutes: an age threshold alone would keep them.
    assert all(time.time() - p.stat().st_mtime < 60 for p in litter)
    run = subprocess.run(_argv(config, _snapshot(tmp_path)), env=ENV, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not any(p.exists() for p in litter), run.stderr
    assert "removed stale temp file" in run.stderr


def test_a_live_holder_keeps_its_temp_files(
        daemon: tuple[subprocess.Popen[bytes], Path, MarathonEmulator], tmp_path: Path) -> None:
    """Only the lock makes a temp file litter: the refused run touches nothing."""
    _proc, config, _marathon = daemon
    in_use = config.parent / ".haproxy.cfg.abcd1234.tmp"
    in_use.write_text("being written")
    refused = subprocess.run(_argv(config, _snapshot(tmp_path)), env=ENV, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert in_use.exists()


def test_lock_in_process(tmp_path: Path) -> None:
    lock = writer_lock.acquire(str(tmp_path / "x.lock"))
    assert (tmp_path / "x.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    again = writer_lock.acquire(str(tmp_path / "x.lock"))  # released: free again
    again.release()
