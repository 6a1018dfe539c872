"""Event intake: Marathon events (any thread) folded into the pending changes of the next sync."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from servicerouter.engine.live_state import MAX_HINT_REFETCH
from servicerouter.serve.metrics import Metrics
from servicerouter.source.changes import (
    APP_EVENTS,
    HINT_RESYNC_REASON,
    IGNORED,
    RESYNC_EVENT,
    TASK_EVENTS,
    Change,
    Pending,
    as_hint,
    classify,
)

log = logging.getLogger("servicerouter.live")

KNOWN_EVENTS = IGNORED | TASK_EVENTS | APP_EVENTS | {RESYNC_EVENT, "group_change_success",
                                                     "group_change_failed"}


def new_metrics() -> Metrics:
    """The live engine's metrics: every event type it counts starts at 0."""
    return Metrics(event_types=sorted(KNOWN_EVENTS | {"other"}))


class EventIntake:
    """Part of :class:`~servicerouter.engine.live.LiveRouter`: queues events for the loop
    thread, or (:meth:`submit_and_apply`) applies an isolated one on the reading thread."""

    def submit(self, event: Mapping[str, Any], *, trusted: bool = True) -> None:
        """Queue one Marathon event; the sync runs later on the loop thread.

        ``trusted=False`` is for events anyone could have sent (a callback
        without a token): they are only hints of which apps to refetch
        (:func:`~servicerouter.source.changes.as_hint`), never folded in as given.
        """
        if self._queue(event, trusted):
            self.trigger.fire(event=_is_event(event))

    def _queue(self, event: Mapping[str, Any], trusted: bool = True) -> bool:
        """Fold one event into the pending changes; False when it changes nothing."""
        event_type = event.get("eventType")
        known = isinstance(event_type, str) and event_type in KNOWN_EVENTS
        label = event_type if known else "other"
        self.metrics.events.inc(type=label)  # bounded labels
        change = classify(event) if trusted else as_hint(event)
        if change.kind == "ignore":
            return False
        with self._pending_lock:
            if (not trusted and change.kind == "apps"
                    and len(self._pending.refetch | set(change.app_ids)) > MAX_HINT_REFETCH):
                change = Change("full", reason=HINT_RESYNC_REASON)  # one fetch is cheaper
            self._pending.add(change, event, time.monotonic())
        log.debug("event %s: %s %s", label, change.kind, ",".join(change.app_ids))
        return True

    def submit_and_apply(self, event: Mapping[str, Any]) -> None:
        """The event stream's handler: submit(), and when the event comes after a quiet
        period and only asks for what the task or app path may take, sync it on this
        (the reading) thread at once, instead of waking the loop thread for it.

        Bursts, full resyncs and removals still go to the loop thread (coalesced);
        so does an event arriving while the loop is busy.
        """
        if not self._queue(event):
            return
        if not self._step_lock.acquire(blocking=False):
            self.trigger.fire(event=_is_event(event))  # the loop is in a step: it takes this next
            return
        try:
            with self._pending_lock:
                pending = self._pending
                cheap = (self._apps is not None and not pending.empty and not pending.full
                         and not pending.removed and not pending.rebuild)
            if not cheap or self._hup or self._retry_due:
                self.trigger.fire(event=_is_event(event))
            elif self.trigger.fire_and_claim():
                self._step()
        finally:
            self._step_lock.release()

    def request_resync(self, reason: str) -> None:
        """A full refetch at the next sync (reconnect, SIGHUP, HAProxy restart)."""
        self.submit({"eventType": RESYNC_EVENT, "reason": reason})

    def request_rebuild(self) -> None:
        """Operator rules changed (any thread): model and apply again from the apps
        held, without asking Marathon (servicerouter.rules)."""
        with self._pending_lock:
            self._pending.rebuild = True
            if self._pending.first_at is None:
                self._pending.first_at = time.monotonic()
        self.trigger.fire(event=False)

    def resync_from_signal(self) -> None:
        """SIGHUP: only a flag and a notify, so a handler can never deadlock on a lock."""
        self._hup = True
        self.trigger.fire(event=False)

    def _take_pending(self) -> Pending:
        with self._pending_lock:
            pending, self._pending = self._pending, Pending()
        return pending

    def _restore_pending(self, pending: Pending) -> None:
        """A failed sync: its work is redone by the next one, as a full resync."""
        with self._pending_lock:
            self._pending.full = True
            if self._pending.first_at is None or (
                    pending.first_at is not None and pending.first_at < self._pending.first_at):
                self._pending.first_at = pending.first_at


def _is_event(event: Mapping[str, Any]) -> bool:
    """Marathon's, not a resync request of the router's own (SyncTrigger.fire)."""
    return event.get("eventType") != RESYNC_EVENT
