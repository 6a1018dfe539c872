"""The mirror of Marathon's apps: refreshed from events and fetches, outages reported.

Task events are folded into the mirror in place (only the apps they name are
replaced, :meth:`MarathonMirror._fetch`): copying a mapping of 5,000 apps for
every event would make its cost grow with the cluster.  What the apps were
before the sync (the task path diffs old against new) is the mirror seen
through the few documents it replaced (:meth:`MarathonMirror._apps_before`).
Anything else (removals, refetches, apps it does not know) builds a new
mapping as before, so a failed fetch leaves the mirror as it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from servicerouter.engine.live_state import (
    Outage,
)
from servicerouter.source.changes import (
    Pending,
    apply_task_events,
    index_apps,
    task_event_app_id,
)
from servicerouter.source.marathon import (
    MarathonError,
    MarathonNotFound,
    parse_apps,
)

log = logging.getLogger("servicerouter.live")



class MarathonMirror:
    """Part of :class:`~servicerouter.engine.live.LiveRouter`: keeps ``_apps`` as Marathon has them."""

    # The documents the last in-place fold replaced, by app id (see the module).
    _replaced: dict[str, Any] | None = None

    def _fetch(self, pending: Pending, full: bool) -> dict[str, Any]:
        if full:  # (a resync fetches off the step lock: it must not touch _replaced)
            body = self.source.fetch_apps_body()
            return index_apps(parse_apps(body))
        assert self._apps is not None
        self._replaced = None
        if not pending.removed and not pending.refetch:
            changed, unknown = apply_task_events(self._apps, pending.task_events)
            if not unknown:  # in place: the same keys, so readers on other threads are safe
                self._replaced = {app_id: self._apps[app_id] for app_id in changed}
                self._apps.update(changed)
                return self._apps
        apps = dict(self._apps)
        for app_id in pending.removed:
            apps.pop(app_id, None)
        changed, unknown = apply_task_events(apps, pending.task_events)
        apps.update(changed)
        for app_id in sorted(pending.refetch | unknown):
            self._refetch(apps, app_id)
        if unknown:  # fetched just now: already includes those events
            changed, _ = apply_task_events(
                apps, [e for e in pending.task_events if task_event_app_id(e) in unknown])
            apps.update(changed)
        return apps

    def _apps_before(self, apps: dict[str, Any]) -> Mapping[str, Any] | None:
        """The apps as they were before the fetch that gave ``apps`` (O(1): the
        documents an in-place fold replaced, over the mirror)."""
        if apps is self._apps and self._replaced is not None:
            return ChainMap(self._replaced, apps)
        return self._apps

    def _refetch(self, apps: dict[str, Any], app_id: str) -> None:
        fetch = getattr(self.source, "fetch_app", None)
        if fetch is None:  # a snapshot has no per-app endpoint
            raise MarathonError("source cannot fetch single apps")
        try:
            apps[app_id] = fetch(app_id)
        except MarathonNotFound:
            apps.pop(app_id, None)

    def stream_failed(self, reason: str) -> None:
        """The event stream dropped or cannot connect: report an outage until it is back.

        No fetch is attempted: the stream's reconnect (with backoff) is the retry,
        and it resyncs once when it succeeds.
        """
        self._note_outage(f"event stream: {reason}")

    def _note_outage(self, error: str) -> Outage:
        """Count a failure to reach Marathon: an outage starts (said once) or goes on."""
        self.metrics.marathon_errors.inc()
        self.metrics.marathon_up.set(0)
        if self.outage is None:
            self.outage = Outage(time.time(), error)
            log.error("Marathon unavailable, keeping the current routing: %s", error)
        else:
            self.outage.failures += 1
            self.outage.error = error
        return self.outage

    def _marathon_failed(self, error: str, pending: Pending) -> None:
        self._restore_pending(pending)
        new_outage = self.outage is None
        outage = self._note_outage(error)
        stream = self.stream
        if stream is not None and not stream.status.connected:
            return  # the stream's reconnect resyncs once Marathon answers again
        delay = self.backoff.delay(outage.failures - 1)
        # Said once per outage: the outage itself was reported, and "Marathon is back"
        # ends it; a line per retry would bury everything else in a long one.
        log.log(logging.INFO if new_outage else logging.DEBUG,
                "retrying Marathon in %.1fs (then with backoff, quietly)", delay)
        timer = threading.Timer(delay, self.trigger.fire, kwargs={"event": False})
        timer.daemon = True
        self._retry = timer
        timer.start()

