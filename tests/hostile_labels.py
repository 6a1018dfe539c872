"""Hostile label values: every hostile value in every per-port setting, as label and as env var."""


from __future__ import annotations

import re

from servicerouter.model.label_values import SettingError
from servicerouter.model.labels import PORT_SETTINGS
from tests.hostile_blocks import (
    CERTS,
    HOSTILE_ID,
    HOSTILE_PORTS,
    MARKER,
    Skip,
    _Builder,
    app,
    both_ports,
    can_bind,
    second_port,
)

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


