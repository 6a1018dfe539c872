"""HAProxy's Runtime API: a client for its stats socket, and server changes applied live.

When only servers of existing backends change
(:mod:`servicerouter.apply.confdiff`), :class:`RuntimeApplier` adds servers
(``add server``, then ``enable health``/``enable server``), re-addresses
them (``set server addr``), sets weights (``set server weight``: a task being
killed drains with weight 0) and removes them gently: ``drain`` first, then,
once their connections are gone (or after ``drain_timeout``), ``maint`` and
``del server``.  Any refusal raises :class:`RuntimeUpdateError` and the
caller reloads instead, which always converges.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servicerouter.apply.confdiff import RuntimePlan, ServerLine, has_check, server_weight

log = logging.getLogger("servicerouter.manager")


class RuntimeUpdateError(Exception):
    """A Runtime API command was refused; the caller reloads instead."""


def unix_command(path: str, command: str, timeout: float = 5.0,
                 settle: float | None = 0.05) -> str:
    """Send one command on a UNIX socket and return the answer.

    The Runtime API closes the connection after answering (``settle=None``:
    read to the end).  The master CLI of HAProxy 2.6 sometimes keeps it open,
    so there reading also stops once the answer ends with a blank line and
    nothing more comes for ``settle`` seconds.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            data = b"".join(chunks)
            if settle is not None and data.endswith(b"\n\n"):
                sock.settimeout(settle)
            else:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if settle is not None and data.endswith(b"\n\n"):
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")


MAX_BATCH = 64  # commands per connection: their answers stay well inside HAProxy's buffer


def batch_answers(data: str, count: int) -> list[str]:
    """The answers of ``count`` commands sent after ``prompt`` on one connection.

    In interactive mode HAProxy ends every answer with a blank line and the prompt
    ``"> "`` (the ``prompt`` command's own answer is empty), so the text splits
    on ``"\n> "`` into the prompt's answer, then one per command, each with its
    final newline, then nothing (``quit`` answers nothing).  Anything else is an
    error: the caller reloads instead.
    """
    parts = data.split("\n> ")
    if len(parts) != count + 2 or parts[0].strip() or parts[-1]:
        raise RuntimeUpdateError(f"unexpected Runtime API answer to {count} commands: "
                                 f"{data.strip()[:200]!r}")
    return parts[1:count + 1]


class RuntimeAPI:
    """HAProxy's Runtime API on its stats socket: one connection per command, or per
    batch of commands (:meth:`commands`)."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, command: str) -> str:
        try:
            for attempt in range(20):
                try:
                    return unix_command(self.socket_path, command, self.timeout, settle=None)
                except (BlockingIOError, ConnectionRefusedError):
                    if attempt == 19:  # the CLI's accept queue stayed full
                        raise
                    time.sleep(0.01 * (attempt + 1))
            raise OSError("no attempt left")
        except OSError as err:
            raise RuntimeUpdateError(f"runtime socket {self.socket_path}: {err}") from None

    def commands(self, commands: Sequence[str]) -> list[str]:
        """Send ``commands`` on one connection each ``MAX_BATCH``, their answers in order.

        One round trip instead of one per command: on a loaded machine every trip
        waits for HAProxy and then for us to be scheduled, and an added server
        takes three commands.  HAProxy runs them in order and answers each even
        when one fails, so the caller checks every answer.
        """
        if any("\n" in command for command in commands):
            raise RuntimeUpdateError("a Runtime API command cannot hold a newline")
        answers: list[str] = []
        for first in range(0, len(commands), MAX_BATCH):
            chunk = list(commands[first:first + MAX_BATCH])
            # quit: HAProxy closes the connection once the last answer is written
            payload = "\n".join(["prompt", *chunk, "quit"])
            answers += batch_answers(self.command(payload), len(chunk))
        return answers

    def available(self) -> bool:
        try:
            return "Name:" in self.command("show info")
        except RuntimeUpdateError:
            return False

    def server_connections(self, backend: str) -> dict[str, int]:
        """Connections in use per server of ``backend`` (``show servers conn``)."""
        counts: dict[str, int] = {}
        for line in self.command(f"show servers conn {backend}").splitlines():
            words = line.split()
            if len(words) > 7 and not line.startswith("#") and "/" in words[0]:
                name = words[0].split("/", 1)[1]
                with contextlib.suppress(ValueError):
                    counts[name] = int(words[6]) + int(words[12] if len(words) > 12 else 0)
        return counts


def _empty(answer: str) -> bool:
    """HAProxy answers nothing to most commands it carried out, an error otherwise."""
    return not answer.strip()


def _moved(answer: str) -> bool:
    return "changed" in answer or "no need" in answer


def _registered(answer: str) -> bool:
    return "New server registered" in answer


def send_commands(api: RuntimeAPI, commands: Sequence[str]) -> list[str]:
    """``commands`` in one batch when ``api`` takes batches, else one at a time."""
    batch = getattr(api, "commands", None)
    if callable(batch):
        return batch(commands)
    return [api.command(command) for command in commands]


@dataclass
class _Batch:
    """Commands sent together, each with what its answer must look like."""

    commands: list[str] = field(default_factory=list)
    checks: list[tuple[str, Callable[[str], bool]]] = field(default_factory=list)

    def add(self, command: str, what: str, ok: Callable[[str], bool] = _empty) -> None:
        self.commands.append(command)
        self.checks.append((what, ok))

    def send(self, api: RuntimeAPI) -> None:
        """One round trip; RuntimeUpdateError names the first command refused."""
        if not self.commands:
            return
        for (what, ok), answer in zip(self.checks, send_commands(api, self.commands),
                                      strict=True):
            if not ok(answer):
                first = (answer.strip().splitlines() or [""])[0]
                raise RuntimeUpdateError(f"{what}: {first[:200]}")


@dataclass
class _Draining:
    backend: str
    line: ServerLine
    deadline: float
    give_up: float


@dataclass
class RuntimeStats:
    added: int = 0
    removed: int = 0
    readdressed: int = 0
    draining: int = 0


class RuntimeApplier:
    """Applies :class:`RuntimePlan`s and finishes draining servers in the background."""

    def __init__(self, api: RuntimeAPI, drain_timeout: float = 10.0,
                 tick: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.drain_timeout = drain_timeout
        self.tick = tick
        self.clock = clock
        self.stats = RuntimeStats()
        self._draining: dict[tuple[str, str], _Draining] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Monotonic times the last apply sent its first command and had its last answer:
        # the sync log shows them, so a slow event is split into its steps.
        self.last_span: tuple[float, float] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._drain_loop, name="runtime-drain",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def forget(self) -> None:
        """After a reload the new worker has none of the draining servers."""
        with self._lock:
            self._draining.clear()
            self.stats.draining = 0

    def apply(self, plan: RuntimePlan) -> None:
        """Make the running HAProxy match the plan; RuntimeUpdateError if refused."""
        with self._lock:
            started = time.monotonic()
            try:
                self._apply(plan)
            finally:
                self.last_span = (started, time.monotonic())

    def _apply(self, plan: RuntimePlan) -> None:
        """The plan in two batches (one round trip each): every change but removals,
        then, once all of those were taken, the removals, so a backend never goes
        without a server in between (a refusal makes the caller reload instead)."""
        changes = _Batch()
        dynamic_cookie = set(plan.dynamic_cookie)
        for backend, line in plan.readdress:
            target = f"{backend}/{line.name}"
            changes.add(f"set server {target} addr {line.host} port {line.port}",
                        f"set server {target} addr", _moved)
        for backend, line in plan.reweight:
            target = f"{backend}/{line.name}"
            changes.add(f"set server {target} weight {server_weight(line)}", f"weight {target}")
        for backend in sorted({backend for backend, _ in plan.readdress} & dynamic_cookie):
            self._dynamic_cookies(changes, backend)  # a moved server's cookie follows its address
        added = 0
        for backend, line in plan.add:
            target = f"{backend}/{line.name}"
            waiting = self._draining.pop((backend, line.name), None)
            if waiting is not None and waiting.line == line:
                changes.add(f"set server {target} state ready", f"ready {target}")
                added += 1
                continue
            if waiting is not None:  # same name, other settings: finish removal first
                self._remove_now(waiting)
            args = " ".join(line.args)
            changes.add(f"add server {target} {line.address} {args}".rstrip(),
                        f"add server {target}", _registered)
            if backend in dynamic_cookie:  # before it takes traffic: no cookieless replies
                self._dynamic_cookies(changes, backend)
            if has_check(line):
                changes.add(f"enable health {target}", f"health {target}")
            if "disabled" not in line.args:
                changes.add(f"enable server {target}", f"enable {target}")
            added += 1
        # Map additions before deletions: a split's integer map is a list HAProxy walks in
        # order and ``add map`` appends, so the old ranges answer until they go and the
        # new ones from then on; no draw ever finds no range.
        for path, key, value in plan.map_set:
            changes.add(f"set map {path} {key} {value}", f"set map {key}")
        for path, key, value in plan.map_add:
            changes.add(f"add map {path} {key} {value}", f"add map {key}")
        for path, key, _value in plan.map_del:
            changes.add(f"del map {path} {key}", f"del map {key}")
        changes.send(self.api)
        self.stats.added += added
        removals = _Batch()
        for backend, line in plan.remove:
            target = f"{backend}/{line.name}"
            removals.add(f"set server {target} state drain", f"drain {target}")
        removals.send(self.api)
        for backend, line in plan.remove:
            now = self.clock()
            self._draining[(backend, line.name)] = _Draining(
                backend, line, now + self.drain_timeout, now + self.drain_timeout + 60)
        self.stats.draining = len(self._draining)

    @staticmethod
    def _dynamic_cookies(batch: _Batch, backend: str) -> None:
        """Have HAProxy compute the cookie of servers added or moved live.

        A sticky backend with ``cookie ... dynamic`` hashes each server's cookie
        from its ``dynamic-cookie-key`` and address, but HAProxy 2.6 does so only
        at startup and on this command, which recomputes every server of the
        backend to the value a reload would give.
        """
        batch.add(f"enable dynamic-cookie backend {backend}", f"dynamic cookies of {backend}")

    def _remove_now(self, item: _Draining) -> bool:
        target = f"{item.backend}/{item.line.name}"
        self.api.command(f"set server {target} state maint")
        out = self.api.command(f"del server {target}")
        if "deleted" in out.lower() or "no such server" in out.lower():
            self.stats.removed += 1
            return True
        log.debug("del server %s deferred: %s", target, out.strip()[:200])
        return False

    def drain_step(self) -> None:
        """Delete drained servers whose connections are gone or whose time is up.

        Connections are asked for without holding the lock, so a sync applying
        an event is not kept waiting; each deletion holds it, so a server being
        re-added (same name) is never deleted halfway through.
        """
        with self._lock:
            if not self._draining:
                return
            now = self.clock()
            by_backend: dict[str, list[_Draining]] = collections.defaultdict(list)
            for item in self._draining.values():
                by_backend[item.backend].append(item)
        for backend, items in by_backend.items():
            try:
                counts = self.api.server_connections(backend)
            except RuntimeUpdateError as err:
                log.debug("draining: %s", err)
                return
            for item in items:
                busy = counts.get(item.line.name, 0) > 0
                if busy and now < item.deadline:
                    continue
                with self._lock:
                    key = (backend, item.line.name)
                    if self._draining.get(key) is not item:
                        continue  # re-added (or forgotten) meanwhile
                    try:
                        done = self._remove_now(item)
                    except RuntimeUpdateError as err:
                        log.debug("draining: %s", err)
                        done = False
                    if done or now >= item.give_up:
                        if not done:
                            log.warning("server %s/%s stays in maintenance: HAProxy did not "
                                        "let it be deleted", backend, item.line.name)
                        self._draining.pop(key, None)
                    self.stats.draining = len(self._draining)

    def _drain_loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.drain_step()
            except Exception:  # never let the drainer die
                log.exception("draining servers failed")
