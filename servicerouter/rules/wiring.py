"""Which store ``--rules-store`` names: ``file`` (default) or ``zk://HOST:PORT[,...]/path``."""

from __future__ import annotations

import os
import socket

from servicerouter.rules.store import RULES_FILE, FileRuleStore, RuleStore

ZK_CACHE_FILE = "rules-zk-cache.json"


def open_store(spec: str, state_dir: str, auth: str | None = None) -> RuleStore:
    """The store ``spec`` names; ``ValueError`` (a usage error) when it names none."""
    node = socket.gethostname()
    if spec in ("", "file"):
        if auth:
            raise ValueError("--rules-zk-auth needs --rules-store zk://...")
        return FileRuleStore(os.path.join(state_dir, RULES_FILE), node=node)
    if spec.startswith("file:"):
        return FileRuleStore(spec[len("file:"):], node=node)
    if spec.startswith("zk://"):
        from servicerouter.rules.zk import ZooKeeperRuleStore, parse_zk_auth, parse_zk_url

        hosts, path = parse_zk_url(spec)
        return ZooKeeperRuleStore(hosts, path, auth=parse_zk_auth(auth) if auth else None,
                                  cache_path=os.path.join(state_dir, ZK_CACHE_FILE), node=node)
    raise ValueError(f"--rules-store {spec!r}: expected file, file:PATH or "
                     "zk://HOST:PORT[,HOST:PORT...]/path")
