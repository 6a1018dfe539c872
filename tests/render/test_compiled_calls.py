"""Compiled Jinja2 fragments with slices and str method calls render what Jinja2 renders.

The built-in vhost ACL fragments test ``hostname.startswith('*.')`` and print
``hostname[1:]``: at 5,000 apps they were 5,000 Jinja2 renders of a cold sync.
servicerouter.render.compiled now compiles slices and calls of a few str methods
too; any other callable found at render time goes back to Jinja2.  These tests
render the same values both ways and compare texts and errors.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.render.fragment_registry import FRAGMENTS as SPECS
from servicerouter.render.fragments import compile_fragment, load_fragments
from servicerouter.render.sandbox import fragment_env

SPEC = {spec.name: spec for spec in SPECS}["HAPROXY_HTTP_FRONTEND_ACL"]
FRAGMENTS = load_fragments()
ACL_FRAGMENTS = sorted(name for name, fragment in FRAGMENTS.fragments.items()
                       if fragment.is_jinja and "startswith" in fragment.text)


def render_both(text: str, values: dict[str, Any]) -> tuple[Any, Any]:
    """(compiled result, Jinja2 result); an exception is a result (type, message, line)."""
    fragment = compile_fragment(SPEC, text, "<test>", jinja=True, env=fragment_env())
    assert fragment._simple is not None, text
    results = []
    for simple in (fragment._simple, None):
        fragment._simple = simple
        try:
            results.append(fragment.render(values))
        except Exception as err:  # the error is what must match
            results.append((type(err), str(err), fragment.failing_line(values, err)))
    return results[0], results[1]


def test_the_builtin_vhost_acl_fragments_compile() -> None:
    assert len(ACL_FRAGMENTS) >= 4
    for name in ACL_FRAGMENTS:
        assert FRAGMENTS[name]._simple is not None, name


hostnames = st.one_of(
    st.sampled_from(["a.example.com", "*.example.com", "*.", "*", "", "x*.y", "**.z"]),
    st.text(alphabet="*.ab#\n-", max_size=8),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(hostname=hostnames)
def test_builtin_acl_fragments_render_as_jinja(hostname: str) -> None:
    values = {"hostname": hostname, "hostAcl": "host_a", "backend": "web_80",
              "path": "/api", "pathAcl": "path_a"}
    for name in ACL_FRAGMENTS:
        fragment = FRAGMENTS[name]
        compiled = jinja = None
        try:
            compiled = fragment.render(values)
        except Exception as err:
            compiled = (type(err), str(err))
        simple, fragment._simple = fragment._simple, None
        try:
            jinja = fragment.render(values)
        except Exception as err:
            jinja = (type(err), str(err))
        finally:
            fragment._simple = simple
        assert compiled == jinja, name


class _Callable:
    """A value whose ``startswith`` is not a str method: Jinja2 calls it."""

    def startswith(self, prefix: str) -> str:
        return f"called with {prefix}"


class _Text(str):
    """A str subclass: left to Jinja2 as well."""


@pytest.mark.parametrize("text", [
    "{{ hostname[1:] }}|{{ hostname[::-1] }}|{{ hostname[1:3] }}|{{ hostname[-2:] }}\n",
    "{% if hostname.startswith('*.') %}w {{ hostname[1:] }}{% else %}e{% endif %}\n",
    "{{ hostname.endswith('.com') }} {{ hostname.upper() }} {{ hostname.replace('a', '#') }}\n",
    "{{ hostname.startswith(1) }}\n",  # TypeError: Jinja2's own error
    "x\n{{ hostname.lower() }} {{ labels }}\n",
    "{{ labels.startswith('a') }}\n",
    "{{ labels[0:1] }}\n",
])
@pytest.mark.parametrize("hostname", ["*.a.com", "b.com", "", "a#b"])
@pytest.mark.parametrize("labels", ["a#b", "ab", {"a": "b"}, _Callable(), _Text("ab"), 7])
def test_calls_and_slices_behave_as_jinja(text: str, hostname: str, labels: Any) -> None:
    compiled, jinja = render_both(text, {"hostname": hostname, "labels": labels})
    assert compiled == jinja


@pytest.mark.parametrize("text", ["{{ hostname.format('x') }}", "{{ labels.get('x') }}",
                                  "{{ hostname.startswith(x='y') }}",
                                  "{{ hostname.split('.')[0] }}"])
def test_other_calls_keep_jinja(text: str) -> None:
    assert compile_fragment(SPEC, text, "t.j2", jinja=True)._simple is None
