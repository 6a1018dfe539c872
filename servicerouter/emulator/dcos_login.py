"""DC/OS service-account login as the emulator serves it, so ``--dcos-auth-credentials``
is tested against something that really checks signatures.

When a service account (uid + RSA public key) is configured, ``POST
/acs/api/v1/auth/login`` verifies the RS256 JWT the client signed, and issues an
opaque token (in the body's ``token`` and the ``dcos-acs-auth-cookie`` cookie, as
DC/OS does); Marathon calls then need ``Authorization: token=<it>``.  Tests expire
tokens (``expire_tokens()``, ``POST /_emulator/auth/expire``) to exercise refresh.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

LOGIN_PATH = "/acs/api/v1/auth/login"
DEFAULT_TOKEN_LIFETIME = 5 * 24 * 3600  # DC/OS's default


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DcosLogin:
    """One service account's login endpoint and the tokens it issued."""

    def __init__(self, uid: str, public_key_pem: bytes | str) -> None:
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the service account's public key must be RSA")
        self.uid = uid
        self._key = key
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self.logins = 0
        """Successful logins so far."""

    def login(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for a login request body."""
        if not isinstance(body, dict) or not isinstance(body.get("uid"), str) \
                or not isinstance(body.get("token"), str):
            return 400, {"code": "ERR_INVALID_DATA", "description": "uid and token required"}
        problem = self._check_assertion(body["uid"], body["token"])
        if problem:
            return 401, {"code": "ERR_INVALID_CREDENTIALS", "description": problem}
        now = time.time()
        expires = now + DEFAULT_TOKEN_LIFETIME
        if isinstance(body.get("exp"), int | float) and body["exp"] > now:
            expires = min(expires, float(body["exp"]))
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = expires
            self.logins += 1
        return 200, {"token": token}

    def _check_assertion(self, uid: str, jwt: str) -> str | None:
        """Why the signed login JWT is not acceptable, or None."""
        if uid != self.uid:
            return f"unknown service account {uid!r}"
        parts = jwt.split(".")
        if len(parts) != 3:
            return "token is not a JWT"
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, binascii.Error):
            return "token is not a JWT"
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return "token must be signed with RS256"
        try:
            self._key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"),
                             padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "token signature does not match the service account's public key"
        if not isinstance(claims, dict) or claims.get("uid") != uid:
            return "token uid does not match"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < time.time():
            return "token expired"
        return None

    def authorized(self, header: str) -> bool:
        """Whether an ``Authorization`` header carries a live token we issued."""
        scheme, _, token = header.partition("=")
        if scheme.strip().lower() != "token" or not token:
            return False
        with self._lock:
            expires = self._tokens.get(token.strip())
        return expires is not None and expires > time.time()

    def expire_tokens(self) -> int:
        """Make every issued token invalid (as DC/OS does when one expires); returns how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count
