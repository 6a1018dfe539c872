"""Where servicerouter's own log lines go: stderr always, syslog as servicerouter.py did."""

from __future__ import annotations

import logging
import sys
import time
from logging.handlers import SysLogHandler
from typing import Any

# servicerouter.py's format: syslog adds its own timestamp and priority, so it stays.
SYSLOG_FORMAT = "%(name)s: %(message)s"
# stderr has nothing around it (a terminal, a container log, a systemd journal
# replayed later): the time and the level belong in the line.
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UtcFormatter(logging.Formatter):
    """ISO 8601 UTC timestamps with milliseconds: sortable, and the same on every host."""

    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


# Every attribute a LogRecord has without ``extra=``: anything else is a structured field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(UtcFormatter):
    """One JSON object per line, for log shippers that should not parse free text.

    ``time``, ``level``, ``logger`` and ``message`` always; fields a caller passed
    with ``extra={...}`` as they are (made JSON-safe); ``exception`` when one is logged.
    """

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class QuietSysLogHandler(SysLogHandler):
    """Syslog that never prints a traceback.

    The stdlib handler already reconnects a UNIX socket when a send fails
    (syslogd restarted); when that fails too it calls ``handleError``, which
    prints a "--- Logging error ---" traceback for every record.  Here a lost
    record costs one warning line on stderr until syslog works again (then one
    line says so); stderr has every message anyway.
    """

    def __init__(self, address: str) -> None:
        super().__init__(address=address)
        self._failing = False  # records are being lost (warned once)
        self._sent = True  # the record being emitted reached syslog

    def emit(self, record: logging.LogRecord) -> None:
        self._sent = True
        super().emit(record)  # the stdlib's send and one reconnect
        if self._sent and self._failing:
            self._failing = False
            _stderr(f"syslog socket {self.address} works again")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)  # a formatting bug: show it
            return
        self._sent = False
        if not self._failing:
            self._failing = True
            _stderr(f"syslog socket {self.address} unavailable "
                    f"({error.strerror or error}); logging to stderr only until it is back")


def _stderr(message: str) -> None:
    try:
        sys.stderr.write(f"servicerouter: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: nothing left to tell
        pass


def probe_syslog(path: str) -> str | None:
    """Why the UNIX socket ``path`` cannot take syslog messages, or None if it can."""
    import errno
    import socket

    errors: list[OSError] = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # as SysLogHandler tries them
        try:
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.connect(path)
            return None
        except OSError as err:
            errors.append(err)
    # "wrong type" only says the socket is of the other kind: the other error tells more
    error = next((e for e in errors if e.errno != errno.EPROTOTYPE), errors[0])
    return error.strerror or str(error)


def setup_logging(syslog_socket: str, log_format: str | None, level: str = "info",
                  json_lines: bool = False) -> None:
    """stderr always; syslog too unless the socket is /dev/null (as servicerouter.py).

    stderr lines carry a UTC timestamp and the level (``STDERR_FORMAT``), or are one
    JSON object each with ``json_lines``; syslog keeps servicerouter.py's format, which
    its timestamps and priorities complete. A ``log_format`` the operator gave is
    used for both (stderr stays JSON when asked for). A syslog socket that cannot be
    reached now (no /dev/log in a container) is said once and left out.
    """
    root = logging.getLogger("servicerouter")
    root.setLevel(getattr(logging, level.upper()))
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, QuietSysLogHandler):
            handler.close()  # ours: its socket
    formatter = logging.Formatter(log_format or SYSLOG_FORMAT)
    stderr_formatter: logging.Formatter
    if json_lines:
        stderr_formatter = JsonFormatter()
    else:
        stderr_formatter = UtcFormatter(log_format or STDERR_FORMAT)
    console = logging.StreamHandler()
    console.setFormatter(stderr_formatter)
    root.addHandler(console)
    root.propagate = False
    if syslog_socket == "/dev/null":
        return
    why = probe_syslog(syslog_socket)
    if why is not None:
        root.warning("syslog socket %s unavailable (%s); logging to stderr only",
                     syslog_socket, why)
        return
    try:
        syslog = QuietSysLogHandler(syslog_socket)
    except OSError as err:
        root.warning("syslog socket %s unavailable (%s); logging to stderr only",
                     syslog_socket, err.strerror or err)
        return
    syslog.setFormatter(formatter)
    root.addHandler(syslog)


# servicerouter.py's long flags: argparse let its users shorten them to any unique prefix.
