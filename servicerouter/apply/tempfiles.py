"""Removing the temp files a crash left behind, and nothing else.

Every file servicerouter writes goes through a temp file beside its target
(config: ``haproxy.write_temp``; certificates: ``certs.write_private_file``;
``haproxy -c`` candidates of the live engine and of label templates).  A normal
run renames or deletes each one within the same call; only a crash, a kill -9
or a power cut leaves one, and nothing would ever remove it.  At startup the
directories servicerouter writes to are swept for files that:

* match exactly one of our temp-file names (prefix, random part, suffix);
* are regular files (a symlink is never followed nor removed), owned by us.

The run that sweeps holds the writer lock (:mod:`servicerouter.apply.writer_lock`):
no other servicerouter is writing there, so every such file is a dead run's and
goes at once (``older_than=0``).  The age threshold (:data:`STALE_AFTER`, long
enough for a ``haproxy -c`` still reading a candidate) is only for a caller
without that proof.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Sequence

log = logging.getLogger("servicerouter.tempfiles")

# More than a minute: haproxy -c may read a candidate for up to 60 s (its timeout).
STALE_AFTER = 120.0

_MKSTEMP = r"[a-z0-9_]{8}"  # tempfile.mkstemp's random part
_CERT_TMP = re.compile(r"\.tmp-[^/]+\.[0-9a-f]{12}")  # certs.write_private_file


def config_dir_patterns(config_basename: str) -> list[re.Pattern[str]]:
    """Our temp names beside the HAProxy config file ``config_basename``."""
    return [
        re.compile(rf"\.{re.escape(config_basename)}\.{_MKSTEMP}\.tmp"),  # haproxy.write_temp
        re.compile(rf"\.sr-check-{_MKSTEMP}\.cfg"),  # live engine's haproxy -c candidates
        re.compile(rf"\.sr-label-{_MKSTEMP}\.cfg"),  # label-template checks
    ]


def remove_stale(directory: str, patterns: Sequence[re.Pattern[str]], *,
                 older_than: float = STALE_AFTER, now: float | None = None) -> list[str]:
    """Remove our stale temp files directly in ``directory``; return their paths."""
    now = time.time() if now is None else now
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return []  # no directory yet: nothing to clean
    removed: list[str] = []
    try:
        with os.scandir(dir_fd) as entries:
            names = [e.name for e in entries if any(p.fullmatch(e.name) for p in patterns)]
        uid = os.geteuid()
        for name in names:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
                continue
            if older_than > 0 and now - info.st_mtime <= older_than:
                continue
            try:
                os.unlink(name, dir_fd=dir_fd)  # removes the entry itself, never a target
            except OSError as err:
                log.warning("cannot remove stale temp file %s: %s",
                            os.path.join(directory, name), err.strerror)
                continue
            path = os.path.join(directory, name)
            log.info("removed stale temp file %s (left by an earlier crash)", path)
            removed.append(path)
    finally:
        os.close(dir_fd)
    return removed


_MAP_TMP = re.compile(rf"\.(?:http|https|appid)-[0-9]+-(?:beg|end|str)\.map\.{_MKSTEMP}\.tmp")
_CHECK_DIR = re.compile(rf"\.sr-check-{_MKSTEMP}")  # mapfiles.check_text: config + maps


def remove_stale_check_dirs(directory: str, *, older_than: float = STALE_AFTER,
                            now: float | None = None) -> list[str]:
    """Our stale ``haproxy -c`` directories (a config and its maps) in ``directory``:
    owned by us, not a symlink, holding regular files only; removed with their files."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(directory) if _CHECK_DIR.fullmatch(n)]
    except OSError:
        return removed
    uid = os.geteuid()
    for name in names:
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if (not stat.S_ISDIR(info.st_mode) or info.st_uid != uid
                    or now - info.st_mtime <= older_than):
                continue
            inside = [os.path.join(path, n) for n in os.listdir(path)]
            if not all(stat.S_ISREG(os.lstat(f).st_mode) for f in inside):
                continue
            for file in inside:
                os.unlink(file)
            os.rmdir(path)
        except OSError:
            continue
        log.info("removed stale check directory %s (left by an earlier crash)", path)
        removed.append(path)
    return removed


def clean_startup(config_path: str, state_dirs: Iterable[str], *,
                  older_than: float = STALE_AFTER, now: float | None = None) -> list[str]:
    """Sweep the config's directory, its map directory and the certificate state
    directories once."""
    config_path = os.path.abspath(config_path)
    removed = remove_stale(os.path.dirname(config_path),
                           config_dir_patterns(os.path.basename(config_path)),
                           older_than=older_than, now=now)
    removed += remove_stale_check_dirs(os.path.dirname(config_path), older_than=older_than,
                                       now=now)
    removed += remove_stale(config_path + ".maps", [_MAP_TMP], older_than=older_than, now=now)
    for directory in state_dirs:
        removed += remove_stale(directory, [_CERT_TMP], older_than=older_than, now=now)
    return removed


__all__ = ["STALE_AFTER", "clean_startup", "config_dir_patterns", "remove_stale",
           "remove_stale_check_dirs"]
