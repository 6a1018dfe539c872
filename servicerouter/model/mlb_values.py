"""Parsers of the label values marathon-lb users bring: backend paths, allow-lists,
the health-check port index; and the per-server values marathon-lb gives its
templates (server name and stable id), computed as it does.

Same rules as :mod:`servicerouter.model.label_values`: every value is checked by
:func:`check_length` first and then accepted only in its own narrow shape, so it can
never carry a blank, a quote, ``#``, a brace or a line break into the config.  The
helpers at the end turn a parsed path into the escaped forms HAProxy's regex and
log-format arguments need (pure string work, used by the render).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache

from servicerouter.model.label_values import SettingError, check_length, shorten

# One URL path: '/' then RFC 3986 path characters without anything HAProxy's line
# parser treats specially (quotes, '#', '$', '\\', braces, blanks).
_PREFIX_RE = re.compile(r"^/[A-Za-z0-9._~!&()*+,;=:@%/-]{0,1023}$")
_PATH_ERROR = ("must be one URL path: '/' then letters, digits and . _ ~ ! & ( ) * + , ; = : @ % / - "
               "(at most 1024 characters, no blanks)")
MAX_NETWORKS = 256
MAX_PORT_INDEX = 1023


def parse_backend_path(value: str) -> str:
    """A path for HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH / _REVPROXY_PATH / _REDIR."""
    path = check_length(value).strip()
    if not _PREFIX_RE.fullmatch(path):
        raise SettingError(f"{shorten(path, 40)!r} {_PATH_ERROR}")
    return path


def parse_networks(value: str) -> tuple[str, ...]:
    """Source networks for HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL.

    marathon-lb splits on blanks; commas are taken too.  Each entry is an IPv4 or
    IPv6 address or CIDR network (host bits allowed, as HAProxy's ``src`` takes
    them); blank entries are left out (the label check warns).  Written back in
    canonical form, each once.
    """
    words = [w for w in re.split(r"[,\s]+", check_length(value).strip()) if w]
    if not words:
        raise SettingError("no network given (an empty allow-list would refuse everyone)")
    if len(words) > MAX_NETWORKS:
        raise SettingError(f"at most {MAX_NETWORKS} networks")
    networks: dict[str, None] = {}
    for word in words:
        try:
            network = ipaddress.ip_network(word, strict=False)
        except ValueError:
            raise SettingError(f"{shorten(word, 40)!r} is not an IP address or CIDR "
                               "network") from None
        text = (str(network.network_address) if network.prefixlen == network.max_prefixlen
                else str(network))
        networks.setdefault(text, None)
    return tuple(networks)


def parse_port_index(value: str) -> int:
    """A service port index (0-based) for HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX."""
    check_length(value)
    try:
        index = int(value.strip(), 10)
    except ValueError:
        raise SettingError("not an integer port index") from None
    if not 0 <= index <= MAX_PORT_INDEX:
        raise SettingError(f"port index out of range 0-{MAX_PORT_INDEX}")
    return index


def regex_literal(text: str) -> str:
    """``text`` as a literal inside a PCRE regex HAProxy reads in single quotes.

    Only characters the parsers above let through are escaped ('.', '+', '*',
    '(', ')', ...); single quotes never get this far.
    """
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def logformat_literal(text: str) -> str:
    """``text`` as literal text in a log-format argument ('%' doubled)."""
    return text.replace("%", "%%")


# marathon-lb numbers servers 1..32766 (HAProxy reads an id into a C int through atol,
# marathon-lb stays within 15 bits).
_ID_MODULUS = 32767
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9\-]")


def mlb_server_name(host: str, ipv4: str, port: int) -> str:
    """marathon-lb's server name: ``host_ip_port``, or ``ip_port`` when the agent host
    is the task's IP, every character but letters, digits and '-' made '_'."""
    raw = f"{host}_{ipv4}_{port}" if host != ipv4 else f"{ipv4}_{port}"
    return _NAME_CHARS.sub("_", raw)


def mlb_cookie(name: str) -> str:
    """marathon-lb's sticky cookie value of a server: the first 10 hex digits of the
    SHA-1 of its server name (:func:`mlb_server_name`)."""
    return hashlib.sha1(name.encode()).hexdigest()[:10]


def mlb_server_id(name: str, taken: set[int]) -> int:
    """marathon-lb's stable server id of ``name`` (added to ``taken``).

    SHA-256 of the name modulo 32767; on a collision (or 0) the name followed by a
    blank and that digest is hashed again, so the ids stay the same from one config
    to the next as long as servers are visited in the same order.
    """
    while True:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        server_id = int(digest, 16) % _ID_MODULUS
        if server_id > 0 and server_id not in taken:
            taken.add(server_id)
            return server_id
        name = f"{name} {digest}"


@lru_cache(maxsize=1024)
def mlb_server_ids(servers: Sequence[tuple[str, str, int]]) -> dict[tuple[str, int], int]:
    """(host, port) -> marathon-lb's id for one backend's servers ((host, ipv4, port)),
    numbered in marathon-lb's order: sorted by agent host, then port."""
    taken: set[int] = set()
    return {(host, port): mlb_server_id(mlb_server_name(host, ipv4, port), taken)
            for host, ipv4, port in sorted(servers, key=lambda s: (s[0], s[2]))}
