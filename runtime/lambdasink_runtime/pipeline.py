"""consumer → serializer → batcher → invoker → ack/nack: the only place that acknowledges.

The pipeline sees the Pulsar side only through `Source` and Lambda only through `Invoke`, so
its ack/nack decisions are unit-tested with small in-memory implementations of both.

Rules it keeps:
- a record is acked only after the invocation carrying it succeeded; every failure (serialize,
  schema lookup, oversize, invoke after retries, shutdown timeout) ends in a nack;
- at most `max_in_flight` invocations at once; closed batches wait in a short queue and the
  receiver stops pulling while that queue is full (bounded memory, backpressure);
- `ordered=True` (Failover, Key_Shared, Exclusive): a batch is not dispatched while an earlier
  batch sharing an ordering key is in flight or still waiting, so invocations for one key happen
  in receive order, retries included. The ordering key is the message key; keyless messages
  are ordered per (topic, partition). Batches with disjoint keys still run in parallel;
- a 413 on a multi-record batch splits it in halves (in order) and retries each half; a
  single record that still gets a 413 is nacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .batcher import Batch, Batcher
from .errors import InvokeError, LambdaSinkError, PayloadTooLargeError, failure_reason
from .metrics import Metrics
from .record import Record, Rejected
from .serializer import Serializer

if TYPE_CHECKING:
    from .config import PulsarConfig, SinkConfig

log = logging.getLogger("lambdasink.pipeline")

ORDERED_SUBSCRIPTIONS = frozenset({"Failover", "Key_Shared", "Exclusive"})


class Source(Protocol):
    """The Pulsar side as the pipeline needs it. `receive` blocks and runs on its own thread."""

    def receive(self, max_records: int, timeout_s: float) -> Sequence[Record | Rejected]: ...

    def ack(self, record: Record) -> None: ...

    def nack(self, record: Record) -> None: ...

    def close(self) -> None: ...


class Invoke(Protocol):
    """The Lambda side: returns on success, raises `InvokeError` once its retries are spent."""

    async def invoke(self, payload: bytes) -> None: ...


Serialize = Callable[[Record], bytes]


@dataclass(slots=True)
class _Pending:
    batch: Batch[Record]
    keys: frozenset[Hashable]


def _ordering_key(record: Record) -> Hashable:
    return record.key if record.key is not None else (None, record.topic, record.partition)


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
    ) -> None:
        self.source = source
        self.serialize = serialize
        self.batcher = batcher
        self.invoker = invoker
        self.metrics = metrics or Metrics()
        self.max_in_flight = max(1, max_in_flight)
        self.ordered = ordered
        self.drain_timeout_s = drain_timeout_s
        self.receive_timeout_s = receive_timeout_s
        self._clock = clock
        self.receive_max = 1000
        self.max_waiting = self.max_in_flight
        self._waiting: deque[_Pending] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight_keys: Counter[Hashable] = Counter()
        self._progress: asyncio.Event | None = None
        self._stopping = False
        self.draining = False
        self.running = False
        #: Clock time of the receive loop's last turn; /healthz uses it to detect a stuck loop.
        self.heartbeat = clock()

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
        )

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; `run` then drains and returns. Safe to call from a signal handler."""
        self._stopping = True
        self.draining = True
        if self._progress is not None:
            self._progress.set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        receiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receive")
        self.running = True
        try:
            while not self._stopping:
                self.heartbeat = self._clock()
                if len(self._waiting) >= self.max_waiting:
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
        self.metrics.messages_received.inc()
        if isinstance(item, Rejected):
            log.warning("message %s rejected: %s", item.record.message_id, item.error)
            self._nack(item.record, "schema")
            return
        record = item
        try:
            part = self.serialize(record)
        except Exception as exc:  # noqa: BLE001 - any serializer failure means nack → DLQ
            log.warning(
                "message %s on %s cannot be serialized (%s: %s); nacked",
                record.message_id,
                record.topic,
                type(exc).__name__,
                exc,
            )
            self._nack(record, "serialization")
            return
        try:
            closed = self.batcher.add(record, part)
        except PayloadTooLargeError as exc:
            self.metrics.oversize.inc()
            log.error(
                "message %s on %s is never sent: %s; nacked (dead-letter policy applies)",
                record.message_id,
                record.topic,
                exc,
            )
            self._nack(record, "oversize")
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

    def _dispatch(self) -> None:
        if not self._waiting or len(self._tasks) >= self.max_in_flight:
            return
        if not self.ordered:
            while self._waiting and len(self._tasks) < self.max_in_flight:
                self._start(self._waiting.popleft())
            return
        held: set[Hashable] = set()  # keys of earlier batches that are still waiting
        kept: deque[_Pending] = deque()
        while self._waiting:
            pending = self._waiting.popleft()
            blocked = len(self._tasks) >= self.max_in_flight or any(
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
        self.metrics.batch_records.observe(len(batch))
        self.metrics.batch_bytes.observe(batch.size)
        try:
            await self.invoker.invoke(batch.payload)
        except asyncio.CancelledError:
            self._settle(batch, ok=False, reason="shutdown")
            raise
        except InvokeError as err:
            if err.status == 413 and len(batch) > 1:
                log.warning(
                    "payload of %d records (%d bytes) refused as too large (413); "
                    "splitting in halves",
                    len(batch),
                    batch.size,
                )
                first, second = batch.split()
                try:
                    await self._deliver(first)
                except asyncio.CancelledError:
                    self._settle(second, ok=False, reason="shutdown")
                    raise
                await self._deliver(second)
                return
            reason = failure_reason(err)
            log.warning("invocation of %d records failed (%s): %s; nacked", len(batch), reason, err)
            self._settle(batch, ok=False, reason=reason)
            return
        except Exception as exc:  # noqa: BLE001 - an invoker bug must still end in nacks
            log.error("invocation raised %s: %s; nacked", type(exc).__name__, exc)
            self._settle(batch, ok=False, reason="internal")
            return
        self._settle(batch, ok=True)

    def _settle(self, batch: Batch[Record], *, ok: bool, reason: str = "") -> None:
        if ok:
            ack = self.source.ack
            for record in batch.items:
                ack(record)
            self.metrics.messages_acked.inc(len(batch.items))
        else:
            for record in batch.items:
                self._nack(record, reason)

    def _nack(self, record: Record, reason: str) -> None:
        self.source.nack(record)
        self.metrics.messages_nacked.inc(1, reason)

    # -- drain ----------------------------------------------------------------------------

    async def _drain(self) -> None:
        flushed = self.batcher.flush()
        if flushed:
            self._enqueue(flushed)
        deadline = self._clock() + self.drain_timeout_s
        log.info("draining: %d batches waiting, %d in flight", len(self._waiting), len(self._tasks))
        while self._waiting or self._tasks:
            self._dispatch()
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=remaining)
        if self._tasks or self._waiting:
            log.warning(
                "drain timeout: nacking %d waiting batches, cancelling %d invocations",
                len(self._waiting),
                len(self._tasks),
            )
            while self._waiting:
                self._settle(self._waiting.popleft().batch, ok=False, reason="shutdown")
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("drained")
