"""What a port's settings point at on this host: checked before HAProxy sees them.

Two labels name things outside the config: ``HAPROXY_{n}_SSL_CERT`` (a file HAProxy
loads) and ``HAPROXY_{n}_BIND_ADDR`` (an address it binds). A missing certificate makes
``haproxy -c`` reject the whole config, and an address this host does not have makes
the reload fail: either way one tenant's typo would stop routing changes for everyone.
So such a port is skipped with a reason instead (``model.build_model(check_port=...)``),
and everything else keeps routing. A certificate HAProxy would load but no client
accepts (expired, not yet valid) skips its port the same way, so the one log line
(``skipped app ... port index N: certificate FILE: REASON``) says what happened.

This is an edge module (it reads files and binds sockets); the model only sees the
callable. Certificate verdicts are cached by file identity, bind verdicts per sync.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from servicerouter.model.labels import PortSettings

_MAX_CERT_BYTES = 1 << 20
_NOT_YET_VALID = "certificate is not valid before"
_COMPANION_SUFFIXES = (".key", ".ocsp", ".issuer", ".sctl")


class PortChecks:
    """``check(settings)`` -> why the port cannot work here, or None."""

    def __init__(self, now: Callable[[], datetime] | None = None,
                 getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._getaddrinfo = getaddrinfo
        # path -> (file identity, verdict, look again at (None: when the files change))
        self._certs: dict[str, tuple[tuple[Any, ...], str | None, datetime | None]] = {}
        self._binds: dict[str, str | None] = {}

    def new_sync(self) -> None:
        """Addresses come and go with the host's interfaces: check them again."""
        self._binds.clear()

    def __call__(self, settings: PortSettings) -> str | None:
        if settings.ssl_cert:
            reason = self.certificate_problem(settings.ssl_cert)
            if reason is not None:
                return reason
        addr = settings.bind_addr
        if addr and addr != "*":
            if addr not in self._binds:
                self._binds[addr] = bind_problem(addr, self._getaddrinfo)
            return self._binds[addr]
        return None

    def certificate_problem(self, path: str) -> str | None:
        """None if HAProxy can load ``path`` (file or directory) and it serves clients now.

        A verdict is kept while the files are unchanged, and a good certificate's
        only until it expires.
        """
        try:
            identity = _identity(path)
        except OSError as err:
            return f"certificate {path}: {err.strerror or err}"
        now = self._now()
        cached = self._certs.get(path)
        if cached is not None and cached[0] == identity and (cached[2] is None
                                                             or now < cached[2]):
            return cached[1]
        reason, until = _certificate_problem(path, now)
        self._certs[path] = (identity, reason, until)
        return reason


def _identity(path: str) -> tuple[Any, ...]:
    """What must stay equal for a verdict on ``path`` to stay valid (raises OSError)."""
    info = os.stat(path)
    own = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        entries = []
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(path)):
                try:
                    child = os.stat(os.path.join(path, name))
                except OSError:
                    entries.append((name,))
                    continue
                entries.append((name, child.st_ino, child.st_size, child.st_mtime_ns,
                                child.st_mode))
        return (own, tuple(entries))
    try:
        key = os.stat(path + ".key")
        companion: tuple[Any, ...] = (key.st_ino, key.st_size, key.st_mtime_ns)
    except OSError:
        companion = ()
    return (own, companion)


def _certificate_problem(path: str, now: datetime) -> tuple[str | None, datetime | None]:
    """``(why HAProxy cannot serve path now, or None; when to look again)``.

    ``None`` as the second item: not until the files change. A certificate that
    is expired or not yet valid skips its port like a broken one: HAProxy would
    load it, but every client would reject it.
    """
    if not os.path.isdir(path):
        return _file_problem(path, now)
    # HAProxy loads every regular file of the directory but dotfiles and the
    # .key/.ocsp/.issuer/.sctl companions; one it cannot load fails the config.
    if not os.access(path, os.R_OK | os.X_OK):
        return f"certificate directory {path} is not readable", None
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        return f"certificate directory {path}: {err.strerror or err}", None
    loaded = 0
    until: datetime | None = None
    for name in names:
        full = os.path.join(path, name)
        if name.startswith(".") or name.endswith(_COMPANION_SUFFIXES):
            continue
        try:
            if not stat.S_ISREG(os.stat(full).st_mode):
                continue
        except OSError as err:
            return f"certificate {full}: {err.strerror or err}", None
        reason, file_until = _file_problem(full, now)
        if reason is not None:
            return reason, file_until
        loaded += 1
        if file_until is not None and (until is None or file_until < until):
            until = file_until
    if not loaded:
        return f"certificate directory {path} holds no certificate", None
    return None, until


def _file_problem(path: str, now: datetime) -> tuple[str | None, datetime | None]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_CERT_BYTES + 1)
    except OSError as err:
        return f"certificate {path}: {err.strerror or err}", None
    if len(data) > _MAX_CERT_BYTES:
        return f"certificate {path}: file larger than {_MAX_CERT_BYTES} bytes", None
    # Loaded here, not at import: cryptography costs a run that checks no certificate.
    from servicerouter.tls import bundles as certs

    try:
        text = certs.with_companion_key(path, data.decode("utf-8", "replace"))
        bundle = certs.parse_bundle(text, path, now)
    except certs.BundleError as err:
        # Not valid yet: look again next sync. Anything else stays until the file changes.
        again = now if err.reason.startswith(_NOT_YET_VALID) else None
        return f"certificate {err.source}: {err.reason}", again
    return None, bundle.not_after


def bind_problem(addr: str,
                 getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo) -> str | None:
    """None if a socket can bind ``addr`` here (as HAProxy will), else why not."""
    try:
        infos = getaddrinfo(addr, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        return f"bind address {addr} does not resolve ({err})"
    family, kind, proto, _name, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.bind(sockaddr)
    except OSError as err:
        return f"bind address {addr} is not an address of this host ({err.strerror or err})"
    return None
