"""Argparse ``type=`` functions for flags whose values have a range or a shape.

They are the one check for a value, whether it comes from the command line or
from a ``--config`` file (:mod:`servicerouter.cli.config_file` runs every YAML
value through the flag's own action).  Values that end up in the HAProxy config
(addresses, times) are checked here too, so a typo is a usage error naming the
flag, not a config ``haproxy -c`` rejects later with a line number.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar

_N = TypeVar("_N", int, float)
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_HAPROXY_TIME = re.compile(r"[0-9]+(?:us|ms|s|m|h|d)?")


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 1-65535")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds, more than zero (a timeout or a period)."""
    value = _seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, zero or more (0: no wait)."""
    value = _seconds(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 seconds or more")
    return value


def fraction(text: str) -> float:
    """A share between 0 and 1 (0.5: half)."""
    value = _number(text, float, f"{text!r} is not a number")
    if not 0 <= value <= 1:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1")
    return value


def non_negative_int(text: str) -> int:
    """A count, zero or more."""
    value = _number(text, int, f"{text!r} is not a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def rate(text: str) -> float:
    """A finite rate, zero or more (per second; 0: no limit where the flag says so)."""
    value = _number(text, float, f"{text!r} is not a number")
    if not 0 <= value < float("inf"):  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number, 0 or more")
    return value


def _seconds(text: str) -> float:
    invalid = f"invalid number of seconds: {text!r}"
    value = _number(text, float, invalid)
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(invalid)
    return value


def _number(text: str, convert: Callable[[str], _N], invalid: str) -> _N:
    """``convert(text)``, or the usage error ``invalid`` (argparse names the flag)."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(invalid) from None


def bind_address(text: str) -> str:
    """``*``, an IPv4/IPv6 address or a host name: what HAProxy's ``bind`` takes before ``:port``."""
    if text == "*":
        return text
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"not an address: {text!r} (give '*', an IP or a host name)")


def haproxy_time(text: str) -> str:
    """A HAProxy time value: digits and an optional unit (us, ms, s, m, h, d)."""
    if not _HAPROXY_TIME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a HAProxy time: {text!r} (e.g. 60s, 500ms, 2m)")
    return text


__all__ = ["bind_address", "haproxy_time", "port", "positive_seconds", "seconds"]
