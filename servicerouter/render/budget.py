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

This module meters (the render context, filters, calls and operators); the limits
and the checks made before an operation runs are :mod:`servicerouter.render.budget_limits`,
the ticks compiled into loops and macros :mod:`servicerouter.render.budget_codegen`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.utils import pass_context

from servicerouter.render.budget_codegen import BudgetCodeGenerator
from servicerouter.render.budget_limits import (
    MAX_CHARS,
    MAX_STEPS,
    MAX_TOTAL_CHARS,
    MAX_TOTAL_STEPS,
    MAX_VALUE,
    BudgetExceeded,
    check_binop,
    check_format,
    check_int,
    check_join,
    check_replace,
    check_size,
    check_str_method,
    check_width,
    size_of,
)
from servicerouter.render.fragments import Fragment
from servicerouter.render.sandbox import TemplateSandbox


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


def _join_items(context: Any, iterable: Any) -> list[Any]:
    items = list(iterable)
    meter = _meter(context)
    if meter is not None:
        meter.charge(len(items))
    return items


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
            meter.charge(1 + size_of(value) + sum(size_of(a) for a in args))
        if name in _WIDTH_FILTERS:
            width = args[0] if args else kwargs.get(_WIDTH_FILTERS[name])
            if isinstance(width, int) and width > MAX_VALUE:
                raise BudgetExceeded(f"filter {name}({width}) is too large")
            if name == "indent" and isinstance(value, str) and isinstance(width, int):
                check_size(len(value) + (value.count("\n") + 1) * width, "an indented string")
            elif name == "center":
                check_width(value, width, "a centred string")
        elif name == "join":
            value = _join_items(context, value)
            check_join(args[0] if args else kwargs.get("d", ""), value)
        elif name == "replace" and len(args) >= 2:
            check_replace(str(value), args[0], args[1], args[2] if len(args) > 2 else -1)
        elif name == "format":
            check_format(value, args, kwargs, "%")
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
        check_int(result, "an operation")


@pass_context
def _budget_range(context: Any, *args: int) -> range:
    """``range``, charged its length (a range feeds loops and filters alike)."""
    rng = range(*args)
    meter = _meter(context)
    if meter is not None:
        meter.charge(len(rng))
    check_size(len(rng), "range()")
    return rng


@pass_context
def _finalize(context: Any, value: Any) -> Any:
    """Every ``{{ expression }}`` written is charged its length."""
    text = str(value)
    meter = _meter(context)
    if meter is not None:
        meter.charge(1, len(text))
    return text


class BudgetSandbox(TemplateSandbox):
    """The label-template sandbox: Jinja2's immutable sandbox with a work budget."""

    code_generator_class = BudgetCodeGenerator
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
            meter.charge(1 + size_of(value))
        return value

    def budget_made(self, context: Any, value: Any) -> Any:
        _charge_made(context, value)
        return value

    def budget_concat(self, context: Any, parts: Sequence[Any]) -> str:
        """``a ~ b ~ c``: the parts' size is checked before they are joined."""
        texts = [str(part) for part in parts]
        size = sum(len(text) for text in texts)
        check_size(size, "a ~ concatenation")
        meter = _meter(context)
        if meter is not None:
            meter.charge(1, size)
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
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
            meter.charge(1 + size_of(owner) + sum(size_of(a) for a in args))
        if isinstance(owner, (str, bytes)):
            name = getattr(target, "__name__", "")
            if name == "join" and args:
                args = (_join_items(__context, args[0]), *args[1:])
                check_join(owner, args[0])
            else:
                check_str_method(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _charge_made(__context, result)
        return result


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
    "BudgetSandbox",
    "BudgetedFragment",
    "budget_env",
]
