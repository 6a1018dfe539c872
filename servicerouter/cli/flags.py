"""The flags: servicerouter.py's eight unchanged, new ones beside them, and ``--config``.

servicerouter.py's eight flags keep their names, short forms, defaults and
meaning; ``-m`` now also adds hosts when repeated.  New flags follow
marathon-lb's names where one exists.  An optional YAML file (``--config``)
holds the same keys as the long flags (dashes or underscores).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from servicerouter import __version__
from servicerouter.cli import marathon_lb_flags, values
from servicerouter.cli.marathon_lb_flags import add_refused_flags

DEFAULT_HAPROXY_BIN = "haproxy"


def default_syslog_socket() -> str:
    return "/var/run/syslog" if sys.platform == "darwin" else "/dev/log"


def _haproxy_log_target(text: str) -> str:
    """--haproxy-log's type: an address or stderr/stdout, nothing that could add a directive."""
    from servicerouter.render.log_target import haproxy_log_target

    try:
        return haproxy_log_target(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser(prog: str = "servicerouter") -> argparse.ArgumentParser:
    parser = marathon_lb_flags.OneLineErrorParser(  # one-line errors, no usage dump
        prog=prog,
        description="Marathon HAProxy Service Router",
        epilog="--longhelp describes every app setting and template fragment. "
               "Subcommands: 'servicerouter bridge HOST:PORT...' (haproxy-marathon-bridge's "
               "command line) and 'servicerouter install' (service or cron job); each has "
               "its own --help.",
    )
    # --- servicerouter.py's flags, unchanged -------------------------------------
    parser.add_argument("--longhelp", action="store_true",
                        help="Print out configuration details")
    parser.add_argument("--marathon", "-m", nargs="+", action="extend",
                        help="Marathon endpoint, eg. -m http://marathon1:8080 "
                             "-m http://marathon2:8080 (HOST:PORT means http; several "
                             "hosts may be comma-separated; or file:PATH of a saved "
                             "/v2/apps?embed=apps.tasks body)")
    parser.add_argument("--listening", "-l",
                        help="The HTTP address that Marathon can call this script back "
                             "at (http://lb1:8080)")
    parser.add_argument("--syslog-socket", default=default_syslog_socket(),
                        help="Socket to write syslog messages to. Use '/dev/null' to "
                             "disable logging to syslog")
    parser.add_argument("--log-format", default=None,
                        help="Set log message format (default: '%%(name)s: %%(message)s' "
                             "to syslog, with a UTC timestamp and the level on stderr)")
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
                     help="YAML file with the same keys as the long flags, checked as "
                          "they are (booleans: true/false; lists for repeatable flags); "
                          "flags given on the command line win")
    new.add_argument("--print-config", action="store_true",
                     help="Print the effective settings (flags, --config file, defaults) "
                          "as YAML, secrets redacted, and exit")
    new.add_argument("--templates-dir", action="append", default=[], metavar="DIR",
                     help="Directory of fragment overrides, searched before ./templates "
                          "(repeatable; the first given wins)")
    new.add_argument("--dry", "-d", action="store_true",
                     help="One-shot preview, whatever else is given: print the config (and "
                          "its diff against the file on disk to stderr); the certificate "
                          "files it names go to a temporary directory named on stderr; "
                          "write, reload, subscribe and start nothing else")
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
    new.add_argument("--bind-addr", default="*", type=values.bind_address,
                     help="Bind address of the shared frontends and of ports without "
                          "HAPROXY_{n}_BIND_ADDR (default '*')")
    new.add_argument("--http-port", type=values.port, default=80, help="Shared HTTP frontend port")
    new.add_argument("--https-port", type=values.port, default=443, help="Shared HTTPS frontend port")
    new.add_argument("--appid-port", type=values.port, default=81,
                     help="X-Marathon-App-Id frontend port")
    new.add_argument("--stats-port", type=values.port, default=9090,
                     help="HAProxy stats and health (/_haproxy_health_check) port")
    new.add_argument("--stats-bind-addr", default="127.0.0.1", type=values.bind_address,
                     metavar="ADDR",
                     help="Address the stats and health listener binds to (default "
                          "127.0.0.1; '*' to let external health checks reach it)")
    new.add_argument("--dont-bind-http-https", action="store_true",
                     help="Never bind the shared HTTP and HTTPS frontends (--http-port, "
                          "--https-port), as marathon-lb's flag: virtual hosts are then "
                          "served on their app's service port only")
    new.add_argument("--haproxy-map", action="store_true",
                     help="marathon-lb's map routing: exact virtual hosts without a path and "
                          "app ids are routed through domain2backend.map and app2backend.map "
                          "beside --haproxy-config (its HAPROXY_MAP_* templates read them); "
                          "a vhost added to or removed from a running backend is a Runtime API "
                          "map change (with --manage-haproxy), not a reload")
    new.add_argument("--listening-addr", default="", metavar="ADDR",
                     help="Address the --listening callback server binds to (default all)")
    marathon_lb_flags.add_marathon_lb_compat_flags(new)
    new.add_argument("--marathon-timeout", type=values.positive_seconds, default=30.0, metavar="SECONDS",
                     help="Read timeout of Marathon requests")
    new.add_argument("--connect-timeout", type=values.positive_seconds, default=5.0, metavar="SECONDS",
                     help="Connect timeout of Marathon requests")
    new.add_argument("--min-wait", type=values.seconds, default=0.2, metavar="SECONDS",
                     help="Quiet time that ends a burst of events (an event after a quiet "
                          "period syncs at once)")
    new.add_argument("--max-wait", type=values.seconds, default=2.0, metavar="SECONDS",
                     help="Longest delay between an event of a burst and its sync")
    new.add_argument("--resync-interval", type=values.positive_seconds, default=300.0, metavar="SECONDS",
                     help="Full resync period in event modes")
    new.add_argument("--log-level", default="info", type=str.lower,
                     choices=["debug", "info", "warning", "error"],
                     help="Log level, any case (default info)")
    new.add_argument("--haproxy-log", type=_haproxy_log_target, metavar="TARGET",
                     help="where HAProxy sends its logs, access logs included: 'stderr' "
                          "(seen in servicerouter's stderr with --manage-haproxy, or a "
                          "foreground HAProxy's), or a syslog address (/dev/log, HOST:PORT, "
                          "udp@HOST:PORT). Default: 127.0.0.1 local0 and local1 notice, as "
                          "servicerouter.py")
    new.add_argument("--log-json", action="store_true",
                     help="stderr: one JSON object per line (time, level, logger, message "
                          "and structured fields); syslog keeps its format")

    live = parser.add_argument_group("event streams, managed HAProxy and status")
    live.add_argument("--sse", "-s", action="store_true",
                      help="Follow Marathon's event stream (GET /v2/events) and keep HAProxy "
                           "in step; reconnects across the --marathon hosts")
    live.add_argument("--sse-stall-timeout", type=values.positive_seconds, default=60.0, metavar="SECONDS",
                      help="Reconnect when the event stream sends nothing (not even a "
                           "keep-alive) for this long")
    live.add_argument("--backoff-initial", type=values.positive_seconds, default=1.0, metavar="SECONDS",
                      help="First retry delay after Marathon fails (doubles, jittered)")
    live.add_argument("--backoff-max", "--max-backoff", type=values.positive_seconds,
                      default=30.0, metavar="SECONDS",
                      help="Longest retry delay after Marathon fails")
    live.add_argument("--manage-haproxy", action="store_true",
                      help="Run HAProxy (--haproxy-bin) in master-worker mode and reload it "
                           "seamlessly through its master socket; restart it if it dies. "
                           "Follows Marathon's event stream (as --sse) unless --listening")
    live.add_argument("--haproxy-stop-on-exit", action="store_true",
                      help="With --manage-haproxy: stop HAProxy when servicerouter exits "
                           "(default: leave it serving; the next start adopts it)")
    live.add_argument("--hard-stop-after", default="60s", metavar="TIME",
                      type=values.haproxy_time,
                      help="With --manage-haproxy: HAProxy's hard-stop-after, the longest "
                           "an old worker may linger after a reload (default 60s)")
    live.add_argument("--runtime-socket", metavar="PATH",
                      help="Runtime API socket for a HAProxy reloaded by --command: written "
                           "as 'stats socket' in the config (every mode, --dry too) and, "
                           "in the event modes, used to change servers without reloading")
    live.add_argument("--no-runtime-api", action="store_true",
                      help="Always reload, never change servers through the Runtime API")
    live.add_argument("--drain-timeout", type=values.seconds, default=10.0, metavar="SECONDS",
                      help="How long a removed server drains before it is deleted")
    live.add_argument("--status-listen", metavar="HOST:PORT",
                      help="Serve the dashboard (/), /healthz, /status and /metrics "
                           "(a bare PORT binds "
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
    routing.add_argument("--min-serv-port-ip-per-task", type=marathon_lb_flags.port_or_zero,
                         default=10050,
                         metavar="PORT",
                         help="Lowest service port given to IP-per-task apps Marathon gave "
                              "none (default 10050)")
    routing.add_argument("--max-serv-port-ip-per-task", type=marathon_lb_flags.port_or_zero,
                         default=10100,
                         metavar="PORT",
                         help="Highest service port given to IP-per-task apps (default 10100; "
                              "both 0: none given, marathon-lb's way to turn it off)")
    routing.add_argument("--allow-label-templates", action="store_true",
                         help="Let apps replace per-port fragments with HAPROXY_{n}_<FRAGMENT> "
                              "labels (sandboxed Jinja2; a bad one quarantines only its app)")
    routing.add_argument("--list-certs", action="store_true",
                         help="List the certificate bundles (--ssl-certs, --certs-dir and, "
                              "with -m, the apps' HAPROXY_{n}_SSL_CERT) with their names, "
                              "expiry and problems; exit 1 if any is unusable")

    checks = parser.add_argument_group("health-check load")
    checks.add_argument("--max-check-rate", type=values.rate, default=1000.0,
                        metavar="CHECKS_PER_S",
                        help="Health checks per second the built-in server-check fragments "
                             "may ask of HAProxy over the whole config; above it every "
                             "interval they write is doubled until the total fits (default "
                             "1000; 0: intervals exactly as Marathon's health checks say)")

    holds = parser.add_argument_group(
        "removal holds (a Marathon answer that would empty the load balancer waits)")
    holds.add_argument("--removal-hold-threshold", type=values.fraction, default=0.5,
                       metavar="FRACTION",
                       help="Hold a sync that would remove more than this fraction of the "
                            "routed servers or backends (removing all of them always holds; "
                            "default 0.5)")
    holds.add_argument("--removal-hold-fetches", type=values.non_negative_int, default=3,
                       metavar="N",
                       help="Apply a held removal once N consecutive syncs saw it (default 3; "
                            "0 turns holds off)")
    holds.add_argument("--removal-hold-seconds", type=values.seconds, default=30.0,
                       metavar="SECONDS",
                       help="...and at least this long after the first (default 30)")
    holds.add_argument("--confirm-removal", action="store_true",
                       help="Apply the removal this run would hold (one-shot runs; live runs: "
                            "POST /removal/confirm on --status-listen with the token)")

    rules = parser.add_argument_group(
        "operator rules (routing set at the edge: /api/rules on --status-listen)")
    rules.add_argument("--rules-store", default="file", metavar="file|zk://HOST:PORT[,...]/PATH",
                       help="Where operator rules live: 'file' (default: rules.json in the "
                            "state directory, one edge node) or a ZooKeeper ensemble and "
                            "path shared by every edge node (changes apply on all of them, "
                            "watched, not polled)")
    rules.add_argument("--rules-zk-auth", metavar="USER:PASSWORD",
                       default=os.environ.get("SERVICEROUTER_RULES_ZK_AUTH"),
                       help="ZooKeeper digest auth for --rules-store zk://; the nodes "
                            "servicerouter creates are readable and writable by this "
                            "identity only (default: $SERVICEROUTER_RULES_ZK_AUTH)")

    add_marathon_access_flags(parser)
    # marathon-lb flags without a meaning here: exit 2 with the reason, never ignored.
    add_refused_flags(parser)
    return parser


def add_marathon_access_flags(parser: argparse.ArgumentParser) -> None:
    """The "Marathon access" flags (auth, TLS), read by :func:`client_settings`; shared
    by ``servicerouter zdd``, whose users pass marathon-lb's same flags to ``zdd.py``."""
    access = parser.add_argument_group("Marathon access")
    access.add_argument("--marathon-auth-credential-file", metavar="FILE",
                        help="File whose first line is USER:PASSWORD for Marathon's HTTP "
                             "basic auth (keep it mode 600)")
    access.add_argument("--auth-credentials", metavar="USER:PASSWORD",
                        default=os.environ.get("SERVICEROUTER_MARATHON_CREDENTIALS"),
                        help="Marathon basic auth (default: "
                             "$SERVICEROUTER_MARATHON_CREDENTIALS); visible to other local "
                             "users in the process list: prefer the credential file")
    access.add_argument("--dcos-auth-credentials", metavar="JSON",
                        default=os.environ.get("DCOS_SERVICE_ACCOUNT_CREDENTIAL"),
                        help="DC/OS service account (JSON with uid, private_key, "
                             "login_endpoint): log in with a signed JWT and send its token "
                             "to Marathon, refreshed before expiry and on 401 (default: "
                             "$DCOS_SERVICE_ACCOUNT_CREDENTIAL, marathon-lb's variable)")
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
    dcos_given = getattr(args, "dcos_auth_credentials", None)
    if dcos_given and (args.marathon_auth_credential_file or args.auth_credentials):
        raise ValueError("give --dcos-auth-credentials (or $DCOS_SERVICE_ACCOUNT_CREDENTIAL) "
                         "or basic auth (--auth-credentials/--marathon-auth-credential-file), "
                         "not both")
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
    token_auth = None
    if dcos_given:
        from servicerouter.source.dcos_auth import DcosAuth, parse_dcos_credentials

        token_auth = DcosAuth(parse_dcos_credentials(dcos_given), verify=verify,
                              timeout=(args.connect_timeout, args.marathon_timeout))
    return ClientSettings(connect_timeout=args.connect_timeout,
                          read_timeout=args.marathon_timeout, auth=auth, verify=verify,
                          client_cert=cert, token_auth=token_auth)


def _apply_config_file(parser: argparse.ArgumentParser,
                       argv: Sequence[str]) -> frozenset[str]:
    """Load ``--config`` YAML, checked by the flags' own actions, into the parser's defaults.

    Returns the dests the file sets.
    """
    from servicerouter.cli import config_file

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return frozenset()
    try:
        settings = config_file.load(build_parser, known.config)
    except config_file.ConfigError as err:
        config_file.fail(parser.prog, known.config, err)
    parser.set_defaults(**settings)
    return frozenset(settings)


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


def parse_args(argv: Sequence[str] | None = None, *, prog: str = "servicerouter",
               defaults: dict[str, Any] | None = None) -> argparse.Namespace:
    """Flags -> settings. ``defaults`` (a subcommand's own, e.g. the bridge's) sit
    under ``--config`` and the command line, which both still win."""
    parser = build_parser(prog)
    if defaults:
        parser.set_defaults(**defaults)
    argv = expand_legacy_abbreviations(parser, sys.argv[1:] if argv is None else argv)
    from_file = _apply_config_file(parser, argv)
    args = parser.parse_args(argv)
    # What the command line gave wins outright: a list flag replaces the file's list.
    from servicerouter.cli.config_file import given_on_command_line

    command_line = given_on_command_line(build_parser, argv)
    for dest, value in command_line.items():
        setattr(args, dest, value)
    args.given = frozenset(command_line) | from_file  # dests set on purpose, not defaulted
    # Given (flag or --config) or defaulted: only a given binary must exist.
    args.haproxy_bin_given = args.haproxy_bin is not None
    if args.haproxy_bin is None:
        args.haproxy_bin = DEFAULT_HAPROXY_BIN
    if not (args.longhelp or args.list_certs or args.print_config or args.marathon):
        parser.error("argument --marathon/-m is required")
    if args.marathon:
        _check_marathon_urls(parser, args)
    marathon_lb_flags.resolve(parser, args)  # -u, ip-per-task ports 0: marathon-lb's forms
    return args


def _check_marathon_urls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every -m URL usable, or exit 2 now (the message never shows a password)."""
    from servicerouter.source.marathon_urls import parse_marathon_url, split_marathon_hosts

    try:  # -m a:8080,b:8080 is two hosts (the bridge's and marathon-lb's users' form)
        args.marathon = split_marathon_hosts(args.marathon)
    except ValueError as err:
        parser.error(str(err))
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


