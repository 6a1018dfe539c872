"""Rules shared by every edge node through ZooKeeper (``--rules-store zk://...``).

Layout under the configured path ``P``: ``P/rules/<id, URL-quoted>`` holds one
rule's JSON, ``P/history/change-<sequence>`` one change record.  Every node
watches ``P/rules`` (a children watch plus one data watch per rule: ZooKeeper
pushes each change, nothing polls), so a rule written through any node's API
reaches every node in one round trip.

While ZooKeeper is away the last known rules keep routing (kazoo reconnects in
the background and the watches resume; ``health()`` says since when it is
disconnected), and writes are refused with a clear error rather than queued.
The last known rules are also kept in a local cache file, so a router that
restarts during an outage routes by them until ZooKeeper is back.

Auth: ``user:password`` adds a digest identity to the session and makes every
node this store creates readable and writable by that identity only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from servicerouter.rules.model import Rule, RuleError, rule_from_json, rule_to_json
from servicerouter.rules.store import (
    HISTORY_LIMIT,
    Change,
    StoreError,
    _Listeners,
    clean_actor,
    read_rules,
)

log = logging.getLogger("servicerouter.rules.zk")

CONNECT_WAIT = 5.0  # how long start-up waits for the first rules before routing without
_PATH_SEGMENT_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def parse_zk_url(url: str) -> tuple[str, str]:
    """(``host:port,...``, ``/path``) of ``zk://HOST:PORT[,HOST:PORT...]/path``."""
    parts = urlsplit(url)
    if parts.scheme != "zk" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: expected zk://HOST:PORT[,HOST:PORT...]/path")
    path = parts.path.rstrip("/")
    if not path or any(not seg or not set(seg) <= _PATH_SEGMENT_OK
                       for seg in path.split("/")[1:]):
        raise ValueError(f"{url!r}: the path must be /segment[/segment...] of letters, "
                         "digits, '.', '_' and '-'")
    for host in parts.netloc.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{url!r}: {host!r} is not HOST:PORT")
    return parts.netloc, path


def parse_zk_auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return user, password


class ZooKeeperRuleStore:
    """A :class:`~servicerouter.rules.store.RuleStore` in ZooKeeper, watched, never polled."""

    backend = "zookeeper"

    def __init__(self, hosts: str, path: str, *, auth: tuple[str, str] | None = None,
                 cache_path: str | None = None, node: str = "",
                 session_timeout: float = 10.0, connect_wait: float = CONNECT_WAIT) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry
        from kazoo.security import make_digest_acl

        self.hosts, self.path, self.node = hosts, path, node
        self.cache_path = cache_path
        self._rules_path, self._history_path = f"{path}/rules", f"{path}/history"
        self._lock = threading.Lock()
        self._listeners = _Listeners()
        self._invalid: dict[str, str] = {}
        self._raw: dict[str, Any] = {}  # znode name -> its JSON
        self._rules: dict[str, Rule] = self._load_cache()
        self._watched: set[str] = set()  # znodes with a data watch (deleted ones too)
        self._children: set[str] = set()  # znodes there now
        self._last_error: str | None = None
        self._last_change: float | None = None
        self._disconnected_since: float | None = time.time()
        self._loaded = threading.Event()
        # Set by kazoo's listener, which may run as soon as start_async() is called:
        # it exists before the client does.
        self._connected = threading.Event()
        self._closed = False
        acl = None
        auth_data = None
        if auth is not None:
            auth_data = [("digest", f"{auth[0]}:{auth[1]}")]
            acl = [make_digest_acl(auth[0], auth[1], all=True)]
        self._client = KazooClient(
            hosts=hosts, timeout=session_timeout, auth_data=auth_data, default_acl=acl,
            connection_retry=KazooRetry(max_tries=-1, delay=0.2, max_delay=2.0),
            command_retry=KazooRetry(max_tries=2, delay=0.1, max_delay=0.5))
        self._client.add_listener(self._on_state)
        self._client.start_async()
        threading.Thread(target=self._first_watch, name="rules-zk-start", daemon=True).start()
        if not self._loaded.wait(connect_wait):
            log.warning("rules: ZooKeeper %s not reached in %.0fs; routing by the %d cached "
                        "rules until it is", hosts, connect_wait, len(self._rules))

    # ---------------------------------------------------------------- watching

    def _first_watch(self) -> None:
        """Create the layout and start the watches once connected (kazoo retries for us)."""
        from kazoo.exceptions import KazooException

        delay = 0.5
        while not self._closed:
            if not self._connected.wait(0.5):
                continue
            try:
                self._client.ensure_path(self._rules_path)
                self._client.ensure_path(self._history_path)
                self._client.ChildrenWatch(self._rules_path, self._on_children)
                return
            except KazooException as err:  # e.g. NoAuth: the path is another identity's
                self._last_error = f"{type(err).__name__}: {err}"
                log.warning("rules: ZooKeeper %s %s: %s; trying again in %.0fs", self.hosts,
                            self.path, self._last_error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _on_state(self, state: str) -> None:
        """kazoo's connection listener: runs on its thread, must not block."""
        from kazoo.protocol.states import KazooState

        if state == KazooState.CONNECTED:
            if self._disconnected_since is not None:
                log.info("rules: ZooKeeper %s connected", self.hosts)
            self._disconnected_since = None
            self._connected.set()
        elif not self._closed:
            if self._disconnected_since is None:
                self._disconnected_since = time.time()
                log.warning("rules: ZooKeeper %s %s; routing by the last known %d rules while "
                            "it reconnects", self.hosts, state.lower(), len(self._rules))
            self._connected.clear()

    def _on_children(self, children: list[str]) -> bool:
        from kazoo.recipe.watchers import DataWatch

        if self._closed:
            return False
        current = set(children)
        with self._lock:
            gone = [name for name in self._raw if name not in current]
            for name in gone:
                self._raw.pop(name, None)
            new = current - self._watched
            self._watched |= new
            self._children = current
        for name in sorted(new):
            DataWatch(self._client, f"{self._rules_path}/{name}", self._data_watcher(name))
        if gone or not children:
            self._rebuild()
        if not new:
            self._loaded.set()
        return True

    def _data_watcher(self, name: str) -> Callable[[bytes | None, Any], bool]:
        """A DataWatch callback for znode ``name`` (kazoo passes data and stat)."""
        def watcher(data: bytes | None, stat: Any) -> bool:
            return self._on_data(name, data)
        return watcher

    def _on_data(self, name: str, data: bytes | None) -> bool:
        """One rule's znode changed; None: it is gone.  The watch stays on a deleted
        node (kazoo then watches for its return), so a rule deleted and written again
        at once is never left unwatched."""
        with self._lock:
            if data is None:
                self._raw.pop(name, None)
            else:
                try:
                    self._raw[name] = json.loads(data.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    self._raw[name] = None
        self._rebuild()
        if self._children <= set(self._raw):
            self._loaded.set()
        return not self._closed

    def _rebuild(self) -> None:
        invalid: dict[str, str] = {}
        with self._lock:
            raw = {unquote(name): value for name, value in self._raw.items()}
            rules = read_rules(raw, invalid)
            changed = rules != self._rules
            self._rules, self._invalid = rules, invalid
            if changed:
                self._last_change = time.time()
        if changed:
            self._save_cache(rules)
            self._listeners.notify()

    # ---------------------------------------------------------------- cache

    def _load_cache(self) -> dict[str, Rule]:
        if not self.cache_path:
            return {}
        try:
            with open(self.cache_path, encoding="utf-8") as handle:
                data = json.load(handle)
            return read_rules(data.get("rules", {}), {})
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_cache(self, rules: dict[str, Rule]) -> None:
        if not self.cache_path:
            return
        from servicerouter.tls.bundles import write_private_file

        try:
            os.makedirs(os.path.dirname(self.cache_path) or ".", mode=0o700, exist_ok=True)
            write_private_file(self.cache_path, json.dumps(
                {"version": 1, "source": f"zk://{self.hosts}{self.path}",
                 "rules": {k: rule_to_json(r) for k, r in sorted(rules.items())}},
                indent=1, sort_keys=True) + "\n")
        except OSError as err:
            log.warning("rules: cannot write the cache %s: %s", self.cache_path, err)

    # ---------------------------------------------------------------- the store

    def rules(self) -> dict[str, Rule]:
        with self._lock:
            return dict(self._rules)

    def _change(self, rule_id: str, new: Rule | None, actor: str) -> Change:
        from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError

        if not self._connected.is_set():
            raise StoreError(f"ZooKeeper {self.hosts} is not connected: rules cannot be "
                             "changed now (the last known rules keep routing)")
        node = f"{self._rules_path}/{quote(rule_id, safe='')}"
        client = self._client
        try:
            for _attempt in range(10):  # compare-and-set: another node may write at once
                try:
                    data, stat = client.get(node)
                    old_json: Any = json.loads(data.decode("utf-8")) if data else None
                    version = stat.version
                except NoNodeError:
                    old_json, version = None, -1
                try:
                    old = rule_to_json(rule_from_json(old_json)) if old_json else None
                except RuleError:
                    old = old_json if isinstance(old_json, dict) else None
                if new is None and version < 0:
                    raise KeyError(rule_id)
                change = Change(rule_id, clean_actor(actor), time.time(), old,
                                rule_to_json(new) if new else None, self.node)
                payload = json.dumps(change.new, sort_keys=True).encode() if new else b""
                try:
                    if new is None:
                        client.delete(node, version=version)
                    elif version < 0:
                        client.create(node, payload, makepath=True)
                    else:
                        client.set(node, payload, version=version)
                except (BadVersionError, NodeExistsError, NoNodeError):
                    continue
                break
            else:
                raise StoreError(f"rule {rule_id} kept changing under us; try again")
            client.create(f"{self._history_path}/change-",
                          json.dumps(change.to_json(), sort_keys=True).encode(), sequence=True)
            self._trim_history()
        except KazooException as err:
            self._last_error = f"{type(err).__name__}: {err}"
            raise StoreError(f"ZooKeeper refused the change: {self._last_error}") from err
        self._last_error = None
        return change

    def _trim_history(self) -> None:
        children = sorted(self._client.get_children(self._history_path))
        for name in children[:-HISTORY_LIMIT] if len(children) > HISTORY_LIMIT else ():
            self._client.delete(f"{self._history_path}/{name}")

    def put(self, rule: Rule, actor: str) -> Change:
        return self._change(rule.id, rule, actor)

    def delete(self, rule_id: str, actor: str) -> Change:
        return self._change(rule_id, None, actor)

    def history(self, limit: int = 100) -> list[Change]:
        from kazoo.exceptions import KazooException

        if limit <= 0:
            return []
        if not self._connected.is_set():
            raise StoreError(f"ZooKeeper {self.hosts} is not connected: history unavailable")
        try:
            names = sorted(self._client.get_children(self._history_path))[-limit:]
            changes = []
            for name in reversed(names):
                data, _ = self._client.get(f"{self._history_path}/{name}")
                try:
                    changes.append(Change.from_json(json.loads(data.decode("utf-8"))))
                except (KeyError, TypeError, ValueError):
                    continue
            return changes
        except KazooException as err:
            raise StoreError(f"ZooKeeper: {type(err).__name__}: {err}") from err

    def health(self) -> dict[str, Any]:
        with self._lock:
            since = self._disconnected_since
            return {"backend": self.backend, "hosts": self.hosts, "path": self.path,
                    "connected": self._connected.is_set(), "state": str(self._client.state),
                    "disconnected_since": since, "last_error": self._last_error,
                    "last_change": self._last_change, "rules": len(self._rules),
                    "invalid": dict(self._invalid)}

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._listeners.callbacks.append(callback)

    def close(self) -> None:
        self._closed = True
        try:
            self._client.stop()
            self._client.close()
        except Exception:  # closing must not fail shutdown
            log.debug("rules: closing the ZooKeeper client failed", exc_info=True)
