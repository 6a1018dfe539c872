"""Which config changes go through the Runtime API (servicerouter.confdiff)."""

from __future__ import annotations

from servicerouter.confdiff import ServerLine, parse_config, plan_runtime_update, unsupported_args

BASE = """global
  daemon

frontend web_10000
  bind *:10000
  mode http
  use_backend web_10000

backend web_10000
  balance roundrobin
  mode http
{servers}
listen stats
  bind 127.0.0.1:9090
  server local 127.0.0.1:1 check
"""


def config(*servers: str) -> str:
    return BASE.format(servers="".join(f"  server {s}\n" for s in servers))


def test_parse_splits_servers_from_the_skeleton() -> None:
    parsed = parse_config(config("a_1 10.0.0.1:1 check inter 2000", "b_2 10.0.0.2:2 check"))
    assert parsed.servers["web_10000"]["a_1"] == ServerLine("a_1", "10.0.0.1:1",
                                                            ("check", "inter", "2000"))
    assert "  server local 127.0.0.1:1 check" in parsed.skeleton  # listen: not touched
    assert not any("a_1" in line for line in parsed.skeleton)


def test_server_changes_make_a_plan() -> None:
    old = parse_config(config("a_1 10.0.0.1:1 check", "b_2 10.0.0.2:2 check"))
    new = parse_config(config("b_2 10.0.0.9:2 check", "c_3 10.0.0.3:3 check"))
    verdict = plan_runtime_update(old, new)
    assert verdict.plan is not None
    plan = verdict.plan
    assert [(b, s.name) for b, s in plan.add] == [("web_10000", "c_3")]
    assert [(b, s.name) for b, s in plan.remove] == [("web_10000", "a_1")]
    assert [(b, s.address) for b, s in plan.readdress] == [("web_10000", "10.0.0.9:2")]
    assert plan.size == 3 and not plan.empty


def test_reordered_servers_need_nothing() -> None:
    old = parse_config(config("a_1 10.0.0.1:1", "b_2 10.0.0.2:2"))
    new = parse_config(config("b_2 10.0.0.2:2", "a_1 10.0.0.1:1"))
    plan = plan_runtime_update(old, new).plan
    assert plan is not None and plan.empty


def test_anything_else_needs_a_reload() -> None:
    old = parse_config(config("a_1 10.0.0.1:1 check"))
    cases = {
        "skeleton": config("a_1 10.0.0.1:1 check").replace("balance roundrobin", "balance leastconn"),
        "cookie": config("a_1 10.0.0.1:1 check", "c_3 10.0.0.3:3 check cookie c_3"),
        "options": config("a_1 10.0.0.1:1 check inter 5s"),
        "port": config("a_1 10.0.0.1:9 check"),
        "new backend": config("a_1 10.0.0.1:1 check") + "backend x\n  server y 1.2.3.4:5\n",
        "default-server": config("a_1 10.0.0.1:1 check", "c_3 10.0.0.3:3").replace(
            "  mode http\n  server", "  mode http\n  default-server inter 3s\n  server"),
    }
    for name, text in cases.items():
        verdict = plan_runtime_update(old, parse_config(text))
        assert verdict.plan is None, name
        assert verdict.reason, name


def test_unsupported_args() -> None:
    assert unsupported_args(["check", "inter", "2s", "fall", "3", "weight", "10"]) == []
    assert unsupported_args(["check", "cookie", "x"]) == ["cookie", "x"]
    assert unsupported_args(["inter"]) == ["inter"]  # a valued keyword without its value
