"""Health-check intervals that grow with the number of checked servers.

HAProxy checks every server on its own timer: 10,000 tasks whose Marathon
health check says "every 2 s" are 5,000 checks a second, a quarter of a core
of HAProxy (benchmarks/check_load.py) and as many requests on the tasks.  So
when the built-in server-check fragments would ask for more than a budget
(``--max-check-rate``, checks per second over the whole config), every interval
they write is multiplied by the same power of two, the smallest that brings the
total under the budget: the checks keep their relative pace, a task that fails
is still noticed within a few intervals.

Re-timing is a reload (HAProxy cannot change a server's check interval through
its Runtime API), so the factor has hysteresis: once chosen (the smallest power
of two that fits) it is kept while the rate it gives stays between a quarter of
the budget and twice the budget (:data:`FALL`, :data:`RISE`).  The load must double
or quarter before the intervals change, so the task events of a cluster hovering
around a boundary never re-time every server, and the live engine's task path
(servicerouter.engine.task_path), which keeps the factor, gives the bytes a full
render gives with the same previous factor.  What an operator sees: the check
rate may reach twice ``--max-check-rate`` between re-timings; the live engine
re-times (a reload) only when an event takes it beyond that band.  A one-shot
run has no previous factor and picks the smallest that fits.

Only servers whose check options come from the built-in fragments are scaled
(and counted): an operator's own server-check fragment, or an app's label
template for it, sets its interval on purpose, and servicerouter.py's
(legacy) fragments keep their output byte for byte.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from servicerouter.render.options import RenderOptions

DEFAULT_MAX_CHECK_RATE = 1000.0  # checks per second; HAProxy 2.6: ~10% of a core
SERVER_CHECK_FRAGMENTS = {
    "tcp": "HAPROXY_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
    "http": "HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
}
MAX_SCALE = 1 << 12  # 2 s checks at most ~2.3 h apart, whatever the cluster
RISE = 2.0  # a kept factor is re-chosen once the rate it gives exceeds this x the budget
FALL = 0.25  # ... or falls to this x the budget (and a smaller factor would do)


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
    return rate_of(check_counts(services, fragments, overrides))


def check_counts(services: Iterable[Any], fragments: Any,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 counts: dict[float, int] | None = None, sign: int = 1) -> dict[float, int]:
    """Checked servers per interval (seconds) of the built-in server-check fragments,
    added to (``sign`` -1: taken from) ``counts``.  Whole numbers, so the live task
    path can keep them up to date from the services an event changed and get the very
    rate (:func:`rate_of`) a count of every service gives."""
    counts = {} if counts is None else counts
    for service in services:
        if service.servers and scaled_server(service, fragments, overrides):
            interval = service.health_check.interval_seconds
            counts[interval] = counts.get(interval, 0) + sign * len(service.servers)
    return counts


def rate_of(counts: Mapping[float, int]) -> float:
    """Checks per second of :func:`check_counts` (summed in one order, whatever the
    order the counts were made in)."""
    return sum(count / interval for interval, count in sorted(counts.items()))


def check_interval_scale(rate: float, budget: float | None, previous: int | None = None) -> int:
    """The power of two the intervals are multiplied by so ``rate`` fits ``budget``
    (1: it fits, or there is no budget); ``previous``, the factor the running config
    has, is kept while :func:`keeps_scale` says so."""
    if not budget or budget <= 0:
        return 1
    if previous is not None and keeps_scale(rate, budget, previous):
        return previous
    if rate <= budget:
        return 1
    scale = 1
    while rate / scale > budget and scale < MAX_SCALE:
        scale *= 2
    return scale


def keeps_scale(rate: float, budget: float, scale: int) -> bool:
    """Whether the factor ``scale`` stays for ``rate`` (the hysteresis band, see the
    module docstring)."""
    per_scale = rate / scale
    if per_scale > budget * RISE:
        return scale >= MAX_SCALE
    return scale == 1 or per_scale > budget * FALL


def with_check_scale(options: RenderOptions, services: Sequence[Any], fragments: Any,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None,
                     previous: int | None = None) -> RenderOptions:
    """``options`` with the check-interval scale for rendering ``services``;
    ``previous``: the factor the running config has (None: none runs yet)."""
    scale = check_interval_scale(built_in_check_rate(services, fragments, overrides),
                                 options.max_check_rate, previous)
    if scale == options.check_interval_scale:
        return options
    return replace(options, check_interval_scale=scale)


__all__ = ["DEFAULT_MAX_CHECK_RATE", "FALL", "RISE", "built_in_check_rate",
           "check_interval_scale", "check_counts", "keeps_scale", "rate_of", "scaled_server",
           "with_check_scale"]
