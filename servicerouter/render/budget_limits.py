"""The label-template budget's limits, and the checks that refuse an operation before it runs.

Operations that can multiply their input (repetition, powers, padding, formatting,
``join``, ``replace``, ``translate``...) are refused when their result would pass
:data:`MAX_VALUE` characters or items, or a number would pass :data:`MAX_INT_BITS`,
so a pathological template never gets to allocate it. Pure functions of the
operands; the metering of work done is :mod:`servicerouter.render.budget`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2.exceptions import TemplateRuntimeError

MAX_STEPS = 100_000  # template nodes evaluated, calls and items made, per fragment render
MAX_CHARS = 1_000_000  # characters written or made by operations, per fragment render
MAX_VALUE = 65_536  # characters (or items) of one value an operation may make
MAX_INT_BITS = 4_096  # size of a number an operation may make
MAX_TOTAL_STEPS = 500_000  # per app, over the trial renders of all its ports' fragments
MAX_TOTAL_CHARS = 4_000_000


class BudgetExceeded(TemplateRuntimeError):
    """A label template wanted more work or memory than a render may use."""


def _too_big(what: str) -> BudgetExceeded:
    return BudgetExceeded(f"{what} would be over {MAX_VALUE} characters or items")


def check_size(size: int, what: str) -> None:
    if size > MAX_VALUE:
        raise _too_big(what)


def size_of(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def check_int(value: Any, what: str) -> None:
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
            check_int(value, "a formatted number")
        longest = max(longest, len(str(value)))
    return len(text) + text.count(field) * (longest + width)


def check_format(fmt: Any, args: Sequence[Any], kwargs: Mapping[str, Any], field: str) -> None:
    if isinstance(fmt, (str, bytes)):
        check_size(_format_bound(fmt, args, kwargs, field), "a formatted string")


def check_join(sep: Any, items: Sequence[Any]) -> None:
    size = len(sep) * max(len(items) - 1, 0) if isinstance(sep, (str, bytes)) else 0
    for item in items:
        size += len(item) if isinstance(item, (str, bytes)) else 32
        if size > MAX_VALUE:
            raise _too_big("a joined string")


def check_replace(value: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(value, (str, bytes)) or not isinstance(new, type(value)):
        return
    hits = value.count(old) if old else len(value) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    check_size(len(value) + hits * max(len(new) - len(old or ""), 0), "a replaced string")


def check_width(value: Any, width: Any, what: str) -> None:
    if isinstance(width, int):
        check_size(max(size_of(value), width), what)


def check_str_method(owner: str | bytes, name: str, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> None:
    """Refuse a str/bytes method call whose result would be too big, before it runs."""
    if name in ("center", "ljust", "rjust", "zfill"):
        check_width(owner, args[0] if args else kwargs.get("width"), f"str.{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tab = "\t" if isinstance(owner, str) else b"\t"
            check_size(len(owner) + owner.count(tab) * max(size, 0), "str.expandtabs()")  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))), default=1)
        check_size(len(owner) * max(longest, 1), "str.translate()")
    elif name in ("format", "format_map"):
        check_format(owner, args, kwargs, "{")
    else:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and abs(arg) > MAX_VALUE:
                raise BudgetExceeded(f"str.{name}() argument {arg} is too large")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too big, before computing it."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise BudgetExceeded(f"a product would be a number over {MAX_INT_BITS} bits")
        elif isinstance(right, int) and size_of(left):
            check_size(size_of(left) * right, "a repetition")
        elif isinstance(left, int) and size_of(right):
            check_size(size_of(right) * left, "a repetition")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > MAX_INT_BITS:
                raise BudgetExceeded(f"a power would be a number over {MAX_INT_BITS} bits")
    elif operator == "+":
        check_size(size_of(left) + size_of(right), "a sum")
    elif operator == "%" and isinstance(left, (str, bytes)):
        if isinstance(right, tuple):
            check_format(left, right, {}, "%")
        elif isinstance(right, Mapping):
            check_format(left, (), right, "%")
        else:
            check_format(left, (right,), {}, "%")
