"""An isolated event is applied by the thread that read it (engine.intake.submit_and_apply):
no hand-over to the loop thread, no debounce; bursts and full resyncs still go to the loop.

No loop thread runs here at all, so anything applied was applied inline; HAProxy is
replaced by a recording fake (the real path is covered by benchmarks/event_latency.py
--quick in tests/engine/test_live_e2e.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply.confdiff import RuntimePlan
from servicerouter.apply.managed import ReloadResult
from servicerouter.apply.runtime_api import RuntimeStats
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.coalescing import SyncTrigger
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.changes import Change, Pending
from servicerouter.source.marathon import ClientSettings, MarathonClient


@dataclass
class Recording:
    """Stands in for HAProxy: the Runtime API plans and reloads it was given."""

    plans: list[RuntimePlan] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)
    reloads: int = 0
    stats: RuntimeStats = field(default_factory=RuntimeStats)

    def apply(self, plan: RuntimePlan) -> None:
        self.plans.append(plan)
        self.threads.append(threading.current_thread().name)

    def forget(self) -> None:
        pass

    def reload(self) -> ReloadResult:
        self.reloads += 1
        return ReloadResult(True, "recorded")


def task_event(task_id: str, port: int, status: str = "TASK_RUNNING") -> dict[str, Any]:
    return {"eventType": "status_update_event", "appId": "/web", "taskId": task_id,
            "taskStatus": status, "host": "127.0.0.1", "ports": [port],
            "slaveId": "agent-1", "version": "2024-01-01T00:00:00.000Z"}


@pytest.fixture
def engine(tmp_path: Path, haproxy_bin: str) -> Iterator[tuple[LiveRouter, Recording]]:
    """A live engine after its first (full) sync of one app with one task; min_wait 5 s,
    so a sync that waited for the debounce would not happen within a test."""
    emulator = MarathonEmulator().start()
    try:
        emulator.put_app({"id": "/web", "portDefinitions": [{"port": 10001}]})
        emulator.add_task("/web", "127.0.0.1", [31001], task_id="web.1")
        settings = RouterSettings(
            config_path=str(tmp_path / "haproxy.cfg"), groups=("*",), haproxy_bin=haproxy_bin,
            render_options=RenderOptions(bind_addr="127.0.0.1"),
            state_dir=str(tmp_path / "state"), certs_dir=None)
        router = Router(MarathonClient([emulator.url], ClientSettings(read_timeout=5)),
                        load_fragments([]), settings)
        fake = Recording()
        live = LiveRouter(router, reloader=fake, runtime=fake,  # type: ignore[arg-type]
                          settings=LiveSettings(min_wait=5.0, max_wait=10.0), rng_seed=1)
        live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
        first = Pending()
        first.add(Change("full", reason="start"), {})
        assert live.sync(first) and "127.0.0.1:31001" in (live._applied_text or "")
        live._runtime_trusted = True  # as after HAProxy's Runtime API answered
        fake.reloads = 0  # the first sync's
        time.sleep(0.01)
        yield live, fake
        live.stop()
    finally:
        emulator.stop()


def test_an_isolated_task_event_is_applied_before_the_reader_returns(engine) -> None:
    live, fake = engine
    live.trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)  # nothing fired for 5 s
    live.submit_and_apply(task_event("web.2", 31002))
    added = [server.address for plan in fake.plans for _b, server in plan.add]
    assert added == ["127.0.0.1:31002"]
    assert fake.threads == [threading.current_thread().name]  # this thread, no hand-over
    assert live.state.last_path == "task" and fake.reloads == 0
    assert live.trigger.due_at() is None  # nothing left for the loop


def test_plain_submit_leaves_the_event_to_the_loop(engine) -> None:
    """What the stream did before: queue and wake the loop (which is not running here)."""
    live, fake = engine
    live.trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)
    live.submit(task_event("web.2", 31002))
    assert fake.plans == []
    assert live.trigger.due_at() is not None


def test_a_burst_after_the_first_event_is_coalesced_by_the_loop(engine) -> None:
    live, fake = engine
    live.trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)
    live.submit_and_apply(task_event("web.2", 31002))  # isolated: at once
    live.submit_and_apply(task_event("web.3", 31003))  # within min_wait: a burst
    live.submit_and_apply(task_event("web.4", 31004))
    assert len(fake.plans) == 1
    due = live.trigger.due_at()
    assert due is not None and due > time.monotonic() + 4  # waits for quiet, on the loop
    assert len(live._pending.task_events) == 2


def test_full_resyncs_and_busy_loops_are_not_run_inline(engine) -> None:
    live, fake = engine
    live.trigger = SyncTrigger(min_wait=0.0, max_wait=0.0)
    live.submit_and_apply({"eventType": "servicerouter_resync", "reason": "test"})
    assert fake.plans == [] and live._pending.full  # the loop does full resyncs
    live._take_pending()
    with live._step_lock:  # the loop is in a step: the event waits for it
        live.submit_and_apply(task_event("web.2", 31002))
    assert fake.plans == [] and len(live._pending.task_events) == 1


def test_fire_and_claim_takes_only_an_isolated_event() -> None:
    trigger = SyncTrigger(min_wait=5.0, max_wait=10.0)
    woken = threading.Event()

    def loop() -> None:
        if trigger.wait():
            woken.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    assert trigger.fire_and_claim()  # first event ever: the caller syncs it
    assert not woken.wait(0.2)  # and the loop was not handed it
    assert not trigger.fire_and_claim()  # 0.2 s later: a burst, the loop's
    assert trigger.due_at() is not None
    trigger.stop()
    thread.join(5)
