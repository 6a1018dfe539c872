"""render: assembly order and legacy placeholders (the SPEC's conformance rule).

The legacy templates in tests/fixtures/legacy_templates override every
fragment with text that uses each placeholder, so the golden output below is
worked out by hand from SPEC §4-5: buffer order, service order, server order,
the app-id ACL once per app, stripped server health-check options, ``None``
for a port without vhost, Python's ``False``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.paths import LEGACY_TEMPLATES, MARATHON_FIXTURES, REPO

LEGACY = LEGACY_TEMPLATES
FIXTURES = MARATHON_FIXTURES


def ident(host: str) -> str | None:
    return host if host[0].isdigit() else None


HTTP_CHECK = {
    "protocol": "HTTP", "portIndex": 0, "path": "/health", "timeoutSeconds": 20,
    "intervalSeconds": 60, "gracePeriodSeconds": 300, "maxConsecutiveFailures": 3,
    "ignoreHttp1xx": False,
}
TCP_CHECK = {
    "protocol": "TCP", "portIndex": 0, "path": "/", "timeoutSeconds": 5,
    "intervalSeconds": 10, "gracePeriodSeconds": 30, "maxConsecutiveFailures": 2,
    "ignoreHttp1xx": False,
}

STATE = [
    {
        "id": "/beta/svc", "ports": [10010], "env": {},
        "labels": {
            "HAPROXY_0_PORT": "9000", "HAPROXY_0_BIND_ADDR": "127.0.0.1",
            "HAPROXY_0_REDIRECT_TO_HTTPS": "yes", "HAPROXY_0_SSL_CERT": "/etc/ssl/beta.pem",
        },
        "healthChecks": [TCP_CHECK],
        "tasks": [
            {"id": "beta_svc.1", "host": "10.0.0.9", "ports": [31500]},
            {"id": "beta_svc.2", "host": "", "ports": [31501]},
        ],
    },
    {
        "id": "/alpha", "ports": [10001, 10002],
        "env": {"HAPROXY_0_VHOST": "Alpha.Example.com", "HAPROXY_0_STICKY": "T",
                "HAPROXY_1_MODE": "http"},
        "labels": {},
        "healthChecks": [HTTP_CHECK],
        "tasks": [
            {"id": "alpha.1", "host": "10.0.0.2", "ports": [31001, 31002]},
            {"id": "alpha.2", "host": "10.0.0.10", "ports": [31003, 31004]},
            {"id": "alpha.3", "host": "10.0.0.2", "ports": [30999]},
        ],
    },
    {"id": "/gamma", "ports": [10020], "env": {}, "labels": {}, "healthChecks": [], "tasks": []},
    {
        "id": "/delta", "ports": [10030], "env": {"HAPROXY_GROUP": "internal"}, "labels": {},
        "healthChecks": [], "tasks": [{"id": "delta.1", "host": "10.0.0.5", "ports": [31100]}],
    },
]

EXPECTED = (
    "# head {not a placeholder}\n"
    "\n# http frontend\n"
    "  HTTP-ACL Alpha_Example_com Alpha.Example.com /alpha alpha_10001\n"
    "\n# appid frontend\n"
    "  APPID-ACL _alpha Alpha.Example.com /alpha alpha_10001\n"
    "\n# https frontend { ssl }\n"
    "  HTTPS-ACL Alpha_Example_com Alpha.Example.com /alpha alpha_10001\n"
    "\nFE alpha_10001 *:10001 http\n"
    "  GLUE alpha_10001\n"
    "\nFE alpha_10002 *:10002 http\n"
    "  GLUE alpha_10002\n"
    "\nFE beta_svc_9000 127.0.0.1:9000 ssl crt /etc/ssl/beta.pem tcp\n"
    "  REDIRECT 127.0.0.1 { ssl_fc }\n"
    "  GLUE beta_svc_9000\n"
    "\nBE alpha_10001 http\n"
    "  HTTP-OPTIONS {literal}\n"
    "  HTTP-HC 0 HTTP /health 20 60 False 300 3 4\n"
    "  STICKY\n"
    "  SRV 10_0_0_10_31003 10.0.0.10 10.0.0.10 31003 check cookie 10_0_0_10_31003 inter 60s fall 4\n"
    "  SRV 10_0_0_2_30999 10.0.0.2 10.0.0.2 30999 check cookie 10_0_0_2_30999 inter 60s fall 4\n"
    "  SRV 10_0_0_2_31001 10.0.0.2 10.0.0.2 31001 check cookie 10_0_0_2_31001 inter 60s fall 4\n"
    "\nBE alpha_10002 http\n"
    "  HTTP-OPTIONS {literal}\n"
    "  SRV 10_0_0_10_31004 10.0.0.10 10.0.0.10 31004\n"
    "  SRV 10_0_0_2_31002 10.0.0.2 10.0.0.2 31002\n"
    "\nBE beta_svc_9000 tcp\n"
    "  TCP-HC TCP 3 /\n"
    "  SRV 10_0_0_9_31500 10.0.0.9 10.0.0.9 31500 tcpcheck 5\n"
)


def legacy_render(apps: list[dict], groups: tuple[str, ...] = ()) -> str:
    model = build_model(apps, groups, ident)
    return render_config(model.services, load_fragments([LEGACY]), RenderOptions())


def test_legacy_assembly_is_byte_identical() -> None:
    assert legacy_render(STATE) == EXPECTED


def test_legacy_groups_select_apps() -> None:
    internal = legacy_render(STATE, ("internal",))
    assert "delta_10030" in internal and "alpha_10001" not in internal
    everything = legacy_render(STATE, ("*",))
    assert "delta_10030" in everything and "alpha_10001" in everything
    # HAPROXY_GROUP is split on ',' without trimming and matched case-sensitively.
    spaced = [dict(STATE[3], env={"HAPROXY_GROUP": "a, internal"})]
    assert "delta" not in legacy_render(spaced, ("internal",))
    assert "delta" in legacy_render(spaced, (" internal",))
    assert "delta" not in legacy_render(spaced, ("Internal",))


def test_labels_win_over_env() -> None:
    app = dict(STATE[3], env={"HAPROXY_0_PORT": "7000"}, labels={"HAPROXY_0_PORT": "7001"})
    out = legacy_render([app])
    assert "FE delta_7001 *:7001" in out and "7000" not in out


def _legacy_cli(tmp_path: Path, apps: list[dict], templates: Path = LEGACY,
                *flags: str) -> str:
    """A whole one-shot run from a cwd whose ./templates holds legacy fragments."""
    (tmp_path / "templates").symlink_to(templates)
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    cfg = tmp_path / "haproxy.cfg"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bin" / "servicerouter.py"), "-m", f"file:{snapshot}",
         "--haproxy-config", str(cfg), "--command", "true", "--syslog-socket", "/dev/null",
         "--skip-validation", *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert oct(cfg.stat().st_mode & 0o777) == oct(0o644)
    return cfg.read_bytes().decode()


def test_legacy_cli_from_cwd_templates(tmp_path: Path) -> None:
    """servicerouter.py read ./templates; a whole run from that cwd gives the same bytes."""
    assert _legacy_cli(tmp_path, STATE) == EXPECTED


def test_legacy_heads_reserve_no_ports(tmp_path: Path) -> None:
    """Legacy head files bind what their author wrote: a service on :80, :81, :443 or
    :9090 is written as servicerouter.py wrote it; only our own heads reserve ports."""
    assert RenderOptions().reserved_ports(load_fragments([LEGACY])) == ()
    assert RenderOptions().reserved_ports(load_fragments()) == (80, 443, 81, 9090)
    apps = [dict(STATE[3], id=f"/p{port}", env={"HAPROXY_0_PORT": str(port)})
            for port in (80, 81, 443, 9090)]
    out = _legacy_cli(tmp_path, apps, LEGACY, "--group", "*")
    for port in (80, 81, 443, 9090):
        assert f"FE p{port}_{port} *:{port} tcp" in out


def test_legacy_vhost_rules_keep_app_id_order(tmp_path: Path) -> None:
    """Ports and wildcards rank rules only for our Jinja2 ACLs; legacy ACLs keep id order."""
    apps = [dict(STATE[3], id="/a", env={"HAPROXY_0_VHOST": "a.com"}),
            dict(STATE[3], id="/b", ports=[10031], env={"HAPROXY_0_VHOST": "b.com:8080"}),
            dict(STATE[3], id="/c", ports=[10032], env={"HAPROXY_0_VHOST": "*.c.com"})]
    out = legacy_render(apps)
    http = [line.split()[2] for line in out.splitlines() if line.startswith("  HTTP-ACL")]
    assert http == ["a.com", "b.com:8080", "*.c.com"]


def test_legacy_fragment_files_are_read_verbatim(tmp_path: Path) -> None:
    """CRLF line ends in a fragment file reach the config unchanged, as in Python 2."""
    crlf = tmp_path / "crlf"
    crlf.mkdir()
    for fragment in LEGACY.iterdir():
        (crlf / fragment.name).write_bytes(fragment.read_bytes())
    (crlf / "HAPROXY_HEAD").write_bytes(b"global\r\n  daemon\r\n")
    run = tmp_path / "run"
    run.mkdir()
    assert _legacy_cli(run, STATE[:1], crlf, "--group", "*").startswith("global\r\n  daemon\r\n")


def test_legacy_values_servicerouter_py_accepted_still_route() -> None:
    """A blank VHOST is no vhost, and 'true ' is not 'true': both as servicerouter.py."""
    blank = legacy_render([dict(STATE[3], env={"HAPROXY_0_VHOST": " "})])
    assert "FE delta_10030 *:10030 tcp" in blank and "HTTP-ACL" not in blank
    spaced = legacy_render([dict(STATE[1], env={"HAPROXY_0_STICKY": "true "})])
    assert "STICKY" not in spaced and "backend alpha_10001" not in spaced
    assert "BE alpha_10001 http" in spaced


def test_multiple_vhosts_render_one_acl_each() -> None:
    app = dict(STATE[3], env={"HAPROXY_0_VHOST": "a.example.com,b.example.com"})
    out = legacy_render([app])
    assert out.count("HTTP-ACL") == 2 and out.count("HTTPS-ACL") == 2
    assert "HTTP-ACL b_example_com b.example.com /delta delta_10030" in out


def test_port_without_vhost_renders_none_hostname() -> None:
    app = dict(STATE[3], env={"HAPROXY_0_MODE": "HTTP"})  # upper case is repaired
    out = legacy_render([app])
    assert "APPID-ACL _delta None /delta delta_10030" in out
    assert "FE delta_10030 *:10030 http" in out


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_default_templates_render_every_fixture(fixture: str, tmp_path: Path,
                                                haproxy_bin: str) -> None:
    """Every real payload renders with the built-in fragments into a config HAProxy accepts."""
    document = json.loads((FIXTURES / fixture).read_text())
    apps = document.get("apps") or ([document] if "id" in document else [])
    model = build_model(apps, ("*",), ident)
    pem = tmp_path / "default.pem"
    from servicerouter.tls.bundles import generate_self_signed

    pem.write_text(generate_self_signed())
    options = RenderOptions(bind_addr="127.0.0.1", default_cert=str(pem))
    text = render_config(model.services, load_fragments(), options)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    proc = subprocess.run([haproxy_bin, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr + text


def test_render_is_deterministic() -> None:
    assert legacy_render(STATE) == legacy_render(list(reversed(STATE)))


def test_default_templates_accept_every_servicerouter_py_setting(tmp_path: Path,
                                                                  haproxy_bin: str) -> None:
    """Each SPEC §3 key, alone and combined, renders a config HAProxy 2.6 accepts."""
    from servicerouter.tls.bundles import generate_self_signed

    pem = tmp_path / "site.pem"
    pem.write_text(generate_self_signed("site.example.com"))
    keys = {
        "HAPROXY_0_VHOST": "site.example.com,*.wild.example.com",
        "HAPROXY_0_STICKY": "true",
        "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
        "HAPROXY_0_BIND_ADDR": "127.0.0.1",
        "HAPROXY_0_PORT": "18080",
        "HAPROXY_0_MODE": "http",
    }
    apps = [dict(STATE[3], id=f"/only{i}", ports=[11000 + i], env={}, labels={k: v})
            for i, (k, v) in enumerate(keys.items())]
    apps.append(dict(STATE[3], id="/all", ports=[12000, 12001], env={"HAPROXY_GROUP": ""},
                     labels={**keys, "HAPROXY_0_VHOST": "all.example.com",
                             "HAPROXY_0_PORT": "18081", "HAPROXY_1_SSL_CERT": str(pem),
                             "HAPROXY_1_MODE": "tcp"},
                     healthChecks=[HTTP_CHECK, dict(TCP_CHECK, portIndex=1)],
                     tasks=[{"id": "all.1", "host": "10.0.0.1", "ports": [31000, 31001]}]))
    model = build_model(apps, ("*",), ident)
    assert len(model.services) == len(apps) + 1, model.problems
    options = RenderOptions(bind_addr="127.0.0.1", default_cert=str(pem))
    text = render_config(model.services, load_fragments(), options)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    proc = subprocess.run([haproxy_bin, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr + text
    assert "admin:admin" not in text and text.count(":80\n") == 1  # only the shared frontend
    assert f"ssl crt {pem}" in text and "cookie mesosphere_server_id" in text


def test_null_ignore_http1xx_renders_as_marathon_sent_it() -> None:
    """servicerouter.py printed Marathon's own value: null is 'None', not 'False'."""
    app = dict(STATE[1], healthChecks=[dict(HTTP_CHECK, ignoreHttp1xx=None)])
    assert "HTTP-HC 0 HTTP /health 20 60 None 300 3 4" in legacy_render([app])
