"""Shared-frontend routing through HAProxy map files.  Pure: rules in, lines and maps out.

One ``acl`` + ``use_backend`` pair per virtual host makes HAProxy try every
rule in turn, so the last of 10,000 vhosts costs hundreds of times the first
(and ``haproxy -c`` takes seconds).  A map file is an index HAProxy searches
in one step: ``map_beg`` and ``map_str`` look keys up in a tree (longest
prefix / exact), ``map_end`` walks a list in file order.

Precedence stays exactly what the rules' order says.  Rules come sorted (by
:func:`servicerouter.model.services.route_order_key`, then service order);
consecutive rules a map can hold form a *run*, one map file and one
``use_backend`` line, and every rule a map cannot hold (another fragment's
text) stays a line of its own between the runs.  Within a run of exact-host
rules the map key is ``host/path``: the longest matching prefix is the rule
with the longest path, which is also the first rule in order (two rules with
the same host and path never both reach the render: one owns the claim).
Wildcard hosts keep their order because ``map_end`` takes the first entry in
file order.

The entries travel inside the config text, as a block of comment lines at its
very end (:func:`map_block`), so the text alone still says everything HAProxy
will run: the engine compares, diffs, validates and restores one artifact, and
the files are written from it (:mod:`servicerouter.apply.mapfiles`).

A weighted split (an operator rule's canary, :class:`SplitRoute`) is one line
too: ``use_backend %[rand(R),map_int(<file>)] if <conditions>``, its map file
holding one integer range of ``[0, R)`` per member, as wide as the member's
share.  ``R`` is fixed, so new weights change the map's entries only (``add
map``/``del map``, no reload): :data:`SPLIT_RANGE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# How each kind of entry is looked up: the converter and the sample it is applied to.
# ``txn.sr_route`` holds "host/path" (host lower-cased, without its port).
ROUTE_VAR = "txn.sr_route"
SET_ROUTE_VAR = f'  http-request set-var-fmt({ROUTE_VAR}) "%[req.hdr(host),field(1,:),lower]/%[path]"\n'
_LOOKUPS = {
    "beg": f"var({ROUTE_VAR}),map_beg",  # exact host (+ path prefix): longest prefix
    "end": "req.hdr(host),field(1,:),lower,map_end",  # wildcard host: first in file order
    "str": "req.hdr(x-marathon-app-id),lower,map_str",  # app id: exact
    "path": "path,map_beg",  # an operator rule's path on any host: longest prefix
}
# Kinds whose lookup is a list (order matters): an entry added at runtime goes last.
ORDERED_KINDS = frozenset({"end"})

# marathon-lb's map files (--haproxy-map): beside the config, its names and its
# "key backend" lines; exact lookups (``map``), so order never matters.  "dom" holds
# exact virtual hosts without a path, "app" app ids.
MLB_MAP_NAMES = {"dom": "domain2backend.map", "app": "app2backend.map"}
_MLB_KIND_OF = {name: kind for kind, name in MLB_MAP_NAMES.items()}

BLOCK_MARKER = "# servicerouter map entries: the map files named below are written from these lines"
FILE_PREFIX = "#map-file "
ENTRY_PREFIX = "#map "
MAP_NAME_RE = re.compile(r"^((http|https|appid)-[0-9]{1,6}-(beg|end|str|path)"
                         r"|split-(http|https)-[0-9]{1,6}-int)\.map$")
# The draw of a split: ``rand(SPLIT_RANGE)`` is in [0, SPLIT_RANGE).  Fixed, so that a
# weight change never touches the config's text.  2^6 * 3^2 * 5^4 * 7 * 11 * 13: every
# total of weights made of these factors (1..16, 20, 25, 50, 100, 1000, 10000...) cuts it
# into exact shares; any other total is off by less than one part in 3.6e8 per member.
SPLIT_RANGE = 360_360_000


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One rule a map can hold: its lookup kind, key and backend."""

    kind: str  # "beg", "end", "str" or "path"
    key: str
    backend: str


@dataclass(frozen=True, slots=True)
class SplitRoute:
    """A route whose requests are shared between backends by weight (a canary).

    ``condition``: what the route matches (anonymous ACLs, validated tokens only);
    ``entries``: ("lo:hi" range of the draw, backend) covering ``[0, SPLIT_RANGE)``;
    ``fallback``: the same route without a map file (``rand()`` lines), for a
    render with map files off.
    """

    condition: str
    entries: tuple[tuple[str, str], ...]
    fallback: str


# A rule in a shared frontend: the text of its own fragment, a map entry, or a split.
Rule = str | MapEntry | SplitRoute


def host_entry(host: str, path: str | None, backend: str) -> MapEntry | None:
    """The map entry of a vhost (and path prefix) rule, or None: it needs its own ACL.

    Not in a map: a host with a ``:port`` (it matches the whole Host header, the
    maps look at the name without its port) and a wildcard with a path (neither
    lookup matches a suffix and a prefix at once).  Paths matched ignoring case
    are left out by the caller.
    """
    host = host.lower()
    if ":" in host:
        return None
    if host.startswith("*."):
        return None if path else MapEntry("end", host[1:], backend)
    return MapEntry("beg", f"{host}/{path or ''}", backend)


def host_acl_name(host: str) -> str:
    """An ACL name for one vhost, distinct for distinct hosts (case aside).

    servicerouter.py's cleanedUpHostname maps 'a.b' and 'a_b' to the same
    name, merging their ACLs; HAProxy ACL names accept '.', ':' and '-', so
    the host can be kept as is (wildcards get their own prefix).
    """
    host = host.lower()
    return "hostw_" + host[2:] if host.startswith("*.") else "host_" + host


def path_rules(backend: str, paths: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(prefix, ACL name) of each path rule of a port: one ACL per prefix, so each rule
    is ranked (and matches) by its own prefix. The first keeps the one-prefix name;
    ':' cannot occur in a backend name, so the others never meet another port's ACL."""
    acl = "path_" + backend
    return tuple((path, acl if k == 0 else f"{acl}:{k}") for k, path in enumerate(paths))


def appid_entry(app_id: str, backend: str) -> MapEntry:
    return MapEntry("str", app_id.lower(), backend)


def mlb_map_path(map_dir: str, kind: str) -> str:
    """marathon-lb's map file of ``kind`` ("dom", "app"): in the config's directory,
    which holds ``map_dir`` (``<config>.maps``)."""
    return f"{map_dir.rstrip('/').rsplit('/', 1)[0]}/{MLB_MAP_NAMES[kind]}"


def assemble(frontend: str, rules: Iterable[Rule | None], map_dir: str,
             maps: dict[str, list[tuple[str, str]]], kinds: tuple[str, ...] = (),
             mlb_lines: Mapping[str, str] | None = None) -> list[str]:
    """The lines of one shared frontend's rules, in order; map runs go into ``maps``.

    ``maps`` gathers (map path -> entries) over the frontends of one config.
    ``kinds`` (exact hosts first, wildcards last): maps the frontend reads even
    when empty, so that the first vhost of a kind is a map entry, not a new map
    file (and a reload).  ``mlb_lines``: the lookup line of each marathon-lb map
    kind ("dom", "app"; its MAP template, rendered): that file is one for the
    whole config (HTTP and HTTPS share it, as in marathon-lb), read by one line
    per frontend, at its first run.
    """
    # Segments in order: a rule's own text, or a run of entries of one kind.
    segments: list[str | SplitRoute | tuple[str, list[MapEntry]]] = []
    for rule in rules:
        if rule is None:
            continue
        if isinstance(rule, (str, SplitRoute)):
            segments.append(rule)
            continue
        last = segments[-1] if segments else None
        if isinstance(last, tuple) and last[0] == rule.kind:
            last[1].append(rule)
        else:
            segments.append((rule.kind, [rule]))
    present = {segment[0] for segment in segments if isinstance(segment, tuple)}
    if kinds and kinds[0] not in present:
        segments.insert(0, (kinds[0], []))
    if kinds and kinds[-1] not in present:
        segments.append((kinds[-1], []))
    for kind in kinds[1:-1]:  # a middle kind (marathon-lb's "dom"): before the last one's run
        if kind not in present:
            last = next(i for i, seg in enumerate(segments)
                        if isinstance(seg, tuple) and seg[0] == kinds[-1])
            segments.insert(last, (kind, []))
    out: list[str] = []
    count = 0
    splits = 0
    mlb_done: set[str] = set()
    for segment in segments:
        if isinstance(segment, str):
            out.append(segment)
            continue
        if isinstance(segment, SplitRoute):
            if not map_dir:  # map files off: the rand() lines
                out.append(segment.fallback)
                continue
            # Named apart from the frontend's runs ("split-http-1-int.map"): a split is
            # no run of host entries, and its number counts splits only, so a host map
            # appearing before it never renames it.
            splits += 1
            path = f"{map_dir}/split-{frontend}-{splits}-int.map"
            maps[path] = list(segment.entries)
            out.append(f"  use_backend %[rand({SPLIT_RANGE}),map_int({path})] "
                       f"if {segment.condition}\n")
            continue
        kind, run = segment
        if kind in MLB_MAP_NAMES:
            path = mlb_map_path(map_dir, kind)
            shared = maps.setdefault(path, [])
            known = {key for key, _backend in shared}
            for entry in run:
                if entry.key not in known:  # the first rule in order wins, as with ACLs
                    known.add(entry.key)
                    shared.append((entry.key, entry.backend))
            if kind not in mlb_done:
                mlb_done.add(kind)
                out.append((mlb_lines or {}).get(kind, ""))
            continue
        count += 1
        path = f"{map_dir}/{frontend}-{count}-{kind}.map"
        entries: list[tuple[str, str]] = []
        seen: set[str] = set()
        for entry in run:
            if entry.key not in seen:  # the first rule in order wins, as with ACLs
                seen.add(entry.key)
                entries.append((entry.key, entry.backend))
        maps[path] = entries
        lookup = f"{_LOOKUPS[kind]}({path})"
        out.append(f"  use_backend %[{lookup}] if {{ {lookup} -m found }}\n")
    if count and any(isinstance(seg, tuple) and seg[0] == "beg" for seg in segments):
        out.insert(0, SET_ROUTE_VAR)  # http-request rules run before use_backend: first
    return out


def map_block(maps: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """The comment block carrying every map's entries, written last in the config."""
    if not maps:
        return ""
    lines = ["\n", BLOCK_MARKER, "\n"]
    for path, entries in maps.items():
        lines.append(f"{FILE_PREFIX}{path}\n")
        lines.extend(f"{ENTRY_PREFIX}{key} {backend}\n" for key, backend in entries)
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class MapFiles:
    """The map files a config reads: path -> entries (in file order)."""

    files: Mapping[str, tuple[tuple[str, str], ...]]

    def content(self, path: str) -> bytes:
        return "".join(f"{key} {value}\n" for key, value in self.files[path]).encode()


def parse_map_block(text: str, map_dir: str | None) -> MapFiles:
    """The map files a config's last map block describes, confined to ``map_dir``.

    Only the block after the LAST marker counts (the render writes it after every
    fragment's output, so nothing a fragment wrote can come after it), and only
    files named as the render names them, directly in ``map_dir``.
    """
    if map_dir is None:
        return MapFiles({})
    start = text.rfind("\n" + BLOCK_MARKER + "\n")
    if start < 0:
        return MapFiles({})
    files: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    prefix = map_dir.rstrip("/") + "/"
    mlb_paths = {mlb_map_path(map_dir, kind) for kind in MLB_MAP_NAMES}
    for line in text[start + len(BLOCK_MARKER) + 2:].splitlines():
        if line.startswith(FILE_PREFIX):
            path = line[len(FILE_PREFIX):]
            name = path[len(prefix):] if path.startswith(prefix) else ""
            ours = MAP_NAME_RE.match(name) or path in mlb_paths
            current = files.setdefault(path, []) if ours else None
        elif line.startswith(ENTRY_PREFIX) and current is not None:
            words = line[len(ENTRY_PREFIX):].split()
            if len(words) == 2:
                current.append((words[0], words[1]))
    return MapFiles({path: tuple(entries) for path, entries in files.items()})


def map_kind(path: str) -> str:
    """"beg", "end", "str", "path", "int" (a split), or marathon-lb's "dom" / "app", from
    a map file's name."""
    name = path.rsplit("/", 1)[-1]
    if name in _MLB_KIND_OF:
        return _MLB_KIND_OF[name]
    return name.rsplit("-", 1)[-1].split(".", 1)[0]
