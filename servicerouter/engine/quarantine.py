"""Apps HAProxy rejects, or whose ports another process holds, left out until they change."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from servicerouter.apply import haproxy
from servicerouter.apply.bisection import find_culprits
from servicerouter.engine.live_state import (
    Quarantined,
    _by_app,
    _fingerprint,
    _tail,
)

if TYPE_CHECKING:
    from servicerouter.model.services import Service
    from servicerouter.render.options import RenderOptions

log = logging.getLogger("servicerouter.live")



class QuarantineKeeper:
    """Part of :class:`~servicerouter.engine.core.EngineCore`: finds, freezes and releases bad apps."""

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
        if self.settings.one_shot and bad and not good:
            # No earlier good version to go by: HAProxy rejecting every app says more
            # about the templates than about the apps.  servicerouter.py's contract.
            log.error("HAProxy rejects the config of every app; keeping the config in "
                      "place:\n%s", _tail(next(iter(bad.values())), 5))
            return False, services, text
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
        if self.settings.one_shot and (self.reloader is None
                                       or not self.router.settings.validate):
            # A one-shot that only writes (the bridge prints a config for another host)
            # binds nothing here; --skip-validation writes it all, as in the model.
            return services, text
        # From the bind lines alone: a one-shot would parse both configs only for them.
        from servicerouter.apply.confdiff import new_bind_addresses

        busy = [haproxy.BindFailure(frontend, address, "address in use")
                for frontend, addresses in new_bind_addresses(self._applied_text,
                                                              text).items()
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
                self.trigger.fire(event=False)
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
            self._applied_text = text  # parsed when first asked (see _applied_parsed)
            self._applied_ok(services, options)
            return True


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


