"""The model's value types: what a render and the engines read.

:class:`Service` (one routed service port, a frontend and a backend), its
:class:`Server` lines and :class:`HealthCheck`, and :class:`Model`, the whole
answer of one build.  Built by :mod:`servicerouter.model.derive` (one app at a
time) and :mod:`servicerouter.model.decide` (the decisions across apps); never
changed afterwards.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servicerouter.model.label_values import path_ignores_case, path_prefixes
from servicerouter.model.labels import PortSettings, Problem

Resolver = Callable[[str], "str | None"]
# Why a port's settings cannot work on this host, or None (see servicerouter.model.preflight).
PortCheck = Callable[[PortSettings], "str | None"]

_CLEAN_RE = re.compile(r"[^a-zA-Z0-9\-]")
_IPV4_CHARS_RE = re.compile(r"[0-9.]+")


def clean_name(text: str) -> str:
    """servicerouter.py's cleanup: every char outside [a-zA-Z0-9-] becomes '_'."""
    return _CLEAN_RE.sub("_", text)


def clean_host(host: str) -> str:
    """:func:`clean_name` of a task host; IPv4 literals (most hosts) without a regex sub."""
    if _IPV4_CHARS_RE.fullmatch(host) is not None:
        return host.replace(".", "_")
    return _CLEAN_RE.sub("_", host)


def server_name(host: str, port: Any) -> str:
    """A server's name in the config: servicerouter.py's ``clean(host_port)``."""
    if type(port) is int:  # digits and '-' survive cleaning: clean the host only
        return f"{clean_host(host)}_{port}"
    return clean_name(f"{host}_{port}")


def backend_name(app_id: str, bind_port: int) -> str:
    """App id without its leading '/', '/' -> '_', then '_' and the bind port."""
    return f"{app_id[1:].replace('/', '_')}_{bind_port}"


# HealthCheck and Service are built once per port a sync and never changed afterwards:
# plain slots classes that hash and compare by value as frozen dataclasses did, without a
# frozen __init__'s object.__setattr__ per field (about seven times the cost; the
# engines replace() them, never assign to them).
@dataclass(slots=True, unsafe_hash=True)
class HealthCheck:
    """The Marathon health check of one port (the first with its portIndex)."""

    protocol: str
    path: str | None
    port_index: int
    timeout_seconds: int
    interval_seconds: int
    grace_period_seconds: int
    max_consecutive_failures: int
    ignore_http1xx: bool | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def falls(self) -> int:
        """HAProxy ``fall``: Marathon's allowed failures plus the failing one."""
        return self.max_consecutive_failures + 1

    @property
    def is_http(self) -> bool:
        return self.protocol in ("HTTP", "MESOS_HTTP")


class Server(tuple):
    """One task's endpoint for one service port: (host, ipv4, port, task_id, draining).

    An immutable tuple rather than a frozen dataclass: a sync builds one per task
    and port (62,500 at 5,000 apps), and a tuple is built about four times faster.
    Equality and hashing leave ``task_id`` out, as before: a task replaced by
    another at the same address and port is the same server line.
    """

    __slots__ = ()

    def __new__(cls, host: str, ipv4: str, port: int, task_id: str = "",
                draining: bool = False, weight: int | None = None) -> Server:
        if weight is not None:
            return tuple.__new__(cls, (host, ipv4, port, task_id, draining, weight))
        return tuple.__new__(cls, (host, ipv4, port, task_id, draining))

    host: str = property(operator.itemgetter(0))  # type: ignore[assignment]
    ipv4: str = property(operator.itemgetter(1))  # type: ignore[assignment]
    port: int = property(operator.itemgetter(2))  # type: ignore[assignment]
    task_id: str = property(operator.itemgetter(3))  # type: ignore[assignment]
    # The task is being killed: no new traffic, its sessions finish.
    draining: bool = property(operator.itemgetter(4))  # type: ignore[assignment]

    @property
    def weight(self) -> int | None:
        """An explicit HAProxy ``weight`` (a deployment group's traffic split), or None:
        HAProxy's default.  A sixth item only on weighted servers, so the 62,500 plain
        ones of a large sync stay five-tuples (see :func:`weighted_server`)."""
        return self[5] if len(self) > 5 else None

    def _key(self) -> tuple[Any, ...]:
        if len(self) == 5:  # the plain server: as fast as before weights existed
            return (self[0], self[1], self[2], self[4])
        return (self[0], self[1], self[2], self[4], self[5])

    def __eq__(self, other: object) -> bool:
        if type(other) is not Server:
            return False if isinstance(other, tuple) else NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:  # no ordering, as the dataclass had none
        return NotImplemented

    __le__ = __gt__ = __ge__ = __lt__

    def __repr__(self) -> str:
        return (f"Server(host={self[0]!r}, ipv4={self[1]!r}, port={self[2]!r}, "
                f"draining={self[4]!r}" + (f", weight={self[5]!r})" if len(self) > 5 else ")"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Server, tuple(self))

    @property
    def name(self) -> str:
        """Computed on each read: a render names 50,000 servers through its own
        per-render cache (see servicerouter.render.config) instead."""
        return server_name(self[0], self[2])


def new_server(host: str, ipv4: str, port: int, task_id: str, draining: bool) -> Server:
    """``Server(...)`` without the Python-level ``__new__`` (the model's hot loops)."""
    return _tuple_new(Server, (host, ipv4, port, task_id, draining))  # type: ignore[return-value]


def weighted_server(server: Server, weight: int) -> Server:
    """``server`` with an explicit HAProxy ``weight`` (1..256)."""
    return _tuple_new(Server, (*server[:5], weight))  # type: ignore[return-value]


_tuple_new = tuple.__new__


@dataclass(slots=True, unsafe_hash=True)
class Service:
    """One routed service port of one app: a frontend and a backend."""

    app_id: str
    index: int
    service_port: int
    bind_port: int
    backend: str
    mode: str
    bind_addr: str
    settings: PortSettings
    health_check: HealthCheck | None
    servers: tuple[Server, ...]
    groups: tuple[str, ...]
    version: str = ""
    app: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Vhosts an older app owns (see _decide_vhosts): never routed here.
    lost_vhosts: frozenset[str] = frozenset()
    # Vhosts an older app owns whose rules come after the owner's anyway:
    # legacy (str.format) fragments still render them, as servicerouter.py did.
    shadowed_vhosts: frozenset[str] = frozenset()
    # The same per (vhost, path prefix) rule, for ports with several prefixes: a
    # vhost is in lost_vhosts / shadowed_vhosts only when all its prefixes are.
    lost_paths: frozenset[tuple[str, str]] = frozenset()
    shadowed_paths: frozenset[tuple[str, str]] = frozenset()

    @property
    def vhosts(self) -> tuple[str, ...]:
        """The virtual hosts whose traffic this port receives."""
        if self.lost_vhosts or self.shadowed_vhosts:
            return tuple(h for h in self.settings.vhosts
                         if h not in self.lost_vhosts and h not in self.shadowed_vhosts)
        return self.settings.vhosts

    @property
    def rule_vhosts(self) -> tuple[str, ...]:
        """The virtual hosts with a rule in the shared frontends (shadowed ones included)."""
        if self.lost_vhosts:
            return tuple(h for h in self.settings.vhosts if h not in self.lost_vhosts)
        return self.settings.vhosts

    @property
    def path(self) -> str | None:
        """HAPROXY_{n}_PATH as parsed (``-i /a /b``), only when it routes by path."""
        return self.settings.path if self.paths else None

    @property
    def paths(self) -> tuple[str, ...]:
        """Path prefixes under the vhosts (one rule each), only when there is a vhost
        to hang them on; () routes the whole host.

        ``/`` matches every request, so a port listing it is the same route as no
        path: (), and one owner decides it like any other vhost claim.
        """
        path = self.settings.path
        if path is None or not self.settings.vhosts:
            return ()
        if path[0] == "/" and " " not in path:
            return (path,) if path != "/" else ()
        prefixes = path_prefixes(path)
        return () if "/" in prefixes else prefixes

    @property
    def path_ignore_case(self) -> bool:
        """Whether the path prefixes match ignoring case (HAPROXY_{n}_PATH starts with -i)."""
        path = self.settings.path
        return path is not None and path_ignores_case(path)

    @property
    def labels(self) -> Mapping[str, Any]:
        labels = self.app.get("labels")
        if type(labels) is dict:  # Marathon's JSON: no ABC isinstance check per call
            return labels
        return labels if isinstance(labels, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Model:
    """Everything a render needs from Marathon, and what was left out and why."""

    services: tuple[Service, ...]
    problems: tuple[Problem, ...] = ()
    app_count: int = 0
    task_count: int = 0
    # Auto-assigned IP-per-task service ports, ("app id#port index", port): ports of
    # apps that are gone first (oldest release first), then the current ones. The
    # next build takes it back as ``port_assignments`` so ports stay put.
    port_assignments: tuple[tuple[str, int], ...] = ()


def has_group(router_groups: frozenset[str], app_groups: Iterable[str]) -> bool:
    """servicerouter.py's group rule ('*' = all; none = only apps without groups)."""
    if "*" in router_groups:
        return True
    app_groups = tuple(app_groups)
    if not router_groups and not app_groups:
        return True
    return bool(router_groups.intersection(app_groups))



def route_order_key(service: Service, host: str,
                    path: str | None = None) -> tuple[bool, int, int]:
    """Rank of a (service, vhost, path prefix) rule in the shared frontends; lower goes first.

    HAProxy takes the first ``use_backend`` that matches, so the most specific
    rule goes first: exact hosts before wildcards, then the longest path (each
    prefix of a port is its own rule, ranked by its own length).
    HAPROXY_{n}_BACKEND_WEIGHT only orders rules equally specific (higher
    first): a weight never lets a wildcard or a shorter path take traffic from
    a more specific rule. Equal ranks keep service order (app id, bind port),
    which is servicerouter.py's order.
    """
    return (host.startswith("*."), -len(path) if path else 0, -service.settings.backend_weight)
