"""Where an event_latency trial's time went: servicerouter's sync log lined up with the
benchmark's own clock (both read CLOCK_MONOTONIC), and this process's GC pauses.

Kept apart from ``event_latency.py`` (which sets up and drives the run) so each file
stays small; nothing here starts a process.
"""

from __future__ import annotations

import collections
import gc
import re
import time

SYNC_LINE = re.compile(r"sync timing: (\w+) (task|full) path(?: \((.*)\))? fetch=.* "
                       r"total=([0-9.]+)s")


def sync_paths(log_text: str) -> tuple[int, int, collections.Counter[str], float]:
    """(task-path syncs, full-path syncs, why each full one was full, the slowest
    task-path sync in seconds) from the log: a trial much slower than that waited
    outside servicerouter's sync (CPU, HAProxy, the client)."""
    task = full = 0
    slowest = 0.0
    reasons: collections.Counter[str] = collections.Counter()
    for match in SYNC_LINE.finditer(log_text):
        if match.group(2) == "task":
            task += 1
            slowest = max(slowest, float(match.group(4)))
        else:
            full += 1
            reason = re.sub(r"\d+", "N", match.group(3) or "?")[:120]
            reasons[f"{reason} ({float(match.group(4)) * 1000:.0f} ms)"] += 1
    return task, full, reasons, slowest


STAMPS = re.compile(r"sync timing: .* at ((?:\w+=[0-9.]+,?)+)\s*$", re.MULTILINE)
# A trial's steps, in order: (name, from stamp, to stamp); "sent"/"routed" are the trial's.
PHASES = (("to_sr", "sent", "event"),      # emulator emits -> servicerouter has the event
          ("wake", "event", "woke"),       # -> its sync loop woke up
          ("lock", "woke", "start"),       # -> the sync began
          ("plan", "start", "api"),        # -> the first Runtime API command went out
          ("api", "api", "answered"),      # -> HAProxy answered the last command
          ("seen", "answered", "routed"))  # -> a client's request routed by it


def sync_stamps(log_text: str) -> list[dict[str, float]]:
    """Every sync's monotonic time stamps (event, woke, start, api, answered, end) from
    servicerouter's "sync timing ... at" lines (CLOCK_MONOTONIC is one clock for every
    process of the machine, so they line up with this process's)."""
    syncs = []
    for match in STAMPS.finditer(log_text):
        stamps = {}
        for item in match.group(1).split(","):
            name, _, value = item.partition("=")
            stamps[name] = float(value)
        syncs.append(stamps)
    return syncs


def explain(trial: dict, syncs: list[dict[str, float]]) -> dict:
    """Where a trial's time went: the sync that took its event in (the first one whose
    first event came after the trial began), split into PHASES, in ms.  ``syncs_between``
    counts other syncs that ran between the event and the route (work in the way)."""
    sent, routed = trial["sent"], trial["routed"]
    mine = [s for s in syncs if "event" in s and sent <= s["event"] <= routed]
    busy = [s for s in syncs if s.get("start", 0) < routed and s.get("end", 0) > sent]
    out: dict = {"syncs_between": len(busy) - (1 if mine else 0)}
    if not mine:
        out["sync"] = None
        return out
    stamps = dict(mine[0], sent=sent, routed=routed)
    if "api" not in stamps:  # nothing for HAProxy (or a reload): the sync's end instead
        stamps["api"] = stamps["answered"] = stamps.get("end", stamps["start"])
    for name, begin, end in PHASES:
        if begin in stamps and end in stamps:
            out[name] = round((stamps[end] - stamps[begin]) * 1000, 2)
    # servicerouter's own part: from its reading the event to HAProxy's last answer
    out["servicerouter"] = round((stamps["answered"] - stamps["event"]) * 1000, 2)
    return out


def describe(trial: dict) -> str:
    """One trial, one line: total = phases (load average)."""
    phases = trial.get("phases") or {}
    if "to_sr" not in phases:
        split = "no sync of its event found in the log"
    else:
        split = " + ".join(f"{name} {phases[name]:.1f}" for name, _, _ in PHASES)
    return (f"{trial['ms']:.1f} ms = {split}; floor {trial['floor_ms']:.1f}, "
            f"{trial['requests']} requests (slowest {trial['slowest_request_ms']:.1f}), "
            f"benchmark GC {trial['bench_gc_ms']:.1f}, "
            f"other syncs {phases.get('syncs_between', 0)}, load {trial['load']:.2f}")


class GcPauses:
    """This process's garbage-collector pauses (start, seconds): the emulator and the
    probing client live here, so a pause of ours shows in a trial as product latency
    unless it is counted (``bench_gc`` per trial)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.monotonic()
        else:
            self.pauses.append((self._started, time.monotonic() - self._started))

    def within(self, start: float, end: float) -> float:
        return sum(d for at, d in self.pauses if start <= at <= end)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)
