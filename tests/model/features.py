"""Shared apps and readers of the label-driven routing feature tests (pure: no I/O).

``app`` builds a Marathon app dict, ``model``/``render`` run the model and the
renderer with fixed options, ``section``/``use_backends`` read the rendered config.
"""

from __future__ import annotations

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.paths import LEGACY_TEMPLATES

LEGACY = LEGACY_TEMPLATES
SHA512 = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1"
DEFAULTS = load_fragments([])
LEGACY_SET = load_fragments([LEGACY])
OPTIONS = RenderOptions(crt_list="/state/crt-list")
RESERVED = OPTIONS.reserved_ports()


def ident(host: str) -> str | None:
    return host if host[0].isdigit() else None


def app(app_id: str, port: int, labels: dict | None = None, *, changed: str | None = None,
        tasks: list[dict] | None = None, **extra) -> dict:
    body = {"id": app_id, "ports": [port], "labels": labels or {}, "env": {},
            "tasks": tasks if tasks is not None else
            [{"id": f"{app_id[1:]}.1", "host": "10.0.0.1", "ports": [31000 + port % 1000]}]}
    if changed:
        body["versionInfo"] = {"lastConfigChangeAt": changed}
    body.update(extra)
    return body


def model(apps: list[dict], **kw):
    return build_model(apps, kw.pop("groups", ()), ident, reserved_ports=RESERVED, **kw)


def render(apps: list[dict], fragments=DEFAULTS, **kw) -> str:
    return render_config(model(apps, **kw).services, fragments, OPTIONS)


def section(text: str, name: str) -> list[str]:
    """Lines of one section (e.g. 'frontend marathon_http_in'), without the header."""
    lines = text.splitlines()
    start = lines.index(name) + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i][0].isspace()),
               len(lines))
    return [line for line in lines[start:end] if line.strip()]


def use_backends(text: str, frontend: str = "frontend marathon_http_in") -> list[str]:
    return [line.split()[1] for line in section(text, frontend) if line.startswith("  use_backend")]


OLD, NEW = "2015-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"
