"""The rule editor: form fields <-> a rule's JSON, and the /rules page.

The form is plain HTML (no script): text fields for hosts, paths, sources,
one header match a line (``Name = value`` exact, ``Name ^= value`` prefix).
:func:`form_to_rule` turns the fields into the JSON the rules API takes, and
anything it cannot read is a :class:`FieldError` naming the field, shown
inline like the rule validator's own ``RuleError`` (same ``field`` and
``message``).  Previews and writes go through a :class:`RuleBackend`, which
the rules package provides (validation, the store, the config diff).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from servicerouter.serve.dashboard import Page, SessionView, environment

_SPLIT_RE = re.compile(r"[\s,]+")
_HEADER_RE = re.compile(r"^\s*([^\s=^]+)\s*(\^?=)\s*(.*?)\s*$")
FORM_FIELDS = ("app_id", "port_index", "hosts", "paths", "path_ignore_case", "headers",
               "allow_cidrs", "priority", "weight", "note")


class FieldError(ValueError):
    """A form field that cannot be read; shown next to the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RuleBackend(Protocol):
    """What the editor needs from the rules package (see ``servicerouter.rules``)."""

    def rules(self) -> list[dict[str, Any]]: ...

    def history(self, limit: int) -> list[dict[str, Any]]: ...

    def preview(self, data: Mapping[str, Any] | None, rule_id: str) -> str:
        """The config diff saving ``data`` (None: deleting ``rule_id``) would cause;
        raises an error with ``field``/``message`` when the rule is invalid."""
        ...

    def save(self, data: Mapping[str, Any], actor: str) -> str:
        """Validate and store; the rule's id.  Raises like :meth:`preview`."""
        ...

    def delete(self, rule_id: str, actor: str) -> bool: ...


def _words(text: str) -> list[str]:
    return [word for word in _SPLIT_RE.split(text.strip()) if word]


def _integer(form: Mapping[str, str], name: str) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise FieldError(name, f"{text[:40]!r} is not a whole number") from None


def form_to_rule(form: Mapping[str, str]) -> dict[str, Any]:
    """The rules API's JSON for a submitted form (pure); FieldError if unreadable.

    Only the syntax of the form is checked here; what the values may be is the
    rule validator's business (one set of rules for the API and the form).
    """
    data: dict[str, Any] = {"app_id": form.get("app_id", "").strip()}
    port_index = _integer(form, "port_index")
    data["port_index"] = 0 if port_index is None else port_index
    data["hosts"] = _words(form.get("hosts", ""))
    data["paths"] = _words(form.get("paths", ""))
    if form.get("path_ignore_case"):  # a checkbox: sent only when ticked
        data["path_ignore_case"] = True
    headers = []
    for line in form.get("headers", "").splitlines():
        if not line.strip():
            continue
        match = _HEADER_RE.fullmatch(line)
        if match is None or not match.group(3):
            raise FieldError("headers", f"{line.strip()[:60]!r}: write 'Name = value' or "
                             "'Name ^= value'")
        headers.append({"name": match.group(1), "value": match.group(3),
                        "match": "prefix" if match.group(2) == "^=" else "exact"})
    data["headers"] = headers
    data["allow_cidrs"] = _words(form.get("allow_cidrs", ""))
    for name in ("priority", "weight"):
        value = _integer(form, name)
        if value is not None:
            data[name] = value
    note = form.get("note", "").strip()
    if note:
        data["note"] = note
    return data


def rule_to_form(rule: Mapping[str, Any]) -> dict[str, str]:
    """A stored rule's JSON as the form's field values (for editing)."""
    headers = "\n".join(f"{h.get('name')} {'^=' if h.get('match') == 'prefix' else '='} "
                        f"{h.get('value')}" for h in rule.get("headers") or ())
    return {"id": str(rule.get("id", "")), "app_id": str(rule.get("app_id", "")),
            "port_index": str(rule.get("port_index", 0)),
            "hosts": " ".join(rule.get("hosts") or ()), "paths": " ".join(rule.get("paths") or ()),
            "path_ignore_case": "on" if rule.get("path_ignore_case") else "",
            "headers": headers, "allow_cidrs": " ".join(rule.get("allow_cidrs") or ()),
            "priority": str(rule.get("priority", "")), "weight": str(rule.get("weight", "")),
            "note": str(rule.get("note", ""))}


def error_of(err: BaseException) -> dict[str, str]:
    """``{field, message}`` of a FieldError or the validator's RuleError."""
    return {"field": str(getattr(err, "field", "rule")),
            "message": str(getattr(err, "message", err))}


def render_rules(snapshot: Mapping[str, Any], session: SessionView, *, apps_page: Page,
                 rules: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]],
                 form: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None,
                 preview: str | None = None, notice: str = "", editor_on: bool = True) -> str:
    """The /rules page (pure): the editor form, the rules, one page of the apps (the
    same filter and pages as the dashboard's table) and recent changes."""
    from servicerouter.serve.dashboard import common_context

    routed = {f"{row['app']}:{row['port_index']}" for row in snapshot.get("services") or ()}
    apps = sorted({row["app"] for row in apps_page.rows})  # the form's suggestions
    return environment().get_template("rules").render(
        **common_context(snapshot, session, "Rules"), rules=rules, history=history,
        form=form or {"port_index": "0"}, errors=errors, preview=preview, notice=notice,
        editor_on=editor_on, apps=apps, page=apps_page, routed=routed)


def history_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Recorded changes (the store's ``Change.to_json()``) as table rows: when, who,
    which rule, and old -> new in a few words."""
    import datetime

    rows = []
    for entry in entries:
        old, new = entry.get("old") or {}, entry.get("new") or {}
        old_hosts, new_hosts = " ".join(old.get("hosts") or ()), " ".join(new.get("hosts") or ())
        summary = {"create": f"created: {new_hosts}", "delete": f"deleted (was {old_hosts})"
                   }.get(str(entry.get("action")), f"{old_hosts} -> {new_hosts}")
        try:
            when = datetime.datetime.fromtimestamp(float(entry.get("at") or 0), datetime.UTC)
            shown = when.strftime("%Y-%m-%d %H:%M:%S")
        except (TypeError, ValueError, OverflowError):
            shown = ""
        rows.append({"when": shown, "actor": str(entry.get("actor") or ""),
                     "id": str(entry.get("rule_id") or ""), "summary": summary})
    return rows


__all__ = ["FORM_FIELDS", "FieldError", "RuleBackend", "error_of", "form_to_rule",
           "history_rows", "render_rules", "rule_to_form"]
