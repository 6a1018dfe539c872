"""The unchanged-body fast path: a one-shot run whose Marathon answer was already applied.

A one-shot run (cron, a systemd timer, servicerouter.py's default mode) mostly
finds Marathon answering exactly what it answered last time.  Parsing 40 MB of
JSON, building the model and rendering the config again would only prove that
the file on disk is already right, so after every successful apply the runner
keeps a record in the state directory: a digest of the Marathon body, and a
digest of everything else that shaped the config (the router settings, the
fragment set, servicerouter's own code, the certificate files).  A run whose
body and shape digests match, and whose config file is the one the record
describes, has nothing to do.

Correctness before speed: a record is only written when the output depends on
nothing but those inputs.  Not when a port names a certificate file or a bind
address (their verdicts depend on the host at run time), not when a bundle was
refused, and never beyond the moment a served certificate enters its expiry
window.  Task host names that are not IP literals are resolved again on the
fast path and must resolve as before.  Nothing here parses the body or imports
the render stage: the fast path must cost less than a plain fetch and parse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servicerouter.apply.writer_lock import STATE_LOCK_NAME

log = logging.getLogger("servicerouter")

RECORD_FILE = "last-applied.json"  # in the state directory
_RECORD_VERSION = 1


def body_digest(body: bytes) -> str:
    """The digest of one Marathon answer (SHA-256: ~20 ms for 40 MB)."""
    return hashlib.sha256(body).hexdigest()


def file_identity(path: str) -> list[Any]:
    """What changes when a file is replaced or edited: [inode, size, mtime ns], or []."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _tree_identity(path: str, skip: frozenset[str] = frozenset()) -> list[Any]:
    """Identities of a file, or of every entry of a directory (one level, sorted)."""
    if not os.path.isdir(path):
        return [path, file_identity(path)]
    try:
        names = sorted(name for name in os.listdir(path) if name not in skip)
    except OSError:
        return [path, "unreadable"]
    return [path, [[name, file_identity(os.path.join(path, name))] for name in names]]


# Files in the state dir that say who runs or what was applied, not what the config
# holds: the writer lock is rewritten (with its PID) by every run.
# HAProxy's -vv answer kept for the next run's start: its Lua verdict is in the settings.
_NOT_SHAPING = frozenset({RECORD_FILE, STATE_LOCK_NAME, "haproxy-build-info.json"})


def code_identity() -> list[Any]:
    """servicerouter's own modules: an upgrade changes the output (the built-in
    fragments are in the fragment identity).  One scandir per directory: this
    runs on every one-shot run, the fast path's included."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found: list[Any] = []
    _scan_code(package, "", found)
    return found


def _scan_code(directory: str, prefix: str, found: list[Any]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        found.append([prefix, "unreadable"])
        return
    subdirs = []
    for entry in entries:
        if entry.name.endswith(".py"):
            try:
                st = entry.stat()
            except OSError:
                found.append([prefix + entry.name, []])
                continue
            found.append([prefix + entry.name, [st.st_size, st.st_mtime_ns]])
        elif entry.name != "__pycache__" and entry.is_dir():
            subdirs.append(entry)
    for entry in subdirs:
        _scan_code(entry.path, prefix + entry.name + "/", found)


def shape_digest(settings_text: str, secret: str | None, fragments: Any,
                 cert_paths: Iterable[str], state_dir: str) -> str:
    """A digest of everything but the body that shapes the config.

    ``settings_text``: the router settings' repr; ``secret``: the cookie secret
    (kept out of that repr); ``fragments``: the router's fragment identity (a digest
    of the files, or their loaded texts: see Router.fragment_identity); ``cert_paths``:
    --ssl-certs entries and the certs directory, whose files are compared by identity; ``state_dir``: the default certificate, crt-list and
    bundle files written there must still be the ones the config names.
    """
    digest = hashlib.sha256()
    parts: list[Any] = [_RECORD_VERSION, settings_text,
                        hashlib.sha256((secret or "").encode()).hexdigest() if secret else None,
                        fragments,
                        [_tree_identity(p) for p in cert_paths],
                        _tree_identity(state_dir, skip=_NOT_SHAPING),
                        _tree_identity(os.path.join(state_dir, "bundles")),
                        code_identity()]
    digest.update(json.dumps(parts, default=str).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class AppliedRecord:
    """What the last successful apply was made of (saved as JSON in the state dir)."""

    body: str  # body_digest of the Marathon answer
    shape: str  # shape_digest of everything else
    config: list[Any]  # file_identity of the config as written (or found unchanged)
    # Task host names (not IP literals) and what they resolved to.
    resolved: dict[str, str] = field(default_factory=dict)
    valid_until: float | None = None  # epoch seconds: a certificate's expiry window opens

    def to_json(self) -> str:
        return json.dumps({"version": _RECORD_VERSION, "body": self.body, "shape": self.shape,
                           "config": self.config, "resolved": self.resolved,
                           "valid_until": self.valid_until}, sort_keys=True)


def load_record(path: str) -> AppliedRecord | None:
    """The saved record, or None when there is none or it is not one we wrote."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    try:
        if data.get("version") != _RECORD_VERSION:
            return None
        resolved = data.get("resolved") or {}
        valid_until = data.get("valid_until")
        if not (isinstance(data["body"], str) and isinstance(data["shape"], str)
                and isinstance(data["config"], list) and isinstance(resolved, dict)
                and (valid_until is None or isinstance(valid_until, int | float))):
            return None
        return AppliedRecord(data["body"], data["shape"], data["config"],
                             {str(k): str(v) for k, v in resolved.items()}, valid_until)
    except (AttributeError, KeyError, TypeError):
        return None


def save_record(path: str, record: AppliedRecord) -> None:
    """Write the record atomically; a failure only costs the next run its fast path."""
    from servicerouter.tls.bundles import write_private_file

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_private_file(path, record.to_json() + "\n")
    except OSError as err:
        log.warning("cannot save %s (the next run parses and renders again): %s", path,
                    err.strerror or err)


def forget_record(path: str) -> None:
    """Drop the record: what is on disk may no longer be what it describes."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("cannot remove %s: %s", path, err.strerror or err)


def still_applied(record: AppliedRecord | None, body: str, shape: str, config_path: str,
                  resolve: Callable[[str], str | None], now: float | None = None) -> bool:
    """Whether a run with this body and shape would write exactly what is on disk."""
    if record is None or record.body != body or record.shape != shape:
        return False
    if record.valid_until is not None and (now or time.time()) >= record.valid_until:
        return False
    if not record.config or file_identity(config_path) != record.config:
        return False
    return all(resolve(host) == address for host, address in record.resolved.items())


class FastPath:
    """The fast path of one router: checks a fetched body, records a successful apply."""

    def __init__(self, router: Any) -> None:
        from servicerouter.engine.runner import default_state_dir

        self.router = router
        settings = router.settings
        self.state_dir = settings.state_dir or default_state_dir(settings.config_path)
        self.record_path = os.path.join(self.state_dir, RECORD_FILE)
        self._body = ""
        self._body_digest: _Background | None = None  # the body's digest, being taken
        self._resolved: dict[str, str | None] = {}
        self._host_bound = False  # a port's verdict depended on this host's files or addresses

    def _shape(self) -> str:
        settings = self.router.settings
        cert_paths = list(settings.ssl_certs)
        if settings.certs_dir and os.path.isdir(settings.certs_dir):
            cert_paths.append(settings.certs_dir)
        store = self.router.rules_store  # the operator rules are an input too
        rules = repr(sorted(store.rules().items())) if store is not None else ""
        return shape_digest(repr(settings) + rules, settings.render_options.cookie_secret,
                            self.router.fragment_identity(), cert_paths, self.state_dir)

    def unchanged(self, body: bytes, timings: dict[str, float], start: float) -> bool:
        """Whether ``body`` was already applied, as things are now (logs the timing if so)."""
        mark = time.perf_counter()
        settings = self.router.settings
        record = load_record(self.record_path)
        if record is None:
            # Nothing to compare with (a first run): the digest is only needed for the
            # record written after the apply, so it is taken beside the parse (hashlib
            # lets go of the GIL: on a second core it costs the run no time).
            self._body_digest = _Background(body_digest, body)
            timings["digest"] = time.perf_counter() - mark
            return False
        self._body_digest = None
        self._body = body_digest(body)
        same = still_applied(record, self._body, self._shape(),
                             settings.config_path, self.router.resolver)
        timings["digest"] = time.perf_counter() - mark
        if same:
            timings["total"] = time.perf_counter() - start
            log.info("sync timing: fetch=%.3fs digest=%.3fs total=%.3fs unchanged: Marathon's "
                     "answer is the one last applied to %s; nothing parsed, rendered or written",
                     timings["fetch"], timings["digest"], timings["total"],
                     settings.config_path)
        return same

    def watch(self, resolve: Callable[[str], str | None],
              check_port: Callable[[Any], str | None] | None
              ) -> tuple[Callable[[str], str | None], Callable[[Any], str | None] | None]:
        """``resolve`` and ``check_port`` wrapped to note what the model depended on."""
        self._resolved = resolved = {}
        self._host_bound = False

        def watched_resolve(host: str) -> str | None:
            address = resolve(host)
            if address != host:
                resolved[host] = address
            return address

        def watched_check(settings: Any) -> str | None:
            if settings.ssl_cert or (settings.bind_addr and settings.bind_addr != "*"):
                self._host_bound = True
            return check_port(settings) if check_port is not None else None

        if getattr(resolve, "canonical_ipv4_is_itself", False) is True:
            watched_resolve.canonical_ipv4_is_itself = True  # type: ignore[attr-defined]
        return watched_resolve, (watched_check if check_port is not None else None)

    def applied(self, ok: bool, model: Any, certificates: Iterable[Mapping[str, Any]]) -> None:
        """After an apply: record it if the next run may trust it, else forget the old record."""
        reason = self._why_not(ok, model)
        valid_until: float | None = None
        if reason is None:
            valid_until, reason = _certificate_window(certificates)
        if reason is not None:
            log.debug("no unchanged-body record: %s", reason)
            forget_record(self.record_path)
            return
        config = file_identity(self.router.settings.config_path)
        if not config:
            forget_record(self.record_path)
            return
        save_record(self.record_path, AppliedRecord(
            self._body, self._shape(), config,
            {host: address for host, address in self._resolved.items() if address},
            valid_until))

    def _why_not(self, ok: bool, model: Any) -> str | None:
        if self._body_digest is not None:
            self._body = self._body_digest.result()
            self._body_digest = None
        if not ok:
            return "the apply failed"
        if not self._body:
            return "no body digest"
        if self._host_bound or any(s.settings.ssl_cert or (s.settings.bind_addr
                                                         and s.settings.bind_addr != "*")
                                   for s in model.services):
            return "a port names a certificate file or a bind address"
        if any(address is None for address in self._resolved.values()):
            return "a task host did not resolve"
        if self.router.label_overrides:
            return "label templates are checked against this host's HAProxy"
        return None


class _Background:
    """``function(argument)`` run in a thread of its own; :meth:`result` waits for it."""

    def __init__(self, function: Callable[[Any], str], argument: Any) -> None:
        import threading

        self._value = ""
        self._thread = threading.Thread(target=self._run, args=(function, argument),
                                        name="servicerouter-digest", daemon=True)
        self._thread.start()

    def _run(self, function: Callable[[Any], str], argument: Any) -> None:
        self._value = function(argument)

    def result(self) -> str:
        """The value, or "" if the function failed (then no record is written)."""
        self._thread.join()
        return self._value


def _certificate_window(rows: Iterable[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """Until when the served bundles stay as they are (an expiry warning window opens,
    a bundle expires), or why the record cannot be trusted at all."""
    from datetime import datetime

    from servicerouter.tls.manager import EXPIRY_WARNING_DAYS

    until: float | None = None
    for row in rows:
        if row.get("problem") or row.get("expiring"):
            return None, "a certificate bundle is refused or expiring"
        not_after = row.get("not_after")
        if not isinstance(not_after, str):
            continue
        try:
            moment = datetime.fromisoformat(not_after).timestamp() - EXPIRY_WARNING_DAYS * 86400
        except ValueError:
            return None, "a certificate's expiry cannot be read"
        until = moment if until is None else min(until, moment)
    return until, None
