"""Certificate bundles: validate them before HAProxy sees them.

A broken bundle (wrong key, expired, chain out of order) makes ``haproxy -c`` fail or,
worse, serves a certificate clients reject. So every bundle is checked here first, a
bad one is reported as a ``BundleError`` and left out, and the good ones are kept in one
normalised shape (leaf, intermediates issuer-by-issuer, key). When no bundle is
configured a self-signed default keeps the HTTPS frontend valid.

The parsing/validation is a pure function of its inputs (the caller passes ``now``;
the X.509 details are in :mod:`servicerouter.tls.x509_checks`); reading bundle files and
writing private files are thin edges around it. Where the validated bundles and their
crt-list go on disk is :mod:`servicerouter.tls.bundle_layout`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from servicerouter.apply.files import fsync_dir
from servicerouter.tls.pem_text import (
    CERT_LABELS,
    DH_LABEL,
    IGNORED_LABELS,
    KEY_LABELS,
    PEM_BLOCK,
    aware_utc,
    iso_seconds,
)

TEMP_PREFIX = ".tmp-"
_MAX_FILE_BYTES = 1 << 20
_BUNDLE_SUFFIXES = (".pem", ".crt")
# HAProxy's ssl-load-extra-files companions; never bundles on their own.
_COMPANION_SUFFIXES = (".key", ".ocsp", ".issuer", ".sctl")
_DEFAULT_RENEW_DAYS = 30


@dataclass(frozen=True)
class Bundle:
    """One validated certificate bundle, ready to be written for HAProxy."""

    source: str
    names: tuple[str, ...]
    not_after: datetime
    fingerprint: str
    pem: str = field(repr=False)  # holds the private key: keep it out of logs
    # "rsa", "ec", "ed25519", "ed448": HAProxy may serve one certificate of each
    # type for the same names (it picks by what the client supports).
    key_type: str = ""

    def expires_within(self, now: datetime, days: int) -> bool:
        """True if the leaf expires at or before ``now + days``."""
        return self.not_after <= aware_utc(now) + timedelta(days=days)


class BundleError(Exception):
    """A bundle that cannot be used; ``str()`` is ``"SOURCE: REASON"``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep it picklable despite the two-argument constructor
        return (type(self), (self.source, self.reason))


def parse_bundle(text: str, source: str, now: datetime) -> Bundle:
    """Validate PEM ``text`` (certificates and one key, any order) and normalise it.

    Raises ``BundleError`` naming the first problem found. A naive ``now`` is taken as UTC.
    """
    # cryptography only where a certificate is parsed or made (see tls/pem_text.py)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from servicerouter.tls.x509_checks import (
        cert_spki,
        dns_names,
        key_type_of,
        load_key,
        normalise_dh,
        order_chain,
        spki,
    )

    now = aware_utc(now)

    def fail(reason: str) -> BundleError:
        return BundleError(source, reason)

    blocks = [(m.group("label"), m.group(0)) for m in PEM_BLOCK.finditer(text)]
    if text.count("-----BEGIN ") > len(blocks):
        raise fail("malformed or truncated PEM block (BEGIN without a matching END)")
    cert_blocks: list[str] = []
    key_blocks: list[tuple[str, str]] = []
    extra_blocks: list[str] = []
    for label, block in blocks:
        if label in CERT_LABELS:
            cert_blocks.append(block)
        elif label in KEY_LABELS:
            key_blocks.append((label, block))
        elif label == DH_LABEL:
            extra_blocks.append(block)
        elif label not in IGNORED_LABELS:
            raise fail(f"unsupported PEM block {label!r}")

    if not cert_blocks:
        raise fail("no certificate found")
    if not key_blocks:
        raise fail("no private key found")
    if len(key_blocks) > 1:
        raise fail(f"more than one private key ({len(key_blocks)} found)")

    certs: list[x509.Certificate] = []
    for number, block in enumerate(cert_blocks, 1):
        try:
            certs.append(x509.load_pem_x509_certificate(block.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:
            raise fail(f"certificate {number} is not a valid X.509 certificate ({exc})") from None

    key = load_key(*key_blocks[0], fail)
    key_spki = spki(key.public_key())
    matches = [i for i, cert in enumerate(certs) if cert_spki(cert) == key_spki]
    if not matches:
        what = "the certificate" if len(certs) == 1 else f"any of the {len(certs)} certificates"
        raise fail(f"private key does not match {what}")
    if len(matches) > 1:
        numbers = ", ".join(str(i + 1) for i in matches)
        raise fail(f"private key matches more than one certificate ({numbers})")
    leaf = certs[matches[0]]

    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_after < now:
        raise fail(f"certificate expired on {iso_seconds(not_after)}")
    if not_before > now:
        raise fail(f"certificate is not valid before {iso_seconds(not_before)}")

    chain = order_chain(certs, matches[0], fail)
    names = dns_names(leaf, fail)

    parts = [cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in chain]
    parts.append(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    )
    parts.extend(normalise_dh(block, fail) for block in extra_blocks)
    return Bundle(
        source=source,
        names=names,
        not_after=not_after,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        pem="".join(parts),
        key_type=key_type_of(key),
    )


def generate_self_signed(
    common_name: str = "servicerouter.invalid", days: int = 3650, now: datetime | None = None
) -> str:
    """Return HAProxy-ready PEM (certificate then PKCS#8 key) for a self-signed EC P-256 cert."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = aware_utc(now) if now is not None else datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # tolerate small clock skew
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii") + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def supersede(bundles: Sequence[Bundle]) -> tuple[list[Bundle], list[tuple[Bundle, Bundle]]]:
    """Leave out bundles a renewed one replaces: ``(kept, [(superseded, by), ...])``.

    Bundles for the same set of names and the same key type (an old and a renewed
    certificate side by side) would tie in HAProxy's SNI lookup, and the first
    crt-list line would win whatever its expiry. The one that expires last is
    kept (the first of equals on a tie); RSA and ECDSA certificates for the same
    names are both kept, since HAProxy picks between them by client support.
    Bundles with one leaf fingerprint are the same certificate and all stay.
    Order is kept.  Pure.
    """
    best: dict[tuple[frozenset[str], str], Bundle] = {}
    for bundle in bundles:
        group = (frozenset(bundle.names), bundle.key_type)
        current = best.get(group)
        if current is None or bundle.not_after > current.not_after:
            best[group] = bundle
    kept: list[Bundle] = []
    dropped: list[tuple[Bundle, Bundle]] = []
    for bundle in bundles:
        winner = best[(frozenset(bundle.names), bundle.key_type)]
        if winner.fingerprint == bundle.fingerprint:
            kept.append(bundle)
        else:
            dropped.append((bundle, winner))
    return kept, dropped


def expiry_report(bundles: Iterable[Bundle], now: datetime, days: int = 14) -> list[dict]:
    """Summarise bundles for status output, soonest expiry first."""
    now = aware_utc(now)
    return [
        {
            "source": bundle.source,
            "names": list(bundle.names),
            "not_after": iso_seconds(bundle.not_after),
            "days_left": (bundle.not_after - now).days,
            "expiring": bundle.expires_within(now, days),
        }
        for bundle in sorted(bundles, key=lambda b: (b.not_after, b.source))
    ]


def load_bundles(
    paths: Iterable[str], now: datetime | None = None
) -> tuple[list[Bundle], list[BundleError]]:
    """Read and validate bundles from files and directories; problems are returned, not raised.

    In a directory (not recursive, sorted by name) ``*.pem``/``*.crt`` files must be
    bundles; other regular files are tried only if they hold a PEM certificate, so keys,
    CSRs and notes lying beside them are skipped. Dotfiles, ``README*`` and HAProxy's
    ``.key/.ocsp/.issuer/.sctl`` companions are skipped. A file reached twice is read once.
    """
    now = aware_utc(now) if now is not None else datetime.now(UTC)
    bundles: list[Bundle] = []
    errors: list[BundleError] = []
    seen: set[str] = set()

    def take(path: str, optional: bool) -> None:
        real = os.path.realpath(path)
        if real in seen:
            return
        seen.add(real)
        try:
            text = read_bundle_text(path)
        except BundleError as exc:
            errors.append(exc)
            return
        if optional and "-----BEGIN CERTIFICATE-----" not in text:
            return
        try:
            bundles.append(parse_bundle(text, path, now))
        except BundleError as exc:
            errors.append(exc)

    for path in paths:
        if os.path.isdir(path):
            try:
                entries = sorted(os.listdir(path))
            except OSError as exc:
                errors.append(BundleError(path, f"cannot list directory ({exc.strerror})"))
                continue
            for entry in entries:
                lowered = entry.lower()
                if entry.startswith(".") or lowered.startswith("readme"):
                    continue
                if lowered.endswith(_COMPANION_SUFFIXES):
                    continue
                full = os.path.join(path, entry)
                named_bundle = lowered.endswith(_BUNDLE_SUFFIXES)
                if os.path.isdir(full):
                    continue
                if not named_bundle and not os.path.isfile(full):
                    continue  # sockets, fifos, dangling links that do not claim to be bundles
                take(full, optional=not named_bundle)
        else:
            take(path, optional=False)
    return bundles, errors


def read_bundle_text(path: str) -> str:
    """The PEM text HAProxy reads for ``path``: the file, plus ``PATH.key`` if it holds no key.

    HAProxy 2.6 (``ssl-load-extra-files`` defaults to all) loads the private key
    from the companion file when the certificate file has none; so do we, so the
    pair is validated (and normalised copies are whole) like any other bundle.
    """
    return with_companion_key(path, _read_text(path))


def with_companion_key(path: str, text: str) -> str:
    """``text`` (read from ``path``) plus ``PATH.key`` when ``text`` holds no private key."""
    if "PRIVATE KEY-----" not in text and os.path.isfile(path + ".key"):
        text = text.rstrip("\n") + "\n" + _read_text(path + ".key")
    return text


def write_private_file(path: str, text: str) -> None:
    """Atomically replace ``path`` with ``text``, mode 0600.

    Writes a fresh temp file in the same directory (O_EXCL, so no symlink is followed),
    fsyncs it, renames it over ``path`` (a symlink at ``path`` is replaced, not
    followed) and fsyncs the directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{base}.{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may only narrow; make it exact
            data = text.encode("utf-8")
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def ensure_default_certificate(state_dir: str, now: datetime | None = None) -> str:
    """Return ``<state_dir>/default.pem``, reusing a valid one or generating a self-signed one.

    An existing file is reused if it is a regular file that parses and does not expire
    within 30 days. ``state_dir`` is created with mode 0700 if missing.
    """
    now = aware_utc(now) if now is not None else datetime.now(UTC)
    make_private_dir(state_dir)
    path = os.path.join(state_dir, "default.pem")
    try:
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            bundle = parse_bundle(_read_text(path), path, now)
            if not bundle.expires_within(now, _DEFAULT_RENEW_DAYS):
                if stat.S_IMODE(info.st_mode) != 0o600:
                    os.chmod(path, 0o600)
                return path
    except (OSError, BundleError):
        pass
    write_private_file(path, generate_self_signed(now=now))
    return path


def _read_text(path: str) -> str:
    """Read a bundle file as text; every failure becomes a ``BundleError``."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(path, "not a regular file or directory")
        if info.st_size > _MAX_FILE_BYTES:
            raise BundleError(path, f"file too large ({info.st_size} bytes)")
        with open(path, "rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise BundleError(path, "no such file or directory") from None
    except OSError as exc:
        raise BundleError(path, f"cannot read ({exc.strerror or exc})") from None
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def make_private_dir(path: str) -> None:
    """Create ``path`` with mode 0700 if missing; an existing directory is left as it is."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    os.chmod(path, 0o700)  # makedirs' mode is filtered by the umask
