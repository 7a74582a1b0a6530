"""The adaptive in-flight limit (AIMD) driven by deterministic sequences of attempt outcomes."""

from __future__ import annotations

import pytest

from lambdasink_runtime.inflight_limit import THROTTLE_HOLD_S, AdaptiveLimit, FixedLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limiter(
    clock: Clock, lo: int = 1, hi: int = 16, **kw: float
) -> tuple[AdaptiveLimit, list[tuple[int, int, str]]]:
    changes: list[tuple[int, int, str]] = []
    lim = AdaptiveLimit(
        min_limit=lo,
        max_limit=hi,
        clock=clock,
        on_change=lambda b, a, r: changes.append((b, a, r)),
        **kw,
    )
    return lim, changes


def saturated_round(lim: AdaptiveLimit, clock: Clock, latency: float = 0.1) -> None:
    """One call per slot, all succeeding while the limit holds the worker back."""
    for _ in range(lim.limit):
        clock.now += 0.01
        lim.on_success(latency, clock.now - latency, busy=lim.limit)


def test_slow_start_doubles_per_round_up_to_the_bound() -> None:
    clock = Clock()
    lim, _ = limiter(clock, lo=1, hi=16)
    seen = [lim.limit]
    for _ in range(5):
        saturated_round(lim, clock)
        seen.append(lim.limit)
    assert seen == [1, 2, 4, 8, 16, 16]


def test_a_throttle_halves_the_limit_and_ends_slow_start() -> None:
    clock = Clock()
    lim, changes = limiter(clock, lo=1, hi=64)
    for _ in range(4):
        saturated_round(lim, clock)
    assert lim.limit == 16
    clock.now += 0.01
    lim.on_throttle(started_at=clock.now - 0.05)
    assert lim.limit == 8 and not lim.slow_start
    assert changes[-1] == (16, 8, "throttled")
    clock.now += THROTTLE_HOLD_S
    # Additive from now on: +1 per round of `limit` successes, not +1 per success.
    saturated_round(lim, clock)
    assert lim.limit == 9
    saturated_round(lim, clock)
    assert lim.limit == 10


def test_one_cut_per_round_throttles_of_calls_started_before_it_are_ignored() -> None:
    clock = Clock()
    lim, _ = limiter(clock, lo=1, hi=64)
    for _ in range(4):
        saturated_round(lim, clock)
    started = clock.now
    clock.now += 1.0
    for _ in range(16):  # every call in flight was throttled at once
        lim.on_throttle(started_at=started)
    assert lim.limit == 8
    clock.now += 1.0
    lim.on_throttle(started_at=clock.now - 0.5)  # a call started after the cut: a new round
    assert lim.limit == 4


def test_sustained_throttles_hold_the_minimum_and_the_limit_rises_once_they_stop() -> None:
    clock = Clock()
    lim, _ = limiter(clock, lo=2, hi=32)
    for _ in range(4):
        saturated_round(lim, clock)
    assert lim.limit == 32
    for _ in range(20):
        clock.now += 1.0
        lim.on_throttle(started_at=clock.now - 0.1)
    assert lim.limit == 2
    clock.now += THROTTLE_HOLD_S
    for _ in range(10):
        saturated_round(lim, clock)
    assert lim.limit == 12  # +1 per round, never below the bound meanwhile


def test_after_a_throttle_the_limit_holds_for_its_retry_after_then_grows() -> None:
    clock = Clock()
    lim, _ = limiter(clock, lo=1, hi=8)
    for _ in range(2):
        saturated_round(lim, clock)
    lim.limit = 3  # as if it had grown past a function's concurrency of 2
    clock.now += 0.1
    cut_at = clock.now
    lim.on_throttle(started_at=clock.now - 0.01, retry_after_s=2.5)
    assert lim.limit == 2  # 3 x 0.5 rounded up: a cut, never to a standstill
    for _ in range(20):  # within the Retry-After: no probing above the cut
        saturated_round(lim, clock)
    assert lim.limit == 2 and clock.now < cut_at + 2.5
    clock.now = cut_at + 2.5
    saturated_round(lim, clock)
    assert lim.limit == 3
    clock.now += 1
    lim.on_throttle(started_at=clock.now)  # no Retry-After: held THROTTLE_HOLD_S
    assert lim.limit == 2
    clock.now += THROTTLE_HOLD_S / 2
    saturated_round(lim, clock)
    assert lim.limit == 2
    clock.now += THROTTLE_HOLD_S / 2
    saturated_round(lim, clock)
    assert lim.limit == 3


def test_no_growth_while_the_limit_is_not_what_holds_the_worker_back() -> None:
    clock = Clock()
    lim, changes = limiter(clock, lo=2, hi=16)
    for _ in range(50):
        clock.now += 0.01
        lim.on_success(0.1, clock.now - 0.1, busy=1)
    assert lim.limit == 2 and changes == []


def test_rising_latency_cuts_gently_and_a_lasting_rise_becomes_the_baseline() -> None:
    clock = Clock()
    lim, changes = limiter(clock, lo=1, hi=10)
    for _ in range(4):
        saturated_round(lim, clock, latency=0.1)
    assert lim.limit == 10
    for _ in range(3):  # latency x5: the recent average passes 2x the baseline
        clock.now += 0.01
        lim.on_success(0.5, clock.now - 0.5, busy=lim.limit)
    assert changes[-1] == (10, 9, "latency")
    for _ in range(300):  # the function is slower now, for good: no cut for ever
        clock.now += 0.5
        lim.on_success(0.5, clock.now - 0.5, busy=lim.limit)
    assert lim.limit == 10
    assert lim.baseline_latency_s is not None and lim.baseline_latency_s > 0.25


def test_latency_tolerance_zero_ignores_latency() -> None:
    clock = Clock()
    lim, changes = limiter(clock, lo=4, hi=4, latency_tolerance=0.0)
    for i in range(20):
        clock.now += 1.0
        lim.on_success(0.1 * (i + 1), clock.now - 0.1, busy=4)
    assert lim.limit == 4 and changes == []


def test_backoff_ratio_and_bounds_are_respected() -> None:
    clock = Clock()
    lim, _ = limiter(clock, lo=3, hi=20, backoff_ratio=0.75)
    for _ in range(3):
        saturated_round(lim, clock)
    assert lim.limit == 20
    clock.now += 1
    lim.on_throttle(clock.now)
    assert lim.limit == 15
    for _ in range(10):
        clock.now += 1
        lim.on_throttle(clock.now)
    assert lim.limit == 3


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_limit"):
        AdaptiveLimit(min_limit=5, max_limit=4)
    with pytest.raises(ValueError, match="backoff_ratio"):
        AdaptiveLimit(min_limit=1, max_limit=4, backoff_ratio=1.0)


def test_fixed_limit_never_moves() -> None:
    fixed = FixedLimit(6)
    fixed.on_throttle(0.0, 1.0)
    fixed.on_success(9.0, 0.0, busy=6)
    assert (fixed.limit, fixed.min_limit, fixed.max_limit, fixed.adaptive) == (6, 6, 6, False)
