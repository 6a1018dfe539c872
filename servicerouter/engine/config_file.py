"""The one writer of the HAProxy config file the live engine keeps, now or soon after.

A change applied through the Runtime API is live the moment HAProxy answers;
the file only has to hold it before HAProxy next reads it (a reload, a
restart).  Writing (and fsyncing) a config of tens of megabytes on the event
path would put the disk between an event and its route, so such writes go to
a background thread (:meth:`ConfigFile.write_soon`), newest text wins.  That
thread waits for ``quiet`` seconds without a newer text (at most ``longest``
after the first one it has not written): right after an event its CPU (a
config of 50,000 servers: ~5-10 ms encoding and writing, then an fsync) would
compete with HAProxy routing that very change on a loaded machine, and a
burst of events needs one write, not one per event.  The text may be handed
over as a function that makes it (the task path keeps the config in pieces,
servicerouter.engine.running_config): joining tens of megabytes is then the
writer thread's work too, and a text superseded before its turn is never
joined at all.  Every
other write goes through :meth:`ConfigFile.write`, and anything else that
writes the file first calls :meth:`ConfigFile.settle`: one ordering, so a late
background write can never put back an older config.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from servicerouter.apply import haproxy, mapfiles
from servicerouter.apply.files import fsync_dir

log = logging.getLogger("servicerouter.live")


class ConfigFile:
    """Atomic writes of one config path, synchronous or deferred (see the module)."""

    def __init__(self, path: str, map_dir: str | None = None, quiet: float = 0.2,
                 longest: float = 2.0) -> None:
        self.path = path
        self.map_dir = map_dir  # the config's map files are installed before it
        self.quiet = quiet
        self.longest = longest
        self._cond = threading.Condition()
        self._io = threading.Lock()  # held while a write is on disk
        self._pending: str | Callable[[], str] | None = None
        self._newest_at = 0.0  # when the pending text was handed over (monotonic)
        self._oldest_at: float | None = None  # when the first text not yet written was
        self._hurry = False  # flush(): write what is pending now
        self._generation = 0  # bumped by every write request: stale ones are dropped
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.deferred_writes = 0

    def write(self, text: str) -> bool:
        """Write ``text`` now (a pending deferred write is dropped: this one is newer)."""
        with self._cond:
            self._drop_pending()
        with self._io:
            return self._put(text)

    def write_soon(self, text: str | Callable[[], str]) -> None:
        """Write ``text`` (or what the function gives, called on the writer thread) in
        the background, unless something newer comes first."""
        with self._cond:
            self._generation += 1
            self._pending = text
            self._newest_at = time.monotonic()
            if self._oldest_at is None:
                self._oldest_at = self._newest_at
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="config-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def settle(self) -> None:
        """Before someone else writes the path: drop a pending write, wait for one under way."""
        with self._cond:
            self._drop_pending()
        with self._io:
            pass

    def _drop_pending(self) -> None:
        """(Holding the condition.) A newer write supersedes the deferred one."""
        self._generation += 1
        self._pending = None
        self._oldest_at = None
        self._hurry = False
        self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write what is pending now (no more waiting for quiet) and wait until no
        deferred write is pending or under way; False on timeout."""
        with self._cond:
            if self._pending is not None:
                self._hurry = True
                self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._pending is None, timeout):
                return False
        acquired = self._io.acquire(timeout=timeout)
        if acquired:
            self._io.release()
        return acquired

    def stop(self) -> None:
        """Write what is pending, then end the thread."""
        self.flush()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopped)
                self._wait_for_quiet()
                if self._pending is None:
                    if self._stopped:
                        return
                    continue  # a synchronous write came first: nothing left to do
                self._hurry = False
                self._oldest_at = None
                text, generation = self._pending, self._generation
                self._io.acquire()  # before _pending clears: flush() waits for the write
                self._pending = None
                self._cond.notify_all()
            try:
                with self._cond:
                    current = generation == self._generation
                if current:
                    self._put(text if isinstance(text, str) else text())
                    self.deferred_writes += 1
            finally:
                self._io.release()

    def _wait_for_quiet(self) -> None:
        """(Holding the condition.) Until ``quiet`` seconds passed without a newer text,
        or ``longest`` since the oldest unwritten one, or flush/stop/a synchronous write."""
        while self._pending is not None and not (self._hurry or self._stopped):
            oldest = self._oldest_at if self._oldest_at is not None else self._newest_at
            due = min(self._newest_at + self.quiet, oldest + self.longest)
            remaining = due - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _put(self, text: str) -> bool:
        path = self.path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = haproxy.DEFAULT_MODE
        try:
            mapfiles.install(text, self.map_dir)
            tmp = haproxy.write_temp(directory, os.path.basename(path), text.encode(), mode)
            os.replace(tmp, path)
            fsync_dir(directory)
        except OSError as err:
            log.error("HAProxy runs a config that %s could not be updated to: %s", path, err)
            return False
        return True


__all__ = ["ConfigFile"]
