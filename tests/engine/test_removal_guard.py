"""engine.removal_guard: the hold kept across syncs and processes, reported and confirmed."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from servicerouter.engine.holds import HoldSettings
from servicerouter.engine.removal_guard import RemovalGuard, load_hold
from servicerouter.serve.status import Metrics, StatusServer

BEFORE = {"web_80": frozenset({"10.0.0.1:1", "10.0.0.2:1"}), "api_81": frozenset({"10.0.0.3:1"})}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(tmp_path: Path | None = None, **kw: object) -> tuple[RemovalGuard, Clock]:
    clock = Clock()
    path = str(tmp_path / "hold.json") if tmp_path is not None else None
    return RemovalGuard(HoldSettings(0.5, 3, 30.0), path, clock=clock, **kw), clock


def test_held_status_and_metrics_then_released(caplog: pytest.LogCaptureFixture) -> None:
    g, clock = guard()
    metrics = Metrics()
    caplog.set_level(logging.INFO, "servicerouter")
    assert g.check(BEFORE, {}, 0, metrics).held
    clock.now += 10
    assert g.check(BEFORE, {}, 0, metrics).held
    report = g.status()
    assert report["held"] and report["fetches"] == 2 and report["servers_lost"] == 3
    assert report["since"].startswith("1970-01-01T00:16:40")
    assert report["sample_backends"] == ["api_81", "web_80"]
    text = metrics.exposition()
    assert "servicerouter_removal_held 1" in text
    assert "servicerouter_removal_held_servers 3" in text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "removal held" in warnings[0].getMessage()
    assert g.recheck_delay() == pytest.approx(20.0)  # 20 s left, one more fetch needed

    assert not g.check(BEFORE, BEFORE, 2, metrics).held  # Marathon is back
    assert not g.status()["held"] and g.recheck_delay() is None
    assert "servicerouter_removal_held 0" in metrics.exposition()
    assert "hold released" in caplog.text


def test_confirm_is_used_once_and_never_armed_without_a_hold() -> None:
    g, _clock = guard()
    assert not g.confirm()  # nothing held: nothing waits for the next blip
    assert g.check(BEFORE, {}, 0).held
    assert g.confirm()
    assert g.check(BEFORE, {}, 0).action == "confirmed"
    assert g.check({"a": frozenset({"1:1"})}, {}, 0).held  # the next removal holds again


def test_confirm_first_is_the_one_shot_flag() -> None:
    g, _clock = guard(confirm_first=True)
    assert g.check(BEFORE, {}, 0).action == "confirmed"


def test_nothing_routed_before_applies() -> None:
    g, _clock = guard()
    assert not g.check(None, {}, 0).held
    assert not g.check({}, {}, 0).held


def test_the_hold_is_kept_across_processes(tmp_path: Path) -> None:
    first, clock = guard(tmp_path)
    assert first.check(BEFORE, {}, 0).held
    kept = json.loads((tmp_path / "hold.json").read_text())
    assert kept["fetches"] == 1 and kept["since"] == 1000.0
    second, clock2 = guard(tmp_path)
    clock2.now = 1015.0
    assert second.check(BEFORE, {}, 0).held
    third, clock3 = guard(tmp_path)
    clock3.now = 1031.0
    assert third.check(BEFORE, {}, 0).action == "persisted"
    assert not (tmp_path / "hold.json").exists()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"since": "x", "fetches": 1, "basis": "b"}',
                                     '{"since": 1, "fetches": 0, "basis": "b"}'])
def test_an_unusable_hold_file_starts_again(tmp_path: Path, content: str) -> None:
    path = tmp_path / "hold.json"
    path.write_text(content)
    assert load_hold(str(path)) is None
    g, _clock = guard(tmp_path)
    decision = g.check(BEFORE, {}, 0)
    assert decision.held and decision.state is not None and decision.state.fetches == 1


def _post(port: int, *headers: str) -> int:
    lines = ["POST /removal/confirm HTTP/1.1", "Host: x", "Connection: close",
             "Content-Length: 0", *headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = sock.recv(65536)
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(("token", "headers", "expected"), [
    (None, (), 403),  # changing routing always needs a token, loopback or not
    ("s3cret-token", (), 401),
    ("s3cret-token", ("Authorization: Bearer nope",), 401),
    ("s3cret-token", ("Authorization: Bearer s3cret-token",), 202),
])
def test_confirm_endpoint_needs_the_status_token(token: str | None, headers: tuple[str, ...],
                                                 expected: int) -> None:
    calls: list[int] = []

    def confirm() -> dict:
        calls.append(1)
        return {"held": True}

    srv = StatusServer(("127.0.0.1", 0), Metrics(), dict, lambda: (True, "ok"), token,
                       confirm_removal=confirm)
    srv.start()
    try:
        assert _post(srv.port, *headers) == expected
    finally:
        srv.stop()
    assert calls == ([1] if expected == 202 else [])
