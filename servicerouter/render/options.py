"""Router-wide render options: a plain value, importable without the render stage.

The runner's settings hold one, and the unchanged-answer fast path digests
them, before anything is rendered; so this module imports neither Jinja2 nor
the fragments (a one-shot run whose answer was already applied loads neither).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servicerouter.render.fragments import FragmentSet


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Router-wide values the built-in (Jinja2) fragments use."""

    bind_addr: str = "*"
    http_port: int = 80
    https_port: int = 443
    appid_port: int = 81
    stats_port: int = 9090
    stats_bind_addr: str = "127.0.0.1"
    crt_list: str | None = None
    default_cert: str | None = None
    runtime_socket: str | None = None
    hard_stop_after: str | None = None
    master_worker: bool = False
    # serve/haproxy_endpoints.lua, loaded when HAProxy has Lua: marathon-lb's
    # /_haproxy_get* endpoints on the stats listener (None: not served).
    stats_lua: str | None = None
    haproxy_log: str | None = None  # --haproxy-log (render.log_target); None: servicerouter.py's
    # HAPROXY_{n}_SSL_CERT paths whose file is not in HAProxy's order -> normalised copy.
    cert_paths: tuple[tuple[str, str], ...] = ()
    # Per-installation secret (from the state directory, see runner) that keys the
    # dynamic sticky cookies: without it, a cookie value gives its server's address away.
    cookie_secret: str | None = field(default=None, repr=False)
    # Where the map files of the built-in fragments' shared-frontend routing go (see
    # servicerouter.render.routing); None: one ACL per rule, as servicerouter.py.
    map_dir: str | None = None
    haproxy_map: bool = False  # --haproxy-map: marathon-lb's map files too (render.mlb_maps)
    # False (--dont-bind-http-https): no shared :80/:443 frontends, whatever the fragments.
    bind_http_https: bool = True
    # The operator gave certificates (--ssl-certs, a certificates directory): the
    # built-in HTTPS frontend serves them even before any virtual host needs it.
    tls_configured: bool = False
    # --max-check-rate: health checks per second the built-in server-check fragments
    # may ask for over the whole config (None or 0: no limit), and the factor their
    # intervals are multiplied by to stay under it, set per sync from the model
    # (servicerouter.render.check_rate; 1 until then).
    max_check_rate: float | None = None
    check_interval_scale: int = 1

    def reserved_ports(self, fragments: FragmentSet | None = None) -> tuple[int, ...]:
        """Ports the shared frontends bind, which no service may bind too.

        With ``fragments``, only the heads that bind from these options (Jinja2,
        like the defaults) count: a legacy head file binds whatever its author
        wrote, and servicerouter.py wrote a service's frontend on such a port as
        asked, so we do too.
        """
        ports = ((self.http_port, "HAPROXY_HTTP_FRONTEND_HEAD"),
                 (self.https_port, "HAPROXY_HTTPS_FRONTEND_HEAD"),
                 (self.appid_port, "HAPROXY_HTTP_FRONTEND_APPID_HEAD"),
                 (self.stats_port, "HAPROXY_HEAD"))
        unbound = () if self.bind_http_https else ("HAPROXY_HTTP_FRONTEND_HEAD",
                                                   "HAPROXY_HTTPS_FRONTEND_HEAD")
        return tuple(port for port, head in ports
                     if (fragments is None or fragments[head].is_jinja) and head not in unbound)


__all__ = ["RenderOptions"]
