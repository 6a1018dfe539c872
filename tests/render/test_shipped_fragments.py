"""The built-in Jinja2 fragments ship compiled (servicerouter/render/shipped_fragments.py).

A run with the default fragments must not import Jinja2 or parse templates/*.j2;
the shipped functions must be what templates/ compiles to today (the generated
file is current), render the same bytes as Jinja2, and be used only for a file
whose text is the built-in text (an operator's changed fragment compiles as before).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.model.services import build_model
from servicerouter.render import shipped_codegen
from servicerouter.render.compiled import compile_plain_template
from servicerouter.render.config import render_config
from servicerouter.render.fragment_check import SAMPLE_APPS, SAMPLE_OPTIONS
from servicerouter.render.fragment_files import default_templates_dir
from servicerouter.render.fragments import (
    FragmentSet,
    ShippedTemplate,
    load_fragments,
)
from servicerouter.render.options import RenderOptions
from servicerouter.render.printing import VALIDATED_NAMES
from servicerouter.render.sandbox import fragment_env
from servicerouter.render.shipped_fragments import SHIPPED
from tests.paths import MARATHON_FIXTURES, REPO

SHIPPED_SET = load_fragments()
COMPILED_SET = load_fragments(shipped=False)
SAMPLE = build_model(SAMPLE_APPS, ("*",), lambda host: host).services


def test_the_shipped_file_is_what_templates_compile_to() -> None:
    """Fails after a change to templates/*.j2 until
    ``python3 -m servicerouter.render.shipped_codegen`` is run."""
    assert shipped_codegen.generate() == shipped_codegen.TARGET.read_text(encoding="utf-8")


def test_every_builtin_jinja_fragment_is_shipped() -> None:
    j2 = {path.name[:-3] for path in Path(default_templates_dir()).glob("*.j2")}
    assert j2 and set(SHIPPED) == j2
    for name in j2:
        assert isinstance(SHIPPED_SET[name]._template, ShippedTemplate), name


def _without_simple(fragments: FragmentSet) -> FragmentSet:
    """The shipped fragments, each rendering through Jinja2 (compiled on first use)."""
    for fragment in fragments.fragments.values():
        fragment._simple = None
    return fragments


@pytest.mark.parametrize("options", SAMPLE_OPTIONS + (RenderOptions(),
                                                       RenderOptions(haproxy_log="stderr")))
def test_shipped_compiled_and_jinja2_render_the_same_config(options: RenderOptions) -> None:
    through_jinja = _without_simple(load_fragments())
    expected = render_config(SAMPLE, COMPILED_SET, options)
    assert render_config(SAMPLE, SHIPPED_SET, options) == expected
    assert render_config(SAMPLE, through_jinja, options) == expected


hostnames = st.one_of(st.sampled_from(["a.example.com", "*.example.com", "*.", ""]),
                      st.text(alphabet="*.ab#\n-'\"\\", max_size=8))


@settings(max_examples=150, deadline=None)
@given(hostname=hostnames, ignore=st.booleans(), needed=st.booleans(),
       crt_list=st.sampled_from([None, "/x/crt-list", "a#b"]))
def test_shipped_fragments_render_or_fail_as_jinja2(hostname: str, ignore: bool, needed: bool,
                                                    crt_list: str | None) -> None:
    values: dict[str, Any] = {
        "hostname": hostname, "hostAcl": "host_x", "backend": "b_1", "path": "/p",
        "pathAcl": "path_b_1", "pathIgnoreCase": ignore, "needed": needed,
        "cleanedUpHostname": "x", "realm": "r", "haproxy_dir": "/m",
        "options": RenderOptions(crt_list=crt_list, default_cert="/d.pem"),
    }
    for name in SHIPPED:
        shipped, compiled = SHIPPED_SET[name], COMPILED_SET[name]
        results = []
        for fragment in (shipped, compiled):
            try:
                results.append(fragment.render(values))
            except Exception as err:  # the error must match too
                results.append((type(err), str(err), fragment.failing_line(values, err)))
        assert results[0] == results[1], name


def test_a_changed_fragment_is_compiled_and_a_copy_is_shipped(tmp_path: Path) -> None:
    mine, copy = tmp_path / "mine", tmp_path / "copy"
    mine.mkdir()
    copy.mkdir()
    builtin = Path(default_templates_dir())
    (mine / "HAPROXY_FRONTEND_HEAD.j2").write_text(
        (builtin / "HAPROXY_FRONTEND_HEAD.j2").read_text() + "  # mine\n")
    shutil.copy(builtin / "HAPROXY_BACKEND_HEAD.j2", copy / "HAPROXY_BACKEND_HEAD.j2")
    fragments = load_fragments([mine, copy])
    changed = fragments["HAPROXY_FRONTEND_HEAD"]
    assert not isinstance(changed._template, ShippedTemplate) and not changed.builtin
    assert "  # mine\n" in render_config(SAMPLE, fragments, RenderOptions())
    same = fragments["HAPROXY_BACKEND_HEAD"]
    assert isinstance(same._template, ShippedTemplate) and not same.builtin


def test_source_of_writes_nested_if_blocks_with_quotes_and_backslashes() -> None:
    """Python 3.11 cannot nest such f-strings; the generator writes them as joins."""
    env = fragment_env()
    text = ("a'\"\\{{ backend }}\n{% if mode == 'http' %}x\\'{{ mode }}\"{% if needed %}"
            "{{ options.bind_addr }}#{% else %}n\\n{% endif %}{% endif %}z{{ '\\\\' }}\n")
    tree = shipped_codegen.plain_template_expression(env.parse(text), VALIDATED_NAMES)
    assert tree is not None
    written = eval(compile(shipped_codegen.source_of(tree.body), "<t>", "eval"),  # noqa: S307
                   shipped_codegen_namespace())
    reference = compile_plain_template(env.parse(text), VALIDATED_NAMES, "<t>", env)
    for mode in ("http", "tcp"):
        for needed in (True, False):
            values = {"backend": "b", "mode": mode, "needed": needed,
                      "options": RenderOptions(bind_addr="1.2.3.4")}
            assert written(values) == reference(values) == env.from_string(text).render(values)


def shipped_codegen_namespace() -> dict[str, Any]:
    from servicerouter.render.plain_runtime import shipped_namespace

    return shipped_namespace(fragment_env)


def test_a_default_run_never_imports_jinja2() -> None:
    """Loading, checking and rendering with the default fragments, in a fresh process."""
    code = (
        "import sys\n"
        "from servicerouter.cli.main import load_checked_fragments\n"
        "from servicerouter.render.fragment_check import SAMPLE_APPS, SAMPLE_OPTIONS\n"
        "from servicerouter.model.services import build_model\n"
        "from servicerouter.render.config import render_config\n"
        "fragments = load_checked_fragments([])\n"
        "services = build_model(SAMPLE_APPS, ('*',), lambda h: h).services\n"
        "for options in SAMPLE_OPTIONS:\n"
        "    render_config(services, fragments, options)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'jinja2'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_a_cold_one_shot_never_imports_jinja2(tmp_path: Path) -> None:
    """The whole one-shot (model, certificates, label-template scan, render, write) with
    the default fragments, on Marathon apps with virtual hosts, in a fresh process."""
    snapshot = MARATHON_FIXTURES / "marathon-1.5-apps-embed-tasks.json"
    assert "HAPROXY_0_VHOST" in snapshot.read_text()
    config = tmp_path / "haproxy.cfg"
    code = (
        "import sys\n"
        "from servicerouter.cli.main import main\n"
        f"status = main(['-m', 'file:{snapshot}', '--haproxy-config', '{config}',\n"
        f"               '--group', '*', '--command', 'true', '--syslog-socket', '/dev/null',\n"
        f"               '--state-dir', '{tmp_path / 'state'}', '--skip-validation'])\n"
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] == 'jinja2'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "0 []"
    assert "\nbackend " in config.read_text()


def test_shipped_attribute_reads_are_the_sandboxs() -> None:
    """The shipped functions read ``service.settings.balance`` without the sandbox's call
    on servicerouter's dataclasses, and through it on anything else."""
    from servicerouter.render.plain_runtime import FallBack

    getattr_defined = shipped_codegen_namespace()["_getattr"]
    sandbox = fragment_env()
    service = SAMPLE[0]
    cases = [(service, "settings"), (service.settings, "balance"), (RenderOptions(), "http_port"),
             ({"x": 1}, "x"), ({"x": 1}, "items"), ("abc", "upper"), (service, "_key"),
             (service, "__class__"), (service, "nope"), ({"x": 1}, "nope"), (RenderOptions(), "_x")]
    for obj, attribute in cases:
        expected = sandbox.getattr(obj, attribute)
        if isinstance(expected, sandbox.undefined):
            try:
                getattr_defined(obj, attribute)
            except FallBack:
                continue
            raise AssertionError(f"{attribute}: no FallBack")
        assert getattr_defined(obj, attribute) == expected, attribute


def test_model_value_classes_skip_the_sandbox() -> None:
    """The model's value classes are plain slots dataclasses (not frozen): their
    attributes must still be read without the sandbox (each read through it costs
    ~10 µs, ~35,000 reads at 5,000 apps), and a servicerouter class that is a mutable
    container still goes through it."""
    from servicerouter.model.labels import AppSettings, PortSettings
    from servicerouter.model.values import HealthCheck, Service
    from servicerouter.render.printing import is_plain_type

    for cls in (Service, PortSettings, AppSettings, HealthCheck, RenderOptions):
        assert is_plain_type(cls), cls.__name__
    assert not is_plain_type(dict) and not is_plain_type(str)

    import dataclasses

    @dataclasses.dataclass
    class Listy(list):  # type: ignore[type-arg]
        pass

    Listy.__module__ = "servicerouter.fake"
    assert not is_plain_type(Listy)
