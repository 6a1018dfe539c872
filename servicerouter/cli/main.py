"""Command line entry point: parse the flags, set up logging, run one mode.

The flags live in :mod:`servicerouter.cli.flags`, logging in
:mod:`servicerouter.cli.logs`; this module only picks what runs: ``--longhelp``,
``--list-certs``, a one-shot sync or a live run.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from servicerouter.cli.flags import client_settings, parse_args
from servicerouter.cli.logs import setup_logging
from servicerouter.cli.modes import Mode

log = logging.getLogger("servicerouter")


# Subcommands, each in its own module; anything else is servicerouter.py's flag-only
# command line (which has no positional argument, so a word here cannot be a flag value).
SUBCOMMANDS = {"bridge": "servicerouter.cli.bridge", "install": "servicerouter.cli.install",
               "zdd": "servicerouter.cli.zdd"}


class StartupError(Exception):
    """A setting that stops the router before its first sync (exit 2)."""


def main(argv: Sequence[str] | None = None, *, collector_was_on: bool | None = None) -> int:
    """Run the command line; the exit status.

    The cyclic garbage collector is paused until the run is known to be a long one:
    start-up (imports, the flags) makes tens of thousands of objects and no garbage,
    and the collector ran some eighty times over them (2% of the instructions of a
    one-shot run with no apps).  A one-shot run keeps it paused, as its sync does; the live
    modes and the subcommands run with it as the caller had it.
    ``collector_was_on``: the collector's state before the caller paused it
    (``python -m servicerouter`` pauses it before importing this module); None: as
    found now.  It is restored on return.
    """
    was_on = gc.isenabled() if collector_was_on is None else collector_was_on
    gc.disable()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), was_on)
    finally:
        if was_on:  # as it was (the live modes turn it on for their run)
            gc.enable()
        else:
            gc.disable()


def _main(argv: list[str], collector_was_on: bool) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        if collector_was_on:  # a subcommand may run for long (zdd waits on deployments)
            gc.enable()
        return int(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]))
    args = parse_args(argv)
    if args.longhelp:
        from servicerouter.cli.docs import longhelp_text

        print(longhelp_text())
        return 0
    if args.print_config:
        from servicerouter.cli.config_file import print_config
        from servicerouter.cli.flags import build_parser

        sys.stdout.write(print_config(build_parser(), args))
        return 0
    setup_logging(args.syslog_socket, args.log_format, args.log_level, args.log_json)
    from servicerouter.cli.marathon_lb_flags import environment_notes

    for note in environment_notes(os.environ):  # marathon-lb's environment, read here
        log.warning("%s", note)
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


def log_startup(args: argparse.Namespace, mode: Mode, state_dir: str | None = None) -> None:
    """The first lines of every run: which servicerouter, which HAProxy, which mode.

    They answer the first questions about any log someone sends: the version that
    wrote it, the HAProxy it drove (the one on PATH may not be the expected one),
    and whether it was a one-shot or a daemon.
    """
    from servicerouter import __version__
    from servicerouter.apply.haproxy import haproxy_version
    from servicerouter.cli.modes import describe

    log.info("servicerouter %s (Python %s), mode: %s", __version__,
             sys.version.split()[0], describe(mode, args))
    version = haproxy_version(args.haproxy_bin, cache_dir=state_dir)
    if version is None:
        log.info("HAProxy: %s cannot be run (haproxy -v failed)", args.haproxy_bin)
    else:
        import shutil

        log.info("HAProxy %s (%s)", version, shutil.which(args.haproxy_bin) or args.haproxy_bin)


def run(args: argparse.Namespace) -> int:
    """Pick the mode, take the writer lock (unless --dry), then run."""
    from servicerouter.cli import modes
    from servicerouter.engine.runner import default_state_dir

    mode = modes.choose(args)
    # HAProxy's build (version, Lua) is read from the state directory when the same
    # binary answered an earlier run there: a one-shot run need not start HAProxy.
    state_dir = args.state_dir or default_state_dir(args.haproxy_config)
    log_startup(args, mode, None if mode.name == modes.DRY else state_dir)
    for line in modes.ignored_flags(args, mode, getattr(args, "given", ())):
        log.warning("%s", line)
    if mode.note:
        log.info("%s", mode.note)
    problem = check_haproxy_bin(args)
    if problem:
        log.error("%s", problem)
        return 2
    if mode.name == modes.DRY:  # writes nothing, so it needs no lock
        return _run(args, mode)
    from servicerouter.apply import writer_lock
    from servicerouter.apply.tempfiles import clean_startup

    try:
        locks = writer_lock.acquire_all(args.haproxy_config, state_dir)
    except writer_lock.LockHeld as err:
        log.error("%s; stop it, or give this one another --haproxy-config and --state-dir",
                  err)
        return 2
    except OSError as err:
        log.error("cannot take the writer lock beside %s: %s", args.haproxy_config,
                  err.strerror or err)
        return 2
    try:
        # We hold the lock: temp files beside the config or certificates are a dead
        # run's (no one else writes here), so they go now, whatever their age.
        clean_startup(args.haproxy_config, [state_dir, os.path.join(state_dir, "bundles")],
                      older_than=0)
        return _run(args, mode, state_dir)
    finally:
        for lock in locks:
            lock.release()


def _run(args: argparse.Namespace, mode: Mode, state_dir: str | None = None) -> int:
    """Build the router, then run it once (--dry too) or keep it running.

    ``state_dir``: given when this run holds its writer lock (not --dry).
    """
    from servicerouter.apply.haproxy import save_build_info
    from servicerouter.cli import modes
    from servicerouter.engine.runner import run_once

    try:
        router = build_router(args, lazy_fragments=mode.name == modes.ONCE,
                              build_info_dir=state_dir)
        router.rules_store = open_rules_store(args, router.settings)
    except StartupError as err:
        log.error("%s", err)
        return 2
    if state_dir is not None:
        save_build_info(args.haproxy_bin, state_dir)
    try:
        if mode.live:
            gc.enable()  # a long run: cycles must be collected (syncs pause it themselves)
            return _run_live(args, router, mode.name)
        from servicerouter.render.fragment_files import TemplateError

        try:
            status = run_once(router)
            if status != 0:
                router.fragments  # noqa: B018 - a bad fragment is said whatever Marathon answered
        except TemplateError as err:  # fragments compiled lazily (see build_router)
            log.error("template error: %s", err)
            return 2
    finally:
        router.rules_store.close()
    if router.settings.dry_files_dir:
        report_dry_files(router.settings.dry_files_dir)
    return status


def open_rules_store(args: argparse.Namespace, settings: Any) -> Any:
    """The operator rules store --rules-store names (servicerouter.rules.wiring)."""
    from servicerouter.engine.runner import default_state_dir
    from servicerouter.rules.wiring import open_store

    state_dir = settings.state_dir or default_state_dir(settings.config_path)
    try:
        return open_store(args.rules_store, state_dir, args.rules_zk_auth)
    except ValueError as err:
        raise StartupError(f"--rules-store: {err}") from None


def build_router(args: argparse.Namespace, lazy_fragments: bool = False,
                 build_info_dir: str | None = None) -> Any:
    """The Router (servicerouter.engine.runner) the flags describe; every mode and
    subcommand that syncs (the bridge too) starts from this one, so they cannot
    drift apart. StartupError says why the flags cannot make one.

    ``lazy_fragments`` (one-shot runs): the fragments are compiled and checked only
    when Marathon's answer turns out not to be the one last applied
    (servicerouter.engine.unchanged); a bad one then raises TemplateError from the sync.
    ``build_info_dir``: where an earlier run left HAProxy's ``-vv`` answer.
    """
    from servicerouter.apply import haproxy
    from servicerouter.engine.holds import HoldSettings
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragment_files import LazyFragments, TemplateError
    from servicerouter.render.options import RenderOptions
    from servicerouter.serve.haproxy_endpoints import stats_lua_script
    from servicerouter.source.marathon import make_source

    problem = check_haproxy_bin(args)
    if problem:
        raise StartupError(problem)
    user_dirs = list(args.templates_dir)
    if os.path.isdir("templates"):
        user_dirs.append("templates")
    fragments: Any = LazyFragments(user_dirs, load_checked_fragments)
    if not lazy_fragments:
        try:
            fragments = fragments.get()
        except TemplateError as err:
            raise StartupError(f"template error: {err}") from None

    try:
        source = make_source(args.marathon, client_settings(args),
                             embed_readiness=args.health_check)
    except ValueError as err:
        raise StartupError(str(err)) from None
    try:
        cookie_secret = read_cookie_secret(args.cookie_secret_file)
    except ValueError as err:
        raise StartupError(str(err)) from None
    from servicerouter.apply.mapfiles import default_map_dir

    options = RenderOptions(
        bind_addr=args.bind_addr, http_port=args.http_port, https_port=args.https_port,
        appid_port=args.appid_port, stats_port=args.stats_port, cookie_secret=cookie_secret,
        stats_bind_addr=args.stats_bind_addr,
        # Written in every mode, one-shot and --dry too (live modes also use it).
        runtime_socket=args.runtime_socket,
        stats_lua=stats_lua_script(args.haproxy_bin,  # marathon-lb's /_haproxy_get*
                                   cache_dir=build_info_dir),
        # The built-in fragments route vhosts and app ids through map files kept here.
        map_dir=default_map_dir(args.haproxy_config),
        haproxy_map=args.haproxy_map,  # marathon-lb's domain2backend.map / app2backend.map
        bind_http_https=not args.dont_bind_http_https,
        haproxy_log=args.haproxy_log,  # HAProxy's own (access) logs: --haproxy-log
        max_check_rate=args.max_check_rate or None,  # 0: intervals as Marathon says
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
        removal_hold=HoldSettings(args.removal_hold_threshold, args.removal_hold_fetches,
                                  args.removal_hold_seconds),
        confirm_removal=args.confirm_removal,
        dry_files_dir=dry_files_dir() if args.dry else None,
        # A one-shot run skips parse and render when Marathon's answer was already applied.
        skip_unchanged_body=not (args.sse or args.manage_haproxy or args.listening),
    )
    return Router(source, fragments, settings)


def load_checked_fragments(user_dirs: list[str]) -> Any:
    """The fragments of ``user_dirs`` and the defaults, compiled and checked: a fragment
    that raises fails the run naming its file and line, not at some later sync."""
    from servicerouter.render.fragment_check import check_fragments
    from servicerouter.render.fragments import load_fragments

    fragments = load_fragments(user_dirs)
    check_fragments(fragments)
    for name, source in fragments.sources().items():
        log.debug("fragment %s from %s", name, source)
    return fragments


def dry_files_dir() -> str:
    """A new temporary directory for the files a --dry config names, reported on stderr.

    The preview must pass ``haproxy -c`` on a host that never ran servicerouter,
    so the default certificate and crt-lists it names have to exist somewhere;
    the real state directory is only read (IP-per-task ports), never written.
    """
    import tempfile

    return tempfile.mkdtemp(prefix="servicerouter-dry-")


def report_dry_files(directory: str) -> None:
    """Name the --dry files directory on stderr, or remove it if nothing went there."""
    try:
        os.rmdir(directory)  # only succeeds when empty (Marathon could not be read)
    except OSError:
        sys.stderr.write(f"--dry: the files this config names (certificates, maps) are in "
                         f"{directory} (temporary: remove it when done)\n")


def _run_live(args: argparse.Namespace, router: Any, mode: str) -> int:
    """--sse, --listening, --manage-haproxy: the long-running loop (servicerouter.engine.live)."""
    from dataclasses import replace

    from servicerouter.apply import haproxy
    from servicerouter.apply.managed import ManagedHAProxy, ManagedSettings
    from servicerouter.engine.live import LiveOptions, LiveSettings, run_live
    from servicerouter.engine.runner import default_state_dir
    from servicerouter.serve.status import parse_listen
    from servicerouter.source.marathon import MarathonClient

    if mode in ("sse", "listening") and not isinstance(router.source, MarathonClient):
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
