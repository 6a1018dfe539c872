"""Broken fragments fail at startup, naming file and line; label templates stay sandboxed.

A user fragment with an unknown placeholder, a syntax error, or an expression that
raises when rendered must stop ``servicerouter`` before the first sync (exit 2, the
file and line in the log), never halfway through one. Label templates
(--allow-label-templates) run in Jinja2's immutable sandbox: no attribute tricks, no
mutation, no file or module access; a template that tries quarantines its own app.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from servicerouter.cli import main as cli
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragment_check import check_fragments
from servicerouter.render.fragments import TemplateError, load_fragments
from servicerouter.render.label_templates import compile_label_templates
from tests.paths import LEGACY_TEMPLATES


def _dir(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize("name, text, line, reason", [
    ("HAPROXY_BACKEND_HEAD", "\nbackend {backend}\n  mode {mod}\n", 3, "unknown placeholder"),
    ("HAPROXY_FRONTEND_HEAD", "\nfrontend {backend\n", 2, "expected '}'"),
    ("HAPROXY_FRONTEND_BACKEND_GLUE", "  use_backend {}\n", 1, "unknown placeholder"),
    ("HAPROXY_BACKEND_HEAD.j2", "\nbackend {{ backend }}\n{% if mode %}\n", 3,
     "Unexpected end of template"),
    ("HAPROXY_BACKEND_HEAD.j2", "\nbackend {{ backend }}\n  mode {{ mod }}\n", 3,
     "unknown variable 'mod'"),
])
def test_load_time_errors_name_file_and_line(tmp_path: Path, name: str, text: str, line: int,
                                             reason: str) -> None:
    directory = _dir(tmp_path, name, text)
    with pytest.raises(TemplateError) as err:
        load_fragments([directory])
    message = str(err.value)
    assert f"{directory / name}: line {line}:" in message and reason in message, message


@pytest.mark.parametrize("name, text, line, reason", [
    ("HAPROXY_BACKEND_HEAD", "\nbackend {backend}\n  mode {mode.nope}\n", 3, "AttributeError"),
    ("HAPROXY_BACKEND_HEAD", "\nbackend {backend[999]}\n", 2, "IndexError"),
    ("HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS", "  x {healthCheck[nope]}\n", 1, "KeyError"),
    ("HAPROXY_BACKEND_HEAD", "\nbackend {backend!z}\n", 2, "ValueError"),
    ("HAPROXY_BACKEND_HEAD.j2", "\nbackend {{ backend }}\n  x {{ service.nope }}\n", 3,
     "UndefinedError"),
    ("HAPROXY_BACKEND_HEAD.j2", "\nbackend {{ backend }}\n\n  x {{ 1 // 0 }}\n", 4,
     "ZeroDivisionError"),
    ("HAPROXY_BACKEND_SERVER_OPTIONS.j2", "  server {{ serverName }} {{ port + 'x' }}\n", 1,
     "TypeError"),
    ("HAPROXY_HTTP_FRONTEND_ACL.j2", "  acl {{ hostAcl }}\n  {{ vhost.nope.deeper }}\n", 2,
     "UndefinedError"),
    ("HAPROXY_HEAD.j2", "global\n  {{ options.__class__.__mro__ }}\n", 2, "SecurityError"),
    ("HAPROXY_BACKEND_HEAD.j2", "{{ labels.update({'a': 1}) }}\n", 1, "SecurityError"),
])
def test_render_errors_fail_at_startup(tmp_path: Path, name: str, text: str, line: int,
                                       reason: str) -> None:
    directory = _dir(tmp_path, name, text)
    fragments = load_fragments([directory])  # loads: the problem only shows when rendered
    with pytest.raises(TemplateError) as err:
        check_fragments(fragments)
    message = str(err.value)
    assert f"{directory / name}: line {line}:" in message and reason in message, message


def test_default_and_legacy_fragments_pass() -> None:
    check_fragments(load_fragments())
    legacy = LEGACY_TEMPLATES
    if legacy.is_dir():
        check_fragments(load_fragments([legacy]))


def test_cli_exits_2_before_any_sync(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    directory = _dir(tmp_path, "HAPROXY_BACKEND_HEAD.j2",
                     "\nbackend {{ backend }}\n  balance {{ service.settings.nope }}\n")
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": []}))
    config = tmp_path / "haproxy.cfg"
    code = cli.main(["-m", f"file:{snapshot}", "--templates-dir", str(directory),
                     "--haproxy-config", str(config), "--syslog-socket", "/dev/null",
                     "--command", "true", "--skip-validation"])
    assert code == 2
    assert not config.exists()
    err = capfd.readouterr().err
    assert re.search(rf"{re.escape(str(directory))}/HAPROXY_BACKEND_HEAD\.j2: line 3: "
                     r".*UndefinedError", err), err


# --------------------------------------------------------------------------- label templates


def _services(template: str) -> list:
    apps = [{"id": "/tenant", "ports": [10001],
             "labels": {"HAPROXY_0_BACKEND_HEAD": template},
             "tasks": [{"id": "t.1", "host": "10.0.0.1", "ports": [31001]}]},
            {"id": "/other", "ports": [10002],
             "tasks": [{"id": "o.1", "host": "10.0.0.2", "ports": [31002]}]}]
    return list(build_model(apps, ("*",), lambda h: h).services)


@pytest.mark.parametrize("template", [
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ app.__class__.__base__.__subclasses__() }}",
    "{{ service.__reduce_ex__(2) }}",
    "{{ options.__dict__ }}",
    "{{ '{0.__class__.__mro__}'.format(app) }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ range.__self__ }}",
    "{% set x = labels.__setitem__('HAPROXY_0_VHOST', 'evil') %}",
    "{{ app.get('labels').clear() }}",
    "{{ services.append(1) }}",
    "{{ vhosts.__len__.__self__ }}",
])
def test_label_template_escapes_quarantine_only_their_app(template: str) -> None:
    services = _services(template)
    fragments = load_fragments()
    options = RenderOptions(crt_list="/state/crt-list")
    compiled = compile_label_templates(services, fragments, options)
    assert compiled.bad_apps == {"/tenant"}, compiled.problems
    assert all(p.app_id == "/tenant" and "quarantined" in p.reason for p in compiled.problems)
    assert "other_10002" not in compiled.overrides and "tenant_10001" not in compiled.overrides
    text = render_config(services, fragments, options, compiled.overrides)
    assert "evil" not in text and "root:" not in text and "uid=" not in text
