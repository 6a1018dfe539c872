"""Events applied while a full resync derives off the lock (servicerouter.engine.resync).

The resync fetches and derives without the step lock; an isolated event from the
stream is applied at once on the task path meanwhile.  When the resync applies,
it must not put back a state older than such an event: the events are folded
into what it fetched, and the config is the bytes of a render from scratch of
Marathon's state, whether the event came before its fetch (already in it), after
it, or while it models and renders.  Events the task path refuses meanwhile
wait for the resync, as they used to.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.engine.live import LiveRouter
from servicerouter.source.changes import apply_task_event
from tests.engine.test_events_during_resync import _cluster
from tests.engine.test_task_path import OPS, Source, _event, _from_scratch, live_router

PHASES = ("before-fetch", "after-fetch", "deriving")


class ResyncHooks:
    """Runs changes to Marathon (and their events, through the stream's handler) at
    chosen points of the resync's off-lock fetch and derive."""

    def __init__(self, live: LiveRouter, source: Source) -> None:
        self.live, self.source = live, source
        self.at: dict[str, list[Any]] = {phase: [] for phase in PHASES}
        self.applied: list[tuple[str, str | None]] = []  # (phase, path the event's sync took)
        fetch, full_pass = source.fetch_apps_body, live.router.full_pass

        def fetch_apps_body() -> bytes:
            self._run("before-fetch")
            body = fetch()
            self._run("after-fetch")
            return body

        def derive(*args: Any, **kwargs: Any) -> Any:
            self._run("deriving")
            return full_pass(*args, **kwargs)

        source.fetch_apps_body = fetch_apps_body  # type: ignore[method-assign]
        live.router.full_pass = derive  # type: ignore[method-assign]
        live.trigger.min_wait = 0.0  # every event is isolated: the reader applies it

    def _run(self, phase: str) -> None:
        changes, self.at[phase] = self.at[phase], []
        for change in changes:
            syncs = self.live.state.syncs
            change()
            took = self.live.state.last_path if self.live.state.syncs > syncs else None
            self.applied.append((phase, took))


def _loop_step(live: LiveRouter) -> bool:
    """One step as the loop thread takes it: woken by the trigger (which it clears)."""
    if live.trigger.due_at() is not None:
        assert live.trigger.wait()
    return live.step()


def _task_change(source: Source, live: LiveRouter, event: dict[str, Any]) -> Any:
    def change() -> None:
        app_id = event.get("appId") or event["runSpecId"]
        source.apps[app_id] = apply_task_event(source.apps[app_id], event)
        live.submit_and_apply(event)
    return change


def test_a_task_added_while_the_resync_derives_is_routed_at_once_and_after(
        tmp_path: Path) -> None:
    live, source, runtime, reloader = live_router(_cluster(), tmp_path)
    hooks = ResyncHooks(live, source)
    start = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}
    seen: list[bool] = []
    hooks.at["deriving"] = [_task_change(source, live, start),
                            lambda: seen.append("10.0.0.2:31001" in live._applied_text)]
    live.request_resync("periodic resync")
    assert _loop_step(live)
    assert hooks.applied[0] == ("deriving", "task")  # applied while the resync derived
    assert seen == [True] and len(runtime.plans) >= 1
    assert live.state.last_path == "full"
    assert "1 events applied while it derived folded in" in (live.state.last_full_reason or "")
    # the resync's fetch had no such task: it is still routed after it
    assert "10.0.0.2:31001" in live._applied_text
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert reloader.calls == 1  # the start only
    assert live._pending.empty


def test_an_app_update_while_the_resync_derives_keeps_its_new_document(tmp_path: Path) -> None:
    live, source, runtime, _reloader = live_router(_cluster(), tmp_path)
    hooks = ResyncHooks(live, source)

    def relabel() -> None:
        app = copy.deepcopy(source.apps["/sticky"])
        app["labels"]["HAPROXY_0_VHOST"] = "sticky2.example.com"
        source.apps["/sticky"] = app
        live.submit_and_apply({"eventType": "api_post_event", "appDefinition": {"id": "/sticky"}})

    hooks.at["after-fetch"] = [relabel]
    live.request_resync("periodic resync")
    assert _loop_step(live)
    assert hooks.applied == [("after-fetch", "task")]
    assert "sticky2.example.com" in live._applied_text
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_an_event_the_task_path_refuses_meanwhile_waits_for_the_resync(tmp_path: Path) -> None:
    """A new app (the full path's) during the resync: no second full derive beside it,
    the event is queued and the next step applies it."""
    live, source, _runtime, _reloader = live_router(_cluster(), tmp_path)
    hooks = ResyncHooks(live, source)

    def new_app() -> None:
        source.apps["/late"] = {"id": "/late", "portDefinitions": [{"port": 10090}],
                                "labels": {}, "tasks": [
                                    {"id": "late.1", "appId": "/late", "host": "10.0.0.4",
                                     "ports": [31090], "state": "TASK_RUNNING"}]}
        live.submit_and_apply({"eventType": "api_post_event", "appDefinition": {"id": "/late"}})

    hooks.at["deriving"] = [new_app]
    live.request_resync("periodic resync")
    assert _loop_step(live)
    assert hooks.applied == [("deriving", None)]  # queued, not synced
    assert "late_10090" not in live._applied_text and not live._pending.empty
    assert _loop_step(live)
    assert "late_10090" in live._applied_text
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


def test_a_derive_that_fails_off_the_lock_is_done_again_under_it(tmp_path: Path) -> None:
    live, source, _runtime, _reloader = live_router(_cluster(), tmp_path)
    hooks = ResyncHooks(live, source)
    start = {"eventType": "status_update_event", "appId": "/web", "taskId": "web.1",
             "taskStatus": "TASK_RUNNING", "host": "10.0.0.2", "ports": [31001]}

    def bug() -> None:
        raise RuntimeError("a bug in the derive")

    hooks.at["deriving"] = [_task_change(source, live, start), bug]
    live.request_resync("periodic resync")
    assert _loop_step(live)
    assert hooks.applied[0] == ("deriving", "task")
    assert live._resync_window is None  # events take the full path again when refused
    assert live.state.last_path == "full" and live.state.last_sync_error is None
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)


# an app update: /sticky's or /web's virtual host (mostly the app path; a host the other
# app has: the full path, queued for after the resync)
RELABELS = st.tuples(st.sampled_from(["/sticky", "/web"]),
                     st.sampled_from(["a.example.com", "b.example.com", "web.example.com"]))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(resyncs=st.lists(st.lists(st.tuples(st.one_of(OPS, RELABELS), st.sampled_from(PHASES)),
                                 max_size=4), min_size=1, max_size=4))
def test_events_during_resyncs_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, resyncs: list[list[tuple[Any, str]]]) -> None:
    tmp = tmp_path_factory.mktemp("resync-window")
    live, source, _runtime, reloader = live_router(_cluster(), tmp)
    hooks = ResyncHooks(live, source)
    serial = 100
    for changes in resyncs:
        for op, phase in changes:
            def change(op: Any = op, serial: int = serial) -> None:
                if len(op) == 2:  # a relabel
                    app_id, host = op
                    app = copy.deepcopy(source.apps[app_id])
                    app["labels"]["HAPROXY_0_VHOST"] = host
                    source.apps[app_id] = app
                    live.submit_and_apply({"eventType": "api_post_event",
                                           "appDefinition": {"id": app_id}})
                    return
                event = _event(op, source.apps, serial)
                assert event is not None
                _task_change(source, live, event)()
            hooks.at[phase].append(change)
            serial += 1
        live.request_resync("periodic resync")
        assert _loop_step(live)
        assert live.state.last_path == "full"
        queued = not live._pending.empty  # refused by the task path: after the resync
        if not queued:  # every event applied meanwhile is in what the resync applied
            assert live._applied_text == _from_scratch(source.apps, tmp, False)
        while not live._pending.empty:
            assert _loop_step(live)
        assert live._applied_text == _from_scratch(source.apps, tmp, False)
    assert all(took in ("task", None) for _phase, took in hooks.applied)
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    assert reloader.calls >= 1
    live.stop()
