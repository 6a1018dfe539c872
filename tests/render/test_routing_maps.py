"""render: shared-frontend routing through map files (servicerouter.render.routing).

Pure checks on the rendered text: which rules go into maps, in which order the
runs and the ACLs that stay come, that the number of routing lines does not grow
with the number of vhosts, that the legacy fragments' output does not change, and
which shared frontends bind.  tests/e2e/test_map_routing.py sends the requests.
"""

from __future__ import annotations

from typing import Any

from servicerouter.apply.confdiff import parse_config, plan_runtime_update
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.routing import MapFiles, parse_map_block
from tests.paths import LEGACY_TEMPLATES

MAPS = "/run/sr/haproxy.cfg.maps"


def web(app_id: str, port: int, vhost: str | None = None, mode: str = "http",
        **labels: str) -> dict[str, Any]:
    all_labels = {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": mode, **labels}
    if vhost:
        all_labels["HAPROXY_0_VHOST"] = vhost
    return {"id": app_id, "ports": [port], "labels": all_labels,
            "tasks": [{"id": app_id[1:] + ".1", "host": "10.0.0.1", "ports": [31000]}]}


def render(apps: list[dict[str, Any]], fragments: Any = None, **options: Any) -> str:
    model = build_model(apps, ["*"], lambda host: host)
    assert not model.problems, model.problems
    options.setdefault("map_dir", MAPS)
    return render_config(model.services, fragments or load_fragments(),
                         RenderOptions(default_cert="/x.pem", **options))


def frontend(text: str, name: str) -> list[str]:
    """The routing lines of one frontend section: after its bind, mode and log option."""
    block = text.split(f"\nfrontend {name}\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines()[2:]]
    return lines[1:] if lines[:1] == ["option httplog"] else lines


def maps(text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    return dict(parse_map_block(text, MAPS).files)


def test_exact_hosts_paths_wildcards_and_app_ids_go_into_maps() -> None:
    text = render([web("/a", 10000, "A.example.com"),
                   web("/b", 10001, "a.example.com", HAPROXY_0_PATH="/api"),
                   web("/c", 10002, "*.example.com"),
                   web("/d", 10003, mode="tcp")])
    assert "acl " not in text  # not one ACL left
    assert frontend(text, "marathon_http_in") == [
        'http-request set-var-fmt(txn.sr_route) "%[req.hdr(host),field(1,:),lower]/%[path]"',
        f"use_backend %[var(txn.sr_route),map_beg({MAPS}/http-1-beg.map)] "
        f"if {{ var(txn.sr_route),map_beg({MAPS}/http-1-beg.map) -m found }}",
        f"use_backend %[req.hdr(host),field(1,:),lower,map_end({MAPS}/http-2-end.map)] "
        f"if {{ req.hdr(host),field(1,:),lower,map_end({MAPS}/http-2-end.map) -m found }}",
    ]
    assert maps(text) == {
        f"{MAPS}/http-1-beg.map": (("a.example.com//api", "b_10001"),
                                   ("a.example.com/", "a_10000")),
        f"{MAPS}/http-2-end.map": ((".example.com", "c_10002"),),
        f"{MAPS}/appid-1-str.map": (("/a", "a_10000"), ("/b", "b_10001"), ("/c", "c_10002")),
        f"{MAPS}/https-1-beg.map": (("a.example.com//api", "b_10001"),
                                    ("a.example.com/", "a_10000")),
        f"{MAPS}/https-2-end.map": ((".example.com", "c_10002"),),
    }
    assert MapFiles(maps(text)).content(f"{MAPS}/http-2-end.map") == b".example.com c_10002\n"


def test_rules_a_map_cannot_hold_keep_their_acl_and_their_place() -> None:
    """A host with a port and a path matched ignoring case stay ACLs; the runs of map
    entries around them become separate maps, so the first matching rule still wins."""
    text = render([web("/a", 10000, "a.test", HAPROXY_0_PATH="/api/v1"),
                   web("/b", 10001, "a.test", HAPROXY_0_PATH="-i /api"),
                   web("/c", 10002, "a.test:8080"),
                   web("/d", 10003, "a.test")])
    lines = frontend(text, "marathon_http_in")
    uses = [line for line in lines if line.startswith("use_backend")]
    assert [u.split()[1] for u in uses] == [
        f"%[var(txn.sr_route),map_beg({MAPS}/http-1-beg.map)]", "b_10001",
        "c_10002", f"%[var(txn.sr_route),map_beg({MAPS}/http-2-beg.map)]",
        f"%[req.hdr(host),field(1,:),lower,map_end({MAPS}/http-3-end.map)]"]
    assert maps(text)[f"{MAPS}/http-3-end.map"] == ()  # read even empty: see below
    assert "acl path_b_10001 path_beg -i /api" in lines
    assert maps(text)[f"{MAPS}/http-1-beg.map"] == (("a.test//api/v1", "a_10000"),)
    assert maps(text)[f"{MAPS}/http-2-beg.map"] == (("a.test/", "d_10003"),)


def test_routing_lines_do_not_grow_with_the_vhosts() -> None:
    def lines(count: int) -> list[str]:
        text = render([web(f"/app{i:05d}", 10000 + i, f"app{i}.test") for i in range(count)])
        return frontend(text, "marathon_http_in")

    assert lines(1) == lines(300)
    text = render([web(f"/app{i:05d}", 10000 + i, f"app{i}.test") for i in range(300)])
    assert len(maps(text)[f"{MAPS}/http-1-beg.map"]) == 300


def test_without_a_map_directory_every_rule_is_an_acl() -> None:
    text = render([web("/a", 10000, "a.test")], map_dir=None)
    assert "use_backend a_10000 if host_a.test" in text
    assert "map_" not in text and "#map" not in text


def test_legacy_fragments_render_the_same_bytes_with_a_map_directory() -> None:
    apps = [web("/a", 10000, "a.test"), web("/b", 10001, "*.b.test"), web("/c", 10002)]
    legacy = load_fragments([LEGACY_TEMPLATES])
    assert render(apps, legacy) == render(apps, legacy, map_dir=None)


def test_shared_frontends_bind_only_when_a_service_needs_them() -> None:
    tcp_only = render([web("/t", 10000, mode="tcp")])
    for name in ("marathon_http_in", "marathon_https_in", "marathon_http_appid_in"):
        assert f"frontend {name}" not in tcp_only
    http_no_vhost = render([web("/h", 10000)])
    assert "frontend marathon_http_appid_in" in http_no_vhost
    assert "frontend marathon_http_in" not in http_no_vhost
    assert "frontend marathon_https_in" not in http_no_vhost
    # the operator gave certificates: :443 serves them before any vhost
    assert "frontend marathon_https_in" in render([web("/h", 10000)], tls_configured=True)
    with_vhost = render([web("/v", 10000, "v.test")])
    assert "frontend marathon_http_in" in with_vhost
    assert "frontend marathon_https_in" in with_vhost


def test_dont_bind_http_https_never_binds_80_or_443() -> None:
    apps = [web("/v", 10000, "v.test")]
    text = render(apps, bind_http_https=False, tls_configured=True)
    assert "marathon_http_in" not in text and "marathon_https_in" not in text
    assert "frontend marathon_http_appid_in" in text
    assert "frontend v_10000" in text  # the port itself still binds
    legacy = load_fragments([LEGACY_TEMPLATES])
    bound = render(apps, legacy)
    assert "# http frontend" in bound and "# https frontend" in bound
    text = render(apps, legacy, bind_http_https=False)
    assert "# http frontend" not in text and "# https frontend" not in text
    assert "HTTP-ACL" not in text and "# appid frontend" in text
    assert RenderOptions(bind_http_https=False).reserved_ports() == (81, 9090)


def test_a_vhost_change_is_a_map_change_and_a_wildcard_out_of_order_is_not() -> None:
    before = render([web("/a", 10000, "a.test"), web("/b", 10001, "b.test")])
    after = render([web("/a", 10000, "a.test,new.test"), web("/b", 10001)])
    plan = plan_runtime_update(parse_config(before), parse_config(after)).plan
    assert plan is not None and not (plan.add or plan.remove)
    assert set(plan.map_add) == {(f"{MAPS}/http-1-beg.map", "new.test/", "a_10000"),
                                 (f"{MAPS}/https-1-beg.map", "new.test/", "a_10000")}
    assert set(plan.map_del) == {(f"{MAPS}/http-1-beg.map", "b.test/", ""),
                                 (f"{MAPS}/https-1-beg.map", "b.test/", "")}
    # the first wildcard (or exact host) goes into a map the config already reads
    only_exact = render([web("/a", 10000, "a.test")])
    only_wild = render([web("/a", 10000, "*.a.test")])
    assert plan_runtime_update(parse_config(only_exact), parse_config(only_wild)).plan
    # map_end takes the first entry in file order: one that must come first is a reload
    wild = render([web("/b", 10001, "*.x.test"), web("/c", 10002, "c.test")])
    first = render([web("/a", 10000, "*.y.x.test"), web("/b", 10001, "*.x.test"),
                    web("/c", 10002, "c.test")])
    last = render([web("/b", 10001, "*.x.test"), web("/c", 10002, "c.test,*.y.test")])
    assert plan_runtime_update(parse_config(wild), parse_config(first)).plan is None
    assert plan_runtime_update(parse_config(wild), parse_config(last)).plan is not None


def test_a_map_block_written_by_a_fragment_is_not_read() -> None:
    """Only the block after the last marker counts, and only files in the map dir."""
    text = render([web("/a", 10000, "a.test")])
    forged = text.replace("\n# servicerouter map entries", "\n#map-file /etc/passwd\n#map x y\n"
                          "# servicerouter map entries", 1)
    assert maps(forged) == maps(text)
    assert parse_map_block(text, "/elsewhere").files == {}
