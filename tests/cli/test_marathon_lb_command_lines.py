"""marathon-lb's published command lines, run as they are against the emulator and a real HAProxy.

The command lines come from marathon-lb's README (``--group external --strict-mode
--health-check``, ``--auth-credentials=admin:password``, ``--ssl-certs a,b``,
``--skip-validation``, ``--haproxy-map``), its ``run`` script and Dockerfile (``sse
--health-check --group external``: ``--sse``), Longhelp.md's flag list, DC/OS's
service-account setup (``--dcos-auth-credentials`` / ``$DCOS_SERVICE_ACCOUNT_CREDENTIAL``)
and marathon-lb 1.4's callback form (``--listening``, ``--callback-url``).  Each either
works with marathon-lb's meaning (checked in the config and through HAProxy) or exits 2
with exactly one line saying what to change; never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from servicerouter.emulator.dcos_login import LOGIN_PATH
from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import free_port, http_get, self_signed_cert, wait_for_port, wait_until
from tests.paths import REPO
from tests.source.test_dcos_auth import UID, _private_pem, _public_pem, _rsa_key

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    """One servicerouter run: where it wrote, what it said, and the ports it was given."""

    dir: Path
    proc: subprocess.CompletedProcess[str]
    http: int
    https: int
    ports: dict[str, int]

    @property
    def cfg(self) -> Path:
        return self.dir / "haproxy.cfg"


def _apps(backends: dict[str, object], ports: dict[str, int]) -> list[dict]:
    def task(name: str) -> dict:
        return {"id": f"{name}.1", "host": "127.0.0.1", "state": "TASK_RUNNING",
                "ports": [backends[name].port]}  # type: ignore[attr-defined]
    return [
        {"id": "/web", "portDefinitions": [{"port": ports["web"]}], "tasks": [task("web")],
         "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_ENABLED": "true",
                    "HAPROXY_0_MODE": "http", "HAPROXY_0_VHOST": "web.test"}},
        {"id": "/plain", "portDefinitions": [{"port": ports["plain"]}], "tasks": [task("plain")],
         "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http"}},  # not ENABLED
        {"id": "/internal", "portDefinitions": [{"port": ports["internal"]}],
         "tasks": [task("internal")], "labels": {"HAPROXY_GROUP": "internal"}},
        {"id": "/ipt", "ports": [], "portDefinitions": [], "labels": {"HAPROXY_GROUP": "external"},
         "ipAddress": {"networkName": "calico", "discovery": {"ports": [
             {"number": backends["ipt"].port, "name": "http", "protocol": "tcp"}]}},  # type: ignore[attr-defined]
         "tasks": [{"id": "ipt.1", "host": "agent.invalid", "ports": [], "state": "TASK_RUNNING",
                    "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]}]},
    ]


def _run(tmp_path: Path, marathon: MarathonEmulator, argv: list[str], live: bool = False,
         env: dict[str, str] | None = None, ports: dict[str, int] | None = None) -> Run:
    """servicerouter with a marathon-lb command line (URL/DIR/PORT filled in) and this
    test's ports; a live one is stopped by PID once its config routes /web."""
    http, https = free_port(), free_port()
    ipt = str(free_port())
    subst = {"URL": marathon.url, "DIR": str(tmp_path), "IPT": ipt}
    # JSON values (a service account's key) are passed as they are: their base64 can hold
    # "DIR" or "URL" by chance (a corrupted key, about one run in a hundred).
    args = [a if a.startswith("{") else
            subst.get(a, a.replace("DIR", str(tmp_path)).replace("URL", marathon.url))
            for a in argv]
    edge = ["--http-port", str(http), "--https-port", str(https), "--appid-port",
            str(free_port()), "--stats-port", str(free_port()), "--bind-addr", "127.0.0.1",
            "--state-dir", str(tmp_path / "state"), "--certs-dir", str(tmp_path / "certs")]
    if "--haproxy-config" not in args:
        edge += ["--haproxy-config", str(tmp_path / "haproxy.cfg")]
    if "--syslog-socket" not in args:
        edge += ["--syslog-socket", "/dev/null"]
    if not any(a in args for a in ("--min-serv-port-ip-per-task", "-d", "--longhelp")):
        edge += ["--min-serv-port-ip-per-task", ipt, "--max-serv-port-ip-per-task", ipt]
    command = [sys.executable, "-m", "servicerouter", *args, *edge]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    if not live:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=90,
                              cwd=tmp_path, env=full_env)
    else:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=tmp_path, env=full_env)
        try:
            wait_until(lambda: (tmp_path / "haproxy.cfg").exists()
                       and "backend web_" in (tmp_path / "haproxy.cfg").read_text(),
                       timeout=60)
        finally:
            child.send_signal(signal.SIGTERM)
            out, err = child.communicate(timeout=30)
        proc = subprocess.CompletedProcess(command, child.returncode, out, err)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Run(tmp_path, proc, http, https, {**(ports or {}), "ipt": int(ipt)})


def _routes_web(run: Run, haproxy_factory) -> None:
    """HAProxy loads the written config and a request for web.test reaches /web."""
    assert run.proc.returncode == 0, run.proc.stderr
    haproxy_factory(str(run.cfg))
    wait_for_port(run.http)
    reply = http_get(f"http://127.0.0.1:{run.http}/", host_header="web.test")
    assert (reply.status_code, reply.text.strip()) == (200, "web")


def _strict(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    config = run.cfg.read_text()
    assert "backend web_" in config and "backend plain_" not in config  # HAPROXY_0_ENABLED
    assert "backend internal_" not in config  # --group external


def _not_strict(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    assert "backend plain_" in run.cfg.read_text()


def _maps(run: Run, haproxy_factory) -> None:
    _strict(run, haproxy_factory)
    assert "web.test web_" in (run.dir / "domain2backend.map").read_text()


def _unbound(run: Run, haproxy_factory) -> None:
    assert run.proc.returncode == 0, run.proc.stderr
    assert f":{run.http}" not in run.cfg.read_text()  # no shared :80 frontend
    haproxy_factory(str(run.cfg))
    port = run.ports["web"]
    wait_for_port(port)
    assert http_get(f"http://127.0.0.1:{port}/").text.strip() == "web"


def _reload_command(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    assert (run.dir / "reloaded").exists()


def _ssl_certs(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    wait_for_port(run.https)
    reply = http_get(f"https://127.0.0.1:{run.https}/", host_header="web.test", verify=False)
    assert reply.text.strip() == "web"
    # Both certificates are served by the shared HTTPS frontend, each for its names.
    lists = "".join(p.read_text() for p in (run.dir / "state").rglob("*") if p.is_file()
                    and not p.name.endswith(".pem"))
    assert " a.test" in lists and " b.test" in lists, lists


def _ip_per_task(run: Run, haproxy_factory) -> None:
    _strict(run, haproxy_factory) if "--strict-mode" in run.proc.args else _routes_web(
        run, haproxy_factory)
    port = run.ports["ipt"]
    assert f"127.0.0.1:{port}" in run.cfg.read_text()
    wait_for_port(port)
    assert http_get(f"http://127.0.0.1:{port}/").text.strip() == "ipt"


def _ip_per_task_off(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    assert "backend ipt_" not in run.cfg.read_text()
    assert "auto-assignment is off" in run.proc.stderr


def _dry(run: Run, haproxy_factory) -> None:
    assert run.proc.returncode == 0 and "backend web_" in run.proc.stdout
    assert not run.cfg.exists()


def _longhelp(run: Run, haproxy_factory) -> None:
    assert run.proc.returncode == 0 and "HAPROXY_{n}_VHOST" in run.proc.stdout


def _log_format(run: Run, haproxy_factory) -> None:
    _routes_web(run, haproxy_factory)
    lines = run.proc.stderr.splitlines()
    assert lines and all(" servicerouter" in line and " INFO " not in line for line in lines)
    assert any("fragment" in line for line in lines)  # DEBUG lines shown


MLB = ["--marathon", "URL", "--group", "external"]
WORKS: dict[str, tuple[list[str], Callable[[Run, object], None], bool]] = {
    "readme-strict-health": (MLB + ["--strict-mode", "--health-check", "--command", "true"],
                             _strict, False),
    "readme-auth-credentials": (["--marathon", "URL", "--auth-credentials=admin:password",
                                 "--group", "external", "--command", "true"], _not_strict, False),
    "auth-credential-file": (MLB + ["--marathon-auth-credential-file", "DIR/cred",
                                    "--command", "true"], _not_strict, False),
    "readme-ssl-certs": (MLB + ["--ssl-certs", "DIR/a.pem,DIR/b.pem", "--health-check",
                                "--strict-mode", "--command", "true"], _ssl_certs, False),
    "readme-skip-validation": (MLB + ["--skip-validation", "--command", "true"],
                               _not_strict, False),
    "readme-haproxy-map": (MLB + ["--strict-mode", "--haproxy-map", "--command", "true"],
                           _maps, False),
    "run-script-sse": (["--sse", "--health-check", "--group", "external", "--marathon", "URL",
                        "--command", "true"], _not_strict, True),
    "short-s-H": (["-m", "URL", "-s", "-H", "--group", "external", "-c", "true"],
                  _not_strict, True),
    "listening-callback-url": (MLB + ["--listening", "http://127.0.0.1:LPORT",
                                      "--callback-url", "http://127.0.0.1:LPORT",
                                      "--command", "true"], _not_strict, True),
    "dont-bind-http-https": (MLB + ["--dont-bind-http-https", "--command", "true"],
                             _unbound, False),
    "command": (MLB + ["--command", "touch DIR/reloaded"], _reload_command, False),
    "ip-per-task-range": (MLB + ["--min-serv-port-ip-per-task", "IPT",
                                 "--max-serv-port-ip-per-task", "IPT", "--command", "true"],
                          _ip_per_task, False),
    "ip-per-task-off": (MLB + ["--min-serv-port-ip-per-task", "0",
                               "--max-serv-port-ip-per-task", "0", "--command", "true"],
                        _ip_per_task_off, False),
    "logging": (MLB + ["--max-backoff", "300", "--log-level", "DEBUG", "--log-format",
                       "%(asctime)-15s %(name)s: %(message)s", "--syslog-socket", "/dev/null",
                       "--command", "true"], _log_format, False),
    "two-marathons": (["--marathon", "URL", "http://127.0.0.1:9", "--group", "external",
                       "--command", "true"], _not_strict, False),
    "dry": (MLB + ["-d"], _dry, False),
    "group-star": (["-m", "URL", "--group", "*", "--command", "true"], _not_strict, False),
    "longhelp": (["--longhelp"], _longhelp, False),
}


@pytest.mark.parametrize("case", list(WORKS))
def test_marathon_lb_command_line_works(case: str, tmp_path: Path, backend_factory,
                                        haproxy_factory) -> None:
    argv, check, live = WORKS[case]
    backends = {name: backend_factory(name) for name in ("web", "plain", "internal", "ipt")}
    ports = {name: free_port() for name in ("web", "plain", "internal")}
    credentials = ("admin", "password") if "auth" in case else None
    (tmp_path / "cred").write_text("admin:password\n")
    for name in ("a", "b"):
        self_signed_cert(tmp_path / f"{name}.pem", (f"{name}.test",))
    lport = str(free_port())
    argv = [a.replace("LPORT", lport) for a in argv]
    with MarathonEmulator(_apps(backends, ports), credentials=credentials) as marathon:
        run = _run(tmp_path, marathon, argv, live=live, ports=ports)
    check(run, haproxy_factory)


def test_dcos_service_account_flag_and_env(tmp_path: Path, backend_factory,
                                           haproxy_factory) -> None:
    """DC/OS: --dcos-auth-credentials JSON, or $DCOS_SERVICE_ACCOUNT_CREDENTIAL (marathon-lb's
    default for it), logs in with the service account and routes."""
    key = _rsa_key()
    backends = {name: backend_factory(name) for name in ("web", "plain", "internal", "ipt")}
    ports = {name: free_port() for name in ("web", "plain", "internal")}
    with MarathonEmulator(_apps(backends, ports), service_account=(UID, _public_pem(key))) as m:
        account = json.dumps({"uid": UID, "private_key": _private_pem(key), "scheme": "RS256",
                              "login_endpoint": m.url + LOGIN_PATH})
        (tmp_path / "flag").mkdir()
        (tmp_path / "env").mkdir()
        by_flag = _run(tmp_path / "flag", m, MLB + ["--dcos-auth-credentials", account,
                                                     "--command", "true"], ports=ports)
        by_env = _run(tmp_path / "env", m, MLB + ["--command", "true"], ports=ports,
                      env={"DCOS_SERVICE_ACCOUNT_CREDENTIAL": account})
    _routes_web(by_flag, haproxy_factory)
    assert by_env.proc.returncode == 0, by_env.proc.stderr
    assert "backend web_" in by_env.cfg.read_text()


# Refused or wrong: (argv, what the one line must say).  Startup errors found after
# logging starts are one ERROR line after the start-up INFO lines.
FAILS: dict[str, tuple[list[str], str]] = {
    "lru-cache-capacity": (MLB + ["--lru-cache-capacity", "1000"],
                           "--lru-cache-capacity (a marathon-lb flag) is not supported"),
    "max-reload-retries": (MLB + ["--max-reload-retries", "10"], "--max-reload-retries"),
    "reload-interval": (MLB + ["--reload-interval", "10"], "--reload-interval"),
    "archive-versions": (MLB + ["--archive-versions", "5"], "--archive-versions"),
    "group-https-by-vhost": (MLB + ["--group-https-by-vhost"], "--group-https-by-vhost"),
    "skip-config-cleanup": (MLB + ["--skip-config-cleanup"], "--skip-config-cleanup"),
    "dash-sse": (MLB + ["--strict-mode", "--haproxy-map", "-sse"], "write --sse"),
    "no-marathon": (["--group", "external"], "give -m http://master.mesos:8080"),
    "callback-url-alone": (MLB + ["-u", "http://127.0.0.1:1"], "--callback-url needs --listening"),
    "callback-url-other-port": (MLB + ["-l", "http://0.0.0.0:1", "-u", "http://lb1:2"],
                                "give --listening URL-Marathon-calls --listening-addr ADDR"),
    "ip-per-task-one-zero": (MLB + ["--min-serv-port-ip-per-task", "0"],
                             "either give both --min-serv-port-ip-per-task"),
    "ip-per-task-min-over-max": (MLB + ["--min-serv-port-ip-per-task", "10200"],
                                 "higher value than --max-serv-port-ip-per-task"),
    "sse-and-listening": (MLB + ["--sse", "--listening", "http://127.0.0.1:1"],
                          "cannot use --listening and --sse at the same time"),
    "unknown-flag": (MLB + ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    "missing-credential-file": (MLB + ["--marathon-auth-credential-file", "DIR/none"],
                                "cannot read the Marathon credential file"),
    "bad-dcos-credentials": (MLB + ["--dcos-auth-credentials", '{"uid": "x"}'],
                             "--dcos-auth-credentials: missing or empty private_key"),
    "missing-ca-cert": (MLB + ["--marathon-ca-cert", "DIR/none.pem"],
                        "--marathon-ca-cert"),
}


@pytest.mark.parametrize("case", list(FAILS))
def test_marathon_lb_command_line_fails_in_one_line(case: str, tmp_path: Path) -> None:
    argv, message = FAILS[case]
    with MarathonEmulator([]) as marathon:
        run = _run(tmp_path, marathon, [*argv, "--command", "true"])
    assert run.proc.returncode == 2 and run.proc.stdout == ""
    errors = [line for line in run.proc.stderr.splitlines()
              if " INFO " not in line and line.strip()]
    assert len(errors) == 1, run.proc.stderr
    assert message in errors[0]
    assert not run.cfg.exists()


def test_framework_name_of_marathon_lbs_environment_is_named(tmp_path: Path) -> None:
    """marathon-lb leaves out the app $FRAMEWORK_NAME names (its own); servicerouter
    does not, and says so once instead of ignoring the variable."""
    with MarathonEmulator([]) as marathon:
        run = _run(tmp_path, marathon, MLB + ["--command", "true"],
                   env={"FRAMEWORK_NAME": "marathon-lb"})
    assert run.proc.returncode == 0, run.proc.stderr
    notes = [line for line in run.proc.stderr.splitlines() if "FRAMEWORK_NAME" in line]
    assert len(notes) == 1 and "WARNING" in notes[0] and "/marathon-lb" in notes[0]
    with MarathonEmulator([]) as marathon:
        (tmp_path / "plain").mkdir()
        quiet = _run(tmp_path / "plain", marathon, MLB + ["--command", "true"],
                     env={"FRAMEWORK_NAME": ""})
    assert "FRAMEWORK_NAME" not in quiet.proc.stderr
