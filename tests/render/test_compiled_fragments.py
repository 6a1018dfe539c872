"""Fragments compiled to functions render exactly what str.format and Jinja2 render.

Legacy fragments (``str.format``) and Jinja2 fragments that only print validated
names are compiled once into Python functions; the config must not change by a
byte, and errors must stay the errors the slow path raises.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicerouter.render.compiled import compile_format
from servicerouter.render.fragment_registry import FRAGMENTS_BY_NAME
from servicerouter.render.fragments import compile_fragment, load_fragments

_SERVER = FRAGMENTS_BY_NAME["HAPROXY_BACKEND_SERVER_OPTIONS"]
_NAMES = _SERVER.placeholders
_VALUES = {"serverName": "10_0_0_1_31000", "host": "10.0.0.1", "host_ipv4": "10.0.0.1",
           "port": 31000, "cookieOptions": " check cookie x", "healthCheckOptions": " inter 3s"}
_LITERAL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12).map(
    lambda text: text.replace("{", "{{").replace("}", "}}"))
_FIELD = st.builds(lambda name, conv, spec: "{" + name + conv + spec + "}",
                   st.sampled_from(_NAMES), st.sampled_from(("", "!r", "!s", "!a")),
                   st.sampled_from(("", ":>12", ":<3", ":^9", ":x<5")))


@given(st.lists(st.tuples(_LITERAL, _FIELD), max_size=8), _LITERAL)
def test_compiled_format_is_format_map(pieces: list[tuple[str, str]], tail: str) -> None:
    text = "".join(literal + field for literal, field in pieces) + tail
    by_dict = compile_format(text, ("values",))
    by_args = compile_format(text, _NAMES)
    assert by_dict is not None and by_args is not None
    expected = text.format_map(_VALUES)
    assert by_dict(_VALUES) == expected
    assert by_args(*(_VALUES[name] for name in _NAMES)) == expected


@pytest.mark.parametrize("text", ["{healthCheck[path]}", "{backend.upper}", "{backend!z}",
                                  "{0}", "{port:{width}}", "{unknown} {host}"])
def test_fields_that_are_not_plain_names_keep_format_map(text: str) -> None:
    assert compile_format(text, _NAMES) is None
    if "unknown" not in text:
        return
    compiled = compile_format(text, ("values",))
    with pytest.raises(KeyError):  # the same error format_map raises
        compiled(_VALUES)
    with pytest.raises(KeyError):
        string.Formatter().vformat(text, (), _VALUES)


def test_default_server_fragment_is_compiled_and_renders_as_before() -> None:
    fragment = load_fragments()["HAPROXY_BACKEND_SERVER_OPTIONS"]
    assert not fragment.is_jinja and fragment.render_args is not None
    assert fragment.render(_VALUES) == fragment.text.format_map(_VALUES)
    assert fragment.render_args(*(_VALUES[n] for n in _NAMES)) == fragment.render(_VALUES)


_FRONTEND = FRAGMENTS_BY_NAME["HAPROXY_FRONTEND_HEAD"]
_FRONTEND_VALUES = {"backend": "app_80", "bindAddr": "*", "servicePort": 80, "mode": "http",
                    "sslCertOptions": "", "bindOptions": " accept-proxy"}


@pytest.mark.parametrize("text", [
    "\nfrontend {{ backend }}\n  bind {{ bindAddr }}:{{ servicePort }}{{ sslCertOptions }}\n",
    "{{ backend }}{{ backend }} {{ mode }}\n",
    "  plain text only {# a comment #}\n",
    "{{- backend -}}   \n  {{ mode }}",
])
def test_plain_jinja_templates_compile_to_the_same_text(text: str) -> None:
    fragment = compile_fragment(_FRONTEND, text, "t.j2", jinja=True)
    assert fragment._template is not None
    assert fragment.render(_FRONTEND_VALUES) == fragment._jinja().render(_FRONTEND_VALUES)
    if "{{" in text:
        assert fragment._simple is not None


@pytest.mark.parametrize("text", ["{{ backend|upper }}", "{{ labels.get('x') }}",
                                  "{% for s in servers %}x{% endfor %}", "{{ labels['a'] }}",
                                  "{% set backend = 'x' %}{{ backend }}"])
def test_other_jinja_templates_keep_jinja(text: str) -> None:
    assert compile_fragment(_FRONTEND, text, "t.j2", jinja=True)._simple is None


@pytest.mark.parametrize("text", ["{{ labels }}", "{% if mode %}x{% endif %}",
                                  "{{ service.app_id }}"])
def test_printed_values_ifs_and_attributes_compile(text: str) -> None:
    """Printed through the sandbox's check, see tests/render/test_compiled_templates.py."""
    assert compile_fragment(_FRONTEND, text, "t.j2", jinja=True)._simple is not None


def test_an_undefined_name_still_raises_jinjas_error() -> None:
    from jinja2.exceptions import UndefinedError

    fragment = compile_fragment(_FRONTEND, "{{ backend }} {{ bindOptions }}", "t.j2", jinja=True)
    assert fragment._simple is not None
    with pytest.raises(UndefinedError):
        fragment.render({"backend": "b"})
