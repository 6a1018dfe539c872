"""End to end: a task added while a full resync runs is routed at once, and after it.

A real servicerouter follows the emulator (10,000 tasks) and runs a real HAProxy.
SIGHUP starts a full resync, whose Marathon answer is made when asked and arrives
late (``MarathonEmulator.apps_answer_delay``, as a big cluster's does); a task added
once the resync has asked must be applied by the task path meanwhile (its sync ends
first), answer through HAProxy, and still answer once the resync has applied the
older answer it fetched: the resync folds the event in instead of putting back the
older state.  Nothing reloads.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import RouterProcess, answer
from tests.engine.test_live_paths_e2e import settled
from tests.harness import Backend, free_port, wait_until

pytestmark = pytest.mark.e2e

FILLERS, TASKS = 10, 1000  # 10,000 tasks: a resync of a few hundred ms, more under load
_END = re.compile(r"[ ,]end=([0-9.]+)")


def _fillers() -> list[dict]:
    """Apps whose tasks are never asked (unroutable hosts): the resync's work."""
    return [{"id": f"/filler/app{n}", "portDefinitions": [{"port": free_port()}],
             "labels": {},
             "tasks": [{"id": f"filler_app{n}.t{t}", "host": f"10.9.{n}.{t % 250 + 1}",
                        "ports": [40000 + t], "state": "TASK_RUNNING"} for t in range(TASKS)]}
            for n in range(FILLERS)]


def _end_of(line: str) -> float:
    found = _END.search(line)
    assert found is not None, line
    return float(found.group(1))


def test_a_task_added_during_a_resync_is_routed_before_it_ends_and_after(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    backends = [backend_factory(f"b{n}") for n in range(2)]  # through a TCP frontend
    port = free_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.load_state({"apps": [
            *_fillers(),
            {"id": "/target", "portDefinitions": [{"port": port}], "labels": {},
             "tasks": [{"id": "target.t0", "host": "127.0.0.1", "ports": [backends[0].port],
                        "state": "TASK_RUNNING"}]}]})
        router = start_router(emu)
        wait_until(lambda: answer(port) == "b0", 30)
        before = settled(router)
        # Marathon's answer to the resync is made when asked and arrives 0.5 s later
        # (a big cluster's answer): the task added once it was asked is newer than
        # the answer, so the resync must fold in what the task path applied meanwhile.
        # (Before, the test hoped a task added 50 ms after SIGHUP came during the derive:
        # a resync of 10,000 tasks now ends in ~45 ms on a quiet machine.)
        emu.apps_answer_delay = 0.5
        log_size = len(router.log())
        asked = sum(1 for method, target in emu.request_log
                    if method == "GET" and target.startswith("/v2/apps?"))
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sum(1 for method, target in emu.request_log
                               if method == "GET" and target.startswith("/v2/apps?")) > asked,
                   15, message="the resync did not ask Marathon for its apps")
        emu.add_task("/target", "127.0.0.1", [backends[1].port])
        wait_until(lambda: "b1" in {answer(port) for _ in range(2)}, 15,
                   message="the task on b1 is not routed")
        wait_until(lambda: "full path (full resync: SIGHUP" in router.log()[log_size:], 30,
                   message="the resync did not end")
        lines = [line for line in router.log()[log_size:].splitlines() if "sync timing" in line]
        resync = next(line for line in lines if "full resync: SIGHUP" in line)
        event = next(line for line in lines if "task path" in line)
        assert "folded in" in resync, lines
        assert _end_of(event) < _end_of(resync), lines  # applied before the resync ended
        # the resync did not put back the state it fetched: both tasks still answer
        wait_until(lambda: {answer(port) for _ in range(6)} == {"b0", "b1"}, 15)
        after = router.status()
        assert after["reloads"] == before["reloads"], "an event during a resync reloaded"
        assert after["failed_reloads"] == 0
