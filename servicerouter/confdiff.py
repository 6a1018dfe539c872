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
change a reload instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class RuntimePlan:
    """Server changes to apply live, per backend; empty when only order changed."""

    add: tuple[tuple[str, ServerLine], ...] = ()
    remove: tuple[tuple[str, ServerLine], ...] = ()
    readdress: tuple[tuple[str, ServerLine], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.readdress)

    @property
    def size(self) -> int:
        return len(self.add) + len(self.remove) + len(self.readdress)


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
    backend: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        words = stripped.split()
        if words and not line[:1].isspace() and words[0] in _SECTION_KEYWORDS:
            backend = words[1] if words[0] == "backend" and len(words) > 1 else None
            if backend is not None:
                servers.setdefault(backend, {})
        elif backend is not None and words:
            if words[0] == "server" and len(words) >= 3:
                entry = ServerLine(words[1], words[2], tuple(words[3:]))
                if entry.name in servers[backend]:  # a name twice: let HAProxy decide
                    skeleton.append(line)
                else:
                    servers[backend][entry.name] = entry
                continue
            if words[0] == "default-server":
                with_default.add(backend)
        skeleton.append(line)
    return ParsedConfig(tuple(skeleton), servers, frozenset(with_default))


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
    for backend, servers in new.servers.items():
        before = old.servers.get(backend, {})
        for name, line in servers.items():
            previous = before.get(name)
            if previous is None:
                if backend in new.default_server:
                    return Verdict(None, f"backend {backend} has default-server settings")
                bad = unsupported_args(line.args)
                if bad:
                    return Verdict(None, f"server {backend}/{name}: {' '.join(bad)} "
                                         "cannot be set on a dynamic server")
                add.append((backend, line))
            elif previous.args != line.args:
                return Verdict(None, f"server {backend}/{name} options changed")
            elif previous.address != line.address:
                if previous.port != line.port:
                    return Verdict(None, f"server {backend}/{name} port changed")
                readdress.append((backend, line))
        for name, line in before.items():
            if name not in servers:
                remove.append((backend, line))
    return Verdict(RuntimePlan(tuple(add), tuple(remove), tuple(readdress)))


def has_check(line: ServerLine) -> bool:
    """A dynamic server's health check starts only when enabled explicitly."""
    return "check" in line.args


__all__ = [
    "ParsedConfig",
    "RuntimePlan",
    "ServerLine",
    "Verdict",
    "has_check",
    "parse_config",
    "plan_runtime_update",
    "unsupported_args",
]
