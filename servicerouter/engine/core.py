"""The engine's core: put a fully derived config in place, the one way every sync does.

Every full sync, one-shot or live, ends the same: validate the config (leaving
out the apps HAProxy rejects, :mod:`~servicerouter.engine.quarantine`, and those
whose ports another process holds), write it, reload, swap renewed certificates,
hold a large removal (:mod:`~servicerouter.engine.full_apply`).  That is
:class:`EngineCore`.  A one-shot run (:mod:`servicerouter.engine.one_shot`) is
this core applying one full pass; the long-running
:class:`~servicerouter.engine.live.LiveRouter` *is* this core with the event path
on top (event intake, the Marathon mirror, the task and app paths, /status).

Why a core of its own: a one-shot is a fresh process per run (cron, the
servicerouter.py contract), and its start-up is part of every run's cost.  The
event path's modules (event stream, changes, the Runtime API plans, the task and
app paths, the status server) are not imported here, so a one-shot does not load
them (tests/engine/test_engine_core.py checks it).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from servicerouter.engine.applier import ConfigApplier
from servicerouter.engine.cert_swaps import CertificateSwaps
from servicerouter.engine.coalescing import SyncTrigger
from servicerouter.engine.config_file import ConfigFile
from servicerouter.engine.live_state import LiveSettings, LiveState, Quarantined, Reloader
from servicerouter.engine.quarantine import QuarantineKeeper
from servicerouter.source.backoff import Backoff

if TYPE_CHECKING:
    from servicerouter.apply.confdiff import ParsedConfig
    from servicerouter.apply.managed import ManagedHAProxy
    from servicerouter.apply.runtime_api import RuntimeApplier
    from servicerouter.engine.runner import Router
    from servicerouter.engine.task_path import RunningConfig
    from servicerouter.model.services import Service
    from servicerouter.render.options import RenderOptions
    from servicerouter.serve.metrics import Metrics
    from servicerouter.tls.swap import CertUpdater, ServedCert


class EngineCore(ConfigApplier, CertificateSwaps, QuarantineKeeper):
    """The config HAProxy runs, and how a full pass replaces it (see the module docstring).

    ``metrics``: where the apply counts validations, reloads and quarantined apps (the
    live engine's registry; a one-shot's own, read by no one).
    """

    def __init__(
        self,
        router: Router,
        *,
        reloader: Reloader | None,
        runtime: RuntimeApplier | None = None,
        metrics: Metrics | None = None,
        settings: LiveSettings | None = None,
        trigger: SyncTrigger | None = None,
        manager: ManagedHAProxy | None = None,
        rng_seed: int | None = None,
        cert_updater: CertUpdater | None = None,
    ) -> None:
        if metrics is None:
            from servicerouter.serve.metrics import Metrics

            metrics = Metrics()
        self.router = router
        self.reloader = reloader
        self.runtime = runtime
        self.cert_updater = cert_updater
        self.manager = manager
        self.metrics = metrics
        self.settings = settings or LiveSettings()
        s = self.settings
        self.trigger = trigger or SyncTrigger(s.min_wait, s.max_wait, s.resync_interval)
        self.backoff = Backoff(s.backoff_base, s.backoff_cap, random.Random(rng_seed))
        self.state = LiveState()
        self.quarantine: dict[str, Quarantined] = {}
        self._sync_lock = threading.Lock()
        self._applied_text: str | None = None
        self._applied_parse: tuple[str, ParsedConfig] | None = None  # see _applied_parsed
        self._config_file = ConfigFile(router.settings.config_path,
                                       router.settings.render_options.map_dir)
        # What HAProxy runs as the last sync rendered it (None: not known, or a
        # quarantine or a failure made them differ): where the live task path starts.
        self._running: RunningConfig | None = None
        self._good_by_app: dict[str, tuple[Service, ...]] = {}
        self._failed_text: str | None = None
        self._failed_certs: tuple[tuple[str, str], ...] | None = None
        # A failed apply is retried by SIGHUP, the periodic resync and a backoff timer.
        self._apply_failures = 0
        self._apply_retry: threading.Timer | None = None
        self._retry_due = False  # the timer fired: the next step retries
        self._retrying = False  # this sync may retry a config that failed before
        self._bind_watch: threading.Timer | None = None  # polls ports of "bind" quarantines
        self._parsed_cache: tuple[str, ParsedConfig] | None = None
        # What HAProxy was last given (services, render options): start-up failures
        # re-render from it.
        self._last_applied: tuple[tuple[Service, ...], RenderOptions] | None = None
        # The certificate files HAProxy was last given (None: not known yet).
        self._applied_certs: dict[str, ServedCert] | None = None
        self._runtime_trusted = False
        self._fd_said: tuple[str | None, str] | None = None  # the last descriptor report
        self._routed_services: Sequence[Service] = ()  # what /status describes

    def _set_services(self, services: Sequence[Service]) -> None:
        self._routed_services = services  # described when /status asks, not per sync
        self.metrics.services.set(len(services))

    def _schedule_retry(self, delay: float) -> None:
        """Wake the loop in ``delay`` seconds to retry a failed apply."""
        if self._apply_retry is not None:
            self._apply_retry.cancel()

        def due() -> None:
            self._retry_due = True
            self.trigger.fire(event=False)

        timer = threading.Timer(delay, due)
        timer.daemon = True
        self._apply_retry = timer
        timer.start()

    def stop(self) -> None:
        """Cancel the retry timers; a deferred config write still lands on disk."""
        self.trigger.stop()
        if self._apply_retry is not None:
            self._apply_retry.cancel()
        if self._bind_watch is not None:
            self._bind_watch.cancel()
        self._config_file.stop()


__all__ = ["EngineCore"]
