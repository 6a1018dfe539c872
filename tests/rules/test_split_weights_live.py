"""End to end: a canary's weights stepped through /api/rules on a live router (--sse
--manage-haproxy on the emulator) move real requests with 0 reloads, on the same
HAProxy processes, and no request in between misses: each step is ``add map``/``del
map`` of the split's ranges, the new ones added before the old ones go.  Moving the
paths of a rule on any host is map entries too."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from servicerouter.render.routing import SPLIT_RANGE
from tests.engine.live_router import LoadGenerator, RouterProcess, http_port
from tests.engine.test_mlb_maps_live import haproxy_pids
from tests.harness import Backend, wait_until
from tests.rules.test_rules_live import TOKEN, api, routed, web

pytestmark = pytest.mark.e2e

REQUESTS = 400  # per step; counts must be within 5 standard deviations of the weights


def split_maps(router: RouterProcess) -> dict[str, dict[str, int]]:
    """The split's map files as written beside the config: file -> backend -> range width."""
    out: dict[str, dict[str, int]] = {}
    for path in sorted((router.workdir / "haproxy.cfg.maps").glob("*-int.map")):
        widths: dict[str, int] = collections.Counter()
        for line in path.read_text().splitlines():
            key, backend = line.split()
            low, high = map(int, key.split(":"))
            widths[backend] += high - low + 1
        out[path.name] = dict(widths)
    return out


def shares_are(router: RouterProcess, shop: int, canary: int) -> bool:
    maps = split_maps(router)
    total = shop + canary
    return bool(maps) and all(
        sorted(widths.values()) == sorted([SPLIT_RANGE * shop // total,
                                           SPLIT_RANGE * canary // total])
        and sum(widths.values()) == SPLIT_RANGE for widths in maps.values())


def test_stepping_a_canarys_weights_moves_requests_without_a_reload(
    start_router: Callable[..., RouterProcess], backend_factory: Callable[..., Backend],
) -> None:
    shop_backend, canary_backend = backend_factory("shop"), backend_factory("canary")
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        web(emu, shop_backend, "/shop")
        web(emu, canary_backend, "/canary")
        web(emu, backend_factory("docs"), "/docs")
        router = start_router(emu, "--status-token", TOKEN)
        started = router.status()["reloads"]
        for app_id, weight in (("/shop", 95), ("/canary", 5)):
            made = api(router, "PUT", f"/api/rules/{app_id}:0",
                       {"hosts": ["shop.test"], "weight": weight})
            assert made.status_code == 200, made.text
        assert api(router, "PUT", "/api/rules//docs:0", {"paths": ["/docs"]}).ok  # any host
        wait_until(lambda: shares_are(router, 95, 5), 15)  # a new route: a reload
        wait_until(lambda: router.status()["reloads"] > started, 15)
        http = http_port(router)
        wait_until(lambda: routed(http, "shop.test") in ("shop", "canary"), 10)
        wait_until(lambda: routed(http, "any.test", "/docs/x") == "docs", 10)
        # the master and its one worker, once the worker before the reload is gone
        wait_until(lambda: len(haproxy_pids(router.workdir / "haproxy.cfg")) == 2, 15)
        processes = haproxy_pids(router.workdir / "haproxy.cfg")
        before = router.status()
        # a steady client while the ranges change: no draw may ever miss (no 503)
        load = LoadGenerator([(http, "shop.test")], threads=1).start()
        seen: list[str] = []
        for shop, canary in ((95, 5), (80, 20), (50, 50), (20, 80)):
            for app_id, weight in (("/shop", shop), ("/canary", canary)):
                changed = api(router, "PUT", f"/api/rules/{app_id}:0",
                              {"hosts": ["shop.test"], "weight": weight})
                assert changed.status_code == 200, changed.text
            # the files are written right after HAProxy took the same entries
            wait_until(lambda shop=shop, canary=canary: shares_are(router, shop, canary), 15)
            counts = collections.Counter(routed(http, "shop.test") for _ in range(REQUESTS))
            assert set(counts) <= {"shop", "canary"}, counts
            expected = REQUESTS * canary / (shop + canary)
            spread = math.sqrt(REQUESTS * (canary / (shop + canary)) * (shop / (shop + canary)))
            assert abs(counts["canary"] - expected) <= 5 * spread, (shop, canary, counts)
            seen.append(f"{shop}/{canary}: {counts['shop']}/{counts['canary']}")
        # paths on any host: a path map too, so moving them is map entries as well
        assert api(router, "PUT", "/api/rules//docs:0", {"paths": ["/help"]}).ok
        wait_until(lambda: routed(http, "any.test", "/help/x") == "docs", 10)
        assert routed(http, "any.test", "/docs/x") == "503"
        load.stop()
        assert load.sent > 0 and not load.failures, (load.sent, load.failures[:5])
        after = router.status()
        assert after["reloads"] == before["reloads"], "a weight step reloaded HAProxy"
        assert after["failed_reloads"] == 0
        assert after["runtime_updates"] > before["runtime_updates"]
        assert haproxy_pids(router.workdir / "haproxy.cfg") == processes, \
            "HAProxy started new processes"
    print(f"canary steps over {REQUESTS} requests each (shop/canary): {', '.join(seen)}")
