"""``GET /api/backends/{name}`` on the status server: one backend's servers as HAProxy
sees them right now (state, weight, sessions), in JSON.

Why: a deploy tool (``servicerouter zdd``) must know when a new task is *up in
HAProxy* and when a drained one has no session left before it is killed.  Marathon's
health says nothing about HAProxy's own checks, and marathon-lb's ``zdd.py`` parsed the
stats page's CSV for this; here servicerouter asks its own Runtime API socket and
answers one small document, under the same token rules as ``/status``.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from servicerouter.apply.runtime_api import RuntimeAPI, RuntimeUpdateError

# Backend names servicerouter writes: anything else is not sent to the socket.
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class BackendNotFound(LookupError):
    """HAProxy runs no backend of that name."""


def backend_servers(api: RuntimeAPI, backend: str) -> dict[str, Any]:
    """The servers of ``backend``: name, address, status (HAProxy's: ``UP``, ``DOWN``,
    ``MAINT``, ``DRAIN``, ``no check``...), weight, current sessions, check status.

    ``serving`` says the server takes new requests (up or unchecked, weight above 0).
    Raises BackendNotFound, or RuntimeUpdateError when the socket does not answer.
    """
    if not _NAME_RE.fullmatch(backend):
        raise BackendNotFound(backend)
    # A frontend may share the backend's name (servicerouter.py names both APP_PORT), and
    # ``show stat NAME`` takes the first proxy of that name: ask by the backend's id,
    # which ``show servers state`` (backends only) gives.
    state = api.command(f"show servers state {backend}")
    rows_of_state = [line.split() for line in state.splitlines()
                     if line[:1].isdigit() and len(line.split()) > 3]
    if not rows_of_state:
        if "# be_id" in state:
            return {"backend": backend, "servers": []}
        raise BackendNotFound(backend)
    text = api.command(f"show stat {rows_of_state[0][0]} 4 -1")
    if not text.startswith("# "):
        raise BackendNotFound(backend)
    rows = csv.DictReader(io.StringIO(text[2:]))
    servers = []
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in (None, "BACKEND", "FRONTEND"):
            continue
        status = row.get("status") or ""
        weight = _int(row.get("weight"))
        servers.append({
            "name": row["svname"], "address": row.get("addr") or "", "status": status,
            "weight": weight, "sessions": _int(row.get("scur")),
            "check_status": row.get("check_status") or "",
            "serving": weight > 0 and (status.startswith("UP") or status == "no check"),
        })
    return {"backend": backend, "servers": servers}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


__all__ = ["BackendNotFound", "RuntimeUpdateError", "backend_servers"]
