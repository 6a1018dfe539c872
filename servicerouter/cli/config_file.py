"""``--config FILE``: YAML settings checked by the flags' own parser; ``--print-config``.

A YAML value goes through the same argparse action as the flag it names (its
``type``, ``choices`` and range checks), so ``http_port: 8o`` fails exactly as
``--http-port 8o`` would, as one line naming the key, exit 2.  YAML 1.1 reads
``yes``, ``on`` and ``off`` as booleans; here only ``true`` and ``false`` are,
so ``sse: yes`` is an error rather than a guess.  A repeatable flag takes a
list (or one value); ``null`` (or no value) means the flag's default.  Flags on the command line win over the file, a list flag
given on the command line replaces the file's list.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

# Not settings: what these do is run a command, once.
COMMANDS = frozenset({"config", "help", "version", "longhelp", "list_certs", "print_config"})
# Printed as "<redacted>" by --print-config: they give access to something.
SECRETS = frozenset({"auth_credentials", "status_token", "dcos_auth_credentials",
                     "rules_zk_auth"})
REDACTED = "<redacted>"


@functools.cache
def _strict_bool_loader() -> Any:
    """SafeLoader whose only booleans are true and false (any case YAML allows).

    Made on first use: PyYAML is imported only by runs that read or print a
    ``--config`` file, not by every one-shot run (its import is a fifth of the
    unchanged-answer fast path).
    """
    import yaml

    class _StrictBoolLoader(yaml.SafeLoader):
        pass

    _StrictBoolLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _StrictBoolLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))
    return _StrictBoolLoader


class ConfigError(Exception):
    """A ``--config`` file that cannot be used; the message is one line."""


class _Rejected(Exception):
    pass


def _raise(message: str) -> NoReturn:
    raise _Rejected(message)


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> the action that sets it (the one with a long option)."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in found:
            found[action.dest] = action
    return found


def _long_option(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")),
                action.option_strings[0])


def _tokens(key: str, action: argparse.Action, value: Any) -> list[str]:
    """The command-line tokens that give ``value`` to ``action``; ConfigError if none can."""
    option = _long_option(action)
    if value is None and action.nargs != 0:
        return []  # "key:" or null: the flag's default, as --print-config shows unset ones
    if action.nargs == 0:  # store_true and friends
        if type(value) is not bool:
            raise ConfigError(f"{key}: {value!r} is not a boolean (use true or false)")
        return [option] if value else []
    repeatable = isinstance(action, argparse._AppendAction | argparse._ExtendAction)
    values = value if isinstance(value, list) and repeatable else [value]
    if isinstance(value, list) and not repeatable:
        raise ConfigError(f"{key}: takes one value, not a list")
    tokens = []
    for item in values:
        if item is None:
            raise ConfigError(f"{key}: has no value")
        if isinstance(item, bool):
            raise ConfigError(f"{key}: takes a value, not {str(item).lower()}")
        if not isinstance(item, str | int | float):
            raise ConfigError(f"{key}: {item!r} is not a single value")
        tokens.append(f"{option}={item}")
    return tokens


def load(parser_factory: Any, path: str) -> dict[str, Any]:
    """The file's settings as parsed values by dest; ConfigError (one line) if unusable.

    ``parser_factory`` builds a fresh copy of the real parser: each key is parsed
    alone by it, so an error names that key and no default leaks in.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_strict_bool_loader())  # noqa: S506 - a SafeLoader
    except OSError as err:
        raise ConfigError(f"cannot read it: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of flag names to values")
    checker = parser_factory()
    checker.error = _raise  # an ArgumentError becomes _Rejected, not exit(2) with usage
    actions = _actions(checker)
    by_name = {option[2:].replace("-", "_"): action for action in actions.values()
               for option in action.option_strings if option.startswith("--")}
    values: dict[str, Any] = {}
    from servicerouter.cli.marathon_lb_flags import refusal_for_key

    for key, value in data.items():
        refusal = refusal_for_key(str(key))
        if refusal:  # a marathon-lb flag with no meaning here: its reason, not "unknown"
            raise ConfigError(refusal)
        name = str(key).lstrip("-").replace("-", "_")
        action = by_name.get(name) or actions.get(name)
        if action is not None and action.dest in COMMANDS:
            raise ConfigError(f"{key}: is a command-line action, not a setting")
        if action is None:
            raise ConfigError(f"unknown key {key!r}")
        dest = action.dest
        tokens = _tokens(str(key), action, value)
        if not tokens:  # false, null or []: what not giving the flag means
            values[dest] = [] if value == [] else action.default
            continue
        try:
            parsed = checker.parse_args(tokens)
        except _Rejected as err:
            reason = re.sub(r"^argument [^:]+: ", "", str(err))
            raise ConfigError(f"{key}: {reason}") from None
        values[dest] = getattr(parsed, dest)
    return values


def given_on_command_line(parser_factory: Any, argv: Sequence[str]) -> dict[str, Any]:
    """What the command line itself sets, by dest (no defaults, no config file)."""
    bare = parser_factory()
    for action in bare._actions:
        action.default = argparse.SUPPRESS
    known, _ = bare.parse_known_args(list(argv))
    return vars(known)


def fail(prog: str, path: str, error: ConfigError) -> NoReturn:
    """One line on stderr (no usage block: the flags were fine), exit 2."""
    sys.stderr.write(f"{prog}: error: --config {path}: {error}\n")
    raise SystemExit(2)


def effective(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every setting's value after flags, config file and defaults, secrets redacted.

    Keys are the long flags' names without dashes, as ``--config`` reads them back.
    """
    from servicerouter.source.marathon_urls import redact

    out: dict[str, Any] = {}
    for dest, action in _actions(parser).items():
        if dest in COMMANDS or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if dest in SECRETS and value:
            value = REDACTED
        elif dest == "marathon" and value:  # user:password@ in a URL
            value = [redact(url) for url in value]
        elif dest == "listening" and value:  # ?token= of the callback URL
            value = redact(value)
        out[_long_option(action)[2:]] = value
    return out


def print_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    import yaml

    return yaml.safe_dump(effective(parser, args), sort_keys=False, default_flow_style=False)


__all__ = ["ConfigError", "effective", "fail", "given_on_command_line", "load", "print_config"]
