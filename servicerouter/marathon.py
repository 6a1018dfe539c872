"""Talking to Marathon: the source stage.

A source gives the raw body of ``/v2/apps?embed=apps.tasks`` (bytes) and the
decoded app list.  Two kinds: :class:`MarathonClient` over HTTP(S) with
failover across the ``--marathon`` hosts in order, and :class:`SnapshotSource`
reading a saved body from a ``file:`` path (offline render, demo, tests).
Fetching and parsing are separate steps so each can be timed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import requests

log = logging.getLogger("servicerouter.marathon")

try:  # orjson parses Marathon's large bodies several times faster
    import orjson

    def _loads(body: bytes) -> Any:
        return orjson.loads(body)
except ImportError:  # pragma: no cover - depends on the environment

    def _loads(body: bytes) -> Any:
        return json.loads(body)


APPS_PATH = "/v2/apps?embed=apps.tasks"


class MarathonError(Exception):
    """Marathon could not be reached or answered something unusable."""


class MarathonNotFound(MarathonError):
    """Every host answered 404: the thing asked for (an app) does not exist."""


class Source(Protocol):
    """Where apps come from (HTTP Marathon, a snapshot file, an emulator)."""

    def fetch_apps_body(self) -> bytes: ...

    @property
    def current(self) -> str: ...


def parse_apps(body: bytes) -> list[Any]:
    """Decode an apps body; MarathonError if it is not ``{"apps": [...]}``."""
    try:
        document = _loads(body)
    except ValueError as err:
        raise MarathonError(f"Marathon answered invalid JSON: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("apps"), list):
        raise MarathonError("Marathon answered JSON without an 'apps' list")
    return document["apps"]


@dataclass(frozen=True)
class ClientSettings:
    """How to reach Marathon: timeouts, auth and TLS.

    ``auth`` is kept out of ``repr`` so settings can be logged; ``verify`` is
    True (system CAs), a CA bundle path (``--marathon-ca-cert``) or False
    (``--marathon-insecure``); ``client_cert`` is a PEM path holding cert and
    key, or a (cert, key) pair, for mutual TLS.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    auth: tuple[str, str] | None = field(default=None, repr=False)
    verify: bool | str = True  # False, True or a CA bundle path
    client_cert: tuple[str, str] | str | None = None


def parse_credentials(text: str, where: str) -> tuple[str, str]:
    """``user:password`` -> (user, password); the error never repeats the text."""
    user, sep, password = text.strip("\r\n").partition(":")
    if not sep or not user:
        raise ValueError(f"{where}: expected USER:PASSWORD")
    return user, password


def read_credential_file(path: str) -> tuple[str, str]:
    """The first line of ``path`` as ``user:password`` (marathon-lb's credential file)."""
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the Marathon credential file {path}: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    if mode & 0o077:
        log.warning("Marathon credential file %s is readable by others (mode %o); "
                    "chmod 600 it", path, mode & 0o777)
    return parse_credentials(line, f"credential file {path}")


class MarathonClient:
    """Marathon's REST API with failover across hosts, tried in order."""

    def __init__(self, hosts: Sequence[str], settings: ClientSettings | None = None) -> None:
        if not hosts:
            raise ValueError("at least one Marathon host is needed")
        self.hosts = [h.rstrip("/") for h in hosts]
        self.settings = settings or ClientSettings()
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers.update({"Accept": "application/json"})
        if self.settings.auth:
            self._session.auth = self.settings.auth
        self._session.verify = self.settings.verify
        if self.settings.client_cert:
            self._session.cert = self.settings.client_cert
        self._current = self.hosts[0]
        if self.settings.verify is False and any(h.startswith("https:") for h in self.hosts):
            warn_insecure()

    @property
    def current(self) -> str:
        """The host that answered last (for status pages), without credentials."""
        return _redact(self._current)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """First 2xx answer from the hosts in order; MarathonError if none."""
        failures: list[str] = []
        not_found = 0
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for host in self.hosts:
            url = host + path
            try:
                response = self._session.request(method, url, timeout=timeout, **kwargs)
            except requests.exceptions.SSLError as err:
                reason = tls_reason(err)
            except requests.exceptions.Timeout:
                reason = "timed out"
            except requests.exceptions.ConnectionError as err:
                reason = f"connection failed: {_connection_cause(err)}"
            except requests.exceptions.RequestException as err:
                reason = f"request failed: {_first_line(err)}"
            except OSError as err:  # e.g. an unreadable CA bundle or client key
                reason = f"request failed: {err.strerror or err}"
            else:
                if 200 <= response.status_code < 300:
                    self._current = host
                    return response
                reason = f"HTTP {response.status_code} {_message(response)}"
                not_found += response.status_code == 404
                if response.status_code == 401:
                    reason += " (check the Marathon credentials)"
            log.error("marathon %s %s: %s", method, _redact(url), reason)
            failures.append(f"{_redact(host)}: {reason}")
        if not_found == len(self.hosts):
            raise MarathonNotFound(f"not found: {path}")
        raise MarathonError("no Marathon host answered: " + "; ".join(failures))

    def fetch_apps_body(self) -> bytes:
        return self.request("GET", APPS_PATH).content

    def fetch_app(self, app_id: str) -> dict[str, Any]:
        """One app with its tasks (``/v2/apps/{id}?embed=app.tasks``)."""
        body = self.request("GET", f"/v2/apps{app_id}?embed=app.tasks").content
        try:
            document = _loads(body)
        except ValueError as err:
            raise MarathonError(f"Marathon answered invalid JSON: {err}") from None
        if not isinstance(document, dict) or not isinstance(document.get("app"), dict):
            raise MarathonError("Marathon answered JSON without an 'app' object")
        return document["app"]

    def add_subscriber(self, callback_url: str) -> None:
        self.request("POST", "/v2/eventSubscriptions", params={"callbackUrl": callback_url})

    def remove_subscriber(self, callback_url: str) -> None:
        self.request("DELETE", "/v2/eventSubscriptions", params={"callbackUrl": callback_url})

    def close(self) -> None:
        self._session.close()


class SnapshotSource:
    """A saved ``/v2/apps?embed=apps.tasks`` body: ``file:/path`` or ``file:///path``."""

    def __init__(self, location: str) -> None:
        self.path = snapshot_path(location)

    @property
    def current(self) -> str:
        return "file:" + self.path

    def fetch_apps_body(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except OSError as err:
            log.error("cannot read Marathon snapshot %s: %s", self.path, err.strerror)
            raise MarathonError(f"cannot read snapshot {self.path}: {err.strerror}") from None

    def close(self) -> None:
        pass


def snapshot_path(location: str) -> str:
    parsed = urlparse(location)
    if parsed.scheme != "file":
        raise ValueError(f"not a file: location: {location}")
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file: URL with a remote host is not supported: {location}")
    path = unquote(parsed.path) if location.startswith("file://") else location[len("file:"):]
    return os.path.expanduser(path)


def make_source(hosts: Sequence[str], settings: ClientSettings | None = None) -> MarathonClient | SnapshotSource:
    """A snapshot for a single ``file:`` location, else an HTTP client."""
    if len(hosts) == 1 and hosts[0].startswith("file:"):
        return SnapshotSource(hosts[0])
    if any(h.startswith("file:") for h in hosts):
        raise ValueError("a file: snapshot cannot be mixed with Marathon hosts")
    return MarathonClient(hosts, settings)


def warn_insecure() -> None:
    """--marathon-insecure: say it once, loudly, instead of urllib3 on every request."""
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    log.warning("--marathon-insecure: Marathon's TLS certificate is NOT verified; anyone "
                "on the network path can impersonate Marathon and rewrite the routing")


def tls_reason(err: BaseException) -> str:
    """A TLS failure in one line, with what to do about an untrusted certificate."""
    text = str(err)
    match = re.search(r"certificate verify failed: ([^(']*)", text)
    if match:
        return (f"TLS error: certificate verify failed: {match.group(1).strip()} "
                "(trust Marathon's CA with --marathon-ca-cert, or --marathon-insecure)")
    match = re.search(r"\[SSL: ([A-Z_]+)\][^(']*", text) or re.search(r"SSLError\((.{0,160})", text)
    return f"TLS error: {match.group(0) if match else _first_line(err)}"


def _connection_cause(err: BaseException) -> str:
    """The OS's word for a failed connection ("Connection refused", "Name or service
    not known"), not urllib3's wrapper around it, which names a Python object first."""
    cause = getattr(err.args[0], "reason", None) if err.args else None
    text = str(cause or err)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    match = re.search(r"(Failed to resolve|timed out|Connection (?:refused|reset|aborted))[^'\")]*",
                      text)
    return match.group(0).strip() if match else _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{response.reason} ({body['message'][:200]})"
    return response.reason or ""


def _redact(url: str) -> str:
    """Never log credentials embedded in a URL."""
    parsed = urlparse(url)
    if parsed.password is None and parsed.username is None:
        return url
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return parsed._replace(netloc="***@" + netloc).geturl()
