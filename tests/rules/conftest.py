"""Fixtures of the rules tests: a real ZooKeeper, and the live router of the engine tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.live_router import start_router  # noqa: F401 - a fixture, shared
from tests.rules.zk import ZK_SERVER, ZooKeeper


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[ZooKeeper]:
    if not os.path.exists(ZK_SERVER):
        pytest.skip("Debian's zookeeper is not installed (scripts/test installs it)")
    server = ZooKeeper(tmp_path / "zk")
    server.start()
    try:
        yield server
    finally:
        server.stop()
