"""Fixtures of the TLS tests: one PKI per module (EC keys, so it is fast)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tls.bundle_pki import Pki, ec_key, make_cert


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

