"""Saying which fragment failed on which app, file and line: for the render's Problems."""

from __future__ import annotations

from servicerouter.model.labels import Problem
from servicerouter.model.services import Service
from servicerouter.render.fragments import Fragment


def service_failure(service: Service, err: Exception) -> Problem:
    """The Problem for a service a fragment failed on: its file, line and the error."""
    return Problem(service.app_id, describe_failure(err) + "; app skipped", service.index,
                   kind="render")


def describe_failure(err: Exception) -> str:
    """Which fragment (file and line) failed, and how."""
    fragment = values = None
    tb = err.__traceback__
    while tb is not None:  # the innermost Fragment.render frame: which fragment, what values
        frame = tb.tb_frame
        if frame.f_code is _FRAGMENT_RENDER:
            fragment, values = frame.f_locals.get("self"), frame.f_locals.get("values")
        tb = tb.tb_next
    if isinstance(fragment, Fragment):
        line = fragment.failing_line(values or {}, err)
        where = f"fragment {fragment.spec.name} ({fragment.source}: line {line})"
    else:
        where = "a fragment"
    detail = str(err)
    if len(detail) > 300:
        detail = detail[:300] + "..."
    if not detail.isprintable():  # an error may quote the data: keep the log line one line
        detail = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in detail)
    return f"{where} fails to render: {type(err).__name__}: {detail}"


_FRAGMENT_RENDER = Fragment.render.__code__
