"""TLS bundles for the config: which certificates HAProxy serves, and from which files.

:mod:`servicerouter.tls.bundles` validates one bundle and :mod:`servicerouter.tls.bundle_layout`
writes files; this module decides, each sync, what the shared HTTPS frontend and the per-port
frontends use:

* every bundle from ``--ssl-certs``, the ``certs/`` directory and the ports'
  ``HAPROXY_{n}_SSL_CERT`` goes into the shared frontend's crt-list (SNI picks the
  certificate by its SAN names). The default certificate comes first: the first
  usable bundle of ``--ssl-certs`` (in order), else of ``certs/`` (by file name),
  else the self-signed one;
* of bundles for the same names and key type (an old and a renewed certificate),
  only the one that expires last is listed; the others are logged once;
* a port's own ``ssl crt`` keeps the operator's file when it is already in the order
  HAProxy needs (leaf, intermediates, key), and otherwise points at the normalised copy
  under the state directory, so a chain pasted out of order still serves;
* a bad bundle is logged with its file and reason and left out; the rest still serve;
* a bundle expiring within :data:`EXPIRY_WARNING_DAYS` gets a warning (once a day) and
  ``expiring: true`` in the status report.

Parsing a PEM bundle costs milliseconds (RSA keys are checked), so a source whose files
did not change since the last sync is not parsed again.

How a certificate change reaches HAProxy depends on the mode. One-shot syncs name bundle
files by content, so a new certificate changes the config and the usual validated reload
applies it. The long-running modes (``stable=True``) name them by source file, so a
renewal for the same names changes only a file's content; :attr:`TlsResult.served` lists
every file HAProxy reads with a digest of what it holds, and :mod:`servicerouter.tls.swap`
swaps changed ones in place through the Runtime API (or falls back to a reload).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from servicerouter.tls import bundle_layout
from servicerouter.tls import bundles as certs
from servicerouter.tls.bundles import Bundle, BundleError
from servicerouter.tls.swap import ServedCert, has_companions, served_cert

log = logging.getLogger("servicerouter.tls")

EXPIRY_WARNING_DAYS = 14
_WARN_EVERY_SECONDS = 24 * 3600
_CERT_BLOCK = re.compile(r"-----BEGIN (?:X509 )?CERTIFICATE-----.*?-----END (?:X509 )?CERTIFICATE-----",
                         re.DOTALL)


@dataclass(frozen=True)
class TlsResult:
    """What one sync serves: the crt-list, per-port file substitutions, and a report."""

    default_cert: str
    crt_list: str | None
    cert_paths: tuple[tuple[str, str], ...] = ()  # operator's path -> HAProxy-ready copy
    bundles: tuple[Bundle, ...] = ()
    errors: tuple[BundleError, ...] = ()
    report: list[dict[str, Any]] = field(default_factory=list)
    # Every certificate file the config makes HAProxy read, with what it holds now.
    served: tuple[ServedCert, ...] = ()
    written: frozenset[str] = frozenset()  # bundle files rewritten by this sync


@dataclass
class _Cached:
    signature: tuple[Any, ...]
    bundles: list[Bundle]


class TlsManager:
    """Per-router memory: parsed bundles by file identity, and when each expiry warned."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._cache: dict[str, _Cached] = {}
        self._warned: dict[str, float] = {}
        self._superseded: set[tuple[str, str]] = set()  # (old, new) fingerprints logged
        self._clock = clock

    # ------------------------------------------------------------------ loading

    def load(self, paths: Iterable[str], now: datetime) -> tuple[list[Bundle], list[BundleError]]:
        """Bundles (and errors) of files and directories; unchanged sources come from cache."""
        bundles: list[Bundle] = []
        errors: list[BundleError] = []
        for path in dict.fromkeys(paths):
            signature = _signature(path)
            cached = self._cache.get(path)
            if cached is not None and cached.signature == signature and all(
                b.not_after > now for b in cached.bundles
            ):
                bundles.extend(cached.bundles)
                continue
            found, problems = certs.load_bundles([path], now)
            bundles.extend(found)
            errors.extend(problems)
            if problems:
                self._cache.pop(path, None)  # time may cure some (not yet valid): look again
            else:
                self._cache[path] = _Cached(signature, found)
        return bundles, errors

    # ------------------------------------------------------------------ one sync

    def prepare(self, state_dir: str, default_pem: str, sources: Sequence[str],
                port_certs: Sequence[str], now: datetime | None = None,
                stable: bool = False, write: bool = True) -> TlsResult:
        """Validate every bundle, write the crt-list, decide per-port certificate files.

        ``sources`` are --ssl-certs entries and the certs directory, in that order;
        ``port_certs`` the distinct HAPROXY_{n}_SSL_CERT paths of the routed ports;
        ``default_pem`` the self-signed certificate, served to clients whose SNI
        matches nothing only when no source holds a usable bundle (otherwise the
        first one is); ``stable`` names bundle files by source rather than content
        (see the module docstring); ``write=False`` (``--dry``) computes the same
        paths and writes nothing.
        """
        now = now or datetime.now(UTC)
        shared, errors = self.load(sources, now)
        port_bundles: list[Bundle] = []
        substitutes: dict[str, str] = {}
        for path in dict.fromkeys(port_certs):
            found, problems = self.load([path], now)
            errors.extend(problems)
            port_bundles.extend(found)
        for error in errors:
            log.error("certificate bundle skipped: %s", error)
        everything = shared + port_bundles
        listed, superseded = certs.supersede(everything)
        self._log_superseded(superseded)
        winners = {old.fingerprint: new for old, new in superseded}
        default = winners.get(shared[0].fingerprint, shared[0]) if shared else None
        ready = {b.source: haproxy_ready(b) for b in port_bundles}
        listed_fps = {b.fingerprint for b in listed}
        # A port's file whose names a renewed bundle serves on :443 is left out of
        # the crt-list, but its port still needs the normalised copy.
        extra = [b for b in port_bundles if b.fingerprint not in listed_fps and not ready[b.source]]
        if write:
            files = bundle_layout.materialize_bundles(listed, state_dir, default_pem, stable,
                                              default=default, extra=extra)
        else:
            layout = bundle_layout.plan_layout(listed, state_dir, default_pem, stable,
                                       default=default, extra=extra)
            files = bundle_layout.Materialized(layout.crt_list, layout.paths, frozenset(),
                                       layout.default_cert)
        by_fingerprint: dict[str, Bundle] = {}
        for bundle in [*listed, *extra]:  # the first of a fingerprint is the one written
            by_fingerprint.setdefault(bundle.fingerprint, bundle)
        served = {path: served_cert(path, by_fingerprint[fp].pem, by_fingerprint[fp].names)
                  for fp, path in files.paths.items()}
        default_abs = os.path.abspath(default_pem)
        if files.default_cert == default_abs:  # the self-signed one: no usable bundle
            served[default_abs] = served_cert(default_abs, _read_default(default_pem))
        for bundle in port_bundles:
            if not ready[bundle.source]:
                copy = files.paths.get(bundle.fingerprint)
                if copy is not None:  # None: the same source read twice, changed between
                    substitutes[bundle.source] = copy
                    log.info("certificate %s is not in leaf, chain, key order: serving the "
                             "normalised copy %s", bundle.source, copy)
            elif bundle.source not in served:  # the bind line reads the operator's file
                served[bundle.source] = served_cert(bundle.source, bundle.pem, bundle.names,
                                                    not has_companions(bundle.source))
        self._warn_expiring(everything, now)
        report = expiry_rows(everything, errors, now)
        return TlsResult(files.default_cert, files.crt_list, tuple(sorted(substitutes.items())),
                         tuple(everything), tuple(errors), report,
                         tuple(served[path] for path in sorted(served)), files.written)

    def _log_superseded(self, superseded: Iterable[tuple[Bundle, Bundle]]) -> None:
        for old, new in superseded:
            if (old.fingerprint, new.fingerprint) in self._superseded:
                continue
            self._superseded.add((old.fingerprint, new.fingerprint))
            log.warning("certificate %s (%s, expires %s) is superseded by %s (expires %s): "
                        "left out of the crt-list; remove the old file", old.source,
                        ", ".join(old.names), old.not_after.isoformat(timespec="seconds"),
                        new.source, new.not_after.isoformat(timespec="seconds"))

    def _warn_expiring(self, bundles: Iterable[Bundle], now: datetime) -> None:
        moment = self._clock()
        for bundle in bundles:
            if not bundle.expires_within(now, EXPIRY_WARNING_DAYS):
                continue
            last = self._warned.get(bundle.fingerprint)
            if last is not None and moment - last < _WARN_EVERY_SECONDS:
                continue
            self._warned[bundle.fingerprint] = moment
            days = (bundle.not_after - now).days
            log.warning("certificate %s (%s) expires in %d day%s, on %s: renew it",
                        bundle.source, ", ".join(bundle.names), days, "" if days == 1 else "s",
                        bundle.not_after.isoformat(timespec="seconds"))


# --------------------------------------------------------------------------- pure helpers


def _read_default(path: str) -> str:
    """The default certificate's PEM (generated by us, so small and ours)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(1 << 20)
    except OSError:
        return ""


def haproxy_ready(bundle: Bundle) -> bool:
    """True if the operator's file already lists leaf then chain in order.

    HAProxy takes the first certificate of a file as the leaf and sends the
    others in file order; only a file in that order can be served as is.
    """
    try:
        with open(bundle.source, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 20)
    except OSError:
        return False
    return _fingerprints(text) == _fingerprints(bundle.pem)


def _fingerprints(text: str) -> list[str]:
    from cryptography import x509  # only when a bundle file is compared (tls/pem_text.py)
    from cryptography.hazmat.primitives import hashes

    out = []
    for block in _CERT_BLOCK.findall(text):
        try:
            cert = x509.load_pem_x509_certificate(block.encode("ascii", "replace"))
        except ValueError:
            return []
        out.append(cert.fingerprint(hashes.SHA256()).hex())
    return out


def expiry_rows(bundles: Iterable[Bundle], errors: Iterable[BundleError],
                now: datetime) -> list[dict[str, Any]]:
    """Status rows: every usable bundle (soonest expiry first), then every problem."""
    rows = certs.expiry_report(_unique(bundles), now, EXPIRY_WARNING_DAYS)
    for row in rows:
        row["problem"] = None
    rows.extend({"source": e.source, "names": [], "not_after": None, "days_left": None,
                 "expiring": False, "problem": e.reason} for e in errors)
    return rows


def _unique(bundles: Iterable[Bundle]) -> list[Bundle]:
    seen: dict[tuple[str, str], Bundle] = {}
    for bundle in bundles:
        seen.setdefault((bundle.source, bundle.fingerprint), bundle)
    return list(seen.values())


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The ``--list-certs`` table: one line per bundle or problem."""
    if not rows:
        return "no certificate bundles configured (a self-signed default will be served)\n"
    lines = []
    for row in rows:
        if row.get("problem"):
            lines.append(f"BAD       {row['source']}: {row['problem']}")
            continue
        state = "EXPIRING" if row["expiring"] else "ok"
        lines.append(f"{state:<9} {row['source']}  names={','.join(row['names'])}  "
                     f"not_after={row['not_after']}  days_left={row['days_left']}")
    return "\n".join(lines) + "\n"


def _signature(path: str) -> tuple[Any, ...]:
    """What must stay equal for a cached parse of ``path`` to stay valid."""
    try:
        info = os.stat(path)
    except OSError as err:
        return ("error", err.errno)
    if not stat.S_ISDIR(info.st_mode):
        return ("file", info.st_ino, info.st_size, info.st_mtime_ns)
    entries = []
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        return ("error", err.errno)
    for name in names:
        try:
            child = os.stat(os.path.join(path, name))
        except OSError:
            entries.append((name, None))
            continue
        entries.append((name, child.st_ino, child.st_size, child.st_mtime_ns))
    return ("dir", info.st_ino, info.st_mtime_ns, tuple(entries))
