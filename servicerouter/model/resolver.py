"""Task host -> IPv4 address, with a cache.

HAProxy is given addresses, not names, so a DNS outage at reload time cannot
take a server out of the config.  IP literals never touch DNS.  This is the
one place the model's input meets the network; the model itself only sees
the callable.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket

log = logging.getLogger("servicerouter.resolver")


class CachingResolver:
    """Resolves host names to IPv4 once per process (as servicerouter.py did).

    ``ttl_syncs`` > 0 forgets names after that many calls to :meth:`new_sync`,
    so long-running routers pick up changed DNS records.
    """

    # A canonical dotted quad resolves to itself, always (no DNS, nothing cached can
    # differ): the model's per-task loop may skip the call for such hosts.
    canonical_ipv4_is_itself = True

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


# A dotted-quad in canonical form (no leading zeros): the address is the text itself.
# One regex match instead of an ``ipaddress`` object per task host: at 50,000 distinct
# task addresses the objects cost a tenth of a second a sync.
_CANONICAL_IPV4_RE = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def _literal_ipv4(host: str) -> str | None:
    """``host`` as an IPv4 address if it is an IPv4 literal, else None (a name, IPv6).

    Canonical dotted quads are answered by a regex; anything else that starts with
    a digit takes ``ipaddress``'s path, which decides the odd spellings as before.
    """
    if _CANONICAL_IPV4_RE.fullmatch(host) is not None:
        return host
    first = host[:1]
    if not first.isdigit():
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.version == 4 else None


CANONICAL_IPV4_RE = _CANONICAL_IPV4_RE


def canonical_ipv4_is_itself(resolve: object) -> bool:
    """Whether ``resolve`` answers every canonical IPv4 literal with itself (see
    CachingResolver); wrappers that keep that promise copy the attribute."""
    return getattr(resolve, "canonical_ipv4_is_itself", False) is True
