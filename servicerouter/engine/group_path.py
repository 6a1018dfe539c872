"""Blue/green group apps on the task path: one member's task event, the group's backend.

Apps sharing ``HAPROXY_DEPLOYMENT_GROUP`` are one backend named after the group
(:mod:`servicerouter.model.deployment_groups`): the old colour's ports carry the
servers of every colour, old tasks drain as new ones turn healthy, a canary's
share sets weights.  So a task event of one member can change servers (and
weights) of every colour in that backend, and the servers of the group cannot be
derived from the event's app alone.  They can be derived from the group's
members alone, though: the merge reads nothing but their documents.  Here each
member is derived on its own, the members are merged exactly as the full build
merges them (same function, same order: Marathon's), and the result, old
documents against new, is what the task path swaps into the group's services.

Which apps are members is read once per running config (an O(apps) scan, kept
in its cache): membership changes only with app updates.  Those of a member that
stays in its group re-decide the group on the app path
(:mod:`servicerouter.engine.app_path`, the cache carried along); an app joining,
leaving or changing its group goes the full way, and every full sync starts a
new cache.  Pure but for host resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicerouter.model.deployment_groups import GROUP_LABEL, group_id, merge_deployment_groups
from servicerouter.model.derive import AppDerivation
from servicerouter.model.labels import Problem
from servicerouter.model.values import Server

DerivePorts = Callable[[Mapping[str, Any]], AppDerivation]


@dataclass(frozen=True, slots=True)
class GroupServers:
    """The task-dependent part of one deployment group's model (cf. AppServers)."""

    servers: Mapping[int, tuple[Server, ...]]  # port index -> servers of every colour
    with_tasks: frozenset[int]  # port indexes some member's task matched
    apps: Mapping[int, Mapping[str, Any]]  # port index -> the document its service carries
    problems: tuple[Problem, ...]
    task_count: int


def grouped(app: Mapping[str, Any]) -> str | None:
    """The group ``app`` is served in (``/GROUP``), None when it is served alone (no
    label, or one that is no app id: the full build reports that and serves it alone)."""
    labels = app.get("labels")
    if not isinstance(labels, Mapping) or GROUP_LABEL not in labels:
        return None
    return group_id(app)


def updated_member(app_id: str, old_apps: Mapping[str, Any], new_apps: Mapping[str, Any],
                   ) -> tuple[Mapping[str, Any], Mapping[str, Any], str | None] | str:
    """(old document, new document, its group) of an app updated in place, or why the
    incremental paths cannot take it (it came or went, or changed group)."""
    old_app, new_app = old_apps.get(app_id), new_apps.get(app_id)
    if old_app is None or new_app is None:
        return f"app {app_id} came or went"
    group = grouped(new_app)
    if group != grouped(old_app):
        return f"app {app_id}: its deployment group changed"
    return old_app, new_app, group


def group_members(cache: dict[str, Any], apps: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """group -> its members' ids in ``apps``' order (Marathon's, which the merge follows),
    computed once per running config (``cache`` is its cache)."""
    members = cache.get("groups")
    if members is None:
        found: dict[str, list[str]] = {}
        for app_id, app in apps.items():
            group = grouped(app) if isinstance(app, Mapping) else None
            if group is not None:
                found.setdefault(group, []).append(app_id)
        members = {group: tuple(ids) for group, ids in found.items()}
        cache["groups"] = members
    return members


def merged_servers(members: Sequence[Mapping[str, Any]], derive: DerivePorts) -> GroupServers | None:
    """The group's ports as :func:`~servicerouter.model.decide.decide` merges them from
    ``members`` (in Marathon's order); None when a member cannot be read at all."""
    ports = []
    problems: list[Problem] = []
    task_count = 0
    for app in members:
        derivation = derive(app)
        if derivation.skipped:
            return None
        problems.extend(derivation.problems)
        task_count += derivation.task_count
        ports.extend(derivation.ports)
    merged = merge_deployment_groups(ports, problems)
    return GroupServers({port.index: port.servers for port in merged},
                        frozenset(port.index for port in merged if port.had_tasks),
                        {port.index: port.app for port in merged}, tuple(problems), task_count)


def group_refusal(group: str, before: GroupServers | None, after: GroupServers | None) -> str | None:
    """Why the group's change is more than servers (None: servers only)."""
    if before is None or after is None:
        return f"group {group}: a member cannot be read"
    if before.with_tasks != after.with_tasks or before.servers.keys() != after.servers.keys():
        return f"group {group}: a port gained its first task or lost its last"
    if before.problems != after.problems:
        return f"group {group}: its problems changed"
    if any(before.apps[i].get("id") != after.apps[i].get("id") for i in before.apps):
        return f"group {group}: another colour is the old one now"
    return None


__all__ = ["GroupServers", "group_members", "group_refusal", "grouped", "merged_servers",
           "updated_member"]
