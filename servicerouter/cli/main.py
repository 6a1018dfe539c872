"""Command line: every servicerouter.py flag unchanged, new ones beside them.

servicerouter.py's eight flags keep their names, short forms, defaults and
meaning; ``-m`` now also adds hosts when repeated.  New flags follow
marathon-lb's names where one exists.  An optional YAML file (``--config``)
holds the same keys as the long flags (dashes or underscores).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from logging.handlers import SysLogHandler
from typing import Any

from servicerouter import __version__

log = logging.getLogger("servicerouter")


DEFAULT_HAPROXY_BIN = "haproxy"


def default_syslog_socket() -> str:
    return "/var/run/syslog" if sys.platform == "darwin" else "/dev/log"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicerouter",
        description="Marathon HAProxy Service Router",
        epilog="--longhelp describes every app setting and template fragment.",
    )
    # --- servicerouter.py's flags, unchanged -------------------------------------
    parser.add_argument("--longhelp", action="store_true",
                        help="Print out configuration details")
    parser.add_argument("--marathon", "-m", nargs="+", action="extend",
                        help="Marathon endpoint, eg. -m http://marathon1:8080 "
                             "-m http://marathon2:8080 (or file:PATH of a saved "
                             "/v2/apps?embed=apps.tasks body)")
    parser.add_argument("--listening", "-l",
                        help="The HTTP address that Marathon can call this script back "
                             "at (http://lb1:8080)")
    parser.add_argument("--syslog-socket", default=default_syslog_socket(),
                        help="Socket to write syslog messages to. Use '/dev/null' to "
                             "disable logging to syslog")
    parser.add_argument("--log-format", default="%(name)s: %(message)s",
                        help="Set log message format")
    parser.add_argument("--haproxy-config", default="/etc/haproxy/haproxy.cfg",
                        help="Location of haproxy configuration")
    parser.add_argument("--group", action="append", default=[],
                        help="Only generate config for apps which list the specified names. "
                             "Defaults to apps without groups. Use '*' to match all groups")
    parser.add_argument("--command", "-c",
                        help="If set, run this command to reload haproxy (shell-split). "
                             "Default: detect upstart, systemd or sysvinit")

    # --- new flags ---------------------------------------------------------------
    new = parser.add_argument_group("servicerouter additions")
    new.add_argument("--version", action="version", version=f"servicerouter {__version__}")
    new.add_argument("--config", metavar="FILE",
                     help="YAML file with the same keys as the long flags")
    new.add_argument("--templates-dir", action="append", default=[], metavar="DIR",
                     help="Directory of fragment overrides, searched before ./templates "
                          "(repeatable; the first given wins)")
    new.add_argument("--dry", action="store_true",
                     help="Print the config (and its diff against the file on disk to "
                          "stderr); write and reload nothing")
    new.add_argument("--skip-validation", action="store_true",
                     help="Do not check the config with 'haproxy -c' before writing it")
    new.add_argument("--haproxy-bin", default=None, metavar="PATH",
                     help="HAProxy binary used for validation (and run by --manage-haproxy); "
                          "default 'haproxy' from PATH, validation skipped with a warning "
                          "when there is none. A given one must exist")
    new.add_argument("--ssl-certs", default="", metavar="PATHS",
                     help="Comma-separated PEM bundles or directories of them for the "
                          "shared HTTPS frontend (a self-signed default is generated "
                          "when none is valid)")
    new.add_argument("--certs-dir", default="certs", metavar="DIR",
                     help="Directory of certificate bundles also served (default ./certs)")
    new.add_argument("--state-dir", metavar="DIR",
                     help="Where generated certificates and crt-lists are written "
                          "(default: '.servicerouter' beside --haproxy-config)")
    new.add_argument("--cookie-secret-file", metavar="FILE",
                     help="Secret that keys sticky ports' dynamic cookies, so a cookie does "
                          "not reveal its server's address; give every edge node the same "
                          "file so a client stays on its server whichever node it reaches "
                          "(default: keys derived from the backend name, the same everywhere)")
    new.add_argument("--bind-addr", default="*",
                     help="Bind address of the shared frontends and of ports without "
                          "HAPROXY_{n}_BIND_ADDR (default '*')")
    new.add_argument("--http-port", type=int, default=80, help="Shared HTTP frontend port")
    new.add_argument("--https-port", type=int, default=443, help="Shared HTTPS frontend port")
    new.add_argument("--appid-port", type=int, default=81,
                     help="X-Marathon-App-Id frontend port")
    new.add_argument("--stats-port", type=int, default=9090, help="HAProxy stats port")
    new.add_argument("--listening-addr", default="", metavar="ADDR",
                     help="Address the --listening callback server binds to (default all)")
    new.add_argument("--marathon-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="Read timeout of Marathon requests")
    new.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS",
                     help="Connect timeout of Marathon requests")
    new.add_argument("--min-wait", type=float, default=0.2, metavar="SECONDS",
                     help="Quiet time after the last event before a sync")
    new.add_argument("--max-wait", type=float, default=2.0, metavar="SECONDS",
                     help="Longest delay between an event and its sync")
    new.add_argument("--resync-interval", type=float, default=300.0, metavar="SECONDS",
                     help="Full resync period in event modes")
    new.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"],
                     help="Log level (default info)")

    live = parser.add_argument_group("event streams, managed HAProxy and status")
    live.add_argument("--sse", action="store_true",
                      help="Follow Marathon's event stream (GET /v2/events) and keep HAProxy "
                           "in step; reconnects across the --marathon hosts")
    live.add_argument("--sse-stall-timeout", type=float, default=60.0, metavar="SECONDS",
                      help="Reconnect when the event stream sends nothing (not even a "
                           "keep-alive) for this long")
    live.add_argument("--backoff-initial", type=float, default=1.0, metavar="SECONDS",
                      help="First retry delay after Marathon fails (doubles, jittered)")
    live.add_argument("--backoff-max", type=float, default=30.0, metavar="SECONDS",
                      help="Longest retry delay after Marathon fails")
    live.add_argument("--manage-haproxy", action="store_true",
                      help="Run HAProxy (--haproxy-bin) in master-worker mode and reload it "
                           "seamlessly through its master socket; restart it if it dies")
    live.add_argument("--haproxy-stop-on-exit", action="store_true",
                      help="With --manage-haproxy: stop HAProxy when servicerouter exits "
                           "(default: leave it serving; the next start adopts it)")
    live.add_argument("--hard-stop-after", default="60s", metavar="TIME",
                      help="With --manage-haproxy: HAProxy's hard-stop-after, the longest "
                           "an old worker may linger after a reload (default 60s)")
    live.add_argument("--runtime-socket", metavar="PATH",
                      help="Runtime API socket for a HAProxy reloaded by --command: written "
                           "as 'stats socket' in the config (every mode, --dry too) and, "
                           "in the event modes, used to change servers without reloading")
    live.add_argument("--no-runtime-api", action="store_true",
                      help="Always reload, never change servers through the Runtime API")
    live.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                      help="How long a removed server drains before it is deleted")
    live.add_argument("--status-listen", metavar="HOST:PORT",
                      help="Serve /healthz, /status and /metrics (a bare PORT binds "
                           "127.0.0.1; other addresses need --status-token)")
    live.add_argument("--status-token", default=os.environ.get("SERVICEROUTER_STATUS_TOKEN"),
                      metavar="TOKEN",
                      help="Bearer token for the status endpoint (default: "
                           "$SERVICEROUTER_STATUS_TOKEN)")

    routing = parser.add_argument_group("routing features and TLS")
    routing.add_argument("--strict-mode", action="store_true",
                         help="Only route ports whose app sets HAPROXY_{n}_ENABLED=true")
    routing.add_argument("--health-check", "-H", action="store_true",
                         help="Only route tasks that are running, pass all their Marathon "
                              "health checks and readiness checks; drain tasks being killed")
    routing.add_argument("--min-serv-port-ip-per-task", type=int, default=10050,
                         metavar="PORT",
                         help="Lowest service port given to IP-per-task apps Marathon gave "
                              "none (default 10050)")
    routing.add_argument("--max-serv-port-ip-per-task", type=int, default=10100,
                         metavar="PORT",
                         help="Highest service port given to IP-per-task apps (default 10100)")
    routing.add_argument("--allow-label-templates", action="store_true",
                         help="Let apps replace per-port fragments with HAPROXY_{n}_<FRAGMENT> "
                              "labels (sandboxed Jinja2; a bad one quarantines only its app)")
    routing.add_argument("--list-certs", action="store_true",
                         help="List the certificate bundles (--ssl-certs, --certs-dir and, "
                              "with -m, the apps' HAPROXY_{n}_SSL_CERT) with their names, "
                              "expiry and problems; exit 1 if any is unusable")

    access = parser.add_argument_group("Marathon access")
    access.add_argument("--marathon-auth-credential-file", metavar="FILE",
                        help="File whose first line is USER:PASSWORD for Marathon's HTTP "
                             "basic auth (keep it mode 600)")
    access.add_argument("--auth-credentials", metavar="USER:PASSWORD",
                        default=os.environ.get("SERVICEROUTER_MARATHON_CREDENTIALS"),
                        help="Marathon basic auth (default: "
                             "$SERVICEROUTER_MARATHON_CREDENTIALS); visible to other local "
                             "users in the process list: prefer the credential file")
    access.add_argument("--marathon-ca-cert", metavar="FILE",
                        help="CA bundle that signs Marathon's certificate (https is "
                             "verified against the system CAs otherwise)")
    access.add_argument("--marathon-insecure", action="store_true",
                        help="Do not verify Marathon's TLS certificate (logs a warning)")
    access.add_argument("--marathon-client-cert", metavar="FILE",
                        help="Client certificate for mutual TLS with Marathon (PEM; may "
                             "also hold the key)")
    access.add_argument("--marathon-client-key", metavar="FILE",
                        help="Private key of --marathon-client-cert, if in its own file")
    return parser


def client_settings(args: argparse.Namespace) -> Any:
    """ClientSettings from the flags; ValueError (never echoing a secret) if unusable."""
    from servicerouter.source.marathon import (
        ClientSettings,
        parse_credentials,
        read_credential_file,
    )

    auth = None
    if args.marathon_auth_credential_file and args.auth_credentials:
        raise ValueError("give --auth-credentials or --marathon-auth-credential-file, not both")
    if args.marathon_auth_credential_file:
        auth = read_credential_file(args.marathon_auth_credential_file)
    elif args.auth_credentials:
        auth = parse_credentials(args.auth_credentials, "--auth-credentials")
    if args.marathon_insecure and args.marathon_ca_cert:
        raise ValueError("--marathon-insecure and --marathon-ca-cert contradict each other")
    if args.marathon_client_key and not args.marathon_client_cert:
        raise ValueError("--marathon-client-key needs --marathon-client-cert")
    for flag in ("marathon_ca_cert", "marathon_client_cert", "marathon_client_key"):
        path = getattr(args, flag)
        if path and not os.access(path, os.R_OK):
            raise ValueError(f"--{flag.replace('_', '-')} {path}: not a readable file")
    verify: bool | str = False if args.marathon_insecure else (args.marathon_ca_cert or True)
    cert: tuple[str, str] | str | None = args.marathon_client_cert
    if args.marathon_client_cert and args.marathon_client_key:
        cert = (args.marathon_client_cert, args.marathon_client_key)
    return ClientSettings(connect_timeout=args.connect_timeout,
                          read_timeout=args.marathon_timeout, auth=auth, verify=verify,
                          client_cert=cert)


def _apply_config_file(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Load ``--config`` YAML into the parser's defaults (flags still win)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    import yaml

    try:
        with open(known.config, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as err:
        parser.error(f"cannot read --config {known.config}: {err}")
    if not isinstance(data, dict):
        parser.error(f"--config {known.config}: expected a mapping of flag names to values")
    dests = {a.dest for a in parser._actions}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in dests or dest in ("config", "help", "version"):
            parser.error(f"--config {known.config}: unknown key {key!r}")
        if dest in ("marathon", "group", "templates_dir") and isinstance(value, str):
            value = [value]
        defaults[dest] = value
    parser.set_defaults(**defaults)


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


def setup_logging(syslog_socket: str, log_format: str, level: str = "info") -> None:
    """stderr always; syslog too unless the socket is /dev/null (as servicerouter.py).

    A syslog socket that cannot be reached now (no /dev/log in a container) is
    said once and left out: stderr alone is used.
    """
    root = logging.getLogger("servicerouter")
    root.setLevel(getattr(logging, level.upper()))
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, QuietSysLogHandler):
            handler.close()  # ours: its socket
    formatter = logging.Formatter(log_format)
    console = logging.StreamHandler()
    console.setFormatter(formatter)
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
LEGACY_LONG_FLAGS = ("--help", "--longhelp", "--marathon", "--listening", "--syslog-socket",
                     "--log-format", "--haproxy-config", "--group", "--command")


def expand_legacy_abbreviations(parser: argparse.ArgumentParser,
                                argv: Sequence[str]) -> list[str]:
    """Spell out abbreviations that named one of servicerouter.py's flags.

    ``--haproxy x.cfg`` meant ``--haproxy-config`` there; our new flags would make
    it ambiguous, and a drop-in must not break an operator's command line. An
    argument that is a full flag of ours, or not a prefix of exactly one legacy
    flag, is left to argparse.
    """
    known = set(parser._option_string_actions)
    expanded = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return expanded + list(argv[index:])
        name, sep, value = arg.partition("=")
        if name.startswith("--") and name not in known:
            matches = [flag for flag in LEGACY_LONG_FLAGS if flag.startswith(name)]
            if len(matches) == 1:
                arg = matches[0] + sep + value
        expanded.append(arg)
    return expanded


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    argv = expand_legacy_abbreviations(parser, sys.argv[1:] if argv is None else argv)
    _apply_config_file(parser, argv)
    args = parser.parse_args(argv)
    # Given (flag or --config) or defaulted: only a given binary must exist.
    args.haproxy_bin_given = args.haproxy_bin is not None
    if args.haproxy_bin is None:
        args.haproxy_bin = DEFAULT_HAPROXY_BIN
    if not args.longhelp and not args.list_certs and not args.marathon:
        parser.error("argument --marathon/-m is required")
    if args.marathon:
        _check_marathon_urls(parser, args)
    low, high = args.min_serv_port_ip_per_task, args.max_serv_port_ip_per_task
    if not 1 <= low <= high <= 65535:
        parser.error("--min/--max-serv-port-ip-per-task must satisfy 1 <= min <= max <= 65535")
    return args


def _check_marathon_urls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every -m URL usable, or exit 2 now (the message never shows a password)."""
    from servicerouter.source.marathon import parse_marathon_url

    urls: list[str] = args.marathon
    found: set[tuple[str, str] | None] = set()
    for url in urls:
        try:
            found.add(parse_marathon_url(url)[1])
        except ValueError as err:
            parser.error(str(err))
    found.discard(None)
    if len(found) > 1 and not (args.auth_credentials or args.marathon_auth_credential_file):
        parser.error("the --marathon URLs carry different credentials; give one "
                     "--auth-credentials instead")
    if len(urls) > 1 and any(u.startswith("file:") for u in urls):
        parser.error("a file: snapshot cannot be mixed with Marathon hosts")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.longhelp:
        from servicerouter.cli.docs import longhelp_text

        print(longhelp_text())
        return 0
    setup_logging(args.syslog_socket, args.log_format, args.log_level)
    if args.list_certs:
        return list_certs(args)
    return run(args)


def list_certs(args: argparse.Namespace) -> int:
    """--list-certs: every bundle with its names and expiry, and every problem."""
    from servicerouter.tls.manager import TlsManager, expiry_rows, format_rows

    sources = [p for p in args.ssl_certs.split(",") if p]
    if args.certs_dir and os.path.isdir(args.certs_dir):
        sources.append(args.certs_dir)
    if args.marathon:
        from servicerouter.model.services import build_model
        from servicerouter.source.marathon import MarathonError, make_source, parse_apps

        try:
            source = make_source(args.marathon, client_settings(args))
            apps = parse_apps(source.fetch_apps_body())
        except (MarathonError, ValueError) as err:
            log.error("cannot read the apps' certificates: %s", err)
            return 2
        model = build_model(apps, args.group, lambda host: host)
        sources.extend(sorted({s.settings.ssl_cert for s in model.services
                               if s.settings.ssl_cert}))
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    bundles, errors = TlsManager().load(sources, now)
    sys.stdout.write(format_rows(expiry_rows(bundles, errors, now)))
    return 1 if errors else 0


def read_cookie_secret(path: str | None) -> str | None:
    """The operator's sticky-cookie secret (``--cookie-secret-file``), read once at startup.

    It is not generated here: every edge node must use the same one, or a client's
    cookie from one node would mean nothing on the next.
    """
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--cookie-secret-file {path}: cannot read it: {err}") from None
    if len(secret) < 16:
        raise ValueError(f"--cookie-secret-file {path}: a secret needs at least 16 characters")
    return secret


def check_haproxy_bin(args: argparse.Namespace) -> str | None:
    """Why a given ``--haproxy-bin`` cannot be used, or None.

    Only the default (``haproxy`` from PATH) may be missing: validation is then
    skipped with a warning, as the original never validated.  A binary the
    operator named is meant to be used; silently not validating would hide a typo.
    """
    if not getattr(args, "haproxy_bin_given", False):
        return None
    import shutil

    path = args.haproxy_bin
    if shutil.which(path) is not None:
        return None
    if os.sep not in path:
        return f"--haproxy-bin {path}: not found on PATH"
    if not os.path.exists(path):
        return f"--haproxy-bin {path}: no such file"
    if os.path.isdir(path):
        return f"--haproxy-bin {path}: is a directory"
    return f"--haproxy-bin {path}: not executable"


def run(args: argparse.Namespace) -> int:
    """Wire the stages together from parsed flags."""
    from servicerouter.apply import haproxy
    from servicerouter.engine.runner import (
        Router,
        RouterSettings,
        SyncTrigger,
        run_listening,
        run_once,
    )
    from servicerouter.render.config import RenderOptions
    from servicerouter.render.fragment_check import check_fragments
    from servicerouter.render.fragments import TemplateError, load_fragments
    from servicerouter.source.marathon import MarathonClient, make_source

    problem = check_haproxy_bin(args)
    if problem:
        log.error("%s", problem)
        return 2
    user_dirs = list(args.templates_dir)
    if os.path.isdir("templates"):
        user_dirs.append("templates")
    try:
        fragments = load_fragments(user_dirs)
        check_fragments(fragments)  # a fragment that raises fails now, not at a sync
    except TemplateError as err:
        log.error("template error: %s", err)
        return 2
    for name, source in fragments.sources().items():
        log.debug("fragment %s from %s", name, source)

    try:
        source = make_source(args.marathon, client_settings(args),
                             embed_readiness=args.health_check)
    except ValueError as err:
        log.error("%s", err)
        return 2
    try:
        cookie_secret = read_cookie_secret(args.cookie_secret_file)
    except ValueError as err:
        log.error("%s", err)
        return 2
    options = RenderOptions(
        bind_addr=args.bind_addr, http_port=args.http_port, https_port=args.https_port,
        appid_port=args.appid_port, stats_port=args.stats_port, cookie_secret=cookie_secret,
        # Written in every mode, one-shot and --dry too (live modes also use it).
        runtime_socket=args.runtime_socket,
    )
    settings = RouterSettings(
        config_path=args.haproxy_config,
        groups=tuple(args.group),
        validate=not args.skip_validation,
        haproxy_bin=args.haproxy_bin,
        reload=tuple(haproxy.reload_command(args.command)),
        dry=args.dry,
        render_options=options,
        state_dir=args.state_dir,
        ssl_certs=tuple(p for p in args.ssl_certs.split(",") if p),
        certs_dir=args.certs_dir,
        strict_mode=args.strict_mode,
        health_check=args.health_check,
        ip_per_task_ports=(args.min_serv_port_ip_per_task, args.max_serv_port_ip_per_task),
        allow_label_templates=args.allow_label_templates,
    )
    router = Router(source, fragments, settings)
    if not args.dry:  # temp files a crash left beside the config or certificates
        from servicerouter.apply.tempfiles import clean_startup
        from servicerouter.engine.runner import default_state_dir

        state_dir = settings.state_dir or default_state_dir(settings.config_path)
        clean_startup(settings.config_path, [state_dir, os.path.join(state_dir, "bundles")])
    if args.sse or args.manage_haproxy or (args.listening and not args.dry):
        return _run_live(args, router)
    if args.listening:
        if not isinstance(source, MarathonClient):
            log.error("--listening needs a Marathon URL, not a file: snapshot")
            return 2
        trigger = SyncTrigger(args.min_wait, args.max_wait, args.resync_interval)
        return run_listening(router, source, args.listening, args.listening_addr, trigger)
    return run_once(router)


def _run_live(args: argparse.Namespace, router: Any) -> int:
    """--sse, --listening, --manage-haproxy: the long-running loop (servicerouter.engine.live)."""
    from dataclasses import replace

    from servicerouter.apply import haproxy
    from servicerouter.apply.managed import ManagedHAProxy, ManagedSettings
    from servicerouter.engine.live import LiveOptions, LiveSettings, run_live
    from servicerouter.engine.runner import default_state_dir
    from servicerouter.serve.status import parse_listen
    from servicerouter.source.marathon import MarathonClient

    if (args.sse or args.listening) and not isinstance(router.source, MarathonClient):
        log.error("--sse and --listening need a Marathon URL, not a file: snapshot")
        return 2
    status_listen = None
    if args.status_listen:
        try:
            status_listen = parse_listen(args.status_listen)
        except ValueError as err:
            log.error("--status-listen: %s", err)
            return 2
    settings = router.settings
    render = settings.render_options
    managed = None
    runtime_socket = args.runtime_socket
    if args.manage_haproxy:
        state_dir = settings.state_dir or default_state_dir(settings.config_path)
        managed = ManagedHAProxy(ManagedSettings(
            haproxy_bin=args.haproxy_bin, config_path=os.path.abspath(settings.config_path),
            state_dir=os.path.abspath(state_dir), stop_on_exit=args.haproxy_stop_on_exit))
        runtime_socket = managed.settings.runtime_socket
        render = replace(render, master_worker=True, hard_stop_after=args.hard_stop_after)
    if runtime_socket:
        render = replace(render, runtime_socket=runtime_socket)
    router.settings = replace(settings, render_options=render)
    mode = "sse" if args.sse else "listening" if args.listening else "poll"
    options = LiveOptions(
        mode=mode, callback_url=args.listening, listen_addr=args.listening_addr,
        status_listen=status_listen, status_token=args.status_token,
        stall_timeout=args.sse_stall_timeout, drain_timeout=args.drain_timeout,
        runtime_socket=runtime_socket, managed=managed,
        reload_command=None if managed else haproxy.reload_command(args.command),
    )
    live_settings = LiveSettings(
        min_wait=args.min_wait, max_wait=args.max_wait, resync_interval=args.resync_interval,
        backoff_base=args.backoff_initial, backoff_cap=args.backoff_max,
        runtime_updates=not args.no_runtime_api,
    )
    try:
        return run_live(router, options, live_settings)
    except ValueError as err:  # e.g. a status endpoint off loopback without a token
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
