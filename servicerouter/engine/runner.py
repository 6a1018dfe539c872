"""The loop: fetch, model, render, apply, and react to Marathon events.

The runner is the only part that knows every stage.  One :meth:`Router.sync`
is one pass through them, timed stage by stage: fetch, parse, derive
(:meth:`Router.full_pass`, shared with the live engine), then the live engine's
apply step once (:mod:`servicerouter.engine.one_shot`).  Failures keep the last
good state: when Marathon is unreachable nothing is rendered and nothing on disk
changes; an app HAProxy rejects is left out (the old file stays when every app is).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from servicerouter.engine import derive_steps
from servicerouter.engine.coalescing import SyncTrigger, install_signal_handlers
from servicerouter.engine.holds import HoldSettings, Routed
from servicerouter.engine.state_dir import (
    PORTS_FILE,
    default_state_dir,
    load_port_assignments,
    save_port_assignments,
)
from servicerouter.model.resolver import CachingResolver
from servicerouter.render.fragment_files import LazyFragments
from servicerouter.render.options import RenderOptions
from servicerouter.source.marathon import MarathonError, Source, parse_apps

if TYPE_CHECKING:
    from servicerouter.model.app_fields import RoutedBefore
    from servicerouter.model.services import Model, Service
    from servicerouter.render.config import Rendered
    from servicerouter.render.fragments import FragmentSet

# The model, render and apply stages (and Jinja2 under them) are imported where a
# sync first needs them, not here: a one-shot run whose Marathon answer was already
# applied stops after the digest (servicerouter.engine.unchanged) and never needs them.

log = logging.getLogger("servicerouter")



@dataclass(frozen=True)
class RouterSettings:
    """Everything a sync needs besides the source and the fragments."""

    config_path: str
    groups: tuple[str, ...] = ()
    validate: bool = True
    haproxy_bin: str = "haproxy"
    reload: tuple[str, ...] | None = None
    dry: bool = False
    render_options: RenderOptions = field(default_factory=RenderOptions)
    state_dir: str | None = None
    ssl_certs: tuple[str, ...] = ()
    certs_dir: str | None = "certs"
    strict_mode: bool = False  # only ports with HAPROXY_{n}_ENABLED=true
    health_check: bool = False  # only healthy, ready tasks; drain killing ones
    ip_per_task_ports: tuple[int, int] = (10050, 10100)
    allow_label_templates: bool = False  # HAPROXY_{n}_<FRAGMENT> labels, sandboxed
    # Large removals wait (servicerouter.engine.holds); --confirm-removal applies one now.
    removal_hold: HoldSettings = field(default_factory=HoldSettings)
    confirm_removal: bool = False
    # --dry: where the files its config names (certificates, crt-lists) and its
    # haproxy -c candidates go, so the preview is checkable on a fresh host.
    dry_files_dir: str | None = None
    # One-shot runs: skip parse and render when Marathon's answer is the one last
    # applied (see servicerouter.engine.unchanged).
    skip_unchanged_body: bool = False


@dataclass
class SyncResult:
    """The outcome of one sync (also what /status and logs report)."""

    ok: bool
    changed: bool = False
    reloaded: bool = False
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    model: Model | None = None
    finished_at: float = 0.0
    # Certificate bundles served: source, names, not_after, days_left, expiring
    # (within 14 days), problem (why a bundle was left out).
    certificates: list[dict[str, Any]] = field(default_factory=list)
    held: bool = False  # a large removal is held: the last config keeps serving
    unchanged: bool = False  # the answer was the one last applied: nothing parsed or rendered


@dataclass(frozen=True)
class Derived:
    """What :meth:`Router.derive_config` made of the apps: ``rendered`` None on ``error``."""

    model: Model
    options: RenderOptions
    rendered: Rendered | None
    error: str | None = None


class Router:
    """One router: a source, a fragment set and settings; syncs on demand."""

    def __init__(self, source: Source, fragments: FragmentSet | LazyFragments,
                 settings: RouterSettings,
                 resolver: Callable[[str], str | None] | None = None,
                 out: Any = None) -> None:
        self.source = source
        # A LazyFragments (the CLI's one-shot runs) is compiled when a sync first renders.
        self._fragments: Any = fragments
        self.settings = settings
        self.resolver = resolver or CachingResolver()
        # Certificate files and bind addresses named by labels, checked on this host.
        self._port_checks: Any = None  # servicerouter.model.preflight.PortChecks, on first use
        self.out = out or sys.stdout
        self.tls: Any = None  # servicerouter.tls.manager.TlsManager, made on first use
        self.label_overrides: dict[str, Any] = {}  # backend -> its label-template fragments
        self._template_checker: Any = None
        self._ignored_templates: set[tuple[str, str]] = set()
        # Auto-assigned IP-per-task ports, loaded from the state directory on first use.
        self._port_assignments: tuple[tuple[str, int], ...] | None = None
        self._ports_unsaved = False  # the last save failed: try again next sync
        self.certificates: list[dict[str, Any]] = []  # bundles, expiry, problems
        # Certificate files the last config makes HAProxy read (path -> ServedCert),
        # and the bundle files that sync rewrote (servicerouter.tls.swap uses both).
        self.served_certs: dict[str, Any] = {}
        self.written_certs: frozenset[str] = frozenset()
        self.last: SyncResult | None = None
        self._lock = threading.Lock()
        self._removal_guard: Any = None  # made on first use, like the stages it imports
        self._fast_path: Any = None  # servicerouter.engine.unchanged.FastPath, on first use
        self.default_cert_job: Any = None  # servicerouter.tls.default_cert, in a one-shot sync
        # Operator rules (servicerouter.rules): a RuleStore, or None for labels only;
        # the overlaid app copies, kept while app and rules stay (the live task path).
        self.rules_store: Any = None
        self._rules_overlay: Any = None  # made on first use (see rules_overlay)

    @property
    def rules_overlay(self) -> Any:
        """The overlaid app copies (servicerouter.rules.overlay.OverlayCache), kept while
        app and rules stay (the live task path).  Made when a sync first overlays rules:
        a run whose Marathon answer is unchanged loads no rule model."""
        if self._rules_overlay is None:
            from servicerouter.rules.overlay import OverlayCache

            self._rules_overlay = OverlayCache()
        return self._rules_overlay

    @property
    def fragments(self) -> FragmentSet:
        """The fragment set (loaded now if it was given lazily; its TemplateError propagates)."""
        if isinstance(self._fragments, LazyFragments):
            return self._fragments.get()
        return self._fragments

    def fragment_identity(self) -> Any:
        """What the unchanged-answer fast path digests of the fragments: the files'
        bytes when they are loaded lazily (no compiling), else the loaded texts."""
        if isinstance(self._fragments, LazyFragments):
            return self._fragments.digest()
        return sorted((name, frag.source, frag.text, frag.is_jinja)
                      for name, frag in self._fragments.fragments.items())

    @property
    def port_checks(self) -> Any:
        """Certificate files and bind addresses named by labels, checked on this host
        (servicerouter.model.preflight.PortChecks)."""
        if self._port_checks is None:
            from servicerouter.model.preflight import PortChecks

            self._port_checks = PortChecks()
        return self._port_checks

    @port_checks.setter
    def port_checks(self, checks: Any) -> None:
        self._port_checks = checks

    @property
    def removal_guard(self) -> Any:
        """Holds large removals (servicerouter.engine.removal_guard.RemovalGuard)."""
        if self._removal_guard is None:
            from servicerouter.engine import removal_guard

            settings = self.settings
            self._removal_guard = removal_guard.RemovalGuard(
                settings.removal_hold,
                os.path.join(self._state_dir(), removal_guard.HOLD_FILE),
                confirm_first=settings.confirm_removal)
        return self._removal_guard

    @removal_guard.setter
    def removal_guard(self, guard: Any) -> None:
        self._removal_guard = guard

    def sync(self) -> SyncResult:
        """One full pass; never raises for bad input or an unreachable Marathon."""
        with self._lock, gc_paused():
            result = self._sync()
            if self.default_cert_job is not None:  # reaped, whatever the sync did
                self.default_cert_job.wait()
                self.default_cert_job = None
            result.finished_at = time.time()
            self.last = result
            return result

    def _sync(self) -> SyncResult:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            body = self.source.fetch_apps_body()
            mark = time.perf_counter()
            timings["fetch"] = mark - start
            if settings_skip_unchanged(self.settings):
                # A cold run's default certificate is made beside the digest and the parse
                # (before the digest's thread starts: only a one-thread process forks).
                from servicerouter.tls import default_cert

                self.default_cert_job = default_cert.start(self._state_dir())
                if self._fast_path is None:
                    from servicerouter.engine.unchanged import FastPath

                    self._fast_path = FastPath(self)
                if self._fast_path.unchanged(body, timings, start):
                    return SyncResult(ok=True, timings=timings, unchanged=True)
                mark = time.perf_counter()
            apps = parse_apps(body)
            del body
            timings["parse"] = time.perf_counter() - mark
        except MarathonError as err:
            log.error("keeping the current config: %s", err)
            return SyncResult(ok=False, error=str(err), timings=timings)

        from servicerouter.engine import removal_guard
        from servicerouter.engine.one_shot import apply_once

        # --health-check keeps a task of unknown health where the config on disk has it.
        previous = removal_guard.previous_on_disk(self) if self.settings.health_check else None
        derived = self.full_pass(apps, previous, timings=timings)
        model = derived.model
        if derived.rendered is None:
            return SyncResult(ok=False, error=derived.error, timings=timings, model=model)
        mark = time.perf_counter()
        # The live engine's apply step, once (servicerouter.engine.one_shot).
        applied = apply_once(self, derived)
        timings["write"] = time.perf_counter() - mark
        if self.settings.dry:
            return SyncResult(ok=True, timings=timings, model=model)
        if applied.held:
            return SyncResult(ok=False, held=True, timings=timings, model=model,
                              error=applied.error)
        if self._fast_path is not None:
            self._fast_path.applied(applied.ok, model, self.certificates)
        timings["total"] = time.perf_counter() - start
        log.info(
            "sync timing: fetch=%.3fs parse=%.3fs model=%.3fs certs=%.3fs render=%.3fs "
            "write=%.3fs total=%.3fs apps=%d tasks=%d services=%d skipped=%d",
            timings.get("fetch", 0), timings.get("parse", 0), timings["model"],
            timings["certs"], timings["render"], timings["write"], timings["total"],
            model.app_count, model.task_count, len(model.services), len(model.problems),
        )
        return SyncResult(ok=applied.ok, changed=applied.changed, reloaded=applied.reloaded,
                          error=applied.error, timings=timings, model=model,
                          certificates=self.certificates)

    def full_pass(self, apps: Any, previous: Routed | None, *, live: bool = False,
                  keep: Callable[[tuple[Service, ...]], tuple[Service, ...]] | None = None,
                  timings: dict[str, float] | None = None,
                  rules: Mapping[str, Any] | None = None,
                  check_scale: int | None = None) -> Derived:
        """The pass of every full sync, one-shot or live: all apps to one config.

        ``previous``: what the serving config routes per backend (--health-check keeps
        a task of unknown health where it is).  ``live``: the long-running engine
        (certificates at stable paths, problems logged by it when new, ``keep`` its
        quarantine); otherwise the one-shot (label templates also checked together,
        every problem logged).  The live engine's task and app paths derive only the
        apps an event names and must give the same bytes (tests/engine/test_*_path.py).
        """
        from servicerouter.model.app_fields import RoutedBefore

        routed = RoutedBefore(previous) if previous and self.settings.health_check else None
        return self.derive_config(apps, stable_paths=live, combined=not live, keep=keep,
                                  timings=timings, log_problems=not live, routed_before=routed,
                                  rules=rules, check_scale=check_scale)

    def derive_config(self, apps: Any, *, stable_paths: bool = False, combined: bool = False,
                      keep: Callable[[tuple[Service, ...]], tuple[Service, ...]] | None = None,
                      timings: dict[str, float] | None = None,
                      log_problems: bool = False,
                      routed_before: RoutedBefore | None = None,
                      rules: Mapping[str, Any] | None = None,
                      check_scale: int | None = None) -> Derived:
        """Model, certificates, label templates, render: the pipeline every sync runs.

        One-shot syncs and the live engine's full path both come through here
        (the live task path only re-derives the apps a task event changed, see
        servicerouter.engine.task_path).  ``stable_paths``: certificate files at
        stable paths (the live engine swaps renewed ones through the Runtime API);
        ``combined``: label templates also checked all together (one-shot);
        ``keep``: what of the model's services to render (the live quarantine);
        ``log_problems``: log each problem as found (the live engine logs only new ones);
        ``routed_before``: the server addresses the serving config routes (see build_model).
        ``rules``: operator rules to use instead of the store's (a preview).
        ``check_scale``: the check-interval factor HAProxy runs with (kept within the
        hysteresis band of servicerouter.render.check_rate; None: pick afresh).
        The model left has no app a fragment failed on (those are among its problems).
        """
        from servicerouter.render.check_rate import with_check_scale
        from servicerouter.render.config import RenderError

        timings = timings if timings is not None else {}
        mark = time.perf_counter()
        if isinstance(self.resolver, CachingResolver):
            self.resolver.new_sync()
        self.port_checks.new_sync()
        model = self.build_model(apps, routed_before, rules)
        timings["model"] = time.perf_counter() - mark
        if log_problems:
            for problem in model.problems:
                log.warning("%s", problem.log_line())
        mark = time.perf_counter()
        options = self._prepare_certificates(self.settings.render_options, model.services,
                                             stable_paths=stable_paths)
        timings["certs"] = time.perf_counter() - mark
        mark = time.perf_counter()
        try:  # an app a fragment fails to render for is left out, with a problem
            model = self._label_templates(model, options, combined=combined)
            services = keep(model.services) if keep is not None else model.services
            options = with_check_scale(options, services, self.fragments,
                                       self.label_overrides, check_scale)  # --max-check-rate
            rendered = self.render_guarded(services, options)
        except RenderError as err:  # a head fragment: no app to leave out
            log.error("keeping the current config: %s", err)
            return Derived(model, options, None, str(err))
        timings["render"] = time.perf_counter() - mark
        if log_problems:
            for problem in rendered.problems:
                log.warning("%s", problem.log_line())
        return Derived(without_unrendered(model, rendered), options, rendered)

    def render(self, services: Sequence[Service], options: RenderOptions) -> str:
        """Config text for ``services``, with the apps' label templates if allowed.

        An app a fragment fails to render for is left out (see :meth:`render_guarded`).
        """
        return self.render_guarded(services, options).text

    def render_guarded(self, services: Sequence[Service], options: RenderOptions) -> Rendered:
        """The config, and the apps left out because a fragment failed on their data.

        Raises :class:`~servicerouter.render.config.RenderError` only when a head fragment
        (rendered once for all) fails.
        """
        from servicerouter.render.config import render_guarded

        return render_guarded(services, self.fragments, options, self.label_overrides or None)

    def _label_templates(self, model: Model, options: RenderOptions,
                         combined: bool = False) -> Model:
        """HAPROXY_{n}_<FRAGMENT> labels (see engine.derive_steps.label_templates)."""
        return derive_steps.label_templates(self, model, options, combined)

    def build_model(self, apps: Any, routed_before: RoutedBefore | None = None,
                    rules: Mapping[str, Any] | None = None) -> Model:
        """The model of ``apps`` under this router's settings (every sync path uses it).

        ``routed_before``: the server addresses the serving config routes; with
        --health-check a task whose health is not known yet keeps its place.
        """
        from servicerouter.model.services import build_model

        settings = self.settings
        options = settings.render_options
        if self._port_assignments is None:
            self._port_assignments = load_port_assignments(self._ports_file())
        resolve: Callable[[str], str | None] = self.resolver
        check_port: Callable[[Any], str | None] | None = \
            self.port_checks if settings.validate else None  # --skip-validation: write it all
        if self._fast_path is not None:  # note what the output depends on besides the body
            resolve, check_port = self._fast_path.watch(resolve, check_port)
        apps = derive_steps.apps_under_rules(self, apps, rules)
        model = build_model(apps, settings.groups, resolve,
                            reserved_ports=options.reserved_ports(self.fragments),
                            default_bind_addr=options.bind_addr,
                            check_port=check_port,
                            strict_mode=settings.strict_mode,
                            health_check=settings.health_check,
                            ip_per_task_ports=settings.ip_per_task_ports,
                            port_assignments=self._port_assignments,
                            routed_before=routed_before)
        derive_steps.keep_port_assignments(self, model)
        return model

    def _ports_file(self) -> str:
        return os.path.join(self._state_dir(), PORTS_FILE)

    def _state_dir(self) -> str:
        return self.settings.state_dir or default_state_dir(self.settings.config_path)

    def _prepare_certificates(self, options: RenderOptions,
                              services: Sequence[Service] = (),
                              stable_paths: bool = False) -> RenderOptions:
        """Certificates for the config (see engine.derive_steps.prepare_certificates)."""
        return derive_steps.prepare_certificates(self, options, services, stable_paths)


def settings_skip_unchanged(settings: RouterSettings) -> bool:
    """Whether syncs may take the unchanged-body fast path (one-shot runs, not --dry)."""
    return settings.skip_unchanged_body and not settings.dry


@contextmanager
def gc_paused(collect: bool = False) -> Iterator[None]:
    """No cyclic garbage collection while a sync runs.

    Parsed JSON, the model and the config text hold no reference cycles, yet
    the collector would walk the millions of new objects again every few
    hundred allocations: at 5,000 apps that doubles parse and model time.
    Reference counting still frees everything.  Afterwards what survived is
    frozen (the model is kept until the next sync; one collection over it
    would cost as much again) and thawed into the oldest generation when the
    next sync starts.  Syncs back to back would keep the collector from ever seeing
    the thawed objects, so a long-running engine passes ``collect`` now and then (on
    a full sync, already slow) to collect every generation before freezing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    try:
        yield
    finally:
        if collect:
            gc.collect()
        gc.freeze()
        if was_enabled:
            gc.enable()


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")




def without_unrendered(model: Model, rendered: Rendered) -> Model:
    """``model`` minus the apps ``rendered`` left out, with the reasons among its problems."""
    if not rendered.problems:
        return model
    bad = {problem.app_id for problem in rendered.problems}
    return replace(model, services=tuple(s for s in model.services if s.app_id not in bad),
                   problems=model.problems + rendered.problems)


def run_once(router: Router) -> int:
    """servicerouter.py's default mode: one sync, exit status says how it went.

    75 (EX_TEMPFAIL) when a large removal is held: nothing was written; a later
    run applies it once it persists, or ``--confirm-removal`` now.
    """
    result = router.sync()
    if result.held:
        from servicerouter.engine.removal_guard import EXIT_HELD

        return EXIT_HELD
    return 0 if result.ok else 1


def format_problems(problems: Sequence[Any]) -> list[str]:
    return [str(p) for p in problems]


# Re-exported: callers import these from the runner.
__all__ = [
    "PORTS_FILE",
    "Router",
    "RouterSettings",
    "SyncResult",
    "SyncTrigger",
    "default_state_dir",
    "gc_paused",
    "install_signal_handlers",
    "load_port_assignments",
    "run_once",
    "save_port_assignments",
    "utc_iso",
    "without_unrendered",
]
