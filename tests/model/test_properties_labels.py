"""Property: no label value, however hostile, breaks the config or adds a directive.

Hypothesis draws apps whose per-port keys (every key of the registry) hold
arbitrary Unicode, known-good values, and good values with hostile characters
spliced in (newline, CR, NUL, '#', quotes, braces, blanks, backslash, '$').
For every draw, model + render (with the same host checks the runner uses)
must not raise, and every line of the config must be one the default
fragments can write, with label text only in single-token slots. The
configs are then checked with ``haproxy -c`` in batches (the union of 25
draws per run, each draw's apps renamed apart); a failing batch is split to
name the draw that breaks it.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.model import labels as registry
from servicerouter.model.bind_options import parse_bind_options
from servicerouter.model.label_values import BasicAuth, SettingError
from servicerouter.model.preflight import PortChecks
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.tls.bundles import ensure_default_certificate, generate_self_signed
from tests.properties import EXAMPLES

BATCH = 25
FRAGMENTS = load_fragments([])
SHA512 = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1"
HOSTILE = ["\n", "\r", "\x00", "#", " ", "\t", "{", "}", '"', "'", "\\", "$", ";", "%",
           "\u2028", "\x85", ":", ",", "/", "*", "\n  server evil 1.2.3.4:1\n"]
CERT = "@CERT@"  # replaced by a real bundle path at run time

GOOD: dict[str, list[str]] = {
    "HAPROXY_GROUP": ["", "external", "a,b"],
    "HAPROXY_{n}_VHOST": ["a.example.com", "A.Example.COM,b.example.com", "*.example.com",
                          "host:8080", "under_score.example.com"],
    "HAPROXY_{n}_STICKY": ["true", "no", "T"],
    "HAPROXY_{n}_REDIRECT_TO_HTTPS": ["true", "yes", "false"],
    "HAPROXY_{n}_SSL_CERT": [CERT, "/nonexistent/site.pem"],
    "HAPROXY_{n}_BIND_ADDR": ["127.0.0.1", "*", "localhost", "127.0.0.2"],
    "HAPROXY_{n}_PORT": ["18080", "80", "65535", "0"],
    "HAPROXY_{n}_MODE": ["http", "tcp", "HTTP"],
    "HAPROXY_{n}_GROUP": ["external", "", "x,y"],
    "HAPROXY_{n}_ENABLED": ["true", "false", "1"],
    "HAPROXY_{n}_PATH": ["/", "/api", "/a/b-c_d.e~f", "/x%20y", "/api /static", "-i /A /b/c"],
    "HAPROXY_{n}_BACKEND_WEIGHT": ["0", "10", "-3"],
    "HAPROXY_{n}_USE_HSTS": ["true", "off"],
    "HAPROXY_{n}_STICKY_COOKIE": ["SRV", "srv_id", "a.b-c"],
    "HAPROXY_{n}_BALANCE": ["leastconn", "url_param id", "hdr(X-Tenant)", "random(3)",
                            "rdp-cookie(mstshash)", "source", "uri"],
    "HAPROXY_{n}_AUTH": [f"admins:alice:{SHA512}", "r:u:$1$abc$iCQ2D3nhptRYi27fDYv2s1",
                         "r:u:abcdefghijklm"],
    "HAPROXY_{n}_BIND_OPTIONS": ["accept-proxy", "maxconn 100 backlog 10", "v4v6 defer-accept",
                                 "alpn h2,http/1.1 ssl-min-ver TLSv1.2",
                                 "ciphers ECDHE-RSA-AES128-GCM-SHA256 strict-sni",
                                 "curves X25519:P-256", "ciphers BOGUS", "name front tcp-ut 5s",
                                 "ssl-min-ver SSLv3", "ssl-max-ver TLSv1.0 no-tlsv13",
                                 "ciphersuites TLS_AES_128_CCM_8_SHA256", "ecdhe X448",
                                 "curves BOGUS", "ciphers DEFAULT:!aNULL", "ciphers !aNULL",
                                 "npn http/1.1 prefer-client-ciphers allow-0rtt"],
    "HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH": ["/api", "/test/", "/a(b)+c.d*", "/x%20y", "/"],
    "HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH": ["/my/content", "/x%41", "/"],
    "HAPROXY_{n}_HTTP_BACKEND_REDIR": ["/home", "/a%20b", "/a;b=c"],
    "HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL": ["10.0.0.0/8", "127.0.0.1 10.1.2.3",
                                                "::1, 192.168.0.0/16", "10.1.40.0/24,"],
    "HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX": ["0", "1", "5"],
}
assert set(GOOD) == {s.key for s in registry.SETTINGS}


def mutated(values: list[str]) -> st.SearchStrategy[str]:
    """A good value with a hostile piece spliced in somewhere."""
    return st.builds(
        lambda value, bad, at: value[: at % (len(value) + 1)] + bad + value[at % (len(value) + 1):],
        st.sampled_from(values), st.sampled_from(HOSTILE), st.integers(0, 64))


# Bind options taking a number: HAProxy checks each against its own range, and one
# value out of range makes it reject the whole config. Drawn from wide ranges and
# from the edges, in any unit, sometimes repeated.
UNIT_MS = {"": 1, "us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000,
           "d": 86_400_000}
TIMER_MAX_MS = 2**31 - 1
# Per keyword: the numbers around HAProxy's limits (and beyond ours).
EDGES = {
    "backlog": [0, 1, 9_999_999, 10_000_000, 2**31 - 1, 2**31, 2**32],
    "id": [0, 1, 9_999_999, 10_000_000, 2**31 - 1, 2**31, 2**32],
    "maxconn": [0, 1, 9_999_999, 10_000_000, 2**31 - 1, 2**31, 2**32],
    "mss": [0, 1, -1, 65535, -65535, 65536, -65536, 99999, -99999],
    "nice": [0, 1024, -1024, 1025, -1025, 99999],
}


def _edges(keyword: str, unit: str) -> list[int]:
    if keyword != "tcp-ut":
        return EDGES[keyword]
    limit = int(TIMER_MAX_MS / UNIT_MS[unit])
    return [0, 1, limit, limit + 1, limit * 2]


@st.composite
def numeric_bind_option(draw: st.DrawFn) -> str:
    keyword = draw(st.sampled_from(sorted(EDGES) + ["tcp-ut"]))
    unit = draw(st.sampled_from(sorted(UNIT_MS))) if keyword == "tcp-ut" else ""
    number = draw(st.one_of(
        st.sampled_from(_edges(keyword, unit)).flatmap(
            lambda edge: st.integers(edge - 2, edge + 2)),
        st.integers(-70_000, 70_000), st.integers(-2**34, 2**34)))
    return f"{keyword} {number}{unit}"


numeric_bind_options = st.one_of(
    # mostly one keyword each (a repeat is refused whatever its numbers)...
    st.lists(numeric_bind_option(), min_size=1, max_size=3,
             unique_by=lambda option: option.split()[0]),
    # ...sometimes a keyword twice.
    numeric_bind_option().map(lambda option: [option, option]),
).map(" ".join)


def value_for(key: str) -> st.SearchStrategy[str]:
    good = GOOD[key]
    extra = [numeric_bind_options] if key == "HAPROXY_{n}_BIND_OPTIONS" else []
    return st.one_of(st.sampled_from(good), mutated(good),
                     st.text(st.characters(), max_size=40),
                     st.lists(st.sampled_from(good), min_size=2, max_size=3).map(",".join),
                     *extra)


@st.composite
def app_strategy(draw: st.DrawFn, index: int) -> dict:
    port_count = draw(st.integers(1, 2))
    base = 11000 + index * 10
    chosen = draw(st.lists(st.sampled_from(sorted(GOOD)), min_size=1, max_size=6, unique=True))
    labels: dict[str, str] = {}
    for key in chosen:
        slots = [key] if "{n}" not in key else [key.replace("{n}", str(i)) for i in
                                                 range(port_count)]
        for name in slots:
            labels[name] = draw(value_for(key))
    if draw(st.booleans()):  # a TLS port: its bind options now reach OpenSSL
        labels["HAPROXY_0_SSL_CERT"] = CERT
        labels["HAPROXY_0_BIND_OPTIONS"] = draw(value_for("HAPROXY_{n}_BIND_OPTIONS"))
    check = draw(st.sampled_from([None, "HTTP", "TCP"]))
    return {
        "id": f"/p{index}",
        "ports": [base + i for i in range(port_count)],
        "labels": labels,
        "env": {},
        "version": draw(st.sampled_from(["2015-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"])),
        "healthChecks": [] if check is None else [{"protocol": check, "portIndex": 0,
                                                   "path": "/health"}],
        "tasks": [{"id": f"p{index}.{t}", "host": "127.0.0.1",
                   "ports": [20000 + index * 10 + t * 3 + i for i in range(port_count)],
                   "state": "TASK_RUNNING"} for t in range(draw(st.integers(1, 2)))],
    }


draws = st.lists(st.integers(0, 2), min_size=1, max_size=3).flatmap(
    lambda seeds: st.tuples(*[app_strategy(i) for i in range(len(seeds))]))

# --------------------------------------------------------------------------- line grammar

T = r"[A-Za-z0-9_.:/*@%+=,()~!&;$-]+"  # one token, as label values may fill it
R = r"[A-Za-z0-9_.:/*@%+=,()~!&;\\-]*"  # a regex literal made of such a token
LINE_PATTERNS = [re.compile(p) for p in (
    rf"frontend {T}", rf"backend {T}", rf"userlist user_{T}",
    rf"  bind {T}:[0-9]+(?: ssl crt {T})?(?: {T})*",
    r"  mode (?:tcp|http)", r"  option (?:tcplog|httplog)",
    rf"  acl host_{T} hdr\(host\) -i {T}",
    rf"  acl host_{T} req\.hdr\(host\),field\(1,:\) -i {T}",
    rf"  acl hostw_{T} req\.hdr\(host\),field\(1,:\) -m end -i \.{T}",
    rf"  acl path_{T} path_beg (?:-i )?/(?:{T})?",
    rf"  acl app_{T} hdr\(x-marathon-app-id\) -i /{T}",
    rf"  use_backend {T}(?: if (?:host|hostw|app)_{T}(?: path_{T})?)?",
    r"  balance (?:roundrobin|static-rr|leastconn|first|source|uri|random|rdp-cookie"
    r"|(?:hdr|rdp-cookie)\([A-Za-z0-9_.-]+\)|random\([0-9]+\)|url_param [A-Za-z0-9_.-]+)",
    r"  hash-type consistent",  # hash balances: add server through the Runtime API
    r"  http-request redirect scheme https code 301 if !\{ ssl_fc \} \{ dst_port [0-9]+ \}",
    rf"  http-request auth realm {T} unless \{{ http_auth\(user_{T}\) \}}",
    rf"  user {T} password {T}",
    rf"  cookie {T} insert indirect nocache dynamic", r"  dynamic-cookie-key [0-9a-f]{32}",
    r'  http-response set-header Strict-Transport-Security "max-age=15768000" if \{ ssl_fc \}',
    rf"  option httpchk GET /(?:{T})?", r"  timeout check [0-9]+s",
    rf"  server {T} [0-9.]+:[0-9]+ check(?: cookie {T})?"
    r"(?: inter [0-9]+s fastinter 1s fall [0-9]+)?(?: port [0-9]+)?(?: weight 0)?",
    # marathon-lb's backend labels (render/mlb_backend.py)
    rf"  acl network_allowed src {T}(?: {T})*",
    r"  http-request deny if !network_allowed", r"  tcp-request content reject if !network_allowed",
    rf"  http-request redirect code 301 location {T} if \{{ path / \}}"
    rf"(?: \{{ req\.hdr\(host\),field\(1,:\) (?:-m end )?-i {T}(?: {T})* \}})?",
    rf"  http-request set-header Host {T}",
    rf"  http-request replace-path '\^{R}/\?\(\.\*\)' '/\\1'",
    rf"  http-response replace-header Location '\^(?:\(https\?://{R}\(:\[0-9\]\+\)\?\)\?)?"
    rf"\(/\.\*\)\$' '{T}'",
)]


def check_lines(text: str, fixed: set[str]) -> None:
    assert "#" not in text and "\r" not in text and "\x00" not in text
    for line in text.splitlines():
        if not line or line in fixed:
            continue
        assert any(p.fullmatch(line) for p in LINE_PATTERNS), f"unexpected line {line!r}"
        if line.startswith("  bind "):
            words = line.split()[2:]
            if words[:2] == ["ssl", "crt"]:
                words = words[3:]
            parse_bind_options(" ".join(words)) if words else None
            assert not words or tuple(words) == parse_bind_options(" ".join(words))


# --------------------------------------------------------------------------- the property


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("props")
    cert = root / "site.pem"
    cert.write_text(generate_self_signed("site.example.com"))
    default = ensure_default_certificate(str(root / "state"))
    crt_list = root / "crt-list"
    crt_list.write_text(default + "\n")
    options = RenderOptions(bind_addr="127.0.0.1", crt_list=str(crt_list))
    empty = render_config([], FRAGMENTS, options)
    # Lines written as they are: the head, and fragments without any placeholder.
    fixed = set(empty.splitlines())
    fixed.update(FRAGMENTS["HAPROXY_BACKEND_HTTP_OPTIONS"].text.splitlines())
    for head in ("HAPROXY_HTTP_FRONTEND_HEAD", "HAPROXY_HTTPS_FRONTEND_HEAD",
                 "HAPROXY_HTTP_FRONTEND_APPID_HEAD"):  # bound only when needed: not in `empty`
        fixed.update(FRAGMENTS[head].render({"options": options, "services": [],
                                             "needed": True}).splitlines())
    return {"root": root, "cert": str(cert), "options": options, "fixed": fixed,
            "checks": PortChecks(getaddrinfo=loopback_only)}


def loopback_only(host: str, port: int, **kw):
    """The runner's bind check, kept on loopback: no DNS, no other address bound."""
    if host in ("localhost", "127.0.0.1"):
        return socket.getaddrinfo("127.0.0.1", port, **kw)
    raise OSError(f"{host} is not resolved in tests")


def model_of(apps: list[dict], env: dict):
    options = env["options"]
    return build_model(apps, ("*",), lambda h: h, reserved_ports=options.reserved_ports(),
                       default_bind_addr=options.bind_addr, check_port=env["checks"])


def with_cert(apps: tuple[dict, ...], cert: str) -> list[dict]:
    return json.loads(json.dumps(list(apps)).replace(CERT, cert))


def haproxy_check(haproxy_bin: str, path: Path, text: str) -> tuple[bool, str]:
    path.write_text(text)
    proc = subprocess.run([haproxy_bin, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode == 0, proc.stdout + proc.stderr


def renamed(draw_no: int, apps: list[dict]) -> list[dict]:
    """One draw's apps, moved to their own ids and ports so draws can share a config."""
    out = []
    for app in apps:
        app = json.loads(json.dumps(app))
        app["id"] = f"/d{draw_no}{app['id']}"
        app["ports"] = [p + draw_no * 100 for p in app["ports"]]
        for name in [k for k in app["labels"] if k.endswith("_PORT")]:
            value = app["labels"][name]
            if value.isascii() and value.isdigit() and 1024 < int(value) < 60000:
                app["labels"][name] = str(int(value) + draw_no * 100 + 1)
        out.append(app)
    return out


@pytest.mark.e2e
def test_arbitrary_label_values_never_break_the_config(env: dict, haproxy_bin: str) -> None:
    drawn: list[list[dict]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(apps=draws)
    def one_draw(apps: tuple[dict, ...]) -> None:
        concrete = with_cert(apps, env["cert"])
        model = model_of(concrete, env)
        text = render_config(model.services, FRAGMENTS, env["options"])
        check_lines(text, env["fixed"])
        drawn.append(concrete)

    one_draw()
    assert len(drawn) >= EXAMPLES // 2
    batches = [drawn[i:i + BATCH] for i in range(0, len(drawn), BATCH)]

    def check_batch(number: int) -> str | None:
        batch = batches[number]
        apps = [app for k, draw_apps in enumerate(batch) for app in renamed(k, draw_apps)]
        text = render_config(model_of(apps, env).services, FRAGMENTS, env["options"])
        ok, output = haproxy_check(haproxy_bin, env["root"] / f"batch{number}.cfg", text)
        if ok:
            return None
        for draw_apps in batch:  # name the draw that breaks it
            single = render_config(model_of(draw_apps, env).services, FRAGMENTS, env["options"])
            ok, output = haproxy_check(haproxy_bin, env["root"] / f"single{number}.cfg", single)
            if not ok:
                return f"apps {json.dumps(draw_apps)[:2000]}\nhaproxy -c:\n{output[-2000:]}"
        return f"batch {number} fails only combined:\n{output[-2000:]}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(check_batch, range(len(batches))) if f]
    assert not failures, failures[0]


MAP_LINES = [re.compile(p) for p in (
    r'  http-request set-var-fmt\(txn\.sr_route\) "%\[req\.hdr\(host\),field\(1,:\),lower\]'
    r'/%\[path\]"',
    r"  use_backend %\[(?P<lookup>(?:var\(txn\.sr_route\),map_beg|req\.hdr\(host\),field\(1,:\),"
    r"lower,map_end|req\.hdr\(x-marathon-app-id\),lower,map_str)\(MAPS/(?:http|https|appid)-"
    r"[0-9]+-(?:beg|end|str)\.map\))\] if \{ (?P=lookup) -m found \}",
)]
BLOCK_LINES = [re.compile(p) for p in (
    r"# servicerouter map entries: the map files named below are written from these lines",
    r"#map-file MAPS/(?:http|https|appid)-[0-9]+-(?:beg|end|str)\.map", rf"#map {T} {T}",
)]


@pytest.mark.e2e
def test_arbitrary_label_values_never_break_map_routing(env: dict, haproxy_bin: str) -> None:
    """The same draws with map routing: every line, in the config and in its map block,
    is one of the expected shapes, and batches of draws pass haproxy -c with their maps."""
    from servicerouter.apply import mapfiles

    maps_dir = str(env["root"] / "maps")
    options = replace(env["options"], map_dir=maps_dir)
    map_lines = [re.compile(p.pattern.replace("MAPS", re.escape(maps_dir))) for p in MAP_LINES]
    block_lines = [re.compile(p.pattern.replace("MAPS", re.escape(maps_dir)))
                   for p in BLOCK_LINES]
    drawn: list[list[dict]] = []

    @settings(max_examples=EXAMPLES // 2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(apps=draws)
    def one_draw(apps: tuple[dict, ...]) -> None:
        concrete = with_cert(apps, env["cert"])
        text = render_config(model_of(concrete, env).services, FRAGMENTS, options)
        config, _marker, block = text.partition("\n# servicerouter map entries")
        routing = [line for line in config.splitlines() if any(p.fullmatch(line)
                                                               for p in map_lines)]
        check_lines("\n".join(line for line in config.splitlines() if line not in routing),
                    env["fixed"])
        for line in ("# servicerouter map entries" + block).splitlines() if block else ():
            assert any(p.fullmatch(line) for p in block_lines), f"unexpected line {line!r}"
        drawn.append(concrete)

    one_draw()
    batches = [drawn[i:i + BATCH] for i in range(0, len(drawn), BATCH)]
    for batch in batches:
        apps = [app for k, draw_apps in enumerate(batch) for app in renamed(k, draw_apps)]
        text = render_config(model_of(apps, env).services, FRAGMENTS, options)
        ok, output = mapfiles.check_text(text, maps_dir, str(env["root"]), haproxy_bin)
        assert ok, output[-2000:]


@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(key=st.sampled_from([s for s in registry.SETTINGS if s.per_port]),
       value=st.text(st.characters(), max_size=60))
def test_a_value_is_either_refused_or_one_safe_token_per_word(key, value: str) -> None:
    try:
        parsed = key.parse(value)
    except SettingError:
        return
    parts = parsed if isinstance(parsed, tuple) else (parsed,)
    for part in parts:
        text = str(part) if not isinstance(part, BasicAuth) else \
            f"{part.realm} {part.user} {part.password_hash}"
        for word in text.split(" "):
            if key.key == "HAPROXY_{n}_GROUP" or isinstance(part, bool):
                continue  # groups only select apps; they are never written
            assert re.fullmatch(T, word) or word == "", (key.key, value, parsed)


@pytest.mark.e2e
def test_numeric_bind_options_pass_haproxy_when_accepted(env: dict, haproxy_bin: str) -> None:
    """Every number the registry lets through a bind option is one HAProxy 2.6 takes.

    Hypothesis draws numeric options (backlog, id, maxconn, mss, nice, tcp-ut) from
    wide ranges and the edges of HAProxy's limits; each accepted draw becomes one app
    (half of them on a TLS bind), and all of them are checked in one ``haproxy -c``.
    """
    accepted: list[str] = []
    refused: list[str] = []

    @settings(max_examples=max(EXAMPLES, 500), deadline=None, database=None)
    @given(value=numeric_bind_options)
    def one_draw(value: str) -> None:
        try:
            words = parse_bind_options(value)
        except SettingError:
            refused.append(value)
            return
        assert " ".join(words) == " ".join(value.split())
        accepted.append(value)

    one_draw()
    assert accepted and refused  # both sides of the limits were drawn
    apps = []
    for number, value in enumerate(accepted):
        labels = {"HAPROXY_0_BIND_OPTIONS": value}
        if number % 2:
            labels["HAPROXY_0_SSL_CERT"] = env["cert"]
        apps.append({"id": f"/n{number}", "ports": [30000 + number], "labels": labels,
                     "tasks": [{"id": f"n{number}.1", "host": "127.0.0.1", "ports": [40000]}]})
    model = model_of(apps, env)
    assert len(model.services) == len(accepted), model.problems[:3]
    text = render_config(model.services, FRAGMENTS, env["options"])
    ok, output = haproxy_check(haproxy_bin, env["root"] / "numeric.cfg", text)
    if not ok:  # name the first value HAProxy refuses
        for app in apps:
            single = render_config(model_of([app], env).services, FRAGMENTS, env["options"])
            single_ok, single_output = haproxy_check(haproxy_bin, env["root"] / "one.cfg", single)
            assert single_ok, (app["labels"], single_output[-1000:])
    assert ok, output[-2000:]
