"""--max-check-rate in the live engine: an interval factor with hysteresis.

Re-timing health checks is a reload, so the factor (servicerouter.render.check_rate)
is kept while the check rate it gives stays between a quarter of the budget and
twice it: task events near a boundary take the task path with the running factor
(the bytes a full render with that factor gives), and only an event that takes the
rate out of the band goes the full way and re-times every server.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.apply.confdiff import parse_config
from servicerouter.engine.live import LiveRouter
from servicerouter.engine.removal_guard import routed_of
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.check_rate import check_interval_scale
from servicerouter.render.fragments import load_fragments
from servicerouter.source.changes import apply_task_event
from tests.engine import test_task_path
from tests.engine.test_task_path import Source, live_router

BUDGET = 2.0  # checks per second: 4 servers checked every 2 s fill it
_plain_settings = test_task_path._settings


def _budget_settings(tmp: Path, health_check: bool, maps: bool = True) -> RouterSettings:
    found = _plain_settings(tmp, health_check, maps)
    return replace(found, render_options=replace(found.render_options, max_check_rate=BUDGET))


@pytest.fixture(autouse=True)
def check_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every router these tests make runs with --max-check-rate BUDGET."""
    monkeypatch.setattr(test_task_path, "_settings", _budget_settings)


@pytest.mark.parametrize("rate, previous, scale", [
    (1500, None, 2), (1500, 1, 1), (2000, 1, 1), (2001, 1, 4),  # up: at twice the budget
    (1100, 4, 4), (1000, 4, 1), (3000, 4, 4), (9000, 4, 16),  # down: at a quarter
    (600, 2, 2), (500, 2, 1), (10**9, 4096, 4096),
])
def test_a_running_factor_is_kept_within_its_band(rate: float, previous: int | None,
                                                  scale: int) -> None:
    assert check_interval_scale(rate, 1000, previous) == scale


def _app(tasks: int) -> dict[str, Any]:
    return {"id": "/web", "portDefinitions": [{"port": 10001}],
            "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0,
                              "intervalSeconds": 2}],
            "tasks": [_task(n) for n in range(tasks)]}


def _task(serial: int) -> dict[str, Any]:
    return {"id": f"web.{serial}", "appId": "/web", "host": "10.0.0.1",
            "ports": [31000 + serial], "state": "TASK_RUNNING"}


def from_scratch(apps: dict[str, Any], tmp: Path, previous: int | None,
                 serving: str | None = None, health_check: bool = False) -> str:
    """A fresh router's full pass over ``apps`` with HAProxy running ``previous``."""
    router = Router(Source(dict(apps)), load_fragments(), _budget_settings(tmp, health_check),
                    resolver=lambda host: host)
    routed = routed_of(parse_config(serving)) if serving is not None else None
    derived = router.full_pass(apps.values(), routed, live=True, check_scale=previous)
    assert derived.rendered is not None
    return derived.rendered.text


def _step(live: LiveRouter, source: Source, event: dict[str, Any]) -> None:
    source.apps["/web"] = apply_task_event(source.apps["/web"], event)
    live.submit(event)
    assert live.step()


def _start(serial: int) -> dict[str, Any]:
    return {"eventType": "status_update_event", "appId": "/web", "taskId": f"web.{serial}",
            "taskStatus": "TASK_RUNNING", "host": "10.0.0.1", "ports": [31000 + serial]}


def _intervals(text: str) -> set[str]:
    return set(re.findall(r" inter (\S+)", text))


def test_task_events_keep_the_factor_until_the_rate_leaves_its_band(tmp_path: Path) -> None:
    live, source, _runtime, reloader = live_router({"/web": _app(4)}, tmp_path)
    assert _intervals(live._applied_text) == {"2s"}  # 2 checks/s: the budget, scale 1
    for serial in range(4, 8):  # up to 8 servers, 4 checks/s: twice the budget, kept
        _step(live, source, _start(serial))
        assert live.state.last_path == "task", live.state.last_full_reason
        assert _intervals(live._applied_text) == {"2s"}
        assert live._applied_text == from_scratch(source.apps, tmp_path, 1)
    assert reloader.calls == 1
    _step(live, source, _start(8))  # 4.5 checks/s: out of the band, re-timed to fit
    assert live.state.last_path == "full"
    assert "check rate" in (live.state.last_full_reason or "")
    assert _intervals(live._applied_text) == {"8s"}  # 9 servers / 8 s: 1.1 checks/s
    assert live._applied_text == from_scratch(source.apps, tmp_path, None)
    assert reloader.calls == 2
    for serial in range(8, 4, -1):  # down to 5 servers at 8 s: above a quarter, kept
        _step(live, source, _kill(serial))
        assert live.state.last_path == "task", live.state.last_full_reason
        assert live._applied_text == from_scratch(source.apps, tmp_path, 4)
    assert _intervals(live._applied_text) == {"8s"}
    # a periodic resync with nothing changed keeps it too: no re-timing reload
    live._last_full -= 1e10
    assert live.step()
    assert live.state.last_path == "full" and _intervals(live._applied_text) == {"8s"}
    assert reloader.calls == 2
    _step(live, source, _kill(4))  # 4 servers: 0.5/s at 8 s, a quarter: re-timed to fit
    assert live.state.last_path == "full"
    assert _intervals(live._applied_text) == {"2s"}
    assert reloader.calls == 3


def _kill(serial: int) -> dict[str, Any]:
    return {"eventType": "status_update_event", "appId": "/web", "taskId": f"web.{serial}",
            "taskStatus": "TASK_KILLED"}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 30)), min_size=1, max_size=25))
def test_check_rate_syncs_give_the_bytes_of_a_full_render_with_the_running_factor(
        tmp_path_factory: Any, ops: list[tuple[bool, int]]) -> None:
    tmp = tmp_path_factory.mktemp("check-rate")
    live, source, _runtime, _reloader = live_router({"/web": _app(4)}, tmp)
    serial = 100
    for start, pick in ops:
        tasks = source.apps["/web"]["tasks"]
        if start or len(tasks) <= 1:
            event = _start(serial)
            serial += 1
        else:
            event = _kill(int(tasks[pick % len(tasks)]["id"].split(".")[1]))
        previous = live._running.options.check_interval_scale if live._running else None
        _step(live, source, event)
        assert live._applied_text == from_scratch(source.apps, tmp, previous)
    live.stop()
