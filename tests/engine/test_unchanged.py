"""The unchanged-body fast path of one-shot runs: skipped only when nothing could differ.

A one-shot run whose Marathon answer, settings, fragments, certificates and config
file are all what the last successful apply saw parses and renders nothing.  Every
one of those inputs changing must bring the full sync back, and so must anything
the record cannot vouch for (a port certificate, a failed reload, a host name that
resolves elsewhere now).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.generate import dumps_state, generate_state
from servicerouter.engine.holds import HoldSettings
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.engine.unchanged import RECORD_FILE, load_record
from servicerouter.model.resolver import CachingResolver
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import SnapshotSource
from tests.harness import self_signed_cert
from tests.paths import REPO


class _Setup:
    """A snapshot, a config path, a state dir and a reload command that counts."""

    def __init__(self, tmp_path: Path, apps: int = 6) -> None:
        self.tmp = tmp_path
        self.snapshot = tmp_path / "apps.json"
        self.state = generate_state(apps, 2)
        self.write_state()
        self.config = tmp_path / "haproxy.cfg"
        self.marker = tmp_path / "reloads"
        self.state_dir = tmp_path / "state"
        self.certs = tmp_path / "certs"
        self.certs.mkdir()

    def write_state(self) -> None:
        self.snapshot.write_bytes(dumps_state(self.state))

    def settings(self, **changes: Any) -> RouterSettings:
        reload_cmd = (sys.executable, "-c", f"open({str(self.marker)!r}, 'a').write('r\\n')")
        settings = RouterSettings(config_path=str(self.config), groups=("*",), validate=False,
                                  reload=reload_cmd, state_dir=str(self.state_dir),
                                  certs_dir=str(self.certs), skip_unchanged_body=True,
                                  # holds have their own tests; these change settings freely
                                  removal_hold=HoldSettings(fetches=0))
        return replace(settings, **changes)

    def router(self, fragments: Any = None, resolver: Any = None, **changes: Any) -> Router:
        """A fresh router each time: a one-shot run keeps nothing in memory."""
        return Router(SnapshotSource(f"file:{self.snapshot}"), fragments or load_fragments(),
                      self.settings(**changes), resolver=resolver)

    def reloads(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    @property
    def record(self) -> Path:
        return self.state_dir / RECORD_FILE


def _full(result: Any) -> bool:
    return result.ok and not result.unchanged and "parse" in result.timings


def test_an_applied_answer_is_skipped_the_next_time(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    first = setup.router().sync()
    assert _full(first) and first.changed and setup.reloads() == 1
    assert load_record(str(setup.record)) is not None
    before = os.stat(setup.config)

    again = setup.router().sync()
    assert again.ok and again.unchanged and not again.changed and not again.reloaded
    assert "parse" not in again.timings and "render" not in again.timings
    after = os.stat(setup.config)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert setup.reloads() == 1


def test_a_changed_answer_is_synced(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    setup.state["apps"][0]["tasks"][0]["host"] = "10.250.0.9"
    setup.write_state()
    changed = setup.router().sync()
    assert _full(changed) and changed.changed and changed.reloaded
    assert "10.250.0.9:" in setup.config.read_text()
    assert setup.router().sync().unchanged, "the new answer is recorded in turn"


def test_any_setting_change_invalidates(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    for changes in ({"groups": ("external",)}, {"strict_mode": True},
                    {"ip_per_task_ports": (10060, 10100)}):
        assert _full(setup.router(**changes).sync()), changes
        assert setup.router(**changes).sync().unchanged, changes
        assert _full(setup.router().sync()), f"back from {changes}"
    options = setup.settings().render_options
    assert _full(setup.router(render_options=replace(options, http_port=8080)).sync())
    # The cookie secret is kept out of the settings' repr, and still counts.
    assert setup.router(render_options=replace(options, http_port=8080)).sync().unchanged
    secret = replace(options, http_port=8080, cookie_secret="s" * 20)
    assert _full(setup.router(render_options=secret).sync())


def test_a_fragment_change_invalidates(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "HAPROXY_BACKEND_HTTP_OPTIONS").write_text("  option forwardfor\n")
    changed = setup.router(fragments=load_fragments([mine])).sync()
    assert _full(changed) and changed.changed
    assert setup.router(fragments=load_fragments([mine])).sync().unchanged
    (mine / "HAPROXY_BACKEND_HTTP_OPTIONS").write_text("  option forwardfor\n  # edited\n")
    edited = setup.router(fragments=load_fragments([mine])).sync()
    assert _full(edited) and "# edited" in setup.config.read_text()


def test_a_certificate_change_invalidates(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    self_signed_cert(setup.certs / "site.pem", ["site.example.com"], days=90)
    added = setup.router().sync()
    assert _full(added), "a new bundle in the certs directory"
    assert setup.router().sync().unchanged
    self_signed_cert(setup.certs / "site.pem", ["site.example.com"], days=91)
    assert _full(setup.router().sync()), "a renewed bundle"
    (setup.state_dir / "default.pem").unlink()
    assert _full(setup.router().sync()), "the default certificate is gone"
    assert (setup.state_dir / "default.pem").exists()
    crt_lists = list(setup.state_dir.glob("crt-list*"))
    assert crt_lists and setup.router().sync().unchanged
    for path in crt_lists:
        path.unlink()
    assert _full(setup.router().sync()), "the crt-list the config names is gone"
    named = [word for word in setup.config.read_text().split()
             if "crt-list" in word and word.startswith("/")]
    assert named and all(os.path.exists(path) for path in named)


def test_an_expiring_certificate_is_never_vouched_for(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    self_signed_cert(setup.certs / "soon.pem", ["soon.example.com"], days=7)  # < 14 days
    assert _full(setup.router().sync())
    assert not setup.record.exists()
    assert _full(setup.router().sync())


def test_a_touched_config_file_is_rewritten(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    good = setup.config.read_text()
    setup.config.write_text(good + "# someone edited this\n")
    fixed = setup.router().sync()
    assert _full(fixed) and fixed.changed and setup.config.read_text() == good
    setup.config.unlink()
    assert _full(setup.router().sync()) and setup.config.read_text() == good


def test_a_failed_reload_forgets_the_record(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    setup.state["apps"][0]["tasks"][0]["host"] = "10.250.0.9"
    setup.write_state()
    failed = setup.router(reload=(sys.executable, "-c", "raise SystemExit(3)")).sync()
    assert not failed.ok and not setup.record.exists()
    retried = setup.router().sync()
    assert _full(retried) and retried.reloaded, "the next run reloads again"


def test_a_port_certificate_or_bind_address_disables_the_fast_path(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    cert = self_signed_cert(tmp_path / "port.pem", ["port.example.com"], days=90)
    setup.state["apps"][0]["labels"]["HAPROXY_0_SSL_CERT"] = cert
    setup.write_state()
    assert _full(setup.router().sync())
    assert not setup.record.exists()
    assert _full(setup.router().sync())


def test_host_names_must_resolve_as_before(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    setup.state["apps"][0]["tasks"][0]["host"] = "agent-1.example"
    setup.write_state()
    table = {"agent-1.example": "10.9.9.1"}
    resolver = CachingResolver()
    resolver._cache.update(table)  # no DNS in tests
    assert _full(setup.router(resolver=resolver).sync())
    record = load_record(str(setup.record))
    assert record is not None and record.resolved == table
    resolver = CachingResolver()
    resolver._cache.update(table)
    assert setup.router(resolver=resolver).sync().unchanged
    moved = CachingResolver()
    moved._cache["agent-1.example"] = "10.9.9.2"
    result = setup.router(resolver=moved).sync()
    assert _full(result) and "10.9.9.2:" in setup.config.read_text()


def test_a_record_we_did_not_write_is_ignored(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    for text in ("not json", json.dumps({"version": 99}), json.dumps([1, 2]),
                 json.dumps({"version": 1, "body": 1, "shape": "x", "config": []})):
        setup.record.write_text(text)
        assert _full(setup.router().sync()), text


def test_a_held_removal_is_never_skipped(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    holds = HoldSettings()  # the default: a removal of more than half waits
    assert _full(setup.router(removal_hold=holds).sync())
    assert setup.router(removal_hold=holds).sync().unchanged
    setup.state["apps"] = setup.state["apps"][:1]
    setup.write_state()
    for _ in range(2):  # the same held answer again: still checked, still held
        held = setup.router(removal_hold=holds).sync()
        assert held.held and not held.unchanged and "parse" in held.timings


def test_dry_and_long_running_routers_never_skip(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    assert _full(setup.router().sync())
    assert _full(setup.router(skip_unchanged_body=False).sync())
    assert _full(setup.router(dry=True).sync())


def test_one_shot_command_takes_the_fast_path(tmp_path: Path) -> None:
    """``python -m servicerouter`` twice on the same answer: the second run says so."""
    setup = _Setup(tmp_path)
    command = [sys.executable, "-m", "servicerouter", "-m", f"file:{setup.snapshot}",
               "--haproxy-config", str(setup.config), "--group", "*", "--command", "true",
               "--syslog-socket", "/dev/null", "--state-dir", str(setup.state_dir),
               "--skip-validation"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                           cwd=str(tmp_path), check=False) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert "unchanged:" not in runs[0].stderr and "parse=" in runs[0].stderr
    assert "unchanged: Marathon's answer is the one last applied" in runs[1].stderr
