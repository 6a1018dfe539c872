"""Shared pytest fixtures.

Keep each section small and self-contained; add new sections below the existing ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.harness import Backend, HAProxy, find_haproxy, reap_all

# --------------------------------------------------------------------------- end-to-end harness
# Real HAProxy and real backend processes (tests/harness.py). Everything a fixture
# starts is stopped at teardown even when the test fails; a session finalizer then
# kills anything the harness started that is still alive.


@pytest.fixture(scope="session", autouse=True)
def _reap_harness_processes() -> Iterator[None]:
    yield
    leaked = reap_all()
    if leaked:
        print(f"\nharness: killed leaked processes {leaked}")


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """Path of the haproxy binary; skips the test when it is missing."""
    try:
        return find_haproxy("haproxy")
    except FileNotFoundError:
        pytest.skip("haproxy not installed")


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., Backend]]:
    """``make(name, mode="http", **kw)`` -> a started Backend; all stopped at teardown."""
    started: list[Backend] = []

    def make(name: str, mode: str = "http", **kw: Any) -> Backend:
        backend = Backend(name, mode=mode, **kw)
        started.append(backend)
        backend.start()
        return backend

    yield make
    with contextlib.ExitStack() as stack:  # stop all, even if one stop() raises
        for backend in started:
            stack.callback(backend.stop)


@pytest.fixture
def haproxy_factory(haproxy_bin: str) -> Iterator[Callable[[str | os.PathLike[str]], HAProxy]]:
    """``make(config_path)`` -> a started HAProxy; all stopped at teardown."""
    started: list[HAProxy] = []

    def make(config_path: str | os.PathLike[str]) -> HAProxy:
        haproxy = HAProxy(config_path, haproxy_bin=haproxy_bin)
        started.append(haproxy)
        haproxy.start()
        return haproxy

    yield make
    with contextlib.ExitStack() as stack:
        for haproxy in started:
            stack.callback(haproxy.stop)


# --------------------------------------------------------------------------- logging state
# cli.setup_logging (run in-process by CLI tests) replaces the "servicerouter" logger's
# handlers with one bound to that test's captured stderr and stops propagation; undo it
# after every test so later tests' caplog/capfd see their own log lines.


@pytest.fixture(autouse=True)
def _restore_servicerouter_logging() -> Iterator[None]:
    import logging

    logger = logging.getLogger("servicerouter")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    for handler in saved[0]:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.propagate, logger.level = saved[1], saved[2]


# --------------------------------------------------------------------------- hypothesis
# Locally every run explores new examples; CI (CI=true) runs the same derandomized ones
# every time, so a submission is judged on what was tested before it was sent. Neither
# has a per-example time limit: the suite runs on two shared cores, where one example's
# wall time says more about the neighbours than about the code (speed is benchmarks/'s).

settings.register_profile("local", deadline=None)
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")
