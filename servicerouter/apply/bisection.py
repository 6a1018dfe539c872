"""Which apps make HAProxy reject a config: bisection over app ids.

Shared by the live engine (any app may be at fault) and the one-shot check of
label templates (only templated apps are suspects).  The caller supplies
``check(app_ids)``: render the config with just those apps and validate it
(``haproxy -c``), returning (accepted, HAProxy's message).  Nothing here
renders or runs anything itself.

Each bad app costs about log2(N) checks: the suspects are halved until one
app is left that breaks the config on top of the apps already known good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Check = Callable[[Sequence[str]], "tuple[bool, str]"]


def find_culprits(trusted: Sequence[str], suspects: Sequence[str],
                  check: Check) -> tuple[list[str], dict[str, str]]:
    """Split ``suspects`` into apps HAProxy accepts on top of ``trusted`` and culprits.

    ``trusted`` must be accepted on their own.  Returns (the apps that go together:
    ``trusted`` plus every cleared suspect, culprit -> HAProxy's message).  A
    suspect that could be neither cleared nor blamed (nothing left to bisect) is
    in neither.
    """
    good = list(trusted)
    remaining = list(suspects)
    bad: dict[str, str] = {}
    while remaining:
        ok, message = check(good + remaining)
        if ok:
            good.extend(remaining)
            break
        culprit, cleared, why = bisect_one(good, remaining, check)
        good.extend(cleared)
        if culprit is None:  # nothing bisectable: keep what was already good
            break
        bad[culprit] = why or message
        remaining = [a for a in remaining if a != culprit and a not in cleared]
    return good, bad


def bisect_one(good: Sequence[str], suspects: Sequence[str],
               check: Check) -> tuple[str | None, list[str], str]:
    """One app that breaks ``good + suspects`` (known bad), in log2(N) checks.

    Returns (culprit, suspects proven harmless on the way, HAProxy's message).
    """
    base = list(good)
    cleared: list[str] = []
    window = list(suspects)
    message = ""
    while len(window) > 1:
        half = window[: len(window) // 2]
        ok, why = check(base + half)
        if ok:
            base.extend(half)
            cleared.extend(half)
            window = window[len(half):]
        else:
            message = why
            window = half
    if not window:
        return None, cleared, message
    if not message:
        message = check(base + window)[1]
    return window[0], cleared, message


__all__ = ["Check", "bisect_one", "find_culprits"]
