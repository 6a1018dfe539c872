"""A rule's weighted split (canary) as one ``use_backend`` over an integer-range map.

Pure checks of the render (the line, the map's ranges), of the config diff (a
weight step is map entries only, never a reload) and of the order the Runtime
API gets them in; ``haproxy -c`` on every config rendered here.  The requests
themselves: tests/rules/test_rule_routing.py (the distribution) and
tests/rules/test_split_weights_live.py (weights stepped on a live router).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.apply import mapfiles
from servicerouter.apply.confdiff import parse_config, plan_runtime_update
from servicerouter.apply.haproxy import check_config
from servicerouter.apply.runtime_api import RuntimeApplier
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.routing import BLOCK_MARKER, SPLIT_RANGE, parse_map_block
from servicerouter.render.rule_routes import split_ranges
from servicerouter.rules.model import validate_rule
from servicerouter.rules.overlay import overlay_rules
from tests.harness import self_signed_cert

SPLIT_LINE = re.compile(r"^  use_backend %\[rand\((\d+)\),map_int\((\S+/split-https?-1-int\.map)\)\] "
                        r"if \{ req\.hdr\(host\),field\(1,:\),lower -m str shop\.test \}$",
                        re.MULTILINE)


def widths(entries: tuple[tuple[str, str], ...]) -> list[tuple[str, int]]:
    """(backend, range width) per entry, checking the ranges follow each other from 0."""
    low = 0
    out = []
    for key, backend in entries:
        first, last = map(int, key.split(":"))
        assert first == low, entries
        out.append((backend, last - first + 1))
        low = last + 1
    assert low == SPLIT_RANGE, entries
    return out


def test_split_ranges_cover_the_draw_with_exact_shares() -> None:
    assert split_ranges([("a", 80), ("b", 20)]) == (
        ("0:288287999", "a"), ("288288000:360359999", "b"))
    for weights in ([95, 5], [1, 2], [1, 1, 1], [3, 7], [256] * 16, [1, 999], [13, 11, 1]):
        members = [(f"be_{k}", weight) for k, weight in enumerate(weights)]
        total = sum(weights)
        for (name, width), weight in zip(widths(split_ranges(members)), weights, strict=True):
            assert Fraction(width, SPLIT_RANGE) == Fraction(weight, total), (name, weights)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 256), min_size=1, max_size=16))
def test_split_ranges_are_within_one_draw_of_the_share(weights: list[int]) -> None:
    members = [(f"be_{k}", weight) for k, weight in enumerate(weights)]
    total = sum(weights)
    for (_name, width), weight in zip(widths(split_ranges(members)), weights, strict=True):
        assert abs(Fraction(width) - Fraction(SPLIT_RANGE * weight, total)) < 1


def test_split_ranges_refuse_an_unsafe_backend_name() -> None:
    with pytest.raises(ValueError):
        split_ranges([("a b", 1)])


def canary_apps() -> list[dict[str, Any]]:
    return [{"id": f"/{name}", "ports": [21000 + k], "labels": {},
             "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [31000 + k]}]}
            for k, name in enumerate(("shop", "canary", "other"))]


def render(tmp_path: Path, shop: int, canary: int, maps: bool = True) -> str:
    rules = [{"app_id": "/shop", "hosts": ["shop.test"], "weight": shop},
             {"app_id": "/canary", "hosts": ["shop.test"], "weight": canary},
             {"app_id": "/other", "hosts": ["other.test"]}]
    rule_set = {rule.id: rule for rule in map(validate_rule, rules)}
    model = build_model(overlay_rules(canary_apps(), rule_set), ["*"], lambda host: host)
    map_dir = mapfiles.default_map_dir(str(tmp_path / "haproxy.cfg")) if maps else None
    options = RenderOptions(map_dir=map_dir, default_cert=self_signed_cert(tmp_path / "tls.pem"))
    return render_config(model.services, load_fragments(), options)


def haproxy_accepts(tmp_path: Path, text: str, haproxy_bin: str) -> None:
    config = tmp_path / "haproxy.cfg"
    map_dir = mapfiles.default_map_dir(str(config))
    mapfiles.install(text, map_dir)
    config.write_text(text)
    ok, message = check_config(str(config), haproxy_bin)
    assert ok, message


def test_a_split_renders_one_line_reading_a_range_per_member(
    tmp_path: Path, haproxy_bin: str,
) -> None:
    text = render(tmp_path, 80, 20)
    lines = SPLIT_LINE.findall(text)
    assert [int(draw) for draw, _path in lines] == [SPLIT_RANGE] * 2  # HTTP and HTTPS
    for _draw, path in lines:
        entries = parse_map_block(text, str(tmp_path / "haproxy.cfg.maps")).files[path]
        assert widths(entries) == [("canary_21001", SPLIT_RANGE * 2 // 10),  # by rule id
                                   ("shop_21000", SPLIT_RANGE * 8 // 10)]
    assert "rand(100)" not in text and "use_backend shop_21000 if" not in text
    haproxy_accepts(tmp_path, text, haproxy_bin)


def test_without_map_files_a_split_is_sampled_line_by_line(
    tmp_path: Path, haproxy_bin: str,
) -> None:
    text = render(tmp_path, 80, 20, maps=False)
    assert not SPLIT_LINE.search(text)
    assert ("  use_backend canary_21001 if { req.hdr(host),field(1,:),lower -m str shop.test } "
            "{ rand(100) -m int lt 20 }\n") in text  # members by rule id
    assert "  use_backend shop_21000 if { req.hdr(host),field(1,:),lower -m str shop.test }\n" \
        in text
    haproxy_accepts(tmp_path, text, haproxy_bin)


def test_stepping_a_canarys_weights_is_map_entries_only(
    tmp_path: Path, haproxy_bin: str,
) -> None:
    """5 -> 20 -> 50 -> 80 -> 5 percent: each step is adds and deletions of ranges in
    the split's own maps; no server change, no skeleton change (no reload)."""
    steps = [(95, 5), (80, 20), (50, 50), (20, 80), (95, 5)]
    texts = [render(tmp_path, shop, canary) for shop, canary in steps]
    for text in texts:
        haproxy_accepts(tmp_path, text, haproxy_bin)
    for before, after in zip(texts, texts[1:], strict=False):
        verdict = plan_runtime_update(parse_config(before), parse_config(after))
        plan = verdict.plan
        assert plan is not None, verdict.reason
        assert not (plan.add or plan.remove or plan.readdress or plan.reweight)
        changed = {path for path, _key, _value in plan.map_add + plan.map_set + plan.map_del}
        assert changed and all(path.endswith("-int.map") for path in changed), changed
        assert len(changed) == 2  # the HTTP and the HTTPS frontend's split map
        assert len(plan.map_add) == len(plan.map_del) == 4
    # the same steps without map files: the draw is in the config's text, a reload
    plain = [render(tmp_path, shop, canary, maps=False) for shop, canary in steps[:2]]
    assert plan_runtime_update(parse_config(plain[0]), parse_config(plain[1])).plan is None


class RecordingApi:
    """A Runtime API that answers every command as HAProxy does when it carried it out."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, line: str) -> str:
        self.commands.append(line)
        return ""


def test_new_ranges_are_added_before_the_old_ones_go(tmp_path: Path) -> None:
    """HAProxy walks an integer map in order and ``add map`` appends: the old ranges
    answer until they are deleted, the new ones from then on, so no draw ever
    finds no range (a request would get the default backend)."""
    before, after = render(tmp_path, 95, 5), render(tmp_path, 50, 50)
    plan = plan_runtime_update(parse_config(before), parse_config(after)).plan
    assert plan is not None
    api = RecordingApi()
    RuntimeApplier(api).apply(plan)  # type: ignore[arg-type]
    kinds = [command.split()[0] for command in api.commands]
    assert kinds == ["add"] * 4 + ["del"] * 4, api.commands
    assert all(command.split()[1] == "map" for command in api.commands)


def render_paths(tmp_path: Path, paths: list[str], **rule: Any) -> str:
    rules = [{"app_id": "/other", "paths": paths, **rule},
             {"app_id": "/shop", "hosts": ["shop.test"]}]
    rule_set = {r.id: r for r in map(validate_rule, rules)}
    model = build_model(overlay_rules(canary_apps(), rule_set), ["*"], lambda host: host)
    options = RenderOptions(map_dir=mapfiles.default_map_dir(str(tmp_path / "haproxy.cfg")),
                            default_cert=self_signed_cert(tmp_path / "tls.pem"))
    return render_config(model.services, load_fragments(), options)


def test_paths_on_any_host_are_a_path_map_after_the_host_routes(
    tmp_path: Path, haproxy_bin: str,
) -> None:
    """A rule's paths without hosts (no headers, no split, case kept): one ``map_beg`` on
    the path after the host maps; new paths are map entries, no reload."""
    text = render_paths(tmp_path, ["/docs", "/docs/v2"])
    frontend = text[text.index("frontend marathon_http_in"):]
    frontend = frontend[:frontend.index("\n\n")]
    lookups = re.findall(r"^  use_backend %\[(\S+)\((\S+)\)\]", frontend, re.MULTILINE)
    # (the wildcard map, empty here, is read last, as it was after the path lines)
    assert [(lookup, path.rsplit("/", 1)[1]) for lookup, path in lookups] == [
        ("var(txn.sr_route),map_beg", "http-1-beg.map"), ("path,map_beg", "http-2-path.map"),
        ("req.hdr(host),field(1,:),lower,map_end", "http-3-end.map")]
    entries = parse_map_block(text, str(tmp_path / "haproxy.cfg.maps")).files
    assert entries[lookups[1][1]] == (("/docs/v2", "other_21002"), ("/docs", "other_21002"))
    haproxy_accepts(tmp_path, text, haproxy_bin)
    moved = render_paths(tmp_path, ["/help"])
    haproxy_accepts(tmp_path, moved, haproxy_bin)
    plan = plan_runtime_update(parse_config(text), parse_config(moved)).plan
    assert plan is not None
    assert {(key, value) for _path, key, value in plan.map_add} == {("/help", "other_21002")}
    assert {key for _path, key, _value in plan.map_del} == {"/docs", "/docs/v2"}
    # ignoring case, a path stays a line of its own (a map lookup cannot ignore case)
    lines = render_paths(tmp_path, ["/docs"], path_ignore_case=True)
    assert "-path.map" not in lines and "{ path_beg -i /docs }" in lines


def test_only_split_and_path_maps_named_as_the_render_names_them_are_read() -> None:
    """The map block is confined to our own names: a split's file per HTTP/HTTPS
    frontend, a path map per shared frontend, nothing else."""
    names = ["split-http-1-int.map", "split-https-12-int.map", "http-3-path.map",
             "split-appid-1-int.map", "split-http-1-beg.map", "http-1-int.map",
             "split-http-x-int.map", "../split-http-1-int.map"]
    block = "".join(f"#map-file /m/{name}\n#map 0:1 be\n" for name in names)
    text = f"frontend f\n\n{BLOCK_MARKER}\n{block}"
    read = {path.rsplit("/", 1)[1] for path in parse_map_block(text, "/m").files}
    assert read == {"split-http-1-int.map", "split-https-12-int.map", "http-3-path.map"}


def test_the_app_path_leaves_a_frontend_with_a_split_to_the_full_path(tmp_path: Path) -> None:
    """A split's line reads a map but is a route of its own, ranked among the host routes:
    an app update cannot move exact-host entries around it alone (a vhost/path that ranks
    before the split would land after it); a path map (after every host) can stay."""
    from servicerouter.engine.app_path import _maps_only

    text = render(tmp_path, 80, 20)
    block = text.rfind("\n" + BLOCK_MARKER + "\n")
    beg = next(path for path in parse_map_block(text, str(tmp_path / "haproxy.cfg.maps")).files
               if path.endswith("-beg.map"))
    assert not _maps_only(text, block, beg)
    paths = render_paths(tmp_path, ["/docs"])
    block = paths.rfind("\n" + BLOCK_MARKER + "\n")
    beg = next(path for path in parse_map_block(paths, str(tmp_path / "haproxy.cfg.maps")).files
               if path.endswith("-beg.map"))
    assert _maps_only(paths, block, beg)
