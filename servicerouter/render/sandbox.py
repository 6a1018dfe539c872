"""The Jinja2 sandbox fragments run in, with the check on every value they print.

Whatever a Jinja2 fragment prints with ``{{ }}`` comes from Marathon (labels,
the app) as often as from the operator, so no printed value may break or end a
line: the environment's ``finalize`` is :func:`printable`
(servicerouter.render.printing), and the service whose fragment tried is left
out of the config (see :func:`servicerouter.render.config.render_guarded`).  Line
breaks belong in the fragment text itself.  Legacy ``str.format`` fragments
reaching into raw data get the same check through :data:`SAFE_FORMATTER`.
"""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

# The printed-value checks live in a module without Jinja2 (servicerouter.render.printing),
# so that the shipped compiled built-in fragments run without importing it; re-exported.
from servicerouter.render.printing import (  # noqa: F401 - re-exported
    SAFE_FORMATTER,
    VALIDATED_NAMES,
    UnsafeValueError,
    _Rendered,
    _rendered_concat,
    is_plain_type,
    printable,
    unsafe_reason,
)


class TemplateSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with a shortcut for servicerouter's own values.

    Attribute reads such as ``service.settings.sticky`` are a large part of a
    default config's render time.  On instances of our dataclasses
    the sandbox's checks (no leading underscore, not a function or frame
    internal, not a mutable container's method) always pass for a name
    without a leading underscore, so the shortcut returns the same value
    without running them; everything else takes the sandbox's own path.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute[:1] != "_" and is_plain_type(type(obj)):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass
        return super().getattr(obj, attribute)


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
