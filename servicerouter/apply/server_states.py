"""HAProxy's own view of backends' servers, read through the Runtime API.

Both the dashboard (many backends a page) and ``GET /api/backends/NAME`` (the one
backend a deploy tool watches) need the same two answers: ``show servers state`` to
learn a backend's numeric id, then ``show stat ID 4 -1`` for its servers' state,
weight and sessions.  Asking by id matters: a service port's frontend carries its
backend's name, and ``show stat NAME`` answers for the first proxy so named.
"""

from __future__ import annotations

from collections.abc import Iterable

from servicerouter.apply.runtime_api import RuntimeAPI, RuntimeUpdateError

STATE_BATCH = 40  # backends asked per Runtime API exchange


def parse_show_stat(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """``show stat`` CSV (one or several answers) -> backend -> server -> fields.

    Each answer starts with its own ``# pxname,svname,...`` header; the
    BACKEND/FRONTEND summary lines are skipped.  Kept fields: status (as
    HAProxy's stats page says it: UP, DOWN, MAINT, DRAIN, "no check", ...),
    check_status, weight, scur (current sessions), lastchg and addr.
    """
    states: dict[str, dict[str, dict[str, str]]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
            continue
        if not line or not header:
            continue
        fields = dict(zip(header, line.split(","), strict=False))
        server = fields.get("svname", "")
        if server in ("BACKEND", "FRONTEND", ""):
            continue
        states.setdefault(fields.get("pxname", ""), {})[server] = {
            key: fields.get(key, "") for key in ("status", "check_status", "weight", "scur",
                                                 "lastchg", "addr")}
    return states


def parse_backend_ids(text: str) -> dict[str, str]:
    """``show servers state`` answers -> backend name -> its numeric id (``be_id``).

    ``show stat`` filtered by *name* picks the first proxy so named, and a
    service port's frontend carries its backend's name: the numeric id names
    the backend alone.
    """
    ids: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) > 3 and words[0].isdigit():
            ids.setdefault(words[1], words[0])
    return ids


def server_states(api: RuntimeAPI | None,
                  backends: Iterable[str]) -> tuple[dict[str, dict[str, dict[str, str]]], str]:
    """HAProxy's own view of these backends' servers, and an error text ("" if none).

    Two Runtime API connections per ``STATE_BATCH`` backends: their ids
    (``show servers state NAME``), then their servers' stats (``show stat ID 4
    -1``).  A refused or failed command leaves the states out (the page says
    why); it never fails the page.
    """
    names = [name for name in dict.fromkeys(backends) if safe_backend_name(name)]
    if api is None:
        return {}, "no Runtime API (run with --manage-haproxy or --haproxy-socket)"
    states: dict[str, dict[str, dict[str, str]]] = {}
    for start in range(0, len(names), STATE_BATCH):
        batch = names[start:start + STATE_BATCH]
        try:
            ids = parse_backend_ids(api.command(
                "; ".join(f"show servers state {name}" for name in batch)))
            if not ids:
                continue
            text = api.command("; ".join(f"show stat {ids[name]} 4 -1"
                                         for name in batch if name in ids))
        except RuntimeUpdateError as err:
            return states, str(err)
        states.update(parse_show_stat(text))
    return states, ""


def safe_backend_name(name: str) -> bool:
    """Backend names are ours (clean_name), but a command line is no place to trust that."""
    return bool(name) and all(ch.isalnum() or ch in "_-.:" for ch in name)
