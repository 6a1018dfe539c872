"""File descriptors and health-check load a config asks of HAProxy.  Pure: text in.

HAProxy holds one descriptor per listener and one per checked server (its
health checks keep a socket each), plus two per connection of its global
``maxconn`` when one is set.  At start it raises its RLIMIT_NOFILE to that
sum, and when the hard limit is lower it stops with "Cannot raise FD limit":
at 5,000 apps of 10 tasks with the default fragments that is ~55,000
descriptors, more than many systems give a service.  So before starting or
reloading HAProxy the engine computes the figure (measured on HAProxy 2.6:
checks + listeners + 2 x global maxconn + 16, or + ~230 without a global
maxconn) and says it, with the limit and the fix, instead of letting HAProxy
fail.  The same scan gives the health-check rate (checks per second), the
load a big cluster puts on HAProxy and on the tasks it checks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

DEFAULT_INTER_MS = 2000  # HAProxy's check interval when a server line sets none
_MARGIN_WITH_MAXCONN = 16
_MARGIN_WITHOUT_MAXCONN = 230  # HAProxy keeps room for a minimum maxconn of its own
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0,
             "d": 86_400_000.0}


@dataclass(frozen=True)
class FdNeed:
    """What one config asks for."""

    checked_servers: int
    listeners: int
    global_maxconn: int | None
    ulimit_n: int | None  # ``ulimit-n`` in global: HAProxy goes no higher
    checks_per_second: float

    @property
    def descriptors(self) -> int:
        if self.global_maxconn is not None:
            base = 2 * self.global_maxconn + _MARGIN_WITH_MAXCONN
        else:
            base = _MARGIN_WITHOUT_MAXCONN
        return self.checked_servers + self.listeners + base


def _interval_ms(value: str) -> float | None:
    for unit in ("us", "ms", "s", "m", "h", "d"):
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return int(value[: -len(unit)]) * _UNITS_MS[unit]
    return float(value) if value.isdigit() else None


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


# An indented ``server NAME ADDRESS OPTIONS`` line: its options (what decides the check).
# They start at a newline, not at ``^``: sre then tries line starts only (2x faster).
_SERVER_OPTIONS = re.compile(r"\n[ \t]+server[ \t]+\S+[ \t]+\S+[ \t]+([^\n]*)")
_BIND_ADDRESSES = re.compile(r"\n[ \t]+bind[ \t]+(\S+)")
# A ``global`` section's body: the indented (or blank) lines up to the next section,
# each with the newline before it (the one before the next section is left to it).
_GLOBAL_BODY = re.compile(r"\nglobal(?:[ \t][^\n]*)?((?:\n(?:[ \t][^\n]*)?(?=\n|\Z))*)")


def fd_need(text: str) -> FdNeed:
    """What ``text`` asks of HAProxy, read by a few regular expressions over the whole text.

    Server lines are most of a big config (62,500 at 5,000 apps; a line loop in
    Python took ~57 ms of a one-shot there) and share a few option tails
    (`` check inter 2s fall 4``): the scan counts the tails in C, and reads each
    distinct one once.  A server is checked when ``check`` is among its options
    (the words after its name and address), as HAProxy reads it.
    """
    checked = 0
    rate = 0.0
    lines = text if text.startswith("\n") else "\n" + text
    for options, count in Counter(_SERVER_OPTIONS.findall(lines)).items():
        line_rate = _check_rate(options.split())
        if line_rate is not None:
            checked += count
            rate += line_rate * count
    listeners = sum(len([a for a in addresses.split(",") if a])
                    for addresses in _BIND_ADDRESSES.findall(lines))
    maxconn = ulimit = None
    for body in _GLOBAL_BODY.findall(lines):
        for line in body.splitlines():
            words = line.split()
            if len(words) > 1 and words[0] == "maxconn":
                maxconn = _int(words[1])
            elif len(words) > 1 and words[0] == "ulimit-n":
                ulimit = _int(words[1])
    return FdNeed(checked, listeners, maxconn, ulimit, rate)


def _check_rate(words: list[str]) -> float | None:
    """Checks per second of a server line's options, or None when it is not checked."""
    if "check" not in words:
        return None
    inter = DEFAULT_INTER_MS
    if "inter" in words:
        index = words.index("inter")
        parsed = _interval_ms(words[index + 1]) if index + 1 < len(words) else None
        inter = parsed or DEFAULT_INTER_MS
    return 1000.0 / inter


def fd_problem(need: FdNeed, hard_limit: int | None, who: str) -> str | None:
    """Why HAProxy would run out of descriptors with this config, and the fix; None if not.

    ``hard_limit``: RLIMIT_NOFILE's hard limit of the process that starts HAProxy
    (``who`` names it), None when unknown or unlimited.
    """
    wanted = need.descriptors
    what = (f"{need.checked_servers} checked servers, {need.listeners} listeners"
            + (f", 2 x global maxconn {need.global_maxconn}" if need.global_maxconn else ""))
    room = (wanted * 5 // 4 + 1023) // 1024 * 1024  # a quarter more for growth, rounded
    if need.ulimit_n is not None:
        if need.ulimit_n >= wanted:
            return None
        return (f"HAProxy needs about {wanted} file descriptors ({what}) but the config's "
                f"global ulimit-n is {need.ulimit_n}: health checks and connections will fail "
                f"for want of descriptors; raise ulimit-n to {room} or remove it")
    if hard_limit is None or hard_limit >= wanted:
        return None
    return (f"HAProxy needs about {wanted} file descriptors ({what}) but {who} may open at "
            f"most {hard_limit} (RLIMIT_NOFILE hard limit): HAProxy will refuse to start "
            f"(\"Cannot raise FD limit\"). Fix: LimitNOFILE={room} in the [Service] section of "
            f"the unit that starts it (systemctl edit), or `ulimit -Hn {room}` before starting; "
            "or check fewer servers")


def describe_check_load(need: FdNeed) -> str:
    """One line: how many health checks per second HAProxy will send."""
    return (f"{need.checked_servers} checked servers: about {need.checks_per_second:.0f} "
            "health checks per second")


def hard_nofile_limit() -> int | None:
    """This process's RLIMIT_NOFILE hard limit (HAProxy started from here inherits it)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def fd_report(text: str, managed: bool) -> tuple[str | None, str]:
    """(the descriptor problem or None, the check-load line) for ``text``.

    ``managed``: HAProxy is started by this process, so its limit is ours;
    otherwise ours is only the best guess of the init system's.
    """
    need = fd_need(text)
    who = ("servicerouter (which starts HAProxy)" if managed
           else "this process (an init system may give HAProxy another limit)")
    return fd_problem(need, hard_nofile_limit(), who), describe_check_load(need)


__all__ = ["DEFAULT_INTER_MS", "FdNeed", "describe_check_load", "fd_need", "fd_problem",
           "fd_report", "hard_nofile_limit"]
