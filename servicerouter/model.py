"""Marathon apps -> immutable services: the pure heart of servicerouter.

``build_model`` takes the decoded ``/v2/apps?embed=apps.tasks`` list and
returns one :class:`Service` per routed service port, each with its servers,
health check and settings, in the order the config is written: sorted by
(app id, bind port), as servicerouter.py did.  It does no I/O: host name
resolution is a function handed in by the caller.

Nothing in an app can stop a sync.  Every app is read on its own; anything
unusable (wrong JSON types, a bad label, an unsafe host) becomes a
:class:`~servicerouter.labels.Problem` naming the app, port and reason, and
only that app, port or task is left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servicerouter.labels import (
    AppSettings,
    PortSettings,
    Problem,
    read_app_settings,
    read_port_settings,
)

Resolver = Callable[[str], "str | None"]

_CLEAN_RE = re.compile(r"[^a-zA-Z0-9\-]")
_APP_ID_RE = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
# Task hosts: DNS names or IP literals, nothing that could split an HAProxy line.
_TASK_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")
_HC_PROTOCOL_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_HC_PATH_RE = re.compile(r"^/[A-Za-z0-9_./@+=:,%~?&;!$()*'-]*$")


def clean_name(text: str) -> str:
    """servicerouter.py's cleanup: every char outside [a-zA-Z0-9-] becomes '_'."""
    return _CLEAN_RE.sub("_", text)


def backend_name(app_id: str, bind_port: int) -> str:
    """App id without its leading '/', '/' -> '_', then '_' and the bind port."""
    return f"{app_id[1:].replace('/', '_')}_{bind_port}"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The Marathon health check of one port (the first with its portIndex)."""

    protocol: str
    path: str | None
    port_index: int
    timeout_seconds: int
    interval_seconds: int
    grace_period_seconds: int
    max_consecutive_failures: int
    ignore_http1xx: bool
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def falls(self) -> int:
        """HAProxy ``fall``: Marathon's allowed failures plus the failing one."""
        return self.max_consecutive_failures + 1

    @property
    def is_http(self) -> bool:
        return self.protocol in ("HTTP", "MESOS_HTTP")


@dataclass(frozen=True, slots=True)
class Server:
    """One task's endpoint for one service port."""

    host: str
    ipv4: str
    port: int
    task_id: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return clean_name(f"{self.host}_{self.port}")


@dataclass(frozen=True, slots=True)
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

    @property
    def vhosts(self) -> tuple[str, ...]:
        return self.settings.vhosts

    @property
    def labels(self) -> Mapping[str, Any]:
        labels = self.app.get("labels")
        return labels if isinstance(labels, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Model:
    """Everything a render needs from Marathon, and what was left out and why."""

    services: tuple[Service, ...]
    problems: tuple[Problem, ...] = ()
    app_count: int = 0
    task_count: int = 0


def has_group(router_groups: frozenset[str], app_groups: Iterable[str]) -> bool:
    """servicerouter.py's group rule ('*' = all; none = only apps without groups)."""
    if "*" in router_groups:
        return True
    app_groups = tuple(app_groups)
    if not router_groups and not app_groups:
        return True
    return bool(router_groups.intersection(app_groups))


def _as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _AppError(f"{what} is not a JSON object")
    return value


class _AppError(ValueError):
    """An app that cannot be read at all."""


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 65535


def service_ports(app: Mapping[str, Any]) -> list[Any]:
    """Service ports in index order, from whichever shape the app uses.

    Docker and 1.5+ container apps list them in ``portMappings``; 1.x apps in
    ``portDefinitions``; 0.x apps in ``ports``.
    """
    container = app.get("container")
    if isinstance(container, Mapping):
        mappings = container.get("portMappings")
        if not mappings:
            docker = container.get("docker")
            if isinstance(docker, Mapping):
                mappings = docker.get("portMappings")
        if isinstance(mappings, list) and mappings:
            ports = [m.get("servicePort") if isinstance(m, Mapping) else None for m in mappings]
            if any(p is not None for p in ports):
                return ports
    definitions = app.get("portDefinitions")
    if isinstance(definitions, list) and definitions:
        return [d.get("port") if isinstance(d, Mapping) else None for d in definitions]
    ports = app.get("ports")
    if ports is None:
        return []
    if not isinstance(ports, list):
        raise _AppError("'ports' is not a list")
    return ports


def _int_field(check: Mapping[str, Any], key: str, default: int) -> int:
    value = check.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"health check {key} is not a non-negative integer")
    return value


def read_health_check(app: Mapping[str, Any], index: int) -> HealthCheck | None:
    """The first health check whose portIndex is ``index`` (None if none)."""
    checks = app.get("healthChecks") or []
    if not isinstance(checks, list):
        raise ValueError("healthChecks is not a list")
    for check in checks:
        if not isinstance(check, Mapping) or check.get("portIndex") != index:
            continue
        protocol = check.get("protocol", "HTTP")
        if not isinstance(protocol, str) or not _HC_PROTOCOL_RE.match(protocol):
            raise ValueError("health check protocol is not a word")
        path = check.get("path")
        if path is not None and (not isinstance(path, str) or not _HC_PATH_RE.match(path)):
            raise ValueError(f"health check path {str(path)[:80]!r} is not a safe URL path")
        ignore = check.get("ignoreHttp1xx", False)
        return HealthCheck(
            protocol=protocol,
            path=path,
            port_index=index,
            timeout_seconds=_int_field(check, "timeoutSeconds", 20),
            interval_seconds=_int_field(check, "intervalSeconds", 60),
            grace_period_seconds=_int_field(check, "gracePeriodSeconds", 300),
            max_consecutive_failures=_int_field(check, "maxConsecutiveFailures", 3),
            ignore_http1xx=bool(ignore),
            raw=check,
        )
    return None


def _app_age_key(app: Mapping[str, Any]) -> tuple[str, str]:
    """Older configuration first: lastConfigChangeAt, else version, else id."""
    info = app.get("versionInfo")
    changed = info.get("lastConfigChangeAt") if isinstance(info, Mapping) else None
    if not isinstance(changed, str):
        changed = app.get("version") if isinstance(app.get("version"), str) else None
    return (changed or "\uffff", str(app.get("id")))


@dataclass(slots=True)
class _Draft:
    """A service being assembled from one app (mutable only inside build_model)."""

    app_id: str
    index: int
    service_port: int
    settings: PortSettings
    health_check: HealthCheck | None
    groups: tuple[str, ...]
    app: Mapping[str, Any]
    servers: dict[tuple[str, int], Server] = field(default_factory=dict)
    had_tasks: bool = False  # a task matched, even if its host did not resolve


def _read_app(
    app: Mapping[str, Any],
    resolve: Resolver,
    problems: list[Problem],
    router_groups: frozenset[str],
) -> tuple[list[_Draft], int]:
    """One app's services with their servers (unfiltered by conflicts)."""
    app_id = app.get("id")
    if not isinstance(app_id, str) or not _APP_ID_RE.match(app_id):
        raise _AppError("app id is missing or has characters outside [A-Za-z0-9._/-]")
    labels = _as_mapping(app.get("labels"), "labels")
    env = _as_mapping(app.get("env"), "env")
    app_settings, app_problems = read_app_settings(app_id, labels, env)
    if app_settings is None:
        problems.extend(app_problems)
        return [], 0
    if not has_group(router_groups, app_settings.groups):
        return [], 0
    ports = service_ports(app)
    drafts: dict[int, _Draft] = {}
    by_index: list[_Draft | None] = []
    for index, port in enumerate(ports):
        by_index.append(None)
        if not _is_port(port):
            problems.append(Problem(app_id, f"service port {port!r} is not a port number", index))
            continue
        if port in drafts:
            problems.append(Problem(app_id, f"service port {port} is listed twice", index))
            continue
        settings, port_problems = read_port_settings(app_id, index, labels, env)
        if settings is None:
            problems.extend(port_problems)
            continue
        try:
            check = read_health_check(app, index)
        except ValueError as err:
            problems.append(Problem(app_id, str(err), index, "healthChecks"))
            continue
        draft = _Draft(app_id, index, port, settings, check, app_settings.groups, app)
        drafts[port] = draft
        by_index[index] = draft
    tasks = app.get("tasks") or []
    if not isinstance(tasks, list):
        raise _AppError("'tasks' is not a list")
    for task in tasks:
        _add_task(app_id, task, by_index, resolve, problems)
    return [d for d in by_index if d is not None], len(tasks)


def _add_task(
    app_id: str,
    task: Any,
    by_index: Sequence[_Draft | None],
    resolve: Resolver,
    problems: list[Problem],
) -> None:
    if not isinstance(task, Mapping):
        problems.append(Problem(app_id, "task is not a JSON object"))
        return
    task_id = task.get("id")
    task_id = task_id if isinstance(task_id, str) else "?"
    host = task.get("host")
    if not host:
        problems.append(Problem(app_id, f"task {task_id[:120]!r} has no host (ignored)"))
        return
    if not isinstance(host, str) or not _TASK_HOST_RE.match(host):
        problems.append(Problem(app_id, f"task {task_id[:120]!r} host {str(host)[:80]!r} is not a host name"))
        return
    task_ports = task.get("ports") or []
    if not isinstance(task_ports, list):
        problems.append(Problem(app_id, f"task {task_id[:120]!r} ports is not a list"))
        return
    count = min(len(task_ports), len(by_index))
    if not count:
        return
    ipv4: str | None = None
    for index in range(count):
        draft = by_index[index]
        if draft is None:
            continue
        port = task_ports[index]
        if not _is_port(port):
            problems.append(Problem(app_id, f"task {task_id[:120]!r} port {port!r} is not a port number", index))
            continue
        draft.had_tasks = True
        if ipv4 is None:
            ipv4 = resolve(host)
            if ipv4 is None:
                # As servicerouter.py: the server is left out, its service stays.
                problems.append(Problem(app_id, f"could not resolve task host {host!r}; task ignored"))
                for later in by_index[index + 1:count]:
                    if later is not None:
                        later.had_tasks = True
                return
        draft.servers.setdefault((host, port), Server(host, ipv4, port, task_id))


def build_model(
    apps: Iterable[Any],
    groups: Iterable[str],
    resolve: Resolver,
    *,
    reserved_ports: Iterable[int] = (),
    default_bind_addr: str = "*",
) -> Model:
    """Turn Marathon apps into the services to route (pure but for ``resolve``)."""
    router_groups = frozenset(groups)
    problems: list[Problem] = []
    drafts: list[tuple[tuple[str, str], _Draft]] = []
    app_count = task_count = 0
    for app in apps:
        app_count += 1
        app_id = app.get("id") if isinstance(app, Mapping) else None
        try:
            if not isinstance(app, Mapping):
                raise _AppError("app is not a JSON object")
            app_drafts, tasks = _read_app(app, resolve, problems, router_groups)
        except (_AppError, TypeError, AttributeError, ValueError) as err:
            problems.append(Problem(str(app_id)[:200], f"app skipped: {err}"))
            continue
        task_count += tasks
        age = _app_age_key(app)
        drafts.extend((age, d) for d in app_drafts)
    services = _decide_bind_ports(drafts, frozenset(reserved_ports), default_bind_addr, problems)
    services.sort(key=lambda s: (s.app_id, s.bind_port))
    return Model(tuple(services), tuple(problems), app_count, task_count)


def _decide_bind_ports(
    drafts: list[tuple[tuple[str, str], _Draft]],
    reserved: frozenset[int],
    default_bind_addr: str,
    problems: list[Problem],
) -> list[Service]:
    """One service per bind port: the app whose configuration is oldest keeps it."""
    services: list[Service] = []
    taken: dict[int, str] = {}
    for _age, draft in sorted(drafts, key=lambda item: item[0]):
        if not draft.had_tasks:
            continue
        settings = draft.settings
        bind_port = settings.port or draft.service_port
        if bind_port in reserved:
            problems.append(Problem(
                draft.app_id, f"bind port {bind_port} is used by a shared frontend", draft.index,
                "HAPROXY_{n}_PORT".replace("{n}", str(draft.index)) if settings.port else None,
            ))
            continue
        owner = taken.get(bind_port)
        if owner is not None:
            problems.append(Problem(
                draft.app_id, f"bind port {bind_port} is already routed for older app {owner}",
                draft.index,
            ))
            continue
        taken[bind_port] = draft.app_id
        check = draft.health_check
        mode = settings.mode or ("http" if check is not None and check.protocol == "HTTP" else "tcp")
        if settings.vhosts:
            mode = "http"
        services.append(Service(
            app_id=draft.app_id,
            index=draft.index,
            service_port=draft.service_port,
            bind_port=bind_port,
            backend=backend_name(draft.app_id, bind_port),
            mode=mode,
            bind_addr=settings.bind_addr or default_bind_addr,
            settings=settings,
            health_check=check,
            servers=tuple(sorted(draft.servers.values(), key=lambda s: (s.host, s.port))),
            groups=draft.groups,
            version=str(draft.app.get("version") or ""),
            app=draft.app,
        ))
    return services


__all__ = [
    "AppSettings",
    "HealthCheck",
    "Model",
    "Problem",
    "Server",
    "Service",
    "backend_name",
    "build_model",
    "clean_name",
    "has_group",
    "read_health_check",
    "service_ports",
]
