"""DC/OS service-account login (``--dcos-auth-credentials``), as marathon-lb users have it.

On DC/OS with strict security, Marathon only answers requests carrying
``Authorization: token=<ACS token>``.  A service account gets that token by
POSTing ``{"uid": ..., "token": <JWT signed with its private key>}`` to the
login endpoint named in its credentials.  The JWT is built here (RS256 with
``cryptography``) rather than with a JWT library: it is three base64url parts
and one signature, and a new dependency is not worth that.

Why an ``AuthBase``: one object is shared by the REST client's session and the
event stream's, so a token obtained (or refreshed) by one serves both; it logs
in before the token expires and, when Marathon still answers 401 (the token
was revoked, or Marathon restarted with new keys), logs in again and resends
the request once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:  # cryptography is imported when a service account is used, not by every run
    from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 3600.0
"""Seconds of validity asked for each token (the login body's ``exp``)."""
REFRESH_MARGIN = 60.0
"""Log in again this long before the token expires, so no request races its expiry."""
ASSERTION_LIFETIME = 60
"""Seconds the signed login JWT itself is valid (it is used at once)."""


class DcosLoginError(requests.exceptions.RequestException):
    """The login endpoint refused or could not be reached; the text is one line and
    never holds the key or a token."""


@dataclass(frozen=True)
class DcosCredentials:
    """A parsed service account: the private key is loaded, never kept as text."""

    uid: str
    login_endpoint: str
    private_key: rsa.RSAPrivateKey = field(repr=False)  # noqa: F821 - see TYPE_CHECKING


def parse_dcos_credentials(text: str) -> DcosCredentials:
    """The service account JSON (``uid``, ``private_key``, ``login_endpoint``,
    ``scheme``) -> credentials; ValueError naming what is wrong, never the key."""
    where = "--dcos-auth-credentials"
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError(f"{where}: not JSON (expected the service account's "
                         "{\"uid\", \"private_key\", \"login_endpoint\"} object)") from None
    if not isinstance(document, dict):
        raise ValueError(f"{where}: expected a JSON object")
    missing = [k for k in ("uid", "private_key", "login_endpoint")
               if not isinstance(document.get(k), str) or not document[k]]
    if missing:
        raise ValueError(f"{where}: missing or empty {', '.join(missing)}")
    scheme = document.get("scheme", "RS256")
    if scheme != "RS256":
        raise ValueError(f"{where}: scheme {scheme!r} is not supported (only RS256)")
    endpoint = document["login_endpoint"]
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"{where}: login_endpoint must be an http:// or https:// URL")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(document["private_key"].encode(), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"{where}: private_key is not an unencrypted PEM private key") \
            from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{where}: private_key must be an RSA key (scheme RS256)")
    return DcosCredentials(uid=document["uid"], login_endpoint=endpoint, private_key=key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_login_jwt(uid: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The login assertion: an RS256 JWT ``{"uid", "exp"}`` signed with the account's key."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"uid": uid, "exp": int(now) + ASSERTION_LIFETIME},
                               separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode("ascii")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{b64url(signature)}"


class DcosAuth(requests.auth.AuthBase):
    """Adds ``Authorization: token=...`` to every request; logs in when needed.

    Thread-safe: the REST client and the event stream call it from different
    threads, and only one of them logs in at a time.
    """

    def __init__(self, credentials: DcosCredentials, *, verify: bool | str = True,
                 timeout: tuple[float, float] = (5.0, 30.0),
                 clock: Callable[[], float] = time.time) -> None:
        self.credentials = credentials
        self._verify = verify
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.logins = 0
        """How many logins succeeded (for tests and the status page)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"token={self.token()}"
        request.register_hook("response", self._retry_on_401)
        return request

    def token(self) -> str:
        """A token valid for at least REFRESH_MARGIN more seconds (logging in if not)."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires - REFRESH_MARGIN:
                self._login()
            assert self._token is not None
            return self._token

    def _refresh_after_401(self, used: str) -> str:
        """A new token, unless another thread already replaced the one that failed."""
        with self._lock:
            if self._token == used:
                self._token = None
                self._login()
            assert self._token is not None
            return self._token

    def _login(self) -> None:
        now = self._clock()
        creds = self.credentials
        body = {"uid": creds.uid, "token": sign_login_jwt(creds.uid, creds.private_key, now),
                "exp": int(now + TOKEN_LIFETIME)}
        where = f"DC/OS login as {creds.uid!r} at {creds.login_endpoint}"
        try:
            with requests.Session() as session:
                session.trust_env = False
                response = session.post(creds.login_endpoint, json=body, verify=self._verify,
                                        timeout=self._timeout)
        except requests.exceptions.RequestException as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DcosLoginError(f"{where} failed: {first}") from None
        if response.status_code != 200:
            hint = (" (is the service account's public key registered, and is its "
                    "private_key the matching one?)" if response.status_code == 401 else "")
            raise DcosLoginError(f"{where} failed: HTTP {response.status_code}{hint}")
        token = _token_from(response)
        if not token:
            raise DcosLoginError(f"{where} failed: the answer carried no token")
        self._token = token
        self._expires = now + TOKEN_LIFETIME
        self.logins += 1
        log.info("logged in to DC/OS as %s", creds.uid)

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Marathon refused the token: log in again and resend the request once."""
        request = response.request
        if response.status_code != 401:  # the resent request is sent past the hooks
            return response
        used = (request.headers.get("Authorization") or "").removeprefix("token=")
        log.info("Marathon answered 401 to the DC/OS token; logging in again")
        token = self._refresh_after_401(used)
        response.content  # noqa: B018 - drain, so the connection can be reused
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"token={token}"
        assert response.connection is not None
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second


def _token_from(response: requests.Response) -> str | None:
    """The ACS token: the JSON body's ``token``, else the ``dcos-acs-auth-cookie``."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("token"), str):
        return document["token"] or None
    return response.cookies.get("dcos-acs-auth-cookie")
