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
JINJA_SERVICE_NAMES = ("service", "app", "labels", "servers", "vhosts")
JINJA_SERVER_NAMES = ("server",)
JINJA_VHOST_NAMES = ("vhost",)


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
                 "Frontend of one service port: bind address, port and mode."),
    FragmentSpec("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS", "service", ("bindAddr",),
                 "Added to the port's frontend when HAPROXY_{n}_REDIRECT_TO_HTTPS is set "
                 "(the default redirects on the shared HTTP frontend instead, per vhost)."),
    FragmentSpec("HAPROXY_BACKEND_HEAD", "service", ("backend", "mode"),
                 "Backend of one service port: balance algorithm and mode."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTP frontend sending one virtual host to its backend."),
    FragmentSpec("HAPROXY_HTTP_FRONTEND_APPID_ACL", "service",
                 ("cleanedUpAppId", "hostname", "appId", "backend"),
                 "ACL in the app-id frontend sending one app's requests to its backend."),
    FragmentSpec("HAPROXY_HTTPS_FRONTEND_ACL", "vhost",
                 ("cleanedUpHostname", "hostname", "appId", "backend"),
                 "ACL in the shared HTTPS frontend sending one virtual host to its backend."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_OPTIONS", "service", (),
                 "Options of http-mode backends (X-Forwarded-* headers)."),
    FragmentSpec("HAPROXY_BACKEND_HTTP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of http-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_TCP_HEALTHCHECK_OPTIONS", "service", HEALTHCHECK_PLACEHOLDERS,
                 "Backend health-check options of tcp-mode ports with a Marathon health check."),
    FragmentSpec("HAPROXY_BACKEND_STICKY_OPTIONS", "service", (),
                 "Sticky-session cookie of backends with HAPROXY_{n}_STICKY."),
    FragmentSpec("HAPROXY_BACKEND_SERVER_OPTIONS", "server",
                 ("serverName", "host", "host_ipv4", "port", "cookieOptions",
                  "healthCheckOptions"),
                 "One server line per task."),
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

    __slots__ = ("spec", "source", "text", "_template", "is_empty", "_format")

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

    @property
    def is_jinja(self) -> bool:
        return self._template is not None

    def render(self, values: Mapping[str, Any]) -> str:
        template = self._template
        if template is not None:
            out = template.render(values)
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


def _jinja_env() -> jinja2.Environment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
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
        with open(path, encoding="utf-8") as handle:
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
