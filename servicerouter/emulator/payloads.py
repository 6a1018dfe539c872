"""Marathon's payload conventions, shared by the emulator's state and HTTP modules.

Why a module of its own: app ids, timestamps, service ports and task states are read the
same way by the state (``store``, ``apps``, ``tasks``) and by the HTTP side
(``http_api``, ``control_api``); keeping them here keeps those modules free of each
other.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

RUNNING_STATES = frozenset({"TASK_RUNNING"})
STAGED_STATES = frozenset({"TASK_STAGING", "TASK_STARTING"})


class EmulatorError(Exception):
    """A request the emulator refuses, carried to the HTTP layer as status + message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, **extra}


def now_iso() -> str:
    """Current UTC time the way Marathon writes it: ``2017-07-19T17:34:41.967Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def normalize_app_id(app_id: str) -> str:
    """Marathon ids are absolute paths without a trailing slash: ``a/b/`` -> ``/a/b``."""
    if not isinstance(app_id, str) or not app_id.strip("/"):
        raise ValueError(f"invalid app id: {app_id!r}")
    return "/" + app_id.strip("/")


def task_id_prefix(app_id: str) -> str:
    """The part of a task id before the dot: ``/tools/docker/registry`` -> ``tools_docker_registry``."""
    return app_id.lstrip("/").replace("/", "_")


def service_ports(app: dict[str, Any]) -> list[int]:
    """The app's service ports, whichever Marathon shape declares them.

    Container port mappings (1.5+ ``container.portMappings``, then
    ``container.docker.portMappings``) win, as in Marathon; then ``portDefinitions``
    (1.x), then ``ports`` (0.x).
    """
    container = app.get("container") or {}
    for mappings in (container.get("portMappings"), (container.get("docker") or {}).get("portMappings")):
        if mappings:
            return [int(m.get("servicePort") or 0) for m in mappings]
    if app.get("portDefinitions"):
        return [int(p.get("port") or 0) for p in app["portDefinitions"]]
    return [int(p) for p in app.get("ports") or []]


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, as every body and event is sent."""
    return json.dumps(obj, separators=(",", ":")).encode()


def ip_addresses(values: Iterable[str]) -> list[dict[str, str]]:
    """Marathon's ``ipAddresses`` entries for plain address strings."""
    out = []
    for value in values:
        try:
            protocol = "IPv6" if ipaddress.ip_address(value).version == 6 else "IPv4"
        except ValueError:
            protocol = "IPv4"
        out.append({"ipAddress": value, "protocol": protocol})
    return out


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def task_state(task: dict[str, Any]) -> str:
    """A task's state; pre-1.x payloads have none (a listed, started task is running)."""
    state = task.get("state")
    if state:
        return str(state)
    return "TASK_RUNNING" if task.get("startedAt") else "TASK_STAGING"


def readiness_list(results: Any) -> list[dict[str, Any]]:
    """A copy of ``readinessCheckResults``; ValueError unless a list of objects."""
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError("readinessCheckResults must be a list of objects")
    return copy.deepcopy(results)
