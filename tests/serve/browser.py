"""A headless Chromium driven over the DevTools protocol, for the dashboard's tests.

No new dependency: Chromium's ``--remote-debugging-pipe`` speaks the DevTools
protocol on file descriptors 3 (commands in) and 4 (answers and events out),
one JSON message per NUL-terminated chunk.  We open one page target, attach
to it in "flat" mode (commands carry a ``sessionId``) and use a handful of
commands: ``Page.navigate``, ``Runtime.evaluate`` (read the DOM, fill and
submit forms) and ``Page.captureScreenshot``.

The browser runs with a fresh ``--user-data-dir`` and is stopped by its PID
(SIGTERM, then SIGKILL), like every other process the tests start.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--disable-dev-shm-usage", "--no-proxy-server",
         "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, or did not answer in time."""


def chromium_path() -> str | None:
    """Debian's chromium, or one on PATH; None when absent (the tests skip)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _high_fd(fd: int) -> int:
    """``fd`` duplicated to a number above 9 (the original is closed)."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium with one page; ``with Browser() as b: b.goto(url)``."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 30.0) -> None:
        self.binary = binary or chromium_path() or CHROMIUM
        self.width = width
        self.height = height
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="sr-chromium-")
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._session = ""

    # ----------------------------------------------------------------- process

    def start(self) -> Self:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The child's ends move above 9 first: a pipe end that is already fd 3 or 4
        # would be closed by the renumbering below.
        to_browser_r = _high_fd(to_browser_r)
        from_browser_w = _high_fd(from_browser_w)
        # The child needs the pipe ends as fds 3 and 4 exactly: a shell moves them
        # there (pass_fds keeps numbers, it cannot renumber) and then execs Chromium
        # (bash: dash takes single-digit fds only).
        script = f'exec 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- ' \
                 f'{from_browser_w}>&-; exec "$@"'
        args = [*FLAGS, f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, "chromium", self.binary, *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_loop, name="cdp", daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self._session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                   "mobile": False})
        return self

    def stop(self) -> None:
        """Browser.close, then SIGTERM by PID, SIGKILL if it lingers; the profile goes too."""
        proc = self.proc
        if proc is not None and proc.poll() is None and not self._closed:
            try:  # asked first: Chromium then ends its renderer and GPU processes itself
                self.send("Browser.close", session=False, timeout=5)
                proc.wait(timeout=5)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                pass
        self._closed = True
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (getattr(self, "_out", None), getattr(self, "_in", None)):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- protocol

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """One command; its ``result``, or BrowserError with Chromium's message."""
        with self._cond:
            self._next_id += 1
            message_id = self._next_id
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while message_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"{method}: no answer from Chromium")
                self._cond.wait(left)
            answer = self._answers.pop(message_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def _wait_event(self, method: str, since: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(e.get("method") == method for e in self._events[since:]):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no {method} within {timeout:.0f}s")
                self._cond.wait(left)

    # ----------------------------------------------------------------- page

    def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        with self._cond:
            mark = len(self._events)
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigate {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", mark, self.timeout)

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (JSON-serialisable), errors raised."""
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed: {text}")
        return result.get("result", {}).get("value")

    def submit(self, form_selector: str, fields: dict[str, str],
               button: str | None = None) -> None:
        """Fill ``fields`` (name -> value) of a form, click its button, wait for the page."""
        with self._cond:
            mark = len(self._events)
        form, values = json.dumps(form_selector), json.dumps(fields)
        chosen = json.dumps(button or "")
        script = (
            f"(() => {{ const f = document.querySelector({form});"
            f" if (!f) throw new Error('no form ' + {form});"
            f" for (const [k, v] of Object.entries({values})) {{"
            "   const el = f.elements.namedItem(k);"
            "   if (!el) throw new Error('no field ' + k); el.value = v; }"
            f" const b = {chosen} ? f.querySelector({chosen}) : null;"
            " if (b) b.click(); else f.requestSubmit(); return true; })()"
        )
        self.evaluate(script)
        self._wait_event("Page.loadEventFired", mark, self.timeout)

    def text(self, selector: str = "body") -> str:
        """The visible text of the first element matching ``selector`` ("" if none)."""
        return str(self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText"))

    def screenshot(self, path: str | os.PathLike[str], full_page: bool = False) -> Path:
        """A PNG of the page (the viewport, or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"],
                                "height": min(size["height"], 8000), "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
        return target


__all__ = ["Browser", "BrowserError", "chromium_path"]
