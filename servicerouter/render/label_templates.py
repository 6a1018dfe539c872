"""Per-app template overrides from labels (``--allow-label-templates``).

marathon-lb let an app replace any per-service fragment with a label named
``HAPROXY_{n}_<FRAGMENT>`` (``HAPROXY_0_BACKEND_HEAD`` for ``HAPROXY_BACKEND_HEAD``).
That hands the config to whoever can set labels, so here it is off unless the operator
passes ``--allow-label-templates``, and even then:

* a label template is Jinja2 in the same immutable sandbox as the fragment files, with
  the same variables (no attribute tricks, no file or module access), or, when it uses
  no ``{{``/``{%``/``{#``, marathon-lb's ``str.format`` text with marathon-lb's
  placeholder names, bare names only (:mod:`servicerouter.render.mlb_templates`);
* it is compiled and trial-rendered per app: a syntax error, an unknown variable or a
  render error quarantines that app (all its ports) with a problem naming the label;
* every render runs on a budget (:mod:`servicerouter.render.budget`): a template that
  loops too long or builds huge strings or numbers fails at once, quarantining its app,
  instead of stalling the sync; it sees the sync's whole model as ``services`` in every
  render, so the trial's verdict holds for the real config too;
* the config part of each app with label templates is checked with ``haproxy -c`` on its
  own (results cached by template text and routing), so a template HAProxy rejects
  quarantines only its app, never the whole config; a one-shot sync then checks all
  apps together and bisects the templated ones if that fails (a template that clashes
  with another app, e.g. redeclares its backend, passes on its own);
* global fragments (``HAPROXY_HEAD`` and the shared frontend heads) cannot be overridden.

Compilation and trial rendering are pure; :class:`TemplateChecker` is the edge that runs
``haproxy -c``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servicerouter.apply.bisection import find_culprits
from servicerouter.model.label_values import MAX_VALUE_LENGTH
from servicerouter.model.labels import PORT_SETTINGS, Problem
from servicerouter.model.services import Service
from servicerouter.render.config import RenderOptions, render_config, render_guarded
from servicerouter.render.fragment_registry import FRAGMENTS
from servicerouter.render.fragments import Fragment, FragmentSet, TemplateError, compile_fragment

log = logging.getLogger("servicerouter.label_templates")

# Fragments an app may replace: everything rendered per service, vhost or server,
# except where the label name is a setting's (HAPROXY_{n}_HTTP_BACKEND_REDIR is the
# redirect path, as in marathon-lb, not a template).
_SETTING_SUFFIXES = frozenset(s.key.removeprefix("HAPROXY_{n}_") for s in PORT_SETTINGS)
OVERRIDABLE = tuple(spec for spec in FRAGMENTS if spec.scope != "global"
                    and spec.name.removeprefix("HAPROXY_") not in _SETTING_SUFFIXES)
_BY_SUFFIX = {spec.name.removeprefix("HAPROXY_"): spec.name for spec in OVERRIDABLE}


def label_key(index: int, fragment_name: str) -> str:
    """``HAPROXY_BACKEND_HEAD`` of port 0 -> ``HAPROXY_0_BACKEND_HEAD``."""
    return f"HAPROXY_{index}_{fragment_name.removeprefix('HAPROXY_')}"


@dataclass(frozen=True)
class LabelTemplates:
    """Compiled overrides by backend name, and the apps left out because of theirs."""

    overrides: Mapping[str, Mapping[str, Fragment]] = field(default_factory=dict)
    texts: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    bad_apps: frozenset[str] = frozenset()


def find_label_templates(services: Sequence[Service]) -> dict[str, list[tuple[str, str, Any]]]:
    """Backend -> [(fragment name, label key, raw value)] for every template label present."""
    found: dict[str, list[tuple[str, str, Any]]] = {}
    for service in services:
        labels = service.labels
        if not labels:
            continue
        prefix = f"HAPROXY_{service.index}_"
        for key in labels:  # apps have a few labels; scan them, not the fragment list
            if isinstance(key, str) and key.startswith(prefix):
                name = _BY_SUFFIX.get(key[len(prefix):])
                if name is not None:
                    found.setdefault(service.backend, []).append((name, key, labels[key]))
    for entries in found.values():
        entries.sort()
    return found


def compile_label_templates(services: Sequence[Service], fragments: FragmentSet,
                            options: RenderOptions) -> LabelTemplates:
    """Compile and trial-render every label template; quarantine apps whose fail."""
    found = find_label_templates(services)
    if not found:
        return LabelTemplates()
    # Jinja2 (the budget sandbox) only for a sync that has label templates.
    from servicerouter.render.budget import BudgetedFragment, budget_env
    from servicerouter.render.mlb_templates import compile_format_template, is_format_template

    specs = {spec.name: spec for spec in OVERRIDABLE}
    env = budget_env()
    every_service = tuple(services)
    overrides: dict[str, dict[str, Fragment]] = {}
    texts: dict[str, tuple[tuple[str, str], ...]] = {}
    problems: list[Problem] = []
    bad: set[str] = set()
    by_backend = {s.backend: s for s in services}
    for backend, entries in found.items():
        service = by_backend[backend]
        compiled: dict[str, Fragment] = {}
        for name, key, raw in entries:
            reason = None
            if not isinstance(raw, str):
                reason = "label template is not a string"
            elif len(raw) > MAX_VALUE_LENGTH:
                reason = f"label template is longer than {MAX_VALUE_LENGTH} characters"
            else:
                source = f"label {key} of app {service.app_id}"
                try:  # marathon-lb's str.format text, or Jinja2 (mlb_templates.py)
                    compiled[name] = (
                        compile_format_template(specs[name], raw, source)
                        if is_format_template(raw, name) else
                        BudgetedFragment(compile_fragment(specs[name], raw, source, jinja=True,
                                                          env=env), every_service))
                except TemplateError as err:
                    reason = f"label template rejected: {err}"
            if reason is not None:
                problems.append(Problem(service.app_id, f"{reason}; app quarantined",
                                        service.index, key))
                bad.add(service.app_id)
        if compiled:
            overrides[backend] = compiled
            texts[backend] = tuple(sorted((n, str(r)) for n, _k, r in entries))
    # Trial render, one service at a time: a template that raises names its app.
    for backend, compiled in overrides.items():
        service = by_backend[backend]
        if service.app_id in bad:
            continue
        try:
            with env.total(service.app_id):  # and all of the app's ports together
                render_config([service], fragments, options, {backend: compiled})
        except Exception as err:  # untrusted template: any failure quarantines its app
            problems.append(Problem(service.app_id, f"label template failed to render: "
                                                    f"{type(err).__name__}: {err}; app quarantined",
                                    service.index))
            bad.add(service.app_id)
    return LabelTemplates(
        {b: o for b, o in overrides.items() if by_backend[b].app_id not in bad},
        {b: t for b, t in texts.items() if by_backend[b].app_id not in bad},
        tuple(problems), frozenset(bad),
    )


# --------------------------------------------------------------------------- the edge


Checker = Callable[[str], "tuple[bool, str]"]


class TemplateChecker:
    """``haproxy -c`` on each templated app's own config part, with a cache.

    The cache key is the app's routing plus its template texts, so an app is
    checked again only when either changes.
    """

    def __init__(self, haproxy_bin: str = "haproxy", workdir: str | None = None,
                 check: Checker | None = None) -> None:
        self.haproxy_bin = haproxy_bin
        self.workdir = workdir
        self._check = check or self._haproxy_check
        self._verdicts: dict[str, tuple[bool, str]] = {}
        self._combined_ok: str | None = None  # digest of the last combined config accepted

    def quarantine(self, services: Sequence[Service], fragments: FragmentSet,
                   options: RenderOptions, compiled: LabelTemplates) -> LabelTemplates:
        """``compiled`` minus the apps whose templated config HAProxy rejects."""
        if not compiled.overrides:
            return compiled
        by_app: dict[str, list[Service]] = {}
        for service in services:
            by_app.setdefault(service.app_id, []).append(service)
        templated = sorted({s.app_id for s in services if s.backend in compiled.overrides})
        problems = list(compiled.problems)
        bad = set(compiled.bad_apps)
        verdicts: dict[str, tuple[bool, str]] = {}
        for app_id in templated:
            app_services = by_app[app_id]
            # guarded: an operator fragment failing on some app's data is the main
            # render's to report; here only HAProxy's verdict on the rest matters
            text = render_guarded(app_services, fragments, options, compiled.overrides).text
            key = hashlib.sha256(text.encode()).hexdigest()
            verdict = self._verdicts.get(key) or self._check(text)
            verdicts[key] = verdict
            ok, message = verdict
            if not ok:
                problems.append(Problem(app_id, "HAProxy rejects its label templates; app "
                                                f"quarantined: {_last_alert(message)}"))
                bad.add(app_id)
        self._verdicts = verdicts  # keep only what is current
        if bad == set(compiled.bad_apps):
            return compiled
        keep_backends = {s.backend for s in services if s.app_id not in bad}
        return LabelTemplates(
            {b: o for b, o in compiled.overrides.items() if b in keep_backends},
            {b: t for b, t in compiled.texts.items() if b in keep_backends},
            tuple(problems), frozenset(bad),
        )

    def check_combined(self, services: Sequence[Service], fragments: FragmentSet,
                       options: RenderOptions, compiled: LabelTemplates) -> LabelTemplates:
        """``compiled`` minus the apps whose templates break the config of all apps together.

        Each app passing on its own is not enough: a template can clash with another
        app (redeclare its backend, reuse its ACL or userlist name).  The whole config
        is checked once; if HAProxy rejects it and the apps without label templates
        alone pass, the templated apps are bisected
        (:func:`servicerouter.apply.bisection.find_culprits`, as the live engine does) and
        the culprits quarantined.  A rejection that is not the templates' fault is
        left for the apply step to report.
        """
        if not compiled.overrides:
            return compiled
        kept = [s for s in services if s.app_id not in compiled.bad_apps]
        app_ids = list(dict.fromkeys(s.app_id for s in kept))
        templated = {s.app_id for s in kept if s.backend in compiled.overrides}
        suspects = [a for a in app_ids if a in templated]
        trusted = [a for a in app_ids if a not in templated]

        def check(ids: Sequence[str]) -> tuple[bool, str]:
            wanted = set(ids)
            return self._check(render_guarded([s for s in kept if s.app_id in wanted],
                                              fragments, options, compiled.overrides).text)

        full = render_guarded(kept, fragments, options, compiled.overrides).text
        digest = hashlib.sha256(full.encode()).hexdigest()
        if digest == self._combined_ok:
            return compiled
        ok, message = self._check(full)
        if ok:
            self._combined_ok = digest
            return compiled
        if not check(trusted)[0]:
            log.debug("config rejected without the label templates too: %s",
                      _last_alert(message))
            return compiled
        _good, culprits = find_culprits(trusted, suspects, check)
        if not culprits:
            return compiled
        problems = list(compiled.problems)
        for app_id, why in culprits.items():
            problems.append(Problem(app_id, "HAProxy rejects its label templates together with "
                                            f"the other apps; app quarantined: {_last_alert(why)}"))
        bad = set(compiled.bad_apps) | set(culprits)
        keep_backends = {s.backend for s in services if s.app_id not in bad}
        return LabelTemplates(
            {b: o for b, o in compiled.overrides.items() if b in keep_backends},
            {b: t for b, t in compiled.texts.items() if b in keep_backends},
            tuple(problems), frozenset(bad),
        )

    def _haproxy_check(self, text: str) -> tuple[bool, str]:
        from servicerouter.apply import haproxy, mapfiles

        if not haproxy.haproxy_available(self.haproxy_bin):
            return True, ""
        map_dir = mapfiles.map_dir_of(text)
        if map_dir is not None:  # the config with its own maps, not those on disk (if any)
            ok, message = mapfiles.check_text(text, map_dir, self.workdir or tempfile.gettempdir(),
                                              self.haproxy_bin)
            return ok, message.replace("<config>", "<app config>")
        return haproxy.check_text(text, self.workdir, self.haproxy_bin, ".sr-label-",
                                  "<app config>")


def _last_alert(message: str) -> str:
    lines = [line for line in message.splitlines() if "ALERT" in line] or message.splitlines()
    return lines[0].strip()[:300] if lines else "rejected"
