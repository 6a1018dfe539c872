"""Marathon access: basic auth, TLS verification, mutual TLS, and secrets kept out of sight.

Each test runs an HTTPS Marathon emulator with its own CA (made here with
``cryptography``), HTTP basic auth and, for mutual TLS, a client CA. Right credentials
work; wrong ones fail with a clear message; a certificate from an untrusted CA is
refused unless --marathon-insecure says otherwise (with a warning); the password never
appears in a log line, an error or the status page.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicerouter.cli import flags
from servicerouter.cli import main as cli
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.source.events import EventStream
from servicerouter.source.marathon import (
    ClientSettings,
    MarathonClient,
    MarathonError,
    parse_credentials,
    read_credential_file,
)
from servicerouter.source.marathon_urls import redact
from tests.harness import wait_until

USER, PASSWORD = "router", "s3cret-Pa55:with-colon"
APP = {"id": "/web", "ports": [10000], "instances": 1}


# --------------------------------------------------------------------------- a small PKI


@dataclass
class Pki:
    ca: Path  # trusted CA bundle
    server_cert: Path  # server cert + key, signed by ``ca``, for 127.0.0.1
    server_key: Path
    rogue_cert: Path  # same names, signed by a CA nobody trusts
    rogue_key: Path
    client_ca: Path
    client_cert: Path  # signed by client_ca
    client_key: Path
    client_bundle: Path  # cert + key in one PEM
    stranger_cert: Path  # a client cert from another CA
    stranger_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: ec.EllipticCurvePrivateKey,
          issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
          *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn))
               .issuer_name(issuer[0].subject if issuer else _name(cn))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")

    def write(name: str, *parts: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
        path = root / name
        path.write_bytes(b"".join(_pem(p) for p in parts))
        path.chmod(0o600)
        return path

    ca_key, rogue_ca_key, client_ca_key, stranger_ca_key = _key(), _key(), _key(), _key()
    ca = _cert("Test Marathon CA", ca_key, ca=True)
    rogue_ca = _cert("Rogue CA", rogue_ca_key, ca=True)
    client_ca = _cert("Router clients CA", client_ca_key, ca=True)
    stranger_ca = _cert("Stranger CA", stranger_ca_key, ca=True)
    server_key, rogue_key, client_key, stranger_key = _key(), _key(), _key(), _key()
    server = _cert("marathon", server_key, (ca, ca_key), server=True)
    rogue = _cert("marathon", rogue_key, (rogue_ca, rogue_ca_key), server=True)
    client = _cert("servicerouter", client_key, (client_ca, client_ca_key))
    stranger = _cert("servicerouter", stranger_key, (stranger_ca, stranger_ca_key))
    return Pki(
        ca=write("ca.pem", ca), server_cert=write("server.pem", server),
        server_key=write("server.key", server_key), rogue_cert=write("rogue.pem", rogue),
        rogue_key=write("rogue.key", rogue_key), client_ca=write("client-ca.pem", client_ca),
        client_cert=write("client.pem", client), client_key=write("client.key", client_key),
        client_bundle=write("client-bundle.pem", client, client_key),
        stranger_cert=write("stranger.pem", stranger),
        stranger_key=write("stranger.key", stranger_key),
    )


def _server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(client_ca))
    return context


@contextlib.contextmanager
def marathon(context: ssl.SSLContext, credentials: tuple[str, str] | None = (USER, PASSWORD),
             ) -> Iterator[MarathonEmulator]:
    emulator = MarathonEmulator([dict(APP)], credentials=credentials, ssl_context=context)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def https_marathon(pki: Pki) -> Iterator[MarathonEmulator]:
    with marathon(_server_context(pki.server_cert, pki.server_key)) as emulator:
        yield emulator


def _client(emulator: MarathonEmulator, **settings: object) -> MarathonClient:
    return MarathonClient([emulator.url], ClientSettings(connect_timeout=5, read_timeout=10,
                                                         **settings))  # type: ignore[arg-type]


def _fetch(client: MarathonClient) -> bytes:
    try:
        return client.fetch_apps_body()
    finally:
        client.close()


def _no_secret(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in (*texts, *(r.getMessage() for r in caplog.records)):
        assert PASSWORD not in text


# --------------------------------------------------------------------------- auth and TLS


def test_right_credentials_and_ca_work(https_marathon: MarathonEmulator, pki: Pki) -> None:
    body = _fetch(_client(https_marathon, auth=(USER, PASSWORD), verify=str(pki.ca)))
    assert b'"/web"' in body


def test_wrong_password_fails_clearly(https_marathon: MarathonEmulator, pki: Pki,
                                      caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(MarathonError) as err:
        _fetch(_client(https_marathon, auth=(USER, "wrong-" + PASSWORD), verify=str(pki.ca)))
    assert "HTTP 401" in str(err.value) and "check the Marathon credentials" in str(err.value)
    _no_secret(caplog, str(err.value))


def test_missing_credentials_fail_clearly(https_marathon: MarathonEmulator, pki: Pki) -> None:
    with pytest.raises(MarathonError, match="401.*credentials"):
        _fetch(_client(https_marathon, verify=str(pki.ca)))


def test_unknown_ca_is_refused_by_default(https_marathon: MarathonEmulator) -> None:
    with pytest.raises(MarathonError) as err:
        _fetch(_client(https_marathon, auth=(USER, PASSWORD)))
    message = str(err.value)
    assert "certificate verify failed" in message and "--marathon-ca-cert" in message


def test_certificate_from_untrusted_ca_is_refused(pki: Pki,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A Marathon impostor with a certificate for the right name, from another CA."""
    with marathon(_server_context(pki.rogue_cert, pki.rogue_key)) as rogue:
        with pytest.raises(MarathonError, match="certificate verify failed"):
            _fetch(_client(rogue, auth=(USER, PASSWORD), verify=str(pki.ca)))
        # The password was never sent: the handshake failed before any request.
        assert rogue.request_log == []
    _no_secret(caplog)


def test_insecure_opt_out_works_with_a_warning(https_marathon: MarathonEmulator,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        body = _fetch(_client(https_marathon, auth=(USER, PASSWORD), verify=False))
    assert b'"/web"' in body
    assert any("NOT verified" in r.getMessage() for r in caplog.records)


def test_mutual_tls(pki: Pki) -> None:
    context = _server_context(pki.server_cert, pki.server_key, client_ca=pki.client_ca)
    with marathon(context) as emulator:
        for cert in ((str(pki.client_cert), str(pki.client_key)), str(pki.client_bundle)):
            body = _fetch(_client(emulator, auth=(USER, PASSWORD), verify=str(pki.ca),
                                  client_cert=cert))
            assert b'"/web"' in body
        with pytest.raises(MarathonError, match="TLS error|connection failed"):
            _fetch(_client(emulator, auth=(USER, PASSWORD), verify=str(pki.ca)))
        with pytest.raises(MarathonError, match="TLS error|connection failed"):
            _fetch(_client(emulator, auth=(USER, PASSWORD), verify=str(pki.ca),
                           client_cert=(str(pki.stranger_cert), str(pki.stranger_key))))


def test_event_stream_uses_the_same_auth_and_tls(https_marathon: MarathonEmulator,
                                                 pki: Pki) -> None:
    """--sse connects with the same credentials and CA (servicerouter.source.events)."""
    events: list[dict[str, object]] = []
    connected: list[str] = []
    settings = ClientSettings(auth=(USER, PASSWORD), verify=str(pki.ca), read_timeout=10)
    stream = EventStream([https_marathon.url], events.append, connected.append,
                         settings=settings)
    stream.start()
    try:
        wait_until(lambda: connected and https_marathon.sse_clients == 1)
        https_marathon.put_app({"id": "/other", "ports": [10001], "instances": 0})
        wait_until(lambda: any(e.get("eventType") == "api_post_event" for e in events))
    finally:
        stream.stop()


# --------------------------------------------------------------------------- flags


def _args(*argv: str) -> argparse.Namespace:
    return flags.parse_args(["-m", "https://127.0.0.1:1", *argv])


def test_credential_flags(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert flags.client_settings(_args("--auth-credentials", f"{USER}:{PASSWORD}")).auth == (
        USER, PASSWORD)
    secret = tmp_path / "credentials"
    secret.write_text(f"{USER}:{PASSWORD}\n")
    secret.chmod(0o600)
    settings = flags.client_settings(_args("--marathon-auth-credential-file", str(secret)))
    assert settings.auth == (USER, PASSWORD)
    assert PASSWORD not in repr(settings)  # settings may be logged
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        read_credential_file(str(secret))
    assert any("readable by others" in r.getMessage() for r in caplog.records)
    _no_secret(caplog)


@pytest.mark.parametrize("argv, message", [
    (("--auth-credentials", "just-a-password"), "expected USER:PASSWORD"),
    (("--marathon-auth-credential-file", "/nonexistent/creds"), "cannot read"),
    (("--marathon-insecure", "--marathon-ca-cert", "/etc/hostname"), "contradict"),
    (("--marathon-ca-cert", "/nonexistent/ca.pem"), "not a readable file"),
    (("--marathon-client-key", "/etc/hostname"), "needs --marathon-client-cert"),
])
def test_bad_access_flags_fail_at_startup(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        flags.client_settings(_args(*argv))
    assert PASSWORD not in str(err.value)


def test_parse_credentials_keeps_colons_in_password() -> None:
    assert parse_credentials("u:a:b:c\n", "x") == ("u", "a:b:c")
    with pytest.raises(ValueError):
        parse_credentials(":nouser", "x")


def test_cli_run_with_auth_and_ca(https_marathon: MarathonEmulator, pki: Pki, tmp_path: Path,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    """The whole command: right flags write a config, a wrong password exits 1, and the
    password appears nowhere in the output."""
    config = tmp_path / "haproxy.cfg"
    base = ["-m", https_marathon.url, "--marathon-ca-cert", str(pki.ca), "--syslog-socket",
            "/dev/null", "--haproxy-config", str(config), "--command", "true",
            "--certs-dir", str(tmp_path / "none"), "--skip-validation", "--group", "*"]
    assert cli.main([*base, "--auth-credentials", f"{USER}:{PASSWORD}"]) == 0
    assert config.exists()
    seen = capfd.readouterr()
    assert cli.main([*base, "--auth-credentials", f"{USER}:bad{PASSWORD}"]) == 1
    wrong_password = capfd.readouterr()
    assert "HTTP 401" in wrong_password.err, wrong_password.err
    assert cli.main([*base, "--auth-credentials", f"{USER}:{PASSWORD}",
                     "--marathon-ca-cert", str(pki.client_ca)]) == 1
    untrusted = capfd.readouterr()
    assert "certificate verify failed" in untrusted.err, untrusted.err
    for captured in (seen, wrong_password, untrusted):
        assert PASSWORD not in captured.out + captured.err


def test_credentials_in_url_are_redacted(https_marathon: MarathonEmulator, pki: Pki,
                                         caplog: pytest.LogCaptureFixture) -> None:
    url = https_marathon.url.replace("https://", f"https://{USER}:bad{PASSWORD}@")
    client = MarathonClient([url], ClientSettings(verify=str(pki.ca)))
    with pytest.raises(MarathonError) as err:
        _fetch(client)
    assert "401" in str(err.value)
    assert PASSWORD not in client.current and "@" not in client.current
    _no_secret(caplog, str(err.value))


def test_credential_file_is_not_world_readable_in_examples(tmp_path: Path) -> None:
    """The warning names the file and the fix, never the content."""
    secret = tmp_path / "c"
    secret.write_text(f"{USER}:{PASSWORD}")
    os.chmod(secret, 0o640)
    assert read_credential_file(str(secret)) == (USER, PASSWORD)


# --------------------------------------------------------------------------- -m URLs


@pytest.mark.parametrize("url, message", [
    ("http://alice:pa/S3cret@127.0.0.1:1", "percent-encode"),  # '/' in the password
    ("http://alice:pa?S3cret@127.0.0.1:1", "percent-encode"),
    ("http://alice:pa#S3cret@127.0.0.1:1", "percent-encode"),
    ("alice:S3cret@h", "expected HOST:PORT"),  # no scheme and no port
    ("alice:S3cret@h:", "bad host or port"),  # no scheme, an empty port
    ("ftp://alice:S3cret@h:1", "scheme 'ftp' is not supported"),
    ("http://alice:S3cret@h:99999", "bad host or port"),
    ("http://alice:S3cret@[::1", "bad host or port"),
    ("http://alice:S3cret@:8080", "bad host or port"),
    ("http://:S3cret@h:1", "without a user name"),
    ("http://h:8080/v2?x=1", "no query or fragment"),
])
def test_bad_marathon_urls_exit_2_without_the_password(
        url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        flags.parse_args(["-m", "http://ok:8080", "-m", url])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "error: --marathon" in err
    assert "S3cret" not in err and "alice" not in err


def test_different_credentials_per_host_need_one_flag(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-m", "http://a:S3cret1@h1:1", "-m", "http://b:S3cret2@h2:1"]
    with pytest.raises(SystemExit):
        flags.parse_args(argv)
    assert "different credentials" in capsys.readouterr().err
    flags.parse_args([*argv, "--auth-credentials", "c:d"])  # the flag wins: fine
    with pytest.raises(ValueError, match="different credentials"):
        MarathonClient(argv[1::2])


def test_credentials_move_from_the_url_into_the_session(caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # an earlier in-process cli.main() may have stopped servicerouter's logs propagating
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="servicerouter")
    client = MarathonClient(["http://alice:pa%2FS3cret%3F@127.0.0.1:1/", "http://127.0.0.1:2"],
                            ClientSettings(connect_timeout=2))
    assert client.hosts == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert client.settings.auth == ("alice", "pa/S3cret?")  # the event stream uses these
    with pytest.raises(MarathonError) as err:
        _fetch(client)
    assert any("127.0.0.1:1" in r.getMessage() for r in caplog.records)
    for text in (str(err.value), client.current, repr(client.settings),
                 *(r.getMessage() for r in caplog.records)):
        assert "S3cret" not in text
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        flagged = MarathonClient(["http://alice:S3cret@h:1"], ClientSettings(auth=("bob", "x")))
    assert flagged.settings.auth == ("bob", "x") and flagged.hosts == ["http://h:1"]
    assert any("ignored" in r.getMessage() for r in caplog.records)


def test_credentials_in_the_url_authenticate(https_marathon: MarathonEmulator, pki: Pki) -> None:
    from urllib.parse import quote

    url = https_marathon.url.replace("https://", f"https://{USER}:{quote(PASSWORD, safe='')}@")
    client = MarathonClient([url], ClientSettings(verify=str(pki.ca)))
    assert b'"/web"' in _fetch(client)


@pytest.mark.parametrize("text, kept", [
    ("http://alice:pa/S3cret@127.0.0.1:1/v2/apps", "http://***@127.0.0.1:1/v2/apps"),
    ("Invalid URL 'alice:S3cret@h:1/v2/apps': No scheme supplied",
     "Invalid URL '***@h:1/v2/apps': No scheme supplied"),
    ("ftp://alice:S3cret@h:1", "ftp://***@h:1"),
    ("Failed to parse: http://u:S3cret@h:99999", "Failed to parse: http://***@h:99999"),
    ("http://lb1:8000/cb?token=S3cret&x=1", "http://lb1:8000/cb?token=***&x=1"),
    ("/v2/eventSubscriptions?callbackUrl=http%3A%2F%2Flb%3A8000%2F%3Ftoken%3DS3cret",
     "/v2/eventSubscriptions?callbackUrl=http%3A%2F%2Flb%3A8000%2F%3Ftoken%3D***"),
    ("http://marathon:8080", "http://marathon:8080"),
])
def test_redact_works_on_raw_text(text: str, kept: str) -> None:
    assert redact(text) == kept
