"""An operator rule: how requests reach one service port of one Marathon app.

Pure: validation turns untrusted JSON (the API, a store's file or znode) into a
frozen :class:`Rule` or raises :class:`RuleError` naming the field.  Every field
goes through the label parsers (:mod:`servicerouter.model.label_values`,
:mod:`servicerouter.model.mlb_values`, :mod:`servicerouter.model.rule_values`), so
a rule can hold nothing a label could not: one safe token per value, never a
blank, quote, brace, ``#`` or line break that could start an HAProxy directive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.model.app_fields import APP_ID_RE, MAX_APP_ID_LENGTH
from servicerouter.model.label_values import (
    MAX_PATH_PREFIXES,
    SettingError,
    check_host,
    parse_url_path,
    shorten,
)
from servicerouter.model.mlb_values import parse_networks
from servicerouter.model.rule_values import MAX_HEADERS, HeaderMatch, header_match

MAX_HOSTS = 64
MAX_NOTE = 500
MAX_PORT_INDEX = 1023
PRIORITY_RANGE = (-1_000_000, 1_000_000)
WEIGHT_RANGE = (1, 256)
DEFAULT_WEIGHT = 100
_RULE_ID_RE = re.compile(r"^(/[A-Za-z0-9._/-]*):([0-9]{1,4})$")
_NOTE_RE = re.compile(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$")
FIELDS = ("id", "app_id", "port_index", "hosts", "paths", "path_ignore_case", "headers",
          "allow_cidrs",
          "priority", "weight", "note")


class RuleError(ValueError):
    """A rule refused at write time: ``field`` is the JSON field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "error": self.message}


@dataclass(frozen=True, slots=True)
class Rule:
    """How requests reach ``app_id``'s service port ``port_index``.

    ``hosts``: exact names or ``*.`` wildcards (the port's vhosts); ``paths``:
    URL prefixes under them, or under any host when ``hosts`` is empty (as
    Bamboo's ``path_beg`` ACLs; such routes come after every host route),
    matched ignoring case with ``path_ignore_case``; ``headers``: all must match; ``allow_cidrs``: only
    these sources (others get 403); ``priority``: higher goes first among
    equally specific routes; ``weight``: this port's share when several rules
    name the same hosts and paths (canary).
    """

    app_id: str
    port_index: int = 0
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    path_ignore_case: bool = False
    headers: tuple[HeaderMatch, ...] = ()
    allow_cidrs: tuple[str, ...] = ()
    priority: int = 0
    weight: int = DEFAULT_WEIGHT
    note: str = ""

    @property
    def id(self) -> str:
        return rule_id(self.app_id, self.port_index)

    @property
    def route_key(self) -> tuple[Any, ...]:
        """What rules splitting one route share: hosts, paths and headers, order aside."""
        return (tuple(sorted(h.lower() for h in self.hosts)), tuple(sorted(self.paths)),
                self.path_ignore_case,
                tuple(sorted((h.name.lower(), h.value, h.prefix) for h in self.headers)))


def rule_id(app_id: str, port_index: int) -> str:
    return f"{app_id}:{port_index}"


def parse_rule_id(text: str) -> tuple[str, int]:
    """(app id, port index) of ``/app:N``; a bare app id means port 0."""
    if not isinstance(text, str):
        raise RuleError("id", "must be a string '/app/id:PORT_INDEX'")
    match = _RULE_ID_RE.fullmatch(text)
    app_id, index = (match.group(1), int(match.group(2))) if match else (text, 0)
    return _app_id(app_id), _port_index(index)


def _app_id(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise RuleError("app_id", "must be a Marathon app id starting with '/'")
    if len(value) > MAX_APP_ID_LENGTH or not APP_ID_RE.fullmatch(value):
        raise RuleError("app_id", f"{shorten(value, 60)!r} is not a Marathon app id "
                        "([A-Za-z0-9._-] segments separated by '/')")
    return value


def _port_index(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_PORT_INDEX:
        raise RuleError("port_index", f"must be an integer 0..{MAX_PORT_INDEX}")
    return value


def _string_list(data: Mapping[str, Any], name: str, limit: int) -> list[str]:
    value = data.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RuleError(name, "must be a list of strings")
    if len(value) > limit:
        raise RuleError(name, f"at most {limit} entries")
    return list(value)


def _int(data: Mapping[str, Any], name: str, default: int, bounds: tuple[int, int]) -> int:
    value = data.get(name, default)
    if type(value) is not int or not bounds[0] <= value <= bounds[1]:
        raise RuleError(name, f"must be an integer {bounds[0]}..{bounds[1]}")
    return value


def validate_rule(data: Mapping[str, Any]) -> Rule:
    """A :class:`Rule` from its JSON form, or :class:`RuleError` naming the bad field.

    ``id`` (``/app:N``) may stand for ``app_id`` and ``port_index``; when both
    are given they must agree.  Unknown fields are refused (a typo must not be
    a silently ignored restriction).
    """
    if not isinstance(data, Mapping):
        raise RuleError("rule", "must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise RuleError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    if "app_id" in data:
        app_id = _app_id(data["app_id"])
        index = _port_index(data.get("port_index", 0))
    elif "id" in data:
        app_id, index = parse_rule_id(data["id"])
    else:
        raise RuleError("app_id", "required")
    if "id" in data and parse_rule_id(data["id"]) != (app_id, index):
        raise RuleError("id", f"{shorten(str(data['id']), 60)!r} does not name "
                        f"{rule_id(app_id, index)!r}")
    hosts: dict[str, str] = {}
    for host in _string_list(data, "hosts", MAX_HOSTS):
        try:
            check_host(host)
        except SettingError as err:
            raise RuleError("hosts", str(err)) from None
        hosts.setdefault(host.lower(), host)
    paths: dict[str, None] = {}
    for path in _string_list(data, "paths", MAX_PATH_PREFIXES):
        if " " in path.strip() or path.strip() == "-i":
            raise RuleError("paths", f"{shorten(path, 40)!r}: one prefix per entry")
        try:
            paths.setdefault(parse_url_path(path), None)
        except SettingError as err:
            raise RuleError("paths", str(err)) from None
    ignore_case = data.get("path_ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise RuleError("path_ignore_case", "must be true or false")
    raw_headers = data.get("headers", [])
    if not isinstance(raw_headers, (list, tuple)) or len(raw_headers) > MAX_HEADERS:
        raise RuleError("headers", f"must be a list of at most {MAX_HEADERS} "
                        "{name, value, match} objects")
    try:
        headers = tuple(header_match(h) for h in raw_headers)
    except SettingError as err:
        raise RuleError("headers", str(err)) from None
    if headers and not hosts and not paths:
        raise RuleError("headers", "a header match needs a host or a path to qualify")
    cidrs = _string_list(data, "allow_cidrs", 64)
    try:
        allow = parse_networks(" ".join(cidrs)) if cidrs else ()
    except SettingError as err:
        raise RuleError("allow_cidrs", str(err)) from None
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE or not _NOTE_RE.fullmatch(note):
        raise RuleError("note", f"must be text of at most {MAX_NOTE} characters, one line")
    return Rule(app_id, index, tuple(hosts.values()), tuple(paths), ignore_case, headers, allow,
                _int(data, "priority", 0, PRIORITY_RANGE),
                _int(data, "weight", DEFAULT_WEIGHT, WEIGHT_RANGE), note)


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """The rule's JSON form (what :func:`validate_rule` takes back)."""
    return {"id": rule.id, "app_id": rule.app_id, "port_index": rule.port_index,
            "hosts": list(rule.hosts), "paths": list(rule.paths),
            "path_ignore_case": rule.path_ignore_case,
            "headers": [h.to_json() for h in rule.headers],
            "allow_cidrs": list(rule.allow_cidrs), "priority": rule.priority,
            "weight": rule.weight, "note": rule.note}


def rule_from_json(data: Any) -> Rule:
    """A stored rule read back; validated again (a store's file may have been edited)."""
    return validate_rule(data)
