"""End to end: zdd.py's ``--resume`` and ``--linear-increase`` on a real HAProxy.

The same rig as tests/e2e/test_zdd.py (a real servicerouter following the emulator,
whose launcher starts a real backend per task; ``servicerouter zdd`` as its own
process). ``--resume`` goes on with a deployment a lost run left with both colours;
``--linear-increase N`` grows the new colour by N per step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import requests

from tests.e2e.test_zdd import Setup, setup  # noqa: F401 - setup is a fixture
from tests.engine.live_router import start_router  # noqa: F401 - setup's fixture

pytestmark = pytest.mark.e2e


def scaled_to(stderr: str, app_id: str) -> list[int]:
    """The instance counts zdd scaled ``app_id`` to, in order (from its log)."""
    return [int(n) for n in re.findall(rf"scaling {re.escape(app_id)} to (\d+) instances",
                                       stderr)]


def test_resume_finishes_a_deployment_a_lost_run_left_half_done(
        setup: Callable[..., Setup]) -> None:  # noqa: F811
    env = setup()
    before = env.router.status()
    # a run that died right after posting the next colour (no rollback happened)
    planned = env.zdd("--dry-run")
    assert planned.returncode == 0, planned.stderr[-3000:]
    green = json.loads(planned.stdout)
    assert requests.post(env.emulator.url + "/v2/apps", json=green, timeout=10).ok
    assert set(env.colours()) == {"/nginx-blue", "/nginx-green"}
    refused = env.zdd("--max-wait", "30")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = env.zdd("--resume", "--max-wait", "90")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: /nginx-green grows, /nginx-blue drains" in resumed.stderr
    assert env.colours() == {"/nginx-green": 4}
    assert set(env.answers(20)) == {"green"}
    assert env.router.status()["reloads"] == before["reloads"]


def test_linear_increase_grows_the_new_colour_by_n_each_step(
        setup: Callable[..., Setup]) -> None:  # noqa: F811
    env = setup()
    before = env.router.status()
    done = env.zdd("--linear-increase", "2", "--max-wait", "90")
    assert done.returncode == 0, done.stderr[-3000:]
    # from 1: 3, then the target 4 (by half, zdd.py's default, would go 2 first)
    assert scaled_to(done.stderr, "/nginx-green") == [3, 4]
    assert env.colours() == {"/nginx-green": 4}
    assert set(env.answers(20)) == {"green"}
    assert env.router.status()["reloads"] == before["reloads"]
