"""file: sources (a saved /v2/apps body): failures are reported once, recovery once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from servicerouter.source.marathon import MarathonError, SnapshotSource


def test_a_missing_snapshot_is_reported_once_not_every_resync(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "apps.json"
    source = SnapshotSource(f"file:{path}")
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)
    caplog.set_level(logging.INFO, logger="servicerouter")
    for _ in range(5):  # five resyncs
        with pytest.raises(MarathonError, match="No such file or directory"):
            source.fetch_apps_body()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"cannot read Marathon snapshot {path}: No such file or directory"]
    path.write_text('{"apps": []}')
    assert source.fetch_apps_body() == b'{"apps": []}'
    assert source.fetch_apps_body() == b'{"apps": []}'
    assert [r.getMessage() for r in caplog.records if "readable again" in r.getMessage()] \
        == [f"Marathon snapshot {path} is readable again"]
    path.unlink()  # gone again: a new outage is worth a new line
    with pytest.raises(MarathonError):
        source.fetch_apps_body()
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2
