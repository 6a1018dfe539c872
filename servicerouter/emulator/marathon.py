"""A Marathon REST API emulator, so servicerouter can be tested, demoed and benchmarked
without a Mesos cluster.

Why it exists: servicerouter's only input is Marathon (``/v2/apps?embed=apps.tasks``,
the ``/v2/events`` SSE stream and HTTP event callbacks). A faithful stand-in that speaks
the same shapes (see ``tests/fixtures/marathon``), emits the same events and can fail
like Marathon does (outages, auth, TLS) lets every layer be exercised for real, over
HTTP, in-process or as a separate process (``python -m servicerouter.emulator.marathon``).

Design notes (one module per part, this one ties them together):

* Stdlib only. One ``ThreadingHTTPServer`` (``server``); handler threads are tracked so
  ``stop()`` leaves nothing behind.
* Reads must stay cheap at 10,000 apps / 100,000 tasks: the ``store`` keeps per-app JSON
  fragments and caches the joined bodies until the next change.
* App definitions and their deployments (``apps``) and tasks, health and readiness
  (``tasks``) are the only writers; both emit the events Marathon would.
* Events are serialized once and fanned out through queues (``events``), so a mutation
  never waits on the network.
* Marathon's HTTP API (``http_api``) and the ``/_emulator/`` control API
  (``control_api``) are thin faces over the same writers; the command line is ``cli``.
* A test or a driver process changes the state through the Python API below or the
  control endpoints; tasks are never "run", they are declared.
"""

from __future__ import annotations

import copy
import logging
import ssl
import sys
import threading
from types import TracebackType
from typing import Any

from servicerouter.emulator.apps import AppDefinitions
from servicerouter.emulator.control_api import ControlApi
from servicerouter.emulator.dcos_login import DcosLogin
from servicerouter.emulator.deployments import Deployments, Launcher
from servicerouter.emulator.events import DEFAULT_MAX_OUTSTANDING_EVENTS, EventBus
from servicerouter.emulator.http_api import MarathonHttpApi
from servicerouter.emulator.payloads import (
    EmulatorError,
    normalize_app_id,
    now_iso,
)
from servicerouter.emulator.payloads import ip_addresses as ip_address_entries
from servicerouter.emulator.server import EmulatorServer
from servicerouter.emulator.store import AppStore, records_from_state
from servicerouter.emulator.tasks import TaskStates, check_tasks

__all__ = ["MarathonEmulator"]

log = logging.getLogger(__name__)


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
                 max_outstanding_events: int = DEFAULT_MAX_OUTSTANDING_EVENTS,
                 service_account: tuple[str, bytes | str] | None = None,
                 launcher: Launcher | None = None) -> None:
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self.keepalive_interval = keepalive_interval
        self.max_outstanding_events = max_outstanding_events
        self._store = AppStore()
        self._unavailable: tuple[bool, int] = (False, 503)
        self._bus = EventBus(callback_timeout)
        self._tasks = TaskStates(self._store, self.emit)
        # With a launcher, apps' tasks follow their instances and deployments take time
        # (servicerouter.emulator.deployments); without one tasks are only declared.
        self._deployments = Deployments(self._store, self._tasks, self.emit)
        self._deployments.launcher = launcher
        self._deployments.set_health = self.set_task_health
        self._definitions = AppDefinitions(self._store, self._tasks, self.emit,
                                           self._deployments)
        # DC/OS login: (uid, RSA public key PEM) of the one service account accepted;
        # Marathon calls then need a token from POST /acs/api/v1/auth/login.
        self.dcos_login = DcosLogin(*service_account) if service_account else None
        self._http = MarathonHttpApi(self, self._store, self._definitions, self._bus,
                                     ControlApi(self, self._store), host=host,
                                     credentials=credentials, dcos_login=self.dcos_login)
        self._server: EmulatorServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.request_log: list[tuple[str, str]] = []
        """(method, request target incl. query string) of every request received."""
        self.apps_answer_delay = 0.0
        """Seconds a full ``/v2/apps`` answer is held after it was made: a big
        Marathon's answer takes that long to arrive and describes the state when it
        was asked, so events sent meanwhile are newer than the answer."""
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

    @property
    def serving(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._server is not None

    def start(self) -> MarathonEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = EmulatorServer((self._host, self._port), self._http.handle,
                                      self._ssl_context)
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
        self._deployments.stop()
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
        with self._store.lock:
            return [copy.deepcopy(self._store.records[i].document(True))
                    for i in self._store.ids()]

    def app(self, app_id: str) -> dict[str, Any]:
        """A deep copy of one app with its tasks; KeyError if missing."""
        with self._store.lock:
            return copy.deepcopy(self._store.record(app_id).document(True))

    @property
    def subscriptions(self) -> list[str]:
        """Registered event callback URLs."""
        return self._bus.callbacks

    @property
    def sse_clients(self) -> int:
        """Number of attached ``/v2/events`` streams."""
        return self._bus.client_count

    @property
    def unavailable(self) -> tuple[bool, int]:
        """The simulated outage: (on, status), see :meth:`set_unavailable`."""
        return self._unavailable

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
            _, stored, _ = self._definitions.upsert(app, partial=False, client_ip="127.0.0.1",
                                                    uri=f"/v2/apps{app_id}")
        except EmulatorError as exc:
            raise ValueError(exc.body["message"]) from None
        return stored

    def remove_app(self, app_id: str) -> None:
        """Delete an app (KeyError if missing); its tasks are killed.

        Emits ``deployment_info``, a ``status_update_event`` TASK_KILLED per task,
        ``app_terminated_event`` and ``deployment_success``.
        """
        self._definitions.delete(app_id)

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
            spec["ipAddresses"] = ip_address_entries(ip_addresses)
        return self._tasks.add(app_id, spec, healthy)

    def kill_task(self, app_id: str, task_id: str) -> None:
        """Remove a task (KeyError if missing); emits ``status_update_event`` TASK_KILLED.

        With a launcher the task's process is stopped and, as Marathon, replaced."""
        if self._deployments.launcher is not None:
            self._definitions.kill_tasks([task_id], scale=False)
            return
        self._tasks.kill(app_id, task_id)

    def set_task_health(self, app_id: str, task_id: str, alive: bool) -> None:
        """Set a task's health check result; emits ``health_status_changed_event``
        when ``alive`` changes (as Marathon, not on every check)."""
        self._tasks.set_health(app_id, task_id, alive)
        self._deployments.check(normalize_app_id(app_id))

    def deployments(self) -> list[dict[str, Any]]:
        """The deployments in progress, as ``GET /v2/deployments`` lists them."""
        return self._deployments.listing()

    def kill_tasks(self, task_ids: list[str], *, scale: bool) -> dict[str, Any]:
        """``POST /v2/tasks/delete[?scale=true]`` (KeyError for an unknown task id)."""
        return self._definitions.kill_tasks(task_ids, scale=scale)

    def set_tasks(self, app_id: str, tasks: list[dict[str, Any]], *, quiet: bool = False) -> None:
        """Replace all tasks of an app; missing fields are filled in as ``add_task`` does.

        Unless ``quiet``, emits one ``status_update_event`` per removed (TASK_KILLED),
        added or changed task.
        """
        try:
            check_tasks(tasks)
        except EmulatorError as exc:
            raise ValueError(exc.body["message"]) from None
        self._tasks.set_all(app_id, tasks, quiet=quiet)

    def set_readiness(self, app_id: str, results: list[dict[str, Any]]) -> None:
        """Set an app's ``readinessCheckResults`` (``[]``: none pending), quietly.

        As Marathon, they are served only to ``embed=apps.readiness`` (list) or
        ``embed=app.readiness`` (one app). Marathon reports them for the tasks of a
        running deployment and announces progress with deployment events; emit
        those with :meth:`emit` if a test needs them.
        """
        self._tasks.set_readiness(app_id, results)

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
        self._store.replace_all(records_from_state(body))

    def set_unavailable(self, flag: bool, status: int = 503) -> None:
        """Simulate an outage: every ``/v2`` and ``/ping`` request answers ``status``
        (``status=0``: the connection is closed without an answer). Open event streams
        are cut when the outage starts. ``/_emulator`` keeps working."""
        self._unavailable = (bool(flag), int(status))
        if flag:
            self._bus.detach_all()


if __name__ == "__main__":
    from servicerouter.emulator.cli import main

    sys.exit(main())
