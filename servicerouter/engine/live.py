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
the first successful full fetch ends it.  Syncs run on one thread only.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from servicerouter.apply import haproxy, mapfiles
from servicerouter.apply.bisection import find_culprits
from servicerouter.apply.confdiff import ParsedConfig, new_binds, parse_config, plan_runtime_update
from servicerouter.apply.files import fsync_dir
from servicerouter.apply.managed import (
    ManagedHAProxy,
    ReloadResult,
    RuntimeApplier,
    RuntimeUpdateError,
)
from servicerouter.engine import removal_guard
from servicerouter.engine.runner import Router, SyncTrigger, gc_paused, utc_iso, without_unrendered
from servicerouter.model.resolver import CachingResolver
from servicerouter.model.services import Model, Service
from servicerouter.render.config import RenderError, RenderOptions, describe_services
from servicerouter.serve.httpd import ListenError, listen_error
from servicerouter.serve.status import Metrics, route_conflicts
from servicerouter.source.changes import (
    APP_EVENTS,
    HINT_RESYNC_REASON,
    IGNORED,
    RESYNC_EVENT,
    TASK_EVENTS,
    Change,
    Pending,
    apply_task_events,
    as_hint,
    classify,
    index_apps,
)
from servicerouter.source.events import Backoff, EventStream
from servicerouter.source.marathon import (
    MarathonClient,
    MarathonError,
    MarathonNotFound,
    parse_apps,
    redact,
)
from servicerouter.tls.swap import (
    CertPlan,
    CertUpdater,
    ServedCert,
    plan_cert_updates,
    startup_baseline,
)

log = logging.getLogger("servicerouter.live")

KNOWN_EVENTS = IGNORED | TASK_EVENTS | APP_EVENTS | {RESYNC_EVENT, "group_change_success",
                                                     "group_change_failed"}
STUCK_AFTER = 300.0  # seconds a sync may run before /healthz says the router is stuck
MAX_BIND_ROUNDS = 4  # reloads per sync when each names another app whose port is busy
MAX_HINT_REFETCH = 20  # apps untrusted events may name per sync before a full fetch instead


def new_metrics() -> Metrics:
    """The live engine's metrics: every event type it counts starts at 0."""
    return Metrics(event_types=sorted(KNOWN_EVENTS | {"other"}))


class Reloader(Protocol):
    """Makes HAProxy load the config file on disk."""

    def reload(self) -> ReloadResult: ...


class CommandReloader:
    """``--command`` (or the detected init system): HAProxy managed by someone else."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)

    def reload(self) -> ReloadResult:
        ok, output = haproxy.reload_with_output(self.command)
        # On failure the message holds the command's output: HAProxy's own words,
        # naming (for instance) a frontend whose port another process holds.
        return ReloadResult(ok, "reloaded" if ok else output or "reload command failed")


@dataclass(frozen=True)
class LiveSettings:
    """Timing and policy of the live loop."""

    min_wait: float = 0.2
    max_wait: float = 2.0
    resync_interval: float = 300.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    runtime_updates: bool = True


@dataclass
class Quarantined:
    """An app left out (or frozen at its last good version) until it changes."""

    app_id: str
    reason: str
    since: float
    fingerprint: tuple[Any, ...]
    frozen: tuple[Service, ...] = ()
    # "config": HAProxy rejects its config; "bind": its port is held by another
    # process, so it is also released once ``binds`` can be bound again.
    cause: str = "config"
    binds: tuple[str, ...] = ()


@dataclass
class Outage:
    since: float
    error: str
    failures: int = 1


@dataclass
class LiveState:
    """What /status reports."""

    last_sync: float | None = None
    last_sync_kind: str | None = None
    last_sync_duration: float | None = None
    last_sync_error: str | None = None
    last_apply: str | None = None  # unchanged, runtime, reload, failed
    last_reload: float | None = None
    last_runtime_update: float | None = None
    last_cert_update: float | None = None
    syncs: int = 0
    services: list[Mapping[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # route, owner, losers
    apps: int = 0
    tasks: int = 0


def _fingerprint(services: Iterable[Service]) -> tuple[Any, ...]:
    """An app's routing without its servers: scaling a quarantined app is no fix."""
    return tuple(replace(s, servers=()) for s in services)


def _by_app(services: Iterable[Service]) -> dict[str, tuple[Service, ...]]:
    grouped: dict[str, list[Service]] = {}
    for service in services:
        grouped.setdefault(service.app_id, []).append(service)
    return {app_id: tuple(items) for app_id, items in grouped.items()}


class LiveRouter:
    """The event-driven sync engine (see the module docstring)."""

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
        import random

        self.router = router
        self.source = router.source
        self.reloader = reloader
        self.runtime = runtime
        self.cert_updater = cert_updater
        self.manager = manager
        self.metrics = metrics or new_metrics()
        self.settings = settings or LiveSettings()
        s = self.settings
        self.trigger = trigger or SyncTrigger(s.min_wait, s.max_wait, s.resync_interval)
        self.backoff = Backoff(s.backoff_base, s.backoff_cap, random.Random(rng_seed))
        self.state = LiveState()
        self.stream: EventStream | None = None
        self.quarantine: dict[str, Quarantined] = {}
        self.outage: Outage | None = None
        self._pending = Pending()
        self._pending_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._apps: dict[str, Any] | None = None
        self._model: Model | None = None
        self._applied_text: str | None = None
        self._applied_parsed: ParsedConfig | None = None
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
        self._retry: threading.Timer | None = None
        self._logged_problems: set[str] = set()
        self._last_full = time.monotonic()
        self._sync_started: float | None = None
        self._hup = False

    # ------------------------------------------------------------------ input (any thread)

    def submit(self, event: Mapping[str, Any], *, trusted: bool = True) -> None:
        """Queue one Marathon event; the sync runs later on the loop thread.

        ``trusted=False`` is for events anyone could have sent (a callback
        without a token): they are only hints of which apps to refetch
        (:func:`~servicerouter.source.changes.as_hint`), never folded in as given.
        """
        event_type = event.get("eventType")
        known = isinstance(event_type, str) and event_type in KNOWN_EVENTS
        label = event_type if known else "other"
        self.metrics.events.inc(type=label)  # bounded labels
        change = classify(event) if trusted else as_hint(event)
        if change.kind == "ignore":
            return
        with self._pending_lock:
            if (not trusted and change.kind == "apps"
                    and len(self._pending.refetch | set(change.app_ids)) > MAX_HINT_REFETCH):
                change = Change("full", reason=HINT_RESYNC_REASON)  # one fetch is cheaper
            self._pending.add(change, event, time.monotonic())
        log.debug("event %s: %s %s", label, change.kind, ",".join(change.app_ids))
        self.trigger.fire()

    def request_resync(self, reason: str) -> None:
        """A full refetch at the next sync (reconnect, SIGHUP, HAProxy restart)."""
        self.submit({"eventType": RESYNC_EVENT, "reason": reason})

    def resync_from_signal(self) -> None:
        """SIGHUP: only a flag and a notify, so a handler can never deadlock on a lock."""
        self._hup = True
        self.trigger.fire()

    def _take_pending(self) -> Pending:
        with self._pending_lock:
            pending, self._pending = self._pending, Pending()
        return pending

    def _restore_pending(self, pending: Pending) -> None:
        """A failed sync: its work is redone by the next one, as a full resync."""
        with self._pending_lock:
            self._pending.full = True
            if self._pending.first_at is None or (
                    pending.first_at is not None and pending.first_at < self._pending.first_at):
                self._pending.first_at = pending.first_at

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
        """
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
        if pending.empty or overdue:
            retry = True
            if not pending.full:
                pending.request_full("periodic resync")  # also under constant churn
        self._retrying = retry
        try:
            return self.sync(pending)
        finally:
            self._retrying = False

    def stop(self) -> None:
        self.trigger.stop()
        if self._retry is not None:
            self._retry.cancel()
        if self._apply_retry is not None:
            self._apply_retry.cancel()
        if self._bind_watch is not None:
            self._bind_watch.cancel()

    def _schedule_retry(self, delay: float) -> None:
        """Wake the loop in ``delay`` seconds to retry a failed apply."""
        if self._apply_retry is not None:
            self._apply_retry.cancel()

        def due() -> None:
            self._retry_due = True
            self.trigger.fire()

        timer = threading.Timer(delay, due)
        timer.daemon = True
        self._apply_retry = timer
        timer.start()

    # ------------------------------------------------------------------ sync

    def sync(self, pending: Pending) -> bool:
        """Fetch what ``pending`` needs, model, render, apply.  Never raises."""
        with self._sync_lock, gc_paused():
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            start = time.perf_counter()
            self._sync_started = time.monotonic()
            try:
                return self._sync(pending, start)
            finally:
                self._sync_started = None

    def _sync(self, pending: Pending, start: float) -> bool:
        full = pending.full or self._apps is None
        kind = "full" if full else "incremental"
        try:
            apps = self._fetch(pending, full)
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
        self._apps = apps
        fetched = time.perf_counter()
        ok = self._build_and_apply(kind, pending)
        duration = time.perf_counter() - start
        log.info("sync timing: %s fetch=%.3fs build+apply=%.3fs total=%.3fs -> %s", kind,
                 fetched - start, duration - (fetched - start), duration,
                 self.state.last_apply if ok else "failed")
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

    def _fetch(self, pending: Pending, full: bool) -> dict[str, Any]:
        if full:
            body = self.source.fetch_apps_body()
            return index_apps(parse_apps(body))
        assert self._apps is not None
        apps = dict(self._apps)
        for app_id in pending.removed:
            apps.pop(app_id, None)
        changed, unknown = apply_task_events(apps, pending.task_events)
        apps.update(changed)
        for app_id in sorted(pending.refetch | unknown):
            self._refetch(apps, app_id)
        if unknown:  # fetched just now: already includes those events
            changed, _ = apply_task_events(
                apps, [e for e in pending.task_events if e.get("appId") in unknown])
            apps.update(changed)
        return apps

    def _refetch(self, apps: dict[str, Any], app_id: str) -> None:
        fetch = getattr(self.source, "fetch_app", None)
        if fetch is None:  # a snapshot has no per-app endpoint
            raise MarathonError("source cannot fetch single apps")
        try:
            apps[app_id] = fetch(app_id)
        except MarathonNotFound:
            apps.pop(app_id, None)

    def stream_failed(self, reason: str) -> None:
        """The event stream dropped or cannot connect: report an outage until it is back.

        No fetch is attempted: the stream's reconnect (with backoff) is the retry,
        and it resyncs once when it succeeds.
        """
        self.metrics.marathon_errors.inc()
        self.metrics.marathon_up.set(0)
        error = f"event stream: {reason}"
        if self.outage is None:
            self.outage = Outage(time.time(), error)
            log.error("Marathon unavailable, keeping the current routing: %s", error)
        else:
            self.outage.failures += 1
            self.outage.error = error

    def _marathon_failed(self, error: str, pending: Pending) -> None:
        self.metrics.marathon_errors.inc()
        self.metrics.marathon_up.set(0)
        self._restore_pending(pending)
        new_outage = self.outage is None
        if self.outage is None:
            self.outage = Outage(time.time(), error)
            log.error("Marathon unavailable, keeping the current routing: %s", error)
        else:
            self.outage.failures += 1
            self.outage.error = error
        stream = self.stream
        if stream is not None and not stream.status.connected:
            return  # the stream's reconnect resyncs once Marathon answers again
        delay = self.backoff.delay(self.outage.failures - 1)
        # Said once per outage: the outage itself was reported, and "Marathon is back"
        # ends it; a line per retry would bury everything else in a long one.
        log.log(logging.INFO if new_outage else logging.DEBUG,
                "retrying Marathon in %.1fs (then with backoff, quietly)", delay)
        timer = threading.Timer(delay, self.trigger.fire)
        timer.daemon = True
        self._retry = timer
        timer.start()

    def _build_and_apply(self, kind: str, pending: Pending) -> bool:
        router = self.router
        settings = router.settings
        options = settings.render_options
        if isinstance(router.resolver, CachingResolver):
            router.resolver.new_sync()
        assert self._apps is not None
        router.port_checks.new_sync()
        model = router.build_model(self._apps.values(), removal_guard.routed_before(self))
        options = router._prepare_certificates(options, model.services, stable_paths=True)
        try:  # an app a fragment fails to render for is left out, with a problem
            model = router._label_templates(model, options)
            rendered = router.render_guarded(self._apply_quarantine(model.services), options)
        except RenderError as err:  # a head fragment: no app to leave out
            log.error("keeping the current config: %s", err)
            self.state.last_sync_error = str(err)
            return False
        model = without_unrendered(model, rendered)
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
        if settings.dry:
            if text != self._applied_text:
                router._print_dry(text)
                self._applied_text = text
            self._set_services(services)
            return True
        if removal_guard.removal_held(self, text, model.app_count, kind == "full"):
            return True  # the last config keeps serving (servicerouter.engine.holds)
        ok = self._apply(text, services, options)
        return ok

    # ------------------------------------------------------------------ apply

    def _apply(self, text: str, services: tuple[Service, ...], options: RenderOptions) -> bool:
        certs = self._cert_plan()
        if text == self._applied_text:
            if certs.empty:
                self.state.last_apply = "unchanged"
                self._set_services(services)
                return True
            if self._try_cert_runtime(certs):  # only certificate contents changed
                self.state.last_apply = "runtime"
                self._set_services(services)
                return True
        elif self._try_runtime(text, self._parse(text), certs, services):
            self._set_services(services)
            return True
        certs_key = self._certs_key()
        if text == self._failed_text and certs_key == self._failed_certs:
            if not self._retrying:
                self.state.last_apply = "failed"
                return False
            log.info("trying again the config whose apply failed")
        validated, services, text = self._validate_or_quarantine(text, services, options)
        if not validated:
            self._failed_text, self._failed_certs = text, certs_key
            self.state.last_apply = "failed"
            return False
        services, text = self._leave_out_busy_ports(services, text, options)
        result = ReloadResult(False, "not reloaded")
        for _round in range(MAX_BIND_ROUNDS):
            if text == self._applied_text and self._cert_plan().empty:
                self._applied_ok(services, options)
                self.state.last_apply = "unchanged"
                return True
            settings = self.router.settings
            announce = ("config changed - reloading HAProxy" if self.reloader is not None
                        else "writing the config HAProxy will start on")
            applied = haproxy.apply_config(text, settings.config_path, validate=False,
                                           haproxy_bin=settings.haproxy_bin, reload=None,
                                           map_dir=settings.render_options.map_dir,
                                           announce=announce)
            if not applied.ok:
                result = ReloadResult(False, applied.error or "cannot write the config")
                break
            result = self._reload()
            if result.ok:
                break
            # A port another process holds: HAProxy names the frontend.  Leave its
            # app out (like a rejected one) and reload the rest again.
            again = self._quarantine_bind_failures(result.message, services, options)
            if again is None:
                break
            services, text = again
        if not result.ok:
            self._restore_running_config(text)
            self._failed_text, self._failed_certs = text, certs_key
            self.state.last_apply = "failed"
            self._apply_failures += 1
            delay = self.backoff.delay(self._apply_failures - 1)
            log.error("keeping the running config; trying again in %.1fs (or on SIGHUP)", delay)
            self._schedule_retry(delay)
            return False
        self._applied_text = text
        self._applied_parsed = self._parse(text)
        self._applied_certs = dict(self.router.served_certs)  # a reload reads them all
        self._applied_ok(services, options)
        self.state.last_apply = "reload" if self.reloader is not None else "written"
        return True

    def _applied_ok(self, services: tuple[Service, ...], options: RenderOptions) -> None:
        """HAProxy runs ``services`` now: they are the last good version of their apps."""
        self._failed_text = None
        self._apply_failures = 0
        self._good_by_app = _by_app(services)
        self._last_applied = (services, options)
        self._set_services(services)

    def _parse(self, text: str) -> ParsedConfig:
        """parse_config, remembered for the last text (a sync parses the same text often)."""
        cached = self._parsed_cache
        if cached is not None and cached[0] is text:
            return cached[1]
        parsed = parse_config(text)
        self._parsed_cache = (text, parsed)
        return parsed

    def _restore_running_config(self, failed: str) -> None:
        """A failed reload: the file on disk goes back to the config HAProxy runs.

        So a restart (the watchdog, a reboot, an operator) loads the good config,
        not the one HAProxy refused.
        """
        text = self._applied_text
        path = self.router.settings.config_path
        if text is None:
            # No config when we started: remove the one HAProxy refused, or a restart
            # of servicerouter would take it for the running one and never reload.
            if haproxy.read_current(path) == failed.encode("utf-8"):
                haproxy.put_back(path, None, existed=False)
            return
        if haproxy.read_current(path) == text.encode("utf-8"):
            return
        if self._write(text):
            log.warning("restored %s to the config HAProxy runs", path)

    def _try_runtime(self, text: str, parsed: ParsedConfig,
                     certs: CertPlan | None = None,
                     services: tuple[Service, ...] | None = None) -> bool:
        if not (self.settings.runtime_updates and self.runtime is not None
                and self._runtime_trusted and self._applied_parsed is not None):
            return False
        if self.manager is not None and not self.manager.alive():
            return False
        verdict = plan_runtime_update(self._applied_parsed, parsed)
        if verdict.plan is None:
            log.debug("reload needed: %s", verdict.reason)
            return False
        plan = verdict.plan
        if certs is not None and not certs.empty and not self._try_cert_runtime(certs):
            return False
        try:
            self.runtime.apply(plan)
        except RuntimeUpdateError as err:
            log.warning("Runtime API refused a server change (%s); reloading instead", err)
            self._runtime_trusted = False
            return False
        # Every added server line was just parsed and accepted by HAProxy itself, and
        # the rest of the file is the validated config it runs: no haproxy -c needed.
        self._write(text)
        self._applied_text = text
        self._applied_parsed = parsed
        if services is not None:  # what HAProxy runs now is their last good version
            self._good_by_app = _by_app(services)
            self._apply_failures = 0
        self.metrics.runtime_updates.inc()
        self.metrics.runtime_servers.inc(len(plan.add), action="add")
        self.metrics.runtime_servers.inc(len(plan.remove), action="remove")
        self.metrics.runtime_servers.inc(len(plan.readdress), action="readdress")
        self.state.last_apply = "runtime"
        self.state.last_runtime_update = time.time()
        log.info("applied through the Runtime API without reload: +%d -%d ~%d servers, "
                 "%d map entries", len(plan.add), len(plan.remove), len(plan.readdress),
                 plan.map_changes)
        return True

    # ------------------------------------------------------------------ certificates

    def _cert_plan(self) -> CertPlan:
        """Certificate files whose content HAProxy does not have yet (pure decision)."""
        served = self.router.served_certs
        if self._applied_certs is None:  # HAProxy ran before us: it has what was on disk
            self._applied_certs = startup_baseline(served, self.router.written_certs)
        return plan_cert_updates(self._applied_certs, served)

    def _certs_key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((path, c.digest) for path, c in self.router.served_certs.items()))

    def _try_cert_runtime(self, plan: CertPlan) -> bool:
        """Swap changed certificates through the Runtime API; False: reload instead."""
        if plan.reload_reason:
            log.info("certificate change needs a reload: %s", plan.reload_reason)
            return False
        if not plan.update:
            return True
        if not (self.settings.runtime_updates and self.cert_updater is not None):
            log.info("certificate %s changed; no Runtime API: reloading", plan.update[0])
            return False
        if self.manager is not None and not self.manager.alive():
            return False
        assert self._applied_certs is not None
        served = self.router.served_certs
        for path in plan.update:
            try:
                self.cert_updater.update(path, served[path].pem, ours=served.keys())
            except RuntimeUpdateError as err:
                self.metrics.cert_updates.inc(result="failed")
                log.warning("Runtime API refused certificate %s (%s); reloading instead",
                            path, err)
                return False
            # live now: the fallback reload reads the same file from disk
            self._applied_certs[path] = served[path]
            self.metrics.cert_updates.inc(result="ok")
            log.info("certificate %s (%s) swapped through the Runtime API without reload",
                     path, ", ".join(served[path].names) or "default")
        self.state.last_cert_update = time.time()
        return True

    def _write(self, text: str) -> bool:
        """Put the config HAProxy now runs on disk (atomically), for its next reload."""
        path = self.router.settings.config_path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = haproxy.DEFAULT_MODE
        try:
            mapfiles.install(text, self.router.settings.render_options.map_dir)
            tmp = haproxy.write_temp(directory, os.path.basename(path), text.encode(), mode)
            os.replace(tmp, path)
            fsync_dir(directory)
        except OSError as err:
            log.error("HAProxy runs a config that %s could not be updated to: %s", path, err)
            return False
        return True

    def _reload(self) -> ReloadResult:
        if self.reloader is None:
            return ReloadResult(True, "no reloader")
        result = self.reloader.reload()
        self.metrics.reloads.inc(result="ok" if result.ok else "failed")
        if result.ok:
            self.state.last_reload = time.time()
            if self.runtime is not None:
                self.runtime.forget()
            self._runtime_trusted = True
            log.info("HAProxy started" if result.started else "HAProxy reloaded")
        else:
            log.error("HAProxy %s failed: %s", "start" if result.started else "reload",
                      result.message)
        return result

    def mark_running(self, text: str | None) -> None:
        """Tell the engine which config HAProxy runs now (after start or restart)."""
        self._applied_text = text
        self._applied_parsed = parse_config(text) if text is not None else None
        self._runtime_trusted = text is not None
        # HAProxy (re)started from the files on disk: those of the last sync
        self._applied_certs = dict(self.router.served_certs) if text is not None else None
        if self.runtime is not None:
            self.runtime.forget()

    # ------------------------------------------------------------------ validation

    def _check(self, text: str) -> tuple[bool, str]:
        settings = self.router.settings
        if not settings.validate or not haproxy.haproxy_available(settings.haproxy_bin):
            return True, ""
        directory = os.path.dirname(os.path.abspath(settings.config_path))
        map_dir = settings.render_options.map_dir
        if mapfiles.maps_of(text, map_dir).files:  # checked with its maps, out of place
            ok, message = mapfiles.check_text(text, map_dir, directory, settings.haproxy_bin)
            self.metrics.validations.inc(result="ok" if ok else "failed")
            return ok, message
        fd, path = tempfile.mkstemp(prefix=".sr-check-", suffix=".cfg", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            ok, message = haproxy.check_config(path, settings.haproxy_bin)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.metrics.validations.inc(result="ok" if ok else "failed")
        return ok, message.replace(path, "<config>")

    def _render(self, services: Sequence[Service], options: RenderOptions) -> str:
        return self.router.render(services, options)

    def _validate_or_quarantine(
        self, text: str, services: tuple[Service, ...], options: RenderOptions,
    ) -> tuple[bool, tuple[Service, ...], str]:
        """Validate; on rejection bisect the apps, quarantine the bad ones, apply the rest."""
        ok, message = self._check(text)
        if ok:
            return True, services, text
        log.error("HAProxy rejects the new config; looking for the apps that break it:\n%s",
                  _tail(message))
        by_app = _by_app(services)
        suspects = [a for a, items in by_app.items() if self._good_by_app.get(a) != items]
        trusted = [a for a in by_app if a not in suspects]

        def render_apps(app_ids: Iterable[str]) -> str:
            wanted = set(app_ids)
            return self._render([s for s in services if s.app_id in wanted], options)

        if not self._check(render_apps(trusted))[0]:
            trusted, suspects = [], list(by_app)
            if not self._check(render_apps([]))[0]:
                log.error("HAProxy rejects the config even without any app: the templates "
                          "or settings are at fault; keeping the running config")
                return False, services, text
        good, bad = find_culprits(trusted, suspects,
                                  lambda app_ids: self._check(render_apps(app_ids)))
        now = time.time()
        for app_id, why in bad.items():
            entry = self.quarantine.get(app_id)
            if entry is not None:  # even its frozen version is rejected now: left out
                entry.frozen, entry.reason = (), _tail(why, 3)
                log.error("app %s: HAProxy now rejects its frozen version too; left out:\n%s",
                          app_id, _tail(why, 5))
                continue
            frozen = self._good_by_app.get(app_id, ())
            self.quarantine[app_id] = Quarantined(app_id, _tail(why, 3), now,
                                                  _fingerprint(by_app[app_id]), frozen)
            log.error("app %s quarantined: HAProxy rejects its config%s:\n%s", app_id,
                      " (its last good version keeps routing)" if frozen else "", _tail(why, 5))
        self.metrics.quarantined.set(len(self.quarantine))
        kept = set(good)
        final = tuple(s for s in services if s.app_id in kept)
        final = self._with_frozen(final, by_app)
        final_text = self._render(final, options)
        ok, message = self._check(final_text)
        if not ok:
            log.error("config still rejected after quarantine; keeping the running config:\n%s",
                      _tail(message))
            return False, services, text
        return True, final, final_text

    # ------------------------------------------------------------------ quarantine

    def _apply_quarantine(self, services: tuple[Service, ...]) -> tuple[Service, ...]:
        """Leave quarantined apps out (or frozen) until their routing changes.

        An app left out because its port was busy is also released once the
        port can be bound again.
        """
        if not self.quarantine:
            return services
        by_app = _by_app(services)
        for app_id, entry in list(self.quarantine.items()):
            current = by_app.get(app_id)
            if current is None or _fingerprint(current) != entry.fingerprint:
                log.info("app %s changed (or is gone): released from quarantine", app_id)
                del self.quarantine[app_id]
            elif entry.cause == "bind" and self._may_bind(entry.binds):
                log.info("app %s: trying %s again: released from quarantine", app_id,
                         ", ".join(entry.binds))
                del self.quarantine[app_id]
        self.metrics.quarantined.set(len(self.quarantine))
        kept = tuple(s for s in services if s.app_id not in self.quarantine)
        return self._with_frozen(kept, by_app)

    def _with_frozen(self, services: tuple[Service, ...],
                     current: Mapping[str, tuple[Service, ...]]) -> tuple[Service, ...]:
        """Add the frozen versions of quarantined apps, with their current servers.

        Only the routing is frozen: servers follow Marathon (``current``: the
        app's services now), so a task killed or added while its app is
        quarantined is still removed or added.
        """
        frozen = [s for e in self.quarantine.values() for s in e.frozen]
        if not frozen:
            return services
        taken = {s.bind_port for s in services}
        extra = [_current_servers(s, current.get(s.app_id, ()))
                 for s in frozen if s.bind_port not in taken]
        return tuple(sorted(services + tuple(extra), key=lambda s: (s.app_id, s.bind_port)))

    def _leave_out_busy_ports(self, services: tuple[Service, ...], text: str,
                              options: RenderOptions) -> tuple[tuple[Service, ...], str]:
        """Before a reload: quarantine apps whose new frontends' ports another process holds.

        ``haproxy -c`` does not bind, so a busy port would only show when the
        reload fails (for every app).  Only addresses the running config does
        not listen on are tried (HAProxy hands those over itself); the test
        socket shares ports as HAProxy does, so HAProxy's own never look busy.
        """
        if "noreuseport" in text:  # HAProxy would not share: the test cannot tell
            return services, text
        busy = [haproxy.BindFailure(frontend, address, "address in use")
                for frontend, addresses in new_binds(self._applied_parsed,
                                                     self._parse(text)).items()
                for address in addresses if haproxy.address_free(address) is False]
        if not busy:
            return services, text
        again = self._quarantine_binds(busy, services, options)
        if again is None:  # no app owns them (a shared frontend): let HAProxy say
            return services, text
        ok, message = self._check(again[1])
        if not ok:
            log.error("config without the apps whose ports are busy is rejected:\n%s",
                      _tail(message))
            return services, text
        return again

    def _quarantine_bind_failures(self, message: str, services: tuple[Service, ...],
                                  options: RenderOptions) -> tuple[tuple[Service, ...], str] | None:
        """HAProxy could not bind some frontends: leave their apps out, re-render.

        None when no app owns a failed frontend (nothing to leave out).
        """
        failures = haproxy.bind_failures(message)
        if not failures:
            return None
        return self._quarantine_binds(failures, services, options)

    def _quarantine_binds(self, failures: Sequence[haproxy.BindFailure],
                          services: tuple[Service, ...],
                          options: RenderOptions) -> tuple[tuple[Service, ...], str] | None:
        by_frontend = {s.backend: s.app_id for s in services}
        by_port = {s.bind_port: s.app_id for s in services}
        culprits: dict[str, list[haproxy.BindFailure]] = {}
        for failure in failures:
            app_id = by_frontend.get(failure.frontend) or by_port.get(_port_of(failure.address))
            if app_id is None:
                log.error("cannot bind %s of frontend %s (%s): no app to leave out",
                          failure.address, failure.frontend, failure.reason)
                continue
            culprits.setdefault(app_id, []).append(failure)
        culprits = {a: f for a, f in culprits.items() if a not in self.quarantine}
        if not culprits:
            return None
        by_app = _by_app(services)
        now = time.time()
        for app_id, failed in culprits.items():
            addresses = tuple(f.address for f in failed if f.address) or tuple(
                f"{s.bind_addr}:{s.bind_port}" for s in by_app[app_id])
            ports = {_port_of(a) for a in addresses}
            frozen = tuple(self._good_by_app.get(app_id, ()))
            if any(s.bind_port in ports for s in frozen):
                frozen = ()  # its last good version wants the same port
            reason = "; ".join(f"cannot bind {f.address or f.frontend}: {f.reason}"
                               for f in failed)
            self.quarantine[app_id] = Quarantined(app_id, reason, now,
                                                  _fingerprint(by_app[app_id]), frozen,
                                                  cause="bind", binds=addresses)
            log.error("app %s quarantined: %s%s", app_id, reason,
                      " (its last good version keeps routing)" if frozen else "")
        self.metrics.quarantined.set(len(self.quarantine))
        self._watch_busy_ports()
        kept = tuple(s for s in services if s.app_id not in culprits)
        final = self._with_frozen(kept, by_app)
        return final, self._render(final, options)

    def _may_bind(self, addresses: Iterable[str]) -> bool:
        """Retry an app quarantined for a bind failure: its ports are free, or this is a
        SIGHUP/periodic retry and the test cannot tell (a privileged port, say)."""
        state = _bind_state(addresses)
        return state == "free" or (state == "unknown" and self._retrying)

    def _watch_busy_ports(self) -> None:
        """While apps wait for a busy port, test it now and then; sync once it is free."""
        if self._bind_watch is not None and self._bind_watch.is_alive():
            return

        def check() -> None:
            self._bind_watch = None
            waiting = [e for e in list(self.quarantine.values()) if e.cause == "bind"]
            if not waiting:
                return
            if any(_bind_state(e.binds) == "free" for e in waiting):
                self._retry_due = True
                self.trigger.fire()
            else:
                self._watch_busy_ports()

        timer = threading.Timer(max(0.05, self.settings.backoff_cap), check)
        timer.daemon = True
        self._bind_watch = timer
        timer.start()

    def handle_start_failure(self, message: str) -> bool:
        """HAProxy would not start: if apps' ports are busy, write the config without them.

        True when a new config is on disk (start again); False: nothing to leave out.
        """
        with self._sync_lock:
            if self._last_applied is None:
                return False
            services, options = self._last_applied
            again = self._quarantine_bind_failures(message, services, options)
            if again is None:
                return False
            services, text = again
            ok, why = self._check(text)
            if not ok or not self._write(text):
                log.error("config without the apps whose ports are busy is rejected:\n%s",
                          _tail(why))
                return False
            self._applied_text = text
            self._applied_parsed = self._parse(text)
            self._applied_ok(services, options)
            return True

    # ------------------------------------------------------------------ reporting

    def _log_problems(self, model: Model) -> None:
        current = {p.log_line() for p in model.problems}
        for text in sorted(current - self._logged_problems):
            log.warning("%s", text)
        self._logged_problems = current
        self.state.problems = sorted({str(p) for p in model.problems})[:200]
        conflicts = route_conflicts(model.problems)
        self.state.conflicts = conflicts
        self.metrics.route_conflicts.set(sum(len(c["losers"]) for c in conflicts))

    def _set_services(self, services: Sequence[Service]) -> None:
        self.state.services = list(describe_services(services))
        self.metrics.services.set(len(services))

    def health(self) -> tuple[bool, str]:
        """For /healthz: the loop is turning and a managed HAProxy is up."""
        if self.manager is not None and not self.manager.alive():
            return False, "managed HAProxy is not running"
        started = self._sync_started
        if started is not None and time.monotonic() - started > STUCK_AFTER:
            return False, f"a sync has been running for over {STUCK_AFTER:.0f}s"
        if self.state.syncs == 0 and self.outage is None and self._applied_text is None:
            return True, "starting"
        return True, "ok"

    def snapshot(self) -> dict[str, Any]:
        """For /status."""
        state = self.state
        stream = self.stream
        outage = self.outage
        marathon: dict[str, Any] = {
            "host": getattr(self.source, "current", None),
            "available": outage is None,
        }
        if outage is not None:
            marathon.update(outage_since=utc_iso(outage.since), error=outage.error,
                            failures=outage.failures)
        if stream is not None:
            st = stream.status
            marathon["event_stream"] = {
                "connected": st.connected,
                "host": st.host,
                "connected_since": utc_iso(st.connected_since) if st.connected_since else None,
                "connects": st.connects,
                "failures": st.failures,
                "last_error": st.last_error,
                "events": st.events,
            }
        metrics = self.metrics
        snapshot: dict[str, Any] = {
            "last_sync": utc_iso(state.last_sync) if state.last_sync else None,
            "last_sync_kind": state.last_sync_kind,
            "last_sync_duration_seconds": state.last_sync_duration,
            "last_sync_error": state.last_sync_error,
            "last_apply": state.last_apply,
            "last_reload": utc_iso(state.last_reload) if state.last_reload else None,
            "syncs": state.syncs,
            "marathon": marathon,
            "apps": state.apps,
            "tasks": state.tasks,
            "services": state.services,
            "problems": state.problems,
            "conflicts": state.conflicts,
            "quarantined": [
                {"app": q.app_id, "reason": q.reason, "since": utc_iso(q.since),
                 "cause": q.cause, "frozen_services": len(q.frozen)}
                for q in list(self.quarantine.values())
            ],
            "reloads": int(metrics.reloads.value(result="ok")),
            "failed_reloads": int(metrics.reloads.value(result="failed")),
            "runtime_updates": int(metrics.runtime_updates.total()),
            "certificate_updates": int(metrics.cert_updates.value(result="ok")),
            "last_certificate_update": (utc_iso(state.last_cert_update)
                                        if state.last_cert_update else None),
            "certificates": self._certificates(),
            "removal_hold": self.router.removal_guard.status(),
        }
        if self.manager is not None:
            ms = self.manager.stats
            snapshot["haproxy"] = {"managed": True, "master_pid": self.manager.master_pid,
                                   "running": self.manager.alive(), "restarts": ms.restarts,
                                   "last_error": ms.last_error}
        if self.runtime is not None:
            rs = self.runtime.stats
            snapshot["runtime_api"] = {"servers_added": rs.added, "servers_removed": rs.removed,
                                       "servers_readdressed": rs.readdressed,
                                       "draining": rs.draining}
        return snapshot

    def _certificates(self) -> list[dict[str, Any]]:
        """The expiry report of the last sync's bundles (no files read here)."""
        return list(self.router.certificates)


def _current_servers(frozen: Service, now: Sequence[Service]) -> Service:
    """A frozen service with the servers its app has now on the same port."""
    for service in now:
        if service.service_port == frozen.service_port:
            return replace(frozen, servers=service.servers)
    for service in now:
        if service.index == frozen.index:
            return replace(frozen, servers=service.servers)
    return frozen


def _port_of(address: str) -> int | None:
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def _bind_state(addresses: Iterable[str]) -> str:
    """"busy" if one address is in use, "free" if all can be bound, else "unknown"."""
    results = [haproxy.address_free(a) for a in addresses]
    if False in results:
        return "busy"
    return "free" if all(results) else "unknown"


def _tail(message: str, lines: int = 12) -> str:
    kept = [line for line in message.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# --------------------------------------------------------------------------- wiring


@dataclass
class LiveOptions:
    """How :func:`run_live` is wired (from the command line)."""

    mode: str  # "sse", "listening" or "poll"
    callback_url: str | None = None
    listen_addr: str = ""
    status_listen: tuple[str, int] | None = None
    status_token: str | None = None
    stall_timeout: float = 60.0
    drain_timeout: float = 10.0
    runtime_socket: str | None = None
    managed: ManagedHAProxy | None = None
    reload_command: Sequence[str] | None = None
    event_types: Sequence[str] | None = None


def run_live(router: Router, options: LiveOptions, settings: LiveSettings,
             on_ready: Callable[[LiveRouter], None] | None = None) -> int:
    """The long-running modes: wire stream/callbacks, HAProxy and status, then loop."""
    from servicerouter.apply.managed import RuntimeAPI
    from servicerouter.engine.runner import install_signal_handlers
    from servicerouter.serve.status import StatusServer

    source = router.source
    metrics = new_metrics()
    metrics.set_build(haproxy.haproxy_version(router.settings.haproxy_bin))  # build_info
    runtime: RuntimeApplier | None = None
    socket_path = options.runtime_socket
    if options.managed is not None:
        socket_path = options.managed.settings.runtime_socket
    cert_updater: CertUpdater | None = None
    if socket_path and settings.runtime_updates:
        runtime = RuntimeApplier(RuntimeAPI(socket_path), drain_timeout=options.drain_timeout)
        cert_updater = CertUpdater(runtime.api)
    reloader: Reloader | None = options.managed
    if reloader is None and options.reload_command:
        reloader = CommandReloader(options.reload_command)
    live = LiveRouter(router, reloader=reloader, runtime=runtime, metrics=metrics,
                      settings=settings, manager=options.managed, cert_updater=cert_updater)
    trigger = live.trigger
    install_signal_handlers(trigger)
    # SIGHUP: a full resync, not merely "a sync"
    _install_hup(live)

    cleanups: list[Callable[[], None]] = []
    status_server: StatusServer | None = None
    try:
        if options.status_listen is not None:
            try:
                status_server = StatusServer(
                    options.status_listen, metrics, live.snapshot, live.health,
                    options.status_token,
                    confirm_removal=lambda: removal_guard.confirm_removal(live))
            except OSError as err:  # the port is taken: one line, exit 2
                raise listen_error("--status-listen", options.status_listen, err) from None
            status_server.start()
            cleanups.append(status_server.stop)
            log.info("status on http://%s:%d/status", options.status_listen[0],
                     status_server.port)
        if runtime is not None:
            runtime.start()
            cleanups.append(runtime.stop)
        if options.managed is not None:
            if not _start_managed(live, options.managed):
                return 1
            cleanups.append(options.managed.stop)
        else:
            current = haproxy.read_current(router.settings.config_path)
            live._applied_text = current.decode("utf-8", "replace") if current else None
            live._applied_parsed = (parse_config(live._applied_text)
                                    if live._applied_text else None)
        if options.mode == "sse":
            if not isinstance(source, MarathonClient):
                log.error("--sse needs a Marathon URL, not a file: snapshot")
                return 2
            stream = EventStream(
                source.hosts, live.submit,
                on_connect=lambda host: live.request_resync(f"event stream connected to {host}"),
                on_error=live.stream_failed,
                settings=source.settings, stall_timeout=options.stall_timeout,
                backoff=Backoff(settings.backoff_base, settings.backoff_cap),
                **({"event_types": options.event_types} if options.event_types is not None
                   else {}),
            )
            live.stream = stream
            stream.start()
            cleanups.append(stream.stop)
        elif options.mode == "listening":
            _start_callbacks(live, source, options, cleanups)
            live.request_resync("start")
        else:
            live.request_resync("start")
        if on_ready is not None:
            on_ready(live)
        live.run(initial_sync=False)
    except ListenError as err:
        log.error("%s", err)
        return 2
    finally:
        live.stop()
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:  # keep cleaning up
                log.exception("cleanup failed")
    return 0


def _install_hup(live: LiveRouter) -> None:
    import signal

    if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, lambda _s, _f: live.resync_from_signal())


def _start_managed(live: LiveRouter, managed: ManagedHAProxy) -> bool:
    """First config, then HAProxy: it must never start on an empty or stale file."""
    from servicerouter.apply.managed import ManagerError

    settings = live.router.settings
    reloader, live.reloader = live.reloader, None  # write only: HAProxy starts below
    live.sync(_full("start"))
    live.reloader = reloader
    if haproxy.read_current(settings.config_path) is None:
        log.error("no HAProxy config could be produced (Marathon unreachable and no "
                  "config on disk); waiting for Marathon before starting HAProxy")
        live.reloader = None
        while haproxy.read_current(settings.config_path) is None:
            if not live.trigger.wait():
                return False
            live.step()
        live.reloader = reloader
    for attempt in range(1, MAX_BIND_ROUNDS + 1):
        try:
            managed.start()
            break
        except ManagerError as err:
            # An app's port held by another process: start without that app.
            if attempt < MAX_BIND_ROUNDS and live.handle_start_failure(str(err)):
                log.warning("starting HAProxy again without the apps whose ports are busy")
                continue
            log.error("cannot start HAProxy: %s", err)
            return False
    text = haproxy.read_current(settings.config_path)
    live.mark_running(text.decode("utf-8", "replace") if text else None)
    managed.on_restart = lambda: _after_restart(live)
    if managed.adopted:  # it may run an older file: load ours once
        live._reload()
    return True


def _after_restart(live: LiveRouter) -> None:
    text = haproxy.read_current(live.router.settings.config_path)
    live.mark_running(text.decode("utf-8", "replace") if text else None)
    live.metrics.haproxy_restarts.inc()
    live.request_resync("HAProxy restarted")


def _full(reason: str) -> Pending:
    pending = Pending()
    pending.request_full(reason)
    return pending


def _start_callbacks(live: LiveRouter, source: Any, options: LiveOptions,
                     cleanups: list[Callable[[], None]]) -> None:
    """Serve callbacks and subscribe; untokened callbacks are only hints (see submit)."""
    from servicerouter.serve.callback import CallbackServer, callback_port, callback_token

    assert options.callback_url is not None
    url = options.callback_url
    shown = redact(url)  # the token is a secret: never in a log line
    token = callback_token(url)
    if token:
        on_event: Callable[[dict[str, Any]], None] = live.submit
    else:
        def on_event(event: dict[str, Any]) -> None:
            live.submit(event, trusted=False)

        log.info("callback URL has no ?token=: callback events only make servicerouter "
                 "refetch the apps they name from Marathon")
    address = (options.listen_addr, callback_port(url))
    try:
        server = CallbackServer(address, on_event, token=token)
    except OSError as err:  # the port is taken: one line, exit 2
        raise listen_error("--listening", address, err) from None
    server.start()
    cleanups.append(server.stop)
    log.info("serving Marathon callbacks on %s:%d", options.listen_addr or "*", server.port)
    try:
        source.add_subscriber(url)
    except MarathonError as err:
        log.error("could not subscribe %s: %s (will resync periodically)", shown,
                  redact(str(err)))
        return
    log.info("subscribed %s to Marathon events", shown)

    def unsubscribe() -> None:
        log.info("Cleanup, removing subscription to %s", shown)
        try:
            source.remove_subscriber(url)
        except MarathonError as err:
            log.error("could not remove subscription %s: %s", shown, redact(str(err)))

    cleanups.append(unsubscribe)


__all__ = [
    "CommandReloader",
    "LiveOptions",
    "LiveRouter",
    "LiveSettings",
    "Reloader",
    "run_live",
]
