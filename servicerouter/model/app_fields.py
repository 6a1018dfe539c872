"""Reading one Marathon app's JSON: ports, health checks, task addresses, age.

Marathon 0.x to 1.5 spell the same facts in different places (``ports``,
``portDefinitions``, Docker and container ``portMappings``; ``ipAddress`` or
``networks`` for IP-per-task).  These readers find them wherever they are and
say what is unusable; :mod:`servicerouter.model.derive` turns the answers into
an app's ports and servers.  Pure: JSON in, values or errors out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.model.values import HealthCheck

APP_ID_RE = re.compile(r"^(?:/[A-Za-z0-9._-]+)+$")
MAX_APP_ID_LENGTH = 1024  # HAProxy refuses names and lines a few kB long
# Marathon's timestamps (ISO 8601); anything else cannot claim to be old.
_TIMESTAMP_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9:]+)?$")
# Task hosts: DNS names or IP literals, nothing that could split an HAProxy line.
TASK_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")
_HC_PROTOCOL_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
# Health-check paths go unquoted into ``option httpchk GET <path>``: no quote (HAProxy
# would see an unmatched quote and reject the whole config), no backslash (an escape
# that changes the path), no '#', blank, brace or control character. '$' and ';' are
# literal there in HAProxy 2.6 (variables expand only inside double quotes).
_HC_PATH_RE = re.compile(r"^/[A-Za-z0-9_./@+=:,%~?&;!$()*-]*$")
MAX_HC_PATH_LENGTH = 1024
IPV4_RE = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$")
# isinstance(x, dict) is a C check; the Mapping ABC only for what is not a dict.
MAPPING = (dict, Mapping)

def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise AppError(f"{what} is not a list")
    return value


def as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, MAPPING):
        raise AppError(f"{what} is not a JSON object")
    return value


class AppError(ValueError):
    """An app that cannot be read at all."""


def is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 65535


def service_ports(app: Mapping[str, Any]) -> list[Any]:
    """Service ports in index order, from whichever shape the app uses.

    Docker and 1.5+ container apps list them in ``portMappings``; 1.x apps in
    ``portDefinitions``; 0.x apps in ``ports``.
    """
    container = app.get("container")
    if container is not None:
        container = as_mapping(container, "'container'")
    if container:
        mappings = as_list(container.get("portMappings"), "'portMappings'")
        if not mappings:
            docker = as_mapping(container.get("docker"), "'container.docker'")
            mappings = as_list(docker.get("portMappings"), "'portMappings'")
        if mappings:
            ports = [m.get("servicePort") if isinstance(m, MAPPING) else None for m in mappings]
            if ports.count(None) != len(ports):  # some mapping has one
                return ports
    definitions = as_list(app.get("portDefinitions"), "'portDefinitions'")
    if definitions:
        return [d.get("port") if isinstance(d, MAPPING) else None for d in definitions]
    ports = app.get("ports")
    if ports is None:
        return []
    if not isinstance(ports, list):
        raise AppError("'ports' is not a list")
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
        if not isinstance(check, MAPPING) or check.get("portIndex") != index:
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
        get = check.get
        timeout, interval = get("timeoutSeconds", 20), get("intervalSeconds", 60)
        grace, failures = get("gracePeriodSeconds", 300), get("maxConsecutiveFailures", 3)
        if not (type(timeout) is int and timeout >= 0 and type(interval) is int
                and interval >= 0 and type(grace) is int and grace >= 0
                and type(failures) is int and failures >= 0):
            # Not all plain numbers: read them one by one, in this order (None is the
            # default, anything else not a non-negative integer says which field).
            timeout = _int_field(check, "timeoutSeconds", 20)
            interval = _int_field(check, "intervalSeconds", 60)
            grace = _int_field(check, "gracePeriodSeconds", 300)
            failures = _int_field(check, "maxConsecutiveFailures", 3)
        # null ignoreHttp1xx stays None: servicerouter.py rendered Marathon's value as it came
        return HealthCheck(protocol, path, index, timeout, interval, grace, failures,
                           None if ignore is None else bool(ignore), check)
    return None


def app_age_key(app: Mapping[str, Any]) -> tuple[str, str]:
    """Older configuration first: lastConfigChangeAt, else version, else id."""
    info = app.get("versionInfo")
    changed = info.get("lastConfigChangeAt") if isinstance(info, MAPPING) else None
    if not isinstance(changed, str) or not _TIMESTAMP_RE.fullmatch(changed):
        version = app.get("version")
        changed = version if isinstance(version, str) and _TIMESTAMP_RE.fullmatch(version) else None
    return (changed or "\uffff", str(app.get("id")))


class RoutedBefore:
    """--health-check: the server addresses ("ip:port") the serving config routes, per backend.

    A task whose health is not known yet (just after a Marathon leader change,
    marathon#3419) keeps its place in a backend that routes it now instead of
    being dropped.  Kept per backend, not as one set for the whole config, so
    an app's servers depend on its own backends only: the live engine can
    derive one app alone (servicerouter.engine.task_path) and get what a
    whole build gives.
    """

    __slots__ = ("_by_app", "by_backend")

    def __init__(self, by_backend: Mapping[str, frozenset[str]]) -> None:
        self.by_backend = by_backend
        self._by_app: dict[str, frozenset[str]] | None = None

    def __bool__(self) -> bool:
        return bool(self.by_backend)

    def routes(self, backend: str, address: str) -> bool:
        """Whether ``backend`` routes ``address`` now."""
        return address in self.by_backend.get(backend, ())

    def routes_in_app(self, backend_prefix: str, address: str) -> bool:
        """Whether any backend named ``<backend_prefix>_<port>`` routes ``address``: for
        IP-per-task ports whose bind port is assigned after derivation."""
        if self._by_app is None:
            grouped: dict[str, set[str]] = {}
            for backend, addresses in self.by_backend.items():
                grouped.setdefault(backend.rpartition("_")[0], set()).update(addresses)
            self._by_app = {prefix: frozenset(a) for prefix, a in grouped.items()}
        return address in self._by_app.get(backend_prefix, ())


NOTHING_ROUTED = RoutedBefore({})


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """--health-check: which tasks may take traffic (servicerouter.py took all)."""

    check_count: int  # Marathon health checks every task must pass
    not_ready: frozenset[str]  # task ids whose readiness check has not passed
    # What the serving config routes: a task of unknown health stays where it is.
    routed_before: RoutedBefore = NOTHING_ROUTED


def task_filter(app: Mapping[str, Any],
                routed_before: RoutedBefore = NOTHING_ROUTED) -> TaskFilter:
    checks = app.get("healthChecks")
    count = sum(1 for c in checks if isinstance(c, MAPPING)) if isinstance(checks, list) else 0
    results = app.get("readinessCheckResults")
    not_ready: set[str] = set()
    if isinstance(results, list):
        for result in results:
            if isinstance(result, MAPPING) and result.get("ready") is not True:
                task_id = result.get("taskId")
                if isinstance(task_id, str):
                    not_ready.add(task_id)
    return TaskFilter(count, frozenset(not_ready), routed_before)


def task_admission(task: Mapping[str, Any], task_id: str, rules: TaskFilter) -> str | None:
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
        if any(not isinstance(r, MAPPING) or r.get("alive") is not True for r in results):
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
    container = container if isinstance(container, MAPPING) else {}
    docker = container.get("docker")
    docker = docker if isinstance(docker, MAPPING) else {}
    networks = app.get("networks")
    container_mode = False
    if isinstance(networks, list):
        for network in networks:
            if isinstance(network, MAPPING) and network.get("mode") == "container":
                container_mode = True
                break
    ip_address = app.get("ipAddress")
    legacy_mode = isinstance(ip_address, MAPPING) or docker.get("network") == "USER"
    if not container_mode and not legacy_mode:
        return None
    mappings = container.get("portMappings") or docker.get("portMappings")
    if isinstance(mappings, list) and mappings:
        return [m.get("containerPort") if isinstance(m, MAPPING) else None for m in mappings]
    if isinstance(ip_address, MAPPING):
        discovery = ip_address.get("discovery")
        ports = discovery.get("ports") if isinstance(discovery, MAPPING) else None
        if isinstance(ports, list):
            return [p.get("number") if isinstance(p, MAPPING) else None for p in ports]
    return []


def task_ipv4(task: Mapping[str, Any]) -> str | None:
    """The task's first IPv4 address (IP-per-task)."""
    addresses = task.get("ipAddresses")
    if not isinstance(addresses, list):
        return None
    for entry in addresses:
        address = entry.get("ipAddress") if isinstance(entry, MAPPING) else None
        if isinstance(address, str) and IPV4_RE.fullmatch(address):
            return address
    return None


def port_key(labels: Mapping[str, Any], env: Mapping[str, Any], key: str) -> Any:
    return labels[key] if key in labels else env.get(key)


def has_port_groups(labels: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
    return any(
        k != "HAPROXY_GROUP" and k.startswith("HAPROXY_") and k.endswith("_GROUP")
        for source in (labels, env) for k in source
    )
