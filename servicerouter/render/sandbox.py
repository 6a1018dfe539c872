"""The Jinja2 sandbox fragments run in, and the check on every value they print.

Whatever a Jinja2 fragment prints with ``{{ }}`` comes from Marathon (labels,
the app) as often as from the operator, so no printed value may break or end a
line: :func:`printable` refuses control characters, line and paragraph
separators and ``#`` (which starts a comment) in every value written, and the
service whose fragment tried is left out of the config (see
:func:`servicerouter.render.config.render_guarded`).  Line breaks belong in the
fragment text itself.  Legacy ``str.format`` fragments reaching into raw data get
the same check through :data:`SAFE_FORMATTER`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

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


class TemplateSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with a shortcut for servicerouter's own values.

    Attribute reads such as ``service.settings.sticky`` are a large part of a
    default config's render time.  On instances of our frozen dataclasses
    the sandbox's checks (no leading underscore, not a function or frame
    internal, not a mutable container's method) always pass for a name
    without a leading underscore, so the shortcut returns the same value
    without running them; everything else takes the sandbox's own path.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._plain_types: dict[type, bool] = {}

    def _is_plain(self, cls: type) -> bool:
        plain = self._plain_types.get(cls)
        if plain is None:
            params = getattr(cls, "__dataclass_params__", None)
            plain = (cls.__module__.startswith("servicerouter.") and params is not None
                     and params.frozen)
            self._plain_types[cls] = plain
        return plain

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute[:1] != "_" and self._is_plain(type(obj)):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass
        return super().getattr(obj, attribute)


# Names whose values the label registry and the model have already validated as
# single safe tokens (every legacy placeholder but the raw healthCheck dict, and the
# .j2 names derived from them): printed as a bare {{ name }}, they skip the check.
VALIDATED_NAMES = frozenset(
    {name for spec in FRAGMENTS for name in spec.placeholders} - {"healthCheck"}
    | {"vhost", "hostAcl", "pathAcl", "bindOptions", "dynamicCookieKey"}
)


class _FragmentCodeGenerator(CodeGenerator):
    """Jinja2's code generator, minus the ``finalize`` call on validated placeholders.

    ``{{ backend }}`` prints a value the registry guarantees is one safe token (as
    a legacy fragment would), so only a bare name from :data:`VALIDATED_NAMES`
    that the template never rebinds skips :func:`printable`; attributes, items,
    filters, calls and every other name (``labels``, ``app``, ``service``...) go
    through it.  Most values a default config prints are such placeholders.
    """

    _rebound: frozenset[str] = frozenset()

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        rebound = {n.name for n in node.find_all(nodes.Name) if n.ctx != "load"}
        for imp in node.find_all((nodes.Import, nodes.FromImport)):
            if isinstance(imp, nodes.Import):
                rebound.add(imp.target)
            else:
                rebound.update(n if isinstance(n, str) else n[-1] for n in imp.names)
        self._rebound = frozenset(rebound)
        super().visit_Template(node, frame)

    def _validated(self, node: nodes.Expr) -> bool:
        return (isinstance(node, nodes.Name) and node.ctx == "load"
                and node.name in VALIDATED_NAMES and node.name not in self._rebound)

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._validated(node):
            finalize = finalize._replace(src=None)
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._validated(node):
            finalize = finalize._replace(src=None)
        super()._output_child_post(node, frame, finalize)


class _FragmentSandbox(TemplateSandbox):
    """The fragment files' sandbox: every printed value checked (see :func:`printable`)."""

    code_generator_class = _FragmentCodeGenerator


def fragment_env() -> jinja2.Environment:
    """The environment of fragment files (the defaults and the operator's)."""
    env = _FragmentSandbox(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=printable,
    )
    env.concat = _rendered_concat  # type: ignore[method-assign]  # macros, set and call blocks
    return env
