"""-m as haproxy-marathon-bridge users write it: HOST:PORT without a scheme, comma lists.

The bridge took ``HOST:PORT`` arguments and Marathon's docs show ``-m
leader.mesos:8080``; configuration management often joins the hosts with commas.
Everything else about -m (file:, credentials, https) is covered by
tests/source/test_marathon_security.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.cli import flags
from servicerouter.cli import main as cli
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.source.marathon import MarathonClient
from servicerouter.source.marathon_urls import split_marathon_hosts


@pytest.fixture
def refused_address() -> Iterator[str]:
    """HOST:PORT where nothing listens, held bound (not listening) so no one else can."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("argv, hosts", [
    (["-m", "leader.mesos:8080"], ["http://leader.mesos:8080"]),
    (["-m", "a:8080,b:8080"], ["http://a:8080", "http://b:8080"]),
    (["-m", "a:8080", "b:8080"], ["http://a:8080", "http://b:8080"]),
    (["-m", "a:8080", "-m", "https://b:8443,c:8080"],
     ["http://a:8080", "https://b:8443", "http://c:8080"]),
    (["-m", "a:8080,"], ["http://a:8080"]),  # a trailing comma adds no host
    (["-m", "[::1]:8080/marathon"], ["http://[::1]:8080/marathon"]),
    (["--marathon=10.0.0.1:8080,10.0.0.2:8080"], ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]),
])
def test_host_port_means_http_and_commas_separate_hosts(argv: list[str],
                                                         hosts: list[str]) -> None:
    args = flags.parse_args(argv)
    assert MarathonClient(args.marathon).hosts == hosts


def test_a_comma_in_a_password_keeps_the_url_whole() -> None:
    url = "http://alice:pa,ss@h:8080"
    assert split_marathon_hosts([url]) == [url]
    client = MarathonClient(flags.parse_args(["-m", url]).marathon)
    assert client.hosts == ["http://h:8080"] and client.settings.auth == ("alice", "pa,ss")


def test_credentials_without_a_scheme_move_into_the_session() -> None:
    client = MarathonClient(flags.parse_args(["-m", "alice:S3cret@h:8080"]).marathon)
    assert client.hosts == ["http://h:8080"] and client.settings.auth == ("alice", "S3cret")


@pytest.mark.parametrize("value, message", [
    ("leader.mesos", "expected HOST:PORT"),  # no port: port 80 would be a silent guess
    ("a:8080,leader.mesos", "expected HOST:PORT"),
    ("a:8080,b:x", "bad host or port"),
    ("alice:S3cret@leader.mesos", "expected HOST:PORT"),
])
def test_unusable_host_lists_exit_2_naming_the_piece(value: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        flags.parse_args(["-m", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "S3cret" not in err


def test_a_file_snapshot_in_a_comma_list_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        flags.parse_args(["-m", "file:/tmp/apps.json,a:8080"])
    assert "cannot be mixed" in capsys.readouterr().err


def test_a_comma_list_fails_over_to_the_host_that_answers(
        tmp_path: Path, refused_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = {"id": "/web", "ports": [10080], "labels": {},
           "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]}
    with MarathonEmulator([app]) as marathon:
        live = marathon.url.removeprefix("http://")
        code = cli.main(["-m", f"{refused_address},{live}", "--dry", "--syslog-socket",
                         "/dev/null", "--haproxy-config", str(tmp_path / "haproxy.cfg"),
                         "--state-dir", str(tmp_path / "state")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "server 127_0_0_1_31000 127.0.0.1:31000" in out
    assert refused_address in err  # the dead host was tried first, and said so
