"""marathon-lb's endpoints on the stats port, answered by a real HAProxy.

``/_haproxy_health_check`` (monitor-uri), ``/_haproxy_getconfig`` (the config the
running HAProxy loaded), ``/_haproxy_getvhostmap`` / ``/_haproxy_getappmap``
(marathon-lb's map files when the config reads them, --haproxy-map; otherwise the
engine's own vhost and app-id maps in marathon-lb's "key backend" lines) and ``/_haproxy_getpids`` (the
PIDs of that HAProxy, space-separated), with marathon-lb's paths and text/plain
bodies. Without Lua in HAProxy the config never names the script; legacy
fragments render exactly as before.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.serve.haproxy_endpoints import LUA_SCRIPT, haproxy_has_lua, stats_lua_script
from tests.e2e.test_e2e_core import app, make_edge, servicerouter
from tests.harness import HAProxy, free_port, http_get, wait_for_port, wait_until
from tests.paths import LEGACY_TEMPLATES
from tests.render.test_render import EXPECTED, STATE, ident

PATHS = ("/_haproxy_getconfig", "/_haproxy_getvhostmap", "/_haproxy_getappmap",
         "/_haproxy_getpids")


def _fake_haproxy(tmp_path: Path, version_text: str) -> str:
    """A stand-in binary whose ``-vv`` prints ``version_text``."""
    path = tmp_path / "haproxy"
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{version_text}\nEOF\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_lua_detection(tmp_path: Path, haproxy_bin: str) -> None:
    assert haproxy_has_lua(haproxy_bin) == ("USE_LUA=1" in _vv(haproxy_bin))
    no_lua = _fake_haproxy(tmp_path, "HAProxy version 2.6\n  OPTIONS = USE_OPENSSL=1\n"
                                     "Feature list : +EPOLL -LUA +OPENSSL")
    assert not haproxy_has_lua(no_lua)
    assert stats_lua_script(no_lua) is None
    assert not haproxy_has_lua(str(tmp_path / "missing"))


def test_script_path_must_be_writable_unquoted(tmp_path: Path, haproxy_bin: str) -> None:
    spaced = tmp_path / "with space"
    spaced.mkdir()
    (spaced / "x.lua").write_text("-- nothing\n")
    assert stats_lua_script(haproxy_bin, spaced / "x.lua") is None
    assert stats_lua_script(haproxy_bin, tmp_path / "absent.lua") is None


def test_head_routes_the_paths_only_with_the_script() -> None:
    model = build_model(STATE, (), ident)
    fragments = load_fragments()
    without = render_config(model.services, fragments, RenderOptions())
    assert "lua" not in without and "monitor-uri /_haproxy_health_check" in without
    with_lua = render_config(model.services, fragments, RenderOptions(stats_lua="/x/e.lua"))
    assert "  lua-load /x/e.lua\n" in with_lua
    for path in PATHS:
        assert f"if {{ path {path} }}" in with_lua


def test_legacy_fragments_render_unchanged() -> None:
    model = build_model(STATE, (), ident)
    out = render_config(model.services, load_fragments([LEGACY_TEMPLATES]),
                        RenderOptions(stats_lua=str(LUA_SCRIPT)))
    assert out == EXPECTED


@pytest.mark.e2e
def test_endpoints_on_a_real_haproxy(tmp_path: Path, backend_factory, haproxy_factory,
                                     haproxy_bin: str) -> None:
    if not haproxy_has_lua(haproxy_bin):
        pytest.skip("this HAProxy has no Lua")
    from servicerouter.emulator.marathon import MarathonEmulator

    edge = make_edge(tmp_path)
    web = backend_factory("web")
    port, wild = free_port(), free_port()
    marathon = MarathonEmulator([app("/web", port, [web], HAPROXY_0_VHOST="web.example.com"),
                                 app("/wild", wild, [web],
                                     HAPROXY_0_VHOST="*.wild.example.com")])
    marathon.start()
    try:
        servicerouter(edge, marathon.url, cwd=tmp_path)  # built-in fragments: map routing
    finally:
        marathon.stop()
    proxy: HAProxy = haproxy_factory(str(edge.cfg))
    wait_for_port(edge.stats)
    base = f"http://127.0.0.1:{edge.stats}"

    health = http_get(base + "/_haproxy_health_check")
    assert health.status_code == 200

    loaded = edge.cfg.read_text()
    config = http_get(base + "/_haproxy_getconfig")
    assert config.status_code == 200 and config.headers["content-type"] == "text/plain"
    assert config.text == loaded and "lua-load" in loaded

    # Without --haproxy-map: the engine's own maps, in marathon-lb's lines.
    vhosts = http_get(base + "/_haproxy_getvhostmap")
    assert (vhosts.status_code, vhosts.headers["content-type"]) == (200, "text/plain")
    assert vhosts.text == f"web.example.com web_{port}\n*.wild.example.com wild_{wild}\n"
    assert http_get(base + "/_haproxy_getappmap").text == (
        f"/web web_{port}\n/wild wild_{wild}\n")
    # Files of marathon-lb's names the config does not read are not what routes: ignored.
    (edge.cfg.parent / "domain2backend.map").write_text("stale.example.com old_1\n")
    assert "stale" not in http_get(base + "/_haproxy_getvhostmap").text
    # Read per request: an entry the engine adds (a Runtime API map change) shows at once.
    beg = next((edge.cfg.parent / "haproxy.cfg.maps").glob("http-*-beg.map"))
    beg.write_text(beg.read_text() + f"new.example.com/ web_{port}\n")
    assert http_get(base + "/_haproxy_getvhostmap").text.startswith(
        f"web.example.com web_{port}\nnew.example.com web_{port}\n")

    pids = http_get(base + "/_haproxy_getpids")
    assert pids.status_code == 200
    assert sorted(int(p) for p in pids.text.split(" ")) == sorted(proxy.running_pids())

    # getconfig is what the running HAProxy loaded: a file changed on disk shows only
    # after a reload, and the PIDs follow the reload.
    edge.cfg.write_text(loaded + "\n# changed\n")
    assert http_get(base + "/_haproxy_getconfig").text == loaded
    old_pid = proxy.pid
    proxy.reload()
    wait_until(lambda: http_get(base + "/_haproxy_getconfig").text.endswith("# changed\n"),
               timeout=10)
    after = [int(p) for p in http_get(base + "/_haproxy_getpids").text.split(" ")]
    assert old_pid not in after and proxy.pid in after
    assert http_get(base + "/haproxy?stats").status_code == 200  # the stats page stays


def _vv(haproxy_bin: str) -> str:
    import subprocess

    return subprocess.run([haproxy_bin, "-vv"], capture_output=True, text=True,
                          timeout=10).stdout


def test_bridge_printout_does_not_load_the_script(tmp_path: Path, haproxy_bin: str) -> None:
    """The bridge's printed config stands alone: nothing from servicerouter's install."""
    if not haproxy_has_lua(haproxy_bin):
        pytest.skip("this HAProxy has no Lua")
    import json

    from tests.cli.test_bridge import bridge, edge_flags

    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [
        {"id": "/a", "ports": [10001], "labels": {},
         "tasks": [{"id": "a.1", "host": "127.0.0.1", "ports": [31001]}]}]}))
    printed = bridge(f"file:{snapshot}", *edge_flags(tmp_path, free_port()), cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "backend a_10001" in printed.stdout and "lua" not in printed.stdout
