"""Metrics and the status endpoint (servicerouter.serve.status)."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator

import pytest

from servicerouter import __version__
from servicerouter.serve.status import (
    Counter,
    Histogram,
    Metrics,
    StatusServer,
    is_loopback,
    parse_listen,
)
from tests.harness import http_get


def test_counter_and_histogram_exposition() -> None:
    counter = Counter("x_total", "Things.")
    assert counter.lines() == ["x_total 0"]
    counter.inc(type='a"b')
    counter.inc(2, type="c")
    assert counter.lines() == ['x_total{type="a\\"b"} 1', 'x_total{type="c"} 2']
    assert counter.total() == 3
    hist = Histogram("d_seconds", "Durations.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        hist.observe(value)
    assert hist.lines() == [
        'd_seconds_bucket{le="0.1"} 1', 'd_seconds_bucket{le="1"} 2',
        'd_seconds_bucket{le="+Inf"} 3', "d_seconds_sum 5.55", "d_seconds_count 3",
    ]


def test_metrics_has_every_required_family() -> None:
    text = Metrics().exposition()
    for name in ("servicerouter_syncs_total", "servicerouter_sync_duration_seconds",
                 "servicerouter_reloads_total", "servicerouter_runtime_updates_total",
                 "servicerouter_events_total", "servicerouter_marathon_errors_total",
                 "servicerouter_quarantined_apps", "servicerouter_event_to_apply_seconds"):
        assert f"# TYPE {name} " in text
    assert "# TYPE servicerouter_sync_duration_seconds histogram" in text
    for line in text.splitlines():  # every sample line is "name{labels} value"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))


@pytest.mark.parametrize(("text", "expected"), [
    ("9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:81", ("::1", 81)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["x", "1.2.3.4:x", "[::1]81", "70000"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.1.1") and not is_loopback("")


def test_off_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="status-token"):
        StatusServer(("0.0.0.0", 0), Metrics(), dict, lambda: (True, "ok"))


@pytest.fixture
def server() -> Iterator[StatusServer]:
    metrics = Metrics()
    metrics.reloads.inc(result="ok")
    state = {"healthy": True}
    srv = StatusServer(("127.0.0.1", 0), metrics, lambda: {"reloads": 1, "apps": ["a"]},
                       lambda: (state["healthy"], "ok" if state["healthy"] else "down"))
    srv.state = state  # type: ignore[attr-defined]
    srv.start()
    yield srv
    srv.stop()


def test_endpoints(server: StatusServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert http_get(base + "/healthz").text == "ok\n"
    server.state["healthy"] = False  # type: ignore[attr-defined]
    assert http_get(base + "/healthz").status_code == 503
    status = http_get(base + "/status")
    assert status.headers["Content-Type"] == "application/json"
    build = {"version": __version__, "python": platform.python_version(), "haproxy": "unknown"}
    assert json.loads(status.text) == {"reloads": 1, "apps": ["a"], "version": __version__,
                                       "build": build}
    metrics = http_get(base + "/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'servicerouter_reloads_total{result="ok"} 1' in metrics.text
    assert (f'servicerouter_build_info{{haproxy="unknown",python="{platform.python_version()}",'
            f'version="{__version__}"}} 1') in metrics.text.splitlines()
    assert http_get(base + "/nope").status_code == 404


def test_token_is_enforced() -> None:
    srv = StatusServer(("127.0.0.1", 0), Metrics(), dict, lambda: (True, "ok"), token="s3cret")
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert http_get(base + "/status").status_code == 401
        assert http_get(base + "/status", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http_get(base + "/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    finally:
        srv.stop()


def test_a_failing_snapshot_is_a_500_not_a_crash() -> None:
    def broken() -> dict:
        raise RuntimeError("bug")

    srv = StatusServer(("127.0.0.1", 0), Metrics(), broken, lambda: (True, "ok"))
    srv.start()
    try:
        assert http_get(f"http://127.0.0.1:{srv.port}/status").status_code == 500
        assert http_get(f"http://127.0.0.1:{srv.port}/healthz").status_code == 200
    finally:
        srv.stop()


def test_labelled_counters_start_with_their_known_series() -> None:
    """servicerouter_reloads_total{result="ok"|"failed"} exist at 0 before any reload,
    never an unlabelled series that later turns into labelled ones."""
    from servicerouter.engine.live import new_metrics

    metrics = new_metrics()
    samples = [line for line in metrics.exposition().splitlines() if not line.startswith("#")]
    for line in ('servicerouter_reloads_total{result="ok"} 0',
                 'servicerouter_reloads_total{result="failed"} 0',
                 'servicerouter_syncs_total{kind="incremental",result="error"} 0',
                 'servicerouter_validations_total{result="failed"} 0',
                 'servicerouter_cert_updates_total{result="ok"} 0',
                 'servicerouter_runtime_servers_total{action="readdress"} 0',
                 'servicerouter_events_total{type="status_update_event"} 0',
                 'servicerouter_events_total{type="other"} 0'):
        assert line in samples
    labelled = {line.split("{", 1)[0] for line in samples if "{" in line}
    assert not [line for line in samples if line.split(" ", 1)[0] in labelled]
    metrics.reloads.inc(result="ok")
    text = metrics.exposition()
    assert 'servicerouter_reloads_total{result="ok"} 1' in text
    assert 'servicerouter_reloads_total{result="failed"} 0' in text
    assert "servicerouter_marathon_errors_total 0" in text  # unlabelled stays unlabelled


def test_build_info_names_the_running_versions() -> None:
    metrics = Metrics()
    metrics.set_build("2.6.12-1+deb12u4")
    lines = [x for x in metrics.exposition().splitlines() if "servicerouter_build_info" in x]
    assert lines == [
        "# HELP servicerouter_build_info Always 1: the running servicerouter, Python and "
        "HAProxy versions are its labels.",
        "# TYPE servicerouter_build_info gauge",
        f'servicerouter_build_info{{haproxy="2.6.12-1+deb12u4",python="'
        f'{platform.python_version()}",version="{__version__}"}} 1']
    assert metrics.build["haproxy"] == "2.6.12-1+deb12u4"
