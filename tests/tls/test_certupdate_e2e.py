"""End to end: renewed certificates go live through HAProxy's Runtime API, without a reload.

A real servicerouter (--sse --manage-haproxy) serves a crt-list bundle and a port's own
HAPROXY_0_SSL_CERT file; the files are replaced on disk with renewed certificates for
the same names, a SIGHUP resyncs, and a TLS client must see the new serials while the
HAProxy worker stays the same.  Changed names, a refused commit and a router without a
Runtime API must each end in a reload that serves the new certificate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from servicerouter.apply.managed import ManagedHAProxy, ManagedSettings, parse_show_proc
from servicerouter.apply.runtime_api import RuntimeAPI, RuntimeApplier, unix_command
from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine import live
from servicerouter.engine.live import LiveRouter, LiveSettings
from servicerouter.engine.runner import Router, RouterSettings, default_state_dir
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import SnapshotSource
from servicerouter.tls import bundles as certs
from servicerouter.tls.swap import CertUpdater
from tests.engine.live_router import stop_router_process
from tests.harness import free_port, http_get, wait_until
from tests.paths import REPO

pytestmark = pytest.mark.e2e



def new_bundle(name: str) -> tuple[str, int]:
    """A fresh self-signed bundle for ``name`` (new key, new serial) and its serial."""
    pem = certs.generate_self_signed(name)
    return pem, x509.load_pem_x509_certificate(pem.encode()).serial_number


def replace_file(path: Path, text: str) -> None:
    """As certbot and friends do: write beside, rename over."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    os.replace(tmp, path)


def served_serial(port: int, sni: str | None) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def workers(state_dir: Path) -> tuple[int, ...]:
    """The master's current workers (its CLI may refuse a connection now and then)."""

    def ask() -> tuple[int, ...] | None:
        socket_path = ManagedSettings("haproxy", "", str(state_dir)).master_socket
        info = parse_show_proc(unix_command(socket_path, "show proc"))
        return info.workers if info is not None else None

    return wait_until(ask, 10, message="master CLI does not answer show proc")


# --------------------------------------------------------------------------- the real process


@dataclass
class RouterProcess:
    proc: subprocess.Popen[bytes]
    status_port: int
    https_port: int
    workdir: Path

    def status(self) -> dict[str, Any]:
        return json.loads(http_get(f"http://127.0.0.1:{self.status_port}/status").text)

    def settled(self, quiet: float = 0.5, timeout: float = 15) -> None:
        """Start-up done: the event stream connected and no sync for ``quiet`` seconds
        (its resync would otherwise pick up files a test changes next)."""
        seen: list[tuple[int, float]] = []

        def idle() -> bool:
            status = self.status()
            stream = status["marathon"].get("event_stream") or {}
            now = time.monotonic()
            if not seen or seen[-1][0] != status["syncs"]:
                seen.append((status["syncs"], now))
            return bool(stream.get("connected")) and now - seen[-1][1] >= quiet

        wait_until(idle, timeout)

    def metric(self, name: str, labels: str = "") -> float:
        text = http_get(f"http://127.0.0.1:{self.status_port}/metrics").text
        found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def log(self) -> str:
        return (self.workdir / "servicerouter.log").read_text(errors="replace")


@pytest.fixture
def router_process(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def start(emulator: MarathonEmulator, certs_dir: Path) -> RouterProcess:
        workdir = tmp_path / "router"
        workdir.mkdir()
        status_port, https_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "servicerouter", "-m", emulator.url, "--sse",
            "--manage-haproxy", "--haproxy-stop-on-exit", "--haproxy-bin", haproxy_bin,
            "--haproxy-config", str(workdir / "haproxy.cfg"), "--group", "*",
            "--syslog-socket", "/dev/null", "--bind-addr", "127.0.0.1",
            "--http-port", str(free_port()), "--https-port", str(https_port),
            "--appid-port", str(free_port()), "--stats-port", str(free_port()),
            "--status-listen", str(status_port), "--min-wait", "0.05", "--max-wait", "0.5",
            "--hard-stop-after", "5s", "--certs-dir", str(certs_dir), "--log-level", "debug",
        ]
        with open(workdir / "servicerouter.log", "wb") as log_file:
            proc = subprocess.Popen(argv, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONPATH=str(REPO)))
        router = RouterProcess(proc, status_port, https_port, workdir)
        started.append(router)
        wait_until(lambda: router.status()["last_apply"] in ("reload", "unchanged")
                   and router.status()["haproxy"]["running"], 30,
                   message="servicerouter did not come up")
        return router

    yield start
    for router in started:
        stop_router_process(router.proc, router.workdir)


def test_renewed_certificates_swap_live_and_new_names_reload(
        tmp_path: Path, router_process: Callable[..., RouterProcess]) -> None:
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    a_v1, a_serial1 = new_bundle("a.example.com")
    replace_file(certs_dir / "a.pem", a_v1)
    port_file = tmp_path / "port.pem"  # a port's own certificate, served as it is
    p_v1, p_serial1 = new_bundle("p.example.com")
    replace_file(port_file, p_v1)
    secure_port = free_port()
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        emu.put_app({"id": "/secure", "portDefinitions": [{"port": secure_port}],
                     "labels": {"HAPROXY_0_SSL_CERT": str(port_file)}})
        emu.add_task("/secure", "127.0.0.1", [free_port()])
        router = router_process(emu, certs_dir)
        https = router.https_port
        wait_until(lambda: served_serial(https, "a.example.com") == a_serial1, 10)
        assert served_serial(secure_port, None) == p_serial1
        config = (router.workdir / "haproxy.cfg").read_text()
        assert f"ssl crt {port_file}" in config
        state_dir = Path(default_state_dir(str(router.workdir / "haproxy.cfg")))
        router.settled()
        worker_before = workers(state_dir)
        reloads_before = router.metric("servicerouter_reloads_total", '{result="ok"}')

        # renewed: same names, new keys and serials
        a_v2, a_serial2 = new_bundle("a.example.com")
        p_v2, p_serial2 = new_bundle("p.example.com")
        replace_file(certs_dir / "a.pem", a_v2)
        replace_file(port_file, p_v2)
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: served_serial(https, "a.example.com") == a_serial2, 15,
                   message="renewed crt-list certificate not served")
        wait_until(lambda: served_serial(secure_port, None) == p_serial2, 15,
                   message="renewed port certificate not served")
        wait_until(lambda: router.status()["certificate_updates"] == 3, 10)
        status = router.status()
        assert status["last_apply"] == "runtime" and status["last_certificate_update"]
        assert (router.workdir / "haproxy.cfg").read_text() == config
        assert router.metric("servicerouter_reloads_total", '{result="ok"}') == reloads_before
        assert workers(state_dir) == worker_before
        assert router.metric("servicerouter_cert_updates_total", '{result="ok"}') == 3
        # the files on disk hold what HAProxy serves: a later reload serves the same
        bundle_files = list((state_dir / "bundles").glob("a.example.com--*.pem"))
        assert [f.read_text() for f in bundle_files] == [
            certs.parse_bundle(a_v2, "a.pem", datetime.now(UTC)).pem]

        # other names: the crt-list changes, only a reload applies it
        www_v3, www_serial3 = new_bundle("www.a.example.com")
        replace_file(certs_dir / "a.pem", www_v3)
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: served_serial(https, "www.a.example.com") == www_serial3, 15,
                   message="certificate with new names not served")
        wait_until(lambda: router.metric("servicerouter_reloads_total", '{result="ok"}')
                   == reloads_before + 1, 10, message="names change did not reload")
        assert workers(state_dir) != worker_before
        assert router.status()["certificate_updates"] == 3
        assert router.log().count("swapped through the Runtime API without reload") == 3


# --------------------------------------------------------------------------- fallbacks, in-process


class RefusingCommit:
    """The real Runtime API, except that HAProxy 'refuses' every commit."""

    def __init__(self, api: RuntimeAPI) -> None:
        self.api = api
        self.sent: list[str] = []
        self.answers: list[str] = []

    def command(self, command: str) -> str:
        self.sent.append(command.split("\n", 1)[0])
        if command.startswith("commit ssl cert"):
            answer = "Can't commit: refused for this test!\n"
        else:
            answer = self.api.command(command)
        self.answers.append(answer)
        return answer


@dataclass
class Rig:
    live: LiveRouter
    managed: ManagedHAProxy
    https_port: int
    certs_dir: Path

    def reloads(self) -> float:
        return self.live.metrics.reloads.value(result="ok")


@pytest.fixture
def managed_rig(tmp_path: Path, haproxy_bin: str) -> Iterator[Callable[..., Rig]]:
    made: list[ManagedHAProxy] = []

    def make(updater: Callable[[RuntimeAPI], Any] | None) -> Rig:
        snapshot, certs_dir = tmp_path / "apps.json", tmp_path / "certs"
        snapshot.write_text(json.dumps({"apps": []}))
        certs_dir.mkdir()
        state_dir, config = tmp_path / "state", tmp_path / "haproxy.cfg"
        managed = ManagedHAProxy(ManagedSettings(haproxy_bin, str(config), str(state_dir),
                                                 stop_on_exit=True))
        made.append(managed)
        https_port = free_port()
        options = RenderOptions(
            bind_addr="127.0.0.1", http_port=free_port(), https_port=https_port,
            appid_port=free_port(), stats_port=free_port(), master_worker=True,
            runtime_socket=managed.settings.runtime_socket, hard_stop_after="5s")
        router = Router(SnapshotSource(f"file:{snapshot}"), load_fragments([]),
                        RouterSettings(config_path=str(config), haproxy_bin=haproxy_bin,
                                       render_options=options, state_dir=str(state_dir),
                                       certs_dir=str(certs_dir)))
        api = RuntimeAPI(managed.settings.runtime_socket)
        engine = LiveRouter(router, reloader=managed, runtime=RuntimeApplier(api),
                            manager=managed, settings=LiveSettings(),
                            cert_updater=CertUpdater(updater(api)) if updater else None)
        return Rig(engine, managed, https_port, certs_dir)

    yield make
    for managed in made:
        managed.stop(kill_haproxy=True)


@pytest.mark.parametrize("runtime", ["refused", "absent"])
def test_cert_change_falls_back_to_a_reload(managed_rig: Callable[..., Rig], runtime: str) -> None:
    wrappers: list[RefusingCommit] = []

    def refusing(api: RuntimeAPI) -> RefusingCommit:
        wrappers.append(RefusingCommit(api))
        return wrappers[-1]

    rig = managed_rig(refusing if runtime == "refused" else None)
    v1, serial1 = new_bundle("a.example.com")
    replace_file(rig.certs_dir / "a.pem", v1)
    assert live._start_managed(rig.live, rig.managed)
    assert served_serial(rig.https_port, "a.example.com") == serial1
    before = rig.reloads()

    v2, serial2 = new_bundle("a.example.com")
    replace_file(rig.certs_dir / "a.pem", v2)
    assert rig.live.step()
    assert rig.live.state.last_apply == "reload" and rig.reloads() == before + 1
    wait_until(lambda: served_serial(rig.https_port, "a.example.com") == serial2, 10)
    if runtime == "refused":
        refusing_api = wrappers[0]
        assert [c.split()[0] for c in refusing_api.sent] == ["show", "set", "commit", "abort"]
        assert refusing_api.answers[1].startswith("Transaction created")  # a real set...
        assert refusing_api.answers[3].startswith("Transaction aborted")  # ...really dropped
        assert rig.live.metrics.cert_updates.value(result="failed") == 1
    assert rig.live.metrics.cert_updates.value(result="ok") == 0

    assert rig.live.step()  # converged: nothing left to do
    assert rig.live.state.last_apply == "unchanged" and rig.reloads() == before + 1
