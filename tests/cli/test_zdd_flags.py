"""``servicerouter zdd`` takes marathon-lb's ``zdd.py`` flags (servicerouter.cli.zdd_flags).

Scripts written for ``zdd.py`` keep working: ``--json/-j``, ``--resume/-r``,
``--linear-increase``, Marathon's basic auth and CA flags, ``--log-format`` and
``--log-level`` in any case, ``--longhelp``; ``--marathon-lb`` (HAProxy's stats page,
which servicerouter zdd does not read) exits 2 saying what to pass instead.  Each run
is a real ``python -m servicerouter zdd`` process against the Marathon emulator (the
whole deployment, with HAProxy, is in tests/e2e/test_zdd_flags.py).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.cli.zdd import Cluster
from servicerouter.cli.zdd_plan import next_scale
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.source.marathon import ClientSettings
from tests.harness import self_signed_cert
from tests.paths import REPO

NOWHERE = "http://127.0.0.1:9"  # --status: a dry run never asks it


def write_app(tmp_path: Path) -> Path:
    path = tmp_path / "web.json"
    path.write_text(json.dumps({
        "id": "/web", "instances": 4, "portDefinitions": [{"port": 10000}],
        "labels": {"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
                   "HAPROXY_0_VHOST": "web.test"}}))
    return path


def zdd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicerouter", "zdd", *argv],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.fixture
def emulator() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emu:
        yield emu


def test_linear_increase_grows_by_n_up_to_the_target_without_the_last_jump() -> None:
    labels = {"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "6", "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "0"}

    def grown(instances: int, old: int, linear: int) -> int | None:
        return next_scale({"instances": instances, "labels": labels}, {"instances": old},
                          False, linear)

    assert [grown(n, 6 - n, 1) for n in (1, 2, 3, 4, 5, 6)] == [2, 3, 4, 5, 6, None]
    assert [grown(n, 6 - n, 4) for n in (1, 5)] == [5, 6]  # never past the target
    # by half (zdd.py's default) jumps to the target once as large as the old colour
    assert grown(3, 3, 0) == 6 and grown(3, 3, 1) == 4
    canary = {"instances": 1, "labels": {**labels, "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "2"}}
    assert next_scale(canary, {"instances": 5}, True, 5) == 2  # held at the canary's count


def test_json_flag_is_the_app_json_and_resume_without_a_deployment_deploys(
        tmp_path: Path, emulator: MarathonEmulator) -> None:
    app = write_app(tmp_path)
    for given in (["--json", str(app)], ["-j", str(app)], [str(app)]):
        done = zdd(*given, "-m", emulator.url, "-l", NOWHERE, "--dry-run")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["id"] == "/web-blue"
    resumed = zdd("-j", str(app), "-m", emulator.url, "-l", NOWHERE, "--dry-run", "-r")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["id"] == "/web-blue"
    assert "--resume: no deployment of group web in progress; deploying" in resumed.stderr


@pytest.mark.parametrize(("argv", "said"), [
    (["APP", "--json", "APP"], "give the app JSON once"),
    ([], "the app JSON is required"),
    (["APP", "--marathon-lb", "http://marathon-lb.marathon.mesos:9090"],
     "--marathon-lb: servicerouter zdd reads servicerouter's status API"),
    (["APP", "--linear-increase", "-1"], "--linear-increase is a number of instances"),
    (["APP", "--auth-credentials", "nocolon"], "--auth-credentials: expected USER:PASSWORD"),
])
def test_unusable_flags_exit_2_with_one_line(tmp_path: Path, argv: list[str], said: str) -> None:
    app = str(write_app(tmp_path))
    done = zdd(*[app if word == "APP" else word for word in argv],
               "-m", "http://127.0.0.1:9", "-l", NOWHERE)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr


def test_longhelp_says_how_a_deployment_goes_and_needs_no_other_flag() -> None:
    done = zdd("--longhelp")
    assert done.returncode == 0, done.stderr
    assert "--resume" in done.stdout and "--linear-increase" in done.stdout
    assert "rolls\n   back" in done.stdout


def test_marathon_basic_auth_from_the_flag_or_the_file(tmp_path: Path) -> None:
    app = str(write_app(tmp_path))
    secret = tmp_path / "marathon.cred"
    secret.write_text("ops:s3cret\n")
    with MarathonEmulator(credentials=("ops", "s3cret")) as emu:
        refused = zdd(app, "-m", emu.url, "-l", NOWHERE, "--dry-run")
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        for flags in (["--auth-credentials", "ops:s3cret"],
                      ["--marathon-auth-credential-file", str(secret)]):
            done = zdd(app, "-m", emu.url, "-l", NOWHERE, "--dry-run", *flags)
            assert done.returncode == 0, done.stderr
            assert "s3cret" not in done.stderr + done.stdout


def test_marathon_ca_cert_verifies_an_https_marathon(tmp_path: Path) -> None:
    app = str(write_app(tmp_path))
    pem = self_signed_cert(tmp_path / "marathon.pem", ["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    with MarathonEmulator(ssl_context=context) as emu:
        unverified = zdd(app, "-m", emu.url, "-l", NOWHERE, "--dry-run")
        assert unverified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
        done = zdd(app, "-m", emu.url, "-l", NOWHERE, "--dry-run", "--marathon-ca-cert", pem)
        assert done.returncode == 0, done.stderr


def test_marathons_credentials_never_go_to_the_status_api() -> None:
    cluster = Cluster("http://marathon:8080", [NOWHERE], token=None,
                      settings=ClientSettings(auth=("ops", "s3cret"), verify="/ca.pem"))
    assert cluster.marathon_http.auth == ("ops", "s3cret")
    assert cluster.marathon_http.verify == "/ca.pem"
    assert cluster.http.auth is None and cluster.http.verify is True


def test_log_format_and_a_log_level_in_zdd_pys_capitals(
        tmp_path: Path, emulator: MarathonEmulator) -> None:
    app = str(write_app(tmp_path))
    done = zdd(app, "-m", emulator.url, "-l", NOWHERE, "--dry-run", "-r",
               "--log-level", "INFO", "--log-format", "ZDD|%(levelname)s|%(message)s")
    assert done.returncode == 0, done.stderr
    assert "ZDD|INFO|--resume: no deployment" in done.stderr
    quiet = zdd(app, "-m", emulator.url, "-l", NOWHERE, "--dry-run", "-r",
                "--log-level", "WARNING")
    assert quiet.returncode == 0 and "--resume" not in quiet.stderr


# Every flag of marathon-lb's zdd.py (its parser and the shared logging and Marathon auth
# flags it adds), as its users type them.
ZDD_PY_FLAGS = ("--longhelp", "--marathon", "-m", "--marathon-lb", "-l", "--json", "-j",
                "--dry-run", "-d", "--force", "-f", "--step-delay", "-s",
                "--initial-instances", "-i", "--linear-increase", "--resume", "-r",
                "--max-wait", "-w", "--new-instances", "-n", "--complete-cur", "-c",
                "--complete-prev", "-p", "--pre-kill-hook", "--syslog-socket", "--log-format",
                "--log-level", "--marathon-auth-credential-file", "--auth-credentials",
                "--dcos-auth-credentials", "--marathon-ca-cert")


def test_every_zdd_py_flag_is_known_to_the_parser() -> None:
    from servicerouter.cli.zdd_flags import build_parser

    known = {option for action in build_parser()._actions for option in action.option_strings}
    assert [flag for flag in ZDD_PY_FLAGS if flag not in known] == []


def test_a_status_name_for_several_edge_nodes_checks_each_of_them() -> None:
    """zdd.py's -l named every marathon-lb behind one DNS name; so does --status here."""
    from servicerouter.cli.zdd_plan import every_node

    dns = {"edges.test": ["10.0.0.2", "10.0.0.1", "10.0.0.2"], "one.test": ["10.0.0.9"]}
    given = ["http://edges.test:9091", "http://one.test:9091/", "https://edges.test:9091",
             "http://10.0.0.5:9091", "http://gone.test", "http://10.0.0.1:9091"]
    assert every_node(given, lambda host: dns.get(host, [])) == [
        "http://10.0.0.1:9091", "http://10.0.0.2:9091",  # each address, once
        "http://one.test:9091/", "https://edges.test:9091", "http://10.0.0.5:9091",
        "http://gone.test"]
