"""label_templates: HAPROXY_{n}_<FRAGMENT> labels, only with --allow-label-templates.

Sandboxed Jinja2, compiled and trial-rendered per app; HAProxy checks each
templated app's config on its own, so a bad template quarantines only its app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from servicerouter.apply import haproxy
from servicerouter.engine.runner import Router, RouterSettings
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.label_templates import (
    TemplateChecker,
    compile_label_templates,
    find_label_templates,
    label_key,
)
from servicerouter.source.marathon import SnapshotSource

FRAGMENTS = load_fragments([])
OPTIONS = RenderOptions(crt_list="/state/crt-list")


def app(app_id: str, port: int, **labels: str) -> dict:
    return {"id": app_id, "ports": [port], "labels": labels,
            "tasks": [{"id": f"{app_id[1:]}.1", "host": "10.0.0.1", "ports": [31000 + port % 1000]}]}


def services(*apps: dict):
    return build_model(list(apps), (), lambda h: h).services


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.setup_logging (run by other tests) stops propagation; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)


def test_label_key_names() -> None:
    assert label_key(0, "HAPROXY_BACKEND_HEAD") == "HAPROXY_0_BACKEND_HEAD"
    assert label_key(2, "HAPROXY_HTTP_FRONTEND_ACL_WITH_PATH") == \
        "HAPROXY_2_HTTP_FRONTEND_ACL_WITH_PATH"


def test_only_per_service_fragments_can_be_overridden() -> None:
    found = find_label_templates(services(app(
        "/a", 10001, HAPROXY_0_BACKEND_HEAD="\nbackend {{ backend }}\n",
        HAPROXY_HEAD="global\n", HAPROXY_0_HTTP_FRONTEND_HEAD="x", HAPROXY_1_BACKEND_HEAD="y")))
    assert found == {"a_10001": [("HAPROXY_BACKEND_HEAD", "HAPROXY_0_BACKEND_HEAD",
                                  "\nbackend {{ backend }}\n")]}


def test_good_template_applies_to_its_app_only() -> None:
    custom = "\nbackend {{ backend }}\n  balance first\n  mode {{ mode }}\n  # custom\n"
    svcs = services(app("/a", 10001, HAPROXY_0_BACKEND_HEAD=custom), app("/b", 10002))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.problems == () and set(compiled.overrides) == {"a_10001"}
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    assert "backend a_10001\n  balance first\n  mode tcp\n  # custom\n" in text
    assert "backend b_10002\n  balance roundrobin\n" in text


@pytest.mark.parametrize("template, reason", [
    ("{% if %}", "label template rejected"),
    ("{{ nosuchvariable }}", "unknown variable 'nosuchvariable'"),
    ("{{ 1 // 0 }}", "failed to render: ZeroDivisionError"),
    ("{{ app.__class__.__mro__ }}", "failed to render: SecurityError"),
    ("{{ labels.update({'x': 1}) }}", "failed to render: SecurityError"),
    ("{{ ''.__class__.__subclasses__() }}", "failed to render: SecurityError"),
    ("x" * 5000, "longer than"),
])
def test_bad_template_quarantines_only_its_app(template: str, reason: str) -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_BACKEND_HEAD=template),
                    app("/good", 10002, HAPROXY_0_BACKEND_HEAD="\nbackend {{ backend }}\n"))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    assert compiled.bad_apps == {"/bad"}
    (problem,) = compiled.problems
    assert problem.app_id == "/bad" and reason in problem.reason, problem.reason
    assert "quarantined" in problem.reason
    assert set(compiled.overrides) == {"good_10002"}


def test_checker_quarantines_what_haproxy_rejects_and_caches_verdicts() -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_FRONTEND_BACKEND_GLUE="  nonsense here\n"),
                    app("/good", 10002, HAPROXY_0_FRONTEND_BACKEND_GLUE="  use_backend {{ backend }}\n"))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    checked_texts: list[str] = []

    def fake_check(text: str) -> tuple[bool, str]:
        checked_texts.append(text)
        if "nonsense" in text:
            return False, "[ALERT] parsing [cfg:40]: unknown keyword 'nonsense'"
        return True, ""

    checker = TemplateChecker(check=fake_check)
    result = checker.quarantine(svcs, FRAGMENTS, OPTIONS, compiled)
    assert result.bad_apps == {"/bad"} and set(result.overrides) == {"good_10002"}
    assert "unknown keyword 'nonsense'" in result.problems[0].reason
    assert len(checked_texts) == 2
    checker.quarantine(svcs, FRAGMENTS, OPTIONS, compiled)
    assert len(checked_texts) == 2  # unchanged apps are not checked again


def write_state(tmp_path: Path, apps: list[dict]) -> str:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": apps}))
    return f"file:{path}"


def label_template_router(tmp_path: Path, apps: list[dict], haproxy_bin: str) -> Router:
    """A one-shot router over ``apps`` with --allow-label-templates, writing
    ``tmp_path/haproxy.cfg`` validated by the real haproxy, no reload."""
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), haproxy_bin=haproxy_bin,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None,
                              allow_label_templates=True,
                              render_options=RenderOptions(bind_addr="127.0.0.1"))
    return Router(SnapshotSource(write_state(tmp_path, apps)), FRAGMENTS, settings)


def test_router_with_real_haproxy_serves_good_templates_and_skips_bad_app(
        tmp_path: Path, haproxy_bin: str) -> None:
    apps = [
        app("/good", 10001, HAPROXY_0_BACKEND_HEAD=(
            "\nbackend {{ backend }}\n  balance first\n  mode {{ mode }}\n")),
        app("/typo", 10002, HAPROXY_0_BACKEND_HEAD="\nbackend {{ backend }}\n  balanse first\n"),
        app("/plain", 10003),
    ]
    cfg = tmp_path / "haproxy.cfg"
    router = label_template_router(tmp_path, apps, haproxy_bin)
    result = router.sync()
    assert result.ok and result.changed, result.error
    text = cfg.read_text()
    assert "backend good_10001\n  balance first\n" in text
    assert "typo_10002" not in text and "backend plain_10003" in text
    assert haproxy.check_config(str(cfg), haproxy_bin)[0]
    assert any(p.app_id == "/typo" and "HAProxy rejects its label templates" in p.reason
               for p in result.model.problems)


def test_router_ignores_label_templates_without_the_flag(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    apps = [app("/a", 10001, HAPROXY_0_BACKEND_HEAD="\nbackend {{ backend }}\n  # mine\n")]
    settings = RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), validate=False,
                              reload=None, state_dir=str(tmp_path / "state"), certs_dir=None)
    router = Router(SnapshotSource(write_state(tmp_path, apps)), FRAGMENTS, settings)
    with caplog.at_level(logging.WARNING, logger="servicerouter"):
        router.sync()
        router.sync()
    text = (tmp_path / "haproxy.cfg").read_text()
    assert "# mine" not in text and "backend a_10001\n  balance roundrobin" in text
    warnings = [r for r in caplog.records if "need --allow-label-templates" in r.getMessage()]
    assert len(warnings) == 1 and "HAPROXY_0_BACKEND_HEAD" in warnings[0].getMessage()


# A template that passes on its own but redeclares another app's backend.
CLASH = "\nbackend ok_43001\n  mode tcp\n\nbackend {{ backend }}\n  mode {{ mode }}\n"


def test_router_quarantines_a_template_that_breaks_only_the_combined_config(
        tmp_path: Path, haproxy_bin: str) -> None:
    """One-shot: per-app checks pass, HAProxy rejects all apps together; the clashing
    templated app is found by bisection and left out, everything else applies."""
    from servicerouter.engine.runner import run_once

    apps = [app("/ok", 43001), app("/dup", 43008, HAPROXY_0_BACKEND_HEAD=CLASH),
            app("/good", 43002, HAPROXY_0_BACKEND_HEAD=(
                "\nbackend {{ backend }}\n  balance first\n  mode {{ mode }}\n")),
            app("/plain", 43003)]
    cfg = tmp_path / "haproxy.cfg"
    router = label_template_router(tmp_path, apps, haproxy_bin)
    assert run_once(router) == 0, router.last.error if router.last else None
    text = cfg.read_text()
    assert text.count("\nbackend ok_43001\n") == 1 and "dup_43008" not in text
    assert "backend good_43002\n  balance first\n" in text and "backend plain_43003" in text
    assert haproxy.check_config(str(cfg), haproxy_bin)[0]
    problems = [p for p in router.last.model.problems if p.app_id == "/dup"]
    assert len(problems) == 1 and "together with the other apps" in problems[0].reason
    assert "ok_43001" in problems[0].reason  # HAProxy's reason is kept


def test_combined_check_bisects_templated_apps_only() -> None:
    svcs = services(app("/ok", 43001), app("/plain", 43009),
                    *[app(f"/t{i}", 43010 + i, HAPROXY_0_BACKEND_HEAD=(
                        CLASH if i == 5 else "\nbackend {{ backend }}\n  mode {{ mode }}\n"))
                      for i in range(8)])
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    checks: list[str] = []

    def fake_check(text: str) -> tuple[bool, str]:
        checks.append(text)
        if text.count("\nbackend ok_43001\n") > 1:
            return False, "[ALERT] backend 'ok_43001' has the same name as backend 'ok_43001'"
        return True, ""

    checker = TemplateChecker(check=fake_check)
    result = checker.check_combined(svcs, FRAGMENTS, OPTIONS, compiled)
    assert result.bad_apps == {"/t5"}
    assert set(result.overrides) == {f"t{i}_{43010 + i}" for i in range(8) if i != 5}
    assert "same name" in result.problems[-1].reason
    # full config, the untemplated apps alone, then a bisection over 8 suspects
    assert len(checks) <= 2 + 1 + 3 + 1, len(checks)

    checks.clear()
    fine = checker.check_combined(svcs[:2], FRAGMENTS, OPTIONS, compiled)
    assert fine is compiled and len(checks) == 1  # accepted at once: nothing else to do
    assert checker.check_combined(svcs[:2], FRAGMENTS, OPTIONS, compiled) is compiled
    assert len(checks) == 1  # the same config is not checked again


def test_combined_check_leaves_a_rejection_that_is_not_the_templates_fault() -> None:
    svcs = services(app("/ok", 43001), app("/t", 43002, HAPROXY_0_BACKEND_HEAD=(
        "\nbackend {{ backend }}\n  mode {{ mode }}\n")))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    checker = TemplateChecker(check=lambda text: (False, "[ALERT] something global"))
    assert checker.check_combined(svcs, FRAGMENTS, OPTIONS, compiled) is compiled
