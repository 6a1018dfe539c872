"""Blue/green deployment groups: apps sharing ``HAPROXY_DEPLOYMENT_GROUP`` are one service.

marathon-lb's protocol (its ``zdd.py`` writes the labels; DC/OS's examples carry them):
every app of a group is served under the group's name (``/GROUP``), so its backend is
``GROUP_PORT`` whichever colour runs.  While two colours run, they are merged into one
backend under the routes of the *old* one, the app whose ``HAPROXY_DEPLOYMENT_STARTED_AT``
is earliest (it keeps its service port, vhosts and settings; the new colour's own
service port, its ``HAPROXY_DEPLOYMENT_ALT_PORT``, only keeps Marathon's ports unique).
As the new colour's tasks pass their health checks, as many old tasks (lowest task ids
first) drain, so that no more than ``HAPROXY_DEPLOYMENT_TARGET_INSTANCES`` serve:

    drained = min(old tasks, healthy new tasks,
                  healthy new tasks + old instances - target)

(target 1 when the new app has no ``HAPROXY_DEPLOYMENT_NEW_INSTANCES``, as marathon-lb).
In a hybrid (canary) deployment, ``HAPROXY_DEPLOYMENT_NEW_INSTANCES`` other than 0,
the app scaled last is the new one (marathon-lb meant this; its check compared a
string with 0 and so applied it whenever the label was present).

What differs from marathon-lb, on purpose: a drained server keeps its line with
``weight 0`` (marathon-lb wrote ``disabled``, cutting its sessions and reloading), and
a new-colour task whose Marathon health checks do not pass yet is in the backend with
``weight 0`` too: it takes traffic only once healthy, so a green that never becomes
healthy never receives a request.  Server names are the tasks' ``host_port``, so
every step of a deployment is a server added, reweighted or removed in one backend:
the Runtime API applies it without a reload.  Pure: no I/O.

A canary holds its share by weights, not instance counts (servicerouter's addition):
old tasks drain as above, and while a new colour carrying
``HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT`` (see :func:`_share`) is no larger than
its canary, its serving servers and the old colour's get weights whose sums are
that share and the rest: 10% is 10% whatever the instance counts (marathon-lb's
canary takes the share of instances, 25% for one of four).  A full deployment's
label lists steps the new colour's share climbs as its tasks turn healthy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from servicerouter.model.app_fields import APP_ID_RE, MAPPING
from servicerouter.model.derive import DerivedPort
from servicerouter.model.labels import Problem
from servicerouter.model.values import Server, new_server, weighted_server

GROUP_LABEL = "HAPROXY_DEPLOYMENT_GROUP"
STARTED_AT_LABEL = "HAPROXY_DEPLOYMENT_STARTED_AT"
TARGET_LABEL = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"
NEW_INSTANCES_LABEL = "HAPROXY_DEPLOYMENT_NEW_INSTANCES"
WEIGHT_LABEL = "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"
_MAX_WEIGHT = 256  # HAProxy's largest server weight
_EARLIEST = datetime.min


def group_id(app: Mapping[str, Any]) -> str | None:
    """``/GROUP`` for an app carrying a usable ``HAPROXY_DEPLOYMENT_GROUP``, else None."""
    labels = app.get("labels")
    value = labels.get(GROUP_LABEL) if isinstance(labels, MAPPING) else None
    if not isinstance(value, str) or not value.strip("/"):
        return None
    candidate = "/" + value.strip("/")
    return candidate if APP_ID_RE.fullmatch(candidate) else None


def merge_deployment_groups(ports: Iterable[DerivedPort],
                            problems: list[Problem]) -> list[DerivedPort]:
    """``ports`` with each deployment group's apps folded into one app named ``/GROUP``.

    Ports of apps without a group pass unchanged.  A group value that is no app id
    is reported and the app is served alone under its own id.
    """
    kept: list[DerivedPort] = []
    groups: dict[str, dict[str, list[DerivedPort]]] = {}  # group -> app id -> its ports
    reported: set[str] = set()
    for port in ports:
        labels = port.app.get("labels")
        if not isinstance(labels, MAPPING) or GROUP_LABEL not in labels:
            kept.append(port)
            continue
        group = group_id(port.app)
        if group is None:
            if port.app_id not in reported:
                reported.add(port.app_id)
                problems.append(Problem(port.app_id, "deployment group is not a valid app id; "
                                        "the app is served alone", None, GROUP_LABEL,
                                        str(labels.get(GROUP_LABEL))[:80], kind="label"))
            kept.append(port)
            continue
        groups.setdefault(group, {}).setdefault(port.app_id, []).append(port)
    for group, members in groups.items():
        kept.extend(_merge_group(group, members))
    return kept


def _merge_group(group: str, members: dict[str, list[DerivedPort]]) -> list[DerivedPort]:
    """One group's ports: the old app's ports carrying every colour's servers."""
    apps = [ports[0].app for ports in members.values()]
    if len(apps) == 1:
        return [replace(port, app_id=group) for port in next(iter(members.values()))]
    ordered = sorted(range(len(apps)), key=lambda i: _time(apps[i], STARTED_AT_LABEL))
    old, new = apps[ordered[0]], apps[ordered[-1]]
    new_labels = _labels(new)
    hybrid = new_labels.get(NEW_INSTANCES_LABEL) not in (None, "0", 0)
    # the colour started last (a canary: whichever counts as new below) and its share
    share = _share(new, new_labels, hybrid)
    canary = new if share is not None else None
    if hybrid and _scaled_at(old) > _scaled_at(new):
        old, new = new, old
        new_labels = _labels(new)
    target = _count(new_labels.get(TARGET_LABEL), 1) if NEW_INSTANCES_LABEL in new_labels else 1
    healthy_new = _healthy_count(new)
    old_tasks = sorted(str(t.get("id")) for t in _tasks(old) if isinstance(t, MAPPING))
    old_instances = _count(old.get("instances"), len(old_tasks))
    drainable = max(0, healthy_new + old_instances - target)
    drained = frozenset(old_tasks[:min(len(old_tasks), healthy_new, drainable)])
    waiting = _unhealthy_ids(new)  # new tasks not healthy yet: in the backend, weight 0
    by_index: dict[int, list[DerivedPort]] = {}
    for app_id, ports in members.items():
        if app_id != old.get("id"):
            for port in ports:
                by_index.setdefault(port.index, []).append(port)
    merged: list[DerivedPort] = []
    for port in members[str(old.get("id"))]:
        servers: dict[tuple[str, int], Server] = {}
        new_keys: set[tuple[str, int]] = set()
        had_tasks = port.had_tasks
        for server in port.servers:
            servers[(server.host, server.port)] = _weighted(server, server.task_id in drained)
        if port.app is canary:
            new_keys.update(servers)
        for other in by_index.get(port.index, ()):
            had_tasks = had_tasks or other.had_tasks
            colour_waits = other.app is new
            for server in other.servers:
                key = (server.host, server.port)
                if key not in servers and other.app is canary:
                    new_keys.add(key)
                servers.setdefault(key, _weighted(
                    server, colour_waits and server.task_id in waiting))
        if canary is not None:
            _split(servers, new_keys, share or 0)
        merged.append(replace(port, app_id=group, had_tasks=had_tasks,
                              servers=tuple(servers[key] for key in sorted(servers))))
    return merged


def _share(new: Mapping[str, Any], new_labels: Mapping[str, Any], hybrid: bool) -> int | None:
    """The new colour's percentage of requests, or None (the instance rule alone).

    ``HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT`` (servicerouter's, written by
    ``servicerouter zdd``) on the colour started last:

    * a canary (hybrid) holds one percentage, 1..99 (``--canary``), while it has no
      more instances than ``HAPROXY_DEPLOYMENT_NEW_INSTANCES``: growing it past the
      canary's size, as ``--complete-cur`` does, hands the split back to the
      instance rule; while ``--complete-prev`` drains it, its serving tasks keep
      the share;
    * a full deployment climbs ascending steps, 1..100 (``--step-percent``): with
      ``h`` of ``HAPROXY_DEPLOYMENT_TARGET_INSTANCES`` new tasks healthy, step
      ``ceil(len(steps) * h / target)``; 100 (or all old tasks drained) ends the split.

    Only labels, instance counts and health: a restarted servicerouter derives the
    same weights, and zdd never changes a label after posting (Marathon restarts an
    app's tasks for that)."""
    steps = _percentages(new_labels.get(WEIGHT_LABEL))
    if not steps:
        return None
    if hybrid:
        if len(steps) != 1 or steps[0] >= 100:
            return None
        if _count(new.get("instances"), 0) > _count(new_labels.get(NEW_INSTANCES_LABEL), 0):
            return None
        return steps[0]
    healthy = _healthy_count(new)
    target = max(1, _count(new_labels.get(TARGET_LABEL), _count(new.get("instances"), 1)))
    if healthy == 0:
        return None
    step = steps[min(len(steps), math.ceil(len(steps) * healthy / target)) - 1]
    return step if step < 100 else None


def _percentages(value: Any) -> tuple[int, ...]:
    """``"10"`` or ``"10,25,50"``: whole percentages 1..100, ascending; () if unusable."""
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        return ()
    parts = [part.strip() for part in value.split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        return ()
    steps = tuple(int(part) for part in parts)
    if not all(1 <= step <= 100 for step in steps) or list(steps) != sorted(set(steps)):
        return ()
    return steps


def _split(servers: dict[tuple[str, int], Server], new_keys: set[tuple[str, int]],
           percent: int) -> None:
    """Weights so that the new colour's serving servers take ``percent`` of requests.

    Each serving new server gets ``a`` and each serving old one ``b`` with
    ``h*a : o*b = percent : 100-percent``: ``a : b = percent*o : (100-percent)*h``,
    reduced, and scaled into HAProxy's 1..256 when it must be (then the share is
    within rounding of the asked one).  With no serving server on either side
    there is nothing to split: HAProxy's default weights stay.
    """
    serving_new = [k for k, s in servers.items() if k in new_keys and not s.draining]
    serving_old = [k for k, s in servers.items() if k not in new_keys and not s.draining]
    if not serving_new or not serving_old:
        return
    new_weight = percent * len(serving_old)
    old_weight = (100 - percent) * len(serving_new)
    divisor = math.gcd(new_weight, old_weight)
    new_weight, old_weight = new_weight // divisor, old_weight // divisor
    largest = max(new_weight, old_weight)
    if largest > _MAX_WEIGHT:
        new_weight = max(1, round(new_weight * _MAX_WEIGHT / largest))
        old_weight = max(1, round(old_weight * _MAX_WEIGHT / largest))
    for keys, weight in ((serving_new, new_weight), (serving_old, old_weight)):
        for key in keys:
            servers[key] = weighted_server(servers[key], weight)


def _weighted(server: Server, drain: bool) -> Server:
    if not drain or server.draining:
        return server
    return new_server(server.host, server.ipv4, server.port, server.task_id, True)


def _labels(app: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = app.get("labels")
    return labels if isinstance(labels, MAPPING) else {}


def _tasks(app: Mapping[str, Any]) -> list[Any]:
    tasks = app.get("tasks")
    return tasks if isinstance(tasks, list) else []


def _count(value: Any, default: int) -> int:
    """A non-negative instance count from a label or field; ``default`` if unusable."""
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return default


def _time(app: Mapping[str, Any], label: str) -> datetime:
    """A label's ISO timestamp (naive UTC); the earliest time when missing or unreadable,
    as marathon-lb: an app not deployed by zdd counts as the old one."""
    return _parse_time(_labels(app).get(label))


def _scaled_at(app: Mapping[str, Any]) -> datetime:
    info = app.get("versionInfo")
    return _parse_time(info.get("lastScalingAt") if isinstance(info, MAPPING) else None)


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        return _EARLIEST
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return _EARLIEST
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _alive(task: Mapping[str, Any]) -> bool:
    """marathon-lb's reading: a task with any passing health check result is healthy."""
    results = task.get("healthCheckResults")
    return isinstance(results, list) and any(
        isinstance(r, MAPPING) and r.get("alive") is True for r in results)


def _healthy_count(app: Mapping[str, Any]) -> int:
    """Healthy tasks of the new colour; its instances when it has no health checks."""
    if not app.get("healthChecks"):
        return _count(app.get("instances"), len(_tasks(app)))
    return sum(1 for t in _tasks(app) if isinstance(t, MAPPING) and _alive(t))


def _unhealthy_ids(app: Mapping[str, Any]) -> frozenset[str]:
    if not app.get("healthChecks"):
        return frozenset()
    return frozenset(str(t.get("id")) for t in _tasks(app)
                     if isinstance(t, MAPPING) and not _alive(t))


__all__ = ["GROUP_LABEL", "WEIGHT_LABEL", "group_id", "merge_deployment_groups"]
