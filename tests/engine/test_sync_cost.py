"""What a sync costs when little or nothing changed, and the fast paths behind it.

A sync whose config equals the file on disk must not write or reload; the
speed-ups (paused garbage collection, cached server-name cleanup, the Jinja2
render shortcut) must not change a single byte of output.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.generate import dumps_state, generate_state
from servicerouter.engine.runner import Router, RouterSettings, gc_paused
from servicerouter.model.services import Server, clean_name
from servicerouter.render.fragment_registry import FRAGMENTS_BY_NAME
from servicerouter.render.fragments import compile_fragment, load_fragments
from servicerouter.source.marathon import SnapshotSource


def _router(tmp_path: Path, snapshot: Path) -> tuple[Router, Path, Path]:
    config = tmp_path / "haproxy.cfg"
    marker = tmp_path / "reloads"
    reload_cmd = (sys.executable, "-c",
                  f"open({str(marker)!r}, 'a').write('reload\\n')")
    settings = RouterSettings(config_path=str(config), groups=("*",), validate=False,
                              reload=reload_cmd, state_dir=str(tmp_path / "state"),
                              certs_dir=None)
    return Router(SnapshotSource(f"file:{snapshot}"), load_fragments(), settings), config, marker


def _reloads(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_unchanged_sync_writes_nothing_and_does_not_reload(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    state = generate_state(30, 2)
    snapshot.write_bytes(dumps_state(state))
    router, config, marker = _router(tmp_path, snapshot)

    first = router.sync()
    assert first.ok and first.changed and first.reloaded
    assert _reloads(marker) == 1
    before = os.stat(config)

    again = router.sync()
    assert again.ok and not again.changed and not again.reloaded
    after = os.stat(config)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _reloads(marker) == 1
    assert not list(tmp_path.glob(".haproxy.cfg.*")), "no temporary file left behind"

    # One more task: written once and reloaded once.
    state["apps"][0]["tasks"].append(dict(state["apps"][0]["tasks"][0], id="extra.1",
                                          host="10.250.0.1"))
    snapshot.write_bytes(json.dumps(state).encode())
    changed = router.sync()
    assert changed.ok and changed.changed and changed.reloaded
    assert _reloads(marker) == 2
    assert "10.250.0.1:" in config.read_text()


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "a collector the caller disabled stays disabled"
    finally:
        gc.enable()


def test_sync_leaves_the_collector_enabled(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_bytes(dumps_state(generate_state(5, 1)))
    router, _config, _marker = _router(tmp_path, snapshot)
    assert router.sync().ok
    assert gc.isenabled()


_HOSTS = st.from_regex(r"[A-Za-z0-9_.:\[\]-]{1,40}", fullmatch=True)


@given(host=_HOSTS, port=st.integers(min_value=1, max_value=65535))
def test_server_name_is_servicerouter_cleanup(host: str, port: int) -> None:
    server = Server(host, "10.0.0.1", port)
    assert server.name == clean_name(f"{host}_{port}")


def test_jinja_fragment_renders_like_jinja(tmp_path: Path) -> None:
    """The render shortcut keeps Jinja2's globals, filters and error behaviour."""
    spec = FRAGMENTS_BY_NAME["HAPROXY_HTTP_FRONTEND_ACL"]
    text = ("{% for i in range(2) %}  acl h{{ i }}_{{ cleanedUpHostname }} hdr(host) "
            "-i {{ hostname|lower }}\n{% endfor %}{% set b = backend %}  use_backend {{ b }}\n")
    fragment = compile_fragment(spec, text, "test.j2", jinja=True)
    values = {"cleanedUpHostname": "a_example_com", "hostname": "A.example.com",
              "backend": "app_80", "appId": "/app"}
    expected = fragment._template.render(values)
    assert fragment.render(values) == expected
    assert fragment.render(values) == expected, "rendering twice gives the same text"
    assert values == {"cleanedUpHostname": "a_example_com", "hostname": "A.example.com",
                      "backend": "app_80", "appId": "/app"}, "values are not modified"

    constant = compile_fragment(spec, "{# only a comment #}\n  # static\n", "c.j2", jinja=True)
    assert constant.render(values) == "  # static\n"

    from jinja2.exceptions import UndefinedError

    broken = compile_fragment(spec, "{{ hostname.nope.deeper }}", "b.j2", jinja=True)
    with pytest.raises(UndefinedError):
        broken.render(values)


def test_sandbox_shortcut_keeps_the_sandbox_rules() -> None:
    """Our frozen values read fast; underscores and mutating methods stay refused."""
    from jinja2.exceptions import SecurityError

    from servicerouter.model.labels import PortSettings
    from servicerouter.render.config import RenderOptions

    spec = FRAGMENTS_BY_NAME["HAPROXY_BACKEND_HEAD"]
    settings = PortSettings(sticky=True)
    ok = compile_fragment(spec, "{{ service.sticky }} {{ options.reserved_ports()[0] }} "
                                "{{ service.nope is defined }}", "ok.j2", jinja=True)
    assert ok.render({"service": settings, "options": RenderOptions(), "backend": "b",
                      "mode": "tcp"}) == "True 80 False"
    for text in ("{{ service.__class__ }}", "{{ service.__slots__ }}",
                 "{{ options.__init__.__globals__ }}", "{{ labels.clear() }}"):
        fragment = compile_fragment(spec, text, "bad.j2", jinja=True)
        with pytest.raises(SecurityError):
            fragment.render({"service": settings, "options": RenderOptions(),
                             "labels": {"a": "b"}, "backend": "b", "mode": "tcp"})


def test_gc_paused_with_collect_frees_a_cycle_left_by_a_sync() -> None:
    """Back-to-back syncs freeze what they leave; ``collect`` is how its cycles still go."""
    import weakref

    class Node:
        pass

    with gc_paused():
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        ref = weakref.ref(node)
        del node
    with gc_paused():  # thawed, then frozen again: nothing collects it in between
        pass
    assert ref() is not None
    with gc_paused(collect=True):
        pass
    assert ref() is None
