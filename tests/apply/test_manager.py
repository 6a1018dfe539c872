"""Managed HAProxy (servicerouter.apply.managed) and the Runtime API (servicerouter.apply.runtime_api), with a real HAProxy."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicerouter.apply.confdiff import RuntimePlan, ServerLine
from servicerouter.apply.managed import ManagedHAProxy, ManagedSettings, parse_show_proc
from servicerouter.apply.runtime_api import RuntimeAPI, RuntimeApplier, RuntimeUpdateError
from tests.harness import Backend, free_port, http_get, wait_until

SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
20582           master          2 [failed: 1]   0d00h00m25s     2.6.12
# workers
20692           worker          1               0d00h00m21s     2.6.12
# old workers
20585           worker          2               0d00h00m30s     2.6.12
# programs

"""


def test_parse_show_proc() -> None:
    info = parse_show_proc(SHOW_PROC)
    assert info is not None
    assert (info.master_pid, info.reloads, info.failed) == (20582, 2, 1)
    assert info.workers == (20692,) and info.old_workers == (20585,)
    assert parse_show_proc("Unknown command\n") is None
    plain = parse_show_proc(SHOW_PROC.replace(" [failed: 1]", ""))
    assert plain is not None and plain.failed == 0


def write_config(path: Path, sock: str, port: int, servers: list[tuple[str, int]],
                 extra: str = "") -> None:
    lines = "".join(f"  server {name} 127.0.0.1:{p} check inter 500\n" for name, p in servers)
    path.write_text(
        "global\n  daemon\n  master-worker\n  hard-stop-after 5s\n"
        f"  stats socket {sock} mode 600 level admin expose-fd listeners\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n"
        "  timeout server 10s\n"
        f"frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n"
        f"backend b\n  balance roundrobin\n{lines}{extra}")


@pytest.fixture
def managed(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., ManagedHAProxy]]:
    started: list[ManagedHAProxy] = []

    def make(**kw) -> ManagedHAProxy:
        settings = ManagedSettings(haproxy_bin=haproxy_bin, config_path=str(tmp_path / "h.cfg"),
                                   state_dir=str(tmp_path / "state"), watch_interval=0.2,
                                   reload_timeout=10.0, **kw)
        manager = ManagedHAProxy(settings)
        started.append(manager)
        return manager

    yield make
    for manager in started:
        manager.stop(kill_haproxy=True)


def names(port: int, count: int = 6) -> set[str]:
    return {http_get(f"http://127.0.0.1:{port}/").text.strip() for _ in range(count)}


@pytest.mark.e2e
def test_start_reload_confirm_restart_adopt(
    tmp_path: Path, managed: Callable[..., ManagedHAProxy],
    backend_factory: Callable[..., Backend],
) -> None:
    b1, b2 = backend_factory("b1"), backend_factory("b2")
    port = free_port()
    manager = managed()
    cfg = tmp_path / "h.cfg"
    write_config(cfg, manager.settings.runtime_socket, port, [("s1", b1.port)])
    restarts: list[int] = []
    manager.on_restart = lambda: restarts.append(1)
    manager.start()
    assert manager.alive() and not manager.adopted
    wait_until(lambda: names(port) == {"b1"}, 10)
    first = manager.show_proc()
    assert first is not None and len(first.workers) == 1

    write_config(cfg, manager.settings.runtime_socket, port, [("s2", b2.port)])
    result = manager.reload()
    assert result.ok and result.worker not in first.workers
    assert names(port) == {"b2"}

    cfg.write_text(cfg.read_text() + "  this is not haproxy\n")
    result = manager.reload()
    assert not result.ok and "refused" in result.message
    assert names(port) == {"b2"}  # the old worker keeps serving

    write_config(cfg, manager.settings.runtime_socket, port, [("s1", b1.port)])
    assert manager.reload().ok
    assert names(port) == {"b1"}
    assert manager.stats.reloads == 2 and manager.stats.failed_reloads == 1

    pid = manager.master_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarts, 10, message="watchdog did not restart HAProxy")
    assert manager.master_pid != pid and manager.stats.restarts == 1
    wait_until(lambda: names(port) == {"b1"}, 10)

    other = ManagedHAProxy(manager.settings)
    other.start()
    try:
        assert other.adopted and other.master_pid == manager.master_pid
        assert other.reload().ok
    finally:
        other.stop(kill_haproxy=False)
    assert manager.alive()


@pytest.mark.e2e
def test_failed_start_reports_haproxy_output(
    tmp_path: Path, managed: Callable[..., ManagedHAProxy]) -> None:
    from servicerouter.apply.managed import ManagerError

    manager = managed()
    (tmp_path / "h.cfg").write_text("global\n  nonsense-keyword\n")
    with pytest.raises(ManagerError, match="exited at start"):
        manager.start()


@pytest.mark.e2e
def test_bind_failures_are_named_in_reload_and_start_errors(
    tmp_path: Path, managed: Callable[..., ManagedHAProxy],
    backend_factory: Callable[..., Backend],
) -> None:
    """Every "cannot bind" alert reaches the caller (it picks the app to leave out)."""
    import socket

    from servicerouter.apply.haproxy import bind_failures
    from servicerouter.apply.managed import ManagerError

    b1 = backend_factory("b1")
    port = free_port()
    manager = managed()
    cfg = tmp_path / "h.cfg"
    write_config(cfg, manager.settings.runtime_socket, port, [("s1", b1.port)])
    manager.start()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        clash = f"frontend clash_{busy}\n  bind 127.0.0.1:{busy}\n  default_backend b\n"
        write_config(cfg, manager.settings.runtime_socket, port, [("s1", b1.port)], clash)
        result = manager.reload()
        assert not result.ok
        assert [(f.frontend, f.address) for f in bind_failures(result.message)] == [
            (f"clash_{busy}", f"127.0.0.1:{busy}")]
        assert names(port) == {"b1"}  # the old worker keeps serving
        manager.stop(kill_haproxy=True)
        fresh = managed()
        with pytest.raises(ManagerError) as failed:
            fresh.start()
        assert [f.frontend for f in bind_failures(str(failed.value))] == [f"clash_{busy}"]


def server_states(api: RuntimeAPI) -> dict[str, tuple[str, str]]:
    """name -> (address, admin state) from 'show servers state b'."""
    states = {}
    for line in api.command("show servers state b").splitlines()[2:]:
        words = line.split()
        if len(words) > 6:
            states[words[3]] = (words[4], words[6])
    return states


@pytest.mark.e2e
def test_runtime_applier_adds_drains_deletes_and_readdresses(
    tmp_path: Path, managed: Callable[..., ManagedHAProxy],
    backend_factory: Callable[..., Backend],
) -> None:
    b1, b2 = backend_factory("b1"), backend_factory("b2")
    port = free_port()
    manager = managed()
    write_config(tmp_path / "h.cfg", manager.settings.runtime_socket, port, [("s1", b1.port)])
    manager.start()
    api = RuntimeAPI(manager.settings.runtime_socket)
    assert api.available()
    applier = RuntimeApplier(api, drain_timeout=2.0, tick=0.05)
    applier.start()
    try:
        s1 = ServerLine("s1", f"127.0.0.1:{b1.port}", ("check", "inter", "500"))
        s2 = ServerLine("s2", f"127.0.0.1:{b2.port}", ("check", "inter", "500"))
        applier.apply(RuntimePlan(add=(("b", s2),)))
        wait_until(lambda: names(port, 8) == {"b1", "b2"}, 10)

        applier.apply(RuntimePlan(remove=(("b", s1),)))
        assert names(port, 8) == {"b2"}  # drained at once: no new traffic
        wait_until(lambda: "s1" not in server_states(api), 10, message="s1 not deleted")
        assert applier.stats.removed == 1 and applier.stats.draining == 0

        # removed then back before deletion: simply made ready again
        applier.tick = 60.0
        applier.apply(RuntimePlan(remove=(("b", s2),), add=(("b", s1),)))
        applier.apply(RuntimePlan(add=(("b", s2),)))
        assert server_states(api)["s2"][1] == "0"  # admin state: ready
        wait_until(lambda: names(port, 8) == {"b1", "b2"}, 10)

        moved = ServerLine("s2", f"127.0.0.2:{b2.port}", s2.args)
        applier.apply(RuntimePlan(readdress=(("b", moved),)))
        assert server_states(api)["s2"][0] == "127.0.0.2"

        with pytest.raises(RuntimeUpdateError, match="cookie"):
            applier.apply(RuntimePlan(add=(("b", ServerLine("s9", "127.0.0.1:9", ("cookie", "x"))),)))
    finally:
        applier.stop()


def test_runtime_applier_computes_dynamic_cookies_before_traffic() -> None:
    """A server added or moved in a dynamic-cookie backend gets its cookie
    ('enable dynamic-cookie backend') before it is enabled, so no reply lacks one."""

    class FakeAPI:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def command(self, text: str) -> str:
            self.sent.append(text)
            if text.startswith("add server"):
                return "New server registered.\n"
            if text.startswith("set server") and " addr " in text:
                return "IP changed from '1' to '2'\n"
            return "\n"

    api = FakeAPI()
    applier = RuntimeApplier(api)  # type: ignore[arg-type]
    added = ServerLine("s2", "127.0.0.1:2", ("check",))
    moved = ServerLine("s3", "127.0.0.3:3", ("check",))
    applier.apply(RuntimePlan(add=(("b", added),), readdress=(("b", moved),),
                              dynamic_cookie=("b",)))
    assert api.sent == [
        "set server b/s3 addr 127.0.0.3 port 3", "enable dynamic-cookie backend b",
        "add server b/s2 127.0.0.1:2 check", "enable dynamic-cookie backend b",
        "enable health b/s2", "enable server b/s2"]
    api.sent.clear()
    applier.apply(RuntimePlan(add=(("c", ServerLine("s4", "127.0.0.1:4", ())),)))
    assert not any("dynamic-cookie" in text for text in api.sent)


def test_deep_state_dirs_keep_socket_paths_short(tmp_path: Path) -> None:
    """HAProxy cannot bind a socket path past ~97 bytes: deep state dirs put sockets
    in a private temp dir of their own, the same one on every start."""
    from servicerouter.apply.managed import (
        MAX_SOCKET_PATH,
        ManagedSettings,
        ManagerError,
        _private_dir,
    )

    short = ManagedSettings("haproxy", "/etc/haproxy.cfg", "/var/lib/sr")
    assert short.master_socket == "/var/lib/sr/master.sock"
    deep = ManagedSettings("haproxy", "x.cfg", str(tmp_path / ("d" * 120)))
    assert len(deep.master_socket) <= MAX_SOCKET_PATH
    assert deep.socket_dir == ManagedSettings("haproxy", "y.cfg", deep.state_dir).socket_dir
    assert deep.runtime_socket.startswith(deep.socket_dir)
    _private_dir(deep.socket_dir)
    assert os.stat(deep.socket_dir).st_mode & 0o777 == 0o700
    os.chmod(deep.socket_dir, 0o777)
    with pytest.raises(ManagerError, match="not a private directory"):
        _private_dir(deep.socket_dir)
    os.rmdir(deep.socket_dir)
