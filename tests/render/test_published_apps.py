"""Published app definitions with marathon-lb labels: rendered, and HAProxy accepts them.

Each fixture (tests/fixtures/published, sources in its README) goes through a one-shot
sync with --allow-label-templates and the real ``haproxy -c``; the config written must
pass ``haproxy -c`` on its own, and each app is routed, or left out with the reason
this host gives (a DC/OS-internal name HAProxy cannot resolve here, a directive HAProxy
2.x no longer has), never dropped without a word.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from servicerouter.apply import haproxy
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.source.marathon import SnapshotSource
from tests.paths import FIXTURES

PUBLISHED = FIXTURES / "published"


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        return False
    return True


def _sync(tmp_path: Path, fixture: str, haproxy_bin: str, haproxy_map: bool = False):
    """One sync; with ``haproxy_map``, also marathon-lb's map files (--haproxy-map),
    written beside the config and checked with it."""
    options = RenderOptions(bind_addr="127.0.0.1", haproxy_map=haproxy_map,
                            map_dir=str(tmp_path / "haproxy.cfg.maps") if haproxy_map else None)
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), haproxy_bin=haproxy_bin,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None,
                              groups=("*",), allow_label_templates=True,
                              render_options=options)
    router = Router(SnapshotSource(f"file:{PUBLISHED / fixture}"), load_fragments([]), settings)
    result = router.sync()
    assert result.ok, result.error
    cfg = tmp_path / "haproxy.cfg"
    ok, message = haproxy.check_config(str(cfg), haproxy_bin)
    assert ok, message
    return cfg.read_text(), result.model.problems


def _lines(problems) -> list[str]:
    return [p.log_line() for p in problems]


FIXTURE_NAMES = sorted(p.name for p in PUBLISHED.glob("*.json"))


@pytest.mark.parametrize("haproxy_map", [False, True], ids=["acl", "haproxy-map"])
@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_every_fixture_renders_and_haproxy_accepts_it(tmp_path, haproxy_bin, fixture,
                                                      haproxy_map):
    """Rendered (and its map files written, with --haproxy-map), ``haproxy -c``'d; each
    app either has its backend or is named with a reason, never dropped silently."""
    text, problems = _sync(tmp_path, fixture, haproxy_bin, haproxy_map)
    apps = json.loads((PUBLISHED / fixture).read_text())["apps"]
    said = " ".join(_lines(problems))
    for app in apps:
        # a deployment group's colours are one backend named after the group
        name = (app.get("labels") or {}).get("HAPROXY_DEPLOYMENT_GROUP") or app["id"]
        backend = name.strip("/").replace("/", "_") + "_"
        assert f"\nbackend {backend}" in text or f"'{app['id']}'" in said, (app["id"], said)
    if haproxy_map and "\nfrontend marathon_http_in\n" in text:
        assert (tmp_path / "domain2backend.map").is_file()


def test_every_fixture_is_documented() -> None:
    readme = (PUBLISHED / "README.md").read_text()
    fixtures = sorted(p.name for p in PUBLISHED.glob("*.json"))
    assert fixtures and all(f"`{name}`" in readme for name in fixtures)
    for name in fixtures:
        assert json.loads((PUBLISHED / name).read_text())["apps"]


def test_marathon_lb_test_app_routes_and_names_its_deployment_labels(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "mlb-tests-1-nginx.json", haproxy_bin)
    assert "\nbackend nginx_10000\n" in text and "127.0.0.1:31001" in text
    # the backend is named after HAPROXY_DEPLOYMENT_GROUP, whichever colour runs
    assert not any("HAPROXY_DEPLOYMENT" in line for line in _lines(problems))


def test_marathon_lb_ci_app_routes_on_its_port_and_vhost(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "mlb-ci-docker-bridge.json", haproxy_bin)
    assert "\nfrontend nginx-docker-bridge_10100\n" in text
    assert "nginx-docker-bridge.test" in text and problems == ()


@pytest.mark.parametrize("fixture, name", [
    ("dcos-consul-proxy.json", "api.consul.l4lb.thisdcos.directory"),
    ("dcos-prometheus-proxy.json", "prometheus.prometheus.l4lb.thisdcos.directory"),
])
def test_dcos_proxies_route_to_their_internal_name_or_say_why_not(tmp_path, haproxy_bin,
                                                                  fixture, name):
    text, problems = _sync(tmp_path, fixture, haproxy_bin)
    if _resolves(name):  # on DC/OS: the label's server line is the backend's
        assert f" {name}:" in text
    else:  # here: HAProxy cannot resolve it, so the app is left out, with the reason
        assert name not in text
        assert any("HAProxy rejects its label templates" in line for line in _lines(problems))


def test_universe_trailing_comma_vhost_routes_with_a_warning(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "universe-koding-trailing-comma.json", haproxy_bin)
    assert "koding.yourcompany.com" in text and "\nbackend koding_10400\n" in text
    (line,) = _lines(problems)
    assert line.startswith("ignored label HAPROXY_0_VHOST=") and "blank entries" in line


def test_proxypass_with_path_strips_the_prefix(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "snap4city-plumber-proxypass.json", haproxy_bin)
    assert "http-request replace-path '^/plumber/abc123/?(.*)' '/\\1'" in text
    assert "http-request set-header Host nr.snap4city.org" in text and problems == ()


def test_reqirep_glue_is_quarantined_not_the_config(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "reqirep-proxypass-glue.json", haproxy_bin)
    assert "app-test" not in text and "reqirep" not in text
    assert any("'/app-test'" in line and "HAProxy rejects its label templates" in line
               for line in _lines(problems))


def test_dcos_docs_wildcard_labels_are_marathon_lb_syntax(tmp_path, haproxy_bin):
    """``{{ ssl_fc_sni -m end .{hostname} }}`` is str.format with escaped braces."""
    text, problems = _sync(tmp_path, "dcos-docs-wildcard-subdomains.json", haproxy_bin)
    assert problems == ()
    assert "  acl host_example_com hdr_end(host) -i example.com\n" in text
    assert "  use_backend app_10005 if { ssl_fc_sni -m end .example.com }\n" in text


def test_dcos_docs_port_templates(tmp_path, haproxy_bin):
    text, _ = _sync(tmp_path, "dcos-docs-no-service-port.json", haproxy_bin)
    assert "\nbackend app_10004\n" in text and "frontend app_10004" not in text  # not bound
    text, _ = _sync(tmp_path, "dcos-docs-long-timeouts.json", haproxy_bin)
    assert "\nbackend app_10002\n  balance roundrobin\n  mode tcp\n  timeout server 30m\n" in text


def test_dcos_docs_vhosts_go_into_marathon_lbs_map(tmp_path, haproxy_bin):
    text, problems = _sync(tmp_path, "dcos-docs-my-crappy-website.json", haproxy_bin, True)
    assert problems == () and "  option httplog\n" in text and "Strict-Transport-Security" in text
    assert (tmp_path / "domain2backend.map").read_text() == (
        "diddyinc.com my-crappy-website_10012\nwww.diddyinc.com my-crappy-website_10012\n")
    text, problems = _sync(tmp_path, "dcos-docs-sticky-redirect-vhost.json", haproxy_bin, True)
    assert problems == () and "cookie mesosphere_server_id insert indirect nocache" in text
    assert "nginx.mesosphere.com nginx-external_10000\n" == (
        tmp_path / "domain2backend.map").read_text()

