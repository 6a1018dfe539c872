"""The task path: a task event applied at a cost that does not grow with the cluster.

A task starting, stopping or changing health changes one app's servers.  The
full path rebuilds the model of every app, renders the whole config, parses it
back and diffs it: about 18 µs per task of the cluster for one event.  Here,
instead (:func:`plan_task_update`, pure but for host resolution):

1. each app an event changed is derived alone, from its previous and its new
   document (:func:`~servicerouter.model.app_servers.derive_app_servers`); if
   anything but servers differs (a port gains its first task or loses its last,
   a task problem comes or goes) the full path decides;
2. its services get the new servers, swapped into the running model;
3. each changed service is rendered alone, old and new: when no fragment reads
   ``services``, a service's output depends on that service only.  Everything
   but its backend section must come out the same, and the backend sections are
   diffed like whole configs (:func:`~servicerouter.apply.confdiff.plan_runtime_update`:
   the same rules say what the Runtime API can take, or that a reload is needed);
4. the new config text is the running one with the old backend section
   replaced by the new one, in the piece of the text that holds that backend
   (:class:`~servicerouter.engine.running_config.ConfigText`: no search of the
   whole text, no copy of it), the same bytes a render from scratch gives
   (``tests/engine/test_task_path.py`` checks that on random event sequences);
   the whole text is joined only for the config file's deferred write.

Nothing else an event does reads the whole cluster either: the routed servers
and checked servers per interval are counts kept up to date, the mirror of
Marathon's apps is updated in place (servicerouter.engine.mirror).

Whatever this cannot show to be a servers-only change returns a reason, and the
sync goes the full way, which validates and reloads when it must.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from servicerouter.apply.confdiff import RuntimePlan
from servicerouter.apply.runtime_api import RuntimeUpdateError
from servicerouter.engine.group_path import (
    DerivePorts,
    GroupServers,
    group_members,
    group_refusal,
    grouped,
    merged_servers,
    updated_member,
)
from servicerouter.engine.running_config import (
    ConfigText,
    RunningConfig,
    app_slice,
    swap_backend,
    swap_section,
)
from servicerouter.model.app_fields import RoutedBefore
from servicerouter.model.app_servers import AppServers, derive_app_servers
from servicerouter.model.derive import AppDerivation, DeriveSettings, derive_app
from servicerouter.model.services import Service
from servicerouter.render.check_rate import check_counts, check_interval_scale, rate_of
from servicerouter.render.config import Overrides, RenderOptions
from servicerouter.render.fragments import FragmentSet
from servicerouter.render.pieces import reads_services, render_service_pieces
from servicerouter.source.changes import Pending, task_event_app_id

log = logging.getLogger("servicerouter.live")


@dataclass(frozen=True)
class TaskUpdate:
    """A servers-only change: the new running config and the Runtime API plan to it."""

    running: RunningConfig
    plan: RuntimePlan
    services: Mapping[str, tuple[Service, ...]]  # app id -> its services now


Derive = Callable[[Mapping[str, Any]], AppServers | None]


def merge_plans(plans: Iterable[RuntimePlan]) -> RuntimePlan:
    plans = list(plans)
    return RuntimePlan(
        tuple(a for p in plans for a in p.add),
        tuple(r for p in plans for r in p.remove),
        tuple(r for p in plans for r in p.readdress),
        tuple(r for p in plans for r in p.reweight),
        tuple(sorted({b for p in plans for b in p.dynamic_cookie})),
        tuple(m for p in plans for m in p.map_add),
        tuple(m for p in plans for m in p.map_set),
        tuple(m for p in plans for m in p.map_del),
    )


GroupDocs = Callable[[str], "tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]] | str"]


def plan_task_update(running: RunningConfig, old_apps: Mapping[str, Any],
                     new_apps: Mapping[str, Any], app_ids: Iterable[str], derive: Derive,
                     fragments: FragmentSet, overrides: Overrides | None, *,
                     derive_ports: DerivePorts | None = None,
                     group_docs: GroupDocs | None = None) -> TaskUpdate | str:
    """The update for task changes to ``app_ids``, or why the full path must decide.

    Apps of a blue/green deployment group are one backend: their events re-derive
    the whole group (``group_docs`` gives its members' old and new documents,
    ``derive_ports`` derives one; servicerouter.engine.group_path).
    """
    if reads_services(fragments, overrides):
        return "a fragment reads every service"
    units: list[tuple[str, GroupServers, GroupServers]] = []
    groups: set[str] = set()
    for app_id in sorted(set(app_ids)):
        member = updated_member(app_id, old_apps, new_apps)
        if isinstance(member, str):
            return member
        old_app, new_app, group = member
        if group is not None:
            groups.add(group)
            continue
        if old_app is new_app:
            continue
        before, after = derive(old_app), derive(new_app)
        if before is None or after is None:
            return f"app {app_id} cannot be read"
        units.append((app_id, _as_group(before, old_app), _as_group(after, new_app)))
    for group in sorted(groups):
        if group_docs is None or derive_ports is None:
            return f"app of deployment group {group}"
        docs = group_docs(group)
        if isinstance(docs, str):
            return docs
        old_members, new_members = docs
        if all(o is n for o, n in zip(old_members, new_members, strict=True)):
            continue
        group_before = merged_servers(old_members, derive_ports)
        group_after = merged_servers(new_members, derive_ports)
        refusal = group_refusal(group, group_before, group_after)
        if refusal is not None:
            return refusal
        assert group_before is not None and group_after is not None
        units.append((group, group_before, group_after))
    services = running.model.services
    config = running.config
    task_delta = 0
    plans: list[RuntimePlan] = []
    changed: dict[str, tuple[Service, ...]] = {}
    for app_id, before, after in units:
        if before.with_tasks != after.with_tasks or before.servers.keys() != after.servers.keys():
            return f"app {app_id}: a port gained its first task or lost its last"
        if before.problems != after.problems:
            return f"app {app_id}: its problems changed"
        task_delta += after.task_count - before.task_count
        low, high = app_slice(services, app_id)
        if low == high:
            if after.with_tasks:  # ports that lost a conflict or failed to render
                return f"app {app_id} has ports but none routed"
            continue
        new_services: list[Service] = []
        for service in services[low:high]:
            if service.app is not before.apps.get(service.index):
                return f"app {app_id}: the running model is not of its previous document"
            servers = after.servers.get(service.index)
            if servers is None:
                return f"app {app_id}: port {service.index} is gone"
            new_service = replace(service, servers=servers, app=after.apps[service.index])
            new_services.append(new_service)
            step = _service_step(service, new_service, running.options, fragments, overrides,
                                 config)
            if isinstance(step, str):
                return step
            config, plan = step
            plans.append(plan)
        services = services[:low] + tuple(new_services) + services[high:]
        changed[app_id] = tuple(new_services)
    model = replace(running.model, services=services,
                    task_count=running.model.task_count + task_delta)
    return TaskUpdate(RunningConfig(model, running.options, config, running.cache),
                      merge_plans(plans), changed)


def _as_group(servers: AppServers, app: Mapping[str, Any]) -> GroupServers:
    """One app's servers in the shape of a group's: every port carries ``app``."""
    return GroupServers(servers.servers, servers.with_tasks, _EveryIndex(app), servers.problems,
                        servers.task_count)


class _EveryIndex(Mapping[int, Any]):
    """The same document for every port index (an app alone carries its own)."""

    def __init__(self, app: Mapping[str, Any]) -> None:
        self.app = app

    def __getitem__(self, index: int) -> Any:
        return self.app

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _service_step(old: Service, new: Service, options: RenderOptions, fragments: FragmentSet,
                  overrides: Overrides | None,
                  config: ConfigText) -> tuple[ConfigText, RuntimePlan] | str:
    """``config`` with ``old``'s backend section replaced by ``new``'s, and the plan."""
    override = {new.backend: overrides[new.backend]} if overrides and new.backend in overrides \
        else None
    try:
        old_rest, old_backend = render_service_pieces(old, fragments, options, override)
        new_rest, new_backend = render_service_pieces(new, fragments, options, override)
    except Exception as err:  # a fragment failing on the new servers: the full path says so
        return f"backend {new.backend} does not render alone: {type(err).__name__}"
    if old_rest != new_rest:
        return f"backend {new.backend}: more than its servers changed"
    if old_backend == new_backend:
        return config, RuntimePlan()
    return swap_section(config, old_backend, new_backend, new.backend)


def _routed_now(running: RunningConfig, app: Mapping[str, Any],
                settings: Any) -> RoutedBefore | None:
    """--health-check: what HAProxy routes now in the backends of ``app`` (the running
    model is what it runs), which a task of unknown health keeps (see RoutedBefore)."""
    if not settings.health_check:
        return None
    services = running.model.services
    low, high = app_slice(services, str(app.get("id")))
    return RoutedBefore({s.backend: frozenset([f"{srv.ipv4}:{srv.port}" for srv in s.servers])
                         for s in services[low:high]})


def check_counts_after(running: RunningConfig, update: TaskUpdate, fragments: FragmentSet,
                       overrides: Overrides | None) -> dict[float, int] | None:
    """--max-check-rate: the checked servers per interval once ``update`` applies (None:
    no budget).  Counted over every service once per running config, then kept up to
    date from the services an update changes, so an event's cost stays flat."""
    if not running.options.max_check_rate:
        return None
    counts = running.cache.get("check_counts")
    if counts is None:
        counts = check_counts(running.model.services, fragments, overrides)
    counts = dict(counts)
    services = running.model.services
    for app_id, new in update.services.items():
        low, high = app_slice(services, app_id)
        check_counts(services[low:high], fragments, overrides, counts, -1)
        check_counts(new, fragments, overrides, counts)
    return counts


def routed_servers(running: RunningConfig) -> int:
    """How many servers ``running`` routes (counted once per running config, then kept
    up to date by :func:`servers_after`)."""
    count = running.cache.get("servers")
    if count is None:
        count = running.cache["servers"] = sum(len(s.servers) for s in running.model.services)
    return count


def servers_after(running: RunningConfig, update: TaskUpdate) -> int:
    """How many servers are routed once ``update`` applies, from the apps it changed."""
    services = running.model.services
    count = routed_servers(running)
    for app_id, new in update.services.items():
        low, high = app_slice(services, app_id)
        count += sum(len(s.servers) for s in new) - sum(len(s.servers)
                                                        for s in services[low:high])
    return count


def _group_docs(members: Mapping[str, tuple[str, ...]], old_apps: Mapping[str, Any],
                new_apps: Mapping[str, Any], group: str,
                ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] | str:
    """A deployment group's members, old and new documents, in Marathon's order."""
    ids = members.get(group, ())
    old = [old_apps.get(a) for a in ids]
    new = [new_apps.get(a) for a in ids]
    if not ids or any(a is None for a in old + new) \
            or any(grouped(a) != group for a in new if a is not None):
        return f"group {group}: its members changed since the last full sync"
    return old, new  # type: ignore[return-value]


def _groups_of(app_ids: Iterable[str], mirrors: Iterable[Mapping[str, Any]]) -> set[str]:
    """The deployment groups ``app_ids`` are served in, in any of ``mirrors``."""
    found = set()
    for apps in mirrors:
        for app_id in app_ids:
            app = apps.get(app_id)
            group = grouped(app) if isinstance(app, Mapping) else None
            if group is not None:
                found.add(group)
    return found


class TaskPath:
    """Part of :class:`~servicerouter.engine.live.LiveRouter`: applies task-only syncs."""

    # What HAProxy was last given: a text, or the task path's ConfigText, which is
    # joined into one only when someone reads ``_applied_text`` (never on an event's
    # path: the task path compares identities, see ConfigText.is_of).
    _applied_config: str | ConfigText | None = None

    @property
    def _applied_text(self) -> str | None:
        applied = self._applied_config
        return applied.assemble() if isinstance(applied, ConfigText) else applied

    @_applied_text.setter
    def _applied_text(self, text: str | None) -> None:
        self._applied_config = text

    def _task_path_refusal(self, pending: Pending) -> str | None:
        """Why this sync cannot take the task path (None: it may try).

        It needs task events only, HAProxy running exactly what the last sync
        rendered, a Runtime API that answered, and no removal held
        (servicerouter.engine.holds decides those on the full path).
        """
        running = self._running
        if pending.full:
            return "full resync: " + ", ".join(pending.full_reasons or ["requested"])
        if pending.removed:
            return "apps removed: " + ", ".join(sorted(pending.removed)[:5])
        if pending.rebuild:
            return "operator rules changed"
        overlay = self.router.rules_overlay
        if pending.refetch and self.router.rules_store is not None and any(
                overlay.has_rules(a) and not overlay.map_routed(a) for a in pending.refetch):
            return "an updated app is routed by an operator rule with headers, a split " \
                "or paths on any host"
        if pending.refetch and self.router.settings.allow_label_templates:
            return "app updates with label templates allowed"
        if not pending.task_events and not pending.refetch:
            return "no task or app event"
        if running is None or not running.config.is_of(self._applied_config):
            return "the running config is not the last one rendered"
        if self._failed_text is not None:
            return "the last apply failed"
        if self.router.settings.dry:
            return "--dry"
        if not self.settings.runtime_updates or self.runtime is None:
            return "no Runtime API"
        if not self._runtime_trusted:
            return "the Runtime API is not trusted since it refused a command"
        if self.router.removal_guard.state is not None:
            return "a removal is held"
        if self.manager is not None and not self.manager.alive():
            return "HAProxy is not running"
        return None

    def _index_running(self, running: RunningConfig) -> None:
        """What the task path reads of the whole config, built by the full sync that
        rendered it, not on the next event's path: the text's pieces, the deployment
        groups' members, the routed servers and (--max-check-rate) the checked servers per interval."""
        router = self.router
        assert self._apps is not None
        running.config.index()
        group_members(running.cache, self._apps)
        routed_servers(running)
        if running.options.max_check_rate:
            running.cache["check_counts"] = check_counts(
                running.model.services, router.fragments, router.label_overrides or None)

    def _large_removal(self, lost: int) -> bool:
        """Whether losing ``lost`` servers (net) is for the removal hold to judge: more
        than its threshold of all routed servers, or all of them."""
        guard = self.router.removal_guard
        if lost <= 0 or not guard.settings.enabled:
            return False
        assert self._running is not None
        servers = routed_servers(self._running)
        return lost >= servers or lost > servers * guard.settings.threshold

    def _plan_update(self, running: RunningConfig, old_apps: Mapping[str, Any],
                     new_apps: Mapping[str, Any], pending: Pending) -> TaskUpdate | str:
        """The update from ``running`` (rendered from ``old_apps``) to ``new_apps``, which
        differ by ``pending``'s task events and app updates; or why the full path must
        decide.  Applies nothing (the task path applies it; a resync that derived while
        events were applied folds them in with it: servicerouter.engine.resync)."""
        router = self.router
        settings = router.settings
        current_apps = new_apps

        def derive(app: Mapping[str, Any]) -> AppServers | None:
            return derive_app_servers(app, router.resolver, settings.groups,
                                      strict_mode=settings.strict_mode,
                                      health_check=settings.health_check,
                                      routed_before=_routed_now(running, app, settings))

        def derive_ports(app: Mapping[str, Any]) -> AppDerivation:
            return derive_app(app, DeriveSettings(frozenset(settings.groups), settings.strict_mode,
                                                  settings.health_check),
                              router.resolver, 0, _routed_now(running, app, settings))

        overrides = router.label_overrides or None
        task_apps = {a for a in (task_event_app_id(e) for e in pending.task_events)
                     if isinstance(a, str)} - pending.refetch
        members = group_members(running.cache, old_apps)
        # A deployment group an app update re-decides whole (the app path) takes its
        # members' task events along: they are in the members' new documents.
        updated_groups = _groups_of(pending.refetch, (old_apps, current_apps))
        task_apps = {a for a in task_apps
                     if _groups_of((a,), (old_apps, current_apps)).isdisjoint(updated_groups)}
        wanted = task_apps | pending.refetch
        for group in _groups_of(task_apps | pending.refetch, (old_apps, current_apps)):
            wanted.update(members.get(group, ()))
        if router.rules_store is not None:  # the apps as the running model has them
            overlaid = router.rules_overlay.overlaid
            old_apps = {a: overlaid(old_apps[a]) for a in wanted if a in old_apps}
            new_apps = {a: overlaid(current_apps[a]) for a in wanted if a in current_apps}
        update = plan_task_update(running, old_apps, new_apps, task_apps, derive,
                                  router.fragments, overrides, derive_ports=derive_ports,
                                  group_docs=partial(_group_docs, members, old_apps, new_apps))
        if pending.refetch and not isinstance(update, str):  # app updates: the app path
            from servicerouter.engine.app_path import decide_alone, plan_app_update

            task_update = update
            update = plan_app_update(
                task_update.running, old_apps, new_apps, pending.refetch,
                lambda apps: decide_alone(router, apps,
                                          lambda app: _routed_now(running, app, settings)),
                router.fragments, overrides,
                group_docs=partial(_group_docs, members, old_apps, new_apps))
            if not isinstance(update, str):
                update = TaskUpdate(update.running, merge_plans([task_update.plan, update.plan]),
                                    {**task_update.services, **update.services})
        return update

    def _try_task_path(self, pending: Pending, old_apps: Mapping[str, Any]) -> bool:
        """Apply a task-only sync without the full model, render and diff; False: go full."""
        assert self._apps is not None and self._running is not None
        router = self.router
        running = self._running
        overrides = router.label_overrides or None
        update = self._plan_update(running, old_apps, self._apps, pending)
        if isinstance(update, str):
            self._full_path_reason = update
            return False
        counts = check_counts_after(running, update, router.fragments, overrides)
        if counts is not None and check_interval_scale(
                rate_of(counts), running.options.max_check_rate,
                running.options.check_interval_scale) != running.options.check_interval_scale:
            self._full_path_reason = "the check rate left its interval factor's band " \
                "(--max-check-rate: every server is re-timed)"
            return False
        plan = update.plan
        if self._large_removal(len(plan.remove) - len(plan.add)):
            self._full_path_reason = "a large removal (the removal hold decides)"
            return False
        if not plan.empty:
            try:
                self.runtime.apply(plan)
            except RuntimeUpdateError as err:
                log.warning("Runtime API refused a server change (%s); reloading instead", err)
                self._runtime_trusted = False
                self._full_path_reason = f"the Runtime API refused: {err}"
                return False
        running, previous = update.running, self._running.config
        if counts is not None:
            running.cache["check_counts"] = counts
        running.cache["servers"] = servers_after(self._running, update)
        if running.config is not self._running.config:
            self._config_file.write_soon(running.config.assemble)  # joined off the event path
        self._running = running
        self._applied_config = running.config
        self._model = running.model
        self._good_by_app.update(update.services)
        self._apply_failures = 0
        self.state.tasks = running.model.task_count
        self.state.task_path_syncs += 1
        self._set_services(running.model.services)
        if pending.refetch:  # the app path splices a whole text: split it now that
            running.config.index_after(previous)  # HAProxy has the change
        if plan.empty:
            self.state.last_apply = "unchanged"
            return True
        self._count_runtime(plan, "task path: applied through the Runtime API")
        return True


__all__ = ["RunningConfig", "TaskPath", "TaskUpdate", "app_slice", "merge_plans", "plan_task_update",
           "routed_servers", "servers_after", "swap_backend"]
