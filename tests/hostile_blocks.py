"""The hostile corpus's building blocks: the bystander app, hostile apps, and what a case expects.

See :mod:`tests.hostile_corpus` for what the corpus is and how it is run.
"""


from __future__ import annotations

import copy
import json
import socket
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- building blocks

MARKER = "evil"
"""Every hostile label value carries this token; it must never appear in a config."""

OLD = "2015-01-01T00:00:00.000Z"
MIDDLE = "2016-06-01T00:00:00.000Z"
NEW = "2017-01-01T00:00:00.000Z"

BYSTANDER_ID = "/bystander"
BYSTANDER_PORT = 10000
HOSTILE_ID = "/hostile"
HOSTILE_PORTS = (11000, 11001)

UNRESOLVABLE = "unresolvable.invalid"


def resolve(host: str) -> str | None:
    """The test's DNS: IPv4 literals resolve to themselves, ``*.test`` to 127.0.0.1."""
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return host
    if host.endswith(".test"):
        return "127.0.0.1"
    return None


def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
    """The test's DNS for bind addresses: literals as the OS reads them, local names local."""
    if host.endswith(".test") or host == "localhost":
        host = "127.0.0.1"
    kwargs["flags"] = kwargs.get("flags", 0) | socket.AI_NUMERICHOST
    return socket.getaddrinfo(host, port, *args, **kwargs)


def can_bind(addr: str) -> bool:
    """Whether this host has ``addr`` (IPv6 may be off in containers)."""
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((addr, 0))
    except OSError:
        return False
    return True


CERTS = "@CERTS@"
"""Placeholder for the directory of certificate files the test writes (see CERT_FILES)."""

CERT_FILES = ("good.pem", "expired.pem", "garbage.pem", "mismatch.pem", "split.pem",
              "split.pem.key", "dir/good.pem")


def bystander() -> dict[str, Any]:
    """An ordinary app sharing the router with every hostile one; it must stay routed."""
    return {
        "id": BYSTANDER_ID,
        "ports": [BYSTANDER_PORT],
        "labels": {"HAPROXY_0_VHOST": "bystander.example.com"},
        "versionInfo": {"lastConfigChangeAt": MIDDLE},
        "tasks": [{"id": "bystander.1", "host": "10.0.0.1", "ports": [31000]}],
    }


def app(app_id: str = HOSTILE_ID, ports: Any = HOSTILE_PORTS, *, changed: str | None = NEW,
        n_tasks: int = 2, task_ports: int = 2, **fields: Any) -> dict[str, Any]:
    """A healthy app (two ports, two tasks); ``fields`` override or add top-level fields.

    ``ports=None`` leaves ``ports`` out (for apps using another shape).
    """
    body: dict[str, Any] = {"id": app_id}
    if ports is not None:
        body["ports"] = list(ports) if isinstance(ports, tuple) else ports
    if changed is not None:
        body["versionInfo"] = {"lastConfigChangeAt": changed}
        body["version"] = changed
    body["tasks"] = [
        {"id": f"{app_id[1:] or 'x'}.{i}", "host": f"10.0.1.{i + 1}",
         "ports": [31000 + j for j in range(task_ports)]}
        for i in range(n_tasks)
    ]
    body.update(copy.deepcopy(fields))
    return body


def with_tasks(body: dict[str, Any], tasks: list[Any]) -> dict[str, Any]:
    body["tasks"] = tasks
    return body


def both_ports(app_id: str = HOSTILE_ID) -> frozenset[tuple[str, int]]:
    return frozenset((app_id, p) for p in HOSTILE_PORTS)


def second_port(app_id: str = HOSTILE_ID) -> frozenset[tuple[str, int]]:
    return frozenset({(app_id, HOSTILE_PORTS[1])})


@dataclass(frozen=True)
class Skip:
    """A log line that must exist: names ``app`` (and ``port index N``) and matches ``reason``."""

    app: str
    reason: str
    port_index: int | None = None


@dataclass(frozen=True)
class Case:
    """One Marathon state and what the router must make of it."""

    name: str
    category: str
    apps: tuple[Any, ...]
    routed: frozenset[tuple[str, int]] = frozenset()  # hostile services that must be routed
    skips: tuple[Skip, ...] = ()
    markers: tuple[str, ...] = ()  # text that must not reach the config
    with_bystander: bool = True
    no_vhost: tuple[tuple[str, str], ...] = ()  # (app id, host): never routed there

    def state(self) -> dict[str, Any]:
        apps = ([bystander()] if self.with_bystander else []) + list(self.apps)
        return {"apps": apps}

    def body(self) -> bytes:
        return json.dumps(self.state()).encode("utf-8")

    def expected_routed(self) -> frozenset[tuple[str, int]]:
        extra = {(BYSTANDER_ID, BYSTANDER_PORT)} if self.with_bystander else set()
        return self.routed | extra


@dataclass(frozen=True)
class DocumentCase:
    """A whole response body that is unusable: the router keeps the config it has."""

    name: str
    body: bytes
    reason: str


@dataclass
class _Builder:
    cases: list[Case] = field(default_factory=list)

    def add(self, name: str, category: str, apps: list[Any],
            routed: frozenset[tuple[str, int]] | set[tuple[str, int]], *skips: Skip,
            markers: tuple[str, ...] = (), with_bystander: bool = True,
            no_vhost: tuple[tuple[str, str], ...] = ()) -> None:
        self.cases.append(Case(name, category, tuple(apps), frozenset(routed), skips, markers,
                               with_bystander, no_vhost))


