"""Which config changes go through the Runtime API (servicerouter.apply.confdiff)."""

from __future__ import annotations

from servicerouter.apply.confdiff import (
    ParsedConfig,
    ServerLine,
    new_binds,
    parse_config,
    plan_runtime_update,
    unsupported_args,
)
from tests.paths import LEGACY_TEMPLATES

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


def test_static_balances_take_no_dynamic_servers() -> None:
    """HAProxy 2.6: "Backend must use a dynamic load balancing to support dynamic servers"."""
    def balanced(balance: str, extra: str = "") -> tuple[ParsedConfig, ParsedConfig]:
        base = config("a_1 10.0.0.1:1").replace("balance roundrobin", balance + extra)
        more = config("a_1 10.0.0.1:1", "b_2 10.0.0.2:2").replace("balance roundrobin",
                                                                   balance + extra)
        return parse_config(base), parse_config(more)

    for balance in ("static-rr", "source", "uri", "hdr(Host)", "url_param id",
                    "rdp-cookie(x)", "hash path"):
        old, new = balanced(f"balance {balance}")
        assert new.static_lb == {"web_10000"}, balance
        assert "static" in plan_runtime_update(old, new).reason, balance
    for balance in ("source", "hdr(Host)", "url_param id"):  # consistent hashing is dynamic
        old, new = balanced(f"balance {balance}", "\n  hash-type consistent")
        assert not new.static_lb and plan_runtime_update(old, new).plan is not None, balance
    for balance in ("leastconn", "first", "random(2)"):
        old, new = balanced(f"balance {balance}")
        assert plan_runtime_update(old, new).plan is not None, balance
    # a backend without its own balance line inherits the defaults section's
    inherited = "defaults\n  balance source\n" + config("a_1 10.0.0.1:1").replace(
        "  balance roundrobin\n", "")
    assert parse_config(inherited).static_lb == {"web_10000"}


def sticky(*servers: str, cookie: str = "cookie sid insert indirect nocache dynamic",
           where: str = "backend") -> str:
    text = config(*servers)
    line = f"  {cookie}\n  dynamic-cookie-key k\n"
    if where == "defaults":
        return "defaults\n" + line + text
    return text.replace("  mode http\n  server", "  mode http\n" + line + "  server", 1)


def test_dynamic_cookie_backends_scale_live() -> None:
    """Servers without 'cookie' in a 'cookie ... dynamic' backend: added and moved live,
    with the backend named so HAProxy computes their cookies."""
    old = parse_config(sticky("a_1 10.0.0.1:1 check", "b_2 10.0.0.2:2 check"))
    assert old.dynamic_cookie == {"web_10000"}
    new = parse_config(sticky("b_2 10.0.0.9:2 check", "c_3 10.0.0.3:3 check"))
    plan = plan_runtime_update(old, new).plan
    assert plan is not None
    assert [s.name for _b, s in plan.add] == ["c_3"] and len(plan.remove) == 1
    assert plan.dynamic_cookie == ("web_10000",)
    # removals alone need no new cookies
    only_down = plan_runtime_update(old, parse_config(sticky("a_1 10.0.0.1:1 check"))).plan
    assert only_down is not None and only_down.dynamic_cookie == ()
    # inherited from the defaults section, as HAProxy does
    inherited = parse_config(sticky("a_1 10.0.0.1:1 check", where="defaults"))
    assert inherited.dynamic_cookie == {"web_10000"}
    overridden = sticky("a_1 10.0.0.1:1 check", where="defaults").replace(
        "  mode http\n  server", "  mode http\n  cookie x insert\n  server")
    assert parse_config(overridden).dynamic_cookie == frozenset()


def test_sticky_servers_with_their_own_cookie_reload() -> None:
    """One fragment overridden: a server line that names its cookie (servicerouter.py's
    cookieOptions) cannot be added live, dynamic backend or not."""
    for cookie in ("cookie sid insert indirect nocache",
                   "cookie sid insert indirect nocache dynamic"):
        old = parse_config(sticky("a_1 10.0.0.1:1 check cookie a_1", cookie=cookie))
        new = parse_config(sticky("a_1 10.0.0.1:1 check cookie a_1",
                                  "b_2 10.0.0.2:2 check cookie b_2", cookie=cookie))
        verdict = plan_runtime_update(old, new)
        assert verdict.plan is None and "cookie" in verdict.reason, cookie
    static = parse_config(sticky("a_1 10.0.0.1:1 check", cookie="cookie sid insert"))
    assert static.dynamic_cookie == frozenset()


def test_rendered_sticky_backends_decide_runtime_or_reload() -> None:
    """What the fragments render decides: the defaults scale live, servicerouter.py's
    fragments (or only one of the pair overridden) keep explicit cookies and reload."""

    from servicerouter.model.services import build_model
    from servicerouter.render.config import RenderOptions, render_config
    from servicerouter.render.fragments import FragmentSet, load_fragments

    legacy_dir = LEGACY_TEMPLATES
    defaults = load_fragments([])
    legacy = load_fragments([legacy_dir])

    def one_overridden(name: str) -> FragmentSet:
        return FragmentSet({**defaults.fragments, name: legacy[name]})

    def app(*ports: int) -> dict:
        return {"id": "/s", "ports": [10001], "labels": {"HAPROXY_0_STICKY": "true"},
                "tasks": [{"id": f"t{p}", "host": "10.0.0.1", "ports": [p]} for p in ports]}

    def verdict(fragments):
        texts = [render_config(build_model([app(*ports)], ("*",), lambda h: h).services,
                               fragments, RenderOptions(cookie_secret="s" * 64))
                 for ports in ((31000,), (31000, 31001))]
        return plan_runtime_update(parse_config(texts[0]), parse_config(texts[1]))

    assert verdict(defaults).plan is not None
    assert verdict(legacy).plan is None
    # a static cookie line makes the default server line name its cookie again
    assert verdict(one_overridden("HAPROXY_BACKEND_STICKY_OPTIONS")).plan is None
    assert verdict(one_overridden("HAPROXY_BACKEND_SERVER_OPTIONS")).plan is None


def test_new_binds_are_those_the_running_config_lacks() -> None:
    old = parse_config(config("a_1 10.0.0.1:1"))
    assert old.binds == {"web_10000": ("*:10000",), "stats": ("127.0.0.1:9090",)}
    new = parse_config(config("a_1 10.0.0.1:1") + "frontend api_10001\n  bind "
                       "127.0.0.1:10001,127.0.0.1:10002 ssl crt /x.pem\n")
    assert new_binds(old, new) == {"api_10001": ("127.0.0.1:10001", "127.0.0.1:10002")}
    assert new_binds(None, old) == old.binds  # nothing runs: every address is new


def test_haproxy_bind_failure_messages() -> None:
    from servicerouter.apply.haproxy import BindFailure, bind_failures

    message = (
        "HAProxy refused the new config: [ALERT]    (8512) : Binding [/h.cfg:12] for frontend "
        "clash_59461: cannot bind socket (Address already in use) for [127.0.0.1:59461] | "
        "[ALERT]    (8512) : [haproxy.main()] Some protocols failed to start their listeners!\n"
        "[ALERT] (1) : Starting frontend a:b: cannot bind socket (Permission denied) [0.0.0.0:80]")
    assert bind_failures(message) == [
        BindFailure("clash_59461", "127.0.0.1:59461", "Address already in use"),
        BindFailure("a:b", "0.0.0.0:80", "Permission denied"),
    ]
    assert bind_failures("[ALERT] config : parsing [x:3] : unknown keyword 'bogus'") == []


def test_address_free_answers_like_haproxy_would() -> None:
    import socket

    from servicerouter.apply.haproxy import address_free

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert address_free(f"127.0.0.1:{port}") is False
        assert address_free(f"*:{port}") is False and address_free(f":{port}") is False
    assert address_free(f"127.0.0.1:{port}") is True
    assert address_free("unix@/run/x.sock") is None and address_free("1.2.3.4:80-90") is None


def test_a_server_line_the_runtime_api_would_split_takes_a_reload() -> None:
    """';' separates Runtime API commands: a changed server line holding one (a custom
    fragment, a label template) is never sent, the config is reloaded instead."""
    old = parse_config("backend b\n  server a 10.0.0.1:80 check\n")
    for bad in ("  server c 10.0.0.2:80 check agent-send x;shutdown\n",
                "  server c 10.0.0.2:80 check weight 1#\n",
                "  server a 10.0.0.1:80 check weight 2;disable\n"):
        verdict = plan_runtime_update(old, parse_config("backend b\n" + bad))
        assert verdict.plan is None and "Runtime API" in verdict.reason, bad
    fine = parse_config("backend b\n  server a 10.0.0.1:80 check\n"
                        "  server c 10.0.0.2:80 check weight 2\n")
    assert plan_runtime_update(old, fine).plan is not None
