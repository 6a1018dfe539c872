"""marathon-lb's label templates: str.format text with its placeholders, sandboxed."""

from __future__ import annotations

from pathlib import Path

import pytest

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.label_templates import TemplateChecker, compile_label_templates
from servicerouter.render.mlb_templates import is_format_template
from tests.harness import self_signed_cert
from tests.render.test_label_templates import FRAGMENTS, OPTIONS, app, services

# marathon-lb's own defaults for these templates, as an app would copy them into a label.
MLB_BACKEND_HEAD = "\nbackend {backend}\n  balance {balance}\n  mode {mode}\n"
MLB_FRONTEND_HEAD = "\nfrontend {backend}\n  bind {bindAddr}:{servicePort}{sslCert}{bindOptions}\n  mode {mode}\n"
MLB_SERVER = ("  server {serverName} {host_ipv4}:{port} id {serverId}{cookieOptions}"
              "{healthCheckOptions}{otherOptions}\n")
MLB_HTTP_OPTIONS = ("  option forwardfor\n  http-request set-header X-Forwarded-Port %[dst_port]\n"
                    "  http-request add-header X-Forwarded-Proto https if { ssl_fc }\n")


def test_syntax_is_told_apart() -> None:
    assert is_format_template(MLB_BACKEND_HEAD) and is_format_template(MLB_HTTP_OPTIONS)
    assert not is_format_template("\nbackend {{ backend }}\n")


def test_marathon_lb_templates_render_with_its_placeholders_and_haproxy_accepts(
        tmp_path: Path) -> None:
    svcs = services(app("/a", 10001, HAPROXY_0_BACKEND_HEAD=MLB_BACKEND_HEAD,
                        HAPROXY_0_FRONTEND_HEAD=MLB_FRONTEND_HEAD,
                        HAPROXY_0_BACKEND_SERVER_OPTIONS=MLB_SERVER,
                        HAPROXY_0_VHOST="a.example.com",
                        HAPROXY_0_BACKEND_HTTP_OPTIONS=MLB_HTTP_OPTIONS,
                        HAPROXY_0_BALANCE="leastconn"),
                    app("/b", 10002))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.problems == () and set(compiled.overrides) == {"a_10001"}
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    assert "\nbackend a_10001\n  balance leastconn\n  mode http\n" in text
    assert "\nfrontend a_10001\n  bind *:10001\n  mode http\n" in text
    assert "{backend}" not in text and "{ ssl_fc }" in text  # verbatim template kept as is
    assert "  server 10_0_0_1_31001 10.0.0.1:31001 id " in text
    # HAProxy itself accepts each app's part (the check the runner does).
    options = RenderOptions(default_cert=self_signed_cert(tmp_path / "default.pem"))
    checked = TemplateChecker().quarantine(svcs, FRAGMENTS, options, compiled)
    assert checked.bad_apps == frozenset(), checked.problems


@pytest.mark.parametrize("template, reason", [
    ("\nbackend {backend.__class__}\n", "no attribute or index access"),
    ("\nbackend {service}\n", "is not a placeholder of HAPROXY_BACKEND_HEAD"),
    ("\nbackend {labels[x]}\n", "no attribute or index access"),
    ("\nbackend {0}\n", "is not a placeholder"),
    ("\nbackend {backend!r}\n", "conversions are not allowed"),
    ("\nbackend {backend:>99999999}\n", "format spec"),
    ("\nbackend {backend:{mode}}\n", "format spec"),
    ("\nbackend {backend\n", "label template rejected"),
])
def test_bad_format_template_quarantines_only_its_app(template: str, reason: str) -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_BACKEND_HEAD=template),
                    app("/good", 10002, HAPROXY_0_BACKEND_HEAD=MLB_BACKEND_HEAD))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.bad_apps == {"/bad"}
    (problem,) = compiled.problems
    assert reason in problem.reason and "quarantined" in problem.reason, problem.reason
    assert set(compiled.overrides) == {"good_10002"}


def test_template_haproxy_rejects_quarantines_its_app_only() -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_BACKEND_HEAD="\nbackend {backend}\n  nonsense {mode}\n"),
                    app("/good", 10002, HAPROXY_0_BACKEND_HEAD=MLB_BACKEND_HEAD))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    checked = TemplateChecker().quarantine(svcs, FRAGMENTS, OPTIONS, compiled)
    assert checked.bad_apps == {"/bad"} and set(checked.overrides) == {"good_10002"}


def test_server_id_and_other_options_are_marathon_lbs() -> None:
    """marathon-lb's test vectors: its ids for these names (collisions and 0 rehashed),
    and its config for four tasks of one app, the last one being killed."""
    from servicerouter.model.mlb_values import mlb_server_id, mlb_server_name

    taken: set[int] = set()
    colliding = [("yftjqzplpu", 28876), ("ttccbfrdhi", 7893), ("ilvparharq", 22002),
                 ("gpagkxfzou", 21805), ("dcsfcvfolh", 20892), ("tsqkugaath", 25675)]
    assert [mlb_server_id(name, taken) for name, _id in colliding] == [i for _n, i in colliding]
    assert [mlb_server_id(n, set()) for n in ("uudnntiqtd", "rghtavdepy")] == [26825, 5030]
    assert mlb_server_name("agent1", "1.1.1.1", 1024) == "agent1_1_1_1_1_1024"
    assert mlb_server_id("agent1_1_1_1_1_1024", set()) == 28363

    tasks = [("10.0.1.147", 25724, "TASK_RUNNING"), ("10.0.6.25", 16916, "TASK_RUNNING"),
             ("10.0.6.25", 23336, "TASK_RUNNING"), ("10.0.6.25", 31184, "TASK_KILLING")]
    nginx = {"id": "/nginx", "ports": [10000],
             "labels": {"HAPROXY_0_VHOST": "n.test", "HAPROXY_0_BACKEND_SERVER_OPTIONS": MLB_SERVER},
             "tasks": [{"id": f"nginx.{i}", "host": host, "ports": [port], "state": state}
                       for i, (host, port, state) in enumerate(tasks)]}
    svcs = build_model([nginx], (), lambda h: h, health_check=True).services
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    lines = [line for line in text.splitlines() if line.startswith("  server ")]
    assert [line.split(" id ")[1].split()[0] for line in lines] == [
        "9975", "14685", "14676", "27565"]
    assert lines[-1].endswith(" disabled") and "weight 0" not in lines[-1]
    assert not any(line.endswith("disabled") for line in lines[:-1])


# docs/migrating-marathon-lb.md: the two labels that keep marathon-lb's sticky cookies.
MLB_STICKY = "  cookie mesosphere_server_id insert indirect nocache\n"


def test_documented_sticky_labels_give_marathon_lbs_cookie_lines() -> None:
    """marathon-lb's own test: agent1 / 1.1.1.1:1024, sticky -> its cookie line and
    ``id 28363 check cookie d6ad48c81f``."""
    nginx = {"id": "/nginx", "ports": [10000],
             "labels": {"HAPROXY_0_STICKY": "true", "HAPROXY_0_BACKEND_STICKY_OPTIONS": MLB_STICKY,
                        "HAPROXY_0_BACKEND_SERVER_OPTIONS": MLB_SERVER},
             "tasks": [{"id": "nginx.1", "host": "agent1", "ports": [1024]}]}
    svcs = build_model([nginx], (), lambda h: "1.1.1.1").services
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.problems == ()
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    backend = text.split("\nbackend nginx_10000\n", 1)[1]
    assert MLB_STICKY in backend and "dynamic" not in backend
    assert "  server agent1_1024 1.1.1.1:1024 id 28363 check cookie d6ad48c81f" in backend


def test_escaped_braces_next_to_placeholders_are_marathon_lbs_syntax() -> None:
    """DC/OS's docs: ``if {{ ssl_fc_sni -m end .{hostname} }}`` is str.format text."""
    https_acl = "  use_backend {backend} if {{ ssl_fc_sni -m end .{hostname} }}\n"
    assert is_format_template(https_acl, "HAPROXY_HTTPS_FRONTEND_ACL")
    assert not is_format_template("  use_backend {{ backend }}\n", "HAPROXY_HTTPS_FRONTEND_ACL")
    assert not is_format_template("  use_backend {{ backend }} if { ssl_fc }\n",
                                  "HAPROXY_HTTPS_FRONTEND_ACL")
    svcs = services(app("/a", 10001, HAPROXY_0_VHOST="example.com",
                        HAPROXY_0_HTTPS_FRONTEND_ACL=https_acl))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.problems == ()
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    assert "  use_backend a_10001 if { ssl_fc_sni -m end .example.com }\n" in text
