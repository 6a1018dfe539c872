"""``servicerouter-bridge`` (also ``servicerouter bridge``): haproxy-marathon-bridge's command line.

Marathon's ``bin/haproxy-marathon-bridge`` was run as ``haproxy-marathon-bridge
HOST:PORT... > haproxy.cfg`` (print a whole config), ``... refresh_system_haproxy
HOST:PORT...`` (write /etc/haproxy/haproxy.cfg when it changed and reload),
``... install_haproxy_system HOST:PORT...`` (install a once-a-minute cron job) and
``logged FORM ...`` (everything to syslog instead of the terminal).  The same
forms work here, on top of servicerouter's engine and with all its flags after
the hosts, so a bridge user's cron lines and scripts keep working with only the
program name changed.

What comes out differs from the bridge's file (servicerouter's frontends and
backends, its defaults, the shared :80/:81/:443 frontends, app labels honoured):
docs/migrating.md lists each difference.

The printed config is produced by a real one-shot sync (the Router every mode
uses), written to a private temporary file, checked with ``haproxy -c`` and only
then copied to stdout.  The certificate material it names (the shared HTTPS
frontend's default certificate and crt-list) is written where a normal run
writes it (``--state-dir``, by default beside ``--haproxy-config``), so the
file is usable as it is on a fresh host and stays usable after a reboot, unlike
a config pointing into a temporary directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from typing import TextIO

log = logging.getLogger("servicerouter")

PROG = "servicerouter-bridge"
# Its output went to a file, so it said nothing on stderr unless something failed;
# --log-level (or --config) still overrides it.
BRIDGE_DEFAULTS = {"log_level": "warning"}
# The bridge routed every app it found; servicerouter.py's default is "apps without
# HAPROXY_GROUP".  Applied when neither --group nor --config names groups (not as a
# parser default: --group appends to its default list, it would not replace it).
BRIDGE_GROUPS = ["*"]

# The bridge's function names a user may have in a cron line or script.
PRINT_FORMS = ("config", "main")
INSTALL_FORMS = ("install_haproxy_system", "install_cronjob")
REFRESH_FORM = "refresh_system_haproxy"
UNSUPPORTED_FORMS = {
    "header": "the config is rendered as a whole; run it without a form to print it",
    "apps": "the config is rendered as a whole; run it without a form to print it",
    "cronjob": "'servicerouter install --cron --root DIR' shows the cron entry it writes",
}

USAGE = f"""usage: {PROG} [logged] [FORM] HOST:PORT... [servicerouter flags]

  {PROG} HOST:PORT... > haproxy.cfg
      print a complete HAProxy config for the apps of the first Marathon that
      answers (checked with 'haproxy -c' first; logs go to stderr)
  {PROG} refresh_system_haproxy HOST:PORT...
      write --haproxy-config (default /etc/haproxy/haproxy.cfg) when it changed,
      validated, and reload HAProxy: servicerouter's one-shot run
  {PROG} install_haproxy_system HOST:PORT...
      'servicerouter install --cron': config file, a cron entry running the
      one-shot every minute, HAProxy enabled (see 'servicerouter install --help')
  {PROG} logged FORM HOST:PORT...
      log to syslog only, nothing on stderr (for cron)

HOST:PORT means http://HOST:PORT; http(s):// URLs, comma-separated lists and
file:PATH snapshots work as with servicerouter -m.  Unlike servicerouter, every
app is routed (--group '*') unless --group is given.  Other flags: servicerouter --help.
"""


def split_hosts(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The leading HOST:PORT words (the bridge's arguments), and the flags after them."""
    index = 0
    while index < len(argv) and not argv[index].startswith("-"):
        index += 1
    return list(argv[:index]), list(argv[index:])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # the bridge printed its usage too, and failed
        sys.stderr.write(USAGE)
        return 2
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    logged = argv[0] == "logged"
    if logged:
        argv = argv[1:]
    form = "config"
    if argv and not argv[0].startswith("-") and ":" not in argv[0]:
        form = argv.pop(0)  # a bridge form name; hosts always hold a ':'
    if form in UNSUPPORTED_FORMS or form not in (*PRINT_FORMS, *INSTALL_FORMS, REFRESH_FORM):
        why = UNSUPPORTED_FORMS.get(form, "expected HOST:PORT or one of "
                                    + ", ".join((REFRESH_FORM, *INSTALL_FORMS)))
        sys.stderr.write(f"{PROG}: {form!r}: {why}\n")
        return 2
    hosts, rest = split_hosts(argv)
    marathon = ["-m", *hosts] if hosts else []
    if form in INSTALL_FORMS:
        from servicerouter.cli import install

        group = [] if any(a.startswith("--group") or a.startswith("--config") for a in rest) \
            else ["--group", "*"]  # the cron job keeps routing every app
        return install.main(["--cron", *marathon, *group, *rest])
    from servicerouter.cli.flags import parse_args
    from servicerouter.cli.logs import setup_logging

    args = parse_args([*marathon, *rest], prog=PROG, defaults=BRIDGE_DEFAULTS)
    modes = [flag for flag, on in (("--dry", args.dry), ("--sse", args.sse),
                                   ("--listening", args.listening),
                                   ("--manage-haproxy", args.manage_haproxy),
                                   ("--longhelp", args.longhelp),
                                   ("--list-certs", args.list_certs)) if on]
    if modes:
        sys.stderr.write(f"{PROG}: {modes[0]} is not a bridge form: the bridge prints or "
                         "refreshes once; run servicerouter itself for that mode\n")
        return 2
    if not args.group:
        args.group = list(BRIDGE_GROUPS)
    setup_logging(args.syslog_socket, args.log_format, args.log_level)
    if logged:
        syslog_only()
    if form == REFRESH_FORM:
        from servicerouter.cli.main import run

        return run(args)  # servicerouter's own one-shot: validate, write, reload
    return print_config(args)


def syslog_only() -> None:
    """The bridge's ``logged``: log lines go to syslog, not the terminal (cron would
    mail them).  Kept on stderr when syslog is unavailable: a lost error is worse."""
    from servicerouter.cli.logs import QuietSysLogHandler

    logger = logging.getLogger("servicerouter")
    if not any(isinstance(h, QuietSysLogHandler) for h in logger.handlers):
        log.warning("logged: no syslog to log to; logging to stderr")
        return
    for handler in list(logger.handlers):
        if not isinstance(handler, QuietSysLogHandler):
            logger.removeHandler(handler)


def print_config(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """One sync into a private temporary file, validated, then printed; 0 or 1.

    Nothing is printed when the sync fails (Marathon unreachable, HAProxy rejects
    the config): ``> haproxy.cfg`` then leaves an empty file and a non-zero exit,
    never a config that looks complete and is not.
    """
    from servicerouter.cli.main import StartupError, build_router
    from servicerouter.engine.runner import default_state_dir

    args.dry = False  # the sync writes, but only into the temporary directory
    try:
        router = build_router(args)
    except StartupError as err:
        log.error("%s", err)
        return 2
    state_dir = os.path.abspath(args.state_dir or default_state_dir(args.haproxy_config))
    with tempfile.TemporaryDirectory(prefix="servicerouter-bridge-") as workdir:
        target = os.path.join(workdir, "haproxy.cfg")
        # No lua-load of marathon-lb's endpoints: the printed config must not depend on
        # where this servicerouter is installed.
        render = replace(router.settings.render_options, stats_lua=None)
        router.settings = replace(router.settings, config_path=target, reload=None,
                                  state_dir=state_dir, render_options=render)
        result = router.sync()
        if not result.ok or not os.path.exists(target):
            log.error("no config printed: %s", result.error or "the sync wrote nothing")
            return 1
        with open(target, encoding="utf-8") as handle:
            text = handle.read()
    stream = out if out is not None else sys.stdout
    stream.write(text)
    stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
