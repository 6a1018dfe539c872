"""--config: every YAML value goes through its flag's own parser; --print-config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servicerouter.cli import flags
from tests.paths import REPO


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicerouter", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("http-port: eighty\n", "http-port", "invalid port: 'eighty'"),
    ("http_port: 70000\n", "http_port", "not in 1-65535"),
    ("stats_port: 8.5\n", "stats_port", "invalid port"),
    ("min-wait: -1\n", "min-wait", "must be 0 seconds or more"),
    ("marathon-timeout: 0\n", "marathon-timeout", "must be more than 0 seconds"),
    ("log-level: loud\n", "log-level", "invalid choice: 'loud'"),
    ("sse: yes\n", "sse", "not a boolean"),
    ("health-check: on\n", "health-check", "not a boolean"),
    ("dry: 1\n", "dry", "not a boolean"),
    ("bind-addr: true\n", "bind-addr", "takes a value, not true"),
    ("bind-addr: \"0.0.0.0\\n  stats enable\"\n", "bind-addr", "not an address"),
    ("hard-stop-after: soon\n", "hard-stop-after", "not a HAProxy time"),
    ("haproxy-config: [a, b]\n", "haproxy-config", "takes one value, not a list"),
    ("group: [a, null]\n", "group", "has no value"),
    ("group: [a, {b: c}]\n", "group", "is not a single value"),
    ("nonsense: 1\n", "nonsense", "unknown key"),
    ("list-certs: true\n", "list-certs", "not a setting"),
    ("max-reload-retries: 3\n", "--max-reload-retries", "(a marathon-lb flag) is not supported"),
])
def test_a_bad_value_is_one_line_naming_the_key(tmp_path: Path, text: str, key: str,
                                                 reason: str) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text(text)
    proc = run_cli("-m", "http://m:8080", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"servicerouter: error: --config {path}: ")
    assert key in line and reason in line


@pytest.mark.parametrize("text", ["a: [\n", "- just\n- a list\n"])
def test_a_file_that_is_not_a_mapping_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text(text)
    proc = run_cli("-m", "http://m:8080", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_values_are_parsed_as_the_flags_parse_them(tmp_path: Path) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("marathon: [http://m1:8080, http://m2:8080]\ngroup: external\n"
                    "http_port: '8080'\nmin-wait: 1\nsse: true\nhealth-check: false\n"
                    "stats-bind-addr: '*'\nlog-level: debug\nstatus-listen:\n"
                    "https-port: null\n")
    args = flags.parse_args(["--config", str(path)])
    assert args.marathon == ["http://m1:8080", "http://m2:8080"]
    assert args.group == ["external"]  # one value for a repeatable flag
    assert args.http_port == 8080 and isinstance(args.min_wait, float) and args.min_wait == 1.0
    assert args.sse is True and args.health_check is False
    assert args.stats_bind_addr == "*" and args.log_level == "debug"
    assert args.status_listen is None and args.https_port == 443  # null: the default


def test_the_command_line_wins_and_replaces_lists(tmp_path: Path) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("marathon: http://from-file:8080\ngroup: [a, b]\nhttp-port: 8080\n")
    args = flags.parse_args(["--config", str(path), "-m", "http://flag:8080", "--group", "c",
                             "--http-port", "9000"])
    assert args.marathon == ["http://flag:8080"] and args.group == ["c"]
    assert args.http_port == 9000
    assert {"marathon", "group", "http_port"} <= args.given


def test_print_config_shows_the_effective_settings_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("group: [a]\nhttp-port: 8080\nauth-credentials: 'user:s3cret-pass'\n")
    proc = run_cli("--config", str(path), "-m", "http://admin:hunter22@m1:8080",
                   "--https-port", "8443", "--listening", "http://lb:9000/?token=t0ken-value",
                   "--print-config", cwd=tmp_path,
                   env={"SERVICEROUTER_STATUS_TOKEN": "status-t0ken",
                        "DCOS_SERVICE_ACCOUNT_CREDENTIAL": '{"uid": "u", "private_key": "k3y"}'})
    assert proc.returncode == 0, proc.stderr
    for secret in ("s3cret-pass", "hunter22", "t0ken-value", "status-t0ken", "k3y"):
        assert secret not in proc.stdout
    shown = yaml.safe_load(proc.stdout)
    assert shown["group"] == ["a"] and shown["http-port"] == 8080  # from the file
    assert shown["https-port"] == 8443  # from a flag
    assert shown["stats-port"] == 9090 and shown["dry"] is False  # defaults
    assert shown["auth-credentials"] == "<redacted>"
    assert shown["status-token"] == "<redacted>"
    assert "print-config" not in shown and "config" not in shown


def test_print_config_reads_back_as_a_config_file(tmp_path: Path) -> None:
    first = run_cli("-m", "http://m1:8080", "--group", "x", "--sse", "--min-wait", "0.5",
                    "--print-config", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "printed.yaml"
    path.write_text(first.stdout)
    second = run_cli("--config", str(path), "--print-config", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
