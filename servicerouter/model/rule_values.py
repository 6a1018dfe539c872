"""Values only operator rules set on a port: header matches and weighted splits.

Rules (:mod:`servicerouter.rules`) reach the model as a pure input: the rules
overlay (:func:`servicerouter.rules.overlay.overlay_rules`) rewrites an app's
routing labels and attaches what no label can say under :data:`RULE_KEY` in a
copy of the app.  :func:`rule_extras` reads that key back during derivation,
validating again: the key is stripped from Marathon's own documents, but a value
that reaches HAProxy is checked where it is read, never trusted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicerouter.model.label_values import (
    MAX_PATH_PREFIXES,
    SettingError,
    check_length,
    parse_url_path,
    shorten,
)

# The key of an app copy carrying its rules' extras: {port index (str): extras}.
# Marathon never sends it; the overlay removes it from apps that do.
RULE_KEY = "_servicerouterRules"

# RFC 7230 token characters HAProxy's parser takes unquoted in a sample fetch argument.
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# One safe token: no blank, quote, brace, '#', '\\', '$' or control character.
_HEADER_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/@+=,%~!*()&;?-]{1,256}$")
_RESERVED_HEADERS = frozenset({"host"})  # hosts are the rule's own field
MAX_HEADERS = 8
MAX_SPLIT = 16


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A request header a rule's route requires: ``name`` equal to, or starting with, ``value``."""

    name: str
    value: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value,
                "match": "prefix" if self.prefix else "exact"}


def parse_header_name(value: str) -> str:
    name = check_length(value).strip()
    if not _HEADER_NAME_RE.fullmatch(name):
        raise SettingError(f"{shorten(name, 40)!r} is not a header name (letters, digits, "
                           "'-' and '_', at most 64)")
    if name.lower() in _RESERVED_HEADERS:
        raise SettingError("match the Host header with the rule's hosts, not a header match")
    return name


def parse_header_value(value: str) -> str:
    text = check_length(value)
    if text.startswith("-"):  # HAProxy would read it as a flag of the match
        raise SettingError(f"{shorten(text, 40)!r}: a header value cannot start with '-'")
    if not _HEADER_VALUE_RE.fullmatch(text):
        raise SettingError(f"{shorten(text, 40)!r}: a header value may only hold letters, "
                           "digits and _ . : / @ + = , % ~ ! * ( ) & ; ? - (1-256, no blanks)")
    return text


def header_match(data: Any) -> HeaderMatch:
    """A :class:`HeaderMatch` from its JSON form ``{"name", "value", "match"}``."""
    if not isinstance(data, Mapping):
        raise SettingError("a header match is an object {name, value, match}")
    match = data.get("match", "exact")
    if match not in ("exact", "prefix"):
        raise SettingError("header match must be 'exact' or 'prefix'")
    name, value = data.get("name"), data.get("value")
    if not isinstance(name, str) or not isinstance(value, str):
        raise SettingError("header name and value must be strings")
    return HeaderMatch(parse_header_name(name), parse_header_value(value), match == "prefix")


@dataclass(frozen=True, slots=True)
class RuleExtras:
    """What a port's rule adds beyond labels: its id, header matches and split shares.

    ``split``: (app id, port index, weight) of every port sharing this port's
    hosts and paths, this one included; empty when the port takes it all.
    ``any_host_paths``: path prefixes routed on any host (a rule without hosts),
    matched ignoring case with ``path_ignore_case``.
    """

    rule_id: str
    headers: tuple[HeaderMatch, ...] = ()
    split: tuple[tuple[str, int, int], ...] = ()
    any_host_paths: tuple[str, ...] = ()
    path_ignore_case: bool = False


def header_qualifier(extras: RuleExtras | None) -> str:
    """What sets a route with header matches apart from the plain route of its host and
    path ("" without): two ports claim one route only with the same headers."""
    if extras is None or not extras.headers:
        return ""
    return "\0" + "\0".join(sorted(f"{h.name.lower()}={'^' if h.prefix else ''}{h.value}"
                                    for h in extras.headers))


def rule_extras(app: Mapping[str, Any], index: int) -> RuleExtras | None:
    """The extras the rules overlay attached to port ``index`` of ``app``, checked again."""
    extras = app.get(RULE_KEY)
    if not isinstance(extras, Mapping):
        return None
    data = extras.get(str(index))
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        return None
    headers = tuple(header_match(h) for h in data.get("headers", ())[:MAX_HEADERS])
    split: list[tuple[str, int, int]] = []
    for share in data.get("split", ())[:MAX_SPLIT]:
        app_id, port_index, weight = share
        if not (isinstance(app_id, str) and type(port_index) is int and type(weight) is int
                and 1 <= weight <= 256 and port_index >= 0):
            raise SettingError("malformed split share")
        split.append((app_id, port_index, weight))
    paths = data.get("any_host_paths", ())
    if not isinstance(paths, (list, tuple)) or len(paths) > MAX_PATH_PREFIXES or not all(
            isinstance(p, str) and " " not in p and p != "-i" for p in paths):
        raise SettingError("malformed path prefixes")
    for path in paths:
        parse_url_path(path)
    return RuleExtras(data["id"], headers, tuple(split), tuple(paths),
                      data.get("path_ignore_case") is True)
