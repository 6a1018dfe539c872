"""End to end: HTTP-to-HTTPS redirects of marathon-lb users on a real HAProxy.

An HTTP request with a path to a port with ``HAPROXY_0_REDIRECT_TO_HTTPS`` (and
``HAPROXY_0_PATH``) is answered 301 to https with its path and query kept: with the
built-in templates, with marathon-lb's ``BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH``
as a label or a templates-directory file, and with its ``BACKEND_REDIRECT_HTTP_TO_HTTPS``
label (which names the shared frontend's ``host_`` ACL: the app must not be quarantined).
HTTPS still reaches the backend.
"""

from __future__ import annotations

import pytest

from servicerouter.emulator.marathon import MarathonEmulator
from tests.e2e.test_e2e_core import app, make_edge, servicerouter
from tests.harness import free_port, http_get, wait_for_port
from tests.render.test_mlb_redirect import MLB_REDIRECT, MLB_REDIRECT_WITH_PATH

pytestmark = pytest.mark.e2e

CASES = {
    "defaults": ({"HAPROXY_0_PATH": "/cart"}, None),
    "with-path-label": ({"HAPROXY_0_PATH": "/cart",
                         "HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH":
                         MLB_REDIRECT_WITH_PATH}, None),
    "with-path-file": ({"HAPROXY_0_PATH": "/cart"},
                       ("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH", MLB_REDIRECT_WITH_PATH)),
    "redirect-label": ({"HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS": MLB_REDIRECT}, None),
    "redirect-file": ({}, ("HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS", MLB_REDIRECT)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_http_with_a_path_is_redirected_to_https_keeping_it(case, tmp_path, backend_factory,
                                                            haproxy_factory) -> None:
    labels, template_file = CASES[case]
    extra: list[str] = ["--allow-label-templates"]
    if template_file is not None:
        templates = tmp_path / "mytemplates"
        templates.mkdir()
        (templates / template_file[0]).write_text(template_file[1])
        extra += ["--templates-dir", str(templates)]
    shop = backend_factory("shop")
    edge = make_edge(tmp_path)
    apps = [app("/shop", free_port(), [shop], HAPROXY_0_MODE="http", HAPROXY_0_VHOST="s.test",
                HAPROXY_0_REDIRECT_TO_HTTPS="true", **labels)]
    with MarathonEmulator(apps) as marathon:
        run = servicerouter(edge, marathon.url, *extra, cwd=tmp_path)
    assert "quarantine" not in run.stderr.lower(), run.stderr
    config = edge.cfg.read_text()
    shared_http = config.split("frontend marathon_http_in\n")[1].split("\n\n")[0]
    if case != "defaults":
        assert "redirect scheme https code 301 if !{ ssl_fc } host_s_test_shop" in shared_http
    haproxy_factory(str(edge.cfg))
    wait_for_port(edge.http)
    path = "/cart/item?id=7" if "PATH" in str(labels) or "PATH" in str(template_file) \
        else "/any/item?id=7"
    moved = http_get(f"http://127.0.0.1:{edge.http}{path}", host_header="s.test",
                     allow_redirects=False)
    assert (moved.status_code, moved.headers.get("location")) == (301, f"https://s.test{path}")
    secure = http_get(f"https://127.0.0.1:{edge.https}{path}", host_header="s.test",
                      verify=False)
    assert (secure.status_code, secure.text.strip()) == (200, "shop")
