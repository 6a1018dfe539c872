"""--max-check-rate: server-check intervals that grow with the number of checked servers.

The built-in server-check fragments write Marathon's ``intervalSeconds``; when
the config would ask HAProxy for more checks per second than the budget, every
such interval is multiplied by the smallest power of two that fits.  Operator
and servicerouter.py (legacy) fragments are never re-timed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from servicerouter.apply.fd_budget import fd_need
from servicerouter.cli import flags
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.model.services import build_model
from servicerouter.render.check_rate import (
    built_in_check_rate,
    check_interval_scale,
    with_check_scale,
)
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.paths import FIXTURES

LEGACY = FIXTURES / "legacy_templates"


def apps(count: int, tasks: int = 10, interval: int = 2, protocol: str = "HTTP") -> list[dict]:
    return [{"id": f"/app{i}", "portDefinitions": [{"port": 12000 + i}],
             "healthChecks": [{"protocol": protocol, "path": "/", "portIndex": 0,
                               "intervalSeconds": interval, "timeoutSeconds": 5}],
             "tasks": [{"id": f"app{i}.{t}", "host": f"10.{i // 250}.{i % 250}.{t + 1}",
                        "ports": [31000 + t], "state": "TASK_RUNNING"} for t in range(tasks)]}
            for i in range(count)]


def render(app_list: list[dict], budget: float | None, dirs: tuple[Path, ...] = ()) -> str:
    fragments = load_fragments(list(dirs))
    model = build_model(app_list, ("*",), lambda host: host)
    options = with_check_scale(RenderOptions(max_check_rate=budget), model.services, fragments)
    return render_config(model.services, fragments, options)


def intervals(text: str) -> set[str]:
    return set(re.findall(r" inter (\S+)", text))


@pytest.mark.parametrize("rate, budget, scale", [
    (500, 1000, 1), (1000, 1000, 1), (1001, 1000, 2), (5000, 1000, 8), (5000, None, 1),
    (5000, 0, 1), (10**9, 1, 4096),
])
def test_the_scale_is_the_smallest_power_of_two_that_fits(rate: float, budget: float | None,
                                                          scale: int) -> None:
    assert check_interval_scale(rate, budget) == scale


def test_intervals_grow_with_the_number_of_checked_servers() -> None:
    small = render(apps(50), 1000)  # 500 servers every 2 s: 250 checks/s
    assert intervals(small) == {"2s"}
    big = render(apps(300), 1000)  # 3,000 servers every 2 s: 1,500/s -> every 4 s
    assert intervals(big) == {"4s"}
    assert fd_need(big).checks_per_second == pytest.approx(750)
    bigger = render(apps(1000), 1000)  # 10,000 servers: 5,000/s -> every 16 s, 625/s
    assert intervals(bigger) == {"16s"}
    assert fd_need(bigger).checks_per_second <= 1000
    assert "fastinter 1s fall" in bigger  # the rest of the check options as before


def test_no_budget_writes_marathons_intervals() -> None:
    assert intervals(render(apps(300), None)) == {"2s"}
    assert intervals(render(apps(300), 0)) == {"2s"}


def test_operator_and_legacy_fragments_are_never_retimed(tmp_path: Path) -> None:
    (tmp_path / "HAPROXY_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS").write_text(
        "inter {healthCheckIntervalSeconds}s rise 2\n")
    assert intervals(render(apps(300), 1000, (tmp_path,))) == {"2s"}
    legacy = render(apps(300), 1000, (LEGACY,))
    assert legacy == render(apps(300), None, (LEGACY,))
    assert built_in_check_rate(build_model(apps(300), ("*",), lambda h: h).services,
                               load_fragments([LEGACY])) == 0


def test_tcp_checks_are_scaled_too() -> None:
    assert intervals(render(apps(300, protocol="TCP"), 1000)) == {"4s"}


def test_the_scaled_config_passes_haproxy_check(tmp_path: Path, haproxy_bin: str) -> None:
    cfg = tmp_path / "haproxy.cfg"
    settings = RouterSettings(config_path=str(cfg), groups=("*",), validate=False,
                              state_dir=str(tmp_path / "state"), certs_dir=None,
                              render_options=RenderOptions(bind_addr="127.0.0.1",
                                                           max_check_rate=1000))

    class Snapshot:
        def fetch_apps_body(self) -> bytes:
            return b"{}"

    router = Router(Snapshot(), load_fragments(), settings, resolver=lambda h: h)
    derived = router.derive_config(apps(300))
    assert derived.options.check_interval_scale == 2  # what the live task path renders with
    assert derived.rendered is not None and intervals(derived.rendered.text) == {"4s"}
    cfg.write_text(derived.rendered.text)
    proc = subprocess.run([haproxy_bin, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_flag_defaults_to_1000_and_0_turns_it_off() -> None:
    assert flags.parse_args(["-m", "m:8080"]).max_check_rate == 1000
    assert flags.parse_args(["-m", "m:8080", "--max-check-rate", "0"]).max_check_rate == 0
    for bad in ("-1", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            flags.parse_args(["-m", "m:8080", "--max-check-rate", bad])
