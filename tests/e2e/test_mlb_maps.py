"""End to end: marathon-lb's ``--haproxy-map`` through a real servicerouter and HAProxy.

marathon-lb's files (``domain2backend.map``, ``app2backend.map`` beside the config,
its "key backend" lines) are written and served by ``/_haproxy_getvhostmap`` /
``/_haproxy_getappmap``; requests route through them (exact vhosts, an app with
several vhosts, app ids) next to the engine's own rules (paths, wildcards); a
marathon-lb user's own map templates, as files in the templates directory (its
``str.format`` text) or as a label, are rendered, checked and route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.serve.haproxy_endpoints import haproxy_has_lua
from tests.e2e.test_e2e_core import Edge, app, make_edge, servicerouter
from tests.harness import free_port, http_get, wait_for_port

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

# marathon-lb's default MAP templates, as its users copy them into their templates
# directory (facts of its interface: the lookup and the file name).
MLB_MAP_HTTP = ("  use_backend %[req.hdr(host),lower,regsub(:.*$,,),"
                "map({haproxy_dir}/domain2backend.map)]\n")
MLB_MAP_APPID = ("  use_backend %[req.hdr(x-marathon-app-id),lower,"
                 "map({haproxy_dir}/app2backend.map)]\n")


def _run(tmp_path: Path, apps: list[dict[str, Any]], haproxy_factory: Any,
         *extra: str) -> Edge:
    edge = make_edge(tmp_path)
    marathon = MarathonEmulator(apps).start()
    try:  # run outside the checkout: the built-in fragments, as on an installed host
        servicerouter(edge, marathon.url, "--haproxy-map", *extra, cwd=tmp_path)
    finally:
        marathon.stop()
    haproxy_factory(str(edge.cfg))
    wait_for_port(edge.http)
    return edge


def _get(port: int, host: str, path: str = "/", **headers: str) -> str:
    reply = http_get(f"http://127.0.0.1:{port}{path}", host_header=host, headers=headers)
    return reply.text.strip() if reply.status_code == 200 else str(reply.status_code)


def test_marathon_lb_map_files_route_and_are_served(tmp_path, backend_factory,
                                                   haproxy_factory, haproxy_bin) -> None:
    web, multi, api, wild = (backend_factory(n) for n in ("web", "multi", "api", "wild"))
    ports = {name: free_port() for name in ("web", "multi", "api", "wild")}
    edge = _run(tmp_path, [
        app("/web", ports["web"], [web], HAPROXY_0_VHOST="Web.example.com"),
        app("/multi", ports["multi"], [multi], HAPROXY_0_VHOST="a.test,b.test,"),
        app("/api", ports["api"], [api], HAPROXY_0_VHOST="web.example.com",
            HAPROXY_0_PATH="/api"),
        app("/wild", ports["wild"], [wild], HAPROXY_0_VHOST="*.wild.test"),
    ], haproxy_factory)
    # marathon-lb's files, names and lines: exact vhosts without a path; every app id.
    vhost_map = (f"a.test multi_{ports['multi']}\nb.test multi_{ports['multi']}\n"
                 f"web.example.com web_{ports['web']}\n")
    app_map = "".join(f"/{name} {name}_{ports[name]}\n"
                      for name in ("api", "multi", "web", "wild"))
    assert (tmp_path / "domain2backend.map").read_text() == vhost_map
    assert (tmp_path / "app2backend.map").read_text() == app_map
    config = edge.cfg.read_text()
    assert f"map({tmp_path}/domain2backend.map)" in config
    # routing: map entries, the path rule before them, the wildcard after them
    assert _get(edge.http, "web.example.com") == "web"
    assert _get(edge.http, "WEB.example.com:80") == "web"
    assert _get(edge.http, "web.example.com", "/api/x") == "api"
    assert _get(edge.http, "b.test") == "multi"
    assert _get(edge.http, "x.wild.test") == "wild"
    assert _get(edge.http, "nowhere.test") == "503"
    assert _get(edge.appid, "any", **{"X-Marathon-App-Id": "/multi"}) == "multi"
    # HTTPS reads the same file (Host header), before the wildcard rules
    for host, name in (("web.example.com", "web"), ("a.test", "multi"), ("x.wild.test", "wild")):
        reply = http_get(f"https://127.0.0.1:{edge.https}/", host_header=host, verify=False)
        assert reply.text.strip() == name, host
    if haproxy_has_lua(haproxy_bin):  # marathon-lb's endpoints serve its files as they are
        base = f"http://127.0.0.1:{edge.stats}"
        assert http_get(base + "/_haproxy_getvhostmap").text == vhost_map
        assert http_get(base + "/_haproxy_getappmap").text == app_map


def test_custom_map_templates_from_the_templates_dir(tmp_path, backend_factory,
                                                    haproxy_factory) -> None:
    """marathon-lb's own MAP template text (no 'found' condition, str.format) in the
    templates directory: rendered with haproxy_dir, checked, and it routes."""
    templates = tmp_path / "mytemplates"
    templates.mkdir()
    (templates / "HAPROXY_MAP_HTTP_FRONTEND_ACL").write_text(MLB_MAP_HTTP)
    (templates / "HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL").write_text(MLB_MAP_APPID)
    web = backend_factory("web")
    port = free_port()
    edge = _run(tmp_path, [app("/web", port, [web], HAPROXY_0_VHOST="web.test")],
                haproxy_factory, "--templates-dir", str(templates))
    config = edge.cfg.read_text()
    assert MLB_MAP_HTTP.format(haproxy_dir=tmp_path) in config
    assert MLB_MAP_APPID.format(haproxy_dir=tmp_path) in config
    assert _get(edge.http, "web.test") == "web"
    assert _get(edge.appid, "x", **{"X-Marathon-App-Id": "/web"}) == "web"


def test_map_template_given_as_a_label(tmp_path, backend_factory, haproxy_factory) -> None:
    """HAPROXY_{n}_MAP_HTTP_FRONTEND_ACL (marathon-lb's documented label) replaces the
    line for the first app with a map entry; the other apps' vhosts route through it."""
    first, second = backend_factory("first"), backend_factory("second")
    ports = free_port(), free_port()
    label = ("  http-request set-header X-Routed-By domain2backend\n" + MLB_MAP_HTTP)
    edge = _run(tmp_path, [
        app("/a-first", ports[0], [first], HAPROXY_0_VHOST="first.test",
            HAPROXY_0_MAP_HTTP_FRONTEND_ACL=label),
        app("/b-second", ports[1], [second], HAPROXY_0_VHOST="second.test"),
    ], haproxy_factory, "--allow-label-templates")
    config = edge.cfg.read_text()
    assert label.format(haproxy_dir=tmp_path) in config
    assert _get(edge.http, "first.test") == "first"
    assert _get(edge.http, "second.test") == "second"
