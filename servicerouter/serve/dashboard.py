"""The dashboard page: a pure function from a snapshot to HTML.

``render_dashboard(snapshot, page, states, ...)`` returns the page; nothing
here does I/O, so the page is tested (and benchmarked at 5,000 apps) without
a router.  The snapshot comes from
:mod:`servicerouter.engine.dashboard_snapshot`, the HTTP side (sessions,
CSRF, the editor's writes) from :mod:`servicerouter.serve.dashboard_http`.

App ids, labels, hosts and rule notes are hostile input: the templates are
rendered by an autoescaping Jinja2 environment and nothing is marked safe.
With thousands of apps the services table is filtered by a text query and
paginated (``?q=...&page=N``), so a page holds at most ``per_page`` rows
whatever the cluster's size.
"""

from __future__ import annotations

import datetime
import functools
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from servicerouter.serve.dashboard_templates import CSS, DASHBOARD, LAYOUT, SIGNIN

PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_QUERY = 200


@dataclass(frozen=True)
class PageQuery:
    """What the services table shows: a filter text and a page number."""

    text: str = ""
    number: int = 1
    per_page: int = PER_PAGE


def parse_query(query_string: str) -> PageQuery:
    """``q``, ``page`` and ``per_page`` from a URL's query string; bad values fall back."""
    params = urllib.parse.parse_qs(query_string, keep_blank_values=True)
    text = (params.get("q") or [""])[0].strip()[:MAX_QUERY]
    return PageQuery(text, _int(params.get("page"), 1, 1, 1_000_000),
                     _int(params.get("per_page"), PER_PAGE, 1, MAX_PER_PAGE))


def _int(values: list[str] | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int((values or [""])[0]), low), high)
    except ValueError:
        return default


@dataclass(frozen=True)
class Page:
    """One page of the services table."""

    rows: Sequence[Mapping[str, Any]]
    query: str
    number: int
    pages: int
    matching: int
    total: int
    per_page: int = PER_PAGE
    path: str = "/"  # the page the table is on (the dashboard, or the rule editor's list)

    def link(self, number: int) -> str:
        params = {"page": str(number)}
        if self.query:
            params["q"] = self.query
        if self.per_page != PER_PAGE:
            params["per_page"] = str(self.per_page)
        return self.path + "?" + urllib.parse.urlencode(params)


def _matches(row: Mapping[str, Any], needle: str) -> bool:
    haystack = row.get("search")  # precomputed by the snapshot (lower case)
    if haystack is None:
        haystack = " ".join([str(row.get("app", "")), str(row.get("backend", "")),
                             str(row.get("mode", "")), *map(str, row.get("vhosts", ())),
                             *map(str, row.get("paths", ()))]).lower()
    return needle in haystack or needle in str(row.get("bind", "")) \
        or needle == row.get("origin")


def select_services(rows: Sequence[Mapping[str, Any]], query: PageQuery,
                    path: str = "/") -> Page:
    """The rows matching the query's text (case-insensitive substring of app id,
    hosts, paths, backend, bind or mode; or the origin's name), cut to the asked page."""
    needle = query.text.lower()
    matching = [row for row in rows if _matches(row, needle)] if needle else rows
    pages = max(1, math.ceil(len(matching) / query.per_page))
    number = min(query.number, pages)
    start = (number - 1) * query.per_page
    return Page(matching[start:start + query.per_page], query.text, number, pages,
                len(matching), len(rows), query.per_page, path)


@dataclass(frozen=True)
class SessionView:
    """What the page needs to know about its viewer."""

    signed_in: bool = False
    csrf: str = ""
    token_required: bool = False  # the router has --status-token
    can_write: bool = False  # signed in on a router with a token


def _first_word(value: Any) -> str:
    """The CSS class of a server state: HAProxy says ``UP 1/3`` or ``no check``."""
    word = str(value or "").split(" ", 1)[0]
    return word if word.isalpha() and word.isupper() else ""


@functools.cache
def environment() -> jinja2.Environment:
    """One autoescaping environment with the dashboard's templates (built once)."""
    from servicerouter.serve.dashboard_editor_templates import TEMPLATES as EDITOR

    env = jinja2.Environment(
        loader=jinja2.DictLoader({"layout": LAYOUT, "dashboard": DASHBOARD, "signin": SIGNIN,
                                  **EDITOR}),
        autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["first_word"] = _first_word
    return env


def common_context(snapshot: Mapping[str, Any], session: SessionView, title: str) -> dict[str, Any]:
    build = snapshot.get("build") or {}
    return {"css": CSS, "build": build, "session": session, "title": title}


def render_dashboard(snapshot: Mapping[str, Any], page: Page,
                     states: Mapping[str, Mapping[str, Mapping[str, str]]],
                     session: SessionView, *, states_error: str = "",
                     now: datetime.datetime | None = None) -> str:
    """The dashboard's HTML for one snapshot and one page of services (pure).

    ``states``: HAProxy's view of the page's servers, backend -> server -> fields
    (see :func:`servicerouter.apply.server_states.parse_show_stat`).
    """
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    return environment().get_template("dashboard").render(
        **common_context(snapshot, session, "Dashboard"), s=snapshot, page=page, states=states,
        states_error=states_error, hold=snapshot.get("removal_hold") or {}, now=when)


def render_signin(snapshot: Mapping[str, Any], session: SessionView, error: str = "") -> str:
    """The sign-in form (the token sets a session cookie; see dashboard_http)."""
    return environment().get_template("signin").render(
        **common_context(snapshot, session, "Sign in"), error=error)


@dataclass
class Rendered:
    """An HTTP answer the status server sends as is."""

    status: int
    body: str
    headers: list[tuple[str, str]] = field(default_factory=list)


__all__ = ["PER_PAGE", "Page", "PageQuery", "Rendered", "SessionView", "environment",
           "parse_query", "render_dashboard", "render_signin", "select_services"]
