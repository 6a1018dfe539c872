"""The names a compiled fragment reads are jinja2.meta's, found without the code generator.

servicerouter.render.fragments checks every Jinja2 fragment's names against its
spec at load (an unknown name is a TemplateError).  For the templates
compile_plain_template accepts it collects the Name nodes instead of running
jinja2.meta (a third of a cold load); these tests hold the two to the same set.
"""

from __future__ import annotations

import itertools

import jinja2.meta
import pytest

from servicerouter.render.compiled import compile_plain_template
from servicerouter.render.fragment_files import TemplateError, default_templates_dir
from servicerouter.render.fragment_registry import FRAGMENTS
from servicerouter.render.fragments import _looked_up, compile_fragment
from servicerouter.render.sandbox import VALIDATED_NAMES, fragment_env

ENV = fragment_env()
NAMES = ["range", "loop", "self", "dict", "backend", "super", "caller", "varargs", "kwargs",
         "environment", "context", "missing", "lipsum", "namespace", "cycler", "joiner",
         "self.x", "service.app_id", "hostname[1:]", "hostname.startswith('*.')"]
TEXTS = ([p.read_text(encoding="utf-8") for p in sorted(default_templates_dir().glob("*.j2"))]
         + ["{{ " + name + " }}" for name in NAMES]
         + ["{% if " + test + " %}{{ " + shown + " }}{% else %}x{% endif %}"
            for test, shown in itertools.product(NAMES, NAMES)])


@pytest.mark.parametrize("text", TEXTS)
def test_plain_templates_look_up_what_jinja2_meta_finds(text: str) -> None:
    ast = ENV.parse(text)
    plain = compile_plain_template(ast, VALIDATED_NAMES, "<test>", ENV) is not None
    assert _looked_up(ast, plain) == jinja2.meta.find_undeclared_variables(ast)


def test_most_checked_texts_are_plain() -> None:
    """Otherwise the test above would only compare jinja2.meta with itself."""
    plain = sum(compile_plain_template(ENV.parse(t), VALIDATED_NAMES, "t", ENV) is not None
                for t in TEXTS)
    assert plain > len(TEXTS) * 3 // 4


def test_an_unknown_name_in_a_plain_template_is_still_refused() -> None:
    spec = next(s for s in FRAGMENTS if s.name == "HAPROXY_FRONTEND_HEAD")
    with pytest.raises(TemplateError, match="unknown variable 'nosuch'"):
        compile_fragment(spec, "x\n{% if mode %}{{ nosuch }}{% endif %}\n", "t.j2", jinja=True)
