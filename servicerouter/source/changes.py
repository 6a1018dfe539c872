"""Marathon events -> changes to the router's copy of Marathon's state.  Pure.

Refetching every app on every event is what makes routers hammer Marathon.
Most events say exactly what changed: a task started or stopped
(``status_update_event`` carries its host and ports), a task's health
flipped, or one app's definition changed.  So each event is classified
(:func:`classify`), a burst of them is merged into one :class:`Pending` set
of changes, and task events are folded into the cached app documents
(:func:`apply_task_event`) without asking Marathon anything.  Only app-level
events refetch their app; anything this module does not understand asks for
a full resync, which also runs on reconnects and periodically, so a missed
or misread event is corrected within one resync interval.

Folding a task event is idempotent and the last event for a task wins, so
events that race with a fetch are simply applied again afterwards.

All of that trusts the event.  Events from a source nobody authenticated (a
callback without a token) go through :func:`as_hint` instead: they only
name apps to refetch, so a forged event cannot add or remove a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Events that cannot change routing (Marathon sends each of these alongside an
# event we do handle, or they concern things we do not route).
IGNORED = frozenset({
    "event_stream_attached",
    "event_stream_detached",
    "subscribe_event",
    "unsubscribe_event",
    "framework_message_event",
    "add_health_check_event",
    "remove_health_check_event",
    "failed_health_check_event",
    "scheduler_registered_event",
    "scheduler_reregistered_event",
    "scheduler_disconnected_event",
    "pod_created_event",
    "pod_updated_event",
    "pod_deleted_event",
    "instance_changed_event",
    "unknown_instance_terminated_event",
    "unhealthy_instance_kill_event",
    "unhealthy_task_kill_event",
    "mesos_agent_offer_event",
})
# Health arrives per check (health_status_changed_event) or, from Marathon 1.4, per
# instance (instance_health_changed_event: ``healthy`` true, false or null = not known).
HEALTH_EVENTS = frozenset({"health_status_changed_event", "instance_health_changed_event"})
TASK_EVENTS = frozenset({"status_update_event"}) | HEALTH_EVENTS
# In this order in the event stream's server-side filter (source.events.ROUTING_EVENTS).
APP_EVENT_TYPES: tuple[str, ...] = (
    "api_post_event",
    "app_terminated_event",
    "deployment_info",
    "deployment_success",
    "deployment_failed",
    "deployment_step_success",
    "deployment_step_failure",
)
APP_EVENTS = frozenset(APP_EVENT_TYPES)
# Marathon lists a task in /v2/apps until it reaches one of these states.
TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE",
    "TASK_UNKNOWN",
})
RESYNC_EVENT = "servicerouter_resync"  # synthetic: reconnects, SIGHUP, timers


@dataclass(frozen=True, slots=True)
class Change:
    """What one event means for the router."""

    kind: str  # "ignore", "task", "apps", "remove", "full"
    app_ids: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class Pending:
    """The merged changes of a burst of events, applied by one sync."""

    full: bool = False
    full_reasons: list[str] = field(default_factory=list)
    refetch: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    task_events: list[Mapping[str, Any]] = field(default_factory=list)
    events: int = 0
    first_at: float | None = None  # monotonic time of the oldest event (caller's clock)
    # Operator rules changed (servicerouter.rules): rebuild from the apps held, no fetch.
    rebuild: bool = False

    @property
    def empty(self) -> bool:
        return not (self.full or self.refetch or self.removed or self.task_events
                    or self.rebuild)

    def add(self, change: Change, event: Mapping[str, Any], at: float | None = None) -> None:
        """Merge one classified event."""
        if change.kind == "ignore":
            return
        self.events += 1
        if self.first_at is None and at is not None:
            self.first_at = at
        if change.kind == "full":
            self.full = True
            if change.reason and change.reason not in self.full_reasons:
                self.full_reasons.append(change.reason)
        elif change.kind == "apps":
            self.refetch.update(change.app_ids)
            self.removed.difference_update(change.app_ids)
        elif change.kind == "remove":
            self.removed.update(change.app_ids)
            self.refetch.difference_update(change.app_ids)
        elif change.kind == "task":
            self.task_events.append(event)

    def request_full(self, reason: str, at: float | None = None) -> None:
        self.add(Change("full", reason=reason), {}, at)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def deployment_app_ids(event: Mapping[str, Any]) -> tuple[str, ...]:
    """Apps a deployment touches, from its plan's steps (or current step)."""
    ids: list[str] = []
    plan = event.get("plan")
    steps: list[Any] = []
    if isinstance(plan, Mapping) and isinstance(plan.get("steps"), list):
        steps.extend(plan["steps"])
    if isinstance(event.get("currentStep"), Mapping):
        steps.append(event["currentStep"])
    for step in steps:
        actions = step.get("actions") if isinstance(step, Mapping) else None
        for action in actions if isinstance(actions, list) else ():
            app = action.get("app") if isinstance(action, Mapping) else None
            if _str(app) and app not in ids:
                ids.append(app)
    return tuple(ids)


def classify(event: Mapping[str, Any]) -> Change:
    """What ``event`` asks of the router; unknown or unreadable -> full resync."""
    event_type = event.get("eventType")
    if not isinstance(event_type, str):
        return Change("full", reason="event without eventType")
    if event_type in IGNORED:
        return Change("ignore")
    if event_type == RESYNC_EVENT:
        return Change("full", reason=str(event.get("reason") or "resync"))
    if event_type in TASK_EVENTS:
        app_id = task_event_app_id(event)
        task_id = _str(event.get("taskId")) or _str(event.get("instanceId"))
        if app_id is None or task_id is None:
            return Change("full", reason=f"{event_type} without appId/taskId")
        return Change("task", (app_id,))
    if event_type == "app_terminated_event":
        app_id = _str(event.get("appId"))
        return Change("remove", (app_id,)) if app_id else Change("full", reason=event_type)
    if event_type == "api_post_event":
        definition = event.get("appDefinition")
        app_id = _str(definition.get("id")) if isinstance(definition, Mapping) else None
        return Change("apps", (app_id,)) if app_id else Change("full", reason=event_type)
    if event_type in APP_EVENTS:
        ids = deployment_app_ids(event)
        return Change("apps", ids) if ids else Change("full", reason=f"{event_type} without apps")
    return Change("full", reason=f"unhandled event {event_type}")


# What an app id from an untrusted event must look like before we ask Marathon
# about it: absolute, path segments of letters, digits, '.', '_' and '-', never
# '.' or '..' (so it cannot walk out of /v2/apps/ in the request path).
_SAFE_APP_ID = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)+")
HINT_RESYNC_REASON = "unauthenticated callback event"


def as_hint(event: Mapping[str, Any]) -> Change:
    """What an event nobody vouches for may ask: refetch the apps it names, or resync.

    A callback without a token can be posted by anyone who reaches the port,
    so nothing it says (hosts, ports, health, app definitions, "terminated")
    is believed: the apps it names are fetched from Marathon instead, and
    an event naming none, or an app id that is not a plain Marathon path,
    asks for a full resync.  The worst a forger can do is make us ask
    Marathon for the truth.
    """
    change = classify(event)
    if change.kind == "ignore":
        return change
    if change.kind == "full":  # its reason is the sender's text: not worth logging
        return Change("full", reason=HINT_RESYNC_REASON)
    if change.app_ids and all(_SAFE_APP_ID.fullmatch(a) for a in change.app_ids):
        return Change("apps", change.app_ids)
    return Change("full", reason=HINT_RESYNC_REASON)


def task_event_app_id(event: Mapping[str, Any]) -> str | None:
    """The app a task event is about (``runSpecId`` in instance events)."""
    return _str(event.get("appId")) or _str(event.get("runSpecId"))


def _task_matches(task: Any, task_id: str) -> bool:
    return isinstance(task, Mapping) and task.get("id") == task_id


def _instance_task_id(event: Mapping[str, Any]) -> str | None:
    """The task id of a health event (``instanceId`` in Marathon 1.4+)."""
    task_id = _str(event.get("taskId"))
    if task_id:
        return task_id
    instance = _str(event.get("instanceId"))
    if instance and ".marathon-" in instance:
        prefix, _, suffix = instance.partition(".marathon-")
        return f"{prefix}.{suffix}"
    return instance


def apply_task_event(app: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """``app`` with one task event folded in (a new dict; ``app`` is untouched)."""
    tasks = app.get("tasks")
    tasks = list(tasks) if isinstance(tasks, list) else []
    updated = dict(app)
    if event.get("eventType") in HEALTH_EVENTS:
        task_id = _instance_task_id(event)
        if event.get("eventType") == "health_status_changed_event":
            healthy: Any = bool(event.get("alive"))
        else:
            healthy = event.get("healthy")
        alive = bool(healthy)
        for index, task in enumerate(tasks):
            if _task_matches(task, task_id):
                results = task.get("healthCheckResults")
                if healthy is None:  # no verdict (yet): the task's health is not known
                    new_results = []
                elif isinstance(results, list) and results:
                    new_results = [dict(r, alive=alive) if isinstance(r, Mapping) else r
                                   for r in results]
                else:
                    new_results = [{"alive": alive, "taskId": task_id}]
                tasks[index] = dict(task, healthCheckResults=new_results)
                break
        updated["tasks"] = tasks
        return updated
    task_id = event.get("taskId")
    state = event.get("taskStatus")
    kept = [t for t in tasks if not _task_matches(t, task_id)]
    if state not in TERMINAL_STATES:
        previous = next((t for t in tasks if _task_matches(t, task_id)), None)
        task: dict[str, Any] = dict(previous) if isinstance(previous, Mapping) else {}
        task.update({
            "id": task_id,
            "appId": app.get("id"),
            "host": event.get("host"),
            "ports": event.get("ports") if isinstance(event.get("ports"), list) else [],
            "state": state,
        })
        for key in ("ipAddresses", "version", "slaveId"):
            if key in event:
                task[key] = event[key]
        if previous is None:
            kept.append(task)
        else:  # keep the task where it was: server order must not churn
            kept = [task if _task_matches(t, task_id) else t for t in tasks]
    updated["tasks"] = kept
    return updated


def apply_task_events(apps: Mapping[str, Mapping[str, Any]],
                      events: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Fold task events into ``apps`` (by id); also returns the apps we do not know.

    Returns only the apps that changed, as new dicts, so the caller can
    replace them in its own mapping; events of unknown apps are skipped and
    their app ids returned for a refetch.
    """
    changed: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    for event in events:
        app_id = task_event_app_id(event)
        if app_id is None:
            continue
        app = changed.get(app_id) or apps.get(app_id)
        if app is None:
            unknown.add(app_id)
            continue
        changed[app_id] = apply_task_event(app, event)
    return changed, unknown


def index_apps(apps: Iterable[Any]) -> dict[str, Any]:
    """Apps by id, in Marathon's order; apps without a usable id keep a stable key.

    An app whose id is unreadable still goes to the model, which reports it.
    """
    indexed: dict[str, Any] = {}
    for position, app in enumerate(apps):
        app_id = app.get("id") if isinstance(app, Mapping) else None
        key = app_id if isinstance(app_id, str) else f"\x00unreadable-{position}"
        indexed[key] = app
    return indexed


__all__ = [
    "APP_EVENTS",
    "HINT_RESYNC_REASON",
    "IGNORED",
    "RESYNC_EVENT",
    "HEALTH_EVENTS",
    "TASK_EVENTS",
    "TERMINAL_STATES",
    "Change",
    "Pending",
    "apply_task_event",
    "apply_task_events",
    "as_hint",
    "classify",
    "deployment_app_ids",
    "index_apps",
    "task_event_app_id",
]
