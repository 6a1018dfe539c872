"""Per-app derivation: one Marathon app -> its service ports, claims and servers.

:func:`derive_app` reads one app on its own, under the settings that shape it
(:class:`DeriveSettings`), and returns an :class:`AppDerivation`: the app's
ports before any decision across apps (bind-port and vhost ownership,
IP-per-task port assignment are :mod:`servicerouter.model.decide`'s), its
servers, and the problems it has.  Nothing here looks at another app, so a
caller may keep derivations keyed by :func:`app_fingerprint` and derive again
only the apps whose JSON changed (the live engine's per-app cache).

This is the per-task hot path of a sync (50,000 tasks at 5,000 apps): dict
checks come before the slower ``Mapping`` ABC check, IPv4 literals skip
``ipaddress``, and one resolver call serves all ports of a task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from servicerouter.model.app_fields import (
    APP_ID_RE,
    IPV4_RE,
    MAPPING,
    MAX_APP_ID_LENGTH,
    NOTHING_ROUTED,
    TASK_HOST_RE,
    AppError,
    RoutedBefore,
    TaskFilter,
    app_age_key,
    as_mapping,
    has_port_groups,
    ip_per_task_ports,
    is_port,
    port_key,
    read_health_check,
    service_ports,
    task_admission,
    task_filter,
    task_ipv4,
)
from servicerouter.model.label_names import key_notices
from servicerouter.model.labels import (
    PortSettings,
    Problem,
    SettingError,
    parse_groups,
    port_settings,
    read_app_settings,
    scan_labels,
)
from servicerouter.model.resolver import CANONICAL_IPV4_RE, canonical_ipv4_is_itself
from servicerouter.model.rule_values import RULE_KEY, rule_extras
from servicerouter.model.values import HealthCheck, Resolver, Server, has_group

_tuple_new = tuple.__new__  # what servicerouter.model.values.new_server calls


@dataclass(frozen=True, slots=True)
class DeriveSettings:
    """The router settings that change what one app derives to."""

    groups: frozenset[str] = frozenset()
    strict_mode: bool = False  # only ports with HAPROXY_{n}_ENABLED=true
    health_check: bool = False  # only healthy, ready tasks; drain killing ones


# DerivedPort and AppDerivation are built once per port and app on the hot path and
# never changed after derive_app returns; plain (not frozen) slots classes are built
# about twice as fast.
@dataclass(slots=True)
class DerivedPort:
    """One service port of one app, before any decision across apps.

    ``service_port`` is None for an IP-per-task port Marathon gave none (the
    cross-app step assigns one); ``had_tasks`` says a task matched even if its
    host did not resolve (servicerouter.py kept such a port's frontend).
    """

    app_id: str
    index: int
    service_port: int | None
    settings: PortSettings
    health_check: HealthCheck | None
    groups: tuple[str, ...]
    app: Mapping[str, Any] = field(compare=False, repr=False)
    servers: tuple[Server, ...] = ()
    had_tasks: bool = False
    age: tuple[str, str] = ("\uffff", "")  # older configuration first (app_age_key)

    @property
    def auto_port(self) -> bool:
        """An IP-per-task port waiting for a port from the range."""
        return self.service_port is None and not self.settings.port


@dataclass(slots=True)
class AppDerivation:
    """Everything one app contributes: its ports (with servers), problems, task count."""

    app_id: str
    ports: tuple[DerivedPort, ...] = ()
    problems: tuple[Problem, ...] = ()
    task_count: int = 0
    skipped: bool = False  # the app could not be read at all


def app_fingerprint(app: Any, settings: DeriveSettings) -> bytes:
    """A key for caching :func:`derive_app`'s answer: the app's JSON and the settings.

    The resolver is not in it: an app with DNS task hosts must be derived again
    when names may resolve differently (IP literals and IP-per-task never do).
    """
    import orjson

    digest = hashlib.blake2b(orjson.dumps(app, option=orjson.OPT_SORT_KEYS), digest_size=20)
    digest.update(repr((sorted(settings.groups), settings.strict_mode,
                        settings.health_check)).encode())
    return digest.digest()


@dataclass(slots=True)
class _Draft:
    """A port being assembled from one app (mutable only inside derive_app)."""

    app_id: str
    index: int
    service_port: int | None  # None: IP-per-task port to assign from the range
    settings: PortSettings
    health_check: HealthCheck | None
    groups: tuple[str, ...]
    servers: dict[tuple[str, int], Server] = field(default_factory=dict)
    had_tasks: bool = False  # a task matched, even if its host did not resolve
    container_port: int | None = None  # IP-per-task: servers are task IP + this port


def derive_app(app: Any, settings: DeriveSettings, resolve: Resolver,
               position: int = 0, routed_before: RoutedBefore | None = None
               ) -> AppDerivation:
    """One app's ports, servers and problems; never raises for bad input.

    ``position`` names an app without a usable id (``apps[N]``) in its problem.
    ``routed_before`` (--health-check): server addresses ("ip:port") the serving
    config routes; a task whose health is not known yet keeps its place there
    (so with --health-check it is an input of the derivation too).
    """
    app_id = app.get("id") if isinstance(app, MAPPING) else None
    if not isinstance(app_id, str) or not app_id:
        app_id = f"apps[{position}]"  # name the app by where it is in the list
    problems: list[Problem] = []
    try:
        if not isinstance(app, MAPPING):
            raise AppError("app is not a JSON object")
        drafts, tasks = _read_app(app, resolve, problems, settings, routed_before)
    except (AppError, TypeError, AttributeError, ValueError) as err:
        problems.append(Problem(str(app_id)[:200], f"app skipped: {err}"))
        return AppDerivation(str(app_id)[:200], (), tuple(problems), 0, skipped=True)
    if not drafts:  # nothing routed here (not in this router's groups, no usable port)
        return AppDerivation(app_id, (), tuple(problems), tasks)
    age = app_age_key(app)
    ports = tuple([
        DerivedPort(d.app_id, d.index, d.service_port, d.settings, d.health_check, d.groups,
                    app, _sorted_servers(d.servers), d.had_tasks, age)
        for d in drafts])
    return AppDerivation(app_id, ports, tuple(problems), tasks)


def _sorted_servers(servers: dict[tuple[str, int], Server]) -> tuple[Server, ...]:
    """Servers by (host, port): their keys sort as plain tuples, no attribute reads."""
    if len(servers) < 2:
        return tuple(servers.values())
    return tuple(map(servers.__getitem__, sorted(servers)))


def _read_app(
    app: Mapping[str, Any],
    resolve: Resolver,
    problems: list[Problem],
    derive: DeriveSettings,
    routed_before: RoutedBefore | None = None,
) -> tuple[list[_Draft], int]:
    """One app's services with their servers (unfiltered by conflicts)."""
    app_id = app.get("id")
    if not isinstance(app_id, str) or not APP_ID_RE.fullmatch(app_id):
        raise AppError("app id is missing, has characters outside [A-Za-z0-9._/-] "
                        "or an empty path segment")
    if len(app_id) > MAX_APP_ID_LENGTH:
        raise AppError(f"app id is {len(app_id)} characters long (at most {MAX_APP_ID_LENGTH})")
    router_groups = derive.groups
    labels = as_mapping(app.get("labels"), "labels")
    env = as_mapping(app.get("env"), "env")
    app_settings, app_problems = read_app_settings(app_id, labels, env)
    if app_settings is None:
        problems.extend(app_problems)
        return [], 0
    scan = scan_labels(labels, env)  # one pass for the port settings, groups and notices
    # A key that is not a string (not from JSON): has_port_groups fails the app, as before.
    port_groups = has_port_groups(labels, env) if scan.odd_keys else scan.port_groups
    if not port_groups and not has_group(router_groups, app_settings.groups):
        return [], 0
    ports = service_ports(app)
    container_ports = ip_per_task_ports(app)
    if container_ports is not None:
        # IP-per-task: one service port per container port; missing ones are assigned.
        ports = [ports[i] if i < len(ports) else None for i in range(len(container_ports))]
    problems.extend(key_notices(app_id, labels, scan.label_keys, len(ports)))
    drafts: dict[int, _Draft] = {}
    by_index: list[_Draft | None] = []
    for index, port in enumerate(ports):
        by_index.append(None)
        auto_port = container_ports is not None and port in (None, 0)
        if not auto_port and not is_port(port):
            problems.append(Problem(app_id, f"service port {port!r} is not a port number", index))
            continue
        if not auto_port and port in drafts:
            problems.append(Problem(app_id, f"service port {port} is listed twice", index))
            continue
        groups = app_settings.groups
        if port_groups:
            raw_groups = port_key(labels, env, f"HAPROXY_{index}_GROUP")
            if isinstance(raw_groups, str):
                try:
                    groups = parse_groups(raw_groups)
                except SettingError:
                    pass  # read_port_settings reports it
            if not has_group(router_groups, groups):
                continue
        settings, port_problems = port_settings(app_id, index, scan.port_values.get(index))
        if settings is None:
            problems.extend(port_problems)
            continue
        if settings.enabled is False or (derive.strict_mode and settings.enabled is not True):
            continue
        if RULE_KEY in app:  # an operator rule's header matches and split share
            try:
                settings = replace(settings, rule=rule_extras(app, index))
            except (SettingError, ValueError, TypeError) as err:
                problems.append(Problem(app_id, f"operator rule unusable: {err}", index))
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
            if not is_port(container_port):
                problems.append(Problem(
                    app_id, f"IP-per-task container port {container_port!r} is not a port number",
                    index,
                ))
                continue
        draft = _Draft(app_id, index, None if auto_port else port, settings, check, groups,
                       container_port=container_port)
        if not auto_port:
            drafts[port] = draft
        by_index[index] = draft
    tasks = app.get("tasks") or []
    if not isinstance(tasks, list):
        raise AppError("'tasks' is not a list")
    rules = task_filter(app, routed_before or NOTHING_ROUTED) if derive.health_check else None
    if rules is None and container_ports is None:
        _add_host_tasks(app_id, tasks, by_index, resolve, problems)
    elif rules is None:
        _add_ip_per_task_tasks(app_id, tasks, by_index, resolve, problems)
    else:
        ip_per_task = container_ports is not None
        for task in tasks:
            _add_task(app_id, task, by_index, resolve, problems, rules, ip_per_task)
    return [d for d in by_index if d is not None], len(tasks)


def _add_host_tasks(app_id: str, tasks: list[Any], by_index: Sequence[_Draft | None],
                    resolve: Resolver, problems: list[Problem]) -> None:
    """:func:`_add_task` for every task of a host-networked app, all tasks admitted.

    The common case, and the hottest loop of a sync: the same checks in the same
    order (so the same problems), with the ports to fill and the names looked up
    once per app instead of once per task.
    """
    active = [(index, draft, draft.servers) for index, draft in enumerate(by_index)
              if draft is not None]
    if not active:
        for task in tasks:
            _add_task(app_id, task, by_index, resolve, problems)
        return
    last_index = active[-1][0]
    host_ok = TASK_HOST_RE.fullmatch
    make = _tuple_new  # new_server(...) without a Python call per server
    # A canonical dotted quad is a valid host that resolves to itself (when the
    # resolver promises so): one regex instead of two and a call, per task.
    literal = CANONICAL_IPV4_RE.fullmatch if canonical_ipv4_is_itself(resolve) else None
    for task in tasks:
        if type(task) is not dict:
            _add_task(app_id, task, by_index, resolve, problems)
            continue
        host = task.get("host")
        task_ports = task.get("ports")
        ipv4 = None
        if literal is not None and type(host) is str and literal(host) is not None:
            ipv4 = host
        elif not host or type(host) is not str or host_ok(host) is None:
            _add_task(app_id, task, by_index, resolve, problems)  # the slow path says why
            continue
        if type(task_ports) is not list or len(task_ports) <= last_index:
            _add_task(app_id, task, by_index, resolve, problems)
            continue
        task_id = task.get("id")
        if type(task_id) is not str:
            task_id = "?"
        for index, draft, servers in active:
            port = task_ports[index]
            if not (type(port) is int and 0 < port <= 65535 or is_port(port)):
                problems.append(Problem(app_id, f"task {task_id[:120]!r} port {port!r} "
                                                "is not a port number", index))
                continue
            if ipv4 is None:
                draft.had_tasks = True  # a port with servers is marked once, below
                ipv4 = resolve(host)
                if ipv4 is None:
                    problems.append(Problem(app_id, f"could not resolve task host {host!r}; "
                                                    "task ignored"))
                    for _later_index, later, _servers in active:
                        if _later_index > index:
                            later.had_tasks = True
                    break
            key = (host, port)
            if key not in servers:
                servers[key] = make(Server, (host, ipv4, port, task_id, False))
    for _index, draft, servers in active:
        if servers:  # a task matched it (the resolver's failures are marked above)
            draft.had_tasks = True


def _add_ip_per_task_tasks(app_id: str, tasks: list[Any], by_index: Sequence[_Draft | None],
                           resolve: Resolver, problems: list[Problem]) -> None:
    """:func:`_add_task` for every task of an IP-per-task app, all tasks admitted:
    the same checks and problems, the ports to fill looked up once per app."""
    active = [(draft, draft.container_port, draft.servers) for draft in by_index
              if draft is not None and draft.container_port is not None]
    host_ok = TASK_HOST_RE.fullmatch
    make = _tuple_new  # new_server(...) without a Python call per server
    # The canonical dotted quads (nearly every address) match the cheaper of the two
    # patterns; IPV4_RE accepts every one of them, and decides the other spellings.
    canonical, address_ok = CANONICAL_IPV4_RE.fullmatch, IPV4_RE.fullmatch
    for task in tasks:
        address = None
        if type(task) is dict:
            host = task.get("host")
            addresses = task.get("ipAddresses")
            if host and type(host) is str and type(addresses) is list and addresses:
                entry = addresses[0]
                address = entry.get("ipAddress") if type(entry) is dict else None
                if type(address) is not str \
                        or (canonical(address) is None and address_ok(address) is None) \
                        or (host != address and host_ok(host) is None):
                    address = None  # (a host equal to an IPv4 address is a valid host)
        if address is None:  # the slow path says why, or finds a later IPv4 entry
            _add_task(app_id, task, by_index, resolve, problems, None, True)
            continue
        task_id = task.get("id")
        if type(task_id) is not str:
            task_id = "?"
        for _draft, container_port, servers in active:
            key = (address, container_port)
            if key not in servers:
                servers[key] = make(Server, (address, address, container_port, task_id, False))
    for draft, _container_port, servers in active:
        if servers:  # a task matched it
            draft.had_tasks = True


def _add_task(
    app_id: str,
    task: Any,
    by_index: Sequence[_Draft | None],
    resolve: Resolver,
    problems: list[Problem],
    rules: TaskFilter | None = None,
    ip_per_task: bool = False,
) -> None:
    if not isinstance(task, MAPPING):
        problems.append(Problem(app_id, "task is not a JSON object"))
        return
    task_id = task.get("id")
    task_id = task_id if isinstance(task_id, str) else "?"
    host = task.get("host")
    if not host:
        problems.append(Problem(app_id, f"task {task_id[:120]!r} has no host (ignored)"))
        return
    if not isinstance(host, str) or not TASK_HOST_RE.fullmatch(host):
        problems.append(Problem(app_id, f"task {task_id[:120]!r} host {str(host)[:80]!r} is not a host name"))
        return
    draining = False
    only: frozenset[int] | None = None  # the ports an unknown-health task keeps
    if rules is not None:
        admission = task_admission(task, task_id, rules)
        if admission == "unknown":
            only = _routed_ports(app_id, task, host, by_index, resolve, rules, ip_per_task)
            if only:
                admission = "serve"  # as it was: no health verdict is not a failed one
        if admission not in ("serve", "drain"):
            return  # failing, or unknown and new: not routed until healthy
        draining = admission == "drain"
    if ip_per_task:
        address = task_ipv4(task)
        if address is None:
            problems.append(Problem(app_id, f"task {task_id[:120]!r} has no IPv4 address "
                                            "(IP-per-task); task ignored"))
            return
        for draft in by_index:
            if draft is not None and draft.container_port is not None \
                    and (only is None or draft.index in only):
                draft.had_tasks = True
                key = (address, draft.container_port)
                if key not in draft.servers:
                    draft.servers[key] = Server(address, address, draft.container_port,
                                                task_id, draining)
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
        if draft is None or (only is not None and index not in only):
            continue
        port = task_ports[index]
        if not (type(port) is int and 0 < port <= 65535 or is_port(port)):
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
        key = (host, port)
        if key not in draft.servers:
            draft.servers[key] = Server(host, ipv4, port, task_id, draining)


def _routed_ports(app_id: str, task: Mapping[str, Any], host: str,
                  by_index: Sequence[_Draft | None], resolve: Resolver, rules: TaskFilter,
                  ip_per_task: bool) -> frozenset[int]:
    """The port indexes whose backend (of this app) routes this task's endpoint now.

    Only this app's own backends are asked, so the answer (and the app's servers)
    does not depend on what other apps route on the same address.
    """
    routed = rules.routed_before
    if not routed:
        return frozenset()
    if ip_per_task:
        address = task_ipv4(task)
        endpoints = [(d, d.container_port) for d in by_index
                     if d is not None and d.container_port is not None]
    else:
        address = resolve(host)
        raw = task.get("ports")
        ports = raw if isinstance(raw, list) else []
        endpoints = [(d, p) for d, p in zip(by_index, ports, strict=False) if d is not None]
    if address is None:
        return frozenset()
    prefix = app_id[1:].replace("/", "_")
    kept: set[int] = set()
    for draft, port in endpoints:
        endpoint = f"{address}:{port}"
        bind_port = draft.settings.port or draft.service_port
        if routed.routes(f"{prefix}_{bind_port}", endpoint) if bind_port is not None \
                else routed.routes_in_app(prefix, endpoint):
            kept.add(draft.index)
    return frozenset(kept)
