"""What a reload (or a start) of HAProxy came to, whoever did it.

Its own module because every way of reloading answers with it (a managed
HAProxy, ``--command``, a one-shot's reload command): a one-shot run reloads
through a command and should not load the managed HAProxy's module to say so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReloadResult:
    ok: bool
    message: str = ""
    worker: int | None = None
    started: bool = False  # HAProxy was not running: this was a start, not a reload


__all__ = ["ReloadResult"]
