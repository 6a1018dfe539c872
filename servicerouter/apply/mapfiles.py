"""Map files of a config: written from its map block, checked with it, never half-written.

The render puts the entries of every map file the config reads at the end of
the config text (:mod:`servicerouter.render.routing`), so the text stays the
one thing compared, validated and restored; this module is the I/O around it.
The conventions are the config's: one writer, each file written to an
exclusive temporary file in its own directory, synced, then renamed over the
old one; a file whose content is already right is not touched.

Validation happens before anything is put in place: the candidate config and
its maps are written to a private temporary directory and the config checked
there, with its map paths pointed at that directory (:func:`check_text`).

With ``--haproxy-map`` the config also reads marathon-lb's ``domain2backend.map``
and ``app2backend.map``, which live in the config's own directory (the parent of
``map_dir``), not in ``map_dir``: they are written, checked and restored the same
way, but never removed here (marathon-lb's tooling may look for them).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile

from servicerouter.apply.files import fsync_dir
from servicerouter.render.routing import (
    BLOCK_MARKER,
    FILE_PREFIX,
    MAP_NAME_RE,
    MLB_MAP_NAMES,
    MapFiles,
    parse_map_block,
)

log = logging.getLogger("servicerouter.haproxy")


def default_map_dir(config_path: str) -> str:
    """Where the maps of ``config_path`` live: a directory beside it, named after it."""
    path = os.path.abspath(config_path)
    return os.path.join(os.path.dirname(path), os.path.basename(path) + ".maps")


def maps_of(text: str, map_dir: str | None) -> MapFiles:
    return parse_map_block(text, map_dir)


def map_dir_of(text: str) -> str | None:
    """The directory of the maps a rendered config reads, for checks that only have
    the text (the label-template checker); None when it reads none."""
    start = text.rfind("\n" + BLOCK_MARKER + "\n")
    found = text.find("\n" + FILE_PREFIX, start) if start >= 0 else -1
    mlb_dir = None
    while found >= 0:
        line = text[found + 1 + len(FILE_PREFIX):].split("\n", 1)[0]
        directory, name = os.path.split(line)
        if MAP_NAME_RE.match(name):
            return directory or None
        if name in MLB_MAP_NAMES.values() and mlb_dir is None:
            mlb_dir = directory
        found = text.find("\n" + FILE_PREFIX, found + 1)
    # Only marathon-lb's files (in the config's directory): any map_dir inside it
    # names them; the engine's own maps are absent.
    return os.path.join(mlb_dir, ".maps") if mlb_dir else None


def _write_atomic(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def install(text: str, map_dir: str | None) -> list[str]:
    """Make ``map_dir`` hold exactly the maps ``text`` reads; the paths changed.

    Files the text names are written when their content differs; map files of
    ours (by name) that it no longer reads are removed.  OSError propagates.
    """
    if map_dir is None:
        return []
    maps = maps_of(text, map_dir)
    if not maps.files and not os.path.isdir(map_dir):
        return []
    if any(not _is_mlb(path, map_dir) for path in maps.files) or os.path.isdir(map_dir):
        os.makedirs(map_dir, mode=0o755, exist_ok=True)
        info = os.lstat(map_dir)
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(f"{map_dir} is not a directory")
    changed: list[str] = []
    for path in maps.files:
        data = maps.content(path)
        if _read(path) != data:
            _write_atomic(path, data)
            changed.append(path)
    wanted = {os.path.basename(path) for path in maps.files}
    for name in sorted(os.listdir(map_dir)) if os.path.isdir(map_dir) else ():
        if MAP_NAME_RE.match(name) and name not in wanted:
            os.unlink(os.path.join(map_dir, name))
            changed.append(os.path.join(map_dir, name))
    for directory in {os.path.dirname(path) for path in changed}:
        fsync_dir(directory)
    return changed


def _is_mlb(path: str, map_dir: str) -> bool:
    """Whether ``path`` is one of marathon-lb's files (beside the config, not in map_dir)."""
    return os.path.dirname(path) != map_dir.rstrip("/")


def materialize(text: str, map_dir: str | None, directory: str) -> str:
    """Write the maps of ``text`` into ``directory``; the text reading them from there."""
    maps = maps_of(text, map_dir)
    if map_dir is None or not maps.files:
        return text
    for path in maps.files:
        with open(os.path.join(directory, os.path.basename(path)), "wb") as handle:
            handle.write(maps.content(path))
    text = text.replace(map_dir.rstrip("/") + "/", directory.rstrip("/") + "/")
    for path in maps.files:  # marathon-lb's, beside the config: each by its whole path
        if _is_mlb(path, map_dir):
            text = text.replace(path, os.path.join(directory, os.path.basename(path)))
    return text


def check_text(text: str, map_dir: str | None, near: str,
               haproxy_bin: str = "haproxy") -> tuple[bool, str]:
    """``haproxy -c`` of ``text`` with its maps, in a private directory under ``near``.

    The message names the config ``<config>`` rather than the temporary path.
    """
    from servicerouter.apply.haproxy import check_config

    workdir = tempfile.mkdtemp(prefix=".sr-check-", dir=near)
    try:
        checked = materialize(text, map_dir, workdir)
        path = os.path.join(workdir, "haproxy.cfg")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(checked)
        ok, message = check_config(path, haproxy_bin)
        return ok, message.replace(path, "<config>").replace(workdir, map_dir or workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def dry_copy(text: str, map_dir: str | None,
             directory: str | None = None) -> tuple[str, str | None]:
    """For ``--dry``: the maps written to ``directory`` (created; by default a new
    temporary directory), and the text reading them there (so it passes
    ``haproxy -c`` on a fresh host); (text, None) when the text reads no map."""
    if map_dir is None or not maps_of(text, map_dir).files:
        return text, None
    if directory is None:
        directory = tempfile.mkdtemp(prefix="servicerouter-maps-")
    else:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    return materialize(text, map_dir, directory), directory
