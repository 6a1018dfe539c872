"""Stale temp files a crash left behind are removed at startup, and nothing else is."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from servicerouter.apply import haproxy
from servicerouter.apply.tempfiles import (
    STALE_AFTER,
    clean_startup,
    config_dir_patterns,
    remove_stale,
)
from servicerouter.cli.main import main
from servicerouter.tls import bundles as certs

OLD = time.time() - STALE_AFTER - 60


def _make(path: Path, age: float | None = OLD) -> Path:
    path.write_text("x")
    if age is not None:
        os.utime(path, (age, age))
    return path


def _real_names(config_dir: Path, state_dir: Path,
                monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Temp files exactly as the real writers name them (left behind as by a crash)."""
    found = []
    tmp = haproxy.write_temp(str(config_dir), "haproxy.cfg", b"x", 0o644)
    found.append(Path(tmp))
    for prefix in (".sr-check-", ".sr-label-"):
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".cfg", dir=config_dir)
        os.close(fd)
        found.append(Path(name))
    state_dir.mkdir()
    names: list[str] = []

    def crash(src: str, _dst: str) -> None:  # certs.write_private_file, dying before its rename
        names.append(src)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            certs.write_private_file(str(state_dir / "default.pem"), "pem")
    found.append(Path(names[0]))  # (an exception removes it; a real crash would not)
    for path in found:
        _make(path)
    return found


def test_removes_only_our_stale_temp_files(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, state_dir = tmp_path / "etc", tmp_path / "etc" / "servicerouter"
    config_dir.mkdir()
    stale = _real_names(config_dir, state_dir, monkeypatch)
    config = _make(config_dir / "haproxy.cfg")
    keep = [
        config,
        _make(config_dir / ".haproxy.cfg.abcd1234.tmp", age=None),  # fresh: maybe in use
        _make(config_dir / ".other.cfg.abcd1234.tmp"),  # another config's name
        _make(config_dir / ".haproxy.cfg.abcd12345.tmp"),  # not mkstemp's length
        _make(config_dir / "haproxy.cfg.abcd1234.tmp"),  # no leading dot
        _make(config_dir / ".sr-check-ABCD1234.cfg"),  # mkstemp never uses upper case
        _make(config_dir / ".tmp-default.pem.0123456789ab"),  # cert temp, not a cert dir
        _make(state_dir / ".tmp-default.pem.0123456789"),  # token of the wrong length
        _make(state_dir / "crt-list-0123"),
    ]
    target = _make(tmp_path / "precious")
    link = config_dir / ".haproxy.cfg.link0000.tmp"
    link.symlink_to(target)
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    directory = config_dir / ".haproxy.cfg.dir00000.tmp"
    directory.mkdir()
    os.utime(directory, (OLD, OLD))

    removed = clean_startup(str(config), [str(state_dir), str(state_dir / "bundles")])

    assert sorted(removed) == sorted(str(p) for p in stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert link.is_symlink() and target.read_text() == "x"  # neither followed nor removed
    assert directory.is_dir()


def test_age_is_measured_against_the_threshold(tmp_path: Path) -> None:
    path = _make(tmp_path / ".haproxy.cfg.abcd1234.tmp", age=1000.0)
    patterns = config_dir_patterns("haproxy.cfg")
    assert remove_stale(str(tmp_path), patterns, older_than=60, now=1050.0) == []
    assert remove_stale(str(tmp_path), patterns, older_than=60, now=1061.0) == [str(path)]


def test_missing_directories_are_fine(tmp_path: Path) -> None:
    assert clean_startup(str(tmp_path / "nope" / "haproxy.cfg"), [str(tmp_path / "gone")]) == []


def test_startup_cleans_before_the_first_sync(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text('{"apps": []}')
    config = tmp_path / "haproxy.cfg"
    stale = _make(tmp_path / ".haproxy.cfg.k3y_0000.tmp")
    code = main(["-m", f"file:{snapshot}", "--haproxy-config", str(config),
                 "--skip-validation", "--command", "true", "--state-dir", str(tmp_path / "st")])
    assert code == 0 and config.exists()
    assert not stale.exists()


def test_crashed_map_writes_and_check_directories_are_swept(tmp_path: Path) -> None:
    """Map temp files in <config>.maps/ and haproxy -c directories (config + maps)."""
    cfg = tmp_path / "haproxy.cfg"
    maps = tmp_path / "haproxy.cfg.maps"
    maps.mkdir()
    stale_map = Path(tempfile.mkstemp(prefix=".http-1-beg.map.", suffix=".tmp", dir=maps)[1])
    live_map = maps / "http-1-beg.map"
    live_map.write_text("a.test/ a_1\n")
    check = Path(tempfile.mkdtemp(prefix=".sr-check-", dir=tmp_path))
    (check / "haproxy.cfg").write_text("global\n")
    (check / "http-1-beg.map").write_text("a.test/ a_1\n")
    odd = Path(tempfile.mkdtemp(prefix=".sr-check-", dir=tmp_path))
    (odd / "sub").mkdir()  # not what we write: left alone
    old = time.time() - 3600
    for path in (stale_map, check, odd):
        os.utime(path, (old, old))
    removed = clean_startup(str(cfg), [])
    assert sorted(removed) == sorted([str(stale_map), str(check)])
    assert live_map.exists() and odd.exists() and not check.exists()
