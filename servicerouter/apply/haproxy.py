"""Putting a config in place: the apply stage.

The rules, in order: a config equal to the file on disk changes nothing (no
write, no reload); a new config is checked with ``haproxy -c`` beside
the target, then written to a temporary file created exclusively in the
target's own directory, given the old file's permissions and renamed over the
old file in one step, so HAProxy can only ever read the old config or the new
one, complete.  A config HAProxy rejects is never put in place
(:func:`check_candidate` runs before the write).  The engine
(:mod:`servicerouter.engine.applier`) puts these steps in order for every mode,
one-shot and live, and reloads; after a failed reload it puts the previous file
back (:func:`put_back`), so the file on disk is never a config HAProxy did not
load and the next run tries again.
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

from servicerouter.apply import mapfiles
from servicerouter.apply.files import fsync_dir

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


def check_text(text: str, directory: str | None, haproxy_bin: str, prefix: str,
               shown_as: str = "<config>") -> tuple[bool, str]:
    """:func:`check_config` of ``text``, written to a private temporary file in
    ``directory`` (beside the real config, so relative paths resolve the same; named
    ``PREFIX*.cfg`` for the temp sweep) and removed after; the message says ``shown_as``
    where HAProxy named the temporary file."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".cfg", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        ok, message = check_config(path, haproxy_bin)
    finally:
        _unlink(path)
    return ok, message.replace(path, shown_as)


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


_VERSION_LINE = re.compile(r"\bversion\s+(\S+)", re.IGNORECASE)


def haproxy_version(haproxy_bin: str, cache_dir: str | None = None) -> str | None:
    """The version ``haproxy -v`` reports ("2.6.12-1+deb12u4"), or None if it cannot run.

    Said at startup and in /status and /metrics: "which HAProxy" is the first
    question about any routing surprise, and the binary on PATH may not be the one
    the operator thinks.  Read from the first line of :func:`haproxy_build_info`
    (the same line ``-v`` prints), so a start runs HAProxy once, not twice.
    """
    info = haproxy_build_info(haproxy_bin, cache_dir=cache_dir)
    first = info.strip().splitlines()[:1] if info else []
    match = _VERSION_LINE.search(first[0]) if first else None
    return match.group(1) if match else None


# haproxy -vv output by (name, resolved path, inode, size, mtime): a replaced binary
# is run again. Bounded: one entry per binary file a process ever saw.
_BUILD_INFO: dict[tuple[object, ...], str | None] = {}


BUILD_INFO_FILE = "haproxy-build-info.json"  # in the state directory: see save_build_info


def _binary_key(haproxy_bin: str) -> tuple[object, ...] | None:
    resolved = shutil.which(haproxy_bin) or haproxy_bin
    try:
        st = os.stat(resolved)
    except OSError:
        return None
    return (haproxy_bin, resolved, st.st_ino, st.st_size, st.st_mtime_ns)


def haproxy_build_info(haproxy_bin: str, timeout: float = 10.0,
                       cache_dir: str | None = None) -> str | None:
    """What ``haproxy -vv`` prints (stdout, else stderr), or None if it cannot run.

    Kept per binary file: the version line and the Lua check both come from it,
    and a one-shot run's start should not pay for two HAProxy runs.  With
    ``cache_dir`` (a state directory), the answer :func:`save_build_info` left
    there for the same binary file is read instead of running HAProxy at all: a
    one-shot run every minute mostly finds nothing to do, and then starting a
    process is a good part of its cost.
    """
    key = _binary_key(haproxy_bin)
    if key is None:
        return None
    if key not in _BUILD_INFO and cache_dir is not None:
        saved = _load_build_info(os.path.join(cache_dir, BUILD_INFO_FILE), key)
        if saved is not None:
            _BUILD_INFO[key] = saved
    if key not in _BUILD_INFO:
        try:
            proc = subprocess.run([haproxy_bin, "-vv"], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError):
            return None  # not kept: a timeout may pass
        _BUILD_INFO[key] = (proc.stdout or "") + (proc.stderr or "")
    return _BUILD_INFO[key]


def _load_build_info(path: str, key: tuple[object, ...]) -> str | None:
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        if saved["key"] == list(key) and isinstance(saved["output"], str):
            return saved["output"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def save_build_info(haproxy_bin: str, cache_dir: str) -> None:
    """Leave this binary's ``haproxy -vv`` answer (if this process has it) in
    ``cache_dir`` for the next run; only written when it changes.  The caller
    holds the state directory's writer lock; a failure only costs the next run
    one HAProxy start."""
    import json

    key = _binary_key(haproxy_bin)
    if key is None or key not in _BUILD_INFO or _BUILD_INFO[key] is None:
        return
    path = os.path.join(cache_dir, BUILD_INFO_FILE)
    if _load_build_info(path, key) == _BUILD_INFO[key]:
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"key": list(key), "output": _BUILD_INFO[key]}, handle)
    except OSError as err:
        log.debug("cannot save %s: %s", path, err.strerror or err)


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


RELOAD_OUTPUT_LIMIT = 8000  # characters of a reload command's output kept for the log


def reload_with_output(command: list[str], timeout: float = 120.0) -> tuple[bool, str]:
    """Run the reload command; (ok, its output) or (False, why it failed, with its output).

    A failure is left to the caller to log (once, with this message).  The
    command's stdout and stderr go to an unnamed temporary file, not a pipe: a
    reload command that starts a daemon (``haproxy -D``) leaves it holding the
    command's output, and reading a pipe would wait for that daemon to exit.
    """
    shown = shlex.join(command)
    log.info("reloading using %s", shown)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except OSError as err:  # not found, not executable
            return False, f"unable to reload config using command {shown}: {err}"
        except subprocess.TimeoutExpired:
            failure = f"reload command {shown} timed out after {timeout:.0f}s"
        else:
            failure = None if proc.returncode == 0 else (
                f"unable to reload config using command {shown}: reload returned "
                f"non-zero: {proc.returncode}")
        out.seek(0)
        output = _tail_text(out.read())
    if failure is not None:
        return False, f"{failure}; it printed:\n{output}" if output else f"{failure} (no output)"
    if output:
        log.info("reload command %s printed:\n%s", shown, output)
    return True, output


def _tail_text(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    if len(text) > RELOAD_OUTPUT_LIMIT:
        text = "...\n" + text[-RELOAD_OUTPUT_LIMIT:]
    return text


def check_candidate(text: str, config_path: str, haproxy_bin: str = "haproxy",
                    map_dir: str | None = None) -> tuple[bool, str]:
    """``haproxy -c`` of a candidate config before anything of it is put in place.

    Checked beside ``config_path`` (paths in it resolve as they will there), in an
    exclusive temporary file, removed after (:func:`check_text`); with the map files it
    reads when it reads any (:func:`servicerouter.apply.mapfiles.check_text`).  The
    message names the file ``<config>``.
    """
    directory = os.path.dirname(os.path.abspath(config_path))
    if mapfiles.maps_of(text, map_dir).files:
        return mapfiles.check_text(text, map_dir, directory, haproxy_bin)
    return check_text(text, directory, haproxy_bin, ".sr-check-")


def apply_config(
    text: str,
    path: str,
    *,
    current: bytes | None = None,
    map_dir: str | None = None,
    announce: str = "running config is different from generated config - reloading",
) -> ApplyResult:
    """Write ``text`` to ``path`` if it differs: atomically, with the old file's mode.

    Validating before and reloading after are the engine's
    (:class:`servicerouter.engine.applier.ConfigApplier`), one way for every mode.
    ``current`` is the file's content if the caller already read it.  With
    ``map_dir``, the map files the text reads (its map block) are written there
    just before the config (:mod:`servicerouter.apply.mapfiles`).  ``announce`` is
    the line logged when the file changes.
    """
    data = text.encode("utf-8")
    if current is None:
        current = read_current(path)
    if current == data:
        log.debug("config unchanged, nothing to do")
        return ApplyResult(changed=False)
    directory = os.path.dirname(os.path.abspath(path))
    log.info("%s", announce)
    try:
        tmp = write_temp(directory, os.path.basename(path), data, _target_mode(path))
    except OSError as err:
        log.error("cannot write a temporary config in %s: %s", directory, err)
        return ApplyResult(changed=True, error=f"cannot write in {directory}: {err}")
    try:
        mapfiles.install(text, map_dir)
        os.replace(tmp, path)
        tmp = ""
        fsync_dir(directory)
    except OSError as err:
        log.error("cannot replace %s: %s", path, err)
        return ApplyResult(changed=True, error=f"cannot replace {path}: {err}")
    finally:
        if tmp:
            _unlink(tmp)
    return ApplyResult(changed=True, written=True)


def put_back(path: str, previous: bytes | None, mode: int = DEFAULT_MODE, *,
             existed: bool = True) -> bool:
    """After a failed reload: the previous config back in place (atomically), or the
    new file removed when there was none before.  False (logged) if that failed.

    ``previous`` None with ``existed`` True: the old file could not be read, so it
    cannot be restored; the new file stays and this says so.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if previous is not None:
            tmp = write_temp(directory, os.path.basename(path), previous, mode)
            try:
                os.replace(tmp, path)
            except BaseException:
                _unlink(tmp)
                raise
            fsync_dir(directory)
            log.warning("restored the previous %s, so the next run tries again", path)
        elif not existed:
            _unlink(path)
            fsync_dir(directory)
            log.warning("removed the new %s (there was none before), so the next run "
                        "tries again", path)
        else:
            log.error("cannot restore the previous %s (it could not be read); the config "
                      "HAProxy did not load stays there", path)
            return False
    except OSError as err:
        log.error("cannot restore the previous %s: %s; the config HAProxy did not load "
                  "stays there", path, err)
        return False
    return True
