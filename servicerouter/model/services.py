"""Marathon apps -> immutable services: the pure heart of servicerouter.

``build_model`` takes the decoded ``/v2/apps?embed=apps.tasks`` list and
returns one :class:`Service` per routed service port, each with its servers,
health check and settings, in the order the config is written: sorted by
(app id, bind port), as servicerouter.py did.  It does no I/O: host name
resolution is a function handed in by the caller.

Nothing in an app can stop a sync.  Every app is read on its own; anything
unusable (wrong JSON types, a bad label, an unsafe host) becomes a
:class:`~servicerouter.model.labels.Problem` naming the app, port and reason, and
only that app, port or task is left out.
"""

from __future__ import annotations

import functools
import operator
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from servicerouter.model.labels import (
    AppSettings,
    PortSettings,
    Problem,
    SettingError,
    mark_still_routed,
    parse_groups,
    path_ignores_case,
    path_prefixes,
    read_app_settings,
    read_port_settings,
)

Resolver = Callable[[str], "str | None"]
# Why a port's settings cannot work on this host, or None (see servicerouter.model.preflight).
PortCheck = Callable[[PortSettings], "str | None"]

_CLEAN_RE = re.compile(r"[^a-zA-Z0-9\-]")
_APP_ID_RE = re.compile(r"^(?:/[A-Za-z0-9._-]+)+$")
MAX_APP_ID_LENGTH = 1024  # HAProxy refuses names and lines a few kB long
# Marathon's timestamps (ISO 8601); anything else cannot claim to be old.
_TIMESTAMP_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9:]+)?$")
# Task hosts: DNS names or IP literals, nothing that could split an HAProxy line.
_TASK_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")
_HC_PROTOCOL_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
# Health-check paths go unquoted into ``option httpchk GET <path>``: no quote (HAProxy
# would see an unmatched quote and reject the whole config), no backslash (an escape
# that changes the path), no '#', blank, brace or control character. '$' and ';' are
# literal there in HAProxy 2.6 (variables expand only inside double quotes).
_HC_PATH_RE = re.compile(r"^/[A-Za-z0-9_./@+=:,%~?&;!$()*-]*$")
MAX_HC_PATH_LENGTH = 1024
_IPV4_RE = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$")
DEFAULT_IP_PER_TASK_PORTS = (10050, 10100)  # marathon-lb's --min/max-serv-port-ip-per-task


def clean_name(text: str) -> str:
    """servicerouter.py's cleanup: every char outside [a-zA-Z0-9-] becomes '_'."""
    return _CLEAN_RE.sub("_", text)


_SERVER_ORDER = operator.attrgetter("host", "port")  # servers sort by (host, port)
# Task hosts repeat across thousands of servers: clean each one once.
_clean_host = functools.lru_cache(maxsize=16384)(clean_name)


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
    ignore_http1xx: bool | None
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
    draining: bool = False  # task is being killed: no new traffic, sessions finish

    @property
    def name(self) -> str:
        if type(self.port) is int:  # digits and '-' survive cleaning: clean the host only
            return f"{_clean_host(self.host)}_{self.port}"
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


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _AppError(f"{what} is not a list")
    return value


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
    container = _as_mapping(app.get("container"), "'container'")
    if container:
        mappings = _as_list(container.get("portMappings"), "'portMappings'")
        if not mappings:
            docker = _as_mapping(container.get("docker"), "'container.docker'")
            mappings = _as_list(docker.get("portMappings"), "'portMappings'")
        if mappings:
            ports = [m.get("servicePort") if isinstance(m, Mapping) else None for m in mappings]
            if any(p is not None for p in ports):
                return ports
    definitions = _as_list(app.get("portDefinitions"), "'portDefinitions'")
    if definitions:
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
        if not isinstance(protocol, str) or not _HC_PROTOCOL_RE.fullmatch(protocol):
            raise ValueError("health check protocol is not a word")
        path = check.get("path")
        if path is not None:
            if not isinstance(path, str):
                raise ValueError(f"health check path {str(path)[:80]!r} is not a string")
            if len(path) > MAX_HC_PATH_LENGTH:
                raise ValueError(f"health check path is {len(path)} characters long "
                                 f"(at most {MAX_HC_PATH_LENGTH})")
            if not _HC_PATH_RE.fullmatch(path):
                raise ValueError(
                    f"health check path {path[:80]!r} is not a safe URL path ('/' then letters, "
                    "digits and _ . / @ + = : , % ~ ? & ; ! $ ( ) * -; no quote, backslash, "
                    "'#' or blank)")
        ignore = check.get("ignoreHttp1xx", False)
        return HealthCheck(
            protocol=protocol,
            path=path,
            port_index=index,
            timeout_seconds=_int_field(check, "timeoutSeconds", 20),
            interval_seconds=_int_field(check, "intervalSeconds", 60),
            grace_period_seconds=_int_field(check, "gracePeriodSeconds", 300),
            max_consecutive_failures=_int_field(check, "maxConsecutiveFailures", 3),
            # null stays None: servicerouter.py rendered Marathon's value as it came
            ignore_http1xx=None if ignore is None else bool(ignore),
            raw=check,
        )
    return None


def _app_age_key(app: Mapping[str, Any]) -> tuple[str, str]:
    """Older configuration first: lastConfigChangeAt, else version, else id."""
    info = app.get("versionInfo")
    changed = info.get("lastConfigChangeAt") if isinstance(info, Mapping) else None
    if not isinstance(changed, str) or not _TIMESTAMP_RE.fullmatch(changed):
        version = app.get("version")
        changed = version if isinstance(version, str) and _TIMESTAMP_RE.fullmatch(version) else None
    return (changed or "\uffff", str(app.get("id")))


@dataclass(slots=True)
class _Draft:
    """A service being assembled from one app (mutable only inside build_model)."""

    app_id: str
    index: int
    service_port: int | None  # None: IP-per-task port to assign from the range
    settings: PortSettings
    health_check: HealthCheck | None
    groups: tuple[str, ...]
    app: Mapping[str, Any]
    servers: dict[tuple[str, int], Server] = field(default_factory=dict)
    had_tasks: bool = False  # a task matched, even if its host did not resolve
    container_port: int | None = None  # IP-per-task: servers are task IP + this port


@dataclass(frozen=True, slots=True)
class _TaskFilter:
    """--health-check: which tasks may take traffic (servicerouter.py took all)."""

    check_count: int  # Marathon health checks every task must pass
    not_ready: frozenset[str]  # task ids whose readiness check has not passed
    # Server addresses ("ip:port") the serving config routes: a task whose health
    # is not known yet (just after a Marathon leader change, marathon#3419) keeps
    # its place there instead of being dropped.
    routed_before: frozenset[str] = frozenset()


def _task_filter(app: Mapping[str, Any],
                 routed_before: frozenset[str] = frozenset()) -> _TaskFilter:
    checks = app.get("healthChecks")
    count = sum(1 for c in checks if isinstance(c, Mapping)) if isinstance(checks, list) else 0
    results = app.get("readinessCheckResults")
    not_ready: set[str] = set()
    if isinstance(results, list):
        for result in results:
            if isinstance(result, Mapping) and result.get("ready") is not True:
                task_id = result.get("taskId")
                if isinstance(task_id, str):
                    not_ready.add(task_id)
    return _TaskFilter(count, frozenset(not_ready), routed_before)


def _task_admission(task: Mapping[str, Any], task_id: str, rules: _TaskFilter) -> str | None:
    """'serve', 'drain', 'unknown' (no verdict yet) or None (leave out) under --health-check."""
    state = task.get("state")
    if state == "TASK_KILLING":
        return "drain"  # keep it for the sessions it has; HAProxy sends it nothing new
    if state is not None and state != "TASK_RUNNING":
        return None
    if task_id in rules.not_ready:
        return None
    if rules.check_count:
        results = task.get("healthCheckResults")
        if not isinstance(results, list):
            return "unknown" if results is None else None
        if any(not isinstance(r, Mapping) or r.get("alive") is not True for r in results):
            return None
        if len(results) < rules.check_count:
            return "unknown"
    return "serve"


def ip_per_task_ports(app: Mapping[str, Any]) -> list[Any] | None:
    """Container ports of an IP-per-task app (None for host-networked apps).

    IP-per-task apps are reached on the task's own IP: Marathon 1.5+ says so
    with a ``container`` network, older ones with ``ipAddress`` (ports in
    ``ipAddress.discovery.ports`` or Docker ``USER`` network port mappings).
    """
    container = app.get("container")
    container = container if isinstance(container, Mapping) else {}
    docker = container.get("docker")
    docker = docker if isinstance(docker, Mapping) else {}
    networks = app.get("networks")
    container_mode = isinstance(networks, list) and any(
        isinstance(n, Mapping) and n.get("mode") == "container" for n in networks
    )
    ip_address = app.get("ipAddress")
    legacy_mode = isinstance(ip_address, Mapping) or docker.get("network") == "USER"
    if not container_mode and not legacy_mode:
        return None
    mappings = container.get("portMappings") or docker.get("portMappings")
    if isinstance(mappings, list) and mappings:
        return [m.get("containerPort") if isinstance(m, Mapping) else None for m in mappings]
    if isinstance(ip_address, Mapping):
        discovery = ip_address.get("discovery")
        ports = discovery.get("ports") if isinstance(discovery, Mapping) else None
        if isinstance(ports, list):
            return [p.get("number") if isinstance(p, Mapping) else None for p in ports]
    return []


def _task_ipv4(task: Mapping[str, Any]) -> str | None:
    """The task's first IPv4 address (IP-per-task)."""
    addresses = task.get("ipAddresses")
    if not isinstance(addresses, list):
        return None
    for entry in addresses:
        address = entry.get("ipAddress") if isinstance(entry, Mapping) else None
        if isinstance(address, str) and _IPV4_RE.fullmatch(address):
            return address
    return None


def _port_key(labels: Mapping[str, Any], env: Mapping[str, Any], key: str) -> Any:
    return labels[key] if key in labels else env.get(key)


def _has_port_groups(labels: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
    return any(
        k != "HAPROXY_GROUP" and k.startswith("HAPROXY_") and k.endswith("_GROUP")
        for source in (labels, env) for k in source
    )


def _read_app(
    app: Mapping[str, Any],
    resolve: Resolver,
    problems: list[Problem],
    router_groups: frozenset[str],
    strict_mode: bool = False,
    health_check: bool = False,
    routed_before: frozenset[str] | None = None,
) -> tuple[list[_Draft], int]:
    """One app's services with their servers (unfiltered by conflicts)."""
    app_id = app.get("id")
    if not isinstance(app_id, str) or not _APP_ID_RE.fullmatch(app_id):
        raise _AppError("app id is missing, has characters outside [A-Za-z0-9._/-] "
                        "or an empty path segment")
    if len(app_id) > MAX_APP_ID_LENGTH:
        raise _AppError(f"app id is {len(app_id)} characters long (at most {MAX_APP_ID_LENGTH})")
    labels = _as_mapping(app.get("labels"), "labels")
    env = _as_mapping(app.get("env"), "env")
    app_settings, app_problems = read_app_settings(app_id, labels, env)
    if app_settings is None:
        problems.extend(app_problems)
        return [], 0
    port_groups = _has_port_groups(labels, env)
    if not port_groups and not has_group(router_groups, app_settings.groups):
        return [], 0
    ports = service_ports(app)
    container_ports = ip_per_task_ports(app)
    if container_ports is not None:
        # IP-per-task: one service port per container port; missing ones are assigned.
        ports = [ports[i] if i < len(ports) else None for i in range(len(container_ports))]
    drafts: dict[int, _Draft] = {}
    by_index: list[_Draft | None] = []
    for index, port in enumerate(ports):
        by_index.append(None)
        auto_port = container_ports is not None and port in (None, 0)
        if not auto_port and not _is_port(port):
            problems.append(Problem(app_id, f"service port {port!r} is not a port number", index))
            continue
        if not auto_port and port in drafts:
            problems.append(Problem(app_id, f"service port {port} is listed twice", index))
            continue
        groups = app_settings.groups
        if port_groups:
            raw_groups = _port_key(labels, env, f"HAPROXY_{index}_GROUP")
            if isinstance(raw_groups, str):
                try:
                    groups = parse_groups(raw_groups)
                except SettingError:
                    pass  # read_port_settings reports it
            if not has_group(router_groups, groups):
                continue
        settings, port_problems = read_port_settings(app_id, index, labels, env)
        if settings is None:
            problems.extend(port_problems)
            continue
        if settings.enabled is False or (strict_mode and settings.enabled is not True):
            continue
        if settings.path is not None and not settings.vhosts:
            problems.append(Problem(app_id, "a path needs a virtual host; path ignored", index,
                                    f"HAPROXY_{index}_PATH", settings.path))
        try:
            check = read_health_check(app, index)
        except ValueError as err:
            problems.append(Problem(app_id, str(err), index, "healthChecks"))
            continue
        container_port = None
        if container_ports is not None:
            container_port = container_ports[index]
            if not _is_port(container_port):
                problems.append(Problem(
                    app_id, f"IP-per-task container port {container_port!r} is not a port number",
                    index,
                ))
                continue
        draft = _Draft(app_id, index, None if auto_port else port, settings, check, groups, app,
                       container_port=container_port)
        if not auto_port:
            drafts[port] = draft
        by_index[index] = draft
    tasks = app.get("tasks") or []
    if not isinstance(tasks, list):
        raise _AppError("'tasks' is not a list")
    rules = _task_filter(app, routed_before or frozenset()) if health_check else None
    for task in tasks:
        _add_task(app_id, task, by_index, resolve, problems, rules, container_ports is not None)
    return [d for d in by_index if d is not None], len(tasks)


def _add_task(
    app_id: str,
    task: Any,
    by_index: Sequence[_Draft | None],
    resolve: Resolver,
    problems: list[Problem],
    rules: _TaskFilter | None = None,
    ip_per_task: bool = False,
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
    if not isinstance(host, str) or not _TASK_HOST_RE.fullmatch(host):
        problems.append(Problem(app_id, f"task {task_id[:120]!r} host {str(host)[:80]!r} is not a host name"))
        return
    draining = False
    if rules is not None:
        admission = _task_admission(task, task_id, rules)
        if admission == "unknown" and _was_routed(task, host, by_index, resolve, rules,
                                                  ip_per_task):
            admission = "serve"  # as it was: no health verdict is not a failed one
        if admission not in ("serve", "drain"):
            return  # failing, or unknown and new: not routed until healthy
        draining = admission == "drain"
    if ip_per_task:
        address = _task_ipv4(task)
        if address is None:
            problems.append(Problem(app_id, f"task {task_id[:120]!r} has no IPv4 address "
                                            "(IP-per-task); task ignored"))
            return
        for draft in by_index:
            if draft is not None and draft.container_port is not None:
                draft.had_tasks = True
                draft.servers.setdefault(
                    (address, draft.container_port),
                    Server(address, address, draft.container_port, task_id, draining),
                )
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
        draft.servers.setdefault((host, port), Server(host, ipv4, port, task_id, draining))


def _was_routed(task: Mapping[str, Any], host: str, by_index: Sequence[_Draft | None],
                resolve: Resolver, rules: _TaskFilter, ip_per_task: bool) -> bool:
    """Whether the serving config routes one of this task's endpoints."""
    if not rules.routed_before:
        return False
    ports: list[Any]
    if ip_per_task:
        address = _task_ipv4(task)
        ports = [d.container_port for d in by_index if d is not None]
    else:
        address = resolve(host)
        raw = task.get("ports")
        ports = raw if isinstance(raw, list) else []
    return address is not None and any(f"{address}:{p}" in rules.routed_before for p in ports)


def build_model(
    apps: Iterable[Any],
    groups: Iterable[str],
    resolve: Resolver,
    *,
    reserved_ports: Iterable[int] = (),
    default_bind_addr: str = "*",
    strict_mode: bool = False,
    health_check: bool = False,
    ip_per_task_ports: tuple[int, int] = DEFAULT_IP_PER_TASK_PORTS,
    port_assignments: Iterable[tuple[str, int]] = (),
    check_port: PortCheck | None = None,
    routed_before: frozenset[str] | None = None,
) -> Model:
    """Turn Marathon apps into the services to route (pure but for ``resolve``).

    ``strict_mode``: only ports with HAPROXY_{n}_ENABLED=true are routed.
    ``health_check``: only running tasks whose Marathon health checks all pass
    (and whose readiness check passed) take traffic; killing tasks are drained.
    ``ip_per_task_ports``: range for IP-per-task apps Marathon gave no service port.
    ``port_assignments``: the previous build's ``Model.port_assignments``, so an
    app keeps its assigned port while it exists (and a port freed by a deleted
    app goes to another only when the range has no never-used port left).
    ``check_port``: says why a port's settings cannot work on this host (a
    missing certificate, a foreign bind address); such a port is skipped
    before it can claim a bind port or a virtual host.
    ``routed_before``: server addresses the serving config routes; with
    ``health_check``, a task whose health is not known yet stays routed if it
    is among them (and is left out, as before, if it is not).
    """
    router_groups = frozenset(groups)
    problems: list[Problem] = []
    drafts: list[tuple[tuple[str, str], _Draft]] = []
    app_count = task_count = 0
    for position, app in enumerate(apps):
        app_count += 1
        app_id = app.get("id") if isinstance(app, Mapping) else None
        if not isinstance(app_id, str) or not app_id:
            app_id = f"apps[{position}]"  # name the app by where it is in the list
        try:
            if not isinstance(app, Mapping):
                raise _AppError("app is not a JSON object")
            app_drafts, tasks = _read_app(app, resolve, problems, router_groups,
                                          strict_mode, health_check, routed_before)
        except (_AppError, TypeError, AttributeError, ValueError) as err:
            problems.append(Problem(str(app_id)[:200], f"app skipped: {err}"))
            continue
        task_count += tasks
        age = _app_age_key(app)
        drafts.extend((age, d) for d in app_drafts)
    if check_port is not None:
        drafts = _drop_unusable(drafts, check_port, problems)
    drafts.sort(key=lambda item: item[0])
    reserved = frozenset(reserved_ports)
    assignments = _assign_ip_per_task_ports(drafts, reserved, ip_per_task_ports, problems,
                                            port_assignments)
    services = _decide_bind_ports(drafts, reserved, default_bind_addr, problems)
    services = _decide_vhosts(services, problems)
    services.sort(key=lambda s: (s.app_id, s.bind_port))
    # Say which problems only cost a vhost, a path or a task: their port still routes.
    routed = {(s.app_id, s.index) for s in services}
    return Model(tuple(services), mark_still_routed(problems, routed), app_count, task_count,
                 assignments)


def _drop_unusable(drafts: list[tuple[tuple[str, str], _Draft]], check_port: PortCheck,
                   problems: list[Problem]) -> list[tuple[tuple[str, str], _Draft]]:
    """Drafts whose settings ``check_port`` accepts; a problem for each other one."""
    kept = []
    for item in drafts:
        draft = item[1]
        reason = check_port(draft.settings)
        if reason is None:
            kept.append(item)
        else:
            problems.append(Problem(draft.app_id, reason, draft.index))
    return kept


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
        if not draft.had_tasks or (draft.service_port is None and not draft.settings.port):
            continue
        settings = draft.settings
        bind_port = settings.port or draft.service_port
        assert bind_port is not None
        if bind_port in reserved:
            problems.append(Problem(
                draft.app_id, f"bind port {bind_port} is used by a shared frontend", draft.index,
                "HAPROXY_{n}_PORT".replace("{n}", str(draft.index)) if settings.port else None,
            ))
            continue
        check = draft.health_check
        mode = settings.mode or ("http" if check is not None and check.protocol == "HTTP" else "tcp")
        if settings.vhosts:
            mode = "http"
        if settings.auth is not None and mode != "http":
            # Fail closed: a port that asked for a password is not served without one.
            problems.append(Problem(draft.app_id, "basic auth needs mode http (a VHOST or MODE=http)",
                                    draft.index, f"HAPROXY_{draft.index}_AUTH"))
            continue
        owner = taken.get(bind_port)
        if owner is not None:
            problems.append(Problem(
                draft.app_id, f"bind port {bind_port} is already routed for older app {owner}",
                draft.index, kind="conflict", route=f":{bind_port}", owner=owner,
            ))
            continue
        taken[bind_port] = draft.app_id
        services.append(Service(
            app_id=draft.app_id,
            index=draft.index,
            service_port=draft.service_port or bind_port,
            bind_port=bind_port,
            backend=backend_name(draft.app_id, bind_port),
            mode=mode,
            bind_addr=settings.bind_addr or default_bind_addr,
            settings=settings,
            health_check=check,
            servers=tuple(sorted(draft.servers.values(), key=_SERVER_ORDER)),
            groups=draft.groups,
            version=str(draft.app.get("version") or ""),
            app=draft.app,
        ))
    return services


def ip_per_task_key(app_id: str, index: int) -> str:
    """The name of an auto-assigned port in ``Model.port_assignments``."""
    return f"{app_id}#{index}"


def _assign_ip_per_task_ports(
    drafts: list[tuple[tuple[str, str], _Draft]],
    reserved: frozenset[int],
    port_range: tuple[int, int],
    problems: list[Problem],
    previous: Iterable[tuple[str, int]] = (),
) -> tuple[tuple[str, int], ...]:
    """Give IP-per-task ports without a service port one from ``port_range``.

    Stable across runs: an app keeps the port ``previous`` gave it while it
    exists and the port is still free (no explicit port took it). Others start
    at a hash of (app id, port index) and probe upwards past taken ports and
    past ports ``previous`` remembers for apps that are gone: a freed port goes
    to another app only when no never-used port is left, the one freed longest
    ago first, so clients of a deleted app are not sent to a new one. Explicit
    ports are never taken; older apps (``drafts`` is in age order) choose first.
    Returns the assignments to pass as ``previous`` next time.
    """
    low, high = port_range
    memory: dict[str, int] = {}
    remembered: set[int] = set()
    for item in previous:  # first entry wins for a key and for a port
        if not (isinstance(item, tuple | list) and len(item) == 2):
            continue
        key, port = item
        if (isinstance(key, str) and type(port) is int and low <= port <= high
                and key not in memory and port not in remembered):
            memory[key] = port
            remembered.add(port)
    pending = [d for _age, d in drafts if d.service_port is None and not d.settings.port]
    taken = set(reserved)
    taken.update(d.settings.port or d.service_port for _age, d in drafts
                 if d.settings.port or d.service_port is not None)
    assigned: dict[str, int] = {}
    later: list[_Draft] = []
    for draft in pending:
        key = ip_per_task_key(draft.app_id, draft.index)
        port = memory.get(key)
        if port is not None and port not in taken:
            taken.add(port)
            draft.service_port = assigned[key] = port
        else:
            later.append(draft)
    # Ports of apps that are gone, oldest release first (``previous`` keeps that order).
    released = [(k, p) for k, p in memory.items() if k not in assigned and p not in taken]
    blocked = taken | {p for _k, p in released}
    size = high - low + 1
    for draft in later:
        key = ip_per_task_key(draft.app_id, draft.index)
        start = zlib.crc32(key.encode()) % size if size > 0 else 0
        candidates = (low + (start + step) % size for step in range(max(size, 0)))
        port = next((c for c in candidates if c not in blocked), None)
        if port is None:
            port = next((p for _k, p in released if p not in taken), None)
        if port is None:
            problems.append(Problem(draft.app_id, f"no free service port left in the IP-per-task "
                                                  f"range {low}-{high}", draft.index))
            continue
        taken.add(port)
        blocked.add(port)
        draft.service_port = assigned[key] = port
    reused = set(assigned.values())
    return tuple((k, p) for k, p in released if p not in reused) + tuple(assigned.items())


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


def _decide_vhosts(services: list[Service], problems: list[Problem]) -> list[Service]:
    """One owner per (vhost, path prefix): the app whose configuration is oldest.

    A newer claimant never receives that traffic. When the owner's rule comes
    first anyway (it sorts first by app id and weight), the claimant's rule is
    only *shadowed*: legacy fragments still write it, so the output stays what
    servicerouter.py wrote. Otherwise it is *lost* and written nowhere. Each
    prefix of a port is a claim of its own (a port keeps the prefixes nobody
    older has); a prefix matched ignoring case (``-i``) claims every spelling.
    """
    # A path prefix someone matches ignoring case claims all its spellings: those
    # claims are grouped by the lower-cased prefix (rare), the rest by the prefix.
    folded = {(host.lower(), path.lower()) for service in services
              if service.settings.path is not None and service.path_ignore_case
              for host in service.settings.vhosts for path in service.paths}
    claims: dict[tuple[str, str], list[tuple[Service, str, str]]] = {}
    for service in services:
        paths = service.paths or ("",)
        for host in service.settings.vhosts:
            lowered = host.lower()
            for path in paths:
                key = (lowered, path)
                if folded and (lowered, path.lower()) in folded:
                    key = (lowered, "-i " + path.lower())
                claims.setdefault(key, []).append((service, host, path))
    lost: dict[int, set[str]] = {}
    shadowed: dict[int, set[str]] = {}
    lost_paths: dict[int, set[tuple[str, str]]] = {}
    shadowed_paths: dict[int, set[tuple[str, str]]] = {}
    for (claimed, _), claimants in claims.items():
        if len(claimants) < 2:
            continue
        owner_of = _claim_owners(claimants)
        if not owner_of:
            continue
        groups: dict[int, list[Service]] = {}
        for index, owner_index in owner_of.items():
            groups.setdefault(owner_index, [claimants[owner_index][0]]).append(
                claimants[index][0])
        for index, (service, host, path) in enumerate(claimants):
            owner_index = owner_of.get(index)
            if owner_index is None:
                continue
            owner = claimants[owner_index][0]
            where = f"{host}{path}" if path else host
            problems.append(Problem(
                service.app_id,
                f"vhost conflict: {where} is already routed for older app {owner.app_id}",
                service.index,
                # a lost prefix costs the PATH entry, a lost host the VHOST one
                f"HAPROXY_{service.index}_{'PATH' if path else 'VHOST'}", path or host,
                kind="conflict", route=claimed + path, owner=owner.app_id,
            ))
            first = min(groups[owner_index], key=lambda s: (-s.settings.backend_weight,
                                                            s.app_id, s.bind_port))
            is_shadowed = first is owner and service is not owner
            if path:
                target_paths = shadowed_paths if is_shadowed else lost_paths
                target_paths.setdefault(id(service), set()).add((host, path))
            else:
                target = shadowed if is_shadowed else lost
                target.setdefault(id(service), set()).add(host)
    if lost_paths or shadowed_paths:
        _promote_path_claims(services, lost, shadowed, lost_paths, shadowed_paths)
    _decide_acl_names(services, lost, shadowed, problems)
    if not lost and not shadowed and not lost_paths and not shadowed_paths:
        return services
    decided = []
    for service in services:
        key = id(service)
        gone, hidden = lost.get(key), shadowed.get(key)
        gone_paths, hidden_paths = lost_paths.get(key), shadowed_paths.get(key)
        if gone or hidden or gone_paths or hidden_paths:
            service = replace(service, lost_vhosts=frozenset(gone or ()),
                              shadowed_vhosts=frozenset(hidden or ()),
                              lost_paths=frozenset(gone_paths or ()),
                              shadowed_paths=frozenset(hidden_paths or ()))
        decided.append(service)
    return decided


def _claim_owners(claimants: list[tuple[Service, str, str]]) -> dict[int, int]:
    """Which claimant (index) owns each claim an older one overlaps: claimant index ->
    owner index. Oldest first; two claims overlap when they name the same prefix or
    one of them matches ignoring case (they share a bucket only if lower-cased equal)."""
    order = sorted(range(len(claimants)),
                   key=lambda i: (_app_age_key(claimants[i][0].app), claimants[i][0].bind_port))
    owners: list[int] = []
    owner_of: dict[int, int] = {}
    for index in order:
        service, _host, path = claimants[index]
        folds = service.path_ignore_case
        for owner_index in owners:
            owner, _owner_host, owner_path = claimants[owner_index]
            if owner_path == path or folds or owner.path_ignore_case:
                owner_of[index] = owner_index
                break
        else:
            owners.append(index)
    return owner_of


def _promote_path_claims(services: list[Service], lost: dict[int, set[str]],
                         shadowed: dict[int, set[str]],
                         lost_paths: dict[int, set[tuple[str, str]]],
                         shadowed_paths: dict[int, set[tuple[str, str]]]) -> None:
    """A vhost whose every path prefix went to older apps is a lost (or shadowed) vhost:
    the port receives none of its traffic."""
    for service in services:
        key = id(service)
        gone, hidden = lost_paths.get(key, set()), shadowed_paths.get(key, set())
        if not gone and not hidden:
            continue
        for host in service.settings.vhosts:
            decided = [(host, path) in gone or (host, path) in hidden for path in service.paths]
            if not all(decided):
                continue
            if any((host, path) in hidden for path in service.paths):
                shadowed.setdefault(key, set()).add(host)
            else:
                lost.setdefault(key, set()).add(host)


def _decide_acl_names(services: list[Service], lost: dict[int, set[str]],
                      shadowed: dict[int, set[str]], problems: list[Problem]) -> None:
    """Different host names sharing servicerouter.py's ACL name are one claim.

    ``a.example.com`` and ``a_example.com`` both become ``host_a_example_com``
    in legacy fragments (``cleanedUpHostname``), and HAProxy merges ACLs of
    one name: whichever rule comes first would take both hosts. So the oldest
    app keeps its host and the other is shadowed or lost, as in _decide_vhosts.
    """
    owners: dict[str, tuple[Service, str]] = {}
    for service in sorted(services, key=lambda s: (_app_age_key(s.app), s.bind_port)):
        for host in service.settings.vhosts:
            key = clean_name(host.lower())
            owner, owner_host = owners.setdefault(key, (service, host))
            if owner is service or owner_host.lower() == host.lower():
                continue
            problems.append(Problem(
                service.app_id,
                f"vhost conflict: {host} shares ACL name host_{key} with {owner_host}, "
                f"already routed for older app {owner.app_id}",
                service.index, f"HAPROXY_{service.index}_VHOST", host,
                kind="conflict", route=host.lower(), owner=owner.app_id,
            ))
            first = min((owner, service), key=lambda s: (-s.settings.backend_weight,
                                                         s.app_id, s.bind_port))
            target = shadowed if first is owner else lost
            target.setdefault(id(service), set()).add(host)


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
    "ip_per_task_key",
    "ip_per_task_ports",
    "read_health_check",
    "route_order_key",
    "service_ports",
]
