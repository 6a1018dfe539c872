"""``servicerouter zdd``'s command line: marathon-lb's ``zdd.py`` flags, and ours.

marathon-lb users run ``zdd.py`` from scripts and CI jobs, so its flags keep their
spelling and meaning here: ``--json/-j`` (or the app JSON as the first word),
``--resume/-r``, ``--linear-increase``, the Marathon auth and TLS flags, the logging
flags and ``--longhelp``.  Where ``zdd.py`` read marathon-lb's HAProxy stats page
(``--marathon-lb``), servicerouter zdd reads each edge node's status API
(``--status``, short ``-l`` as before); the long ``--marathon-lb`` spelling is refused
with what to pass instead, never taken for a status URL it is not.
"""

from __future__ import annotations

import argparse
import os

from servicerouter.cli.flags import add_marathon_access_flags

DEFAULT_LOG_FORMAT = "%(asctime)s zdd %(levelname)s %(message)s"
MARATHON_LB_REFUSED = ("--marathon-lb: servicerouter zdd reads servicerouter's status API, "
                       "not HAProxy's stats page: pass --status http://EDGE:PORT (each edge "
                       "node's --status-listen), once per edge node")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicerouter zdd",
        description="Zero-downtime blue/green (or canary) deployment of a Marathon app "
                    "served by servicerouter (marathon-lb's zdd.py workflow).")
    parser.add_argument("app_json", metavar="APP.json", nargs="?",
                        help="the app definition to deploy (or --json)")
    parser.add_argument("--json", "-j", dest="json_file", metavar="APP.json",
                        help="the app definition to deploy, as zdd.py takes it")
    parser.add_argument("--longhelp", action="store_true",
                        help="print how a deployment goes, step by step, and exit")
    parser.add_argument("--marathon", "-m", help="Marathon URL (required)")
    parser.add_argument("--status", "-l", action="append", metavar="URL",
                        help="servicerouter's status URL (--status-listen); repeat for "
                             "every edge node (required)")
    parser.add_argument("--marathon-lb", dest="marathon_lb", metavar="URL",
                        help="zdd.py's marathon-lb stats URL: refused, use --status")
    parser.add_argument("--status-token", default=os.environ.get("SERVICEROUTER_STATUS_TOKEN"),
                        help="servicerouter's --status-token (default: "
                             "$SERVICEROUTER_STATUS_TOKEN)")
    parser.add_argument("--dry-run", "-d", action="store_true",
                        help="print the new colour's app definition and stop")
    parser.add_argument("--force", "-f", action="store_true", help="do not ask to confirm")
    parser.add_argument("--step-delay", "-s", type=float, default=5.0,
                        help="seconds between checks (default 5)")
    parser.add_argument("--initial-instances", "-i", type=int, default=1,
                        help="instances the new colour starts with (default 1)")
    parser.add_argument("--linear-increase", type=int, default=0, metavar="N",
                        help="grow the new colour by N instances each step, up to its "
                             "target, instead of by half of its instances with a last "
                             "jump to the target (default 0: by half)")
    parser.add_argument("--resume", "-r", action="store_true",
                        help="go on with a deployment left half done (both colours "
                             "running): the newest colour grows, the older one drains")
    parser.add_argument("--max-wait", "-w", type=float, default=300.0,
                        help="seconds a step may make no progress before rolling back "
                             "(default 300)")
    parser.add_argument("--new-instances", "-n", type=int, default=0,
                        help="hybrid deployment: stop with this many new instances")
    parser.add_argument("--canary", type=float, metavar="PERCENT",
                        help="stop with this share of requests on the new colour (held by "
                             "server weights) and hold; its instances: --new-instances, "
                             "else PERCENT of the old colour's (at least 1)")
    parser.add_argument("--step-percent", metavar="P1,P2,...",
                        help="full deployment: shift requests to the new colour in these "
                             "steps by server weights as its tasks turn healthy (e.g. "
                             "10,25,50: step k once k/3 of the target is healthy; all "
                             "healthy: 100%%)")
    parser.add_argument("--complete-cur", "-c", action="store_true",
                        help="finish a hybrid deployment: all instances on the newest colour")
    parser.add_argument("--complete-prev", "-p", action="store_true",
                        help="undo a hybrid deployment: all instances on the previous colour")
    parser.add_argument("--pre-kill-hook", metavar="PROGRAM",
                        help="run before drained tasks are killed, with the old app, the "
                             "task ids and the new app as JSON arguments; non-zero stops")
    parser.add_argument("--log-level", default="info", type=str.lower,
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default=DEFAULT_LOG_FORMAT,
                        help="Python logging format of each line (default: the time, "
                             "'zdd', the level and the message)")
    parser.add_argument("--syslog-socket", default="/dev/null", metavar="PATH",
                        help="also log to this syslog socket (zdd.py's default was "
                             "/dev/log; default here: /dev/null, stderr only)")
    add_marathon_access_flags(parser)
    parser.set_defaults(connect_timeout=5.0, marathon_timeout=10.0)
    return parser


def usage_error(args: argparse.Namespace) -> str | None:
    """Why these flags cannot run (one line, exit 2), or None."""
    if args.marathon_lb:
        return MARATHON_LB_REFUSED
    if args.app_json and args.json_file:
        return "give the app JSON once: as the first word or with --json, not both"
    if not (args.app_json or args.json_file):
        return "the app JSON is required: servicerouter zdd APP.json (or --json APP.json)"
    if not args.marathon:
        return "--marathon/-m is required (Marathon's URL)"
    if not args.status:
        return "--status/-l is required (servicerouter's --status-listen URL, per edge node)"
    if args.canary is not None and not 1 <= round(args.canary) <= 99:
        return "--canary is a whole percentage from 1 to 99"
    if args.linear_increase < 0:
        return "--linear-increase is a number of instances: 1 or more (0: grow by half)"
    return None


__all__ = ["DEFAULT_LOG_FORMAT", "build_parser", "usage_error"]
