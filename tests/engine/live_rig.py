"""The live engine (servicerouter.engine.live) on the Marathon emulator, HAProxy faked.

``rig_factory`` builds a :class:`Rig`: a real emulator, a real LiveRouter following
its event stream, and recording fakes for the HAProxy reload and Runtime API
(``haproxy -c`` stays real, so validation and quarantine are). Shared by the live
engine tests here and by tests of other packages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servicerouter.apply.confdiff import RuntimePlan
from servicerouter.apply.managed import ReloadResult
from servicerouter.apply.runtime_api import RuntimeStats, RuntimeUpdateError
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.events import Backoff, EventStream
from servicerouter.source.marathon import ClientSettings, MarathonClient
from tests.harness import wait_until

APPS_FETCH = "/v2/apps?embed=apps.tasks"


@dataclass
class FakeReloader:
    results: list[bool] = field(default_factory=list)
    calls: int = 0
    fail: bool = False
    # (text, message): a reload of a config holding that text fails once with the message
    refusals: list[tuple[str, str]] = field(default_factory=list)
    config: Path | None = None

    def reload(self) -> ReloadResult:
        self.calls += 1
        if self.refusals and self.config is not None:
            needle, message = self.refusals[0]
            if needle in self.config.read_text():
                self.refusals.pop(0)
                return ReloadResult(False, message)
        return ReloadResult(not self.fail, "fake")


@dataclass
class FakeRuntime:
    plans: list[RuntimePlan] = field(default_factory=list)
    refuse: bool = False
    stats: RuntimeStats = field(default_factory=RuntimeStats)

    def apply(self, plan: RuntimePlan) -> None:
        if self.refuse:
            raise RuntimeUpdateError("refused")
        self.plans.append(plan)

    def forget(self) -> None:
        pass


def app(app_id: str, port: int, **labels: str) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}], "labels": labels}


@dataclass
class Rig:
    emulator: MarathonEmulator
    live: LiveRouter
    reloader: FakeReloader
    runtime: FakeRuntime
    config: Path

    def full_fetches(self) -> int:
        return sum(1 for _m, target in self.emulator.request_log if target == APPS_FETCH)

    def text(self) -> str:
        return self.config.read_text() if self.config.exists() else ""

    def applied(self) -> str:
        """The config the engine has applied (reload or Runtime API), not merely written.

        Waits use this: the file is written before the reload and before the counters
        move, so under load a test waiting for the file read them too early.
        """
        return self.live._applied_text or ""


def settled(rig: Rig, timeout: float = 10) -> None:
    """Wait until no sync runs and none is due (what a sync did is all done)."""
    live = rig.live

    def idle() -> bool:
        return (not live._sync_lock.locked() and live._pending.empty
                and live.trigger.due_at() is None)

    wait_until(lambda: idle() and (time.sleep(0.05) or idle()), timeout)


@pytest.fixture
def rig_factory(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., Rig]]:
    stops: list[Callable[[], None]] = []

    def make(apps: list[dict], templates: Path | None = None, stream: bool = True,
             bind_check: bool = False, **live_kw) -> Rig:
        emulator = MarathonEmulator(keepalive_interval=0.5).start()
        stops.append(emulator.stop)
        for spec in apps:
            emulator.put_app(spec)
        config = tmp_path / "haproxy.cfg"
        settings = RouterSettings(
            config_path=str(config), groups=("*",), haproxy_bin=haproxy_bin,
            render_options=RenderOptions(bind_addr="127.0.0.1"),
            state_dir=str(tmp_path / "state"), certs_dir=None)
        client = MarathonClient([emulator.url], ClientSettings(read_timeout=5))
        router = Router(client, load_fragments([templates] if templates else []), settings)
        reloader, runtime = FakeReloader(config=config), FakeRuntime()
        live_kw.setdefault("settings", LiveSettings(min_wait=0.02, max_wait=0.2,
                                                    backoff_base=0.05, backoff_cap=0.2))
        live = LiveRouter(router, reloader=reloader, runtime=runtime,  # type: ignore[arg-type]
                          rng_seed=1, **live_kw)
        if not bind_check:  # nothing binds here: ports others hold on this host are no matter
            live._leave_out_busy_ports = lambda s, t, o: (s, t)  # type: ignore[method-assign]
        if stream:
            events = EventStream([emulator.url], live.submit,
                                 lambda host: live.request_resync("connected"),
                                 backoff=Backoff(0.05, 0.2))
            live.stream = events
            events.start()
            stops.append(events.stop)
        thread = threading.Thread(target=live.run, kwargs={"initial_sync": not stream},
                                  daemon=True)
        thread.start()
        stops.append(lambda: (live.stop(), thread.join(5)))
        rig = Rig(emulator, live, reloader, runtime, config)
        wait_until(lambda: live.state.syncs >= 1 and live.state.last_apply, 10)
        return rig

    yield make
    for stop in reversed(stops):
        stop()


def reloaded_with(live: LiveRouter, needle: str) -> bool:
    """HAProxy was reloaded with a config holding ``needle``, not merely written.

    Waiting for the file alone raced under load: a test that made the next reload fail
    right then failed the reload still in flight, and "the last good config" was older.
    """
    return needle in (live._applied_text or "")


BAD_TEMPLATE = """backend {{ backend }}
  balance roundrobin
  mode {{ mode }}
{% if labels.get('EXTRA') %}
  {{ labels.get('EXTRA') }}
{% endif %}
"""
