"""Decisions across apps: which derived port gets a bind port, a vhost, a service port.

:func:`decide` takes every app's :class:`~servicerouter.model.derive.AppDerivation`
and settles what no single app can: the oldest configuration keeps a contested
bind port, (vhost, path prefix) or ACL name; the apps of a blue/green deployment
group are served as one (:mod:`servicerouter.model.deployment_groups`); IP-per-task
ports without a service port get one from the range, stable across runs; ports a host check refuses are
dropped before they claim anything.  It reads the derivations and never changes
them, so a caller may keep derivations per app and decide again after one app
changed.  :func:`build_model` is derive-every-app-then-decide, the one-shot path.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from servicerouter.model.app_fields import RoutedBefore, app_age_key
from servicerouter.model.deployment_groups import merge_deployment_groups
from servicerouter.model.derive import AppDerivation, DerivedPort, DeriveSettings, derive_app
from servicerouter.model.labels import Problem, mark_still_routed
from servicerouter.model.rule_values import header_qualifier
from servicerouter.model.values import (
    Model,
    PortCheck,
    Resolver,
    Service,
    backend_name,
    clean_name,
)

DEFAULT_IP_PER_TASK_PORTS = (10050, 10100)  # marathon-lb's --min/max-serv-port-ip-per-task
_BY_AGE = operator.attrgetter("age")
_BY_APP_AND_BIND_PORT = operator.attrgetter("app_id", "bind_port")  # servicerouter.py's order


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
    routed_before: RoutedBefore | None = None,
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
    ``routed_before``: server addresses the serving config routes, per backend; with
    ``health_check``, a task whose health is not known yet stays routed if it
    is among them (and is left out, as before, if it is not).
    """
    derive = DeriveSettings(frozenset(groups), strict_mode, health_check)
    derivations = [derive_app(app, derive, resolve, position, routed_before)
                   for position, app in enumerate(apps)]
    return decide(derivations, reserved_ports=reserved_ports,
                  default_bind_addr=default_bind_addr, ip_per_task_ports=ip_per_task_ports,
                  port_assignments=port_assignments, check_port=check_port)


def decide(
    derivations: Iterable[AppDerivation],
    *,
    reserved_ports: Iterable[int] = (),
    default_bind_addr: str = "*",
    ip_per_task_ports: tuple[int, int] = DEFAULT_IP_PER_TASK_PORTS,
    port_assignments: Iterable[tuple[str, int]] = (),
    check_port: PortCheck | None = None,
) -> Model:
    """The model of apps already derived (in Marathon's order): the cross-app step.

    O(ports + claims): every contested claim is settled by age, the services sorted
    by (app id, bind port). The arguments are :func:`build_model`'s.
    """
    problems: list[Problem] = []
    ports: list[DerivedPort] = []
    app_count = task_count = 0
    for derivation in derivations:
        app_count += 1
        problems.extend(derivation.problems)
        if derivation.skipped:
            continue
        task_count += derivation.task_count
        ports.extend(derivation.ports)
    # Blue/green: the apps of a deployment group become one app, before any claim.
    ports = merge_deployment_groups(ports, problems)
    if check_port is not None:
        ports = _drop_unusable(ports, check_port, problems)
    ports.sort(key=_BY_AGE)
    reserved = frozenset(reserved_ports)
    assigned, assignments = _assign_ip_per_task_ports(ports, reserved, ip_per_task_ports,
                                                      problems, port_assignments)
    services, ports_of = _decide_bind_ports(ports, assigned, reserved, default_bind_addr,
                                            problems)
    ages = {id(service): port.age for service, port in zip(services, ports_of, strict=True)}
    services = _decide_vhosts(services, problems, ages)
    services.sort(key=_BY_APP_AND_BIND_PORT)
    # Say which problems only cost a vhost, a path or a task: their port still routes.
    routed = {(s.app_id, s.index) for s in services} if problems else ()
    return Model(tuple(services), mark_still_routed(problems, routed), app_count, task_count,
                 assignments)


def _drop_unusable(ports: list[DerivedPort], check_port: PortCheck,
                   problems: list[Problem]) -> list[DerivedPort]:
    """Ports whose settings ``check_port`` accepts; a problem for each other one."""
    kept = []
    for draft in ports:
        reason = check_port(draft.settings)
        if reason is None:
            kept.append(draft)
        else:
            problems.append(Problem(draft.app_id, reason, draft.index))
    return kept


def _decide_bind_ports(
    ports: list[DerivedPort],
    assigned: dict[str, int],
    reserved: frozenset[int],
    default_bind_addr: str,
    problems: list[Problem],
) -> tuple[list[Service], list[DerivedPort]]:
    """One service per bind port: the app whose configuration is oldest keeps it.

    Also returns the port each service came from (same order), for its age."""
    services: list[Service] = []
    sources: list[DerivedPort] = []
    taken: dict[int, str] = {}
    for draft in ports:  # oldest first
        service_port = draft.service_port
        if service_port is None:
            service_port = assigned.get(ip_per_task_key(draft.app_id, draft.index))
        if not draft.had_tasks or (service_port is None and not draft.settings.port):
            continue
        settings = draft.settings
        bind_port = settings.port or service_port
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
        sources.append(draft)
        version = draft.app.get("version")
        # Positional, in Service's field order: 6,250 of them at 5,000 apps.
        services.append(Service(
            draft.app_id, draft.index, service_port or bind_port, bind_port,
            backend_name(draft.app_id, bind_port), mode,
            settings.bind_addr or default_bind_addr, settings, check, draft.servers,
            draft.groups, version if type(version) is str else str(version or ""),
            draft.app))
    return services, sources


def ip_per_task_key(app_id: str, index: int) -> str:
    """The name of an auto-assigned port in ``Model.port_assignments``."""
    return f"{app_id}#{index}"


def _assign_ip_per_task_ports(
    ports: list[DerivedPort],
    reserved: frozenset[int],
    port_range: tuple[int, int],
    problems: list[Problem],
    previous: Iterable[tuple[str, Any]] = (),
) -> tuple[dict[str, int], tuple[tuple[str, int], ...]]:
    """Give IP-per-task ports without a service port one from ``port_range``.

    Stable across runs: an app keeps the port ``previous`` gave it while it
    exists and the port is still free (no explicit port took it). Others start
    at a hash of (app id, port index) and probe upwards past taken ports and
    past ports ``previous`` remembers for apps that are gone: a freed port goes
    to another app only when no never-used port is left, the one freed longest
    ago first, so clients of a deleted app are not sent to a new one. Explicit
    ports are never taken; older apps (``ports`` is in age order) choose first.
    Returns the port of each key ("app id#index") and the assignments to pass as
    ``previous`` next time.
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
    pending = [d for d in ports if d.service_port is None and not d.settings.port]
    taken = set(reserved)
    taken.update(d.settings.port or d.service_port for d in ports
                 if d.settings.port or d.service_port is not None)
    assigned: dict[str, int] = {}
    later: list[DerivedPort] = []
    for draft in pending:
        key = ip_per_task_key(draft.app_id, draft.index)
        port = memory.get(key)
        if port is not None and port not in taken:
            taken.add(port)
            assigned[key] = port
        else:
            later.append(draft)
    # Ports of apps that are gone, oldest release first (``previous`` keeps that order).
    released = [(k, p) for k, p in memory.items() if k not in assigned and p not in taken]
    blocked = taken | {p for _k, p in released}
    size = high - low + 1
    if low <= 0:  # --min/--max-serv-port-ip-per-task 0: marathon-lb's "no auto-assignment"
        for draft in later:
            problems.append(Problem(draft.app_id, "IP-per-task port without a service port: "
                                    "auto-assignment is off (--min/--max-serv-port-ip-per-task "
                                    "0); not routed", draft.index))
        later = []
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
        assigned[key] = port
    reused = set(assigned.values())
    return assigned, (tuple((k, p) for k, p in released if p not in reused)
                      + tuple(assigned.items()))


def _decide_vhosts(services: list[Service], problems: list[Problem],
                   ages: dict[int, tuple[str, str]] | None = None) -> list[Service]:
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
        if not service.settings.vhosts:
            continue  # claims nothing
        paths = service.paths or ("",)
        # An operator rule's header match qualifies its routes: they claim apart.
        qualifier = header_qualifier(service.settings.rule)
        for host in service.settings.vhosts:
            lowered = host.lower()
            for path in paths:
                key = (lowered, path + qualifier)
                if folded and (lowered, path.lower()) in folded:
                    key = (lowered, "-i " + path.lower() + qualifier)
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
    _decide_acl_names(services, lost, shadowed, problems, ages)
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
    owner index. Ports an operator rule routes first, then oldest first; two claims overlap when they name the same prefix or
    one of them matches ignoring case (they share a bucket only if lower-cased equal)."""
    # An operator rule's claim comes before any label's (servicerouter.rules), then age.
    order = sorted(range(len(claimants)),
                   key=lambda i: (claimants[i][0].settings.rule is None,
                                  app_age_key(claimants[i][0].app), claimants[i][0].bind_port))
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
                      shadowed: dict[int, set[str]], problems: list[Problem],
                      ages: dict[int, tuple[str, str]] | None = None) -> None:
    """Different host names sharing servicerouter.py's ACL name are one claim.

    ``a.example.com`` and ``a_example.com`` both become ``host_a_example_com``
    in legacy fragments (``cleanedUpHostname``), and HAProxy merges ACLs of
    one name: whichever rule comes first would take both hosts. So the oldest
    app keeps its host and the other is shadowed or lost, as in _decide_vhosts.
    """
    owners: dict[str, tuple[Service, str]] = {}
    def age(service: Service) -> tuple[str, str]:
        known = ages.get(id(service)) if ages else None
        return known if known is not None else app_age_key(service.app)

    # Only ports with a virtual host claim an ACL name (about half of them).
    for service in sorted((s for s in services if s.settings.vhosts),
                          key=lambda s: (age(s), s.bind_port)):
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
