"""Which file each fragment comes from, and a digest of them, without compiling any.

:func:`servicerouter.render.fragments.load_fragments` picks every fragment from
the first directory that has it (``NAME.j2`` before ``NAME``) and compiles it
with Jinja2, which is a good part of a one-shot run's start.  A run whose
Marathon answer was already applied needs only to know whether the fragments
are still the ones that answer was rendered with (servicerouter.engine.unchanged),
so :class:`LazyFragments` answers that from the files' bytes, by the same
choice, and compiles (and checks) them only when a sync needs to render.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servicerouter.render.fragment_registry import FRAGMENTS


class TemplateError(ValueError):
    """A fragment file that cannot be used; the message names file and line."""


def default_templates_dir() -> Path:
    """The built-in fragments: installed package data, else the checkout's templates/."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "default_templates"
    if (installed / "HAPROXY_HEAD.j2").is_file():
        return installed
    return package.parent / "templates"


def fragment_files_digest(dirs: Sequence[str | os.PathLike[str]]) -> str:
    """A digest of the file every fragment would be loaded from (path and bytes),
    chosen as load_fragments chooses: ``dirs`` in order, ``NAME.j2`` before ``NAME``.

    A file that cannot be read goes in as its error (loading it will fail and say
    why); a fragment no directory has goes in as missing.
    """
    digest = hashlib.sha256()
    for spec in FRAGMENTS:
        digest.update(b"\0fragment\0" + spec.name.encode())
        for directory in dirs:
            for filename in (spec.name + ".j2", spec.name):
                path = os.path.join(os.fspath(directory), filename)
                try:
                    with open(path, "rb") as handle:
                        data = handle.read()
                except FileNotFoundError:
                    continue
                except OSError as err:
                    data = f"unreadable: {err}".encode()
                digest.update(b"\0file\0" + path.encode("utf-8", "surrogateescape") + b"\0")
                digest.update(hashlib.sha256(data).digest())
                break
            else:
                continue
            break
        else:
            digest.update(b"\0missing")
    return digest.hexdigest()


class LazyFragments:
    """The fragment set of some template directories, loaded on first use.

    ``load`` is what compiles and checks them (the CLI's loader: load_fragments,
    then the startup check); its TemplateError propagates from :meth:`get`.
    ``digest`` is taken once, before the first load, and kept: if a file changes
    between the two, the record made from this run names the old bytes, so the
    next run renders again (the safe side).
    """

    def __init__(self, user_dirs: Sequence[str | os.PathLike[str]],
                 load: Callable[[Sequence[str | os.PathLike[str]]], Any]) -> None:
        self.user_dirs = list(user_dirs)
        self._load = load
        self._loaded: Any = None
        self._digest: str | None = None

    def digest(self) -> str:
        if self._digest is None:
            self._digest = fragment_files_digest(self.user_dirs + [default_templates_dir()])
        return self._digest

    def get(self) -> Any:
        """The loaded servicerouter.render.fragments.FragmentSet."""
        if self._loaded is None:
            self.digest()
            self._loaded = self._load(self.user_dirs)
        return self._loaded


__all__ = ["LazyFragments", "TemplateError", "default_templates_dir", "fragment_files_digest"]
