"""Attempt counts that survive a kill -9, a broker restart and a topic unload.

Pulsar's redelivery count lives in the broker's memory (it resets on an unload, a restart or a
reconnect) and its dead-letter policy ignores Exclusive and Failover subscriptions, so the
runtime keeps its own counts in a topic of the sink's namespace (`failurePolicy.attemptsTopic`,
default `<subscription>-lambdasink-attempts`):

- after a counted failure, before the record is retried or given up, one message carrying
  `{record key: [count, last failure]}` for the batch is *sent and acknowledged by the broker*
  (persisted in BookKeeper) — only then does the pipeline go on;
- every worker reads the whole topic at start-up (before it subscribes to the inputs) and tails
  it, so a record redelivered to another replica or to a restarted worker keeps its count;
- settled records are written as `{"forget": [keys]}` (batched, best effort: a count left behind
  for a record already acked is never looked up again, it only costs memory at start-up);
- a durable subscription (`lambdasink-retention`) that never acknowledges keeps the broker from
  trimming the topic's ledgers (readers alone hold no data), so a restart finds every count.

The message never moves: the original stays unacknowledged in its subscription, in order, and
is acknowledged only when it succeeded, was dead-lettered (its copy persisted first) or was
dropped by policy. Nothing is acknowledged on the strength of the counts alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pulsar

from .errors import PulsarError
from .failure import Attempts, Failure

log = logging.getLogger("lambdasink.attempts")

RETENTION_SUBSCRIPTION = "lambdasink-retention"
_FORGET_FLUSH_S = 5.0


class AttemptStore:
    """The pipeline's `AttemptLog`, backed by a Pulsar topic."""

    def __init__(self, client: pulsar.Client, topic: str, *, worker: str = "") -> None:
        self.topic = topic
        self._counts: dict[str, Attempts] = {}
        self._lock = threading.Lock()
        self._forgotten: list[str] = []
        self._closed = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attempts")
        try:
            # Created first: from now on the broker keeps every entry (see the module doc).
            retain_from_start(client, topic, RETENTION_SUBSCRIPTION)
            self._producer = client.create_producer(
                topic, producer_name=None, batching_enabled=False, send_timeout_millis=30000
            )
            self._reader = client.create_reader(topic, pulsar.MessageId.earliest)
            loaded = self._catch_up()
        except pulsar.PulsarException as exc:
            raise PulsarError(f"cannot open the attempts topic {topic}: {exc}") from exc
        log.info(
            "attempt counts from %s: %d entries read, %d records with failed attempts%s",
            topic,
            loaded,
            len(self._counts),
            f" ({worker})" if worker else "",
        )
        self._tail = threading.Thread(target=self._follow, name="attempts-tail", daemon=True)
        self._tail.start()

    # -- AttemptLog -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._counts)

    def lookup(self, key: str) -> Attempts | None:
        return self._counts.get(key)

    async def save(self, entries: Mapping[str, Attempts]) -> None:
        doc: dict[str, Any] = {
            "attempts": {k: [a.count, a.last.as_dict()] for k, a in entries.items()}
        }
        forgotten = self._take_forgotten()
        if forgotten:
            doc["forget"] = forgotten
        data = json.dumps(doc, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._producer.send, data)
        except pulsar.PulsarException as exc:
            with self._lock:
                self._forgotten.extend(forgotten)
            raise PulsarError(f"cannot persist attempt counts to {self.topic}: {exc}") from exc
        with self._lock:
            self._counts.update(entries)

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                if self._counts.pop(key, None) is not None:
                    self._forgotten.append(key)

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._flush_forgotten()
        self._tail.join(timeout=2)
        for closable in (self._reader, self._producer):
            try:
                closable.close()
            except pulsar.PulsarException as exc:
                log.debug("close failed: %s", exc)
        self._pool.shutdown(wait=False)

    # -- internals ------------------------------------------------------------------------

    def _take_forgotten(self) -> list[str]:
        with self._lock:
            out, self._forgotten = self._forgotten, []
        return out

    def _catch_up(self) -> int:
        n = 0
        while self._reader.has_message_available():
            self._apply(self._reader.read_next(10000).data())
            n += 1
        return n

    def _follow(self) -> None:
        """Apply what other workers write; flush forget entries now and then."""
        idle = 0.0
        while not self._closed.is_set():
            try:
                msg = self._reader.read_next(500)
            except pulsar.Timeout:
                idle += 0.5
                if idle >= _FORGET_FLUSH_S:
                    idle = 0.0
                    self._flush_forgotten()
                continue
            except pulsar.PulsarException as exc:
                if self._closed.is_set():
                    return
                log.warning("reading %s failed: %s", self.topic, exc)
                self._closed.wait(1.0)
                continue
            self._apply(msg.data())

    def _flush_forgotten(self) -> None:
        forgotten = self._take_forgotten()
        if not forgotten:
            return
        try:
            self._producer.send(json.dumps({"forget": forgotten}).encode())
        except pulsar.PulsarException as exc:
            log.debug("forget entries not written: %s", exc)

    def _apply(self, data: bytes) -> None:
        try:
            doc = json.loads(data)
        except ValueError:
            log.warning("ignoring an unreadable entry in %s", self.topic)
            return
        if not isinstance(doc, dict):
            return
        with self._lock:
            for key, value in (doc.get("attempts") or {}).items():
                try:
                    count = int(value[0])
                    last = Failure.from_dict(value[1] if isinstance(value[1], dict) else {})
                except (TypeError, ValueError, IndexError):
                    continue
                known = self._counts.get(key)
                if known is None or known.count < count:
                    self._counts[key] = Attempts(count, last)
            for key in doc.get("forget") or ():
                self._counts.pop(key, None)


def retain_from_start(client: pulsar.Client, topic: str, subscription: str) -> None:
    """Create a durable subscription at the earliest position (if missing) and leave it: its
    unacknowledged backlog keeps the broker from trimming or deleting the topic's data."""
    consumer = client.subscribe(
        topic,
        subscription,
        consumer_type=pulsar.ConsumerType.Shared,
        receiver_queue_size=1,
        initial_position=pulsar.InitialPosition.Earliest,
    )
    consumer.close()
