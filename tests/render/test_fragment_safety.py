"""Fragments against hostile data: no printed value breaks a line, no app's data stops a sync.

* A Jinja2 fragment (the operator's or a default) may print labels and app fields, which
  any tenant sets: every printed value passes a check that refuses control characters,
  line/paragraph separators and ``#``; the service that tried is left out (its whole
  app), named with its port index and the fragment's file and line; the rest routes.
* A fragment that raises on one app's data (``labels.TEAM.split('-')[1]``) skips that
  app the same way, in one-shot runs and in the live engine.
* Legacy ``str.format`` fragments print only validated values; format specs with absurd
  widths fail at startup.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.cli import main as cli
from servicerouter.model.labels import SETTINGS
from servicerouter.model.services import build_model
from servicerouter.render.config import (
    RenderError,
    RenderOptions,
    render_config,
    render_guarded,
)
from servicerouter.render.fragment_registry import FRAGMENTS_BY_NAME
from servicerouter.render.fragments import (
    FragmentSet,
    TemplateError,
    compile_fragment,
    default_templates_dir,
    load_fragments,
)
from servicerouter.render.sandbox import TemplateSandbox, printable
from tests.engine.live_rig import app as live_app
from tests.engine.live_rig import rig_factory  # noqa: F401 - the live engine fixture
from tests.harness import wait_until
from tests.paths import LEGACY_TEMPLATES, MARATHON_FIXTURES

LEGACY = LEGACY_TEMPLATES
DEFAULT_BACKEND_HEAD = (default_templates_dir() / "HAPROXY_BACKEND_HEAD.j2").read_text()
OPTIONS = RenderOptions(crt_list="/state/crt-list", default_cert="/state/default.pem")
INJECTION = "x\n  http-request deny\nlisten pwn\n  bind 127.0.0.1:2222\n  server s 1.2.3.4:22"
LINE_BREAKERS = ["\n", "\r", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85",
                 "\u2028", "\u2029", "#"]


def _templates(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory


def _apps(team: object = "blue", *, ports: int = 1) -> list[dict]:
    return [
        {"id": "/web", "ports": [10000], "labels": {"HAPROXY_0_VHOST": "web.example.com"},
         "tasks": [{"id": "w.1", "host": "10.0.0.1", "ports": [31000]}]},
        {"id": "/tenant", "ports": list(range(10001, 10001 + ports)),
         "labels": {"TEAM": team, "HAPROXY_0_VHOST": "tenant.example.com"},
         "tasks": [{"id": "t.1", "host": "10.0.0.2", "ports": list(range(31001, 31001 + ports))}]},
        {"id": "/zeta", "ports": [10009], "labels": {"TEAM": "z-ok"},
         "tasks": [{"id": "z.1", "host": "10.0.0.3", "ports": [31009]}]},
    ]


def _services(apps: list[dict]) -> list:
    return list(build_model(apps, ("*",), lambda host: host).services)


def _team_fragments(tmp_path: Path, line: str):
    """The default backend head plus one line printing something of the app's."""
    return load_fragments([_templates(tmp_path, "HAPROXY_BACKEND_HEAD.j2",
                                      DEFAULT_BACKEND_HEAD + line + "\n")])


TEAM_LINE = '  description team {{ labels.get("TEAM", "none") }}'
TEAM_LINE_NO = DEFAULT_BACKEND_HEAD.count("\n") + 1


# --------------------------------------------------------------------------- printed values


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=repr)
def test_a_label_cannot_break_a_line_through_an_operator_fragment(tmp_path: Path,
                                                                  char: str) -> None:
    fragments = _team_fragments(tmp_path, TEAM_LINE)
    services = _services(_apps(INJECTION.replace("\n", char)))
    rendered = render_guarded(services, fragments, OPTIONS)
    assert "pwn" not in rendered.text and "tenant" not in rendered.text
    assert "backend web_10000" in rendered.text and "backend zeta_10009" in rendered.text
    assert rendered.text == render_config([s for s in services if s.app_id != "/tenant"],
                                          fragments, OPTIONS)
    [problem] = rendered.problems
    assert problem.app_id == "/tenant" and problem.port_index == 0
    message = str(problem)
    source = str(tmp_path / "templates" / "HAPROXY_BACKEND_HEAD.j2")
    assert f"HAPROXY_BACKEND_HEAD ({source}: line {TEAM_LINE_NO})" in message, message
    assert "UnsafeValueError" in message and "app skipped" in message
    assert message.isprintable(), message  # the log line is one line too


@pytest.mark.parametrize("line", [
    '  description {{ app.id }} {{ app.labels.TEAM }}',
    '  description {{ service.labels["TEAM"] }}',
    '  description {{ labels.TEAM|upper }}',
    '  description {{ "%s"|format(labels.TEAM) }}',
    '  description {{ labels.TEAM ~ "" }}',
    '{% set team = labels.TEAM %}  description {{ team }}',
    '{% set backend = labels.TEAM %}  description {{ backend }}',  # rebinding a placeholder
    '{% for mode in [labels.TEAM] %}  description {{ mode }}{% endfor %}',
    '{% macro d(v) %}  description {{ v }}{% endmacro %}{{ d(labels.TEAM) }}',
    '{% set t %}{{ labels.TEAM }}{% endset %}  description {{ t }}',
    '{% filter lower %}  description {{ labels.TEAM }}{% endfilter %}',
])
def test_every_way_of_printing_data_is_checked(tmp_path: Path, line: str) -> None:
    fragments = _team_fragments(tmp_path, line)

    def apps(team: str) -> list[dict]:
        state = _apps(team)
        state[0]["labels"]["TEAM"] = "web"
        return state

    for bad in ("a\nlisten pwn", "a#", "a\u2028b"):
        rendered = render_guarded(_services(apps(bad)), fragments, OPTIONS)
        assert [p.app_id for p in rendered.problems] == ["/tenant"], (line, bad)
        assert "pwn" not in rendered.text
    rendered = render_guarded(_services(apps("blue")), fragments, OPTIONS)
    assert not rendered.problems and "tenant_10001" in rendered.text


@pytest.mark.parametrize("line", ['  description {{ labels }}', '  description {{ app }}',
                                  '  description {{ labels.items()|list }}'])
def test_containers_print_escaped_and_without_comments(tmp_path: Path, line: str) -> None:
    """A dict or list prints its repr: line breakers come out escaped, '#' is refused."""
    fragments = _team_fragments(tmp_path, line)
    rendered = render_guarded(_services(_apps("a\nlisten pwn\u2028")), fragments, OPTIONS)
    assert not rendered.problems
    assert "a\\nlisten pwn\\u2028" in rendered.text
    assert rendered.text.splitlines() == rendered.text.split("\n")[:-1]
    rendered = render_guarded(_services(_apps("a#b")), fragments, OPTIONS)
    assert [p.app_id for p in rendered.problems] == ["/tenant"]


def test_fragment_text_keeps_its_own_line_breaks(tmp_path: Path) -> None:
    """A macro or {% set %} block spanning lines prints whole: its breaks are the fragment's."""
    line = ('{% macro extra(team) %}  description {{ team }}\n  option tcplog\n{% endmacro %}'
            '{{ extra(labels.get("TEAM", "none")) }}'
            '{% set tail %}  timeout check 5s\n  retries 3\n{% endset %}{{ tail }}')
    fragments = _team_fragments(tmp_path, line)
    rendered = render_guarded(_services(_apps("blue")), fragments, OPTIONS)
    assert not rendered.problems
    assert ("  description blue\n  option tcplog\n  timeout check 5s\n  retries 3\n"
            in rendered.text)
    # ...but not once a filter made a new string of it: that is data again
    fragments = _team_fragments(tmp_path, '{% macro m() %}a\nb{% endmacro %}{{ m()|upper }}')
    rendered = render_guarded(_services(_apps("blue")), fragments, OPTIONS)
    assert {p.app_id for p in rendered.problems} == {"/tenant", "/web", "/zeta"}


def test_printable_accepts_words_and_refuses_line_breakers() -> None:
    for ok in ("web-1.example.com", "", "ünïcødé café", "a\u00a0b", "a\u200db", 80, None, True):
        assert str(printable(ok)) == str(ok)
    for char in LINE_BREAKERS:
        with pytest.raises(ValueError, match="may not break or end a line"):
            printable(f"a{char}b")
    with pytest.raises(ValueError):
        printable({"k": "v#"})  # anything else is checked as the text it prints


def _plain_defaults():
    """The default fragments compiled without the check (as before it existed)."""
    env = TemplateSandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True, autoescape=False)
    chosen = {}
    for name, fragment in load_fragments().fragments.items():
        if fragment.is_jinja:
            chosen[name] = compile_fragment(FRAGMENTS_BY_NAME[name], fragment.text,
                                            fragment.source, jinja=True, env=env)
        else:
            chosen[name] = fragment
    return FragmentSet(chosen)




def _app_list_fixtures() -> list[str]:
    """The fixtures that are ``/v2/apps`` answers (the others are single apps, task lists)."""
    names = []
    for path in sorted(MARATHON_FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and isinstance(body.get("apps"), list):
            names.append(path.name)
    return names


@pytest.mark.parametrize("fixture", _app_list_fixtures())
def test_default_fragments_render_byte_identically_with_the_check(fixture: str) -> None:
    body = json.loads((MARATHON_FIXTURES / fixture).read_text())
    services = _services(body["apps"])
    checked = render_guarded(services, load_fragments(), OPTIONS)
    assert not checked.problems
    assert checked.text == render_config(services, _plain_defaults(), OPTIONS)


def test_generated_state_renders_byte_identically_with_the_check() -> None:
    from benchmarks.generate import generate_state

    services = _services(generate_state(200, 3)["apps"])
    checked = render_guarded(services, load_fragments(), OPTIONS)
    assert not checked.problems and len(checked.services) == len(services)
    assert checked.text == render_config(services, _plain_defaults(), OPTIONS)


LABEL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    [INJECTION, "a#b", "\r\n", "x\u2028y", "ok", "#", " ", "{{ 1 }}", "{backend}", "\\n"])


@pytest.fixture(scope="module")
def team_fragments(tmp_path_factory: pytest.TempPathFactory):
    return _team_fragments(tmp_path_factory.mktemp("team"), TEAM_LINE)


@settings(max_examples=300, deadline=None)
@given(team=LABEL_TEXT, vhost=LABEL_TEXT, port=LABEL_TEXT)
def test_label_text_never_adds_a_line(team_fragments, team: str, vhost: str, port: str) -> None:
    """Arbitrary label text: the config has exactly the lines the fragments write."""
    fragments = team_fragments
    apps = _apps(team)
    apps[1]["labels"].update({"HAPROXY_0_VHOST": vhost, "HAPROXY_0_BIND_OPTIONS": port,
                              "HAPROXY_0_STICKY_COOKIE": team, "OTHER": vhost})
    services = _services(apps)
    rendered = render_guarded(services, fragments, OPTIONS)
    text = rendered.text
    assert text.splitlines() == text.split("\n")[:-1]  # no other line breaker anywhere
    assert text.count("\n") == render_config(rendered.services, fragments, OPTIONS).count("\n")
    descriptions = [line for line in text.split("\n") if line.startswith("  description team")]
    assert len(descriptions) == len(rendered.services)  # one per backend, none smuggled in
    assert "pwn" not in text
    if any(s.app_id == "/tenant" for s in rendered.services):
        assert f"  description team {team}\n" in text
        assert not any(c in team for c in LINE_BREAKERS)
    else:
        assert "tenant" not in text
    for problem in rendered.problems:
        assert problem.app_id == "/tenant" and str(problem).isprintable()


DEFAULTS = load_fragments()
LEGACY_FRAGMENTS = load_fragments([LEGACY])
REGISTRY_KEYS = sorted(s.key.replace("{n}", "0") for s in SETTINGS)


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.sampled_from(REGISTRY_KEYS), LABEL_TEXT, max_size=8))
def test_validated_placeholders_hold_no_line_breaker(values: dict[str, str]) -> None:
    """The names a .j2 fragment prints unchecked ({{ backend }}, {{ bindOptions }}...) are
    the registry's validated values: no label text brings a line breaker or '#' through them."""
    apps = _apps("blue")
    apps[1]["labels"] = {"HAPROXY_GROUP": "x", **values}
    apps[1]["healthChecks"] = [{"protocol": "HTTP", "portIndex": 0, "path": "/health"}]
    services = _services(apps)
    for fragments, defaults in ((DEFAULTS, True), (LEGACY_FRAGMENTS, False)):
        text = render_guarded(services, fragments, OPTIONS).text
        assert text.splitlines() == text.split("\n")[:-1]
        assert "\x00" not in text and "\t" not in text and "pwn" not in text
        if defaults:
            assert "#" not in text  # the defaults write none themselves


# --------------------------------------------------------------------------- data-dependent errors


SPLIT_LINE = '  description team {{ labels.get("TEAM", "a-b").split("-")[1] }}'


def test_a_fragment_raising_on_one_apps_data_skips_only_that_app(tmp_path: Path) -> None:
    fragments = _team_fragments(tmp_path, SPLIT_LINE)
    services = _services(_apps("nodash"))
    with pytest.raises(Exception, match="no element 1"):
        render_config(services, fragments, OPTIONS)  # the strict form still raises
    rendered = render_guarded(services, fragments, OPTIONS)
    [problem] = rendered.problems
    assert (problem.app_id, problem.port_index) == ("/tenant", 0)
    assert f"HAPROXY_BACKEND_HEAD.j2: line {TEAM_LINE_NO})" in str(problem)
    assert "UndefinedError" in str(problem)
    assert [s.app_id for s in rendered.services] == ["/web", "/zeta"]
    assert rendered.text == render_config(rendered.services, fragments, OPTIONS)
    assert "description team b" in rendered.text  # /web's default "a-b"


def test_a_failing_port_takes_its_whole_app_out(tmp_path: Path) -> None:
    """Port 1 fails after port 0 rendered: port 0's frontend, ACLs and backend go too."""
    fragments = _team_fragments(
        tmp_path, '{% if service.index == 1 %}  x {{ labels.TEAM.split("-")[1] }}{% endif %}')
    services = _services(_apps("nodash", ports=3))
    rendered = render_guarded(services, fragments, OPTIONS)
    assert [(p.app_id, p.port_index) for p in rendered.problems] == [("/tenant", 1)]
    assert "tenant" not in rendered.text
    assert rendered.text == render_config(rendered.services, fragments, OPTIONS)
    # services not sorted by app (the app's ports apart): the render is redone without it
    shuffled = [services[0], services[3], services[1], services[2], services[4]]
    assert [s.app_id for s in shuffled] == ["/tenant", "/web", "/tenant", "/tenant", "/zeta"]
    rendered = render_guarded(shuffled, fragments, OPTIONS)
    assert "tenant" not in rendered.text
    assert rendered.text == render_config(rendered.services, fragments, OPTIONS)


def test_fragments_reading_services_see_only_what_is_rendered(tmp_path: Path) -> None:
    directory = _templates(tmp_path, "HAPROXY_BACKEND_HEAD.j2",
                           DEFAULT_BACKEND_HEAD + SPLIT_LINE + "\n")
    (directory / "HAPROXY_HEAD.j2").write_text(
        (default_templates_dir() / "HAPROXY_HEAD.j2").read_text()
        + "  {{ services|length }} services\n")
    fragments = load_fragments([directory])
    rendered = render_guarded(_services(_apps("nodash")), fragments, OPTIONS)
    assert [p.app_id for p in rendered.problems] == ["/tenant"]
    assert "  2 services\n" in rendered.text
    assert rendered.text == render_config(rendered.services, fragments, OPTIONS)


def test_a_failing_head_fragment_is_a_render_error(tmp_path: Path) -> None:
    directory = _templates(tmp_path, "HAPROXY_HEAD.j2",
                           "global\n{% for s in services %}  # {{ s.labels.TEAM }}\n{% endfor %}")
    fragments = load_fragments([directory])
    with pytest.raises(RenderError, match=r"HAPROXY_HEAD \(.*HAPROXY_HEAD.j2: line 2\)"):
        render_guarded(_services(_apps("blue")), fragments, OPTIONS)


def _snapshot(tmp_path: Path, apps: list[dict]) -> Path:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": apps}))
    return path


@pytest.mark.parametrize("line, team, reason", [
    (SPLIT_LINE, "nodash", "UndefinedError"),
    (TEAM_LINE, INJECTION, "UnsafeValueError"),
])
def test_one_shot_run_skips_the_app_and_writes_the_rest(tmp_path: Path, haproxy_bin: str,
                                                         capfd: pytest.CaptureFixture[str],
                                                         line: str, team: str,
                                                         reason: str) -> None:
    directory = _templates(tmp_path, "HAPROXY_BACKEND_HEAD.j2",
                           DEFAULT_BACKEND_HEAD + line + "\n")
    config = tmp_path / "haproxy.cfg"
    code = cli.main(["-m", f"file:{_snapshot(tmp_path, _apps(team))}",
                     "--templates-dir", str(directory), "--group", "*",
                     "--haproxy-config", str(config), "--haproxy-bin", haproxy_bin,
                     "--state-dir", str(tmp_path / "state"),
                     "--certs-dir", str(tmp_path / "no-certs"),
                     "--syslog-socket", "/dev/null", "--command", "true"])
    err = capfd.readouterr().err
    assert code == 0, err  # written and validated by haproxy -c
    text = config.read_text()
    assert "backend web_10000" in text and "backend zeta_10009" in text
    assert "tenant" not in text and "pwn" not in text
    logged = [line for line in err.splitlines() if "/tenant" in line]
    assert any("port index 0" in m and "HAPROXY_BACKEND_HEAD.j2: line" in m and reason in m
               for m in logged), err


def test_live_engine_skips_and_reports_the_app_and_keeps_running(rig_factory,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    directory = _templates(tmp_path, "HAPROXY_BACKEND_HEAD.j2",
                           DEFAULT_BACKEND_HEAD + SPLIT_LINE + "\n")
    rig = rig_factory([live_app("/web", 10300, TEAM="a-b"),
                       live_app("/tenant", 10301, TEAM="nodash")], templates=directory)
    emu, live = rig.emulator, rig.live
    emu.add_task("/web", "127.0.0.1", [31300])
    emu.add_task("/tenant", "127.0.0.1", [31301])
    wait_until(lambda: "127.0.0.1:31300" in rig.text(), 10)
    assert "tenant" not in rig.text()
    wait_until(lambda: any("/tenant" in p for p in live.state.problems), 10)
    [problem] = [p for p in live.state.problems if "/tenant" in p]
    assert "port index 0" in problem and "HAPROXY_BACKEND_HEAD.j2: line" in problem
    assert live.snapshot()["problems"] == live.state.problems

    emu.put_app(live_app("/web", 10300, TEAM=INJECTION))  # now the other app is bad too
    emu.put_app(live_app("/tenant", 10301, TEAM="x-fixed"))
    wait_until(lambda: "description team fixed" in rig.text(), 10)
    assert "web_10300" not in rig.text() and "pwn" not in rig.text()
    wait_until(lambda: any("/web" in p and "UnsafeValueError" in p
                           for p in live.state.problems), 10)


# --------------------------------------------------------------------------- legacy fragments


@pytest.mark.parametrize("text, ok", [
    ("backend {backend}\n  x {mode:>999999999}\n", False),
    ("backend {backend}\n  x {mode:.5000}\n", False),
    ("backend {backend}\n  x {mode:>{backend}}\n", False),
    ("backend {backend}\n  x {mode:" + "9" * 5000 + "}\n", False),
    ("backend {backend}\n  x {mode:>20}|{mode:^1024}\n", True),
    ("backend {backend}\n  x {mode!r:<8}\n", True),
])
def test_legacy_format_specs_have_sane_widths(tmp_path: Path, text: str, ok: bool) -> None:
    directory = _templates(tmp_path, "HAPROXY_BACKEND_HEAD", text)
    if ok:
        load_fragments([directory])
        return
    with pytest.raises(TemplateError) as err:
        load_fragments([directory])
    assert f"{directory / 'HAPROXY_BACKEND_HEAD'}: line 2:" in str(err.value), err.value


def test_legacy_fields_reaching_into_marathon_data_are_checked(tmp_path: Path) -> None:
    directory = _templates(tmp_path, "HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS",
                           "  # {healthCheck[command][value]} {healthCheckPath}\n")
    fragments = load_fragments([directory])
    check = {"protocol": "HTTP", "portIndex": 0, "path": "/health"}
    apps = _apps("blue")
    apps[1]["healthChecks"] = [dict(check, command={"value": "true\nlisten pwn"})]
    apps[2]["healthChecks"] = [dict(check, command={"value": "true"})]
    rendered = render_guarded(_services(apps), fragments, OPTIONS)
    assert [p.app_id for p in rendered.problems] == ["/tenant"]
    assert "HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS" in str(rendered.problems[0])
    assert "pwn" not in rendered.text and "  # true /health\n" in rendered.text


@pytest.mark.parametrize("field, value", [
    ("id", "/app\nlisten pwn"), ("id", "/app\n"), ("id", "/a b"), ("id", "/a#b"),
    ("id", "/a\u2028b"), ("host", "10.0.0.1\nlisten pwn"), ("host", "h#x"),
    ("path", "/health\nlisten pwn"), ("path", "/h#x"), ("protocol", "HTTP\n"),
])
def test_marathon_values_legacy_placeholders_print_are_validated(field: str, value: str) -> None:
    """appId, host, healthCheckPath...: what a legacy fragment prints can hold no line breaker."""
    app = {"id": "/app", "ports": [10000],
           "healthChecks": [{"protocol": "HTTP", "portIndex": 0, "path": "/health"}],
           "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000]}]}
    if field == "id":
        app["id"] = value
    elif field == "host":
        app["tasks"][0]["host"] = value
    else:
        app["healthChecks"][0][field] = value
    model = build_model([app], ("*",), lambda host: host if host[0].isdigit() else None)
    text = render_config(model.services, load_fragments([LEGACY]), RenderOptions())
    assert "pwn" not in text and "\u2028" not in text
    assert value not in text
