"""HAPROXY_* labels we do not act on as written are named once per app, never dropped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from servicerouter.engine.live import LiveRouter
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.model.label_names import (
    MLB_APP_NAMES,
    MLB_NEVER_RENDERED,
    MLB_PENDING_PORT,
    MLB_TEMPLATE_NAMES,
    SUPPORTED_TEMPLATE_NAMES,
    label_notices,
)
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions
from servicerouter.render.fragments import load_fragments
from servicerouter.render.label_templates import OVERRIDABLE
from servicerouter.serve.status import Metrics
from servicerouter.source.marathon import SnapshotSource
from tests.model.test_model import app, ident

_TASKS = [("192.0.2.1", [31000])]


def _notices(labels: dict, ports: int = 2) -> dict[str, str]:
    return {p.key: p.reason for p in label_notices("/web", labels, ports)}


def test_every_marathon_lb_name_is_known() -> None:
    # 42 per-port template names (marathon-lb's 43 overridable templates but
    # HTTP_BACKEND_REDIR, a setting), the deployment family: none unknown.
    labels = {f"HAPROXY_0_{name}": "x" for name in MLB_TEMPLATE_NAMES}
    labels.update({f"HAPROXY_1_{name}": "x" for name in MLB_PENDING_PORT})
    labels.update({f"HAPROXY_{name}": "x" for name in MLB_APP_NAMES})
    assert len(MLB_TEMPLATE_NAMES) == 42
    reasons = _notices(labels)
    assert not [k for k, r in reasons.items() if "unknown" in r]


def test_supported_template_names_follow_the_fragment_registry() -> None:
    overridable = {spec.name.removeprefix("HAPROXY_") for spec in OVERRIDABLE}
    assert SUPPORTED_TEMPLATE_NAMES == overridable & set(MLB_TEMPLATE_NAMES)


def test_our_own_names_say_nothing() -> None:
    assert _notices({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "a.example.com",
                     "HAPROXY_0_BACKEND_HEAD": "x", "HAPROXY_1_AUTH": "r:u:p",
                     "NOT_HAPROXY": "x"}) == {}
    # written by servicerouter zdd on a new colour (a canary's share, a deployment's steps)
    assert _notices({"HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT": "10,50"}) == {}


def test_unknown_label_with_did_you_mean() -> None:
    reasons = _notices({"HAPROXY_0_VHOTS": "a.example.com", "HAPROXY_1_STIKCY": "true",
                        "HAPROXY_VHOST": "a.example.com", "HAPROXY_FOOBAR_ZZZ": "1"})
    assert reasons["HAPROXY_0_VHOTS"].endswith("did you mean HAPROXY_0_VHOST?")
    assert reasons["HAPROXY_1_STIKCY"].endswith("did you mean HAPROXY_1_STICKY?")
    assert reasons["HAPROXY_VHOST"].endswith("did you mean HAPROXY_{n}_VHOST?")
    assert reasons["HAPROXY_FOOBAR_ZZZ"] == "unknown label, ignored"


def test_known_but_not_implemented_names_say_so() -> None:
    # the blue/green labels are implemented (servicerouter.model.deployment_groups)
    assert list(label_notices("/web", {"HAPROXY_DEPLOYMENT_COLOUR": "blue",
                                       "HAPROXY_DEPLOYMENT_GROUP": "web"}, 1)) == []
    # every template marathon-lb renders is implemented (the last one: render.mlb_frontend)
    assert list(label_notices(
        "/web", {"HAPROXY_0_BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH": "x"}, 1)) == []
    pending = set(MLB_TEMPLATE_NAMES) - SUPPORTED_TEMPLATE_NAMES - MLB_NEVER_RENDERED
    assert pending == set()


def test_label_for_a_port_the_app_does_not_have() -> None:
    reasons = _notices({"HAPROXY_3_VHOST": "a.example.com"}, ports=1)
    assert "no service port index 3" in reasons["HAPROXY_3_VHOST"]


def test_trailing_comma_in_vhost_routes_the_port_with_a_warning() -> None:
    # A Universe package renders HAPROXY_0_VHOST as "koding.yourcompany.com,".
    model = build_model([app(labels={"HAPROXY_0_VHOST": "koding.yourcompany.com,"},
                             tasks=_TASKS)], (), ident)
    (svc,) = model.services
    assert svc.vhosts == ("koding.yourcompany.com",)
    (notice,) = model.problems
    assert notice.kind == "label" and "blank entries" in notice.reason
    assert notice.log_line().startswith("ignored label HAPROXY_0_VHOST=")
    # Only blanks is still no host at all: the port is skipped, as before.
    model = build_model([app(labels={"HAPROXY_0_VHOST": " , "}, tasks=_TASKS)], (), ident)
    assert model.services == ()


def test_unknown_label_does_not_stop_routing_and_is_logged_once(tmp_path: Path,
                                                               caplog) -> None:
    apps = [app(labels={"HAPROXY_0_VHOTS": "a.example.com"}, tasks=_TASKS)]
    model = build_model(apps, (), ident)
    assert len(model.services) == 1
    assert [p.key for p in model.problems] == ["HAPROXY_0_VHOTS"]
    # The live engine: three syncs, one warning (a notice is logged when it appears).
    live = _live(tmp_path, apps)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            live.request_resync("test")
            assert live.step()
    hits = [r for r in caplog.records if "HAPROXY_0_VHOTS" in r.getMessage()]
    assert len(hits) == 1 and "did you mean HAPROXY_0_VHOST?" in hits[0].getMessage()


def _live(tmp_path: Path, apps: list[dict]) -> LiveRouter:
    state = tmp_path / "apps.json"
    state.write_text(json.dumps({"apps": apps}))
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), haproxy_bin="haproxy",
                              validate=False, reload=None, state_dir=str(tmp_path / "state"),
                              certs_dir=None, render_options=RenderOptions(bind_addr="127.0.0.1"))
    router = Router(SnapshotSource(f"file:{state}"), load_fragments([]), settings)
    return LiveRouter(router, reloader=None, metrics=Metrics())


def test_apps_outside_our_groups_are_not_checked() -> None:
    apps = [app(labels={"HAPROXY_GROUP": "internal", "HAPROXY_0_VHOTS": "x"})]
    assert build_model(apps, ("external",), ident).problems == ()


def test_hostile_label_names_stay_on_one_log_line() -> None:
    (notice,) = label_notices("/web", {"HAPROXY_0_VHOST\nbind :1": "x", }, 1)
    assert "\n" not in notice.log_line() and "\\n" in notice.log_line()


def test_templates_marathon_lb_never_renders_say_so() -> None:
    reasons = _notices({"HAPROXY_0_HTTPS_FRONTEND_AUTH_ACL_ONLY": "x",
                        "HAPROXY_0_HTTP_FRONTEND_ROUTING_ONLY": "x"})
    assert reasons == {"HAPROXY_0_HTTPS_FRONTEND_AUTH_ACL_ONLY":
                       "marathon-lb never renders this template (it is only documented); ignored"}
