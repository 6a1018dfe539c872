"""The apply step of every full sync, one-shot or live: one engine, one way to a config.

A full sync derives every app (``Router.full_pass``) and then comes here:
``--dry`` prints the config; a large removal may be held
(:mod:`servicerouter.engine.removal_guard`); otherwise the engine puts the
config in place the cheapest safe way (:class:`~servicerouter.engine.applier.ConfigApplier`:
Runtime API, or validate with the apps HAProxy rejects left out, write, reload).
The live engine calls this from its full path; a one-shot run
(:mod:`servicerouter.engine.one_shot`) calls it once on the engine's core
(:class:`~servicerouter.engine.core.EngineCore`, the live engine's base) that knows
only the config on disk, so both put a config in place the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicerouter.engine import removal_guard

if TYPE_CHECKING:
    from servicerouter.engine.core import EngineCore
    from servicerouter.engine.runner import Derived


def apply_full_pass(engine: EngineCore, derived: Derived, fresh: bool = True) -> bool:
    """Put ``derived`` (a rendered full pass) in place through ``engine`` (the core, or
    the live engine built on it).

    ``fresh``: the apps were all fetched now (only such syncs count towards a held
    removal's persistence).  True when the config is in place, printed (--dry) or held
    (the last config keeps serving: ``engine.state.last_apply`` says "held").
    """
    router = engine.router
    model, options, rendered = derived.model, derived.options, derived.rendered
    assert rendered is not None, "a full pass without a config is not applied"
    services, text = rendered.services, rendered.text
    if router.settings.dry:
        from servicerouter.engine.dry_preview import print_dry  # --dry's own output

        if text != engine._applied_text:  # each new config once (a one-shot: always)
            removal_guard.preview_dry(router, removal_guard.previous_on_disk(router), text,
                                      model.app_count)
            print_dry(router, text)
            engine._applied_text = text
        engine._set_services(services)
        return True
    if removal_guard.removal_held(engine, text, model.app_count, fresh):
        return True  # the last config keeps serving (servicerouter.engine.holds)
    engine._running = None
    return bool(engine._apply(text, services, options))


__all__ = ["apply_full_pass"]
