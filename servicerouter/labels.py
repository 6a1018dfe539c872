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
from collections.abc import Callable, Mapping
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

    def __str__(self) -> str:
        where = f"app {self.app_id!r}"
        if self.port_index is not None:
            where += f" port index {self.port_index}"
        if self.key is not None:
            shown = self.value if self.value is None else _shorten(self.value)
            where += f" {self.key}={shown!r}" if shown is not None else f" {self.key}"
        return f"{where}: {self.reason}"


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def _check_length(value: str) -> str:
    if len(value) > MAX_VALUE_LENGTH:
        raise SettingError(f"value is {len(value)} characters long (at most {MAX_VALUE_LENGTH})")
    return value


def parse_bool(value: str) -> bool:
    """servicerouter.py semantics: true/t/yes/y in any case is true, anything else false."""
    return _check_length(value).lower() in TRUE_WORDS


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
    if not host or len(host) > 253 or not _HOST_RE.match(host):
        raise SettingError(
            f"{_shorten(host)!r} is not a valid host name (letters, digits, '-', '_', '.', "
            "an optional leading '*.' and ':port')"
        )
    if ":" in host:
        port = int(host.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise SettingError(f"{host!r}: port out of range 1-65535")
    return host


def parse_vhosts(value: str) -> tuple[str, ...]:
    """Comma-separated virtual hosts; each must be a safe host token."""
    _check_length(value)
    hosts = tuple(part.strip() for part in value.split(","))
    if not any(hosts):
        raise SettingError("no host name given")
    for host in hosts:
        check_host(host)
    # Keep the first occurrence of each host, in the order written.
    return tuple(dict.fromkeys(hosts))


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
    if not _HOSTNAME_RE.match(addr):
        raise SettingError("bind address must be '*', an IP address or a host name")
    return addr


def parse_path(value: str) -> str:
    """A file path HAProxy will read: one token without blanks or comment signs."""
    path = _check_length(value)
    if not _PATH_RE.match(path):
        raise SettingError("path may only hold letters, digits and _ . / @ + = : , % ~ -")
    return path


def parse_groups(value: str) -> tuple[str, ...]:
    """servicerouter.py split HAPROXY_GROUP on ',' without trimming; so do we."""
    return tuple(_check_length(value).split(","))


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
    given: frozenset[str] = field(default_factory=frozenset)  # attrs set explicitly


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
        "and HTTPS frontends (routed on the Host header) and forces mode http.",
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
)

PORT_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.per_port)
APP_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if not s.per_port)

_KEY_CACHE: dict[int, tuple[tuple[Setting, str], ...]] = {}


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
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for setting, name in _port_keys(index):
        raw = _lookup(name, labels, env)
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
