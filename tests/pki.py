"""Test certificates: one builder for every test that needs a small PKI.

Tests of bundles, SNI, expiry and mismatched keys all need the same few
things (a CA, leaves it signs, PEM text in any order), so they build them
here rather than each keeping its own copy of the X.509 boilerplate.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.now(UTC).replace(microsecond=0)


def cn_name(cn: str) -> x509.Name:
    """An X.509 name holding only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key: fast to make, accepted by HAProxy and every client."""
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(cn: str, key, issuer=None, sans: Iterable[str] = (), ca: bool = False,
              days: float = 90, start: float = -1) -> x509.Certificate:
    """A certificate for ``key`` valid from ``start`` to ``days`` days from now.

    Self-signed unless ``issuer`` = (certificate, key) is given; ``sans`` become
    DNS names (none: no SAN extension, to test CN-only bundles).
    """
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (cn_name(cn), key)
    builder = (x509.CertificateBuilder().subject_name(cn_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + timedelta(days=start))
               .not_valid_after(NOW + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    sans = list(sans)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def pem(*items) -> str:
    """Certificates and keys as one PEM text, in the order given (bundles vary it)."""
    out = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item.public_bytes(serialization.Encoding.PEM).decode())
        else:
            out.append(item.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode())
    return "".join(out)
