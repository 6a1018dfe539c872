"""Tests for servicerouter.tls.bundles: every rule of parsing a bundle, generating and writing one.

All key material is generated here with ``cryptography`` (EC where possible, so it is fast).
"""

from __future__ import annotations

import os
import pickle
import random
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, ed25519

from servicerouter.tls import bundles as certs
from servicerouter.tls.bundles import BundleError
from tests.tls.bundle_pki import (
    NOW,
    Pki,
    cert_pem,
    ec_key,
    file_mode,
    fp,
    key_pem,
    make_cert,
    reason,
    split_blocks,
)

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


def test_write_private_file_mode_atomic_and_no_symlink_following(tmp_path) -> None:
    old_umask = os.umask(0)  # a permissive umask must not widen the mode
    try:
        target = tmp_path / "key.pem"
        certs.write_private_file(str(target), "one")
        assert target.read_text() == "one" and file_mode(target) == 0o600
        certs.write_private_file(str(target), "two")
        assert target.read_text() == "two" and file_mode(target) == 0o600
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
    assert file_mode(state) == 0o700 and file_mode(path) == 0o600
    first = open(path).read()
    assert certs.parse_bundle(first, path, NOW).names == ("servicerouter.invalid",)

    # Valid and far from expiry: reused as is (mode repaired if loosened).
    os.chmod(path, 0o644)
    assert certs.ensure_default_certificate(str(state), now=NOW + timedelta(days=100)) == path
    assert open(path).read() == first and file_mode(path) == 0o600

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
    assert file_mode(path) == 0o600


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


