"""The partial readings of a config (confdiff.config_binds, backend_addresses) answer
what parse_config answers.

A validating run checks that the new config's bind addresses are free before a
reload, and a one-shot's removal guard compares the servers of the serving config
with the new one's; both parsed the configs whole (0.2 s each at 5,000 apps).  The
partial readings look only at section headers and the lines holding "bind" or
"server": hypothesis draws configs of hostile lines (odd whitespace and line breaks,
the words inside other words and other sections, repeated names, map blocks) and
compares them with the full parse.
"""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from servicerouter.apply.confdiff import (
    backend_addresses,
    config_binds,
    new_bind_addresses,
    new_binds,
    parse_config,
)
from servicerouter.engine.removal_guard import routed_of
from servicerouter.model.services import build_model
from servicerouter.render.config import render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.options import RenderOptions
from servicerouter.render.routing import BLOCK_MARKER, ENTRY_PREFIX, FILE_PREFIX
from tests.paths import MARATHON_FIXTURES
from tests.properties import QUICK

SPACE = st.sampled_from([" ", "  ", "\t", " \t", "\u3000", "\xa0", ""])
BREAK = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r", "\x0b", "\x1c", "\x85", "\u2028"])
WORD = st.sampled_from(["bind", "binds", "rebind", "bind,", "frontend", "listen",
                        "backend", "defaults", "global", "server", "servers", "#map", "x",
                        "default-server"])
ADDRESS = st.sampled_from(["*:80", "127.0.0.1:1,127.0.0.1:2", ",", "a,,b", ":::443",
                           "bind", "[::1]:9"])
LINE = st.one_of(
    st.tuples(SPACE, WORD, SPACE, ADDRESS).map("".join),  # "  bind *:80", "frontend x"
    st.tuples(SPACE, st.just("bind"), SPACE, ADDRESS, st.just(" ssl crt /x.pem")).map("".join),
    st.tuples(st.sampled_from(["frontend", "listen", "backend", "defaults"]),
              st.sampled_from([" ", "\t", "  "]),
              st.sampled_from(["web_1", "stats", "", "bind"])).map("".join),
    st.tuples(SPACE, st.sampled_from(["server", "server", "xserver", "server-template"]),
              SPACE, st.sampled_from(["a", "b", "bind_1", ""]), SPACE,
              st.sampled_from(["10.0.0.1:1", "10.0.0.2:2", "", "a:1 check"])).map("".join),
    st.sampled_from(["", " ", "  server bind_1 10.0.0.1:1 check", "  mode http",
                     BLOCK_MARKER, FILE_PREFIX + "/m/http-1-beg.map",
                     ENTRY_PREFIX + "bind web_1", ENTRY_PREFIX + "a.b web_1"]),
)


@st.composite
def configs(draw: st.DrawFn) -> str:
    lines = draw(st.lists(LINE, max_size=14))
    out = ""
    for line in lines:
        out += line + draw(BREAK)
    return out


@QUICK
@given(configs(), configs())
@example("frontend web\n  bind *:80\n\u2028  bind *:81\n", "")
@example("listen s\n\x0b  bind a:1\nbind b:2\n", "frontend t\n bind a:1\n")
def test_config_binds_is_the_full_parse_binds(text: str, old: str) -> None:
    assert config_binds(text) == parse_config(text).binds
    assert backend_addresses(text) == routed_of(parse_config(text))
    assert new_bind_addresses(old, text) == new_binds(parse_config(old), parse_config(text))
    assert new_bind_addresses(None, text) == new_binds(None, parse_config(text))


def test_a_rendered_config_s_binds() -> None:
    apps = json.loads((MARATHON_FIXTURES / "marathon-1.5-apps-embed-tasks.json").read_text())
    services = build_model(apps["apps"], ("*",), lambda host: host).services
    for options in (RenderOptions(), RenderOptions(map_dir="/tmp/maps")):
        text = render_config(services, load_fragments(), options)
        binds = config_binds(text)
        assert binds == parse_config(text).binds
        assert backend_addresses(text) == routed_of(parse_config(text))
        assert len(binds) > 2  # the shared frontends and the apps' own


def test_validating_one_shots_parse_no_config(tmp_path, haproxy_bin: str,
                                                monkeypatch) -> None:
    """Its busy-port check reads the bind lines only; nothing else parses a config when
    none is on disk (the Runtime API and the removal guard need a running one)."""
    from servicerouter.apply import confdiff
    from servicerouter.cli.main import main
    from tests.cli.test_cli import common, web_app

    parsed: list[int] = []
    real = confdiff.parse_config

    def counting(text: str):  # noqa: ANN202 - the real one's type
        parsed.append(len(text))
        return real(text)

    monkeypatch.setattr(confdiff, "parse_config", counting)
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app("/web", HAPROXY_0_VHOST="web.test")]}))
    argv = ["-m", f"file:{snapshot}", *common(tmp_path), "--haproxy-bin", haproxy_bin,
            "--state-dir", str(tmp_path / "state")]
    assert main(argv) == 0
    assert "backend web_10004" in (tmp_path / "haproxy.cfg").read_text()
    assert parsed == []
    # Again with an app more: the removal guard compares the config on disk with the
    # new one from their server lines; the busy-port check reads both bind lines.
    snapshot.write_text(json.dumps({"apps": [web_app("/web", HAPROXY_0_VHOST="web.test"),
                                             web_app("/apis", HAPROXY_0_VHOST="api.test")]}))
    assert main(argv) == 0
    assert "backend apis_10005" in (tmp_path / "haproxy.cfg").read_text()
    assert parsed == []
