"""Building blocks for end-to-end tests: real HAProxy, real backends, real traffic.

End-to-end tests prove what unit tests cannot: that the config servicerouter
writes makes a real HAProxy 2.6 route real HTTP/TLS/TCP traffic, and that its
reload command swaps configs without dropping requests. Everything here runs on
127.0.0.1 with ports reserved for this process (:func:`free_port`), waits by polling a condition with a bounded
timeout (never a bare sleep), and stops what it started by PID -- including from a
session finalizer, so a failing test cannot leak processes into the next one.

HAProxy process model (the choice, and why)
-------------------------------------------
:class:`HAProxy` always runs ``haproxy -D -f CFG -p PIDFILE`` (daemon + pidfile)
rather than ``-db`` (foreground), and reloads with ``-sf OLDPID`` (plus ``-x SOCK``
when the config has ``stats socket ... expose-fd listeners``). That is how the
init scripts servicerouter.py was written against reloaded HAProxy, and it makes a
reload triggered by the harness and one triggered by servicerouter's ``--command``
(:attr:`HAProxy.reload_command`, which runs ``tests/haproxy_reload.py`` in another
process) the same code: :func:`tests.haproxy_reload.launch`. The current pid is
always re-read from disk (``PIDFILE.pids``), so the object follows reloads it did
not perform itself.

A daemonised HAProxy is not our child: when it exits it stays a zombie (which
``os.kill(pid, 0)`` still finds) until its parent reaps it, and in containers whose
init does not reap promptly that can be forever. So the first :meth:`HAProxy.start`
makes the test process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): every
orphaned descendant, including HAProxy started by servicerouter's reload command,
is re-parented to the test process, which reaps the pids it recorded. Side effect:
other orphans of the test process stay zombies until it exits; they hold no ports.

The module-level mutable state is ``_PORTS`` (ports reserved for this process, see
:func:`free_port`) and ``_REGISTRY``, the record of every pid (and
HAProxy pid log) the harness started, which :func:`reap_all` kills at session end
(``tests/conftest.py``) and again at interpreter exit.

The code lives in three modules, re-exported here so every test imports from
``tests.harness``: :mod:`tests.harness_net` (ports, waiting, HTTP/TCP clients),
:mod:`tests.harness_certs` (self-signed certificates) and
:mod:`tests.harness_processes` (backends, HAProxy, the pid registry).
"""

from tests.harness_certs import self_signed_cert
from tests.harness_net import _PORTS as _PORTS
from tests.harness_net import LOCALHOST as LOCALHOST
from tests.harness_net import (
    free_port,
    http_get,
    tcp_exchange,
    trickle_until_closed,
    wait_for_port,
    wait_until,
)
from tests.harness_processes import _REGISTRY as _REGISTRY
from tests.harness_processes import BACKEND_SCRIPT as BACKEND_SCRIPT
from tests.harness_processes import RELOAD_SCRIPT as RELOAD_SCRIPT
from tests.harness_processes import TESTS_DIR as TESTS_DIR
from tests.harness_processes import (
    Backend,
    HAProxy,
    HAProxyError,
    find_haproxy,
    reap_all,
)

__all__ = [
    "Backend",
    "HAProxy",
    "HAProxyError",
    "find_haproxy",
    "free_port",
    "http_get",
    "reap_all",
    "self_signed_cert",
    "tcp_exchange",
    "trickle_until_closed",
    "wait_for_port",
    "wait_until",
]
