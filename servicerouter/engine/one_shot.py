"""A one-shot run is the engine's full sync, once: load everything, apply once.

servicerouter.py's default mode fetches, renders, puts the config in place and
exits.  It does not have an apply step of its own: :func:`apply_once` makes the
engine's core (:class:`~servicerouter.engine.core.EngineCore`, which the live
:class:`~servicerouter.engine.live.LiveRouter` extends with its event path) that
knows only the config on disk (taken as the one HAProxy runs, as each earlier
run left it) and gives it the full pass
:meth:`Router.sync <servicerouter.engine.runner.Router.sync>` derived.  So a
one-shot validates, leaves out the apps HAProxy rejects (bisection,
:mod:`servicerouter.engine.quarantine`) or whose ports another process holds,
writes, reloads with the reload command and holds large removals exactly as the
live engine's full path does (:func:`~servicerouter.engine.full_apply.apply_full_pass`,
the same function on the same class).  What servicerouter.py's contract makes
different is a setting of that engine (``LiveSettings.one_shot``), not another
code path; what a one-shot does not load is the event path it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from servicerouter.apply import haproxy

if TYPE_CHECKING:
    from servicerouter.engine.runner import Derived, Router

HELD_ERROR = "a large removal is held"


@dataclass(frozen=True)
class Outcome:
    """What one apply did: ``held``: the last config keeps serving (nothing written)."""

    ok: bool
    changed: bool = False  # a new config is in place (written, reloaded or by Runtime API)
    reloaded: bool = False
    held: bool = False
    error: str | None = None


def apply_once(router: Router, derived: Derived) -> Outcome:
    """Apply ``derived`` as one full sync of the engine's core, then stop that engine."""
    from servicerouter.engine.core import EngineCore
    from servicerouter.engine.full_apply import apply_full_pass
    from servicerouter.engine.live_state import CommandReloader, LiveSettings

    settings = router.settings
    reloader = CommandReloader(settings.reload) if settings.reload else None
    engine = EngineCore(router, reloader=reloader, settings=LiveSettings(one_shot=True))
    try:
        if not settings.dry:  # --dry prints every config, whatever is on disk
            # After the derivation: the certificate files this config names are the
            # ones HAProxy has (one-shot bundle files are named by their content).
            current = haproxy.read_current(settings.config_path)
            engine.mark_running(current.decode("utf-8", "replace") if current is not None
                               else None)
        ok = apply_full_pass(engine, derived)
    finally:
        engine.stop()
    done = engine.state.last_apply
    if done == "held":
        return Outcome(ok=False, held=True, error=HELD_ERROR)
    if not ok:
        return Outcome(ok=False, error=engine.apply_error or "the config was not applied")
    return Outcome(ok=True, changed=done in ("reload", "written", "runtime"),
                   reloaded=done == "reload")


__all__ = ["HELD_ERROR", "Outcome", "apply_once"]
