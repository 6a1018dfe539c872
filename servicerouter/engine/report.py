"""What the live engine reports: /status, /healthz, problems in the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from servicerouter.engine.live_state import (
    STUCK_AFTER,
)
from servicerouter.engine.runner import utc_iso
from servicerouter.model.services import Model, Service
from servicerouter.render.config import describe_services
from servicerouter.serve.status import route_conflicts

log = logging.getLogger("servicerouter.live")



class StatusReport:
    """Part of :class:`~servicerouter.engine.live.LiveRouter`: snapshots of its state."""

    def _log_problems(self, model: Model) -> None:
        current = {p.log_line() for p in model.problems}
        for text in sorted(current - self._logged_problems):
            log.warning("%s", text)
        self._logged_problems = current
        self.state.problems = sorted({str(p) for p in model.problems})[:200]
        conflicts = route_conflicts(model.problems)
        self.state.conflicts = conflicts
        self.metrics.route_conflicts.set(sum(len(c["losers"]) for c in conflicts))

    def health(self) -> tuple[bool, str]:
        """For /healthz: the loop is turning and a managed HAProxy is up."""
        if self.manager is not None and not self.manager.alive():
            return False, "managed HAProxy is not running"
        started = self._sync_started
        if started is not None and time.monotonic() - started > STUCK_AFTER:
            return False, f"a sync has been running for over {STUCK_AFTER:.0f}s"
        if self.state.syncs == 0 and self.outage is None and self._applied_text is None:
            return True, "starting"
        return True, "ok"

    def snapshot(self, services: bool = True) -> dict[str, Any]:
        """For /status (``services=False``: without the service list, which the
        dashboard builds its own way)."""
        state = self.state
        stream = self.stream
        outage = self.outage
        marathon: dict[str, Any] = {
            "host": getattr(self.source, "current", None),
            "available": outage is None,
        }
        if outage is not None:
            marathon.update(outage_since=utc_iso(outage.since), error=outage.error,
                            failures=outage.failures)
        if stream is not None:
            st = stream.status
            marathon["event_stream"] = {
                "connected": st.connected,
                "host": st.host,
                "connected_since": utc_iso(st.connected_since) if st.connected_since else None,
                "connects": st.connects,
                "failures": st.failures,
                "last_error": st.last_error,
                "events": st.events,
            }
        metrics = self.metrics
        snapshot: dict[str, Any] = {
            "last_sync": utc_iso(state.last_sync) if state.last_sync else None,
            "last_sync_kind": state.last_sync_kind,
            "last_sync_duration_seconds": state.last_sync_duration,
            "last_sync_error": state.last_sync_error,
            "last_apply": state.last_apply,
            "last_reload": utc_iso(state.last_reload) if state.last_reload else None,
            "syncs": state.syncs,
            "task_path_syncs": state.task_path_syncs,
            "last_sync_path": state.last_path,
            "last_full_path_reason": state.last_full_reason,
            "marathon": marathon,
            "apps": state.apps,
            "tasks": state.tasks,
            "services": list(describe_services(self._routed_services)) if services else [],
            "problems": state.problems,
            "conflicts": state.conflicts,
            "quarantined": [
                {"app": q.app_id, "reason": q.reason, "since": utc_iso(q.since),
                 "cause": q.cause, "frozen_services": len(q.frozen)}
                for q in list(self.quarantine.values())
            ],
            "reloads": int(metrics.reloads.value(result="ok")),
            "failed_reloads": int(metrics.reloads.value(result="failed")),
            "runtime_updates": int(metrics.runtime_updates.total()),
            "certificate_updates": int(metrics.cert_updates.value(result="ok")),
            "last_certificate_update": (utc_iso(state.last_cert_update)
                                        if state.last_cert_update else None),
            "certificates": self._certificates(),
            "removal_hold": self.router.removal_guard.status(),
        }
        if self.manager is not None:
            ms = self.manager.stats
            snapshot["haproxy"] = {"managed": True, "master_pid": self.manager.master_pid,
                                   "running": self.manager.alive(), "restarts": ms.restarts,
                                   "last_error": ms.last_error}
        if self.router.rules_store is not None:  # operator rules (servicerouter.rules)
            from servicerouter.engine.rules_link import rules_status

            snapshot["rules"] = rules_status(self, self.router.rules_store)  # type: ignore[arg-type]
        if self.runtime is not None:
            rs = self.runtime.stats
            snapshot["runtime_api"] = {"servers_added": rs.added, "servers_removed": rs.removed,
                                       "servers_readdressed": rs.readdressed,
                                       "draining": rs.draining}
        return snapshot

    def routed_services(self) -> Sequence[Service]:
        """The last sync's routed services (the dashboard's table)."""
        return self._routed_services

    def _certificates(self) -> list[dict[str, Any]]:
        """The expiry report of the last sync's bundles (no files read here)."""
        return list(self.router.certificates)

