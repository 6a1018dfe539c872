"""End to end: the label-driven routing features and TLS bundles through a real HAProxy.

One edge for the whole module (the Marathon emulator, real backend processes, the
servicerouter CLI as a real process writing the config, a real HAProxy on free
127.0.0.1 ports); each test then sends real HTTP/TLS requests through it:

multi-vhost, path routing (two apps on one host), 301 redirect + HSTS, basic auth
401/200, sticky sessions with a custom cookie, the crt-list picking the right
certificate by SNI (checked from the client side), the fallback certificate when SNI
matches nothing, expired and mismatched bundles skipped while the others serve,
a per-port certificate pasted out of order, IP-per-task routing (given and assigned
service ports) and --health-check task selection with a draining task.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servicerouter.emulator.marathon import MarathonEmulator
from tests.harness import Backend, HAProxy, free_port, http_get, wait_for_port, wait_until
from tests.paths import REPO
from tests.pki import NOW, make_cert, pem

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]
# openssl passwd -6 -salt abc secret
SECRET_HASH = ("$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr"
               "/TsVArtr91iR1")


# --------------------------------------------------------------------------- certificates


def _cert(cn: str, key, issuer=None, sans=(), ca=False, start=-1.0, days=30.0):
    """The e2e bundles' certificates: a month long unless told otherwise."""
    return make_cert(cn, key, issuer=issuer, sans=sans, ca=ca, start=start, days=days)


def write_pki(workdir: Path) -> dict[str, Path]:
    """certs/ with a.test, b.test, an expired and a mismatched bundle; c.test shuffled."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("E2E Root", ca_key, ca=True, days=365)
    certs_dir = workdir / "certs"
    certs_dir.mkdir()

    def leaf(sans: list[str], **kw):
        key = ec.generate_private_key(ec.SECP256R1())
        return _cert(sans[0], key, issuer=(ca, ca_key), sans=sans, **kw), key

    a, a_key = leaf(["a.test", "www.a.test"])
    (certs_dir / "a.pem").write_text(pem(a, ca, a_key))
    # The certificate a.pem renewed: same names, expires first; sorts before a.pem.
    a_old, a_old_key = leaf(["www.a.test", "a.test"], days=5)
    (certs_dir / "a-old.pem").write_text(pem(a_old, ca, a_old_key))
    b, b_key = leaf(["b.test"])
    (workdir / "b.pem").write_text(pem(b_key, b))  # given with --ssl-certs, key first
    old, old_key = leaf(["expired.test"], start=-30, days=-1)
    (certs_dir / "expired.pem").write_text(pem(old, old_key))
    wrong, _ = leaf(["mismatch.test"])
    (certs_dir / "mismatch.pem").write_text(pem(wrong, ec.generate_private_key(ec.SECP256R1())))
    c, c_key = leaf(["c.test"])
    (workdir / "c-shuffled.pem").write_text(pem(c_key, ca, c))  # key, chain, leaf
    ca_file = workdir / "ca.pem"
    ca_file.write_text(pem(ca))
    return {"certs": certs_dir, "b": workdir / "b.pem", "c": workdir / "c-shuffled.pem",
            "ca": ca_file}


def presented_cert(port: int, sni: str | None) -> x509.Certificate:
    """The certificate HAProxy presents for ``sni`` (client-side view)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=sni) as conn:
        der = conn.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def presented_names(port: int, sni: str | None) -> list[str]:
    """DNS names of the certificate HAProxy presents for ``sni`` (client-side view)."""
    cert = presented_cert(port, sni)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


# --------------------------------------------------------------------------- the edge


@dataclass
class Edge:
    http: int
    https: int
    ports: dict[str, int] = field(default_factory=dict)
    stderr: str = ""
    config: str = ""

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def tls_url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.https}{path}"


def marathon_app(app_id: str, backends: list[Backend], port: int, labels: dict[str, str],
                 **extra) -> dict:
    app = {"id": app_id, "portDefinitions": [{"port": port}], "labels": labels,
           "tasks": [{"id": f"{app_id[1:]}.{b.name}", "host": "127.0.0.1", "ports": [b.port],
                      "state": "TASK_RUNNING"} for b in backends]}
    app.update(extra)
    return app


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("features")
    pki = write_pki(workdir)
    started: list[Backend] = []
    proxy: HAProxy | None = None
    marathon: MarathonEmulator | None = None

    def backend(name: str) -> Backend:
        b = Backend(name)
        started.append(b)
        b.start()
        return b

    try:
        multi, root, api, sec, auth, assets = (backend(n) for n in ("multi", "root", "api",
                                                                    "sec", "auth", "assets"))
        s1, s2, ipt, disc, h1, h2, h3 = (backend(n) for n in ("s1", "s2", "ipt", "disc", "h1",
                                                              "h2", "h3"))
        out = Edge(free_port(), free_port())
        out.ports = {name: free_port() for name in ("multi", "root", "api", "sec", "auth",
                                                     "sticky", "ipt", "disc", "hc", "tlsport",
                                                     "assets")}
        apps = [
            marathon_app("/multi", [multi], out.ports["multi"],
                         {"HAPROXY_0_VHOST": "one.test,Two.Test"}),
            marathon_app("/shop/root", [root], out.ports["root"],
                         {"HAPROXY_0_VHOST": "shop.test"}),
            marathon_app("/shop/api", [api], out.ports["api"],
                         {"HAPROXY_0_VHOST": "shop.test", "HAPROXY_0_PATH": "/api"}),
            # marathon-lb's several prefixes, matched ignoring case: /api/v2 is longer
            # than /shop/api's /api, so it wins there; /static is this app's alone.
            marathon_app("/shop/assets", [assets], out.ports["assets"],
                         {"HAPROXY_0_VHOST": "shop.test",
                          "HAPROXY_0_PATH": "-i /static /API/v2"}),
            marathon_app("/sec", [sec], out.ports["sec"],
                         {"HAPROXY_0_VHOST": "sec.test", "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
                          "HAPROXY_0_USE_HSTS": "true"}),
            marathon_app("/auth", [auth], out.ports["auth"],
                         {"HAPROXY_0_VHOST": "auth.test",
                          "HAPROXY_0_AUTH": f"private:alice:{SECRET_HASH}"}),
            marathon_app("/sticky", [s1, s2], out.ports["sticky"],
                         {"HAPROXY_0_VHOST": "sticky.test", "HAPROXY_0_STICKY": "true",
                          "HAPROXY_0_STICKY_COOKIE": "SRVID"}),
            {"id": "/ipt", "labels": {}, "networks": [{"mode": "container", "name": "overlay"}],
             "container": {"type": "MESOS", "portMappings": [
                 {"containerPort": ipt.port, "servicePort": out.ports["ipt"]}]},
             "tasks": [{"id": "ipt.1", "host": "agent-7.invalid", "ports": [],
                        "state": "TASK_RUNNING",
                        "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]}]},
            {"id": "/disc", "labels": {}, "ports": [], "portDefinitions": [],
             "ipAddress": {"networkName": "calico",
                           "discovery": {"ports": [{"number": disc.port, "name": "http",
                                                    "protocol": "tcp"}]}},
             "tasks": [{"id": "disc.1", "host": "agent-8.invalid", "ports": [],
                        "state": "TASK_RUNNING",
                        "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]}]},
            {"id": "/hc", "labels": {"HAPROXY_0_MODE": "http"},
             "portDefinitions": [{"port": out.ports["hc"]}],
             "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
             "tasks": [
                 {"id": "hc.h1", "host": "127.0.0.1", "ports": [h1.port], "state": "TASK_RUNNING",
                  "healthCheckResults": [{"alive": True}]},
                 {"id": "hc.h2", "host": "127.0.0.1", "ports": [h2.port], "state": "TASK_RUNNING",
                  "healthCheckResults": [{"alive": False}]},
                 {"id": "hc.h3", "host": "127.0.0.1", "ports": [h3.port], "state": "TASK_KILLING",
                  "healthCheckResults": [{"alive": True}]}]},
            marathon_app("/tlsport", [multi], out.ports["tlsport"],
                         {"HAPROXY_0_MODE": "http", "HAPROXY_0_SSL_CERT": str(pki["c"])}),
        ]
        marathon = MarathonEmulator(apps).start()
        cfg = workdir / "haproxy.cfg"
        disc_port = out.ports["disc"]
        proc = subprocess.run(
            [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", marathon.url,
             "--command", "true", "--haproxy-config", str(cfg), "--syslog-socket", "/dev/null",
             "--bind-addr", "127.0.0.1", "--http-port", str(out.http),
             "--https-port", str(out.https), "--appid-port", str(free_port()),
             "--stats-port", str(free_port()), "--state-dir", str(workdir / "state"),
             "--certs-dir", str(pki["certs"]), "--ssl-certs", str(pki["b"]),
             "--health-check", "--min-serv-port-ip-per-task", str(disc_port),
             "--max-serv-port-ip-per-task", str(disc_port)],
            capture_output=True, text=True, timeout=60, cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.returncode == 0, proc.stderr
        out.stderr = proc.stderr
        out.config = cfg.read_text()
        proxy = HAProxy(cfg, haproxy_bin=haproxy_bin)
        proxy.start()
        wait_for_port(out.http)
        yield out
    finally:
        if proxy is not None:
            proxy.stop()
        if marathon is not None:
            marathon.stop()
        for b in started:
            b.stop()


def body(response) -> str:
    return response.text.strip()


# --------------------------------------------------------------------------- routing


def test_multi_vhost_routes_every_host(edge: Edge) -> None:
    for host in ("one.test", "ONE.TEST", "two.test", f"two.test:{edge.http}"):
        assert body(http_get(edge.url(), host_header=host)) == "multi", host
    assert http_get(edge.url(), host_header="three.test").status_code == 503


def test_path_routing_two_apps_on_one_host(edge: Edge) -> None:
    assert body(http_get(edge.url("/api/users"), host_header="shop.test")) == "api"
    assert body(http_get(edge.url("/api"), host_header="shop.test")) == "api"
    assert body(http_get(edge.url("/"), host_header="shop.test")) == "root"
    assert body(http_get(edge.url("/about"), host_header="shop.test")) == "root"
    # Same rules on :443 (Host header routing, any SNI).
    response = http_get(edge.tls_url("/api/x"), host_header="shop.test", verify=False)
    assert body(response) == "api"


def test_several_path_prefixes_longest_wins_and_ignore_case(edge: Edge) -> None:
    # /shop/assets: '-i /static /API/v2'; /shop/api: '/api'; /shop/root: the host.
    for path, app in (("/static/app.js", "assets"), ("/STATIC/App.js", "assets"),
                      ("/api/v2/users", "assets"), ("/Api/V2", "assets"),
                      ("/api/v1/users", "api"), ("/api", "api"), ("/API/x", "root"),
                      ("/staticky", "assets"), ("/stat", "root"), ("/", "root")):
        assert body(http_get(edge.url(path), host_header="shop.test")) == app, path
        response = http_get(edge.tls_url(path), host_header="shop.test", verify=False)
        assert body(response) == app, path
    assert "path_beg -i /static" in edge.config and "path_beg -i /API/v2" in edge.config


def test_redirect_301_on_port_80_only_and_hsts_on_https(edge: Edge) -> None:
    redirect = http_get(edge.url("/p?q=1"), host_header="sec.test", allow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == "https://sec.test/p?q=1"
    secure = http_get(edge.tls_url("/p"), host_header="sec.test", verify=False)
    assert secure.status_code == 200 and body(secure) == "sec"
    assert secure.headers["Strict-Transport-Security"] == "max-age=15768000"
    # Only that vhost redirects; HSTS only where asked and only over TLS.
    other = http_get(edge.url(), host_header="one.test", allow_redirects=False)
    assert other.status_code == 200 and "Strict-Transport-Security" not in other.headers
    # The app's own port is not redirected (no TLS there).
    own = http_get(f"http://127.0.0.1:{edge.ports['sec']}/", allow_redirects=False)
    assert own.status_code == 200 and body(own) == "sec"


def test_basic_auth_401_then_200(edge: Edge) -> None:
    denied = http_get(edge.url(), host_header="auth.test")
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"] == 'Basic realm="private"'
    assert http_get(edge.url(), host_header="auth.test", auth=("alice", "wrong")).status_code == 401
    assert http_get(edge.url(), host_header="auth.test", auth=("bob", "secret")).status_code == 401
    ok = http_get(edge.url(), host_header="auth.test", auth=("alice", "secret"))
    assert ok.status_code == 200 and body(ok) == "auth"
    # The app's own frontend asks for the same credentials.
    assert http_get(f"http://127.0.0.1:{edge.ports['auth']}/").status_code == 401


def test_sticky_with_custom_cookie(edge: Edge) -> None:
    first = http_get(edge.url(), host_header="sticky.test")
    cookie = first.cookies.get("SRVID")
    assert cookie and "mesosphere_server_id" not in first.headers.get("Set-Cookie", "")
    pinned = {body(http_get(edge.url(), host_header="sticky.test", cookies={"SRVID": cookie}))
              for _ in range(8)}
    assert pinned == {body(first)}
    free = {body(http_get(edge.url(), host_header="sticky.test")) for _ in range(8)}
    assert free == {"s1", "s2"}


# --------------------------------------------------------------------------- TLS


def test_sni_picks_the_matching_certificate(edge: Edge) -> None:
    assert presented_names(edge.https, "a.test") == ["a.test", "www.a.test"]
    # a-old.pem (same names, 5 days left) is superseded by the renewed a.pem.
    for sni in ("a.test", "www.a.test"):
        assert presented_cert(edge.https, sni).not_valid_after_utc > NOW + timedelta(days=20)
    assert "a-old.pem (www.a.test, a.test, expires" in edge.stderr
    assert "is superseded by" in edge.stderr and "a-old.pem" not in edge.config
    assert presented_names(edge.https, "www.a.test") == ["a.test", "www.a.test"]
    assert presented_names(edge.https, "b.test") == ["b.test"]
    # SNI only picks the certificate; routing still follows the Host header.
    response = http_get(edge.tls_url(), host_header="one.test", verify=False)
    assert body(response) == "multi"


def test_fallback_certificate_when_sni_matches_nothing(edge: Edge) -> None:
    # The default is the first bundle of --ssl-certs (b.pem), not the self-signed one.
    fallback = presented_names(edge.https, "nothing.test")
    assert fallback == ["b.test"]
    assert presented_names(edge.https, None) == fallback
    crt_list = Path(edge.config.split("crt-list ")[1].split()[0])
    first = crt_list.read_text().splitlines()[0].split()
    assert first[1:] == ["b.test"] and first[0].startswith(str(crt_list.parent / "bundles"))
    assert "default.pem" not in crt_list.read_text()


def test_expired_and_mismatched_bundles_are_skipped_and_named(edge: Edge) -> None:
    assert "expired.pem: certificate expired on" in edge.stderr
    assert "mismatch.pem: private key does not match the certificate" in edge.stderr
    assert presented_names(edge.https, "expired.test") == ["b.test"]  # the default
    assert presented_names(edge.https, "mismatch.test") == ["b.test"]
    assert presented_names(edge.https, "a.test") == ["a.test", "www.a.test"]


def test_port_certificate_out_of_order_is_served_normalised(edge: Edge) -> None:
    assert presented_names(edge.ports["tlsport"], "c.test") == ["c.test"]
    response = http_get(f"https://127.0.0.1:{edge.ports['tlsport']}/", verify=False)
    assert body(response) == "multi"
    assert "c-shuffled.pem" not in edge.config.split("frontend tlsport")[1].split("\n")[1]


def _bundle_file(path: Path, sans: list[str], days: float = 30.0, start: float = -1.0,
                 wrong_key: bool = False) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(sans[0], key, sans=sans, start=start, days=days)
    path.write_text(pem(cert, ec.generate_private_key(ec.SECP256R1()) if wrong_key else key))
    return path


def _one_shot_edge(workdir: Path, haproxy_bin: str, args: list[str],
                   apps: list[dict]) -> tuple[int, str, str, HAProxy]:
    """servicerouter (one sync from a snapshot) then a started HAProxy: (https, stderr, cfg)."""
    import json

    snapshot = workdir / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    cfg, https = workdir / "haproxy.cfg", free_port()
    proc = subprocess.run(
        [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", f"file:{snapshot}",
         "--command", "true", "--haproxy-config", str(cfg), "--syslog-socket", "/dev/null",
         "--bind-addr", "127.0.0.1", "--http-port", str(free_port()), "--https-port", str(https),
         "--appid-port", str(free_port()), "--stats-port", str(free_port()),
         "--state-dir", str(workdir / "state"), "--certs-dir", str(workdir / "certs"), *args],
        capture_output=True, text=True, timeout=60, cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    proxy = HAProxy(cfg, haproxy_bin=haproxy_bin)
    proxy.start()
    wait_for_port(https)
    return https, proc.stderr, cfg.read_text(), proxy


def test_default_certificate_is_the_first_ssl_certs_bundle_in_the_order_given(
        tmp_path: Path, haproxy_bin: str) -> None:
    (tmp_path / "certs").mkdir()
    _bundle_file(tmp_path / "certs" / "aaa.pem", ["dir.test"])
    _bundle_file(tmp_path / "bad.pem", ["bad.test"], wrong_key=True)
    second = _bundle_file(tmp_path / "x.pem", ["x.test"])
    first = _bundle_file(tmp_path / "y.pem", ["y.test"])
    https, _err, _cfg, proxy = _one_shot_edge(
        tmp_path, haproxy_bin, ["--ssl-certs", f"{tmp_path / 'bad.pem'},{first},{second}"], [])
    try:
        assert presented_names(https, None) == ["y.test"]  # bad.pem is skipped, not default
        assert presented_names(https, "nothing.test") == ["y.test"]
        assert presented_names(https, "x.test") == ["x.test"]
        assert presented_names(https, "dir.test") == ["dir.test"]
    finally:
        proxy.stop()


def test_default_certificate_is_the_certs_directory_first_bundle_by_name(
        tmp_path: Path, haproxy_bin: str) -> None:
    (tmp_path / "certs").mkdir()
    _bundle_file(tmp_path / "certs" / "m.pem", ["m.test"])
    _bundle_file(tmp_path / "certs" / "k.pem", ["k.test"])
    _bundle_file(tmp_path / "certs" / "a-expired.pem", ["a.test"], start=-30, days=-1)
    https, _err, _cfg, proxy = _one_shot_edge(tmp_path, haproxy_bin, [], [])
    try:
        assert presented_names(https, "nothing.test") == ["k.test"]
        assert presented_names(https, None) == ["k.test"]
        assert presented_names(https, "m.test") == ["m.test"]
    finally:
        proxy.stop()


def test_self_signed_default_only_without_a_usable_bundle_and_expired_port_cert_skips_port(
        tmp_path: Path, haproxy_bin: str) -> None:
    (tmp_path / "certs").mkdir()
    _bundle_file(tmp_path / "certs" / "expired.pem", ["expired.test"], start=-30, days=-1)
    _bundle_file(tmp_path / "certs" / "mismatch.pem", ["mismatch.test"], wrong_key=True)
    port_expired = _bundle_file(tmp_path / "port-expired.pem", ["pe.test"], start=-30, days=-1)
    port_bad = _bundle_file(tmp_path / "port-bad.pem", ["pb.test"], wrong_key=True)
    ports = {name: free_port() for name in ("expired", "bad", "plain")}

    def app(name: str, labels: dict[str, str]) -> dict:
        return {"id": f"/{name}", "portDefinitions": [{"port": ports[name]}],
                "labels": {"HAPROXY_0_MODE": "http", **labels},
                "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [free_port()],
                           "state": "TASK_RUNNING"}]}

    https, err, cfg, proxy = _one_shot_edge(tmp_path, haproxy_bin, [], [
        app("expired", {"HAPROXY_0_SSL_CERT": str(port_expired)}),
        app("bad", {"HAPROXY_0_SSL_CERT": str(port_bad)}),
        app("plain", {})])
    try:
        for sni in (None, "nothing.test", "expired.test", "mismatch.test"):
            assert presented_names(https, sni) == ["servicerouter.invalid"], sni
        crt_list = Path(cfg.split("crt-list ")[1].split()[0])
        default = crt_list.read_text().splitlines()[0]
        assert default == str(crt_list.parent / "default.pem")
        assert os.stat(default).st_mode & 0o777 == 0o600
        # The expired and the mismatched port certificates skip their ports, one line each.
        expired_lines = [line for line in err.splitlines() if "port-expired.pem" in line]
        assert len(expired_lines) == 1, err
        assert "skipped app '/expired' port index 0: certificate " in expired_lines[0]
        assert "port-expired.pem: certificate expired on" in expired_lines[0]
        bad_lines = [line for line in err.splitlines() if "port-bad.pem" in line]
        assert len(bad_lines) == 1 and "skipped app '/bad' port index 0" in bad_lines[0], err
        assert "served anyway" not in err
        assert f":{ports['expired']}" not in cfg and f":{ports['bad']}" not in cfg
        wait_for_port(ports["plain"])  # the rest still routes
    finally:
        proxy.stop()


# --------------------------------------------------------------------------- tasks


def test_ip_per_task_routes_to_task_ip_and_container_port(edge: Edge) -> None:
    assert body(http_get(f"http://127.0.0.1:{edge.ports['ipt']}/")) == "ipt"
    # No service port from Marathon: one assigned from --min/max-serv-port-ip-per-task.
    wait_until(lambda: body(http_get(f"http://127.0.0.1:{edge.ports['disc']}/")) == "disc",
               timeout=5)


def test_health_check_serves_only_healthy_tasks_and_drains_killing_ones(edge: Edge) -> None:
    seen = {body(http_get(f"http://127.0.0.1:{edge.ports['hc']}/")) for _ in range(8)}
    assert seen == {"h1"}
    hc_backend = edge.config.split("\nbackend hc_")[1].split("\n\n")[0]
    assert "weight 0" in hc_backend and hc_backend.count("server ") == 2
