"""The long-running router: events in, HAProxy kept exact, nothing dropped.

:class:`LiveRouter` owns a copy of Marathon's apps (the *mirror*), folds
events into it (:mod:`servicerouter.source.changes`), and on each coalesced
sync builds the model, renders the config and applies it the cheapest safe
way:

1. config text unchanged -> nothing;
2. only servers of existing backends changed (:mod:`servicerouter.apply.confdiff`)
   and HAProxy has a Runtime API -> apply it live, write the file for the
   next reload, no reload;
3. otherwise validate with ``haproxy -c``; if HAProxy rejects it, find the
   offending apps by bisection (O(log N) validations per bad app), quarantine
   them and apply the rest; then write and reload (confirmed, when managed).
   An app whose new frontend cannot bind (a port another process holds: tried
   before the reload, or named by HAProxy when it refuses a reload or a start)
   is quarantined too.  A refused reload puts the running config back on disk
   and is retried with backoff, on SIGHUP and at the periodic resync.

Certificates follow the same rule: bundle files have stable paths here, so a
renewed certificate for the same names changes only a file's content, and
(:mod:`servicerouter.tls.swap`) it is swapped in with ``set ssl cert`` /
``commit ssl cert``; anything else about certificates takes a validated reload.

Marathon trouble never touches HAProxy: a failed fetch keeps the last good
state, marks an outage (status, metric) and retries with jittered backoff;
the first successful full fetch ends it.  Syncs run one at a time: on the loop
thread, or, for an isolated event from the stream, on the thread that read it
(:meth:`~servicerouter.engine.intake.EventIntake.submit_and_apply`), so a lone
task event is not handed from thread to thread before it is applied.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from servicerouter.apply.managed import ManagedHAProxy
from servicerouter.apply.runtime_api import RuntimeApplier
from servicerouter.engine import removal_guard
from servicerouter.engine.app_path import RoutingIndex
from servicerouter.engine.core import EngineCore
from servicerouter.engine.full_apply import apply_full_pass
from servicerouter.engine.intake import EventIntake, new_metrics
from servicerouter.engine.live_state import (
    MAX_HINT_REFETCH,
    CommandReloader,
    LiveSettings,
    Outage,
    Reloader,
)
from servicerouter.engine.mirror import MarathonMirror
from servicerouter.engine.report import StatusReport
from servicerouter.engine.resync import PreparedResync, ResyncOffLock
from servicerouter.engine.runner import Derived, Router, SyncTrigger, gc_paused
from servicerouter.engine.task_path import RunningConfig, TaskPath
from servicerouter.model.services import Model
from servicerouter.serve.metrics import Metrics
from servicerouter.source.changes import Pending
from servicerouter.source.events import EventStream
from servicerouter.source.marathon import MarathonError
from servicerouter.tls.swap import CertUpdater

log = logging.getLogger("servicerouter.live")

# Seconds between two full garbage collections of a long-running engine (see gc_paused).
COLLECT_EVERY = 600.0


class LiveRouter(EventIntake, MarathonMirror, TaskPath, ResyncOffLock, StatusReport,
                 EngineCore):
    """The event-driven sync engine (see the module docstring): the engine's core
    (:class:`~servicerouter.engine.core.EngineCore`, which alone is a one-shot run)
    with the event path on top."""

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
        super().__init__(router, reloader=reloader, runtime=runtime,
                         metrics=metrics or new_metrics(), settings=settings, trigger=trigger,
                         manager=manager, rng_seed=rng_seed, cert_updater=cert_updater)
        self.source = router.source
        self.stream: EventStream | None = None
        self.outage: Outage | None = None
        self._pending = Pending()
        self._pending_lock = threading.Lock()
        self._step_lock = threading.Lock()  # one step at a time (loop or event reader)
        self._apps: dict[str, Any] | None = None
        self._model: Model | None = None
        self._collected_at = time.monotonic()  # the last full collection (see sync)
        self._retry: threading.Timer | None = None
        self._logged_problems: set[str] = set()
        self._last_full = time.monotonic()
        self._sync_started: float | None = None
        self._woke_at: float | None = None  # when the loop last woke for a step (monotonic)
        self._hup = False
        self._full_path_reason: str | None = None  # why the last sync took the full path
        self._resync_deferred = False  # a due periodic resync waits for one step of events
        # While a full resync derives off the step lock: the task path's syncs meanwhile,
        # folded into it before it applies (servicerouter.engine.resync).
        self._resync_window: list[Any] | None = None

    # ------------------------------------------------------------------ the loop

    def run(self, initial_sync: bool = True) -> None:
        """Sync now, then whenever events are due, until the trigger is stopped."""
        if initial_sync:
            self.request_resync("start")
        while self.trigger.wait():
            self.step()

    def step(self) -> bool:
        """One sync of whatever is pending (a full resync when nothing is).

        SIGHUP, the periodic resync and the retry timer also try again a config
        whose apply failed (a reload HAProxy refused, a port that was busy);
        mere events do not, so a failing config is not retried on every event.
        One step at a time: the event reader may run one itself (submit_and_apply),
        also while a full resync fetches and derives, which it does without the lock
        (servicerouter.engine.resync: the events applied meanwhile are folded in).
        """
        with self._step_lock:
            pending, retry = self._next_pending()
            if not self._resync_off_lock_ok(pending):
                return self._run_sync(pending, retry)
            self._open_window()
        # A full resync derives without the lock: events go on taking the task path.
        prepared: PreparedResync | None = None
        try:
            prepared = self._derive_resync(pending)
        except Exception:  # a bug: the sync below fetches and derives again, as before
            log.exception("a resync failed to derive off the lock; deriving under it")
        with self._step_lock:
            self._close_window(prepared)
            self._woke_at = time.monotonic()
            return self._run_sync(pending, retry, prepared)

    def _step(self) -> bool:
        return self._run_sync(*self._next_pending())

    def _next_pending(self) -> tuple[Pending, bool]:
        """(Holding the step lock.) What this step syncs, and whether it may retry a
        config whose apply failed."""
        self._woke_at = time.monotonic()
        pending = self._take_pending()
        retry = False
        if self._hup:
            self._hup = False
            pending.request_full("SIGHUP")
            retry = True
        if self._retry_due:
            self._retry_due = False
            pending.request_full("retrying the failed apply")
            retry = True
        overdue = time.monotonic() - self._last_full >= self.settings.resync_interval
        if overdue and not pending.full and not pending.empty and not self._resync_deferred:
            # Events first (the task path takes milliseconds), the periodic resync (seconds
            # on a big cluster) at the very next step: it never makes an event wait.  Once
            # only, so constant churn cannot put the resync off for ever.
            self._resync_deferred = True
            self.trigger.fire(event=False)
            overdue = False
        if pending.empty or overdue:
            retry = True
            if not pending.full:
                pending.request_full("periodic resync")  # also under constant churn
        return pending, retry

    def _run_sync(self, pending: Pending, retry: bool,
                  prepared: PreparedResync | None = None) -> bool:
        self._retrying = retry
        try:
            return self.sync(pending, prepared)
        finally:
            self._retrying = False

    def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        super().stop()  # the core's timers; a deferred write still lands on disk

    # ------------------------------------------------------------------ sync

    def sync(self, pending: Pending, prepared: PreparedResync | None = None) -> bool:
        """Fetch what ``pending`` needs, model, render, apply.  Never raises.
        ``prepared``: a full resync already fetched and derived (off the lock)."""
        # Garbage cycles left by syncs are collected on a full sync at most every
        # COLLECT_EVERY seconds (see gc_paused): never on an event's path.
        collect = pending.full and time.monotonic() - self._collected_at >= COLLECT_EVERY
        if collect:
            self._collected_at = time.monotonic()
        with self._sync_lock, gc_paused(collect):
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            start = time.perf_counter()
            self._sync_started = time.monotonic()
            try:
                return self._sync(pending, start, prepared)
            finally:
                self._sync_started = None

    def _sync(self, pending: Pending, start: float,
              prepared: PreparedResync | None = None) -> bool:
        full = pending.full or self._apps is None
        kind = "full" if full else "incremental"
        folded: Derived | None = None
        try:
            if prepared is None:
                apps = self._fetch(pending, full)
            elif prepared.error is not None:
                raise prepared.error
            else:  # what it fetched, with the events applied while it derived
                apps, folded = self._fold(prepared)
        except MarathonError as err:
            self._marathon_failed(str(err), pending)
            self.metrics.syncs.inc(kind=kind, result="error")
            self.state.last_sync_error = str(err)
            return False
        if self.outage is not None and (full or pending.refetch):
            log.warning("Marathon is back after %.0fs; resynced", time.time() - self.outage.since)
            self.outage = None
        if self.outage is None:
            self.metrics.marathon_up.set(1)
        if full:
            self._last_full = time.monotonic()
            self._resync_deferred = False
        old_apps, self._apps = self._apps_before(apps), apps
        fetched = time.perf_counter()
        # The one decision point: the task path when it can show the change is
        # servers only, else the full model, render and apply.
        refusal = "first sync" if old_apps is None else self._task_path_refusal(pending)
        if refusal is not None and prepared is not None and prepared.note:
            refusal += f"; {prepared.note}"
        self._full_path_reason = refusal
        if refusal is None and self._try_task_path(pending, old_apps):
            path, ok = "task", True
            self._note_window_sync(pending)
        elif prepared is None and self._in_window():
            # A resync derives now: no second full derive beside it (they share the
            # router's per-sync state); these events wait for it, as they used to.
            log.info("sync: %s; queued until the resync deriving now is applied",
                     self._full_path_reason)
            self._apps = old_apps
            self._requeue(pending)
            return True
        else:
            path, ok = "full", self._build_and_apply(kind, pending, folded)
        duration = time.perf_counter() - start + (prepared.seconds if prepared else 0.0)
        # Which path each sync took, and why not the task path: the way to explain a slow event.
        log.info("sync timing: %s %s path%s fetch=%.3fs build+apply=%.3fs total=%.3fs "
                 "events=%d -> %s at %s", kind, path,
                 f" ({self._full_path_reason})" if path == "full" else "",
                 fetched - start, duration - (fetched - start), duration, pending.events,
                 self.state.last_apply if ok else "failed", self._stamps(pending))
        self.state.last_path = path
        self.state.last_full_reason = self._full_path_reason if path == "full" else None
        self.metrics.sync_duration.observe(duration)
        self.metrics.syncs.inc(kind=kind, result="ok" if ok else "error")
        if pending.first_at is not None and ok and pending.events:
            self.metrics.event_to_apply.observe(time.monotonic() - pending.first_at)
        state = self.state
        state.syncs += 1
        state.last_sync = time.time()
        state.last_sync_kind = kind
        state.last_sync_duration = duration
        if ok:
            state.last_sync_error = None
            self.metrics.last_sync.set(state.last_sync)
        return ok

    def _check_scale(self) -> int | None:
        """The check-interval factor HAProxy was last given (servicerouter.render.check_rate
        keeps it while the check rate stays in its band); None before the first apply."""
        return None if self._last_applied is None else self._last_applied[1].check_interval_scale

    def _stamps(self, pending: Pending) -> str:
        """This sync's steps on the system-wide monotonic clock (CLOCK_MONOTONIC, which
        other processes read too): when its first event came in, the loop woke, the sync
        started, the Runtime API got the first command and gave the last answer, and the
        sync ended.  ``benchmarks/event_latency.py`` lines a trial up against them."""
        stamps = [("event", pending.first_at), ("woke", self._woke_at),
                  ("start", self._sync_started)]
        span = getattr(self.runtime, "last_span", None)
        if span is not None and self._sync_started is not None and span[0] >= self._sync_started:
            stamps += [("api", span[0]), ("answered", span[1])]
        stamps.append(("end", time.monotonic()))
        return ",".join(f"{name}={at:.4f}" for name, at in stamps if at is not None)

    def _build_and_apply(self, kind: str, pending: Pending,
                         derived: Derived | None = None) -> bool:
        # A full sync is slow anyway: a task-path write still waiting for quiet lands
        # first, so the file holds what HAProxy runs whatever this sync decides.
        self._config_file.flush()
        router = self.router
        settings = router.settings
        assert self._apps is not None
        if derived is None:  # (else a resync derived it off the lock: servicerouter.engine.resync)
            previous = removal_guard.live_previous(self) if settings.health_check else None
            derived = router.full_pass(self._apps.values(), previous, live=True,
                                       keep=self._apply_quarantine,
                                       check_scale=self._check_scale())
        if derived.rendered is None:
            self.state.last_sync_error = derived.error
            return False
        model, options, rendered = derived.model, derived.options, derived.rendered
        self._log_problems(model)
        only_resync = pending.events <= 1 and not pending.task_events and not pending.refetch
        if kind == "full" and only_resync and self._model is not None and \
                model.services != self._model.services:
            self.metrics.resync_drift.inc()
            log.info("full resync (%s) changed routing", ", ".join(pending.full_reasons))
        self._model = model
        self.state.apps = model.app_count
        self.state.tasks = model.task_count
        services, text = rendered.services, rendered.text
        ok = apply_full_pass(self, derived, fresh=kind == "full")  # shared with the one-shot
        # Quarantined apps are left out (or frozen) of ``text`` as of this sync; the task
        # path keeps the rest exact (events of those apps go the full way: see task_path).
        if ok and self._running is None and not settings.dry and self._applied_text == text:
            self._running = RunningConfig(replace(model, services=services), options,
                                          self._applied_text)
            if options.map_dir is not None:  # now, not on the next app update's event path
                RoutingIndex.of(self._running)
            self._index_running(self._running)
        return ok



# The wiring lives in its own module; these names stay importable from here.
from servicerouter.engine.wiring import (  # noqa: E402
    LiveOptions,
    _start_callbacks,
    _start_managed,
    run_live,
)

__all__ = [
    "MAX_HINT_REFETCH",
    "CommandReloader",
    "LiveOptions",
    "LiveRouter",
    "LiveSettings",
    "Reloader",
    "_start_callbacks",
    "_start_managed",
    "new_metrics",
    "run_live",
]
