"""Loading config fragments from template directories, and the loaded fragments.

Every piece of the config is a fragment with a fixed name (the registry:
:mod:`servicerouter.render.fragment_registry`).  The defaults are files in the
top-level ``templates/`` directory; a file of the same name in a user's directory
(``--templates-dir``, then ``./templates`` as servicerouter.py read it) overrides one
fragment at a time.

Two kinds of file:

* ``NAME``: servicerouter.py's format, Python ``str.format`` with exactly the
  placeholders listed in :data:`FRAGMENTS` (literal braces doubled).
* ``NAME.j2``: Jinja2 with the same names plus richer context (``service``,
  ``app``, ``labels``, ``servers``, ``options``...), for fragments the old
  placeholders cannot express; they run in the sandbox of
  :mod:`servicerouter.render.sandbox`, which refuses any printed value that would
  break or end a config line.

Fragments are checked when loaded, so a typo in a placeholder fails at
startup naming the file and line, not at the first sync.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicerouter.render.format_compile import (
    SERVER_PARAMS,
    compile_format,
    compile_server_block,
)
from servicerouter.render.fragment_files import TemplateError, default_templates_dir
from servicerouter.render.fragment_registry import FRAGMENTS, FragmentSpec
from servicerouter.render.printing import SAFE_FORMATTER, VALIDATED_NAMES

if TYPE_CHECKING:  # Jinja2 is imported only when a fragment needs it (see load_fragments)
    import jinja2

# Widths and precisions in a legacy format spec ({mode:>20}) above this are refused.
MAX_FORMAT_WIDTH = 1024


class Fragment:
    """One loaded fragment, ready to render with a dict of values."""

    __slots__ = ("spec", "source", "text", "_template", "is_empty", "_format", "_globals",
                 "_constant", "uses_services", "builtin", "render_args", "_simple",
                 "render_block")

    def __init__(self, spec: FragmentSpec, text: str, source: str,
                 template: jinja2.Template | DeferredTemplate | ShippedTemplate | None) -> None:
        self.spec = spec
        self.source = source
        self.builtin = False  # from the built-in templates/ (load_fragments says so)
        self._template = template
        if template is None and spec.strip_prefix:
            stripped = text.strip()
            text = " " + stripped if stripped else ""
        self.text = text
        self.is_empty = template is None and text == ""
        # Fragments without placeholders are used as is (single braces are literal).
        # The placeholders themselves are validated values; a field reaching into raw
        # Marathon data ({healthCheck[command][value]}) is formatted with a check.
        self._format: Any = None
        # A legacy fragment of plain {name} fields, compiled once into a function of
        # its values (see compile_format): the same text as ``str.format_map``.
        self.render_args: Any = None
        # The server fragment's lines of a whole backend at once (compile_server_block).
        self.render_block: Any = None
        if template is None and spec.placeholders:
            self._format = text.format_map
            if _reaches_into_values(text):
                self._format = lambda values, _text=text: SAFE_FORMATTER.vformat(_text, (),
                                                                                  values)
            else:
                self._format = compile_format(text, ("values",), source) or self._format
                self.render_args = compile_format(text, spec.placeholders, source)
                if self.render_args is not None and spec.placeholders == SERVER_PARAMS:
                    self.render_block = compile_server_block(text, source)
        # Whether the fragment may read the whole list of services (conservative).
        self.uses_services = template is not None and "services" in text
        # Jinja2 per render: the template's globals once (not a ChainMap walk; taken
        # at the first Jinja2 render), and no render at all for text without a
        # single expression or statement (a shipped built-in one has it ready).
        self._globals: dict[str, Any] | None = None
        self._constant: str | None = None
        if isinstance(template, ShippedTemplate):
            self._constant = template.constant
        elif template is not None and "{{" not in text and "{%" not in text:
            self._constant = str(self._jinja().render())
        # Set by compile_fragment for a template that only prints validated names
        # (and by load_fragments for a shipped built-in one).
        self._simple: Any = None

    @property
    def is_jinja(self) -> bool:
        return self._template is not None

    def _jinja(self) -> jinja2.Template:
        """The Jinja2 template, generated and compiled now if it was deferred."""
        template = self._template
        if isinstance(template, DeferredTemplate | ShippedTemplate):
            template = self._template = template.compile()
        assert template is not None
        return template

    def render(self, values: Mapping[str, Any]) -> str:
        template = self._template
        if template is not None:
            out = self._constant
            if out is None and self._simple is not None:
                try:
                    out = self._simple(values)
                except Exception:  # undefined, or a refused value: Jinja2 raises its own
                    out = None     # error below (with the template line a problem names)
            if out is None:
                from jinja2.runtime import new_context

                template = self._jinja()
                shared = self._globals
                if shared is None:
                    shared = self._globals = dict(template.globals)
                # Template.render(values) without its two dict copies.
                context = new_context(template.environment, template.name, template.blocks,
                                      {**shared, **values}, True, shared)
                try:
                    out = "".join(template.root_render_func(context))
                except Exception:
                    template.environment.handle_exception()
            if self.spec.strip_prefix:
                out = out.strip()
                return " " + out if out else ""
            return out
        format_map = self._format
        if format_map is not None:
            return format_map(values)
        return self.text

    def failing_line(self, values: Mapping[str, Any], err: BaseException) -> int:
        """The line of this fragment where ``err`` (raised rendering ``values``) came from."""
        if self._template is not None:
            tb = err.__traceback__
            line = 1
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == "<template>":
                    line = tb.tb_lineno
                tb = tb.tb_next
            return line
        for number, text in enumerate(self.text.splitlines(), 1):
            try:
                SAFE_FORMATTER.vformat(text, (), values)
            except Exception:  # the line that fails on its own
                return number
        return 1


@dataclass(frozen=True)
class FragmentSet:
    """The fragment chosen for every name, and where each came from."""

    fragments: Mapping[str, Fragment]

    def __getitem__(self, name: str) -> Fragment:
        return self.fragments[name]

    def sources(self) -> dict[str, str]:
        return {name: frag.source for name, frag in self.fragments.items()}


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check_format_fragment(spec: FragmentSpec, text: str, source: str) -> None:
    """Fail on unknown placeholders or broken braces, naming the line."""
    if not spec.placeholders:
        return  # used verbatim, braces and all
    offset = 0
    for line_no, line in enumerate(text.splitlines(keepends=True), start=1):
        try:
            parsed = list(string.Formatter().parse(line))
        except ValueError as err:
            raise TemplateError(f"{source}: line {line_no}: {err}") from None
        for _literal, field_name, format_spec, _conv in parsed:
            if field_name is None:
                continue
            base = field_name.split(".", 1)[0].split("[", 1)[0]
            if base not in spec.placeholders:
                raise TemplateError(
                    f"{source}: line {line_no}: unknown placeholder {{{field_name}}} in "
                    f"{spec.name} (known: {', '.join(spec.placeholders)})"
                )
            if format_spec:
                _check_format_spec(field_name, format_spec, source, line_no)
        offset += len(line)


def _check_format_spec(field_name: str, format_spec: str, source: str, line_no: int) -> None:
    """No width or precision beyond :data:`MAX_FORMAT_WIDTH`, none taken from the data."""
    if "{" in format_spec:
        raise TemplateError(
            f"{source}: line {line_no}: {{{field_name}:{format_spec}}}: a placeholder inside "
            f"a format spec is not supported (its width would come from Marathon data)")
    for number in re.findall(r"[0-9]+", format_spec):
        digits = number.lstrip("0")
        if len(digits) > 6 or int(digits or "0") > MAX_FORMAT_WIDTH:
            shown = digits if len(digits) <= 12 else digits[:12] + "..."
            raise TemplateError(
                f"{source}: line {line_no}: {{{field_name}:{format_spec[:40]}}}: width or "
                f"precision {shown} is over {MAX_FORMAT_WIDTH}")


def _reaches_into_values(text: str) -> bool:
    """Whether a legacy fragment indexes or walks a placeholder ({healthCheck[path]})."""
    try:
        return any(field is not None and ("[" in field or "." in field)
                   for _lit, field, _spec, _conv in string.Formatter().parse(text))
    except ValueError:
        return True


def compile_fragment(spec: FragmentSpec, text: str, source: str, *, jinja: bool,
                     env: jinja2.Environment | Callable[[], jinja2.Environment] | None = None
                     ) -> Fragment:
    """Check and compile one fragment's text (``env``: the Jinja2 environment, or a
    function making it; the fragment files' sandbox when None)."""
    if not jinja:
        check_format_fragment(spec, text, source)
        return Fragment(spec, text, source, None)
    import jinja2

    from servicerouter.render.compiled import compile_plain_template
    from servicerouter.render.sandbox import fragment_env

    env = env() if callable(env) else env or fragment_env()
    try:
        ast = env.parse(text)
        # A template that compiles into a Python function (see compile_plain_template)
        # renders through Jinja2 only to raise Jinja2's own error: its code is generated
        # then, from this parse (most never are).  The others are compiled now, and
        # their code generation errors (an unknown filter) come first, as always.
        simple = compile_plain_template(ast, VALIDATED_NAMES, source, env)
        template: jinja2.Template | DeferredTemplate = (
            env.from_string(text) if simple is None else DeferredTemplate(env, ast))
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{source}: line {err.lineno}: {err.message}") from None
    unknown = sorted(_looked_up(ast, simple is not None) - set(spec.jinja_names))
    if unknown:
        line = _line_of(text, max(text.find(unknown[0]), 0))
        raise TemplateError(
            f"{source}: line {line}: unknown variable {unknown[0]!r} in {spec.name} "
            f"(known: {', '.join(spec.jinja_names)})"
        )
    fragment = Fragment(spec, text, source, template)
    fragment._simple = simple
    return fragment


def _looked_up(ast: Any, plain: bool) -> set[str]:
    """The names a template reads from its values (jinja2.meta's undeclared variables).

    ``plain``: a template compile_plain_template accepted, whose every name is read,
    never set (no ``set``, ``for``, macro or import); its names are all Name nodes,
    without jinja2.meta running the code generator over it (a third of a cold load).
    """
    import jinja2.meta
    from jinja2 import nodes

    if plain:  # as jinja2.meta: the environment's globals and ``self`` are not looked up
        skip = ast.environment.globals.keys() | {"self"}
        return {node.name for node in ast.find_all(nodes.Name)} - skip
    return jinja2.meta.find_undeclared_variables(ast)


class DeferredTemplate:
    """A parsed Jinja2 template whose code is generated and compiled on first use."""

    __slots__ = ("environment", "ast", "globals")

    def __init__(self, env: jinja2.Environment, ast: Any) -> None:
        self.environment = env  # as jinja2.Template names it
        self.ast = ast
        self.globals = env.make_globals(None)  # what the compiled template will hold

    def compile(self) -> jinja2.Template:
        """What ``env.from_string(text)`` returns, without parsing the text again
        (a fragment in the subset compile_plain_template accepts: no filter or test,
        so no code generation error either)."""
        env = self.environment
        return env.template_class.from_code(env, env.compile(self.ast), self.globals, None)


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # verbatim, CRLF kept
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise TemplateError(f"{path}: cannot read: {err}") from None


def load_fragments(user_dirs: Sequence[str | os.PathLike[str]] = (),
                   defaults_dir: str | os.PathLike[str] | None = None, *,
                   shipped: bool = True) -> FragmentSet:
    """Pick every fragment from the first directory that has it.

    ``user_dirs`` are searched in order, then the defaults.  Within one
    directory ``NAME.j2`` wins over ``NAME``.  A ``NAME.j2`` whose text is the
    built-in one's comes compiled with the package (servicerouter.render.shipped_fragments,
    generated from templates/ and checked against it by a test): no Jinja2 parse
    or import for it (``shipped=False``: compile every file, as a changed one is).
    """
    dirs = [Path(d) for d in user_dirs] + [Path(defaults_dir or default_templates_dir())]
    envs: list[Any] = []

    def env() -> Any:  # one environment for all the files that need Jinja2, made once
        if not envs:
            from servicerouter.render.sandbox import fragment_env

            envs.append(fragment_env())
        return envs[0]

    chosen: dict[str, Fragment] = {}
    for spec in FRAGMENTS:
        for directory in dirs:
            found = None
            for filename, jinja in ((spec.name + ".j2", True), (spec.name, False)):
                path = directory / filename
                text = _read(path)
                if text is not None:
                    found = (shipped_fragment(spec, text, str(path)) if jinja and shipped
                             else None)
                    if found is None:
                        found = compile_fragment(spec, text, str(path), jinja=jinja, env=env)
                    break
            if found is not None:
                found.builtin = directory == dirs[-1]
                chosen[spec.name] = found
                break
        else:
            raise TemplateError(f"no file for fragment {spec.name} in {', '.join(map(str, dirs))}")
    return FragmentSet(chosen)


class ShippedTemplate:
    """A built-in Jinja2 fragment shipped compiled: Jinja2 parses it only if a render
    must fall back to it (a value the compiled function leaves to Jinja2's error)."""

    __slots__ = ("text", "constant")

    def __init__(self, text: str, constant: str | None) -> None:
        self.text = text
        self.constant = constant  # the whole output of a text without expressions

    def compile(self) -> jinja2.Template:
        """What compile_fragment would have made of the text (it compiles: the
        shipped code was generated from it)."""
        from servicerouter.render.sandbox import fragment_env

        return fragment_env().from_string(self.text)


def shipped_fragment(spec: FragmentSpec, text: str, source: str) -> Fragment | None:
    """The shipped compiled form of ``NAME.j2`` when ``text`` is the built-in text, else None."""
    from servicerouter.render.shipped_fragments import SHIPPED

    entry = SHIPPED.get(spec.name)
    if entry is None:
        return None
    digest, constant, function = entry
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        return None
    fragment = Fragment(spec, text, source, ShippedTemplate(text, constant))
    fragment._simple = function
    return fragment


def fragment_names() -> Iterable[str]:
    return (spec.name for spec in FRAGMENTS)
