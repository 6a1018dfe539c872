"""--dcos-auth-credentials: DC/OS service-account login against the emulator.

The emulator holds the account's public key and really verifies the JWT the
client signs; its tokens can be expired to exercise the re-login on 401. A
wrong key, a malformed account or an unreachable login endpoint each give one
line naming the problem, never the key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from servicerouter.cli import flags
from servicerouter.cli import main as cli
from servicerouter.emulator.dcos_login import LOGIN_PATH
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.source.dcos_auth import (
    REFRESH_MARGIN,
    TOKEN_LIFETIME,
    DcosAuth,
    parse_dcos_credentials,
    sign_login_jwt,
)
from servicerouter.source.events import EventStream
from servicerouter.source.marathon import ClientSettings, MarathonClient, MarathonError
from tests.harness import wait_until

UID = "marathon-lb-svc"
APP = {"id": "/web", "ports": [10000], "instances": 1}


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_pem(key: object) -> str:
    return key.private_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture
def dcos_marathon(account_key: rsa.RSAPrivateKey) -> Iterator[MarathonEmulator]:
    emulator = MarathonEmulator([dict(APP)], service_account=(UID, _public_pem(account_key)))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _account(emulator: MarathonEmulator, key: object, **extra: str) -> str:
    return json.dumps({"uid": UID, "private_key": _private_pem(key), "scheme": "RS256",
                       "login_endpoint": emulator.url + LOGIN_PATH, **extra})


def _client(emulator: MarathonEmulator, auth: DcosAuth) -> MarathonClient:
    return MarathonClient([emulator.url], ClientSettings(connect_timeout=5, read_timeout=10,
                                                         token_auth=auth))


def test_marathon_refuses_requests_without_a_token(dcos_marathon: MarathonEmulator) -> None:
    answer = requests.get(dcos_marathon.url + "/v2/apps", timeout=10)
    assert answer.status_code == 401
    client = MarathonClient([dcos_marathon.url], ClientSettings(connect_timeout=5))
    with pytest.raises(MarathonError, match="HTTP 401"):
        client.fetch_apps_body()
    client.close()


def test_login_then_token_on_every_request(dcos_marathon: MarathonEmulator,
                                           account_key: rsa.RSAPrivateKey) -> None:
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, account_key)))
    client = _client(dcos_marathon, auth)
    try:
        assert b'"/web"' in client.fetch_apps_body()
        assert client.fetch_app("/web")["id"] == "/web"
    finally:
        client.close()
    assert auth.logins == 1 and dcos_marathon.dcos_login is not None
    assert dcos_marathon.dcos_login.logins == 1


def test_expired_token_401_logs_in_again_and_retries(dcos_marathon: MarathonEmulator,
                                                     account_key: rsa.RSAPrivateKey) -> None:
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, account_key)))
    client = _client(dcos_marathon, auth)
    try:
        client.fetch_apps_body()
        assert dcos_marathon.dcos_login is not None
        assert dcos_marathon.dcos_login.expire_tokens() == 1
        assert b'"/web"' in client.fetch_apps_body()  # no error: 401, login, resend
    finally:
        client.close()
    assert auth.logins == 2
    apps_requests = [r for r in dcos_marathon.request_log if r[1].startswith("/v2/apps")]
    assert len(apps_requests) == 3  # first, refused, resent


def test_token_is_refreshed_before_it_expires(dcos_marathon: MarathonEmulator,
                                              account_key: rsa.RSAPrivateKey) -> None:
    now = [time.time()]
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, account_key)),
                    clock=lambda: now[0])
    first = auth.token()
    now[0] += TOKEN_LIFETIME - REFRESH_MARGIN - 5
    assert auth.token() == first and auth.logins == 1
    now[0] += 10  # inside the margin: a new login before any 401
    assert auth.token() != first and auth.logins == 2


def test_event_stream_sends_the_token(dcos_marathon: MarathonEmulator,
                                      account_key: rsa.RSAPrivateKey) -> None:
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, account_key)))
    events: list[dict[str, object]] = []
    connected: list[str] = []
    stream = EventStream([dcos_marathon.url], events.append, connected.append,
                         settings=ClientSettings(read_timeout=10, token_auth=auth))
    stream.start()
    try:
        wait_until(lambda: bool(connected) and dcos_marathon.sse_clients == 1)
        dcos_marathon.put_app({"id": "/other", "ports": [10001], "instances": 0})
        wait_until(lambda: any(e.get("eventType") == "api_post_event" for e in events))
    finally:
        stream.stop()


def test_event_stream_reconnects_with_a_new_token(account_key: rsa.RSAPrivateKey) -> None:
    """A reconnect after the token expired: 401, login, the stream is back."""
    from servicerouter.source.events import Backoff

    emulator = MarathonEmulator([dict(APP)], service_account=(UID, _public_pem(account_key)))
    emulator.start()
    auth = DcosAuth(parse_dcos_credentials(_account(emulator, account_key)))
    connected: list[str] = []
    stream = EventStream([emulator.url], lambda _event: None, connected.append,
                         settings=ClientSettings(read_timeout=10, token_auth=auth),
                         backoff=Backoff(base=0.05, cap=0.2))
    stream.start()
    try:
        wait_until(lambda: len(connected) == 1)
        assert emulator.dcos_login is not None
        emulator.dcos_login.expire_tokens()
        emulator.stop()  # ends the stream; same port again below
        emulator.start()
        wait_until(lambda: len(connected) == 2)
        assert auth.logins == 2
    finally:
        stream.stop()
        emulator.stop()


def test_wrong_key_is_one_line_naming_the_problem(dcos_marathon: MarathonEmulator) -> None:
    stranger = _rsa_key()
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, stranger)))
    client = _client(dcos_marathon, auth)
    with pytest.raises(MarathonError) as err:
        client.fetch_apps_body()
    client.close()
    text = str(err.value)
    assert "DC/OS login as 'marathon-lb-svc'" in text and "HTTP 401" in text
    assert "public key" in text and "\n" not in text
    assert "PRIVATE KEY" not in text


def test_emulator_checks_the_signature(dcos_marathon: MarathonEmulator,
                                       account_key: rsa.RSAPrivateKey) -> None:
    good = sign_login_jwt(UID, account_key, time.time())
    header, claims, signature = good.split(".")
    tampered = f"{header}.{claims[:-2]}AA.{signature}"
    url = dcos_marathon.url + LOGIN_PATH
    assert requests.post(url, json={"uid": UID, "token": good}, timeout=10).status_code == 200
    answer = requests.post(url, json={"uid": UID, "token": tampered}, timeout=10)
    assert answer.status_code == 401
    expired = sign_login_jwt(UID, account_key, time.time() - 3600)
    answer = requests.post(url, json={"uid": UID, "token": expired}, timeout=10)
    assert answer.status_code == 401 and "expired" in answer.text


@pytest.mark.parametrize("change, message", [
    ({"private_key": "not a key"}, "not an unencrypted PEM private key"),
    ({"uid": ""}, "missing or empty uid"),
    ({"scheme": "HS256"}, "scheme 'HS256' is not supported"),
    ({"login_endpoint": "leader.mesos/acs"}, "must be an http:// or https:// URL"),
])
def test_bad_account_fails_at_startup(change: dict[str, str], message: str,
                                      account_key: rsa.RSAPrivateKey) -> None:
    document = {"uid": UID, "private_key": _private_pem(account_key),
                "login_endpoint": "http://127.0.0.1:1/acs/api/v1/auth/login", **change}
    with pytest.raises(ValueError, match=message) as err:
        parse_dcos_credentials(json.dumps(document))
    assert "PRIVATE KEY" not in str(err.value)


def test_non_rsa_key_and_non_json_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    document = {"uid": UID, "private_key": _private_pem(ec_key),
                "login_endpoint": "http://127.0.0.1:1/login"}
    with pytest.raises(ValueError, match="must be an RSA key"):
        parse_dcos_credentials(json.dumps(document))
    with pytest.raises(ValueError, match="not JSON"):
        parse_dcos_credentials("{uid: x")


def test_flag_and_environment(dcos_marathon: MarathonEmulator, account_key: rsa.RSAPrivateKey,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    account = _account(dcos_marathon, account_key)
    settings = flags.client_settings(flags.parse_args(
        ["-m", dcos_marathon.url, "--dcos-auth-credentials", account]))
    assert isinstance(settings.token_auth, DcosAuth) and settings.auth is None
    assert "PRIVATE" not in repr(settings)
    monkeypatch.setenv("DCOS_SERVICE_ACCOUNT_CREDENTIAL", account)
    settings = flags.client_settings(flags.parse_args(["-m", dcos_marathon.url]))
    assert isinstance(settings.token_auth, DcosAuth)
    with pytest.raises(ValueError, match="not both"):
        flags.client_settings(flags.parse_args(
            ["-m", dcos_marathon.url, "--auth-credentials", "a:b"]))


def test_cli_one_shot_with_dcos_login(dcos_marathon: MarathonEmulator,
                                      account_key: rsa.RSAPrivateKey, tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "haproxy.cfg"
    base = ["-m", dcos_marathon.url, "--syslog-socket", "/dev/null", "--haproxy-config",
            str(config), "--command", "true", "--certs-dir", str(tmp_path / "none"),
            "--skip-validation", "--group", "*"]
    dcos_marathon.add_task("/web", "127.0.0.1", [31000])
    assert cli.main([*base, "--dcos-auth-credentials",
                     _account(dcos_marathon, account_key)]) == 0
    assert "127.0.0.1:31000" in config.read_text()
    capfd.readouterr()
    assert cli.main([*base, "--dcos-auth-credentials", _account(dcos_marathon, _rsa_key())]) == 1
    err = capfd.readouterr().err
    assert "DC/OS login as 'marathon-lb-svc'" in err and "PRIVATE KEY" not in err
    assert cli.main([*base, "--dcos-auth-credentials", "{}"]) == 2
    assert "--dcos-auth-credentials: missing or empty" in capfd.readouterr().err


def test_control_api_expires_tokens(dcos_marathon: MarathonEmulator,
                                    account_key: rsa.RSAPrivateKey) -> None:
    auth = DcosAuth(parse_dcos_credentials(_account(dcos_marathon, account_key)))
    token = auth.token()
    headers = {"Authorization": f"token={token}"}
    assert requests.get(dcos_marathon.url + "/ping", headers=headers, timeout=10).ok
    answer = requests.post(dcos_marathon.url + "/_emulator/auth/expire", timeout=10)
    assert answer.json() == {"expired": 1}
    assert requests.get(dcos_marathon.url + "/ping", headers=headers,
                        timeout=10).status_code == 401


def test_emulator_command_line_takes_a_service_account(tmp_path: Path,
                                                       account_key: rsa.RSAPrivateKey) -> None:
    """``--service-account UID PEM`` as a separate process: 401 without a token, then a
    login with the matching key reads the apps."""
    import os
    import signal
    import subprocess
    import sys

    from tests.paths import REPO

    public = tmp_path / "public.pem"
    public.write_bytes(_public_pem(account_key))
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicerouter.emulator.marathon", "--port", "0",
         "--port-file", str(port_file), "--service-account", UID, str(public)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        assert requests.get(url + "/v2/apps", timeout=10).status_code == 401
        account = json.dumps({"uid": UID, "private_key": _private_pem(account_key),
                              "login_endpoint": url + LOGIN_PATH})
        client = MarathonClient([url], ClientSettings(
            token_auth=DcosAuth(parse_dcos_credentials(account))))
        assert json.loads(client.fetch_apps_body()) == {"apps": []}
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
