"""Certificate changes without a reload: HAProxy's ``set ssl cert`` / ``commit ssl cert``.

In the long-running modes bundle files have stable paths
(:func:`servicerouter.tls.bundle_layout.stable_bundle_name`), so a renewed certificate for
the same names changes neither haproxy.cfg nor the crt-list, only the content of
a file HAProxy read at its last (re)load.  Each sync the live engine compares
what every served file holds now with what HAProxy was last given
(:func:`plan_cert_updates`, pure) and either swaps the changed certificates in
place through the Runtime API (:class:`CertUpdater`) or, when that cannot be
done safely, falls back to a validated reload:

* a file appeared or went away, or a file's names (its crt-list SNI filters)
  changed: the config changes anyway, and only a reload applies that;
* an operator's own file served as is has HAProxy companions beside it
  (``.key``, ``.ocsp``, ``.issuer``, ``.sctl``), which ``set ssl cert`` would not
  bring along;
* no Runtime API, or HAProxy refuses any step.

One certificate is swapped as one transaction: ``set ssl cert PATH <<`` with the
PEM as payload, ``commit ssl cert PATH``, then ``show ssl cert PATH`` must show
the new leaf's SHA-1 fingerprint.  Any refusal before the commit is followed by
``abort ssl cert PATH``, so HAProxy never keeps a half-built transaction, and the
caller reloads (which reads every file from disk, so it always converges).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

log = logging.getLogger("servicerouter.certupdate")

COMPANION_SUFFIXES = (".key", ".ocsp", ".issuer", ".sctl")
UNKNOWN_DIGEST = "unknown"  # HAProxy may run another version of this file
# A path that is one word of a CLI command: no blank, no ';' (the CLI's command
# separator), no '#', no quote, no backslash.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./@:+=,%~-]+$")
_FIRST_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class ServedCert:
    """One certificate file HAProxy reads: a crt-list entry or a bind line's ``crt``."""

    path: str
    digest: str  # sha256 of the PEM HAProxy gets from this file
    names: tuple[str, ...] = ()
    runtime_ok: bool = True  # False: companions on disk that set ssl cert would miss
    pem: str = field(default="", repr=False, compare=False)  # holds the private key


@dataclass(frozen=True)
class CertPlan:
    """Files to swap through the Runtime API, or why only a reload applies the change."""

    update: tuple[str, ...] = ()
    reload_reason: str = ""

    @property
    def empty(self) -> bool:
        return not self.update and not self.reload_reason


def served_cert(path: str, pem: str, names: Iterable[str] = (),
                runtime_ok: bool = True) -> ServedCert:
    """A :class:`ServedCert` for ``pem`` served from ``path``."""
    return ServedCert(path, hashlib.sha256(pem.encode()).hexdigest(), tuple(names),
                      runtime_ok, pem)


def plan_cert_updates(applied: Mapping[str, ServedCert],
                      served: Mapping[str, ServedCert]) -> CertPlan:
    """What turns the certificates HAProxy has (``applied``) into ``served``.  Pure."""
    added = sorted(set(served) - set(applied))
    removed = sorted(set(applied) - set(served))
    if added or removed:
        which = ", ".join((added + removed)[:3])
        return CertPlan(reload_reason=f"certificate files added or removed ({which})")
    update: list[str] = []
    for path in sorted(served):
        new, old = served[path], applied[path]
        if new.digest == old.digest:
            continue
        if new.names != old.names:
            return CertPlan(reload_reason=f"the names of {path} changed")
        if not new.runtime_ok:
            return CertPlan(reload_reason=f"{path} has companion files HAProxy reads beside it")
        if not _SAFE_PATH.match(path):
            return CertPlan(reload_reason=f"{path!r} cannot be named on the Runtime API")
        update.append(path)
    return CertPlan(update=tuple(update))


def startup_baseline(served: Mapping[str, ServedCert],
                     written: Collection[str]) -> dict[str, ServedCert]:
    """What a HAProxy that was running before us serves: the files as they were on disk.

    Files rewritten by this process's first sync get an unknown digest, so they
    are pushed (or reloaded) once; the others are taken as loaded.
    """
    return {path: replace(cert, digest=UNKNOWN_DIGEST) if path in written else cert
            for path, cert in served.items()}


def has_companions(path: str) -> bool:
    """True if HAProxy would load extra files beside ``path`` (ssl-load-extra-files)."""
    return any(os.path.exists(path + suffix) for suffix in COMPANION_SUFFIXES)


def set_command(path: str, pem: str) -> str:
    """``set ssl cert PATH <<`` + payload; the payload ends at the first empty line."""
    if not _SAFE_PATH.match(path):
        from servicerouter.apply.runtime_api import RuntimeUpdateError  # see CertUpdater

        raise RuntimeUpdateError(f"certificate path {path!r} cannot be named on the Runtime API")
    lines = [line.rstrip("\r") for line in pem.splitlines()]
    payload = "\n".join(line for line in lines if line.strip())
    # unix_command adds the final newline: the blank line that closes the payload
    return f"set ssl cert {path} <<\n{payload}\n"


def leaf_sha1(pem: str) -> str:
    """Upper-case SHA-1 of the first certificate, as ``show ssl cert`` prints it."""
    found = _FIRST_CERT.search(pem)
    if found is None:
        from servicerouter.apply.runtime_api import RuntimeUpdateError  # see CertUpdater

        raise RuntimeUpdateError("no certificate in the bundle")
    # Imported here: a run that never swaps a certificate (a one-shot) never loads it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(found.group(0).encode("ascii"))
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # HAProxy names certs by SHA-1


def open_transaction(show_output: str) -> str | None:
    """The path of the ongoing ``ssl cert`` transaction in ``show ssl cert`` output."""
    section = ""
    for line in show_output.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            section = stripped.lstrip("#").strip()
        elif section == "transaction" and stripped.startswith("*"):
            return stripped[1:]
    return None


# --------------------------------------------------------------------------- edge


class CommandAPI(Protocol):
    """The one method of :class:`servicerouter.apply.runtime_api.RuntimeAPI` used here."""

    def command(self, command: str) -> str: ...


class CertUpdater:
    """Swaps certificates in a running HAProxy, one confirmed transaction each.

    The Runtime API module (its error) is imported where it is used: the certificate
    manager reads this module's pure half on every run, a one-shot run never swaps.
    """

    def __init__(self, api: CommandAPI) -> None:
        self.api = api

    def update(self, path: str, pem: str, ours: Collection[str] = ()) -> None:
        """Make HAProxy serve ``pem`` for ``path``; RuntimeUpdateError if it cannot.

        ``ours`` are the files this router serves: a transaction left open on one
        of them (a crash between set and commit) is aborted first; one on any
        other file belongs to somebody else and is left alone (the caller reloads).
        """
        from servicerouter.apply.runtime_api import RuntimeUpdateError

        command = set_command(path, pem)
        expected_sha1 = leaf_sha1(pem)
        pending = open_transaction(self.api.command("show ssl cert"))
        if pending is not None and pending != path:
            if pending not in ours:
                raise RuntimeUpdateError(f"a Runtime API transaction on {pending} is open")
            self._abort(pending)
        answer = self.api.command(command).strip()
        if answer not in (f"Transaction created for certificate {path}!",
                          f"Transaction updated for certificate {path}!"):
            self._abort(path)
            raise RuntimeUpdateError(f"set ssl cert {path}: {_first_line(answer)}")
        answer = self.api.command(f"commit ssl cert {path}")
        if "Success!" not in answer:
            self._abort(path)
            raise RuntimeUpdateError(f"commit ssl cert {path}: {_first_line(answer)}")
        shown = self.api.command(f"show ssl cert {path}")
        if f"SHA1 FingerPrint: {expected_sha1}" not in shown:
            raise RuntimeUpdateError(f"show ssl cert {path} does not show the new certificate")

    def _abort(self, path: str) -> None:
        """Drop an uncommitted transaction; never raises (the caller reloads anyway)."""
        from servicerouter.apply.runtime_api import RuntimeUpdateError

        try:
            answer = self.api.command(f"abort ssl cert {path}")
        except RuntimeUpdateError as err:
            log.warning("abort ssl cert %s failed: %s", path, err)
            return
        log.debug("abort ssl cert %s: %s", path, _first_line(answer))


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0][:200] if stripped else "(no answer)"


__all__ = [
    "CertPlan",
    "CertUpdater",
    "ServedCert",
    "has_companions",
    "leaf_sha1",
    "open_transaction",
    "plan_cert_updates",
    "served_cert",
    "set_command",
    "startup_baseline",
]
