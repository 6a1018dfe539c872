"""render: marathon-lb's routing-only, ACL-only and auth rule templates (mlb_frontend).

Which templates marathon-lb renders for a port (several vhosts, a path, auth),
that the built-in files change nothing until one of them is changed, and that a
changed one (a templates-directory file in marathon-lb's str.format text, or a
label) renders the whole side marathon-lb's way, checked by HAProxy.
"""

from __future__ import annotations

from pathlib import Path

from servicerouter.apply import mapfiles
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.label_templates import compile_label_templates
from servicerouter.render.mlb_frontend import plan
from tests.harness import self_signed_cert
from tests.model.features import SHA512
from tests.render.test_routing_maps import frontend

AUTH = f"ops:alice:{SHA512}"
# marathon-lb's default texts of two of them, as its users copy them (str.format).
MLB_ROUTING_ONLY = "  use_backend {backend} if host_{cleanedUpHostname}\n"
MLB_ACL_WITH_AUTH = (
    "  acl host_{cleanedUpHostname} hdr(host) -i {hostname}\n"
    "  acl auth_{cleanedUpHostname} http_auth(user_{backend})\n"
    '  http-request auth realm "{realm}" if host_{cleanedUpHostname} !auth_{cleanedUpHostname}\n'
    "  use_backend {backend} if host_{cleanedUpHostname}\n")


def web(app_id: str, port: int, **labels: str) -> dict:
    return {"id": app_id, "ports": [port], "labels": {"HAPROXY_0_MODE": "http", **labels},
            "tasks": [{"id": app_id[1:] + ".1", "host": "10.0.0.1", "ports": [31000]}]}


def test_plan_is_marathon_lbs_choice() -> None:
    names = lambda *a: [name.removeprefix("HAPROXY_") for name, _how in plan(*a)]  # noqa: E731
    assert names(False, False, False, False) == ["HTTP_FRONTEND_ACL"]
    assert names(False, False, False, True) == ["HTTP_FRONTEND_ACL_WITH_AUTH"]
    assert names(False, False, True, True) == ["HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH"]
    assert names(False, True, False, False) == ["HTTP_FRONTEND_ACL_ONLY",
                                                "HTTP_FRONTEND_ROUTING_ONLY"]
    assert names(False, True, False, True) == ["HTTP_FRONTEND_ACL_ONLY",
                                               "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH"]
    assert names(False, True, True, False) == ["HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
                                               "HTTP_FRONTEND_ACL_ONLY",
                                               "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH"]
    assert names(False, True, True, True) == ["HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
                                              "HTTP_FRONTEND_ACL_ONLY",
                                              "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH"]
    assert names(True, True, True, True) == ["HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
                                             "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH"]
    assert names(True, False, False, True) == ["HTTPS_FRONTEND_ACL_WITH_AUTH"]


def _render(apps: list[dict], fragments=None, tmp_path: Path | None = None,
            templates: bool = False) -> str:
    model = build_model(apps, (), lambda h: h)
    fragments = fragments or load_fragments()
    options = RenderOptions(default_cert=self_signed_cert(tmp_path / "d.pem") if tmp_path
                            else "/x.pem")
    overrides = None
    if templates:
        compiled = compile_label_templates(model.services, fragments, options)
        assert compiled.problems == (), compiled.problems
        overrides = compiled.overrides
    text = render_config(model.services, fragments, options, overrides)
    if tmp_path is not None:
        ok, message = mapfiles.check_text(text, None, str(tmp_path))
        assert ok, message
    return text


def test_built_in_files_change_nothing() -> None:
    apps = [web("/a", 10000, HAPROXY_0_VHOST="a.test,b.test", HAPROXY_0_AUTH=AUTH),
            web("/c", 10001, HAPROXY_0_VHOST="c.test", HAPROXY_0_PATH="/x")]
    text = _render(apps)
    assert "host_a_test_a" not in text and "auth_" not in text.split("\nbackend ")[0]


def test_a_routing_only_label_renders_the_side_marathon_lbs_way(tmp_path: Path) -> None:
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="a.test,b.test",
                HAPROXY_0_HTTP_FRONTEND_ROUTING_ONLY=MLB_ROUTING_ONLY),
            web("/other", 10001, HAPROXY_0_VHOST="c.test")]
    text = _render(apps, tmp_path=tmp_path, templates=True)
    http = frontend(text, "marathon_http_in")
    start = http.index("acl host_a_test_shop hdr(host) -i a.test")
    assert http[start:start + 3] == [
        "acl host_a_test_shop hdr(host) -i a.test",
        "acl host_a_test_shop hdr(host) -i b.test",
        "use_backend shop_10000 if host_a_test_shop",
    ]
    assert sum("shop_10000" in line for line in http) == 1  # no rule of ours besides
    assert "host_a_test_shop" not in text.split("frontend marathon_https_in")[1]  # HTTPS: ours


def test_an_auth_template_file_asks_in_the_frontend(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "HAPROXY_HTTP_FRONTEND_ACL_WITH_AUTH").write_text(MLB_ACL_WITH_AUTH)
    apps = [web("/secure", 10000, HAPROXY_0_VHOST="s.test", HAPROXY_0_AUTH=AUTH),
            web("/open", 10001, HAPROXY_0_VHOST="o.test")]
    text = _render(apps, load_fragments([templates]), tmp_path=tmp_path)
    http = frontend(text, "marathon_http_in")
    assert 'http-request auth realm "ops" if host_s_test_secure !auth_s_test_secure' in http
    assert "acl auth_s_test_secure http_auth(user_secure_10000)" in http
    assert "\nuserlist user_secure_10000\n" in text  # marathon-lb's userlist name


def test_a_jinja_routing_only_file_works_too(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "HAPROXY_HTTP_FRONTEND_ROUTING_ONLY.j2").write_text(
        "  use_backend {{ backend }} if host_{{ cleanedUpHostname }} # {{ service.app_id }}\n")
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="a.test,b.test"),
            web("/one", 10001, HAPROXY_0_VHOST="c.test")]  # one vhost: not its case
    text = _render(apps, load_fragments([templates]), tmp_path=tmp_path)
    http = frontend(text, "marathon_http_in")
    assert "use_backend shop_10000 if host_a_test_shop # /shop" in http
    assert "acl host_a_test_shop hdr(host) -i b.test" in http
    assert not any("# /one" in line for line in http)


def test_a_vhost_an_older_app_owns_is_left_to_it() -> None:
    older = web("/a-old", 10000, HAPROXY_0_VHOST="a.test")
    older["version"] = "2020-01-01T00:00:00.000Z"
    newer = web("/b-new", 10001, HAPROXY_0_VHOST="a.test,b.test",
                HAPROXY_0_HTTP_FRONTEND_ROUTING_ONLY=MLB_ROUTING_ONLY)
    newer["version"] = "2021-01-01T00:00:00.000Z"
    text = _render([older, newer], templates=True)
    http = frontend(text, "marathon_http_in")
    assert "acl host_a_test_b-new hdr(host) -i b.test" in http
    assert "acl host_a_test_b-new hdr(host) -i a.test" not in http
