"""End to end: vhost, path and app-id routing through map files answers as the ACLs did.

The same apps are rendered twice, with a map directory (the built-in fragments'
map routing) and without (one ACL per rule, the previous output), each config is
run by a real HAProxy in front of real backends (one per app, answering its
name), and the same requests go to both: every answer must be the same.  The
apps cover the precedence rules: exact host before wildcard, longer path before
shorter, a weight between equally specific wildcards, app-id order between
equal wildcards, a host with a port, a path matched ignoring case, a wildcard
with a path, a vhost two apps claim (the older keeps it), the app-id frontend.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply import mapfiles
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.harness import free_port, http_get, self_signed_cert, wait_for_port

pytestmark = pytest.mark.e2e

OLD, NEW = "2020-01-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z"
APPS: dict[str, dict[str, str]] = {  # app -> labels (all http)
    "a": {"HAPROXY_0_VHOST": "a.test"},
    "b": {"HAPROXY_0_VHOST": "a.test", "HAPROXY_0_PATH": "/api"},
    "c": {"HAPROXY_0_VHOST": "a.test,c.test", "HAPROXY_0_PATH": "/api/v1 /static"},
    "d": {"HAPROXY_0_VHOST": "*.a.test"},
    "e": {"HAPROXY_0_VHOST": "*.x.a.test", "HAPROXY_0_BACKEND_WEIGHT": "5"},
    "f": {"HAPROXY_0_VHOST": "a.test:8080"},
    "g": {"HAPROXY_0_VHOST": "b.test", "HAPROXY_0_PATH": "-i /Admin"},
    "h": {"HAPROXY_0_VHOST": "B.test"},
    "i": {"HAPROXY_0_VHOST": "*.b.test", "HAPROXY_0_PATH": "/p"},
    "j": {"HAPROXY_0_VHOST": "a.test", "HAPROXY_0_PATH": "/api"},  # newer: /b keeps it
    "k": {"HAPROXY_0_VHOST": "*.y.a.test"},
    "l": {"HAPROXY_0_VHOST": "b.test", "HAPROXY_0_PATH": "/admin/x"},
}
HOSTS = ("a.test", "A.TEST:80", "a.test:8080", "c.test", "q.a.test", "z.x.a.test",
         "z.y.a.test", "x.a.test", "b.test", "b.test:81", "s.b.test", "none.test", "a.test.")
PATHS = ("/", "/api", "/api/v1/x", "/apix", "/static/f", "/Admin", "/admin/x/y", "/ADMIN/x",
         "/p/q", "/nothing")


def apps(ports: dict[str, int]) -> list[dict[str, Any]]:
    return [{"id": f"/{name}", "ports": [20000 + index], "version": NEW if name == "j" else OLD,
             "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http",
                        "HAPROXY_0_BIND_ADDR": "127.0.0.1", **labels},
             "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [ports[name]]}]}
            for index, (name, labels) in enumerate(APPS.items())]


def edge(tmp_path: Path, name: str, ports: dict[str, int], use_maps: bool,
         haproxy_factory: Any) -> dict[str, int]:
    """Render the apps' config (with or without maps), start HAProxy; its shared ports."""
    shared = {"http": free_port(), "https": free_port(), "appid": free_port(),
              "stats": free_port()}
    cfg = tmp_path / name / "haproxy.cfg"
    cfg.parent.mkdir()
    map_dir = mapfiles.default_map_dir(str(cfg)) if use_maps else None
    options = RenderOptions(bind_addr="127.0.0.1", http_port=shared["http"],
                            https_port=shared["https"], appid_port=shared["appid"],
                            stats_port=shared["stats"], map_dir=map_dir,
                            default_cert=self_signed_cert(tmp_path / f"{name}.pem"))
    model = build_model(apps(ports), ["*"], lambda host: host)
    text = render_config(model.services, load_fragments(), options)
    assert ("map_beg(" in text) is use_maps
    mapfiles.install(text, map_dir)
    cfg.write_text(text)
    haproxy_factory(cfg)
    wait_for_port(shared["http"])
    return shared


def answer(port: int, host: str, path: str = "/", **headers: str) -> str:
    reply = http_get(f"http://127.0.0.1:{port}{path}", host_header=host, headers=headers)
    return reply.text.strip() if reply.status_code == 200 else str(reply.status_code)


def test_maps_answer_every_request_as_the_acls_did(tmp_path, backend_factory,
                                                    haproxy_factory) -> None:
    ports = {name: backend_factory(name).port for name in APPS}
    with_maps = edge(tmp_path, "maps", ports, True, haproxy_factory)
    with_acls = edge(tmp_path, "acls", ports, False, haproxy_factory)
    got = {(host, path): answer(with_maps["http"], host, path)
           for host, path in itertools.product(HOSTS, PATHS)}
    expected = {(host, path): answer(with_acls["http"], host, path)
                for host, path in itertools.product(HOSTS, PATHS)}
    assert got == expected
    # and what the rules say, spelled out
    assert got[("a.test", "/apix")] == got[("A.TEST:80", "/apix")] == "b"  # /api prefix
    assert got[("a.test", "/nothing")] == "a"
    assert got[("a.test", "/api/v1/x")] == "c"  # longest prefix
    assert got[("a.test:8080", "/")] == "f" and got[("a.test:8080", "/api")] == "b"
    assert got[("q.a.test", "/api")] == "d"  # wildcard after every exact host
    assert got[("z.x.a.test", "/")] == "e"  # weight between equal wildcards
    assert got[("z.y.a.test", "/")] == "d"  # then app order
    assert got[("b.test", "/ADMIN/x")] == "g" and got[("b.test", "/admin/x/y")] == "l"
    assert got[("s.b.test", "/p/q")] == "i" and got[("s.b.test", "/")] == "503"
    assert got[("none.test", "/")] == "503"
    for app_id in ("/a", "/J", "/nothing"):
        assert (answer(with_maps["appid"], "x", **{"X-Marathon-App-Id": app_id})
                == answer(with_acls["appid"], "x", **{"X-Marathon-App-Id": app_id}))
    assert answer(with_maps["appid"], "x", **{"X-Marathon-App-Id": "/J"}) == "j"
