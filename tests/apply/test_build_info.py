"""HAProxy's ``-vv`` answer: run once per binary, kept in the state directory.

A one-shot run needs the version (its first log lines) and whether HAProxy has
Lua (the stats endpoints); both come from one ``haproxy -vv``, and a later run
with the same binary file reads the answer an earlier one left in the state
directory instead of starting HAProxy.  A replaced binary is run again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servicerouter.apply import haproxy
from servicerouter.serve.haproxy_endpoints import haproxy_has_lua


@pytest.fixture
def fake_haproxy(tmp_path: Path) -> tuple[str, Path]:
    """A haproxy that answers -vv and counts its runs in a file."""
    runs = tmp_path / "runs"
    binary = tmp_path / "haproxy"
    binary.write_text(f"#!/bin/sh\necho run >> {runs}\n"
                      "echo 'HAProxy version 9.9.9-test 2099/01/01'\necho 'Feature list : +LUA'\n")
    binary.chmod(0o755)
    return str(binary), runs


def runs_of(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def forget_this_process() -> None:
    haproxy._BUILD_INFO.clear()  # as a new process starts


def test_one_run_serves_the_version_and_the_lua_check(fake_haproxy: tuple[str, Path]) -> None:
    binary, runs = fake_haproxy
    forget_this_process()
    assert haproxy.haproxy_version(binary) == "9.9.9-test"
    assert haproxy_has_lua(binary)
    assert runs_of(runs) == 1


def test_a_later_run_reads_the_state_directory(fake_haproxy: tuple[str, Path],
                                                tmp_path: Path) -> None:
    binary, runs = fake_haproxy
    state = tmp_path / "state"
    state.mkdir()
    forget_this_process()
    assert haproxy.haproxy_version(binary, cache_dir=str(state)) == "9.9.9-test"
    haproxy.save_build_info(binary, str(state))
    assert runs_of(runs) == 1
    forget_this_process()
    assert haproxy.haproxy_version(binary, cache_dir=str(state)) == "9.9.9-test"
    assert haproxy_has_lua(binary, cache_dir=str(state))
    assert runs_of(runs) == 1  # not started again
    # A replaced binary (another inode, size or mtime) is asked again.
    replaced = Path(binary + ".new")
    replaced.write_text(Path(binary).read_text().replace("9.9.9", "9.9.10"))
    replaced.chmod(0o755)
    os.replace(replaced, binary)
    forget_this_process()
    assert haproxy.haproxy_version(binary, cache_dir=str(state)) == "9.9.10-test"
    assert runs_of(runs) == 2


def test_a_missing_binary_is_none_and_nothing_is_saved(tmp_path: Path) -> None:
    forget_this_process()
    assert haproxy.haproxy_version(str(tmp_path / "missing"), cache_dir=str(tmp_path)) is None
    haproxy.save_build_info(str(tmp_path / "missing"), str(tmp_path))
    assert not (tmp_path / haproxy.BUILD_INFO_FILE).exists()
