"""Live engine with marathon-lb's ``--haproxy-map``: a vhost added to or removed from
an existing backend is an ``add map`` / ``del map`` on marathon-lb's
``domain2backend.map``, applied through the Runtime API: the HAProxy processes stay
the same ones (no new worker) and servicerouter counts no reload.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.live_router import TwoVhostApps
from tests.harness import wait_until

pytestmark = pytest.mark.e2e


def haproxy_pids(config: Path) -> set[int]:
    """PIDs of the HAProxy processes (master and workers) started with ``-f config``."""
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"haproxy") and str(config).encode() in args:
            pids.add(int(entry))
    return pids


def test_vhost_changes_are_entries_of_marathon_lbs_map_without_reload(
    two_vhost_apps: Callable[..., TwoVhostApps],
) -> None:
    apps = two_vhost_apps("--haproxy-map")
    router, put, routes = apps.router, apps.put, apps.routes
    port_one, port_two = apps.port_one, apps.port_two
    vhost_map = router.workdir / "domain2backend.map"
    assert vhost_map.read_text() == f"one.test one_{port_one}\ntwo.test two_{port_two}\n"
    config = router.workdir / "haproxy.cfg"
    processes = haproxy_pids(config)
    assert len(processes) >= 2  # master and worker
    before = router.status()

    put("/two", port_two, HAPROXY_0_VHOST="two.test,extra.test")  # added
    wait_until(lambda: routes("extra.test", "two"), 15)
    put("/one", port_one, HAPROXY_0_VHOST="one.test,extra.test")  # moved: two keeps it
    put("/two", port_two, HAPROXY_0_VHOST="two.test")  # removed: one takes it
    wait_until(lambda: routes("extra.test", "one"), 15)
    put("/one", port_one, HAPROXY_0_VHOST="one.test")  # removed
    wait_until(lambda: routes("extra.test", "503"), 15)
    assert routes("one.test", "one") and routes("two.test", "two")
    # marathon-lb's file follows the Runtime API (written right after it answered)
    wait_until(lambda: sorted(vhost_map.read_text().splitlines()) == [
        f"one.test one_{port_one}", f"two.test two_{port_two}"], 10)
    after = router.status()
    assert after["reloads"] == before["reloads"], "a map-only change reloaded"
    assert after["failed_reloads"] == 0
    assert haproxy_pids(config) == processes, "HAProxy started new processes"
    assert router.log().count("map entries") >= 2
