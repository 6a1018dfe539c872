"""The live engine as a process: its state directory, dry mode and --listening.

``python -m servicerouter`` beside its config, twice; ``--dry`` prints instead of
applying; ``--listening`` takes callbacks, resyncs on SIGHUP and unsubscribes on SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.engine.live import LiveRouter
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import MarathonClient
from tests.engine.live_rig import (
    APPS_FETCH,
    FakeReloader,
    app,
)
from tests.harness import wait_until
from tests.paths import REPO


def test_default_state_dir_never_shadows_the_package(tmp_path: Path) -> None:

    from servicerouter.engine.runner import default_state_dir

    config = tmp_path / "haproxy.cfg"
    assert default_state_dir(str(config)) == str(tmp_path / ".servicerouter")
    legacy = tmp_path / "servicerouter"  # an older build's state: used as it is
    legacy.mkdir()
    (legacy / "ip-per-task-ports.json").write_text("{}")
    assert default_state_dir(str(config)) == str(legacy)
    assert (legacy / "ip-per-task-ports.json").read_text() == "{}"  # nothing moved
    (tmp_path / ".servicerouter").mkdir()  # the new one, once there, wins
    assert default_state_dir(str(config)) == str(tmp_path / ".servicerouter")
    other = tmp_path / "other"
    (other / "servicerouter").mkdir(parents=True)  # not state (no state files): left alone
    assert default_state_dir(str(other / "h.cfg")) == str(other / ".servicerouter")
    assert (other / "servicerouter").is_dir()


def test_python_m_servicerouter_starts_twice_beside_its_config(tmp_path: Path,
                                                               haproxy_bin: str) -> None:
    """The state directory beside the config must not shadow the package (cwd is on sys.path)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    root = REPO
    probe = subprocess.run([sys.executable, "-c", "import servicerouter.cli.main"], cwd=tmp_path,
                           env=env, capture_output=True, check=False)
    if probe.returncode != 0:  # not installed: run it from the checkout instead
        env["PYTHONPATH"] = str(root)
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        argv = [sys.executable, "-m", "servicerouter", "-m", emu.url,
                "--haproxy-config", "haproxy.cfg", "--command", "true", "--group", "*",
                "--syslog-socket", "/dev/null", "--haproxy-bin", haproxy_bin,
                "--certs-dir", str(tmp_path / "none")]
        for run in range(2):
            proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            assert proc.returncode == 0, (run, proc.stderr[-2000:])
    assert (tmp_path / ".servicerouter" / "default.pem").exists()
    assert not (tmp_path / "servicerouter").exists()


def test_dry_mode_prints_instead_of_applying(tmp_path: Path, haproxy_bin: str, capsys) -> None:
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        settings = RouterSettings(config_path=str(tmp_path / "h.cfg"), groups=("*",), dry=True,
                                  haproxy_bin=haproxy_bin, state_dir=str(tmp_path / "s"),
                                  certs_dir=None)
        live = LiveRouter(Router(MarathonClient([emu.url]), load_fragments([]), settings),
                          reloader=FakeReloader())
        live.request_resync("test")
        assert live.step()
        assert "127.0.0.1:31000" in capsys.readouterr().out
        assert not (tmp_path / "h.cfg").exists()


def test_listening_mode_signals_and_clean_exit(tmp_path: Path, haproxy_bin: str) -> None:
    """--listening through the live loop: callbacks, SIGHUP resync, SIGTERM unsubscribes."""
    import os
    import signal
    import subprocess
    import sys

    from tests.harness import free_port

    root = REPO
    with MarathonEmulator() as emu:
        emu.put_app(app("/web", 10001))
        emu.add_task("/web", "127.0.0.1", [31000])
        callback = f"http://127.0.0.1:{free_port()}/callback"
        config = tmp_path / "haproxy.cfg"
        argv = [sys.executable, "-m", "servicerouter", "-m", emu.url, "--listening", callback,
                "--listening-addr", "127.0.0.1", "--haproxy-config", str(config),
                "--command", "true", "--group", "*", "--syslog-socket", "/dev/null",
                "--haproxy-bin", haproxy_bin, "--min-wait", "0.02", "--max-wait", "0.2",
                "--certs-dir", str(tmp_path / "none")]
        with open(tmp_path / "servicerouter.log", "wb") as log_file:
            proc = subprocess.Popen(argv, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONPATH=str(root)))
        try:
            wait_until(lambda: emu.subscriptions == [callback], 15)
            wait_until(lambda: config.exists() and "127.0.0.1:31000" in config.read_text(), 15)
            fetches = sum(1 for _m, t in emu.request_log if t == APPS_FETCH)
            emu.add_task("/web", "127.0.0.1", [31001])
            wait_until(lambda: "127.0.0.1:31001" in config.read_text(), 15)
            assert sum(1 for _m, t in emu.request_log if t == APPS_FETCH) == fetches
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: sum(1 for _m, t in emu.request_log if t == APPS_FETCH)
                       == fetches + 1, 15)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert emu.subscriptions == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
