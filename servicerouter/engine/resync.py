"""A full resync that derives off the step lock, and folds in the events applied meanwhile.

A full resync (periodic, SIGHUP, a reconnected stream) fetches every app, models
and renders all of them: 1-2 s at 50,000 tasks.  Syncs run one at a time, so an
event that came 50 ms into it used to wait for the rest.  Here the loop thread
fetches and derives without holding the step lock (:meth:`ResyncOffLock._derive_resync`),
while the event stream's reader goes on applying isolated events on the task
path (never the full path: a full derive of its own would share the router's
per-sync state with the resync's; a sync the task path refuses is queued back
for after the resync, as before).  Each such sync is noted in a *window*.

Then, holding the lock again, the resync must not put back a state older than
an event already applied: the window's task events are applied again to the
apps it fetched (as the serial order did after it: idempotent), apps updated in
the window take the mirror's document (fetched after the event), and the
result is planned from the resync's own render with the task and app paths'
planner (:meth:`~servicerouter.engine.task_path.TaskPath._plan_update`): the same
bytes a render from scratch of those apps gives.  What the planner cannot show
is derived again, whole, under the lock (the serial cost, never a wrong state).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from servicerouter.engine import removal_guard
from servicerouter.engine.runner import Derived, gc_paused
from servicerouter.engine.task_path import RunningConfig, check_counts_after
from servicerouter.render.check_rate import check_interval_scale, rate_of
from servicerouter.source.changes import Pending, apply_task_events
from servicerouter.source.marathon import MarathonError

log = logging.getLogger("servicerouter.live")


@dataclass(frozen=True)
class WindowSync:
    """One sync the task path applied while a resync derived."""

    task_events: tuple[Mapping[str, Any], ...]
    refetch: frozenset[str]


@dataclass
class PreparedResync:
    """What a resync fetched and derived off the lock (``error``: the fetch failed)."""

    apps: dict[str, Any] | None
    derived: Derived | None
    error: MarathonError | None = None
    seconds: float = 0.0  # fetch and derive, off the lock
    note: str | None = None  # what folding the window in did (for the sync's log line)
    window: list[WindowSync] = field(default_factory=list)


class ResyncOffLock:
    """Part of :class:`~servicerouter.engine.live.LiveRouter` (see the module docstring)."""

    def _resync_off_lock_ok(self, pending: Pending) -> bool:
        """Whether this step's full resync may derive off the lock: the engine runs a
        config the task path can start from, and nothing the derive changes on the
        router is read by the task path (label templates are: their overrides)."""
        router = self.router
        running = self._running
        return (pending.full and not pending.rebuild and self._apps is not None
                and running is not None and running.text is self._applied_text
                and self._failed_text is None and not router.settings.dry
                and not router.settings.allow_label_templates
                and self.runtime is not None and self.settings.runtime_updates)

    def _open_window(self) -> None:
        """(Holding the step lock.) From now on the task path's syncs are noted, and
        the resync counts as started: an event's step must not take it for overdue."""
        self._resync_window = []
        self._last_full = time.monotonic()
        self._resync_deferred = False

    def _derive_resync(self, pending: Pending) -> PreparedResync:
        """Fetch every app and derive the whole config, holding no lock."""
        start = time.perf_counter()
        with gc_paused():
            try:
                apps = self._fetch(pending, True)
            except MarathonError as err:
                return PreparedResync(None, None, err, time.perf_counter() - start)
            router = self.router
            previous = removal_guard.live_previous(self) if router.settings.health_check \
                else None
            derived = router.full_pass(apps.values(), previous, live=True,
                                       keep=self._apply_quarantine,
                                       check_scale=self._check_scale())
        return PreparedResync(apps, derived, None, time.perf_counter() - start)

    def _note_window_sync(self, pending: Pending) -> None:
        """(Holding the step lock.) A sync the task path applied during a resync."""
        if self._resync_window is not None:
            self._resync_window.append(WindowSync(tuple(pending.task_events),
                                                  frozenset(pending.refetch)))

    def _in_window(self) -> bool:
        return self._resync_window is not None

    def _requeue(self, pending: Pending) -> None:
        """A sync the task path refused during a resync: its events go back to the
        pending changes, applied by the loop after the resync (the order before)."""
        with self._pending_lock:
            queued = self._pending
            queued.task_events[:0] = pending.task_events
            queued.refetch |= pending.refetch - queued.removed
            queued.removed |= pending.removed - queued.refetch
            queued.full = queued.full or pending.full
            queued.full_reasons += [r for r in pending.full_reasons
                                    if r not in queued.full_reasons]
            queued.rebuild = queued.rebuild or pending.rebuild
            queued.events += pending.events
            if pending.first_at is not None and (queued.first_at is None
                                                 or pending.first_at < queued.first_at):
                queued.first_at = pending.first_at
        self.trigger.fire(event=False)

    def _close_window(self, prepared: PreparedResync | None) -> None:
        """(Holding the step lock.) The window's syncs, to fold in (None: the derive
        failed, the sync fetches again, after every event the window applied)."""
        if prepared is not None:
            prepared.window = self._resync_window or []
        self._resync_window = None

    def _fold(self, prepared: PreparedResync) -> tuple[dict[str, Any], Derived | None]:
        """The apps the resync applies (its fetch and the window's events) and their
        config, planned from its render; None: derive it again (the reason is
        ``prepared.note``)."""
        assert prepared.apps is not None and prepared.derived is not None
        fetched, derived = prepared.apps, prepared.derived
        if not prepared.window:
            return fetched, derived
        events = [e for w in prepared.window for e in w.task_events]
        refetch = frozenset().union(*(w.refetch for w in prepared.window))
        apps = dict(fetched)
        changed, unknown = apply_task_events(apps, events)
        apps.update(changed)
        assert self._apps is not None
        for app_id in refetch | unknown:  # the mirror fetched them after the event
            doc = self._apps.get(app_id)
            if doc is None:
                apps.pop(app_id, None)
            else:
                apps[app_id] = doc
        rendered = derived.rendered
        if rendered is None or len(rendered.services) != len(derived.model.services):
            prepared.note = "events came while it derived, and it left apps out " \
                "(quarantine or render failures): derived again"
            return apps, None
        running = RunningConfig(replace(derived.model, services=rendered.services),
                                derived.options, rendered.text)
        folded = Pending(task_events=events, refetch=set(refetch | unknown))
        update = self._plan_update(running, fetched, apps, folded)
        if not isinstance(update, str):
            overrides = self.router.label_overrides or None
            counts = check_counts_after(running, update, self.router.fragments, overrides)
            options = running.options
            if counts is not None and check_interval_scale(
                    rate_of(counts), options.max_check_rate,
                    options.check_interval_scale) != options.check_interval_scale:
                update = "the check rate left its interval factor's band"
        if isinstance(update, str):
            prepared.note = f"events came while it derived ({update}): derived again"
            return apps, None
        prepared.note = f"{len(events)} events applied while it derived folded in"
        model = update.running.model
        return apps, Derived(model, derived.options,
                             replace(rendered, text=update.running.text, services=model.services))


__all__ = ["PreparedResync", "ResyncOffLock", "WindowSync"]
