"""Hostile input never breaks routing: every case of tests/hostile_corpus.py through a real sync.

For each case the router fetches the state, builds the model, renders and writes the
config exactly as in production (``Router.sync``). Then: the sync did not crash, exactly
the expected services are routed (the bystander always), every skip has a log line naming
the app, port and reason, no hostile text reached the config, and ``haproxy -c`` accepts
it. Identical configs are checked once, and the checks run in parallel, to keep the 600+
cases within seconds.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import re
import shutil
import subprocess
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from servicerouter.engine.runner import Router, RouterSettings, SyncResult
from servicerouter.model.preflight import PortChecks
from servicerouter.model.services import clean_name
from servicerouter.render.fragments import load_fragments
from servicerouter.tls import bundles as certs
from tests.hostile_blocks import (
    BYSTANDER_ID,
    CERT_FILES,
    CERTS,
    Case,
    DocumentCase,
    getaddrinfo,
    resolve,
)
from tests.hostile_corpus import DOCUMENT_CASES, build_corpus

CORPUS = build_corpus()
FRAGMENTS = load_fragments()
HAPROXY = shutil.which("haproxy")


class _BodySource:
    """A Marathon that answers one fixed body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def fetch_apps_body(self) -> bytes:
        return self.body

    @property
    def current(self) -> str:
        return "corpus"


class _Lines(logging.Handler):
    """Collects the messages the router logs during one sync."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@dataclass
class Outcome:
    """What one sync of one case did."""

    crash: str | None = None
    result: SyncResult | None = None
    lines: list[str] = field(default_factory=list)
    config: str = ""
    digest: str = ""


@dataclass
class CorpusRun:
    outcomes: dict[str, Outcome]
    verdicts: dict[str, tuple[bool, str]]  # config digest -> haproxy -c (ok, message)


def _sync(body: bytes, config_path: Path, state_dir: Path,
          logger: logging.Logger) -> tuple[SyncResult | None, str | None, list[str]]:
    # Validation on, as in production (it enables the host checks), but haproxy -c runs
    # later, once per distinct config, in parallel (see corpus_run).
    settings = RouterSettings(config_path=str(config_path), groups=("*",), validate=True,
                              haproxy_bin="/nonexistent/haproxy", reload=None,
                              state_dir=str(state_dir), certs_dir=None)
    router = Router(_BodySource(body), FRAGMENTS, settings, resolver=resolve)
    router.port_checks = PortChecks(getaddrinfo=getaddrinfo)
    handler = _Lines()
    logger.addHandler(handler)
    try:
        result, crash = router.sync(), None
    except Exception:  # the point: record, never propagate
        result, crash = None, traceback.format_exc()
    finally:
        logger.removeHandler(handler)
    return result, crash, handler.lines()


@pytest.fixture(scope="module")
def logger() -> Iterator[logging.Logger]:
    """The router's logger at INFO, whatever other tests configured."""
    log = logging.getLogger("servicerouter")
    level = log.level
    log.setLevel(logging.INFO)
    yield log
    log.setLevel(level)


def write_cert_files(directory: Path) -> Path:
    """The files the corpus's ``@CERTS@`` paths name (see hostile_corpus.CERT_FILES)."""
    (directory / "dir").mkdir(parents=True)
    good = certs.generate_self_signed("good.example.com")
    other = certs.generate_self_signed("other.example.com")
    old = datetime.now(UTC) - timedelta(days=30)
    split = good.index("-----BEGIN PRIVATE KEY")
    files = {
        "good.pem": good,
        "expired.pem": certs.generate_self_signed("old.example.com", days=1, now=old),
        "garbage.pem": "this is not a certificate\n",
        "mismatch.pem": good[:split] + other[other.index("-----BEGIN PRIVATE KEY"):],
        "split.pem": good[:split],
        "split.pem.key": good[split:],
        "dir/good.pem": good,
    }
    assert set(files) == set(CERT_FILES)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _haproxy_check(path: Path) -> tuple[bool, str]:
    proc = subprocess.run([HAPROXY or "haproxy", "-c", "-f", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, logger: logging.Logger) -> CorpusRun:
    if HAPROXY is None:
        pytest.skip("haproxy not installed")
    root = tmp_path_factory.mktemp("corpus")
    state_dir = root / "state"
    cert_dir = write_cert_files(root / "certs")
    outcomes: dict[str, Outcome] = {}
    unique: dict[str, Path] = {}
    for number, case in enumerate(CORPUS):
        config_path = root / f"case-{number}.cfg"
        body = case.body()
        own_state = CERTS.encode() in body  # its bundles join the crt-list: keep them apart
        body = body.replace(CERTS.encode(), str(cert_dir).encode())
        result, crash, lines = _sync(body, config_path,
                                     root / f"state-{number}" if own_state else state_dir,
                                     logger)
        outcome = Outcome(crash=crash, result=result, lines=lines)
        if config_path.exists():
            outcome.config = config_path.read_text(encoding="utf-8")
            outcome.digest = hashlib.sha256(outcome.config.encode()).hexdigest()
            unique.setdefault(outcome.digest, config_path)
        outcomes[case.name] = outcome
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        verdicts = dict(zip(unique, pool.map(_haproxy_check, unique.values()), strict=True))
    return CorpusRun(outcomes, verdicts)


def _matches(line: str, app: str, port_index: int | None, reason: str) -> bool:
    if app not in line:
        return False
    if port_index is not None and f"port index {port_index}" not in line:
        return False
    return re.search(reason, line) is not None


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_case(case: Case, corpus_run: CorpusRun) -> None:
    outcome = corpus_run.outcomes[case.name]
    assert outcome.crash is None, f"sync crashed:\n{outcome.crash}"
    result = outcome.result
    assert result is not None and result.model is not None
    assert result.ok, f"sync failed: {result.error}"

    routed = {(s.app_id, s.bind_port) for s in result.model.services}
    assert routed == set(case.expected_routed()), (
        f"routed {sorted(routed)}, expected {sorted(case.expected_routed())}\n"
        + "\n".join(outcome.lines))

    for skip in case.skips:
        assert any(_matches(line, skip.app, skip.port_index, skip.reason)
                   for line in outcome.lines), (
            f"no log line names {skip.app!r} port {skip.port_index} /{skip.reason}/; got:\n"
            + "\n".join(line[:300] for line in outcome.lines))
    for problem in result.model.problems:
        assert problem.app_id != BYSTANDER_ID, f"the bystander was blamed: {problem}"

    for marker in case.markers:
        assert marker not in outcome.config, f"{marker!r} reached the config"
    # Every log line is one line: hostile text cannot forge log entries.
    for line in outcome.lines:
        assert "\n" not in line.split(":\n", 1)[0] and "\r" not in line, line[:300]

    for app_id, host in case.no_vhost:
        for service in result.model.services:
            if service.app_id == app_id:  # shadowed: written by legacy fragments only
                routed_hosts = set(service.vhosts) - service.shadowed_vhosts
                assert host.lower() not in {v.lower() for v in routed_hosts}, service
        assert_not_routed(outcome.config, app_id, host)

    assert_acls_distinct(outcome.config)

    ok, message = corpus_run.verdicts[outcome.digest]
    assert ok, f"haproxy -c rejected the config:\n{message}"


def assert_not_routed(config: str, app_id: str, host: str) -> None:
    """No rule of the config sends ``host`` to a backend of ``app_id``."""
    prefix = app_id[1:].replace("/", "_") + "_"
    for acl in {clean_name(host), clean_name(host.lower())}:
        for match in re.finditer(rf"use_backend (\S+) if host_{re.escape(acl)}(?:\s|$)", config):
            assert not match.group(1).startswith(prefix), f"{host} routed to {match.group(0)}"


def assert_acls_distinct(config: str) -> None:
    """No ACL name matches two different values: HAProxy would merge them into one."""
    values: dict[str, set[str]] = {}
    for match in re.finditer(r"^\s*acl (\S+) .* -i (\S+)$", config, re.MULTILINE):
        values.setdefault(match.group(1), set()).add(match.group(2).lower())
    shared = {name: seen for name, seen in values.items() if len(seen) > 1}
    assert not shared, f"ACLs merging different values: {shared}"


def test_corpus_size_and_rejections(corpus_run: CorpusRun) -> None:
    """At least 150 cases; prints how many problems of each kind the corpus produced."""
    assert len(CORPUS) + len(DOCUMENT_CASES) >= 150
    kinds: Counter[str] = Counter()
    for outcome in corpus_run.outcomes.values():
        if outcome.result is None or outcome.result.model is None:
            continue
        for problem in outcome.result.model.problems:
            kinds[rejection_kind(problem.reason, problem.key)] += 1
    print(f"\ncorpus: {len(CORPUS)} app cases + {len(DOCUMENT_CASES)} document cases, "
          f"{len(corpus_run.verdicts)} distinct configs checked with haproxy -c")
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:28} {count}")
    assert kinds, "the corpus rejected nothing"


_KINDS = (
    ("conflict:vhost", r"virtual host|vhost"),
    ("conflict:bind-port", r"bind port"),
    ("app:not-object", r"app is not a JSON object"),
    ("app:id", r"app id"),
    ("app:field-type", r"is not a (JSON object|list)|'\w+' is not"),
    ("health-check", r"health ?check"),
    ("task:host", r"has no host|is not a host name|could not resolve"),
    ("task:ports", r"task .*port"),
    ("task:not-object", r"task is not a JSON object"),
    ("port:service", r"service port"),
    ("file:certificate", r"certificate|PEM"),
    ("bind-address", r"bind address"),
)


def rejection_kind(reason: str, key: str | None) -> str:
    """A short category of a problem, for the corpus report."""
    if re.search(r"vhost conflict", reason):
        return "conflict:vhost"
    if re.search(r"bind port .*(already routed|shared frontend)", reason):
        return "conflict:bind-port"
    if key and key.startswith("HAPROXY_"):
        return "label:" + re.sub(r"^HAPROXY_(\d+_)?", "", key).lower()
    for kind, pattern in _KINDS:
        if re.search(pattern, reason):
            return kind
    return "other"


# --------------------------------------------------------------------------- whole bodies


@pytest.fixture(scope="module")
def good_config(tmp_path_factory: pytest.TempPathFactory, logger: logging.Logger) -> bytes:
    """The config of the bystander alone, written once."""
    root = tmp_path_factory.mktemp("documents")
    path = root / "good.cfg"
    result, crash, _ = _sync(Case("good", "good", ()).body(), path, root / "state", logger)
    assert crash is None and result is not None and result.ok
    return path.read_bytes()


@pytest.mark.parametrize("case", DOCUMENT_CASES, ids=[c.name for c in DOCUMENT_CASES])
def test_unusable_body_keeps_config(case: DocumentCase, good_config: bytes, tmp_path: Path,
                                    logger: logging.Logger) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_bytes(good_config)
    result, crash, lines = _sync(case.body, path, tmp_path / "state", logger)
    assert crash is None, crash
    assert result is not None and not result.ok
    assert re.search(case.reason, result.error or ""), result.error
    assert any(re.search(case.reason, line) for line in lines), lines
    assert path.read_bytes() == good_config
