"""labels: the setting registry and its parsers, table-driven.

Every parser either returns a value that is safe to write into an HAProxy config
(one token, or words the registry joins itself) or raises SettingError; the
servicerouter.py keys keep their old, lenient semantics.
"""

from __future__ import annotations

import re

import pytest

from servicerouter.model.bind_options import parse_bind_options
from servicerouter.model.label_values import (
    BasicAuth,
    SettingError,
    parse_auth,
    parse_balance,
    parse_bool,
    parse_cookie_name,
    parse_mode,
    parse_port,
    parse_switch,
    parse_url_path,
    parse_vhosts,
    parse_weight,
    path_ignores_case,
    path_prefixes,
)
from servicerouter.model.labels import (
    DEFAULT_PORT_SETTINGS,
    SETTINGS,
    Problem,
    mark_still_routed,
    read_port_settings,
)

SHA512 = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1"
LEGACY_KEYS = {
    "HAPROXY_GROUP", "HAPROXY_{n}_VHOST", "HAPROXY_{n}_STICKY", "HAPROXY_{n}_REDIRECT_TO_HTTPS",
    "HAPROXY_{n}_SSL_CERT", "HAPROXY_{n}_BIND_ADDR", "HAPROXY_{n}_PORT", "HAPROXY_{n}_MODE",
}
ISSUE_KEYS = {
    "HAPROXY_{n}_PATH", "HAPROXY_{n}_BACKEND_WEIGHT", "HAPROXY_{n}_USE_HSTS",
    "HAPROXY_{n}_STICKY_COOKIE", "HAPROXY_{n}_BALANCE", "HAPROXY_{n}_AUTH",
    "HAPROXY_{n}_BIND_OPTIONS", "HAPROXY_{n}_GROUP", "HAPROXY_{n}_ENABLED",
}
MLB_KEYS = {  # marathon-lb's own settings, with its semantics (issue 11)
    "HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH", "HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH",
    "HAPROXY_{n}_HTTP_BACKEND_REDIR", "HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL",
    "HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX",
}
UNSAFE = ["a b", "a\nb", "a\rb", "a#b", "a{b", "a}b", 'a"b', "a'b", "a\\b", "a\tb", "a\x00b",
          "a$b"]


def test_registry_has_every_key_once_with_docs() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert LEGACY_KEYS | ISSUE_KEYS <= set(keys)
    for setting in SETTINGS:
        assert setting.help and setting.example, setting.key
        assert setting.example.split("=", 1)[0].replace("0", "{n}").replace("1", "{n}") \
            == setting.key, setting.key
        expected_origin = ("servicerouter.py" if setting.key in LEGACY_KEYS
                           else "marathon-lb" if setting.key in MLB_KEYS else "servicerouter")
        assert setting.origin == expected_origin, setting.key


def test_every_example_parses() -> None:
    for setting in SETTINGS:
        name, value = setting.example.split("=", 1)
        if setting.key == "HAPROXY_{n}_AUTH":
            value = f"admins:alice:{SHA512}"
        setting.parse(value)


@pytest.mark.parametrize("value, hosts", [
    ("www.example.com", ("www.example.com",)),
    ("Www.Example.COM", ("Www.Example.COM",)),  # kept as written; HAProxy matches with -i
    ("a.example.com, b.example.com", ("a.example.com", "b.example.com")),
    ("*.example.com", ("*.example.com",)),
    ("host:8080", ("host:8080",)),
    ("under_score.example.com", ("under_score.example.com",)),
    ("a.com,A.COM,a.com", ("a.com",)),  # duplicates (case-insensitive) collapse
    ("localhost", ("localhost",)),
    ("", ()),  # blank: no vhost, as servicerouter.py's `if vhost`
    ("  ", ()),
])
def test_vhosts_accepted(value: str, hosts: tuple[str, ...]) -> None:
    assert parse_vhosts(value) == hosts


@pytest.mark.parametrize("value", [
    ",", "a..b", "-a.com", "a.*.com", "**.a.com", "a.com:0", "a.com:70000", "a.com:",
    "a.com/path", "a.com b.com", "*", "a" * 64 + ".com", "é.com",
    *UNSAFE,
])
def test_vhosts_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_vhosts(value)


@pytest.mark.parametrize("value, path", [
    ("/", "/"), ("/api", "/api"), ("/api/v1/", "/api/v1/"), (" /x ", "/x"),
    ("/a-b_c.d~e!f&g(h)*i+j,k;l=m:n@o%20", "/a-b_c.d~e!f&g(h)*i+j,k;l=m:n@o%20"),
])
def test_path_accepted(value: str, path: str) -> None:
    assert parse_url_path(value) == path


@pytest.mark.parametrize("value", ["", "api", "/a b", "/a?b", "/a#b", "/x\ny", "/x\n#y", "/" + "a" * 1024,
                                   *["/" + u for u in UNSAFE]])
def test_path_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_url_path(value)


@pytest.mark.parametrize("value, path, prefixes, ignore_case", [
    ("/a /b", "/a /b", ("/a", "/b"), False),
    ("-i /multiple /paths", "-i /multiple /paths", ("/multiple", "/paths"), True),
    ("-i /api", "-i /api", ("/api",), True),
    (" /a /b/c/ ", "/a /b/c/", ("/a", "/b/c/"), False),
    ("/a /b /a", "/a /b", ("/a", "/b"), False),  # repeats collapse, first order kept
    ("/A /a", "/A /a", ("/A", "/a"), False),  # two spellings: two prefixes...
    ("-i /A /a /B", "-i /A /B", ("/A", "/B"), True),  # ...but one under -i
    ("/api /", "/api /", ("/api", "/"), False),
    (" ".join(f"/p{i}" for i in range(32)), " ".join(f"/p{i}" for i in range(32)),
     tuple(f"/p{i}" for i in range(32)), False),
])
def test_several_path_prefixes_as_marathon_lb(value: str, path: str,
                                              prefixes: tuple[str, ...],
                                              ignore_case: bool) -> None:
    assert parse_url_path(value) == path
    assert path_prefixes(path) == prefixes
    assert path_ignores_case(path) is ignore_case


@pytest.mark.parametrize("value, message", [
    ("-i", "needs at least one path prefix"),
    ("-i ", "needs at least one path prefix"),
    ("/a  /b", "single spaces"),
    ("-i  /a", "single spaces"),
    ("/a -i", "'-i' must come first"),
    ("-i /a -i /b", "'-i' must come first"),
    ("-I /a", "'-I': path must start with '/'"),
    ("-f /etc/hosts", "'-f': path must start with '/'"),  # no other path_beg flag
    ("-m beg /a", "'-m': path must start with '/'"),
    ("/a b", "'b': path must start with '/'"),
    ("/a /b#c", "'/b#c': path must start with '/'"),
    ("/a /b{c}", "'/b{c}'"),
    ("/a /b\"c", "path must start with '/'"),
    ("/a /b'c", "path must start with '/'"),
    ("/a /" + "x" * 1024, "at most 1024 characters"),
    (" ".join(f"/p{i}" for i in range(33)), "at most 32 path prefixes"),
])
def test_several_path_prefixes_rejected(value: str, message: str) -> None:
    with pytest.raises(SettingError, match=re.escape(message)):
        parse_url_path(value)


@pytest.mark.parametrize("value", ["", "   ", "api", "/a?b", "/a#b", "-x"])
def test_single_path_keeps_its_error_message(value: str) -> None:
    with pytest.raises(SettingError) as err:
        parse_url_path(value)
    assert str(err.value) == (
        "path must start with '/' and hold only letters, digits and . _ ~ ! & ( ) * + , "
        "; = : @ % / - (at most 1024 characters)")


@pytest.mark.parametrize("value, result", [
    ("true", True), ("T", True), ("yes", True), ("Y", True), ("1", True), ("on", True),
    (" false ", False), ("F", False), ("no", False), ("n", False), ("0", False), ("off", False),
])
def test_switch(value: str, result: bool) -> None:
    assert parse_switch(value) is result


@pytest.mark.parametrize("value", ["", "flase", "2", "truee", "yes please"])
def test_switch_refuses_typos(value: str) -> None:
    with pytest.raises(SettingError):
        parse_switch(value)


@pytest.mark.parametrize("value, result", [("true", True), ("YES", True), ("1", False),
                                           ("flase", False), ("", False)])
def test_legacy_bool_keeps_servicerouter_py_semantics(value: str, result: bool) -> None:
    assert parse_bool(value) is result


@pytest.mark.parametrize("value, result", [("0", 0), ("10", 10), (" -5 ", -5),
                                           ("1000000", 1000000)])
def test_weight(value: str, result: int) -> None:
    assert parse_weight(value) == result


@pytest.mark.parametrize("value", ["", "x", "1.5", "1000001", "1e3"])
def test_weight_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_weight(value)


@pytest.mark.parametrize("value", ["SRV", "srv_id", "a.b-c", "x" * 64])
def test_cookie_accepted(value: str) -> None:
    assert parse_cookie_name(value) == value


@pytest.mark.parametrize("value", ["", "a=b", "a;b", "x" * 65, *UNSAFE])
def test_cookie_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_cookie_name(value)


@pytest.mark.parametrize("value, result", [
    ("roundrobin", "roundrobin"), ("leastconn", "leastconn"), ("static-rr", "static-rr"),
    ("first", "first"), ("source", "source"), ("uri", "uri"), ("random", "random"),
    ("random(2)", "random(2)"), ("rdp-cookie", "rdp-cookie"),
    ("rdp-cookie(mstshash)", "rdp-cookie(mstshash)"), ("hdr(X-Tenant)", "hdr(X-Tenant)"),
    ("url_param  id", "url_param id"),
])
def test_balance(value: str, result: str) -> None:
    assert parse_balance(value) == result


@pytest.mark.parametrize("value", ["", "fastest", "hdr()", "hdr(a b)", "random(0)",
                                   "url_param", "url_param a b", "roundrobin leastconn",
                                   "hash req.cookie(x)", *UNSAFE])
def test_balance_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_balance(value)


def test_auth() -> None:
    auth = parse_auth(f"admins:alice:{SHA512}")
    assert auth == BasicAuth("admins", "alice", SHA512)
    assert SHA512 not in repr(auth)  # the hash stays out of logs
    for good in ("$1$abc$iCQ2D3nhptRYi27fDYv2s1",
                 "$2y$10$abcdefghijklmnopqrstuuFzV/5xYz2rQ1m0fOqVq9l4eaRl7s2",
                 "$5$rounds=5000$salt$hash", "$y$j9T$abc$xyz", "abcdefghijklm"):
        assert parse_auth(f"r:u:{good}").password_hash == good


@pytest.mark.parametrize("value", [
    "", "alice:" + SHA512, "r:alice:secret", "r:alice:", "r::" + SHA512,
    "my realm:alice:" + SHA512, "r:al ice:" + SHA512, "r:alice:$6$a b", "r:alice:$9$x",
    "r:alice:" + SHA512 + ":extra", "r:alice:" + SHA512 + "\nuser x password y",
])
def test_auth_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_auth(value)


@pytest.mark.parametrize("value, words", [
    ("accept-proxy", ("accept-proxy",)),
    ("accept-proxy  maxconn 10 backlog 5", ("accept-proxy", "maxconn", "10", "backlog", "5")),
    ("alpn h2,http/1.1 ssl-min-ver TLSv1.2", ("alpn", "h2,http/1.1", "ssl-min-ver", "TLSv1.2")),
    ("ciphers AES128+EECDH:AES128+EDH no-sslv3",
     ("ciphers", "AES128+EECDH:AES128+EDH", "no-sslv3")),
    ("nice -10 tcp-ut 5s name front", ("nice", "-10", "tcp-ut", "5s", "name", "front")),
    ("ssl-max-ver TLSv1.3 ssl-min-ver TLSv1.3",
     ("ssl-max-ver", "TLSv1.3", "ssl-min-ver", "TLSv1.3")),
    # HAProxy's own limits, at the edges (each checked with haproxy -c):
    ("mss 65535", ("mss", "65535")), ("mss -65535", ("mss", "-65535")), ("mss 1", ("mss", "1")),
    ("tcp-ut 2147483647", ("tcp-ut", "2147483647")), ("tcp-ut 24d", ("tcp-ut", "24d")),
    ("tcp-ut 596h", ("tcp-ut", "596h")), ("tcp-ut 35791m", ("tcp-ut", "35791m")),
    ("tcp-ut 2147483s", ("tcp-ut", "2147483s")), ("tcp-ut 0", ("tcp-ut", "0")),
    ("tcp-ut 9999999999us", ("tcp-ut", "9999999999us")),
    ("nice 1024", ("nice", "1024")), ("nice -1024", ("nice", "-1024")), ("nice 0", ("nice", "0")),
    ("id 9999999 maxconn 9999999 backlog 1", ("id", "9999999", "maxconn", "9999999",
                                             "backlog", "1")),
    ("curves X25519:P-256:P-384:P-521:X448", ("curves", "X25519:P-256:P-384:P-521:X448")),
    ("curves X25519:P-256 ecdhe secp384r1 ciphersuites TLS_AES_128_GCM_SHA256",
     ("curves", "X25519:P-256", "ecdhe", "secp384r1", "ciphersuites", "TLS_AES_128_GCM_SHA256")),
])
def test_bind_options(value: str, words: tuple[str, ...]) -> None:
    assert parse_bind_options(value) == words


@pytest.mark.parametrize("value", [
    "", "ssl", "crt /etc/x.pem", "maxconn", "maxconn ten", "maxconn 0", "nice 2000",
    "ssl-min-ver TLSv1.9", "accept-proxy\nbind :99", "accept-proxy # comment",
    "name a{b}", "alpn 'h2'", "process 1", "user root", "accept-proxy\x00",
    # Arguments HAProxy's OpenSSL would refuse at load time:
    "ciphers BOGUS", "ciphers !aNULL", "curves X25519:BOGUS", "ecdhe bogus",
    "ciphersuites TLS_FAKE",
    # No TLS version left under the default head's ssl-min-ver TLSv1.2:
    "ssl-max-ver TLSv1.0", "ssl-min-ver SSLv3", "ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.2",
    # Beyond HAProxy's limits (each one made haproxy -c reject the whole config):
    "mss 99999", "mss 65536", "mss -65536", "mss 0", "mss -0", "mss 01",
    "tcp-ut 25d", "tcp-ut 600h", "tcp-ut 2147483648", "tcp-ut 2147484s", "tcp-ut 35792m",
    "tcp-ut 597h", "tcp-ut 99999999999us", "tcp-ut -1", "tcp-ut 5sec", "tcp-ut 05s",
    "nice 1025", "nice -1025", "nice -0", "id 0", "id 10000000", "maxconn 10000000",
    "backlog -1", "maxconn +5",
    "curves prime256v1:P-256", "curves X25519:X25519", "curves secp384r1:P-384",
    # Each keyword at most once ('id 1 id 2': HAProxy refuses the second id):
    "id 1 id 2", "id 1 id 1", "maxconn 1 maxconn 2", "name a name b", "accept-proxy accept-proxy",
    "ssl-max-ver TLSv1.2 ssl-max-ver TLSv1.3", "v4v6 v6only",
    # Control characters, even as separators:
    "accept-proxy\tmaxconn 10", "accept-proxy\n", "accept-proxy\r", "\u2028accept-proxy",
])
def test_bind_options_rejected(value: str) -> None:
    with pytest.raises(SettingError):
        parse_bind_options(value)


def test_read_port_settings_new_keys() -> None:
    labels = {
        "HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_PATH": "/api",
        "HAPROXY_0_BACKEND_WEIGHT": "3", "HAPROXY_0_USE_HSTS": "true",
        "HAPROXY_0_STICKY": "true", "HAPROXY_0_STICKY_COOKIE": "SRV",
        "HAPROXY_0_BALANCE": "leastconn", "HAPROXY_0_AUTH": f"r:u:{SHA512}",
        "HAPROXY_0_BIND_OPTIONS": "accept-proxy", "HAPROXY_0_GROUP": "a,b",
        "HAPROXY_0_ENABLED": "yes",
    }
    settings, problems = read_port_settings("/app", 0, labels, {})
    assert problems == [] and settings is not None
    assert (settings.path, settings.backend_weight, settings.use_hsts, settings.sticky_cookie,
            settings.balance, settings.auth, settings.bind_options, settings.groups,
            settings.enabled) == ("/api", 3, True, "SRV", "leastconn", BasicAuth("r", "u", SHA512),
                                  ("accept-proxy",), ("a", "b"), True)
    assert "path" in settings.given and "vhosts" in settings.given


def test_labels_win_over_env_for_new_keys() -> None:
    settings, _ = read_port_settings("/app", 1, {"HAPROXY_1_BALANCE": "first"},
                                     {"HAPROXY_1_BALANCE": "leastconn", "HAPROXY_1_PATH": "/x"})
    assert settings is not None and settings.balance == "first" and settings.path == "/x"


def test_one_bad_value_skips_the_port_and_names_every_problem() -> None:
    settings, problems = read_port_settings(
        "/app", 0, {"HAPROXY_0_BALANCE": "fastest", "HAPROXY_0_PATH": "no-slash",
                    "HAPROXY_0_VHOST": "ok.example.com"}, {})
    assert settings is None
    assert {p.key for p in problems} == {"HAPROXY_0_BALANCE", "HAPROXY_0_PATH"}
    assert all(p.app_id == "/app" and p.port_index == 0 for p in problems)
    assert "balance must be" in str(problems[0]) or "balance must be" in str(problems[1])


def test_unset_keys_give_defaults() -> None:
    settings, problems = read_port_settings("/app", 0, {"unrelated": "x"}, {})
    assert settings == DEFAULT_PORT_SETTINGS and problems == []
    assert settings.backend_weight == 0 and settings.bind_options == () and settings.auth is None


# --------------------------------------------------------------------------- control characters

CONTROL = ["\r", "\n", "\r\n", "\t", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f",
           "\u2028", "\u2029"]


def _good_value(setting) -> str:
    value = setting.example.split("=", 1)[1]
    return f"admins:alice:{SHA512}" if setting.key == "HAPROXY_{n}_AUTH" else value


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.key for s in SETTINGS])
@pytest.mark.parametrize("char", CONTROL, ids=[repr(c) for c in CONTROL])
def test_every_parser_refuses_control_characters_anywhere(setting, char: str) -> None:
    """Trailing CR/LF used to be stripped away; a control character is never a value."""
    good = _good_value(setting)
    setting.parse(good)  # the value itself is fine...
    for bad in (good + char, char + good, good[:1] + char + good[1:]):
        with pytest.raises(SettingError, match="control character"):
            setting.parse(bad)


def test_blank_tolerance_kept_where_it_was() -> None:
    """Plain spaces around a value are still read as before (servicerouter.py compat)."""
    assert parse_vhosts("  ") == () and parse_vhosts("") == ()
    assert parse_vhosts(" a.example.com , b.example.com ") == ("a.example.com", "b.example.com")
    assert parse_bool("true ") is False and parse_bool(" yes") is False  # padded: false
    assert parse_bool("true") is True
    assert parse_port(" 8080 ") == 8080 and parse_mode(" HTTP ") == "http"
    assert parse_switch(" on ") is True and parse_weight(" 3 ") == 3


@pytest.mark.parametrize("value", ["*.wild.test:18080", "*.example.com:443",
                                   "a.example.com,*.b.example.com:80"])
def test_wildcard_with_port_is_refused(value: str) -> None:
    """The wildcard rule matches the host without its port: it could never match."""
    with pytest.raises(SettingError, match="wildcard host cannot have a :port"):
        parse_vhosts(value)


def test_wildcard_and_host_port_still_accepted() -> None:
    assert parse_vhosts("*.wild.test,wild.test:18080") == ("*.wild.test", "wild.test:18080")


def test_bind_option_errors_say_what_haproxy_takes() -> None:
    with pytest.raises(SettingError, match=r"mss.*-65535\.\.65535"):
        parse_bind_options("mss 99999")
    with pytest.raises(SettingError, match=r"tcp-ut.*2147483647 ms"):
        parse_bind_options("tcp-ut 25d")
    with pytest.raises(SettingError, match=r"'id' is given more than once"):
        parse_bind_options("id 1 id 2")


def test_problem_log_line_says_whether_the_port_still_routes() -> None:
    lost = Problem("/b", "vhost conflict: a.test is already routed for older app /a", 0,
                   "HAPROXY_0_VHOST", "a.test", kind="conflict", route="a.test", owner="/a")
    dropped = Problem("/c", "not an integer port", 1, "HAPROXY_1_PORT", "x")
    task = Problem("/b", "task 't1' port 'x' is not a port number", 0)
    whole_app = Problem("/d", "app skipped: 'tasks' is not a list")
    marked = mark_still_routed([lost, dropped, task, whole_app], {("/b", 0), ("/c", 0)})
    assert [p.port_routes for p in marked] == [True, False, True, False]
    assert marked[0].log_line() == (
        "ignored HAPROXY_0_VHOST='a.test' of app '/b' port index 0 (the port still routes): "
        "vhost conflict: a.test is already routed for older app /a")
    assert marked[1].log_line() == \
        "skipped app '/c' port index 1 HAPROXY_1_PORT='x': not an integer port"
    assert marked[2].log_line() == ("ignored for app '/b' port index 0 (the port still "
                                    "routes): task 't1' port 'x' is not a port number")
    assert marked[3].log_line() == "skipped app '/d': app skipped: 'tasks' is not a list"
    assert str(marked[0]) == str(lost)  # /status and reports keep the plain text
