"""App updates of apps an operator rule routes, on the live app path.

A rule that says only hosts (and paths under them) is routed through the shared
frontends' map files like a label: an update of its app is derived with the
rule laid over it and applied with map commands and server changes, no full
model, no reload.  Rules with header matches, a weighted split or paths on any
host still take the full path.  Whatever path applies it, the config must be the
bytes a fresh router with the same apps and rules renders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router
from servicerouter.render.fragments import load_fragments
from servicerouter.rules.model import validate_rule
from servicerouter.rules.store import FileRuleStore
from servicerouter.source.changes import Pending
from tests.engine.test_task_path import APPS, Reloader, Runtime, Source, _settings
from tests.rules.test_rules_task_path import RULES, from_scratch


def ruled_live(tmp: Path, rules: list[dict[str, Any]]) -> tuple[LiveRouter, Source, Runtime,
                                                               Reloader, Path]:
    rules_path = tmp / "state" / "rules.json"
    store = FileRuleStore(str(rules_path))
    for rule in rules:
        store.put(validate_rule(rule), "test")
    apps = {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING",
                                     "ipAddresses": [{"ipAddress": "10.1.0.200"}],
                                     "healthCheckResults": [{"alive": True}]}])
            for a in APPS}
    source = Source(apps)
    router = Router(source, load_fragments(), _settings(tmp, False), resolver=lambda host: host)
    router.rules_store = store
    reloader, runtime = Reloader(), Runtime()
    live = LiveRouter(router, reloader=reloader, runtime=runtime,  # type: ignore[arg-type]
                      settings=LiveSettings(resync_interval=1e9))
    live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
    store.subscribe(live.request_rebuild)
    full = Pending()
    full.request_full("start")
    assert live.sync(full)
    return live, source, runtime, reloader, rules_path


def update(live: LiveRouter, source: Source, app_id: str, labels: dict[str, str] | None = None,
           task: dict[str, Any] | None = None) -> None:
    """Marathon changes ``app_id`` (labels, a task more) and says so."""
    app = copy.deepcopy(source.apps[app_id])
    app["labels"] = {**app.get("labels", {}), **(labels or {})}
    if task is not None:
        app["tasks"] = [*app["tasks"], task]
    source.apps[app_id] = app
    live.submit({"eventType": "api_post_event", "appDefinition": {"id": app_id}})


def test_an_update_of_a_host_ruled_app_takes_the_app_path(tmp_path: Path) -> None:
    """The rule holds /web's hosts: relabelling the app's own vhost changes nothing the rule
    routes, another of its servers and its backend weight go live; no full model."""
    live, source, runtime, reloader, rules_path = ruled_live(tmp_path, [RULES[0]])
    assert "rule.example.com" in live._applied_text
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    update(live, source, "/web", {"HAPROXY_0_VHOST": "other.example.com"},
           {"id": "web.9", "appId": "/web", "host": "10.0.0.2", "ports": [31009],
            "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}]})
    assert live.step()
    assert live.state.last_path == "task", live.state.last_full_reason
    assert [line.address for _b, line in runtime.plans[-1].add] == ["10.0.0.2:31009"]
    assert "other.example.com" not in live._applied_text
    router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == from_scratch(source.apps, tmp_path, rules_path)
    assert reloader.calls == 1  # the start only


def test_an_update_of_an_app_whose_rule_matches_headers_takes_the_full_path(
        tmp_path: Path) -> None:
    live, source, _runtime, _reloader, rules_path = ruled_live(tmp_path, [RULES[1]])
    update(live, source, "/web", {"HAPROXY_0_VHOST": "other.example.com"})
    assert live.step()
    assert live.state.last_path == "full"
    assert "operator rule with headers" in (live.state.last_full_reason or "")
    assert live._applied_text == from_scratch(source.apps, tmp_path, rules_path)


LABELS = st.sampled_from([
    {"HAPROXY_0_VHOST": "a.example.com"}, {"HAPROXY_0_VHOST": "b.example.com,c.example.com"},
    {"HAPROXY_0_VHOST": "split.example.com"}, {"HAPROXY_0_VHOST": ""},
    {"HAPROXY_1_VHOST": "tcp1b.example.com"}, {"HAPROXY_0_BACKEND_WEIGHT": "5"},
    {"HAPROXY_0_PATH": "/x"}, {},
])
UPDATES = st.tuples(st.just("update"), st.integers(0, len(APPS) - 1), LABELS, st.booleans())
RULE_STEPS = st.tuples(st.sampled_from(["put", "delete"]), st.integers(0, len(RULES) - 1))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(UPDATES, UPDATES, RULE_STEPS), min_size=1, max_size=10),
       start_rules=st.sets(st.sampled_from([0, 2, 3, 4])))
def test_app_updates_of_ruled_apps_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, steps: list[Any], start_rules: set[int]) -> None:
    tmp = tmp_path_factory.mktemp("rules-app-path")
    live, source, _runtime, _reloader, rules_path = ruled_live(
        tmp, [RULES[i] for i in sorted(start_rules)])
    store = live.router.rules_store
    serial = 1
    for step in steps:
        if step[0] == "update":
            _kind, index, labels, more = step
            app_id = APPS[index]["id"]
            task = {"id": f"{app_id[1:]}.u{serial}", "appId": app_id, "host": "10.0.0.3",
                    "ports": [33000 + serial, 34000 + serial], "state": "TASK_RUNNING",
                    "ipAddresses": [{"ipAddress": f"10.1.1.{serial}"}],
                    "healthCheckResults": [{"alive": True}]} if more else None
            serial += 1
            update(live, source, app_id, labels, task)
        else:
            action, index = step
            rule = validate_rule(RULES[index])
            if action == "put":
                store.put(rule, "test")
            elif rule.id in store.rules():
                store.delete(rule.id, "test")
            else:
                continue
        assert live.step()
        assert live._applied_text == from_scratch(source.apps, tmp, rules_path)
    live.stop()
