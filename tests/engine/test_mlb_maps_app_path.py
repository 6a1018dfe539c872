"""The app path with marathon-lb's ``--haproxy-map`` (servicerouter.engine.app_path).

An app update moving an app's exact virtual hosts is ``add map``/``del map`` on
marathon-lb's ``domain2backend.map`` (the one file both shared frontends read),
derived from that app alone: no model of the cluster, no reload.  After every
update the config must be the bytes a fresh router renders from the same apps
(tests/engine/test_mlb_maps_live.py runs the same through real HAProxy).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.engine.runner import RouterSettings
from tests.engine import test_task_path
from tests.engine.test_app_path import HOSTS, PATHS, _app, _update
from tests.engine.test_task_path import _from_scratch, live_router

_plain_settings = test_task_path._settings


def _mlb_settings(tmp: Path, health_check: bool, maps: bool = True) -> RouterSettings:
    found = _plain_settings(tmp, health_check, maps)
    return replace(found, render_options=replace(found.render_options, haproxy_map=True))


@pytest.fixture(autouse=True)
def haproxy_map(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every router these tests make (live and from scratch) runs with --haproxy-map."""
    monkeypatch.setattr(test_task_path, "_settings", _mlb_settings)


def test_vhosts_move_in_domain2backend_map_without_a_model(tmp_path: Path) -> None:
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, runtime, reloader = live_router(apps, tmp_path)
    vhost_map = str(tmp_path / "domain2backend.map")
    assert f"#map-file {vhost_map}\n#map a.test app0_10001\n" in live._applied_text
    router = live.router
    built = router.build_model
    router.build_model = None  # type: ignore[assignment,method-assign]  # must not be needed
    _update(live, source, _app(1, ("b.test", "extra.test")))  # added
    assert live.state.last_path == "task", live.state.last_full_reason
    assert runtime.plans[-1].map_add == ((vhost_map, "extra.test", "app1_10002"),)
    _update(live, source, _app(1, ("b.test",)))  # removed
    assert live.state.last_path == "task", live.state.last_full_reason
    assert runtime.plans[-1].map_del == ((vhost_map, "extra.test", ""),)
    _update(live, source, _app(2, ("extra.test", "z.test")))  # another app takes it
    assert live.state.last_path == "task", live.state.last_full_reason
    router.build_model = built  # type: ignore[method-assign]
    assert live._applied_text == _from_scratch(source.apps, tmp_path, False)
    assert reloader.calls == 1  # the start only
    assert live._config_file.flush()
    assert Path(vhost_map).read_text() == \
        "a.test app0_10001\nb.test app1_10002\nextra.test app2_10003\nz.test app2_10003\n"


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.integers(0, 2),
                                  st.lists(st.sampled_from(HOSTS), max_size=3, unique=True),
                                  st.sampled_from(PATHS), st.sampled_from([0, 0, 2, 5])),
                        min_size=1, max_size=8))
def test_app_updates_with_haproxy_map_give_the_bytes_of_a_render_from_scratch(
        tmp_path_factory: Any, changes: list[tuple[int, list[str], str | None, int]]) -> None:
    tmp = tmp_path_factory.mktemp("mlb-app-path")
    apps = {f"/app{i}": _app(i, (f"{'abc'[i]}.test",)) for i in range(3)}
    live, source, _runtime, _reloader = live_router(apps, tmp)
    for index, hosts, path, weight in changes:
        _update(live, source, _app(index, tuple(h.format(n=index) for h in hosts), path,
                                   weight))
        assert live._applied_text == _from_scratch(source.apps, tmp, False)
    assert live._config_file.flush()
    assert Path(live.router.settings.config_path).read_text() == live._applied_text
    live.stop()
