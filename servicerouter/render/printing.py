"""The check on every value a fragment prints, without Jinja2.

Whatever a fragment prints with ``{{ }}`` comes from Marathon (labels, the app) as
often as from the operator, so no printed value may break or end a line:
:func:`printable` refuses control characters, line and paragraph separators and
``#`` (which starts a comment) in every value written.  Kept apart from
:mod:`servicerouter.render.sandbox` (the Jinja2 environment) so that the built-in
fragments, shipped compiled (servicerouter.render.shipped), check their printed
values the same way in a run that never imports Jinja2.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, MutableMapping, MutableSequence, MutableSet
from typing import Any

from servicerouter.render.fragment_registry import FRAGMENTS


class UnsafeValueError(ValueError):
    """A fragment tried to print a value that would break or end a config line."""


# What may never come out of a printed value: anything that ends a line for
# HAProxy's parser (or a log or terminal reading the config), and '#', which
# starts a comment and so can cut the condition off a rule.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029#]")
_UNSAFE_NAMES = {"#": "'#' (starts a comment)", "\n": "a line feed", "\r": "a carriage return",
                 "\x00": "a NUL", "\x85": "a next-line (U+0085)",
                 "\u2028": "a line separator (U+2028)", "\u2029": "a paragraph separator (U+2029)"}


def unsafe_reason(text: str) -> str | None:
    """Why ``text`` may not be printed into a config line (None: it may)."""
    found = _UNSAFE_RE.search(text)
    if found is None:
        return None
    char = found.group()
    what = _UNSAFE_NAMES.get(char) or f"a control character (U+{ord(char):04X})"
    shown = text if len(text) <= 60 else text[:60] + "..."
    return f"printed value {shown!r} contains {what}; a printed value may not break or end a line"


class _Rendered(str):
    """Text a fragment itself wrote (a macro, a ``{% set %}`` or call block).

    Every value printed inside it already went through :func:`printable`; its line
    breaks are the fragment's own, so printing it whole (``{{ my_macro() }}``) is
    allowed.  Any string operation on it gives a plain ``str`` again.
    """

    __slots__ = ()


def _rendered_concat(parts: Iterable[str]) -> str:
    return _Rendered("".join(parts))


def printable(value: Any) -> Any:
    """The Jinja2 ``finalize`` hook: every ``{{ }}`` value of a fragment goes through here.

    Plain words cost two C-level scans; anything else is converted and searched.
    """
    cls = value.__class__
    if cls is str:
        if value.isprintable() and "#" not in value:
            return value
        text = value
    elif cls is int or cls is _Rendered:
        return value
    else:
        text = str(value)  # Undefined raises here, as without the hook
        if text.isprintable() and "#" not in text:
            return text
    reason = unsafe_reason(text)
    if reason is not None:
        raise UnsafeValueError(reason)
    return text  # printable after all: non-ASCII spaces, format characters...


class _SafeFormatter(string.Formatter):
    """``str.format`` for legacy fragments reaching into raw data (``{healthCheck[x]}``)."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        text = format(value, format_spec)
        reason = unsafe_reason(text)
        if reason is not None:
            raise UnsafeValueError(reason)
        return text


SAFE_FORMATTER = _SafeFormatter()


# Names whose values the label registry and the model have already validated as
# single safe tokens (every legacy placeholder but the raw healthCheck dict, and the
# .j2 names derived from them): printed as a bare {{ name }}, they skip the check.
VALIDATED_NAMES = frozenset(
    {name for spec in FRAGMENTS for name in spec.placeholders} - {"healthCheck"}
    | {"vhost", "hostAcl", "pathAcl", "bindOptions", "dynamicCookieKey"}
)


# is_plain_type's answers by class (a cache: the answer depends on the class alone).
PLAIN_TYPES: dict[type, bool] = {}
# What Jinja2's immutable sandbox vets the methods of (modifies_known_mutable).
_MUTABLE_CONTAINERS = (list, dict, set, bytearray, MutableSequence, MutableMapping, MutableSet)


def is_plain_type(cls: type) -> bool:
    """Whether ``cls`` is one of servicerouter's dataclasses (frozen or not): on its
    instances the sandbox's attribute checks (no leading underscore, not a function or
    frame internal, not a mutable container's method) always pass for a name without a
    leading underscore (see servicerouter.render.sandbox.TemplateSandbox.getattr).
    Frozen-ness does not enter into it: a template cannot assign to an attribute, and
    the model's value classes are plain slots dataclasses (cheaper to build).  A class
    that is also a mutable container is left to the sandbox (its methods are vetted)."""
    plain = PLAIN_TYPES.get(cls)
    if plain is None:
        plain = (cls.__module__.startswith("servicerouter.")
                 and getattr(cls, "__dataclass_params__", None) is not None
                 and not issubclass(cls, _MUTABLE_CONTAINERS))
        PLAIN_TYPES[cls] = plain
    return plain
