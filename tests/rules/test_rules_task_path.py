"""The live engine with operator rules against a render from scratch.

Task events (tests/engine/test_task_path.py's generator) and rule changes in
random order: after every sync the config HAProxy runs must be the very bytes a
fresh router with the same apps and rules renders, whichever path applied it
(tests/rules/test_rules_live.py shows ruled apps' task events take the task path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router
from servicerouter.render.fragments import load_fragments
from servicerouter.rules.model import validate_rule
from servicerouter.rules.store import FileRuleStore
from servicerouter.source.changes import Pending, apply_task_event, task_event_app_id
from tests.engine.test_task_path import APPS, OPS, Reloader, Runtime, Source, _event, _settings

RULES = [  # what an operator may say about these apps, one at a time
    {"app_id": "/web", "hosts": ["rule.example.com", "*.w.example.com"]},
    {"app_id": "/web", "hosts": ["web.example.com"],
     "headers": [{"name": "X-Canary", "value": "1"}]},
    {"app_id": "/tcp", "port_index": 1, "hosts": ["tcp1.example.com"], "paths": ["/api"]},
    {"app_id": "/hash", "hosts": ["split.example.com"], "weight": 30},
    {"app_id": "/sticky", "hosts": ["split.example.com"], "weight": 70},
    {"app_id": "/ghost", "hosts": ["ghost.example.com"]},
]
STEPS = st.lists(st.one_of(st.lists(OPS, min_size=1, max_size=3),
                           st.tuples(st.sampled_from(["put", "delete"]),
                                     st.integers(0, len(RULES) - 1))),
                 min_size=1, max_size=10)


def from_scratch(apps: dict[str, Any], tmp: Path, rules_path: Path) -> str:
    router = Router(Source(dict(apps)), load_fragments(), _settings(tmp, False),
                    resolver=lambda host: host)
    router.rules_store = FileRuleStore(str(rules_path))
    model = router.build_model(apps.values())
    options = router._prepare_certificates(router.settings.render_options, model.services,
                                           stable_paths=True)
    return router.render_guarded(model.services, options).text


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=STEPS, start_rules=st.sets(st.integers(0, len(RULES) - 1)))
def test_rules_and_task_events_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, steps: list[Any], start_rules: set[int]) -> None:
    tmp = tmp_path_factory.mktemp("rules-task-path")
    rules_path = tmp / "state" / "rules.json"
    store = FileRuleStore(str(rules_path))
    for index in sorted(start_rules):
        store.put(validate_rule(RULES[index]), "test")
    apps = {a["id"]: dict(a, tasks=[{"id": f"{a['id'][1:]}.0", "appId": a["id"],
                                     "host": "10.0.0.1", "ports": [31000, 32000],
                                     "state": "TASK_RUNNING",
                                     "ipAddresses": [{"ipAddress": "10.1.0.200"}],
                                     "healthCheckResults": [{"alive": True}]}])
            for a in APPS}
    source = Source(apps)
    router = Router(source, load_fragments(), _settings(tmp, False), resolver=lambda host: host)
    router.rules_store = store
    live = LiveRouter(router, reloader=Reloader(), runtime=Runtime(),  # type: ignore[arg-type]
                      settings=LiveSettings(resync_interval=1e9))
    live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
    store.subscribe(live.request_rebuild)
    full = Pending()
    full.request_full("start")
    assert live.sync(full)
    serial = 1
    for step in steps:
        if isinstance(step, tuple):
            action, index = step
            rule = validate_rule(RULES[index])
            if action == "put":
                store.put(rule, "test")
            elif rule.id in store.rules():
                store.delete(rule.id, "test")
            else:
                continue
        else:
            for op in step:
                event = _event(op, source.apps, serial)
                serial += 1
                assert event is not None
                app_id = task_event_app_id(event)
                source.apps[app_id] = apply_task_event(source.apps[app_id], event)
                live.submit(event)
        assert live.step()
        assert live._applied_text == from_scratch(source.apps, tmp, rules_path)
    live.stop()
