"""Which mode a command line runs, and which of its flags that mode ignores.

Pure functions of the parsed flags: no I/O, so every combination is cheap to test.

* ``--dry`` is a one-shot preview, whatever else is given: it never subscribes,
  starts HAProxy or serves anything.
* ``--sse`` and ``--listening`` follow Marathon's events.
* ``--manage-haproxy`` alone follows Marathon's event stream (``--sse``): a
  HAProxy kept running by a servicerouter that only looks at Marathon every
  ``--resync-interval`` would route to dead tasks for minutes.  With a
  ``file:`` snapshot there is no stream; the snapshot is read again on SIGHUP
  and every ``--resync-interval``, which the start-up line says.
* Anything else is servicerouter.py's one-shot run.

A flag that has no effect in the chosen mode is named in one warning, so an
operator who expects ``--status-listen`` in a cron job learns why nothing listens.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

ONCE, DRY, SSE, LISTENING, POLL = "one-shot", "dry", "sse", "listening", "poll"
LIVE_MODES = frozenset({SSE, LISTENING, POLL})

# Flags that only matter in the live modes (dest -> the flag as written).
_LIVE_ONLY = {
    "status_listen": "--status-listen", "status_token": "--status-token",
    "min_wait": "--min-wait", "max_wait": "--max-wait",
    "resync_interval": "--resync-interval", "backoff_initial": "--backoff-initial",
    "backoff_max": "--backoff-max", "drain_timeout": "--drain-timeout",
    "no_runtime_api": "--no-runtime-api",
}
_EVENT_SOURCE_ONLY = {"sse_stall_timeout": "--sse-stall-timeout",
                      "listening_addr": "--listening-addr"}
_MANAGED_ONLY = {"haproxy_stop_on_exit": "--haproxy-stop-on-exit",
                 "hard_stop_after": "--hard-stop-after"}
_DRY_IGNORES = {"sse": "--sse", "listening": "--listening", "manage_haproxy": "--manage-haproxy",
                "command": "--command"}


@dataclass(frozen=True)
class Mode:
    """The chosen mode and, when it was not asked for by name, why it was chosen."""

    name: str
    note: str | None = None

    @property
    def live(self) -> bool:
        return self.name in LIVE_MODES


def choose(args: argparse.Namespace) -> Mode:
    """The mode the flags ask for (see the module docstring)."""
    if args.dry:
        return Mode(DRY)
    if args.sse:
        return Mode(SSE)
    if args.listening:
        return Mode(LISTENING)
    if args.manage_haproxy:
        if any(url.startswith("file:") for url in args.marathon or ()):
            return Mode(POLL, "--manage-haproxy with a file: snapshot: no event stream to "
                              f"follow; the snapshot is read again on SIGHUP and every "
                              f"--resync-interval ({args.resync_interval:g}s)")
        return Mode(SSE, "--manage-haproxy follows Marathon's event stream (--sse); "
                         "give --listening to use HTTP callbacks instead")
    return Mode(ONCE)


# How the startup line names each mode.
_WORDS = {ONCE: "one-shot", DRY: "dry (print the config, touch nothing)",
          SSE: "sse (Marathon's event stream)", LISTENING: "listening (Marathon HTTP callbacks)",
          POLL: "poll (a file: snapshot read again on SIGHUP and every resync)"}


def describe(mode: Mode, args: argparse.Namespace) -> str:
    """The mode in the words of the startup line, with the managed HAProxy when there is one."""
    words = _WORDS[mode.name]
    if args.manage_haproxy and mode.name != DRY:
        words += ", managed HAProxy"
    return words


def ignored_flags(args: argparse.Namespace, mode: Mode, given: Iterable[str]) -> list[str]:
    """One warning line per group of given flags that ``mode`` does not use."""
    given = set(given)
    lines = []
    if mode.name == DRY:
        names = [flag for dest, flag in _DRY_IGNORES.items() if dest in given and
                 getattr(args, dest)]
        if names:
            lines.append(f"--dry is a one-shot preview: ignoring {', '.join(names)}")
    if not mode.live:
        names = [flag for dest, flag in {**_LIVE_ONLY, **_EVENT_SOURCE_ONLY,
                                         **_MANAGED_ONLY}.items() if dest in given]
        if names:
            lines.append(f"ignored in a one-shot run: {', '.join(names)} (only runs that "
                         "keep going use them: --sse, --listening, --manage-haproxy)")
        return lines
    unused = []
    if not args.manage_haproxy:
        unused += [flag for dest, flag in _MANAGED_ONLY.items() if dest in given]
    else:
        if "command" in given and args.command:
            unused.append("--command (--manage-haproxy reloads HAProxy itself)")
        if "runtime_socket" in given and args.runtime_socket:
            unused.append("--runtime-socket (--manage-haproxy uses its own, in --state-dir)")
    if "status_token" in given and not args.status_listen:
        unused.append("--status-token (no --status-listen)")
    if mode.name != SSE and "sse_stall_timeout" in given:
        unused.append("--sse-stall-timeout")
    if mode.name != LISTENING and "listening_addr" in given:
        unused.append("--listening-addr")
    if unused:
        lines.append(f"ignored in this {mode.name} run: {', '.join(unused)}")
    return lines


__all__ = ["DRY", "LISTENING", "LIVE_MODES", "ONCE", "POLL", "SSE", "Mode", "choose",
           "ignored_flags"]
