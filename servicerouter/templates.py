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
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox
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

    @property
    def jinja_names(self) -> tuple[str, ...]:
        names = self.placeholders + JINJA_GLOBAL_NAMES
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
                 "(HAPROXY_{n}_PATH) to its backend; longest prefix first."),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL_WITH_PATH", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend", "path"),
                 "ACL in the shared HTTPS frontend sending one virtual host and path prefix "
                 "(HAPROXY_{n}_PATH) to its backend; longest prefix first."),
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
                 "HAPROXY_{n}_STICKY_COOKIE in the default)."),
    FragmentSpec("HAPROXY_BACKEND_SERVER_OPTIONS", "server",
                 ("serverName", "host", "host_ipv4", "port", "cookieOptions",
                  "healthCheckOptions"),
                 "One server line per task. A task being killed (with --health-check) is "
                 "drained: ' weight 0' ends its healthCheckOptions."),
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


class Fragment:
    """One loaded fragment, ready to render with a dict of values."""

    __slots__ = ("spec", "source", "text", "_template", "is_empty", "_format", "_globals",
                 "_constant")

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
        self._format = template is None and bool(spec.placeholders)
        # Jinja2 per render: the template's globals once (not a ChainMap walk),
        # and no render at all for text without a single expression or statement.
        self._globals = dict(template.globals) if template is not None else {}
        self._constant: str | None = None
        if template is not None and "{{" not in text and "{%" not in text:
            self._constant = template.render()

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
                    out = template.environment.concat(template.root_render_func(context))
                except Exception:
                    template.environment.handle_exception()
            if self.spec.strip_prefix:
                out = out.strip()
                return " " + out if out else ""
            return out
        if self._format:
            return self.text.format_map(values)
        return self.text


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
    here = Path(__file__).resolve().parent
    installed = here / "default_templates"
    if (installed / "HAPROXY_HEAD.j2").is_file():
        return installed
    return here.parent / "templates"


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


def _jinja_env() -> jinja2.Environment:
    return _Sandbox(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


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
        for _literal, field_name, _spec, _conv in parsed:
            if field_name is None:
                continue
            base = field_name.split(".", 1)[0].split("[", 1)[0]
            if base not in spec.placeholders:
                raise TemplateError(
                    f"{source}: line {line_no}: unknown placeholder {{{field_name}}} in "
                    f"{spec.name} (known: {', '.join(spec.placeholders)})"
                )
        offset += len(line)


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
