"""The shell around removal holds: state, persistence, log lines, status, metrics.

:func:`servicerouter.engine.holds.decide` says whether a sync's removal is
held; :class:`RemovalGuard` (one per :class:`~servicerouter.engine.runner.Router`,
so one-shot and live runs share it) remembers the hold between syncs, keeps
it in the state directory so that cron one-shots, each a new process, still
see a removal persist across runs, says once and clearly what is held and
why, and takes the operator's confirmation.

The engines call one function each: :func:`check_one_shot` from
``Router.sync`` and :func:`removal_held` from the live engine, plus
:func:`routed_before` (what ``--health-check`` keeps for tasks whose health
is not known yet) and :func:`confirm_removal` (``POST /removal/confirm``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from servicerouter.engine.holds import (
    APPLY,
    CONFIRMED,
    HOLD,
    Decision,
    HoldSettings,
    HoldState,
    Routed,
    decide,
)

if TYPE_CHECKING:  # parse_config is imported where a config is parsed (not cold one-shots)
    from servicerouter.apply.confdiff import ParsedConfig

log = logging.getLogger("servicerouter")

HOLD_FILE = "removal-hold.json"  # in the state directory
EXIT_HELD = 75  # a one-shot run held a removal (EX_TEMPFAIL: try again later)
CONFIRM_PATH = "/removal/confirm"  # POST on --status-listen, with the status token
MIN_RECHECK = 0.5  # seconds: the soonest a held live run asks Marathon again


def routed_of(parsed: ParsedConfig) -> dict[str, frozenset[str]]:
    """backend -> server addresses of a parsed config."""
    return {backend: frozenset(s.address for s in servers.values())
            for backend, servers in parsed.servers.items()}


class RemovalGuard:
    """Holds large removals across syncs (see the module docstring).

    ``state_path``: where a hold is kept between processes (None: memory only).
    ``confirm_first``: ``--confirm-removal``, the next sync applies what it would hold.
    """

    def __init__(self, settings: HoldSettings, state_path: str | None = None, *,
                 confirm_first: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.state_path = state_path
        self.clock = clock
        self.state: HoldState | None = None
        self.held: Decision | None = None  # the decision holding now, for /status
        self._loaded = state_path is None
        self._confirm = confirm_first
        self._warned: HoldState | None = None  # the hold this process warned about
        self._lock = threading.Lock()
        # The routed sets of the last two configs seen (serving and new), by identity.
        self._cache: list[tuple[ParsedConfig, dict[str, frozenset[str]]]] = []
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------ decisions

    def routed(self, parsed: ParsedConfig | None) -> dict[str, frozenset[str]] | None:
        """:func:`routed_of`, remembered for the last config (live syncs reuse it)."""
        if parsed is None:
            return None
        for seen, routed in self._cache:
            if seen is parsed:
                return routed
        routed = routed_of(parsed)
        self._cache = [*self._cache[-1:], (parsed, routed)]
        return routed

    def check(self, previous: Routed | None, new: Routed, apps: int,
              metrics: Any = None, fresh: bool = True) -> Decision:
        """Decide this sync, keep the hold, log and report it; never raises.

        ``fresh``: the sync fetched every app (see :func:`~servicerouter.engine.holds.decide`).
        """
        with self._lock:
            confirmed, self._confirm = self._confirm, False  # a confirmation is used once
        if not previous:  # nothing routed yet: nothing to lose
            decision = Decision(APPLY)
        else:
            decision = decide(previous, new, apps, self.settings, self._load(), self.clock(),
                              confirmed, fresh)
        self._report(decision)
        self._keep(decision.state)
        self.held = decision if decision.held else None
        if metrics is not None and hasattr(metrics, "removal_held"):
            metrics.removal_held.set(1 if decision.held else 0)
            lost = decision.removal.servers_lost if decision.held and decision.removal else 0
            metrics.removal_held_servers.set(lost)
        if not decision.held:
            self.cancel_recheck()
        return decision

    def confirm(self) -> bool:
        """The operator confirms the held removal: the next sync applies it.

        False (and nothing armed) when no removal is held: a confirmation must
        never wait around for the next blip.
        """
        with self._lock:
            if self.held is None:
                return False
            self._confirm = True
            return True

    def status(self) -> dict[str, Any]:
        """/status's ``removal_hold``: the settings and, while held, what and since when."""
        s = self.settings
        report: dict[str, Any] = {"enabled": s.enabled, "held": False, "threshold": s.threshold,
                                  "fetches_needed": s.fetches, "seconds_needed": s.seconds}
        held, state = self.held, self.state
        if held is None or state is None or held.removal is None:
            return report
        removal = held.removal
        report.update(
            held=True, reason=held.reason, since=_iso(state.since), fetches=state.fetches,
            apply_after=_iso(state.since + s.seconds),
            servers_before=removal.servers_before, servers_lost=removal.servers_lost,
            backends_before=removal.backends_before, backends_lost=removal.backends_lost,
            apps=removal.apps, sample_backends=list(removal.lost_backends),
            sample_servers=list(removal.lost_servers),
        )
        return report

    def recheck_delay(self) -> float | None:
        """While held: when to ask Marathon again so the removal can be seen to persist."""
        state = self.state
        if self.held is None or state is None:
            return None
        remaining_time = state.since + self.settings.seconds - self.clock()
        remaining_fetches = max(self.settings.fetches - state.fetches, 1)
        return max(MIN_RECHECK, remaining_time / remaining_fetches)

    def schedule_recheck(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a full resync) after :meth:`recheck_delay`; one timer at a time."""
        delay = self.recheck_delay()
        self.cancel_recheck()
        if delay is None:
            return
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def cancel_recheck(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ shell

    def _report(self, decision: Decision) -> None:
        removal = decision.removal
        if decision.action == APPLY:
            if self.state is not None:
                log.warning("removal hold released: Marathon's answer no longer removes much; "
                            "applying it")
            return
        assert removal is not None
        what = (f"{removal.servers_lost} of {removal.servers_before} servers and "
                f"{removal.backends_lost} of {removal.backends_before} backends")
        names = ", ".join(removal.lost_backends or removal.lost_servers)
        if names:
            what += f" (e.g. {names})"
        if decision.action == CONFIRMED:
            log.warning("applying a removal of %s: confirmed by the operator", what)
            return
        if decision.action != HOLD:
            since = self.state.since if self.state is not None else self.clock()
            log.warning("applying a removal of %s: it persisted for %d syncs over %.0fs",
                        what, (self.state.fetches + 1) if self.state else 1,
                        self.clock() - since)
            return
        state = decision.state
        assert state is not None
        s = self.settings
        if self._warned is None or self._warned.since != state.since:  # a new hold
            log.warning("removal held, keeping the current config: %s; this sync would "
                        "remove %s. It is applied once it persists for %d syncs over %.0fs "
                        "(seen %d over %.0fs), or at once with --confirm-removal (one-shot) "
                        "or POST %s (live)", decision.reason, what, s.fetches, s.seconds,
                        state.fetches, self.clock() - state.since, CONFIRM_PATH)
        else:
            log.info("removal still held (%s): seen %d of %d syncs, %.0fs of %.0fs",
                     decision.reason, state.fetches, s.fetches,
                     self.clock() - state.since, s.seconds)
        self._warned = state

    def _load(self) -> HoldState | None:
        """The hold so far: in memory, or (first time) from the state directory."""
        if not self._loaded:
            self._loaded = True
            self.state = load_hold(self.state_path) if self.state_path else None
        return self.state

    def _keep(self, state: HoldState | None) -> None:
        if state == self.state:
            return
        self.state = state
        if self.state_path:
            save_hold(self.state_path, state)


def load_hold(path: str) -> HoldState | None:
    """A hold an earlier run kept; None if none or unreadable (then it starts again)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        state = HoldState(float(data["since"]), int(data["fetches"]), str(data["basis"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring the removal hold kept in %s: %s", path, err)
        return None
    return state if state.fetches > 0 else None


def save_hold(path: str, state: HoldState | None) -> None:
    """Keep ``state`` (or remove the file when None); a failure is logged, never raised."""
    from servicerouter.tls.bundles import write_private_file

    try:
        if state is None:
            if os.path.lexists(path):
                os.unlink(path)
            return
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        write_private_file(path, json.dumps({"version": 1, "since": state.since,
                                             "fetches": state.fetches,
                                             "basis": state.basis}) + "\n")
    except OSError as err:
        log.error("cannot keep the removal hold in %s: %s", path, err.strerror or err)


def _iso(timestamp: float) -> str:
    from servicerouter.engine.runner import utc_iso

    return utc_iso(timestamp)


# --------------------------------------------------------------------------- engine hooks


def previous_on_disk(router: Any) -> dict[str, frozenset[str]] | None:
    """What the config on disk routes (one-shot runs: the config serving now).

    None when neither holds nor --health-check need it (the file is not read).
    """
    from servicerouter.apply import haproxy

    settings = router.settings
    if not settings.removal_hold.enabled and not settings.health_check:
        return None
    current = haproxy.read_current(router.settings.config_path)
    if current is None:
        return None
    from servicerouter.apply.confdiff import backend_addresses  # routed_of(parse_config())

    return backend_addresses(current.decode("utf-8", "replace"))


def preview_dry(router: Any, previous: Routed | None, text: str, apps: int) -> None:
    """--dry: say when a real run would hold this removal (nothing is kept or counted)."""
    settings: HoldSettings = router.removal_guard.settings
    if not previous or not settings.enabled:
        return
    from servicerouter.apply.confdiff import parse_config

    decision = decide(previous, routed_of(parse_config(text)), apps, settings, None, 0.0)
    if decision.held and decision.removal is not None:
        removal = decision.removal
        log.warning("a run without --dry would hold this removal (%s): %d of %d servers and "
                    "%d of %d backends would go", decision.reason, removal.servers_lost,
                    removal.servers_before, removal.backends_lost, removal.backends_before)


def live_previous(live: Any) -> dict[str, frozenset[str]] | None:
    """What HAProxy runs now, as the live engine knows it (the file on disk before that)."""
    guard: RemovalGuard = live.router.removal_guard
    if live.settings.one_shot:  # nothing else reads the serving config: its server lines
        serving = live._applied_text
        return previous_on_disk(live.router) if serving is None else _one_shot_routed(serving)
    parsed = live._applied_parsed
    if parsed is None:
        text = live._applied_text
        if text is None:
            return previous_on_disk(live.router)
        from servicerouter.apply.confdiff import parse_config

        parsed = parse_config(text)
    return guard.routed(parsed)


def _one_shot_routed(text: str) -> dict[str, frozenset[str]]:
    """``routed_of(parse_config(text))`` from the server lines alone (see live_previous)."""
    from servicerouter.apply.confdiff import backend_addresses

    return backend_addresses(text)


def removal_held(live: Any, text: str, apps: int, fresh: bool = True) -> bool:
    """The live engine's hook: True when ``text`` is held (the last config keeps serving).

    ``fresh``: a full fetch (only those count towards persistence).
    """
    guard: RemovalGuard = live.router.removal_guard
    if not guard.settings.enabled or live.router.settings.dry:
        return False
    # Nothing removed and nothing held (by this process or, kept on disk, an earlier one)
    if text == live._applied_text and guard._load() is None:
        return False
    previous = live_previous(live)
    # Nothing routed yet (a cold one-shot, a first start): check() ignores the new config,
    # so the 7 MB of a 50k-task config are not parsed for it.  A one-shot reads only the
    # server lines (the live engine parses the config anyway, for the Runtime API).
    if not previous:
        new: Routed = {}
    elif live.settings.one_shot:
        new = _one_shot_routed(text)
    else:
        new = guard.routed(live._parse(text)) or {}
    decision = guard.check(previous, new, apps, live.metrics, fresh)
    if not decision.held:
        return False
    live.state.last_apply = "held"
    if not live.settings.one_shot:  # a one-shot's next run is the recheck
        guard.schedule_recheck(lambda: live.request_resync("removal hold recheck"))
    return True


def confirm_removal(live: Any) -> dict[str, Any] | None:
    """``POST /removal/confirm``: apply the held removal at once; None when none is held."""
    guard: RemovalGuard = live.router.removal_guard
    if not guard.confirm():
        return None
    log.warning("removal confirmed through %s: applying it at the next sync", CONFIRM_PATH)
    live.request_resync("removal confirmed")
    return guard.status()


__all__ = [
    "CONFIRM_PATH",
    "EXIT_HELD",
    "HOLD_FILE",
    "RemovalGuard",
    "confirm_removal",
    "load_hold",
    "preview_dry",
    "previous_on_disk",
    "removal_held",
    "live_previous",
    "routed_of",
    "save_hold",
]
