"""Rules: validation (hostile values refused at write time), Bamboo's acl subset,
precedence over labels, splits, and the file store (atomic, survives a restart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from servicerouter.model.rule_values import RULE_KEY
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.rules.bamboo import parse_acl, rule_from_service, rule_to_acl, services_json
from servicerouter.rules.model import Rule, RuleError, rule_from_json, rule_to_json, validate_rule
from servicerouter.rules.overlay import overlay_rules, rule_targets, split_groups
from servicerouter.rules.store import FileRuleStore, StoreError
from servicerouter.rules.wiring import open_store
from tests.hostile_labels import HOSTILE_VALUES


def rules_of(*data: dict[str, Any]) -> dict[str, Rule]:
    return {rule.id: rule for rule in map(validate_rule, data)}


# --------------------------------------------------------------------------- validation


def test_a_rule_round_trips_through_json() -> None:
    rule = validate_rule({"id": "/shop/web:1", "hosts": ["Shop.Example.com", "*.example.com"],
                          "paths": ["/api", "/static"], "path_ignore_case": True,
                          "headers": [{"name": "X-Canary", "value": "v2", "match": "prefix"}],
                          "allow_cidrs": ["10.1.2.3/8", "192.168.0.1"], "priority": -3,
                          "weight": 7, "note": "canary for the shop"})
    assert (rule.app_id, rule.port_index, rule.id) == ("/shop/web", 1, "/shop/web:1")
    assert rule.allow_cidrs == ("10.0.0.0/8", "192.168.0.1")  # canonical, as labels
    assert rule_from_json(json.loads(json.dumps(rule_to_json(rule)))) == rule


@pytest.mark.parametrize(("data", "field"), [
    ({"hosts": ["a.test"]}, "app_id"),
    ({"app_id": "shop", "hosts": ["a.test"]}, "app_id"),
    ({"app_id": "/a", "port_index": -1}, "port_index"),
    ({"app_id": "/a", "port_index": "0"}, "port_index"),
    ({"app_id": "/a", "id": "/b:0"}, "id"),
    ({"app_id": "/a", "hosts": "a.test b.test"}, "hosts"),
    ({"app_id": "/a", "hosts": ["*.a.test:80"]}, "hosts"),
    ({"app_id": "/a", "hosts": ["a.test"], "paths": ["api"]}, "paths"),
    ({"app_id": "/a", "hosts": ["a.test"], "paths": ["-i /api"]}, "paths"),
    ({"app_id": "/a", "hosts": ["a.test"], "headers": [{"name": "Host", "value": "x"}]},
     "headers"),
    ({"app_id": "/a", "hosts": ["a.test"], "headers": [{"name": "X", "value": "a b"}]},
     "headers"),
    ({"app_id": "/a", "hosts": ["a.test"], "headers": [{"name": "X", "value": "-i"}]},
     "headers"),
    ({"app_id": "/a", "headers": [{"name": "X", "value": "1"}]}, "headers"),
    ({"app_id": "/a", "allow_cidrs": ["10.0.0.0/33"]}, "allow_cidrs"),
    ({"app_id": "/a", "priority": 10**7}, "priority"),
    ({"app_id": "/a", "weight": 0}, "weight"),
    ({"app_id": "/a", "weight": 257}, "weight"),
    ({"app_id": "/a", "weight": True}, "weight"),
    ({"app_id": "/a", "note": "two\nlines"}, "note"),
    ({"app_id": "/a", "hostz": ["a.test"]}, "hostz"),
])
def test_bad_fields_are_refused_naming_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        validate_rule(data)
    assert caught.value.field == field
    assert caught.value.to_json()["field"] == field


@pytest.mark.parametrize("value_name", sorted(HOSTILE_VALUES))
@pytest.mark.parametrize("field", ["hosts", "paths", "header-name", "header-value",
                                   "allow_cidrs", "app_id"])
def test_hostile_values_never_pass(field: str, value_name: str) -> None:
    """Every hostile label value of the corpus, in every rule field: refused, or (when a
    value happens to be a safe token) accepted only without what could inject."""
    value = HOSTILE_VALUES[value_name]
    data: dict[str, Any] = {"app_id": "/a", "hosts": ["a.test"]}
    if field == "header-name":
        data["headers"] = [{"name": value, "value": "x"}]
    elif field == "header-value":
        data["headers"] = [{"name": "X-Test", "value": value}]
    elif field == "app_id":
        data["app_id"] = value
    else:
        data[field] = [value]
    try:
        rule = validate_rule(data)
    except RuleError:
        return
    tokens = [*rule.hosts, *rule.paths, *rule.allow_cidrs, rule.app_id,
              *(h.name for h in rule.headers), *(h.value for h in rule.headers)]
    for token in tokens:  # what can reach HAProxy: single safe tokens only
        assert token and not any(ch.isspace() or not ch.isprintable() or ch in '{}#"\\\''
                                 for ch in token), (field, value, token)


def test_hostile_rule_values_never_reach_the_config() -> None:
    """Values that pass validation render as single tokens; the rest never render."""
    app = {"id": "/a", "ports": [10000], "labels": {},
           "tasks": [{"id": "a.1", "host": "127.0.0.1", "ports": [31000]}]}
    rules: dict[str, Rule] = {}
    for index, value in enumerate(HOSTILE_VALUES.values()):
        try:
            rule = validate_rule({"app_id": "/a", "port_index": 0, "hosts": [f"h{index}.test"],
                                  "headers": [{"name": "X-Test", "value": value}]})
        except RuleError:
            continue
        rules[rule.id] = rule
    model = build_model(overlay_rules([app], rules), ["*"], lambda host: host)
    text = render_config(model.services, load_fragments(), RenderOptions())
    for line in text.splitlines():
        assert not line.lstrip().startswith(("bind evil", "server evil", "acl evil"))


# --------------------------------------------------------------------------- Bamboo's acl


@pytest.mark.parametrize(("acl", "fields"), [
    ("hdr(host) -i ghost.local", {"hosts": ["ghost.local"]}),
    ("hdr(Host) app-1.example.com", {"hosts": ["app-1.example.com"]}),
    ("hdr_dom(host) -i example.com", {"hosts": ["example.com", "*.example.com"]}),
    ("hdr_end(host) -i .example.com", {"hosts": ["*.example.com"]}),
    ("path_beg -i /authentication-service",
     {"paths": ["/authentication-service"], "path_ignore_case": True}),
    ("path_beg /a || path_beg /b", {"paths": ["/a", "/b"]}),
    ("hdr(host) -i a.test or hdr(host) -i b.test", {"hosts": ["a.test", "b.test"]}),
    ("hdr(host) -i a.test path_beg /api hdr(X-Env) prod",
     {"hosts": ["a.test"], "paths": ["/api"],
      "headers": [{"name": "X-Env", "value": "prod", "match": "exact"}]}),
    ("hdr(host) -i a.test hdr_beg(User-Agent) curl",
     {"hosts": ["a.test"], "headers": [{"name": "User-Agent", "value": "curl",
                                        "match": "prefix"}]}),
])
def test_bamboo_acls_in_the_subset_parse(acl: str, fields: dict[str, Any]) -> None:
    parsed = parse_acl(acl)
    expected = {"hosts": [], "paths": [], "path_ignore_case": False, "headers": [], **fields}
    assert parsed == expected
    rule = validate_rule({"app_id": "/x", **parsed})
    assert parse_acl(rule_to_acl(rule)) == expected  # what GET /api/services shows reads back


@pytest.mark.parametrize("acl", [
    "src 10.0.0.0/8", "hdr(host) -i a.test or path_beg /x", "hdr(host) -i a.test\nbind :1",
    'hdr(host) -i "a.test"', "hdr(host) -i a.test { always_true }", "hdr(host)", "",
    "path_beg /a path_beg /b", "hdr(X-A) -i v", "hdr(X-A) a or hdr(X-B) b", "hdr_reg(host) .*",
    "path_beg -m /x", "!hdr(host) -i a.test", "hdr(host) -i a.test # comment",
])
def test_other_acls_are_refused_naming_the_subset(acl: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_acl(acl)
    assert caught.value.field == "acl" and "supported: hdr(host) -i NAME" in str(caught.value)


def test_bamboo_service_shapes() -> None:
    rule = rule_from_service({"id": "ExampleAppGroup/app1", "acl": "hdr(host) -i app-1.test"})
    assert rule.id == "/ExampleAppGroup/app1:0" and rule.hosts == ("app-1.test",)
    v2 = rule_from_service({"version": "2", "config": {"Acl": "path_beg /x"}}, "/svc")
    assert v2.paths == ("/x",) and v2.app_id == "/svc"
    assert services_json({rule.id: rule}) == {"/ExampleAppGroup/app1": {
        "Id": "/ExampleAppGroup/app1", "Acl": "hdr(host) -i app-1.test",
        "Config": {"Acl": "hdr(host) -i app-1.test"}}}
    kept = rule_from_service({"id": "/a", "acl": "hdr(host) -i b.test"},
                             keep=validate_rule({"app_id": "/a", "priority": 4, "weight": 9}))
    assert (kept.priority, kept.weight) == (4, 9)  # what the acl cannot say is kept


# --------------------------------------------------------------------------- precedence


def app(app_id: str, labels: dict[str, str], ports: int = 1, **extra: Any) -> dict[str, Any]:
    base = 10000 + 10 * sum(map(ord, app_id))  # distinct service ports per app
    return {"id": app_id, "ports": [base + i for i in range(ports)], "labels": labels,
            "tasks": [{"id": "t1", "host": "127.0.0.1", "ports": [31000 + i
                                                                for i in range(ports)]}],
            **extra}


def test_a_rule_wins_over_the_apps_labels_for_its_port_only() -> None:
    apps = [app("/web", {"HAPROXY_0_VHOST": "label.test", "HAPROXY_0_PATH": "/old",
                         "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8",
                         "HAPROXY_1_VHOST": "other.test", "HAPROXY_0_BALANCE": "leastconn"},
                ports=2, env={"HAPROXY_0_BACKEND_WEIGHT": "3"})]
    rules = rules_of({"app_id": "/web", "hosts": ["rule.test"], "priority": 7})
    overlaid = overlay_rules(apps, rules)
    model = build_model(overlaid, ["*"], lambda host: host)
    port0, port1 = sorted(model.services, key=lambda s: s.index)
    assert port0.settings.vhosts == ("rule.test",) and port0.settings.path is None
    assert port0.settings.backend_weight == 7  # not the env var's 3
    assert port0.settings.balance == "leastconn"  # labels the rule does not name stay
    assert port0.settings.allowed_networks == ("10.0.0.0/8",)  # never loosened by silence
    assert port1.settings.vhosts == ("other.test",)
    assert apps[0]["labels"]["HAPROXY_0_VHOST"] == "label.test"  # input untouched
    assert port0.settings.rule is not None and port0.settings.rule.rule_id == "/web:0"


def test_apps_without_rules_pass_through_and_the_rule_key_is_only_the_stores() -> None:
    plain = app("/plain", {"HAPROXY_0_VHOST": "p.test"})
    forged = app("/forged", {}, **{RULE_KEY: {"0": {"id": "/forged:0", "any_host_paths": ["/"]}}})
    out = overlay_rules([plain, forged], rules_of({"app_id": "/elsewhere", "hosts": ["e.test"]}))
    assert out[0] is plain
    assert RULE_KEY not in out[1]  # an app cannot set what only operators may


def test_rules_for_missing_apps_or_ports_are_kept_and_reported() -> None:
    rules = rules_of({"app_id": "/ghost", "hosts": ["g.test"]},
                     {"app_id": "/web", "port_index": 3, "hosts": ["w.test"]},
                     {"app_id": "/web", "hosts": ["w0.test"]})
    standing = rule_targets([app("/web", {})], rules)
    assert standing == {"/ghost:0": "no such app", "/web:3": "no such port", "/web:0": "ok"}
    model = build_model(overlay_rules([app("/web", {})], rules), ["*"], lambda host: host)
    assert [s.settings.vhosts for s in model.services] == [("w0.test",)]


def test_split_groups_hold_the_route_by_id_whatever_the_weights() -> None:
    """The first rule by id holds a split's route, the heaviest or not: stepping a
    canary's weights must never move the route (that would be a reload)."""
    for weight_a, weight_b in ((10, 90), (90, 10)):
        rules = rules_of({"app_id": "/a", "hosts": ["s.test"], "weight": weight_a},
                         {"app_id": "/b", "hosts": ["S.test"], "weight": weight_b},
                         {"app_id": "/c", "hosts": ["s.test"], "paths": ["/x"]})
        groups = split_groups(rules)
        assert [r.app_id for r in groups["/b:0"]] == ["/a", "/b"] and "/c:0" not in groups
        model = build_model(overlay_rules([app("/a", {}), app("/b", {}), app("/c", {})], rules),
                            ["*"], lambda host: host)
        by_app = {s.app_id: s for s in model.services}
        assert by_app["/b"].settings.vhosts == () and by_app["/b"].mode == "http"
        assert by_app["/a"].settings.rule.split == (("/a", 0, weight_a), ("/b", 0, weight_b))
        assert not model.problems


def test_header_routes_claim_apart_from_the_plain_route() -> None:
    rules = rules_of({"app_id": "/beta", "hosts": ["s.test"],
                      "headers": [{"name": "X-Beta", "value": "1"}]})
    apps = [app("/main", {"HAPROXY_0_VHOST": "s.test"}), app("/beta", {})]
    model = build_model(overlay_rules(apps, rules), ["*"], lambda host: host)
    assert not [p for p in model.problems if p.kind == "conflict"]
    text = render_config(model.services, load_fragments(), RenderOptions())
    beta = text.index(f"use_backend {model.services[0].backend} if")
    assert "{ req.hdr(X-Beta) -m str 1 }" in text[beta:text.index("\n", beta)]


# --------------------------------------------------------------------------- file store


def test_file_store_records_history_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "rules.json"
    store = FileRuleStore(str(path))
    seen: list[int] = []
    store.subscribe(lambda: seen.append(1))
    first = validate_rule({"app_id": "/a", "hosts": ["a.test"]})
    created = store.put(first, "alice (127.0.0.1)")
    updated = store.put(validate_rule({"app_id": "/a", "hosts": ["b.test"]}), "bob")
    deleted = store.delete("/a:0", "carol\x1b[31m")
    store.put(first, "dave")
    assert [c.action for c in (created, updated, deleted)] == ["create", "update", "delete"]
    assert updated.old["hosts"] == ["a.test"] and updated.new["hosts"] == ["b.test"]
    assert deleted.actor == "carol[31m"  # no control character is recorded
    assert len(seen) == 4 and oct(path.stat().st_mode)[-3:] == "600"
    again = FileRuleStore(str(path))
    assert again.rules() == {"/a:0": first}
    assert [c.actor for c in again.history(10)] == ["dave", "carol[31m", "bob",
                                                   "alice (127.0.0.1)"]
    with pytest.raises(KeyError):
        again.delete("/nothing:0", "x")


def test_file_store_keeps_valid_rules_of_an_edited_file_and_names_the_bad(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 1, "rules": {
        "/a:0": {"app_id": "/a", "hosts": ["a.test"]},
        "/b:0": {"app_id": "/b", "hosts": ["b.test\nbind :1"]}}}))
    store = FileRuleStore(str(path))
    assert list(store.rules()) == ["/a:0"]
    assert "/b:0" in store.health()["invalid"]


def test_a_write_that_cannot_be_stored_changes_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # a file where the state directory should be: no write can work
    store = FileRuleStore(str(blocked / "rules.json"))
    with pytest.raises(StoreError):
        store.put(validate_rule({"app_id": "/a"}), "x")
    assert store.rules() == {} and store.history() == [] and store.health()["last_error"]


def test_open_store_names_what_it_takes(tmp_path: Path) -> None:
    assert isinstance(open_store("file", str(tmp_path)), FileRuleStore)
    for bad in ("zk://", "zk://host/path", "zk://h:1/", "zk://h:1/a b", "mysql://x", "file"):
        if bad == "file":
            with pytest.raises(ValueError, match="needs --rules-store zk"):
                open_store(bad, str(tmp_path), "u:p")
            continue
        with pytest.raises(ValueError):
            open_store(bad, str(tmp_path))


@pytest.mark.parametrize(("priority_a", "first"), [(5, "a"), (-5, "b")])
def test_priority_orders_overlapping_routes_of_equal_specificity(priority_a: int,
                                                                 first: str) -> None:
    """*.p.test and *.x.p.test both match a.x.p.test: the higher priority is tried first."""
    rules = rules_of({"app_id": "/a", "hosts": ["*.p.test"], "priority": priority_a},
                     {"app_id": "/b", "hosts": ["*.x.p.test"]})
    model = build_model(overlay_rules([app("/a", {}), app("/b", {})], rules), ["*"],
                        lambda host: host)
    text = render_config(model.services, load_fragments(),
                         RenderOptions(map_dir="/tmp/sr-maps"))
    wildcards = [line.split()[2] for line in text.splitlines()
                 if line.startswith("#map .") and "http-" not in line]
    backends = {s.app_id[1:]: s.backend for s in model.services}
    assert wildcards[0] == backends[first]
