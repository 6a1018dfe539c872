"""The registry of config fragments, and loading them from template directories.

Every piece of the config is a fragment with a fixed name.  The defaults are
files in the top-level ``templates/`` directory; a file of the same name in a
user's directory (``--templates-dir``, then ``./templates`` as servicerouter.py
read it) overrides one fragment at a time.

Two kinds of file:

* ``NAME``: servicerouter.py's format, Python ``str.format`` with exactly the
  placeholders listed in :data:`FRAGMENTS` (literal braces doubled).
* ``NAME.j2``: Jinja2 with the same names plus richer context (``service``,
  ``app``, ``labels``, ``servers``, ``options``...), for fragments the old
  placeholders cannot express.

Fragments are checked when loaded, so a typo in a placeholder fails at
startup naming the file and line, not at the first sync.

Whatever a Jinja2 fragment prints with ``{{ }}`` comes from Marathon (labels,
the app) as often as from the operator, so no printed value may break or end a
line: :func:`printable` refuses control characters, line and paragraph
separators and ``#`` (which starts a comment) in every value written, and the
service whose fragment tried is left out of the config (see
:func:`servicerouter.render.config.render_guarded`).  Line breaks belong in the
fragment text itself.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import new_context

HEALTHCHECK_PLACEHOLDERS = (
    "healthCheck",
    "healthCheckPortIndex",
    "healthCheckProtocol",
    "healthCheckPath",
    "healthCheckTimeoutSeconds",
    "healthCheckIntervalSeconds",
    "healthCheckIgnoreHttp1xx",
    "healthCheckGracePeriodSeconds",
    "healthCheckMaxConsecutiveFailures",
    "healthCheckFalls",
)

# Extra names every Jinja2 fragment may use, beyond its legacy placeholders.
JINJA_GLOBAL_NAMES = ("options", "services")
JINJA_SERVICE_NAMES = ("service", "app", "labels", "servers", "vhosts", "bindOptions")
JINJA_SERVER_NAMES = ("server",)
JINJA_VHOST_NAMES = ("vhost", "hostAcl", "path", "pathAcl")


@dataclass(frozen=True, slots=True)
class FragmentSpec:
    """A fragment name, where it goes, what it may use, and what it is for."""

    name: str
    scope: str  # "global", "service", "vhost" or "server"
    placeholders: tuple[str, ...]
    help: str
    strip_prefix: bool = False  # servicerouter.py stripped these and prefixed one space
    jinja_extra: tuple[str, ...] = ()  # names only .j2 files of this fragment get

    @property
    def jinja_names(self) -> tuple[str, ...]:
        names = self.placeholders + self.jinja_extra + JINJA_GLOBAL_NAMES
        if self.scope in ("service", "vhost", "server"):
            names += JINJA_SERVICE_NAMES
        if self.scope == "vhost":
            names += JINJA_VHOST_NAMES
        if self.scope == "server":
            names += JINJA_SERVER_NAMES
        return names


FRAGMENTS: tuple[FragmentSpec, ...] = (
    FragmentSpec("HAPROXY_HEAD", "global", (),
                 "Head of the config: global settings, defaults and the stats listener."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_HEAD", "global", (),
                 "Shared HTTP frontend (:80) gathering every virtual host."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_APPID_HEAD", "global", (),
                 "HTTP frontend (:81) routing on the X-Marathon-App-Id header to each app's "
                 "first http-mode port."),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_HEAD", "global", (),
                 "Shared HTTPS frontend (:443) gathering every virtual host; serves the "
                 "certificate bundles (crt-list) and routes on the Host header."),
    FragmentSpec("HAPROXY_FRONTEND_HEAD", "service",
                 ("backend", "bindAddr", "servicePort", "mode", "sslCertOptions"),
                 "Frontend of one service port: bind address, port and mode (the default "
                 "adds HAPROXY_{n}_BIND_OPTIONS, also given to .j2 files as bindOptions)."),
    FragmentSpec("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS", "service", ("bindAddr",),
                 "Added to the port's frontend when HAPROXY_{n}_REDIRECT_TO_HTTPS is set "
                 "(the default is empty: HAPROXY_BACKEND_HEAD redirects in the backend instead, "
                 "only requests that came in on the shared HTTP frontend)."),
    FragmentSpec("HAPROXY_BACKEND_HEAD", "service", ("backend", "mode"),
                 "Backend of one service port: balance algorithm (HAPROXY_{n}_BALANCE) and "
                 "mode; the default also 301-redirects plain HTTP that came in on the shared "
                 "HTTP frontend for ports with HAPROXY_{n}_REDIRECT_TO_HTTPS."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTP frontend sending one virtual host to its backend."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_APPID_ACL", "service",
                 ("cleanedUpAppId", "hostname", "appId", "backend"),
                 "ACL in the app-id frontend sending one app's requests to its backend."),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTPS frontend sending one virtual host to its backend."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend", "path"),
                 "ACL in the shared HTTP frontend sending one virtual host and path prefix "
                 "(HAPROXY_{n}_PATH) to its backend; rendered once per prefix (path), "
                 "longest prefix first. .j2 files also get pathIgnoreCase (true when "
                 "HAPROXY_{n}_PATH starts with -i: match with path_beg -i).",
                 jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend", "path"),
                 "ACL in the shared HTTPS frontend sending one virtual host and path prefix "
                 "(HAPROXY_{n}_PATH) to its backend; rendered once per prefix (path), "
                 "longest prefix first. .j2 files also get pathIgnoreCase (true when "
                 "HAPROXY_{n}_PATH starts with -i: match with path_beg -i).",
                 jinja_extra=("pathIgnoreCase",)),
    FragmentSpec("HAPROXY_USERLIST_HEAD", "service",
                 ("backend", "realm", "user", "passwordHash"),
                 "userlist section holding the HAPROXY_{n}_AUTH user, written before the "
                 "port's backend."),
    FragmentSpec("HAPROXY_BACKEND_AUTH_OPTIONS", "service", ("backend", "realm"),
                 "Backend rule answering 401 to requests without the HAPROXY_{n}_AUTH "
                 "credentials."),
    FragmentSpec("HAPROXY_BACKEND_HSTS_OPTIONS", "service", (),
                 "Strict-Transport-Security on HTTPS responses of backends with "
                 "HAPROXY_{n}_USE_HSTS."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_OPTIONS", "service", (),
                 "Options of http-mode backends (X-Forwarded-* headers)."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of http-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_TCP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of tcp-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_STICKY_OPTIONS", "service", (),
                 "Sticky-session cookie of backends with HAPROXY_{n}_STICKY (name from "
                 "HAPROXY_{n}_STICKY_COOKIE in the default). The default sets a dynamic "
                 "cookie keyed by dynamicCookieKey (.j2: secret, stable, per backend), "
                 "so servers need no cookie of their own and scale without a reload.",
                 jinja_extra=("dynamicCookieKey",)),
    FragmentSpec("HAPROXY_BACKEND_SERVER_OPTIONS", "server",
                 ("serverName", "host", "host_ipv4", "port", "cookieOptions",
                  "healthCheckOptions"),
                 "One server line per task. A task being killed (with --health-check) is "
                 "drained: ' weight 0' ends its healthCheckOptions. cookieOptions is empty "
                 "when the backend's sticky fragment set 'cookie ... dynamic' (as the "
                 "default does: HAProxy then derives each server's cookie); .j2: "
                 "dynamicCookie says so.",
                 jinja_extra=("dynamicCookie",)),
    FragmentSpec("HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS", "server",
                 HEALTHCHECK_PLACEHOLDERS,
                 "Per-server health-check options (http mode); stripped, then prefixed "
                 "with one space when not empty.", strip_prefix=True),
    FragmentSpec("HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS", "server",
                 HEALTHCHECK_PLACEHOLDERS,
                 "Per-server health-check options (tcp mode); stripped, then prefixed "
                 "with one space when not empty.", strip_prefix=True),
    FragmentSpec("HAPROXY_FRONTEND_BACKEND_GLUE", "service", ("backend",),
                 "Glues the port's frontend to its backend."),
)

FRAGMENTS_BY_NAME: dict[str, FragmentSpec] = {spec.name: spec for spec in FRAGMENTS}


class TemplateError(ValueError):
    """A fragment file that cannot be used; the message names file and line."""


class UnsafeValueError(ValueError):
    """A fragment tried to print a value that would break or end a config line."""


# What may never come out of a printed value: anything that ends a line for
# HAProxy's parser (or a log or terminal reading the config), and '#', which
# starts a comment and so can cut the condition off a rule.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029#]")
_UNSAFE_NAMES = {"#": "'#' (starts a comment)", "\n": "a line feed", "\r": "a carriage return",
                 "\x00": "a NUL", "\x85": "a next-line (U+0085)",
                 "\u2028": "a line separator (U+2028)", "\u2029": "a paragraph separator (U+2029)"}
# Widths and precisions in a legacy format spec ({mode:>20}) above this are refused.
MAX_FORMAT_WIDTH = 1024


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


_SAFE_FORMATTER = _SafeFormatter()


class Fragment:
    """One loaded fragment, ready to render with a dict of values."""

    __slots__ = ("spec", "source", "text", "_template", "is_empty", "_format", "_globals",
                 "_constant", "uses_services")

    def __init__(self, spec: FragmentSpec, text: str, source: str,
                 template: jinja2.Template | None) -> None:
        self.spec = spec
        self.source = source
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
        if template is None and spec.placeholders:
            self._format = text.format_map
            if _reaches_into_values(text):
                self._format = lambda values, _text=text: _SAFE_FORMATTER.vformat(_text, (),
                                                                                  values)
        # Whether the fragment may read the whole list of services (conservative).
        self.uses_services = template is not None and "services" in text
        # Jinja2 per render: the template's globals once (not a ChainMap walk),
        # and no render at all for text without a single expression or statement.
        self._globals = dict(template.globals) if template is not None else {}
        self._constant: str | None = None
        if template is not None and "{{" not in text and "{%" not in text:
            self._constant = str(template.render())

    @property
    def is_jinja(self) -> bool:
        return self._template is not None

    def render(self, values: Mapping[str, Any]) -> str:
        template = self._template
        if template is not None:
            out = self._constant
            if out is None:
                # Template.render(values) without its two dict copies.
                context = new_context(template.environment, template.name, template.blocks,
                                      {**self._globals, **values}, True, self._globals)
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
                _SAFE_FORMATTER.vformat(text, (), values)
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


def default_templates_dir() -> Path:
    """The built-in fragments: installed package data, else the checkout's templates/."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "default_templates"
    if (installed / "HAPROXY_HEAD.j2").is_file():
        return installed
    return package.parent / "templates"


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
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


class _FragmentSandbox(_Sandbox):
    """The fragment files' sandbox: every printed value checked (see :func:`printable`)."""

    code_generator_class = _FragmentCodeGenerator


def _jinja_env() -> jinja2.Environment:
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
                     env: jinja2.Environment | None = None) -> Fragment:
    """Check and compile one fragment's text."""
    if not jinja:
        check_format_fragment(spec, text, source)
        return Fragment(spec, text, source, None)
    env = env or _jinja_env()
    try:
        ast = env.parse(text)
        template = env.from_string(text)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{source}: line {err.lineno}: {err.message}") from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - set(spec.jinja_names))
    if unknown:
        line = _line_of(text, max(text.find(unknown[0]), 0))
        raise TemplateError(
            f"{source}: line {line}: unknown variable {unknown[0]!r} in {spec.name} "
            f"(known: {', '.join(spec.jinja_names)})"
        )
    return Fragment(spec, text, source, template)


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # verbatim, CRLF kept
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise TemplateError(f"{path}: cannot read: {err}") from None


def load_fragments(user_dirs: Sequence[str | os.PathLike[str]] = (),
                   defaults_dir: str | os.PathLike[str] | None = None) -> FragmentSet:
    """Pick every fragment from the first directory that has it.

    ``user_dirs`` are searched in order, then the defaults.  Within one
    directory ``NAME.j2`` wins over ``NAME``.
    """
    dirs = [Path(d) for d in user_dirs] + [Path(defaults_dir or default_templates_dir())]
    env = _jinja_env()
    chosen: dict[str, Fragment] = {}
    for spec in FRAGMENTS:
        for directory in dirs:
            found = None
            for filename, jinja in ((spec.name + ".j2", True), (spec.name, False)):
                path = directory / filename
                text = _read(path)
                if text is not None:
                    found = compile_fragment(spec, text, str(path), jinja=jinja, env=env)
                    break
            if found is not None:
                chosen[spec.name] = found
                break
        else:
            raise TemplateError(f"no file for fragment {spec.name} in {', '.join(map(str, dirs))}")
    return FragmentSet(chosen)


def fragment_names() -> Iterable[str]:
    return (spec.name for spec in FRAGMENTS)
