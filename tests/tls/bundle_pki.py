"""The TLS tests' PKI: certificates and keys in every shape a bundle can take.

Shared by the bundle-parsing and the file-layout tests (and their conftest's
fixtures), so both build certificates the same way.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from servicerouter.tls import bundles as certs
from servicerouter.tls.bundles import BundleError

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




def file_mode(path) -> int:
    """Permission bits of ``path`` itself (a symlink is not followed)."""
    return stat.S_IMODE(os.lstat(path).st_mode)
