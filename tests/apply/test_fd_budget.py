"""fd_budget: the descriptors a config asks of HAProxy, checked against HAProxy itself."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from servicerouter.apply.fd_budget import fd_need, fd_problem


def _config(servers: int, maxconn: int | None = None, binds: int = 2,
            inter: str | None = None) -> str:
    lines = ["global"] + ([f"  maxconn {maxconn}"] if maxconn else []) + [
        "defaults", "  mode tcp", "  timeout connect 1s", "  timeout client 1s",
        "  timeout server 1s", "backend b", "  balance roundrobin"]
    check = "check" + (f" inter {inter}" if inter else "")
    lines += [f"  server s{i} 127.0.0.1:{20000 + i} {check}" for i in range(servers)]
    lines += ["  server unchecked 127.0.0.1:1", "frontend f"]
    lines += [f"  bind 127.0.0.1:{18000 + i}" for i in range(binds)]
    lines += ["  use_backend b"]
    return "\n".join(lines) + "\n"


def test_counts_checked_servers_listeners_and_the_check_rate() -> None:
    need = fd_need(_config(100, maxconn=500, inter="10s"))
    assert (need.checked_servers, need.listeners, need.global_maxconn) == (100, 2, 500)
    assert need.descriptors == 100 + 2 + 2 * 500 + 16
    assert round(need.checks_per_second) == 10
    assert round(fd_need(_config(100)).checks_per_second) == 50  # HAProxy's 2 s default


def test_the_problem_names_the_figure_the_limit_and_the_fix() -> None:
    need = fd_need(_config(30000))
    message = fd_problem(need, 20000, "servicerouter")
    assert message is not None
    assert str(need.descriptors) in message and "20000" in message
    assert "LimitNOFILE=" in message and "ulimit -Hn" in message
    assert fd_problem(need, 100000, "servicerouter") is None
    assert fd_problem(need, None, "servicerouter") is None
    low = fd_need(_config(300).replace("global\n", "global\n  ulimit-n 200\n"))
    assert "ulimit-n" in (fd_problem(low, None, "servicerouter") or "")


def _haproxy_wants(haproxy_bin: str, text: str, tmp_path: Path, limit: int) -> int | None:
    """The descriptors HAProxy says it cannot get under a hard limit of ``limit``."""
    cfg = tmp_path / "fd.cfg"
    cfg.write_text(text)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.run([haproxy_bin, "-db", "-f", str(cfg)], preexec_fn=lower,
                          capture_output=True, text=True, timeout=20)
    found = re.search(r"Cannot raise FD limit to (\d+), limit is (\d+)", proc.stderr)
    assert found is not None, proc.stderr[-500:]
    return int(found.group(1))


def test_the_figure_is_what_haproxy_asks_for(haproxy_bin: str, tmp_path: Path) -> None:
    """HAProxy itself refuses to start under the limit, asking for (about) our figure."""
    for text in (_config(3000, maxconn=200), _config(3000)):
        need = fd_need(text)
        assert fd_problem(need, 2000, "test") is not None
        wanted = _haproxy_wants(haproxy_bin, text, tmp_path, 2000)
        assert wanted is not None and abs(wanted - need.descriptors) <= 16, \
            (wanted, need.descriptors)


def test_a_sync_says_it_before_reloading(tmp_path: Path, monkeypatch, caplog) -> None:
    """The one-shot sync (and the live engine, same call) logs the figure before a reload."""
    import json

    from servicerouter.apply import fd_budget
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments

    class Snapshot:
        def fetch_apps_body(self) -> bytes:
            tasks = [{"id": f"web.{i}", "host": "10.0.0.1", "ports": [31000 + i]}
                     for i in range(400)]
            return json.dumps({"apps": [{"id": "/web", "ports": [10001], "tasks": tasks}]}
                              ).encode()

    monkeypatch.setattr(fd_budget, "hard_nofile_limit", lambda: 300)
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), groups=("*",),
                              validate=False, reload=("true",),
                              state_dir=str(tmp_path / "state"), certs_dir=None)
    router = Router(Snapshot(), load_fragments(), settings, resolver=lambda h: h)
    with caplog.at_level("ERROR"):
        assert router.sync().ok
    assert any("LimitNOFILE=" in r.getMessage() and "300" in r.getMessage()
               for r in caplog.records)


def _plain_reading(text: str) -> tuple[int, int, int | None, int | None, float]:
    """fd_need's figures read line by line, the plain way (the reference for the scan)."""
    from servicerouter.apply.fd_budget import _check_rate

    checked = listeners = 0
    rate = 0.0
    maxconn = ulimit = None
    section = ""
    for line in text.split("\n"):
        words = line.split()
        if not words:
            continue
        if line[0] not in " \t":
            section = words[0]
            continue
        if words[0] == "server" and len(words) > 3:
            line_rate = _check_rate(words[3:])
            if line_rate is not None:
                checked += 1
                rate += line_rate
        elif words[0] == "bind" and len(words) > 1:
            listeners += len([a for a in words[1].split(",") if a])
        elif section == "global" and len(words) > 1 and words[0] == "maxconn":
            maxconn = int(words[1]) if words[1].isdigit() else None
        elif section == "global" and len(words) > 1 and words[0] == "ulimit-n":
            ulimit = int(words[1]) if words[1].isdigit() else None
    return checked, listeners, maxconn, ulimit, rate


_WORDS = ["check", "inter", "2s", "500ms", "10", "x", "fall", "3", "check-ssl", "1.2.3.4:80",
          "server", "bind", "maxconn", "ulimit-n", "global", ":80,:81", ",", "backup"]


@st.composite
def _configs(draw) -> str:
    """Config-like texts: sections (global among them), indented lines of keywords and words."""
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["global", "global # main", "defaults",
                                               "backend b", "frontend f", "# note", "globalx"])))
        else:
            indent = draw(st.sampled_from([" ", "  ", "\t", " \t"]))
            words = draw(st.lists(st.sampled_from(_WORDS), max_size=6))
            gap = draw(st.sampled_from([" ", "  ", "\t"]))
            lines.append(indent + gap.join(words) + draw(st.sampled_from(["", " ", "\t"])))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=400, deadline=None)
@given(_configs())
@example("global\n \nglobal\n maxconn 3")  # a second global right after a blank line
def test_the_scan_reads_what_a_line_loop_reads(text: str) -> None:
    need = fd_need(text)
    checked, listeners, maxconn, ulimit, rate = _plain_reading(text)
    assert (need.checked_servers, need.listeners, need.global_maxconn, need.ulimit_n) == (
        checked, listeners, maxconn, ulimit)
    assert abs(need.checks_per_second - rate) < 1e-6 * max(1.0, rate)
