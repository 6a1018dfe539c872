"""Wiring the long-running modes: event stream or callbacks, managed HAProxy, status server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servicerouter.apply import haproxy
from servicerouter.apply.confdiff import parse_config
from servicerouter.apply.managed import ManagedHAProxy
from servicerouter.apply.runtime_api import RuntimeApplier, RuntimeUpdateError
from servicerouter.engine import removal_guard
from servicerouter.engine.intake import new_metrics
from servicerouter.engine.live_state import (
    MAX_BIND_ROUNDS,
    CommandReloader,
    LiveSettings,
    Reloader,
)
from servicerouter.engine.runner import Router
from servicerouter.serve.httpd import ListenError, listen_error
from servicerouter.source.changes import (
    Pending,
)
from servicerouter.source.events import Backoff, EventStream
from servicerouter.source.marathon import MarathonClient, MarathonError
from servicerouter.source.marathon_urls import redact
from servicerouter.tls.swap import (
    CertUpdater,
)

if TYPE_CHECKING:  # live.py imports this module at its end
    from servicerouter.engine.live import LiveRouter

log = logging.getLogger("servicerouter.live")


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


def _dashboard(live: Any, options: LiveOptions, rules_api: Any) -> Any:
    """The HTML dashboard served at "/" of --status-listen (its editor: the rules API's store)."""
    from servicerouter.engine.dashboard_snapshot import live_dashboard_data
    from servicerouter.serve.dashboard_http import COOKIE, Dashboard

    cookie = f"{COOKIE}_{options.status_listen[1]}" if options.status_listen else COOKIE
    if rules_api is None:
        return Dashboard(live_dashboard_data(live), options.status_token, cookie=cookie)
    from servicerouter.serve.dashboard_rules import StoreBackend

    backend = StoreBackend(rules_api)
    return Dashboard(live_dashboard_data(live, backend.rules), options.status_token, backend,
                     cookie=cookie)


def run_live(router: Router, options: LiveOptions, settings: LiveSettings,
             on_ready: Callable[[LiveRouter], None] | None = None) -> int:
    """The long-running modes: wire stream/callbacks, HAProxy and status, then loop."""
    from servicerouter.apply.runtime_api import RuntimeAPI
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
    from servicerouter.engine.live import LiveRouter

    live = LiveRouter(router, reloader=reloader, runtime=runtime, metrics=metrics,
                      settings=settings, manager=options.managed, cert_updater=cert_updater)
    trigger = live.trigger
    install_signal_handlers(trigger)
    # SIGHUP: a full resync, not merely "a sync"
    _install_hup(live)

    cleanups: list[Callable[[], None]] = []
    status_server: StatusServer | None = None
    rules_api = None
    if router.rules_store is not None:  # operator rules: a change syncs; the API
        from servicerouter.engine.rules_link import attach_rules

        rules_api = attach_rules(live, router.rules_store)
    try:
        if options.status_listen is not None:
            try:
                status_server = StatusServer(
                    options.status_listen, metrics, live.snapshot, live.health,
                    options.status_token,
                    confirm_removal=lambda: removal_guard.confirm_removal(live),
                    backend_servers=_backend_lookup(runtime),
                    api=rules_api, dashboard=_dashboard(live, options, rules_api))
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
                source.hosts, live.submit_and_apply,
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
    current = haproxy.read_current(settings.config_path)
    if current is not None:  # before HAProxy can fail for want of file descriptors
        live.say_fd_needs(current.decode("utf-8", "replace"))
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


__all__ = ["LiveOptions", "run_live"]


def _backend_lookup(runtime: RuntimeApplier | None) -> Callable[[str], dict[str, Any] | None]:
    """GET /api/backends/NAME: the backend's servers from the Runtime API, None if unknown
    (or, without a Runtime API socket, always None: nothing to ask)."""
    from servicerouter.serve.backends_api import BackendNotFound, backend_servers

    def lookup(name: str) -> dict[str, Any] | None:
        if runtime is None:
            return None
        try:
            return backend_servers(runtime.api, name)
        except (BackendNotFound, RuntimeUpdateError):
            return None
    return lookup
