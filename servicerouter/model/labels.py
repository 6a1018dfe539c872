"""The one registry of every app setting servicerouter reads.

Each setting is a Marathon app label (or, for apps written for the original
servicerouter.py, an env var of the same name).  The registry below drives
parsing and validation, ``--longhelp`` and the README tables, so the three can
never disagree.  Parsing is pure: a bad value becomes a :class:`Problem` for
that app and port, never an exception that stops a sync.

Validation is strict on purpose: whatever a label says ends up inside an
HAProxy config, so a value may only ever be one safe token.  Newlines, ``#``,
spaces, quotes, braces and backslashes can never reach the config.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an app, a port of it, or a task was left out of the config."""

    app_id: str
    reason: str
    port_index: int | None = None
    key: str | None = None
    value: str | None = None
    # Structured facts for reports (/status, metrics), so nothing parses ``reason``:
    # kind "conflict" = another app already owns ``route`` (a vhost[+path] or "port N"),
    # and ``owner`` is that app (the one whose configuration is oldest).
    kind: str | None = None
    route: str | None = None
    owner: str | None = None
    # The port is routed all the same: only ``key`` (a vhost lost to an older app,
    # a path without a vhost) or one task was left out.  See :func:`mark_still_routed`.
    port_routes: bool = False

    def __str__(self) -> str:
        where = self._app_and_port()
        if self.key is not None:
            where += f" {self._key_and_value()}"
        return f"{where}: {self.reason}"

    def log_line(self) -> str:
        """The warning for this problem, saying what was left out.

        "skipped app ... port index N: why" when the app or port is not routed;
        "ignored KEY=VALUE of app ... port index N (the port still routes): why"
        when only that value (or a task) was.
        """
        if not self.port_routes:
            return f"skipped {self}"
        what = f"{self._key_and_value()} of" if self.key is not None else "for"
        return f"ignored {what} {self._app_and_port()} (the port still routes): {self.reason}"

    def _app_and_port(self) -> str:
        where = f"app {self.app_id!r}"
        if self.port_index is not None:
            where += f" port index {self.port_index}"
        return where

    def _key_and_value(self) -> str:
        if self.value is None:
            return str(self.key)
        return f"{self.key}={_shorten(self.value)!r}"


def mark_still_routed(problems: Iterable[Problem],
                      routed: Collection[tuple[str, int]]) -> tuple[Problem, ...]:
    """``problems``, those about a port in ``routed`` ((app id, port index) pairs)
    marked ``port_routes``: what they name was left out, not the port.

    Decided from what the model routes, not from each problem's wording, so a
    new kind of partial problem is reported right without a special case.
    """
    return tuple(
        replace(p, port_routes=True)
        if p.port_index is not None and not p.port_routes and (p.app_id, p.port_index) in routed
        else p
        for p in problems)


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


# Characters that end or break a line in HAProxy's parser, logs or terminals:
# C0 and C1 controls (tab, CR and LF included), DEL and Unicode line separators.
_LINE_BREAKING_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_length(value: str) -> str:
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
    if not _WORD_RE.fullmatch(_check_length(value).strip(" ")):
        raise SettingError("not a truth value (true/t/yes/y; any other word is false)")
    return value.lower() in TRUE_WORDS


def parse_port(value: str) -> int:
    """A TCP port, 1-65535 (surrounding blanks tolerated, as int() did)."""
    _check_length(value)
    try:
        port = int(value.strip(), 10)
    except ValueError:
        raise SettingError("not an integer port") from None
    if not 1 <= port <= 65535:
        raise SettingError("port out of range 1-65535")
    return port


def parse_mode(value: str) -> str:
    """``tcp`` or ``http``; upper case is repaired (HAProxy only takes lower case)."""
    mode = _check_length(value).strip().lower()
    if mode not in ("tcp", "http"):
        raise SettingError("mode must be 'tcp' or 'http'")
    return mode


def check_host(host: str) -> str:
    """One virtual host: a single safe token, kept exactly as written."""
    if not host or len(host) > 253 or not _HOST_RE.fullmatch(host):
        raise SettingError(
            f"{_shorten(host)!r} is not a valid host name (letters, digits, '-', '_', '.', "
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
    the port is routed on its own frontend only.
    """
    _check_length(value)
    if not value.strip(" "):
        return ()
    hosts = tuple(part.strip() for part in value.split(","))
    if not any(hosts):
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
    addr = _check_length(value).strip()
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
    path = _check_length(value)
    if not _PATH_RE.fullmatch(path):
        raise SettingError("path may only hold letters, digits and _ . / @ + = : , % ~ -")
    return path


def parse_groups(value: str) -> tuple[str, ...]:
    """servicerouter.py split HAPROXY_GROUP on ',' without trimming; so do we."""
    return tuple(_check_length(value).split(","))


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
    word = _check_length(value).strip().lower()
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
    path = _check_length(value).strip()
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
            raise SettingError(f"{_shorten(word, 40)!r}: {_URL_PATH_ERROR}")
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
    _check_length(value)
    try:
        weight = int(value.strip(), 10)
    except ValueError:
        raise SettingError("not an integer") from None
    if not -1_000_000 <= weight <= 1_000_000:
        raise SettingError("weight out of range -1000000..1000000")
    return weight


def parse_cookie_name(value: str) -> str:
    """A cookie name HAProxy can insert: letters, digits, '_', '.', '-'."""
    name = _check_length(value).strip()
    if not _COOKIE_RE.fullmatch(name):
        raise SettingError("cookie name may only hold letters, digits, '_', '.' and '-' (1-64)")
    return name


def parse_balance(value: str) -> str:
    """One HAProxy balance algorithm (arguments only where HAProxy takes one word)."""
    algorithm = " ".join(_check_length(value).split())
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
    parts = _check_length(value).strip().split(":")
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


# HAProxy bind keywords a label may add, with a check of their argument
# (None: a flag). Anything else is refused: an unknown keyword or an argument
# HAProxy cannot use would make it reject the whole config.
def _pattern(regex: str) -> Callable[[str], bool]:
    compiled = re.compile(regex)
    return lambda value: compiled.fullmatch(value) is not None


# Curve names OpenSSL takes, each with the group it names (aliases name the same
# group, and OpenSSL refuses a list naming one group twice).
_CURVE_GROUPS = {"X25519": "X25519", "X448": "X448", "P-256": "P-256", "P-384": "P-384",
                 "P-521": "P-521", "prime256v1": "P-256", "secp384r1": "P-384",
                 "secp521r1": "P-521"}
_CURVE_NAMES = frozenset(_CURVE_GROUPS)
_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                           "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
                           "TLS_AES_128_CCM_8_SHA256"})
_CIPHER_WORDS = _pattern(r"[A-Za-z0-9_+:!@=.-]{1,1024}")


def _cipher_list(value: str) -> bool:
    """An OpenSSL cipher list that selects at least one cipher (HAProxy's test too)."""
    if not _CIPHER_WORDS(value):
        return False
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
    except ssl.SSLError:
        return False
    return True


def _names_from(allowed: frozenset[str]) -> Callable[[str], bool]:
    return lambda value: bool(value) and all(part in allowed for part in value.split(":"))


def _curve_list(value: str) -> bool:
    """Known curve names, ':'-separated, no group twice (OpenSSL refuses the list)."""
    parts = value.split(":")
    if not all(part in _CURVE_GROUPS for part in parts):
        return False
    return len({_CURVE_GROUPS[part] for part in parts}) == len(parts)


_INTEGER_RE = re.compile(r"0|-?[1-9][0-9]{0,9}")  # no leading zeros, no '-0'


def _integer(low: int, high: int, *, zero: bool = True) -> Callable[[str], bool]:
    """A decimal integer in ``low..high`` (0 only if ``zero``)."""
    def check(value: str) -> bool:
        if _INTEGER_RE.fullmatch(value) is None:
            return False
        number = int(value)
        return low <= number <= high and (zero or number != 0)
    return check


# HAProxy's timer units, in milliseconds; a timer may not exceed 2^31-1 ms (~24.8 days).
_TIME_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000,
                  "d": 86_400_000, "": 1}
_TIME_RE = re.compile(r"(0|[1-9][0-9]{0,9})(us|ms|s|m|h|d)?")
MAX_TIMER_MS = 2**31 - 1


def _timer(value: str) -> bool:
    """A time HAProxy's parser accepts for a millisecond timer (tcp-ut)."""
    match = _TIME_RE.fullmatch(value)
    if match is None:
        return False
    return int(match.group(1)) * _TIME_UNITS_MS[match.group(2) or ""] <= MAX_TIMER_MS


_NUMBER = _integer(1, 9_999_999, zero=False)
_PROTOCOLS = _pattern(r"[A-Za-z0-9_./-]{1,32}(?:,[A-Za-z0-9_./-]{1,32}){0,15}")
# Below TLS 1.2 is refused: the default head sets ssl-min-ver TLSv1.2, so an older
# maximum would leave a bind with no protocol at all (HAProxy rejects the config).
_TLS_VERSION = _pattern(r"TLSv1\.[23]")
_BIND_KEYWORDS: dict[str, Callable[[str], bool] | None] = {
    "accept-proxy": None,
    "allow-0rtt": None,
    "defer-accept": None,
    "no-ca-names": None,
    "no-sslv3": None,
    "no-tls-tickets": None,
    "no-tlsv10": None,
    "no-tlsv11": None,
    "no-tlsv12": None,
    "no-tlsv13": None,
    "prefer-client-ciphers": None,
    "strict-sni": None,
    "tfo": None,
    "transparent": None,
    "v4v6": None,
    "v6only": None,
    "alpn": _PROTOCOLS,
    "backlog": _NUMBER,
    "ciphers": _cipher_list,
    "ciphersuites": _names_from(_TLS13_SUITES),
    "curves": _curve_list,
    "ecdhe": lambda value: value in _CURVE_NAMES,
    "id": _NUMBER,
    "interface": _pattern(r"[A-Za-z0-9_.-]{1,15}"),
    "maxconn": _NUMBER,
    # HAProxy: an absolute value 1..65535 (a negative one is a maximum, not a fixed MSS).
    "mss": _integer(-65535, 65535, zero=False),
    "name": _pattern(r"[A-Za-z0-9_.-]{1,64}"),
    "nice": _integer(-1024, 1024),
    "npn": _PROTOCOLS,
    "ssl-max-ver": _TLS_VERSION,
    "ssl-min-ver": _TLS_VERSION,
    "tcp-ut": _timer,
}
# What a keyword's argument must be, where "well-formed" would not say enough.
_BIND_ARGUMENTS = {
    "backlog": "an integer 1-9999999",
    "curves": "curve names joined by ':', each group once (prime256v1 is P-256, ...)",
    "id": "an integer 1-9999999",
    "maxconn": "an integer 1-9999999",
    "mss": "a non-zero integer -65535..65535",
    "nice": "an integer -1024..1024",
    "tcp-ut": f"a time of at most {MAX_TIMER_MS} ms (~24.8 days): a number with an optional "
              "unit us, ms, s, m, h or d",
}


def parse_bind_options(value: str) -> tuple[str, ...]:
    """Extra ``bind`` options: known keywords with well-formed arguments only.

    Returned as words; the renderer joins them with single spaces, so blanks in
    the label never reach the config as written.
    """
    words = _check_length(value).split()
    if not words:
        raise SettingError("no bind option given")
    out: list[str] = []
    arguments: dict[str, str | None] = {}
    position = 0
    while position < len(words):
        keyword = words[position]
        if keyword not in _BIND_KEYWORDS:
            raise SettingError(f"unsupported bind option {_shorten(keyword, 40)!r} (supported: "
                               f"{', '.join(sorted(_BIND_KEYWORDS))})")
        if keyword in arguments:
            # HAProxy refuses some repeats (a second 'id') and silently overrides others.
            raise SettingError(f"bind option {keyword!r} is given more than once")
        argument_ok = _BIND_KEYWORDS[keyword]
        out.append(keyword)
        position += 1
        arguments[keyword] = None
        if argument_ok is None:
            continue
        if position >= len(words) or not argument_ok(words[position]):
            wanted = _BIND_ARGUMENTS.get(keyword)
            raise SettingError(f"bind option {keyword!r} needs a valid argument"
                               + (f" ({wanted})" if wanted else ""))
        out.append(words[position])
        arguments[keyword] = words[position]
        position += 1
    if "v4v6" in arguments and "v6only" in arguments:
        raise SettingError("bind options 'v4v6' and 'v6only' contradict each other")
    if (arguments.get("ssl-min-ver") or "TLSv1.2") > (arguments.get("ssl-max-ver") or "TLSv1.3"):
        raise SettingError("ssl-min-ver is above ssl-max-ver: no TLS version would be left")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Setting:
    """One key apps can set: its name, how its value is read, and its docs."""

    key: str  # "HAPROXY_{n}_VHOST" for per-port keys, "HAPROXY_GROUP" for app keys
    attr: str  # the PortSettings / AppSettings field it fills
    parse: Callable[[str], Any]
    default: Any
    help: str
    example: str
    per_port: bool = True
    origin: str = "servicerouter.py"  # or "servicerouter" for keys new in this project

    def name(self, index: int) -> str:
        return self.key.replace("{n}", str(index)) if self.per_port else self.key


_HASH_BALANCES = frozenset({"source", "uri", "url_param", "hdr", "rdp-cookie"})


@dataclass(frozen=True, slots=True)
class PortSettings:
    """The settings of one service port, after parsing; defaults where unset."""

    vhosts: tuple[str, ...] = ()
    sticky: bool = False
    redirect_to_https: bool = False
    ssl_cert: str | None = None
    bind_addr: str | None = None
    port: int | None = None
    mode: str | None = None
    groups: tuple[str, ...] | None = None  # None: the app's HAPROXY_GROUP applies
    enabled: bool | None = None  # None: not said (see --strict-mode)
    path: str | None = None
    backend_weight: int = 0
    use_hsts: bool = False
    sticky_cookie: str | None = None
    balance: str | None = None
    auth: BasicAuth | None = None
    bind_options: tuple[str, ...] = ()
    given: frozenset[str] = field(default_factory=frozenset)  # attrs set explicitly

    @property
    def hashed_balance(self) -> bool:
        """A hash algorithm (source, uri, url_param, hdr(), rdp-cookie): HAProxy takes
        servers added at run time only with ``hash-type consistent`` for these."""
        if not self.balance:
            return False
        return self.balance.split("(")[0].split(" ")[0] in _HASH_BALANCES


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Settings that apply to a whole app."""

    groups: tuple[str, ...] = ()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "HAPROXY_GROUP", "groups", parse_groups, (),
        "Comma-separated groups of the app. A router given --group only routes apps "
        "sharing one of its groups; '--group *' routes every app; with no --group, only "
        "apps without a group are routed.",
        "HAPROXY_GROUP=external", per_port=False,
    ),
    Setting(
        "HAPROXY_{n}_VHOST", "vhosts", parse_vhosts, (),
        "Virtual host(s) of the port, comma-separated. Adds the port to the shared HTTP "
        "and HTTPS frontends (routed on the Host header) and forces mode http. Exact hosts "
        "match before '*.example.com' wildcards; a wildcard takes no :port.",
        "HAPROXY_0_VHOST=www.example.com",
    ),
    Setting(
        "HAPROXY_{n}_STICKY", "sticky", parse_bool, False,
        "true/t/yes/y: cookie-based sticky sessions for the port's backend.",
        "HAPROXY_0_STICKY=true",
    ),
    Setting(
        "HAPROXY_{n}_REDIRECT_TO_HTTPS", "redirect_to_https", parse_bool, False,
        "true/t/yes/y: plain HTTP requests for the port's virtual hosts get a 301 to HTTPS.",
        "HAPROXY_0_REDIRECT_TO_HTTPS=true",
    ),
    Setting(
        "HAPROXY_{n}_SSL_CERT", "ssl_cert", parse_path, None,
        "PEM bundle path: the port's own frontend terminates TLS with it.",
        "HAPROXY_0_SSL_CERT=/etc/ssl/certs/site.pem",
    ),
    Setting(
        "HAPROXY_{n}_BIND_ADDR", "bind_addr", parse_bind_addr, None,
        "Address the port's frontend binds to (default '*', or --bind-addr).",
        "HAPROXY_0_BIND_ADDR=10.0.0.42",
    ),
    Setting(
        "HAPROXY_{n}_PORT", "port", parse_port, None,
        "Bind port of the port's frontend instead of the service port (also names the backend).",
        "HAPROXY_0_PORT=8080",
    ),
    Setting(
        "HAPROXY_{n}_MODE", "mode", parse_mode, None,
        "tcp or http. Default tcp, or http when the port's Marathon health check is HTTP.",
        "HAPROXY_0_MODE=http",
    ),
    Setting(
        "HAPROXY_{n}_GROUP", "groups", parse_port_groups, None,
        "Groups of this port only, comma-separated; overrides HAPROXY_GROUP for the port "
        "(same rules as HAPROXY_GROUP).",
        "HAPROXY_1_GROUP=internal", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_ENABLED", "enabled", parse_switch, None,
        "true/false. false leaves the port out. With --strict-mode only ports set to true "
        "are routed.",
        "HAPROXY_0_ENABLED=true", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_PATH", "path", parse_url_path, None,
        "URL path prefix routed to the port under its virtual host(s), so several apps "
        "can share one host; several prefixes separated by single spaces (at most "
        f"{MAX_PATH_PREFIXES}), after '-i' to match ignoring case, as marathon-lb. Each "
        "prefix is its own rule: the longest matching prefix wins; '/' is the same route as "
        "no path (one owner per host and prefix: the oldest app); a path needs a VHOST.",
        "HAPROXY_0_PATH=-i /api /static", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_BACKEND_WEIGHT", "backend_weight", parse_weight, 0,
        "Integer ordering the port's rules in the shared frontends among equally specific "
        "rules (exact hosts before wildcards, then longer paths first): higher goes first "
        "(default 0).",
        "HAPROXY_0_BACKEND_WEIGHT=10", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_USE_HSTS", "use_hsts", parse_switch, False,
        "true/false: HTTPS responses carry Strict-Transport-Security (set with "
        "http-response, HAProxy 2.x syntax).",
        "HAPROXY_0_USE_HSTS=true", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_STICKY_COOKIE", "sticky_cookie", parse_cookie_name, None,
        "Name of the cookie HAPROXY_{n}_STICKY inserts (default mesosphere_server_id).",
        "HAPROXY_0_STICKY_COOKIE=srv_id", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_BALANCE", "balance", parse_balance, None,
        "Load-balancing algorithm of the port's backend (default roundrobin): roundrobin, "
        "static-rr, leastconn, first, source, uri, random, random(N), rdp-cookie, "
        "rdp-cookie(NAME), hdr(NAME) or 'url_param NAME'.",
        "HAPROXY_0_BALANCE=leastconn", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_AUTH", "auth", parse_auth, None,
        "HTTP basic auth: realm:user:hashed-password, the hash a crypt(3) string such as "
        "'openssl passwd -6' prints. Requests without valid credentials get a 401.",
        "HAPROXY_0_AUTH=admins:alice:$6$salt$hash...", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_BIND_OPTIONS", "bind_options", parse_bind_options, (),
        "Extra options of the port's bind line: only these keywords, each at most once and "
        "with an argument HAProxy accepts where it takes one (numbers in HAProxy's ranges): "
        + ", ".join(sorted(_BIND_KEYWORDS)) + ".",
        "HAPROXY_0_BIND_OPTIONS=accept-proxy maxconn 2000", origin="servicerouter",
    ),
)

PORT_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.per_port)
APP_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if not s.per_port)

_KEY_CACHE: dict[int, tuple[tuple[Setting, str], ...]] = {}
_PORT_SETTING_BY_SUFFIX = {s.key.removeprefix("HAPROXY_{n}_"): s for s in PORT_SETTINGS}


def _port_keys(index: int) -> tuple[tuple[Setting, str], ...]:
    keys = _KEY_CACHE.get(index)
    if keys is None:
        keys = tuple((s, s.name(index)) for s in PORT_SETTINGS)
        if index < 64:
            _KEY_CACHE[index] = keys
    return keys


def _lookup(key: str, labels: Mapping[str, Any], env: Mapping[str, Any]) -> Any:
    """Labels win over env; None when neither has the key."""
    if key in labels:
        return labels[key]
    return env.get(key)


def read_app_settings(
    app_id: str, labels: Mapping[str, Any], env: Mapping[str, Any]
) -> tuple[AppSettings | None, list[Problem]]:
    """App-wide settings; None (and a problem) when one of them is unusable."""
    values: dict[str, Any] = {}
    for setting in APP_SETTINGS:
        raw = _lookup(setting.key, labels, env)
        if raw is None:
            continue
        if not isinstance(raw, str):
            return None, [Problem(app_id, "value is not a string", key=setting.key)]
        try:
            values[setting.attr] = setting.parse(raw)
        except SettingError as err:
            return None, [Problem(app_id, str(err), key=setting.key, value=raw)]
    return AppSettings(**values), []


def read_port_settings(
    app_id: str, index: int, labels: Mapping[str, Any], env: Mapping[str, Any]
) -> tuple[PortSettings | None, list[Problem]]:
    """Settings of service port ``index``; None when any value is unusable.

    One bad value skips the whole port: routing it with half its settings
    (say, without its TLS certificate) would be worse than not routing it.
    """
    if not labels and not env:
        return DEFAULT_PORT_SETTINGS, []
    # Scan the few keys the app has rather than look up every registry key:
    # most apps set none or one or two of them.
    prefix = f"HAPROXY_{index}_"
    present: dict[str, Any] = {}  # attr -> raw value
    for source in (env, labels):  # labels last: they win over env
        for key, raw in source.items():
            if raw is not None and isinstance(key, str) and key.startswith(prefix):
                setting = _PORT_SETTING_BY_SUFFIX.get(key[len(prefix):])
                if setting is not None:
                    present[setting.attr] = raw
    if not present:
        return DEFAULT_PORT_SETTINGS, []
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for setting, name in _port_keys(index):
        raw = present.get(setting.attr)
        if raw is None:
            continue
        if not isinstance(raw, str):
            problems.append(Problem(app_id, "value is not a string", index, name, repr(raw)))
            continue
        try:
            values[setting.attr] = setting.parse(raw)
        except SettingError as err:
            problems.append(Problem(app_id, str(err), index, name, raw))
    if problems:
        return None, problems
    if not values:
        return DEFAULT_PORT_SETTINGS, []
    return replace(DEFAULT_PORT_SETTINGS, given=frozenset(values), **values), []


DEFAULT_PORT_SETTINGS = PortSettings()
