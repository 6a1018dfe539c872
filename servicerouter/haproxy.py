"""Putting a config in place: the apply stage.

The rules, in order: a config equal to the file on disk changes nothing (no
write, no reload); a new config is written to a temporary file created
exclusively in the target's own directory, checked there with
``haproxy -c``, given the old file's permissions and renamed over the old
file in one step, so HAProxy can only ever read the old config or the new
one, complete.  A config HAProxy rejects is never put in place.  Then the
reload command runs.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass

from servicerouter.files import fsync_dir

log = logging.getLogger("servicerouter.haproxy")

DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class ApplyResult:
    """What happened to one candidate config."""

    changed: bool
    written: bool = False
    reloaded: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def detect_reload_command() -> list[str]:
    """servicerouter.py's guess: upstart, then systemd, else sysvinit."""
    if os.path.isfile("/etc/init/haproxy.conf"):
        return ["reload", "haproxy"]
    if os.path.isfile("/usr/lib/systemd/system/haproxy.service") or os.path.isfile(
        "/etc/systemd/system/haproxy.service"
    ) or os.path.isfile("/lib/systemd/system/haproxy.service"):
        return ["systemctl", "reload", "haproxy"]
    return ["/etc/init.d/haproxy", "reload"]


def reload_command(command: str | None) -> list[str]:
    """``--command`` shell-split, else the detected init system's reload."""
    return shlex.split(command) if command else detect_reload_command()


def read_current(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("couldn't open config file %s for reading: %s", path, err.strerror)
        return None


def check_config(path: str, haproxy_bin: str = "haproxy", timeout: float = 60.0) -> tuple[bool, str]:
    """``haproxy -c -f PATH``; (ok, HAProxy's own message)."""
    try:
        proc = subprocess.run(
            [haproxy_bin, "-c", "-f", path],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except FileNotFoundError:
        return False, f"{haproxy_bin} not found"
    except subprocess.TimeoutExpired:
        return False, f"{haproxy_bin} -c timed out after {timeout:.0f}s"
    message = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return True, message
    if proc.returncode == 2 and "has no error" in message:
        # Valid, but nothing to listen on (e.g. a head-only legacy template).
        log.warning("haproxy -c: %s", message.splitlines()[-1] if message else "no listener")
        return True, message
    return False, message or f"{haproxy_bin} -c exited {proc.returncode}"


# HAProxy 2.6: "Binding [file:line] for frontend NAME: cannot bind socket (Address
# already in use) for [ADDR]"; older: "Starting frontend NAME: cannot bind socket
# (...) [ADDR]".  Proxy names may hold ':' (hence the lazy match).
_BIND_FAILURE = re.compile(
    r"(?:Binding \[[^\]]*\] for \w+ (?P<a>\S+?)|Starting \w+ (?P<b>\S+?))"
    r": cannot bind socket(?P<why> \([^)]*\))?(?:[^\[\n|]*\[(?P<addr>[^\]\s]+)\])?")


@dataclass(frozen=True)
class BindFailure:
    """One listener HAProxy could not bind, from its own start/reload messages."""

    frontend: str
    address: str  # "" when HAProxy did not say
    reason: str  # "Address already in use", ...


def bind_failures(message: str) -> list[BindFailure]:
    """The frontends HAProxy says it cannot bind, in order, each once."""
    found: dict[tuple[str, str], BindFailure] = {}
    for match in _BIND_FAILURE.finditer(message):
        frontend = match["a"] or match["b"]
        why = (match["why"] or "").strip(" ()")
        key = (frontend, match["addr"] or "")
        found.setdefault(key, BindFailure(frontend, match["addr"] or "", why or "cannot bind"))
    return list(found.values())


def _socket_address(address: str) -> tuple[int, tuple[str, int]] | None:
    """(family, sockaddr) of a TCP bind address as HAProxy writes them; None if not one."""
    prefix, _, rest = address.rpartition("@")
    if prefix not in ("", "ipv4", "ipv6", "tcp", "tcp4", "tcp6"):
        return None  # unix@, abns@, fd@, sockpair@, udp@, quic4@: not a TCP port
    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None  # a port range, a path or nothing
    host = host.strip("[]")
    if host in ("", "*") and prefix in ("", "ipv4", "tcp", "tcp4"):
        return socket.AF_INET, ("0.0.0.0", int(port))
    family = socket.AF_INET6 if ":" in host or prefix in ("ipv6", "tcp6") else socket.AF_INET
    return family, (host or "::", int(port))


def address_free(address: str) -> bool | None:
    """Could HAProxy bind ``address`` now?  None when this cannot tell (not TCP,
    not permitted to us, not a local address): only False means "in use".

    The test socket sets SO_REUSEADDR and SO_REUSEPORT as HAProxy does, so a
    port our own HAProxy holds (same user) answers free, and one held by a
    process that did not share it answers busy, just as HAProxy would find.
    """
    parsed = _socket_address(address)
    if parsed is None:
        return None
    family, sockaddr = parsed
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as err:
        # Only "in use" is a verdict: a privileged port or an address of another
        # host says nothing about what HAProxy (maybe root) will find.
        return False if err.errno == errno.EADDRINUSE else None
    finally:
        sock.close()
    return True


def haproxy_available(haproxy_bin: str) -> bool:
    return shutil.which(haproxy_bin) is not None


def _target_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return DEFAULT_MODE


def write_temp(directory: str, basename: str, data: bytes, mode: int) -> str:
    """A new file (O_EXCL, unpredictable name) in ``directory``, synced to disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{basename}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # On the open file, not the name: nothing can swap the path in between.
            # Never world-writable nor set-id, whatever the old file was.
            os.fchmod(handle.fileno(), mode & 0o775)
            os.fsync(handle.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run_reload(command: list[str], timeout: float = 120.0) -> bool:
    log.info("reloading using %s", " ".join(command))
    try:
        subprocess.run(command, check=True, timeout=timeout)
    except FileNotFoundError as err:
        log.error("unable to reload config using command %s: %s", " ".join(command), err)
        return False
    except subprocess.CalledProcessError as err:
        log.error("unable to reload config using command %s: reload returned non-zero: %s",
                  " ".join(command), err.returncode)
        return False
    except subprocess.TimeoutExpired:
        log.error("reload command %s timed out after %.0fs", " ".join(command), timeout)
        return False
    return True


def apply_config(
    text: str,
    path: str,
    *,
    validate: bool = True,
    haproxy_bin: str = "haproxy",
    reload: list[str] | None = None,
    current: bytes | None = None,
) -> ApplyResult:
    """Write ``text`` to ``path`` if it differs, validated, then reload.

    ``current`` is the file's content if the caller already read it.
    """
    data = text.encode("utf-8")
    if current is None:
        current = read_current(path)
    if current == data:
        log.debug("config unchanged, nothing to do")
        return ApplyResult(changed=False)
    directory = os.path.dirname(os.path.abspath(path))
    basename = os.path.basename(path)
    log.info("running config is different from generated config - reloading")
    try:
        tmp = write_temp(directory, basename, data, _target_mode(path))
    except OSError as err:
        log.error("cannot write a temporary config in %s: %s", directory, err)
        return ApplyResult(changed=True, error=f"cannot write in {directory}: {err}")
    try:
        if validate:
            if haproxy_available(haproxy_bin):
                ok, message = check_config(tmp, haproxy_bin)
                if not ok:
                    shown = message.replace(tmp, "<new config>")
                    log.error("HAProxy rejected the new config; keeping %s as it is:\n%s",
                              path, shown)
                    return ApplyResult(changed=True, error=f"haproxy -c failed: {shown}")
            else:
                log.warning("%s not found: writing the config without validating it", haproxy_bin)
        os.replace(tmp, path)
        tmp = ""
        fsync_dir(directory)
    except OSError as err:
        log.error("cannot replace %s: %s", path, err)
        return ApplyResult(changed=True, error=f"cannot replace {path}: {err}")
    finally:
        if tmp:
            _unlink(tmp)
    reloaded = run_reload(reload) if reload else False
    return ApplyResult(changed=True, written=True, reloaded=reloaded)
