"""Which config changes HAProxy can take without a reload.  Pure: text in, plan out.

A reload costs a new worker, fresh health-check state and lingering old
workers; task churn (scale, restarts, moves) only changes ``server`` lines of
existing backends, and HAProxy's Runtime API can add, drain, delete and
re-address servers live.  So the rendered config is compared with the one
HAProxy runs: when everything except the ``server`` lines of ``backend``
sections is identical (the *skeleton*), the difference becomes a
:class:`RuntimePlan`; anything else needs a reload.

The comparison works on the rendered text, not on the model, so it holds for
any fragment set (legacy or Jinja2): whatever a template puts on a server
line is sent to ``add server`` as is.  Lines HAProxy 2.6 cannot apply to a
dynamic server (``cookie``, an unknown keyword, a backend with
``default-server`` whose settings dynamic servers do not inherit) make the
change a reload instead, and so does adding a server to a backend whose
load-balancing algorithm is static (``static-rr``, or a hash without
``hash-type consistent``: "Backend must use a dynamic load balancing").

Sticky backends: HAProxy 2.6 refuses ``add server ... cookie NAME``, but a
backend with ``cookie NAME ... dynamic`` (and a ``dynamic-cookie-key``) gives
each server that has no ``cookie`` of its own a cookie hashed from the key and
the server's address, so a server line without ``cookie`` means the same live
as after a reload, provided HAProxy is told to recompute the cookies
(``enable dynamic-cookie backend``: a server added or re-addressed through the
Runtime API gets none otherwise).  :attr:`RuntimePlan.dynamic_cookie` names
those backends.  A server line that does carry ``cookie`` (servicerouter.py's
fragments, or a backend without ``dynamic``) still takes a reload.

It also lists each frontend's ``bind`` addresses (:func:`new_binds`): a
frontend the running HAProxy does not have yet needs a port nobody else holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from servicerouter.render.routing import (
    BLOCK_MARKER,
    ENTRY_PREFIX,
    FILE_PREFIX,
    ORDERED_KINDS,
    map_kind,
)

# Keywords HAProxy 2.6 accepts after ``add server <be>/<srv> <addr>`` (management
# guide, "add server").  Flags take no value; the others take exactly one.
_DYNAMIC_FLAGS = frozenset({
    "agent-check", "allow-0rtt", "backup", "check", "check-send-proxy", "check-ssl",
    "check-via-socks4", "disabled", "enabled", "force-sslv3", "force-tlsv10",
    "force-tlsv11", "force-tlsv12", "force-tlsv13", "no-ssl-reuse", "no-sslv3",
    "no-tlsv10", "no-tlsv11", "no-tlsv12", "no-tlsv13", "no-tls-tickets", "send-proxy",
    "send-proxy-v2", "send-proxy-v2-ssl", "send-proxy-v2-ssl-cn", "ssl", "tfo",
    "tls-tickets",
})
_DYNAMIC_VALUED = frozenset({
    "agent-addr", "agent-inter", "agent-port", "agent-send", "alpn", "addr", "ca-file",
    "check-alpn", "check-proto", "check-sni", "ciphers", "ciphersuites", "crl-file",
    "crt", "downinter", "error-limit", "fall", "fastinter", "id", "inter", "maxconn",
    "maxqueue", "minconn", "npn", "observe", "on-error", "on-marked-down",
    "on-marked-up", "pool-low-conn", "pool-max-conn", "pool-purge-delay", "port",
    "proto", "proxy-v2-options", "rise", "slowstart", "sni", "source", "ssl-max-ver",
    "ssl-min-ver", "track", "usesrc", "verify", "verifyhost", "weight", "ws",
})
# Balance algorithms HAProxy 2.6 can only extend with dynamic servers when the
# backend hashes consistently; static-rr never can.
_HASH_BALANCES = frozenset({"source", "uri", "url_param", "hdr", "rdp-cookie", "hash"})
_SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "userlist", "peers",
    "resolvers", "mailers", "program", "http-errors", "ring", "cache",
})


@dataclass(frozen=True, slots=True)
class ServerLine:
    """One ``server`` line of a backend: name, ``addr:port`` and the rest."""

    name: str
    address: str
    args: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> str:
        return self.address.rsplit(":", 1)[1] if ":" in self.address else ""


@dataclass(frozen=True)
class ParsedConfig:
    """A config split into its skeleton and the servers of each backend."""

    skeleton: tuple[str, ...]
    servers: dict[str, dict[str, ServerLine]]
    default_server: frozenset[str] = frozenset()  # backends with a default-server line
    static_lb: frozenset[str] = frozenset()  # backends that refuse dynamic servers
    binds: dict[str, tuple[str, ...]] = field(default_factory=dict)  # section -> addresses
    dynamic_cookie: frozenset[str] = frozenset()  # backends with ``cookie ... dynamic``
    # Map file path -> its entries (key, backend), from the config's map block.
    maps: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


# One map entry to change live: (map file path, key, value; "" for a deletion).
MapChange = tuple[str, str, str]


@dataclass(frozen=True)
class RuntimePlan:
    """Server changes to apply live, per backend; empty when only order changed."""

    add: tuple[tuple[str, ServerLine], ...] = ()
    remove: tuple[tuple[str, ServerLine], ...] = ()
    readdress: tuple[tuple[str, ServerLine], ...] = ()
    # Servers whose line differs only in ``weight`` (a task being killed drains
    # with weight 0): ``set server ... weight``.
    reweight: tuple[tuple[str, ServerLine], ...] = ()
    # Backends among ``add``/``readdress`` whose servers get dynamic cookies: HAProxy
    # computes a new or moved server's cookie only on ``enable dynamic-cookie backend``.
    dynamic_cookie: tuple[str, ...] = ()
    # Map entries (vhosts, paths, app ids of existing backends): added, changed, deleted.
    map_add: tuple[MapChange, ...] = ()
    map_set: tuple[MapChange, ...] = ()
    map_del: tuple[MapChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.readdress or self.reweight
                    or self.map_changes)

    @property
    def map_changes(self) -> int:
        return len(self.map_add) + len(self.map_set) + len(self.map_del)

    @property
    def size(self) -> int:
        return (len(self.add) + len(self.remove) + len(self.readdress) + len(self.reweight)
                + self.map_changes)


@dataclass(frozen=True)
class Verdict:
    """A plan, or the reason a reload is needed instead."""

    plan: RuntimePlan | None
    reason: str = ""
    details: list[str] = field(default_factory=list)


def parse_config(text: str) -> ParsedConfig:
    """Split ``text`` into skeleton lines and backend server lines."""
    skeleton: list[str] = []
    servers: dict[str, dict[str, ServerLine]] = {}
    with_default: set[str] = set()
    binds: dict[str, list[str]] = {}
    # (balance, hash-type) of the last defaults section and of each backend
    defaults_lb: tuple[str, str] = ("roundrobin", "map-based")
    lb: dict[str, tuple[str, str]] = {}
    # whether the ``cookie`` line of the last defaults section / each backend is dynamic
    defaults_cookie = False
    cookie: dict[str, bool] = {}
    backend: str | None = None
    section: tuple[str, str] | None = None  # (keyword, name) of the section we are in
    text, maps = _split_map_block(text)
    for line in text.splitlines():
        words = line.split()
        if words and not line[:1].isspace() and words[0] in _SECTION_KEYWORDS:
            section = (words[0], words[1] if len(words) > 1 else "")
            backend = words[1] if words[0] == "backend" and len(words) > 1 else None
            if backend is not None:
                servers.setdefault(backend, {})
                lb[backend] = defaults_lb
                cookie[backend] = defaults_cookie
        elif words and section is not None:
            keyword = words[0]
            if keyword == "bind" and len(words) > 1 and section[0] in ("frontend", "listen"):
                binds.setdefault(section[1], []).extend(a for a in words[1].split(",") if a)
            elif keyword in ("balance", "hash-type") and len(words) > 1:
                if section[0] == "defaults":
                    defaults_lb = _set_lb(defaults_lb, keyword, words[1])
                elif backend is not None:
                    lb[backend] = _set_lb(lb[backend], keyword, words[1])
            elif keyword == "cookie" and len(words) > 1 and section[0] == "defaults":
                defaults_cookie = "dynamic" in words[2:]
            elif keyword == "cookie" and len(words) > 1 and backend is not None:
                cookie[backend] = "dynamic" in words[2:]
            elif backend is not None:
                if keyword == "server" and len(words) >= 3:
                    entry = ServerLine(words[1], words[2], tuple(words[3:]))
                    if entry.name not in servers[backend]:  # a name twice: HAProxy decides
                        servers[backend][entry.name] = entry
                        continue
                elif keyword == "default-server":
                    with_default.add(backend)
        skeleton.append(line)
    static = frozenset(name for name, (balance, hash_type) in lb.items()
                       if balance == "static-rr"
                       or (balance in _HASH_BALANCES and hash_type != "consistent"))
    return ParsedConfig(tuple(skeleton), servers, frozenset(with_default), static,
                        dynamic_cookie=frozenset(name for name, on in cookie.items() if on),
                        binds={name: tuple(addresses) for name, addresses in binds.items()},
                        maps=maps)


def _split_map_block(text: str) -> tuple[str, dict[str, tuple[tuple[str, str], ...]]]:
    """The config without its map entry lines (the skeleton keeps the marker and the
    file names: a map appearing or going is a reload), and the entries of each map.

    Only the last block counts (see servicerouter.render.routing), and only maps a
    ``use_backend`` line of the config reads.
    """
    start = text.rfind("\n" + BLOCK_MARKER + "\n")
    if start < 0:
        return text, {}
    head, block = text[:start + len(BLOCK_MARKER) + 2], text[start + len(BLOCK_MARKER) + 2:]
    kept: list[str] = []
    maps: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in block.splitlines(keepends=True):
        if line.startswith(ENTRY_PREFIX):
            words = line[len(ENTRY_PREFIX):].split()
            if current is not None and len(words) == 2:
                current.append((words[0], words[1]))
            continue
        if line.startswith(FILE_PREFIX):
            path = line[len(FILE_PREFIX):].strip()
            current = maps.setdefault(path, []) if f"({path})]" in head else None
        kept.append(line)
    return head + "".join(kept), {path: tuple(entries) for path, entries in maps.items()}


def _set_lb(current: tuple[str, str], keyword: str, value: str) -> tuple[str, str]:
    if keyword == "balance":  # "hdr(Host)", "url_param id": the algorithm's name only
        return value.split("(", 1)[0], current[1]
    return current[0], value


# The Runtime API splits a line into commands at ';' and reads '#', quotes and
# backslashes itself: a server line carrying one is never sent as a command.
_CLI_SPECIAL = frozenset(';#\\"\'')


def runtime_safe(line: ServerLine) -> bool:
    """Whether ``line`` can be sent to the Runtime API as it is (one command, no more)."""
    return not any(c in _CLI_SPECIAL or not c.isprintable()
                   for word in (line.name, line.address, *line.args) for c in word)


def unsupported_args(args: Iterable[str]) -> list[str]:
    """Keywords of a server line that ``add server`` in HAProxy 2.6 refuses."""
    bad: list[str] = []
    tokens = list(args)
    index = 0
    while index < len(tokens):
        word = tokens[index]
        if word in _DYNAMIC_FLAGS:
            index += 1
        elif word in _DYNAMIC_VALUED and index + 1 < len(tokens):
            index += 2
        else:
            bad.append(word)
            index += 1
    return bad


def plan_runtime_update(old: ParsedConfig, new: ParsedConfig) -> Verdict:
    """What turns the running ``old`` into ``new`` without a reload, if anything."""
    if old.skeleton != new.skeleton:
        return Verdict(None, "frontends, backends or settings changed")
    add: list[tuple[str, ServerLine]] = []
    remove: list[tuple[str, ServerLine]] = []
    readdress: list[tuple[str, ServerLine]] = []
    reweight: list[tuple[str, ServerLine]] = []
    for backend, servers in new.servers.items():
        before = old.servers.get(backend, {})
        for name, line in servers.items():
            previous = before.get(name)
            if previous != line and not runtime_safe(line):
                return Verdict(None, f"server {backend}/{name}: characters the Runtime API "
                                     "would read as more than one command")
            if previous is None:
                if backend in new.default_server:
                    return Verdict(None, f"backend {backend} has default-server settings")
                if backend in new.static_lb:
                    return Verdict(None, f"backend {backend} balances with a static "
                                         "algorithm: no dynamic servers")
                bad = unsupported_args(line.args)
                if bad:
                    return Verdict(None, f"server {backend}/{name}: {' '.join(bad)} "
                                         "cannot be set on a dynamic server")
                add.append((backend, line))
            elif previous.args != line.args:
                if (_without_weight(previous.args) != _without_weight(line.args)
                        or previous.address != line.address):
                    return Verdict(None, f"server {backend}/{name} options changed")
                reweight.append((backend, line))
            elif previous.address != line.address:
                if previous.port != line.port:
                    return Verdict(None, f"server {backend}/{name} port changed")
                readdress.append((backend, line))
        for name, line in before.items():
            if name not in servers:
                remove.append((backend, line))
    moved = {backend for backend, _line in add + readdress}
    dynamic = tuple(sorted(moved & new.dynamic_cookie))
    changes = plan_map_changes(old.maps, new.maps)
    if isinstance(changes, str):
        return Verdict(None, changes)
    map_add, map_set, map_del = changes
    return Verdict(RuntimePlan(tuple(add), tuple(remove), tuple(readdress), tuple(reweight),
                               dynamic, map_add, map_set, map_del))


def plan_map_changes(
    old: dict[str, tuple[tuple[str, str], ...]], new: dict[str, tuple[tuple[str, str], ...]],
) -> tuple[tuple[MapChange, ...], tuple[MapChange, ...], tuple[MapChange, ...]] | str:
    """(add, set, del) turning the running maps into ``new``; a reason when impossible.

    Tree lookups (``map_beg``, ``map_str``) do not depend on order.  A list lookup
    (``map_end``) takes the first entry in file order, and ``add map`` appends: an
    entry that belongs before others can only come with a reload.
    """
    add: list[MapChange] = []
    changed: list[MapChange] = []
    delete: list[MapChange] = []
    for path, entries in new.items():
        before = dict(old.get(path, ()))
        after = dict(entries)
        if map_kind(path) in ORDERED_KINDS:
            kept = [key for key, _value in old.get(path, ()) if key in after]
            added = [key for key, _value in entries if key not in before]
            if [key for key, _value in entries] != kept + added:
                return f"the order of map {path} changed"
        for key, value in entries:
            if key not in before:
                add.append((path, key, value))
            elif before[key] != value:
                changed.append((path, key, value))
        delete.extend((path, key, "") for key in before if key not in after)
    return tuple(add), tuple(changed), tuple(delete)


def _without_weight(args: tuple[str, ...]) -> tuple[str, ...]:
    """A server line's options but ``weight N`` (the one option the Runtime API sets)."""
    if "weight" not in args:
        return args
    kept: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word == "weight":
            skip = True
        else:
            kept.append(word)
    return tuple(kept)


def server_weight(line: ServerLine) -> str:
    """The ``weight`` a server line sets (HAProxy's default is 1)."""
    args = line.args
    for index, word in enumerate(args[:-1]):
        if word == "weight":
            return args[index + 1]
    return "1"


def new_binds(old: ParsedConfig | None, new: ParsedConfig) -> dict[str, tuple[str, ...]]:
    """Bind addresses of ``new`` that ``old`` (the running config) does not listen on.

    Per frontend (or listen) section.  An address the running HAProxy already
    has is handed over at reload; only these must be free on the host.
    """
    running = {a for addresses in old.binds.values() for a in addresses} if old else set()
    fresh: dict[str, tuple[str, ...]] = {}
    for section, addresses in new.binds.items():
        wanted = tuple(a for a in addresses if a not in running)
        if wanted:
            fresh[section] = wanted
    return fresh


def _keyword_lines(text: str, keyword: str,
                   ) -> Iterator[tuple[tuple[str, str] | None, list[str] | None]]:
    """(section, words) for each section header of ``text`` (words None) and each line
    whose first word is ``keyword``, split as :func:`parse_config` splits them; section:
    (kind, name) of the section the line is in, None before any.  The map block aside.

    Reading a few kinds of line costs a fraction of a whole parse: only section headers
    and lines holding the text ``keyword`` are split.
    """
    text, _maps = _split_map_block(text)
    section: tuple[str, str] | None = None
    for line in text.splitlines():
        if not line[:1].isspace():
            words = line.split()
            if words and words[0] in _SECTION_KEYWORDS:
                section = (words[0], words[1] if len(words) > 1 else "")
                yield section, None
                continue
        elif keyword not in line:
            continue
        else:
            words = line.split()
        if words and words[0] == keyword:
            yield section, words


def config_binds(text: str) -> dict[str, tuple[str, ...]]:
    """``parse_config(text).binds``, from section headers and ``bind`` lines alone.

    A reload only needs the bind addresses of the configs (the new ones must be free
    on the host): parsing both whole for them cost a validating one-shot run 0.21 s
    of CPU per config at 5,000 apps (6,254 bind lines among 163,000); this takes
    0.04 s.
    """
    binds: dict[str, list[str]] = {}
    for section, words in _keyword_lines(text, "bind"):
        if (words is not None and section is not None and len(words) > 1
                and section[0] in ("frontend", "listen")):
            binds.setdefault(section[1], []).extend(a for a in words[1].split(",") if a)
    return {name: tuple(addresses) for name, addresses in binds.items()}


def backend_addresses(text: str) -> dict[str, frozenset[str]]:
    """Backend -> its servers' addresses, as ``parse_config(text).servers`` has them (the
    first line of a server name counts), from section headers and server lines alone.

    What a one-shot run's removal guard compares (the serving config with the new one):
    0.08 s of CPU at 5,000 apps where parsing each whole took 0.22 s.
    """
    servers: dict[str, dict[str, str]] = {}
    for section, words in _keyword_lines(text, "server"):
        if section is None or section[0] != "backend" or not section[1]:
            continue
        names = servers.setdefault(section[1], {})  # a backend without servers counts
        if words is not None and len(words) >= 3:
            names.setdefault(words[1], words[2])
    return {backend: frozenset(names.values()) for backend, names in servers.items()}


def new_bind_addresses(old_text: str | None, new_text: str) -> dict[str, tuple[str, ...]]:
    """:func:`new_binds` of two configs' texts (``old_text``: the running one, or None),
    from their bind lines alone (:func:`config_binds`)."""
    old = ParsedConfig((), {}, binds=config_binds(old_text)) if old_text is not None else None
    return new_binds(old, ParsedConfig((), {}, binds=config_binds(new_text)))


def has_check(line: ServerLine) -> bool:
    """A dynamic server's health check starts only when enabled explicitly."""
    return "check" in line.args


__all__ = [
    "MapChange",
    "ParsedConfig",
    "RuntimePlan",
    "ServerLine",
    "Verdict",
    "backend_addresses",
    "config_binds",
    "has_check",
    "new_bind_addresses",
    "new_binds",
    "parse_config",
    "plan_map_changes",
    "plan_runtime_update",
    "runtime_safe",
    "server_weight",
    "unsupported_args",
]
