"""The X.509 and PEM details behind :func:`servicerouter.tls.bundles.parse_bundle`.

Pure helpers: split PEM text into labelled blocks, load the one key, order a chain
issuer-by-issuer, read the names a certificate is valid for. Each check reports a
problem through the ``fail`` callback it is given, so the caller's ``BundleError``
names the bundle.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

# The PEM labels, SNI name pattern and time helpers need no cryptography
# (servicerouter.tls.pem_text); re-exported here for the checks' callers.
from servicerouter.tls.pem_text import (  # noqa: F401 - re-exported
    CERT_LABELS,
    DH_LABEL,
    DNS_NAME,
    IGNORED_LABELS,
    KEY_LABELS,
    PEM_BLOCK,
    aware_utc,
    iso_seconds,
)

SUPPORTED_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
def spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_spki(cert: x509.Certificate) -> bytes | None:
    try:
        return spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return None


def load_key(label: str, block: str, fail):
    """Load the one private key block, refusing encrypted and unsupported keys."""
    if label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in block:
        raise fail("encrypted private key is not supported")
    try:
        key = serialization.load_pem_private_key(block.encode("ascii"), password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise fail("encrypted private key is not supported") from None
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise fail(f"private key is not valid ({exc})") from None
    if not isinstance(key, SUPPORTED_KEYS):
        raise fail(f"unsupported private key type {type(key).__name__}")
    return key


def key_type_of(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ed448"


def order_chain(certs: list[x509.Certificate], leaf_index: int, fail) -> list[x509.Certificate]:
    """Leaf first, then each certificate's issuer; anything left over is an error."""
    remaining = [i for i in range(len(certs)) if i != leaf_index]
    chain = [leaf_index]
    while remaining:
        current = certs[chain[-1]]
        if current.issuer == current.subject:
            break  # self-issued: nothing can come after it
        issuer = next((i for i in remaining if certs[i].subject == current.issuer), None)
        if issuer is None:
            break
        remaining.remove(issuer)
        chain.append(issuer)
    if remaining:
        stray = remaining[0]
        for i in chain:
            if certs[i] == certs[stray]:
                raise fail(f"certificate {stray + 1} is a duplicate of certificate {i + 1}")
        raise fail(f"certificate {stray + 1} does not belong to the chain")
    return [certs[i] for i in chain]


def dns_names(cert: x509.Certificate, fail) -> tuple[str, ...]:
    """DNS SANs, else the CN; lower-cased, de-duplicated, each a valid SNI filter."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        candidates = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        candidates = []
    from_san = bool(candidates)
    if not from_san:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        candidates = [str(cns[0].value)] if cns else []
    names: list[str] = []
    for raw in candidates:
        name = raw.strip().lower().rstrip(".")
        if not DNS_NAME.match(name):
            if from_san:
                raise fail(f"subjectAltName {raw!r} is not a usable DNS name")
            break
        if name not in names:
            names.append(name)
    if not names:
        raise fail("certificate has no DNS name (no subjectAltName DNS entry, no host name CN)")
    return tuple(names)


def normalise_dh(block: str, fail) -> str:
    try:
        params = serialization.load_pem_parameters(block.encode("ascii"))
        return params.parameter_bytes(
            serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3
        ).decode("ascii")
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise fail(f"DH parameters are not valid ({exc})") from None
