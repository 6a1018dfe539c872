"""One app's servers, derived from that app alone: what a task event can change.

A task starting, stopping or changing health changes the ``tasks`` of one
app document and nothing else, and of everything :func:`build_model`
decides, only the servers of that app's ports depend on tasks (apart from
whether a port has any task at all, and the per-task problems).  So the
live engine re-derives just this for the app an event names, compares it
with the same derivation of the app's previous document, and when only
servers differ it swaps them into the services it has: the cost of a task
event does not grow with the cluster.  Pure, but for ``resolve``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.model.app_fields import RoutedBefore
from servicerouter.model.derive import DeriveSettings, derive_app
from servicerouter.model.labels import Problem
from servicerouter.model.values import Resolver, Server


@dataclass(frozen=True, slots=True)
class AppServers:
    """The task-dependent part of one app's model."""

    servers: Mapping[int, tuple[Server, ...]]  # port index -> servers, in config order
    with_tasks: frozenset[int]  # port indexes some task matched (only those are routed)
    problems: tuple[Problem, ...]  # what reading the app reported (task problems too)
    task_count: int


def derive_app_servers(app: Mapping[str, Any], resolve: Resolver, groups: Iterable[str], *,
                       strict_mode: bool = False, health_check: bool = False,
                       routed_before: RoutedBefore | None = None) -> AppServers | None:
    """What :func:`~servicerouter.model.derive.derive_app` reads from ``app`` alone, the
    per-app step of :func:`~servicerouter.model.services.build_model`.

    ``routed_before`` as for build_model (--health-check: tasks of unknown health
    that are routed now stay).  None when the app cannot be read at all (the full
    build reports why).
    """
    derivation = derive_app(app, DeriveSettings(frozenset(groups), strict_mode, health_check),
                            resolve, 0, routed_before)
    if derivation.skipped:
        return None
    return AppServers(
        {port.index: port.servers for port in derivation.ports},
        frozenset(port.index for port in derivation.ports if port.had_tasks),
        derivation.problems,
        derivation.task_count,
    )


__all__ = ["AppServers", "derive_app_servers"]
