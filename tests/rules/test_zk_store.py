"""The ZooKeeper rule store against a real ZooKeeper (Debian's package, tests/rules/zk.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from servicerouter.rules.model import validate_rule
from servicerouter.rules.store import StoreError
from servicerouter.rules.zk import ZooKeeperRuleStore
from tests.harness import wait_until
from tests.rules.zk import ZooKeeper

pytestmark = pytest.mark.e2e


def test_a_change_on_one_node_reaches_the_other_by_watch(zookeeper: ZooKeeper,
                                                          tmp_path: Path) -> None:
    one = ZooKeeperRuleStore(zookeeper.hosts, "/sr/rules", cache_path=str(tmp_path / "1.json"),
                             node="one")
    two = ZooKeeperRuleStore(zookeeper.hosts, "/sr/rules", cache_path=str(tmp_path / "2.json"),
                             node="two")
    try:
        warm = validate_rule({"app_id": "/warm"})  # the fresh server's first writes are slow
        one.put(warm, "warm-up")
        wait_until(lambda: "/warm:0" in two.rules(), 10)
        one.delete("/warm:0", "warm-up")
        wait_until(lambda: not two.rules(), 10)
        told: list[float] = []
        two.subscribe(lambda: told.append(time.monotonic()))
        rule = validate_rule({"app_id": "/a", "hosts": ["a.test"]})
        start = time.monotonic()
        change = one.put(rule, "alice")
        wait_until(lambda: two.rules() == {"/a:0": rule} and told, 1.0)
        assert told[-1] - start < 1.0 and change.node == "one"
        one.put(validate_rule({"app_id": "/a", "hosts": ["b.test"]}), "bob")
        wait_until(lambda: two.rules()["/a:0"].hosts == ("b.test",), 1.0)
        two.delete("/a:0", "carol")
        wait_until(lambda: one.rules() == {}, 1.0)
        history = two.history(10)
        assert [(c.actor, c.action) for c in history][:3] == [
            ("carol", "delete"), ("bob", "update"), ("alice", "create")]
        assert history[1].old["hosts"] == ["a.test"] and history[1].new["hosts"] == ["b.test"]
        with pytest.raises(KeyError):
            one.delete("/a:0", "x")
        assert one.health()["connected"] and one.health()["backend"] == "zookeeper"
    finally:
        one.close()
        two.close()


def test_an_outage_keeps_the_last_rules_and_says_so(zookeeper: ZooKeeper,
                                                    tmp_path: Path) -> None:
    store = ZooKeeperRuleStore(zookeeper.hosts, "/sr", cache_path=str(tmp_path / "c.json"))
    try:
        rule = validate_rule({"app_id": "/a", "hosts": ["a.test"]})
        store.put(rule, "alice")
        wait_until(lambda: store.rules() == {"/a:0": rule}, 1.0)
        zookeeper.stop()
        wait_until(lambda: not store.health()["connected"], 15)
        assert store.rules() == {"/a:0": rule}  # still routing by them
        assert store.health()["disconnected_since"] is not None
        with pytest.raises(StoreError, match="not connected"):
            store.put(validate_rule({"app_id": "/b"}), "bob")
        # a router restarting now starts from the cache
        restarted = ZooKeeperRuleStore(zookeeper.hosts, "/sr", cache_path=str(tmp_path / "c.json"),
                                       connect_wait=0.5)
        try:
            assert restarted.rules() == {"/a:0": rule}
        finally:
            restarted.close()
        zookeeper.start()
        wait_until(lambda: store.health()["connected"], 30)
        store.put(validate_rule({"app_id": "/b", "hosts": ["b.test"]}), "bob")
        wait_until(lambda: set(store.rules()) == {"/a:0", "/b:0"}, 2.0)
    finally:
        store.close()


def test_digest_auth_keeps_other_clients_out(zookeeper: ZooKeeper) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    store = ZooKeeperRuleStore(zookeeper.hosts, "/secure", auth=("edge", "s3cret"))
    try:
        store.put(validate_rule({"app_id": "/a", "hosts": ["a.test"]}), "alice")
        stranger = KazooClient(hosts=zookeeper.hosts)
        stranger.start(10)
        try:
            with pytest.raises(NoAuthError):
                stranger.get("/secure/rules/" + "%2Fa%3A0")
            with pytest.raises(NoAuthError):
                stranger.set("/secure/rules/" + "%2Fa%3A0", b"{}")
        finally:
            stranger.stop()
            stranger.close()
        friend = ZooKeeperRuleStore(zookeeper.hosts, "/secure", auth=("edge", "s3cret"))
        try:
            wait_until(lambda: "/a:0" in friend.rules(), 2.0)
        finally:
            friend.close()
    finally:
        store.close()


def test_a_rule_deleted_and_written_again_at_once_is_still_watched(zookeeper: ZooKeeper) -> None:
    one = ZooKeeperRuleStore(zookeeper.hosts, "/again")
    two = ZooKeeperRuleStore(zookeeper.hosts, "/again")
    try:
        for round_number in range(5):
            rule = validate_rule({"app_id": "/a", "hosts": [f"r{round_number}.test"]})
            one.put(rule, "x")
            wait_until(lambda rule=rule: two.rules().get("/a:0") == rule, 2.0)
            one.delete("/a:0", "x")
            one.put(validate_rule({"app_id": "/a", "hosts": [f"back{round_number}.test"]}), "x")
            wait_until(lambda n=round_number: two.rules().get("/a:0") is not None
                       and two.rules()["/a:0"].hosts == (f"back{n}.test",), 2.0)
    finally:
        one.close()
        two.close()
