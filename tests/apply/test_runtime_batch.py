"""Runtime API commands batched on one connection (servicerouter.apply.runtime_api), with a
real HAProxy: one round trip per plan step, answers checked one by one, removals only after
every other change was taken."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicerouter.apply import runtime_api
from servicerouter.apply.confdiff import RuntimePlan, ServerLine
from servicerouter.apply.runtime_api import (
    MAX_BATCH,
    RuntimeAPI,
    RuntimeApplier,
    RuntimeUpdateError,
    batch_answers,
)
from tests.harness import wait_until


def test_batch_answers_split_interactive_output() -> None:
    # what HAProxy 2.6 writes for: prompt, add server, enable server, get weight, quit
    data = "\n> New server registered.\n\n> \n> 1 (initial 1)\n\n> "
    assert batch_answers(data, 3) == ["New server registered.\n", "", "1 (initial 1)\n"]
    with pytest.raises(RuntimeUpdateError, match="unexpected"):
        batch_answers("\n> only one\n\n> ", 2)  # fewer answers than commands
    with pytest.raises(RuntimeUpdateError, match="unexpected"):
        batch_answers("Unknown command\n", 1)  # not interactive output at all


@pytest.fixture
def haproxy_socket(tmp_path: Path, haproxy_bin: str) -> Iterator[str]:
    """A HAProxy with backend ``b`` (server s1) and an admin stats socket; stopped by PID."""
    sock = str(tmp_path / "admin.sock")
    with socket.socket() as holder:  # a port for the frontend, handed over at once
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    config = tmp_path / "h.cfg"
    config.write_text(
        f"global\n  stats socket {sock} mode 600 level admin\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n"
        "  timeout server 10s\n"
        f"frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n"
        "backend b\n  balance roundrobin\n  server s1 127.0.0.1:9\n")
    proc = subprocess.Popen([haproxy_bin, "-db", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(sock) and RuntimeAPI(sock).available(), 10,
                   message="HAProxy's stats socket never answered")
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def states(api: RuntimeAPI) -> dict[str, str]:
    """server name -> admin state ('0' ready, '1' maintenance, '8' drain) of backend b."""
    found = {}
    for line in api.command("show servers state b").splitlines()[2:]:
        words = line.split()
        if len(words) > 6:
            found[words[3]] = words[6]
    return found


@pytest.mark.e2e
def test_commands_answer_in_order_on_one_connection(haproxy_socket: str) -> None:
    api = RuntimeAPI(haproxy_socket)
    answers = api.commands(["add server b/x 127.0.0.1:8080", "enable server b/x",
                            "get weight b/x", "enable server b/nope"])
    assert answers[0].startswith("New server registered")
    assert answers[1] == ""
    assert answers[2].startswith("1 (initial 1)")
    assert "No such server" in answers[3]
    many = api.commands(["get weight b/x"] * (MAX_BATCH * 2 + 3))  # more than one batch
    assert len(many) == MAX_BATCH * 2 + 3 and all(a.startswith("1 ") for a in many)
    with pytest.raises(RuntimeUpdateError, match="newline"):
        api.commands(["get weight b/x\nshutdown frontend f"])


@pytest.mark.e2e
def test_an_added_server_takes_one_round_trip(haproxy_socket: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """add server + enable health + enable server used to be three connections, each a
    wait for HAProxy and then for us on a loaded machine; now one."""
    connections: list[str] = []
    real = runtime_api.unix_command

    def counting(path: str, command: str, *args: object, **kw: object) -> str:
        connections.append(command)
        return real(path, command, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_api, "unix_command", counting)
    api = RuntimeAPI(haproxy_socket)
    applier = RuntimeApplier(api, drain_timeout=0)
    applier.apply(RuntimePlan(add=(("b", ServerLine("s2", "127.0.0.1:10", ("check",))),)))
    assert len(connections) == 1
    assert states(api) == {"s1": "0", "s2": "0"}
    connections.clear()
    applier.apply(RuntimePlan(remove=(("b", ServerLine("s1", "127.0.0.1:9", ())),)))
    assert len(connections) == 1 and states(api)["s1"] == "8"  # draining


@pytest.mark.e2e
def test_removals_wait_for_every_other_change(haproxy_socket: str) -> None:
    """A refused add stops the plan before its removals: the old server keeps serving
    until the reload the caller does instead."""
    api = RuntimeAPI(haproxy_socket)
    applier = RuntimeApplier(api, drain_timeout=0)
    bad = ServerLine("s2", "127.0.0.1:10", ("no-such-keyword",))
    with pytest.raises(RuntimeUpdateError, match="add server b/s2"):
        applier.apply(RuntimePlan(add=(("b", bad),),
                                  remove=(("b", ServerLine("s1", "127.0.0.1:9", ())),)))
    assert states(api) == {"s1": "0"}
    assert applier.stats.added == 0 and applier.stats.draining == 0
