"""``HAPROXY_{n}_BIND_OPTIONS``: the bind keywords a label may add, and their arguments.

Anything outside this allow-list is refused: an unknown keyword or an argument
HAProxy cannot use would make it reject the whole config, and a free-form value
could inject directives.  Each keyword maps to a check of its argument (None: a
flag), modelled on what HAProxy 2.6 and OpenSSL accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from servicerouter.model.label_values import SettingError, check_length, shorten


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
# HAProxy bind keywords a label may add, with a check of their argument
# (None: a flag). Anything else is refused: an unknown keyword or an argument
# HAProxy cannot use would make it reject the whole config.
BIND_KEYWORDS: dict[str, Callable[[str], bool] | None] = {
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
    words = check_length(value).split()
    if not words:
        raise SettingError("no bind option given")
    out: list[str] = []
    arguments: dict[str, str | None] = {}
    position = 0
    while position < len(words):
        keyword = words[position]
        if keyword not in BIND_KEYWORDS:
            raise SettingError(f"unsupported bind option {shorten(keyword, 40)!r} (supported: "
                               f"{', '.join(sorted(BIND_KEYWORDS))})")
        if keyword in arguments:
            # HAProxy refuses some repeats (a second 'id') and silently overrides others.
            raise SettingError(f"bind option {keyword!r} is given more than once")
        argument_ok = BIND_KEYWORDS[keyword]
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
