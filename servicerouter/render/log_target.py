"""Where HAProxy sends its own logs: the ``log`` target of the ``global`` section.

HAProxy's access logs are what an operator reads first when a route misbehaves;
servicerouter.py always sent them to syslog on 127.0.0.1, which a container or a
laptop often does not run. ``--haproxy-log`` names another target; it is written
into the config verbatim, so it is checked here to be an address and nothing more.
"""

from __future__ import annotations

import re

_LOG_TARGET = re.compile(
    r"(?:stderr|stdout"
    r"|/[A-Za-z0-9_./-]+"  # a UNIX socket (/dev/log)
    r"|(?:(?:udp|udp4|udp6|tcp|tcp4|tcp6)@)?"  # HAProxy's address prefixes
    r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})")  # host:port or [IPv6]:port


def haproxy_log_target(text: str) -> str:
    """``text`` if HAProxy can take it as a ``log`` target; ValueError otherwise.

    It goes into the ``global`` section verbatim, so nothing but an address (or
    stderr/stdout) may pass: no spaces, no comment, no second directive.
    """
    if not _LOG_TARGET.fullmatch(text):
        raise ValueError(f"{text!r} is not stderr, stdout, /path/to/socket or HOST:PORT "
                         "(udp@/tcp@ prefixes and [IPv6]:PORT accepted)")
    return text
