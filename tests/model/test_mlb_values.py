"""marathon-lb's backend label values: parsed narrowly, a bad one skips its port."""

from __future__ import annotations

import pytest

from servicerouter.model.label_values import SettingError
from servicerouter.model.mlb_values import (
    logformat_literal,
    parse_backend_path,
    parse_networks,
    parse_port_index,
    regex_literal,
)
from servicerouter.model.services import build_model
from tests.model.test_model import app, ident


def test_networks_canonical_blank_and_comma_separated() -> None:
    assert parse_networks("10.1.40.0/24 10.1.55.43") == ("10.1.40.0/24", "10.1.55.43")
    assert parse_networks(" 10.0.0.1/8, ,::1/128 10.0.0.0/8") == ("10.0.0.0/8", "::1")


@pytest.mark.parametrize("value", ["", " , ", "10.0.0.0/33", "example.com", "10.0.0.1\n",
                                   "10.0.0.1#x", "any"])
def test_bad_networks(value: str) -> None:
    with pytest.raises(SettingError):
        parse_networks(value)


@pytest.mark.parametrize("value", ["api", "/a b", "/a'b", '/a"b', "/a#b", "/a$b", "/a\\b",
                                   "/a{b}", "/x\n"])
def test_bad_backend_paths(value: str) -> None:
    with pytest.raises(SettingError):
        parse_backend_path(value)


def test_port_index() -> None:
    assert parse_port_index(" 1 ") == 1
    for bad in ("-1", "x", "1024"):
        with pytest.raises(SettingError):
            parse_port_index(bad)


def test_escaping_for_regex_and_log_format() -> None:
    assert regex_literal("/a.b(c)+*") == r"/a\.b\(c\)\+\*"
    assert logformat_literal("/a%20b") == "/a%%20b"


def test_a_bad_value_skips_only_that_port_with_one_line() -> None:
    apps = [app(ports=(10000, 10001), tasks=[("192.0.2.1", [31000, 31001])],
                labels={"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 evil",
                        "HAPROXY_1_HTTP_BACKEND_REDIR": "/ok"})]
    model = build_model(apps, (), ident)
    assert [s.index for s in model.services] == [1]
    (problem,) = model.problems
    assert problem.log_line().startswith(
        "skipped app '/web' port index 0 HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL=")
    assert "'evil' is not an IP address" in problem.log_line()
