"""The one-shot run applies the rules of the default store (rules.json in the state dir),
and its unchanged-body fast path notices a rule change."""

from __future__ import annotations

import json
from pathlib import Path

from servicerouter.rules.model import validate_rule
from servicerouter.rules.store import FileRuleStore
from tests.cli.test_cli import common, run_cli, web_app


def test_one_shot_runs_route_by_the_state_dirs_rules(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app("/web", HAPROXY_0_VHOST="label.test")]}))
    state = tmp_path / ".servicerouter"
    store = FileRuleStore(str(state / "rules.json"))
    store.put(validate_rule({"app_id": "/web", "hosts": ["rule.test"]}), "test")
    # no --bind-addr: a config bound to a host address never takes the fast path
    shared = common(tmp_path)
    index = shared.index("--bind-addr")
    args = [*shared[:index], *shared[index + 2:], "--state-dir", str(state)]
    first = run_cli("-m", f"file:{snapshot}", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = (tmp_path / "haproxy.cfg").read_text()
    assert "#map rule.test/ web_10004" in config and "label.test" not in config
    store.put(validate_rule({"app_id": "/web", "hosts": ["other.test"]}), "test")
    second = run_cli("-m", f"file:{snapshot}", *args, cwd=tmp_path)  # same Marathon answer
    assert second.returncode == 0, second.stderr
    assert "#map other.test/ web_10004" in (tmp_path / "haproxy.cfg").read_text()
    bad = run_cli("-m", f"file:{snapshot}", *args, "--rules-store", "zk://nohost/x", cwd=tmp_path)
    assert bad.returncode == 2 and "--rules-store" in bad.stderr
    third = run_cli("-m", f"file:{snapshot}", *args, cwd=tmp_path)
    assert "unchanged" in third.stderr  # the fast path is on: the rules are in its record


def test_the_fast_path_sees_a_change_of_rules_kept_outside_the_state_dir(tmp_path: Path) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [web_app("/web")]}))
    elsewhere = tmp_path / "shared" / "rules.json"
    store = FileRuleStore(str(elsewhere))
    store.put(validate_rule({"app_id": "/web", "hosts": ["one.test"]}), "test")
    shared = common(tmp_path)
    index = shared.index("--bind-addr")
    args = [*shared[:index], *shared[index + 2:], "--rules-store", f"file:{elsewhere}"]
    for host in ("one.test", "two.test"):
        store.put(validate_rule({"app_id": "/web", "hosts": [host]}), "test")
        run = run_cli("-m", f"file:{snapshot}", *args, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert f"#map {host}/ web_10004" in (tmp_path / "haproxy.cfg").read_text()


def test_print_config_never_shows_the_zookeeper_password(tmp_path: Path) -> None:
    printed = run_cli("-m", "file:x", "--rules-store", "zk://127.0.0.1:1/sr",
                      "--rules-zk-auth", "edge:s3cret-pw", "--print-config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "s3cret-pw" not in printed.stdout and "rules-zk-auth: <redacted>" in printed.stdout
