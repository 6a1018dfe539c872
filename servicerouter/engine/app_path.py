"""The app path: an app update that moves only its virtual hosts, paths or servers.

An app update (``api_post_event``, a deployment) used to rebuild the model of
every app, render the whole config and parse it back, though relabelling one
app's virtual host changes a few map entries.  Here (:func:`plan_app_update`,
pure but for host resolution and port checks):

1. the updated app is derived and decided alone (``decide_one``), or, for a
   member of a blue/green deployment group, the group's members together (one
   backend: a canary's share, a scale or the old colour's labels move its
   servers, weights and routes); its ports must keep their backends, bind
   ports, modes and bind addresses, and neither its old nor its new virtual
   hosts may be claimed by another app (then a cross-app decision could
   change: the full path decides);
2. each of its services is rendered alone, old and new: apart from the map
   entries and the backend section the output must be the same, the backend
   sections are diffed like whole configs (servers, weights);
3. exact-host entries (``map_beg``, a tree lookup) are taken out of and put
   into the running config's one map of their kind, each at the place a render
   from scratch gives it (rank, then service order), so the text stays the
   bytes of a full render (``tests/engine/test_app_path.py``); wildcard entries
   (``map_end``, first match in file order) and app-id entries must not change;
   with ``--haproxy-map``, marathon-lb's ``domain2backend.map`` (one file both
   shared frontends read, exact hosts without a path) moves the same way.

The Runtime API then applies ``add map``/``del map`` (and server changes);
nothing is reloaded.  Anything else returns a reason and the full path decides.
What this reads of the whole config (which app claims which virtual host, the
map entries, each backend's place) is a :class:`RoutingIndex` built once per
full render and carried from update to update, so the cost of an update does
not grow with the cluster.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from servicerouter.apply.confdiff import MapChange, RuntimePlan
from servicerouter.engine.group_path import updated_member
from servicerouter.engine.task_path import (
    GroupDocs,
    RunningConfig,
    TaskUpdate,
    app_slice,
    merge_plans,
    swap_backend,
)
from servicerouter.model.app_fields import RoutedBefore
from servicerouter.model.decide import decide
from servicerouter.model.derive import DeriveSettings, derive_app
from servicerouter.model.services import Model, Service
from servicerouter.model.values import Problem, route_order_key
from servicerouter.render.config import Overrides
from servicerouter.render.fragments import FragmentSet
from servicerouter.render.label_templates import find_label_templates
from servicerouter.render.pieces import reads_services, render_service_pieces
from servicerouter.render.routing import (
    BLOCK_MARKER,
    ENTRY_PREFIX,
    FILE_PREFIX,
    map_kind,
    parse_map_block,
)

# The model of one app, or of a deployment group's members, decided alone.
DecideOne = Callable[[Sequence[Mapping[str, Any]]], Model | None]
# Map kinds whose entries an update may move: exact hosts (the engine's "beg" maps and,
# with --haproxy-map, marathon-lb's "dom" file); both are in the render's route order.
_MOVABLE = ("beg", "dom")
MLB_LINE_FRAGMENTS = ("HAPROXY_MAP_HTTP_FRONTEND_ACL", "HAPROXY_MAP_HTTP_FRONTEND_ACL_ONLY",
                      "HAPROXY_MAP_HTTPS_FRONTEND_ACL", "HAPROXY_MAP_HTTP_FRONTEND_APPID_ACL")
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


@dataclass
class RoutingIndex:
    """What the app path reads of the whole running config, built once per full render
    and carried along, so an app update costs the same at 10 apps and at 5,000."""

    positions: dict[str, int]  # backend -> its service's place (kept: shapes never change)
    claims: dict[str, frozenset[str]]  # vhost (lower case) -> the apps whose labels claim it
    maps: dict[str, tuple[tuple[str, str], ...]]  # the map block: path -> entries in order
    # Characters from the map block's start to the end of the text (-1: no block).  Kept
    # from the end: the task path edits backends, which come before the block, and
    # carries this index along with texts of other lengths.
    tail: int

    def block_in(self, text: str) -> int:
        """Where the map block starts in ``text`` (a text this index was carried to)."""
        return -1 if self.tail < 0 else len(text) - self.tail

    @classmethod
    def of(cls, running: RunningConfig) -> RoutingIndex:
        index = running.cache.get("routing")
        if index is None:
            claims: dict[str, set[str]] = {}
            for service in running.model.services:
                for host in service.settings.vhosts:
                    claims.setdefault(host.lower(), set()).add(service.app_id)
            text = running.text
            block = text.rfind("\n" + BLOCK_MARKER + "\n")
            index = cls({s.backend: i for i, s in enumerate(running.model.services)},
                        {host: frozenset(apps) for host, apps in claims.items()},
                        dict(parse_map_block(text, running.options.map_dir).files),
                        -1 if block < 0 else len(text) - block)
            running.cache["routing"] = index
        return index

    def claimed_elsewhere(self, app_id: str, hosts: Iterable[str]) -> bool:
        return any(self.claims.get(host.lower(), frozenset()) - {app_id} for host in hosts)

    def reclaimed(self, app_id: str, old: Iterable[str], new: Iterable[str]) -> dict[str, frozenset[str]]:
        claims = dict(self.claims)
        for host in {h.lower() for h in old}:
            claims[host] = claims.get(host, frozenset()) - {app_id}
            if not claims[host]:
                del claims[host]
        for host in {h.lower() for h in new}:
            claims[host] = claims.get(host, frozenset()) | {app_id}
        return claims


@dataclass(frozen=True)
class Unit:
    """What an app update re-decides: one app, or every member of its deployment group."""

    name: str  # the app id its services carry (a group's is /GROUP)
    members: tuple[str, ...]  # the apps' ids
    old: tuple[Mapping[str, Any], ...]  # their documents the running model holds
    new: tuple[Mapping[str, Any], ...]  # and the mirror's now, in the same order


class _RouteOrder:
    """The render's order of exact-host map entries: (rank, service order, rule order)."""

    def __init__(self, positions: Mapping[str, int], services: tuple[Service, ...]) -> None:
        self.positions = positions
        self.services = services

    def key(self, entry: tuple[str, str]) -> tuple[Any, ...]:
        map_key, backend = entry
        position = self.positions[backend]
        service = self.services[position]
        host, _, path = map_key.partition("/")
        rules = service.paths or ("",)
        rule = next((i * len(rules) + rules.index(path)
                     for i, vhost in enumerate(service.rule_vhosts)
                     if vhost.lower() == host and path in rules), 0)
        return route_order_key(service, host, path or None) + (True, position, rule)


def decide_alone(router: Any, apps: Sequence[Mapping[str, Any]],
                 routed_before: Callable[[Mapping[str, Any]], RoutedBefore | None]) -> Model | None:
    """The model of ``apps`` on their own (one app, or the members of one deployment
    group in Marathon's order, which decide merges into the group's backend), under
    ``router``'s settings: what a full build decides for them when no other app
    contests their claims.  None for IP-per-task ports without a service port (their
    assigned ports are a cross-app decision) or an app that cannot be read."""
    settings = router.settings
    derive_settings = DeriveSettings(frozenset(settings.groups), settings.strict_mode,
                                     settings.health_check)
    derivations = [derive_app(app, derive_settings, router.resolver, 0, routed_before(app))
                   for app in apps]
    if any(d.skipped or any(port.service_port is None for port in d.ports)
           for d in derivations):
        return None
    options = settings.render_options
    return decide(derivations, reserved_ports=options.reserved_ports(router.fragments),
                  default_bind_addr=options.bind_addr,
                  ip_per_task_ports=settings.ip_per_task_ports,
                  check_port=router.port_checks if settings.validate else None)


def _mlb_lines_fixed(fragments: FragmentSet, overrides: Overrides | None) -> bool:
    """--haproxy-map: whether marathon-lb's lookup lines are the built-in ones, whose
    text reads no app (the first app with an entry renders them: which app that is may
    change with an update, the line may not)."""
    if any(name in MLB_LINE_FRAGMENTS for names in (overrides or {}).values() for name in names):
        return False
    return all(fragments[name].builtin for name in MLB_LINE_FRAGMENTS)


def _maps_only(text: str, block: int, path: str) -> bool:
    """Whether every shared frontend reading map ``path`` routes by map lookups alone.

    A rule a map cannot hold (a host with a port, a path ignoring case) is a line of
    its own, and where the map runs fall around it depends on every app's ranks.
    marathon-lb's domain2backend.map is read by two frontends (HTTP and HTTPS).
    The shared frontends come right after the head, so this reads little of ``text``.
    """
    at = text.find(path)
    found = False
    while 0 <= at < block:
        start = text.rfind("\nfrontend ", 0, at)
        end = text.find("\n\n", at)
        end = block if end < 0 or end > block else end
        rules = [line for line in text[start:end].splitlines()
                 if line.lstrip().startswith("use_backend ")]
        # A rule's weighted split reads a map too, but it is a route of its own whose
        # place among the host routes depends on every app's ranks (render.rule_routes).
        if start < 0 or any(not line.lstrip().startswith("use_backend %[") or "map" not in line
                            or "map_int(" in line for line in rules):
            return False
        found = True
        at = text.find(path, end)
    return found


def _units(app_ids: Iterable[str], old_apps: Mapping[str, Any], new_apps: Mapping[str, Any],
           group_docs: GroupDocs | None) -> list[Unit] | str:
    """What each updated app is routed as: alone, or as its deployment group (the
    members' documents, old and new, in Marathon's order); why not, as a string."""
    units: dict[str, Unit] = {}
    for app_id in sorted(set(app_ids)):
        member = updated_member(app_id, old_apps, new_apps)
        if isinstance(member, str):
            return member
        old_app, new_app, group = member
        if group is None:
            units[app_id] = Unit(app_id, (app_id,), (old_app,), (new_app,))
        elif group not in units:
            if group_docs is None:
                return f"app of deployment group {group}"
            docs = group_docs(group)
            if isinstance(docs, str):
                return docs
            ids = tuple(str(app.get("id")) for app in docs[1])
            units[group] = Unit(group, ids, tuple(docs[0]), tuple(docs[1]))
    return list(units.values())


def plan_app_update(running: RunningConfig, old_apps: Mapping[str, Any],
                    new_apps: Mapping[str, Any], app_ids: Iterable[str], decide_one: DecideOne,
                    fragments: FragmentSet, overrides: Overrides | None, *,
                    group_docs: GroupDocs | None = None) -> TaskUpdate | str:
    """The update for app updates of ``app_ids``, or why the full path must decide.

    An app of a blue/green deployment group is routed as the group (one backend
    under the old colour's routes): its update re-decides the group from all its
    members' documents (``group_docs``), and the group's services are what moves.
    """
    options = running.options
    if options.map_dir is None:
        return "virtual hosts are not routed through map files"
    if reads_services(fragments, overrides):
        return "a fragment reads every service"
    if options.haproxy_map and not _mlb_lines_fixed(fragments, overrides):
        return "marathon-lb's map lines come from templates that may read an app's values"
    units = _units(app_ids, old_apps, new_apps, group_docs)
    if isinstance(units, str):
        return units
    services = running.model.services
    text = running.text
    index = RoutingIndex.of(running)
    claims = index.claims
    plans: list[RuntimePlan] = []
    changed: dict[str, tuple[Service, ...]] = {}
    old_entries: dict[tuple[str, str], Entries] = {}
    new_entries: dict[tuple[str, str], Entries] = {}
    task_delta = 0
    for unit in units:
        app_id = unit.name
        if all(o is n for o, n in zip(unit.old, unit.new, strict=True)):
            continue
        low, high = app_slice(services, app_id)
        before = services[low:high]
        if not before:
            nothing = _still_unrouted(unit, running.model.problems, decide_one)
            if isinstance(nothing, str):
                return nothing
            task_delta += nothing
            changed[app_id] = ()
            continue
        if any(not any(s.app is o for o in unit.old) for s in before):
            return f"app {app_id} is not routed as its previous document"
        if unit.old == unit.new:  # fetched again, unchanged: the services hold the new copy
            fresh = {id(o): n for o, n in zip(unit.old, unit.new, strict=True)}
            services = services[:low] + tuple(replace(s, app=fresh[id(s.app)]) for s in before) \
                + services[high:]
            changed[app_id] = services[low:high]
            continue
        if _has_problems(unit, running.model.problems):
            return f"app {app_id} has problems"
        decided = decide_one(unit.new)
        if decided is None or decided.problems:
            return f"app {app_id}: its update has problems"
        after = decided.services
        if find_label_templates(after):  # compiled, checked and reported by the full path
            return f"app {app_id} has label templates"
        if [_shape(s) for s in before] != [_shape(s) for s in after]:
            return f"app {app_id}: its ports, bind ports or modes changed"
        old_hosts = [h for s in before for h in s.settings.vhosts]
        new_hosts = [h for s in after for h in s.settings.vhosts]
        current = replace(index, claims=claims)  # with the apps before this one moved
        if any(_contested(s) for s in (*before, *after)) \
                or current.claimed_elsewhere(app_id, old_hosts + new_hosts):
            return f"app {app_id}: a virtual host another app claims"
        claims = current.reclaimed(app_id, old_hosts, new_hosts)
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
        task_delta += decided.task_count - sum(_tasks_of(app) for app in unit.old)
        services = services[:low] + after + services[high:]
        changed[app_id] = after
    block = index.block_in(text)  # the backends before it may have moved
    moved = _move_entries(text, index, block, old_entries, new_entries, services)
    if isinstance(moved, str):
        return moved
    text, maps, map_plan = moved
    model = replace(running.model, services=services,
                    task_count=running.model.task_count + task_delta)
    kept = RoutingIndex(index.positions, claims, maps, -1 if block < 0 else len(text) - block)
    cache: dict[str, Any] = {"routing": kept}
    if "groups" in running.cache:  # no app updated here joined or left a group
        cache["groups"] = running.cache["groups"]
    return TaskUpdate(RunningConfig(model, options, text, cache),
                      merge_plans([*plans, map_plan]), changed)


def _has_problems(unit: Unit, problems: Iterable[Problem]) -> bool:
    """Whether the model left any of the unit's apps (or ports) out for a problem."""
    return any(p.app_id == unit.name or p.app_id in unit.members for p in problems)


def _still_unrouted(unit: Unit, problems: Iterable[Problem], decide_one: DecideOne,
                    ) -> int | str:
    """For an app (or group) that routes nothing (no task to route, or outside this
    router's groups): the change in the task count when its update routes nothing
    either, so nothing moves; why the full path must decide otherwise (it was left
    out for a problem, or it now has a service to add)."""
    if _has_problems(unit, problems):
        return f"app {unit.name} has problems"
    decided = decide_one(unit.new)
    if decided is None or decided.problems or decided.services:
        return f"app {unit.name} routed nothing and its update routes something"
    return decided.task_count - sum(_tasks_of(app) for app in unit.old)


def _tasks_of(app: Mapping[str, Any]) -> int:
    tasks = app.get("tasks")
    return len(tasks) if isinstance(tasks, list) else 0


def _move_entries(text: str, index: RoutingIndex, block: int,
                  old: Mapping[tuple[str, str], Entries],
                  new: Mapping[tuple[str, str], Entries], services: tuple[Service, ...],
                  ) -> tuple[str, dict[str, tuple[tuple[str, str], ...]], RuntimePlan] | str:
    """``text`` with the exact-host entries moved, the maps now, and the map commands
    that do it live.  Only the files that change are written again in the text."""
    for key in set(old) | set(new):
        if key[1] not in _MOVABLE and sorted(old.get(key, ())) != sorted(new.get(key, ())):
            return f"{key[0]} {key[1]} map entries changed (only exact hosts move live)"
    maps = dict(index.maps)
    order = _RouteOrder(index.positions, services)
    add: list[MapChange] = []
    changed: list[MapChange] = []
    delete: list[MapChange] = []
    for frontend, kind in sorted(set(old) | set(new)):
        if kind not in _MOVABLE:
            continue  # the same entries (checked above)
        # The app's entries are taken out and put back even when they are the same: a new
        # backend weight moves them among the others (a tree lookup ignores the order, the
        # text must still be the bytes of a full render).
        if kind == "dom":  # marathon-lb's domain2backend.map: one file, HTTP and HTTPS
            paths = [p for p in maps if p.rsplit("/", 1)[-1] == frontend]
        else:
            paths = [p for p in maps if p.rsplit("/", 1)[-1].startswith(frontend + "-")
                     and map_kind(p) == kind]
        if len(paths) != 1:
            return f"the {frontend} frontend has {len(paths)} {kind} maps"
        path = paths[0]
        if not _maps_only(text, block, path):
            return f"the frontends reading {path} have rules besides their maps (their " \
                "order is global)"
        gone = dict(old.get((frontend, kind), ()))
        entries = [e for e in maps[path] if e[0] not in gone or gone[e[0]] != e[1]]
        taken = {key for key, _backend in entries}
        for entry in new.get((frontend, kind), ()):
            if entry[0] in taken:
                return f"map key {entry[0]} is routed to another backend"
            taken.add(entry[0])
            bisect.insort(entries, entry, key=order.key)
            if entry[0] not in gone:
                add.append((path, entry[0], entry[1]))
            elif gone[entry[0]] != entry[1]:
                changed.append((path, entry[0], entry[1]))
        fresh = {key for key, _backend in new.get((frontend, kind), ())}
        delete.extend((path, key, "") for key in gone if key not in fresh)
        maps[path] = tuple(entries)
        text = _splice_file(text, block, path, maps[path])
    return text, maps, RuntimePlan(map_add=tuple(add), map_set=tuple(changed),
                                   map_del=tuple(delete))


def _splice_file(text: str, block: int, path: str, entries: Iterable[tuple[str, str]]) -> str:
    """``text`` with the entries of one file of its map block (which starts at ``block``)
    written again: the bytes map_block gives, without rewriting the other files."""
    marker = f"\n{FILE_PREFIX}{path}\n"
    start = text.find(marker, block) + len(marker)
    end = text.find("\n" + FILE_PREFIX, start - 1)
    end = len(text) if end < 0 else end + 1
    return text[:start] + "".join(f"{ENTRY_PREFIX}{k} {b}\n" for k, b in entries) + text[end:]


__all__ = ["decide_alone", "plan_app_update"]
