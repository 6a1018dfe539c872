"""docs/migrating.md's claims about cutover, checked on a real HAProxy.

- A servicerouter.py sticky cookie (the server name, ``host_port``) is not
  recognised by the default fragments (dynamic cookies): such a client is
  balanced again once and given a new cookie.  With servicerouter.py's two
  sticky fragments in --templates-dir the old cookies keep their server.
- The bridge's ``balance leastconn`` comes back with a HAPROXY_BACKEND_HEAD.j2
  override, for every app at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.cli.test_bridge import bridge, edge_flags, start_on_free_ports, tcp_app
from tests.harness import HAProxy, http_get, wait_for_port
from tests.paths import REPO

pytestmark = pytest.mark.e2e

# servicerouter.py's sticky fragments, as its users have them in ./templates
LEGACY_STICKY = {
    "HAPROXY_BACKEND_STICKY_OPTIONS": "  cookie mesosphere_server_id insert indirect nocache\n",
    "HAPROXY_BACKEND_SERVER_OPTIONS":
        "  server {serverName} {host_ipv4}:{port}{cookieOptions}{healthCheckOptions}\n",
}


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-fragments", "defaults"])
def test_servicerouter_py_sticky_cookies_at_cutover(tmp_path: Path, legacy: bool,
                                                    backend_factory, haproxy_factory,
                                                    haproxy_bin: str) -> None:
    templates = tmp_path / "templates-override"
    templates.mkdir()
    if legacy:
        for name, text in LEGACY_STICKY.items():
            (templates / name).write_text(text)
    first, second = backend_factory("s1"), backend_factory("s2")

    def attempt(http: int, _tcp: int, port: int) -> HAProxy:
        app = tcp_app("/shop", port, [first, second], HAPROXY_0_VHOST="shop.example.com",
                      HAPROXY_0_STICKY="true")
        with MarathonEmulator([app]) as marathon:
            proc = bridge(marathon.url, *edge_flags(tmp_path, http), "--templates-dir",
                          str(templates), "--haproxy-bin", haproxy_bin, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(proc.stdout)
        return haproxy_factory(cfg)

    _proxy, http, _, _ = start_on_free_ports(tmp_path, attempt)
    wait_for_port(http)
    old_cookie = f"mesosphere_server_id=127_0_0_1_{second.port}"  # servicerouter.py's value
    answers = [http_get(f"http://127.0.0.1:{http}/", host_header="shop.example.com",
                        headers={"Cookie": old_cookie}) for _ in range(6)]
    served = {a.text.strip() for a in answers}
    if legacy:
        assert served == {"s2"}  # every old session stays on its server
        assert all("set-cookie" not in {k.lower() for k in a.headers} for a in answers)
    else:
        assert served == {"s1", "s2"}  # balanced again: the old value names no server
        assert all("mesosphere_server_id=" in a.headers.get("set-cookie", "") for a in answers)


def test_the_bridges_leastconn_comes_back_with_one_fragment(tmp_path: Path) -> None:
    templates = tmp_path / "templates-override"
    templates.mkdir()
    default = (REPO / "templates" / "HAPROXY_BACKEND_HEAD.j2").read_text()
    assert "or 'roundrobin'" in default  # what the guide tells the user to change
    (templates / "HAPROXY_BACKEND_HEAD.j2").write_text(
        default.replace("or 'roundrobin'", "or 'leastconn'"))
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(
        '{"apps": [{"id": "/a", "ports": [10001], "labels": {}, "tasks": '
        '[{"id": "a.1", "host": "127.0.0.1", "ports": [31001]}]}, '
        '{"id": "/b", "ports": [10002], "labels": {"HAPROXY_0_BALANCE": "source"}, "tasks": '
        '[{"id": "b.1", "host": "127.0.0.1", "ports": [31002]}]}]}')
    proc = bridge(f"file:{snapshot}", *edge_flags(tmp_path, 10080), "--templates-dir",
                  str(templates), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    a_section = proc.stdout.split("\nbackend a_10001\n")[1].split("\n\n")[0]
    b_section = proc.stdout.split("\nbackend b_10002\n")[1].split("\n\n")[0]
    assert "balance leastconn" in a_section  # the bridge's balance, for every app
    assert "balance source" in b_section and "hash-type consistent" in b_section  # labels win
