"""marathon-lb's endpoints on the stats port, served by HAProxy's Lua.

marathon-lb users' health checks and tools call ``/_haproxy_health_check``,
``/_haproxy_getconfig``, ``/_haproxy_getvhostmap``, ``/_haproxy_getappmap`` and
``/_haproxy_getpids`` on port 9090.  The health check is HAProxy's
``monitor-uri``; the others come from ``haproxy_endpoints.lua``, loaded by the
default ``HAPROXY_HEAD.j2`` when :func:`stats_lua_script` returns its path.

Why Lua in HAProxy rather than servicerouter's status server: the answers must
describe the running HAProxy (the config it loaded, its processes), and must
come in every mode, including one-shot runs from cron where no servicerouter
process stays up.  A HAProxy built without Lua would reject ``lua-load``, so
the script is only referenced when ``haproxy -vv`` shows Lua support: a config
HAProxy rejects is never produced for an optional feature.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("servicerouter")

LUA_SCRIPT = Path(__file__).resolve().with_name("haproxy_endpoints.lua")
"""The script HAProxy loads (package data, beside this module)."""

# Written unquoted on a ``lua-load`` line: anything else could split or extend it.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._+-]+$")


def haproxy_has_lua(haproxy_bin: str, timeout: float = 10.0,
                    cache_dir: str | None = None) -> bool:
    """Whether ``haproxy -vv`` reports Lua (``USE_LUA=1`` or the ``+LUA`` feature)."""
    from servicerouter.apply.haproxy import haproxy_build_info

    text = haproxy_build_info(haproxy_bin, timeout, cache_dir)
    if text is None:
        return False
    return "USE_LUA=1" in text or re.search(r"(^|\s)\+LUA(\s|$)", text) is not None


def stats_lua_script(haproxy_bin: str, script: Path = LUA_SCRIPT,
                     cache_dir: str | None = None) -> str | None:
    """The Lua script's path for the config, or None (logged) when it cannot be used."""
    path = str(script)
    if not script.is_file():
        log.warning("marathon-lb's /_haproxy_get* endpoints are off: %s is missing", path)
        return None
    if not _SAFE_PATH.match(path):
        log.warning("marathon-lb's /_haproxy_get* endpoints are off: the path %r cannot be "
                    "written unquoted in the HAProxy config", path)
        return None
    if not haproxy_has_lua(haproxy_bin, cache_dir=cache_dir):
        log.info("marathon-lb's /_haproxy_get* endpoints are off: %s has no Lua support "
                 "(or cannot be run); /_haproxy_health_check still answers", haproxy_bin)
        return None
    return path
