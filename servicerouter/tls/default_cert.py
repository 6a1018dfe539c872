"""The self-signed default certificate of a cold one-shot, made beside the sync.

The shared HTTPS frontend binds ``ssl crt <state>/default.pem`` when no certificate
of the operator's is usable, so a run with an empty state directory must make one
before HAProxy reads the config.  Making it is mostly loading ``cryptography``
(about 50 ms, more than the key and signature), all of it on the run's one busy
core.  :func:`start` forks a child that makes it (the same
:func:`servicerouter.tls.bundles.ensure_default_certificate`) while the parent
fetches, parses and models Marathon's answer, and the certificates stage only
collects it: the parent never loads ``cryptography`` for a run that has no
certificate of its own.  Anything unusual (the file already there, threads running,
no ``fork``, the child failing) leaves it to the certificates stage, as before.
"""

from __future__ import annotations

import os
import threading

DEFAULT_PEM = "default.pem"


class DefaultCertificateJob:
    """A child making ``<state_dir>/default.pem``; :meth:`wait` collects it (once)."""

    def __init__(self, state_dir: str, pid: int) -> None:
        self.state_dir = state_dir
        self.pid = pid
        self._result: str | None = None
        self._done = False

    def wait(self) -> str | None:
        """The certificate's path once the child made it; None when it did not (the
        caller makes it itself, and says why if it cannot)."""
        if not self._done:
            self._done = True
            try:
                _pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                return None
            if os.waitstatus_to_exitcode(status) == 0:
                self._result = os.path.join(self.state_dir, DEFAULT_PEM)
        return self._result


def start(state_dir: str) -> DefaultCertificateJob | None:
    """Fork a child making ``<state_dir>/default.pem`` when there is none yet.

    Only from a process running one thread (a fork copies no other thread, and one
    could hold a lock the child needs).  The child closes every inherited descriptor
    but the standard ones (the writer lock, sockets) and leaves through ``os._exit``:
    no buffer, handler or atexit hook of the parent's runs twice.
    """
    if (os.path.lexists(os.path.join(state_dir, DEFAULT_PEM)) or not hasattr(os, "fork")
            or threading.active_count() != 1):
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child
        code = 1
        try:
            os.closerange(3, _max_fd())
            from servicerouter.tls.bundles import ensure_default_certificate

            ensure_default_certificate(state_dir)
            code = 0
        finally:
            os._exit(code)
    return DefaultCertificateJob(state_dir, pid)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536
