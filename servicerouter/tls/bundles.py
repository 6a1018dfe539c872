"""Certificate bundles: validate them before HAProxy sees them, and hand HAProxy a crt-list.

A broken bundle (wrong key, expired, chain out of order) makes ``haproxy -c`` fail or,
worse, serves a certificate clients reject. So every bundle is checked here first, a
bad one is reported as a ``BundleError`` and left out, and the good ones are written
in one normalised shape (leaf, intermediates issuer-by-issuer, key) and listed in a
crt-list whose SNI filters come from the certificates' own names. When no bundle is
configured a self-signed default keeps the HTTPS frontend valid.

The parsing/validation and crt-list building are pure functions of their inputs (the
caller passes ``now``); reading directories and writing files are thin edges around them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicerouter.apply.files import fsync_dir

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n(?P<body>.*?)-----END (?P=label)-----",
    re.DOTALL,
)
_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_KEY_LABELS = frozenset(
    {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"}
)
# Harmless companions: openssl ecparam -genkey emits EC PARAMETERS before the key;
# DH PARAMETERS in a bundle are read by HAProxy, so they are kept (after the key).
_IGNORED_LABELS = frozenset({"EC PARAMETERS"})
_DH_LABEL = "DH PARAMETERS"
_SUPPORTED_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
# A name usable as a HAProxy SNI filter: a host name, optionally "*." + host name.
_DNS_NAME = re.compile(
    r"^(\*\.)?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$"
)
_BUNDLE_FILE = re.compile(r"^[0-9a-f]{64}\.pem$")
_STABLE_BUNDLE_FILE = re.compile(r"^[a-z0-9_.-]+--[0-9a-f]{16}\.pem$")
_TEMP_PREFIX = ".tmp-"
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
        return self.not_after <= _aware(now) + timedelta(days=days)


class BundleError(Exception):
    """A bundle that cannot be used; ``str()`` is ``"SOURCE: REASON"``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep it picklable despite the two-argument constructor
        return (type(self), (self.source, self.reason))


# --------------------------------------------------------------------------- pure


def parse_bundle(text: str, source: str, now: datetime) -> Bundle:
    """Validate PEM ``text`` (certificates and one key, any order) and normalise it.

    Raises ``BundleError`` naming the first problem found. A naive ``now`` is taken as UTC.
    """
    now = _aware(now)

    def fail(reason: str) -> BundleError:
        return BundleError(source, reason)

    blocks = [(m.group("label"), m.group(0)) for m in _PEM_BLOCK.finditer(text)]
    if text.count("-----BEGIN ") > len(blocks):
        raise fail("malformed or truncated PEM block (BEGIN without a matching END)")
    cert_blocks: list[str] = []
    key_blocks: list[tuple[str, str]] = []
    extra_blocks: list[str] = []
    for label, block in blocks:
        if label in _CERT_LABELS:
            cert_blocks.append(block)
        elif label in _KEY_LABELS:
            key_blocks.append((label, block))
        elif label == _DH_LABEL:
            extra_blocks.append(block)
        elif label not in _IGNORED_LABELS:
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

    key = _load_key(*key_blocks[0], fail)
    key_spki = _spki(key.public_key())
    matches = [i for i, cert in enumerate(certs) if _cert_spki(cert) == key_spki]
    if not matches:
        what = "the certificate" if len(certs) == 1 else f"any of the {len(certs)} certificates"
        raise fail(f"private key does not match {what}")
    if len(matches) > 1:
        numbers = ", ".join(str(i + 1) for i in matches)
        raise fail(f"private key matches more than one certificate ({numbers})")
    leaf = certs[matches[0]]

    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_after < now:
        raise fail(f"certificate expired on {_iso(not_after)}")
    if not_before > now:
        raise fail(f"certificate is not valid before {_iso(not_before)}")

    chain = _order_chain(certs, matches[0], fail)
    names = _names(leaf, fail)

    parts = [cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in chain]
    parts.append(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    )
    parts.extend(_normalise_dh(block, fail) for block in extra_blocks)
    return Bundle(
        source=source,
        names=names,
        not_after=not_after,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        pem="".join(parts),
        key_type=_key_type(key),
    )


def generate_self_signed(
    common_name: str = "servicerouter.invalid", days: int = 3650, now: datetime | None = None
) -> str:
    """Return HAProxy-ready PEM (certificate then PKCS#8 key) for a self-signed EC P-256 cert."""
    now = _aware(now) if now is not None else datetime.now(UTC)
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


def build_crt_list(default_pem_path: str, bundles: Sequence[tuple[str, Bundle]]) -> str:
    """Return crt-list text: the default certificate first, then one SNI-filtered line per bundle.

    HAProxy serves the first line's certificate to clients whose SNI matches no
    filter (or who send none). When ``default_pem_path`` is one of the bundles'
    paths, that bundle's line (with its filters) comes first; otherwise the bare
    path does. The other lines are sorted by path (identical entries collapse); a
    path or name that would not survive HAProxy's whitespace-separated syntax
    raises ``ValueError``.
    """
    _check_crt_path(default_pem_path)
    entries = set()
    for path, bundle in bundles:
        _check_crt_path(path)
        for name in bundle.names:
            if not _DNS_NAME.match(name):
                raise ValueError(f"invalid SNI filter {name!r} for {path}")
        entries.add((path, bundle.names))
    first = [entry for entry in sorted(entries) if entry[0] == default_pem_path][:1]
    lines = [" ".join((first[0][0], *first[0][1]))] if first else [default_pem_path]
    lines.extend(" ".join((path, *names)) for path, names in sorted(entries)
                 if (path, names) not in first)
    return "\n".join(lines) + "\n"


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
    now = _aware(now)
    return [
        {
            "source": bundle.source,
            "names": list(bundle.names),
            "not_after": _iso(bundle.not_after),
            "days_left": (bundle.not_after - now).days,
            "expiring": bundle.expires_within(now, days),
        }
        for bundle in sorted(bundles, key=lambda b: (b.not_after, b.source))
    ]


# --------------------------------------------------------------------------- edges


def load_bundles(
    paths: Iterable[str], now: datetime | None = None
) -> tuple[list[Bundle], list[BundleError]]:
    """Read and validate bundles from files and directories; problems are returned, not raised.

    In a directory (not recursive, sorted by name) ``*.pem``/``*.crt`` files must be
    bundles; other regular files are tried only if they hold a PEM certificate, so keys,
    CSRs and notes lying beside them are skipped. Dotfiles, ``README*`` and HAProxy's
    ``.key/.ocsp/.issuer/.sctl`` companions are skipped. A file reached twice is read once.
    """
    now = _aware(now) if now is not None else datetime.now(UTC)
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
        tmp = os.path.join(directory, f"{_TEMP_PREFIX}{base}.{secrets.token_hex(6)}")
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
    now = _aware(now) if now is not None else datetime.now(UTC)
    _make_private_dir(state_dir)
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


@dataclass(frozen=True)
class Materialized:
    """Where :func:`materialize_bundles` put things, and which bundle files it rewrote."""

    crt_list: str
    paths: dict[str, str]  # leaf fingerprint -> the file HAProxy reads
    written: frozenset[str] = frozenset()  # bundle files whose content changed this time
    default_cert: str = ""  # the crt-list's first line: the certificate for no/unknown SNI


@dataclass(frozen=True)
class Layout:
    """Where :func:`materialize_bundles` puts each file, computed without touching the disk."""

    crt_list: str
    crt_list_text: str
    default_cert: str
    files: tuple[tuple[str, Bundle], ...]  # (bundle file, what it holds), first of each path
    paths: dict[str, str]  # leaf fingerprint -> bundle file


def materialize(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str) -> str:
    """Content-addressed :func:`materialize_bundles`; returns the crt-list path."""
    return materialize_bundles(bundles, state_dir, default_pem_path).crt_list


def stable_bundle_name(bundle: Bundle) -> str:
    """``<first name>--<hash of the source path>.pem``: the same file for the same source.

    A renewed certificate written over the same source file keeps its path, so
    neither haproxy.cfg nor the crt-list changes and the Runtime API can swap it
    in place; the first name is there for the operator reading the directory.
    """
    slug = bundle.names[0].replace("*", "wildcard") if bundle.names else "bundle"
    source = hashlib.sha256(os.path.abspath(bundle.source).encode()).hexdigest()[:16]
    return f"{slug}--{source}.pem"


def plan_layout(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str,
                stable: bool = False, default: Bundle | None = None,
                extra: Sequence[Bundle] = ()) -> Layout:
    """The paths and crt-list :func:`materialize_bundles` writes, without writing.  Pure.

    ``--dry`` uses it to print the config a real run would write, so it names the
    same (content-addressed) crt-list a real run leaves on disk.
    """
    state_dir = os.path.abspath(state_dir)
    bundle_dir = os.path.join(state_dir, "bundles")
    chosen: dict[str, tuple[str, Bundle]] = {}
    taken: set[str] = set()
    for bundle in [*bundles, *extra]:
        if bundle.fingerprint in chosen:
            continue
        name = stable_bundle_name(bundle) if stable else f"{bundle.fingerprint}.pem"
        path = os.path.join(bundle_dir, name)
        if path in taken:
            continue  # one source read twice (same file, two spellings): first wins
        taken.add(path)
        chosen[bundle.fingerprint] = (path, bundle)
    listed = [chosen[b.fingerprint] for b in bundles if b.fingerprint in chosen]
    default_cert = os.path.abspath(default_pem_path)
    if default is not None and default.fingerprint in chosen:
        default_cert = chosen[default.fingerprint][0]
    # The crt-list is named by its content: a change of the files or names it
    # lists changes the path in haproxy.cfg, so the config differs and HAProxy
    # is reloaded, and the file the running config names is never rewritten under it.
    text = build_crt_list(default_cert, listed)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Layout(os.path.join(state_dir, f"crt-list-{digest}"), text, default_cert,
                  tuple(chosen.values()), {fp: path for fp, (path, _) in chosen.items()})


def materialize_bundles(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str,
                        stable: bool = False, default: Bundle | None = None,
                        extra: Sequence[Bundle] = ()) -> Materialized:
    """Write bundles under ``<state_dir>/bundles/`` and a crt-list ``<state_dir>/crt-list-*``.

    Bundle files are named by leaf fingerprint (``stable=False``: any certificate
    change changes the config, so a plain reload applies it) or by source
    (``stable=True``, :func:`stable_bundle_name`: a renewal keeps the path, and
    the caller applies the new content through the Runtime API or a reload).
    The crt-list's first line is ``default``'s file when given, else
    ``default_pem_path``. ``extra`` bundles are written but not listed (a port's
    normalised copy whose names another bundle serves). Unchanged files are not
    rewritten. Bundles sharing a leaf fingerprint collapse to the first. Stale
    bundle files are removed after the new crt-list is in place, so the crt-list
    on disk never names a missing file.
    """
    layout = plan_layout(bundles, state_dir, default_pem_path, stable, default, extra)
    state_dir = os.path.dirname(layout.crt_list)
    _make_private_dir(state_dir)
    bundle_dir = os.path.join(state_dir, "bundles")
    _make_private_dir(bundle_dir)

    changed: set[str] = set()
    for path, bundle in layout.files:
        if _current_text(path) != bundle.pem:
            write_private_file(path, bundle.pem)
            changed.add(path)
    if _current_text(layout.crt_list) != layout.crt_list_text:
        write_private_file(layout.crt_list, layout.crt_list_text)
    _prune_crt_lists(state_dir, keep=layout.crt_list)

    keep = {os.path.basename(path) for path, _ in layout.files}
    for entry in os.listdir(bundle_dir):
        ours = _BUNDLE_FILE.match(entry) or _STABLE_BUNDLE_FILE.match(entry)
        if (ours and entry not in keep) or entry.startswith(_TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(bundle_dir, entry))
    return Materialized(layout.crt_list, dict(layout.paths), frozenset(changed),
                        layout.default_cert)


# --------------------------------------------------------------------------- helpers

KEEP_CRT_LISTS = 5


def _prune_crt_lists(state_dir: str, keep: str) -> None:
    """Keep the newest crt-lists: an older config on disk may still name one."""
    entries = []
    for entry in os.listdir(state_dir):
        if entry.startswith("crt-list-") and not entry.endswith(".tmp"):
            path = os.path.join(state_dir, entry)
            with contextlib.suppress(FileNotFoundError):
                entries.append((os.stat(path).st_mtime, path))
    entries.sort(reverse=True)
    for _mtime, path in entries[KEEP_CRT_LISTS:]:
        if path != keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _aware(moment: datetime) -> datetime:
    """Treat a naive datetime as UTC; convert an aware one to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_spki(cert: x509.Certificate) -> bytes | None:
    try:
        return _spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return None


def _load_key(label: str, block: str, fail):
    """Load the one private key block, refusing encrypted and unsupported keys."""
    if label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in block:
        raise fail("encrypted private key is not supported")
    try:
        key = serialization.load_pem_private_key(block.encode("ascii"), password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise fail("encrypted private key is not supported") from None
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise fail(f"private key is not valid ({exc})") from None
    if not isinstance(key, _SUPPORTED_KEYS):
        raise fail(f"unsupported private key type {type(key).__name__}")
    return key


def _key_type(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ed448"


def _order_chain(certs: list[x509.Certificate], leaf_index: int, fail) -> list[x509.Certificate]:
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


def _names(cert: x509.Certificate, fail) -> tuple[str, ...]:
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
        if not _DNS_NAME.match(name):
            if from_san:
                raise fail(f"subjectAltName {raw!r} is not a usable DNS name")
            break
        if name not in names:
            names.append(name)
    if not names:
        raise fail("certificate has no DNS name (no subjectAltName DNS entry, no host name CN)")
    return tuple(names)


def _normalise_dh(block: str, fail) -> str:
    try:
        params = serialization.load_pem_parameters(block.encode("ascii"))
        return params.parameter_bytes(
            serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3
        ).decode("ascii")
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise fail(f"DH parameters are not valid ({exc})") from None


def _check_crt_path(path: str) -> None:
    if not path or any(ch.isspace() for ch in path) or path.startswith("#"):
        raise ValueError(f"crt-list path {path!r} is empty, starts with '#' or has whitespace")


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


def _current_text(path: str) -> str | None:
    """Contents of an existing regular file (not through a symlink), else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            return None  # rewrite to fix the mode
        return text
    except (OSError, UnicodeDecodeError):
        return None


def _make_private_dir(path: str) -> None:
    """Create ``path`` with mode 0700 if missing; an existing directory is left as it is."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    os.chmod(path, 0o700)  # makedirs' mode is filtered by the umask


