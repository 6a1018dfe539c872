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

import logging
import os
import shlex
import shutil
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
