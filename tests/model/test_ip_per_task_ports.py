"""Auto-assigned IP-per-task service ports stay put across runs.

When Marathon gives an IP-per-task app no service port, one is assigned from
--min/max-serv-port-ip-per-task.  The model takes the previous assignments as
an input (pure) and returns the new ones; the runner keeps them in the state
directory.  An app keeps its port while it exists, and a port freed by a
deleted app goes to another app only when no never-used port is left (the one
freed longest ago first).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.engine.runner import PORTS_FILE, Router, RouterSettings
from servicerouter.model.services import build_model, ip_per_task_key
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import SnapshotSource

RANGE = (10050, 10100)  # marathon-lb's default
V1, V2, V3 = "2020-01-01T00:00:00.000Z", "2020-02-01T00:00:00.000Z", "2020-03-01T00:00:00.000Z"


def ipt(app_id: str, version: str = V1) -> dict:
    """An IP-per-task app (Marathon 1.5 ``networks`` container mode) with no service port."""
    return {"id": app_id, "version": version, "networks": [{"mode": "container", "name": "dcos"}],
            "container": {"type": "DOCKER", "docker": {"image": "x"},
                          "portMappings": [{"containerPort": 8080}]},
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "agent1", "ports": [],
                       "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "10.0.0.9", "protocol": "IPv4"}]}]}


def explicit(app_id: str, port: int, version: str = V3) -> dict:
    return {"id": app_id, "version": version, "ports": [port],
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "10.0.0.1", "ports": [31000]}]}


def model(apps: list[dict], previous=(), port_range=RANGE):
    return build_model(apps, (), lambda host: host, ip_per_task_ports=port_range,
                       port_assignments=previous)


def ports(result) -> dict[str, int]:
    return {s.app_id: s.bind_port for s in result.services}


def hashing_to(port: int, size: int = RANGE[1] - RANGE[0] + 1) -> str:
    """A new app id whose first choice (hash) is ``port``."""
    return next(f"/new{i}" for i in range(100_000)
                if RANGE[0] + zlib.crc32(f"/new{i}#0".encode()) % size == port)


def test_a_deleted_app_does_not_move_the_others() -> None:
    """The audit's repro: svc3 and svc6 hash to the same port; deleting svc3 kept
    svc6_10062 only with the previous assignments."""
    svc3, svc6 = ipt("/svc3", V1), ipt("/svc6", V2)
    first = model([svc3, svc6])
    assert ports(first) == {"/svc3": 10061, "/svc6": 10062}
    assert first.port_assignments == (("/svc3#0", 10061), ("/svc6#0", 10062))
    assert ports(model([svc6])) == {"/svc6": 10061}  # without memory: linear probing moves it

    second = model([svc6], first.port_assignments)
    assert ports(second) == {"/svc6": 10062}
    # the gone app's port is remembered (released first), so it is not handed out yet
    assert second.port_assignments == (("/svc3#0", 10061), ("/svc6#0", 10062))
    assert model([svc6], second.port_assignments).port_assignments == second.port_assignments


def test_a_freed_port_waits_and_a_returning_app_gets_it_back() -> None:
    svc3, svc6 = ipt("/svc3", V1), ipt("/svc6", V2)
    first = model([svc3, svc6])
    second = model([svc6], first.port_assignments)
    newcomer = ipt(hashing_to(10061), V3)
    third = model([svc6, newcomer], second.port_assignments)
    assert ports(third) == {"/svc6": 10062, newcomer["id"]: 10063}  # 10061 skipped: freed
    back = model([svc3, svc6, newcomer], third.port_assignments)
    assert ports(back) == {"/svc3": 10061, "/svc6": 10062, newcomer["id"]: 10063}


def test_freed_ports_are_reused_when_needed_oldest_first() -> None:
    small = (10050, 10052)
    a, b, c = ipt("/a", V1), ipt("/b", V2), ipt("/c", V3)
    run1 = model([a, b, c], port_range=small)
    assigned = ports(run1)
    assert sorted(assigned.values()) == [10050, 10051, 10052]
    run2 = model([b, c], run1.port_assignments, small)  # /a deleted
    run3 = model([c], run2.port_assignments, small)  # then /b
    assert [k for k, _p in run3.port_assignments] == ["/a#0", "/b#0", "/c#0"]
    run4 = model([c, ipt("/d", V3)], run3.port_assignments, small)
    assert ports(run4)["/d"] == assigned["/a"] and not run4.problems  # freed longest ago
    run5 = model([c, ipt("/d", V3), ipt("/e", V3)], run4.port_assignments, small)
    assert ports(run5)["/e"] == assigned["/b"] and ports(run5)["/c"] == assigned["/c"]
    run6 = model([c, ipt("/d", V3), ipt("/e", V3), ipt("/f", V3)], run5.port_assignments, small)
    assert "/f" not in ports(run6)
    assert any("no free service port" in p.reason for p in run6.problems)


def test_an_explicit_port_still_wins_over_an_assignment() -> None:
    first = model([ipt("/x", V1)])
    port = ports(first)["/x"]
    second = model([ipt("/x", V1), explicit("/pinned", port)], first.port_assignments)
    moved = ports(second)
    assert moved["/pinned"] == port and moved["/x"] != port
    assert ("/x#0", moved["/x"]) in second.port_assignments
    assert all(p != port for _k, p in second.port_assignments)


def test_previous_assignments_outside_the_range_or_malformed_are_ignored() -> None:
    junk = [("/x#0", 9999), ("/x#0", "10051"), ("/x#0", True), "junk", ("/x#0",),
            ("/x#0", 10055), ("/y#0", 10055), ("/z#0", 10056)]
    result = model([ipt("/x"), ipt("/y")], junk, (10050, 10060))
    got = ports(result)
    assert got["/x"] == 10055 and got["/y"] not in (10055, 10056)  # /z's port stays free
    assert result.port_assignments[0] == ("/z#0", 10056)
    assert ip_per_task_key("/x", 0) == "/x#0"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7)), max_size=25))
def test_assignments_are_stable_unique_and_reuse_only_when_needed(ops) -> None:
    """Random adds and deletes over a range of 6 ports for 8 possible apps."""
    small = (20000, 20005)
    present: dict[str, str] = {}  # app id -> version (age)
    memory: tuple[tuple[str, int], ...] = ()
    before: dict[str, int] = {}
    for step, (add, n) in enumerate(ops):
        app_id = f"/app{n}"
        if add:
            present.setdefault(app_id, f"2020-01-01T00:00:{step:02d}.000Z")
        else:
            present.pop(app_id, None)
        result = model([ipt(a, v) for a, v in present.items()], memory, small)
        now = ports(result)
        assert len(set(now.values())) == len(now)
        assert all(small[0] <= p <= small[1] for p in now.values())
        for app_id_, port in now.items():
            if app_id_ in before:
                assert port == before[app_id_]  # never moves while it exists
            elif any(p == port and k != f"{app_id_}#0" for k, p in memory):
                # another app's freed port: only when no never-used port was left
                never_used = set(range(small[0], small[1] + 1)) - {p for _k, p in memory}
                assert never_used <= set(now.values())
        ports_in_memory = [p for _k, p in result.port_assignments]
        assert len(ports_in_memory) == len(set(ports_in_memory))
        memory, before = result.port_assignments, now


# --------------------------------------------------------------------------- runner round trip


def write_state(path: Path, apps: list[dict]) -> str:
    path.write_text(json.dumps({"apps": apps}))
    return f"file:{path}"


def router_for(tmp_path: Path, apps: list[dict], **kw) -> Router:
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), validate=False,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None,
                              **kw)
    return Router(SnapshotSource(write_state(tmp_path / "apps.json", apps)),
                  load_fragments([]), settings)


def backends(tmp_path: Path) -> list[str]:
    text = (tmp_path / "haproxy.cfg").read_text()
    return [line.split()[1] for line in text.splitlines() if line.startswith("backend ")]


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.setup_logging (run by other tests) stops propagation; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)


def test_runner_keeps_ports_across_runs_in_the_state_dir(tmp_path: Path) -> None:
    svc3, svc6 = ipt("/svc3", V1), ipt("/svc6", V2)
    assert router_for(tmp_path, [svc3, svc6]).sync().ok
    assert backends(tmp_path) == ["svc3_10061", "svc6_10062"]
    state = tmp_path / "state" / PORTS_FILE
    saved = json.loads(state.read_text())
    assert saved == {"version": 1, "assignments": [["/svc3#0", 10061], ["/svc6#0", 10062]]}
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"

    assert router_for(tmp_path, [svc6]).sync().ok  # a new process, svc3 deleted
    assert backends(tmp_path) == ["svc6_10062"]
    assert router_for(tmp_path, [svc3, svc6]).sync().ok  # svc3 is back: same port
    assert backends(tmp_path) == ["svc3_10061", "svc6_10062"]
    leftovers = [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # written through a temp file, renamed into place


def test_runner_writes_nothing_without_ip_per_task_apps_or_in_dry_mode(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert router_for(tmp_path, [explicit("/web", 10001)]).sync().ok
    assert not (tmp_path / "state" / PORTS_FILE).exists()
    assert router_for(tmp_path, [ipt("/svc3")], dry=True).sync().ok
    assert "svc3_10061" in capsys.readouterr().out
    assert not (tmp_path / "state" / PORTS_FILE).exists()


@pytest.mark.parametrize("content", [b"{not json", b'{"assignments": {"/a#0": 10061}}',
                                     b'{"assignments": [["/a#0", "10061"]]}', b"\xff\xfe",
                                     b"[]"])
def test_a_corrupt_state_file_is_ignored_with_a_warning(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / PORTS_FILE).write_bytes(content)
    router = router_for(tmp_path, [ipt("/svc3", V1), ipt("/svc6", V2)])
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        assert router.sync().ok
    assert backends(tmp_path) == ["svc3_10061", "svc6_10062"]  # assigned afresh
    assert any("ignoring the IP-per-task port assignments" in r.getMessage()
               for r in caplog.records)
    assert json.loads((state / PORTS_FILE).read_text())["assignments"]  # rewritten


def test_an_unwritable_state_dir_is_logged_and_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").write_text("not a directory")
    router = router_for(tmp_path, [ipt("/svc3")])
    with caplog.at_level(logging.ERROR, logger="servicerouter"):
        router.build_model(json.loads((tmp_path / "apps.json").read_text())["apps"])
    assert any("cannot save the IP-per-task port assignments" in r.getMessage()
               for r in caplog.records)
    (tmp_path / "state").unlink()
    router.build_model(json.loads((tmp_path / "apps.json").read_text())["apps"])
    assert (tmp_path / "state" / PORTS_FILE).exists()  # the next sync saved it
