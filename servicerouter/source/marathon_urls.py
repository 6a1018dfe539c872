"""Marathon endpoint URLs as operators write them: parsing, host lists, redaction.

``-m`` takes full URLs, the bridge's ``HOST:PORT`` and comma-separated lists;
credentials may sit in a URL.  Everything that prints a URL or an error that may
hold one goes through :func:`redact` first, so no log line or status page shows
a password or a callback token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlparse

log = logging.getLogger("servicerouter.marathon")


# Credentials before an '@' (with or without a scheme, whatever characters the
# password holds), and a ``token`` query parameter, plain or percent-encoded
# (a callback URL inside ``?callbackUrl=``).
_USERINFO = re.compile(r"""(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)?[^\s'"<>@]*@""")
_TOKEN = re.compile(r"(?i)(?P<key>(?:[?&;]|%3F|%26)token(?:=|%3D))[^&#\s'\"<>]*")


def redact(text: str) -> str:
    """``text`` (a URL, or an error message quoting one) without credentials or tokens.

    Works on the raw text rather than a parsed URL: the URLs that leak are
    exactly the ones a parser misreads (a '/' or '#' in a password, no
    scheme, a bad port).  Over-redacting an odd '@' elsewhere is the cheap side.
    """
    text = _USERINFO.sub(lambda m: (m.group("scheme") or "") + "***@", text)
    return _TOKEN.sub(lambda m: m.group("key") + "***", text)


def _redact(url: str) -> str:
    """Never log credentials embedded in a URL (see :func:`redact`)."""
    return redact(url)


def parse_marathon_url(text: str) -> tuple[str, tuple[str, str] | None]:
    """One ``--marathon`` value -> (URL without credentials, (user, password) or None).

    ``file:`` snapshots pass as they are.  Anything else must be an
    ``http(s)://HOST[:PORT][/PATH]`` URL, or ``HOST:PORT[/PATH]`` without a
    scheme, which means http (haproxy-marathon-bridge's form, and Marathon's
    docs'); without a scheme the port is required, since a bare name would
    otherwise silently mean port 80 where Marathon listens on 8080.  The
    ValueError says what is wrong without repeating the password (the URL is
    shown redacted).
    """
    if text.startswith("file:"):
        return text, None
    shown = _shown(text)
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    implied_http = match is None
    if match is None:
        if "://" in text or not _has_port(text):
            raise ValueError(f"--marathon {shown}: expected HOST:PORT, http://HOST:PORT, "
                             "https://HOST:PORT or file:PATH")
        text = "http://" + text
        match = re.match(r"(http)://", text)
        assert match is not None
    scheme = match.group(1).lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"--marathon {shown}: scheme {scheme!r} is not supported "
                         "(http, https or file:)")
    rest = text[match.end():]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        raise ValueError(f"--marathon {shown}: '@' after the host; percent-encode '/', '?' "
                         "and '#' in a password (%2F, %3F, %23) or use --auth-credentials")
    if "?" in tail or "#" in tail:
        raise ValueError(f"--marathon {shown}: a Marathon URL takes no query or fragment")
    auth: tuple[str, str] | None = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        user, _, password = userinfo.partition(":")
        if not user:
            raise ValueError(f"--marathon {shown}: credentials without a user name")
        auth = (unquote(user), unquote(password))
    try:
        parsed = urlparse(f"{scheme}://{authority}")
        port = parsed.port
    except ValueError:
        raise ValueError(f"--marathon {shown}: bad host or port") from None
    if not parsed.hostname or port == 0 or (implied_http and port is None):
        raise ValueError(f"--marathon {shown}: bad host or port")
    return f"{scheme}://{authority}{tail}".rstrip("/"), auth


def _has_port(text: str) -> bool:
    """Whether a scheme-less ``[USER:PASSWORD@]HOST:PORT[/PATH]`` names a port at all
    (whether it is a valid one is checked with the rest of the URL)."""
    authority = re.split(r"[/?#]", text, maxsplit=1)[0].rpartition("@")[2]
    if authority.startswith("["):  # [IPv6]:PORT
        return "]:" in authority
    return ":" in authority


def split_marathon_hosts(values: Sequence[str]) -> list[str]:
    """``--marathon`` values with comma-separated lists split: ``a:8080,b:8080``.

    The bridge and marathon-lb users' configuration management often holds the
    hosts as one comma-joined string.  A value is split only when every
    non-blank piece is a usable location on its own: a comma inside a password
    (``http://u:p,w@h:8080``) keeps the value whole.  Raises the ValueError of
    the first unusable piece when neither reading works.
    """
    hosts: list[str] = []
    for value in values:
        pieces = [piece.strip() for piece in value.split(",")]
        pieces = [piece for piece in pieces if piece]
        if len(pieces) == 1 and "," not in value:
            hosts.append(value)
            continue
        try:
            for piece in pieces:
                parse_marathon_url(piece)
        except ValueError as piece_error:
            try:
                parse_marathon_url(value)
            except ValueError:
                raise piece_error from None
            hosts.append(value)
            continue
        hosts.extend(pieces)
    return hosts


def _shown(text: str) -> str:
    """``text`` fit for an error message: nothing before its last '@' is shown."""
    if "@" not in text:
        return redact(text)
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text)
    return (match.group(0) if match else "") + "***@" + redact(text.rpartition("@")[2])


def split_credentials(hosts: Sequence[str], auth: tuple[str, str] | None = None
                      ) -> tuple[list[str], tuple[str, str] | None]:
    """Validated hosts without credentials, and the basic auth to send them.

    Credentials move out of the URLs (where every error message would repeat
    them) into the session; ``auth`` (--auth-credentials or the credential
    file) wins over them.  Hosts asking for different credentials are an
    error: one session sends one.
    """
    clean: list[str] = []
    found: set[tuple[str, str]] = set()
    for host in hosts:
        url, url_auth = parse_marathon_url(host)
        clean.append(url)
        if url_auth is not None:
            found.add(url_auth)
    if found and auth is not None:
        log.warning("credentials in the --marathon URLs are ignored: the Marathon "
                    "credentials flag wins")
        return clean, auth
    if len(found) > 1:
        raise ValueError("the --marathon URLs carry different credentials; give one "
                         "--auth-credentials instead")
    return clean, auth or (found.pop() if found else None)
