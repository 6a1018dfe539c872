"""Renewed certificates swapped into the running HAProxy through the Runtime API."""

from __future__ import annotations

import logging
import time

from servicerouter.tls.swap import (
    CertPlan,
    plan_cert_updates,
    startup_baseline,
)

log = logging.getLogger("servicerouter.live")



class CertificateSwaps:
    """Part of :class:`~servicerouter.engine.core.EngineCore`: certificate contents HAProxy lacks."""

    def _cert_plan(self) -> CertPlan:
        """Certificate files whose content HAProxy does not have yet (pure decision)."""
        served = self.router.served_certs
        if self._applied_certs is None:  # HAProxy ran before us: it has what was on disk
            self._applied_certs = startup_baseline(served, self.router.written_certs)
        return plan_cert_updates(self._applied_certs, served)

    def _certs_key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((path, c.digest) for path, c in self.router.served_certs.items()))

    def _try_cert_runtime(self, plan: CertPlan) -> bool:
        """Swap changed certificates through the Runtime API; False: reload instead."""
        if plan.reload_reason:
            log.info("certificate change needs a reload: %s", plan.reload_reason)
            return False
        if not plan.update:
            return True
        if not (self.settings.runtime_updates and self.cert_updater is not None):
            log.info("certificate %s changed; no Runtime API: reloading", plan.update[0])
            return False
        if self.manager is not None and not self.manager.alive():
            return False
        assert self._applied_certs is not None
        from servicerouter.apply.runtime_api import RuntimeUpdateError  # the live engine's

        served = self.router.served_certs
        for path in plan.update:
            try:
                self.cert_updater.update(path, served[path].pem, ours=served.keys())
            except RuntimeUpdateError as err:
                self.metrics.cert_updates.inc(result="failed")
                log.warning("Runtime API refused certificate %s (%s); reloading instead",
                            path, err)
                return False
            # live now: the fallback reload reads the same file from disk
            self._applied_certs[path] = served[path]
            self.metrics.cert_updates.inc(result="ok")
            log.info("certificate %s (%s) swapped through the Runtime API without reload",
                     path, ", ".join(served[path].names) or "default")
        self.state.last_cert_update = time.time()
        return True

