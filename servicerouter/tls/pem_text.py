"""PEM block labels, the SNI name pattern and time helpers: the parts of the TLS code
that need no ``cryptography``.

A cold one-shot with no certificate of its own only writes a self-signed default and
a crt-list; keeping these apart from :mod:`servicerouter.tls.x509_checks` lets the
modules it goes through (bundles, manager, bundle_layout) import without loading
``cryptography`` (a twentieth of such a run), which they then import where a
certificate is parsed or made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n(?P<body>.*?)-----END (?P=label)-----",
    re.DOTALL,
)
CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
KEY_LABELS = frozenset(
    {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"}
)
# Harmless companions: openssl ecparam -genkey emits EC PARAMETERS before the key;
# DH PARAMETERS in a bundle are read by HAProxy, so they are kept (after the key).
IGNORED_LABELS = frozenset({"EC PARAMETERS"})
DH_LABEL = "DH PARAMETERS"

# A name usable as a HAProxy SNI filter: a host name, optionally "*." + host name.
DNS_NAME = re.compile(
    r"^(\*\.)?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$"
)


def aware_utc(moment: datetime) -> datetime:
    """Treat a naive datetime as UTC; convert an aware one to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
