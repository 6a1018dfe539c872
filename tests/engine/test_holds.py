"""engine.holds: the pure decision whether a sync's removal is applied or held."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.engine.holds import (
    APPLY,
    CONFIRMED,
    HOLD,
    PERSISTED,
    HoldSettings,
    HoldState,
    basis_of,
    decide,
    hold_reason,
    measure,
)


def routed(**backends: int) -> dict[str, frozenset[str]]:
    """backend -> that many servers 10.0.0.<i>:<port>, distinct per backend."""
    return {name: frozenset(f"10.0.{len(name)}.{i}:31{n:03d}" for i in range(n))
            for name, n in backends.items()}


TEN = routed(**{f"b{i}": 2 for i in range(10)})  # 10 backends, 20 servers
DEFAULT = HoldSettings()


@pytest.mark.parametrize(("case", "previous", "new", "apps", "expected"), [
    ("nothing routed yet", {}, TEN, 10, APPLY),
    ("same", TEN, TEN, 10, APPLY),
    ("zero apps", TEN, {}, 0, HOLD),
    ("zero apps, one backend", routed(a=1), {}, 0, HOLD),
    ("apps answered, all routes gone (wrong --group)", TEN, {}, 4, HOLD),
    ("backends stay, every server gone", TEN, {b: frozenset() for b in TEN}, 10, HOLD),
    ("half the backends go: not more than half", TEN, dict(list(TEN.items())[:5]), 5, APPLY),
    ("six of ten backends go", TEN, dict(list(TEN.items())[:4]), 4, HOLD),
    ("one of two servers goes", routed(a=2), routed(a=1), 1, APPLY),
    ("three of four servers go", routed(a=4), routed(a=1), 1, HOLD),
    ("rolling restart: all replaced", routed(a=3),
     {"a": frozenset({"10.9.9.1:1", "10.9.9.2:1", "10.9.9.3:1"})}, 1, APPLY),
    ("one app replaced by another", routed(a=1), routed(bb=1), 1, APPLY),
    ("every backend renamed (ports changed)", TEN,
     {f"{name}x": servers for name, servers in TEN.items()}, 10, APPLY),
    ("most apps gone while one scales up", TEN, {"b0": frozenset(
        f"10.1.0.{i}:1" for i in range(20))}, 1, HOLD),
    ("additions only", routed(a=1), routed(a=1, bb=5), 2, APPLY),
    ("an emptied backend among many", TEN, {**TEN, "b0": frozenset()}, 10, APPLY),
])
def test_first_sync_decisions(case: str, previous: dict, new: dict, apps: int,
                              expected: str) -> None:
    decision = decide(previous, new, apps, DEFAULT, None, now=1000.0)
    assert decision.action == expected, case
    assert decision.held == (expected == HOLD)
    if expected == HOLD:
        assert decision.reason and decision.state == HoldState(1000.0, 1, basis_of(previous))
    else:
        assert decision.state is None


def test_reason_names_zero_apps_and_fractions() -> None:
    assert hold_reason(measure(TEN, {}, 0), 0.5) == "Marathon answered no apps"
    assert "every routed" in (hold_reason(measure(TEN, {}, 3), 0.5) or "")
    reason = hold_reason(measure(TEN, dict(list(TEN.items())[:2]), 2), 0.5)
    assert reason == "8 of 10 backends would go (more than 50%)"
    reason = hold_reason(measure(routed(a=4), routed(a=1), 1), 0.5)
    assert reason == "3 of 4 servers would go (more than 50%)"


def test_measure_counts_and_samples() -> None:
    removal = measure(TEN, dict(list(TEN.items())[:2]), 2)
    assert (removal.servers_before, removal.servers_lost) == (20, 16)
    assert (removal.backends_before, removal.backends_lost) == (10, 8)
    assert removal.lost_backends == ("b2", "b3", "b4")  # sorted, three at most
    assert len(removal.lost_servers) == 3 and removal.lost_servers[0].startswith("b2/")


@pytest.mark.parametrize(("fetches", "seconds", "times", "expected"), [
    # default: three consecutive syncs over at least 30 s
    (3, 30.0, [0, 10, 20], [HOLD, HOLD, HOLD]),  # three syncs, only 20 s
    (3, 30.0, [0, 15, 30], [HOLD, HOLD, PERSISTED]),
    (3, 30.0, [0, 40], [HOLD, HOLD]),  # long enough, but only two syncs
    (3, 30.0, [0, 40, 41], [HOLD, HOLD, PERSISTED]),
    (1, 30.0, [0, 30], [HOLD, PERSISTED]),  # time only
    (3, 0.0, [0, 0, 0], [HOLD, HOLD, PERSISTED]),  # count only
])
def test_a_held_removal_is_applied_once_it_persists(
        fetches: int, seconds: float, times: list[float], expected: list[str]) -> None:
    policy = HoldSettings(0.5, fetches, seconds)
    state = None
    actions = []
    for now in times:
        decision = decide(TEN, {}, 0, policy, state, 1000.0 + now)
        actions.append(decision.action)
        state = decision.state
    assert actions == expected
    assert (state is None) == (expected[-1] == PERSISTED)


def test_a_normal_sync_in_between_ends_the_hold() -> None:
    first = decide(TEN, {}, 0, DEFAULT, None, 0.0)
    normal = decide(TEN, TEN, 10, DEFAULT, first.state, 15.0)
    assert normal.action == APPLY and normal.state is None
    again = decide(TEN, {}, 0, DEFAULT, normal.state, 30.0)
    assert again.held and again.state == HoldState(30.0, 1, basis_of(TEN))


def test_a_changed_serving_config_starts_the_count_again() -> None:
    state = HoldState(0.0, 2, basis_of(routed(other=3)))
    decision = decide(TEN, {}, 0, DEFAULT, state, 40.0)
    assert decision.held and decision.state == HoldState(40.0, 1, basis_of(TEN))


def test_a_hold_from_the_future_starts_again_now() -> None:
    state = HoldState(5000.0, 2, basis_of(TEN))
    decision = decide(TEN, {}, 0, DEFAULT, state, 100.0)
    assert decision.held and decision.state == HoldState(100.0, 1, basis_of(TEN))


def test_syncs_from_events_hold_but_never_count_towards_persistence() -> None:
    stale = decide(TEN, {}, 0, DEFAULT, None, 0.0, fresh=False)
    assert stale.held and stale.state == HoldState(0.0, 0, basis_of(TEN))
    state = stale.state
    for now in (10.0, 20.0, 40.0, 100.0):  # long past the window: still not applied
        decision = decide(TEN, {}, 0, DEFAULT, state, now, fresh=False)
        assert decision.held and decision.state == state
    actions = []
    for now in (101.0, 102.0, 103.0):  # three full fetches: applied at the third
        decision = decide(TEN, {}, 0, DEFAULT, state, now)
        actions.append(decision.action)
        state = decision.state
    assert actions == [HOLD, HOLD, PERSISTED]
    # an event-built sync that removes little still ends the hold
    assert decide(TEN, TEN, 10, DEFAULT, stale.state, 5.0, fresh=False).action == APPLY


def test_confirmation_applies_what_would_be_held_and_only_that() -> None:
    assert decide(TEN, {}, 0, DEFAULT, None, 0.0, confirmed=True).action == CONFIRMED
    assert decide(TEN, TEN, 10, DEFAULT, None, 0.0, confirmed=True).action == APPLY


def test_zero_fetches_turns_holds_off() -> None:
    off = HoldSettings(0.5, 0, 30.0)
    assert not off.enabled
    assert decide(TEN, {}, 0, off, None, 0.0).action == APPLY


def test_threshold_zero_holds_any_loss_and_one_holds_only_emptying() -> None:
    one_lost = {**TEN, "b0": frozenset(list(TEN["b0"])[:1])}
    assert decide(TEN, one_lost, 10, HoldSettings(0.0), None, 0.0).held
    nine_gone = dict(list(TEN.items())[:1])
    assert not decide(TEN, nine_gone, 1, HoldSettings(1.0), None, 0.0).held
    assert decide(TEN, {}, 0, HoldSettings(1.0), None, 0.0).held


def test_basis_ignores_order() -> None:
    forward = {"a": frozenset({"1:1", "2:2"}), "b": frozenset({"3:3"})}
    backward = {"b": frozenset({"3:3"}), "a": frozenset({"2:2", "1:1"})}
    assert basis_of(forward) == basis_of(backward)
    assert basis_of(forward) != basis_of({"a": frozenset({"1:1"}), "b": frozenset({"3:3"})})


# --------------------------------------------------------------------------- properties

addresses = st.frozensets(st.sampled_from([f"10.0.0.{i}:{p}" for i in range(4)
                                           for p in (80, 81)]), max_size=8)
routed_sets = st.dictionaries(st.sampled_from([f"b{i}" for i in range(6)]), addresses,
                              max_size=6)
policies = st.builds(HoldSettings, st.floats(0, 1), st.integers(0, 5),
                     st.floats(0, 100, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(routed_sets, routed_sets, st.integers(0, 50), policies)
def test_property_losing_everything_is_always_held_when_enabled(
        previous: dict, new: dict, apps: int, policy: HoldSettings) -> None:
    removal = measure(previous, new, apps)
    decision = decide(previous, new, apps, policy, None, 0.0)
    if removal.empties and policy.enabled and (policy.fetches > 1 or policy.seconds > 0):
        assert decision.held
    if not policy.enabled or not previous:
        assert not decision.held
    if decision.held:  # never without a reason, a count and a state to keep
        assert decision.reason and decision.removal is not None and decision.state is not None
    assert 0 <= removal.servers_lost <= removal.servers_before
    assert 0 <= removal.backends_lost <= removal.backends_before


@settings(max_examples=300, deadline=None)
@given(routed_sets, routed_sets, st.integers(0, 50), policies,
       st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.booleans()),
                min_size=1, max_size=8))
def test_property_a_repeated_removal_is_applied_exactly_when_it_persisted(
        previous: dict, new: dict, apps: int, policy: HoldSettings,
        syncs: list[tuple[float, bool]]) -> None:
    now, state, seen = 0.0, None, 0
    start = syncs[0][0]
    for gap, fresh in syncs:
        now += gap
        decision = decide(previous, new, apps, policy, state, now, fresh=fresh)
        if decision.action == APPLY:
            assert state is None and decision.state is None  # never held at all
            return
        if not fresh:  # seen, never counted, never applied
            assert decision.held and decision.state is not None
            assert decision.state.fetches == seen and decision.state.since == start
            state = decision.state
            continue
        seen += 1
        persisted = seen >= policy.fetches and now - start >= policy.seconds
        assert decision.action == (PERSISTED if persisted else HOLD)
        if persisted:
            return
        state = decision.state
        assert state is not None and state.fetches == seen and state.since == start
