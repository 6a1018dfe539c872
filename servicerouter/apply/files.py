"""Small helpers for crash-safe file updates, shared by config and certificate writers."""

from __future__ import annotations

import os


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (best effort: not every filesystem can)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
