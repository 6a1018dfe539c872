"""A backend's server lines rendered in one go (compile_server_block) are the per-line text.

servicerouter.render.lines renders the server fragment once per server; a legacy server
fragment of plain fields is now compiled into one list comprehension per backend.  These
tests render random servers both ways, with the default, servicerouter.py's and odd
fragment texts, and compare the bytes (weighted servers go back to the per-line loop).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.model.values import Server, clean_host, clean_name
from servicerouter.render.format_compile import compile_server_block
from servicerouter.render.fragment_registry import FRAGMENTS as SPECS
from servicerouter.render.fragments import compile_fragment, load_fragments
from servicerouter.render.lines import render_servers
from tests.paths import LEGACY_TEMPLATES

SPEC = {spec.name: spec for spec in SPECS}["HAPROXY_BACKEND_SERVER_OPTIONS"]
TEXTS = [
    load_fragments()["HAPROXY_BACKEND_SERVER_OPTIONS"].text,
    (LEGACY_TEMPLATES / "HAPROXY_BACKEND_SERVER_OPTIONS").read_text(),
    "  server {serverName!r} {host:>20}:{port:06d}{healthCheckOptions!s}{cookieOptions}\n",
    "{serverName}{serverName}",
    "no fields at all\n",
]

hosts = st.one_of(
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 255)] * 4),
    st.sampled_from(["node-1.example", "...", "10.0.0.1_x", "١٢.٣", "²", "a b", "", "Ü.1"]),
    st.text(alphabet="0123456789._-aZ:ü²#", max_size=12),
)
servers = st.lists(st.builds(
    lambda host, port, draining, task: Server(host, host, port, task, draining),
    hosts, st.one_of(st.integers(1, 65535), st.sampled_from(["8080", "x.y"])),
    st.booleans(), st.text(max_size=4)), max_size=12)


def per_line(text: str, servers: list[Server], check_text: str) -> str:
    """What render_servers wrote for each server before (one render per line)."""
    lines = []
    for host, ipv4, port, _task, draining in servers:
        name = f"{clean_host(host)}_{port}" if type(port) is int else clean_name(f"{host}_{port}")
        lines.append(text.format(serverName=name, host=host, host_ipv4=ipv4, port=port,
                                 cookieOptions="",
                                 healthCheckOptions=check_text + " weight 0" if draining
                                 else check_text))
    return "".join(lines)


@settings(max_examples=300, deadline=None)
@given(servers=servers, text=st.sampled_from(TEXTS),
       check_text=st.sampled_from(["", " check inter 5s", " {x}"]))
def test_a_block_is_the_lines_one_by_one(servers: list[Server], text: str,
                                         check_text: str) -> None:
    block = compile_server_block(text)
    assert block is not None
    try:
        expected: Any = per_line(text, servers, check_text)
    except ValueError as err:  # {port:06d} of a str port: the block raises as well
        expected = type(err)
    try:
        got: Any = block(servers, check_text, check_text + " weight 0")
    except ValueError as err:
        got = type(err)
    assert got == expected


def test_fields_outside_the_server_placeholders_are_not_compiled() -> None:
    assert compile_server_block("{serverName} {nope}") is None
    assert compile_server_block("{host[0]}") is None
    assert compile_server_block("{port:{width}}") is None


@settings(max_examples=100, deadline=None)
@given(servers=servers, text=st.sampled_from(TEXTS[:2]),
       weight=st.one_of(st.none(), st.integers(0, 256)))
def test_render_servers_writes_the_same_with_and_without_the_block(
        servers: list[Server], text: str, weight: int | None) -> None:
    """Also with a weighted server (a deployment group's), which the block leaves to the loop."""
    if weight is not None and servers:
        first = servers[0]
        servers = [Server(first.host, first.ipv4, first.port, "w", first.draining, weight),
                   *servers[1:]]
    fragment = compile_fragment(SPEC, text, "t", jinja=False)
    assert fragment.render_block is not None
    service = _Service(tuple(servers))
    outputs = []
    for block in (fragment.render_block, None):
        fragment.render_block = block
        out: list[str] = []
        try:
            render_servers(service, {}, fragment, None, out, {})  # type: ignore[arg-type]
        except ValueError as err:
            out = [type(err).__name__]
        outputs.append("".join(out))
    assert outputs[0] == outputs[1]


class _Settings:
    sticky = False


class _Service:
    """What render_servers reads of a service without health checks."""

    settings = _Settings()
    health_check = None

    def __init__(self, servers: tuple[Server, ...]) -> None:
        self.servers = servers
