"""A Jinja2 sandbox with a work budget, for templates taken from app labels.

Jinja2's sandbox stops attribute tricks but not work: ``{% for %}`` nested over
``range(100000)``, ``'x' * 10**9`` or ``10 ** (10 ** 10)`` run until the router
is out of time or memory, and a label template is written by whoever can set an
app's labels.  :class:`BudgetSandbox` meters every render instead:

* every loop iteration, macro or call-block body is charged the number of
  template nodes it can evaluate and the literal text it can write (a tick the
  code generator puts at the top of each body, and in each loop filter);
* every call, filter and intercepted operator (``+ * ** %`` and ``~``) is
  charged one step, and what it makes is charged by size; operations that can
  multiply their input (repetition, powers, padding, formatting, ``join``,
  ``replace``, ``translate``...) are refused *before* they run when their
  result would pass :data:`MAX_VALUE` characters or items, or a number would
  pass :data:`MAX_INT_BITS`;
* ``range`` is charged its length; ``lipsum`` is not offered;
* each fragment render may use :data:`MAX_STEPS` steps and write or make
  :data:`MAX_CHARS` characters, and :meth:`BudgetSandbox.total` caps the
  trial renders of a whole app (every fragment of every port) as well.

Running out raises :class:`BudgetExceeded` at once, so a pathological template
costs milliseconds, and one that stays within budget costs an app well under
a second per render (at worst; real templates cost microseconds).  Nothing here
runs for the default fragments: only label
templates are compiled in this environment.  Counting is deterministic (no
clock), so an app passes or fails the same way on every machine.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.exceptions import TemplateRuntimeError
from jinja2.runtime import Context
from jinja2.utils import pass_context

from servicerouter.render.fragments import Fragment
from servicerouter.render.sandbox import TemplateSandbox

MAX_STEPS = 100_000  # template nodes evaluated, calls and items made, per fragment render
MAX_CHARS = 1_000_000  # characters written or made by operations, per fragment render
MAX_VALUE = 65_536  # characters (or items) of one value an operation may make
MAX_INT_BITS = 4_096  # size of a number an operation may make
MAX_TOTAL_STEPS = 500_000  # per app, over the trial renders of all its ports' fragments
MAX_TOTAL_CHARS = 4_000_000


class BudgetExceeded(TemplateRuntimeError):
    """A label template wanted more work or memory than a render may use."""


class _Meter:
    """What is left of a render's budget (and of the enclosing total, if any)."""

    __slots__ = ("steps", "chars", "outer")

    def __init__(self, steps: int, chars: int, outer: _Meter | None = None) -> None:
        self.steps = steps
        self.chars = chars
        self.outer = outer

    def charge(self, steps: int, chars: int = 0) -> None:
        self.steps -= steps
        self.chars -= chars
        if self.steps < 0:
            raise BudgetExceeded("too much work: over the budget of template steps "
                                 "(loop iterations, calls, items made)")
        if self.chars < 0:
            raise BudgetExceeded("too much output: over the budget of characters written or made")
        if self.outer is not None:
            self.outer.charge(steps, chars)


class _BudgetContext(Context):
    """A render context carrying the meter of that render."""

    meter: _Meter

    def __init__(self, environment: Any, parent: dict[str, Any], name: str | None,
                 blocks: dict[str, Any], globals: Any = None) -> None:  # noqa: A002 - Jinja2's name
        super().__init__(environment, parent, name, blocks, globals=globals)
        outer = getattr(environment, "_total", None)
        self.meter = _Meter(MAX_STEPS, MAX_CHARS, getattr(outer, "meter", None))

    def derived(self, locals: dict[str, Any] | None = None) -> Context:  # noqa: A002
        context = super().derived(locals)
        context.meter = self.meter  # type: ignore[attr-defined]
        return context


def _meter(context: Any) -> _Meter | None:
    return getattr(context, "meter", None)


# --------------------------------------------------------------------------- code generation


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


class _BudgetCodeGenerator(CodeGenerator):
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


# --------------------------------------------------------------------------- size checks


def _too_big(what: str) -> BudgetExceeded:
    return BudgetExceeded(f"{what} would be over {MAX_VALUE} characters or items")


def _check_size(size: int, what: str) -> None:
    if size > MAX_VALUE:
        raise _too_big(what)


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"{what} would be a number over {MAX_INT_BITS} bits")


_DIGITS_RE = re.compile(r"\d+")


def _format_bound(fmt: str | bytes, args: Sequence[Any], kwargs: Mapping[str, Any],
                  field: str) -> int:
    """An upper bound of ``fmt`` formatted with these arguments (``%`` or ``{}``)."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    widths = [len(run) for run in _DIGITS_RE.findall(text)]
    if widths and max(widths) > 6:
        raise _too_big("a formatted string")
    width = max((int(run) for run in _DIGITS_RE.findall(text)), default=0)
    values = list(args) + list(kwargs.values())
    longest = 0
    for value in values:
        if isinstance(value, Mapping):
            values.extend(value.values())
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            width = max(width, abs(value))  # a '*' width, or a number written out
            _check_int(value, "a formatted number")
        longest = max(longest, len(str(value)))
    return len(text) + text.count(field) * (longest + width)


def _check_format(fmt: Any, args: Sequence[Any], kwargs: Mapping[str, Any], field: str) -> None:
    if isinstance(fmt, (str, bytes)):
        _check_size(_format_bound(fmt, args, kwargs, field), "a formatted string")


def _join_items(context: Any, iterable: Any) -> list[Any]:
    items = list(iterable)
    meter = _meter(context)
    if meter is not None:
        meter.charge(len(items))
    return items


def _check_join(sep: Any, items: Sequence[Any]) -> None:
    size = len(sep) * max(len(items) - 1, 0) if isinstance(sep, (str, bytes)) else 0
    for item in items:
        size += len(item) if isinstance(item, (str, bytes)) else 32
        if size > MAX_VALUE:
            raise _too_big("a joined string")


def _check_replace(value: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(value, (str, bytes)) or not isinstance(new, type(value)):
        return
    hits = value.count(old) if old else len(value) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check_size(len(value) + hits * max(len(new) - len(old or ""), 0), "a replaced string")


def _check_width(value: Any, width: Any, what: str) -> None:
    if isinstance(width, int):
        _check_size(max(_size_of(value), width), what)


def _check_str_method(owner: str | bytes, name: str, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> None:
    """Refuse a str/bytes method call whose result would be too big, before it runs."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(owner, args[0] if args else kwargs.get("width"), f"str.{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tab = "\t" if isinstance(owner, str) else b"\t"
            _check_size(len(owner) + owner.count(tab) * max(size, 0), "str.expandtabs()")  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))), default=1)
        _check_size(len(owner) * max(longest, 1), "str.translate()")
    elif name in ("format", "format_map"):
        _check_format(owner, args, kwargs, "{")
    else:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and abs(arg) > MAX_VALUE:
                raise BudgetExceeded(f"str.{name}() argument {arg} is too large")


# --------------------------------------------------------------------------- filters and globals

# Filters whose arguments set a result size or a loop count.
_WIDTH_FILTERS = {"center": "width", "indent": "width", "batch": "linecount", "slice": "slices",
                  "truncate": "length", "wordwrap": "width"}


def _budget_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a filter or test) refusing oversized results first, charging its work."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    pass_name = getattr(pass_arg, "name", None)

    @pass_context
    def budget_filter(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _meter(context)
        if meter is not None:  # filters and tests walk their input (``is in`` its argument)
            meter.charge(1 + _size_of(value) + sum(_size_of(a) for a in args))
        if name in _WIDTH_FILTERS:
            width = args[0] if args else kwargs.get(_WIDTH_FILTERS[name])
            if isinstance(width, int) and width > MAX_VALUE:
                raise BudgetExceeded(f"filter {name}({width}) is too large")
            if name == "indent" and isinstance(value, str) and isinstance(width, int):
                _check_size(len(value) + (value.count("\n") + 1) * width, "an indented string")
            elif name == "center":
                _check_width(value, width, "a centred string")
        elif name == "join":
            value = _join_items(context, value)
            _check_join(args[0] if args else kwargs.get("d", ""), value)
        elif name == "replace" and len(args) >= 2:
            _check_replace(str(value), args[0], args[1], args[2] if len(args) > 2 else -1)
        elif name == "format":
            _check_format(value, args, kwargs, "%")
        if pass_name == "context":
            result = func(context, value, *args, **kwargs)
        elif pass_name == "eval_context":
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_name == "environment":
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        _charge_made(context, result)
        return result

    budget_filter.__name__ = getattr(func, "__name__", name)
    budget_filter.__doc__ = func.__doc__
    return budget_filter


def _charge_made(context: Any, result: Any) -> None:
    """Charge a made value by size: characters for text, steps for containers."""
    meter = _meter(context)
    if meter is None:
        return
    if isinstance(result, (str, bytes)):
        meter.charge(0, len(result))
    elif isinstance(result, (list, tuple, dict, set, frozenset)):
        meter.charge(len(result))
    elif isinstance(result, int):
        _check_int(result, "an operation")


@pass_context
def _budget_range(context: Any, *args: int) -> range:
    """``range``, charged its length (a range feeds loops and filters alike)."""
    rng = range(*args)
    meter = _meter(context)
    if meter is not None:
        meter.charge(len(rng))
    _check_size(len(rng), "range()")
    return rng


@pass_context
def _finalize(context: Any, value: Any) -> Any:
    """Every ``{{ expression }}`` written is charged its length."""
    text = str(value)
    meter = _meter(context)
    if meter is not None:
        meter.charge(1, len(text))
    return text


# --------------------------------------------------------------------------- the environment


class BudgetSandbox(TemplateSandbox):
    """The label-template sandbox: Jinja2's immutable sandbox with a work budget."""

    code_generator_class = _BudgetCodeGenerator
    context_class = _BudgetContext
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", _finalize)
        super().__init__(**options)
        self._total = threading.local()
        self._totals: dict[str, _Meter] = {}
        self.globals["range"] = _budget_range
        self.globals.pop("lipsum", None)
        self.filters = {name: _budget_filter(name, func) for name, func in self.filters.items()}
        self.tests = {name: _budget_filter(name, func) for name, func in self.tests.items()}

    @contextmanager
    def total(self, name: str) -> Iterator[None]:
        """Also charge every render started inside (on this thread) to ``name``'s budget.

        One budget per name for the life of this environment (label templates get
        a fresh environment each sync), so an app's ports share one.
        """
        meter = self._totals.get(name)
        if meter is None:
            meter = self._totals[name] = _Meter(MAX_TOTAL_STEPS, MAX_TOTAL_CHARS)
        self._total.meter = meter
        try:
            yield
        finally:
            self._total.meter = None

    def budget_tick(self, context: Any, steps: int, chars: int) -> bool:
        meter = _meter(context)
        if meter is not None:
            meter.charge(steps, chars)
        return True

    def budget_sized(self, context: Any, value: Any) -> Any:
        meter = _meter(context)
        if meter is not None:
            meter.charge(1 + _size_of(value))
        return value

    def budget_made(self, context: Any, value: Any) -> Any:
        _charge_made(context, value)
        return value

    def budget_concat(self, context: Any, parts: Sequence[Any]) -> str:
        """``a ~ b ~ c``: the parts' size is checked before they are joined."""
        texts = [str(part) for part in parts]
        size = sum(len(text) for text in texts)
        _check_size(size, "a ~ concatenation")
        meter = _meter(context)
        if meter is not None:
            meter.charge(1, size)
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        result = self.binop_table[operator](left, right)
        meter = _meter(context)
        if meter is not None:
            meter.charge(1)
        _charge_made(context, result)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        meter = _meter(__context)
        if meter is not None:  # a method walks its object and arguments (s.find(), l.count())
            meter.charge(1 + _size_of(owner) + sum(_size_of(a) for a in args))
        if isinstance(owner, (str, bytes)):
            name = getattr(target, "__name__", "")
            if name == "join" and args:
                args = (_join_items(__context, args[0]), *args[1:])
                _check_join(owner, args[0])
            else:
                _check_str_method(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _charge_made(__context, result)
        return result


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too big, before computing it."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise BudgetExceeded(f"a product would be a number over {MAX_INT_BITS} bits")
        elif isinstance(right, int) and _size_of(left):
            _check_size(_size_of(left) * right, "a repetition")
        elif isinstance(left, int) and _size_of(right):
            _check_size(_size_of(right) * left, "a repetition")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > MAX_INT_BITS:
                raise BudgetExceeded(f"a power would be a number over {MAX_INT_BITS} bits")
    elif operator == "+":
        _check_size(_size_of(left) + _size_of(right), "a sum")
    elif operator == "%" and isinstance(left, (str, bytes)):
        if isinstance(right, tuple):
            _check_format(left, right, {}, "%")
        elif isinstance(right, Mapping):
            _check_format(left, (), right, "%")
        else:
            _check_format(left, (right,), {}, "%")


def budget_env() -> BudgetSandbox:
    """The environment label templates are compiled in (same options as the fragments)."""
    return BudgetSandbox(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


class BudgetedFragment(Fragment):
    """A label template: budgeted, and seeing the same ``services`` in every render.

    Trial renders, ``haproxy -c`` of the app alone, bisection and the real config
    render different lists of services; a template that looked at the list could
    pass one and blow up another.  Binding ``services`` to the sync's model makes
    all of them the same render, so the trial's verdict holds for the rest.
    """

    __slots__ = ("services",)

    def __init__(self, fragment: Fragment, services: Sequence[Any]) -> None:
        super().__init__(fragment.spec, fragment.text, fragment.source, fragment._template)
        self.services = services

    def render(self, values: Mapping[str, Any]) -> str:
        try:
            return super().render({**values, "services": self.services})
        except BudgetExceeded as err:
            raise BudgetExceeded(f"{self.source}: {err}") from None


__all__ = [
    "MAX_CHARS",
    "MAX_INT_BITS",
    "MAX_STEPS",
    "MAX_VALUE",
    "BudgetExceeded",
    "BudgetSandbox",
    "BudgetedFragment",
    "budget_env",
]
