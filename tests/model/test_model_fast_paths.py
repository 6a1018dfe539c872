"""The model's hot-path shortcuts answer exactly what the plain readings answer.

A sync reads 5,000 apps and 50,000 tasks, so the model takes shortcuts: one pass
over an app's labels and env for every port (servicerouter.model.labels.scan_labels),
label names needing no notice looked up in a table (label_names.key_notices), the
per-task loops of servicerouter.model.derive instead of its one-task reader, the
single-host case of HAPROXY_{n}_VHOST, health-check numbers read in one test, and
value classes built positionally, without a frozen dataclass's __init__.  Each
test draws hostile input with hypothesis and compares the shortcut with the plain
reading it replaces (written out here as the reference, as it was before).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from servicerouter.model import derive, label_names
from servicerouter.model import labels as registry
from servicerouter.model.app_fields import (
    _HC_PATH_RE,
    _HC_PROTOCOL_RE,
    MAX_HC_PATH_LENGTH,
    has_port_groups,
    read_health_check,
)
from servicerouter.model.label_values import SettingError, check_host, check_length, parse_vhosts
from servicerouter.model.labels import PortSettings, port_settings, read_port_settings, scan_labels
from servicerouter.model.resolver import CachingResolver
from servicerouter.model.values import HealthCheck, Server, Service
from tests.properties import EXAMPLES, QUICK

# Label names around the edges of "HAPROXY_<n>_<NAME>": leading zeros, non-ASCII digits,
# indexes past any table, per-port groups, app keys, marathon-lb templates, typos.
KEY_NAMES = [
    "HAPROXY_0_VHOST", "HAPROXY_1_VHOST", "HAPROXY_01_VHOST", "HAPROXY_00_VHOST",
    "HAPROXY_\u0663_VHOST", "HAPROXY_\u00b2_VHOST", "HAPROXY_63_VHOST", "HAPROXY_64_VHOST",
    "HAPROXY_99999999999_VHOST", "HAPROXY_1_2_VHOST", "HAPROXY__VHOST", "HAPROXY_VHOST",
    "HAPROXY_0_STICKY", "HAPROXY_1_MODE", "HAPROXY_0_PORT", "HAPROXY_0_GROUP",
    "HAPROXY_3_GROUP", "HAPROXY__GROUP", "HAPROXY_GROUP", "HAPROXY_GROUP_GROUP",
    "HAPROXY_X_GROUP", "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL", "HAPROXY_0_BACKEND_HEAD",
    "HAPROXY_0_HTTPS_FRONTEND_AUTH_ACL_ONLY", "HAPROXY_0_HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
    "HAPROXY_2_VHOTS", "HAPROXY_DEPLOYMENT_GROUP", "HAPROXY_DEPLOYMENT_COLOUR",
    "HAPROXY_0_ENABLED", "HAPROXY_0_PATH", "HAPROXY_16_STICKY", "HAPROXY_0_vhost",
    "OTHER", "haproxy_0_vhost", "",
]
COMMON_VALUES = st.sampled_from([
    None, 0, 1, True, "true", "x.example.com", "a.example.com,", ",", "a.com, b.com", "http",
    "external", "/api", "", " ", "\u3000", "a b", "10.0.0.1", "8080"])
VALUES = st.one_of(COMMON_VALUES, COMMON_VALUES, COMMON_VALUES, st.text(max_size=12))
# The names apps carry most, drawn more often than the odd ones.
LABELS = st.dictionaries(st.sampled_from(KEY_NAMES[:2] * 6 + KEY_NAMES), VALUES, max_size=8)


def _old_port_values(index: int, labels: dict[str, Any], env: dict[str, Any]) -> dict[int, Any]:
    """read_port_settings' scan before the single pass: per port, over both dicts."""
    prefix = f"HAPROXY_{index}_"
    present: dict[int, Any] = {}
    for source in (env, labels):
        for key, raw in source.items():
            if raw is not None and isinstance(key, str) and key.startswith(prefix):
                position = registry._PORT_POSITION_BY_SUFFIX.get(key[len(prefix):])
                if position is not None:
                    present[position] = raw
    return present


@QUICK
@given(LABELS, LABELS)
def test_one_scan_finds_every_port_value_and_group_key(labels: dict[str, Any],
                                                       env: dict[str, Any]) -> None:
    scan = scan_labels(labels, env)
    for index in [*range(70), 99999999999]:
        assert scan.port_values.get(index, {}) == _old_port_values(index, labels, env)
    assert set(scan.port_values) <= {*range(70), 99999999999}
    assert scan.port_groups == has_port_groups(labels, env)
    assert sorted(scan.label_keys) == sorted(k for k in labels if k.startswith("HAPROXY_"))
    assert not scan.odd_keys


def test_a_key_that_is_not_a_string_is_noticed() -> None:
    assert scan_labels({1: "x", "HAPROXY_0_VHOST": "a.com"}, {}).odd_keys
    # derive_app still reports such an app as has_port_groups did (it cannot read the key)
    problems = derive.derive_app({"id": "/a", "labels": {1: "x"}, "ports": [1000]},
                                 derive.DeriveSettings(frozenset({"*"})), CachingResolver()
                                 ).problems
    assert [p.reason for p in problems] == ["app skipped: 'int' object has no attribute "
                                            "'startswith'"]


def _old_label_notices(labels: dict[str, Any], port_count: int | None) -> list[Any]:
    keys = sorted(k for k in labels if isinstance(k, str) and k.startswith("HAPROXY_"))
    found = [label_names._notice("/web", key, labels[key], port_count) for key in keys]
    return [notice for notice in found if notice is not None]


@QUICK
@given(LABELS, st.sampled_from([None, 0, 1, 2, 3, 17, 70]))
def test_notice_table_says_what_the_notice_rules_say(labels: dict[str, Any],
                                                     port_count: int | None) -> None:
    assert label_names.label_notices("/web", labels, port_count) \
        == _old_label_notices(labels, port_count)


def test_every_quiet_name_is_one_the_notice_rules_leave_alone() -> None:
    for key, (index, comma_list) in label_names._QUIET.items():
        value = "a.example.com" if comma_list else "x"
        assert label_names._notice("/web", key, value, index + 1) is None, key
        if index >= 0:
            assert label_names._notice("/web", key, value, index) is not None, key


def _old_parse_vhosts(value: str) -> tuple[str, ...]:
    check_length(value)
    if not value.strip(" "):
        return ()
    hosts = tuple(host for host in (part.strip() for part in value.split(",")) if host)
    if not hosts:
        raise SettingError("no host name given")
    for host in hosts:
        check_host(host)
    first: dict[str, str] = {}
    for host in hosts:
        first.setdefault(host.lower(), host)
    return tuple(first.values())


def _outcome(function: Any, *args: Any) -> Any:
    try:
        return ("ok", function(*args))
    except (SettingError, ValueError) as err:
        return (type(err).__name__, str(err))


@QUICK
@given(st.one_of(st.text(max_size=30),
                 st.sampled_from(["a.example.com", " a.example.com ", "\u00a0", "\u3000x.com",
                                  "*.a.com", "*.a.com:80", "a.com:0", "a.com:65535", "-a.com",
                                  "a.com\r", "A.com,a.com", "a.com,", ""])))
def test_one_vhost_reads_as_a_list_of_one(value: str) -> None:
    assert _outcome(parse_vhosts, value) == _outcome(_old_parse_vhosts, value)


def _old_health_check(app: dict[str, Any], index: int) -> Any:
    """read_health_check as it read the numbers, one helper call each."""
    from servicerouter.model.app_fields import _int_field

    checks = app.get("healthChecks") or []
    for check in checks:
        if not isinstance(check, dict) or check.get("portIndex") != index:
            continue
        protocol = check.get("protocol", "HTTP")
        if not isinstance(protocol, str) or not _HC_PROTOCOL_RE.fullmatch(protocol):
            raise ValueError("health check protocol is not a word")
        path = check.get("path")
        if path is not None and (not isinstance(path, str) or len(path) > MAX_HC_PATH_LENGTH
                                 or not _HC_PATH_RE.fullmatch(path)):
            raise ValueError("path")
        ignore = check.get("ignoreHttp1xx", False)
        return HealthCheck(protocol, path, index, _int_field(check, "timeoutSeconds", 20),
                           _int_field(check, "intervalSeconds", 60),
                           _int_field(check, "gracePeriodSeconds", 300),
                           _int_field(check, "maxConsecutiveFailures", 3),
                           None if ignore is None else bool(ignore), check)
    return None


NUMBER = st.one_of(st.none(), st.integers(-2, 400), st.booleans(), st.just("5"), st.just(1.5))
CHECK = st.fixed_dictionaries(
    {"portIndex": st.sampled_from([0, 1, True])},
    optional={"timeoutSeconds": NUMBER, "intervalSeconds": NUMBER,
              "gracePeriodSeconds": NUMBER, "maxConsecutiveFailures": NUMBER,
              "ignoreHttp1xx": st.sampled_from([None, False, True, 1]),
              "protocol": st.sampled_from(["HTTP", "TCP", "MESOS_HTTP"])})


@QUICK
@given(st.lists(CHECK, max_size=3), st.sampled_from([0, 1]))
def test_health_check_numbers_read_at_once_as_one_by_one(checks: list[dict[str, Any]],
                                                         index: int) -> None:
    app = {"healthChecks": checks}
    new, old = _outcome(read_health_check, app, index), _outcome(_old_health_check, app, index)
    assert new == old
    if new[0] == "ok" and new[1] is not None:  # compare=False leaves raw out of ==
        assert new[1].raw is old[1].raw


@pytest.mark.parametrize("setting", registry.PORT_SETTINGS, ids=lambda s: s.attr)
def test_port_settings_built_positionally_are_the_keyword_built_ones(setting: Any) -> None:
    raw = setting.example.split("=", 1)[1]
    built, problems = port_settings("/a", 0, {registry.PORT_SETTINGS.index(setting): raw})
    assert problems == []
    expected = PortSettings(**{setting.attr: setting.parse(raw),
                               "given": frozenset({setting.attr})})
    assert built == expected
    assert [getattr(built, f.name) for f in dataclasses.fields(PortSettings)] \
        == [getattr(expected, f.name) for f in dataclasses.fields(PortSettings)]
    assert read_port_settings("/a", 0, {setting.name(0): raw}, {}) == (built, [])


def test_value_classes_hash_and_compare_by_value_as_frozen_ones_did() -> None:
    check = HealthCheck("HTTP", "/", 0, 5, 10, 60, 3, False, {"a": 1})
    same = HealthCheck("HTTP", "/", 0, 5, 10, 60, 3, False, {"b": 2})  # raw is not compared
    assert check == same and hash(check) == hash(same)
    settings_a, settings_b = PortSettings(vhosts=("a.com",)), PortSettings(vhosts=("a.com",))
    assert settings_a == settings_b and hash(settings_a) == hash(settings_b)
    assert PortSettings(vhosts=("b.com",)) != settings_a
    service = Service("/a", 0, 10000, 10000, "a_10000", "http", "*", settings_a, check,
                      (Server("10.0.0.1", "10.0.0.1", 31000),), ())
    twin = dataclasses.replace(service, app={"id": "/a"})  # app is not compared
    assert service == twin and len({service, twin}) == 1
    assert dataclasses.replace(service, bind_port=10001) != service


# ---------------------------------------------------------------- the per-task loops

GOOD_HOSTS = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "agent-1", "agent-2"])
HOSTS = st.one_of(GOOD_HOSTS, GOOD_HOSTS, GOOD_HOSTS,
                  st.sampled_from(["010.0.0.1", "10.0.0.256", "agent-1.example.com", "a b",
                                   "", "::1", "1.2.3", "10.0.0.1\n"]),
                  st.none(), st.integers(0, 3))
PORT = st.one_of(st.sampled_from([31000, 31001, 31002]), st.sampled_from([31000, 31001]),
                 st.integers(-1, 3), st.sampled_from([65535, 65536, True, None, "31000"]))
ADDRESSES = st.one_of(
    st.lists(st.fixed_dictionaries({"ipAddress": HOSTS}), min_size=1, max_size=2),
    st.lists(st.one_of(st.fixed_dictionaries({"ipAddress": HOSTS}), st.just("x")), max_size=2),
    st.none())
TASK_IDS = st.one_of(st.sampled_from(["t1", "t2", "t3"]), st.none(), st.integers(0, 2))
TASK = st.one_of(
    st.fixed_dictionaries({"id": TASK_IDS, "host": HOSTS, "ports": st.lists(PORT, max_size=3),
                           "ipAddresses": ADDRESSES}),
    st.fixed_dictionaries({"id": TASK_IDS, "host": HOSTS, "ports": st.lists(PORT, max_size=3),
                           "ipAddresses": ADDRESSES}),
    st.fixed_dictionaries({}, optional={
        "id": TASK_IDS, "host": HOSTS, "ipAddresses": ADDRESSES,
        "ports": st.one_of(st.lists(PORT, max_size=3), st.none(), st.just("x"))}),
    st.none(), st.just("task"))


def _resolve(host: str) -> str | None:
    """Canonical quads are themselves (as CachingResolver promises); names may not resolve."""
    if host == "agent-1":
        return "192.168.0.1"
    if host.count(".") == 3 and host.replace(".", "").isdigit():
        parts = host.split(".")
        if all(part == str(int(part)) and int(part) < 256 for part in parts):
            return host
    return None


_resolve.canonical_ipv4_is_itself = True  # type: ignore[attr-defined]


def _drafts(ports: int, ip_per_task: bool) -> list[Any]:
    return [derive._Draft("/app", index, 10000 + index, registry.DEFAULT_PORT_SETTINGS, None,
                          (), container_port=8080 + index if ip_per_task else None)
            for index in range(ports)]


def _state(drafts: list[Any]) -> list[Any]:
    return [(d.had_tasks, [tuple(s) for s in d.servers.values()], list(d.servers))
            for d in drafts]


@settings(max_examples=EXAMPLES * 5, deadline=None, database=None)
@given(st.lists(TASK, max_size=6), st.integers(1, 3), st.booleans(), st.booleans())
@example([{"id": "t1", "host": "a b", "ports": [], "ipAddresses": [{"ipAddress": "10.0.0.1"}]},
          {"id": "t2", "host": "10.0.0.2", "ports": [], "ipAddresses": [{"ipAddress": "10.0.0.2"}]},
          {"id": "t3", "host": "agent-1", "ports": [],
           "ipAddresses": [{"ipAddress": "010.0.0.3"}]}], 2, True, False)
@example([{"id": "t1", "host": "agent-9", "ports": [31000, 31001]},
          {"id": "t2", "host": "10.0.0.1", "ports": [31000, 0]}], 2, False, False)
def test_task_loops_give_what_the_one_task_reader_gives(tasks: list[Any], ports: int,
                                                        ip_per_task: bool,
                                                        gap: bool) -> None:
    fast, slow = _drafts(ports, ip_per_task), _drafts(ports, ip_per_task)
    if gap and ports > 1:  # a port left out (bad settings) in the middle
        fast[0] = slow[0] = None
    fast_problems: list[Any] = []
    slow_problems: list[Any] = []
    loop = derive._add_ip_per_task_tasks if ip_per_task else derive._add_host_tasks
    loop("/app", tasks, fast, _resolve, fast_problems)
    for task in tasks:
        derive._add_task("/app", task, slow, _resolve, slow_problems, None, ip_per_task)
    assert _state([d for d in fast if d]) == _state([d for d in slow if d])
    assert fast_problems == slow_problems
