"""consumer → serializer → batcher → invoker → ack/nack: the only place that acknowledges.

The pipeline sees the Pulsar side only through `Source` and Lambda only through `Invoke`, so
its ack/nack decisions are unit-tested with small in-memory implementations of both.

Rules it keeps:
- a record is acked only after the invocation carrying it succeeded; every failure (serialize,
  schema lookup, oversize, invoke after retries, shutdown timeout) ends in a nack;
- at most `max_in_flight` invocations at once, or fewer with `adaptiveInFlight`: the limit
  then adapts (`inflight_limit.py`) to the throttles and latency each attempt reports through
  `attempt_ended`, the invoker's retries included; closed batches wait in a short queue and the
  receiver stops pulling while that queue is full (bounded memory, backpressure);
- `ordered=True` (Failover, Key_Shared, Exclusive): a batch is not dispatched while an earlier
  batch sharing an ordering key is in flight or still waiting, so invocations for one key happen
  in receive order, retries included. The ordering key is the message key; keyless messages
  are ordered per (topic, partition). Batches with disjoint keys still run in parallel;
- a 413 on a multi-record batch splits it in halves (in order) and retries each half;
- failures go through the failure policy (`failurePolicy`, see `failure.py` for which failures
  count): a failed record is retried in place, with backoff, until it succeeds or has used
  `maxAttempts` (counted durably in the `AttemptLog`, so a restart does not reset it) or is
  older than `maxRecordAgeMs`; then it is dead-lettered (acked only once its copy is
  persisted), dropped (acked, counted) or, with `block`, retried for ever. On ordered
  subscriptions its key waits meanwhile, so later records of the key are invoked only after
  it was settled. Optional: partial batch responses (`batchItemFailures`) and bisection of a
  batch that fails with a function error. A circuit breaker stops receiving while the function
  cannot be reached (service failures, which never use up a record's attempts);
- a record is nacked (redelivered by the broker, its count kept) only on shutdown, when a
  serialization or schema failure may be transient, or when the policy has nowhere to send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .batcher import Batch, Batcher
from .breaker import CircuitBreaker, State
from .config import AdaptiveInFlightConfig, FailurePolicyConfig
from .errors import InvokeError, LambdaSinkError, PayloadTooLargeError
from .failure import (
    Attempts,
    Failure,
    MemoryAttemptLog,
    PartialResponseError,
    batch_item_failures,
    from_invoke_error,
    record_key,
    too_old,
)
from .inflight_limit import AdaptiveLimit, FixedLimit
from .metrics import Metrics
from .record import Record, Rejected
from .serializer import Serializer

if TYPE_CHECKING:
    from .config import PulsarConfig, SinkConfig

log = logging.getLogger("lambdasink.pipeline")

ORDERED_SUBSCRIPTIONS = frozenset({"Failover", "Key_Shared", "Exclusive"})
#: How often a retry that waited out its backoff looks for a free slot (adaptive limit).
SLOT_POLL_S = 0.005


class Source(Protocol):
    """The Pulsar side as the pipeline needs it. `receive` blocks and runs on its own thread."""

    def receive(self, max_records: int, timeout_s: float) -> Sequence[Record | Rejected]: ...

    def ack(self, record: Record) -> None: ...

    def nack(self, record: Record) -> None: ...

    def close(self) -> None: ...


class Reply(Protocol):
    """What a successful invocation returned."""

    @property
    def body(self) -> bytes: ...

    @property
    def request_id(self) -> str: ...


class Invoke(Protocol):
    """The Lambda side: returns on success, raises `InvokeError` once its retries are spent."""

    async def invoke(self, payload: bytes) -> Reply: ...


class AttemptLog(Protocol):
    """Counted failed attempts per record (`failure.record_key`), where a restart finds them."""

    def __len__(self) -> int: ...

    def lookup(self, key: str) -> Attempts | None: ...

    async def save(self, entries: Mapping[str, Attempts]) -> None:
        """Returns once the counts are durable; raises `LambdaSinkError` otherwise."""

    def forget(self, keys: Iterable[str]) -> None: ...


class DeadLetters(Protocol):
    """Where given-up records go with `onExhausted: deadLetter`."""

    async def send(self, record: Record, failure: Failure, attempts: int) -> None:
        """Returns once the copy is persisted; raises `LambdaSinkError` otherwise."""


Serialize = Callable[[Record], bytes]


@dataclass(slots=True)
class _Pending:
    batch: Batch[Record]
    keys: frozenset[Hashable]


def _ordering_key(record: Record) -> Hashable:
    return record.key if record.key is not None else (None, record.topic, record.partition)


def _key(record: Record) -> str:
    return record_key(record.topic, record.message_id)


def _subset(batch: Batch[Record], indices: Sequence[int]) -> Batch[Record]:
    return Batch([batch.items[i] for i in indices], [batch.parts[i] for i in indices], batch.array)


class Pipeline:
    """Runs until `stop()`, then drains: flush, wait for in-flight invocations, settle, close."""

    def __init__(
        self,
        source: Source,
        serialize: Serialize,
        batcher: Batcher[Record],
        invoker: Invoke,
        *,
        metrics: Metrics | None = None,
        max_in_flight: int = 4,
        ordered: bool = False,
        drain_timeout_s: float = 30.0,
        receive_timeout_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        policy: FailurePolicyConfig | None = None,
        attempts: AttemptLog | None = None,
        dead_letters: DeadLetters | None = None,
        subscription: str = "",
        adaptive: AdaptiveInFlightConfig | None = None,
    ) -> None:
        self.source = source
        self.serialize = serialize
        self.batcher = batcher
        self.invoker = invoker
        self.metrics = metrics or Metrics()
        self.max_in_flight = max(1, max_in_flight)
        self.limiter: FixedLimit | AdaptiveLimit = FixedLimit(self.max_in_flight)
        if adaptive is not None and adaptive.enabled:
            self.limiter = AdaptiveLimit(
                min_limit=min(adaptive.min_in_flight, self.max_in_flight),
                max_limit=self.max_in_flight,
                backoff_ratio=adaptive.backoff_ratio,
                latency_tolerance=adaptive.latency_tolerance,
                clock=clock,
                on_change=self._limit_changed,
            )
        self.ordered = ordered
        self.drain_timeout_s = drain_timeout_s
        self.receive_timeout_s = receive_timeout_s
        self._clock = clock
        self._wall = wall_clock
        self.policy = policy or FailurePolicyConfig()
        if self.policy.on_exhausted == "deadLetter" and dead_letters is None:
            raise ValueError("onExhausted deadLetter needs a dead-letter producer")
        self.attempts: AttemptLog = attempts if attempts is not None else MemoryAttemptLog()
        self.dead_letters = dead_letters
        self.subscription = subscription
        cb = self.policy.circuit_breaker
        self.breaker = CircuitBreaker(
            enabled=cb.enabled,
            failure_ratio=cb.failure_ratio,
            minimum_calls=cb.minimum_calls,
            window_s=cb.window_ms / 1000,
            probe_initial_s=cb.probe_interval_initial_ms / 1000,
            probe_max_s=cb.probe_interval_max_ms / 1000,
            clock=clock,
            on_change=self._breaker_changed,
        )
        #: Tasks waiting out a retry backoff: they hold their keys but not an invocation slot.
        self._parked = 0
        #: Parked invoker retries whose wait is over, waiting for a free slot (adaptive only).
        self._ready_retries = 0
        self._blocked: set[str] = set()
        self._stop_event: asyncio.Event | None = None
        self.last_dead_letter_error = ""
        self.receive_max = 1000
        self.max_waiting = self.max_in_flight
        self._waiting: deque[_Pending] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._inflight_keys: Counter[Hashable] = Counter()
        self._progress: asyncio.Event | None = None
        self._stopping = False
        self.draining = False
        self.running = False
        #: Clock time of the receive loop's last turn; /healthz uses it to detect a stuck loop.
        self.heartbeat = clock()
        self.metrics.inflight_limit.set(self.limiter.limit)

    @classmethod
    def from_config(
        cls,
        sink: SinkConfig,
        pulsar_cfg: PulsarConfig,
        source: Source,
        invoker: Invoke,
        *,
        metrics: Metrics | None = None,
        drain_timeout_s: float = 30.0,
        policy: FailurePolicyConfig | None = None,
        attempts: AttemptLog | None = None,
        dead_letters: DeadLetters | None = None,
        adaptive: AdaptiveInFlightConfig | None = None,
    ) -> Pipeline:
        serializer = Serializer(sink)
        v2 = sink.payload_format == "V2"
        batcher: Batcher[Record] = Batcher(
            max_records=sink.batch_max_size,
            max_bytes=sink.batch_max_bytes_size,
            max_time_s=sink.batch_max_time_ms / 1000,
            limit_bytes=sink.payload_limit_bytes,
            array=v2,
        )
        return cls(
            source,
            serializer.v2_item if v2 else serializer.v1_payload,
            batcher,
            invoker,
            metrics=metrics,
            max_in_flight=sink.max_in_flight,
            ordered=pulsar_cfg.subscription_type in ORDERED_SUBSCRIPTIONS,
            drain_timeout_s=drain_timeout_s,
            policy=policy,
            attempts=attempts,
            dead_letters=dead_letters,
            subscription=pulsar_cfg.subscription_name,
            adaptive=adaptive,
        )

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; `run` then drains and returns. Safe to call from a signal handler."""
        self._stopping = True
        self.draining = True
        if self._progress is not None:
            self._progress.set()
        if self._stop_event is not None:
            self._stop_event.set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._stop_event = asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        receiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receive")
        self.running = True
        try:
            while not self._stopping:
                self.heartbeat = self._clock()
                if self.breaker.is_open or len(self._waiting) >= self.max_waiting:
                    # Open breaker: pull nothing new; what was received waits at the gate.
                    await self._wait_progress(self.receive_timeout_s)
                    self._close_due()
                    continue
                try:
                    items = await loop.run_in_executor(
                        receiver,
                        self.source.receive,
                        self._receive_count(),
                        self._receive_timeout(),
                    )
                except LambdaSinkError as exc:
                    log.warning("receive failed, retrying in 1s: %s", exc)
                    await self._wait_progress(1.0)
                    continue
                if items:
                    self.metrics.messages_received.inc(len(items))  # once a batch: bench.metrics_ab
                for item in items:
                    self._accept(item)
                self._close_due()
            await self._drain()
        finally:
            receiver.shutdown(wait=True)
            self.running = False
            self.source.close()

    # -- receive side ---------------------------------------------------------------------

    def _receive_count(self) -> int:
        """Records that fit in the free batch slots, so the waiting queue stays bounded."""
        free = (self.max_waiting - len(self._waiting)) * self.batcher.max_records
        return max(1, min(self.receive_max, free - len(self.batcher)))

    def _receive_timeout(self) -> float:
        deadline = self.batcher.deadline
        if deadline is None:
            return self.receive_timeout_s
        return min(self.receive_timeout_s, max(0.001, deadline - self._clock()))

    async def _wait_progress(self, timeout: float) -> None:
        assert self._progress is not None
        self._progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)

    def _accept(self, item: Record | Rejected) -> None:
        if isinstance(item, Rejected):
            # Mostly a schema lookup that may work later (registry down): redelivered.
            log.warning("message %s rejected: %s; nacked", item.record.message_id, item.error)
            self._nack(item.record, "schema")
            return
        record = item
        try:
            part = self.serialize(record)
        except Exception as exc:  # noqa: BLE001 - any serializer failure goes to the policy
            message = f"cannot be serialized ({type(exc).__name__}: {exc})"
            log.warning("message %s on %s %s", record.message_id, record.topic, message)
            self._give_up_later(record, Failure("serialization", message[:500]))
            return
        try:
            closed = self.batcher.add(record, part)
        except PayloadTooLargeError as exc:
            self.metrics.oversize.inc()
            log.error("message %s on %s is never sent: %s", record.message_id, record.topic, exc)
            self._give_up_later(record, Failure("too_large", str(exc)[:500], status=413))
            return
        if closed:
            self._enqueue(closed)

    def _close_due(self) -> None:
        closed = self.batcher.poll()
        if closed:
            self._enqueue(closed)
        elif self._waiting:
            self._dispatch()

    def _enqueue(self, batches: list[Batch[Record]]) -> None:
        for batch in batches:
            keys = frozenset(_ordering_key(r) for r in batch.items) if self.ordered else frozenset()
            self._waiting.append(_Pending(batch, keys))
        self._dispatch()

    # -- dispatch and settlement ----------------------------------------------------------

    def _full(self) -> bool:
        """No free invocation slot (the current limit). Tasks parked in a retry backoff do not
        use one, but at most 3x `max_in_flight` of them may wait (bounded memory; then the
        receiver stops too)."""
        taken = self._busy() + self._ready_retries  # retries due go before new batches
        return taken >= self.limiter.limit or len(self._tasks) >= 4 * self.max_in_flight

    def _busy(self) -> int:
        """Invocations holding a slot: started, not parked in a retry backoff."""
        return len(self._tasks) - self._parked

    def attempt_ended(
        self,
        started_at: float,
        latency_s: float,
        outcome: str,
        retry_after_s: float | None = None,
    ) -> None:
        """The invoker's report of one attempt (retries included): what the limit learns from.
        Other service failures (5xx, timeouts) are the circuit breaker's to judge."""
        if outcome == "success":
            self.limiter.on_success(latency_s, started_at, self._busy())
        elif outcome == "throttled":
            self.limiter.on_throttle(started_at, retry_after_s)

    async def wait_retry(self, delay_s: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """The invoker's wait before retrying a throttled or failed call. With an adaptive limit
        it frees the slot, like a retry backoff here: the limit counts calls at Lambda, and a
        cut to a few slots must not leave them all waiting out a Retry-After. With a fixed one
        the slot stays held (maxInFlight bounds the calls started, as it always did).

        After the wait the retry takes a slot again only once one is free (before new batches
        do): a retry above the limit is how a throttle round would start over."""
        if not self.limiter.adaptive:
            await sleep(delay_s)
            return
        self._parked += 1
        self._dispatch()
        try:
            await sleep(delay_s)
            self._ready_retries += 1
            try:
                while self._busy() >= self.limiter.limit and not self._stopping:
                    await asyncio.sleep(SLOT_POLL_S)
            finally:
                self._ready_retries -= 1
        finally:
            self._parked -= 1

    def _limit_changed(self, before: int, after: int, reason: str) -> None:
        self.metrics.inflight_limit.set(after)
        self.metrics.inflight_limit_changes.labels(reason).inc()
        if after < before:
            log.info("in-flight limit %d -> %d (%s)", before, after, reason)
        else:
            log.debug("in-flight limit %d -> %d (%s)", before, after, reason)
            if self._progress is not None:
                self._dispatch()

    def _dispatch(self) -> None:
        if not self._waiting or self._full():
            return
        if not self.ordered:
            while self._waiting and not self._full():
                self._start(self._waiting.popleft())
            return
        held: set[Hashable] = set()  # keys of earlier batches that are still waiting
        kept: deque[_Pending] = deque()
        while self._waiting:
            pending = self._waiting.popleft()
            blocked = self._full() or any(
                k in held or k in self._inflight_keys for k in pending.keys
            )
            if blocked:
                held.update(pending.keys)
                kept.append(pending)
            else:
                self._start(pending)
        self._waiting = kept

    def _start(self, pending: _Pending) -> None:
        self._inflight_keys.update(pending.keys)
        self.metrics.inflight.inc()
        task = asyncio.get_running_loop().create_task(self._send(pending))
        self._tasks.add(task)

    async def _send(self, pending: _Pending) -> None:
        task = asyncio.current_task()
        try:
            await self._deliver(pending.batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected failure delivering a batch")
        finally:
            self._inflight_keys.subtract(pending.keys)
            for key in pending.keys:
                if self._inflight_keys[key] <= 0:
                    del self._inflight_keys[key]
            self.metrics.inflight.dec()
            if task is not None:
                self._tasks.discard(task)
            if self._progress is not None:
                self._progress.set()
            self._dispatch()

    async def _deliver(self, batch: Batch[Record]) -> None:
        """Invoke until every record of the batch is settled (acked, dead-lettered, dropped) or,
        on shutdown, nacked. Runs as one task, so an ordered batch holds its keys throughout."""
        self.metrics.batch_records.observe(len(batch))
        self.metrics.batch_bytes.observe(batch.size)
        work: deque[Batch[Record]] = deque([batch])
        service_failures = 0
        current: Batch[Record] | None = None  # taken from `work`, not settled or requeued yet
        try:
            while work:
                current = None
                current = await self._screen(work.popleft())
                if current is None:
                    continue
                probe = await self._gate()
                if probe is None:  # stopping
                    work.appendleft(current)
                    current = None
                    break
                try:
                    reply = await self.invoker.invoke(current.payload)
                except InvokeError as err:
                    failure = from_invoke_error(err)
                    if err.status == 413 and len(current) > 1:
                        self.breaker.record(True, probe=probe)
                        log.warning(
                            "payload of %d records (%d bytes) refused as too large (413); "
                            "splitting in halves",
                            len(current),
                            current.size,
                        )
                        work.extendleft(reversed(current.split()))
                        current = None
                        continue
                    if not failure.counts:
                        self.breaker.record(False, failure.reason, probe=probe)
                        self.metrics.record_failures.labels(failure.reason).inc(len(current))
                        service_failures += 1
                        log.warning(
                            "invocation of %d records failed (%s): %s; retrying, not counted "
                            "against the records",
                            len(current),
                            failure.reason,
                            err,
                        )
                        work.appendleft(current)
                        current = None
                        if not await self._pause(self._backoff_s(service_failures)):
                            break
                        continue
                    self.breaker.record(True, probe=probe)
                    if (
                        failure.reason == "function_error"
                        and self.policy.bisect_on_function_error
                        and len(current) > 1
                    ):
                        self.metrics.bisects.inc()
                        log.info("function error on %d records; bisecting", len(current))
                        work.extendleft(reversed(current.split()))
                        current = None
                        continue
                    log.warning(
                        "invocation of %d records failed (%s): %s",
                        len(current),
                        failure.reason,
                        err,
                    )
                    retry: Batch[Record] | None = current
                    counted: set[str] | None = None  # all of them
                else:
                    self.breaker.record(True, probe=probe)
                    service_failures = 0
                    retry, counted, failure = self._read_reply(current, reply)
                current = None
                if not await self._count_and_retry(work, retry, counted, failure):
                    break
        except asyncio.CancelledError:
            for rest in (current, *work) if current is not None else work:
                self._settle(rest, ok=False, reason="shutdown")
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still end in nacks, never in loss
            log.error("delivery raised %s: %s; nacked", type(exc).__name__, exc)
            for rest in (current, *work) if current is not None else work:
                self._settle(rest, ok=False, reason="internal")
            return
        for rest in work:  # stopping: the broker redelivers them, their counts are kept
            self._settle(rest, ok=False, reason="shutdown")

    def _read_reply(
        self, batch: Batch[Record], reply: Reply
    ) -> tuple[Batch[Record] | None, set[str] | None, Failure]:
        """Ack what succeeded; return the records to retry (in order), the keys of those that
        failed (None: all of them) and why."""
        if not self.policy.report_batch_item_failures:
            self._settle(batch, ok=True)
            return None, None, Failure("partial_failure")
        try:
            ids = batch_item_failures(reply.body, [r.message_id for r in batch.items])
        except PartialResponseError as exc:
            self.metrics.invalid_responses.inc()
            log.warning("invalid partial batch response, the whole batch failed: %s", exc)
            return batch, None, Failure("invalid_response", str(exc), request_id=reply.request_id)
        if not ids:
            self._settle(batch, ok=True)
            return None, None, Failure("partial_failure")
        self.metrics.partial_failures.inc(len(ids))
        retried: list[int] = []  # the listed ones and, ordered, later records of their keys
        acked: list[int] = []
        failed_keys: set[Hashable] = set()
        for i, record in enumerate(batch.items):
            if record.message_id in ids:
                retried.append(i)
                failed_keys.add(_ordering_key(record))
            elif self.ordered and _ordering_key(record) in failed_keys:
                retried.append(i)
            else:
                acked.append(i)
        if acked:
            self._settle(_subset(batch, acked), ok=True)
        message = "the function listed this record in batchItemFailures"
        counted = {_key(r) for r in batch.items if r.message_id in ids}
        return (
            _subset(batch, retried),
            counted,
            Failure("partial_failure", message, request_id=reply.request_id),
        )

    async def _count_and_retry(
        self,
        work: deque[Batch[Record]],
        retry: Batch[Record] | None,
        counted: set[str] | None,
        failure: Failure,
    ) -> bool:
        """Count one attempt for each failed record of `retry` (durably; `counted` names them,
        None: all), give up on the exhausted, and queue the rest at the front of `work` after a
        backoff. False when stopping."""
        if retry is None:
            return True
        failed = [r for r in retry.items if counted is None or _key(r) in counted]
        self.metrics.record_failures.labels(failure.reason).inc(len(failed))
        # A record Lambda refuses as too large alone can never succeed: out of attempts at once.
        floor = self.policy.max_attempts if failure.reason == "too_large" else 0
        counts: dict[str, Attempts] = {}
        for record in failed:
            key = _key(record)
            before = self.attempts.lookup(key)
            counts[key] = Attempts(max(floor, (before.count if before else 0) + 1), failure)
        if not await self._save(counts):
            work.appendleft(retry)
            return False
        limit = self.policy.max_attempts
        exhausted = {key for key, seen in counts.items() if seen.count >= limit}
        if exhausted and self.policy.on_exhausted == "block":
            self._blocked.update(exhausted)
            self.metrics.records_blocked.set(len(self._blocked))
            log.error(
                "%d records used their %d attempts; onExhausted is block, retrying: %s",
                len(exhausted),
                limit,
                failure.message,
            )
            exhausted = set()
        if exhausted:
            gone = [r for r in retry.items if _key(r) in exhausted]
            if not await self._give_up(gone, lambda r: counts[_key(r)]):
                work.appendleft(retry)
                return False
            keep = [i for i, r in enumerate(retry.items) if _key(r) not in exhausted]
            if not keep:
                return True
            retry = _subset(retry, keep)
        work.appendleft(retry)
        most = max((counts[_key(r)].count for r in retry.items if _key(r) in counts), default=1)
        return await self._pause(self._backoff_s(most))

    async def _screen(self, batch: Batch[Record]) -> Batch[Record] | None:
        """Give up, before invoking, on records too old or already out of attempts (counted
        before a restart); the rest, or None."""
        limit_ms = self.policy.max_record_age_ms
        if not limit_ms and not len(self.attempts):
            return batch  # the common case: nothing to look up
        now_ms = int(self._wall() * 1000)
        keep: list[int] = []
        old: list[Record] = []
        spent: list[Record] = []
        for i, record in enumerate(batch.items):
            seen = self.attempts.lookup(_key(record)) if len(self.attempts) else None
            age = now_ms - (record.publish_time_ms or now_ms)
            if limit_ms and age > limit_ms:
                old.append(record)
            elif (
                seen is not None
                and seen.count >= self.policy.max_attempts
                and self.policy.on_exhausted != "block"
            ):
                spent.append(record)
            else:
                keep.append(i)
        if old:
            self.metrics.records_too_old.inc(len(old))

            def expired(r: Record) -> Attempts:
                seen = self.attempts.lookup(_key(r))
                age = now_ms - (r.publish_time_ms or now_ms)
                last = seen.last if seen else None
                return Attempts(seen.count if seen else 0, too_old(age, limit_ms, last))

            if not await self._give_up(old, expired):
                return None if self._stopping and self._nack_all(batch) else batch
        if spent:

            def recorded(r: Record) -> Attempts:
                seen = self.attempts.lookup(_key(r))
                assert seen is not None
                return seen

            if not await self._give_up(spent, recorded):
                return None if self._stopping and self._nack_all(batch) else batch
        if len(keep) == len(batch):
            return batch
        return _subset(batch, keep) if keep else None

    def _nack_all(self, batch: Batch[Record]) -> bool:
        self._settle(batch, ok=False, reason="shutdown")
        return True

    async def _give_up(self, records: Sequence[Record], why: Callable[[Record], Attempts]) -> bool:
        """Apply `onExhausted` (deadLetter or drop) to records; each is acked only once it went
        where the policy says. False (records not settled) when stopping."""
        policy = self.policy.on_exhausted
        for record in records:
            seen = why(record)
            if policy == "deadLetter":
                if not await self._dead_letter(record, seen):
                    return False
                self.metrics.records_dead_lettered.labels(seen.last.reason).inc()
                where = "dead-lettered"
            else:
                self.metrics.records_dropped.labels(seen.last.reason).inc()
                where = "dropped by policy"
            log.warning(
                "message %s on %s %s after %d attempts (%s: %s)",
                record.message_id,
                record.topic,
                where,
                seen.count,
                seen.last.reason,
                seen.last.message,
            )
            self._ack(record)
            key = _key(record)
            self.attempts.forget((key,))
            self._blocked.discard(key)
        return True

    def _give_up_later(self, record: Record, failure: Failure) -> None:
        """A record that can never be invoked (unserializable, too large) goes to the policy
        now, on a task of its own; `block` keeps it unacked (nack: redelivered later)."""
        if self.policy.on_exhausted == "block":
            self._nack(record, failure.reason)
            return
        self.metrics.record_failures.labels(failure.reason).inc()
        seen = Attempts(0, failure)
        task = asyncio.get_running_loop().create_task(self._give_up_task(record, seen))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _give_up_task(self, record: Record, seen: Attempts) -> None:
        if not await self._give_up([record], lambda _r: seen):
            self._nack(record, "shutdown")

    async def _dead_letter(self, record: Record, seen: Attempts) -> bool:
        """Send to the dead-letter topic, retrying with backoff until it is persisted."""
        assert self.dead_letters is not None
        tries = 0
        while True:
            try:
                await self.dead_letters.send(record, seen.last, seen.count)
                self.last_dead_letter_error = ""
                return True
            except LambdaSinkError as exc:
                tries += 1
                self.metrics.dead_letter_errors.inc()
                self.last_dead_letter_error = str(exc)[:300]
                log.error(
                    "cannot dead-letter message %s (try %d), keeping it unacked: %s",
                    record.message_id,
                    tries,
                    exc,
                )
                if not await self._pause(self._backoff_s(tries)):
                    return False

    async def _save(self, counts: Mapping[str, Attempts]) -> bool:
        """Persist attempt counts before anything else happens to the records."""
        tries = 0
        while True:
            try:
                await self.attempts.save(counts)
                return True
            except LambdaSinkError as exc:
                tries += 1
                self.metrics.attempt_log_errors.inc()
                log.error("cannot persist attempt counts (try %d): %s", tries, exc)
                if not await self._pause(self._backoff_s(tries)):
                    return False

    async def _gate(self) -> bool | None:
        """Wait while the breaker is open. True: this call is its probe; None: stopping while
        open (a drain still sends what it flushed while the breaker is closed)."""
        while True:
            was_open = self.breaker.is_open
            if was_open and self._stopping:
                return None
            wait = self.breaker.acquire()
            if wait == 0:
                return was_open
            self._parked += 1
            try:
                await self._sleep(wait)
            finally:
                self._parked -= 1

    async def _pause(self, delay: float) -> bool:
        """A retry backoff that frees the invocation slot; False when stopping cut it short."""
        if self._stopping:
            return False
        self._parked += 1
        self._dispatch()
        try:
            await self._sleep(delay)
        finally:
            self._parked -= 1
        return not self._stopping

    async def _sleep(self, delay: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)

    def _backoff_s(self, attempt: int) -> float:
        initial = self.policy.retry_backoff_initial_ms / 1000
        most = self.policy.retry_backoff_max_ms / 1000
        return min(most, initial * (1 << min(max(attempt, 1) - 1, 20)))

    def _breaker_changed(self, before: State, state: State, reason: str) -> None:
        self.metrics.breaker_open.set(0 if state == "closed" else 1)
        self.metrics.breaker_transitions.labels(state).inc()
        if state == "open" and before == "closed":
            log.error("circuit breaker open, not receiving: %s", reason)
        elif state == "open":
            log.warning("circuit breaker probe failed, still open: %s", reason)
        elif state == "closed":
            log.info("circuit breaker closed: the function answers again; receiving")
            if self._progress is not None:
                self._progress.set()

    def _settle(self, batch: Batch[Record], *, ok: bool, reason: str = "") -> None:
        if ok:
            ack = self.source.ack
            for record in batch.items:
                ack(record)
            self.metrics.messages_acked.inc(len(batch.items))
            if len(self.attempts):
                keys = [_key(r) for r in batch.items]
                self.attempts.forget(keys)
                if self._blocked:
                    self._blocked.difference_update(keys)
                    self.metrics.records_blocked.set(len(self._blocked))
        else:
            for record in batch.items:
                self._nack(record, reason)

    def _ack(self, record: Record) -> None:
        self.source.ack(record)
        self.metrics.messages_acked.inc()

    def _nack(self, record: Record, reason: str) -> None:
        self.source.nack(record)
        self.metrics.messages_nacked.labels(reason).inc()

    def status(self) -> dict[str, object]:
        """What the operator shows: breaker state, where given-up records went, the in-flight
        limit."""
        opened = self.breaker.opened_at
        return {
            "breaker": {
                "state": self.breaker.state,
                "reason": self.breaker.reason,
                "openForSeconds": round(self._clock() - opened, 1) if opened else 0,
            },
            "deadLettered": self.metrics.records_dead_lettered.values(),
            "dropped": self.metrics.records_dropped.values(),
            "deadLetterError": self.last_dead_letter_error,
            "blocked": len(self._blocked),
            "acked": self.metrics.messages_acked.value(),
            "inFlight": {
                "limit": self.limiter.limit,
                "adaptive": self.limiter.adaptive,
                "min": self.limiter.min_limit,
                "max": self.limiter.max_limit,
                "current": self._busy(),
                "lastCut": self.limiter.last_cut_reason,
            },
            # 429s so far (retried or final): the operator's autoscaler holds while it grows
            "throttled": self.metrics.invoke_retries.values().get("throttled", 0)
            + self.metrics.invocations.values().get("throttled", 0),
        }

    # -- drain ----------------------------------------------------------------------------

    async def _drain(self) -> None:
        flushed = self.batcher.flush()
        if flushed:
            self._enqueue(flushed)
        deadline = self._clock() + self.drain_timeout_s
        log.info("draining: %d batches waiting, %d in flight", len(self._waiting), len(self._tasks))
        while self._waiting or self._tasks or self._side_tasks:
            self._dispatch()
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if self._tasks or self._side_tasks:
                await asyncio.wait(self._tasks | self._side_tasks, timeout=remaining)
        if self._tasks or self._waiting:
            log.warning(
                "drain timeout: nacking %d waiting batches, cancelling %d invocations",
                len(self._waiting),
                len(self._tasks),
            )
            while self._waiting:
                self._settle(self._waiting.popleft().batch, ok=False, reason="shutdown")
            tasks = list(self._tasks | self._side_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("drained")
