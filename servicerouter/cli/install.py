"""``servicerouter install``: the bridge's ``install_haproxy_system``, done right.

haproxy-marathon-bridge installed itself with a cron job regenerating the config
every minute, and could not be undone or re-run safely.  This installer writes:

- ``/etc/servicerouter/config.yml``: the Marathon hosts and every other flag
  given to it, as ``--config`` reads them (mode 600: it may hold credentials);
- either a systemd unit running servicerouter live (``--sse``, the default)
  or, with ``--cron``, ``/etc/cron.d/servicerouter`` running the one-shot every
  minute as the bridge did;
- a manifest (``/var/lib/servicerouter/install.json``) of what it wrote, with
  each file's hash, so that a second run changes nothing and ``--uninstall``
  removes exactly those files (a file edited since is left in place, said so).

It enables HAProxy (and the unit) with systemctl; with ``--root DIR`` it only
writes below DIR and prints the commands it would run, so tests (and packagers)
install into a temporary tree.  A file it did not write is never overwritten
without ``--force``, which keeps the original for ``--uninstall`` to put back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PROG = "servicerouter install"
CONFIG = "/etc/servicerouter/config.yml"
UNIT = "/etc/systemd/system/servicerouter.service"
CRON = "/etc/cron.d/servicerouter"
MANIFEST = "/var/lib/servicerouter/install.json"
BACKUP_SUFFIX = ".before-servicerouter"
BRIDGE_HOSTS = "/etc/haproxy-marathon-bridge/marathons"  # the bridge's installed host list
BRIDGE_CRON = "/etc/cron.d/haproxy-marathon-bridge"
SERVICE = "servicerouter.service"
# cron's PATH is /usr/bin:/bin: haproxy (validation) lives in /usr/sbin.
CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Flags that choose a mode or a config file: the installer decides those.
REFUSED = {"dry": "--dry previews; the installed service writes the config",
           "sse": "live mode is the default; --cron installs the one-shot instead",
           "config": "the installer writes the config file itself",
           "longhelp": "not a setting", "list_certs": "not a setting",
           "listening": "the installed service follows Marathon's event stream (--sse)"}


@dataclass
class Report:
    """What a run did (or, with --root, would do), in the order it happened."""

    lines: list[str] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    changed: bool = False
    failed: bool = False

    def say(self, line: str, changed: bool = True) -> None:
        self.lines.append(line)
        self.changed = self.changed or changed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,  # a servicerouter flag abbreviation passes through
        description="Install servicerouter as a service (or a cron job); "
        "any other servicerouter flag given here goes into its config file",
        epilog="Run it again with other settings to change the installation.")
    parser.add_argument("--marathon", "-m", nargs="+", action="extend", default=[],
                        help="Marathon hosts (HOST:PORT, URLs, comma lists); default: "
                             f"haproxy-marathon-bridge's {BRIDGE_HOSTS} if present")
    parser.add_argument("--cron", action="store_true",
                        help="run the one-shot every minute from cron, as the bridge did, "
                             "instead of a live systemd service")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove what an earlier install wrote (files edited since stay)")
    parser.add_argument("--root", metavar="DIR",
                        help="install below DIR and only print the commands that would run")
    parser.add_argument("--force", action="store_true",
                        help="replace files the installer did not write (kept aside, put "
                             "back by --uninstall)")
    parser.add_argument("--executable", metavar="CMD",
                        help="command that runs servicerouter (default: this Python "
                             "with -m servicerouter)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    root = os.path.abspath(ns.root) if ns.root else "/"
    try:
        return _main(parser, ns, rest, root)
    except (OSError, ValueError) as err:  # not root, a read-only tree, a broken manifest
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1


def _main(parser: argparse.ArgumentParser, ns: argparse.Namespace, rest: list[str],
          root: str) -> int:
    report = Report()
    if ns.uninstall:
        if ns.marathon or rest or ns.cron:
            parser.error("--uninstall takes no other settings (besides --root)")
        uninstall(root, report, run=ns.root is None)
        return finish(report, "nothing to remove: servicerouter was not installed here")
    hosts = ns.marathon or bridge_hosts(root)
    if not hosts:
        parser.error(f"-m HOST:PORT is required (no {BRIDGE_HOSTS} to take them from)")
    settings = settings_from_flags(parser, ["-m", *hosts, *rest])
    command = executable(ns.executable)
    files = {CONFIG: (render_config(settings), 0o600)}
    if ns.cron:
        files[CRON] = (render_cron(command), 0o644)
    else:
        files[UNIT] = (render_unit(command), 0o644)
    install(root, files, report, force=ns.force, live=not ns.cron, run=ns.root is None)
    warn_about_the_host(root, report)
    mode = "a cron job running the one-shot every minute" if ns.cron else \
        f"the live service {SERVICE}"
    return finish(report, f"nothing to change: servicerouter is installed as {mode}")


def finish(report: Report, unchanged: str) -> int:
    for line in report.lines:
        print(line)
    for command in report.commands:
        print("would run: " + shlex.join(command))
    if not report.changed and not report.failed:
        print(unchanged)
    return 1 if report.failed else 0


# --------------------------------------------------------------------------- what to write


def settings_from_flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The servicerouter flags given, checked by its own parser, as config keys.

    Only flags actually given are written: a default left out of the file keeps
    following servicerouter's default when it is upgraded.
    """
    from servicerouter.cli import flags
    from servicerouter.source.marathon_urls import split_marathon_hosts

    given = flags.build_parser(PROG)
    for action in given._actions:
        action.default = argparse.SUPPRESS
    values = vars(given.parse_args(flags.expand_legacy_abbreviations(given, argv)))
    for dest, why in REFUSED.items():
        if dest in values:
            parser.error(f"--{dest.replace('_', '-')}: {why}")
    flags.parse_args(argv, prog=PROG)  # every check a run would make; exits 2 on error
    values["marathon"] = split_marathon_hosts(values["marathon"])
    return values


def render_config(settings: dict[str, Any]) -> str:
    import yaml

    body = yaml.safe_dump({key.replace("_", "-"): value for key, value in settings.items()},
                          default_flow_style=False, sort_keys=True)
    return ("# Written by 'servicerouter install'; run it again to change these settings,\n"
            "# 'servicerouter install --uninstall' removes this file.\n" + body)


def executable(given: str | None) -> tuple[list[str], dict[str, str]]:
    """The command that runs servicerouter, and the environment it needs.

    By default this very interpreter with ``-m servicerouter``; when the package
    is not installed into it (a checkout), PYTHONPATH points at the checkout.
    """
    if given:
        return shlex.split(given), {}
    import site

    import servicerouter

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(servicerouter.__file__)))
    installed = {os.path.realpath(p) for p in site.getsitepackages()}
    installed.add(os.path.realpath(site.getusersitepackages()))
    env = {} if os.path.realpath(package_root) in installed else {"PYTHONPATH": package_root}
    return [sys.executable, "-m", "servicerouter"], env


def _systemd_word(word: str) -> str:
    """One ExecStart/Environment word: specifiers and variables escaped, quoted if needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\;]", word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def render_unit(command: tuple[list[str], dict[str, str]]) -> str:
    argv, env = command
    exec_start = " ".join(_systemd_word(w) for w in [*argv, "--config", CONFIG, "--sse"])
    environment = "".join(f"Environment={_systemd_word(f'{k}={v}')}\n"
                          for k, v in sorted(env.items()))
    return ("# Written by 'servicerouter install'; 'servicerouter install --uninstall' "
            "removes it.\n"
            "[Unit]\n"
            "Description=servicerouter: HAProxy kept in step with Marathon\n"
            "Wants=network-online.target\n"
            "After=network-online.target haproxy.service\n"
            "\n"
            "[Service]\n"
            "Type=simple\n"
            f"{environment}"
            f"ExecStart={exec_start}\n"
            "Restart=always\n"
            "RestartSec=5\n"
            "\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n")


def render_cron(command: tuple[list[str], dict[str, str]]) -> str:
    argv, env = command
    line = shlex.join([*argv, "--config", CONFIG])
    variables = "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
    return ("# Written by 'servicerouter install --cron'; 'servicerouter install --uninstall' "
            "removes it.\n"
            "# The one-shot every minute, as haproxy-marathon-bridge ran; its log lines go\n"
            "# to syslog (stderr is dropped so cron mails nothing every minute).\n"
            "SHELL=/bin/sh\n"
            f"PATH={CRON_PATH}\n"
            f"{variables}"
            f"* * * * * root {line} >/dev/null 2>&1\n")


# --------------------------------------------------------------------------- the files


def below(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def load_manifest(root: str) -> dict[str, Any]:
    data = read(below(root, MANIFEST))
    if data is None:
        return {"files": {}, "backups": {}, "dirs": []}
    manifest = json.loads(data)
    manifest.setdefault("backups", {})
    manifest.setdefault("dirs", [])
    return manifest


def write_file(path: str, data: bytes, mode: int) -> None:
    """Atomically: a reader (cron, systemd) never sees half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_dirs(root: str, path: str, manifest: dict[str, Any]) -> None:
    """Create the parents of ``path`` below root, recording the ones created."""
    os.makedirs(root, exist_ok=True)  # --root DIR itself is the caller's, never removed
    missing = []
    directory = os.path.dirname(path)
    while directory != "/" and not os.path.isdir(below(root, directory)):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):
        os.mkdir(below(root, directory), 0o755)
        manifest["dirs"].append(directory)


def install(root: str, files: dict[str, tuple[str, int]], report: Report, *,
            force: bool, live: bool, run: bool) -> None:
    manifest = load_manifest(root)
    owned = manifest["files"]
    for path in files:  # refuse before touching anything
        current = read(below(root, path))
        if current is not None and owned.get(path) != digest(current) and not force:
            why = "was edited since it was installed" if path in owned else \
                "was not written by servicerouter install"
            report.say(f"refusing: {below(root, path)} {why}; move it away or pass --force",
                       changed=False)
            report.failed = True
    if report.failed:
        return
    unit_changed = False
    for path, (text, mode) in files.items():
        target, data = below(root, path), text.encode()
        current = read(target)
        if current == data and owned.get(path) == digest(data) and \
                (os.stat(target).st_mode & 0o777) == mode:
            continue
        if current is not None and owned.get(path) != digest(current):  # --force
            shutil.copy2(target, target + BACKUP_SUFFIX)
            manifest["backups"][path] = path + BACKUP_SUFFIX
            report.say(f"kept the previous {target} as {target + BACKUP_SUFFIX}")
        make_dirs(root, path, manifest)
        write_file(target, data, mode)
        owned[path] = digest(data)
        unit_changed = unit_changed or path == UNIT
        report.say(f"wrote {target}")
    for path in [p for p in owned if p not in files]:  # the other mode's file
        if path == UNIT:  # stop the live service before its unit goes
            stop_service(report, run)
        remove_owned(root, path, manifest, report)
        unit_changed = unit_changed or path == UNIT
    files_changed = report.changed
    if files_changed:
        save_manifest(root, manifest)
    if files_changed or run:  # on a real host, also when something was disabled since
        enable(live, unit_changed, report, run)


def enable(live: bool, unit_changed: bool, report: Report, run: bool) -> None:
    """HAProxy enabled and running (reloads need a running one), the unit (re)started."""
    wanted = [["systemctl", "enable", "--now", "haproxy.service"]]
    if unit_changed:
        wanted.insert(0, ["systemctl", "daemon-reload"])
    if live and unit_changed:  # restart: start it, or run the new unit
        wanted += [["systemctl", "enable", SERVICE], ["systemctl", "restart", SERVICE]]
    elif live:
        wanted.append(["systemctl", "enable", "--now", SERVICE])
    if not run:
        report.commands.extend(wanted)
        return
    for command in wanted:
        if command[1] == "enable" and "--now" in command and is_enabled(command[-1]):
            continue
        run_command(command, report)


def stop_service(report: Report, run: bool) -> None:
    stop = ["systemctl", "disable", "--now", SERVICE]
    if run:
        run_command(stop, report)
    else:
        report.commands.append(stop)


def is_enabled(unit: str) -> bool:
    probe = subprocess.run(["systemctl", "is-enabled", "--quiet", unit], check=False)
    return probe.returncode == 0


def run_command(command: list[str], report: Report) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        report.say(f"failed: {shlex.join(command)}: {err}", changed=False)
        report.failed = True
        return
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        report.say(f"failed: {shlex.join(command)}: {detail[-1] if detail else done.returncode}",
                   changed=False)
        report.failed = True
        return
    report.say(f"ran: {shlex.join(command)}")


def remove_owned(root: str, path: str, manifest: dict[str, Any], report: Report) -> None:
    """Remove one installed file if it is still as written; put back what it replaced."""
    target = below(root, path)
    current = read(target)
    expected = manifest["files"].pop(path)
    if current is not None and digest(current) != expected:
        report.say(f"kept {target}: edited since it was installed", changed=False)
    elif current is not None:
        os.unlink(target)
        report.say(f"removed {target}")
    backup = manifest["backups"].pop(path, None)
    if backup and os.path.exists(below(root, backup)) and not os.path.exists(target):
        os.replace(below(root, backup), target)
        report.say(f"put back {target}")


def save_manifest(root: str, manifest: dict[str, Any]) -> None:
    make_dirs(root, MANIFEST, manifest)
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    write_file(below(root, MANIFEST), data, 0o644)


def uninstall(root: str, report: Report, run: bool) -> None:
    if read(below(root, MANIFEST)) is None:
        return
    manifest = load_manifest(root)
    had_unit = UNIT in manifest["files"]
    if had_unit:
        stop_service(report, run)
    for path in list(manifest["files"]):
        remove_owned(root, path, manifest, report)
    os.unlink(below(root, MANIFEST))
    report.say(f"removed {below(root, MANIFEST)}")
    for directory in sorted(manifest["dirs"], key=len, reverse=True):
        try:
            os.rmdir(below(root, directory))
        except OSError:  # not empty: something else lives there now
            report.say(f"kept {below(root, directory)}: not empty", changed=False)
    if had_unit:
        reload = ["systemctl", "daemon-reload"]
        if run:
            run_command(reload, report)
        else:
            report.commands.append(reload)
    report.say("HAProxy left enabled and serving its last config", changed=False)


# --------------------------------------------------------------------------- the host


def bridge_hosts(root: str) -> list[str]:
    """The Marathon hosts haproxy-marathon-bridge's installer saved, one per line."""
    data = read(below(root, BRIDGE_HOSTS))
    if data is None:
        return []
    return [line.strip() for line in data.decode("utf-8", "replace").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def warn_about_the_host(root: str, report: Report) -> None:
    if os.path.exists(below(root, BRIDGE_CRON)):
        report.say(f"warning: {below(root, BRIDGE_CRON)} still runs haproxy-marathon-bridge "
                   "every minute and will overwrite HAProxy's config: remove it", changed=False)
    from servicerouter.apply.haproxy import haproxy_available

    if not haproxy_available("haproxy") and not os.access("/usr/sbin/haproxy", os.X_OK):
        report.say("warning: HAProxy is not installed here: apt-get install haproxy "
                   "(Debian, Ubuntu) or yum install haproxy (RHEL, CentOS)", changed=False)


if __name__ == "__main__":
    sys.exit(main())
