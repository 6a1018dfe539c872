"""A Marathon REST API emulator, so servicerouter can be tested, demoed and benchmarked
without a Mesos cluster.

Why it exists: servicerouter's only input is Marathon (``/v2/apps?embed=apps.tasks``,
the ``/v2/events`` SSE stream and HTTP event callbacks). A faithful stand-in that speaks
the same shapes (see ``shared/fixtures/marathon``), emits the same events and can fail
like Marathon does (outages, auth, TLS) lets every layer be exercised for real, over
HTTP, in-process or as a separate process (``python -m servicerouter.emulator.marathon``).

Design notes:

* Stdlib only. One ``ThreadingHTTPServer``; handler threads are tracked so ``stop()``
  leaves nothing behind.
* Reads must stay cheap at 10,000 apps / 100,000 tasks: every app keeps its own JSON
  fragments (with and without tasks, and its ``/v2/tasks`` entries), the full bodies are
  joined from those fragments and cached until the next state change. A change
  re-serializes only the app it touched.
* Events are serialized once and fanned out through queues: one per SSE client and one
  for the callback delivery thread, so a mutation never waits on the network.
* A test or a driver process changes the state through the Python API or the
  ``/_emulator/`` control endpoints; tasks are never "run", they are declared.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MarathonEmulator", "main"]

log = logging.getLogger(__name__)

SERVICE_PORT_RANGE = (10000, 20000)
"""Marathon's default range for automatically assigned service ports (``port: 0``)."""

DEFAULT_MAX_OUTSTANDING_EVENTS = 10_000
"""Events buffered per SSE client before it is dropped as too slow. Marathon does the
same (``--event_stream_max_outstanding_messages``, default 50); ours is lenient."""

_REQUEST_LOG_LIMIT = 100_000
_RUNNING_STATES = frozenset({"TASK_RUNNING"})
_STAGED_STATES = frozenset({"TASK_STAGING", "TASK_STARTING"})


def now_iso() -> str:
    """Current UTC time the way Marathon writes it: ``2017-07-19T17:34:41.967Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def normalize_app_id(app_id: str) -> str:
    """Marathon ids are absolute paths without a trailing slash: ``a/b/`` -> ``/a/b``."""
    if not isinstance(app_id, str) or not app_id.strip("/"):
        raise ValueError(f"invalid app id: {app_id!r}")
    return "/" + app_id.strip("/")


def task_id_prefix(app_id: str) -> str:
    """The part of a task id before the dot: ``/tools/docker/registry`` -> ``tools_docker_registry``."""
    return app_id.lstrip("/").replace("/", "_")


def service_ports(app: dict[str, Any]) -> list[int]:
    """The app's service ports, whichever Marathon shape declares them.

    Container port mappings (1.5+ ``container.portMappings``, then
    ``container.docker.portMappings``) win, as in Marathon; then ``portDefinitions``
    (1.x), then ``ports`` (0.x).
    """
    container = app.get("container") or {}
    for mappings in (container.get("portMappings"), (container.get("docker") or {}).get("portMappings")):
        if mappings:
            return [int(m.get("servicePort") or 0) for m in mappings]
    if app.get("portDefinitions"):
        return [int(p.get("port") or 0) for p in app["portDefinitions"]]
    return [int(p) for p in app.get("ports") or []]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _ip_addresses(values: Iterable[str]) -> list[dict[str, str]]:
    out = []
    for value in values:
        try:
            protocol = "IPv6" if ipaddress.ip_address(value).version == 6 else "IPv4"
        except ValueError:
            protocol = "IPv4"
        out.append({"ipAddress": value, "protocol": protocol})
    return out


def _task_state(task: dict[str, Any]) -> str:
    """A task's state; pre-1.x payloads have none (a listed, started task is running)."""
    state = task.get("state")
    if state:
        return str(state)
    return "TASK_RUNNING" if task.get("startedAt") else "TASK_STAGING"


class EmulatorError(Exception):
    """A request the emulator refuses, carried to the HTTP layer as status + message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, **extra}


# --------------------------------------------------------------------------- state


@dataclass
class _AppRecord:
    """One app: its definition (without tasks), its tasks by id, and cached JSON."""

    app: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # readinessCheckResults: state, not definition; served only when asked for.
    readiness: list[dict[str, Any]] = field(default_factory=list)
    _fragments: dict[tuple[bool, bool], bytes] = field(default_factory=dict)
    _tasks_json: bytes | None = None

    def invalidate(self) -> None:
        self._fragments.clear()
        self._tasks_json = None

    def _with_counts(self) -> dict[str, Any]:
        staged = running = healthy = unhealthy = 0
        for task in self.tasks.values():
            state = _task_state(task)
            running += state in _RUNNING_STATES
            staged += state in _STAGED_STATES
            results = task.get("healthCheckResults") or []
            if results:
                if all(r.get("alive") for r in results):
                    healthy += 1
                else:
                    unhealthy += 1
        out = dict(self.app)
        out.update(tasksStaged=staged, tasksRunning=running, tasksHealthy=healthy,
                   tasksUnhealthy=unhealthy)
        out.setdefault("deployments", [])
        return out

    def document(self, embed_tasks: bool, embed_readiness: bool = False) -> dict[str, Any]:
        """The app as Marathon shows it (shares nested objects: copy before mutating).

        ``readinessCheckResults`` only with ``embed_readiness`` (Marathon's
        ``embed=apps.readiness`` / ``app.readiness``), then always, ``[]`` when none.
        """
        out = self._with_counts()
        if embed_tasks:
            out["tasks"] = list(self.tasks.values())
        if embed_readiness:
            out["readinessCheckResults"] = list(self.readiness)
        return out

    def fragment(self, embed_tasks: bool, embed_readiness: bool = False) -> bytes:
        """The app's JSON, cached until the record changes."""
        key = (embed_tasks, embed_readiness)
        body = self._fragments.get(key)
        if body is None:
            body = self._fragments[key] = _dumps(self.document(embed_tasks, embed_readiness))
        return body

    def task_entries(self) -> list[dict[str, Any]]:
        """Tasks as ``/v2/tasks`` lists them: with ``appId`` and the app's ``servicePorts``."""
        ports = service_ports(self.app)
        return [{**t, "appId": self.app["id"], "servicePorts": ports} for t in self.tasks.values()]

    def tasks_fragment(self) -> bytes:
        """Comma-joined ``/v2/tasks`` entries of this app (empty when it has none)."""
        if self._tasks_json is None:
            self._tasks_json = b",".join(_dumps(t) for t in self.task_entries())
        return self._tasks_json


@dataclass
class _SseClient:
    """One attached ``/v2/events`` stream."""

    remote: str
    event_types: frozenset[str]
    events: queue.Queue[bytes | None] = field(
        default_factory=lambda: queue.Queue(DEFAULT_MAX_OUTSTANDING_EVENTS))

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class _EventBus:
    """Fans serialized events out to SSE clients and HTTP callback subscribers.

    ``publish`` only enqueues; the callback thread POSTs, and each SSE handler thread
    writes its own stream, so a publisher never blocks on a slow consumer.
    """

    def __init__(self, callback_timeout: float) -> None:
        self._lock = threading.Lock()
        self._clients: list[_SseClient] = []
        self._callbacks: list[str] = []
        self._outbox: queue.Queue[tuple[tuple[str, ...], bytes] | None] = queue.Queue()
        self._timeout = callback_timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._outbox = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_loop, name="emulator-callbacks",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        self.detach_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None

    # callbacks
    @property
    def callbacks(self) -> list[str]:
        with self._lock:
            return list(self._callbacks)

    def subscribe(self, url: str) -> None:
        with self._lock:
            if url not in self._callbacks:
                self._callbacks.append(url)

    def unsubscribe(self, url: str) -> bool:
        with self._lock:
            if url in self._callbacks:
                self._callbacks.remove(url)
                return True
            return False

    # SSE
    def attach(self, client: _SseClient) -> None:
        with self._lock:
            self._clients.append(client)

    def detach(self, client: _SseClient) -> bool:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
                return True
            return False

    def detach_all(self) -> None:
        """End every SSE stream (stop, simulated outage)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            self._close_client(client)

    @staticmethod
    def _close_client(client: _SseClient) -> None:
        try:
            client.events.put_nowait(None)
        except queue.Full:
            # The writer is far behind; make room for the end marker.
            try:
                while True:
                    client.events.get_nowait()
            except queue.Empty:
                pass
            client.events.put_nowait(None)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: dict[str, Any]) -> None:
        """Serialize once, enqueue for every interested SSE client and every callback."""
        data = _dumps(event)
        event_type = str(event.get("eventType", ""))
        sse = b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"
        slow: list[_SseClient] = []
        with self._lock:
            for client in self._clients:
                if client.wants(event_type):
                    try:
                        client.events.put_nowait(sse)
                    except queue.Full:
                        slow.append(client)
            for client in slow:
                self._clients.remove(client)
            callbacks = tuple(self._callbacks)
        for client in slow:
            log.warning("dropping slow event stream client %s", client.remote)
            self._close_client(client)
        if callbacks and not self._stopping.is_set():
            self._outbox.put((callbacks, data))

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stopping.is_set():
                return
            urls, data = item
            for url in urls:
                if self._stopping.is_set():
                    return
                self._post(url, data)

    def _post(self, url: str, data: bytes) -> None:
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # Marathon logs failed callback deliveries and carries on.
            log.warning("event callback to %s failed: %s", url, exc)


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so ``stop()`` can end them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: MarathonEmulator,
                 ssl_context: ssl.SSLContext | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self.ssl_context = ssl_context
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (can be slow)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address),
                                  name="emulator-conn", daemon=True)
        with self._conn_lock:
            self._conn_threads.add(thread)
        thread.start()

    def _run(self, request: socket.socket, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            with self._conn_lock:
                self._connections.add(request)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the server
            log.exception("error serving %s", client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)
                self._conn_threads.discard(threading.current_thread())
            self.shutdown_request(request)

    def close_connections(self) -> None:
        """Abort every open connection (idle keep-alive ones and event streams)."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout: float) -> None:
        with self._conn_lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the emulator; speaks HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "MarathonEmulator/1.0"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server
    body: bytes = b""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.emulator._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.emulator._handle(self, "POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.emulator._handle(self, "PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.emulator._handle(self, "DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self.server.emulator._handle(self, "PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.emulator._handle(self, "HEAD")

    # helpers used by the emulator
    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_body(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, _dumps(obj), headers=headers)


_CONTROL_TASKS = re.compile(r"^(?P<app>/.+)/tasks(?:/(?P<task>[^/]+)(?P<health>/health)?)?$")


# --------------------------------------------------------------------------- emulator


class MarathonEmulator:
    """An in-memory Marathon serving the REST API, the event stream and callbacks.

    Use as a context manager (``with MarathonEmulator(apps) as m:``) or
    ``start()``/``stop()``; after ``stop()`` it can be started again on the same port.
    Errors: unknown apps/tasks raise KeyError, invalid input ValueError. All state methods are thread-safe; every change
    invalidates the cached bodies and emits the events Marathon would emit.
    """

    def __init__(self, apps: list[dict[str, Any]] | None = None, host: str = "127.0.0.1",
                 port: int = 0, credentials: tuple[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None, keepalive_interval: float = 5.0,
                 callback_timeout: float = 2.0,
                 max_outstanding_events: int = DEFAULT_MAX_OUTSTANDING_EVENTS) -> None:
        self._host = host
        self._port = port
        self._credentials = credentials
        self._ssl_context = ssl_context
        self.keepalive_interval = keepalive_interval
        self.max_outstanding_events = max_outstanding_events
        self._lock = threading.RLock()
        self._apps: dict[str, _AppRecord] = {}
        self._sorted_ids: list[str] | None = None
        self._body_cache: dict[str, bytes] = {}
        self._unavailable: tuple[bool, int] = (False, 503)
        self._bus = _EventBus(callback_timeout)
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self.request_log: list[tuple[str, str]] = []
        """(method, request target incl. query string) of every request received."""
        if apps:
            self.load_state({"apps": apps})

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:34567`` (``https`` with an SSL context)."""
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one before ``start()``)."""
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> MarathonEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = _Server((self._host, self._port), self, self._ssl_context)
        self._bus.start()
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="emulator-server", daemon=True)
        self._serve_thread.start()
        log.info("Marathon emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Close event streams, stop serving, stop callback delivery, join threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self._bus.stop()
        server.shutdown()
        server.server_close()
        server.close_connections()
        server.join_threads(timeout=5)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
            self._serve_thread = None
        self._port = server.server_address[1]

    def __enter__(self) -> MarathonEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ state: reads

    def apps(self) -> list[dict[str, Any]]:
        """Deep copies of every app, sorted by id, with ``tasks``."""
        with self._lock:
            return [copy.deepcopy(self._apps[i].document(True)) for i in self._ids()]

    def app(self, app_id: str) -> dict[str, Any]:
        """A deep copy of one app with its tasks; KeyError if missing."""
        with self._lock:
            return copy.deepcopy(self._record(app_id).document(True))

    @property
    def subscriptions(self) -> list[str]:
        """Registered event callback URLs."""
        return self._bus.callbacks

    @property
    def sse_clients(self) -> int:
        """Number of attached ``/v2/events`` streams."""
        return self._bus.client_count

    # ------------------------------------------------------------------ state: writes

    def put_app(self, app: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an app; keeps its tasks unless ``app`` has ``tasks``.

        Emits ``api_post_event``, ``deployment_info`` and ``deployment_success``.
        Returns a copy of the stored app (with tasks).
        """
        if not isinstance(app, dict):
            raise ValueError("an app must be a dict")
        app_id = normalize_app_id(app.get("id", ""))
        try:
            _, stored, _ = self._upsert(app, partial=False, client_ip="127.0.0.1",
                                        uri=f"/v2/apps{app_id}")
        except EmulatorError as exc:
            raise ValueError(exc.body["message"]) from None
        return stored

    def remove_app(self, app_id: str) -> None:
        """Delete an app (KeyError if missing); its tasks are killed.

        Emits ``deployment_info``, a ``status_update_event`` TASK_KILLED per task,
        ``app_terminated_event`` and ``deployment_success``.
        """
        self._delete(app_id)

    def add_task(self, app_id: str, host: str, ports: list[int], *, task_id: str | None = None,
                 state: str = "TASK_RUNNING", ip_addresses: list[str] | None = None,
                 healthy: bool | None = None) -> dict[str, Any]:
        """Declare a task of an existing app; emits ``status_update_event``.

        With ``healthy`` set, the task gets ``healthCheckResults`` and a
        ``health_status_changed_event`` follows. Returns a copy of the task.
        """
        spec: dict[str, Any] = {"host": host, "ports": list(ports), "state": state}
        if task_id is not None:
            spec["id"] = task_id
        if ip_addresses is not None:
            spec["ipAddresses"] = _ip_addresses(ip_addresses)
        with self._lock:
            record = self._record(app_id)
            task = self._new_task(record, spec)
            if task["id"] in record.tasks:
                raise ValueError(f"task {task['id']} already exists")
            if healthy is not None:
                task["healthCheckResults"] = [self._health_result(task, healthy, None)]
            record.tasks[task["id"]] = task
            self._changed(record)
            self._emit_status(record, task, task["state"])
            if healthy is not None:
                self._emit_health(record, task, healthy)
            return copy.deepcopy(task)

    def kill_task(self, app_id: str, task_id: str) -> None:
        """Remove a task (KeyError if missing); emits ``status_update_event`` TASK_KILLED."""
        with self._lock:
            record = self._record(app_id)
            task = record.tasks.pop(task_id, None)
            if task is None:
                raise KeyError(f"Task '{task_id}' does not exist")
            self._changed(record)
            self._emit_status(record, task, "TASK_KILLED")

    def set_task_health(self, app_id: str, task_id: str, alive: bool) -> None:
        """Set a task's health check result; emits ``health_status_changed_event``
        when ``alive`` changes (as Marathon, not on every check)."""
        with self._lock:
            record = self._record(app_id)
            task = record.tasks.get(task_id)
            if task is None:
                raise KeyError(f"Task '{task_id}' does not exist")
            previous = task.get("healthCheckResults") or []
            was_alive = all(r.get("alive") for r in previous) if previous else None
            old = previous[0] if previous else None
            new_task = {**task, "healthCheckResults": [self._health_result(task, alive, old)]}
            record.tasks[task_id] = new_task
            self._changed(record)
            if was_alive is None or was_alive != alive:
                self._emit_health(record, new_task, alive)

    def set_tasks(self, app_id: str, tasks: list[dict[str, Any]], *, quiet: bool = False) -> None:
        """Replace all tasks of an app; missing fields are filled in as ``add_task`` does.

        Unless ``quiet``, emits one ``status_update_event`` per removed (TASK_KILLED),
        added or changed task.
        """
        try:
            self._check_tasks(tasks)
        except EmulatorError as exc:
            raise ValueError(exc.body["message"]) from None
        with self._lock:
            record = self._record(app_id)
            self._replace_tasks(record, tasks, quiet=quiet)
            self._changed(record)

    def set_readiness(self, app_id: str, results: list[dict[str, Any]]) -> None:
        """Set an app's ``readinessCheckResults`` (``[]``: none pending), quietly.

        As Marathon, they are served only to ``embed=apps.readiness`` (list) or
        ``embed=app.readiness`` (one app). Marathon reports them for the tasks of a
        running deployment and announces progress with deployment events; emit
        those with :meth:`emit` if a test needs them.
        """
        results = _readiness_list(results)
        with self._lock:
            record = self._record(app_id)
            record.readiness = results
            self._changed(record)

    def emit(self, event: dict[str, Any]) -> None:
        """Send a raw event to SSE clients and callbacks (``timestamp`` added if missing)."""
        if not isinstance(event, dict) or not event.get("eventType"):
            raise ValueError("an event needs an eventType")
        event = dict(event)
        event.setdefault("timestamp", now_iso())
        self._bus.publish(event)

    def load_state(self, body: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Replace every app from a ``/v2/apps?embed=apps.tasks`` body, quietly (no events).

        Apps and tasks are kept as given (only ids are normalized and tasks get their
        ``appId``), so serving the state back reproduces the document.
        """
        apps = body.get("apps") if isinstance(body, dict) else body
        if not isinstance(apps, list):
            raise ValueError('expected {"apps": [...]}')
        records: dict[str, _AppRecord] = {}
        for raw in apps:
            if not isinstance(raw, dict):
                raise ValueError("every app must be an object")
            app = copy.deepcopy(raw)
            app["id"] = normalize_app_id(app.get("id", ""))
            tasks = app.pop("tasks", None) or []
            if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
                raise ValueError(f"tasks of {app['id']} must be a list of objects")
            readiness = _readiness_list(app.pop("readinessCheckResults", None) or [])
            record = _AppRecord(app, readiness=readiness)
            for task in tasks:
                task.setdefault("appId", app["id"])
                if not task.get("id"):
                    task["id"] = f"{task_id_prefix(app['id'])}.{uuid.uuid1()}"
                record.tasks[task["id"]] = task
            records[app["id"]] = record
        with self._lock:
            self._apps = records
            self._sorted_ids = None
            self._body_cache.clear()

    def set_unavailable(self, flag: bool, status: int = 503) -> None:
        """Simulate an outage: every ``/v2`` and ``/ping`` request answers ``status``
        (``status=0``: the connection is closed without an answer). Open event streams
        are cut when the outage starts. ``/_emulator`` keeps working."""
        self._unavailable = (bool(flag), int(status))
        if flag:
            self._bus.detach_all()

    # ------------------------------------------------------------------ internals: state

    def _ids(self) -> list[str]:
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._apps)
        return self._sorted_ids

    def _record(self, app_id: str) -> _AppRecord:
        try:
            return self._apps[normalize_app_id(app_id)]
        except (KeyError, ValueError):
            raise KeyError(f"App '{app_id}' does not exist") from None

    def _changed(self, record: _AppRecord | None = None, *, structure: bool = False) -> None:
        if record is not None:
            record.invalidate()
        if structure:
            self._sorted_ids = None
        self._body_cache.clear()

    def _used_service_ports(self, skip: str) -> set[int]:
        return {p for i, r in self._apps.items() if i != skip for p in service_ports(r.app)}

    def _assign_service_ports(self, app: dict[str, Any]) -> None:
        """Give every ``servicePort``/``port`` of 0 a free port from Marathon's range."""
        if 0 not in service_ports(app):
            return
        used = self._used_service_ports(app["id"]) | set(service_ports(app))
        candidates = (p for p in range(*SERVICE_PORT_RANGE) if p not in used)

        def free() -> int:
            port = next(candidates, None)
            if port is None:
                raise EmulatorError(422, "no free service port in {}-{}".format(*SERVICE_PORT_RANGE))
            return port
        container = app.get("container") or {}
        for mappings, key in ((container.get("portMappings"), "servicePort"),
                              ((container.get("docker") or {}).get("portMappings"), "servicePort"),
                              (app.get("portDefinitions"), "port")):
            if mappings:
                for mapping in mappings:
                    if not mapping.get(key):
                        mapping[key] = free()
                return
        if app.get("ports"):
            app["ports"] = [p or free() for p in app["ports"]]

    def _upsert(self, app: Any, *, partial: bool, client_ip: str, uri: str,
                ) -> tuple[bool, dict[str, Any], dict[str, str]]:
        """Create or update; returns (created, stored app copy, deployment result)."""
        if not isinstance(app, dict):
            raise EmulatorError(422, "Object is not valid",
                                details=[{"path": "/", "errors": ["error.expected.jsobject"]}])
        try:
            app_id = normalize_app_id(app.get("id", ""))
        except ValueError:
            raise EmulatorError(422, "Object is not valid",
                                details=[{"path": "/id", "errors": ["error.path.missing"]}]
                                ) from None
        new = copy.deepcopy(app)
        new["id"] = app_id
        new.pop("readinessCheckResults", None)  # AppInfo state, never part of a definition
        explicit_tasks = new.pop("tasks", None)
        if explicit_tasks is not None:
            self._check_tasks(explicit_tasks)
        for key in ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy"):
            new.pop(key, None)
        version = now_iso()
        with self._lock:
            existing = self._apps.get(app_id)
            if existing is not None and partial:
                new = {**copy.deepcopy(existing.app), **new}
            for key, default in (("instances", 1), ("env", {}), ("labels", {}),
                                 ("healthChecks", [])):
                new.setdefault(key, default)
            new["deployments"] = []
            self._assign_service_ports(new)
            if existing is None:
                new["version"] = version
                new["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": version}
                action = "StartApplication"
            else:
                old_info = existing.app.get("versionInfo") or {}
                config_keys = set(new) | set(existing.app)
                config_keys -= {"instances", "version", "versionInfo", "deployments"}
                scaling_only = all(new.get(k) == existing.app.get(k) for k in config_keys)
                new["version"] = version
                new["versionInfo"] = {
                    "lastScalingAt": version,
                    "lastConfigChangeAt": (old_info.get("lastConfigChangeAt", version)
                                           if scaling_only else version),
                }
                action = "ScaleApplication" if scaling_only else "RestartApplication"
            record = existing or _AppRecord(new)
            original = existing.document(False) if existing else None
            record.app = new
            if existing is None:
                self._apps[app_id] = record
            ports = service_ports(new)
            for task_id, task in list(record.tasks.items()):
                if "servicePorts" in task and task["servicePorts"] != ports:
                    record.tasks[task_id] = {**task, "servicePorts": ports}
            self._changed(record, structure=existing is None)

            plan = self._plan(app_id, action, original, record.document(False), version)
            self.emit({"eventType": "api_post_event", "clientIp": client_ip, "uri": uri,
                       "appDefinition": copy.deepcopy(new)})
            self.emit({"eventType": "deployment_info", "plan": plan,
                       "currentStep": plan["steps"][0]})
            if explicit_tasks is not None:
                self._replace_tasks(record, explicit_tasks, quiet=False)
                self._changed(record)
            self.emit({"eventType": "deployment_success", "id": plan["id"], "plan": plan})
            stored = copy.deepcopy(record.document(True))
        return existing is None, stored, {"deploymentId": plan["id"], "version": version}

    def _delete(self, app_id: str) -> dict[str, str]:
        with self._lock:
            record = self._record(app_id)
            app_id = record.app["id"]
            version = now_iso()
            plan = self._plan(app_id, "StopApplication", record.document(False), None, version)
            self.emit({"eventType": "deployment_info", "plan": plan,
                       "currentStep": plan["steps"][0]})
            del self._apps[app_id]
            self._changed(record, structure=True)
            for task in record.tasks.values():
                self._emit_status(record, task, "TASK_KILLED")
            self.emit({"eventType": "app_terminated_event", "appId": app_id})
            self.emit({"eventType": "deployment_success", "id": plan["id"], "plan": plan})
        return {"deploymentId": plan["id"], "version": version}

    @staticmethod
    def _plan(app_id: str, action: str, original: dict[str, Any] | None,
              target: dict[str, Any] | None, version: str) -> dict[str, Any]:
        """A deployment plan; groups hold only the affected app (Marathon sends the
        whole tree, which would make every event as large as the state)."""
        def group(app: dict[str, Any] | None) -> dict[str, Any]:
            apps = [copy.deepcopy(app)] if app else []
            return {"id": "/", "apps": apps, "groups": [], "dependencies": [],
                    "version": version}
        step = {"actions": [{"action": action, "app": app_id}]}
        return {"id": str(uuid.uuid4()), "original": group(original), "target": group(target),
                "steps": [step], "version": version}

    def _new_task(self, record: _AppRecord, spec: dict[str, Any]) -> dict[str, Any]:
        """A Marathon-shaped task from a partial one (host, ports, state...)."""
        app = record.app
        now = now_iso()
        state = spec.get("state") or "TASK_RUNNING"
        host = str(spec.get("host") or "")
        task: dict[str, Any] = {
            "id": spec.get("id") or f"{task_id_prefix(app['id'])}.{uuid.uuid1()}",
            "appId": app["id"],
            "host": host,
            "ports": [int(p) for p in spec.get("ports") or []],
            "servicePorts": service_ports(app),
            "slaveId": f"{uuid.uuid5(uuid.NAMESPACE_DNS, host or 'localhost')}-S0",
            "stagedAt": now,
            "startedAt": None if state in _STAGED_STATES else now,
            "version": app.get("version") or now,
            "state": state,
            "ipAddresses": _ip_addresses([host]) if _is_ip(host) else [],
        }
        for key, value in spec.items():
            if key == "ipAddresses" and value and isinstance(value[0], str):
                value = _ip_addresses(value)
            task[key] = value
        task["appId"] = app["id"]
        return task

    def _replace_tasks(self, record: _AppRecord, tasks: list[dict[str, Any]], *,
                       quiet: bool) -> None:
        new = {}
        for spec in tasks:
            task = self._new_task(record, spec)
            new[task["id"]] = task
        old, record.tasks = record.tasks, new
        if quiet:
            return
        for task_id, task in old.items():
            if task_id not in new:
                self._emit_status(record, task, "TASK_KILLED")
        watched = ("host", "ports", "state", "ipAddresses")
        for task_id, task in new.items():
            before = old.get(task_id)
            if before is None or any(before.get(k) != task.get(k) for k in watched):
                self._emit_status(record, task, _task_state(task))

    @staticmethod
    def _check_tasks(tasks: Any) -> None:
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise EmulatorError(422, "tasks must be a list of objects")

    @staticmethod
    def _health_result(task: dict[str, Any], alive: bool,
                       old: dict[str, Any] | None) -> dict[str, Any]:
        now = now_iso()
        old = old or {}
        failures = 0 if alive else int(old.get("consecutiveFailures") or 0) + 1
        return {
            "alive": alive,
            "consecutiveFailures": failures,
            "firstSuccess": old.get("firstSuccess") or (now if alive else None),
            "lastFailure": old.get("lastFailure") if alive else now,
            "lastSuccess": now if alive else old.get("lastSuccess"),
            "lastFailureCause": old.get("lastFailureCause") if alive else "emulated failure",
            "taskId": task["id"],
        }

    def _emit_status(self, record: _AppRecord, task: dict[str, Any], status: str) -> None:
        self.emit({
            "eventType": "status_update_event",
            "slaveId": task.get("slaveId"),
            "taskId": task["id"],
            "taskStatus": status,
            "message": "",
            "appId": record.app["id"],
            "host": task.get("host"),
            "ipAddresses": task.get("ipAddresses") or [],
            "ports": task.get("ports") or [],
            "version": task.get("version") or record.app.get("version"),
        })

    def _emit_health(self, record: _AppRecord, task: dict[str, Any], alive: bool) -> None:
        prefix, _, suffix = task["id"].partition(".")
        self.emit({
            "eventType": "health_status_changed_event",
            "appId": record.app["id"],
            "taskId": task["id"],
            "instanceId": f"{prefix}.marathon-{suffix}" if suffix else task["id"],
            "version": task.get("version") or record.app.get("version"),
            "alive": alive,
        })

    # ------------------------------------------------------------------ internals: bodies

    def _apps_body(self, embed_tasks: bool, embed_readiness: bool = False) -> bytes:
        key = "apps" + ("+tasks" if embed_tasks else "") + ("+readiness" if embed_readiness else "")
        with self._lock:
            body = self._body_cache.get(key)
            if body is None:
                parts = [self._apps[i].fragment(embed_tasks, embed_readiness)
                         for i in self._ids()]
                body = b'{"apps":[' + b",".join(parts) + b"]}"
                self._body_cache[key] = body
            return body

    def _tasks_body(self) -> bytes:
        with self._lock:
            body = self._body_cache.get("tasks")
            if body is None:
                parts = [f for f in (self._apps[i].tasks_fragment() for i in self._ids()) if f]
                body = b'{"tasks":[' + b",".join(parts) + b"]}"
                self._body_cache["tasks"] = body
            return body

    # ------------------------------------------------------------------ internals: HTTP

    def _log_request(self, method: str, target: str) -> None:
        if len(self.request_log) >= _REQUEST_LOG_LIMIT:
            del self.request_log[: _REQUEST_LOG_LIMIT // 2]
        self.request_log.append((method, target))

    def _authorized(self, handler: _Handler) -> bool:
        if self._credentials is None:
            return True
        header = handler.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        want_user, want_password = self._credentials
        return (hmac.compare_digest(user.encode(), want_user.encode())
                & hmac.compare_digest(password.encode(), want_password.encode()))

    def _handle(self, handler: _Handler, method: str) -> None:
        """Entry point of every request: log, outage, auth, route, map errors."""
        self._log_request(method, handler.path)
        try:
            # Read the body first, whatever the answer, so keep-alive stays in sync.
            handler.body = handler.read_body()
        except (ValueError, OSError):
            handler.close_connection = True
            handler.send_json(400, {"message": "Unreadable request body"})
            return
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path == "/_emulator" or path.startswith("/_emulator/"):
                self._control(handler, method, path)
                return
            unavailable, status = self._unavailable
            if unavailable:
                if status <= 0:
                    handler.close_connection = True
                    try:
                        handler.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                handler.send_json(status, {"message": "Marathon is unavailable (emulated)"})
                return
            if not self._authorized(handler):
                handler.send_json(401, {"message": "Invalid username or password."},
                                  headers={"WWW-Authenticate": 'Basic realm="Mesosphere"'})
                return
            self._route(handler, method, path, params)
        except EmulatorError as exc:
            handler.send_json(exc.status, exc.body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception as exc:  # noqa: BLE001 - answer 500 like a server would
            log.exception("error handling %s %s", method, handler.path)
            handler.close_connection = True
            try:
                handler.send_json(500, {"message": f"internal error: {exc}"})
            except OSError:
                pass

    @staticmethod
    def _json_body(handler: _Handler) -> Any:
        try:
            return json.loads(handler.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise EmulatorError(400, f"Invalid JSON: {exc}") from None

    def _route(self, handler: _Handler, method: str, path: str,
               params: dict[str, list[str]]) -> None:
        path = path.rstrip("/") or "/"
        if path == "/ping":
            self._allow(method, "GET", "HEAD")
            handler.send_body(200, b"pong", "text/plain; charset=utf-8")
        elif path == "/v2/apps":
            self._route_apps(handler, method, params)
        elif path.startswith("/v2/apps/"):
            self._route_app(handler, method, path[len("/v2/apps"):], params)
        elif path == "/v2/tasks":
            self._allow(method, "GET", "HEAD")
            handler.send_body(200, self._tasks_for(params))
        elif path == "/v2/eventSubscriptions":
            self._route_subscriptions(handler, method, params)
        elif path == "/v2/events":
            self._allow(method, "GET")
            self._serve_events(handler, params)
        elif path == "/v2/deployments":
            self._allow(method, "GET", "HEAD")
            handler.send_json(200, [])
        elif path == "/v2/leader":
            self._allow(method, "GET", "HEAD")
            handler.send_json(200, {"leader": f"{self._host}:{self.port}"})
        elif path == "/v2/info":
            self._allow(method, "GET", "HEAD")
            handler.send_json(200, {
                "name": "marathon", "version": "1.5.0-emulator", "leader": f"{self._host}:{self.port}",
                "frameworkId": "marathon-emulator", "elected": True,
                "event_subscriber": {"type": "http_callback",
                                     "http_endpoints": self.subscriptions},
            })
        else:
            raise EmulatorError(404, f"Unknown path: {path}")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise EmulatorError(405, "HTTP 405 Method Not Allowed")

    def _tasks_for(self, params: dict[str, list[str]]) -> bytes:
        status = {s.lower() for v in params.get("status", []) for s in v.split(",") if s}
        if not status:
            return self._tasks_body()
        wanted = {f"TASK_{s.upper()}" for s in status}
        with self._lock:
            tasks = [t for i in self._ids() for t in self._apps[i].task_entries()
                     if _task_state(t) in wanted]
            return _dumps({"tasks": tasks})

    def _route_apps(self, handler: _Handler, method: str, params: dict[str, list[str]]) -> None:
        if method in ("GET", "HEAD"):
            embed = _embeds(params)
            embed_tasks = bool(embed & {"tasks", "failures"})
            embed_readiness = "readiness" in embed
            id_filter = (params.get("id") or [""])[0]
            if not id_filter:
                handler.send_body(200, self._apps_body(embed_tasks, embed_readiness))
                return
            with self._lock:
                parts = [self._apps[i].fragment(embed_tasks, embed_readiness)
                         for i in self._ids() if id_filter in i]
            handler.send_body(200, b'{"apps":[' + b",".join(parts) + b"]}")
        elif method == "POST":
            app = self._json_body(handler)
            if isinstance(app, dict) and app.get("id"):
                with self._lock:
                    if normalize_app_id(app["id"]) in self._apps:
                        raise EmulatorError(
                            409, f"An app with id [{normalize_app_id(app['id'])}] already exists.")
                    _, stored, result = self._upsert(
                        app, partial=False, client_ip=handler.client_address[0],
                        uri="/v2/apps")
            else:
                self._upsert(app, partial=False, client_ip="", uri="")  # raises 422
                return
            stored["deployments"] = [{"id": result["deploymentId"]}]
            handler.send_json(201, stored, headers={"Location": f"{self.url}/v2/apps{stored['id']}"})
        else:
            raise EmulatorError(405, "HTTP 405 Method Not Allowed")

    def _route_app(self, handler: _Handler, method: str, rest: str,
                   params: dict[str, list[str]]) -> None:
        """``/v2/apps/{id}``, ``/v2/apps/{id}/tasks`` and ``/v2/apps/{id}/tasks/{taskId}``."""
        match = _CONTROL_TASKS.match(rest)
        if match and match.group("health") is None:
            with self._lock:
                record = self._apps.get(normalize_app_id(match.group("app")))
            if record is not None:
                task_id = match.group("task")
                if task_id is None:
                    self._allow(method, "GET", "HEAD")
                    with self._lock:
                        tasks = record.task_entries()
                    handler.send_json(200, {"tasks": tasks})
                    return
                self._allow(method, "DELETE")
                try:
                    with self._lock:
                        task = copy.deepcopy(record.tasks[task_id])
                    self.kill_task(record.app["id"], task_id)
                except KeyError:
                    raise EmulatorError(404, f"Task '{task_id}' does not exist") from None
                handler.send_json(200, {"task": task})
                return
        app_id = normalize_app_id(rest)
        if method in ("GET", "HEAD"):
            # Marathon always embeds one app's tasks (for compatibility); readiness
            # only when asked for.
            readiness = "readiness" in _embeds(params)
            with self._lock:
                record = self._apps.get(app_id)
                body = _dumps({"app": record.document(True, readiness)}) if record else None
            if body is None:
                raise EmulatorError(404, f"App '{app_id}' does not exist")
            handler.send_body(200, body)
        elif method in ("PUT", "PATCH"):
            app = self._json_body(handler)
            if not isinstance(app, dict):
                self._upsert(app, partial=True, client_ip="", uri="")  # raises 422
                return
            app = {**app, "id": app_id}
            partial = method == "PATCH" or (params.get("partialUpdate") or ["true"])[0] != "false"
            created, stored, result = self._upsert(
                app, partial=partial, client_ip=handler.client_address[0],
                uri=f"/v2/apps{app_id}")
            headers = {"Location": f"{self.url}/v2/apps{app_id}"} if created else None
            handler.send_json(201 if created else 200, result, headers=headers)
        elif method == "DELETE":
            try:
                result = self._delete(app_id)
            except KeyError:
                raise EmulatorError(404, f"App '{app_id}' does not exist") from None
            handler.send_json(200, result)
        else:
            raise EmulatorError(405, "HTTP 405 Method Not Allowed")

    def _route_subscriptions(self, handler: _Handler, method: str,
                             params: dict[str, list[str]]) -> None:
        if method in ("GET", "HEAD"):
            handler.send_json(200, {"callbackUrls": self.subscriptions})
            return
        self._allow(method, "POST", "DELETE")
        url = (params.get("callbackUrl") or [""])[0]
        if not url:
            raise EmulatorError(400, "callbackUrl is required")
        client_ip = handler.client_address[0]
        if method == "POST":
            self._bus.subscribe(url)
            event_type = "subscribe_event"
        else:
            self._bus.unsubscribe(url)
            event_type = "unsubscribe_event"
        event = {"callbackUrl": url, "clientIp": client_ip, "eventType": event_type,
                 "timestamp": now_iso()}
        self.emit(event)
        handler.send_json(200, event)

    def _serve_events(self, handler: _Handler, params: dict[str, list[str]]) -> None:
        """``/v2/events``: a chunked ``text/event-stream`` until the client or we hang up."""
        types = frozenset(t for v in params.get("event_type", []) for t in v.split(",") if t)
        remote = handler.client_address[0]
        client = _SseClient(remote=remote, event_types=types,
                            events=queue.Queue(self.max_outstanding_events))
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        chunked = handler.request_version != "HTTP/1.0"
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def write(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        with self._lock:  # attach and announce atomically: "attached" comes first
            self._bus.attach(client)
            self.emit({"eventType": "event_stream_attached", "remoteAddress": remote})
        try:
            while True:
                try:
                    item = client.events.get(timeout=self.keepalive_interval)
                except queue.Empty:
                    if self._server is None:
                        break  # stopped while this stream was being set up
                    write(b":\n\n")
                    continue
                if item is None:
                    break
                write(item)
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
        except (OSError, ValueError):
            pass  # client went away
        finally:
            if self._bus.detach(client):
                self.emit({"eventType": "event_stream_detached", "remoteAddress": remote})

    # ------------------------------------------------------------------ control API

    def _control(self, handler: _Handler, method: str, path: str) -> None:
        """``/_emulator/...``: drive the state from another process (no auth)."""
        rest = path[len("/_emulator"):].rstrip("/")
        try:
            if rest == "/apps" and method == "POST":
                handler.send_json(200, self.put_app(self._expect_dict(self._json_body(handler))))
            elif rest == "/apps" and method == "GET":
                handler.send_json(200, {"apps": self.apps()})
            elif rest == "/state" and method == "POST":
                body = self._json_body(handler)
                try:
                    self.load_state(body)
                except ValueError as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, {"apps": len(self._apps)})
            elif rest == "/outage" and method == "POST":
                body = self._expect_dict(self._json_body(handler))
                self.set_unavailable(bool(body.get("unavailable", True)),
                                     int(body.get("status", 503)))
                handler.send_json(200, {"unavailable": self._unavailable[0],
                                        "status": self._unavailable[1]})
            elif rest == "/events" and method == "POST":
                try:
                    self.emit(self._expect_dict(self._json_body(handler)))
                except ValueError as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, {})
            elif rest == "/requests" and method == "GET":
                handler.send_json(200, {"requests": [list(r) for r in self.request_log]})
            elif rest.startswith("/apps/"):
                self._control_app(handler, method, rest[len("/apps"):])
            else:
                raise EmulatorError(404, f"Unknown control path: {method} {path}")
        except KeyError as exc:
            raise EmulatorError(404, str(exc.args[0]) if exc.args else "not found") from None

    @staticmethod
    def _expect_dict(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise EmulatorError(422, "expected a JSON object")
        return body

    def _control_app(self, handler: _Handler, method: str, rest: str) -> None:
        if rest.endswith("/readiness") and method == "PUT":
            body = self._json_body(handler)
            results = body.get("readinessCheckResults") if isinstance(body, dict) else body
            try:
                self.set_readiness(rest[: -len("/readiness")], results)
            except ValueError as exc:
                raise EmulatorError(422, str(exc)) from None
            handler.send_json(200, {})
            return
        match = _CONTROL_TASKS.match(rest)
        if match is None:
            if method == "DELETE":
                self.remove_app(rest)
                handler.send_json(200, {})
            elif method == "GET":
                handler.send_json(200, {"app": self.app(rest)})
            else:
                raise EmulatorError(405, "HTTP 405 Method Not Allowed")
            return
        app_id, task_id = match.group("app"), match.group("task")
        if task_id is None:
            if method == "POST":
                body = self._expect_dict(self._json_body(handler))
                if "host" not in body:
                    raise EmulatorError(422, "a task needs a host")
                try:
                    task = self.add_task(
                        app_id, str(body["host"]), list(body.get("ports") or []),
                        task_id=body.get("id") or body.get("task_id"),
                        state=body.get("state") or "TASK_RUNNING",
                        ip_addresses=body.get("ip_addresses") or body.get("ipAddresses"),
                        healthy=body.get("healthy"))
                except (TypeError, ValueError) as exc:
                    raise EmulatorError(422, str(exc)) from None
                handler.send_json(200, task)
            elif method == "PUT":
                body = self._json_body(handler)
                tasks = body.get("tasks") if isinstance(body, dict) else body
                self._check_tasks(tasks)
                self.set_tasks(app_id, tasks, quiet=bool(isinstance(body, dict)
                                                         and body.get("quiet")))
                handler.send_json(200, {})
            else:
                raise EmulatorError(405, "HTTP 405 Method Not Allowed")
        elif match.group("health"):
            self._allow(method, "POST", "PUT")
            body = self._expect_dict(self._json_body(handler))
            self.set_task_health(app_id, task_id, bool(body.get("alive", True)))
            handler.send_json(200, {})
        else:
            self._allow(method, "DELETE")
            self.kill_task(app_id, task_id)
            handler.send_json(200, {})


def _readiness_list(results: Any) -> list[dict[str, Any]]:
    """A copy of ``readinessCheckResults``; ValueError unless a list of objects."""
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError("readinessCheckResults must be a list of objects")
    return copy.deepcopy(results)


_EMBED_PREFIXES = ("group.apps.", "apps.", "app.")


def _embeds(params: dict[str, list[str]]) -> set[str]:
    """``embed`` values without their prefix, as Marathon's InfoEmbedResolver reads them
    (``apps.tasks``, ``app.tasks`` and ``tasks`` are the same)."""
    found = set()
    for value in params.get("embed", []):
        for item in value.split(","):
            item = item.strip()
            prefix = next((p for p in _EMBED_PREFIXES if item.startswith(p)), "")
            found.add(item[len(prefix):])
    return found


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- CLI


def _write_port_file(path: str, port: int) -> None:
    """Write atomically so a polling parent never reads a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m servicerouter.emulator.marathon``: serve in the foreground until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m servicerouter.emulator.marathon",
        description="Marathon REST API emulator (apps, tasks, events, callbacks).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="bind port (default 0: any free)")
    parser.add_argument("--state", metavar="FILE.json",
                        help="a /v2/apps?embed=apps.tasks body to start with")
    parser.add_argument("--port-file", metavar="PATH", help="write the bound port here")
    parser.add_argument("--keepalive-interval", type=float, default=5.0,
                        help="seconds between SSE keep-alive comments (default 5)")
    parser.add_argument("--credentials", metavar="USER:PASSWORD",
                        help="require HTTP basic auth on /v2 and /ping")
    parser.add_argument("--ssl-cert", metavar="PEM",
                        help="serve HTTPS with this PEM (certificate + key)")
    parser.add_argument("--ssl-key", metavar="PEM", help="private key, if not in --ssl-cert")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s: %(message)s")

    credentials = None
    if args.credentials:
        user, sep, password = args.credentials.partition(":")
        if not sep:
            parser.error("--credentials must be USER:PASSWORD")
        credentials = (user, password)
    context = None
    if args.ssl_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.ssl_cert, args.ssl_key)

    emulator = MarathonEmulator(host=args.host, port=args.port, credentials=credentials,
                                ssl_context=context, keepalive_interval=args.keepalive_interval)
    if args.state:
        with open(args.state, encoding="utf-8") as fh:
            emulator.load_state(json.load(fh))

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        emulator.start()
        if args.port_file:
            _write_port_file(args.port_file, emulator.port)
        print(f"listening on {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
