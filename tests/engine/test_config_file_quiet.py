"""ConfigFile.write_soon waits for a quiet moment (servicerouter.engine.config_file): the
write of a big config never lands in the milliseconds HAProxy needs to route the change
just applied, and a burst of events is one write."""

from __future__ import annotations

import time
from pathlib import Path

from servicerouter.engine.config_file import ConfigFile
from tests.harness import wait_until


def test_a_deferred_write_waits_for_quiet(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    config = ConfigFile(str(path), quiet=1.0, longest=10.0)
    try:
        asked = time.time()
        config.write_soon("one\n")
        # The count, not the file: the file is in place a moment before it is counted.
        wait_until(lambda: config.deferred_writes == 1, 10)
        # When it was written, not whether it exists after a sleep: a loaded machine may
        # oversleep past the quiet second (before: written at once, right after the event).
        written = path.stat().st_mtime
        assert written - asked >= 1.0 - 0.05, f"written {written - asked:.3f} s after asked"
        assert path.read_text() == "one\n"
    finally:
        config.stop()


def test_a_burst_is_one_write_no_later_than_longest(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    config = ConfigFile(str(path), quiet=0.5, longest=1.0)
    try:
        started = time.monotonic()
        for serial in range(12):  # a new text every 0.15 s: never 0.5 s of quiet
            config.write_soon(f"text {serial}\n")
            time.sleep(0.15)
            if path.exists():
                break
        assert path.exists(), "longest did not bound the wait"
        assert time.monotonic() - started < 1.0 + 0.15 + 2.0  # longest, a step, slack
        wait_until(lambda: config.deferred_writes >= 1, 10)  # counted just after it lands
        assert config.deferred_writes == 1
    finally:
        config.stop()


def test_flush_and_stop_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    config = ConfigFile(str(path), quiet=60.0, longest=60.0)
    config.write_soon("flushed\n")
    assert config.flush(timeout=10)
    assert path.read_text() == "flushed\n"
    config.write_soon("at stop\n")
    config.stop()
    assert path.read_text() == "at stop\n"


def test_a_synchronous_write_drops_the_deferred_one(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    config = ConfigFile(str(path), quiet=0.2, longest=1.0)
    try:
        config.write_soon("older\n")
        assert config.write("newer\n")
        time.sleep(0.6)
        assert path.read_text() == "newer\n" and config.deferred_writes == 0
    finally:
        config.stop()
