"""Files servicerouter writes: configs, certificates and keys, under attack and under kill -9.

* Temporary files are created exclusively (O_EXCL, unpredictable names) in the target's
  own directory; a planted symlink is never followed, neither as a temp name nor as the
  target itself.
* Generated configs are never world-writable (nor set-id); private keys are 0600 in a
  0700 directory, whatever the umask.
* A crash at any point of a write leaves the old config or the new one, complete: a
  child process applies a config and SIGKILLs itself at the N-th file operation, for
  every N until the write completes.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.apply import haproxy
from servicerouter.tls import bundle_layout
from servicerouter.tls import bundles as certs
from tests.paths import REPO

OLD = "# old config\n" + "global\n  maxconn 100\n" * 2000
NEW = "# new config\n" + "global\n  maxconn 200\n" * 3000


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The worst umask an operator could run us with."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --------------------------------------------------------------------------- temp files


def test_temp_file_is_in_the_target_directory_with_a_random_name(tmp_path: Path) -> None:
    names = {os.path.basename(haproxy.write_temp(str(tmp_path), "haproxy.cfg", b"x", 0o644))
             for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert name.startswith(".haproxy.cfg.") and name.endswith(".tmp")
        assert (tmp_path / name).is_file() and not (tmp_path / name).is_symlink()


def test_planted_symlink_at_a_temp_name_is_not_followed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if an attacker guessed the next temp name, O_EXCL refuses to open it."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / ".haproxy.cfg.guessed.tmp").symlink_to(victim)
    names = iter(["guessed", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    result = haproxy.apply_config(NEW, str(config_dir / "haproxy.cfg"))
    assert result.written
    assert victim.read_text() == "precious\n"
    assert (config_dir / "haproxy.cfg").read_text() == NEW


def test_target_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "haproxy.cfg"
    target.symlink_to(victim)
    assert haproxy.apply_config(NEW, str(target)).written
    assert not target.is_symlink() and target.read_text() == NEW
    assert victim.read_text() == "precious\n"


def test_no_temp_file_is_left_behind(tmp_path: Path, haproxy_bin: str) -> None:
    target = tmp_path / "haproxy.cfg"
    assert haproxy.apply_config(NEW, str(target)).written
    # Nor is the file a rejected config was checked in.
    ok, _message = haproxy.check_candidate("this is not a config\n", str(target), haproxy_bin)
    assert not ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy.cfg"]


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("old_mode, new_mode", [
    (None, 0o644), (0o640, 0o640), (0o600, 0o600), (0o666, 0o664), (0o777, 0o775),
    (0o4755, 0o755), (0o2775, 0o775), (0o1777, 0o775),
])
def test_config_modes(tmp_path: Path, umask_zero: None, old_mode: int | None,
                      new_mode: int) -> None:
    target = tmp_path / "haproxy.cfg"
    if old_mode is not None:
        target.write_text(OLD)
        os.chmod(target, old_mode)
    assert haproxy.apply_config(NEW, str(target)).written
    assert _mode(target) == new_mode
    assert not _mode(target) & stat.S_IWOTH


def test_private_keys_are_0600_in_a_0700_directory(tmp_path: Path, umask_zero: None) -> None:
    state = tmp_path / "state"
    default = Path(certs.ensure_default_certificate(str(state)))
    assert _mode(state) == 0o700
    assert _mode(default) == 0o600
    bundle = certs.parse_bundle(certs.generate_self_signed("a.test"), "a.pem",
                                certs.datetime.now(certs.UTC))
    crt_list = Path(bundle_layout.materialize([bundle], str(state), str(default)))
    for path in [crt_list, *(state / "bundles").iterdir()]:
        if "PRIVATE KEY" in path.read_text():
            assert _mode(path) == 0o600, path
        assert not _mode(path) & (stat.S_IWOTH | stat.S_IWGRP), path
    assert _mode(state / "bundles") == 0o700


def test_private_file_over_a_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    key = tmp_path / "key.pem"
    key.symlink_to(victim)
    certs.write_private_file(str(key), "-----BEGIN PRIVATE KEY-----\n")
    assert victim.read_text() == "precious\n"
    assert not key.is_symlink() and _mode(key) == 0o600


# --------------------------------------------------------------------------- kill -9


CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, tempfile
    from servicerouter.apply import haproxy

    kill_at = int(sys.argv[1])
    target, new_path, validate = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    step = 0

    def point(name):
        global step
        step += 1
        if step == kill_at:
            sys.stdout.write(name + "\\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def around(module, name):
        real = getattr(module, name)
        def wrapper(*args, **kwargs):
            point("before " + name)
            result = real(*args, **kwargs)
            point("after " + name)
            return result
        setattr(module, name, wrapper)

    class HalfWriter:
        # Kill points in the middle of writing the data, too.
        def __init__(self, handle):
            self._handle = handle
        def write(self, data):
            half = len(data) // 2
            self._handle.write(data[:half])
            self._handle.flush()
            point("half written")
            return self._handle.write(data[half:])
        def __getattr__(self, name):
            return getattr(self._handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

    real_fdopen = os.fdopen
    os.fdopen = lambda *a, **k: HalfWriter(real_fdopen(*a, **k))
    for name in ("fsync", "fchmod", "chmod", "replace", "rename", "unlink"):
        around(os, name)
    around(tempfile, "mkstemp")
    around(subprocess, "run")

    text = open(new_path).read()
    # The engine's order: haproxy -c out of place, then the write.
    if validate:
        assert haproxy.check_candidate(text, target, os.environ.get("HAPROXY_BIN", "haproxy"))[0]
    result = haproxy.apply_config(text, target)
    print("done", result.written, step)
""")


def _run_child(kill_at: int, target: Path, new_path: Path, validate: bool,
               haproxy_bin: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HAPROXY_BIN=haproxy_bin,
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", CHILD, str(kill_at), str(target),
                           str(new_path), "1" if validate else "0"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize("validate", [False, True], ids=["unvalidated", "validated"])
def test_kill_at_every_step_leaves_old_or_new_config(tmp_path: Path, haproxy_bin: str,
                                                     validate: bool) -> None:
    old = OLD if not validate else _valid("100")
    new = NEW if not validate else _valid("200")
    new_path = tmp_path / "new.txt"
    new_path.write_text(new)
    seen: list[str] = []
    for kill_at in range(1, 60):  # bounded: the write has far fewer steps
        directory = tmp_path / f"run{kill_at}"
        directory.mkdir()
        target = directory / "haproxy.cfg"
        target.write_text(old)
        proc = _run_child(kill_at, target, new_path, validate, haproxy_bin)
        content = target.read_text()
        assert content in (old, new), f"partial config after a kill at step {kill_at}"
        if proc.returncode == -signal.SIGKILL:
            seen.append(f"{proc.stdout.strip()}: {'new' if content == new else 'old'}")
            continue
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("done True") and content == new
        break
    else:
        pytest.fail("the write never completed")
    print("\nkill points:", seen)
    # Killed before the rename: the old config; after it: the new one.
    assert any(s.endswith("old") for s in seen) and any(s.endswith("new") for s in seen), seen
    assert any("half written" in s for s in seen), seen
    if validate:
        assert any("before run" in s for s in seen), seen


def _valid(maxconn: str) -> str:
    return textwrap.dedent(f"""\
        global
          maxconn {maxconn}
        defaults
          mode http
          timeout client 1s
          timeout server 1s
          timeout connect 1s
        listen probe
          bind 127.0.0.1:1
          server s 127.0.0.1:1
        """)
