"""The engine's settings, the records /status reports, and how HAProxy is reloaded.

Shared by the engine's core (:mod:`servicerouter.engine.core`, a one-shot run too)
and the live event path on top of it, so nothing here loads the event path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from servicerouter.apply import haproxy
from servicerouter.apply.reloads import ReloadResult

if TYPE_CHECKING:
    from servicerouter.model.services import Service

log = logging.getLogger("servicerouter.live")

STUCK_AFTER = 300.0  # seconds a sync may run before /healthz says the router is stuck
MAX_BIND_ROUNDS = 4  # reloads per sync when each names another app whose port is busy
MAX_HINT_REFETCH = 20  # apps untrusted events may name per sync before a full fetch instead


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
    # One sync, then the process exits (servicerouter.py's default mode, see
    # servicerouter.engine.one_shot): no retry timers, servicerouter.py's log line, a
    # first config kept when its reload fails (HAProxy reads it when it starts), and
    # a config whose every app HAProxy rejects leaves the old one in place (with no
    # earlier good version to tell a bad app from bad templates).
    one_shot: bool = False


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
    task_path_syncs: int = 0  # syncs the task path applied (no full model or render)
    last_path: str | None = None  # "task" or "full"
    last_full_reason: str | None = None  # why the last full-path sync could not take the task path
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



def _tail(message: str, lines: int = 12) -> str:
    kept = [line for line in message.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])

