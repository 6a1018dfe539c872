"""render: marathon-lb's --haproxy-map (render.mlb_maps), pure checks on the text.

Which entries go into domain2backend.map / app2backend.map (marathon-lb's names,
beside the config, "key backend" lines), which template renders each frontend's
line (the _ACL_ONLY variant for an app with several vhosts, an app's label), and
that the files are read, written and checked as the engine's own maps are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from servicerouter.apply import haproxy, mapfiles
from servicerouter.apply.confdiff import parse_config, plan_runtime_update
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions, render_guarded
from servicerouter.render.fragments import load_fragments
from servicerouter.render.routing import map_kind, parse_map_block
from servicerouter.source.marathon import SnapshotSource
from tests.harness import self_signed_cert
from tests.render.test_routing_maps import MAPS, frontend, render, web

DIR = os.path.dirname(MAPS)  # the config's directory: marathon-lb's {haproxy_dir}
DOMAIN, APPS = f"{DIR}/domain2backend.map", f"{DIR}/app2backend.map"
LOOKUP = f"req.hdr(host),lower,regsub(:.*$,,),map({DOMAIN})"


def _maps(text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    return dict(parse_map_block(text, MAPS).files)


def test_exact_vhosts_and_app_ids_go_into_marathon_lbs_files() -> None:
    text = render([web("/a", 10000, "A.example.com"),
                   web("/b", 10001, "a.example.com", HAPROXY_0_PATH="/api"),
                   web("/c", 10002, "*.example.com"),
                   web("/d", 10003, "d.test:8080"),
                   web("/e", 10004, "e.test,f.test")], haproxy_map=True)
    maps = _maps(text)
    assert maps[DOMAIN] == (("a.example.com", "a_10000"), ("e.test", "e_10004"),
                            ("f.test", "e_10004"))
    assert maps[APPS] == tuple((f"/{n}", f"{n}_1000{i}") for i, n in enumerate("abcde"))
    # the path rule and the host with a port stay the engine's, before; wildcards after
    assert maps[f"{MAPS}/http-1-beg.map"] == (("a.example.com//api", "b_10001"),)
    lines = frontend(text, "marathon_http_in")
    mlb = lines.index(f"use_backend %[{LOOKUP}] if {{ {LOOKUP} -m found }}")
    assert any("d.test:8080" in line for line in lines[:mlb])
    assert "map_end" in lines[mlb + 1] and any("map_beg" in line for line in lines[:mlb])
    assert frontend(text, "marathon_http_appid_in") == [
        f"use_backend %[req.hdr(x-marathon-app-id),lower,map({APPS})] "
        f"if {{ req.hdr(x-marathon-app-id),lower,map({APPS}) -m found }}"]
    assert "domain2backend" not in render([web("/a", 10000, "a.test")])  # flag off
    assert (map_kind(DOMAIN), map_kind(APPS)) == ("dom", "app")


def test_files_are_read_even_when_empty_so_the_first_vhost_is_a_map_entry() -> None:
    empty = render([web("/a", 10000, "a.test", HAPROXY_0_PATH="/x")], haproxy_map=True)
    grown = render([web("/a", 10000, "a.test,b.test", HAPROXY_0_PATH="/x"),
                    web("/b", 10001, "b.test")], haproxy_map=True)
    assert _maps(empty)[DOMAIN] == ()
    old, new = parse_config(empty), parse_config(grown)
    plan = plan_runtime_update(old, new).plan
    # /b is a new backend: that reloads; the same change on an existing backend does not
    assert plan is None
    before = render([web("/a", 10000, "a.test"), web("/b", 10001, "b.test")], haproxy_map=True)
    after = render([web("/a", 10000, "a.test"), web("/b", 10001, "b.test,c.test")],
                   haproxy_map=True)
    plan = plan_runtime_update(parse_config(before), parse_config(after)).plan
    assert plan is not None and plan.map_add == ((DOMAIN, "c.test", "b_10001"),)


def test_the_first_app_with_an_entry_picks_the_line(tmp_path: Path) -> None:
    """marathon-lb renders the HTTP line from MAP_HTTP_FRONTEND_ACL_ONLY when the first
    app with an entry has several vhosts, from MAP_HTTP_FRONTEND_ACL otherwise."""
    (tmp_path / "HAPROXY_MAP_HTTP_FRONTEND_ACL").write_text(
        "  use_backend %[req.hdr(host),lower,map({haproxy_dir}/domain2backend.map)] # one\n")
    (tmp_path / "HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY").write_text(
        "  use_backend %[req.hdr(host),lower,map({haproxy_dir}/domain2backend.map)] # only\n")
    fragments = load_fragments([tmp_path])
    multi = render([web("/a", 10000, "a.test,b.test"), web("/b", 10001, "c.test")],
                   fragments, haproxy_map=True)
    single = render([web("/a", 10000, "a.test"), web("/b", 10001, "c.test,d.test")],
                    fragments, haproxy_map=True)
    assert "# only" in multi and "# one" not in multi
    assert "# one" in single and "# only" not in single
    assert frontend(single, "marathon_http_in").count(
        f"use_backend %[req.hdr(host),lower,map({DOMAIN})] # one") == 1


def test_an_app_with_its_own_acl_label_keeps_its_rule(tmp_path: Path) -> None:
    from servicerouter.model.services import build_model
    from servicerouter.render.label_templates import compile_label_templates

    acl = "  acl own hdr(host) -i {hostname}\n  use_backend {backend} if own\n"
    bad = "  use_backend {nope}\n"
    apps = [web("/a", 10000, "a.test", HAPROXY_0_HTTP_FRONTEND_ACL=acl),
            web("/b", 10001, "b.test", HAPROXY_0_MAP_HTTP_FRONTEND_ACL=bad),
            web("/c", 10002, "c.test")]
    model = build_model(apps, ["*"], lambda host: host)
    options = RenderOptions(default_cert=self_signed_cert(tmp_path / "d.pem"),
                            map_dir=str(tmp_path / "haproxy.cfg.maps"), haproxy_map=True)
    fragments = load_fragments()
    compiled = compile_label_templates(model.services, fragments, options)
    assert compiled.bad_apps == frozenset({"/b"})  # {nope}: only that app is left out
    kept = [s for s in model.services if s.app_id != "/b"]
    rendered = render_guarded(kept, fragments, options, compiled.overrides)
    text = rendered.text
    assert "  acl own hdr(host) -i a.test\n  use_backend a_10000 if own\n" in text
    domain = str(tmp_path / "domain2backend.map")
    # a.test's HTTPS rule is still the shared one: one file for both frontends, as
    # marathon-lb; the HTTP frontend reaches a's own rule before the map line.
    assert dict(parse_map_block(text, options.map_dir).files)[domain] == (
        ("c.test", "c_10002"), ("a.test", "a_10000"))
    http = text.split("frontend marathon_http_in", 1)[1]
    assert http.index("if own") < http.index("domain2backend.map")
    ok, message = mapfiles.check_text(text, options.map_dir, str(tmp_path))
    assert ok, message


def test_marathon_lbs_files_are_written_beside_the_config(tmp_path: Path) -> None:
    map_dir = str(tmp_path / "haproxy.cfg.maps")
    text = render([web("/a", 10000, "a.test")], haproxy_map=True, map_dir=map_dir)
    assert mapfiles.map_dir_of(text) == map_dir
    changed = mapfiles.install(text, map_dir)
    assert str(tmp_path / "domain2backend.map") in changed
    assert (tmp_path / "domain2backend.map").read_text() == "a.test a_10000\n"
    assert (tmp_path / "app2backend.map").read_text() == "/a a_10000\n"
    assert mapfiles.install(text, map_dir) == []  # unchanged: not touched
    # only files of those names in the config's own directory count as marathon-lb's
    forged = text.replace(f"#map-file {tmp_path}/domain2backend.map",
                          "#map-file /etc/domain2backend.map")
    assert "/etc/domain2backend.map" not in dict(parse_map_block(forged, map_dir).files)
    copy, where = mapfiles.dry_copy(text, map_dir, str(tmp_path / "dry"))
    assert where is not None and f"{where}/domain2backend.map" in copy
    assert Path(where, "domain2backend.map").read_text() == "a.test a_10000\n"

def test_a_map_line_haproxy_rejects_leaves_only_its_app_out(tmp_path, haproxy_bin):
    """--haproxy-map: an app's HAPROXY_0_MAP_HTTP_FRONTEND_ACL label that HAProxy refuses
    quarantines that app; the others route through the built-in line and the files."""
    apps = {"apps": [
        {"id": f"/{name}", "ports": [port], "labels": {"HAPROXY_0_VHOST": f"{name}.test", **extra},
         "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [port + 21000]}]}
        for name, port, extra in (
            ("a", 10100, {"HAPROXY_0_MAP_HTTP_FRONTEND_ACL": "  use_backend_typo {haproxy_dir}\n"}),
            ("b", 10101, {}))]}
    (tmp_path / "apps.json").write_text(json.dumps(apps))
    options = RenderOptions(bind_addr="127.0.0.1", haproxy_map=True,
                            map_dir=str(tmp_path / "haproxy.cfg.maps"))
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), haproxy_bin=haproxy_bin,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None,
                              groups=("*",), allow_label_templates=True, render_options=options)
    result = Router(SnapshotSource(f"file:{tmp_path / 'apps.json'}"), load_fragments([]),
                    settings).sync()
    assert result.ok, result.error
    text = (tmp_path / "haproxy.cfg").read_text()
    assert "use_backend_typo" not in text and "\nbackend a_10100\n" not in text
    assert any("'/a'" in p.log_line() for p in result.model.problems)
    assert (tmp_path / "domain2backend.map").read_text() == "b.test b_10101\n"
    ok, message = haproxy.check_config(str(tmp_path / "haproxy.cfg"), haproxy_bin)
    assert ok, message
