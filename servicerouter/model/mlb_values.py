"""Parsers of the label values marathon-lb users bring: backend paths, allow-lists,
the health-check port index.

Same rules as :mod:`servicerouter.model.label_values`: every value is checked by
:func:`check_length` first and then accepted only in its own narrow shape, so it can
never carry a blank, a quote, ``#``, a brace or a line break into the config.  The
helpers at the end turn a parsed path into the escaped forms HAProxy's regex and
log-format arguments need (pure string work, used by the render).
"""

from __future__ import annotations

import ipaddress
import re

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
