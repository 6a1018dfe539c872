"""The README's two commands (scripts/test, scripts/demo) and their virtualenv logic.

The scripts run here in a copy of the repository's packaging files with fake
``python3``, ``haproxy``, ``apt-get`` and ``sudo`` first on PATH: each fake logs
how it was called, so the tests see which Python ran what without building a
real virtualenv (that is shown by running the scripts themselves; see README).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

REAL_PYTHON = sys.executable

FAKE_BASE_PYTHON = """#!/bin/sh
# A base python3: fakes `-m venv` (fails while $FAKE/venv-broken exists), runs the rest.
case "$*" in  # another interpreter when $FAKE_PREFIX is set
  *sys.prefix*) if [ -n "${{FAKE_PREFIX:-}}" ]; then echo "$FAKE_PREFIX 3.11.9"; exit 0; fi ;;
esac
echo "base $*" >> "$FAKE/calls"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  [ -e "$FAKE/venv-broken" ] && exit 1
  mkdir -p "$3/bin" && cp "$FAKE/venv-python" "$3/bin/python" && exit 0
fi
exec {real} "$@"
"""

FAKE_VENV_PYTHON = """#!/bin/sh
# The venv's python: answers the scripts' `-c` questions, logs everything else.
if [ "$1" = "-c" ]; then exec {real} "$@"; fi
echo "venv $*" >> "$FAKE/calls"
"""

FAKE_OLD_PYTHON = """#!/bin/sh
# A Python 3.9: fails the version check.
case "$*" in
  *version_info*) exit 1 ;;
  *python_version*) echo 3.9.18 ;;
  *) echo "old $*" >> "$FAKE/calls"; exit 3 ;;
esac
"""

FAKE_HAPROXY = """#!/bin/sh
echo "HAProxy version 2.6.99-fake"
"""

FAKE_APT = """#!/bin/sh
echo "apt-get $*" >> "$FAKE/calls"
case "$*" in *install*python3-venv*) rm -f "$FAKE/venv-broken" ;; esac
"""

FAKE_SUDO = """#!/bin/sh
exec "$@"
"""


def _write_exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """A repo copy (scripts + packaging files) and a bin/ of fakes."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    for name in ("pyproject.toml", "setup.cfg"):
        shutil.copy(REPO / name, repo / name)
    fake = tmp_path / "fake"
    fakebin = fake / "bin"
    fakebin.mkdir(parents=True)
    _write_exe(fakebin / "python3", FAKE_BASE_PYTHON.format(real=REAL_PYTHON))
    _write_exe(fake / "venv-python", FAKE_VENV_PYTHON.format(real=REAL_PYTHON))
    _write_exe(fakebin / "haproxy", FAKE_HAPROXY)
    _write_exe(fakebin / "apt-get", FAKE_APT)
    _write_exe(fakebin / "sudo", FAKE_SUDO)
    (fake / "calls").write_text("")
    return {"repo": repo, "fake": fake, "bin": fakebin}


def _run(sandbox: dict[str, Path], script: str, *args: str,
         **extra_env: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{sandbox['bin']}:/usr/bin:/bin", "FAKE": str(sandbox["fake"]),
           "HOME": os.environ.get("HOME", "/tmp"), **extra_env}
    return subprocess.run(["bash", str(sandbox["repo"] / "scripts" / script), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def _calls(sandbox: dict[str, Path]) -> list[str]:
    lines = (sandbox["fake"] / "calls").read_text().splitlines()
    (sandbox["fake"] / "calls").write_text("")
    return lines


def test_test_script_runs_everything_from_the_venv(sandbox: dict[str, Path]) -> None:
    proc = _run(sandbox, "test", "-x", "tests/cli")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(sandbox)
    assert "base -m venv .venv" in calls
    assert calls[-4:] == [
        "venv -m pip install --disable-pip-version-check -e .[test]",
        "venv -m ruff check .",
        "venv -m servicerouter.cli.docs --check README.md",
        "venv -m pytest -q -p no:cacheprovider -x tests/cli",
    ]
    assert not [c for c in calls if c.startswith("base -m pip")]  # never the system Python
    assert f"venv of {sandbox['bin']}/python3" in proc.stdout
    assert "python: " in proc.stdout and "/.venv/bin/python" in proc.stdout
    assert "haproxy: " in proc.stdout and "2.6.99-fake" in proc.stdout


def test_repeat_runs_reinstall_only_when_packaging_changed(sandbox: dict[str, Path]) -> None:
    assert _run(sandbox, "test").returncode == 0
    _calls(sandbox)
    assert _run(sandbox, "test").returncode == 0
    calls = _calls(sandbox)
    assert not [c for c in calls if "pip install" in c or "-m venv" in c], calls
    setup = sandbox["repo"] / "setup.cfg"
    setup.write_text(setup.read_text() + "\n# changed\n")
    assert _run(sandbox, "test").returncode == 0
    calls = _calls(sandbox)
    assert "venv -m pip install --disable-pip-version-check -e .[test]" in calls
    assert "base -m venv .venv" not in calls  # same Python: the venv is kept


def test_demo_uses_the_venv_and_passes_its_arguments(sandbox: dict[str, Path]) -> None:
    proc = _run(sandbox, "demo", "--free-ports")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(sandbox)
    assert calls[-2:] == ["venv -m pip install --disable-pip-version-check -e .",
                          "venv -m servicerouter.emulator.demo --free-ports"]
    # the test extras include everything the demo needs: no second install
    assert _run(sandbox, "test").returncode == 0
    _calls(sandbox)
    assert _run(sandbox, "demo").returncode == 0
    assert not [c for c in _calls(sandbox) if "pip install" in c]


def test_old_python_is_refused_in_one_line(sandbox: dict[str, Path]) -> None:
    _write_exe(sandbox["bin"] / "python3", FAKE_OLD_PYTHON)
    for script in ("test", "demo"):
        proc = _run(sandbox, script)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "Python 3.9.18" in proc.stderr and ">= 3.11" in proc.stderr
        assert not (sandbox["repo"] / ".venv").exists()
        assert _calls(sandbox) == []


def test_missing_venv_module_installs_debians_python3_venv(sandbox: dict[str, Path]) -> None:
    (sandbox["fake"] / "venv-broken").write_text("")
    proc = _run(sandbox, "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(sandbox)
    assert [c for c in calls if c.startswith("apt-get install")] == [
        "apt-get install -y -qq python3-venv"]
    assert calls.count("base -m venv .venv") == 2  # failed, then worked
    assert "venv -m pytest -q -p no:cacheprovider" in calls


def test_another_python_rebuilds_the_venv(sandbox: dict[str, Path]) -> None:
    assert _run(sandbox, "test").returncode == 0
    _calls(sandbox)
    proc = _run(sandbox, "test", FAKE_PREFIX="/opt/other-python")  # PATH now finds another
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(sandbox)
    assert "base -m venv .venv" in calls
    assert "venv -m pip install --disable-pip-version-check -e .[test]" in calls


def test_ci_runs_the_test_script() -> None:
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()
    assert ".venv/" in (REPO / ".gitignore").read_text().splitlines()
