"""marathon-lb's command line, flag by flag: accepted with its meaning, or refused.

A marathon-lb user's command line must either work or fail at once with one line
saying what to do instead; a flag silently ignored would change behaviour without
a word.  Accepted flags are ordinary flags of :mod:`servicerouter.cli.flags` (the
same option strings); the refused ones are registered here with an action that
exits 2 naming the reason, on the command line and in ``--config`` alike.  The
README table comes from the same registry and the parser, so it cannot drift.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MarathonLbFlag:
    """One marathon-lb flag: its option strings, and what servicerouter does with it.

    ``takes_value`` matters only for refused flags (their value is consumed, so
    the refusal, not "unrecognized arguments: 3", is what the user sees); ``note`` says how
    an accepted flag differs from marathon-lb, or why a refused one is refused
    and what to use instead.
    """

    options: tuple[str, ...]
    note: str
    refused: bool = False
    takes_value: bool = False


MARATHON_LB_FLAGS: tuple[MarathonLbFlag, ...] = (
    MarathonLbFlag(("--longhelp",), "Same."),
    MarathonLbFlag(("--marathon", "-m"),
                   "Same; also repeatable. No default: marathon-lb's "
                   "`http://master.mesos:8080` must be given explicitly."),
    MarathonLbFlag(("--haproxy-config",), "Same."),
    MarathonLbFlag(("--group",),
                   "Same; not required: without it, apps without HAPROXY_GROUP are "
                   "routed (servicerouter.py's default)."),
    MarathonLbFlag(("--command", "-c"), "Same (shell-split)."),
    MarathonLbFlag(("--max-reload-retries",),
                   "servicerouter does not poll for new HAProxy PIDs: a failed reload puts "
                   "the previous config back and the next sync retries; use "
                   "--manage-haproxy for reloads confirmed through the master socket",
                   refused=True, takes_value=True),
    MarathonLbFlag(("--reload-interval",),
                   "a failed reload is retried at the next sync, not on a timer; tune "
                   "--resync-interval, or use --manage-haproxy",
                   refused=True, takes_value=True),
    MarathonLbFlag(("--strict-mode",), "Same."),
    MarathonLbFlag(("--sse", "-s"), "Same."),
    MarathonLbFlag(("--archive-versions",),
                   "no copies of past configs are kept in /tmp: a config HAProxy rejects "
                   "is never written, and --dry prints the diff against the config on disk",
                   refused=True, takes_value=True),
    MarathonLbFlag(("--health-check", "-H"),
                   "Same; readiness checks are honoured too, and tasks being killed drain."),
    MarathonLbFlag(("--lru-cache-capacity",),
                   "servicerouter keeps no per-task cache to size; remove the flag",
                   refused=True, takes_value=True),
    MarathonLbFlag(("--haproxy-map",),
                   "Same files (domain2backend.map, app2backend.map beside the config, its "
                   "line format); a vhost added to or removed from a running backend is a "
                   "Runtime API map change in live mode, not a reload."),
    MarathonLbFlag(("--dont-bind-http-https",), "Same."),
    MarathonLbFlag(("--group-https-by-vhost",),
                   "HTTPS is terminated once in marathon_https_in, with each vhost's "
                   "certificate picked by SNI from a crt-list; there are no per-vhost "
                   "frontends to group, remove the flag",
                   refused=True),
    MarathonLbFlag(("--ssl-certs",),
                   "Same; without a usable one a self-signed default is generated "
                   "(marathon-lb defaults to /etc/ssl/cert.pem)."),
    MarathonLbFlag(("--skip-validation",), "Same."),
    MarathonLbFlag(("--skip-config-cleanup",),
                   "an app that makes the config invalid is always found (bisection) and "
                   "left out while the rest keep routing; there is no switch to turn that "
                   "off, remove the flag",
                   refused=True),
    MarathonLbFlag(("--dry", "-d"),
                   "Same: prints the config (and the diff against the file on disk to "
                   "stderr)."),
    MarathonLbFlag(("--min-serv-port-ip-per-task",), "Same."),
    MarathonLbFlag(("--max-serv-port-ip-per-task",), "Same."),
    MarathonLbFlag(("--max-backoff",),
                   "Same: the longest wait before reconnecting to Marathon (another name "
                   "for --backoff-max; default 30s, marathon-lb's 300s)."),
    MarathonLbFlag(("--syslog-socket",), "Same."),
    MarathonLbFlag(("--log-format",),
                   "Same; given, it formats stderr and syslog alike (default: a UTC time "
                   "stamp and the level on stderr, servicerouter.py's format to syslog)."),
    MarathonLbFlag(("--log-level",),
                   "Same names, any case (default info; marathon-lb's is DEBUG)."),
    MarathonLbFlag(("--marathon-auth-credential-file",), "Same."),
    MarathonLbFlag(("--auth-credentials",), "Same."),
    MarathonLbFlag(("--dcos-auth-credentials",),
                   "Same, also from $DCOS_SERVICE_ACCOUNT_CREDENTIAL; the token is "
                   "refreshed before it expires and on a 401."),
    MarathonLbFlag(("--marathon-ca-cert",),
                   "Same; it also verifies the DC/OS login endpoint."),
    # marathon-lb <= 1.4 (removed in 1.5 with its event-callback mode).
    MarathonLbFlag(("--listening", "-l"),
                   "Same (marathon-lb <= 1.4): subscribe to Marathon's event callbacks; the "
                   "URL is the one Marathon calls, and the server binds its port."),
    MarathonLbFlag(("--callback-url", "-u"),
                   "Same (marathon-lb <= 1.4): the URL registered with Marathon while "
                   "--listening names the address to listen on; the two ports must match "
                   "(servicerouter listens on its callback URL's port)."),
)


def _refusal(flag: MarathonLbFlag) -> str:
    return f"{flag.options[0]} (a marathon-lb flag) is not supported: {flag.note}"


class _Refused(argparse.Action):
    """Exits 2 with the flag's reason as soon as argparse meets it."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str = "",
                 **kwargs: Any) -> None:
        self.reason = reason
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        # Only the reason: the usage text would bury the one line that matters.
        parser.exit(2, f"{parser.prog}: error: {self.reason}\n")


def add_refused_flags(parser: argparse.ArgumentParser) -> None:
    """Register every refused marathon-lb flag (hidden from --help, in the README)."""
    for flag in MARATHON_LB_FLAGS:
        if flag.refused:
            parser.add_argument(*flag.options, action=_Refused, reason=_refusal(flag),
                                nargs="?" if flag.takes_value else 0,
                                dest=f"refused_{flag.options[0].lstrip('-').replace('-', '_')}",
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def refusal_for_key(key: str) -> str | None:
    """The refusal of a ``--config`` key naming a refused flag (dashes or underscores)."""
    name = "--" + key.lstrip("-").replace("_", "-")
    for flag in MARATHON_LB_FLAGS:
        if flag.refused and name in flag.options:
            return _refusal(flag)
    return None


def flags_table(parser: argparse.ArgumentParser) -> str:
    """Markdown table: each marathon-lb flag and what servicerouter does with it.

    "accepted" is read from the parser, so a flag the registry calls accepted but
    the parser lacks shows as what it is: an unknown flag.
    """
    known = parser._option_string_actions
    rows = ["| marathon-lb flag | servicerouter | notes |", "| --- | --- | --- |"]
    for flag in MARATHON_LB_FLAGS:
        names = ", ".join(f"`{o}`" for o in flag.options)
        action = known.get(flag.options[0])
        if isinstance(action, _Refused):
            status, note = "refused (exit 2)", flag.note + "."
        elif action is not None and all(o in known for o in flag.options):
            status, note = "accepted", flag.note
        else:
            status, note = "not yet (unknown flag, exit 2)", ""
        rows.append(f"| {names} | {status} | {note.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


# --- marathon-lb's command line, beyond the flag registry ---------------------------
# Its argparse errors (and ours) printed the whole usage first: forty lines burying the
# one that says what is wrong.  Ours are that one line, with what to write instead
# when the mistake is a marathon-lb habit.
_MARATHON_LB_DEFAULT_URL = "http://master.mesos:8080"


def _hint(message: str) -> str:
    """What to write instead, for argparse messages a marathon-lb command line causes."""
    if message == "argument --marathon/-m is required":
        return (f" (marathon-lb defaulted to {_MARATHON_LB_DEFAULT_URL}: give "
                f"-m {_MARATHON_LB_DEFAULT_URL})")
    if "ignored explicit argument" in message and message.startswith("argument --"):
        long_name = message.removeprefix("argument ").split("/", 1)[0]
        return (f"; single-dash flags are one letter each (-s -d): write {long_name} "
                "(marathon-lb rejects this form too)")
    if message.startswith("unrecognized arguments:"):
        return " (servicerouter --help lists the flags)"
    return ""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit 2, no usage dump."""

    def error(self, message: str) -> Any:  # argparse's signature: NoReturn
        self.exit(2, f"{self.prog}: error: {message}{_hint(message)}\n")


def port_or_zero(text: str) -> int:
    """--min/--max-serv-port-ip-per-task: a port, or 0 (both 0: marathon-lb's "off")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535 (0: off)")
    return value


def add_marathon_lb_compat_flags(parser: argparse.ArgumentParser) -> None:
    """Flags only marathon-lb had, accepted with its meaning (see :func:`resolve`)."""
    parser.add_argument(
        "--callback-url", "-u", default=None, metavar="URL",
        help="marathon-lb <= 1.4's event-callback form: the URL Marathon calls back, "
             "while --listening is then the address to listen on (same port); "
             "servicerouter's own form is --listening URL --listening-addr ADDR")


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """marathon-lb's meanings in servicerouter's settings, or one line saying what to change.

    * ``--listening http://0.0.0.0:8080 --callback-url http://lb1:8080`` (marathon-lb
      1.4: listen there, register this) is ``--listening http://lb1:8080
      --listening-addr 0.0.0.0``: servicerouter listens on its callback URL's port, so
      the two ports must match.
    * ``--sse`` with ``--listening`` is refused, as there (one event source).
    * ``--min-serv-port-ip-per-task 0 --max-serv-port-ip-per-task 0`` turns service
      port auto-assignment off (IP-per-task apps without a service port are not
      routed, each named once in the log); only one of them 0 is refused as there.
    """
    from urllib.parse import urlsplit

    callback = getattr(args, "callback_url", None)
    if callback:
        if not args.listening:
            parser.error("--callback-url needs --listening (marathon-lb's: the address "
                         "to listen on, e.g. --listening http://0.0.0.0:8080)")
        try:
            listen, target = urlsplit(args.listening), urlsplit(callback)
            listen_port, target_port = listen.port, target.port
        except ValueError as err:
            parser.error(f"--listening/--callback-url: {err}")
        if not target.hostname or target.scheme not in ("http", "https"):
            parser.error(f"--callback-url {callback!r}: expected http://HOST:PORT")
        if listen_port != target_port:
            parser.error(f"--callback-url port {target_port} differs from --listening port "
                         f"{listen_port}: servicerouter listens on its callback URL's port; "
                         "give --listening URL-Marathon-calls --listening-addr ADDR")
        if not args.listening_addr and listen.hostname:
            args.listening_addr = listen.hostname
        args.listening = callback
    if args.sse and args.listening and not args.dry:  # --dry previews, whatever else
        parser.error("cannot use --listening and --sse at the same time (as marathon-lb): "
                     "--sse follows Marathon's event stream, --listening takes its "
                     "callbacks; keep one")
    low, high = args.min_serv_port_ip_per_task, args.max_serv_port_ip_per_task
    if (low == 0) != (high == 0):
        parser.error("either give both --min-serv-port-ip-per-task and "
                     "--max-serv-port-ip-per-task or neither (both 0 turns service port "
                     "auto-assignment off, as marathon-lb)")
    if low and high and low > high:
        parser.error("cannot set --min-serv-port-ip-per-task to a higher value than "
                     "--max-serv-port-ip-per-task")


def environment_notes(environ: Mapping[str, str]) -> list[str]:
    """One warning per marathon-lb environment variable servicerouter reads differently.

    marathon-lb reads two: ``DCOS_SERVICE_ACCOUNT_CREDENTIAL`` (the default of
    ``--dcos-auth-credentials``, read the same way here) and ``FRAMEWORK_NAME``, the
    id of its own app, which it leaves out of the config.  servicerouter selects apps
    by labels and ``--group`` only, so the variable would otherwise go unnoticed.
    """
    name = environ.get("FRAMEWORK_NAME", "")
    if not name:
        return []
    shown = name if name.isprintable() and len(name) <= 100 else repr(name[:100])
    return [f"FRAMEWORK_NAME={shown} is set: marathon-lb left its own app /{shown} out of "
            "the config; servicerouter routes it like any other app (it is left out when "
            "it carries none of the --group names, or under --strict-mode without "
            "HAPROXY_{n}_ENABLED=true)"]
