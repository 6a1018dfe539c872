"""A real browser on the dashboard of a real router (emulator, managed HAProxy).

Debian's headless Chromium, driven over the DevTools pipe (tests/serve/browser.py),
signs in with the admin token and reads the services table.  Screenshots are
kept: under ``$SERVICEROUTER_ARTIFACTS`` when set (CI uploads it), else in the
test's tmp dir; their paths are printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.engine.live_router import (
    RouterProcess,
    answer,
    http_port,
    start_router,  # noqa: F401 - the router fixture
)
from tests.harness import Backend, free_port, wait_until
from tests.serve.browser import Browser, chromium_path

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")]

TOKEN = "browser-test-token-0123456789"


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Where this test's screenshots go (printed, so a failing run shows them)."""
    root = os.environ.get("SERVICEROUTER_ARTIFACTS")
    folder = (Path(root) if root else tmp_path) / f"screenshots-{request.node.name}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


def edge(emu: MarathonEmulator, backend_factory: Callable[..., Backend]) -> dict[str, int]:
    """Two apps behind the router: /shop/web (two tasks, web.test) and /shop/api."""
    ports = {"web": free_port(), "api": free_port()}
    emu.put_app({"id": "/shop/web", "portDefinitions": [{"port": ports["web"]}],
                 "labels": {"HAPROXY_0_VHOST": "web.test"}})
    emu.put_app({"id": "/shop/api", "portDefinitions": [{"port": ports["api"]}],
                 "labels": {"HAPROXY_0_VHOST": "api.test", "HAPROXY_0_PATH": "/v1"}})
    for name in ("w0", "w1"):
        emu.add_task("/shop/web", "127.0.0.1", [backend_factory(name).port])
    emu.add_task("/shop/api", "127.0.0.1", [backend_factory("a0").port])
    return ports


def signed_in(browser: Browser, router: RouterProcess) -> str:
    """Sign in through the form; returns the dashboard's base URL."""
    base = f"http://127.0.0.1:{router.status_port}"
    browser.goto(base + "/")
    assert browser.evaluate("!!document.querySelector('#signin')"), browser.text()
    browser.submit("#signin", {"token": TOKEN})
    assert browser.evaluate("location.pathname") == "/", browser.text()
    return base


def services_table(browser: Browser) -> list[dict[str, object]]:
    """The table as the browser shows it: app, hosts and the servers' state tags."""
    return json.loads(browser.evaluate("""JSON.stringify(
        [...document.querySelectorAll('#services-table tr.svc')].map(tr => ({
          app: tr.cells[0].querySelector('a').innerText.trim(),
          hosts: tr.cells[3].innerText.trim(),
          origin: tr.cells[4].innerText.trim(),
          states: [...tr.cells[5].querySelectorAll('.tag')].map(t => t.innerText.trim())})))"""))


def test_services_table_shows_the_apps_and_haproxy_server_states(
    start_router: Callable[..., RouterProcess],  # noqa: F811 - the fixture
    backend_factory: Callable[..., Backend], browser: Browser, artifacts: Path,
) -> None:
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        ports = edge(emu, backend_factory)
        router = start_router(emu, "--status-token", TOKEN)
        wait_until(lambda: answer(ports["web"]) in ("w0", "w1"), 20)
        base = signed_in(browser, router)
        rows = wait_until(lambda: _loaded(browser, base), 20, interval=0.3,
                          message="the services table never showed both apps")
        browser.screenshot(artifacts / "dashboard.png")
        by_app = {row["app"]: row for row in rows}
        assert set(by_app) == {"/shop/web", "/shop/api"}
        assert "web.test" in by_app["/shop/web"]["hosts"]
        assert "api.test" in by_app["/shop/api"]["hosts"]
        assert "/v1" in by_app["/shop/api"]["hosts"]
        assert by_app["/shop/web"]["origin"].startswith("label")
        # every server's state comes from HAProxy's Runtime API, not a guess
        assert len(by_app["/shop/web"]["states"]) == 2
        assert all(state not in ("?", "") for row in rows for state in row["states"])
        page = browser.text()
        assert emu.url.split("//", 1)[1] in page  # the Marathon host
        assert "Reloads" in page and "Runtime API updates" in page

        # filter by text through the form
        browser.submit("#services form", {"q": "api.test"})
        assert [row["app"] for row in services_table(browser)] == ["/shop/api"]
        browser.screenshot(artifacts / "dashboard-filtered.png")


def _loaded(browser: Browser, base: str) -> list[dict[str, object]] | None:
    browser.goto(base + "/")
    rows = services_table(browser)
    apps = {row["app"] for row in rows}
    states = [state for row in rows for state in row["states"]]
    return rows if apps == {"/shop/web", "/shop/api"} and "?" not in states else None


def rule_form_error(browser: Browser) -> dict[str, str] | None:
    return json.loads(browser.evaluate("""JSON.stringify((() => {
        const e = document.querySelector('.field-error');
        return e ? {field: e.dataset.field, message: e.innerText.trim()} : null; })())"""))


def api_rules(router: RouterProcess) -> list[dict[str, object]]:
    from tests.harness import http_get

    answer = http_get(f"http://127.0.0.1:{router.status_port}/api/rules",
                      headers=router.headers())
    return answer.json()["rules"]


def test_a_rule_made_in_the_form_routes_by_host_within_2s_after_a_preview(
    start_router: Callable[..., RouterProcess],  # noqa: F811 - the fixture
    backend_factory: Callable[..., Backend], browser: Browser, artifacts: Path,
) -> None:
    import time

    with MarathonEmulator(keepalive_interval=1.0) as emu:
        ports = edge(emu, backend_factory)
        router = start_router(emu, "--status-token", TOKEN)
        front = http_port(router)
        wait_until(lambda: answer(front, "web.test") in ("w0", "w1"), 20)
        assert _status(front, "shop.example") == 503  # no route yet: HAProxy's "no backend"
        base = signed_in(browser, router)
        browser.goto(base + "/rules?app=/shop/web&port=0")
        fields = {"app_id": "/shop/web", "port_index": "0", "hosts": "shop.example",
                  "note": "from the browser test"}
        browser.submit("#rule-form", fields, "#preview")
        diff = browser.text("#preview-diff")
        browser.screenshot(artifacts / "rule-preview.png")
        assert "shop.example" in diff and "+" in diff, diff
        assert api_rules(router) == []  # a preview stores nothing
        assert _status(front, "shop.example") == 503

        started = time.monotonic()
        browser.submit("#rule-form", fields, "#save")
        wait_until(lambda: answer(front, "shop.example") in ("w0", "w1"), 2.0, interval=0.02,
                   message="the rule did not route within 2 s")
        took = time.monotonic() - started
        print(f"rule saved in the form -> routed by its Host in {took:.2f} s")
        assert "Saved /shop/web:0." in browser.text("#notice")
        browser.screenshot(artifacts / "rule-saved.png")
        (rule,) = api_rules(router)
        assert rule["id"] == "/shop/web:0" and rule["hosts"] == ["shop.example"]
        history = http_get_json(router, "/api/rules/history")["changes"]
        assert history[0]["actor"].startswith("dashboard") and history[0]["action"] == "create"

        # the dashboard shows the rule's origin and the label it overrides
        browser.goto(base + "/?q=/shop/web")
        (row,) = services_table(browser)
        assert row["origin"].startswith("rule") and "overridden" in row["origin"]
        assert "shop.example" in row["hosts"]

        # deleted from the rules list: the host stops routing, the label's comes back
        browser.goto(base + "/rules")
        browser.evaluate("document.querySelector('.rule-row button[value=delete]').click()")
        wait_until(lambda: api_rules(router) == [], 5)
        wait_until(lambda: answer(front, "web.test") in ("w0", "w1"), 5)
        assert ports["web"]


def test_a_bad_rule_shows_its_error_and_changes_nothing(
    start_router: Callable[..., RouterProcess],  # noqa: F811 - the fixture
    backend_factory: Callable[..., Backend], browser: Browser, artifacts: Path,
) -> None:
    with MarathonEmulator(keepalive_interval=1.0) as emu:
        edge(emu, backend_factory)
        router = start_router(emu, "--status-token", TOKEN)
        front = http_port(router)
        wait_until(lambda: answer(front, "web.test") in ("w0", "w1"), 20)
        config_before = (router.workdir / "haproxy.cfg").read_text()
        reloads_before = router.status()["reloads"]
        base = signed_in(browser, router)
        browser.goto(base + "/rules")
        hostile = "evil.test\n  http-request deny"
        browser.submit("#rule-form", {"app_id": "/shop/web", "hosts": "ok.test bad{host}",
                                      "note": hostile}, "#save")
        error = rule_form_error(browser)
        browser.screenshot(artifacts / "rule-error.png")
        assert error is not None and error["field"] == "hosts", browser.text("#editor")
        assert "bad{host}" in error["message"]
        # the form keeps what was typed, so it can be fixed
        assert browser.evaluate("document.querySelector('#hosts').value") == "ok.test bad{host}"
        for fields, field in (({"app_id": "/shop/web", "weight": "heavy"}, "weight"),
                              ({"app_id": "no-slash", "hosts": "a.test"}, "app_id"),
                              ({"app_id": "/shop/web", "hosts": "a.test",
                                "headers": "X-Env = a b"}, "headers")):
            browser.goto(base + "/rules")
            browser.submit("#rule-form", fields, "#save")
            shown = rule_form_error(browser)
            assert shown is not None and shown["field"] == field, (fields, shown)
        assert api_rules(router) == []
        assert router.status()["reloads"] == reloads_before
        assert (router.workdir / "haproxy.cfg").read_text() == config_before


def _status(port: int, host: str) -> int:
    from tests.harness import http_get

    return http_get(f"http://127.0.0.1:{port}/", host_header=host).status_code


def http_get_json(router: RouterProcess, path: str) -> dict[str, object]:
    from tests.harness import http_get

    return http_get(f"http://127.0.0.1:{router.status_port}{path}",
                    headers=router.headers()).json()


def test_the_screenshot_script_photographs_the_demo_dashboard(tmp_path: Path) -> None:
    """scripts/screenshot's tool (docs/dashboard.png): a PNG of the signed-in page."""
    import subprocess
    import sys

    from tests.paths import REPO

    out = tmp_path / "dashboard.png"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lib" / "screenshot.py"),
                           "--out", str(out), "--width", "800", "--height", "600",
                           "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=180, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 600)
    # the rule in the picture was made through the dashboard's form
    assert "/demo/api:0" in (tmp_path / "work" / "state" / "rules.json").read_text()
