"""Tests for servicerouter.tls.bundles and bundle_layout: every validation rule, the file edges, and real HAProxy.

All key material is generated here with ``cryptography`` (EC where possible, so it is fast).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import shutil
import socket
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from servicerouter.tls import bundle_layout
from servicerouter.tls import bundles as certs
from servicerouter.tls.bundles import Bundle, BundleError
from tests.harness import free_port

NOW = datetime.now(UTC).replace(microsecond=0)
HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy binary not found on PATH")


# --------------------------------------------------------------------------- PKI helpers


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    cn: str,
    key,
    issuer: tuple[x509.Certificate, object] | None = None,
    sans: list[str] | None = None,
    ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``key``; self-signed unless ``issuer`` = (cert, key) is given."""
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key, fmt=serialization.PrivateFormat.PKCS8, password: bytes | None = None) -> str:
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc).decode()


def fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Pki:
    root: x509.Certificate
    root_key: object
    inter: x509.Certificate
    inter_key: object
    leaf: x509.Certificate
    leaf_key: object
    other: x509.Certificate  # second site, also issued by the intermediate
    other_key: object

    def bundle_text(self) -> str:
        """The well-formed bundle: leaf, intermediate, key."""
        return cert_pem(self.leaf) + cert_pem(self.inter) + key_pem(self.leaf_key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key, inter_key, leaf_key, other_key = ec_key(), ec_key(), ec_key(), ec_key()
    root = make_cert("Test Root CA", root_key, ca=True)
    inter = make_cert("Test Intermediate CA", inter_key, issuer=(root, root_key), ca=True)
    leaf = make_cert(
        "example.com",
        leaf_key,
        issuer=(inter, inter_key),
        sans=["Example.COM", "*.Example.com", "www.example.com", "example.com"],
    )
    other = make_cert(
        "other.example.org", other_key, issuer=(inter, inter_key), sans=["other.example.org"]
    )
    return Pki(root, root_key, inter, inter_key, leaf, leaf_key, other, other_key)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def reason(text: str, source: str = "src.pem", now: datetime = NOW) -> str:
    with pytest.raises(BundleError) as info:
        certs.parse_bundle(text, source, now)
    assert info.value.source == source
    assert str(info.value) == f"{source}: {info.value.reason}"
    return info.value.reason


def split_blocks(pem: str) -> list[str]:
    """The PEM blocks of ``pem`` in order, each with its trailing newline."""
    out, current = [], []
    for line in pem.splitlines(keepends=True):
        current.append(line)
        if line.startswith("-----END "):
            out.append("".join(current))
            current = []
    return out


# --------------------------------------------------------------------------- parse_bundle: accepted


def test_parse_good_bundle(pki: Pki) -> None:
    bundle = certs.parse_bundle(pki.bundle_text(), "site.pem", NOW)
    assert bundle.source == "site.pem"
    assert bundle.names == ("example.com", "*.example.com", "www.example.com")
    assert bundle.not_after == pki.leaf.not_valid_after_utc
    assert bundle.not_after.tzinfo is not None
    assert bundle.fingerprint == fp(pki.leaf)
    assert bundle.pem == pki.bundle_text()


def test_shuffled_bundle_is_normalised_leaf_then_issuers_then_key(pki: Pki) -> None:
    parts = [
        key_pem(pki.leaf_key),
        cert_pem(pki.root),
        cert_pem(pki.leaf),
        cert_pem(pki.inter),
    ]
    for seed in range(6):
        random.Random(seed).shuffle(parts)
        text = "junk before\n" + "\n\n".join(parts) + "trailing text\n"
        bundle = certs.parse_bundle(text, "s.pem", NOW)
        assert split_blocks(bundle.pem) == [
            cert_pem(pki.leaf),
            cert_pem(pki.inter),
            cert_pem(pki.root),
            key_pem(pki.leaf_key),
        ]


def test_crlf_and_self_signed_single_cert() -> None:
    key = ec_key()
    cert = make_cert("solo.test", key)
    text = (cert_pem(cert) + key_pem(key)).replace("\n", "\r\n")
    bundle = certs.parse_bundle(text, "solo.pem", NOW)
    assert bundle.names == ("solo.test",)
    assert bundle.pem == cert_pem(cert) + key_pem(key)


@pytest.mark.parametrize(
    ("kind", "fmt", "label"),
    [
        ("rsa", serialization.PrivateFormat.TraditionalOpenSSL, "RSA PRIVATE KEY"),
        ("rsa", serialization.PrivateFormat.PKCS8, "PRIVATE KEY"),
        ("ec", serialization.PrivateFormat.TraditionalOpenSSL, "EC PRIVATE KEY"),
        ("ec", serialization.PrivateFormat.PKCS8, "PRIVATE KEY"),
        ("ed25519", serialization.PrivateFormat.PKCS8, "PRIVATE KEY"),
    ],
)
def test_key_types_and_formats_are_accepted(pki: Pki, rsa_key, kind, fmt, label) -> None:
    key = {"rsa": rsa_key, "ec": ec_key(), "ed25519": ed25519.Ed25519PrivateKey.generate()}[kind]
    leaf = make_cert(
        "k.example.net", key, issuer=(pki.inter, pki.inter_key), sans=["k.example.net"]
    )
    text = key_pem(key, fmt) + cert_pem(pki.inter) + cert_pem(leaf)
    assert f"-----BEGIN {label}-----" in text
    bundle = certs.parse_bundle(text, "k.pem", NOW)
    blocks = split_blocks(bundle.pem)
    assert blocks[:2] == [cert_pem(leaf), cert_pem(pki.inter)]
    assert blocks[2] == key_pem(key)  # normalised to PKCS#8
    assert blocks[2].startswith("-----BEGIN PRIVATE KEY-----")


def test_names_fall_back_to_cn_and_ec_parameters_are_ignored() -> None:
    key = ec_key()
    cert = make_cert("Legacy.Example.com", key)  # no SAN extension
    ec_params = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    bundle = certs.parse_bundle(ec_params + key_pem(key) + cert_pem(cert), "l.pem", NOW)
    assert bundle.names == ("legacy.example.com",)
    assert "EC PARAMETERS" not in bundle.pem


def test_dh_parameters_are_kept_after_the_key(pki: Pki) -> None:
    params = dh.generate_parameters(generator=2, key_size=512).parameter_bytes(
        serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3
    )
    bundle = certs.parse_bundle(params.decode() + pki.bundle_text(), "dh.pem", NOW)
    assert split_blocks(bundle.pem)[-1] == params.decode()


# --------------------------------------------------------------------------- parse_bundle: rejected


def test_no_certificate(pki: Pki) -> None:
    assert reason("") == "no certificate found"
    assert reason("hello\n") == "no certificate found"
    assert reason(key_pem(pki.leaf_key)) == "no certificate found"


def test_no_private_key(pki: Pki) -> None:
    assert reason(cert_pem(pki.leaf) + cert_pem(pki.inter)) == "no private key found"


def test_more_than_one_private_key(pki: Pki) -> None:
    text = pki.bundle_text() + key_pem(pki.other_key)
    assert reason(text) == "more than one private key (2 found)"


def test_key_does_not_match_certificate(pki: Pki) -> None:
    assert (
        reason(cert_pem(pki.leaf) + key_pem(ec_key()))
        == "private key does not match the certificate"
    )
    text = cert_pem(pki.leaf) + cert_pem(pki.inter) + key_pem(ec_key())
    assert reason(text) == "private key does not match any of the 2 certificates"


def test_expired_leaf(pki: Pki) -> None:
    key = ec_key()
    expired = make_cert(
        "old.example.com",
        key,
        issuer=(pki.inter, pki.inter_key),
        sans=["old.example.com"],
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=2),
    )
    expected = f"certificate expired on {(NOW - timedelta(days=2)).isoformat()}"
    assert reason(cert_pem(expired) + cert_pem(pki.inter) + key_pem(key)) == expected
    # The same bundle was fine before it expired.
    certs.parse_bundle(cert_pem(expired) + key_pem(key), "x", NOW - timedelta(days=3))


def test_not_yet_valid_leaf() -> None:
    key = ec_key()
    future = make_cert("new.example.com", key, not_before=NOW + timedelta(days=1))
    expected = f"certificate is not valid before {(NOW + timedelta(days=1)).isoformat()}"
    assert reason(cert_pem(future) + key_pem(key)) == expected


def test_certificate_not_in_chain_is_an_error(pki: Pki) -> None:
    stranger_key = ec_key()
    stranger = make_cert("Unrelated CA", stranger_key, ca=True)
    text = cert_pem(pki.leaf) + cert_pem(stranger) + cert_pem(pki.inter) + key_pem(pki.leaf_key)
    assert reason(text) == "certificate 2 does not belong to the chain"
    # A sibling leaf shares the issuer but is not on the leaf's path either.
    text = cert_pem(pki.other) + cert_pem(pki.leaf) + cert_pem(pki.inter) + key_pem(pki.leaf_key)
    assert reason(text) == "certificate 1 does not belong to the chain"
    # An intermediate that issued nothing in the bundle (root missing is fine, this is not).
    text = cert_pem(pki.leaf) + key_pem(pki.leaf_key) + cert_pem(stranger)
    assert reason(text) == "certificate 2 does not belong to the chain"


def test_duplicate_certificate_is_named(pki: Pki) -> None:
    text = pki.bundle_text() + cert_pem(pki.inter)
    assert reason(text) == "certificate 3 is a duplicate of certificate 2"


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_encrypted_private_key(pki: Pki, fmt) -> None:
    text = cert_pem(pki.leaf) + key_pem(pki.leaf_key, fmt, password=b"secret")
    assert reason(text) == "encrypted private key is not supported"


def test_garbage_blocks(pki: Pki) -> None:
    broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    assert reason(broken + key_pem(pki.leaf_key)).startswith(
        "certificate 1 is not a valid X.509 certificate"
    )
    truncated = pki.bundle_text()[:-40]
    assert reason(truncated).startswith("malformed or truncated PEM block")
    csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    assert reason(pki.bundle_text() + csr) == "unsupported PEM block 'CERTIFICATE REQUEST'"


def test_certificate_without_dns_name() -> None:
    key = ec_key()
    cert = make_cert("My Company Certificate", key)
    assert reason(cert_pem(cert) + key_pem(key)).startswith("certificate has no DNS name")


def test_bundle_error_and_bundle_repr(pki: Pki) -> None:
    err = BundleError("/etc/ssl/a.pem", "no private key found")
    assert str(err) == "/etc/ssl/a.pem: no private key found"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.source, copy.reason) == (err.source, err.reason)
    bundle = certs.parse_bundle(pki.bundle_text(), "a.pem", NOW)
    assert "PRIVATE KEY" not in repr(bundle)


def test_expires_within(pki: Pki) -> None:
    bundle = certs.parse_bundle(pki.bundle_text(), "a.pem", NOW)
    assert not bundle.expires_within(NOW, 89)
    assert bundle.expires_within(NOW, 90)
    assert bundle.expires_within(NOW + timedelta(days=80), 14)


# --------------------------------------------------------------------------- generate / write


def test_generate_self_signed_round_trips() -> None:
    text = certs.generate_self_signed("fallback.test", days=10, now=NOW)
    bundle = certs.parse_bundle(text, "gen.pem", NOW)
    assert bundle.names == ("fallback.test",)
    assert bundle.not_after == NOW + timedelta(days=10)
    key = serialization.load_pem_private_key(split_blocks(text)[1].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert certs.parse_bundle(certs.generate_self_signed(), "d", NOW).names == (
        "servicerouter.invalid",
    )


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_private_file_mode_atomic_and_no_symlink_following(tmp_path) -> None:
    old_umask = os.umask(0)  # a permissive umask must not widen the mode
    try:
        target = tmp_path / "key.pem"
        certs.write_private_file(str(target), "one")
        assert target.read_text() == "one" and _mode(target) == 0o600
        certs.write_private_file(str(target), "two")
        assert target.read_text() == "two" and _mode(target) == 0o600
    finally:
        os.umask(old_umask)

    victim = tmp_path / "victim"
    victim.write_text("untouched")
    link = tmp_path / "link.pem"
    link.symlink_to(victim)
    certs.write_private_file(str(link), "secret")
    assert victim.read_text() == "untouched"
    assert not link.is_symlink() and link.read_text() == "secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem", "link.pem", "victim"]


def test_ensure_default_certificate_creates_reuses_and_regenerates(tmp_path) -> None:
    state = tmp_path / "state" / "sr"
    path = certs.ensure_default_certificate(str(state), now=NOW)
    assert path == str(state / "default.pem")
    assert _mode(state) == 0o700 and _mode(path) == 0o600
    first = open(path).read()
    assert certs.parse_bundle(first, path, NOW).names == ("servicerouter.invalid",)

    # Valid and far from expiry: reused as is (mode repaired if loosened).
    os.chmod(path, 0o644)
    assert certs.ensure_default_certificate(str(state), now=NOW + timedelta(days=100)) == path
    assert open(path).read() == first and _mode(path) == 0o600

    # Within 30 days of expiry: replaced.
    near_end = NOW + timedelta(days=3650 - 20)
    certs.ensure_default_certificate(str(state), now=near_end)
    second = open(path).read()
    assert second != first
    assert not certs.parse_bundle(second, path, near_end).expires_within(near_end, 30)

    # Unparseable: replaced.
    with open(path, "w") as handle:
        handle.write("garbage")
    certs.ensure_default_certificate(str(state), now=NOW)
    certs.parse_bundle(open(path).read(), path, NOW)
    assert _mode(path) == 0o600


# --------------------------------------------------------------------------- load_bundles


def test_load_bundles_from_directory_and_files(tmp_path, pki: Pki) -> None:
    d = tmp_path / "certs"
    d.mkdir()
    good = pki.bundle_text()
    other = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    (d / "a.pem").write_text(good)
    (d / "b.crt").write_text(cert_pem(pki.leaf) + key_pem(pki.other_key))  # mismatched
    (d / "site").write_text(other)  # no suffix, but parses
    (d / "site.key").write_text(key_pem(pki.other_key))  # companion, skipped
    (d / "notes.txt").write_text("no pem here\n")  # no certificate: skipped
    (d / "README.md").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    (d / ".hidden.pem").write_text("broken")
    (d / "sub").mkdir()
    (d / "sub" / "deep.pem").write_text("broken")  # not recursed into
    fifo = d / "pipe.pem"
    os.mkfifo(fifo)  # must not block

    missing = str(tmp_path / "missing.pem")
    not_a_dir = str(d / "a.pem" / "x.pem")
    bundles, errors = certs.load_bundles([str(d), str(d / "a.pem"), missing, not_a_dir], now=NOW)

    assert [b.source for b in bundles] == [str(d / "a.pem"), str(d / "site")]
    assert [b.fingerprint for b in bundles] == [fp(pki.leaf), fp(pki.other)]
    assert [(e.source, e.reason) for e in errors] == [
        (str(d / "b.crt"), "private key does not match the certificate"),
        (str(fifo), "not a regular file or directory"),
        (missing, "no such file or directory"),
        (not_a_dir, "cannot read (Not a directory)"),
    ]
    assert all(isinstance(e, BundleError) for e in errors)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_load_bundles_unreadable_file(tmp_path, pki: Pki) -> None:
    path = tmp_path / "locked.pem"
    path.write_text(pki.bundle_text())
    path.chmod(0)
    bundles, errors = certs.load_bundles([str(path)], now=NOW)
    assert bundles == [] and errors[0].reason == "cannot read (Permission denied)"


def test_load_bundles_expired_is_reported(tmp_path, pki: Pki) -> None:
    (tmp_path / "a.pem").write_text(pki.bundle_text())
    bundles, errors = certs.load_bundles([str(tmp_path)], now=NOW + timedelta(days=365))
    assert bundles == []
    assert errors[0].reason.startswith("certificate expired on ")


# --------------------------------------------------------------------------- crt-list


def _bundle(source: str, names: tuple[str, ...], fingerprint: str = "ab" * 32) -> Bundle:
    return Bundle(source, names, NOW, fingerprint, "PEM")


def test_build_crt_list_is_sorted_and_filtered_by_names() -> None:
    text = bundle_layout.build_crt_list(
        "/s/default.pem",
        [
            ("/s/bundles/b.pem", _bundle("x", ("b.example.com", "*.b.example.com"))),
            ("/s/bundles/a.pem", _bundle("y", ("a.example.com",))),
            ("/s/bundles/a.pem", _bundle("y", ("a.example.com",))),  # duplicate collapses
        ],
    )
    assert text == (
        "/s/default.pem\n"
        "/s/bundles/a.pem a.example.com\n"
        "/s/bundles/b.pem b.example.com *.b.example.com\n"
    )
    assert bundle_layout.build_crt_list("/s/default.pem", []) == "/s/default.pem\n"


@pytest.mark.parametrize(
    ("default", "path", "names"),
    [
        ("/s/my default.pem", "/s/a.pem", ("a.test",)),
        ("/s/default.pem", "/s/a\t.pem", ("a.test",)),
        ("/s/default.pem", "", ("a.test",)),
        ("/s/default.pem", "#/s/a.pem", ("a.test",)),
        ("/s/default.pem", "/s/a.pem", ("a.test !b.test",)),
    ],
)
def test_build_crt_list_rejects_unsafe_tokens(default, path, names) -> None:
    with pytest.raises(ValueError):
        bundle_layout.build_crt_list(default, [(path, _bundle("x", names))])


def test_materialize_writes_private_files_and_removes_stale(tmp_path, pki: Pki) -> None:
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state), now=NOW)
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    bundle_dir = state / "bundles"
    bundle_dir.mkdir(mode=0o700)
    stale = bundle_dir / f"{'0' * 64}.pem"
    stale.write_text("old")
    leftover = bundle_dir / ".tmp-crashed.pem.123"
    leftover.write_text("half")
    foreign = bundle_dir / "operator-notes.txt"
    foreign.write_text("not ours")

    crt_list = bundle_layout.materialize([two, one, one], str(state), default)

    assert os.path.dirname(crt_list) == str(state)
    assert os.path.basename(crt_list).startswith("crt-list-")
    p1, p2 = bundle_dir / f"{one.fingerprint}.pem", bundle_dir / f"{two.fingerprint}.pem"
    assert p1.read_text() == one.pem and p2.read_text() == two.pem
    assert _mode(p1) == _mode(p2) == _mode(crt_list) == 0o600
    assert not stale.exists() and not leftover.exists() and foreign.exists()
    line1 = f"{p1} example.com *.example.com www.example.com"
    line2 = f"{p2} other.example.org"
    assert open(crt_list).read().splitlines() == [default, *sorted([line1, line2])]

    # Unchanged bundles are not rewritten; a dropped bundle's file goes away.
    inode = os.stat(p1).st_ino
    second = bundle_layout.materialize([one], str(state), default)
    assert os.stat(p1).st_ino == inode
    assert not p2.exists()
    assert second != crt_list  # content-addressed: a change yields a new path
    assert open(second).read().splitlines() == [default, line1]


def test_materialize_creates_private_state_dir(tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    state = tmp_path / "new-state"
    bundle_layout.materialize([one], str(state), str(tmp_path / "default.pem"))
    assert _mode(state) == 0o700 and _mode(state / "bundles") == 0o700


def test_expiry_report(pki: Pki) -> None:
    key = ec_key()
    soon = make_cert("soon.test", key, not_after=NOW + timedelta(days=10, hours=1))
    soon_b = certs.parse_bundle(cert_pem(soon) + key_pem(key), "soon.pem", NOW)
    late_b = certs.parse_bundle(pki.bundle_text(), "late.pem", NOW)
    report = certs.expiry_report([late_b, soon_b], NOW)
    assert report == [
        {
            "source": "soon.pem",
            "names": ["soon.test"],
            "not_after": (NOW + timedelta(days=10, hours=1)).isoformat(),
            "days_left": 10,
            "expiring": True,
        },
        {
            "source": "late.pem",
            "names": ["example.com", "*.example.com", "www.example.com"],
            "not_after": (NOW + timedelta(days=90)).isoformat(),
            "days_left": 90,
            "expiring": False,
        },
    ]
    assert [r["expiring"] for r in certs.expiry_report([soon_b], NOW, days=7)] == [False]


# --------------------------------------------------------------------------- real HAProxy


def _haproxy_setup(tmp_path, pki: Pki) -> tuple[str, str, int, list[Bundle], list[BundleError]]:
    """Two good bundles and one with a mismatched key in a certs dir, materialized."""
    src = tmp_path / "certs"
    src.mkdir()
    (src / "example.pem").write_text(pki.bundle_text())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_leaf = make_cert(
        "other.example.org", ed_key, issuer=(pki.inter, pki.inter_key), sans=["other.example.org"]
    )
    (src / "other.pem").write_text(key_pem(ed_key) + cert_pem(pki.inter) + cert_pem(ed_leaf))
    (src / "wrong.pem").write_text(cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(ec_key()))

    bundles, errors = certs.load_bundles([str(src)], now=NOW)
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state), now=NOW)
    crt_list = bundle_layout.materialize(bundles, str(state), default)
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n"
        "    maxconn 100\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 5s\n"
        "    timeout server 5s\n"
        "frontend https\n"
        f"    bind 127.0.0.1:{port} ssl crt-list {crt_list}\n"
        "    default_backend nothing\n"
        "backend nothing\n"
    )
    return str(cfg), crt_list, port, bundles, errors


@needs_haproxy
def test_haproxy_accepts_materialized_crt_list(tmp_path, pki: Pki) -> None:
    cfg, crt_list, _, bundles, errors = _haproxy_setup(tmp_path, pki)
    assert len(bundles) == 2
    assert [(os.path.basename(e.source), e.reason) for e in errors] == [
        ("wrong.pem", "private key does not match any of the 2 certificates")
    ]
    lines = open(crt_list).read().splitlines()
    assert len(lines) == 3
    assert fp(pki.other) not in open(crt_list).read()  # the mismatched bundle's leaf
    result = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

    # Control: had the mismatched bundle been listed, HAProxy would refuse the whole config.
    with open(crt_list, "a") as handle:
        handle.write(f"{errors[0].source} other.example.org\n")
    result = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "inconsistencies between private key and certificate" in result.stdout + result.stderr


@needs_haproxy
@pytest.mark.e2e
def test_haproxy_serves_certificate_by_sni(tmp_path, pki: Pki) -> None:
    cfg, crt_list, port, bundles, _ = _haproxy_setup(tmp_path, pki)
    by_source = {os.path.basename(b.source): b.fingerprint for b in bundles}
    default_path = open(crt_list).readline().strip()
    default_fp = fp(x509.load_pem_x509_certificate(open(default_path, "rb").read()))
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.poll() is not None else ""
                    pytest.fail(f"haproxy did not start: {out}")
                time.sleep(0.05)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def served(sni: str | None) -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=sni) as tls:
                    return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

        assert served("www.example.com") == by_source["example.pem"]
        assert served("api.example.com") == by_source["example.pem"]  # wildcard
        assert served("other.example.org") == by_source["other.pem"]
        assert served("unknown.test") == default_fp
        assert served(None) == default_fp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------- default, renewals, --dry


def _dated(source: str, names: tuple[str, ...], days: int, fingerprint: str,
           key_type: str = "ec") -> Bundle:
    return Bundle(source, names, NOW + timedelta(days=days), fingerprint, "PEM", key_type)


def test_build_crt_list_puts_the_default_bundle_first_with_its_filters() -> None:
    a = _bundle("a", ("a.example.com",))
    z = _bundle("z", ("z.example.com", "www.z.example.com"))
    text = bundle_layout.build_crt_list("/s/z.pem", [("/s/a.pem", a), ("/s/z.pem", z)])
    assert text == "/s/z.pem z.example.com www.z.example.com\n/s/a.pem a.example.com\n"


def test_parse_bundle_records_the_key_type(pki: Pki) -> None:
    assert certs.parse_bundle(pki.bundle_text(), "x.pem", NOW).key_type == "ec"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = cert_pem(make_cert("r.test", key, sans=["r.test"])) + key_pem(key)
    assert certs.parse_bundle(text, "r.pem", NOW).key_type == "rsa"


def test_supersede_keeps_the_bundle_that_expires_last_per_name_set_and_key_type() -> None:
    old = _dated("old.pem", ("a.test", "www.a.test"), 5, "01" * 32)
    new = _dated("new.pem", ("www.a.test", "a.test"), 92, "02" * 32)
    tie = _dated("tie.pem", ("a.test", "www.a.test"), 92, "03" * 32)
    rsa_old = _dated("rsa.pem", ("a.test", "www.a.test"), 5, "04" * 32, "rsa")
    subset = _dated("sub.pem", ("a.test",), 1, "05" * 32)
    same = _dated("copy.pem", ("a.test", "www.a.test"), 92, "02" * 32)  # new.pem, twice
    kept, dropped = certs.supersede([old, new, tie, rsa_old, subset, same])
    assert kept == [new, rsa_old, subset, same]  # order kept; the first of equals wins
    assert dropped == [(old, new), (tie, new)]
    assert certs.supersede([]) == ([], [])


def test_plan_layout_is_what_materialize_writes_without_touching_the_disk(
        tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    state = tmp_path / "state"
    bundle_layout.plan_layout([one, two], str(state), str(state / "default.pem"), default=two)
    assert not state.exists()
    for stable in (False, True):
        for default in (None, two):
            plan = bundle_layout.plan_layout([one, two], str(state), str(state / "default.pem"),
                                     stable, default=default)
            done = bundle_layout.materialize_bundles([one, two], str(state),
                                             str(state / "default.pem"), stable, default=default)
            assert (done.crt_list, done.paths, done.default_cert) == (
                plan.crt_list, plan.paths, plan.default_cert)
            assert open(done.crt_list).read() == plan.crt_list_text
            expected = str(state / "default.pem") if default is None else done.paths[two.fingerprint]
            assert open(done.crt_list).read().split()[0] == expected


def test_materialize_writes_extra_bundles_without_listing_them(tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    done = bundle_layout.materialize_bundles([one], str(tmp_path), str(tmp_path / "d.pem"), extra=[two])
    assert os.path.isfile(done.paths[two.fingerprint])
    assert done.paths[two.fingerprint] not in open(done.crt_list).read()


def test_load_bundles_reads_a_companion_key_file(tmp_path, pki: Pki) -> None:
    (tmp_path / "site.pem").write_text(cert_pem(pki.leaf) + cert_pem(pki.inter))
    (tmp_path / "site.pem.key").write_text(key_pem(pki.leaf_key))
    (tmp_path / "wrong.pem").write_text(cert_pem(pki.other))
    (tmp_path / "wrong.pem.key").write_text(key_pem(pki.leaf_key))
    bundles, errors = certs.load_bundles([str(tmp_path)], NOW)
    assert [b.fingerprint for b in bundles] == [fp(pki.leaf)]
    assert "PRIVATE KEY" in bundles[0].pem
    assert [(os.path.basename(e.source), e.reason) for e in errors] == [
        ("wrong.pem", "private key does not match the certificate")]
