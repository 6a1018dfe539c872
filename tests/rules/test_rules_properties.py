"""Properties of rules as a model input: any set of valid rules over some apps renders a
config HAProxy accepts, deterministic, whose rule lines name only backends it defines."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from servicerouter.rules.model import RuleError, validate_rule
from servicerouter.rules.overlay import overlay_rules
from servicerouter.tls import bundles as certs
from tests.test_properties import HAPROXY, check_config_lines

EXAMPLES = 100
HAPROXY_EVERY = 10
APPS = [{"id": f"/{name}", "ports": [10000 + i, 10100 + i],
         "labels": {"HAPROXY_0_VHOST": "shared.test"} if i % 2 else {},
         "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [31000 + i, 31100 + i]}]}
        for i, name in enumerate(("a", "b", "c", "d"))]
FRAGMENTS = load_fragments()

hosts = st.lists(st.sampled_from(["shared.test", "a.test", "*.w.test", "b.test:8080",
                                  "B.test", "c.test."]), max_size=3)
paths = st.lists(st.sampled_from(["/", "/api", "/api/v1", "/Static", "/x,y"]), max_size=2)
headers = st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(["X-Canary", "x-canary", "User-Agent"]),
    "value": st.sampled_from(["1", "yes", "curl/8", "a(b)", "*"]),
    "match": st.sampled_from(["exact", "prefix"])}), max_size=2)
rule = st.fixed_dictionaries(
    {"app_id": st.sampled_from(["/a", "/b", "/c", "/d", "/ghost"]),
     "port_index": st.sampled_from([0, 0, 1, 5])},
    optional={"hosts": hosts, "paths": paths, "headers": headers,
              "path_ignore_case": st.booleans(),
              "allow_cidrs": st.lists(st.sampled_from(["10.0.0.0/8", "127.0.0.1", "::1"]),
                                      max_size=2),
              "priority": st.integers(-3, 3), "weight": st.integers(1, 256)})
counts = {"examples": 0, "haproxy -c": 0}


def config_of(rules: list[dict[str, Any]], cert: str) -> str:
    valid = {}
    for data in rules:
        try:
            one = validate_rule(data)
        except RuleError:
            continue
        valid[one.id] = one
    model = build_model(overlay_rules(APPS, valid), ["*"], lambda host: host)
    return render_config(model.services, FRAGMENTS, RenderOptions(default_cert=cert))


@pytest.fixture(scope="module")
def cert_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rules-props") / "default.pem"
    path.write_text(certs.generate_self_signed("props.test"))
    return str(path)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(rule, max_size=6))
def test_any_rules_render_a_config_haproxy_takes(rules: list[dict[str, Any]],
                                                 cert_file: str) -> None:
    counts["examples"] += 1
    config = config_of(rules, cert_file)
    # (the allow-list of a tcp port is a tcp-request line, which that checker does not list)
    check_config_lines("\n".join(line for line in config.split("\n")
                                 if not line.startswith("  tcp-request content reject if ")))
    assert config_of(list(reversed(rules)), cert_file) == config_of(rules, cert_file) or \
        len({(r["app_id"], r["port_index"]) for r in rules}) < len(rules)  # last write wins
    defined = set(re.findall(r"^backend (\S+)$", config, re.M))
    used = set(re.findall(r"use_backend ([A-Za-z0-9_]+) if", config))
    assert used <= defined, used - defined
    if HAPROXY and counts["examples"] % HAPROXY_EVERY == 1:
        counts["haproxy -c"] += 1
        path = Path(cert_file).with_name("candidate.cfg")
        path.write_text(config)
        proc = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
