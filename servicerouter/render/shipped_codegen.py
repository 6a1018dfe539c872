"""Writes servicerouter/render/shipped_fragments.py: the built-in Jinja2 fragments, compiled.

A one-shot run with the default fragments would otherwise import Jinja2 and parse
every built-in ``templates/*.j2`` file on each start (a tenth of a cold run at 5,000
apps) only to turn most of them into the same Python functions each time
(:func:`servicerouter.render.compiled.compile_plain_template`).  The functions are
generated here once, as source, keyed by a digest of the text they came from;
:func:`servicerouter.render.fragments.load_fragments` uses one only for a file
whose text is that text, and compiles any other (an operator's) as before.

Run ``python3 -m servicerouter.render.shipped_codegen`` after changing a built-in
fragment; tests/render/test_shipped_fragments.py fails until the file is current.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

from servicerouter.render.compiled import plain_template_expression
from servicerouter.render.fragment_files import default_templates_dir
from servicerouter.render.fragment_registry import FRAGMENTS
from servicerouter.render.fragments import compile_fragment
from servicerouter.render.printing import VALIDATED_NAMES
from servicerouter.render.sandbox import fragment_env

TARGET = Path(__file__).resolve().parent / "shipped_fragments.py"

_HEADER = '''"""The built-in Jinja2 fragments (templates/*.j2), compiled: GENERATED, do not edit.

Written by ``python3 -m servicerouter.render.shipped_codegen`` from templates/
(tests/render/test_shipped_fragments.py fails when it is not current).  Per fragment:
the sha256 of the text it was compiled from, the whole output of a text without
expressions (else None), and the function ``compile_plain_template`` makes of it
(None: a template outside its subset, compiled by Jinja2 on first use).
"""

from __future__ import annotations

from typing import Any

from servicerouter.render.plain_runtime import shipped_namespace


def _fragment_env() -> Any:  # the fragment files' sandbox, only if a render falls back
    from servicerouter.render.sandbox import fragment_env

    return fragment_env()


_names = shipped_namespace(_fragment_env)
_getattr, _call, _finalize = _names["_getattr"], _names["_call"], _names["_finalize"]

SHIPPED: dict[str, tuple[str, str | None, Any]] = {
'''


def generate(templates_dir: Path | None = None) -> str:
    """The source of shipped_fragments.py for the ``*.j2`` files of ``templates_dir``."""
    directory = Path(templates_dir or default_templates_dir())
    env = fragment_env()
    entries: list[str] = []
    for spec in FRAGMENTS:
        path = directory / (spec.name + ".j2")
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", newline="") as handle:  # as load_fragments reads
            text = handle.read()
        fragment = compile_fragment(spec, text, str(path), jinja=True, env=env)  # checks it
        function = None
        if fragment._simple is not None:
            tree = plain_template_expression(env.parse(text), VALIDATED_NAMES)
            assert tree is not None
            function = source_of(tree.body)
            compile(function, str(path), "eval")  # a SyntaxError here is a generator bug
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        entries.append(f"    {spec.name!r}: (\n        {digest!r},\n"
                       f"        {fragment._constant!r},\n        {function},\n    ),\n")
    return _HEADER + "".join(entries) + "}\n"


def source_of(node: ast.expr) -> str:
    """Python source for a tree of plain_template_expression: ``ast.unparse``, except
    that an f-string holding another (an ``{% if %}`` block's text) is written as
    ``"".join((...))`` of flat f-strings, since Python 3.11 cannot nest f-strings
    whose text holds quotes or backslashes."""
    if not _holds_text(node):
        return ast.unparse(node)
    if isinstance(node, ast.Lambda):
        return f"lambda {ast.unparse(node.args)}: {source_of(node.body)}"
    if isinstance(node, ast.IfExp) and not _holds_text(node.test):
        return f"({source_of(node.body)} if {ast.unparse(node.test)} else {source_of(node.orelse)})"
    if not isinstance(node, ast.JoinedStr):
        raise ValueError(f"cannot write {ast.dump(node)[:80]} without nested f-strings")
    pieces: list[str] = []
    flat: list[ast.expr] = []
    for part in node.values:
        if isinstance(part, ast.FormattedValue) and _holds_text(part.value):
            # {% if %} blocks print their text as is (conversion -1, no spec, a str)
            if part.conversion != -1 or part.format_spec is not None \
                    or not _gives_str(part.value):
                raise ValueError(f"cannot write {ast.dump(part)[:80]}")
            if flat:
                pieces.append(_flat_source(flat))
                flat = []
            pieces.append(source_of(part.value))
        else:
            flat.append(part)
    if flat:
        pieces.append(_flat_source(flat))
    if len(pieces) == 1:
        return pieces[0]
    return '"".join((' + ", ".join(pieces) + "))"


def _flat_source(parts: list[ast.expr]) -> str:
    """An f-string of text and printed values, or a plain string when it prints none."""
    if all(isinstance(part, ast.Constant) for part in parts):
        return repr("".join(part.value for part in parts))  # type: ignore[attr-defined]
    try:
        return ast.unparse(ast.JoinedStr(parts))
    except ValueError:  # a backslash in a printed expression ({{ '\\' }}): no f-string
        pieces = [repr(part.value) if isinstance(part, ast.Constant) else _call_source(part)
                  for part in parts]
        return '"".join((' + ", ".join(pieces) + "))"


def _call_source(part: ast.expr) -> str:
    """A printed value as the call an f-string makes: ``{x!s}`` is ``str(x)``."""
    if not isinstance(part, ast.FormattedValue) or part.format_spec is not None \
            or part.conversion not in (-1, ord("s")):
        raise ValueError(f"cannot write {ast.dump(part)[:80]}")
    return f"{'str' if part.conversion == ord('s') else 'format'}({ast.unparse(part.value)})"


def _holds_text(node: ast.AST) -> bool:
    """Whether an f-string is inside ``node`` (itself included)."""
    return any(isinstance(child, ast.JoinedStr) for child in ast.walk(node))


def _gives_str(node: ast.expr) -> bool:
    """Whether ``node`` always evaluates to a str (what ``format(value, "")`` leaves as is)."""
    if isinstance(node, ast.IfExp):
        return _gives_str(node.body) and _gives_str(node.orelse)
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant)
                                                and type(node.value) is str)


def main() -> int:
    source = generate()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if current == source:
        print(f"{TARGET}: up to date")
        return 0
    TARGET.write_text(source, encoding="utf-8")
    print(f"{TARGET}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
