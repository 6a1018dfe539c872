"""A cold one-shot's self-signed default certificate is made in a forked child, beside
the sync (servicerouter.tls.default_cert), and the run itself never loads cryptography.

Each case runs in a fresh interpreter: the fork is only taken by a process running
one thread, which a test process (with its fixtures' servers) need not be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from servicerouter.tls.bundles import parse_bundle
from tests.paths import MARATHON_FIXTURES, REPO


def run_python(code: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


def test_the_child_makes_a_valid_private_certificate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = run_python(
        "import sys\n"
        "from servicerouter.tls import default_cert\n"
        f"job = default_cert.start({str(state)!r})\n"
        "print(job is not None, job.wait(), 'cryptography' in sys.modules)\n", tmp_path)
    assert out == f"True {state / 'default.pem'} False"
    pem = state / "default.pem"
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    bundle = parse_bundle(pem.read_text(), str(pem), datetime.now(UTC))
    assert bundle.names == ("servicerouter.invalid",)


def test_no_child_when_the_file_exists_or_threads_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "default.pem").write_text("whatever is there: the certificates stage checks it")
    other = tmp_path / "other"
    out = run_python(
        "import threading, time\n"
        "from servicerouter.tls import default_cert\n"
        f"print(default_cert.start({str(state)!r}))\n"
        "threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
        f"print(default_cert.start({str(other)!r}))\n", tmp_path)
    assert out == "None\nNone"
    assert not other.exists()


def test_a_failing_child_leaves_it_to_the_certificates_stage(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the state directory should be")
    out = run_python(
        "from servicerouter.tls import default_cert\n"
        f"job = default_cert.start({str(blocked / 'state')!r})\n"
        "print(job.wait(), job.wait())\n", tmp_path)
    assert out == "None None"


def test_a_cold_one_shot_serves_the_childs_certificate_without_cryptography(
        tmp_path: Path) -> None:
    snapshot = MARATHON_FIXTURES / "marathon-1.5-apps-embed-tasks.json"
    config, state = tmp_path / "haproxy.cfg", tmp_path / "state"
    out = run_python(
        "import sys\n"
        "from servicerouter.cli.main import main\n"
        f"status = main(['-m', 'file:{snapshot}', '--haproxy-config', '{config}',\n"
        f"               '--group', '*', '--command', 'true', '--syslog-socket', '/dev/null',\n"
        f"               '--state-dir', '{state}', '--skip-validation'])\n"
        "print(status, [m for m in sys.modules if m.split('.')[0] == 'cryptography'])\n",
        tmp_path)
    assert out == "0 []"
    pem = state / "default.pem"
    (crt_list,) = state.glob("crt-list-*")  # the HTTPS frontend's, the default first
    assert f"ssl crt-list {crt_list}" in config.read_text()
    assert crt_list.read_text().split()[0] == str(pem)
    parse_bundle(pem.read_text(), str(pem), datetime.now(UTC))  # a usable certificate


def test_no_certificate_is_made_when_marathon_cannot_be_read(tmp_path: Path) -> None:
    config, state = tmp_path / "haproxy.cfg", tmp_path / "state"
    out = run_python(
        "from servicerouter.cli.main import main\n"
        f"print(main(['-m', 'file:{tmp_path / 'missing.json'}', '--haproxy-config', '{config}',\n"
        f"            '--group', '*', '--command', 'true', '--syslog-socket', '/dev/null',\n"
        f"            '--state-dir', '{state}', '--skip-validation']))\n", tmp_path)
    assert out == "1"
    assert not (state / "default.pem").exists()
