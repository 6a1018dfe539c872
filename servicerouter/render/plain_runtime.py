"""What a fragment compiled into a Python function calls at render time, without Jinja2.

:func:`servicerouter.render.compiled.compile_plain_template` turns a Jinja2 template
of text, printed values and ``if`` blocks into one f-string function; that function
reads attributes, calls a few str methods and checks printed values through the
names defined here.  Jinja2 itself is needed only on the rare paths (an attribute
the sandbox must vet, a call on something that is not a str): the built-in
fragments, shipped compiled (servicerouter.render.shipped), then make their
environment on first use, so a run with the default fragments never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servicerouter.render.printing import PLAIN_TYPES, is_plain_type, printable


class FallBack(Exception):
    """Raised by a compiled template where Jinja2 would see an undefined value: the
    caller renders with Jinja2 instead, which raises (or not) exactly as before."""


# Methods a compiled template may call (on a str only; see compile_plain_template):
# pure, and what the built-in fragments use (``hostname.startswith('*.')``).
STR_METHODS = frozenset({"startswith", "endswith", "lower", "upper", "strip", "lstrip",
                         "rstrip", "replace"})
_BUILTIN_METHOD = type("".startswith)
_STR_METHOD = {name: getattr(str, name) for name in STR_METHODS}


def plain_namespace(env: Any) -> dict[str, Any]:
    """The globals of a template compiled for ``env`` (any Jinja2 sandbox): attribute
    reads through the sandbox's own ``env.getattr``, printed values through its
    ``finalize``."""
    undefined = env.undefined
    sandbox_getattr = env.getattr

    def getattr_defined(obj: Any, attribute: str) -> Any:
        value = sandbox_getattr(obj, attribute)
        if isinstance(value, undefined):
            raise FallBack(attribute)
        return value

    return _namespace(getattr_defined, lambda: env, env.finalize or (lambda v: v))


def shipped_namespace(fragment_env: Callable[[], Any]) -> dict[str, Any]:
    """The globals of the shipped built-in fragments, compiled for the fragment files'
    sandbox (servicerouter.render.sandbox.fragment_env, whose ``finalize`` is
    :func:`printable`), which ``fragment_env()`` makes only when first needed.

    An attribute of one of servicerouter's dataclasses is read directly, as
    that sandbox's ``getattr`` does (see TemplateSandbox.getattr); anything else goes
    through the sandbox itself.
    """
    made: list[Any] = []

    def env() -> Any:
        if not made:
            made.append(fragment_env())
        return made[0]

    plain_types = PLAIN_TYPES  # is_plain_type's answers, read here without a call

    def getattr_defined(obj: Any, attribute: str) -> Any:
        cls = type(obj)
        plain = plain_types.get(cls)
        if plain is None:
            plain = is_plain_type(cls)
        if plain and attribute[:1] != "_":
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass
        sandbox = env()
        value = sandbox.getattr(obj, attribute)
        if isinstance(value, sandbox.undefined):
            raise FallBack(attribute)
        return value

    return _namespace(getattr_defined, env, printable)


def _namespace(getattr_defined: Callable[[Any, str], Any], env: Callable[[], Any],
               finalize: Callable[[Any], Any]) -> dict[str, Any]:
    def call_str_method(method: Any, *args: Any) -> Any:
        # What Jinja2's sandboxed ``environment.call`` does with a plain str method;
        # anything else (a wrapped str.format, a callable of the data) is left to it.
        if (type(method) is not _BUILTIN_METHOD or type(method.__self__) is not str
                or method.__name__ not in STR_METHODS or not env().is_safe_callable(method)):
            raise FallBack("call")
        try:
            return method(*args)
        except StopIteration:  # Jinja2 makes it an undefined value
            raise FallBack("call") from None

    def call_method(obj: Any, name: str, *args: Any) -> Any:
        # ``obj.name(*args)``: on a str (the sandbox allows STR_METHODS on it, and
        # they never raise StopIteration) the method itself; else as Jinja2 would.
        if type(obj) is str:
            return _STR_METHOD[name](obj, *args)
        return call_str_method(getattr_defined(obj, name), *args)

    return {"_getattr": getattr_defined, "_call": call_method, "_finalize": finalize}
