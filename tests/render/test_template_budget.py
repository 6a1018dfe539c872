"""Label templates run on a budget: a pathological one quarantines its app, quickly.

Every case runs in a worker thread joined with a generous bound, so a regression
fails the test instead of hanging the suite (the bound is a safety net, not a
speed claim: these finish in milliseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from servicerouter.apply import haproxy
from servicerouter.model.services import build_model
from servicerouter.render.budget import BudgetedFragment, BudgetSandbox, budget_env
from servicerouter.render.budget_limits import MAX_STEPS, BudgetExceeded
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.render.label_templates import TemplateChecker, compile_label_templates
from tests.render.test_label_templates import label_template_router

FRAGMENTS = load_fragments([])
OPTIONS = RenderOptions(crt_list="/state/crt-list")
BOUND = 60.0  # seconds; a hang fails here instead of stalling the suite
GOOD_HEAD = "\nbackend {{ backend }}\n  balance first\n  mode {{ mode }}\n"


def app(app_id: str, port: int, servers: int = 1, **labels: str) -> dict:
    return {"id": app_id, "ports": [port], "labels": labels,
            "tasks": [{"id": f"{app_id[1:]}.{i}", "host": "10.0.0.1", "ports": [20000 + i]}
                      for i in range(servers)]}


def services(*apps: dict):
    return build_model(list(apps), (), lambda h: h).services


def bounded(func: Callable[[], Any]) -> Any:
    """``func()`` on a worker thread, failing the test if it is not done within BOUND."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = func()
        except BaseException as err:  # handed to the test thread
            result["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND)
    assert not worker.is_alive(), f"still running after {BOUND:.0f}s"
    if "error" in result:
        raise result["error"]
    return result["value"]


PATHOLOGICAL = {
    "nested loops": "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}"
                    "{% endfor %}",
    "huge repetition": "{{ 'x' * 10**9 }}",
    "huge power": "{{ 10 ** (10 ** 10) }}",
    "repeated squaring": "{% set ns = namespace(n=7) %}{% for i in range(64) %}"
                         "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    "doubling with ~": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "doubling with +": "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "padding filter": "{{ 'x'|center(1000000000) }}",
    "padding method": "{{ 'x'.rjust(10**9) }}",
    "indent": "{{ ('x\n' * 30000)|indent(1000) }}",
    "printf width": "{{ '%01000000000d' % 1 }}",
    "format width": "{{ '{:>1000000000}'.format(1) }}",
    "format filter": "{{ '%0*d'|format(10**9, 1) }}",
    "join": "{{ ([('x' * 60000)] * 1000)|join }}",
    "str.join": "{{ ''.join([('x' * 60000)] * 1000) }}",
    "replace": "{{ ('x' * 60000).replace('x', 'y' * 60000) }}",
    "translate": "{{ ('a' * 60000).translate({97: 'b' * 60000}) }}",
    "empty loops over a string": "{% set s = 'x' * 60000 %}{% for a in s %}{% for b in s %}"
                                 "{% endfor %}{% endfor %}",
    "loop filter": "{% for a in range(50000) %}{% for b in range(50000) if b < 0 %}"
                   "{% endfor %}{% endfor %}",
    "membership scans": "{% set big = range(60000)|list %}{% for a in range(60000) %}"
                        "{% if -1 in big %}{% endif %}{% endfor %}",
    "recursive loop": "{% for a in range(50) recursive %}{% if loop.depth < 6 %}"
                      "{{ loop(range(50)) }}{% endif %}{% endfor %}",
    "macro fan-out": "{% macro m(n) %}{% if n %}{% for i in range(50) %}{{ m(n - 1) }}"
                     "{% endfor %}{% endif %}{% endmacro %}{{ m(6) }}",
    "literal output": "{% for a in range(60000) %}" + "x" * 3000 + "{% endfor %}",
    "sum over range": "{% for a in range(1000) %}{{ range(60000)|sum }}{% endfor %}",
}


@pytest.mark.parametrize("template", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_template_quarantines_only_its_app(template: str) -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_BACKEND_HEAD=template),
                    app("/good", 10002, HAPROXY_0_BACKEND_HEAD=GOOD_HEAD), app("/plain", 10003))
    compiled = bounded(lambda: compile_label_templates(svcs, FRAGMENTS, OPTIONS))
    assert compiled.bad_apps == {"/bad"}
    (problem,) = compiled.problems
    assert problem.app_id == "/bad" and problem.port_index == 0
    assert "failed to render" in problem.reason and "quarantined" in problem.reason
    if "BudgetExceeded" in problem.reason:
        assert "label HAPROXY_0_BACKEND_HEAD of app /bad" in problem.reason
    assert set(compiled.overrides) == {"good_10002"}
    text = render_config([s for s in svcs if s.app_id != "/bad"], FRAGMENTS, OPTIONS,
                         compiled.overrides)
    assert "backend good_10002\n  balance first\n" in text and "backend plain_10003" in text


def test_budget_errors_say_what_ran_out() -> None:
    env = budget_env()
    with pytest.raises(BudgetExceeded, match="too much work"):
        env.from_string(PATHOLOGICAL["nested loops"]).render()
    with pytest.raises(BudgetExceeded, match="too much output"):
        env.from_string(PATHOLOGICAL["literal output"]).render()
    with pytest.raises(BudgetExceeded, match="over 65536 characters"):
        env.from_string(PATHOLOGICAL["huge repetition"]).render()
    with pytest.raises(BudgetExceeded, match="over 4096 bits"):
        env.from_string(PATHOLOGICAL["huge power"]).render()


def test_lipsum_is_not_offered() -> None:
    svcs = services(app("/bad", 10001, HAPROXY_0_BACKEND_HEAD="{{ lipsum(100000) }}"))
    (problem,) = compile_label_templates(svcs, FRAGMENTS, OPTIONS).problems
    assert "unknown variable 'lipsum'" in problem.reason


HARMLESS = {
    # Jinja2's ** is left-associative: (10**10)**10, a 101-digit number.
    "10**10**10": ("{{ 10**10**10 }}", "1" + "0" * 100),
    "loops": ("{% for s in servers %}{{ loop.index }}:{{ s.port }} {% endfor %}",
              "1:20000 2:20001 3:20002 "),
    "filters": ("{{ 'x'|center(5) }}|{{ '%03d'|format(7) }}|{{ [1, 2]|join('-') }}|"
                "{{ 'a b'.split()|join(',') }}|{{ 'ab'.replace('a', 'c') }}|{{ 2 ** 10 }}",
                "  x  |007|1-2|a,b|cb|1024"),
    "membership": ("{{ 'web' in labels.get('TAGS', 'web,api') }} {{ 5 not in range(3) }}",
                   "True True"),
    "macros and call blocks": ("{% macro b(x) %}[{{ x }}{{ caller() }}]{% endmacro %}"
                               "{% call b(1) %}c{% endcall %}{% for i in range(2) if i %}"
                               "{{ i }}{% endfor %}", "[1c]1"),
    "concatenation": ("{{ backend ~ '-' ~ mode }}", "a_10001-tcp"),
}


@pytest.mark.parametrize("template, expected", HARMLESS.values(), ids=HARMLESS.keys())
def test_ordinary_templates_render_as_before(template: str, expected: str) -> None:
    head = "\nbackend {{ backend }}\n  # " + template + "|\n"
    svcs = services(app("/a", 10001, servers=3, HAPROXY_0_BACKEND_HEAD=head))
    compiled = bounded(lambda: compile_label_templates(svcs, FRAGMENTS, OPTIONS))
    assert compiled.problems == ()
    text = render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)
    assert f"\nbackend a_10001\n  # {expected}|\n" in text


def test_a_template_within_each_render_but_too_costly_per_port_is_quarantined() -> None:
    # Each server line stays under the per-render budget; all of them together do not.
    heavy = "{% for i in range(" + str(MAX_STEPS // 8) + ") %}{% endfor %}"
    line = "  server {{ serverName }} {{ host }}:{{ port }}" + heavy + "\n"
    svcs = services(app("/many", 10001, servers=200, HAPROXY_0_BACKEND_SERVER_OPTIONS=line),
                    app("/few", 10002, servers=2, HAPROXY_0_BACKEND_SERVER_OPTIONS=line))
    compiled = bounded(lambda: compile_label_templates(svcs, FRAGMENTS, OPTIONS))
    assert compiled.bad_apps == {"/many"} and set(compiled.overrides) == {"few_10002"}


def test_label_templates_see_the_whole_model_in_every_render() -> None:
    """Trial, per-app haproxy -c and the real render agree, whatever subset they render."""
    head = "\nbackend {{ backend }}\n  # {{ services|length }} services\n"
    svcs = services(app("/a", 10001, HAPROXY_0_BACKEND_HEAD=head), app("/b", 10002),
                    app("/c", 10003))
    compiled = compile_label_templates(svcs, FRAGMENTS, OPTIONS)
    seen: list[str] = []

    def check(text: str) -> tuple[bool, str]:
        seen.append(text)
        return True, ""

    TemplateChecker(check=check).quarantine(svcs, FRAGMENTS, OPTIONS, compiled)
    (alone,) = seen  # /a rendered on its own
    assert "# 3 services" in alone
    assert "# 3 services" in render_config(svcs, FRAGMENTS, OPTIONS, compiled.overrides)


def test_only_label_templates_pay_for_the_budget() -> None:
    for fragment in FRAGMENTS.fragments.values():
        assert not isinstance(fragment, BudgetedFragment)
        # (a built-in fragment shipped compiled gets its Jinja2 template on first need)
        template = fragment._jinja() if fragment.is_jinja else None
        assert template is None or not isinstance(template.environment, BudgetSandbox)


def test_router_with_real_haproxy_skips_only_the_pathological_app(
        tmp_path: Path, haproxy_bin: str) -> None:
    apps = [app("/spin", 10001, HAPROXY_0_BACKEND_HEAD=PATHOLOGICAL["nested loops"]),
            app("/bloat", 10002, HAPROXY_0_FRONTEND_HEAD=PATHOLOGICAL["huge repetition"]),
            app("/good", 10003, HAPROXY_0_BACKEND_HEAD=GOOD_HEAD), app("/plain", 10004)]
    cfg = tmp_path / "haproxy.cfg"
    router = label_template_router(tmp_path, apps, haproxy_bin)
    result = bounded(router.sync)
    assert result.ok and result.changed, result.error
    text = cfg.read_text()
    assert "spin_10001" not in text and "bloat_10002" not in text
    assert "backend good_10003\n  balance first\n" in text and "backend plain_10004" in text
    assert haproxy.check_config(str(cfg), haproxy_bin)[0]
    skipped = {p.app_id for p in result.model.problems if "BudgetExceeded" in p.reason}
    assert skipped == {"/spin", "/bloat"}
