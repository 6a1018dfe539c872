"""Jinja2 fragments compiled into Python functions render exactly what Jinja2 renders.

servicerouter.render.compiled turns the built-in per-service fragments (``if``
blocks, attribute reads, comparisons) into one function each.  These tests
render the same states with and without the compiled functions and compare the
whole config and every problem (a refused value must still name its template
line), including hostile label values from the property tests' strategies.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_guarded
from servicerouter.render.fragment_registry import FRAGMENTS as SPECS
from servicerouter.render.fragments import FragmentSet, compile_fragment, load_fragments
from servicerouter.render.sandbox import UnsafeValueError, fragment_env
from tests.test_properties import check_port, resolve, states

FRAGMENTS = load_fragments()
SPEC = {spec.name: spec for spec in SPECS}


def jinja_only(fragments: FragmentSet) -> FragmentSet:
    """The same fragments with every compiled Jinja2 function taken away."""
    plain = {}
    for name, fragment in fragments.fragments.items():
        clone = copy.copy(fragment)
        clone._simple = None
        plain[name] = clone
    return FragmentSet(plain)


JINJA = jinja_only(FRAGMENTS)
OPTIONS = (RenderOptions(default_cert="/d.pem"),
           RenderOptions(default_cert="/d.pem", map_dir="/m", http_port=8080))


def test_the_per_service_builtin_fragments_compile() -> None:
    """The point of it: no Jinja2 context for these at each service."""
    for name in ("HAPROXY_FRONTEND_HEAD", "HAPROXY_BACKEND_HEAD",
                 "HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS", "HAPROXY_BACKEND_STICKY_OPTIONS"):
        assert FRAGMENTS[name]._simple is not None, name


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(apps=states)
def test_compiled_and_jinja_render_the_same_config(apps: list[Any]) -> None:
    model = build_model(apps, ("*",), resolve, reserved_ports=(80, 443, 81, 9090),
                        check_port=check_port)
    for options in OPTIONS:
        compiled = render_guarded(model.services, FRAGMENTS, options)
        jinja = render_guarded(model.services, JINJA, options)
        assert compiled.text == jinja.text
        assert [p.log_line() for p in compiled.problems] == \
            [p.log_line() for p in jinja.problems]


def render_both(text: str, values: dict[str, Any]) -> tuple[Any, Any]:
    """(compiled result, Jinja2 result) of one fragment text; an exception is a result."""
    spec = SPEC["HAPROXY_BACKEND_HEAD"]
    fragment = compile_fragment(spec, text, "<test>", jinja=True, env=fragment_env())
    assert fragment._simple is not None
    results = []
    for simple in (fragment._simple, None):
        fragment._simple = simple
        try:
            results.append(fragment.render(values))
        except Exception as err:  # the error is what must match
            results.append((type(err), str(err), fragment.failing_line(values, err)))
    return results[0], results[1]


class Settings:
    balance = "leastconn"
    hidden = None


@pytest.mark.parametrize("text", [
    "{% if mode == 'http' %}a{% elif mode in ('tcp', 'x') %}b{% else %}c{% endif %}\n",
    "x {{ service.settings.balance or 'rr' }} {{ 'y' if not mode else mode }}\n",
    "x\n{{ service.settings.missing }}\n",  # undefined attribute: Jinja2's own error
    "x\n\n{{ labels }}\n",  # a refused value: the same error on the same line
    "{{ backend }}{% if service.settings.hidden %}no{% endif %}\n",
])
def test_compiled_fragment_behaves_as_jinja(text: str) -> None:
    service = type("Service", (), {"settings": Settings()})()
    for mode in ("http", "tcp", "", "z"):
        values = {"mode": mode, "service": service, "labels": "a#b", "backend": "web_1"}
        compiled, jinja = render_both(text, values)
        assert compiled == jinja
    if "labels" in text:
        assert compiled[0] is UnsafeValueError and compiled[2] == 3
