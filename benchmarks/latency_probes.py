"""What event_latency's client does: requests through HAProxy until the change shows,
the emulator's event stream read here (the floor's delivery time), one Runtime API
round trip (the floor's command).  Every request can be timed (``record``), so a slow
trial's last step tells slow requests apart from the rest.  ``--busy``'s spinning
processes are started and stopped here too.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable


def answer(port: int) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().strip().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


Record = Callable[[float, float], None]  # (request start, its duration): see Run.probes
# Pause between probe requests.  Unpaced, the probe loop made ~1,000 requests a second
# (340 in one 313 ms trial): a whole core of this 2-core machine for the client, HAProxy
# and the backend, and the GIL of this process, whose emulator thread then sent the
# trial's event up to 270 ms late.  A pause can only make a trial look slower (by at
# most PACE), never faster.
PACE = 0.002


def timed(record: Record | None, ask: Callable[[], str | None]) -> str | None:
    """``ask()``, its start and duration given to ``record``: a slow trial's last step
    ("seen") is then told apart into slow requests through HAProxy and the rest."""
    start = time.monotonic()
    try:
        return ask()
    finally:
        if record is not None:
            record(start, time.monotonic() - start)


def first_answer(port: int, name: str, timeout: float = 20.0,
                 record: Record | None = None) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if timed(record, lambda: answer(port)) == name:
            return time.monotonic()
        time.sleep(PACE)
    raise TimeoutError(f"{name} never answered on port {port}")


def only_answers(port: int, name: str, timeout: float = 20.0, run: int = 3,
                 record: Record | None = None) -> float:
    """When requests started going to ``name`` alone.

    While two servers share a round-robin backend, answers alternate; so the
    second of consecutive answers from ``name`` is the first request the other
    server no longer got (``run`` in a row confirm it).
    """
    deadline = time.monotonic() + timeout
    streak: list[float] = []
    while time.monotonic() < deadline:
        at = time.monotonic()
        streak = streak + [at] if timed(record, lambda: answer(port)) == name else []
        if len(streak) == run:
            return streak[1]
        time.sleep(PACE)
    raise TimeoutError(f"{port} never answered only {name}")


class EventClock:
    """Receives the emulator's SSE stream here: when each event was delivered."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.conn.request("GET", "/v2/events", headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.seen: dict[tuple, float] = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    key = (event.get("eventType"), event.get("taskId"),
                           event.get("taskStatus"), event.get("alive"))
                    with self.cond:
                        if key[0] == "api_post_event":  # the trial's key: last one wins
                            self.seen.pop(key, None)
                        self.seen[key] = time.monotonic()
                        self.cond.notify_all()
        except (OSError, ValueError, http.client.HTTPException):
            pass

    def delivered(self, key: tuple, timeout: float = 10.0) -> float:
        with self.cond:
            self.cond.wait_for(lambda: key in self.seen, timeout)
            return self.seen.pop(key) if key[0] == "api_post_event" else self.seen[key]


def runtime_round_trip(sock_path: str, command: str) -> float:
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(sock_path)
        sock.sendall(command.encode() + b"\n")
        while sock.recv(65536):
            pass
    return time.monotonic() - start


def vhost_answer(port: int, host: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        body = response.read().strip().decode()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def first_vhost_answer(port: int, host: str, name: str, timeout: float = 20.0,
                       record: Record | None = None) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if timed(record, lambda: vhost_answer(port, host)) == name:
            return time.monotonic()
        time.sleep(PACE)
    raise TimeoutError(f"{host} never answered {name} on port {port}")


def start_busy(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that only spin on a CPU (at the default priority): the load of
    a machine shared with other jobs, made on purpose so a run can be repeated."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()
