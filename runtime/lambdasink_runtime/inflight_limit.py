"""How many invocations a worker may have in flight: fixed, or adapted to what Lambda accepts.

Pure and clock-driven (no Pulsar, no AWS): the invoker reports each attempt's outcome, the
pipeline reads `limit` before it starts another invocation.

Why AIMD (additive increase, multiplicative decrease) rather than a gradient limiter: Lambda's
congestion signal is a hard one, a 429 (TooManyRequestsException) once the account's or the
function's concurrency is used up, like a lost packet in TCP; latency is mostly the function's
own duration, which varies with batch size and payload, so a limiter driven by the latency
gradient alone would chase noise. AIMD also converges to a fair share when several workers
(replicas) draw from one function's concurrency, with no coordination between them. Latency is
still watched, as a secondary signal: a recent average well above the baseline (a function
whose downstream saturates, or requests queueing in front of it) cuts gently.

The rules:
- start at `min_limit` and add 1 per successful call (slow start: doubling per round) until
  the first cut, then add 1 per `limit` successes (one per round of calls);
- grow only while the limit is what holds the worker back (`busy >= limit`): a worker with
  little to send learns nothing about Lambda's headroom;
- a throttle multiplies the limit by `backoff_ratio` (rounded up, but at least 1 less) and
  holds it there for the throttle's Retry-After, at least `THROTTLE_HOLD_S`: probing again at
  once would spend a 429 per round of calls, each costing a call its Retry-After. A recent
  latency above `latency_tolerance` x the baseline multiplies it by 0.9 (rounded down);
- one cut per round: a signal from a call started before the last cut is ignored (every call
  in flight sees the same throttling; reacting to each would collapse the limit at once);
- always within [min_limit, max_limit].
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

#: Weight of a new sample in the recent latency average.
RECENT_WEIGHT = 0.3
#: How fast the latency baseline follows a lasting rise (per sample), so a function that is
#: simply slower now stops being read as congestion after some tens of calls.
BASELINE_DRIFT = 0.02
#: Successful calls measured before latency may cut the limit.
LATENCY_WARMUP = 5
#: The gentle cut applied on a latency rise.
LATENCY_BACKOFF = 0.9
#: No increase for this long after a throttle cut (longer when the 429 said Retry-After).
THROTTLE_HOLD_S = 1.0

Reason = str


class AttemptObserver(Protocol):
    """Hears how each invocation attempt ended, retries included."""

    def attempt_ended(
        self, started_at: float, latency_s: float, outcome: str, retry_after_s: float | None
    ) -> None:
        """`outcome`: "success" or the failure reason ("throttled", "server_error", ...);
        `retry_after_s`: what a throttle asked to wait, when it said."""

    async def wait_retry(self, delay_s: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Wait out the backoff before a retry with `sleep`; meanwhile no call is in flight."""


class FixedLimit:
    """`maxInFlight` as a constant: the default while adaptive in-flight is opt-in."""

    adaptive = False

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.max_limit = self.limit
        self.min_limit = self.limit
        self.last_cut_reason: Reason = ""

    def on_success(self, latency_s: float, started_at: float, busy: int) -> None:
        """Nothing adapts."""

    def on_throttle(self, started_at: float, retry_after_s: float | None = None) -> None:
        """Nothing adapts."""


class AdaptiveLimit:
    """AIMD over the in-flight limit; `on_change(before, after, reason)` hears of each change."""

    adaptive = True

    def __init__(
        self,
        *,
        min_limit: int,
        max_limit: int,
        backoff_ratio: float = 0.5,
        latency_tolerance: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int, int, Reason], None] | None = None,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit ({min_limit}) <= max_limit ({max_limit})")
        if not 0 < backoff_ratio < 1:
            raise ValueError(f"backoff_ratio {backoff_ratio} is not between 0 and 1")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = backoff_ratio
        self.latency_tolerance = latency_tolerance
        self._clock = clock
        self._on_change = on_change
        self.limit = min_limit
        self.slow_start = True
        self._successes = 0  # since the last change, counted toward the next increase
        self._last_cut = -math.inf
        self._hold_until = -math.inf
        self._recent: float | None = None
        self._baseline: float | None = None
        self._samples = 0
        self.last_cut_reason: Reason = ""

    @property
    def recent_latency_s(self) -> float | None:
        return self._recent

    @property
    def baseline_latency_s(self) -> float | None:
        return self._baseline

    def on_success(self, latency_s: float, started_at: float, busy: int) -> None:
        """A call that started at `started_at` succeeded after `latency_s`; `busy` invocations
        (this one included) held a slot when it ended."""
        if self._latency_rose(latency_s) and started_at >= self._last_cut:
            self._cut(math.floor(self.limit * LATENCY_BACKOFF), "latency")
            return
        if busy < self.limit or self.limit >= self.max_limit or self._clock() < self._hold_until:
            return
        self._successes += 1
        if self.slow_start or self._successes >= self.limit:
            self._set(self.limit + 1, "success")

    def on_throttle(self, started_at: float, retry_after_s: float | None = None) -> None:
        """A call that started at `started_at` was refused with a 429."""
        if started_at < self._last_cut:
            return  # this round was already cut for
        self._cut(min(self.limit - 1, math.ceil(self.limit * self.backoff_ratio)), "throttled")
        self._hold_until = self._last_cut + max(THROTTLE_HOLD_S, retry_after_s or 0.0)

    def _latency_rose(self, latency_s: float) -> bool:
        if self._recent is None or self._baseline is None:
            self._recent = self._baseline = latency_s
        else:
            self._recent += RECENT_WEIGHT * (latency_s - self._recent)
            if self._recent < self._baseline:
                self._baseline = self._recent
            else:
                self._baseline += BASELINE_DRIFT * (self._recent - self._baseline)
        self._samples += 1
        return (
            self.latency_tolerance > 0
            and self._samples >= LATENCY_WARMUP
            and self._recent > self.latency_tolerance * self._baseline
        )

    def _cut(self, limit: int, reason: Reason) -> None:
        self.slow_start = False
        self._last_cut = self._clock()
        self.last_cut_reason = reason
        self._set(limit, reason)

    def _set(self, limit: int, reason: Reason) -> None:
        limit = max(self.min_limit, min(self.max_limit, limit))
        self._successes = 0
        before, self.limit = self.limit, limit
        if before != limit and self._on_change is not None:
            self._on_change(before, limit, reason)
