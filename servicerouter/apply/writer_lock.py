"""One writer per HAProxy config: an advisory lock beside it, naming its holder.

Two servicerouters writing the same config (a cron one-shot beside a live
daemon, or two daemons by mistake) would overwrite each other's files and
reload HAProxy in turns.  Every run that writes takes ``<config>.lock`` (and
``<state dir>/writer.lock``, since a state directory can be shared by two
configs) with ``flock``; the second run fails at startup with the first one's
PID.  ``flock`` locks belong to the open file, so the kernel releases them
when the holder dies however it dies (kill -9 included): a lock file left on
disk never blocks anyone, and the file is never removed (removing it would let
a third run lock a new inode while the second still holds the old one).

Holding the lock is also what proves that no other servicerouter is writing:
the temp files found beside the config at that moment are a dead run's, and
are removed at once (see :mod:`servicerouter.apply.tempfiles`).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass

LOCK_SUFFIX = ".lock"
STATE_LOCK_NAME = "writer.lock"


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is its PID (None if it wrote none yet)."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"PID {pid}" if pid is not None else "a process that has not written its PID"
        super().__init__(f"another servicerouter ({who}) is writing here: {path} is locked")


@dataclass
class WriterLock:
    """A held lock: the open file descriptor keeps it; :meth:`release` lets it go."""

    path: str
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = -1


def config_lock_path(config_path: str) -> str:
    return os.path.abspath(config_path) + LOCK_SUFFIX


def acquire(path: str) -> WriterLock:
    """Lock ``path`` (created 0644 if missing) and write our PID in it.

    Raises :class:`LockHeld` when another process holds it, ``OSError`` when
    the file cannot be opened (a directory we cannot write to: nor could we
    write the config there).  The descriptor is not inherited by children
    (HAProxy, reload commands), so a HAProxy left running never keeps it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        os.close(fd)
        raise LockHeld(path, pid) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the PID; a second run then says so
    return WriterLock(path, fd)


def _holder_pid(fd: int, attempts: int = 10, pause: float = 0.02) -> int | None:
    """The PID the holder wrote; it writes it right after locking, so wait a moment."""
    for _ in range(attempts):
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(pause)
    return None


def acquire_all(config_path: str, state_dir: str) -> list[WriterLock]:
    """The config's lock, then the state directory's (both directories created if missing).

    Always in this order, so two runs never each hold one and wait for the other
    (they do not wait anyway: a held lock fails at once).
    """
    lock_path = config_lock_path(config_path)
    # As the state directory beside it always made it: a fresh host has no config dir yet.
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    held = [acquire(lock_path)]
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        held.append(acquire(os.path.join(state_dir, STATE_LOCK_NAME)))
    except BaseException:
        for lock in held:
            lock.release()
        raise
    return held


__all__ = ["LockHeld", "WriterLock", "acquire", "acquire_all", "config_lock_path"]
