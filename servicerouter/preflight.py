"""What a port's settings point at on this host: checked before HAProxy sees them.

Two labels name things outside the config: ``HAPROXY_{n}_SSL_CERT`` (a file HAProxy
loads) and ``HAPROXY_{n}_BIND_ADDR`` (an address it binds). A missing certificate makes
``haproxy -c`` reject the whole config, and an address this host does not have makes
the reload fail: either way one tenant's typo would stop routing changes for everyone.
So such a port is skipped with a reason instead (``model.build_model(check_port=...)``),
and everything else keeps routing.

This is an edge module (it reads files and binds sockets); the model only sees the
callable. Certificate verdicts are cached by file identity, bind verdicts per sync.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from servicerouter import certs
from servicerouter.labels import PortSettings

log = logging.getLogger("servicerouter.preflight")

_MAX_CERT_BYTES = 1 << 20
_NOT_YET_FATAL = ("certificate expired", "certificate is not valid before")


class PortChecks:
    """``check(settings)`` -> why the port cannot work here, or None."""

    def __init__(self, now: Callable[[], datetime] | None = None,
                 getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._getaddrinfo = getaddrinfo
        self._certs: dict[str, tuple[tuple[int, int, int, int], str | None]] = {}
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
        """None if HAProxy can load ``path`` as a certificate (file or directory)."""
        try:
            info = os.stat(path)
        except OSError as err:
            return f"certificate {path}: {err.strerror or err}"
        identity = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
        cached = self._certs.get(path)
        if cached is not None and cached[0] == identity:
            return cached[1]
        reason = _certificate_problem(path, info, self._now())
        self._certs[path] = (identity, reason)
        return reason


def _certificate_problem(path: str, info: os.stat_result, now: datetime) -> str | None:
    if stat.S_ISDIR(info.st_mode):
        # HAProxy loads every certificate of a directory; certs.load_bundles judges them.
        if not os.access(path, os.R_OK | os.X_OK):
            return f"certificate directory {path} is not readable"
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_CERT_BYTES + 1)
    except OSError as err:
        return f"certificate {path}: {err.strerror or err}"
    if len(data) > _MAX_CERT_BYTES:
        return f"certificate {path}: file larger than {_MAX_CERT_BYTES} bytes"
    try:
        certs.parse_bundle(data.decode("utf-8", "replace"), path, now)
    except certs.BundleError as err:
        if err.reason.startswith(_NOT_YET_FATAL):
            log.warning("certificate %s: %s (served anyway)", path, err.reason)
            return None
        if err.reason == "no private key found" and _has_key_file(path):
            return None
        return f"certificate {path}: {err.reason}"
    return None


def _has_key_file(path: str) -> bool:
    """HAProxy 2.6 (ssl-load-extra-files) reads a missing key from ``PATH.key``."""
    return os.path.isfile(path + ".key")


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
