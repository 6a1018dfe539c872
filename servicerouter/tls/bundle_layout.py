"""Where validated bundles and their crt-list go on disk, and writing them there.

The crt-list's SNI filters come from the certificates' own names; its first line is
the certificate for clients whose SNI matches nothing. :func:`plan_layout` computes
every path without touching the disk (``--dry`` prints what a real run would write);
:func:`materialize_bundles` writes only what changed and removes what is stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from servicerouter.tls.bundles import TEMP_PREFIX, Bundle, make_private_dir, write_private_file
from servicerouter.tls.pem_text import DNS_NAME

_BUNDLE_FILE = re.compile(r"^[0-9a-f]{64}\.pem$")
_STABLE_BUNDLE_FILE = re.compile(r"^[a-z0-9_.-]+--[0-9a-f]{16}\.pem$")


def build_crt_list(default_pem_path: str, bundles: Sequence[tuple[str, Bundle]]) -> str:
    """Return crt-list text: the default certificate first, then one SNI-filtered line per bundle.

    HAProxy serves the first line's certificate to clients whose SNI matches no
    filter (or who send none). When ``default_pem_path`` is one of the bundles'
    paths, that bundle's line (with its filters) comes first; otherwise the bare
    path does. The other lines are sorted by path (identical entries collapse); a
    path or name that would not survive HAProxy's whitespace-separated syntax
    raises ``ValueError``.
    """
    _check_crt_path(default_pem_path)
    entries = set()
    for path, bundle in bundles:
        _check_crt_path(path)
        for name in bundle.names:
            if not DNS_NAME.match(name):
                raise ValueError(f"invalid SNI filter {name!r} for {path}")
        entries.add((path, bundle.names))
    first = [entry for entry in sorted(entries) if entry[0] == default_pem_path][:1]
    lines = [" ".join((first[0][0], *first[0][1]))] if first else [default_pem_path]
    lines.extend(" ".join((path, *names)) for path, names in sorted(entries)
                 if (path, names) not in first)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Materialized:
    """Where :func:`materialize_bundles` put things, and which bundle files it rewrote."""

    crt_list: str
    paths: dict[str, str]  # leaf fingerprint -> the file HAProxy reads
    written: frozenset[str] = frozenset()  # bundle files whose content changed this time
    default_cert: str = ""  # the crt-list's first line: the certificate for no/unknown SNI


@dataclass(frozen=True)
class Layout:
    """Where :func:`materialize_bundles` puts each file, computed without touching the disk."""

    crt_list: str
    crt_list_text: str
    default_cert: str
    files: tuple[tuple[str, Bundle], ...]  # (bundle file, what it holds), first of each path
    paths: dict[str, str]  # leaf fingerprint -> bundle file


def materialize(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str) -> str:
    """Content-addressed :func:`materialize_bundles`; returns the crt-list path."""
    return materialize_bundles(bundles, state_dir, default_pem_path).crt_list


def stable_bundle_name(bundle: Bundle) -> str:
    """``<first name>--<hash of the source path>.pem``: the same file for the same source.

    A renewed certificate written over the same source file keeps its path, so
    neither haproxy.cfg nor the crt-list changes and the Runtime API can swap it
    in place; the first name is there for the operator reading the directory.
    """
    slug = bundle.names[0].replace("*", "wildcard") if bundle.names else "bundle"
    source = hashlib.sha256(os.path.abspath(bundle.source).encode()).hexdigest()[:16]
    return f"{slug}--{source}.pem"


def plan_layout(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str,
                stable: bool = False, default: Bundle | None = None,
                extra: Sequence[Bundle] = ()) -> Layout:
    """The paths and crt-list :func:`materialize_bundles` writes, without writing.  Pure.

    ``--dry`` uses it to print the config a real run would write, so it names the
    same (content-addressed) crt-list a real run leaves on disk.
    """
    state_dir = os.path.abspath(state_dir)
    bundle_dir = os.path.join(state_dir, "bundles")
    chosen: dict[str, tuple[str, Bundle]] = {}
    taken: set[str] = set()
    for bundle in [*bundles, *extra]:
        if bundle.fingerprint in chosen:
            continue
        name = stable_bundle_name(bundle) if stable else f"{bundle.fingerprint}.pem"
        path = os.path.join(bundle_dir, name)
        if path in taken:
            continue  # one source read twice (same file, two spellings): first wins
        taken.add(path)
        chosen[bundle.fingerprint] = (path, bundle)
    listed = [chosen[b.fingerprint] for b in bundles if b.fingerprint in chosen]
    default_cert = os.path.abspath(default_pem_path)
    if default is not None and default.fingerprint in chosen:
        default_cert = chosen[default.fingerprint][0]
    # The crt-list is named by its content: a change of the files or names it
    # lists changes the path in haproxy.cfg, so the config differs and HAProxy
    # is reloaded, and the file the running config names is never rewritten under it.
    text = build_crt_list(default_cert, listed)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Layout(os.path.join(state_dir, f"crt-list-{digest}"), text, default_cert,
                  tuple(chosen.values()), {fp: path for fp, (path, _) in chosen.items()})


def materialize_bundles(bundles: Sequence[Bundle], state_dir: str, default_pem_path: str,
                        stable: bool = False, default: Bundle | None = None,
                        extra: Sequence[Bundle] = ()) -> Materialized:
    """Write bundles under ``<state_dir>/bundles/`` and a crt-list ``<state_dir>/crt-list-*``.

    Bundle files are named by leaf fingerprint (``stable=False``: any certificate
    change changes the config, so a plain reload applies it) or by source
    (``stable=True``, :func:`stable_bundle_name`: a renewal keeps the path, and
    the caller applies the new content through the Runtime API or a reload).
    The crt-list's first line is ``default``'s file when given, else
    ``default_pem_path``. ``extra`` bundles are written but not listed (a port's
    normalised copy whose names another bundle serves). Unchanged files are not
    rewritten. Bundles sharing a leaf fingerprint collapse to the first. Stale
    bundle files are removed after the new crt-list is in place, so the crt-list
    on disk never names a missing file.
    """
    layout = plan_layout(bundles, state_dir, default_pem_path, stable, default, extra)
    state_dir = os.path.dirname(layout.crt_list)
    make_private_dir(state_dir)
    bundle_dir = os.path.join(state_dir, "bundles")
    make_private_dir(bundle_dir)

    changed: set[str] = set()
    for path, bundle in layout.files:
        if _current_text(path) != bundle.pem:
            write_private_file(path, bundle.pem)
            changed.add(path)
    if _current_text(layout.crt_list) != layout.crt_list_text:
        write_private_file(layout.crt_list, layout.crt_list_text)
    _prune_crt_lists(state_dir, keep=layout.crt_list)

    keep = {os.path.basename(path) for path, _ in layout.files}
    for entry in os.listdir(bundle_dir):
        ours = _BUNDLE_FILE.match(entry) or _STABLE_BUNDLE_FILE.match(entry)
        if (ours and entry not in keep) or entry.startswith(TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(bundle_dir, entry))
    return Materialized(layout.crt_list, dict(layout.paths), frozenset(changed),
                        layout.default_cert)


KEEP_CRT_LISTS = 5


def _prune_crt_lists(state_dir: str, keep: str) -> None:
    """Keep the newest crt-lists: an older config on disk may still name one."""
    entries = []
    for entry in os.listdir(state_dir):
        if entry.startswith("crt-list-") and not entry.endswith(".tmp"):
            path = os.path.join(state_dir, entry)
            with contextlib.suppress(FileNotFoundError):
                entries.append((os.stat(path).st_mtime, path))
    entries.sort(reverse=True)
    for _mtime, path in entries[KEEP_CRT_LISTS:]:
        if path != keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _check_crt_path(path: str) -> None:
    if not path or any(ch.isspace() for ch in path) or path.startswith("#"):
        raise ValueError(f"crt-list path {path!r} is empty, starts with '#' or has whitespace")


def _current_text(path: str) -> str | None:
    """Contents of an existing regular file (not through a symlink), else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            return None  # rewrite to fix the mode
        return text
    except (OSError, UnicodeDecodeError):
        return None
