"""Two steps of :meth:`servicerouter.engine.runner.Router.derive_config`, apart from the
router class: the certificates the config names, and the apps' label templates.

Both read and set the router's state (its TLS manager and served certificates,
its label overrides and template checker), so they take the router; they live
here to keep the router class to its loop and pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from servicerouter.engine.state_dir import default_state_dir, save_port_assignments
from servicerouter.render.options import RenderOptions

if TYPE_CHECKING:
    from servicerouter.model.services import Model, Service

log = logging.getLogger("servicerouter")


def label_templates(router: Any, model: Model, options: RenderOptions,
                    combined: bool = False) -> Model:
    """HAPROXY_{n}_<FRAGMENT> labels: compiled, checked, bad apps left out.

    ``combined`` (one-shot syncs): also check all apps together and quarantine
    the templated apps that break it; the live engine needs no such step, its
    own validation bisects every app.
    """
    from servicerouter.render import label_templates as lt

    router.label_overrides = {}
    if not router.settings.allow_label_templates:
        for backend, entries in lt.find_label_templates(model.services).items():
            for _name, key, _raw in entries:
                if (backend, key) not in router._ignored_templates:
                    router._ignored_templates.add((backend, key))
                    log.warning("label %s of backend %s ignored: label templates need "
                                "--allow-label-templates", key, backend)
        return model
    compiled = lt.compile_label_templates(model.services, router.fragments, options)
    if compiled.overrides and router.settings.validate:
        if router._template_checker is None:
            router._template_checker = lt.TemplateChecker(
                router.settings.haproxy_bin, router.settings.dry_files_dir
                or os.path.dirname(os.path.abspath(router.settings.config_path)))
        compiled = router._template_checker.quarantine(model.services, router.fragments,
                                                       options, compiled)
        if combined:
            compiled = router._template_checker.check_combined(
                model.services, router.fragments, options, compiled)
    for problem in compiled.problems:
        log.warning("%s", problem.log_line())
    router.label_overrides = dict(compiled.overrides)
    if not compiled.bad_apps:
        return model
    return replace(model,
                   services=tuple(s for s in model.services
                                  if s.app_id not in compiled.bad_apps),
                   problems=model.problems + compiled.problems)


def prepare_certificates(router: Any, options: RenderOptions,
                         services: Sequence[Service] = (),
                         stable_paths: bool = False) -> RenderOptions:
    """Default certificate and crt-list for the shared HTTPS frontend.

    The default (no SNI, or SNI no bundle names) is the first usable bundle of
    --ssl-certs, then of the certs directory; the self-signed one only when
    there is none. With ``services``, their HAPROXY_{n}_SSL_CERT bundles are
    validated too, join the crt-list, and out-of-order files are served from a
    normalised copy (see servicerouter.tls.manager); ``router.certificates`` holds the
    expiry report.
    One-shot syncs name bundle files by content (a new certificate changes the
    config, so the reload runs); the live engine asks for ``stable_paths`` and
    swaps renewed certificates through the Runtime API.
    """
    from servicerouter.tls import bundles as certs
    from servicerouter.tls.manager import TlsManager

    settings = router.settings
    state_dir = settings.state_dir or default_state_dir(settings.config_path)
    write = not settings.dry or settings.dry_files_dir is not None
    if settings.dry and settings.dry_files_dir:
        state_dir = settings.dry_files_dir
    paths = list(settings.ssl_certs)
    if settings.certs_dir and os.path.isdir(settings.certs_dir):
        paths.append(settings.certs_dir)
    default_pem = os.path.join(state_dir, "default.pem")
    if router.tls is None:
        router.tls = TlsManager()
    port_certs = sorted({s.settings.ssl_cert for s in services if s.settings.ssl_cert})
    try:
        if write:  # a bare --dry (no files dir) writes nothing: same paths, computed only
            job = getattr(router, "default_cert_job", None)  # made beside a cold one-shot
            made = job.wait() if job is not None and job.state_dir == state_dir else None
            default_pem = made or certs.ensure_default_certificate(state_dir)
        result = router.tls.prepare(state_dir, default_pem, paths, port_certs,
                                    stable=stable_paths, write=write)
    except OSError as err:
        log.error("cannot prepare certificates in %s: %s", state_dir, err)
        router.served_certs, router.written_certs = {}, frozenset()
        return replace(options, default_cert=default_pem, crt_list=None)
    router.certificates = result.report
    if not settings.dry:
        router.served_certs = {cert.path: cert for cert in result.served}
        router.written_certs = result.written
    return replace(options, default_cert=result.default_cert, crt_list=result.crt_list,
                   cert_paths=result.cert_paths, tls_configured=bool(paths))


def apps_under_rules(router: Any, apps: Any, rules: Mapping[str, Any] | None) -> Any:
    """``apps`` with operator rules overlaid: ``rules`` for a preview (nothing kept),
    else the store's through the router's cache (task events then find the same copies)."""
    if rules is not None:
        from servicerouter.rules.overlay import overlay_rules

        return overlay_rules(apps, rules)
    if router.rules_store is not None:  # a pure input to the model
        return router.rules_overlay.apply(apps, router.rules_store.rules())
    return apps


def keep_port_assignments(router: Any, model: Model) -> None:
    """IP-per-task service ports the model assigned, saved in the state dir when they
    changed (or the last save failed), so a restart gives every task the same port."""
    if model.port_assignments == router._port_assignments and not router._ports_unsaved:
        return
    router._port_assignments = model.port_assignments
    if not router.settings.dry:  # --dry writes nothing
        router._ports_unsaved = not save_port_assignments(router._ports_file(),
                                                          model.port_assignments)
