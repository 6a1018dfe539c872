"""cli: servicerouter.py's flags, --longhelp from the registries, one-shot exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.cli import flags, logs
from servicerouter.cli import main as cli
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.model.labels import SETTINGS
from servicerouter.render.fragment_registry import FRAGMENTS
from tests.harness import free_port
from tests.paths import REPO


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    scratch = cwd.parent / f"{cwd.name}.tmp"  # --dry's preview files: beside, not in /tmp
    scratch.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "servicerouter.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)},
    )


def common(tmp_path: Path) -> list[str]:
    return ["--haproxy-config", str(tmp_path / "haproxy.cfg"), "--command", "true",
            "--syslog-socket", "/dev/null", "--bind-addr", "127.0.0.1",
            "--http-port", str(free_port()), "--https-port", str(free_port()),
            "--appid-port", str(free_port()), "--stats-port", str(free_port())]


def web_app(app_id: str = "/web", **labels: str) -> dict:
    return {"id": app_id, "ports": [10000 + len(app_id)], "labels": labels, "env": {},
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "127.0.0.1", "ports": [31000]}]}


# --- flags -------------------------------------------------------------------------

def test_servicerouter_py_flags_and_defaults() -> None:
    args = flags.parse_args(["-m", "http://a", "http://b", "--marathon", "http://c"])
    assert args.marathon == ["http://a", "http://b", "http://c"]
    assert args.listening is None and args.command is None
    assert args.haproxy_config == "/etc/haproxy/haproxy.cfg"
    assert args.log_format is None  # syslog: "%(name)s: %(message)s"; stderr adds time, level
    assert args.syslog_socket in ("/dev/log", "/var/run/syslog")
    assert args.group == []
    args = flags.parse_args(["-m", "http://x", "--group", "a", "--group", "*", "-l", "http://lb:9000",
                           "-c", "reload it", "--syslog-socket", "/dev/null",
                           "--log-format", "%(message)s", "--haproxy-config", "/tmp/h.cfg"])
    assert args.group == ["a", "*"] and args.listening == "http://lb:9000"
    assert args.command == "reload it"


def test_missing_marathon_is_the_argparse_error(tmp_path: Path) -> None:
    proc = run_cli(cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: argument --marathon/-m is required" in proc.stderr


def test_longhelp_comes_from_the_registries(tmp_path: Path) -> None:
    proc = run_cli("--longhelp", cwd=tmp_path)
    assert proc.returncode == 0
    for setting in SETTINGS:
        assert setting.key in proc.stdout
    for spec in FRAGMENTS:
        assert spec.name in proc.stdout
        for placeholder in spec.placeholders:
            assert placeholder in proc.stdout


def test_yaml_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("marathon: http://m1:8080\ngroup: [external]\nhttp-port: 8080\n")
    args = flags.parse_args(["--config", str(path)])
    assert args.marathon == ["http://m1:8080"] and args.group == ["external"]
    assert args.http_port == 8080


# --- one-shot runs -------------------------------------------------------------------

def test_one_shot_writes_a_valid_config(tmp_path: Path, haproxy_bin: str) -> None:
    with MarathonEmulator([web_app(HAPROXY_0_VHOST="web.example.com")]) as marathon:
        proc = run_cli("-m", marathon.url, *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "haproxy.cfg").read_text()
    assert "backend web_10004" in text and "web.example.com" in text
    assert "admin:admin" not in text
    assert "sync timing:" in proc.stderr


def test_marathon_down_exits_non_zero_and_keeps_config(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("previous\n")
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    proc = run_cli("-m", *dead, *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert cfg.read_text() == "previous\n"
    for host in dead:  # one clear line per host
        assert sum(host in line for line in proc.stderr.splitlines()) >= 1
    assert "connection failed" in proc.stderr


def test_failover_to_the_next_host(tmp_path: Path) -> None:
    with MarathonEmulator([web_app()]) as marathon:
        proc = run_cli("-m", f"http://127.0.0.1:{free_port()}", marathon.url, *common(tmp_path),
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "web_10004" in (tmp_path / "haproxy.cfg").read_text()


def test_marathon_error_status_keeps_config(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("previous\n")
    with MarathonEmulator([web_app()]) as marathon:
        marathon.set_unavailable(True, 503)
        proc = run_cli("-m", marathon.url, *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1 and "HTTP 503" in proc.stderr
    assert cfg.read_text() == "previous\n"


def test_bad_label_skips_only_that_app(tmp_path: Path) -> None:
    apps = [web_app("/good"), web_app("/bad", HAPROXY_0_PORT="not-a-port")]
    with MarathonEmulator(apps) as marathon:
        proc = run_cli("-m", marathon.url, *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "haproxy.cfg").read_text()
    assert "good_10005" in text and "backend bad_" not in text
    (line,) = [line for line in proc.stderr.splitlines() if "/bad" in line]
    assert "HAPROXY_0_PORT" in line and "port index 0" in line


def test_rejected_config_keeps_the_old_file(tmp_path: Path, haproxy_bin: str) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_bytes(b"previous config\n")
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    (overrides / "HAPROXY_BACKEND_HEAD").write_text("\nbackend {backend}\n  no-such-keyword\n")
    with MarathonEmulator([web_app()]) as marathon:
        proc = run_cli("-m", marathon.url, *common(tmp_path), "--templates-dir", str(overrides),
                       cwd=tmp_path)
    assert proc.returncode == 1
    assert cfg.read_bytes() == b"previous config\n"
    assert "no-such-keyword" in proc.stderr


def test_snapshot_source_and_dry_run(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app()]}))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("previous\n")
    proc = run_cli("-m", f"file://{snapshot}", *common(tmp_path), "--dry", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backend web_10004" in proc.stdout
    assert "+backend web_10004" in proc.stderr  # the diff against the file on disk
    assert cfg.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apps.json", "haproxy.cfg"]  # --dry writes nothing


def test_garbage_from_marathon_keeps_config(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text("{not json")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("previous\n")
    proc = run_cli("-m", f"file:{snapshot}", *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1 and "invalid JSON" in proc.stderr
    assert cfg.read_text() == "previous\n"


def test_template_error_fails_at_startup_naming_file_and_line(tmp_path: Path) -> None:
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "HAPROXY_FRONTEND_HEAD").write_text("\nfrontend {backend}\n  bind {bindAdr}\n")
    proc = run_cli("-m", "file:/nonexistent", *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "HAPROXY_FRONTEND_HEAD" in proc.stderr and "line 3" in proc.stderr
    assert "bindAdr" in proc.stderr


@pytest.mark.parametrize("socket_path", ["/dev/null", "/nonexistent/log.sock"])
def test_syslog_socket_is_optional(tmp_path: Path, socket_path: str) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": []}))
    args = common(tmp_path)
    args[args.index("--syslog-socket") + 1] = socket_path
    proc = run_cli("-m", f"file:{snapshot}", *args, "--skip-validation", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("argv, attr, value", [
    (["--haproxy", "x.cfg"], "haproxy_config", "x.cfg"),
    (["--haproxy=y.cfg"], "haproxy_config", "y.cfg"),
    (["--log", "%(message)s"], "log_format", "%(message)s"),
    (["--listen", "http://lb:8000"], "listening", "http://lb:8000"),
    (["--com", "true"], "command", "true"),
    (["--sys", "/dev/null"], "syslog_socket", "/dev/null"),
])
def test_servicerouter_py_abbreviations_still_work(argv: list[str], attr: str, value: str) -> None:
    """argparse let servicerouter.py's users shorten flags; new flags must not break that."""
    assert getattr(flags.parse_args(["-m", "file:x", *argv]), attr) == value


def test_a_new_bad_label_leaves_the_config_byte_identical(tmp_path: Path) -> None:
    """A bad app appearing changes nothing: same bytes, same mtime, no reload."""
    cfg = tmp_path / "haproxy.cfg"
    reloads = tmp_path / "reloads"
    argv = [*common(tmp_path), "--command", f"sh -c 'echo x >> {reloads}'"]
    with MarathonEmulator([web_app("/good")]) as marathon:
        assert run_cli("-m", marathon.url, *argv, cwd=tmp_path).returncode == 0
        before, stamp = cfg.read_bytes(), cfg.stat().st_mtime_ns
        marathon.put_app(web_app("/bad", HAPROXY_0_MODE="udp"))
        proc = run_cli("-m", marathon.url, *argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert cfg.read_bytes() == before and cfg.stat().st_mtime_ns == stamp
    assert reloads.read_text() == "x\n"  # the first run's reload only
    assert any("/bad" in line and "HAPROXY_0_MODE" in line for line in proc.stderr.splitlines())


def test_cookie_secret_file_is_read_once_and_checked(tmp_path: Path) -> None:
    """Every edge node given the same file keys the same cookies; a bad file stops startup."""
    from servicerouter.render.config import dynamic_cookie_key

    secret = tmp_path / "secret"
    secret.write_text("s3cret-shared-by-every-node\n")
    assert cli.read_cookie_secret(str(secret)) == "s3cret-shared-by-every-node"
    assert cli.read_cookie_secret(None) is None
    keyed = dynamic_cookie_key("web_10000", "s3cret-shared-by-every-node")
    assert keyed == dynamic_cookie_key("web_10000", "s3cret-shared-by-every-node")
    assert keyed != dynamic_cookie_key("web_10000", None) != dynamic_cookie_key("api_1", None)
    (tmp_path / "short").write_text("short\n")
    for bad in (tmp_path / "short", tmp_path / "missing"):
        with pytest.raises(ValueError, match="--cookie-secret-file"):
            cli.read_cookie_secret(str(bad))
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app(HAPROXY_0_STICKY="true",
                                                     HAPROXY_0_VHOST="w.test")]}))
    outputs = []
    for node in ("node1", "node2"):
        (tmp_path / node).mkdir()
        proc = run_cli("-m", f"file:{snapshot}", *common(tmp_path / node), "--dry",
                       "--cookie-secret-file", str(secret), cwd=tmp_path / node)
        assert proc.returncode == 0, proc.stderr
        outputs.append([line for line in proc.stdout.splitlines() if "dynamic-cookie-key" in line])
    expected = dynamic_cookie_key("web_10004", "s3cret-shared-by-every-node")
    assert outputs[0] == outputs[1] == [f"  dynamic-cookie-key {expected}"]
    assert "s3cret" not in "".join(outputs[0])
    proc = run_cli("-m", f"file:{snapshot}", *common(tmp_path), "--dry",
                   "--cookie-secret-file", str(tmp_path / "short"), cwd=tmp_path)
    assert proc.returncode == 2 and "at least 16 characters" in proc.stderr


# --- operator audit: reloads, --haproxy-bin, syslog, busy ports, --help, runtime socket ----

def _snapshot(tmp_path: Path, *apps: dict) -> str:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": list(apps) or [web_app()]}))
    return f"file:{path}"


def test_failed_reload_exits_1_and_the_next_run_reloads_again(tmp_path: Path) -> None:
    """A failed reload is an error: the file goes back, so a rerun does not call it current."""
    cfg = tmp_path / "haproxy.cfg"
    source = _snapshot(tmp_path)
    argv = [*common(tmp_path), "--skip-validation"]
    proc = run_cli("-m", source, *argv, "--command", "false", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "unable to reload" in proc.stderr and cfg.exists()  # none before: kept to start

    cfg.write_bytes(b"previous\n")
    proc = run_cli("-m", source, *argv, "--command", "sh -c 'echo reload-said-no >&2; exit 4'",
                   cwd=tmp_path)
    assert proc.returncode == 1 and cfg.read_bytes() == b"previous\n"
    assert "non-zero: 4" in proc.stderr and "reload-said-no" in proc.stderr
    assert "restored the previous" in proc.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".haproxy.cfg.")]

    reloads = tmp_path / "reloads"
    proc = run_cli("-m", source, *argv, "--command", f"sh -c 'echo x >> {reloads}'",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert reloads.read_text() == "x\n" and "backend web_10004" in cfg.read_text()


def test_a_given_haproxy_bin_must_exist(tmp_path: Path) -> None:
    source = _snapshot(tmp_path)
    not_executable = tmp_path / "haproxy"
    not_executable.write_text("#!/bin/sh\n")
    for given, why in (("/nonexistent/haproxy", "no such file"),
                       (str(not_executable), "not executable"),
                       ("no-such-haproxy-here", "not found on PATH")):
        proc = run_cli("-m", source, *common(tmp_path), "--haproxy-bin", given, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        (line,) = [line for line in proc.stderr.splitlines() if "--haproxy-bin" in line]
        assert given in line and why in line
        assert not (tmp_path / "haproxy.cfg").exists()
    # In the --config file it is given just the same.
    yaml_file = tmp_path / "sr.yaml"
    yaml_file.write_text("haproxy-bin: /nonexistent/haproxy\n")
    proc = run_cli("-m", source, *common(tmp_path), "--config", str(yaml_file), cwd=tmp_path)
    assert proc.returncode == 2 and "--haproxy-bin /nonexistent/haproxy" in proc.stderr


def test_default_haproxy_missing_skips_validation_saying_so(tmp_path: Path) -> None:
    import shutil

    empty = tmp_path / "empty-path"
    empty.mkdir()
    true = shutil.which("true")
    assert true is not None
    argv = [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", _snapshot(tmp_path),
            *common(tmp_path), "--command", true]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PATH": str(empty)})
    assert proc.returncode == 0, proc.stderr
    assert "haproxy not found: writing the config without validating it" in proc.stderr
    assert (tmp_path / "haproxy.cfg").exists()


def test_missing_syslog_socket_is_one_warning_and_no_traceback(tmp_path: Path) -> None:
    args = common(tmp_path)
    args[args.index("--syslog-socket") + 1] = str(tmp_path / "no-such-log")
    proc = run_cli("-m", _snapshot(tmp_path), *args, "--skip-validation", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Logging error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("unavailable") == 1
    assert "no-such-log unavailable (No such file or directory); logging to stderr only" in proc.stderr


@pytest.fixture
def restore_logging() -> Iterator[None]:
    import logging

    logger = logging.getLogger("servicerouter")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if isinstance(handler, logs.QuietSysLogHandler):
            handler.close()
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_syslog_that_goes_away_warns_once_and_comes_back(restore_logging, capsys) -> None:
    """A real datagram socket (syslogd) that disappears and returns: never a traceback."""
    import logging
    import socket
    import tempfile

    directory = tempfile.mkdtemp(prefix="sr-syslog-", dir="/tmp")  # short: AF_UNIX path limit
    path = os.path.join(directory, "log")

    def syslogd() -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(5)
        return server

    server = syslogd()
    try:
        logs.setup_logging(path, "%(name)s: %(message)s")
        log = logging.getLogger("servicerouter.test")
        log.warning("first")
        assert b"servicerouter.test: first" in server.recv(4096)

        server.close()
        os.unlink(path)  # syslogd stopped
        for n in range(5):
            log.warning("lost %d", n)
        err = capsys.readouterr().err
        assert "Logging error" not in err and "Traceback" not in err
        assert err.count(f"syslog socket {path} unavailable") == 1
        assert err.count("lost ") == 5  # stderr still has every message

        server = syslogd()  # syslogd is back: the handler reconnects by itself
        log.warning("back")
        assert b"servicerouter.test: back" in server.recv(4096)
        assert "works again" in capsys.readouterr().err
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


@pytest.mark.parametrize("mode", ["status", "listening"])
def test_a_busy_port_is_one_clear_startup_error(tmp_path: Path, mode: str) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        dead = f"http://127.0.0.1:{free_port()}"
        extra = {"status": ["--sse", "--status-listen", f"127.0.0.1:{port}"],
                 "listening": ["--listening", f"http://127.0.0.1:{port}/",
                               "--listening-addr", "127.0.0.1"]}[mode]
        proc = run_cli("-m", dead, *common(tmp_path), *extra, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    flag = "--status-listen" if mode == "status" else "--listening"
    (line,) = [line for line in proc.stderr.splitlines() if "cannot listen" in line]
    assert flag in line and f"127.0.0.1:{port}" in line and "Address already in use" in line


def test_help_is_for_servicerouter(tmp_path: Path) -> None:
    for argv in ([sys.executable, "-m", "servicerouter", "--help"],
                 [sys.executable, str(REPO / "bin" / "servicerouter.py"), "--help"]):
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0 and proc.stdout.startswith("usage: servicerouter ")


def test_runtime_socket_is_written_in_one_shot_and_dry_runs(tmp_path: Path) -> None:
    sock = tmp_path / "haproxy.sock"
    source = _snapshot(tmp_path)
    line = f"stats socket {sock} mode 600 level admin expose-fd listeners"
    proc = run_cli("-m", source, *common(tmp_path), "--runtime-socket", str(sock), "--dry",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert line in proc.stdout
    proc = run_cli("-m", source, *common(tmp_path), "--runtime-socket", str(sock), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # and haproxy -c accepts it
    assert line in (tmp_path / "haproxy.cfg").read_text()


def test_problems_that_keep_the_port_say_so(tmp_path: Path) -> None:
    """A lost vhost or an ignored path is not a skipped port: the log line says which."""
    older = {**web_app("/older", HAPROXY_0_VHOST="shared.test"), "ports": [10001],
             "versionInfo": {"lastConfigChangeAt": "2020-01-01T00:00:00.000Z"}}
    newer = {**web_app("/newer", HAPROXY_0_VHOST="shared.test"), "ports": [10002],
             "versionInfo": {"lastConfigChangeAt": "2021-01-01T00:00:00.000Z"}}
    pathless = {**web_app("/pathless", HAPROXY_0_PATH="/api"), "ports": [10003]}
    bad = {**web_app("/bad", HAPROXY_0_PORT="x"), "ports": [10004]}
    proc = run_cli("-m", _snapshot(tmp_path, older, newer, pathless, bad), *common(tmp_path),
                   "--dry", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " servicerouter" in line]  # log lines
    (conflict,) = [line for line in lines if "/newer" in line]
    assert "ignored HAPROXY_0_VHOST='shared.test' of app '/newer' port index 0 " \
           "(the port still routes): vhost conflict" in conflict
    (path,) = [line for line in lines if "/pathless" in line]
    assert "ignored HAPROXY_0_PATH='/api' of app '/pathless' port index 0 " \
           "(the port still routes)" in path
    (skipped,) = [line for line in lines if "/bad" in line]
    assert "skipped app '/bad' port index 0 HAPROXY_0_PORT='x'" in skipped
    assert "backend newer_10002" in proc.stdout and "backend pathless_10003" in proc.stdout
