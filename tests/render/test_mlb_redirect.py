"""render: marathon-lb's HTTP-to-HTTPS redirect templates go where marathon-lb puts them.

marathon-lb renders ``BACKEND_REDIRECT_HTTP_TO_HTTPS`` (``..._WITH_PATH`` for a port
with ``HAPROXY_{n}_PATH``) in the shared HTTP frontend, after the port's host (and
path) ACLs its text refers to.  A label or templates-directory file with its text must
render there and pass ``haproxy -c``; servicerouter.py's own file stays in the port's
frontend; the built-in (empty) files leave the backend's redirect alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servicerouter.model.label_names import label_notices
from servicerouter.render.fragments import load_fragments
from servicerouter.render.mlb_frontend import plan
from tests.render.test_mlb_frontend import _render, web
from tests.render.test_routing_maps import frontend

# marathon-lb's default texts of the two templates, as its users copy them (str.format).
MLB_REDIRECT = "  redirect scheme https code 301 if !{{ ssl_fc }} host_{cleanedUpHostname}\n"
MLB_REDIRECT_WITH_PATH = ("  redirect scheme https code 301 if !{{ ssl_fc }} "
                          "host_{cleanedUpHostname} path_{backend}\n")


def test_plan_with_redirect_is_marathon_lbs() -> None:
    names = lambda *a: [n.removeprefix("HAPROXY_") for n, _h in plan(*a, redirect=True)]  # noqa: E731
    assert names(False, False, False, False) == ["HTTP_FRONTEND_ACL",
                                                 "BACKEND_REDIRECT_HTTP_TO_HTTPS"]
    assert names(False, False, True, True) == ["HTTP_FRONTEND_ACL_ONLY",
                                               "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
                                               "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH"]
    assert names(False, True, True, False) == ["HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
                                               "HTTP_FRONTEND_ACL_ONLY",
                                               "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH"]
    assert names(False, True, False, False) == ["HTTP_FRONTEND_ACL_ONLY",
                                                "BACKEND_REDIRECT_HTTP_TO_HTTPS"]
    assert names(True, False, True, False) == ["HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
                                               "HTTPS_FRONTEND_ACL_WITH_PATH"]  # HTTPS: as before


def test_with_path_label_is_known_and_not_reported() -> None:
    labels = {"HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH": MLB_REDIRECT_WITH_PATH}
    assert label_notices("/a", labels, 1) == []


@pytest.mark.parametrize("label", [False, True], ids=["file", "label"])
def test_with_path_template_renders_in_the_shared_frontend(tmp_path: Path, label: bool) -> None:
    extra = {"HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH": MLB_REDIRECT_WITH_PATH}
    fragments = None
    if not label:
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH").write_text(
            MLB_REDIRECT_WITH_PATH)
        fragments, extra = load_fragments([templates]), {}
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="s.test", HAPROXY_0_PATH="/cart",
                HAPROXY_0_REDIRECT_TO_HTTPS="true", **extra),
            web("/other", 10001, HAPROXY_0_VHOST="o.test", HAPROXY_0_PATH="/x")]
    text = _render(apps, fragments, tmp_path=tmp_path, templates=label)  # haproxy -c'd
    http = frontend(text, "marathon_http_in")
    start = http.index("acl host_s_test_shop hdr(host) -i s.test")
    assert http[start:start + 3] == [
        "acl host_s_test_shop hdr(host) -i s.test",
        "acl path_shop_10000 path_beg /cart",
        "redirect scheme https code 301 if !{ ssl_fc } host_s_test_shop path_shop_10000",
    ]
    assert "redirect" not in frontend(text, "shop_10000")  # not in the port's own frontend
    assert not any("host_o_test" in line for line in http)  # the other app: ours


@pytest.mark.parametrize("vhosts", ["s.test", "s.test,t.test"])
def test_redirect_label_of_marathon_lb_is_accepted(tmp_path: Path, vhosts: str) -> None:
    apps = [web("/shop", 10000, HAPROXY_0_VHOST=vhosts, HAPROXY_0_REDIRECT_TO_HTTPS="true",
                HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS=MLB_REDIRECT)]
    text = _render(apps, tmp_path=tmp_path, templates=True)  # haproxy -c'd: not quarantined
    http = frontend(text, "marathon_http_in")
    assert "acl host_s_test_shop hdr(host) -i s.test" in http
    assert "redirect scheme https code 301 if !{ ssl_fc } host_s_test_shop" in http
    if "," in vhosts:
        assert "acl host_s_test_shop hdr(host) -i t.test" in http
    assert "redirect" not in frontend(text, "shop_10000")


def test_servicerouter_py_redirect_file_stays_in_the_port_frontend(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS").write_text(
        "  redirect scheme https if !{{ ssl_fc }} # {bindAddr}\n")
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="s.test", HAPROXY_0_REDIRECT_TO_HTTPS="true")]
    text = _render(apps, load_fragments([templates]))
    assert "redirect scheme https if !{ ssl_fc } # *" in frontend(text, "shop_10000")
    assert not any("redirect" in line for line in frontend(text, "marathon_http_in"))


def test_defaults_redirect_in_the_backend_only(tmp_path: Path) -> None:
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="s.test", HAPROXY_0_PATH="/cart",
                HAPROXY_0_REDIRECT_TO_HTTPS="true")]
    text = _render(apps, tmp_path=tmp_path)
    assert not any("redirect" in line for line in frontend(text, "marathon_http_in"))
    assert "http-request redirect scheme https code 301" in text.split("\nbackend shop_10000")[1]


def test_a_jinja_with_path_file_renders_in_the_shared_frontend_too(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "HAPROXY_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH.j2").write_text(
        "  redirect scheme https code 308 if !{ ssl_fc } host_{{ cleanedUpHostname }} "
        "path_{{ backend }}\n")
    apps = [web("/shop", 10000, HAPROXY_0_VHOST="s.test,t.test", HAPROXY_0_PATH="/cart",
                HAPROXY_0_REDIRECT_TO_HTTPS="true")]
    text = _render(apps, load_fragments([templates]), tmp_path=tmp_path)  # haproxy -c'd
    http = frontend(text, "marathon_http_in")
    assert http[-4:] == [
        "acl path_shop_10000 path_beg /cart",
        "acl host_s_test_shop hdr(host) -i s.test",
        "acl host_s_test_shop hdr(host) -i t.test",
        "redirect scheme https code 308 if !{ ssl_fc } host_s_test_shop path_shop_10000",
    ]
