"""servicerouter install: into a temporary root, twice, both modes, and out again."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servicerouter.cli import flags
from servicerouter.cli import install as installer
from tests.paths import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run(*argv: str, cwd: Path, module: tuple[str, ...] = ("-m", "servicerouter", "install")
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *module, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=ENV)


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file below root: content, mode, mtime (to see that nothing was touched)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(tmp_path: Path) -> str:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": [
        {"id": "/web", "ports": [10001], "labels": {},
         "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31001]}]}]}))
    return f"file:{path}"


@pytest.mark.parametrize("mode", ["live", "cron"])
def test_install_twice_changes_nothing_the_second_time(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "root"
    extra = ["--cron"] if mode == "cron" else []
    first = run("--root", str(root), "-m", "m1:8080,m2:8080", "--group", "external",
                *extra, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"wrote {root}/etc/servicerouter/config.yml" in first.stdout
    assert "would run: systemctl enable --now haproxy.service" in first.stdout
    installed = tree(root)
    service = "etc/systemd/system/servicerouter.service"
    cron = "etc/cron.d/servicerouter"
    assert (service in installed) == (mode == "live") and (cron in installed) == (mode == "cron")
    assert installed["etc/servicerouter/config.yml"][1] & 0o777 == 0o600  # may hold passwords
    second = run("--root", str(root), "-m", "m1:8080,m2:8080", "--group", "external",
                 *extra, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("nothing to change") and "would run" not in second.stdout
    assert tree(root) == installed
    # servicerouter reads the file it wrote, with its own --config
    args = flags.parse_args(["--config", str(root / "etc/servicerouter/config.yml")])
    assert args.marathon == ["m1:8080", "m2:8080"] and args.group == ["external"]
    assert args.haproxy_config == "/etc/haproxy/haproxy.cfg"  # defaults are not frozen in


def test_the_installed_commands_run_servicerouter(tmp_path: Path) -> None:
    """The unit's ExecStart and the cron line start this servicerouter with the config."""
    root = tmp_path / "root"
    cfg = tmp_path / "haproxy.cfg"
    common = ["-m", snapshot(tmp_path), "--haproxy-config", str(cfg), "--syslog-socket",
              "/dev/null", "--state-dir", str(tmp_path / "state"), "--http-port", "10080",
              "--https-port", "10443", "--appid-port", "10081", "--stats-port", "19090"]
    assert run("--root", str(root), *common, cwd=tmp_path).returncode == 0
    unit = (root / "etc/systemd/system/servicerouter.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    env = dict(line.removeprefix("Environment=").split("=", 1) for line in unit.splitlines()
               if line.startswith("Environment="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[-3:] == ["--config", installer.CONFIG, "--sse"]
    rooted = str(root / installer.CONFIG.lstrip("/"))
    proc = subprocess.run([*argv[:-3], "--config", rooted, "--dry"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    assert "server 127_0_0_1_31001 127.0.0.1:31001" in proc.stdout

    assert run("--root", str(root), *common, "--cron", cwd=tmp_path).returncode == 0
    lines = (root / "etc/cron.d/servicerouter").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if "=" in line.split()[0])
    entry = next(line for line in lines if line.startswith("* * * * * root "))
    command = shlex.split(entry.removeprefix("* * * * * root "))
    assert command[-4:] == ["--config", installer.CONFIG, ">/dev/null", "2>&1"]
    proc = subprocess.run([*command[:-4], "--config", rooted, "--command", "true"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **variables})
    assert proc.returncode == 0, proc.stderr
    assert "backend web_10001" in cfg.read_text()


def test_generated_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    root = tmp_path / "root"
    assert run("--root", str(root), "-m", "m1:8080", cwd=tmp_path).returncode == 0
    unit = root / "etc/systemd/system/servicerouter.service"
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    broken = tmp_path / "broken.service"  # the check can fail: a missing binary does
    broken.write_text(unit.read_text().replace(sys.executable, "/nonexistent/python3"))
    proc = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0


def test_switching_modes_and_uninstall_remove_exactly_what_was_installed(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/cron.d").mkdir(parents=True)
    (root / "etc/cron.d/e2scrub_all").write_text("# someone else's\n")
    before = tree(root)
    assert run("--root", str(root), "-m", "m1:8080", cwd=tmp_path).returncode == 0
    switched = run("--root", str(root), "-m", "m1:8080", "--cron", cwd=tmp_path)
    assert switched.returncode == 0, switched.stderr
    assert "would run: systemctl disable --now servicerouter.service" in switched.stdout
    assert f"removed {root}/etc/systemd/system/servicerouter.service" in switched.stdout
    assert (root / "etc/cron.d/servicerouter").is_file()
    gone = run("--root", str(root), "--uninstall", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert tree(root) == before
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == \
        ["etc", "etc/cron.d", "etc/cron.d/e2scrub_all"]  # the directories it made are gone
    again = run("--root", str(root), "--uninstall", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_live_uninstall_stops_the_service_first(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run("--root", str(root), "-m", "m1:8080", cwd=tmp_path).returncode == 0
    gone = run("--root", str(root), "--uninstall", cwd=tmp_path)
    lines = gone.stdout.splitlines()
    assert lines.index("would run: systemctl disable --now servicerouter.service") < \
        lines.index("would run: systemctl daemon-reload")
    assert not root.joinpath("etc").exists()


def test_an_edited_file_is_neither_overwritten_nor_removed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run("--root", str(root), "-m", "m1:8080", cwd=tmp_path).returncode == 0
    config = root / "etc/servicerouter/config.yml"
    config.write_text(config.read_text() + "log-level: debug\n")
    refused = run("--root", str(root), "-m", "m2:8080", cwd=tmp_path)
    assert refused.returncode == 1
    assert "refusing" in refused.stdout and "edited since" in refused.stdout
    assert "log-level: debug" in config.read_text()
    gone = run("--root", str(root), "--uninstall", cwd=tmp_path)
    assert f"kept {config}: edited since it was installed" in gone.stdout
    assert config.exists() and not (root / "etc/systemd/system/servicerouter.service").exists()


def test_a_foreign_file_needs_force_and_comes_back_at_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = root / "etc/servicerouter/config.yml"
    config.parent.mkdir(parents=True)
    config.write_text("theirs: true\n")
    refused = run("--root", str(root), "-m", "m1:8080", cwd=tmp_path)
    assert refused.returncode == 1 and "not written by servicerouter install" in refused.stdout
    assert not (root / "etc/systemd").exists()  # refused before writing anything
    forced = run("--root", str(root), "-m", "m1:8080", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "kept the previous" in forced.stdout
    assert "m1:8080" in config.read_text()
    assert run("--root", str(root), "--uninstall", cwd=tmp_path).returncode == 0
    assert config.read_text() == "theirs: true\n"


@pytest.mark.parametrize("argv, message", [
    (["-m", "m1:8080", "--dry"], "--dry:"),
    (["-m", "m1:8080", "--sse"], "live mode is the default"),
    (["-m", "m1:8080", "--config", "/nonexistent.yml"], "writes the config file itself"),
    (["-m", "m1"], "expected HOST:PORT"),
    ([], "-m HOST:PORT is required"),
    (["--uninstall", "-m", "m1:8080"], "takes no other settings"),
])
def test_unusable_settings_exit_2_in_one_line(tmp_path: Path, argv: list[str],
                                              message: str) -> None:
    proc = run("--root", str(tmp_path / "root"), *argv, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "root").exists()


def test_the_bridge_installation_is_taken_over(tmp_path: Path) -> None:
    """The bridge's hosts file supplies -m; its cron entry is pointed out; its
    install_haproxy_system form installs the cron mode routing every app."""
    root = tmp_path / "root"
    hosts = root / "etc/haproxy-marathon-bridge/marathons"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("m1:8080\nm2:8080\n")
    (root / "etc/cron.d").mkdir(parents=True)
    (root / "etc/cron.d/haproxy-marathon-bridge").write_text("* * * * * root ...\n")
    proc = run("install_haproxy_system", "--root", str(root), cwd=tmp_path,
               module=("-m", "servicerouter.cli.bridge"))
    assert proc.returncode == 0, proc.stderr
    assert "haproxy-marathon-bridge every minute" in proc.stdout
    args = flags.parse_args(["--config", str(root / "etc/servicerouter/config.yml")])
    assert args.marathon == ["m1:8080", "m2:8080"] and args.group == ["*"]
    assert (root / "etc/cron.d/servicerouter").is_file()


def test_a_tree_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("a file where the root directory should be\n")
    proc = run("--root", str(root), "-m", "m1:8080", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("servicerouter install: ") and len(proc.stderr.splitlines()) == 1


def test_servicerouter_abbreviations_and_short_flags_reach_the_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = run("--root", str(root), "-m", "m1:8080", "--haproxy", "/srv/haproxy.cfg",
               "-c", "systemctl reload haproxy", "--com", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    args = flags.parse_args(["--config", str(root / "etc/servicerouter/config.yml")])
    assert args.haproxy_config == "/srv/haproxy.cfg" and args.command == "true"
