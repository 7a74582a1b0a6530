"""A circuit breaker over invocations: closed, open, or probing (half-open).

Pure and clock-driven, so the pipeline's async code only asks `acquire` and reports `record`.
Only *service* failures (see `failure.py`) trip it; a function that answers, even with an
error for a poison record, is up. While open, nothing is invoked except one probe at a time,
spaced by a backoff that doubles up to its cap; the first probe that succeeds closes it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "probing"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_ratio: float,
        minimum_calls: int,
        window_s: float,
        probe_initial_s: float,
        probe_max_s: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State, str], None] | None = None,
    ) -> None:
        self.failure_ratio = failure_ratio
        self.minimum_calls = minimum_calls
        self.window_s = window_s
        self.probe_initial_s = probe_initial_s
        self.probe_max_s = probe_max_s
        self.enabled = enabled
        self._clock = clock
        self._on_change = on_change
        self._calls: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self.state: State = "closed"
        self.reason = ""
        self.opened_at: float | None = None
        self._interval = probe_initial_s
        self._next_probe = 0.0

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    def acquire(self) -> float:
        """0 when a call may go now (closed, or this caller is the probe); else seconds to wait."""
        if self.state == "closed":
            return 0.0
        now = self._clock()
        if self.state == "open" and now >= self._next_probe:
            self._set("probing", self.reason)
            return 0.0
        if self.state == "probing":
            return 0.2
        return max(0.05, self._next_probe - now)

    def record(self, ok: bool, reason: str = "", *, probe: bool = False) -> None:
        """The outcome of one call; `ok` False only for a service failure."""
        now = self._clock()
        if self.state == "probing" and probe:
            if ok:
                self._close()
            else:
                self._interval = min(self.probe_max_s, self._interval * 2)
                self._open(now, reason)
            return
        if self.state != "closed" or not self.enabled:
            return  # calls started before it opened do not decide anything now
        self._calls.append((now, ok))
        if not ok:
            self._failures += 1
        horizon = now - self.window_s
        while self._calls and self._calls[0][0] < horizon:
            _, old_ok = self._calls.popleft()
            if not old_ok:
                self._failures -= 1
        calls = len(self._calls)
        if calls >= self.minimum_calls and self._failures >= self.failure_ratio * calls:
            self._interval = self.probe_initial_s
            self._open(
                now,
                f"{self._failures} of {calls} calls failed in {self.window_s:.0f}s"
                f" (last: {reason})",
            )

    def _open(self, now: float, reason: str) -> None:
        if self.opened_at is None:
            self.opened_at = now
        self._next_probe = now + self._interval
        self._set("open", reason)

    def _close(self) -> None:
        self._calls.clear()
        self._failures = 0
        self.opened_at = None
        self._interval = self.probe_initial_s
        self._set("closed", "")

    def _set(self, state: State, reason: str) -> None:
        """Enter `state`; `on_change(before, after, reason)` hears of every change."""
        before, self.state, self.reason = self.state, state, reason
        if before != state and self._on_change is not None:
            self._on_change(before, state, reason)
