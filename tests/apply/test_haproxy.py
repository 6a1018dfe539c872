"""haproxy (apply): compare, validate, write atomically, reload; never a rejected config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servicerouter.apply import haproxy

VALID = """global
  log 127.0.0.1 local0
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:1
"""


@pytest.fixture
def marker(tmp_path: Path) -> tuple[list[str], Path]:
    """A reload command that records each run."""
    path = tmp_path / "reloads"
    return ["sh", "-c", f"echo reload >> {path}"], path


def reloads(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_new_config_is_validated_written_and_reloaded(tmp_path, marker, haproxy_bin) -> None:
    cfg = tmp_path / "haproxy.cfg"
    command, log = marker
    result = haproxy.apply_config(VALID.format(port=1), str(cfg), haproxy_bin=haproxy_bin,
                                  reload=command)
    assert (result.changed, result.written, result.reloaded, result.error) == (True, True, True, None)
    assert cfg.read_text() == VALID.format(port=1)
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o644)
    assert reloads(log) == 1


def test_unchanged_config_is_neither_written_nor_reloaded(tmp_path, marker, haproxy_bin) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(VALID.format(port=1))
    before = cfg.stat().st_mtime_ns, cfg.stat().st_ino
    command, log = marker
    result = haproxy.apply_config(VALID.format(port=1), str(cfg), haproxy_bin=haproxy_bin,
                                  reload=command)
    assert not result.changed and reloads(log) == 0
    assert (cfg.stat().st_mtime_ns, cfg.stat().st_ino) == before


def test_permissions_of_the_old_file_are_kept(tmp_path, marker, haproxy_bin) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("old\n")
    os.chmod(cfg, 0o640)
    haproxy.apply_config(VALID.format(port=2), str(cfg), haproxy_bin=haproxy_bin, reload=marker[0])
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o640)


def test_world_writable_is_never_kept(tmp_path, haproxy_bin) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("old\n")
    os.chmod(cfg, 0o666)
    haproxy.apply_config(VALID.format(port=2), str(cfg), haproxy_bin=haproxy_bin)
    assert cfg.stat().st_mode & 0o002 == 0


def test_rejected_config_leaves_old_file_byte_for_byte(tmp_path, marker, haproxy_bin, caplog) -> None:
    cfg = tmp_path / "haproxy.cfg"
    old = VALID.format(port=3).encode()
    cfg.write_bytes(old)
    command, log = marker
    result = haproxy.apply_config(VALID.format(port=3) + "  bogus-directive here\n", str(cfg),
                                  haproxy_bin=haproxy_bin, reload=command)
    assert not result.ok and "bogus-directive" in (result.error or "")
    assert cfg.read_bytes() == old
    assert reloads(log) == 0
    assert sorted(os.listdir(tmp_path)) == ["haproxy.cfg"]  # no temp file left behind
    assert any("rejected" in r.getMessage() for r in caplog.records)


def test_skip_validation_writes_anything(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    result = haproxy.apply_config("not a config\n", str(cfg), validate=False)
    assert result.written and cfg.read_text() == "not a config\n"


def test_missing_haproxy_binary_writes_with_a_warning(tmp_path, caplog) -> None:
    cfg = tmp_path / "haproxy.cfg"
    result = haproxy.apply_config("x\n", str(cfg), haproxy_bin="/nonexistent/haproxy")
    assert result.written
    assert any("without validating" in r.getMessage() for r in caplog.records)


def test_failed_reload_is_an_error_and_keeps_a_first_config(tmp_path, caplog) -> None:
    """No config before (HAProxy not started yet): the validated one stays for it to start
    with, and the run is still an error."""
    cfg = tmp_path / "haproxy.cfg"
    result = haproxy.apply_config("x\n", str(cfg), validate=False, reload=["false"])
    assert not result.ok and result.written and not result.reloaded
    assert "reload" in (result.error or "")
    assert cfg.read_text() == "x\n" and os.listdir(tmp_path) == ["haproxy.cfg"]
    assert any("unable to reload" in r.getMessage() for r in caplog.records)


def test_failed_reload_restores_the_previous_file_and_logs_its_output(tmp_path, caplog) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_bytes(b"previous\n")
    os.chmod(cfg, 0o640)
    command = ["sh", "-c", "echo 'cannot bind socket [0.0.0.0:80]' >&2; exit 3"]
    result = haproxy.apply_config("new\n", str(cfg), validate=False, reload=command)
    assert not result.ok and "cannot bind socket" in (result.error or "")
    assert cfg.read_bytes() == b"previous\n"
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(os.listdir(tmp_path)) == ["haproxy.cfg"]  # no temp file left
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("non-zero: 3" in m and "cannot bind socket [0.0.0.0:80]" in m for m in errors)
    # The next run finds a difference again, and reloads again.
    ok = haproxy.apply_config("new\n", str(cfg), validate=False, reload=["true"])
    assert ok.ok and ok.written and ok.reloaded and cfg.read_bytes() == b"new\n"


def test_missing_reload_command_is_a_failed_reload(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_bytes(b"previous\n")
    result = haproxy.apply_config("new\n", str(cfg), validate=False,
                                  reload=[str(tmp_path / "no-such-reload")])
    assert not result.ok and "no-such-reload" in (result.error or "")
    assert cfg.read_bytes() == b"previous\n"


def test_reload_output_does_not_wait_for_a_daemon_it_started(tmp_path) -> None:
    """A command that leaves a background process holding its stdout (haproxy -D) returns."""
    import time

    pidfile = tmp_path / "pid"
    command = ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started"]
    start = time.monotonic()
    ok, output = haproxy.reload_with_output(command, timeout=20)
    try:
        assert ok and output == "started"
        assert time.monotonic() - start < 10
    finally:
        os.kill(int(pidfile.read_text()), 9)


def test_reload_command_detection(monkeypatch) -> None:
    assert haproxy.reload_command("my-reload --now 'a b'") == ["my-reload", "--now", "a b"]
    monkeypatch.setattr(os.path, "isfile", lambda p: p == "/etc/init/haproxy.conf")
    assert haproxy.detect_reload_command() == ["reload", "haproxy"]
    monkeypatch.setattr(os.path, "isfile", lambda p: p == "/etc/systemd/system/haproxy.service")
    assert haproxy.detect_reload_command() == ["systemctl", "reload", "haproxy"]
    monkeypatch.setattr(os.path, "isfile", lambda p: False)
    assert haproxy.detect_reload_command() == ["/etc/init.d/haproxy", "reload"]
