"""The dashboard on the status server: who reads, who writes, sessions and CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from servicerouter.engine.dashboard_snapshot import DashboardData
from servicerouter.serve.dashboard_http import Dashboard, Sessions
from servicerouter.serve.status import Metrics, StatusServer
from tests.serve.test_dashboard import services, status

TOKEN = "dashboard-test-token-0123456789"


def start(token: str | None, rules: Any = None, apps: int = 3) -> StatusServer:
    routed = services(apps)
    data = DashboardData(status=status, services=lambda: routed,
                         rules=rules.rules if rules is not None else lambda: ())
    server = StatusServer(("127.0.0.1", 0), Metrics(), status, lambda: (True, "ok"), token,
                          dashboard=Dashboard(data, token, rules))
    server.start()
    return server


@pytest.fixture
def guarded() -> Iterator[StatusServer]:
    server = start(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def open_server() -> Iterator[StatusServer]:
    server = start(None)
    yield server
    server.stop()


def client() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def url(server: StatusServer, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def sign_in(server: StatusServer) -> tuple[requests.Session, str]:
    """A browser-like session signed in; returns it and the page's CSRF token."""
    browser = client()
    answer = browser.post(url(server, "/signin"), data={"token": TOKEN}, allow_redirects=False,
                          timeout=5)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    page = browser.get(url(server), timeout=5)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "no CSRF token in the signed-in page"
    return browser, match.group(1)


def test_loopback_without_a_token_reads_freely_but_cannot_write(open_server: StatusServer
                                                                 ) -> None:
    page = client().get(url(open_server), timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "/team/app000" in page.text and "app000.example.com" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    refused = client().post(url(open_server, "/rules"), data={"app_id": "/x"}, timeout=5)
    assert refused.status_code == 403 and "--status-token" in refused.text
    assert client().post(url(open_server, "/signin"), data={"token": "x"},
                         timeout=5).status_code == 403


def test_with_a_token_reads_need_it_by_bearer_or_session(guarded: StatusServer) -> None:
    anonymous = client().get(url(guarded), timeout=5)
    assert anonymous.status_code == 401 and 'id="signin"' in anonymous.text
    assert "/team/app000" not in anonymous.text and "9.9" not in anonymous.text  # no version
    assert client().get(url(guarded, "/rules"), timeout=5).status_code == 401
    bearer = client().get(url(guarded), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert bearer.status_code == 200 and "/team/app000" in bearer.text
    wrong = client().get(url(guarded), headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_and_a_wrong_token_does_not(
        guarded: StatusServer) -> None:
    wrong = client().post(url(guarded, "/signin"), data={"token": "guess"},
                          allow_redirects=False, timeout=5)
    assert wrong.status_code == 401 and "Wrong token." in wrong.text
    assert "Set-Cookie" not in wrong.headers
    answer = client().post(url(guarded, "/signin"), data={"token": TOKEN},
                           allow_redirects=False, timeout=5)
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    browser, _ = sign_in(guarded)
    assert "/team/app000" in browser.get(url(guarded), timeout=5).text


def test_writes_need_the_session_and_its_csrf_token(guarded: StatusServer) -> None:
    browser, csrf = sign_in(guarded)
    no_csrf = browser.post(url(guarded, "/signout"), data={}, allow_redirects=False, timeout=5)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    other_csrf = browser.post(url(guarded, "/signout"), data={"csrf": csrf[:-1] + "x"},
                              allow_redirects=False, timeout=5)
    assert other_csrf.status_code == 403
    # the right token but no session cookie (another browser replaying a form)
    stranger = client().post(url(guarded, "/signout"), data={"csrf": csrf},
                             allow_redirects=False, timeout=5)
    assert stranger.status_code == 401
    cross_site = browser.post(url(guarded, "/signout"), data={"csrf": csrf},
                              headers={"Origin": "http://evil.example"},
                              allow_redirects=False, timeout=5)
    assert cross_site.status_code == 403 and "cross-site" in cross_site.text
    out = browser.post(url(guarded, "/signout"), data={"csrf": csrf},
                       headers={"Origin": f"http://127.0.0.1:{guarded.port}"},
                       allow_redirects=False, timeout=5)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert browser.get(url(guarded), timeout=5).status_code == 401  # the session is gone


def test_rules_page_without_rules_enabled_says_so(guarded: StatusServer) -> None:
    browser, csrf = sign_in(guarded)
    page = browser.get(url(guarded, "/rules"), timeout=5)
    assert page.status_code == 200 and "not enabled" in page.text
    write = browser.post(url(guarded, "/rules"), data={"csrf": csrf, "app_id": "/x"},
                         allow_redirects=False, timeout=5)
    assert write.status_code == 404


def test_oversized_forms_are_refused(guarded: StatusServer) -> None:
    answer = client().post(url(guarded, "/signin"), data={"token": "x" * 70_000}, timeout=5)
    assert answer.status_code == 413


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    sessions = Sessions(ttl=10, limit=2, clock=lambda: now[0])
    first, _ = sessions.create()
    second, _ = sessions.create()
    assert sessions.get(first) is not None
    third, _ = sessions.create()  # over the limit: the oldest goes
    assert sessions.get(first) is None and sessions.get(third) is not None
    now[0] = 11
    assert sessions.get(second) is None and sessions.get(None) is None


def test_other_paths_keep_their_old_answers(guarded: StatusServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client().get(url(guarded, "/status"), headers=headers, timeout=5).status_code == 200
    assert client().get(url(guarded, "/nope"), headers=headers, timeout=5).status_code == 404
    assert client().put(url(guarded, "/"), timeout=5).status_code == 405


@pytest.fixture
def with_rules(tmp_path: Any) -> Iterator[tuple[StatusServer, Any]]:
    """A status server whose editor writes to a real file store (no engine: no preview)."""
    from servicerouter.rules.store import FileRuleStore
    from servicerouter.serve.dashboard_rules import StoreBackend
    from servicerouter.serve.rules_api import RulesApi

    store = FileRuleStore(str(tmp_path / "rules.json"))
    server = start(TOKEN, StoreBackend(RulesApi(store)))
    yield server, store
    server.stop()
    store.close()


def test_the_editor_creates_edits_and_deletes_through_the_store(with_rules: Any) -> None:
    server, store = with_rules
    browser, csrf = sign_in(server)
    form = {"csrf": csrf, "action": "save", "app_id": "/team/app001", "port_index": "0",
            "hosts": "one.test", "priority": "3"}
    saved = browser.post(url(server, "/rules"), data=form, allow_redirects=False, timeout=5)
    assert saved.status_code == 303 and "saved=%2Fteam%2Fapp001%3A0" in saved.headers["Location"]
    assert store.rules()["/team/app001:0"].hosts == ("one.test",)
    page = browser.get(url(server, "/rules?id=/team/app001:0"), timeout=5).text
    assert 'value="one.test"' in page and 'value="3"' in page  # the form is prefilled
    assert "Edit rule /team/app001:0" in page and "created: one.test" in page
    browser.post(url(server, "/rules"), data={**form, "hosts": "two.test"}, timeout=5)
    assert store.rules()["/team/app001:0"].hosts == ("two.test",)
    (latest, *_) = store.history(5)
    assert latest.actor == "dashboard (127.0.0.1)" and latest.action == "update"
    bad = browser.post(url(server, "/rules"), data={**form, "hosts": "a b;c"}, timeout=5)
    assert bad.status_code == 400 and 'data-field="hosts"' in bad.text
    assert store.rules()["/team/app001:0"].hosts == ("two.test",)  # unchanged
    preview = browser.post(url(server, "/rules"), data={**form, "action": "preview"},
                           timeout=5)
    assert preview.status_code == 400 and "preview: no config to preview against yet" in \
        preview.text
    gone = browser.post(url(server, "/rules"), data={"csrf": csrf, "action": "delete",
                                                      "id": "/team/app001:0"},
                        allow_redirects=False, timeout=5)
    assert gone.status_code == 303 and store.rules() == {}
    again = browser.post(url(server, "/rules"), data={"csrf": csrf, "action": "delete",
                                                       "id": "/team/app001:0"}, timeout=5)
    assert again.status_code == 404 and "No rule /team/app001:0." in again.text


def test_a_rule_for_an_app_not_running_is_kept_and_shown_as_such(with_rules: Any) -> None:
    server, store = with_rules
    browser, csrf = sign_in(server)
    browser.post(url(server, "/rules"), data={"csrf": csrf, "app_id": "/later",
                                              "hosts": "later.test"}, timeout=5)
    assert "/later:0" in store.rules()
    rules_page = browser.get(url(server, "/rules"), timeout=5).text
    assert "app not running" in rules_page
    assert "Rules for apps not running" in browser.get(url(server), timeout=5).text


def test_the_editors_app_list_is_filtered_and_paged_like_the_table() -> None:
    server = start(None, apps=120)
    try:
        first = client().get(url(server, "/rules"), timeout=5).text
        assert first.count('<tr class="app-row">') == 50 and "page 1 of 3" in first
        assert 'href="/rules?page=2"' in first
        found = client().get(url(server, "/rules?q=app07"), timeout=5).text
        assert found.count('<tr class="app-row">') == 10 and "/team/app071:0" in found
    finally:
        server.stop()


def test_two_dashboards_on_one_host_keep_their_own_sessions() -> None:
    """Cookies ignore ports: each router's cookie has its own name, so signing in to one
    does not replace the other's session."""
    data = DashboardData(status=status, services=lambda: services(1))
    servers = [StatusServer(("127.0.0.1", 0), Metrics(), status, lambda: (True, "ok"), TOKEN,
                            dashboard=Dashboard(data, TOKEN, cookie=f"sr_session_{n}"))
               for n in (1, 2)]
    for server in servers:
        server.start()
    try:
        browser = client()  # one cookie jar for both, as a browser has
        for server in servers:
            answer = browser.post(url(server, "/signin"), data={"token": TOKEN}, timeout=5)
            assert answer.status_code == 200
        assert {c.name for c in browser.cookies} == {"sr_session_1", "sr_session_2"}
        for server in servers:
            assert browser.get(url(server), timeout=5).status_code == 200
    finally:
        for server in servers:
            server.stop()
