"""Putting a rendered config in place: Runtime API when it can, else validate, write, reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from servicerouter.apply import haproxy
from servicerouter.apply.fd_budget import fd_report
from servicerouter.apply.reloads import ReloadResult
from servicerouter.engine.live_state import (
    MAX_BIND_ROUNDS,
    _by_app,
)

if TYPE_CHECKING:  # confdiff is imported where a config is parsed: a one-shot parses none
    from servicerouter.apply.confdiff import ParsedConfig, RuntimePlan
    from servicerouter.model.services import Service
    from servicerouter.render.options import RenderOptions
    from servicerouter.tls.swap import CertPlan

log = logging.getLogger("servicerouter.live")



class ConfigApplier:
    """Part of :class:`~servicerouter.engine.core.EngineCore`: the config HAProxy runs and how it changes."""

    apply_error: str | None = None  # why the last apply failed (a one-shot's result says it)
    _said_unvalidated = False  # haproxy is not installed: said once

    def _apply(self, text: str, services: tuple[Service, ...], options: RenderOptions) -> bool:
        self.apply_error = None
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
        elif self._try_runtime(text, certs, services):
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
            self.apply_error = "HAProxy rejects the new config"
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
            self._config_file.settle()
            announce = ("config changed - reloading HAProxy" if self.reloader is not None
                        else "writing the config HAProxy will start on")
            if self.settings.one_shot:  # servicerouter.py's line
                announce = "running config is different from generated config - reloading"
            applied = haproxy.apply_config(text, settings.config_path,
                                           map_dir=settings.render_options.map_dir,
                                           announce=announce)
            if not applied.ok:
                result = ReloadResult(False, applied.error or "cannot write the config")
                break
            self.say_fd_needs(text)
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
            self.apply_error = result.message
            self._restore_running_config(text)
            self._failed_text, self._failed_certs = text, certs_key
            self.state.last_apply = "failed"
            if self.settings.one_shot:
                log.error("keeping the config that was in place; the next run tries again")
                return False
            self._apply_failures += 1
            delay = self.backoff.delay(self._apply_failures - 1)
            log.error("keeping the running config; trying again in %.1fs (or on SIGHUP)", delay)
            self._schedule_retry(delay)
            return False
        self._applied_text = text  # parsed when first asked (see _applied_parsed)
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
        from servicerouter.apply.confdiff import parse_config

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
        self._config_file.settle()
        if text is None:
            if self.settings.one_shot:  # most likely no HAProxy running yet
                log.warning("kept the new %s (there was none before): HAProxy reads it "
                            "when it starts", path)
                return
            # No config when we started: remove the one HAProxy refused, or a restart
            # of servicerouter would take it for the running one and never reload.
            if haproxy.read_current(path) == failed.encode("utf-8"):
                haproxy.put_back(path, None, existed=False)
            return
        if haproxy.read_current(path) == text.encode("utf-8"):
            return
        if self._write(text):
            log.warning("restored the previous %s (the config HAProxy runs), so a later "
                        "sync tries again", path)

    def _try_runtime(self, text: str, certs: CertPlan | None = None,
                     services: tuple[Service, ...] | None = None) -> bool:
        # Both configs are parsed only once the Runtime API could be used: a one-shot
        # (no Runtime API) or a first start parses neither (7 MB at 50k tasks).
        if not (self.settings.runtime_updates and self.runtime is not None
                and self._runtime_trusted and self._applied_text is not None):
            return False
        if self.manager is not None and not self.manager.alive():
            return False
        if self._applied_parsed is None:
            return False
        from servicerouter.apply.confdiff import plan_runtime_update

        parsed = self._parse(text)
        verdict = plan_runtime_update(self._applied_parsed, parsed)
        if verdict.plan is None:
            log.debug("reload needed: %s", verdict.reason)
            return False
        plan = verdict.plan
        if certs is not None and not certs.empty and not self._try_cert_runtime(certs):
            return False
        from servicerouter.apply.runtime_api import RuntimeUpdateError  # the live engine's

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
        self._count_runtime(plan, "applied through the Runtime API without reload")
        return True

    def _count_runtime(self, plan: RuntimePlan, said: str) -> None:
        """A plan the Runtime API carried out: metrics, /status and one log line."""
        self.metrics.runtime_updates.inc()
        self.metrics.runtime_servers.inc(len(plan.add), action="add")
        self.metrics.runtime_servers.inc(len(plan.remove), action="remove")
        self.metrics.runtime_servers.inc(len(plan.readdress), action="readdress")
        self.metrics.runtime_servers.inc(len(plan.reweight), action="reweight")
        self.state.last_apply = "runtime"
        self.state.last_runtime_update = time.time()
        log.info("%s: +%d -%d ~%d servers, %d map entries", said, len(plan.add),
                 len(plan.remove), len(plan.readdress), plan.map_changes)

    def _write(self, text: str) -> bool:
        """Put the config HAProxy now runs on disk (atomically), for its next reload."""
        return self._config_file.write(text)

    @property
    def _applied_parsed(self) -> ParsedConfig | None:
        """The running config parsed, on demand: the task path never needs it."""
        text = self._applied_text
        if text is None:
            return None
        cached = self._applied_parse
        if cached is None or cached[0] is not text:
            cached = self._applied_parse = (text, self._parse(text))
        return cached[1]

    @_applied_parsed.setter
    def _applied_parsed(self, parsed: ParsedConfig | None) -> None:
        text = self._applied_text
        self._applied_parse = (text, parsed) if parsed is not None and text is not None else None

    def say_fd_needs(self, text: str) -> None:
        """Before HAProxy starts or reloads: the descriptors it needs vs its limit, and the
        health-check rate, said once per figure (see servicerouter.apply.fd_budget)."""
        problem, load = fd_report(text, managed=self.manager is not None)
        said = (problem, load)
        if said == self._fd_said:
            return
        self._fd_said = said
        if problem:
            log.error("%s", problem)
        log.info("%s", load)

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
        running = self._running
        if running is not None and text is not None and text == running.text:
            text = running.text  # the same object: the task path can go on from it
        self._applied_text = text
        self._applied_parse = None  # parsed when first asked (see _applied_parsed)
        self._runtime_trusted = text is not None
        # HAProxy (re)started from the files on disk: those of the last sync
        self._applied_certs = dict(self.router.served_certs) if text is not None else None
        if self.runtime is not None:
            self.runtime.forget()

    # ------------------------------------------------------------------ validation

    def _check(self, text: str) -> tuple[bool, str]:
        settings = self.router.settings
        if not settings.validate:
            return True, ""
        if not haproxy.haproxy_available(settings.haproxy_bin):
            if not self._said_unvalidated:
                self._said_unvalidated = True
                log.warning("%s not found: writing the config without validating it",
                            settings.haproxy_bin)
            return True, ""
        ok, message = haproxy.check_candidate(text, settings.config_path, settings.haproxy_bin,
                                              settings.render_options.map_dir)
        self.metrics.validations.inc(result="ok" if ok else "failed")
        return ok, message

    def _render(self, services: Sequence[Service], options: RenderOptions) -> str:
        return self.router.render(services, options)

