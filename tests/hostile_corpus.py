"""A corpus of hostile Marathon input: what a tenant, a broken Marathon or the network may send.

Every case is one Marathon state: a well-behaved ``/bystander`` app that must always be
routed, plus the hostile app(s) of the case. A case says exactly which hostile services
must still be routed (by app id and bind port), which must be skipped with a log line
naming the app (and port index) and matching a reason, and which text must never reach
the config. ``tests/test_hostile_corpus.py`` runs each case through a real sync and checks
the written config with ``haproxy -c``.

Cases are generated (every hostile value in every setting, as label and as env var) and
hand-written (wrong JSON types, missing fields, odd ids, ports, conflicts, task hosts,
task counts). ``python -m tests.hostile_corpus`` prints the corpus size per category.
"""

from __future__ import annotations

import copy
import json
import re
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from servicerouter.model.label_values import SettingError
from servicerouter.model.labels import PORT_SETTINGS

# --------------------------------------------------------------------------- building blocks

MARKER = "evil"
"""Every hostile label value carries this token; it must never appear in a config."""

OLD = "2015-01-01T00:00:00.000Z"
MIDDLE = "2016-06-01T00:00:00.000Z"
NEW = "2017-01-01T00:00:00.000Z"

BYSTANDER_ID = "/bystander"
BYSTANDER_PORT = 10000
HOSTILE_ID = "/hostile"
HOSTILE_PORTS = (11000, 11001)

UNRESOLVABLE = "unresolvable.invalid"


def resolve(host: str) -> str | None:
    """The test's DNS: IPv4 literals resolve to themselves, ``*.test`` to 127.0.0.1."""
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return host
    if host.endswith(".test"):
        return "127.0.0.1"
    return None


def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
    """The test's DNS for bind addresses: literals as the OS reads them, local names local."""
    if host.endswith(".test") or host == "localhost":
        host = "127.0.0.1"
    kwargs["flags"] = kwargs.get("flags", 0) | socket.AI_NUMERICHOST
    return socket.getaddrinfo(host, port, *args, **kwargs)


def can_bind(addr: str) -> bool:
    """Whether this host has ``addr`` (IPv6 may be off in containers)."""
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((addr, 0))
    except OSError:
        return False
    return True


CERTS = "@CERTS@"
"""Placeholder for the directory of certificate files the test writes (see CERT_FILES)."""

CERT_FILES = ("good.pem", "expired.pem", "garbage.pem", "mismatch.pem", "split.pem",
              "split.pem.key", "dir/good.pem")


def bystander() -> dict[str, Any]:
    """An ordinary app sharing the router with every hostile one; it must stay routed."""
    return {
        "id": BYSTANDER_ID,
        "ports": [BYSTANDER_PORT],
        "labels": {"HAPROXY_0_VHOST": "bystander.example.com"},
        "versionInfo": {"lastConfigChangeAt": MIDDLE},
        "tasks": [{"id": "bystander.1", "host": "10.0.0.1", "ports": [31000]}],
    }


def app(app_id: str = HOSTILE_ID, ports: Any = HOSTILE_PORTS, *, changed: str | None = NEW,
        n_tasks: int = 2, task_ports: int = 2, **fields: Any) -> dict[str, Any]:
    """A healthy app (two ports, two tasks); ``fields`` override or add top-level fields.

    ``ports=None`` leaves ``ports`` out (for apps using another shape).
    """
    body: dict[str, Any] = {"id": app_id}
    if ports is not None:
        body["ports"] = list(ports) if isinstance(ports, tuple) else ports
    if changed is not None:
        body["versionInfo"] = {"lastConfigChangeAt": changed}
        body["version"] = changed
    body["tasks"] = [
        {"id": f"{app_id[1:] or 'x'}.{i}", "host": f"10.0.1.{i + 1}",
         "ports": [31000 + j for j in range(task_ports)]}
        for i in range(n_tasks)
    ]
    body.update(copy.deepcopy(fields))
    return body


def with_tasks(body: dict[str, Any], tasks: list[Any]) -> dict[str, Any]:
    body["tasks"] = tasks
    return body


def both_ports(app_id: str = HOSTILE_ID) -> frozenset[tuple[str, int]]:
    return frozenset((app_id, p) for p in HOSTILE_PORTS)


def second_port(app_id: str = HOSTILE_ID) -> frozenset[tuple[str, int]]:
    return frozenset({(app_id, HOSTILE_PORTS[1])})


@dataclass(frozen=True)
class Skip:
    """A log line that must exist: names ``app`` (and ``port index N``) and matches ``reason``."""

    app: str
    reason: str
    port_index: int | None = None


@dataclass(frozen=True)
class Case:
    """One Marathon state and what the router must make of it."""

    name: str
    category: str
    apps: tuple[Any, ...]
    routed: frozenset[tuple[str, int]] = frozenset()  # hostile services that must be routed
    skips: tuple[Skip, ...] = ()
    markers: tuple[str, ...] = ()  # text that must not reach the config
    with_bystander: bool = True
    no_vhost: tuple[tuple[str, str], ...] = ()  # (app id, host): never routed there

    def state(self) -> dict[str, Any]:
        apps = ([bystander()] if self.with_bystander else []) + list(self.apps)
        return {"apps": apps}

    def body(self) -> bytes:
        return json.dumps(self.state()).encode("utf-8")

    def expected_routed(self) -> frozenset[tuple[str, int]]:
        extra = {(BYSTANDER_ID, BYSTANDER_PORT)} if self.with_bystander else set()
        return self.routed | extra


@dataclass(frozen=True)
class DocumentCase:
    """A whole response body that is unusable: the router keeps the config it has."""

    name: str
    body: bytes
    reason: str


@dataclass
class _Builder:
    cases: list[Case] = field(default_factory=list)

    def add(self, name: str, category: str, apps: list[Any],
            routed: frozenset[tuple[str, int]] | set[tuple[str, int]], *skips: Skip,
            markers: tuple[str, ...] = (), with_bystander: bool = True,
            no_vhost: tuple[tuple[str, str], ...] = ()) -> None:
        self.cases.append(Case(name, category, tuple(apps), frozenset(routed), skips, markers,
                               with_bystander, no_vhost))


# --------------------------------------------------------------------------- label values

HOSTILE_VALUES: dict[str, str] = {
    "newline-directive": "evil\n  bind :2222",
    "cr-directive": "evil\r  mode tcp",
    "crlf": "evil\r\nlisten x",
    "nul": "evil\x00x",
    "hash-comment": "evil#x",
    "space": "evil x",
    "tab": "evil\tx",
    "leading-space": " evil",
    "open-brace": "{evil",
    "format-field": "{evil}",
    "jinja-expr": "{{ evil }}",
    "jinja-stmt": "{% evil %}",
    "backslash": "evil\\",
    "backslash-n": "evil\\nx",
    "double-quote": 'evil"x',
    "single-quote": "evil'x",
    "non-ascii": "évil.example.com",
    "line-separator": "evil\u2028x",
    "next-line": "evil\x85x",
    "semicolon": "evil;x",
    "sample-fetch": "evil%[src]",
    "env-expansion": "${evil}",
    "100kB": MARKER * 25_000,
}

# Settings whose every hostile value is unusable, and the reason they are rejected for.
_STRICT_REASONS = {
    "VHOST": r"not a valid host name|characters long|no host name|control character",
    "SSL_CERT": r"path may only hold|characters long|control character",
    "BIND_ADDR": r"bind address must be|characters long|control character",
    "PORT": r"not an integer port|characters long|control character",
    "MODE": r"mode must be|characters long|control character",
    "STICKY": r"not a truth value|characters long|control character",
    "REDIRECT_TO_HTTPS": r"not a truth value|characters long|control character",
}
# A good value of each key, to splice a control character into.
_TRAILING_GOOD = {
    "VHOST": "t.example.com", "AUTH": "r:u:$1$abc$iCQ2D3nhptRYi27fDYv2s1", "ENABLED": "true",
    "MODE": "http", "PORT": "12000", "BIND_ADDR": "127.0.0.1", "STICKY": "true",
    "REDIRECT_TO_HTTPS": "true", "PATH": "/x", "BACKEND_WEIGHT": "1", "USE_HSTS": "true",
    "STICKY_COOKIE": "c", "BALANCE": "leastconn", "BIND_OPTIONS": "accept-proxy",
    "GROUP": "g",
}
# Group names never reach the config; only what could split a line is refused.
_GROUP_REFUSED = {"newline-directive", "cr-directive", "crlf", "nul", "line-separator",
                  "next-line", "tab", "100kB"}


def _label_cases(b: _Builder) -> None:
    for where in ("labels", "env"):
        for setting, reason in _STRICT_REASONS.items():
            key = f"HAPROXY_0_{setting}"
            for value_name, value in HOSTILE_VALUES.items():
                name = f"{where}-{setting.lower()}-{value_name}"
                if value_name == "leading-space" and setting in ("VHOST", "STICKY",
                                                                 "REDIRECT_TO_HTTPS"):
                    # Blanks around a host name are trimmed ("evil" is a fine host name);
                    # a padded word is a false truth value, as in servicerouter.py.
                    b.add(name, f"label:{setting.lower()}", [app(**{where: {key: value}})],
                          both_ports())
                    continue
                if value_name == "leading-space" and setting == "BIND_ADDR":
                    reason = r"bind address evil does not resolve"
                b.add(name, f"label:{setting.lower()}", [app(**{where: {key: value}})],
                      second_port(), Skip(HOSTILE_ID, reason, 0), markers=(MARKER,))
                reason = _STRICT_REASONS[setting]
            # An empty value: a truth value reads as false and a VHOST as none (both as
            # servicerouter.py did); anything else is unusable.
            if setting in ("STICKY", "REDIRECT_TO_HTTPS", "VHOST"):
                b.add(f"{where}-{setting.lower()}-empty", f"label:{setting.lower()}",
                      [app(**{where: {key: ""}})], both_ports())
            else:
                b.add(f"{where}-{setting.lower()}-empty", f"label:{setting.lower()}",
                      [app(**{where: {key: ""}})], second_port(), Skip(HOSTILE_ID, reason, 0))
            for wrong_name, wrong in (("number", 8080), ("list", ["a"]), ("object", {"a": 1}),
                                      ("null-like", False)):
                b.add(f"{where}-{setting.lower()}-type-{wrong_name}", "label:type",
                      [app(**{where: {key: wrong}})], second_port(),
                      Skip(HOSTILE_ID, r"not a string", 0))
        for value_name, value in HOSTILE_VALUES.items():
            routed = frozenset() if value_name in _GROUP_REFUSED else both_ports()
            skips = (Skip(HOSTILE_ID, r"HAPROXY_GROUP.*(control character|characters long)"),) \
                if value_name in _GROUP_REFUSED else ()
            b.add(f"{where}-group-{value_name}", "label:group",
                  [app(**{where: {"HAPROXY_GROUP": value}})], routed, *skips, markers=(MARKER,))
        b.add(f"{where}-group-type-number", "label:type",
              [app(**{where: {"HAPROXY_GROUP": 1}})], frozenset(),
              Skip(HOSTILE_ID, r"HAPROXY_GROUP.*not a string"))

    # Every other per-port key of the registry: the registry's parser decides.
    for setting in PORT_SETTINGS:
        suffix = setting.key.replace("HAPROXY_{n}_", "")
        if suffix in _STRICT_REASONS:
            continue
        key = setting.name(0)
        for value_name, value in {**HOSTILE_VALUES, "empty": ""}.items():
            name = f"labels-port-{suffix.lower()}-{value_name}"
            try:
                setting.parse(value)
            except SettingError as err:
                b.add(name, f"label:{suffix.lower()}", [app(labels={key: value})],
                      second_port(), Skip(HOSTILE_ID, re.escape(f"{key}=") + ".*"
                                          + re.escape(str(err)[:60]), 0), markers=(MARKER,))
            else:  # accepted (a group name): routed, and still nothing reaches the config
                b.add(name, f"label:{suffix.lower()}", [app(labels={key: value})],
                      both_ports(), markers=(MARKER,))

    # Labels win over env: a good label hides a hostile env var of the same key.
    for setting, good in (("VHOST", "ok.example.com"), ("PORT", "12000"), ("MODE", "http")):
        key = f"HAPROXY_0_{setting}"
        routed = frozenset({(HOSTILE_ID, 12000 if setting == "PORT" else HOSTILE_PORTS[0]),
                            (HOSTILE_ID, HOSTILE_PORTS[1])})
        b.add(f"label-wins-over-hostile-env-{setting.lower()}", "label:precedence",
              [app(labels={key: good}, env={key: "evil\nbind :1"})], routed, markers=(MARKER,))
    # A good value with a control character or line separator at its end (or start):
    # refused, though surrounding plain blanks are trimmed where they were before.
    for setting, good in _TRAILING_GOOD.items():
        key = f"HAPROXY_0_{setting}"
        for char_name, char in (("cr", "\r"), ("lf", "\n"), ("crlf", "\r\n"), ("tab", "\t"),
                                ("vt", "\x0b"), ("del", "\x7f"), ("nel", "\x85"),
                                ("ls", "\u2028")):
            labels = {key: good + char} if char_name != "tab" else {key: char + good}
            if setting == "PATH":
                labels["HAPROXY_0_VHOST"] = "path.example.com"
            b.add(f"labels-{setting.lower()}-control-{char_name}", "label:control-character",
                  [app(labels=labels)], second_port(),
                  Skip(HOSTILE_ID, re.escape(key) + r".*control character", 0))
    # Bind options HAProxy's own limits refuse (each made haproxy -c reject everything).
    for name, value in (("mss-99999", "mss 99999"), ("mss-zero", "mss 0"),
                        ("mss-negative-over", "mss -65536"), ("tcp-ut-25d", "tcp-ut 25d"),
                        ("tcp-ut-600h", "tcp-ut 600h"), ("tcp-ut-ms-over", "tcp-ut 2147483648"),
                        ("nice-over", "nice 1025"), ("id-zero", "id 0"),
                        ("id-repeated", "id 1 id 2"), ("maxconn-repeated", "maxconn 1 maxconn 2"),
                        ("flag-repeated", "accept-proxy accept-proxy"),
                        ("curves-alias-twice", "curves prime256v1:P-256"),
                        ("v4v6-and-v6only", "v4v6 v6only")):
        b.add(f"labels-bind_options-limit-{name}", "label:bind_options",
              [app(labels={"HAPROXY_0_BIND_OPTIONS": value})], second_port(),
              Skip(HOSTILE_ID, r"HAPROXY_0_BIND_OPTIONS=.*(needs a valid argument|more than once"
                               r"|contradict)", 0))
    for name, labels in (
        ("numbers-at-haproxy-limits", {"HAPROXY_0_BIND_OPTIONS":
                                       "mss 65535 tcp-ut 24d nice -1024 id 9999999 "
                                       "backlog 9999999 maxconn 9999999"}),
        ("tls-at-limits", {"HAPROXY_0_SSL_CERT": f"{CERTS}/good.pem",
                           "HAPROXY_0_BIND_OPTIONS": "curves X25519:P-256:P-384:P-521:X448 "
                                                     "mss -65535 tcp-ut 2147483647"}),
    ):
        b.add(f"valid-bind-options-{name}", "label:valid", [app(labels=labels)], both_ports())
    # Hostile values in keys nobody reads, and hostile key names: ignored.
    b.add("unread-label-values", "label:unread",
          [app(labels={f"X_{n}": v for n, v in HOSTILE_VALUES.items()},
               env={f"Y_{n}": v for n, v in HOSTILE_VALUES.items()})],
          both_ports(), markers=(MARKER,))
    b.add("hostile-label-keys", "label:unread",
          [app(labels={"HAPROXY_0_VHOST\nbind :1": "evil.example.com",
                       "HAPROXY_0_VHOST ": "evil.example.com", "\x00": "evil",
                       "HAPROXY_{n}_VHOST": "evil.example.com", "é": "evil",
                       "HAPROXY_00_VHOST": "evil.example.com",
                       "HAPROXY_-1_VHOST": "evil.example.com"})],
          both_ports(), markers=(MARKER,))
    b.add("label-for-missing-port-index", "label:unread",
          [app(labels={"HAPROXY_5_VHOST": "evil\nbind :1", "HAPROXY_2_PORT": "evil"})],
          both_ports(), markers=(MARKER,))
    b.add("many-labels", "label:size",
          [app(labels={f"L{i}": "x" * 100 for i in range(10_000)})], both_ports())
    b.add("second-port-bad-first-fine", "label:port-isolation",
          [app(labels={"HAPROXY_0_VHOST": "fine.example.com", "HAPROXY_1_VHOST": "evil host"})],
          frozenset({(HOSTILE_ID, HOSTILE_PORTS[0])}),
          Skip(HOSTILE_ID, r"HAPROXY_1_VHOST.*not a valid host name", 1), markers=(MARKER,))
    # Values that look odd but are valid: routed, and nothing outside the token leaks.
    for name, labels, port in (
        ("vhost-wildcard", {"HAPROXY_0_VHOST": "*.wild.example.com"}, 11000),
        ("vhost-with-port", {"HAPROXY_0_VHOST": "a.example.com:8443"}, 11000),
        ("vhost-punycode", {"HAPROXY_0_VHOST": "xn--bcher-kva.example"}, 11000),
        ("vhost-underscore", {"HAPROXY_0_VHOST": "a_b.example.com"}, 11000),
        ("vhost-trailing-dot", {"HAPROXY_0_VHOST": "dot.example.com."}, 11000),
        ("vhost-many", {"HAPROXY_0_VHOST": ",".join(f"h{i}.example.com" for i in range(200))},
         11000),
        ("vhost-repeated", {"HAPROXY_0_VHOST": "r.example.com,r.example.com"}, 11000),
        # Blank entries are ignored with a warning (a Universe package renders "host,").
        ("vhost-empty-entry", {"HAPROXY_0_VHOST": "a.example.com,,b.example.com"}, 11000),
        ("mode-upper", {"HAPROXY_0_MODE": "HTTP"}, 11000),
        ("port-blanks", {"HAPROXY_0_PORT": " 12001 "}, 12001),
        ("bind-ipv4", {"HAPROXY_0_BIND_ADDR": "127.0.0.1"}, 11000),
        ("bind-ipv6", {"HAPROXY_0_BIND_ADDR": "::1"}, 11000),
        ("sticky-odd-false", {"HAPROXY_0_STICKY": "1"}, 11000),
        ("sticky-upper", {"HAPROXY_0_STICKY": "YES"}, 11000),
        ("path-several-ignore-case", {"HAPROXY_0_VHOST": "p.example.com",
                                      "HAPROXY_0_PATH": "-i /a /B /b /c%20d"}, 11000),
        ("path-max-prefixes", {"HAPROXY_0_VHOST": "p.example.com",
                               "HAPROXY_0_PATH": " ".join(f"/p{i}" for i in range(32))}, 11000),
    ):
        b.add(f"valid-{name}", "label:valid", [app(labels=labels)],
              frozenset({(HOSTILE_ID, port), (HOSTILE_ID, HOSTILE_PORTS[1])}))
    if not can_bind("::1"):
        b.cases.pop(next(i for i, c in enumerate(b.cases) if c.name == "valid-bind-ipv6"))
    for name, value, reason in (
        ("vhost-double-dot", "a..example.com", r"not a valid host name"),
        ("vhost-leading-dot", ".example.com", r"not a valid host name"),
        ("vhost-bare-wildcard", "*", r"not a valid host name"),
        ("vhost-inner-wildcard", "a.*.example.com", r"not a valid host name"),
        ("vhost-port-range", "a.example.com:70000", r"port out of range"),
        ("vhost-label-too-long", "a" * 64 + ".example.com", r"not a valid host name"),
        ("vhost-url", "http://a.example.com/", r"not a valid host name"),
        ("vhost-acl-operator", "a.example.com || 1", r"not a valid host name"),
        ("bind-ipv6-bracket", "[::1]", r"bind address must be"),
        ("bind-with-port", "127.0.0.1:80", r"bind address must be"),
        ("cert-relative-glob", "certs/*.pem", r"path may only hold"),
        ("mode-health", "health", r"mode must be"),
        ("mode-tcp-http", "tcp http", r"mode must be"),
        # The wildcard rule matches the host without its port: it could never match.
        ("vhost-wildcard-port", "*.wild.test:18080", r"wildcard host cannot have a :port"),
        # Only '-i' of path_beg's flags: '-f' would make HAProxy read a file, '-m' rematch.
        ("path-file-flag", "-f /etc/passwd", r"'-f': path must start with '/'"),
        ("path-match-flag", "-m reg /a", r"'-m': path must start with '/'"),
        ("path-acl-operator", "/a || /b", r"'\|\|': path must start with '/'"),
        ("path-flag-last", "/a -i", r"'-i' must come first"),
        ("path-double-blank", "/a  /b", r"single spaces"),
        ("path-too-many", " ".join(f"/p{i}" for i in range(33)), r"at most 32 path prefixes"),
    ):
        setting = "VHOST" if name.startswith("vhost") else (
            "PATH" if name.startswith("path") else
            "BIND_ADDR" if name.startswith("bind") else
            "SSL_CERT" if name.startswith("cert") else "MODE")
        b.add(f"invalid-{name}", f"label:{setting.lower()}",
              [app(labels={f"HAPROXY_0_{setting}": value})], second_port(),
              Skip(HOSTILE_ID, reason, 0))


# --------------------------------------------------------------------------- files, addresses

def _host_cases(b: _Builder) -> None:
    """Labels naming things on the router's host: certificate files, bind addresses."""
    for name, path in (("good", f"{CERTS}/good.pem"),
                       ("key-beside", f"{CERTS}/split.pem"), ("directory", f"{CERTS}/dir")):
        b.add(f"ssl-cert-{name}", "host:certificate",
              [app(labels={"HAPROXY_0_SSL_CERT": path})], both_ports())
    for name, path, reason in (
        ("missing", f"{CERTS}/missing.pem", r"missing\.pem: No such file"),
        ("garbage", f"{CERTS}/garbage.pem", r"garbage\.pem: no certificate found"),
        ("key-mismatch", f"{CERTS}/mismatch.pem", r"mismatch\.pem: private key does not match"),
        ("expired", f"{CERTS}/expired.pem", r"expired\.pem: certificate expired on"),
        ("passwd", "/etc/passwd", r"passwd: no certificate found"),
        ("dev-null", "/dev/null", r"null: no certificate found"),
        ("missing-dir", f"{CERTS}/nodir/", r"nodir/: No such file"),
    ):
        b.add(f"ssl-cert-{name}", "host:certificate",
              [app(labels={"HAPROXY_0_SSL_CERT": path})], second_port(),
              Skip(HOSTILE_ID, rf"certificate .*{reason}", 0))
    for name, addr in (("any", "0.0.0.0"), ("name", "localhost")):
        b.add(f"bind-addr-{name}", "host:bind-address",
              [app(labels={"HAPROXY_0_BIND_ADDR": addr})], both_ports())
    for name, addr, reason in (
        ("foreign", "192.0.2.77", r"bind address 192\.0\.2\.77 is not an address of this host"),
        ("unresolvable", "nowhere.invalid", r"bind address nowhere\.invalid does not resolve"),
    ):
        b.add(f"bind-addr-{name}", "host:bind-address",
              [app(labels={"HAPROXY_0_BIND_ADDR": addr})], second_port(),
              Skip(HOSTILE_ID, reason, 0))
    # A port skipped for its certificate does not keep its bind port from others.
    b.add("bad-cert-does-not-hold-port", "host:certificate",
          [app(changed=OLD, labels={"HAPROXY_0_SSL_CERT": f"{CERTS}/missing.pem"}),
           app("/aaa-newcomer", ports=[HOSTILE_PORTS[0]], task_ports=1, changed=NEW)],
          frozenset({("/aaa-newcomer", HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, r"missing\.pem", 0))


# --------------------------------------------------------------------------- ports

def _port_cases(b: _Builder) -> None:
    for name, value in (("zero", 0), ("negative", -1), ("too-big", 65536), ("huge", 10**30),
                        ("string", "11000"), ("float", 11000.5), ("bool", True), ("null", None),
                        ("list", [11000]), ("object", {"port": 11000})):
        b.add(f"service-port-{name}", "port:service", [app(ports=[value, HOSTILE_PORTS[1]])],
              second_port(), Skip(HOSTILE_ID, r"service port .* is not a port number", 0))
    for name, value in (("zero", 0), ("negative", -80), ("too-big", 70000), ("huge", "9" * 400),
                        ("float", "12000.0"), ("hex", "0x2ee0"), ("plus-minus", "+-1")):
        b.add(f"bind-port-label-{name}", "port:label",
              [app(labels={"HAPROXY_0_PORT": str(value)})], second_port(),
              Skip(HOSTILE_ID, r"HAPROXY_0_PORT.*(port out of range|not an integer port)", 0))
    b.add("service-ports-duplicate", "port:duplicate", [app(ports=[11000, 11000])],
          frozenset({(HOSTILE_ID, 11000)}), Skip(HOSTILE_ID, r"listed twice", 1))
    b.add("service-ports-not-a-list", "port:type", [app(ports="11000,11001")], frozenset(),
          Skip(HOSTILE_ID, r"'ports' is not a list"))
    b.add("service-ports-object", "port:type", [app(ports={"0": 11000})], frozenset(),
          Skip(HOSTILE_ID, r"'ports' is not a list"))
    for shared in (80, 443, 81, 9090):
        b.add(f"bind-port-shared-{shared}", "conflict:bind-port",
              [app(labels={"HAPROXY_0_PORT": str(shared)})], second_port(),
              Skip(HOSTILE_ID, rf"bind port {shared} is used by a shared frontend", 0))
        b.add(f"service-port-shared-{shared}", "conflict:bind-port",
              [app(ports=[shared, HOSTILE_PORTS[1]])], second_port(),
              Skip(HOSTILE_ID, rf"bind port {shared} is used by a shared frontend", 0))
    # Two ports of one app landing on the same bind port: the first keeps it.
    b.add("bind-port-label-twice-in-app", "conflict:bind-port",
          [app(labels={"HAPROXY_0_PORT": "12000", "HAPROXY_1_PORT": "12000"})],
          frozenset({(HOSTILE_ID, 12000)}),
          Skip(HOSTILE_ID, r"bind port 12000 is already routed", 1))
    # Shapes: portDefinitions, docker portMappings, 1.5 container portMappings.
    b.add("port-definitions-bad-entry", "port:service",
          [app(ports=None, portDefinitions=[{"port": "x"}, {"port": 11001}])], second_port(),
          Skip(HOSTILE_ID, r"service port 'x' is not a port number", 0))
    b.add("port-definitions-not-objects", "port:service",
          [app(ports=None, portDefinitions=[11000, {"port": 11001}])], second_port(),
          Skip(HOSTILE_ID, r"service port None is not a port number", 0))
    b.add("port-definitions-object", "app:type",
          [app(ports=None, portDefinitions={"port": 11000})], frozenset(),
          Skip(HOSTILE_ID, r"'portDefinitions' is not a list"))
    b.add("docker-port-mappings-bad-entry", "port:service",
          [app(ports=None, container={"docker": {"portMappings": [
              {"servicePort": -3}, {"servicePort": 11001}]}})], second_port(),
          Skip(HOSTILE_ID, r"service port -3 is not a port number", 0))
    b.add("container-port-mappings-string", "port:service",
          [app(ports=None, container={"portMappings": [
              {"servicePort": "11000"}, {"servicePort": 11001}]})], second_port(),
          Skip(HOSTILE_ID, r"service port '11000' is not a port number", 0))
    b.add("container-port-mappings-object", "app:type",
          [app(ports=None, container={"portMappings": {"servicePort": 11000}})], frozenset(),
          Skip(HOSTILE_ID, r"'portMappings' is not a list"))
    b.add("container-docker-string", "app:type",
          [app(ports=None, container={"docker": "nginx"})], frozenset(),
          Skip(HOSTILE_ID, r"'container.docker' is not a JSON object"))
    b.add("container-list", "app:type", [app(container=[1])], frozenset(),
          Skip(HOSTILE_ID, r"'container' is not a JSON object"))
    b.add("no-ports-at-all", "missing", [app(ports=None, n_tasks=1)], frozenset())
    b.add("empty-ports", "missing", [app(ports=[])], frozenset())


# --------------------------------------------------------------------------- conflicts

def _conflict_cases(b: _Builder) -> None:
    newcomer = "/aaa-newcomer"  # sorts before /hostile: ids alone would hand it the route
    # Same service port: the oldest configuration keeps it, whatever the ids.
    b.add("bind-port-newcomer-sorts-first", "conflict:bind-port",
          [app(changed=OLD), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=NEW)],
          both_ports(), Skip(newcomer, rf"bind port {HOSTILE_PORTS[0]} is already routed", 0))
    b.add("bind-port-oldest-sorts-first", "conflict:bind-port",
          [app(changed=NEW), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=OLD)],
          frozenset({(newcomer, HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, rf"bind port {HOSTILE_PORTS[0]} is already routed", 0))
    b.add("bind-port-by-version", "conflict:bind-port",
          [app(changed=None, version=OLD),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None, version=NEW)],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("bind-port-by-id", "conflict:bind-port",
          [app(changed=None), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None)],
          frozenset({(newcomer, HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, r"is already routed", 0))
    b.add("bind-port-label-steals-bystander", "conflict:bind-port",
          [app(labels={"HAPROXY_0_PORT": str(BYSTANDER_PORT)})], second_port(),
          Skip(HOSTILE_ID, rf"bind port {BYSTANDER_PORT} is already routed", 0))
    b.add("bind-port-garbage-timestamp", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None,
               versionInfo={"lastConfigChangeAt": "!"}, version="!")],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("bind-port-timestamp-wrong-type", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None,
               versionInfo={"lastConfigChangeAt": 0}, version=["0"])],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("version-info-string", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None, versionInfo="0000")],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    # Same vhost: the oldest configuration keeps it; the newcomer keeps its own port
    # (frontend) but never gets the host's traffic, and is reported.
    vhost = {"HAPROXY_0_VHOST": "shared.example.com"}
    conflict = r"vhost conflict: .*older app"
    for name, newcomer_age, hostile_age in (("newcomer-sorts-first", NEW, OLD),
                                            ("oldest-sorts-first", OLD, NEW)):
        loser = newcomer if newcomer_age == NEW else HOSTILE_ID
        b.add(f"vhost-{name}", "conflict:vhost",
              [app(changed=hostile_age, labels=vhost),
               app(newcomer, ports=[12000], task_ports=1, changed=newcomer_age, labels=vhost)],
              both_ports() | {(newcomer, 12000)},
              Skip(loser, rf"shared\.example\.com.*{conflict}", 0),
              no_vhost=((loser, "shared.example.com"),))
    for name, hosts, owner_host, newcomer_id in (
        ("steals-bystander", "bystander.example.com", "bystander.example.com", HOSTILE_ID),
        ("steals-bystander-other-case", "BYSTANDER.example.com", "bystander.example.com",
         HOSTILE_ID),
        ("steals-bystander-acl-name", "bystander_example.com", "bystander.example.com",
         HOSTILE_ID),
        ("steals-bystander-acl-name-sorts-first", "bystander_example.com",
         "bystander.example.com", "/aaa-newcomer"),
        ("steals-bystander-wildcard-acl-name", "_.example.com", "*.example.com", HOSTILE_ID),
        ("steals-one-of-several", "mine.example.com,bystander.example.com",
         "bystander.example.com", HOSTILE_ID),
    ):
        apps = [app(newcomer_id, changed=NEW, labels={"HAPROXY_0_VHOST": hosts})]
        if owner_host.startswith("*"):
            apps.append(app("/wild", ports=[13000], task_ports=1, changed=OLD,
                            labels={"HAPROXY_0_VHOST": owner_host}))
        stolen = hosts.split(",")[-1]
        b.add(f"vhost-{name}", "conflict:vhost", apps,
              both_ports(newcomer_id) | ({("/wild", 13000)} if owner_host.startswith("*")
                                         else set()),
              Skip(newcomer_id, rf"{re.escape(stolen)}.*{conflict}", 0),
              no_vhost=((newcomer_id, owner_host), (newcomer_id, stolen)))
    # PATH=/ is the same route as no path: a conflict decided by age, never a takeover.
    # So is a list of prefixes holding '/'.
    for name, newcomer_id, path in (
            ("root-path", HOSTILE_ID, "/"), ("root-path-sorts-first", newcomer, "/"),
            ("root-among-paths", HOSTILE_ID, "-i /api /"),
            ("root-among-paths-sorts-first", newcomer, "/api / /x")):
        b.add(f"vhost-steals-bystander-{name}", "conflict:vhost",
              [app(newcomer_id, changed=NEW, labels={"HAPROXY_0_VHOST": "bystander.example.com",
                                                     "HAPROXY_0_PATH": path})],
              both_ports(newcomer_id),
              Skip(newcomer_id, rf"bystander\.example\.com.*{conflict}", 0),
              no_vhost=((newcomer_id, "bystander.example.com"),))
    # A heavy wildcard is no conflict, and still ranks after the exact host it covers.
    b.add("vhost-wildcard-heavier-than-exact", "conflict:vhost",
          [app(changed=NEW, labels={"HAPROXY_0_VHOST": "*.example.com",
                                    "HAPROXY_0_BACKEND_WEIGHT": "1000000"})],
          both_ports(), no_vhost=((HOSTILE_ID, "bystander.example.com"),))
    b.add("vhost-same-app-two-ports", "conflict:vhost",
          [app(labels={"HAPROXY_0_VHOST": "twice.example.com",
                       "HAPROXY_1_VHOST": "twice.example.com"})],
          both_ports(), Skip(HOSTILE_ID, r"twice\.example\.com.*vhost conflict", 1))
    b.add("vhost-colliding-hosts-one-app", "label:valid",
          [app(labels={"HAPROXY_0_VHOST": "c.example.com,c_example.com"})], both_ports())
    b.add("app-id-acl-collision", "conflict:app-id",
          [app("/a/b", ports=[11000], changed=OLD, labels={"HAPROXY_0_MODE": "http"}),
           app("/a.b", ports=[11001], changed=NEW, labels={"HAPROXY_0_MODE": "http"})],
          frozenset({("/a/b", 11000), ("/a.b", 11001)}))


# --------------------------------------------------------------------------- app fields

def _app_cases(b: _Builder) -> None:
    for name, value in (("number", 42), ("string", "app"), ("null", None), ("list", [1]),
                        ("true", True)):
        b.add(f"app-is-{name}", "app:type", [value], frozenset(),
              Skip("apps[1]", r"app is not a JSON object"))
    for name, value in (("number", 7), ("null", None), ("list", ["/x"]), ("object", {"a": 1}),
                        ("empty", ""), ("no-slash", "hostile"), ("root", "/"),
                        ("trailing-slash", "/hostile/"), ("space", "/evil app"),
                        ("newline", "/evil\nbind :1"), ("nul", "/evil\x00"), ("hash", "/evil#x"),
                        ("brace", "/{evil}"), ("quote", '/evil"'), ("non-ascii", "/évil"),
                        ("colon", "/evil:x"), ("backslash", "/evil\\x"),
                        ("percent", "/evil%[src]"), ("double-slash", "/evil//x"),
                        ("huge", "/" + "e" * 100_000), ("too-long", "/" + "e" * 1025)):
        bad = app(value if isinstance(value, str) else HOSTILE_ID)
        if not isinstance(value, str):
            bad["id"] = value
        named = value[:40] if isinstance(value, str) and value else "apps[1]"
        needle = "apps[1]" if not isinstance(value, str) or not value else repr(named)[1:-1]
        b.add(f"app-id-{name}", "app:id", [bad], frozenset(),
              Skip(needle, r"app id"), markers=(MARKER,))
    b.add("app-id-missing", "app:id", [{k: v for k, v in app().items() if k != "id"}],
          frozenset(), Skip("apps[1]", r"app id"))
    for name, value in (("dots", "/a..b"), ("dash", "/-"), ("dot", "/."), ("dotdot", "/.."),
                        ("underscore", "/_x"), ("upper", "/UPPER"), ("digits", "/1/2/3"),
                        ("deep", "/a" * 50), ("long", "/" + "x" * 1000)):
        b.add(f"app-id-odd-{name}", "app:id-valid", [app(value)], both_ports(value))
    for field_name, value, reason in (
        ("labels", ["HAPROXY_0_VHOST=x"], r"labels'? is not a JSON object"),
        ("labels", "HAPROXY_0_VHOST=x", r"labels'? is not a JSON object"),
        ("env", ["A=b"], r"env'? is not a JSON object"),
        ("env", 5, r"env'? is not a JSON object"),
        ("tasks", {"id": "t"}, r"'tasks' is not a list"),
        ("tasks", "t", r"'tasks' is not a list"),
        ("healthChecks", {"protocol": "HTTP"}, r"healthChecks is not a list"),
        ("healthChecks", "HTTP", r"healthChecks is not a list"),
    ):
        skips = (Skip(HOSTILE_ID, reason),) if field_name != "healthChecks" else tuple(
            Skip(HOSTILE_ID, reason, i) for i in range(2))
        b.add(f"{field_name}-is-{type(value).__name__}", "app:type",
              [app(**{field_name: value})], frozenset(), *skips)
    for name, fields in (("labels-null", {"labels": None}), ("env-null", {"env": None}),
                         ("tasks-null", {"tasks": None}), ("health-null", {"healthChecks": None}),
                         ("version-number", {"version": 5}), ("unknown-fields", {"x": [{}]})):
        routed = frozenset() if name == "tasks-null" else both_ports()
        b.add(f"{name}", "app:type-tolerated", [app(**fields)], routed)
    # Health checks: the port whose check is malformed is skipped, the other stays.
    for name, check, reason in (
        ("protocol-number", {"portIndex": 0, "protocol": 5}, r"protocol"),
        ("protocol-space", {"portIndex": 0, "protocol": "HTTP evil"}, r"protocol"),
        ("path-newline", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\nbind :1"}, r"path"),
        ("path-space", {"portIndex": 0, "protocol": "HTTP", "path": "/evil x"}, r"path"),
        ("path-hash", {"portIndex": 0, "protocol": "HTTP", "path": "/evil#x"}, r"path"),
        ("path-relative", {"portIndex": 0, "protocol": "HTTP", "path": "evil"}, r"path"),
        ("path-number", {"portIndex": 0, "protocol": "HTTP", "path": 5}, r"path"),
        # Quotes: HAProxy sees an unmatched quote and refuses the whole config.
        ("path-single-quote", {"portIndex": 0, "protocol": "HTTP", "path": "/evil'x"},
         r"health check path .*not a safe URL path"),
        ("path-double-quote", {"portIndex": 0, "protocol": "HTTP", "path": '/evil"x'},
         r"health check path .*not a safe URL path"),
        ("path-quoted-directive", {"portIndex": 0, "protocol": "HTTP",
                                   "path": "/evil' 'x\n  bind :1"}, r"health check path"),
        # A backslash is an escape: '\x23' would reach the check as '#'.
        ("path-backslash", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\\x23"},
         r"health check path .*not a safe URL path"),
        ("path-brace", {"portIndex": 0, "protocol": "HTTP", "path": "/evil{x}"},
         r"health check path .*not a safe URL path"),
        ("path-cr", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\r"},
         r"health check path .*not a safe URL path"),
        ("path-nul", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\x00"},
         r"health check path .*not a safe URL path"),
        ("path-tab", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\tx"},
         r"health check path .*not a safe URL path"),
        ("path-non-ascii", {"portIndex": 0, "protocol": "HTTP", "path": "/évil"},
         r"health check path .*not a safe URL path"),
        ("path-120kB", {"portIndex": 0, "protocol": "HTTP", "path": "/" + MARKER * 30_000},
         r"health check path is 120001 characters long"),
        ("path-too-long", {"portIndex": 0, "protocol": "HTTP", "path": "/" + "e" * 1024},
         r"health check path is 1025 characters long"),
        ("timeout-string", {"portIndex": 0, "timeoutSeconds": "20"}, r"timeoutSeconds"),
        ("timeout-negative", {"portIndex": 0, "timeoutSeconds": -1}, r"timeoutSeconds"),
        ("interval-float", {"portIndex": 0, "intervalSeconds": 1.5}, r"intervalSeconds"),
        ("failures-huge", {"portIndex": 0, "maxConsecutiveFailures": 10**20},
         r"maxConsecutiveFailures"),
        ("grace-list", {"portIndex": 0, "gracePeriodSeconds": [1]}, r"gracePeriodSeconds"),
    ):
        b.add(f"health-check-{name}", "app:health-check",
              [app(healthChecks=[check])], second_port(),
              Skip(HOSTILE_ID, reason, 0), markers=(MARKER,))
    # Unusual but safe paths: written as they are ('$' and ';' are literal in HAProxy 2.6).
    for name, path in (("dollar", "/health$x"), ("env-like", "/h/$HOME"), ("semicolon", "/h;v=1"),
                       ("query", "/h?a=1&b=(2)*!"), ("longest", "/" + "e" * 1023)):
        b.add(f"health-check-path-valid-{name}", "app:health-check-valid",
              [app(healthChecks=[{"portIndex": 0, "protocol": "HTTP", "path": path}])],
              both_ports())
    for name, checks in (("entry-not-object", ["HTTP"]),
                         ("port-index-string", [{"portIndex": "0", "protocol": "HTTP"}]),
                         ("port-index-out-of-range", [{"portIndex": 7, "protocol": "HTTP"}]),
                         ("ignore-1xx-string", [{"portIndex": 0, "ignoreHttp1xx": "yes"}]),
                         ("command", [{"portIndex": 0, "protocol": "COMMAND",
                                       "command": {"value": "evil\nx"}}])):
        b.add(f"health-check-{name}", "app:health-check-tolerated",
              [app(healthChecks=checks)], both_ports(), markers=(MARKER,))


# --------------------------------------------------------------------------- tasks

def _task_cases(b: _Builder) -> None:
    good = {"id": "hostile.good", "host": "10.0.1.9", "ports": [31000, 31001]}

    def with_task(task: Any) -> dict[str, Any]:
        return with_tasks(app(), [copy.deepcopy(good), task])

    for name, host, reason in (
        ("empty", "", r"has no host"),
        ("null", None, r"has no host"),
        ("number", 10, r"is not a host name"),
        ("list", ["10.0.0.1"], r"is not a host name"),
        ("space", "evil host", r"is not a host name"),
        ("newline", "evil\nbind :1", r"is not a host name"),
        ("nul", "evil\x00", r"is not a host name"),
        ("hash", "evil#x", r"is not a host name"),
        ("brace", "{evil}", r"is not a host name"),
        ("non-ascii", "évil.test", r"is not a host name"),
        ("huge", "e" * 100_000, r"is not a host name"),
        ("unresolvable", UNRESOLVABLE, r"could not resolve"),
    ):
        task = {"id": f"task-{name}", "host": host, "ports": [31002, 31003]}
        b.add(f"task-host-{name}", "task:host", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, reason), markers=(MARKER,))
    b.add("task-host-missing", "task:host",
          [with_task({"id": "task-missing", "ports": [31002, 31003]})], both_ports(),
          Skip(HOSTILE_ID, r"has no host"))
    b.add("task-host-resolvable-name", "task:host-valid",
          [with_task({"id": "task-name", "host": "node-1.test", "ports": [31002, 31003]})],
          both_ports())
    b.add("only-task-unresolvable", "task:host",
          [with_tasks(app(), [{"id": "t", "host": UNRESOLVABLE, "ports": [31000, 31001]}])],
          both_ports(), Skip(HOSTILE_ID, r"could not resolve"))
    for name, ports, reason, index in (
        ("string", "31000", r"ports is not a list", None),
        ("object", {"0": 31000}, r"ports is not a list", None),
        ("entry-string", ["31000", 31001], r"port '31000' is not a port number", 0),
        ("entry-negative", [-1, 31001], r"port -1 is not a port number", 0),
        ("entry-zero", [0, 31001], r"port 0 is not a port number", 0),
        ("entry-too-big", [31000, 65536], r"port 65536 is not a port number", 1),
        ("entry-null", [None, 31001], r"port None is not a port number", 0),
        ("entry-bool", [True, 31001], r"port True is not a port number", 0),
    ):
        task = {"id": f"task-{name}", "host": "10.0.1.8", "ports": ports}
        b.add(f"task-ports-{name}", "task:ports", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, reason, index))
    b.add("task-ports-fewer-than-service-ports", "task:ports-tolerated",
          [with_task({"id": "short", "host": "10.0.1.8", "ports": [31002]})], both_ports())
    b.add("task-ports-more-than-service-ports", "task:ports-tolerated",
          [with_task({"id": "long", "host": "10.0.1.8", "ports": [31002, 31003, 31004]})],
          both_ports())
    for name, task in (("number", 5), ("string", "task"), ("null", None), ("list", [1])):
        b.add(f"task-is-{name}", "task:type", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, r"task is not a JSON object"))
    b.add("task-id-odd", "task:tolerated",
          [with_task({"id": {"x": "evil\n"}, "host": "10.0.1.8", "ports": [31002, 31003]})],
          both_ports(), markers=(MARKER,))
    b.add("task-duplicate-endpoint", "task:tolerated",
          [with_task(dict(good, id="hostile.copy"))], both_ports())
    b.add("zero-tasks", "task:count", [app(n_tasks=0)], frozenset())
    big = app(n_tasks=0)
    big["tasks"] = [{"id": f"t{i}", "host": f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
                     "ports": [31000, 31001]} for i in range(10_000)]
    b.add("ten-thousand-tasks", "task:count", [big], both_ports())
    many_bad = app(n_tasks=0)
    many_bad["tasks"] = [copy.deepcopy(good)] + [
        {"id": f"bad{i}", "host": f"evil {i}", "ports": [31000, 31001]} for i in range(1000)]
    b.add("thousand-bad-tasks", "task:count", [many_bad], both_ports(),
          Skip(HOSTILE_ID, r"is not a host name"), markers=(MARKER,))


# --------------------------------------------------------------------------- whole bodies

DOCUMENT_CASES: tuple[DocumentCase, ...] = (
    DocumentCase("not-json", b"<html>502 Bad Gateway</html>", r"invalid JSON"),
    DocumentCase("truncated", b'{"apps": [{"id": "/a", "ports": [1', r"invalid JSON"),
    DocumentCase("empty-body", b"", r"invalid JSON"),
    DocumentCase("json-list", b"[]", r"without an 'apps' list"),
    DocumentCase("apps-object", b'{"apps": {}}', r"without an 'apps' list"),
    DocumentCase("apps-null", b'{"apps": null}', r"without an 'apps' list"),
    DocumentCase("not-utf8", b'{"apps": ["\xff\xfe"]}', r"invalid JSON"),
    DocumentCase("nan", b'{"apps": [NaN]}', r"invalid JSON"),
)


def build_corpus() -> list[Case]:
    """Every app-level case, with unique names."""
    b = _Builder()
    _label_cases(b)
    _host_cases(b)
    _port_cases(b)
    _conflict_cases(b)
    _app_cases(b)
    _task_cases(b)
    names = [c.name for c in b.cases]
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")
    return b.cases


def iter_categories(cases: list[Case]) -> Iterator[tuple[str, int]]:
    yield from sorted(Counter(c.category for c in cases).items())


if __name__ == "__main__":
    corpus = build_corpus()
    print(f"{len(corpus)} app cases + {len(DOCUMENT_CASES)} document cases")
    for category, count in iter_categories(corpus):
        print(f"  {category:32} {count}")
