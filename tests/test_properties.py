"""Property tests: whatever Marathon state arrives, model and render hold their promises.

Hypothesis generates Marathon states (apps with odd ids, ports of every JSON type, every
registry label with valid, hostile and wrongly typed values, tasks with good and bad
hosts, health checks, versions) and checks, for each:

* ``build_model`` and ``render_config`` never raise;
* every setting the model accepted is one safe token (no blank, quote, brace, comment
  sign or control character can reach the config);
* no label value adds a line or a directive: every line of the config is indented as
  the fragments indent, starts with a keyword the default fragments use, and holds no
  control character; every hostile value is wrapped in two markers, and whatever of it
  reaches the config is one safe token holding both (a line break or blank in a value
  would split them);
* rendering is deterministic: the same state gives the same bytes, also with the apps
  in another order;
* the config passes ``haproxy -c`` (checked for every 10th example, to stay fast).

Runs are derandomized (the same examples in CI every time) and counted; the counts are
printed at the end of the module (``-s`` shows them).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicerouter.model.labels import SETTINGS, PortSettings
from servicerouter.model.services import Model, build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import default_templates_dir, load_fragments
from servicerouter.tls import bundles as certs
from tests.hostile_labels import HOSTILE_VALUES

HAPROXY = shutil.which("haproxy")
FRAGMENTS = load_fragments()
MARKER, END = "Zq", "Qz"  # every hostile value is MARKER + text + END
EXAMPLES = 400
HAPROXY_EVERY = 10
COUNTS: Counter[str] = Counter()

# One token of the config: what a setting may become once accepted.
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:*,/@+=%~!&()$;'\[\]-]*$")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]")


def _template_keywords() -> frozenset[str]:
    """First words of the lines of the default fragments: the only directives we write."""
    words = set()
    for path in Path(default_templates_dir()).iterdir():
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.DOTALL)
        for line in text.splitlines():
            word = line.strip().split(" ", 1)[0]
            if word and not word.startswith("{"):
                words.add(word)
    return frozenset(words)


KEYWORDS = _template_keywords()

# --------------------------------------------------------------------------- strategies

OLD, NEW = "2015-01-01T00:00:00.000Z", "2017-01-01T00:00:00.000Z"
GOOD_CERT = "/good/cert.pem"


def _example_value(example: str) -> str:
    return example.split("=", 1)[1] if "=" in example else example


KEYS = [s.name(i) for s in SETTINGS for i in range(3) if s.per_port] + [
    s.key for s in SETTINGS if not s.per_port]
VALID = [_example_value(s.example) for s in SETTINGS] + [
    "a.test", "*.wild.test", "b.test,c.test", "http", "tcp", "true", "false", "12000", "10000",
    "80", GOOD_CERT, "127.0.0.1", "*", "/api", "10", "roundrobin", "ext", "*"]

# Commas are left out: a comma-separated list is split into tokens on purpose.
hostile_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=","), max_size=24,
).map(lambda text: MARKER + text + END)
label_value: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(VALID),
    st.sampled_from([v[:200] for v in HOSTILE_VALUES.values()]).map(
        lambda v: MARKER + v + END),
    hostile_text,
    st.integers(-3, 70000),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
port_value = st.one_of(st.integers(10000, 10004), st.sampled_from([80, 443, 0, -1, 65536]),
                       json_scalar)
host_value = st.one_of(st.sampled_from(["10.0.0.1", "10.0.0.2", "127.0.0.1", "node.test", "",
                                        "no.such.host", "bad host", MARKER + "\nserver x"]),
                       json_scalar)
app_id = st.one_of(st.sampled_from(["/a", "/b", "/a/b", "/a.b", "/x-y", "/UP", "/a_b"]),
                   st.text(max_size=8).map(lambda t: "/" + t), json_scalar)
task = st.fixed_dictionaries(
    {"host": host_value, "ports": st.one_of(st.lists(port_value, max_size=3), json_scalar)},
    optional={"id": json_scalar},
)
health_check = st.fixed_dictionaries(
    {"portIndex": st.one_of(st.integers(0, 2), json_scalar)},
    optional={"protocol": st.one_of(st.sampled_from(["HTTP", "TCP", "MESOS_HTTP"]), json_scalar),
              "path": st.one_of(st.sampled_from(["/", "/health"]), json_scalar,
                                hostile_text.map(lambda t: "/" + t)),
              "timeoutSeconds": json_scalar, "intervalSeconds": json_scalar,
              "maxConsecutiveFailures": json_scalar, "gracePeriodSeconds": json_scalar},
)
labels = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), label_value,
                         max_size=6)
app = st.fixed_dictionaries(
    {"id": app_id, "ports": st.one_of(st.lists(port_value, max_size=3), json_scalar)},
    optional={
        "labels": st.one_of(labels, json_scalar),
        "env": st.one_of(labels, json_scalar),
        "tasks": st.one_of(st.lists(task, max_size=4), json_scalar),
        "healthChecks": st.one_of(st.lists(health_check, max_size=2), json_scalar),
        "versionInfo": st.one_of(
            st.fixed_dictionaries({"lastConfigChangeAt": st.sampled_from([OLD, NEW, "x"])}),
            json_scalar),
        "version": st.one_of(st.sampled_from([OLD, NEW]), json_scalar),
        "portDefinitions": st.one_of(
            st.lists(st.fixed_dictionaries({"port": port_value}), max_size=2), json_scalar),
        "container": st.one_of(
            st.fixed_dictionaries({"docker": st.fixed_dictionaries({"portMappings": st.lists(
                st.fixed_dictionaries({"servicePort": port_value}), max_size=2)})}),
            json_scalar),
    },
)
good_task = st.fixed_dictionaries({
    "id": st.text(alphabet="abc.", max_size=4),
    "host": st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "node.test"]),
    "ports": st.just([31000, 31001, 31002]),
})
good_labels = st.dictionaries(st.sampled_from(KEYS), st.one_of(
    st.sampled_from(VALID), st.sampled_from(VALID), label_value), max_size=4)
good_app = st.fixed_dictionaries(
    {"id": st.sampled_from(["/a", "/b", "/c/d", "/c.d", "/e-f", "/g", "/h/i/j"]),
     "ports": st.lists(st.integers(10000, 10006), min_size=1, max_size=3),
     "tasks": st.lists(good_task, min_size=1, max_size=3),
     "labels": good_labels,
     "versionInfo": st.fixed_dictionaries(
         {"lastConfigChangeAt": st.sampled_from([OLD, NEW, "2016-01-01T00:00:00.000Z"])})},
    optional={"env": good_labels,
              "healthChecks": st.lists(health_check, max_size=2)},
)
# Mostly well-formed apps (so there is something to route), some anything at all.
states = st.lists(st.one_of(good_app, good_app, good_app, app, json_scalar), min_size=1, max_size=6)


def resolve(host: str) -> str | None:
    """Pure DNS: IPv4 literals are themselves, ``*.test`` is local, the rest unknown."""
    if re.fullmatch(r"(?:\d{1,3}\.){3}\d{1,3}", host):
        return host
    return "127.0.0.1" if host.endswith(".test") else None


def check_port(settings: PortSettings) -> str | None:
    """Pure stand-in for servicerouter.model.preflight: the one certificate file, local binds."""
    if settings.ssl_cert and settings.ssl_cert != GOOD_CERT:
        return f"certificate {settings.ssl_cert}: no such file"
    if settings.bind_addr not in (None, "*", "0.0.0.0", "127.0.0.1"):
        return f"bind address {settings.bind_addr} is not an address of this host"
    return None


def model_and_config(apps: list[Any], cert: str) -> tuple[Model, str]:
    model = build_model(apps, ("*",), resolve, reserved_ports=(80, 443, 81, 9090),
                        check_port=check_port)
    options = RenderOptions(default_cert=cert, cert_paths=((GOOD_CERT, cert),))
    return model, render_config(model.services, FRAGMENTS, options)


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def cert_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("props") / "default.pem"
    path.write_text(certs.generate_self_signed("props.test"))
    yield str(path)
    print(f"\nproperties: {dict(sorted(COUNTS.items()))}")


def _accepted_strings(settings: PortSettings) -> Iterator[tuple[str, str]]:
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        values = value if isinstance(value, tuple | frozenset) else (value,)
        for one in values:
            if isinstance(one, str):
                yield item.name, one
            elif dataclasses.is_dataclass(one):
                for inner in dataclasses.fields(one):
                    inner_value = getattr(one, inner.name)
                    if isinstance(inner_value, str):
                        yield f"{item.name}.{inner.name}", inner_value


def check_config_lines(config: str) -> None:
    for number, line in enumerate(config.split("\n"), 1):
        assert not CONTROL.search(line), f"line {number} holds a control character: {line!r}"
        if not line.strip():
            continue
        assert line.startswith("  ") and not line.startswith("   ") or not line[0].isspace(), \
            f"line {number} is indented oddly: {line!r}"
        word = line.split()[0]
        assert word in KEYWORDS, f"line {number} starts with unknown directive {word!r}: {line!r}"
        for token in line.split():
            if MARKER in token or END in token:
                # A value reaches the config whole, as one safe token, or not at all.
                assert SAFE_TOKEN.match(token), f"line {number}: label text {token!r} in {line!r}"
                assert MARKER in token and END in token[token.index(MARKER):], \
                    f"line {number}: a value was split: {token!r} in {line!r}"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(apps=states, order=st.randoms(use_true_random=False))
def test_any_state_renders_a_valid_config(apps: list[Any], order: Any, cert_file: str) -> None:
    COUNTS["examples"] += 1
    model, config = model_and_config(apps, cert_file)
    COUNTS["services"] += len(model.services)
    COUNTS["problems"] += len(model.problems)

    for service in model.services:
        for name, value in _accepted_strings(service.settings):
            if name == "groups":
                continue  # group names never reach the config
            assert SAFE_TOKEN.match(value), f"{service.app_id} accepted {name}={value!r}"
        check = service.health_check
        texts = [service.app_id, service.backend, service.bind_addr, service.mode]
        texts += [check.protocol, check.path or ""] if check else []
        texts += [t for server in service.servers for t in (server.host, server.ipv4, server.name)]
        for text in texts:
            assert SAFE_TOKEN.match(text), f"{service.app_id}: unsafe {text!r}"

    check_config_lines(config)

    # Deterministic: same state, same bytes; the order of the apps does not matter.
    assert model_and_config(apps, cert_file)[1] == config
    shuffled = list(apps)
    order.shuffle(shuffled)
    ids = [a.get("id") for a in apps if isinstance(a, dict)]
    if len(ids) == len(set(map(repr, ids))):  # Marathon never lists one id twice
        assert model_and_config(shuffled, cert_file)[1] == config

    if HAPROXY and COUNTS["examples"] % HAPROXY_EVERY == 1:
        COUNTS["haproxy -c"] += 1
        path = Path(cert_file).with_name("candidate.cfg")
        path.write_text(config)
        proc = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(key=st.sampled_from(KEYS), value=st.one_of(hostile_text, st.sampled_from(VALID)))
def test_no_label_value_adds_a_line(key: str, value: str, cert_file: str) -> None:
    """One label on an otherwise fixed app: refused with a problem, or one safe token."""
    COUNTS["single-label examples"] += 1
    base = {"id": "/one", "ports": [10000, 10001],
            "tasks": [{"host": "10.0.0.1", "ports": [31000, 31001]}]}
    model, config = model_and_config([dict(base, labels={key: value})], cert_file)
    check_config_lines(config)
    refused = any(p.key == key for p in model.problems)
    unread = re.match(r"HAPROXY_([2-9])_", key) is not None  # the app has ports 0 and 1
    if refused:
        COUNTS["single-label refused"] += 1
        assert END not in config, "a refused value reached the config"
    elif value.startswith(MARKER) and not unread and not SAFE_TOKEN.match(value.replace(",", "")):
        # Accepted although not a token: only group names may be (never rendered).
        assert key.endswith("GROUP"), f"{key}={value!r} accepted"
        assert END not in config
