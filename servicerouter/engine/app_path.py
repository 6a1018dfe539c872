"""The app path: an app update that moves only its virtual hosts, paths or servers.

An app update (``api_post_event``, a deployment) used to rebuild the model of
every app, render the whole config and parse it back, though relabelling one
app's virtual host changes a few map entries.  Here (:func:`plan_app_update`,
pure but for host resolution and port checks):

1. the updated app is derived and decided alone (``decide_one``); its ports
   must keep their backends, bind ports, modes and bind addresses, and neither
   its old nor its new virtual hosts may be claimed by another app (then a
   cross-app decision could change: the full path decides);
2. each of its services is rendered alone, old and new: apart from the map
   entries and the backend section the output must be the same, the backend
   sections are diffed like whole configs (servers, weights);
3. exact-host entries (``map_beg``, a tree lookup) are taken out of and put
   into the running config's one map of their kind, each at the place a render
   from scratch gives it (rank, then service order), so the text stays the
   bytes of a full render (``tests/engine/test_app_path.py``); wildcard entries
   (``map_end``, first match in file order) and app-id entries must not change.

The Runtime API then applies ``add map``/``del map`` (and server changes);
nothing is reloaded.  Anything else returns a reason and the full path decides.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from servicerouter.apply.confdiff import RuntimePlan, plan_map_changes
from servicerouter.engine.task_path import (
    RunningConfig,
    TaskUpdate,
    _app_slice,
    _merge,
    swap_backend,
)
from servicerouter.model.app_fields import RoutedBefore
from servicerouter.model.decide import decide
from servicerouter.model.derive import DeriveSettings, derive_app
from servicerouter.model.services import Model, Service
from servicerouter.model.values import route_order_key
from servicerouter.render.config import Overrides
from servicerouter.render.fragments import FragmentSet
from servicerouter.render.pieces import reads_services, render_service_pieces
from servicerouter.render.routing import BLOCK_MARKER, map_block, map_kind, parse_map_block

DecideOne = Callable[[Mapping[str, Any]], Model | None]
Entries = list[tuple[str, str]]
_SHAPE = ("index", "service_port", "bind_port", "backend", "mode", "bind_addr")


def _shape(service: Service) -> tuple[Any, ...]:
    return tuple(getattr(service, name) for name in _SHAPE)


def _contested(service: Service) -> bool:
    return bool(service.lost_vhosts or service.shadowed_vhosts or service.lost_paths
                or service.shadowed_paths)


def _without_block(text: str) -> str:
    """``text`` without its map block (the render puts it last)."""
    start = text.rfind("\n" + BLOCK_MARKER + "\n")
    return text if start < 0 else text[:start]


def _entries_by_kind(text: str, map_dir: str) -> dict[tuple[str, str], Entries]:
    """(frontend, kind) -> entries of one service's own render (its map paths are local)."""
    found: dict[tuple[str, str], Entries] = {}
    for path, entries in parse_map_block(text, map_dir).files.items():
        frontend = path.rsplit("/", 1)[-1].split("-", 1)[0]
        found.setdefault((frontend, map_kind(path)), []).extend(entries)
    return found


class _RouteOrder:
    """The render's order of exact-host map entries: (rank, service order, rule order)."""

    def __init__(self, services: tuple[Service, ...]) -> None:
        self.by_backend = {s.backend: (position, s) for position, s in enumerate(services)}

    def key(self, entry: tuple[str, str]) -> tuple[Any, ...]:
        map_key, backend = entry
        position, service = self.by_backend[backend]
        host, _, path = map_key.partition("/")
        rules = service.paths or ("",)
        rule = next((i * len(rules) + rules.index(path)
                     for i, vhost in enumerate(service.rule_vhosts)
                     if vhost.lower() == host and path in rules), 0)
        return route_order_key(service, host, path or None) + (True, position, rule)


def decide_alone(router: Any, app: Mapping[str, Any],
                 routed_before: RoutedBefore | None) -> Model | None:
    """``app``'s model on its own, under ``router``'s settings (what a full build decides
    for it when no other app contests its claims); None for IP-per-task ports without a
    service port (their assigned ports are a cross-app decision)."""
    settings = router.settings
    derivation = derive_app(app, DeriveSettings(frozenset(settings.groups), settings.strict_mode,
                                                settings.health_check),
                            router.resolver, 0, routed_before)
    if derivation.skipped or any(port.service_port is None for port in derivation.ports):
        return None
    options = settings.render_options
    return decide([derivation], reserved_ports=options.reserved_ports(router.fragments),
                  default_bind_addr=options.bind_addr,
                  ip_per_task_ports=settings.ip_per_task_ports,
                  check_port=router.port_checks if settings.validate else None)


def _maps_only(text: str, path: str, maps: int) -> bool:
    """Whether the shared frontend reading map ``path`` routes by its ``maps`` maps alone.

    A rule a map cannot hold (a host with a port, a path ignoring case) is a line of
    its own, and where the map runs fall around it depends on every app's ranks.
    The shared frontends come right after the head, so this reads little of ``text``.
    """
    at = text.find(path)
    start = text.rfind("\nfrontend ", 0, at)
    end = text.find("\n\n", at)
    return at >= 0 and text.count("use_backend ", start, end if end >= 0 else len(text)) == maps


def plan_app_update(running: RunningConfig, old_apps: Mapping[str, Any],
                    new_apps: Mapping[str, Any], app_ids: Iterable[str], decide_one: DecideOne,
                    fragments: FragmentSet, overrides: Overrides | None) -> TaskUpdate | str:
    """The update for app updates of ``app_ids``, or why the full path must decide."""
    options = running.options
    if options.map_dir is None:
        return "virtual hosts are not routed through map files"
    if reads_services(fragments, overrides):
        return "a fragment reads every service"
    app_ids = sorted(set(app_ids))
    services = running.model.services
    text = running.text
    others = {host.lower() for s in services if s.app_id not in app_ids
              for host in s.settings.vhosts}
    plans: list[RuntimePlan] = []
    changed: dict[str, tuple[Service, ...]] = {}
    old_entries: dict[tuple[str, str], Entries] = {}
    new_entries: dict[tuple[str, str], Entries] = {}
    task_delta = 0
    for app_id in app_ids:
        old_app, new_app = old_apps.get(app_id), new_apps.get(app_id)
        if old_app is None or new_app is None:
            return f"app {app_id} came or went"
        if old_app is new_app:
            continue
        low, high = _app_slice(services, app_id)
        before = services[low:high]
        if not before or any(s.app is not old_app for s in before):
            return f"app {app_id} is not routed as its previous document"
        if old_app == new_app:  # fetched again, unchanged: the services hold the new copy
            services = services[:low] + tuple(replace(s, app=new_app) for s in before) \
                + services[high:]
            changed[app_id] = services[low:high]
            continue
        if any(p.app_id == app_id for p in running.model.problems):
            return f"app {app_id} has problems"
        decided = decide_one(new_app)
        if decided is None or decided.problems:
            return f"app {app_id}: its update has problems"
        after = decided.services
        if [_shape(s) for s in before] != [_shape(s) for s in after]:
            return f"app {app_id}: its ports, bind ports or modes changed"
        for service in (*before, *after):
            if _contested(service) or any(h.lower() in others for h in service.settings.vhosts):
                return f"app {app_id}: a virtual host another app claims"
        for old, new in zip(before, after, strict=True):
            override = {new.backend: overrides[new.backend]} \
                if overrides and new.backend in overrides else None
            try:
                old_rest, old_backend = render_service_pieces(old, fragments, options, override)
                new_rest, new_backend = render_service_pieces(new, fragments, options, override)
            except Exception as err:  # a fragment failing: the full path says so
                return f"backend {new.backend} does not render alone: {type(err).__name__}"
            if _without_block(old_rest) != _without_block(new_rest):
                return f"backend {new.backend}: more than its routes and servers changed"
            if old_backend != new_backend:
                step = swap_backend(text, old_backend, new_backend, new.backend)
                if isinstance(step, str):
                    return step
                text, plan = step
                plans.append(plan)
            for key, entries in _entries_by_kind(old_rest, options.map_dir).items():
                old_entries.setdefault(key, []).extend(entries)
            for key, entries in _entries_by_kind(new_rest, options.map_dir).items():
                new_entries.setdefault(key, []).extend(entries)
        task_delta += decided.task_count - _tasks_of(old_app)
        services = services[:low] + after + services[high:]
        changed[app_id] = after
    moved = _move_entries(text, options.map_dir, old_entries, new_entries, services)
    if isinstance(moved, str):
        return moved
    text, map_plan = moved
    model = replace(running.model, services=services,
                    task_count=running.model.task_count + task_delta)
    return TaskUpdate(RunningConfig(model, options, text), _merge([*plans, map_plan]), changed)


def _tasks_of(app: Mapping[str, Any]) -> int:
    tasks = app.get("tasks")
    return len(tasks) if isinstance(tasks, list) else 0


def _move_entries(text: str, map_dir: str, old: Mapping[tuple[str, str], Entries],
                  new: Mapping[tuple[str, str], Entries], services: tuple[Service, ...],
                  ) -> tuple[str, RuntimePlan] | str:
    """``text`` with the exact-host entries moved, and the map commands that do it live."""
    for key in set(old) | set(new):
        if key[1] != "beg" and sorted(old.get(key, ())) != sorted(new.get(key, ())):
            return f"{key[0]} {key[1]} map entries changed (only exact hosts move live)"
    running = dict(parse_map_block(text, map_dir).files)
    order = _RouteOrder(services)
    before: dict[str, tuple[tuple[str, str], ...]] = {}
    after: dict[str, tuple[tuple[str, str], ...]] = {}
    for frontend, kind in sorted(set(old) | set(new)):
        if kind != "beg" or old.get((frontend, kind)) == new.get((frontend, kind)):
            continue
        paths = [p for p in running if map_kind(p) == kind
                 and p.rsplit("/", 1)[-1].startswith(frontend + "-")]
        if len(paths) != 1:
            return f"the {frontend} frontend has {len(paths)} {kind} maps"
        path = paths[0]
        if not _maps_only(text, path, sum(1 for p in running
                                          if p.rsplit("/", 1)[-1].startswith(frontend + "-"))):
            return f"the {frontend} frontend has rules besides its maps (their order is global)"
        gone = set(old.get((frontend, kind), ()))
        entries = [e for e in running[path] if e not in gone]
        taken = {key for key, _backend in entries}
        for entry in new.get((frontend, kind), ()):
            if entry[0] in taken:
                return f"map key {entry[0]} is routed to another backend"
            taken.add(entry[0])
            bisect.insort(entries, entry, key=order.key)
        before[path], after[path] = running[path], tuple(entries)
        running[path] = tuple(entries)
    if not after:
        return text, RuntimePlan()
    changes = plan_map_changes(before, after)
    if isinstance(changes, str):
        return changes
    return _without_block(text) + map_block(running), RuntimePlan(map_add=changes[0], map_set=changes[1],
                                                  map_del=changes[2])


__all__ = ["decide_alone", "plan_app_update"]
