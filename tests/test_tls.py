"""tls: which bundles the config serves, per-port certificate files, expiry reporting.

Key material is generated here (EC keys: fast). Files live in tmp_path.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servicerouter import certs, tls
from servicerouter.tls import TlsManager, format_rows

NOW = datetime.now(UTC).replace(microsecond=0)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn: str, key, issuer=None, sans=(), ca=False, days: float = 90,
              start: float = -1) -> x509.Certificate:
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + timedelta(days=start))
               .not_valid_after(NOW + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def pem(*items) -> str:
    out = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item.public_bytes(serialization.Encoding.PEM).decode())
        else:
            out.append(item.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode())
    return "".join(out)


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.setup_logging (run by other tests) stops propagation; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, an intermediate, and bundles: good, expiring, expired, wrong key, out of order."""
    ca_key, int_key = key(), key()
    ca = make_cert("Test Root", ca_key, ca=True, days=3650)
    inter = make_cert("Test Intermediate", int_key, issuer=(ca, ca_key), ca=True, days=3000)
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    files: dict[str, Path] = {"dir": certs_dir}

    def leaf(name: str, sans: list[str], **kw) -> tuple[x509.Certificate, object]:
        k = key()
        return make_cert(sans[0], k, issuer=(inter, int_key), sans=sans, **kw), k

    good, good_key = leaf("a", ["a.example.com", "www.a.example.com"])
    (certs_dir / "a.pem").write_text(pem(good, inter, good_key))
    soon, soon_key = leaf("soon", ["soon.example.com"], days=5)
    (certs_dir / "soon.pem").write_text(pem(soon, inter, soon_key))
    old, old_key = leaf("old", ["old.example.com"], days=-1, start=-30)
    (certs_dir / "expired.pem").write_text(pem(old, inter, old_key))
    wrong, _ = leaf("wrong", ["wrong.example.com"])
    (certs_dir / "mismatch.pem").write_text(pem(wrong, inter, key()))
    port_leaf, port_key = leaf("b", ["b.example.com"])
    files["ordered"] = tmp_path / "ordered.pem"
    files["ordered"].write_text(pem(port_leaf, inter, port_key))
    other, other_key = leaf("c", ["c.example.com"])
    files["shuffled"] = tmp_path / "shuffled.pem"
    files["shuffled"].write_text(pem(other_key, inter, other))  # key, chain, then leaf
    return files


def prepare(manager: TlsManager, tmp_path: Path, pki: dict[str, Path], now: datetime = NOW):
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state))
    return manager.prepare(str(state), default, [str(pki["dir"])],
                           [str(pki["ordered"]), str(pki["shuffled"])], now)


def test_crt_list_has_default_first_then_every_good_bundle_with_its_names(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    lines = Path(result.crt_list).read_text().splitlines()
    assert lines[0] == result.default_cert
    filters = sorted(" ".join(line.split()[1:]) for line in lines[1:])
    assert filters == ["a.example.com www.a.example.com", "b.example.com", "c.example.com",
                       "soon.example.com"]
    for line in lines[1:]:
        path = line.split()[0]
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_bad_bundles_are_named_with_their_reason_and_the_rest_served(
        tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="servicerouter.tls"):
        result = prepare(TlsManager(), tmp_path, pki)
    reasons = {Path(e.source).name: e.reason for e in result.errors}
    assert reasons["expired.pem"].startswith("certificate expired on")
    assert reasons["mismatch.pem"].startswith("private key does not match")
    assert "expired.pem" in caplog.text and "mismatch.pem" in caplog.text
    bad_rows = [r for r in result.report if r["problem"]]
    assert {Path(r["source"]).name for r in bad_rows} == {"expired.pem", "mismatch.pem"}


def test_port_certificate_kept_when_ready_replaced_when_out_of_order(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    substitutes = dict(result.cert_paths)
    assert str(pki["ordered"]) not in substitutes
    copy = Path(substitutes[str(pki["shuffled"])])
    assert copy.parent.name == "bundles" and copy.is_file()
    blocks = copy.read_text().split("-----END ")
    assert "CERTIFICATE" in blocks[0] and "PRIVATE KEY" in blocks[-2]
    leaf = x509.load_pem_x509_certificate(copy.read_bytes())
    assert leaf.subject == _name("c.example.com")


def test_expiring_bundle_warns_once_a_day_and_is_flagged(
        tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    manager = TlsManager(clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="servicerouter.tls"):
        result = prepare(manager, tmp_path, pki)
        prepare(manager, tmp_path, pki)
    warnings = [r.getMessage() for r in caplog.records if "expires in" in r.getMessage()]
    assert len(warnings) == 1 and "soon.example.com" in warnings[0]
    assert "renew" in warnings[0]
    rows = {tuple(r["names"]): r for r in result.report if not r["problem"]}
    assert rows[("soon.example.com",)]["expiring"] is True
    assert rows[("soon.example.com",)]["days_left"] in (4, 5)
    assert rows[("b.example.com",)]["expiring"] is False
    clock[0] += 25 * 3600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="servicerouter.tls"):
        prepare(manager, tmp_path, pki)
    assert sum("expires in" in r.getMessage() for r in caplog.records) == 1


def test_unchanged_sources_are_not_parsed_again(tmp_path: Path, pki: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    manager = TlsManager()
    (pki["dir"] / "expired.pem").unlink()
    (pki["dir"] / "mismatch.pem").unlink()
    calls: list[list[str]] = []
    real = certs.load_bundles

    def counting(paths, now=None):
        calls.append(list(paths))
        return real(paths, now)

    monkeypatch.setattr(tls.certs, "load_bundles", counting)
    first = prepare(manager, tmp_path, pki)
    count = len(calls)
    second = prepare(manager, tmp_path, pki)
    assert len(calls) == count and second.crt_list == first.crt_list
    # A changed file is read again.
    (pki["dir"] / "a.pem").write_text((pki["dir"] / "a.pem").read_text() + "\n")
    prepare(manager, tmp_path, pki)
    assert len(calls) == count + 1


def test_bundle_that_expired_since_it_was_cached_is_dropped(tmp_path: Path,
                                                           pki: dict[str, Path]) -> None:
    manager = TlsManager()
    prepare(manager, tmp_path, pki)
    later = prepare(manager, tmp_path, pki, NOW + timedelta(days=6))
    assert any(Path(e.source).name == "soon.pem" and "expired" in e.reason
               for e in later.errors)
    assert "soon.example.com" not in Path(later.crt_list).read_text()


def test_listing_format(tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    text = format_rows(result.report)
    assert "EXPIRING  " in text and "soon.example.com" in text
    assert "BAD       " in text and "expired.pem: certificate expired" in text
    assert format_rows([]).startswith("no certificate bundles")


def test_list_certs_cli(tmp_path: Path, pki: dict[str, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    from servicerouter.cli import list_certs, parse_args

    code = list_certs(parse_args(["--list-certs", "--certs-dir", str(pki["dir"]), "--ssl-certs",
                                  str(pki["ordered"])]))
    out = capsys.readouterr().out
    assert code == 1  # two unusable bundles
    assert "a.example.com,www.a.example.com" in out and "b.example.com" in out
    assert "mismatch.pem: private key does not match" in out


def test_router_sync_reports_certificates_and_adds_port_bundles(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    import json

    from servicerouter.marathon import SnapshotSource
    from servicerouter.runner import Router, RouterSettings
    from servicerouter.templates import load_fragments

    apps = [{"id": "/c", "ports": [10001],
             "labels": {"HAPROXY_0_VHOST": "c.example.com", "HAPROXY_0_SSL_CERT": str(pki["shuffled"])},
             "tasks": [{"id": "c.1", "host": "10.0.0.1", "ports": [31001]}]}]
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    cfg = tmp_path / "haproxy.cfg"
    router = Router(SnapshotSource(f"file:{snapshot}"), load_fragments([]),
                    RouterSettings(config_path=str(cfg), validate=False, reload=None,
                                   state_dir=str(tmp_path / "state"), certs_dir=str(pki["dir"])))
    result = router.sync()
    assert result.ok
    rows = {tuple(r["names"]): r for r in result.certificates if not r["problem"]}
    assert rows[("soon.example.com",)]["expiring"] is True
    assert ("c.example.com",) in rows  # the port's own bundle joined the crt-list
    assert {Path(r["source"]).name for r in result.certificates if r["problem"]} == {
        "expired.pem", "mismatch.pem"}
    bind = next(line for line in cfg.read_text().splitlines() if "bind *:10001" in line)
    assert "/state/bundles/" in bind and str(pki["shuffled"]) not in bind
