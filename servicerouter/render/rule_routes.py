"""Routes of operator rules that a host map cannot hold.  Pure: values in, text out.

A rule with header matches, a weighted split, or paths on any host
(:class:`~servicerouter.model.rule_values.RuleExtras`) gets one ``use_backend``
line per route with anonymous ACLs, written by servicerouter itself rather
than by a template fragment: every value in it was validated as one safe token
when the rule was written and again when it was derived, and host names are
lower-cased here.  Rules without any of these route through the map files
like labels (servicerouter.render.routing), and so do paths on any host without
headers, split or ``-i``: a ``path,map_beg`` map after every host route (the
longest prefix wins, as the lines' order by length said), so changing them is
map entries too.

A split of one route between ports is one :class:`~servicerouter.render.routing.SplitRoute`:
a single draw ``rand(SPLIT_RANGE)`` looked up in a map file of integer ranges,
member k's range as wide as w_k / total of the draw (largest remainders first,
so the widths add up exactly), so a weight change is map entries only.  With
map files off it is sequential sampling instead: member k (of n) is taken when
``rand(R_k)`` is below its weight w_k, with R_k the sum of the weights from k
on, and the last takes what is left, so member k gets w_k / total of the
requests.  Each line draws its own number; no variable is shared between lines
or requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from servicerouter.model.rule_values import RuleExtras
from servicerouter.render.routing import SPLIT_RANGE, MapEntry, SplitRoute

# Defence in depth: what may appear in a condition here (validated upstream).
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:/@+=,%~!*()&;?*-]{1,1024}$")
# Ranks (see servicerouter.render.config): a header route goes before the plain
# routes of its host and path; routes on any host go after every host route.
HEADER_FIRST = 10_000_000
ANY_HOST_RANK = 2


class RuleRouteError(ValueError):
    """A value that should never have reached the render (validation upstream failed)."""


def _safe(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value) or value.startswith("-"):
        raise RuleRouteError(f"unsafe value in a rule route: {value[:40]!r}")
    return value


def host_condition(host: str) -> str:
    """An anonymous ACL matching requests for ``host`` (exact, ``*.`` wildcard, or ``:port``)."""
    host = _safe(host.lower())
    if host.startswith("*."):
        return f"{{ req.hdr(host),field(1,:),lower -m end {host[1:]} }}"
    if ":" in host:
        return f"{{ req.hdr(host),lower -m str {host} }}"
    return f"{{ req.hdr(host),field(1,:),lower -m str {host} }}"


def _conditions(extras: RuleExtras, host: str | None, path: str | None,
                ignore_case: bool) -> list[str]:
    conditions = [host_condition(host)] if host else []
    if path:
        conditions.append(f"{{ path_beg {'-i ' if ignore_case else ''}{_safe(path)} }}")
    for header in extras.headers:
        kind = "beg" if header.prefix else "str"
        conditions.append(f"{{ req.hdr({_safe(header.name)}) -m {kind} {_safe(header.value)} }}")
    return conditions


def split_ranges(members: Sequence[tuple[str, int]],
                 span: int = SPLIT_RANGE) -> tuple[tuple[str, str], ...]:
    """("lo:hi", backend) per member: consecutive ranges of ``[0, span)``, each as
    wide as the member's weight share, rounded by largest remainder (ties: in
    order) so that the widths add up to ``span`` exactly."""
    total = sum(weight for _name, weight in members)
    widths = [span * weight // total for _name, weight in members]
    left = span - sum(widths)
    by_remainder = sorted(range(len(members)),
                          key=lambda k: (-(span * members[k][1] % total), k))
    for k in by_remainder[:left]:
        widths[k] += 1
    entries: list[tuple[str, str]] = []
    low = 0
    for (name, _weight), width in zip(members, widths, strict=True):
        if width:
            entries.append((f"{low}:{low + width - 1}", _safe(name)))
            low += width
    return tuple(entries)


def _sampled_lines(members: Sequence[tuple[str, int]], conditions: str) -> str:
    """The split as sequential ``rand()`` draws, one line per member (no map file)."""
    lines = []
    remaining = sum(weight for _, weight in members)
    for position, (name, weight) in enumerate(members):
        draw = ""
        if position < len(members) - 1:
            draw = f" {{ rand({remaining}) -m int lt {weight} }}"
        lines.append(f"  use_backend {_safe(name)} if {conditions}{draw}\n")
        remaining -= weight
    return "".join(lines)


def route_lines(backend: str, extras: RuleExtras, host: str | None, path: str | None,
                ignore_case: bool, backends: Mapping[tuple[str, int], str]) -> str | SplitRoute:
    """The ``use_backend`` line of one route of a ruled port, or its split.

    ``backends``: (app id, port index) -> backend of every routed port, for the
    members of a split; members not routed (no tasks yet, another group) are
    left out and the others share their weight (their map entries change, the
    config's lines do not).
    """
    conditions = " ".join(_conditions(extras, host, path, ignore_case))
    if not extras.split:
        return f"  use_backend {_safe(backend)} if {conditions}\n"
    members = [(backends.get((app_id, index)), weight) for app_id, index, weight in extras.split]
    routed = [(name, weight) for name, weight in members if name] or [(backend, 1)]
    return SplitRoute(conditions, split_ranges(routed), _sampled_lines(routed, conditions))


def needs_own_lines(extras: RuleExtras | None) -> bool:
    """Whether a ruled port's host routes need :func:`route_lines` (not a map entry)."""
    return extras is not None and bool(extras.headers or extras.split)


Route = tuple[tuple[int, int, int, bool], int, str | MapEntry | SplitRoute,
              str | MapEntry | SplitRoute]


def rule_routes(service: Any, services: Sequence[Any], sequence: int,
                cache: dict[str, Any]) -> tuple[list[Route], bool]:
    """The shared-frontend routes of a ruled port that need their own lines, and
    whether they replace its host routes (else the map entries/fragments make those).

    ``sequence``: where these go in service order; ``cache``: one dict per render
    (the backend of every port, built once).
    """
    extras: RuleExtras | None = service.settings.rule
    if extras is None:
        return [], False
    backends = cache.get("backends")
    if backends is None:
        backends = cache["backends"] = {(s.app_id, s.index): s.backend for s in services}
    routes: list[Route] = []
    weight = service.settings.backend_weight
    ignore_case = extras.path_ignore_case
    maps_on: tuple[bool, bool] = cache.get("maps", (False, False))  # (HTTP, HTTPS)
    plain = not (extras.headers or extras.split or ignore_case)
    for path in extras.any_host_paths:
        text = route_lines(service.backend, extras, None, path, ignore_case, backends)
        entry = MapEntry("path", _safe(path), _safe(service.backend)) if plain else None
        routes.append(((ANY_HOST_RANK, -len(path), -weight, True), sequence + len(routes),
                       entry if entry and maps_on[0] else text,
                       entry if entry and maps_on[1] else text))
    own = needs_own_lines(extras)
    if own:
        hidden = service.shadowed_vhosts
        for host in service.rule_vhosts:
            for path in service.paths or (None,):
                key = (host, path or "")
                if host in hidden or key in service.lost_paths or key in service.shadowed_paths:
                    continue
                text = route_lines(service.backend, extras, host, path,
                                   service.path_ignore_case, backends)
                wildcard, length, _ = (host.startswith("*."), -len(path) if path else 0, 0)
                first = HEADER_FIRST if extras.headers else 0
                rank = (int(wildcard), length, -weight - first, ":" not in host)
                routes.append((rank, sequence + len(routes), text, text))
    return routes, own


def any_host_routes(services: Sequence[Any]) -> bool:
    """Whether some port is routed by path on any host (the shared frontends are needed)."""
    return any(s.settings.rule is not None and s.settings.rule.any_host_paths for s in services)
