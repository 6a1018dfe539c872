"""End to end: a task added while a full resync derives is routed at once, and after it.

A real servicerouter follows the emulator (10,000 tasks, so a full resync takes
a while) and runs a real HAProxy.  SIGHUP starts a full
resync; a task added just after must be applied by the task path while the
resync still derives (its sync ends first), answer through HAProxy, and still
answer once the resync has applied what it fetched: the resync folds the event
in instead of putting back the older state.  Nothing reloads.
"""

from __future__ import annotations

import re
import signal
import time
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
    backends = [backend_factory(f"b{n}") for n in range(6)]  # through a TCP frontend
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
        folded = False
        for attempt in range(1, len(backends)):  # until one lands inside the resync
            log_size = len(router.log())
            router.proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)
            emu.add_task("/target", "127.0.0.1", [backends[attempt].port])
            name = f"b{attempt}"
            tries = 2 * attempt
            wait_until(lambda name=name, tries=tries: name in {answer(port) for _ in range(tries)},
                       15,
                       message=f"the task on {name} is not routed")
            wait_until(lambda log_size=log_size: "full path (full resync: SIGHUP"
                       in router.log()[log_size:], 30, message="the resync did not end")
            lines = [line for line in router.log()[log_size:].splitlines()
                     if "sync timing" in line]
            resync = next(line for line in lines if "full resync: SIGHUP" in line)
            if "folded in" not in resync:
                continue  # the event came after the resync here: try again
            event = next(line for line in lines if "task path" in line)
            assert _end_of(event) < _end_of(resync), lines  # applied before the resync ended
            folded = True
            # the resync did not put back the state it fetched: every task still answers
            wait_until(lambda attempt=attempt: {answer(port) for _ in range(4 * attempt)}
                       == {f"b{n}" for n in range(attempt + 1)}, 15)
            break
        assert folded, "no added task came while a resync derived"
        after = router.status()
        assert after["reloads"] == before["reloads"], "an event during a resync reloaded"
        assert after["failed_reloads"] == 0
