"""model + render: the backend options labels turn on (pure: no I/O, no HAProxy).

Balance, sticky cookie (dynamic cookie keys), auth, HSTS, redirect, bind options,
health-check paths, and the legacy fragments' output left unchanged by new labels.
"""

from __future__ import annotations

import re

from servicerouter.render.config import RenderOptions, render_config
from tests.model.features import (
    DEFAULTS,
    LEGACY_SET,
    OPTIONS,
    SHA512,
    app,
    model,
    render,
    section,
    use_backends,
)

# --------------------------------------------------------------------------- backend options


def test_backend_options_render() -> None:
    labels = {"HAPROXY_0_VHOST": "secure.example.com", "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
              "HAPROXY_0_USE_HSTS": "true", "HAPROXY_0_STICKY": "true",
              "HAPROXY_0_STICKY_COOKIE": "SRVID", "HAPROXY_0_BALANCE": "leastconn",
              "HAPROXY_0_AUTH": f"ops:alice:{SHA512}",
              "HAPROXY_0_BIND_OPTIONS": "accept-proxy  maxconn 100"}
    text = render([app("/secure", 10001, labels)])
    assert section(text, "userlist user_secure_10001") == [f"  user alice password {SHA512}"]
    backend = section(text, "backend secure_10001")
    assert backend[:3] == ["  balance leastconn", "  mode http",
                           "  http-request redirect scheme https code 301 if !{ ssl_fc } "
                           "{ dst_port 80 }"]
    assert "  http-request auth realm ops unless { http_auth(user_secure_10001) }" in backend
    assert "  cookie SRVID insert indirect nocache dynamic" in backend
    assert sum(line.startswith("  dynamic-cookie-key ") for line in backend) == 1
    assert '  http-response set-header Strict-Transport-Security "max-age=15768000" ' \
           "if { ssl_fc }" in backend
    assert backend[-1].endswith(" 10.0.0.1:31001 check")  # the dynamic cookie: no 'cookie'
    assert section(text, "frontend secure_10001")[0] == "  bind *:10001 accept-proxy maxconn 100"
    # The redirect is not written into the shared frontends any more.
    assert "redirect" not in "\n".join(section(text, "frontend marathon_http_in"))


def test_defaults_unchanged_for_apps_without_new_labels() -> None:
    text = render([app("/plain", 10001, {"HAPROXY_0_STICKY": "true"})])
    assert section(text, "backend plain_10001")[:3] == [
        "  balance roundrobin", "  mode tcp",
        "  cookie mesosphere_server_id insert indirect nocache dynamic"]
    assert section(text, "frontend plain_10001")[0] == "  bind *:10001"
    assert "userlist" not in text and "Strict-Transport-Security" not in text


def test_new_labels_never_touch_legacy_fragment_output() -> None:
    # New keys on an app rendered with a full legacy override set: only the legacy
    # fragments' text (plus the new fragments for the new features) appears.
    labels = {"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_BALANCE": "leastconn",
              "HAPROXY_0_STICKY_COOKIE": "X", "HAPROXY_0_BIND_OPTIONS": "accept-proxy"}
    text = render([app("/a", 10001, labels)], LEGACY_SET)
    assert "leastconn" not in text and "accept-proxy" not in text
    assert re.search(r"^  HTTP-ACL a_example_com a.example.com /a a_10001$", text, re.M)


def test_sticky_server_line_says_check_once() -> None:
    """cookieOptions keeps servicerouter.py's ' check cookie NAME'; the default line
    leaves the cookie to the backend's dynamic cookie and says 'check' once."""
    check = {"protocol": "HTTP", "portIndex": 0, "path": "/health", "intervalSeconds": 5,
             "maxConsecutiveFailures": 2}
    text = render([app("/sticky", 10001, {"HAPROXY_0_STICKY": "true"}, healthChecks=[check]),
                   app("/plain", 10002, healthChecks=[check]), app("/bare", 10003)])
    assert section(text, "backend sticky_10001")[-1] == \
        "  server 10_0_0_1_31001 10.0.0.1:31001 check inter 5s fastinter 1s fall 3"
    assert section(text, "backend plain_10002")[-1] == \
        "  server 10_0_0_1_31002 10.0.0.1:31002 check inter 5s fastinter 1s fall 3"
    assert section(text, "backend bare_10003")[-1] == "  server 10_0_0_1_31003 10.0.0.1:31003 check"
    assert "check check" not in text
    # servicerouter.py's own server fragment still gets cookieOptions as it was.
    legacy = render([app("/sticky", 10001, {"HAPROXY_0_STICKY": "true"})], LEGACY_SET)
    assert " check cookie 10_0_0_1_31001" in legacy


def test_sticky_dynamic_cookie_key_is_stable_secret_and_per_backend() -> None:
    from servicerouter.render.config import dynamic_cookie_key
    from servicerouter.render.fragments import FragmentSet

    apps = [app("/a", 10001, {"HAPROXY_0_STICKY": "true"}),
            app("/b", 10002, {"HAPROXY_0_STICKY": "true"})]
    services = model(apps).services

    def keys(secret: str | None) -> list[str]:
        text = render_config(services, DEFAULTS, RenderOptions(cookie_secret=secret))
        return [line.split()[1] for line in text.splitlines()
                if line.startswith("  dynamic-cookie-key ")]

    one = keys("1" * 64)
    assert one == keys("1" * 64) and len(set(one)) == 2  # stable; one per backend
    assert set(one).isdisjoint(keys("2" * 64)) and set(one).isdisjoint(keys(None))
    assert keys(None) == [dynamic_cookie_key("a_10001", None), dynamic_cookie_key("b_10002", None)]
    assert "1" * 64 not in render_config(services, DEFAULTS, RenderOptions(cookie_secret="1" * 64))
    # only one fragment of the pair overridden: servers name their cookie again
    mixed = FragmentSet({**DEFAULTS.fragments, "HAPROXY_BACKEND_STICKY_OPTIONS":
                         LEGACY_SET["HAPROXY_BACKEND_STICKY_OPTIONS"]})
    text = render_config(services, mixed, OPTIONS)
    assert "dynamic" not in text
    assert section(text, "backend a_10001")[-1].endswith(" check cookie 10_0_0_1_31001")


# --------------------------------------------------------------------------- health-check paths


def test_health_check_path_with_a_quote_or_escape_skips_only_that_port() -> None:
    apps = [app(f"/hc{number}", 10001 + number, healthChecks=[
                {"protocol": "HTTP", "portIndex": 0, "path": path}])
            for number, path in enumerate(["/x'y", '/x"y', "/x\\x23", "/x\ny", "/" + "e" * 120_000,
                                           "/ok$;x?a=1&b=(2)"])]
    result = model(apps)
    assert [s.app_id for s in result.services] == ["/hc5"]  # '$' and ';' are literal
    reasons = {p.app_id: p.reason for p in result.problems}
    assert set(reasons) == {"/hc0", "/hc1", "/hc2", "/hc3", "/hc4"}
    assert "not a safe URL path" in reasons["/hc0"] and "'/x\\'y'" not in reasons["/hc0"]
    assert "health check path is 120001 characters long (at most 1024)" == reasons["/hc4"]
    assert all(p.port_index == 0 and p.key == "healthChecks" for p in result.problems)


def test_legacy_vhost_rules_keep_app_id_order_with_wildcards_and_weights() -> None:
    """servicerouter.py's ACL fragments match Host exactly: a wildcard gets no precedence
    there (id order, as servicerouter.py wrote it); paths and weights still rank."""
    apps = [app("/a", 10001, {"HAPROXY_0_VHOST": "*.c.example.com"}),
            app("/b", 10002, {"HAPROXY_0_VHOST": "b.example.com"}),
            app("/c", 10003, {"HAPROXY_0_VHOST": "c.example.com", "HAPROXY_0_BACKEND_WEIGHT": "5"})]
    text = render(apps, LEGACY_SET)
    assert [line.split()[2] for line in text.splitlines() if line.startswith("  HTTP-ACL")] == [
        "c.example.com", "*.c.example.com", "b.example.com"]
    # Our own fragments: exact hosts first, the weight only among them.
    assert use_backends(render(apps)) == ["c_10003", "b_10002", "a_10001"]
