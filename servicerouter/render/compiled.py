"""Fragments compiled into plain Python functions, with byte-identical output.

A legacy (``str.format``) fragment of plain ``{name}`` fields, and a Jinja2
fragment that only prints validated names between text, are the same text as
an f-string.  Compiled once at load, they render a server line or a frontend
head without ``format_map`` parsing the text again or a Jinja2 context per
render.  Anything else keeps the general path; errors stay the general path's.
"""

from __future__ import annotations

import ast
import string
from typing import Any

from jinja2 import nodes


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
    return eval(compile(ast.fix_missing_locations(function), source, "eval"),  # noqa: S307
                {"__builtins__": {}})


def compile_plain_template(template: nodes.Template, validated: frozenset[str],
                           source: str = "<fragment>") -> Any:
    """A Jinja2 template that only prints validated names (``{{ backend }}``) between
    text, compiled into a function of the values: the same text without a Jinja2
    context per render.  Such names print as ``str(value)`` without the
    ``finalize`` check (see :class:`_FragmentCodeGenerator`), so the function does
    exactly that (``validated``: those names).  None for anything else (a filter, an attribute, a statement...).
    """
    parts: list[ast.expr] = []
    for node in template.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(ast.Constant(child.data))
            elif (isinstance(child, nodes.Name) and child.ctx == "load"
                  and child.name in validated):
                value = ast.Subscript(ast.Name("values", ast.Load()), ast.Constant(child.name),
                                      ast.Load())
                parts.append(ast.FormattedValue(value, ord("s"), None))
            else:
                return None
    body = ast.JoinedStr(parts) if parts else ast.Constant("")
    args = ast.arguments(posonlyargs=[], args=[ast.arg("values")], kwonlyargs=[],
                         kw_defaults=[], defaults=[])
    function = ast.Expression(ast.Lambda(args, body))
    return eval(compile(ast.fix_missing_locations(function), source, "eval"),  # noqa: S307
                {"__builtins__": {}})
