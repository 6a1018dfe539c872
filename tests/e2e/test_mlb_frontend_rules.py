"""End to end: marathon-lb's routing-only and auth rule templates route real requests.

A templates-directory file with marathon-lb's HTTP_FRONTEND_ACL_WITH_AUTH text asks
for credentials in the shared frontend (401 without, 200 with), and a port with
several vhosts whose HTTP_FRONTEND_ROUTING_ONLY comes from a label routes every one
of them through marathon-lb's single ACL name.
"""

from __future__ import annotations

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.e2e.test_e2e_core import app, make_edge, servicerouter
from tests.harness import free_port, http_get, wait_for_port
from tests.render.test_mlb_frontend import AUTH, MLB_ACL_WITH_AUTH, MLB_ROUTING_ONLY

pytestmark = pytest.mark.e2e


def test_marathon_lb_auth_and_routing_only_templates_route(tmp_path, backend_factory,
                                                          haproxy_factory) -> None:
    templates = tmp_path / "mytemplates"
    templates.mkdir()
    (templates / "HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH").write_text(MLB_ACL_WITH_AUTH)
    secure, shop = backend_factory("secure"), backend_factory("shop")
    edge = make_edge(tmp_path)
    apps = [app("/secure", free_port(), [secure], HAPROXY_0_VHOST="s.test", HAPROXY_0_AUTH=AUTH),
            app("/shop", free_port(), [shop], HAPROXY_0_VHOST="a.test,b.test",
                HAPROXY_0_HTTP_FRONTEND_ROUTING_ONLY=MLB_ROUTING_ONLY)]
    with MarathonEmulator(apps) as marathon:
        servicerouter(edge, marathon.url, "--templates-dir", str(templates),
                      "--allow-label-templates", cwd=tmp_path)
    config = edge.cfg.read_text()
    assert "if host_s_test_secure !auth_s_test_secure" in config
    assert "use_backend shop_" in config and "if host_a_test_shop\n" in config
    haproxy_factory(str(edge.cfg))
    wait_for_port(edge.http)
    url = f"http://127.0.0.1:{edge.http}/"
    denied = http_get(url, host_header="s.test")
    assert denied.status_code == 401 and 'realm="ops"' in denied.headers["www-authenticate"]
    assert http_get(url, host_header="s.test", auth=("alice", "wrong")).status_code == 401
    allowed = http_get(url, host_header="s.test", auth=("alice", "secret"))
    assert (allowed.status_code, allowed.text.strip()) == (200, "secure")
    for host in ("a.test", "b.test"):
        assert http_get(url, host_header=host).text.strip() == "shop"
