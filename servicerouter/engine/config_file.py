"""The one writer of the HAProxy config file the live engine keeps, now or soon after.

A change applied through the Runtime API is live the moment HAProxy answers;
the file only has to hold it before HAProxy next reads it (a reload, a
restart).  Writing (and fsyncing) a config of tens of megabytes on the event
path would put the disk between an event and its route, so such writes go to
a background thread (:meth:`ConfigFile.write_soon`), newest text wins.  Every
other write goes through :meth:`ConfigFile.write`, and anything else that
writes the file first calls :meth:`ConfigFile.settle`: one ordering, so a late
background write can never put back an older config.
"""

from __future__ import annotations

import logging
import os
import threading

from servicerouter.apply import haproxy, mapfiles
from servicerouter.apply.files import fsync_dir

log = logging.getLogger("servicerouter.live")


class ConfigFile:
    """Atomic writes of one config path, synchronous or deferred (see the module)."""

    def __init__(self, path: str, map_dir: str | None = None) -> None:
        self.path = path
        self.map_dir = map_dir  # the config's map files are installed before it
        self._cond = threading.Condition()
        self._io = threading.Lock()  # held while a write is on disk
        self._pending: str | None = None
        self._generation = 0  # bumped by every write request: stale ones are dropped
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.deferred_writes = 0

    def write(self, text: str) -> bool:
        """Write ``text`` now (a pending deferred write is dropped: this one is newer)."""
        with self._cond:
            self._generation += 1
            self._pending = None
            self._cond.notify_all()
        with self._io:
            return self._put(text)

    def write_soon(self, text: str) -> None:
        """Write ``text`` in the background, unless something newer comes first."""
        with self._cond:
            self._generation += 1
            self._pending = text
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="config-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def settle(self) -> None:
        """Before someone else writes the path: drop a pending write, wait for one under way."""
        with self._cond:
            self._generation += 1
            self._pending = None
            self._cond.notify_all()
        with self._io:
            pass

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until no deferred write is pending or under way; False on timeout."""
        with self._cond:
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
                if self._pending is None:
                    return
                text, generation = self._pending, self._generation
                self._io.acquire()  # before _pending clears: flush() waits for the write
                self._pending = None
                self._cond.notify_all()
            try:
                with self._cond:
                    current = generation == self._generation
                if current:
                    self._put(text)
                    self.deferred_writes += 1
            finally:
                self._io.release()

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
