"""Health-check intervals that grow with the number of checked servers.

HAProxy checks every server on its own timer: 10,000 tasks whose Marathon
health check says "every 2 s" are 5,000 checks a second, a quarter of a core
of HAProxy (benchmarks/check_load.py) and as many requests on the tasks.  So
when the built-in server-check fragments would ask for more than a budget
(``--max-check-rate``, checks per second over the whole config), every interval
they write is multiplied by the same power of two, the smallest that brings the
total under the budget: the checks keep their relative pace, a task that fails
is still noticed within a few intervals, and the factor changes only when the
load doubles or halves (so a single task event does not re-time every backend).

Only servers whose check options come from the built-in fragments are scaled
(and counted): an operator's own server-check fragment, or an app's label
template for it, sets its interval on purpose, and servicerouter.py's
(legacy) fragments keep their output byte for byte.  Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from servicerouter.render.options import RenderOptions

DEFAULT_MAX_CHECK_RATE = 1000.0  # checks per second; HAProxy 2.6: ~10% of a core
SERVER_CHECK_FRAGMENTS = {
    "tcp": "HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
    "http": "HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
}
MAX_SCALE = 1 << 12  # 2 s checks at most ~2.3 h apart, whatever the cluster


def scaled_server(service: Any, fragments: Any,
                  overrides: Mapping[str, Mapping[str, Any]] | None) -> bool:
    """Whether ``service``'s server lines take their check interval from a built-in
    server-check fragment (the only ones :func:`check_interval_scale` re-times)."""
    check = service.health_check
    name = SERVER_CHECK_FRAGMENTS.get(service.mode)
    if check is None or name is None or check.interval_seconds <= 0:
        return False
    if overrides and name in overrides.get(service.backend, {}):
        return False
    fragment = fragments[name]
    return bool(fragment.builtin) and not fragment.is_empty


def built_in_check_rate(services: Sequence[Any], fragments: Any,
                        overrides: Mapping[str, Mapping[str, Any]] | None = None) -> float:
    """Checks per second the built-in server-check fragments ask for, unscaled."""
    return sum(len(s.servers) / s.health_check.interval_seconds for s in services
               if s.servers and scaled_server(s, fragments, overrides))


def check_interval_scale(rate: float, budget: float | None) -> int:
    """The power of two the intervals are multiplied by so ``rate`` fits ``budget``
    (1: it fits, or there is no budget)."""
    if not budget or budget <= 0 or rate <= budget:
        return 1
    scale = 1
    while rate / scale > budget and scale < MAX_SCALE:
        scale *= 2
    return scale


def with_check_scale(options: RenderOptions, services: Sequence[Any], fragments: Any,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None
                     ) -> RenderOptions:
    """``options`` with the check-interval scale for rendering ``services``."""
    scale = check_interval_scale(built_in_check_rate(services, fragments, overrides),
                                 options.max_check_rate)
    if scale == options.check_interval_scale:
        return options
    return replace(options, check_interval_scale=scale)


__all__ = ["DEFAULT_MAX_CHECK_RATE", "built_in_check_rate", "check_interval_scale",
           "scaled_server", "with_check_scale"]
