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
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlparse

import requests

from servicerouter.source.dcos_auth import DcosLoginError
from servicerouter.source.marathon_urls import _redact, redact, split_credentials

log = logging.getLogger("servicerouter.marathon")

try:  # orjson parses Marathon's large bodies several times faster
    import orjson

    def _loads(body: bytes) -> Any:
        return orjson.loads(body)
except ImportError:  # pragma: no cover - depends on the environment

    def _loads(body: bytes) -> Any:
        return json.loads(body)


APPS_PATH = "/v2/apps?embed=apps.tasks"
# --health-check also needs each app's readinessCheckResults, which Marathon
# includes only when asked for (AppInfo.Embed.Readiness).
APPS_READINESS_PATH = APPS_PATH + "&embed=apps.readiness"


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
    return _field(body, "apps", list, "an 'apps' list")


def _field(body: bytes, key: str, kind: type, what: str) -> Any:
    """``document[key]`` of a JSON object body; MarathonError if it is not JSON or
    ``key`` does not hold a ``kind`` (``what`` names it in the message)."""
    try:
        document = _loads(body)
    except ValueError as err:
        raise MarathonError(f"Marathon answered invalid JSON: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get(key), kind):
        raise MarathonError(f"Marathon answered JSON without {what}")
    return document[key]


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
    # A requests AuthBase sending DC/OS ACS tokens (source.dcos_auth.DcosAuth), shared
    # by the REST client and the event stream so both use one token; replaces ``auth``.
    token_auth: Any = field(default=None, repr=False)


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
        settings = settings or ClientSettings()
        self.hosts, auth = split_credentials(hosts, settings.auth)
        if auth != settings.auth:  # the event stream reads the same settings
            settings = replace(settings, auth=auth)
        self.settings = settings
        # Known secrets, scrubbed from any error text on top of redact()'s patterns.
        self._secrets = tuple(sorted({v for v in (auth[1], quote(auth[1], safe=""))
                                      if len(v) >= 3}, key=len, reverse=True)) if auth else ()
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers.update({"Accept": "application/json"})
        if self.settings.auth:
            self._session.auth = self.settings.auth
        if self.settings.token_auth is not None:
            self._session.auth = self.settings.token_auth
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

    def _scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def request(self, method: str, path: str, *, whole_body: bool = False,
                **kwargs: Any) -> requests.Response:
        """First 2xx answer from the hosts in order; MarathonError if none.

        ``whole_body``: the body is read in one call into ``response.body`` (a
        failed read fails over to the next host, as a failed request does).
        """
        failures: list[str] = []
        not_found = 0
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for host in self.hosts:
            url = host + path
            try:
                response = self._session.request(method, url, timeout=timeout,
                                                 stream=whole_body, **kwargs)
                if whole_body and 200 <= response.status_code < 300:
                    response.body = read_whole_body(response)  # type: ignore[attr-defined]
            except DcosLoginError as err:  # its text is one line without secrets
                reason = str(err)
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
            reason = self._scrub(reason)
            log.error("marathon %s %s: %s", method, _redact(url), reason)
            failures.append(f"{_redact(host)}: {reason}")
        if not_found == len(self.hosts):
            raise MarathonNotFound(f"not found: {path}")
        raise MarathonError("no Marathon host answered: " + "; ".join(failures))

    # Ask for readinessCheckResults too (--health-check); without it the request is
    # exactly servicerouter.py's.
    embed_readiness = False

    def fetch_apps_body(self) -> bytes:
        return self.request("GET", APPS_READINESS_PATH if self.embed_readiness
                            else APPS_PATH, whole_body=True).body  # type: ignore[attr-defined]

    def fetch_app(self, app_id: str) -> dict[str, Any]:
        """One app with its tasks (``/v2/apps/{id}?embed=app.tasks``, and
        ``&embed=app.readiness`` with ``embed_readiness``)."""
        query = "?embed=app.tasks&embed=app.readiness" if self.embed_readiness \
            else "?embed=app.tasks"
        body = self.request("GET", f"/v2/apps{quote(app_id)}{query}").content
        return _field(body, "app", dict, "an 'app' object")

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
        self._failing: str | None = None  # the error already reported, until the file reads

    @property
    def current(self) -> str:
        return "file:" + self.path

    def fetch_apps_body(self) -> bytes:
        """The file's bytes; a missing or unreadable file is logged once, not every resync.

        The caller still gets a MarathonError each time (and keeps the current config);
        only a new reason, or the file coming back, is worth another line.
        """
        try:
            with open(self.path, "rb") as handle:
                body = handle.read()
        except OSError as err:
            reason = err.strerror or str(err)
            if reason != self._failing:
                log.error("cannot read Marathon snapshot %s: %s", self.path, reason)
                self._failing = reason
            raise MarathonError(f"cannot read snapshot {self.path}: {reason}") from None
        if self._failing is not None:
            log.info("Marathon snapshot %s is readable again", self.path)
            self._failing = None
        return body

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


def make_source(hosts: Sequence[str], settings: ClientSettings | None = None, *,
                embed_readiness: bool = False) -> MarathonClient | SnapshotSource:
    """A snapshot for a single ``file:`` location, else an HTTP client.

    ``embed_readiness`` (--health-check): the client also asks Marathon for the
    apps' readiness check results.
    """
    if len(hosts) == 1 and hosts[0].startswith("file:"):
        return SnapshotSource(hosts[0])
    if any(h.startswith("file:") for h in hosts):
        raise ValueError("a file: snapshot cannot be mixed with Marathon hosts")
    client = MarathonClient(hosts, settings)
    client.embed_readiness = embed_readiness
    return client


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


def read_whole_body(response: requests.Response) -> bytes:
    """The rest of a streamed response's body, in one read.

    ``response.content`` reads a 40 MB ``/v2/apps`` answer in 10 KiB chunks and
    joins them: about twice the time of one read.  urllib3 still decodes the
    transfer and content encodings and checks Content-Length; its errors become
    the ones requests raises for the same failures (``content`` would have).
    """
    import urllib3.exceptions as u3

    try:
        body = response.raw.read(decode_content=True)
    except u3.ReadTimeoutError as err:
        response.close()
        raise requests.exceptions.ConnectionError(err, request=response.request) from None
    except u3.ProtocolError as err:
        response.close()
        raise requests.exceptions.ChunkedEncodingError(err) from None
    except u3.DecodeError as err:
        response.close()
        raise requests.exceptions.ContentDecodingError(err) from None
    except u3.SSLError as err:
        response.close()
        raise requests.exceptions.SSLError(err) from None
    except (u3.HTTPError, OSError) as err:
        response.close()
        raise requests.exceptions.ConnectionError(err, request=response.request) from None
    response.raw.release_conn()  # read to the end: the connection can serve the next fetch
    return body


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


# urllib3 wraps the OS's error in reprs of its own objects; they say nothing to an operator.
_URLLIB3_NOISE = re.compile(
    r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*"
    r"|\w*ConnectionPool\(host=[^)]*\):\s*"
    r"|Max retries exceeded with url: \S+\s*")


def _first_line(err: BaseException, limit: int = 200) -> str:
    """The error's first line without urllib3's object reprs, cut at a word, not in one."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    text = _URLLIB3_NOISE.sub("", lines[0]).strip() or type(err).__name__
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " ..."


def describe_error(err: BaseException) -> str:
    """A failed Marathon request in one readable line: what failed and the OS's cause.

    "connection failed: Connection refused", "connection failed: Name or service
    not known", "TLS error: ...", "timed out": never urllib3's nested reprs (which
    name Python objects and were cut mid-word).
    """
    if isinstance(err, requests.exceptions.SSLError):
        return tls_reason(err)
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(err, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(err, requests.exceptions.ConnectionError):
        return f"connection failed: {_connection_cause(err)}"
    return f"request failed: {_first_line(err)}"


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{response.reason} ({body['message'][:200]})"
    return response.reason or ""
