"""Task host -> IPv4 address, with a cache.

HAProxy is given addresses, not names, so a DNS outage at reload time cannot
take a server out of the config.  IP literals never touch DNS.  This is the
one place the model's input meets the network; the model itself only sees
the callable.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

log = logging.getLogger("servicerouter.resolver")


class CachingResolver:
    """Resolves host names to IPv4 once per process (as servicerouter.py did).

    ``ttl_syncs`` > 0 forgets names after that many calls to :meth:`new_sync`,
    so long-running routers pick up changed DNS records.
    """

    def __init__(self, ttl_syncs: int = 0) -> None:
        self._cache: dict[str, str | None] = {}
        self._ttl_syncs = ttl_syncs
        self._syncs = 0

    def new_sync(self) -> None:
        self._syncs += 1
        if self._ttl_syncs and self._syncs % self._ttl_syncs == 0:
            self._cache.clear()

    def __call__(self, host: str) -> str | None:
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        ip = _literal_ipv4(host)
        if ip is None:
            try:
                ip = socket.gethostbyname(host)
            except (OSError, UnicodeError):
                log.warning("could not resolve ip address for host %s", host)
                return None
        self._cache[host] = ip
        return ip


def _literal_ipv4(host: str) -> str | None:
    first = host[:1]
    if not first.isdigit():
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.version == 4 else None
