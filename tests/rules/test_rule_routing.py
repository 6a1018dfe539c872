"""End to end: operator rules rendered into a real HAProxy, real requests through it.

The model takes the rules as a pure input (servicerouter.rules.overlay); these
tests check what requests they route, with the map files on (the default).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply import mapfiles
from servicerouter.apply.haproxy import check_config
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.rules.model import validate_rule
from servicerouter.rules.overlay import overlay_rules
from tests.harness import free_port, http_get, self_signed_cert, wait_for_port

pytestmark = pytest.mark.e2e

LABELS: dict[str, dict[str, str]] = {  # app -> its own labels
    "shop": {"HAPROXY_0_VHOST": "label.test"},  # a rule replaces this vhost
    "canary": {},
    "beta": {},
    "api": {"HAPROXY_0_VHOST": "open.test"},
    "legacy": {},
    "plain": {"HAPROXY_0_VHOST": "shop.test"},
}
RULES = [
    {"app_id": "/shop", "hosts": ["shop.test", "*.shop.test"], "weight": 80,
     "note": "main shop; shares shop.test with /canary"},
    {"app_id": "/canary", "hosts": ["shop.test", "*.shop.test"], "weight": 20},
    {"app_id": "/beta", "hosts": ["shop.test"], "priority": 5,
     "headers": [{"name": "X-Beta", "value": "yes", "match": "exact"}]},
    {"app_id": "/api", "hosts": ["open.test", "closed.test"], "allow_cidrs": ["10.0.0.0/8"]},
    {"app_id": "/legacy", "paths": ["/legacy"], "path_ignore_case": True},
]


def apps(ports: dict[str, int]) -> list[dict[str, Any]]:
    return [{"id": f"/{name}", "ports": [21000 + index], "version": "2020-01-01T00:00:00.000Z",
             "labels": {"HAPROXY_0_BIND_ADDR": "127.0.0.1", **labels},
             "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [ports[name]]}]}
            for index, (name, labels) in enumerate(LABELS.items())]


def edge_config(tmp_path: Path, ports: dict[str, int], rules: list[dict[str, Any]],
                shared: dict[str, int]) -> tuple[str, Any]:
    rule_set = {rule.id: rule for rule in map(validate_rule, rules)}
    options = RenderOptions(bind_addr="127.0.0.1", http_port=shared["http"],
                            https_port=shared["https"], appid_port=shared["appid"],
                            stats_port=shared["stats"],
                            map_dir=mapfiles.default_map_dir(str(tmp_path / "haproxy.cfg")),
                            default_cert=self_signed_cert(tmp_path / "default.pem"))
    model = build_model(overlay_rules(apps(ports), rule_set), ["*"], lambda host: host)
    return render_config(model.services, load_fragments(), options), model


def answer(port: int, host: str, path: str = "/", **headers: str) -> str:
    reply = http_get(f"http://127.0.0.1:{port}{path}", host_header=host, headers=headers)
    return reply.text.strip() if reply.status_code == 200 else str(reply.status_code)


@pytest.fixture
def edge(tmp_path: Path, backend_factory: Any, haproxy_factory: Any,
         haproxy_bin: str) -> tuple[dict[str, int], str, Any]:
    ports = {name: backend_factory(name).port for name in LABELS}
    shared = {name: free_port() for name in ("http", "https", "appid", "stats")}
    text, model = edge_config(tmp_path, ports, RULES, shared)
    cfg = tmp_path / "haproxy.cfg"
    mapfiles.install(text, mapfiles.default_map_dir(str(cfg)))
    cfg.write_text(text)
    ok, message = check_config(str(cfg), haproxy_bin)
    assert ok, message
    haproxy_factory(cfg)
    wait_for_port(shared["http"])
    return shared, text, model


def test_rules_route_hosts_headers_cidrs_and_any_host_paths(edge: Any) -> None:
    shared, text, model = edge
    http = shared["http"]
    assert answer(http, "label.test") == "503"  # the rule replaced the app's own vhost
    assert answer(http, "shop.test", **{"X-Beta": "yes"}) == "beta"  # header route first
    assert answer(http, "shop.test", **{"X-Beta": "no"}) in ("shop", "canary")
    assert answer(http, "a.shop.test") in ("shop", "canary")  # wildcard, split too
    assert answer(http, "open.test") == "403"  # 127.0.0.1 is not in 10.0.0.0/8
    assert answer(http, "closed.test") == "403"
    assert answer(http, "any.test", "/LEGACY/x") == "legacy"  # any host, ignoring case
    assert answer(http, "shop.test", "/legacy") in ("shop", "canary")  # host routes first
    assert answer(http, "nothing.test", "/") == "503"
    # /plain's label names shop.test too: the operator's rule wins, /plain is told why
    # (the split's route is held by its first rule by id, /canary, whatever the weights)
    conflicts = [(p.app_id, p.owner) for p in model.problems if p.kind == "conflict"]
    assert conflicts == [("/plain", "/canary")]


def test_weight_splits_one_route_within_five_points(edge: Any) -> None:
    """1,000 requests to the split host: /shop (80) and /canary (20) within +-5 points."""
    shared, _text, _model = edge
    counts = collections.Counter(answer(shared["http"], "shop.test") for _ in range(1000))
    assert set(counts) <= {"shop", "canary"}, counts
    assert abs(counts["shop"] / 10 - 80) <= 5 and abs(counts["canary"] / 10 - 20) <= 5, counts
    print(f"split 80/20 over 1,000 requests: {dict(counts)}")
