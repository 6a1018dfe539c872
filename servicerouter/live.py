"""The long-running router: events in, HAProxy kept exact, nothing dropped.

:class:`LiveRouter` owns a copy of Marathon's apps (the *mirror*), folds
events into it (:mod:`servicerouter.incremental`), and on each coalesced
sync builds the model, renders the config and applies it the cheapest safe
way:

1. config text unchanged -> nothing;
2. only servers of existing backends changed (:mod:`servicerouter.confdiff`)
   and HAProxy has a Runtime API -> apply it live, write the file for the
   next reload, no reload;
3. otherwise validate with ``haproxy -c``; if HAProxy rejects it, find the
   offending apps by bisection (O(log N) validations per bad app), quarantine
   them and apply the rest; then write and reload (confirmed, when managed).

Certificates follow the same rule: bundle files have stable paths here, so a
renewed certificate for the same names changes only a file's content, and
(:mod:`servicerouter.certupdate`) it is swapped in with ``set ssl cert`` /
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

from servicerouter import haproxy
from servicerouter.certupdate import (
    CertPlan,
    CertUpdater,
    ServedCert,
    plan_cert_updates,
    startup_baseline,
)
from servicerouter.confdiff import ParsedConfig, parse_config, plan_runtime_update
from servicerouter.events import Backoff, EventStream
from servicerouter.incremental import (
    APP_EVENTS,
    IGNORED,
    RESYNC_EVENT,
    TASK_EVENTS,
    Pending,
    apply_task_events,
    classify,
    index_apps,
)
from servicerouter.manager import ManagedHAProxy, ReloadResult, RuntimeApplier, RuntimeUpdateError
from servicerouter.marathon import MarathonClient, MarathonError, MarathonNotFound, parse_apps
from servicerouter.model import Model, Service
from servicerouter.render import RenderOptions, describe_services
from servicerouter.resolver import CachingResolver
from servicerouter.runner import Router, SyncTrigger, gc_paused, utc_iso
from servicerouter.status import Metrics, route_conflicts

log = logging.getLogger("servicerouter.live")

KNOWN_EVENTS = IGNORED | TASK_EVENTS | APP_EVENTS | {RESYNC_EVENT, "group_change_success",
                                                     "group_change_failed"}
STUCK_AFTER = 300.0  # seconds a sync may run before /healthz says the router is stuck


class Reloader(Protocol):
    """Makes HAProxy load the config file on disk."""

    def reload(self) -> ReloadResult: ...


class CommandReloader:
    """``--command`` (or the detected init system): HAProxy managed by someone else."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)

    def reload(self) -> ReloadResult:
        ok = haproxy.run_reload(self.command)
        return ReloadResult(ok, "reloaded" if ok else "reload command failed")


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
        self.metrics = metrics or Metrics()
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
        # The certificate files HAProxy was last given (None: not known yet).
        self._applied_certs: dict[str, ServedCert] | None = None
        self._runtime_trusted = False
        self._retry: threading.Timer | None = None
        self._logged_problems: set[str] = set()
        self._last_full = time.monotonic()
        self._sync_started: float | None = None
        self._hup = False

    # ------------------------------------------------------------------ input (any thread)

    def submit(self, event: Mapping[str, Any]) -> None:
        """Queue one Marathon event; the sync runs later on the loop thread."""
        event_type = event.get("eventType")
        known = isinstance(event_type, str) and event_type in KNOWN_EVENTS
        self.metrics.events.inc(type=event_type if known else "other")  # bounded labels
        change = classify(event)
        if change.kind == "ignore":
            return
        with self._pending_lock:
            self._pending.add(change, event, time.monotonic())
        log.debug("event %s: %s %s", event_type, change.kind, ",".join(change.app_ids))
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
        """One sync of whatever is pending (a full resync when nothing is)."""
        pending = self._take_pending()
        if self._hup:
            self._hup = False
            pending.request_full("SIGHUP")
        overdue = time.monotonic() - self._last_full >= self.settings.resync_interval
        if pending.empty or (overdue and not pending.full):
            pending.request_full("periodic resync")  # also under constant churn
        return self.sync(pending)

    def stop(self) -> None:
        self.trigger.stop()
        if self._retry is not None:
            self._retry.cancel()

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
        ok = self._build_and_apply(kind, pending)
        duration = time.perf_counter() - start
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
        log.info("retrying Marathon in %.1fs", delay)
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
        model = router.build_model(self._apps.values())
        options = router._prepare_certificates(options, model.services, stable_paths=True)
        model = router._label_templates(model, options)
        self._log_problems(model)
        only_resync = pending.events <= 1 and not pending.task_events and not pending.refetch
        if kind == "full" and only_resync and self._model is not None and \
                model.services != self._model.services:
            self.metrics.resync_drift.inc()
            log.info("full resync (%s) changed routing", ", ".join(pending.full_reasons))
        self._model = model
        self.state.apps = model.app_count
        self.state.tasks = model.task_count
        services = self._apply_quarantine(model.services)
        text = router.render(services, options)
        if settings.dry:
            if text != self._applied_text:
                router._print_dry(text)
                self._applied_text = text
            self._set_services(services)
            return True
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
        elif self._try_runtime(text, parse_config(text), certs):
            self._set_services(services)
            return True
        certs_key = self._certs_key()
        if text == self._failed_text and certs_key == self._failed_certs:
            self.state.last_apply = "failed"
            return False
        validated, services, text = self._validate_or_quarantine(text, services, options)
        if not validated:
            self._failed_text, self._failed_certs = text, certs_key
            self.state.last_apply = "failed"
            return False
        if text == self._applied_text and self._cert_plan().empty:
            self.state.last_apply = "unchanged"
            self._set_services(services)
            return True
        settings = self.router.settings
        applied = haproxy.apply_config(text, settings.config_path, validate=False,
                                       haproxy_bin=settings.haproxy_bin, reload=None)
        if not applied.ok:
            self.state.last_apply = "failed"
            return False
        result = self._reload()
        if not result.ok:
            self._failed_text, self._failed_certs = text, certs_key
            self.state.last_apply = "failed"
            return False
        self._failed_text = None
        self._applied_text = text
        self._applied_parsed = parse_config(text)
        self._applied_certs = dict(self.router.served_certs)  # a reload reads them all
        self._good_by_app = _by_app(services)
        self.state.last_apply = "reload"
        self._set_services(services)
        return True

    def _try_runtime(self, text: str, parsed: ParsedConfig,
                     certs: CertPlan | None = None) -> bool:
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
        self.metrics.runtime_updates.inc()
        self.metrics.runtime_servers.inc(len(plan.add), action="add")
        self.metrics.runtime_servers.inc(len(plan.remove), action="remove")
        self.metrics.runtime_servers.inc(len(plan.readdress), action="readdress")
        self.state.last_apply = "runtime"
        self.state.last_runtime_update = time.time()
        log.info("applied through the Runtime API without reload: +%d -%d ~%d servers",
                 len(plan.add), len(plan.remove), len(plan.readdress))
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

    def _write(self, text: str) -> None:
        """Put the config HAProxy now runs on disk, for its next reload."""
        path = self.router.settings.config_path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = haproxy.DEFAULT_MODE
        try:
            tmp = haproxy.write_temp(directory, os.path.basename(path), text.encode(), mode)
            os.replace(tmp, path)
        except OSError as err:
            log.error("server changes are live but %s could not be written: %s", path, err)

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
            log.info("HAProxy reloaded")
        else:
            log.error("HAProxy reload failed: %s", result.message)
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
        good = list(trusted)
        remaining = list(suspects)
        bad: dict[str, str] = {}
        while remaining:
            candidate = render_apps(good + remaining)
            ok, message = self._check(candidate)
            if ok:
                good.extend(remaining)
                break
            culprit, cleared, why = self._bisect(good, remaining, render_apps)
            good.extend(cleared)
            if culprit is None:  # nothing bisectable: keep what was already good
                break
            bad[culprit] = why or message
            remaining = [a for a in remaining if a != culprit and a not in cleared]
        now = time.time()
        for app_id, why in bad.items():
            frozen = self._good_by_app.get(app_id, ())
            self.quarantine[app_id] = Quarantined(app_id, _tail(why, 3), now,
                                                  _fingerprint(by_app[app_id]), frozen)
            log.error("app %s quarantined: HAProxy rejects its config%s:\n%s", app_id,
                      " (its last good version keeps routing)" if frozen else "", _tail(why, 5))
        self.metrics.quarantined.set(len(self.quarantine))
        kept = set(good)
        final = tuple(s for s in services if s.app_id in kept)
        final = self._with_frozen(final)
        final_text = self._render(final, options)
        ok, message = self._check(final_text)
        if not ok:
            log.error("config still rejected after quarantine; keeping the running config:\n%s",
                      _tail(message))
            return False, services, text
        return True, final, final_text

    def _bisect(self, good: list[str], suspects: list[str],
                render_apps: Callable[[Iterable[str]], str]) -> tuple[str | None, list[str], str]:
        """One app that breaks ``good + suspects`` (known bad), in log2(N) checks.

        Returns (culprit, suspects proven harmless on the way, HAProxy's message).
        """
        base = list(good)
        cleared: list[str] = []
        window = list(suspects)
        message = ""
        while len(window) > 1:
            half = window[: len(window) // 2]
            ok, why = self._check(render_apps(base + half))
            if ok:
                base.extend(half)
                cleared.extend(half)
                window = window[len(half):]
            else:
                message = why
                window = half
        if not window:
            return None, cleared, message
        if not message:
            message = self._check(render_apps(base + window))[1]
        return window[0], cleared, message

    # ------------------------------------------------------------------ quarantine

    def _apply_quarantine(self, services: tuple[Service, ...]) -> tuple[Service, ...]:
        """Leave quarantined apps out (or frozen) until their routing changes."""
        if not self.quarantine:
            return services
        by_app = _by_app(services)
        for app_id, entry in list(self.quarantine.items()):
            current = by_app.get(app_id)
            if current is None or _fingerprint(current) != entry.fingerprint:
                log.info("app %s changed (or is gone): released from quarantine", app_id)
                del self.quarantine[app_id]
        self.metrics.quarantined.set(len(self.quarantine))
        kept = tuple(s for s in services if s.app_id not in self.quarantine)
        return self._with_frozen(kept)

    def _with_frozen(self, services: tuple[Service, ...]) -> tuple[Service, ...]:
        frozen = [s for e in self.quarantine.values() for s in e.frozen]
        if not frozen:
            return services
        taken = {s.bind_port for s in services}
        extra = [s for s in frozen if s.bind_port not in taken]
        return tuple(sorted(services + tuple(extra), key=lambda s: (s.app_id, s.bind_port)))

    # ------------------------------------------------------------------ reporting

    def _log_problems(self, model: Model) -> None:
        current = {str(p) for p in model.problems}
        for text in sorted(current - self._logged_problems):
            log.warning("skipped %s", text)
        self._logged_problems = current
        self.state.problems = sorted(current)[:200]
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
                 "frozen_services": len(q.frozen)}
                for q in list(self.quarantine.values())
            ],
            "reloads": int(metrics.reloads.value(result="ok")),
            "failed_reloads": int(metrics.reloads.value(result="failed")),
            "runtime_updates": int(metrics.runtime_updates.total()),
            "certificate_updates": int(metrics.cert_updates.value(result="ok")),
            "last_certificate_update": (utc_iso(state.last_cert_update)
                                        if state.last_cert_update else None),
            "certificates": self._certificates(),
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
    from servicerouter.manager import RuntimeAPI
    from servicerouter.runner import install_signal_handlers
    from servicerouter.status import StatusServer

    source = router.source
    metrics = Metrics()
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
            status_server = StatusServer(options.status_listen, metrics, live.snapshot,
                                         live.health, options.status_token)
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
    from servicerouter.manager import ManagerError

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
    try:
        managed.start()
    except ManagerError as err:
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
    from servicerouter.server import CallbackServer, callback_port, callback_token

    assert options.callback_url is not None
    server = CallbackServer((options.listen_addr, callback_port(options.callback_url)),
                            live.submit, token=callback_token(options.callback_url))
    server.start()
    cleanups.append(server.stop)
    log.info("serving Marathon callbacks on %s:%d", options.listen_addr or "*", server.port)
    try:
        source.add_subscriber(options.callback_url)
    except MarathonError as err:
        log.error("could not subscribe %s: %s (will resync periodically)",
                  options.callback_url, err)
        return
    log.info("subscribed %s to Marathon events", options.callback_url)

    def unsubscribe() -> None:
        log.info("Cleanup, removing subscription to %s", options.callback_url)
        try:
            source.remove_subscriber(options.callback_url)
        except MarathonError as err:
            log.error("could not remove subscription %s: %s", options.callback_url, err)

    cleanups.append(unsubscribe)


__all__ = [
    "CommandReloader",
    "LiveOptions",
    "LiveRouter",
    "LiveSettings",
    "Reloader",
    "run_live",
]
