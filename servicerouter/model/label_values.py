"""Parsers of label values: each turns one raw string into a safe value or raises
:class:`SettingError` saying why.

Whatever a label says ends up inside an HAProxy config, so a value may only ever be
one safe token: every parser starts with :func:`check_length` (length, no control
character or line break) and then accepts only its own narrow shape.  Which key uses
which parser is the registry's business (:mod:`servicerouter.model.labels`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

TRUE_WORDS = frozenset({"true", "t", "yes", "y"})

# A host name as HAProxy will see it in a Host header: DNS labels (underscores
# allowed, as servicerouter.py never refused them), an optional leading
# ``*.`` wildcard and an optional ``:port``.
_HOST_RE = re.compile(
    r"^(\*\.)?[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?"
    r"(?::[0-9]{1,5})?$"
)
_PATH_RE = re.compile(r"^[A-Za-z0-9_./@+=:,%~-]+$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
MAX_VALUE_LENGTH = 4096


class SettingError(ValueError):
    """A setting value that cannot be used; the message says why."""


def shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


# Characters that end or break a line in HAProxy's parser, logs or terminals:
# C0 and C1 controls (tab, CR and LF included), DEL and Unicode line separators.
_LINE_BREAKING_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_length(value: str) -> str:
    """The checks every raw value gets first: its length, and no control character.

    A control character or line separator is refused anywhere in the value,
    even where surrounding blanks are stripped: ``'www.example.com\\r'`` is a
    value something mangled, not a host to route.
    """
    if len(value) > MAX_VALUE_LENGTH:
        raise SettingError(f"value is {len(value)} characters long (at most {MAX_VALUE_LENGTH})")
    bad = _LINE_BREAKING_RE.search(value)
    if bad is not None:
        raise SettingError(f"value holds the control character {bad.group()!r} "
                           "(control characters and line breaks are never accepted)")
    return value


_WORD_RE = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")


def parse_bool(value: str) -> bool:
    """servicerouter.py semantics: true/t/yes/y in any case is true, any other word false.

    Surrounding spaces are tolerated and, as in servicerouter.py, make the word
    false (``'true '`` is not ``'true'``): an app that routed before still routes.
    A value that is not a word at all (quotes, control characters, inner blanks)
    is a malformed label, not a quiet "false".
    """
    if not _WORD_RE.fullmatch(check_length(value).strip(" ")):
        raise SettingError("not a truth value (true/t/yes/y; any other word is false)")
    return value.lower() in TRUE_WORDS


def parse_port(value: str) -> int:
    """A TCP port, 1-65535 (surrounding blanks tolerated, as int() did)."""
    check_length(value)
    try:
        port = int(value.strip(), 10)
    except ValueError:
        raise SettingError("not an integer port") from None
    if not 1 <= port <= 65535:
        raise SettingError("port out of range 1-65535")
    return port


def parse_mode(value: str) -> str:
    """``tcp`` or ``http``; upper case is repaired (HAProxy only takes lower case)."""
    mode = check_length(value).strip().lower()
    if mode not in ("tcp", "http"):
        raise SettingError("mode must be 'tcp' or 'http'")
    return mode


def check_host(host: str) -> str:
    """One virtual host: a single safe token, kept exactly as written."""
    if not host or len(host) > 253 or not _HOST_RE.fullmatch(host):
        raise SettingError(
            f"{shorten(host)!r} is not a valid host name (letters, digits, '-', '_', '.', "
            "an optional leading '*.' and ':port')"
        )
    if ":" in host:
        if host.startswith("*."):
            # The wildcard rule matches the Host header's name with its port cut off,
            # so a wildcard with a port could never match a request.
            raise SettingError(f"{host!r}: a wildcard host cannot have a :port (it would "
                               "never match; use the wildcard without the port)")
        port = int(host.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise SettingError(f"{host!r}: port out of range 1-65535")
    return host


def parse_vhosts(value: str) -> tuple[str, ...]:
    """Comma-separated virtual hosts; each must be a safe host token.

    A blank value means no virtual host, as in servicerouter.py (its ``if vhost``):
    the port is routed on its own frontend only.  Blank entries between commas
    (``"koding.yourcompany.com,"``, as Universe packages render it) are left out,
    as marathon-lb routes such a port; the label check warns about them
    (:func:`servicerouter.model.label_names.label_notices`).
    """
    check_length(value)
    if not value.strip(" "):
        return ()
    if "," not in value:  # one host (most ports): the same checks, no list to dedupe
        host = value.strip()
        if not host:
            raise SettingError("no host name given")
        return (check_host(host),)
    hosts = tuple(host for host in (part.strip() for part in value.split(",")) if host)
    if not hosts:
        raise SettingError("no host name given")
    for host in hosts:
        check_host(host)
    # Keep the first occurrence of each host (HAProxy matches case-insensitively).
    first: dict[str, str] = {}
    for host in hosts:
        first.setdefault(host.lower(), host)
    return tuple(first.values())


def parse_bind_addr(value: str) -> str:
    """``*``, an IPv4/IPv6 literal or a host name to bind a frontend to."""
    addr = check_length(value).strip()
    if addr == "*":
        return addr
    try:
        ipaddress.ip_address(addr)
        return addr
    except ValueError:
        pass
    if not _HOSTNAME_RE.fullmatch(addr):
        raise SettingError("bind address must be '*', an IP address or a host name")
    return addr


def parse_path(value: str) -> str:
    """A file path HAProxy will read: one token without blanks or comment signs."""
    path = check_length(value)
    if not _PATH_RE.fullmatch(path):
        raise SettingError("path may only hold letters, digits and _ . / @ + = : , % ~ -")
    return path


def parse_groups(value: str) -> tuple[str, ...]:
    """servicerouter.py split HAPROXY_GROUP on ',' without trimming; so do we."""
    return tuple(check_length(value).split(","))


FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off"})
_SWITCH_TRUE = TRUE_WORDS | {"1", "on"}
# URL path prefix: RFC 3986 path characters minus everything HAProxy's line
# parser treats specially (quotes, '#', '$', '\\', braces, blanks).
_URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!&()*+,;=:@%/-]{0,1023}$")
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ARG_NAME = r"[A-Za-z0-9_.-]{1,64}"
_BALANCE_RE = re.compile(
    r"^(?:roundrobin|static-rr|leastconn|first|source|uri|random|rdp-cookie"
    rf"|(?:hdr|rdp-cookie)\({_ARG_NAME}\)|random\([1-9][0-9]{{0,2}}\)|url_param {_ARG_NAME})$"
)
_REALM_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_AUTH_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# crypt(3) hashes HAProxy hands to the C library: traditional DES, or $id$...
# (MD5, bcrypt, SHA-256/512, scrypt, yescrypt).
_CRYPT_RE = re.compile(
    r"^(?:[A-Za-z0-9./]{13}|\$(?:1|2[aby]|5|6|7|y|gy)\$[A-Za-z0-9./$=]{1,512})$"
)


def parse_switch(value: str) -> bool:
    """A strict on/off for new keys: a typo must not silently mean 'off'."""
    word = check_length(value).strip().lower()
    if word in _SWITCH_TRUE:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingError("expected true/false (also yes/no, t/f, y/n, 1/0, on/off)")


def parse_port_groups(value: str) -> tuple[str, ...]:
    """Groups of one port; split like HAPROXY_GROUP so both read the same."""
    return parse_groups(value)


MAX_PATH_PREFIXES = 32
_URL_PATH_ERROR = ("path must start with '/' and hold only letters, digits and . _ ~ ! & ( ) * + , "
                   "; = : @ % / - (at most 1024 characters)")


def parse_url_path(value: str) -> str:
    """URL path prefixes for path routing, as marathon-lb's HAPROXY_{n}_PATH.

    One prefix ('/' then safe path characters), or several separated by single
    spaces, optionally after ``-i`` (match ignoring case, HAProxy's ``path_beg -i``).
    The value comes back normalised: blanks around it trimmed, repeated prefixes
    once (ignoring case under ``-i``), so a single prefix is returned as given.
    Read it with :func:`path_prefixes` and :func:`path_ignores_case`.
    """
    path = check_length(value).strip()
    if _URL_PATH_RE.fullmatch(path):  # the common case: one prefix
        return path
    words = path.split(" ")
    ignore_case = words[0] == "-i"
    if ignore_case:
        words = words[1:]
        if not words:
            raise SettingError("'-i' needs at least one path prefix after it")
    if len(words) == 1 and not ignore_case:
        raise SettingError(_URL_PATH_ERROR)
    prefixes: dict[str, str] = {}
    for word in words:
        if not word:
            raise SettingError("path prefixes must be separated by single spaces")
        if word == "-i":
            raise SettingError("'-i' must come first, before the path prefixes")
        if not _URL_PATH_RE.fullmatch(word):
            raise SettingError(f"{shorten(word, 40)!r}: {_URL_PATH_ERROR}")
        prefixes.setdefault(word.lower() if ignore_case else word, word)
    if len(prefixes) > MAX_PATH_PREFIXES:
        raise SettingError(f"at most {MAX_PATH_PREFIXES} path prefixes")
    return ("-i " if ignore_case else "") + " ".join(prefixes.values())


def path_prefixes(path: str) -> tuple[str, ...]:
    """The prefixes of a value :func:`parse_url_path` returned, in their order."""
    words = path.split(" ")
    return tuple(words[1:]) if words[0] == "-i" else tuple(words)


def path_ignores_case(path: str) -> bool:
    """Whether a value :func:`parse_url_path` returned matches ignoring case (``-i``)."""
    return path.startswith("-i ")


def parse_weight(value: str) -> int:
    """An integer ordering route rules; higher is evaluated first."""
    check_length(value)
    try:
        weight = int(value.strip(), 10)
    except ValueError:
        raise SettingError("not an integer") from None
    if not -1_000_000 <= weight <= 1_000_000:
        raise SettingError("weight out of range -1000000..1000000")
    return weight


def parse_cookie_name(value: str) -> str:
    """A cookie name HAProxy can insert: letters, digits, '_', '.', '-'."""
    name = check_length(value).strip()
    if not _COOKIE_RE.fullmatch(name):
        raise SettingError("cookie name may only hold letters, digits, '_', '.' and '-' (1-64)")
    return name


def parse_balance(value: str) -> str:
    """One HAProxy balance algorithm (arguments only where HAProxy takes one word)."""
    algorithm = " ".join(check_length(value).split())
    if not _BALANCE_RE.fullmatch(algorithm):
        raise SettingError(
            "balance must be roundrobin, static-rr, leastconn, first, source, uri, random, "
            "random(N), rdp-cookie, rdp-cookie(NAME), hdr(NAME) or 'url_param NAME'"
        )
    return algorithm


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic auth of one port: realm, user and crypt(3) password hash."""

    realm: str
    user: str
    password_hash: str = field(repr=False)


def parse_auth(value: str) -> BasicAuth:
    """``realm:user:hashed-password`` (the hash as ``openssl passwd -6`` prints it)."""
    parts = check_length(value).strip().split(":")
    if len(parts) != 3:
        raise SettingError("expected realm:user:hashed-password")
    realm, user, password_hash = parts
    if not _REALM_RE.fullmatch(realm):
        raise SettingError("realm may only hold letters, digits, '_', '.', '@' and '-'")
    if not _AUTH_USER_RE.fullmatch(user):
        raise SettingError("user may only hold letters, digits, '_', '.', '@' and '-'")
    if not _CRYPT_RE.fullmatch(password_hash):
        raise SettingError(
            "password must be a crypt(3) hash ($6$..., $5$..., $1$..., $2y$..., $y$...; "
            "e.g. from 'openssl passwd -6'), never a clear-text password"
        )
    return BasicAuth(realm, user, password_hash)
