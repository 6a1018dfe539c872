"""Files servicerouter keeps between runs: the state directory and IP-per-task ports."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

log = logging.getLogger("servicerouter")


PORTS_FILE = "ip-per-task-ports.json"  # in the state directory


def load_port_assignments(path: str) -> tuple[tuple[str, int], ...]:
    """Auto-assigned IP-per-task ports saved by an earlier run; () if none or unusable.

    A file that cannot be read or is not what :func:`save_port_assignments`
    writes is ignored with a warning: ports are then assigned afresh.
    """
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        log.warning("ignoring the IP-per-task port assignments in %s: %s", path,
                    getattr(err, "strerror", None) or err)
        return ()
    entries = document.get("assignments") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
            and type(e[1]) is int for e in entries):
        log.warning("ignoring the IP-per-task port assignments in %s: not a list of "
                    "[\"app id#index\", port] pairs", path)
        return ()
    return tuple((key, port) for key, port in entries)


def save_port_assignments(path: str, assignments: Sequence[tuple[str, int]]) -> bool:
    """Write ``assignments`` atomically (temp file, fsync, rename); False (logged) if not."""
    import json

    from servicerouter.tls.bundles import write_private_file

    rows = ",\n".join("  " + json.dumps([key, port]) for key, port in assignments)
    text = '{"version": 1, "assignments": [\n' + rows + ("\n" if rows else "") + "]}\n"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_private_file(path, text)
    except OSError as err:
        log.error("cannot save the IP-per-task port assignments to %s: %s "
                  "(ports stay as they are while servicerouter runs)", path,
                  err.strerror or err)
        return False
    return True


STATE_DIR_NAME = ".servicerouter"
# The old default: beside a config in the working directory it shadowed the package
# for ``python -m servicerouter`` (a namespace-package match on sys.path[0]).
LEGACY_STATE_DIR_NAME = "servicerouter"
_STATE_FILES = ("default.pem", "bundles", PORTS_FILE, "haproxy.pid", "master.sock",
                "haproxy.sock")


def default_state_dir(config_path: str) -> str:
    """Where generated state lives: ``.servicerouter`` beside the HAProxy config.

    No Python name, so it can never shadow the package.  A state directory an
    older build made (``servicerouter/`` there, holding state files) is still
    used as it is, so its IP-per-task ports, certificates and a managed HAProxy
    running from it are kept; nothing is moved (this runs in ``--dry`` too).
    """
    base = os.path.dirname(os.path.abspath(config_path))
    state = os.path.join(base, STATE_DIR_NAME)
    if os.path.lexists(state):
        return state
    legacy = os.path.join(base, LEGACY_STATE_DIR_NAME)
    if (os.path.isdir(legacy) and not os.path.islink(legacy)
            and not os.path.exists(os.path.join(legacy, "__init__.py"))
            and any(os.path.lexists(os.path.join(legacy, n)) for n in _STATE_FILES)):
        return legacy
    return state
