"""Budget ticks compiled into label templates: every body that can repeat pays per run.

A loop iteration, macro or call-block body is charged the number of template nodes
it can evaluate and the literal text it can write, by a tick the code generator puts
at the top of each body (and in each loop filter); concatenations, comparisons and
slices are routed through the environment's ``budget_*`` methods
(:class:`servicerouter.render.budget.BudgetSandbox`) so they are charged too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators

_TICK = "budget_tick"


def _tick(steps: int, chars: int, lineno: int) -> nodes.Call:
    """``environment.budget_tick(context, steps, chars)`` as a node.

    Jinja2 allows no custom node types; an EnvironmentAttribute call is never
    made by the parser, so the code generator can recognise this one safely.
    """
    return nodes.Call(nodes.EnvironmentAttribute(_TICK, lineno=lineno),
                      [nodes.Const(steps, lineno=lineno), nodes.Const(chars, lineno=lineno)],
                      [], None, None, lineno=lineno)


def _body_cost(body: Sequence[nodes.Node]) -> tuple[int, int]:
    """Nodes a body can evaluate and literal characters it can write, per run.

    Nested bodies are counted again by their own ticks: an overestimate, never less.
    An empty body still costs one step: the iteration itself.
    """
    steps, chars = 1, 0
    for stmt in body:
        steps += 1
        for node in stmt.find_all(nodes.Node):
            steps += 1
            if isinstance(node, nodes.TemplateData):
                chars += len(node.data)
        if isinstance(stmt, nodes.TemplateData):  # pragma: no cover - always inside Output
            chars += len(stmt.data)
    return steps, chars


def _with_tick(node: Any) -> Any:
    steps, chars = _body_cost(node.body)
    ticked = copy.copy(node)
    ticked.body = [nodes.ExprStmt(_tick(steps, chars, node.lineno), lineno=node.lineno),
                   *node.body]
    return ticked


class BudgetCodeGenerator(CodeGenerator):
    """Jinja2's code generator with budget ticks in every body that can repeat."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        ticked = _with_tick(node)
        if node.test is not None:
            ticked.test = nodes.And(_tick(1, 0, node.lineno), node.test, lineno=node.lineno)
        super().visit_For(ticked, frame)

    def visit_Macro(self, node: nodes.Macro, frame: Frame) -> None:
        super().visit_Macro(_with_tick(node), frame)

    def visit_CallBlock(self, node: nodes.CallBlock, frame: Frame) -> None:
        super().visit_CallBlock(_with_tick(node), frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.budget_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    # Comparisons walk their operands (``x in items``, ``list == list``): charge their size.
    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("(environment.budget_sized(context, ")
        self.visit(node.expr, frame)
        self.write(")")
        for op in node.ops:
            self.visit(op, frame)
        self.write(")")

    def visit_Operand(self, node: nodes.Operand, frame: Frame) -> None:
        self.write(f" {operators[node.op]} environment.budget_sized(context, ")
        self.visit(node.expr, frame)
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # Slices bypass the sandbox's getitem: charge the copy they make.
        self.write("environment.budget_made(context, ")
        super().visit_Getitem(node, frame)
        self.write(")")

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        target = node.node
        if isinstance(target, nodes.EnvironmentAttribute) and target.name == _TICK:
            steps, chars = (int(arg.value) for arg in node.args)  # type: ignore[attr-defined]
            self.write(f"environment.{_TICK}(context, {steps}, {chars})")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)
