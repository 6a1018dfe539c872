"""The rules API on the status server, with a file store: tokens, errors, shapes.

(The live engine behind it is tests/rules/test_rules_live.py's.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from servicerouter.rules.store import FileRuleStore
from servicerouter.serve.rules_api import MAX_BODY, RulesApi
from servicerouter.serve.status import Metrics, StatusServer

TOKEN = "api-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def serve(tmp_path: Path, token: str | None, **api: Any) -> StatusServer:
    store = FileRuleStore(str(tmp_path / "rules.json"))
    srv = StatusServer(("127.0.0.1", 0), Metrics(), dict, lambda: (True, "ok"), token=token,
                       api=RulesApi(store, **api))
    srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StatusServer]:
    previews: list[Any] = []
    srv = serve(tmp_path, TOKEN, apps=lambda: [{"id": "/web", "ports": [10000]}],
                preview=lambda rules: previews.append(rules) or f"+ {len(rules)} rules\n")
    try:
        yield srv
    finally:
        srv.stop()


def call(srv: StatusServer, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = AUTH, raw: bytes | None = None) -> requests.Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return requests.request(method, f"http://127.0.0.1:{srv.port}{path}", data=data,
                            headers=headers, timeout=10)


def test_writes_need_the_token_and_reads_need_it_when_set(server: StatusServer,
                                                          tmp_path: Path) -> None:
    rule = {"app_id": "/web", "hosts": ["w.test"]}
    for method, path in (("POST", "/api/rules"), ("PUT", "/api/rules//web:0"),
                         ("DELETE", "/api/rules//web:0"), ("POST", "/api/services")):
        assert call(server, method, path, rule, headers=None).status_code == 401
        assert call(server, method, path, rule,
                    headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(server, "GET", "/api/rules", headers=None).status_code == 401
    assert call(server, "GET", "/api/rules").status_code == 200
    open_server = serve(tmp_path / "open", None)
    try:  # no token configured (loopback): reads open, writes refused
        assert call(open_server, "GET", "/api/rules", headers=None).status_code == 200
        refused = call(open_server, "POST", "/api/rules", rule, headers=None)
        assert refused.status_code == 403 and "--status-token" in refused.json()["error"]
    finally:
        open_server.stop()


def test_rule_lifecycle_and_errors(server: StatusServer) -> None:
    made = call(server, "POST", "/api/rules", {"app_id": "/web", "hosts": ["w.test"]})
    assert made.status_code == 201 and made.json()["rule"]["id"] == "/web:0"
    assert call(server, "POST", "/api/rules", {"app_id": "/web"}).status_code == 409
    assert call(server, "GET", "/api/rules//web:0").json()["rule"]["hosts"] == ["w.test"]
    assert call(server, "GET", "/api/rules/%2Fweb%3A0").status_code == 200  # quoted id too
    mismatch = call(server, "PUT", "/api/rules//web:0", {"app_id": "/other"})
    assert mismatch.status_code == 400 and mismatch.json()["field"] == "id"
    bad = call(server, "PUT", "/api/rules//web:0", {"hosts": ["w.test"], "weight": 0})
    assert bad.status_code == 400 and bad.json() == {"field": "weight",
                                                     "error": "must be an integer 1..256"}
    assert call(server, "PUT", "/api/rules//web:0", raw=b"{nope").status_code == 400
    assert call(server, "PUT", "/api/rules//web:0", raw=b"x" * (MAX_BODY + 1)).status_code == 413
    preview = call(server, "POST", "/api/rules/preview", {"rule": {"app_id": "/new"}})
    assert preview.json()["diff"] == "+ 2 rules\n" and preview.json()["changes_config"]
    assert call(server, "POST", "/api/rules/preview", {"delete": "/web:0"}).json()["diff"] \
        == "+ 0 rules\n"
    assert call(server, "POST", "/api/rules/preview", {"delete": "/no:0"}).status_code == 404
    assert call(server, "GET", "/api/rules").json()["rules"][0]["standing"] == "ok"
    assert call(server, "DELETE", "/api/rules//web:0").status_code == 200
    assert call(server, "DELETE", "/api/rules//web:0").status_code == 404
    history = call(server, "GET", "/api/rules/history?limit=1").json()["changes"]
    assert [c["action"] for c in history] == ["delete"]
    assert call(server, "GET", "/api/rules/history?limit=x").status_code == 400
    assert call(server, "GET", "/api/nothing").status_code == 404
    assert call(server, "PATCH", "/api/rules").status_code == 405
    assert call(server, "GET", "/status").status_code == 200  # the status server still answers


def test_bamboo_paths(server: StatusServer) -> None:
    created = call(server, "POST", "/api/services", raw=b'{"id":"web","acl":"hdr(host) -i b.test"}')
    assert created.json() == {"Id": "/web", "Acl": "hdr(host) -i b.test",
                              "Config": {"Acl": "hdr(host) -i b.test"}}
    assert call(server, "GET", "/api/services//web").json()["Acl"] == "hdr(host) -i b.test"
    assert call(server, "GET", "/api/rules//web:0").json()["rule"]["hosts"] == ["b.test"]
    bad = call(server, "PUT", "/api/services//web", raw=b'{"acl":"src 1.2.3.4"}')
    assert bad.status_code == 400 and "supported:" in bad.json()["error"]
    assert call(server, "DELETE", "/api/services//web").json() == {}
    assert call(server, "DELETE", "/api/services//web").status_code == 404
    state = call(server, "GET", "/api/state").json()
    assert state["Services"] == {} and state["Apps"][0]["Id"] == "/web"
