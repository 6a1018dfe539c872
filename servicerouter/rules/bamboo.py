"""Bamboo compatibility: its ``acl`` strings and its service JSON, as rules.

Bamboo stores one HAProxy condition string per app and pastes it into its
template; we never paste anything.  :func:`parse_acl` reads a small, safe
subset and turns it into the fields of a :class:`~servicerouter.rules.model.Rule`,
refusing everything else with a message naming what is supported:

* ``hdr(host) -i NAME`` (also ``hdr(Host)``, with or without ``-i``): the host NAME;
* ``hdr_dom(host) -i NAME``: NAME and every name under it (``*.NAME``);
* ``hdr_end(host) -i .NAME``: every name under NAME (``*.NAME``);
* ``path_beg [-i] /PREFIX``: a path prefix (on any host when no host is named);
* ``hdr(NAME) VALUE`` / ``hdr_beg(NAME) VALUE``: a header equal to / starting with VALUE;
* conditions side by side must all hold (HAProxy's AND): one host or path
  condition each, plus header matches;
* ``or`` / ``||`` between alternatives of one kind: several hosts, or several paths.

Every value is then validated as any rule field is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from servicerouter.model.label_values import shorten
from servicerouter.rules.model import Rule, RuleError, rule_id, validate_rule

SUPPORTED = ("hdr(host) -i NAME, hdr_dom(host) -i NAME, hdr_end(host) -i .DOMAIN, "
             "path_beg [-i] /PREFIX, "
             "hdr(HEADER) VALUE, hdr_beg(HEADER) VALUE, joined by 'or' / '||'")
MAX_ACL = 2048
_FETCH_RE = re.compile(r"^(hdr|hdr_dom|hdr_end|hdr_beg|path_beg)(?:\(([A-Za-z0-9_-]{1,64})\))?$")


def _refuse(message: str) -> RuleError:
    return RuleError("acl", f"{message} (supported: {SUPPORTED})")


def _atoms(words: list[str]) -> list[tuple[str, str, bool]]:
    """(kind, value, ignore case) of each condition of one alternative."""
    atoms: list[tuple[str, str, bool]] = []
    position = 0
    while position < len(words):
        fetch = _FETCH_RE.fullmatch(words[position])
        if fetch is None:
            raise _refuse(f"{shorten(words[position], 40)!r} is not a supported condition")
        name, argument = fetch.group(1), fetch.group(2)
        position += 1
        ignore_case = position < len(words) and words[position] == "-i"
        if ignore_case:
            position += 1
        if position >= len(words):
            raise _refuse(f"{fetch.group(0)} needs a value")
        value = words[position]
        position += 1
        if value.startswith("-"):
            raise _refuse(f"flag {shorten(value, 20)!r} is not supported")
        is_host = argument is not None and argument.lower() == "host"
        if name == "path_beg":
            if argument is not None:
                raise _refuse("path_beg takes no argument")
            atoms.append(("path", value, ignore_case))
        elif argument is None:
            raise _refuse(f"{name} needs a header name, as {name}(host)")
        elif name == "hdr" and is_host:
            atoms.append(("host", value, ignore_case))
        elif name == "hdr_dom" and is_host:
            atoms.append(("domain", value, ignore_case))
        elif name == "hdr_end" and is_host and value.startswith(".") and len(value) > 1:
            atoms.append(("host", "*" + value, ignore_case))
        elif name in ("hdr", "hdr_beg") and not is_host:
            if ignore_case:
                raise _refuse("header matches are case-sensitive here: drop '-i'")
            atoms.append(("header-prefix" if name == "hdr_beg" else "header", argument + "\0"
                          + value, False))
        else:
            raise _refuse(f"{fetch.group(0)} is not supported")
    return atoms


def parse_acl(acl: str) -> dict[str, Any]:
    """Rule fields (``hosts``, ``paths``, ``path_ignore_case``, ``headers``) of a Bamboo ACL.

    The answer still goes through :func:`~servicerouter.rules.model.validate_rule`,
    which checks each value.
    """
    if not isinstance(acl, str):
        raise RuleError("acl", "must be a string")
    if len(acl) > MAX_ACL:
        raise RuleError("acl", f"at most {MAX_ACL} characters")
    if re.search(r"[\x00-\x1f\x7f{}\"'#\\]", acl):
        raise _refuse("quotes, braces, '#', backslashes and control characters are not accepted")
    alternatives = [alt.split() for alt in re.split(r"\s+(?:or|\|\|)\s+|\s*\|\|\s*", acl.strip())]
    if not acl.strip() or any(not words for words in alternatives):
        raise _refuse("empty condition")
    terms = [_atoms(words) for words in alternatives]
    hosts: list[str] = []
    paths: list[str] = []
    headers: list[dict[str, str]] = []
    ignore_case: set[bool] = set()
    if len(terms) > 1:
        kinds = {atom[0] if atom[0] != "domain" else "host" for term in terms for atom in term}
        if any(len(term) != 1 for term in terms) or len(kinds) != 1 or kinds & {
                "header", "header-prefix"}:
            raise _refuse("'or' may only join alternatives of one kind: hosts, or paths")
    for term in terms:
        kinds_in_term = [atom[0] for atom in term]
        if len(terms) == 1 and (sum(k in ("host", "domain") for k in kinds_in_term) > 1
                                or kinds_in_term.count("path") > 1):
            raise _refuse("two hosts or two paths cannot both hold: join them with 'or'")
        for kind, value, folded in term:
            if kind == "host":
                hosts.append(value)
            elif kind == "domain":
                hosts.extend((value, "*." + value))
            elif kind == "path":
                paths.append(value)
                ignore_case.add(folded)
            else:
                name, _, text = value.partition("\0")
                headers.append({"name": name, "value": text,
                                "match": "prefix" if kind == "header-prefix" else "exact"})
    if len(ignore_case) > 1:
        raise _refuse("path prefixes must all use '-i' or none")
    return {"hosts": hosts, "paths": paths, "path_ignore_case": True in ignore_case,
            "headers": headers}


def rule_to_acl(rule: Rule) -> str:
    """A Bamboo ``Acl`` string describing ``rule`` (for Bamboo's GET shapes only)."""
    conditions: list[str] = []
    if rule.hosts:
        lowered = {h.lower() for h in rule.hosts}
        hosts: list[str] = []
        for host in rule.hosts:
            name = host.lower()
            if name.startswith("*.") and name[2:] in lowered:
                continue  # said by the hdr_dom of its domain
            if not name.startswith("*.") and "*." + name in lowered:
                hosts.append(f"hdr_dom(host) -i {host}")
            elif name.startswith("*."):
                hosts.append(f"hdr_end(host) -i {host[1:]}")
            else:
                hosts.append(f"hdr(host) -i {host}")
        conditions.append(" or ".join(hosts))
    if rule.paths:
        flag = "-i " if rule.path_ignore_case else ""
        conditions.append(" or ".join(f"path_beg {flag}{p}" for p in rule.paths))
    conditions.extend(f"{'hdr_beg' if h.prefix else 'hdr'}({h.name}) {h.value}"
                      for h in rule.headers)
    return " ".join(conditions)


def _service_id(data: Mapping[str, Any], path_id: str | None) -> str:
    value = None
    for key in ("id", "Id", "ID"):
        if isinstance(data.get(key), str):
            value = data[key]
            break
    if value is None:
        value = path_id
    if not value:
        raise RuleError("id", "can not use empty ID")
    return value if value.startswith("/") else "/" + value


def rule_from_service(data: Any, path_id: str | None = None,
                      keep: Rule | None = None) -> Rule:
    """A rule for port 0 of a Bamboo service ``{"id": "/app", "acl": "..."}``.

    Bamboo's v2 shape (``{"version": "2", "config": {"Acl": ...}}``) is read too.
    ``keep``: the app's current rule, whose fields the ACL does not say stay.
    """
    if not isinstance(data, Mapping):
        raise RuleError("service", "Unable to decode JSON request")
    acl = None
    for key in ("acl", "Acl", "ACL"):
        if key in data:
            acl = data[key]
    config = data.get("config", data.get("Config"))
    if acl is None and isinstance(config, Mapping):
        acl = config.get("Acl", config.get("acl"))
    app_id = _service_id(data, path_id)
    fields = parse_acl(acl if acl is not None else "")
    base: dict[str, Any] = {}
    if keep is not None:
        base = {"priority": keep.priority, "weight": keep.weight, "note": keep.note,
                "allow_cidrs": list(keep.allow_cidrs)}
    return validate_rule({**base, **fields, "app_id": app_id, "port_index": 0})


def service_json(rule: Rule) -> dict[str, Any]:
    """Bamboo's service shape for ``rule``."""
    acl = rule_to_acl(rule)
    return {"Id": rule.app_id, "Acl": acl, "Config": {"Acl": acl}}


def services_json(rules: Mapping[str, Rule]) -> dict[str, Any]:
    """Bamboo's ``GET /api/services`` answer: app id -> service (port 0 rules)."""
    return {rule.app_id: service_json(rule) for rule in sorted(
        rules.values(), key=lambda r: r.id) if rule.id == rule_id(rule.app_id, 0)}
