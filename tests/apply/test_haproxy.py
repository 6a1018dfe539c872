"""haproxy (apply): check out of place, compare, write atomically; reload commands."""

from __future__ import annotations

import os

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


def test_new_config_is_written_with_a_default_mode(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    result = haproxy.apply_config(VALID.format(port=1), str(cfg))
    assert (result.changed, result.written, result.reloaded, result.error) == (True, True, False, None)
    assert cfg.read_text() == VALID.format(port=1)
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o644)


def test_unchanged_config_is_not_written(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(VALID.format(port=1))
    before = cfg.stat().st_mtime_ns, cfg.stat().st_ino
    result = haproxy.apply_config(VALID.format(port=1), str(cfg))
    assert not result.changed and not result.written
    assert (cfg.stat().st_mtime_ns, cfg.stat().st_ino) == before


def test_permissions_of_the_old_file_are_kept(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("old\n")
    os.chmod(cfg, 0o640)
    haproxy.apply_config(VALID.format(port=2), str(cfg))
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o640)


def test_world_writable_is_never_kept(tmp_path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("old\n")
    os.chmod(cfg, 0o666)
    haproxy.apply_config(VALID.format(port=2), str(cfg))
    assert cfg.stat().st_mode & 0o002 == 0


def test_check_candidate_names_haproxys_complaint_and_leaves_nothing_behind(tmp_path,
                                                                       haproxy_bin) -> None:
    """The check before any write (the engine's): a rejected config never reaches the path."""
    cfg = tmp_path / "haproxy.cfg"
    ok, message = haproxy.check_candidate(VALID.format(port=3) + "  bogus-directive here\n",
                                     str(cfg), haproxy_bin)
    assert not ok and "bogus-directive" in message and "<config>" in message
    assert os.listdir(tmp_path) == []  # neither the config nor the checked copy
    assert haproxy.check_candidate(VALID.format(port=3), str(cfg), haproxy_bin)[0]


def test_the_write_takes_any_text(tmp_path) -> None:
    """Validation is the engine's step (--skip-validation leaves it out), not the write's."""
    cfg = tmp_path / "haproxy.cfg"
    result = haproxy.apply_config("not a config\n", str(cfg))
    assert result.written and cfg.read_text() == "not a config\n"


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
