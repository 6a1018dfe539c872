"""The engine's reload step as a one-shot meets it: a failed reload leaves the file as it was.

(These moved here from tests/apply when writing, checking and reloading stopped being
one function: the engine puts them in order for every mode.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from servicerouter.apply import mapfiles
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.fragments import load_fragments
from servicerouter.render.options import RenderOptions
from tests.harness import free_port


class _Snapshot:
    """A Marathon that answers what it was last given."""

    def __init__(self, apps: list[dict]) -> None:
        self.body = json.dumps({"apps": apps}).encode()

    def fetch_apps_body(self) -> bytes:
        return self.body


def _app(vhosts: str = "web.test") -> dict:
    return {"id": "/web", "ports": [10001], "labels": {"HAPROXY_0_VHOST": vhosts}, "env": {},
            "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]}


def _router(tmp_path: Path, reload: tuple[str, ...], haproxy_bin: str) -> Router:
    cfg = tmp_path / "haproxy.cfg"
    options = RenderOptions(bind_addr="127.0.0.1", http_port=free_port(),
                            https_port=free_port(), appid_port=free_port(),
                            stats_port=free_port(), map_dir=mapfiles.default_map_dir(str(cfg)))
    settings = RouterSettings(config_path=str(cfg), groups=("*",), haproxy_bin=haproxy_bin,
                              reload=reload, render_options=options,
                              state_dir=str(tmp_path / "state"), certs_dir=None)
    return Router(_Snapshot([_app()]), load_fragments(), settings, resolver=lambda h: h)


def test_a_failed_reload_puts_back_the_old_config_with_its_mode_and_maps(
        tmp_path: Path, haproxy_bin: str) -> None:
    router = _router(tmp_path, ("true",), haproxy_bin)
    assert router.sync().reloaded
    cfg = tmp_path / "haproxy.cfg"
    os.chmod(cfg, 0o640)
    good = cfg.read_bytes()
    maps = {p.name: p.read_text() for p in Path(router.settings.render_options.map_dir
                                                or "").iterdir()}
    assert "web.test/ web_10001\n" in maps.values()

    router.source = _Snapshot([_app("web.test,new.test")])
    router.settings = RouterSettings(**{**router.settings.__dict__, "reload": (
        "sh", "-c", "echo 'cannot bind socket [0.0.0.0:80]' >&2; exit 3")})
    failed = router.sync()
    assert not failed.ok and not failed.reloaded
    assert "non-zero: 3" in (failed.error or "") and "cannot bind socket" in failed.error
    assert cfg.read_bytes() == good and oct(cfg.stat().st_mode & 0o777) == oct(0o640)
    now = {p.name: p.read_text() for p in Path(router.settings.render_options.map_dir
                                               or "").iterdir()}
    assert now == maps, "the maps the running config reads are back too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy.cfg", "haproxy.cfg.maps",
                                                         "state"]


def test_a_missing_reload_command_is_a_failed_reload(tmp_path: Path, haproxy_bin: str) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_bytes(b"previous\n")
    router = _router(tmp_path, (str(tmp_path / "no-such-reload"),), haproxy_bin)
    result = router.sync()
    assert not result.ok and "no-such-reload" in (result.error or "")
    assert cfg.read_bytes() == b"previous\n"


def test_a_one_shot_that_only_writes_keeps_an_app_whose_port_is_busy_here(
        tmp_path: Path, haproxy_bin: str) -> None:
    """No reload command (the bridge prints a config for another host): nothing binds
    here, so a port held on this host says nothing about the config."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        router = _router(tmp_path, (), haproxy_bin)
        app = {**_app(), "ports": [port]}
        router.source = _Snapshot([app])
        result = router.sync()
        assert result.ok and result.changed and not result.reloaded
        assert f"backend web_{port}\n" in (tmp_path / "haproxy.cfg").read_text()
