"""--dry's output: the config on stdout (its map files beside the preview's other
files), the unified diff against the config on disk on stderr.

Apart from the router so the sync stays about syncing; it only reads the
router's settings and writes to its ``out``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from servicerouter.apply import haproxy, mapfiles


def print_dry(router: Any, text: str) -> None:
    """Print ``text`` (as --dry shows it) and its diff against the config on disk."""
    import difflib  # --dry only: a one-shot run that writes never loads it

    settings = router.settings
    current = haproxy.read_current(settings.config_path)
    router.out.write(_dry_maps(settings, text))
    router.out.flush()
    old = (current or b"").decode("utf-8", "replace").splitlines(keepends=True)
    diff = list(difflib.unified_diff(old, text.splitlines(keepends=True),
                                     settings.config_path, "generated"))
    if diff:
        sys.stderr.write("".join(diff))
    else:
        sys.stderr.write(f"no difference with {settings.config_path}\n")


def _dry_maps(settings: Any, text: str) -> str:
    """The map files the config reads, written to a temporary directory it then reads
    them from (said on stderr), so the printed config is complete."""
    files_dir = settings.dry_files_dir  # beside the preview's certificates
    map_dir = settings.render_options.map_dir
    printed, directory = mapfiles.dry_copy(
        text, map_dir, os.path.join(files_dir, "maps") if files_dir else None)
    if directory is not None:
        sys.stderr.write(f"map files written to {directory} (the config reads them "
                         f"there; servicerouter writes them to {map_dir})\n")
    return printed


__all__ = ["print_dry"]
