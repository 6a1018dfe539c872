"""The pure half of ``servicerouter zdd``: the next colour's app definition and each
step's decision, from Marathon's apps and HAProxy's view of the group's backend.

The protocol is marathon-lb's (its ``zdd.py`` and README "Zero-downtime Deployments"),
so apps deployed by either tool can be continued by the other: the app JSON names a
``HAPROXY_DEPLOYMENT_GROUP`` and a ``HAPROXY_DEPLOYMENT_ALT_PORT``; each colour is the
app id plus ``-blue`` / ``-green``, alternating between the service port and the alt
port (Marathon wants service ports unique) while ``HAPROXY_0_PORT`` keeps the port
clients use; the labels say when a colour started, how many instances the group
should serve and, for a canary (hybrid) deployment, how many of them run the new
version.  servicerouter serves the group as one backend
(:mod:`servicerouter.model.deployment_groups`), so nothing here reloads anything.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from servicerouter.model.values import backend_name, server_name

GROUP = "HAPROXY_DEPLOYMENT_GROUP"
ALT_PORT = "HAPROXY_DEPLOYMENT_ALT_PORT"
COLOUR = "HAPROXY_DEPLOYMENT_COLOUR"
STARTED_AT = "HAPROXY_DEPLOYMENT_STARTED_AT"
TARGET = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"
NEW_INSTANCES = "HAPROXY_DEPLOYMENT_NEW_INSTANCES"
# servicerouter's own: the canary's share of requests, held by server weights
# (servicerouter.model.deployment_groups); marathon-lb ignores it.
WEIGHT_PERCENT = "HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT"
BIND_PORT = "HAPROXY_0_PORT"


class ZddError(Exception):
    """The deployment cannot go on (the caller rolls back what it started)."""


def labels_of(app: Mapping[str, Any]) -> dict[str, Any]:
    labels = app.get("labels")
    return labels if isinstance(labels, dict) else {}


def validate(app: Any) -> dict[str, Any]:
    """The app JSON if it can be deployed this way; ZddError naming what is missing."""
    if not isinstance(app, dict) or not isinstance(app.get("id"), str) or not app["id"].strip("/"):
        raise ZddError("the app JSON needs an \"id\"")
    labels = labels_of(app)
    for label in (GROUP, ALT_PORT):
        if not str(labels.get(label) or "").strip():
            raise ZddError(f"the app JSON needs the {label} label")
    if not str(labels[ALT_PORT]).isdigit():
        raise ZddError(f"{ALT_PORT} must be a port number")
    return app


def group_of(app: Mapping[str, Any]) -> str | None:
    value = labels_of(app).get(GROUP)
    return str(value) if value else None


def started_at(app: Mapping[str, Any]) -> str:
    return str(labels_of(app).get(STARTED_AT) or "0")


def by_start(apps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Oldest deployment first (by HAPROXY_DEPLOYMENT_STARTED_AT, as zdd.py sorts)."""
    return sorted(apps, key=started_at)


def count(value: Any, default: int = 0) -> int:
    if type(value) is int:
        return value
    text = str(value or "").strip()
    return int(text) if text.isdigit() else default


def target_of(app: Mapping[str, Any]) -> int:
    return count(labels_of(app).get(TARGET), count(app.get("instances"), 1))


def new_count_of(app: Mapping[str, Any]) -> int:
    return count(labels_of(app).get(NEW_INSTANCES))


def service_port(app: Mapping[str, Any]) -> int | None:
    """The first service port, whichever Marathon shape declares it."""
    container = app.get("container") or {}
    for mappings in (container.get("portMappings"),
                     (container.get("docker") or {}).get("portMappings")):
        if mappings and mappings[0].get("servicePort"):
            return int(mappings[0]["servicePort"])
    definitions = app.get("portDefinitions") or []
    if definitions and definitions[0].get("port"):
        return int(definitions[0]["port"])
    ports = app.get("ports") or []
    return int(ports[0]) if ports and ports[0] else None


def with_service_port(app: dict[str, Any], port: int) -> dict[str, Any]:
    container = app.get("container") or {}
    for mappings in (container.get("portMappings"),
                     (container.get("docker") or {}).get("portMappings")):
        if mappings:
            mappings[0]["servicePort"] = port
            return app
    if app.get("portDefinitions"):
        app["portDefinitions"][0]["port"] = port
    elif app.get("ports"):
        app["ports"][0] = port
    else:
        app["portDefinitions"] = [{"port": port, "protocol": "tcp"}]
    return app


@dataclass(frozen=True)
class DeployOptions:
    initial_instances: int = 1
    new_instances: int = 0  # hybrid (canary): how many instances run the new colour
    weight_percent: int | None = None  # canary: its share of requests, by weights
    # full deployment: the new colour's shares of requests as its tasks turn healthy
    weight_steps: tuple[int, ...] = ()


def prepare(app: dict[str, Any], previous: Sequence[Mapping[str, Any]],
            options: DeployOptions, now: datetime) -> dict[str, Any]:
    """The next colour of ``app`` given the group's running ``previous`` deploys."""
    new = copy.deepcopy(app)
    labels = new.setdefault("labels", {})
    own_port = service_port(new)
    if previous:
        last = by_start(previous)[-1]
        last_labels = labels_of(last)
        next_colour = "green" if last_labels.get(COLOUR) == "blue" else "blue"
        alt = count(last_labels.get(ALT_PORT) or labels.get(ALT_PORT))
        bind = count(last_labels.get(BIND_PORT)) or own_port
        next_port = bind if service_port(last) == alt else alt
        target = count(last.get("instances"), 1)
        new_instances = min(options.new_instances, target)
        cap = new_instances if new_instances > 0 else target
        new["instances"] = min(options.initial_instances, cap)
        labels[NEW_INSTANCES] = str(new_instances)
        if new_instances > 0 and options.weight_percent is not None:
            labels[WEIGHT_PERCENT] = str(options.weight_percent)
        elif new_instances == 0 and options.weight_steps:
            labels[WEIGHT_PERCENT] = ",".join(str(step) for step in options.weight_steps)
        else:  # a label copied from an earlier canary's JSON must not split this one
            labels.pop(WEIGHT_PERCENT, None)
    else:
        labels.pop(WEIGHT_PERCENT, None)
        next_colour = "blue"
        next_port = own_port
        target = count(new.get("instances"), 1)
        labels[NEW_INSTANCES] = "0"
    app_id = "/" + str(new["id"]).strip("/")
    labels["HAPROXY_APP_ID"] = app_id
    new["id"] = f"{app_id}-{next_colour}"
    if own_port:
        labels[BIND_PORT] = str(count(labels.get(BIND_PORT)) or own_port)
    if next_port:
        with_service_port(new, int(next_port))
    labels[TARGET] = str(target)
    labels[COLOUR] = next_colour
    labels[STARTED_AT] = now.isoformat()
    return new


def parse_steps(text: str) -> tuple[int, ...]:
    """``--step-percent``: ascending whole percentages 1..100, comma-separated."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ZddError(f"--step-percent {text!r}: whole percentages, comma-separated") from None
    if not steps or not all(1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise ZddError(f"--step-percent {text!r}: ascending percentages from 1 to 100")
    return steps


def canary_instances(target: int, percent: float) -> int:
    """New-colour instances for ``percent`` of ``target``: at least 1, at most all."""
    return max(1, min(target, round(target * percent / 100.0)))


def backend_of(app: Mapping[str, Any]) -> str:
    """The group's backend in servicerouter's config: ``GROUP_PORT``."""
    group = "/" + str(group_of(app) or app.get("id", "")).strip("/")
    port = count(labels_of(app).get(BIND_PORT)) or service_port(app) or 0
    return backend_name(group, port)


def task_servers(app: Mapping[str, Any]) -> dict[str, str]:
    """Server name (``host_port`` of the first port) -> task id, for the app's tasks."""
    names = {}
    for task in app.get("tasks") or []:
        ports = task.get("ports") or []
        if task.get("host") and ports:
            names[server_name(str(task["host"]), ports[0])] = str(task["id"])
    return names


@dataclass(frozen=True)
class Views:
    """HAProxy's servers of the group's backend, one list per servicerouter asked."""

    nodes: tuple[Mapping[str, Mapping[str, Any]], ...]  # per node: server name -> state

    def all_serving(self, names: set[str]) -> bool:
        return all(all(n in node and node[n].get("serving") for n in names)
                   for node in self.nodes)

    def all_up(self, names: set[str]) -> bool:
        """Up in HAProxy's checks on every node, whatever their weight (a rollback's old
        tasks may still be drained while the new colour is there)."""
        return all(all(n in node and (str(node[n].get("status", "")).startswith("UP")
                                      or node[n].get("status") == "no check")
                       for n in names) for node in self.nodes)

    def describe(self, names: set[str]) -> str:
        """Each server's state on each node, for an error message."""
        return "; ".join(
            ", ".join(f"{n}={(node.get(n) or {}).get('status', 'absent')}/"
                      f"w{(node.get(n) or {}).get('weight', '-')}" for n in sorted(names))
            for node in self.nodes) or "no node"

    def drained(self, names: Mapping[str, str], *, idle: bool) -> list[str]:
        """Task ids whose servers take no new requests on every node (and, with
        ``idle``, hold no session either)."""
        done = []
        for name, task_id in names.items():
            states = [node.get(name) for node in self.nodes]
            if all(s is not None and not s.get("serving") and s.get("weight", 0) == 0
                   and (not idle or s.get("sessions", 0) == 0) for s in states):
                done.append(task_id)
        return sorted(done)


def next_scale(new: Mapping[str, Any], old: Mapping[str, Any], hybrid: bool,
               linear_increase: int = 0) -> int | None:
    """zdd.py's growth: half again of the new colour each step, then straight to the
    target once it is as large as the old one (or to the canary's count); None: done.

    ``linear_increase`` N > 0 (``--linear-increase``): N more each step, never past the
    target (or the canary's count), and no jump: a steady pace for apps whose new
    instances must warm up a few at a time."""
    current = count(new.get("instances"))
    goal = new_count_of(new) if hybrid else target_of(new)
    if current >= goal:
        return None
    if linear_increase > 0:
        return min(current + linear_increase, goal)
    step = math.floor(current + (current + 1) / 2)
    if hybrid:
        return min(step, goal)
    return goal if step >= count(old.get("instances")) else step


def finished(new: Mapping[str, Any], old: Mapping[str, Any], drained: Sequence[str],
             hybrid: bool) -> bool:
    """Hybrid: the canary's split is reached; else the new colour is whole and every
    old task drained (the old app may go)."""
    if hybrid:
        wanted = new_count_of(new)
        return (count(new.get("instances")) == wanted
                and count(old.get("instances")) == target_of(old) - wanted)
    return (count(new.get("instances")) == target_of(new)
            and len(drained) == count(old.get("instances")))


def every_node(urls: Sequence[str], addresses_of: Callable[[str], Sequence[str]]) -> list[str]:
    """Each ``--status`` URL once per IPv4 address of its host name, as zdd.py asked every
    marathon-lb behind its ``-l`` name: a DNS name for all edge nodes checks each of them,
    not whichever one answers. IP addresses, names with one address (or none: the request
    says why) and https URLs (the certificate names the host) stay as given."""
    found: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        addresses = sorted(set(addresses_of(host))) if parts.scheme == "http" and host \
            and not _is_ip(host) else []
        if len(addresses) < 2:
            found.append(url)
            continue
        port = f":{parts.port}" if parts.port else ""
        found.extend(urlunsplit(parts._replace(netloc=address + port)) for address in addresses)
    return list(dict.fromkeys(found))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


__all__ = [
    "DeployOptions", "Views", "ZddError", "backend_of", "by_start", "canary_instances", "every_node",
    "finished", "group_of", "next_scale", "parse_steps", "prepare", "task_servers", "validate",
]
