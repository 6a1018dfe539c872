"""docs/migrating-marathon-lb.md's sticky-session claims, on a real HAProxy.

marathon-lb's sticky backends set ``cookie mesosphere_server_id insert indirect
nocache`` and give each server the first 10 hex digits of the SHA-1 of its name
(``host_ip_port``). With the engine's default (a dynamic cookie) such a value names
no server, so the client is balanced again once and given a new cookie; with the two
labels the guide gives (marathon-lb's sticky and server templates) the old cookies
keep their server.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.e2e.test_e2e_core import app, make_edge, servicerouter
from tests.harness import free_port, http_get, wait_for_port
from tests.render.test_mlb_templates import MLB_SERVER, MLB_STICKY

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("keep", [True, False], ids=["guide-labels", "defaults"])
def test_marathon_lb_sticky_cookies_at_cutover(tmp_path: Path, keep: bool, backend_factory,
                                               haproxy_factory) -> None:
    first, second = backend_factory("s1"), backend_factory("s2")
    labels = {"HAPROXY_0_VHOST": "shop.example.com", "HAPROXY_0_STICKY": "true"}
    if keep:
        labels.update(HAPROXY_0_BACKEND_STICKY_OPTIONS=MLB_STICKY,
                      HAPROXY_0_BACKEND_SERVER_OPTIONS=MLB_SERVER)
    edge = make_edge(tmp_path)
    with MarathonEmulator([app("/shop", free_port(), [first, second], **labels)]) as marathon:
        servicerouter(edge, marathon.url, "--allow-label-templates", cwd=tmp_path)
    haproxy_factory(str(edge.cfg))
    wait_for_port(edge.http)
    # the value marathon-lb gave the second server (its name: host == ip, so ip_port)
    value = hashlib.sha1(f"127_0_0_1_{second.port}".encode()).hexdigest()[:10]
    answers = [http_get(f"http://127.0.0.1:{edge.http}/", host_header="shop.example.com",
                        headers={"Cookie": f"mesosphere_server_id={value}"}) for _ in range(6)]
    served = {a.text.strip() for a in answers}
    if keep:
        assert served == {"s2"}  # every old session stays on its server
        assert all("set-cookie" not in {k.lower() for k in a.headers} for a in answers)
    else:
        assert served == {"s1", "s2"}  # balanced again: the old value names no server
        assert all("mesosphere_server_id=" in a.headers.get("set-cookie", "") for a in answers)
