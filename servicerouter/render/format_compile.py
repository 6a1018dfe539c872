"""Legacy (``str.format``) fragments compiled into plain Python functions, without Jinja2.

A legacy fragment of plain ``{name}`` fields is the same text as an f-string:
compiled once at load, it renders a server line without ``format_map`` parsing
the text again.  Apart from :mod:`servicerouter.render.compiled` (the Jinja2
templates) so that loading legacy fragments never imports Jinja2.
"""

from __future__ import annotations

import ast
import string
from typing import Any


def compile_format(text: str, params: tuple[str, ...], source: str = "<fragment>") -> Any:
    """``text`` (str.format syntax, plain ``{name}`` fields) compiled into a function.

    With ``params == ("values",)`` the function takes the values dict, as
    ``text.format_map`` does; otherwise it takes the named values as arguments
    (``f(serverName, host, ...)``), so a hot loop needs no dict per line.  The
    body is an f-string: each field is ``format(value, spec)`` after its
    conversion, exactly what ``str.format`` does, so the output is the same text.
    None when a field is not a plain name (those keep ``format_map``).
    """
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    parts: list[ast.expr] = []
    for literal, field_name, format_spec, conversion in parsed:
        if literal:
            parts.append(ast.Constant(literal))
        if field_name is None:
            continue
        if (not field_name.isidentifier() or "{" in (format_spec or "")
                or conversion not in (None, "r", "s", "a")):
            return None  # format_map raises its own error for these, at render time
        if params == ("values",):
            value: ast.expr = ast.Subscript(ast.Name("values", ast.Load()),
                                            ast.Constant(field_name), ast.Load())
        elif field_name in params:
            value = ast.Name(field_name, ast.Load())
        else:
            return None
        spec = ast.JoinedStr([ast.Constant(format_spec)]) if format_spec else None
        parts.append(ast.FormattedValue(value, ord(conversion) if conversion else -1, spec))
    body = ast.JoinedStr(parts) if parts else ast.Constant("")
    args = ast.arguments(posonlyargs=[], args=[ast.arg(name) for name in params],
                         kwonlyargs=[], kw_defaults=[], defaults=[])
    function = ast.Expression(ast.Lambda(args, body))
    return eval(compile(_located(function), source, "eval"),  # noqa: S307
                {"__builtins__": {}})


def _located(tree: ast.AST) -> ast.AST:
    """``ast.fix_missing_locations`` for a tree built here (no node has a location):
    every node at line 1, column 0, set in one walk instead of its recursive copy."""
    for node in ast.walk(tree):
        if "lineno" in node._attributes:
            node.lineno = node.end_lineno = 1  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
    return tree
