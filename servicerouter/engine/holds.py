"""Removal holds: a sync that would empty the load balancer waits for proof.

A Marathon leader election, a bad proxy or a wrong ``--group`` can make
Marathon answer an empty or nearly empty app list for a moment
(marathon#3419).  Applying that answer at once removes every route; waiting
costs nothing when the answer was a blip and only delays a removal the
operator meant.  So a sync whose config would lose more than a threshold of
the routed servers or backends (or all of them) is *held*: the last config
keeps serving until the same kind of answer has persisted for a number of
consecutive syncs over a minimum time, or the operator confirms it.

This module is the decision alone, a pure function of the previous and the
new routed sets, the settings, the hold so far and the time, so it can be
tested exhaustively; :mod:`servicerouter.engine.removal_guard` keeps the
state, logs, persists and reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

# backend name -> the server addresses ("ip:port") it routes to
Routed = Mapping[str, frozenset[str]]

SAMPLE_SIZE = 3  # names shown in the warning and in /status

APPLY = "apply"  # nothing large is removed: apply as usual
HOLD = "hold"  # keep the last config serving
PERSISTED = "persisted"  # the removal lasted long enough: apply it
CONFIRMED = "confirmed"  # the operator confirmed it: apply it


@dataclass(frozen=True)
class HoldSettings:
    """When a removal is held and when it is finally applied.

    ``threshold``: a sync is held when it would lose more than this fraction
    of the routed servers or of the backends (losing all of them always holds).
    ``fetches`` and ``seconds``: a held removal is applied once that many
    consecutive syncs saw it and at least that long passed since the first;
    ``fetches == 0`` turns holds off.
    """

    threshold: float = 0.5
    fetches: int = 3
    seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.fetches > 0


@dataclass(frozen=True)
class HoldState:
    """A removal being held: since when, how many syncs saw it, against which config.

    ``basis`` is a digest of the routed set the removal is measured against: if
    the serving config changed meanwhile (someone else wrote it), the count
    starts again rather than confirming a removal nobody saw persist.
    """

    since: float
    fetches: int
    basis: str


@dataclass(frozen=True)
class Removal:
    """What a sync would take away, counted against the config serving now.

    The counts are net: what a sync adds makes up for what it removes, so a
    rolling restart (every task replaced), an app replaced by another or a
    renamed backend holds nothing; only the load balancer shrinking does.  A
    lying Marathon answers *less*, never as much of something else.  The
    samples name what would go (backends, then ``backend/address`` servers).
    """

    servers_before: int
    servers_lost: int
    backends_before: int
    backends_lost: int
    servers_after: int
    backends_after: int
    apps: int  # apps Marathon answered with
    lost_backends: tuple[str, ...] = ()  # a sample, sorted
    lost_servers: tuple[str, ...] = ()  # a sample of "backend/address", sorted

    @property
    def empties(self) -> bool:
        """Everything routed now would go."""
        routed_before = self.servers_before > 0 or self.backends_before > 0
        return routed_before and (self.backends_after == 0 or
                                  (self.servers_before > 0 and self.servers_after == 0))


@dataclass(frozen=True)
class Decision:
    """apply / hold / persisted / confirmed, why, what, and the hold state to keep."""

    action: str
    reason: str = ""
    removal: Removal | None = None
    state: HoldState | None = None

    @property
    def held(self) -> bool:
        return self.action == HOLD


def measure(previous: Routed, new: Routed, apps: int) -> Removal:
    """Count what going from ``previous`` to ``new`` removes (net, see :class:`Removal`)."""
    lost_backends = sorted(b for b in previous if b not in new)
    lost_servers: list[str] = []
    for backend in sorted(previous):
        if len(lost_servers) >= SAMPLE_SIZE:
            break
        gone = previous[backend] - new.get(backend, frozenset())
        lost_servers.extend(f"{backend}/{a}" for a in sorted(gone)[:SAMPLE_SIZE])
    servers_before = sum(len(s) for s in previous.values())
    servers_after = sum(len(s) for s in new.values())
    return Removal(
        servers_before=servers_before,
        servers_lost=max(0, servers_before - servers_after),
        backends_before=len(previous),
        backends_lost=max(0, len(previous) - len(new)),
        servers_after=servers_after,
        backends_after=len(new),
        apps=apps,
        lost_backends=tuple(lost_backends[:SAMPLE_SIZE]),
        lost_servers=tuple(sorted(lost_servers)[:SAMPLE_SIZE]),
    )


def hold_reason(removal: Removal, threshold: float) -> str | None:
    """Why ``removal`` is too large to trust at once, or None when it is not."""
    if removal.empties:
        if removal.apps == 0:
            return "Marathon answered no apps"
        return "every routed backend or server would go"
    if removal.backends_before and removal.backends_lost > threshold * removal.backends_before:
        return (f"{removal.backends_lost} of {removal.backends_before} backends would go "
                f"(more than {threshold:.0%})")
    if removal.servers_before and removal.servers_lost > threshold * removal.servers_before:
        return (f"{removal.servers_lost} of {removal.servers_before} servers would go "
                f"(more than {threshold:.0%})")
    return None


def basis_of(previous: Routed) -> str:
    """A digest of the routed set a hold is measured against (order-independent)."""
    digest = hashlib.sha256()
    for backend in sorted(previous):
        digest.update(backend.encode() + b"\0")
        for address in sorted(previous[backend]):
            digest.update(address.encode() + b"\1")
        digest.update(b"\2")
    return digest.hexdigest()[:32]


def decide(previous: Routed, new: Routed, apps: int, settings: HoldSettings,
           state: HoldState | None, now: float, confirmed: bool = False,
           fresh: bool = True) -> Decision:
    """Apply the new config, hold it, or apply a held removal that persisted or was confirmed.

    ``state`` is the hold so far (None: none); the returned decision's
    ``state`` is the one to keep (None once nothing is held).  A sync that
    removes little ends any hold: "consecutive" means consecutive.  A hold
    whose start lies in the future (a clock stepped back, a state file from
    elsewhere) starts again now instead of never ending.

    ``fresh``: this sync fetched every app.  A sync built from events on the
    apps fetched earlier (the live engine's incremental syncs) may hold or end
    a hold but never counts towards persistence: a removal is applied only on
    a fresh view of Marathon, never on a stale copy of an empty answer.
    """
    removal = measure(previous, new, apps)
    reason = hold_reason(removal, settings.threshold) if settings.enabled else None
    if reason is None:
        return Decision(APPLY, removal=removal)
    if confirmed:
        return Decision(CONFIRMED, reason, removal)
    basis = basis_of(previous)
    seen = 1 if fresh else 0
    if state is None or state.basis != basis or state.since > now:
        state = HoldState(now, seen, basis)
    elif seen:
        state = HoldState(state.since, state.fetches + seen, basis)
    if not fresh:
        return Decision(HOLD, reason, removal, state)
    if state.fetches >= settings.fetches and now - state.since >= settings.seconds:
        return Decision(PERSISTED, reason, removal)
    return Decision(HOLD, reason, removal, state)


__all__ = [
    "APPLY",
    "CONFIRMED",
    "HOLD",
    "PERSISTED",
    "Decision",
    "HoldSettings",
    "HoldState",
    "Removal",
    "Routed",
    "basis_of",
    "decide",
    "hold_reason",
    "measure",
]
