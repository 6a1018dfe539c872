"""The one registry of every app setting servicerouter reads.

Each setting is a Marathon app label (or, for apps written for the original
servicerouter.py, an env var of the same name).  The registry below drives
parsing and validation, ``--longhelp`` and the README tables, so the three can
never disagree.  Parsing is pure: a bad value becomes a :class:`Problem` for
that app and port, never an exception that stops a sync.

Validation is strict on purpose: whatever a label says ends up inside an
HAProxy config, so a value may only ever be one safe token.  Newlines, ``#``,
spaces, quotes, braces and backslashes can never reach the config.  The value
parsers are in :mod:`servicerouter.model.label_values`, the bind options' allow-list
in :mod:`servicerouter.model.bind_options`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from servicerouter.model.bind_options import BIND_KEYWORDS, parse_bind_options
from servicerouter.model.label_values import (
    MAX_PATH_PREFIXES,
    BasicAuth,
    SettingError,
    parse_auth,
    parse_balance,
    parse_bind_addr,
    parse_bool,
    parse_cookie_name,
    parse_groups,
    parse_mode,
    parse_path,
    parse_port,
    parse_port_groups,
    parse_switch,
    parse_url_path,
    parse_vhosts,
    parse_weight,
    shorten,
)

# Value helpers model/services.py imports from here, kept only until its rework (in
# parallel) imports them from servicerouter.model.label_values.
from servicerouter.model.label_values import path_ignores_case as path_ignores_case
from servicerouter.model.label_values import path_prefixes as path_prefixes
from servicerouter.model.mlb_values import parse_backend_path, parse_networks, parse_port_index

if TYPE_CHECKING:
    from servicerouter.model.rule_values import RuleExtras


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
    # and ``owner`` is that app (the one whose configuration is oldest); kind "label" =
    # a label ignored as written (see servicerouter.model.label_names), nothing skipped.
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
        if self.kind == "label":  # a label we do not act on: the port is not affected
            return f"ignored label {self._key_and_value()} of {self._app_and_port()}: {self.reason}"
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
        return f"{self.key}={shorten(self.value)!r}"


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


# PortSettings, HealthCheck and Service are built thousands of times a sync and never
# changed afterwards (see servicerouter.model.values), so they are plain slots classes
# that hash and compare by value as frozen ones did: a frozen dataclass's __init__
# sets each field through object.__setattr__, about seven times the cost.
@dataclass(slots=True, unsafe_hash=True)
class PortSettings:
    """The settings of one service port, after parsing; defaults where unset.
    Never changed once built (a plain slots class for speed, see above)."""

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
    # marathon-lb's backend settings (rendered by servicerouter.render.mlb_backend)
    proxypass_path: str | None = None
    revproxy_path: str | None = None
    redirect_path: str | None = None
    allowed_networks: tuple[str, ...] = ()
    healthcheck_port_index: int | None = None
    given: frozenset[str] = field(default_factory=frozenset)  # attrs set explicitly
    # An operator rule's header matches and split (servicerouter.model.rule_values).
    rule: RuleExtras | None = None

    @property
    def hashed_balance(self) -> bool:
        """A hash algorithm (source, uri, url_param, hdr(), rdp-cookie): HAProxy takes
        servers added at run time only with ``hash-type consistent`` for these."""
        if not self.balance:
            return False
        return self.balance.split("(")[0].split(" ")[0] in _HASH_BALANCES


@dataclass(slots=True, unsafe_hash=True)
class AppSettings:
    """Settings that apply to a whole app (never changed once built, as PortSettings)."""

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
        + ", ".join(sorted(BIND_KEYWORDS)) + ".",
        "HAPROXY_0_BIND_OPTIONS=accept-proxy maxconn 2000", origin="servicerouter",
    ),
    Setting(
        "HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH", "proxypass_path", parse_backend_path, None,
        "http mode: requests whose path starts with this prefix reach the servers without "
        "it ('/api/x' -> '/x', as marathon-lb's ProxyPass glue; the query is kept), and "
        "with the port's first VHOST as their Host header.",
        "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH=/api", origin="marathon-lb",
    ),
    Setting(
        "HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH", "revproxy_path", parse_backend_path, None,
        "http mode: a response Location that is a path, or an absolute URL on the port's "
        "first VHOST, is replaced by this path (marathon-lb's semantics: the whole "
        "Location, not a prefix).",
        "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH=/my/content", origin="marathon-lb",
    ),
    Setting(
        "HAPROXY_{n}_HTTP_BACKEND_REDIR", "redirect_path", parse_backend_path, None,
        "http mode: requests for '/' (on the port's VHOSTs, when it has any) get a 301 to "
        "this path, as marathon-lb.",
        "HAPROXY_0_HTTP_BACKEND_REDIR=/my/content", origin="marathon-lb",
    ),
    Setting(
        "HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL", "allowed_networks", parse_networks, (),
        "Only these source addresses or CIDR networks (blank- or comma-separated) reach "
        "the port's backend: others get 403 (http) or a closed connection (tcp).",
        "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL=10.1.40.0/24 10.1.55.43", origin="marathon-lb",
    ),
    Setting(
        "HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX", "healthcheck_port_index",
        parse_port_index, None,
        "Health-check each server on the same task's port at this index (e.g. an admin "
        "port) instead of the routed one; an index the app does not have checks the "
        "routed port, as marathon-lb. Needs a Marathon health check on the port.",
        "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX=1", origin="marathon-lb",
    ),
)

PORT_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.per_port)
APP_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if not s.per_port)

_KEY_CACHE: dict[int, tuple[tuple[Setting, str], ...]] = {}
_PORT_POSITION_BY_SUFFIX = {s.key.removeprefix("HAPROXY_{n}_"): position
                            for position, s in enumerate(PORT_SETTINGS)}
_PORT_INDEXES = {str(index): index for index in range(64)}  # the digits of a port key


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
    return port_settings(app_id, index, scan_labels(labels, env).port_values.get(index))


class LabelScan(NamedTuple):
    """What the per-app readers need from an app's labels and env, read in one pass.

    ``port_values``: port index -> {position in the registry: raw value}, labels
    over env, a None value being no value; a key names port ``n`` only as
    ``HAPROXY_<n>_<NAME>`` with ``n`` written as ``str(n)`` (``HAPROXY_01_VHOST``
    names no port).  ``port_groups``: some key is a per-port ``HAPROXY_{n}_GROUP``
    (whatever its value).  ``label_keys``: the ``HAPROXY_*`` label names, for
    :func:`servicerouter.model.label_names.label_notices`.  ``odd_keys``: a key is
    not a string (only a caller other than Marathon's JSON makes one); the readers
    then take the app key by key, as they did before there was a scan.
    """

    port_values: dict[int, dict[int, Any]]
    port_groups: bool
    label_keys: list[str]
    odd_keys: bool


def scan_labels(labels: Mapping[str, Any], env: Mapping[str, Any]) -> LabelScan:
    """One pass over ``labels`` and ``env`` (see :class:`LabelScan`): the per-port
    readers used to scan both again for every port, and the group and notice checks
    once more each."""
    found: dict[int, dict[int, Any]] = {}
    positions, indexes = _PORT_POSITION_BY_SUFFIX, _PORT_INDEXES
    port_groups = odd = False
    label_keys: list[str] = []
    for from_labels, source in ((False, env), (True, labels)):  # labels win over env
        for key, raw in source.items():
            if not isinstance(key, str):
                odd = True
                continue
            if not key.startswith("HAPROXY_"):
                continue
            if from_labels:
                label_keys.append(key)
            rest = key[8:]
            if rest.endswith("_GROUP"):
                port_groups = True  # HAPROXY_{n}_GROUP (as servicerouter.model.app_fields.has_port_groups)
            digits, sep, suffix = rest.partition("_")
            if not sep or raw is None:
                continue
            position = positions.get(suffix)
            if position is None:
                continue
            index = indexes.get(digits)
            if index is None:  # past the table: the digits must still be str(index)
                # (no list of ports reaches 19 digits; longer ones are not converted)
                if not (digits.isascii() and digits.isdigit()) or len(digits) > 18 \
                        or digits != str(int(digits)):
                    continue
                index = int(digits)
            found.setdefault(index, {})[position] = raw
    return LabelScan(found, port_groups, label_keys, odd)


def port_settings(app_id: str, index: int, present: Mapping[int, Any] | None
                  ) -> tuple[PortSettings | None, list[Problem]]:
    """:func:`read_port_settings` of the raw values :func:`scan_labels` found for ``index``."""
    if not present:
        return DEFAULT_PORT_SETTINGS, []
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    keys = _port_keys(index)
    for position in sorted(present):  # in registry order, as every setting was visited
        setting, name = keys[position]
        raw = present[position]
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
    # The defaults with the values given, positionally (no keyword merging): thousands
    # of ports a sync.
    args = _DEFAULT_PORT_ARGS.copy()
    for attr, value in values.items():
        args[_PORT_FIELD_POSITION[attr]] = value
    args[_GIVEN_POSITION] = frozenset(values)
    return PortSettings(*args), []


DEFAULT_PORT_SETTINGS = PortSettings()
_DEFAULT_PORT_FIELDS = {f.name: getattr(DEFAULT_PORT_SETTINGS, f.name)
                        for f in fields(PortSettings) if f.init}
_DEFAULT_PORT_ARGS = list(_DEFAULT_PORT_FIELDS.values())  # every field is an init field
_PORT_FIELD_POSITION = {name: position for position, name in enumerate(_DEFAULT_PORT_FIELDS)}
_GIVEN_POSITION = _PORT_FIELD_POSITION["given"]
