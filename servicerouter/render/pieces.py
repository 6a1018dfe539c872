"""One service rendered alone, its backend section apart: the live engine's task path."""

from __future__ import annotations

from servicerouter.model.services import Service
from servicerouter.render.config import Overrides, RenderOptions, _reads_services, _render
from servicerouter.render.fragments import FragmentSet


def render_service_pieces(service: Service, fragments: FragmentSet, options: RenderOptions,
                          overrides: Overrides | None = None) -> tuple[str, str]:
    """What ``service`` alone renders: (everything but its backend, its backend section).

    For the live engine's task path: when no fragment reads ``services``, a
    service's output depends on that service only, and its backend section
    sits in the whole config as one contiguous run (userlist, backend head,
    options, servers), so the whole config changes exactly where this does.
    Fragment errors propagate.
    """
    pieces: dict[str, str] = {}
    _render((service,), fragments, options, overrides, None, pieces)
    return pieces["rest"], pieces["backends"]


def reads_services(fragments: FragmentSet, overrides: Overrides | None = None) -> bool:
    """Whether any fragment may look at every service (then no service renders alone)."""
    return _reads_services(fragments, overrides)



__all__ = ["reads_services", "render_service_pieces"]
