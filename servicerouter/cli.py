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


def default_syslog_socket() -> str:
    return "/var/run/syslog" if sys.platform == "darwin" else "/dev/log"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    new.add_argument("--haproxy-bin", default="haproxy",
                     help="HAProxy binary used for validation")
    new.add_argument("--ssl-certs", default="", metavar="PATHS",
                     help="Comma-separated PEM bundles or directories of them for the "
                          "shared HTTPS frontend (a self-signed default is generated "
                          "when none is valid)")
    new.add_argument("--certs-dir", default="certs", metavar="DIR",
                     help="Directory of certificate bundles also served (default ./certs)")
    new.add_argument("--state-dir", metavar="DIR",
                     help="Where generated certificates and crt-lists are written "
                          "(default: 'servicerouter' beside --haproxy-config)")
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
    return parser


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


def setup_logging(syslog_socket: str, log_format: str, level: str = "info") -> None:
    """stderr always; syslog too unless the socket is /dev/null (as servicerouter.py)."""
    root = logging.getLogger("servicerouter")
    root.setLevel(getattr(logging, level.upper()))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(log_format)
    console = logging.StreamHandler()
    console.setFormatter(formatter)
    root.addHandler(console)
    if syslog_socket != "/dev/null":
        try:
            syslog = SysLogHandler(address=syslog_socket)
        except OSError as err:
            root.warning("syslog socket %s unavailable (%s); logging to stderr only",
                         syslog_socket, err.strerror or err)
        else:
            syslog.setFormatter(formatter)
            root.addHandler(syslog)
    root.propagate = False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    _apply_config_file(parser, argv)
    args = parser.parse_args(argv)
    if not args.longhelp and not args.marathon:
        parser.error("argument --marathon/-m is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.longhelp:
        from servicerouter.docs import longhelp_text

        print(longhelp_text())
        return 0
    setup_logging(args.syslog_socket, args.log_format, args.log_level)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Wire the stages together from parsed flags."""
    from servicerouter import haproxy
    from servicerouter.marathon import ClientSettings, MarathonClient, make_source
    from servicerouter.render import RenderOptions
    from servicerouter.runner import (
        Router,
        RouterSettings,
        SyncTrigger,
        run_listening,
        run_once,
    )
    from servicerouter.templates import TemplateError, load_fragments

    user_dirs = list(args.templates_dir)
    if os.path.isdir("templates"):
        user_dirs.append("templates")
    try:
        fragments = load_fragments(user_dirs)
    except TemplateError as err:
        log.error("template error: %s", err)
        return 2
    for name, source in fragments.sources().items():
        log.debug("fragment %s from %s", name, source)

    client_settings = ClientSettings(connect_timeout=args.connect_timeout,
                                     read_timeout=args.marathon_timeout)
    try:
        source = make_source(args.marathon, client_settings)
    except ValueError as err:
        log.error("%s", err)
        return 2
    options = RenderOptions(
        bind_addr=args.bind_addr, http_port=args.http_port, https_port=args.https_port,
        appid_port=args.appid_port, stats_port=args.stats_port,
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
    )
    router = Router(source, fragments, settings)
    if args.listening:
        if not isinstance(source, MarathonClient):
            log.error("--listening needs a Marathon URL, not a file: snapshot")
            return 2
        trigger = SyncTrigger(args.min_wait, args.max_wait, args.resync_interval)
        return run_listening(router, source, args.listening, args.listening_addr, trigger)
    return run_once(router)


if __name__ == "__main__":
    sys.exit(main())
