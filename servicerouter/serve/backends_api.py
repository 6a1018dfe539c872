"""``GET /api/backends/{name}`` on the status server: one backend's servers as HAProxy
sees them right now (state, weight, sessions), in JSON.

Why: a deploy tool (``servicerouter zdd``) must know when a new task is *up in
HAProxy* and when a drained one has no session left before it is killed.  Marathon's
health says nothing about HAProxy's own checks, and marathon-lb's ``zdd.py`` parsed the
stats page's CSV for this; here servicerouter asks its own Runtime API socket and
answers one small document, under the same token rules as ``/status``.
"""

from __future__ import annotations

from typing import Any

from servicerouter.apply.runtime_api import RuntimeAPI, RuntimeUpdateError
from servicerouter.apply.server_states import parse_backend_ids, parse_show_stat, safe_backend_name


class BackendNotFound(LookupError):
    """HAProxy runs no backend of that name."""


def backend_servers(api: RuntimeAPI, backend: str) -> dict[str, Any]:
    """The servers of ``backend``: name, address, status (HAProxy's: ``UP``, ``DOWN``,
    ``MAINT``, ``DRAIN``, ``no check``...), weight, current sessions, check status.

    ``serving`` says the server takes new requests (up or unchecked, weight above 0).
    Raises BackendNotFound, or RuntimeUpdateError when the socket does not answer.
    """
    if not safe_backend_name(backend):
        raise BackendNotFound(backend)
    state = api.command(f"show servers state {backend}")
    ids = parse_backend_ids(state)
    if backend not in ids:
        if "# be_id" in state:  # the backend exists and has no servers
            return {"backend": backend, "servers": []}
        raise BackendNotFound(backend)
    text = api.command(f"show stat {ids[backend]} 4 -1")
    if not text.startswith("# "):
        raise BackendNotFound(backend)
    servers = []
    for name, fields in parse_show_stat(text).get(backend, {}).items():
        status, weight = fields["status"], _int(fields["weight"])
        servers.append({
            "name": name, "address": fields["addr"], "status": status,
            "weight": weight, "sessions": _int(fields["scur"]),
            "check_status": fields["check_status"],
            "serving": weight > 0 and (status.startswith("UP") or status == "no check"),
        })
    return {"backend": backend, "servers": servers}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


__all__ = ["BackendNotFound", "RuntimeUpdateError", "backend_servers"]
