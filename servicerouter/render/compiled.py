"""Fragments compiled into plain Python functions, with byte-identical output.

A legacy (``str.format``) fragment of plain ``{name}`` fields, and a Jinja2
fragment that only prints validated names between text, are the same text as
an f-string.  Compiled once at load, they render a server line or a frontend
head without ``format_map`` parsing the text again or a Jinja2 context per
render.  Anything else keeps the general path; errors stay the general path's.
"""

from __future__ import annotations

import ast
from typing import Any

from jinja2 import nodes

from servicerouter.render.format_compile import _located, compile_format  # noqa: F401
from servicerouter.render.plain_runtime import (  # noqa: F401 - FallBack re-exported
    STR_METHODS,
    FallBack,
    plain_namespace,
)


class _Unsupported(Exception):
    """A template node outside the subset :func:`compile_plain_template` compiles."""


_COMPARE_OPS: dict[str, type[ast.cmpop]] = {
    "eq": ast.Eq, "ne": ast.NotEq, "in": ast.In, "notin": ast.NotIn,
    "lt": ast.Lt, "lteq": ast.LtE, "gt": ast.Gt, "gteq": ast.GtE,
}
_CONST_TYPES = (str, int, float, bool, type(None))


def compile_plain_template(template: nodes.Template, validated: frozenset[str],
                           source: str = "<fragment>", env: Any = None) -> Any:
    """A Jinja2 template of plain text, printed values and ``if`` blocks, compiled into
    one Python function of the values: the same text without a Jinja2 context per render.

    The subset is what the built-in per-service fragments use: names, attribute reads
    (through the sandbox's own ``env.getattr``), constants, tuples, ``and``/``or``/
    ``not``, comparisons, ``x if c else y``, slices, calls of a few str methods
    (:data:`STR_METHODS`; any other callable at render time falls back to Jinja2) and
    ``{% if %}/{% elif %}/{% else %}``.
    Each piece compiles to what Jinja2's code generator writes for it (see
    ``env.compile(text, raw=True)``): a bare validated name (``validated``, see
    :class:`servicerouter.render.sandbox._FragmentCodeGenerator`) prints as
    ``str(value)``, any other printed value as ``str(env.finalize(value))``, so the
    sandbox's check on printed values still runs.  A missing name (KeyError) or an
    undefined attribute (:class:`FallBack`) stops the function: the caller then
    renders with Jinja2, which raises its own error.  Without ``env``, only text
    and validated names compile.  None for any other template (a filter, a call, a
    loop, a ``set``...).
    """
    function = plain_template_expression(template, validated, env is not None)
    if function is None:
        return None
    namespace: dict[str, Any] = {"__builtins__": {}}
    if env is not None:
        namespace.update(plain_namespace(env))
    return eval(compile(_located(function), source, "eval"),  # noqa: S307
                namespace)


def plain_template_expression(template: nodes.Template, validated: frozenset[str],
                              rich: bool = True) -> ast.Expression | None:
    """The ``lambda values: f"..."`` :func:`compile_plain_template` compiles, as a tree
    (servicerouter.render.shipped_codegen writes the built-in fragments' as source);
    ``rich``: more than text and validated names.  None outside the subset."""
    try:
        body = _joined(template.body, validated, rich)
    except _Unsupported:
        return None
    args = ast.arguments(posonlyargs=[], args=[ast.arg("values")], kwonlyargs=[],
                         kw_defaults=[], defaults=[])
    return ast.Expression(ast.Lambda(args, body))


def _joined(body: list[nodes.Node], validated: frozenset[str], rich: bool) -> ast.expr:
    """The text a list of template statements writes, as one f-string expression."""
    parts: list[ast.expr] = []
    for node in body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    parts.append(ast.Constant(child.data))
                elif (isinstance(child, nodes.Name) and child.ctx == "load"
                      and child.name in validated):
                    parts.append(ast.FormattedValue(_expr(child), ord("s"), None))
                elif rich:
                    printed = ast.Call(ast.Name("_finalize", ast.Load()), [_expr(child)], [])
                    parts.append(ast.FormattedValue(printed, ord("s"), None))
                else:
                    raise _Unsupported
        elif isinstance(node, nodes.If) and rich:
            parts.append(ast.FormattedValue(_if_chain(node, validated), -1, None))
        else:
            raise _Unsupported
    return ast.JoinedStr(parts) if parts else ast.Constant("")


def _if_chain(node: nodes.If, validated: frozenset[str]) -> ast.expr:
    """``{% if %}...{% elif %}...{% else %}...{% endif %}`` as nested conditional expressions."""
    orelse = _joined(node.else_, validated, True)
    for branch in reversed(node.elif_):
        orelse = ast.IfExp(_expr(branch.test), _joined(branch.body, validated, True), orelse)
    return ast.IfExp(_expr(node.test), _joined(node.body, validated, True), orelse)


def _expr(node: nodes.Node) -> ast.expr:
    """One expression, as Jinja2's code generator writes it (without the undefined
    placeholders: a missing name raises KeyError, an undefined attribute FallBack)."""
    if isinstance(node, nodes.Const) and type(node.value) in _CONST_TYPES:
        return ast.Constant(node.value)
    if (isinstance(node, nodes.Const) and type(node.value) is tuple
            and all(type(item) in _CONST_TYPES for item in node.value)):  # ('HTTP', 'TCP')
        return ast.Constant(node.value)
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return ast.Subscript(ast.Name("values", ast.Load()), ast.Constant(node.name), ast.Load())
    if isinstance(node, nodes.Getattr) and node.ctx == "load":
        return ast.Call(ast.Name("_getattr", ast.Load()), [_expr(node.node),
                                                            ast.Constant(node.attr)], [])
    if isinstance(node, nodes.Tuple) and node.ctx == "load":
        return ast.Tuple([_expr(item) for item in node.items], ast.Load())
    if isinstance(node, nodes.List):
        return ast.List([_expr(item) for item in node.items], ast.Load())
    if isinstance(node, nodes.And | nodes.Or):
        op = ast.And() if isinstance(node, nodes.And) else ast.Or()
        return ast.BoolOp(op, [_expr(node.left), _expr(node.right)])
    if isinstance(node, nodes.Not):
        return ast.UnaryOp(ast.Not(), _expr(node.node))
    if isinstance(node, nodes.Neg | nodes.Pos):  # hostname[-2:] (the sandbox intercepts none)
        op = ast.USub() if isinstance(node, nodes.Neg) else ast.UAdd()
        return ast.UnaryOp(op, _expr(node.node))
    if isinstance(node, nodes.Compare) and all(o.op in _COMPARE_OPS for o in node.ops):
        return ast.Compare(_expr(node.expr), [_COMPARE_OPS[o.op]() for o in node.ops],
                           [_expr(o.expr) for o in node.ops])
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        return ast.IfExp(_expr(node.test), _expr(node.expr1), _expr(node.expr2))
    if (isinstance(node, nodes.Getitem) and node.ctx == "load"
            and isinstance(node.arg, nodes.Slice)):  # Jinja2 slices in Python, no getitem
        bounds = [None if part is None else _expr(part)
                  for part in (node.arg.start, node.arg.stop, node.arg.step)]
        return ast.Subscript(_expr(node.node), ast.Slice(*bounds), ast.Load())
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr)
            and node.node.attr in STR_METHODS and not node.kwargs
            and node.dyn_args is None and node.dyn_kwargs is None):  # hostname.startswith('*.')
        return ast.Call(ast.Name("_call", ast.Load()),
                        [_expr(node.node.node), ast.Constant(node.node.attr),
                         *(_expr(arg) for arg in node.args)], [])
    raise _Unsupported
