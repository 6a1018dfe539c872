"""Legacy (``str.format``) fragments compiled into plain Python functions, without Jinja2.

A legacy fragment of plain ``{name}`` fields is the same text as an f-string:
compiled once at load, it renders a server line without ``format_map`` parsing
the text again.  Apart from :mod:`servicerouter.render.compiled` (the Jinja2
templates) so that loading legacy fragments never imports Jinja2.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Callable
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
    def value_of(field_name: str) -> ast.expr | None:
        if not field_name.isidentifier():
            return None
        if params == ("values",):
            return ast.Subscript(ast.Name("values", ast.Load()), ast.Constant(field_name),
                                 ast.Load())
        return ast.Name(field_name, ast.Load()) if field_name in params else None

    parts = _fstring_parts(text, value_of)
    if parts is None:
        return None  # format_map raises its own error for these, at render time
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


# The server fragment's placeholders, as the server loop has them (lines.render_servers).
SERVER_PARAMS = ("serverName", "host", "host_ipv4", "port", "cookieOptions",
                 "healthCheckOptions")


def compile_server_block(text: str, source: str = "<fragment>") -> Any:
    """A legacy server fragment of plain ``{name}`` fields compiled into a function of a
    backend's plain servers: ``f(servers, check_text, drained) -> str``, all its lines.

    The same text as rendering each server alone (servicerouter.render.lines): the
    server name is the host cleaned as :func:`servicerouter.model.values.clean_host`
    does it (a dotted quad without a regex) joined to the port, ``cookieOptions`` is
    empty and ``healthCheckOptions`` is ``drained`` for a draining server, else
    ``check_text``.  One list comprehension per backend instead of a call per line:
    at 62,500 server lines the calls were a third of a render.  A server that is not
    a plain five-tuple (a weighted one) raises ValueError: the caller then takes the
    per-line loop.  None when a field is not one of :data:`SERVER_PARAMS`.
    """
    host = ast.Name("host", ast.Load())
    port = ast.Name("port", ast.Load())

    def call(func: str, *args: ast.expr) -> ast.expr:
        return ast.Call(ast.Name(func, ast.Load()), list(args), [])

    def method(obj: ast.expr, name: str, *args: ast.expr) -> ast.expr:
        return ast.Call(ast.Attribute(obj, name, ast.Load()), list(args), [])

    # clean_host(host): only ASCII digits and dots (strip leaves nothing) -> the dots
    # become '_'; else the regex (which gives the same text for those, only slower).
    dotted_quad = ast.UnaryOp(ast.Not(), method(host, "strip", ast.Constant("0123456789.")))
    clean = ast.IfExp(dotted_quad, method(host, "replace", ast.Constant("."), ast.Constant("_")),
                      call("_clean", host))
    # f"{clean}_{port}" for an int port (render_servers), else clean_name(f"{host}_{port}"),
    # which is the same as clean_name(f"{port}") after the cleaned host (a character-wise
    # substitution): the name is written straight into the line, no string of its own.
    is_int = ast.Compare(call("type", port), [ast.Is()], [ast.Name("int", ast.Load())])
    port_part = ast.IfExp(is_int, port,
                          call("_clean", ast.JoinedStr([ast.FormattedValue(port, -1, None)])))
    name_parts = [ast.FormattedValue(clean, -1, None), ast.Constant("_"),
                  ast.FormattedValue(port_part, -1, None)]
    options = ast.IfExp(ast.Name("draining", ast.Load()), ast.Name("drained", ast.Load()),
                        ast.Name("check_text", ast.Load()))
    values = {"serverName": ast.JoinedStr(name_parts), "host": host,
              "host_ipv4": ast.Name("ipv4", ast.Load()), "port": port,
              "cookieOptions": ast.Constant(""), "healthCheckOptions": options}
    line = _joined_fields(text, values)
    if line is None:
        return None
    target = ast.Tuple([ast.Name(n, ast.Store()) for n in
                        ("host", "ipv4", "port", "_task_id", "draining")], ast.Store())
    lines = ast.ListComp(line, [ast.comprehension(target, ast.Name("servers", ast.Load()),
                                                  [], 0)])
    body = method(ast.Constant(""), "join", lines)
    args = ast.arguments(posonlyargs=[], args=[ast.arg(a) for a in
                                               ("servers", "check_text", "drained")],
                         kwonlyargs=[], kw_defaults=[], defaults=[])
    from servicerouter.model.values import clean_name

    return eval(compile(_located(ast.Expression(ast.Lambda(args, body))), source, "eval"),  # noqa: S307
                {"__builtins__": {}, "_clean": clean_name, "type": type, "int": int})


def _joined_fields(text: str, values: dict[str, ast.expr]) -> ast.expr | None:
    """``text`` (str.format syntax) as an f-string of the expressions in ``values``;
    None for a field that is not a plain name among them."""
    parts = _fstring_parts(text, values.get)
    if parts is None:
        return None
    return ast.JoinedStr(parts) if parts else ast.Constant("")


def _fstring_parts(text: str, value_of: Callable[[str], ast.expr | None],
                   ) -> list[ast.expr] | None:
    """The pieces of an f-string doing what ``text.format`` does, each field the
    expression ``value_of`` gives for its name; None for a field it has none for, a
    nested spec or an unknown conversion (str.format's own errors stay its own)."""
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
        value = value_of(field_name)
        if value is None or "{" in (format_spec or "") or conversion not in (None, "r", "s", "a"):
            return None
        if isinstance(value, ast.JoinedStr) and not format_spec and not conversion:
            parts.extend(value.values)  # {serverName}: its pieces, not a string of its own
            continue
        spec = ast.JoinedStr([ast.Constant(format_spec)]) if format_spec else None
        parts.append(ast.FormattedValue(value, ord(conversion) if conversion else -1, spec))
    return parts
