"""marathon-lb's command line: every flag works with its meaning or is refused in one line.

The flag list below is marathon-lb's argparse (marathon_lb.py's main parser plus
common.py's logging and Marathon-auth flags, read from its source), kept here so a
registry entry dropped by mistake is caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servicerouter.cli import docs, flags
from servicerouter.cli.marathon_lb_flags import MARATHON_LB_FLAGS, flags_table
from tests.paths import REPO

# marathon-lb's option strings (marathon_lb.py and common.py; -l/-u: up to 1.4).
MARATHON_LB_OPTIONS = (
    "--longhelp", "--marathon", "-m", "--haproxy-config", "--group", "--command", "-c",
    "--max-reload-retries", "--reload-interval", "--strict-mode", "--sse", "-s",
    "--archive-versions", "--health-check", "-H", "--lru-cache-capacity", "--haproxy-map",
    "--dont-bind-http-https", "--group-https-by-vhost", "--ssl-certs", "--skip-validation",
    "--skip-config-cleanup", "--dry", "-d", "--min-serv-port-ip-per-task",
    "--max-serv-port-ip-per-task", "--max-backoff", "--syslog-socket", "--log-format",
    "--log-level", "--marathon-auth-credential-file", "--auth-credentials",
    "--dcos-auth-credentials", "--marathon-ca-cert",
    "--listening", "-l", "--callback-url", "-u",  # marathon-lb <= 1.4
)
REFUSED = [f for f in MARATHON_LB_FLAGS if f.refused]


def test_registry_covers_every_marathon_lb_flag_once() -> None:
    registered = [o for f in MARATHON_LB_FLAGS for o in f.options]
    assert sorted(registered) == sorted(MARATHON_LB_OPTIONS)


def test_every_flag_is_known_to_the_parser() -> None:
    """Accepted ones are real flags (never an unknown-flag error); refused ones too."""
    known = flags.build_parser()._option_string_actions
    missing = [o for o in MARATHON_LB_OPTIONS if o not in known]
    assert missing == []


def test_a_marathon_lb_command_line_parses_with_its_meaning() -> None:
    args = flags.parse_args([
        "-m", "http://m1:8080", "http://m2:8080", "--group", "external", "-s", "-d", "-H",
        "--strict-mode", "--max-backoff", "120", "--log-level", "DEBUG",
        "--ssl-certs", "/etc/ssl/a.pem,/etc/ssl/b.pem", "--skip-validation",
        "--min-serv-port-ip-per-task", "10050", "--max-serv-port-ip-per-task", "10100",
        "--haproxy-config", "/tmp/h.cfg", "-c", "true", "--syslog-socket", "/dev/null",
        "--log-format", "%(message)s", "--marathon-ca-cert", "/etc/hostname",
    ])
    assert args.marathon == ["http://m1:8080", "http://m2:8080"]
    assert args.group == ["external"]
    assert args.sse and args.dry and args.health_check and args.strict_mode
    assert args.backoff_max == 120 and args.log_level == "debug"
    assert args.ssl_certs == "/etc/ssl/a.pem,/etc/ssl/b.pem" and args.skip_validation
    assert args.command == "true" and args.haproxy_config == "/tmp/h.cfg"


@pytest.mark.parametrize("flag", REFUSED, ids=lambda f: f.options[0])
def test_refused_flags_exit_2_with_one_line(flag: object, tmp_path: Path) -> None:
    option = flag.options[0]  # type: ignore[attr-defined]
    argv = [option, "3"] if flag.takes_value else [option]  # type: ignore[attr-defined]
    proc = subprocess.run([sys.executable, "-m", "servicerouter", "-m", "http://127.0.0.1:1",
                           *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"servicerouter: error: {option} (a marathon-lb flag) "
                               "is not supported: ")
    assert proc.stdout == ""


def test_a_refused_value_flag_without_its_value_still_names_the_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        flags.parse_args(["-m", "http://x:1", "--lru-cache-capacity"])
    assert exit_.value.code == 2
    assert "--lru-cache-capacity (a marathon-lb flag) is not supported" in \
        capsys.readouterr().err


def test_refused_flags_in_the_config_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("marathon: http://m1:8080\nmax_reload_retries: 3\n")
    with pytest.raises(SystemExit) as exit_:
        flags.parse_args(["--config", str(path)])
    assert exit_.value.code == 2
    assert "--max-reload-retries (a marathon-lb flag) is not supported" in \
        capsys.readouterr().err
    path.write_text("marathon: http://m1:8080\nmax-backoff: 7\nsse: true\n")
    args = flags.parse_args(["--config", str(path)])
    assert args.backoff_max == 7 and args.sse


def test_refused_flags_stay_out_of_help() -> None:
    text = flags.build_parser().format_help()
    assert not any(f.options[0] in text for f in REFUSED)


def test_table_reads_the_parser() -> None:
    table = flags_table(flags.build_parser())
    assert "| `--sse`, `-s` | accepted |" in table
    assert "| `--skip-config-cleanup` | refused (exit 2) |" in table
    bare = flags.argparse.ArgumentParser()  # a parser without the flags: nothing accepted
    assert "| accepted |" not in flags_table(bare)


def test_readme_table_is_current() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "marathon-lb-flags" not in docs.stale_sections(readme)


def test_haproxy_map_is_accepted_with_its_meaning() -> None:
    assert flags.parse_args(["-m", "http://m:8080", "--haproxy-map"]).haproxy_map
    assert not flags.parse_args(["-m", "http://m:8080"]).haproxy_map
