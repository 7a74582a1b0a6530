"""The Pulsar side (the only module importing `pulsar`): subscribe, receive → Record, ack, nack.

The client's calls are blocking; the pipeline runs `receive` on one dedicated thread and calls
`ack`/`nack` (individual, never cumulative: Shared and Key_Shared forbid it) from its loop.
A message whose writer schema cannot be fetched is handed back as `Rejected` so the pipeline
negatively acknowledges it (redelivered: the schema registry may answer later).

Receive, convert and ack are the runtime's hottest path, so: one topic is subscribed by name
(a one-element list would make the C++ client run a multi-topic consumer, about twice the CPU
per message, acks included); the C++ consumer (`_pulsar`) is called directly, one blocking
`receive` for the first message, then `batch_receive` for what is queued (one crossing and one
GIL release per batch, not per message); no `pulsar.Message` wrappers (the raw message is the
ack/nack handle). bench/receive_ab.py measures it. Those private internals are reached only
through `pulsar_compat`, which falls back to the public API when they do not fit.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pulsar

from .errors import LambdaSinkError, PulsarError
from .pulsar_compat import ClientAccess
from .record import Record, Rejected, SchemaInfo

if TYPE_CHECKING:
    from .config import PulsarAuth, PulsarConfig
    from .schemas import SchemaRegistry

log = logging.getLogger("lambdasink.consumer")

_CONSUMER_TYPES = {
    "Exclusive": pulsar.ConsumerType.Exclusive,
    "Shared": pulsar.ConsumerType.Shared,
    "Failover": pulsar.ConsumerType.Failover,
    "Key_Shared": pulsar.ConsumerType.KeyShared,
}
_POSITIONS = {
    "Earliest": pulsar.InitialPosition.Earliest,
    "Latest": pulsar.InitialPosition.Latest,
}
_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")
#: Most messages one `batch_receive` hands over (capped by the receiver queue size, as the C++
#: client would otherwise do with a warning). It returns at once when that many are queued, else
#: after `_BATCH_RECEIVE_WAIT_MS` with what is queued; 0 ms would mean "wait for a full batch".
BATCH_RECEIVE_MAX = 100
_BATCH_RECEIVE_WAIT_MS = 1


def build_authentication(auth: PulsarAuth) -> pulsar.Authentication | None:
    """The pulsar Authentication for `PulsarConfig.auth` (kind none|token|oauth2|tls)."""
    if auth.kind == "token":
        if auth.token_file:
            # A supplier is re-read on every (re)connect, so a rotated Secret is picked up.
            return pulsar.AuthenticationToken(auth.read_token)
        return pulsar.AuthenticationToken(auth.token)
    if auth.kind == "oauth2":
        params = {
            "type": "client_credentials",
            "issuer_url": auth.issuer_url,
            "private_key": auth.private_key,
            "audience": auth.audience,
            "scope": auth.scope,
        }
        return pulsar.AuthenticationOauth2(json.dumps({k: v for k, v in params.items() if v}))
    if auth.kind == "tls":
        return pulsar.AuthenticationTLS(auth.cert_file, auth.key_file)
    return None


def client_kwargs(cfg: PulsarConfig) -> dict[str, Any]:
    """Arguments for `pulsar.Client` besides the service URL (pure, unit-testable)."""
    auth = cfg.auth
    kwargs: dict[str, Any] = {"authentication": build_authentication(auth)}
    if auth.trust_certs_file:
        kwargs["tls_trust_certs_file_path"] = auth.trust_certs_file
    if auth.allow_insecure_connection:
        kwargs["tls_allow_insecure_connection"] = True
    if auth.hostname_verification:
        kwargs["tls_validate_hostname"] = True
    return kwargs


class PulsarSource:
    """A subscribed consumer that yields `Record`s; implements the pipeline's `Source`."""

    def __init__(
        self,
        cfg: PulsarConfig,
        registry: SchemaRegistry | None = None,
        *,
        public_api: bool | None = None,
    ) -> None:
        """`public_api`: True forces pulsar-client's public API (see `pulsar_compat`)."""
        self._registry = registry
        self._schemas: dict[tuple[str, int], SchemaInfo] = {}
        self._latest_schemas: dict[str, SchemaInfo | None] = {}
        try:
            self._client = pulsar.Client(
                cfg.service_url, logger=logging.getLogger("lambdasink.pulsar"), **client_kwargs(cfg)
            )
            self._consumer = self._client.subscribe(**subscribe_kwargs(cfg))
        except pulsar.PulsarException as exc:
            self._close_client()
            raise PulsarError(f"cannot subscribe on {cfg.service_url}: {exc}") from exc
        #: The C++ consumer behind the wrapper (its calls take and return raw messages), or the
        #: wrapper itself when pulsar_compat falls back to the public API.
        self._access = ClientAccess.open(self._client, self._consumer, registry, public=public_api)
        self._raw = self._access.consumer
        self._batch_max = batch_receive_max(cfg)
        self._leftovers: deque[Record | Rejected] = deque()
        self._closers: list[Callable[[], None]] = []
        self.connected = True

    @property
    def client(self) -> pulsar.Client:
        """The client, shared with the attempt log and the dead-letter producer."""
        return self._client

    def close_before_client(self, close: Callable[[], None]) -> None:
        """Run `close` when this source closes, after the consumer and before the client (the
        attempt log and the dead-letter producer use the client)."""
        self._closers.append(close)

    # -- Source protocol ------------------------------------------------------------------

    def receive(self, max_records: int, timeout_s: float) -> list[Record | Rejected]:
        """Block up to `timeout_s` for a first message, then take what is already queued.

        Messages the client handed over beyond `max_records` are kept, converted, and returned
        first by the next call (never dropped: they are received, hence unacked, already).
        """
        out: list[Record | Rejected] = []
        left = self._leftovers
        while left and len(out) < max_records:
            out.append(left.popleft())
        if len(out) >= max_records:
            return out
        consumer = self._raw
        if not out:
            try:
                first = consumer.receive(max(1, int(timeout_s * 1000)))
            except pulsar.Timeout:
                return out
            except pulsar.PulsarException as exc:
                raise PulsarError(f"receive failed: {exc}") from exc
            self._convert_into((first,), out)
        batch = self._batch_max
        while len(out) < max_records:
            try:
                msgs = consumer.batch_receive()
            except pulsar.PulsarException:
                break  # a real failure: the next blocking receive reports it
            room = max_records - len(out)
            if len(msgs) <= room:
                self._convert_into(msgs, out)
            else:
                self._convert_into(msgs[:room], out)
                self._convert_into(msgs[room:], left)
            if len(msgs) < batch:
                break  # the queue ran dry: this call already waited for more
        return out

    def ack(self, record: Record) -> None:
        try:
            self._raw.acknowledge(record.handle)
        except pulsar.PulsarException as exc:
            # The broker will redeliver it: at-least-once still holds.
            log.warning("ack failed for %s: %s", record.message_id, exc)

    def nack(self, record: Record) -> None:
        try:
            self._raw.negative_acknowledge(record.handle)
        except pulsar.PulsarException as exc:
            log.warning("nack failed for %s: %s", record.message_id, exc)

    def close(self) -> None:
        if self._leftovers:
            # Unacked: closing the consumer makes the broker redeliver them.
            log.info("closing with %d received messages not handed over", len(self._leftovers))
            self._leftovers.clear()
        try:
            self._consumer.close()
        except pulsar.PulsarException as exc:
            log.warning("consumer close failed: %s", exc)
        for close in self._closers:
            close()
        self._closers.clear()
        self._close_client()
        self.connected = False

    # -- internals ------------------------------------------------------------------------

    def _close_client(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except pulsar.PulsarException as exc:
                log.warning("client close failed: %s", exc)

    def _convert_into(
        self, msgs: Iterable[Any], out: list[Record | Rejected] | deque[Record | Rejected]
    ) -> None:
        """Append each raw client message as a `Record` (or `Rejected`), in order.

        Per message, so: the schema is looked up (in the per-topic caches) before the frozen
        Record is built, and built once.
        """
        append = out.append
        registry = self._registry
        schema_version = self._access.schema_version
        for raw in msgs:
            topic = raw.topic_name()
            version = schema_version(raw)
            schema: SchemaInfo | None = None
            error: LambdaSinkError | None = None
            try:
                if version < 0:
                    schema = self._latest(topic)
                elif registry is not None:
                    schema = self._schema(topic, version)
            except LambdaSinkError as exc:
                error = exc
            mid = raw.message_id()
            record = Record(
                topic=topic,
                value=raw.data() or b"",
                ledger_id=mid.ledger_id(),
                entry_id=mid.entry_id(),
                partition=mid.partition(),
                batch_index=mid.batch_index(),
                key=raw.partition_key() or None,
                properties=raw.properties(),  # a new dict per call (pybind11 copies the map)
                event_time_ms=raw.event_timestamp() or None,
                publish_time_ms=raw.publish_timestamp() or None,
                schema=schema,
                handle=raw,
            )
            append(record if error is None else Rejected(record, error))

    def _latest(self, topic: str) -> SchemaInfo | None:
        """The schema for a message without a schema version (the broker's REST producer sends
        such messages, so do clients writing raw bytes to a topic that has a schema): the
        topic's current schema, as the reference's AUTO_CONSUME decodes them; None when the
        topic has no schema. Asked once per topic over the client's own broker connection, so
        schemaless topics need no admin URL (the public-API fallback asks the admin URL)."""
        if topic in self._latest_schemas:  # per message: no regex on the hot path
            return self._latest_schemas[topic]
        base = _PARTITION_SUFFIX.sub("", topic)
        if base in self._latest_schemas:
            self._latest_schemas[topic] = self._latest_schemas[base]
            return self._latest_schemas[base]
        schema = self._access.latest_schema(base)
        self._latest_schemas[base] = self._latest_schemas[topic] = schema
        return schema

    def _schema(self, topic: str, version: int) -> SchemaInfo:
        cached = self._schemas.get((topic, version))  # per message: no regex on the hot path
        if cached is None:
            base = _PARTITION_SUFFIX.sub("", topic)
            cached = self._schemas.get((base, version))
            if cached is None:
                assert self._registry is not None
                cached = self._registry.get(base, version)
                self._schemas[(base, version)] = cached
            self._schemas[(topic, version)] = cached
        return cached


def batch_receive_max(cfg: PulsarConfig) -> int:
    """Most messages one `batch_receive` hands over: the C++ client caps it at the queue size."""
    return min(BATCH_RECEIVE_MAX, cfg.receiver_queue_size)


def subscribe_kwargs(cfg: PulsarConfig) -> dict[str, Any]:
    """Arguments for `pulsar.Client.subscribe` (pure, so it is unit-testable)."""
    topic: Any
    if cfg.topics_pattern:
        topic = re.compile(cfg.topics_pattern)
    elif len(cfg.topics) == 1:
        # By name, not as a one-element list: a list makes the C++ client run a multi-topic
        # consumer (a second queue and hand-off per message), twice the client CPU per message.
        # A partitioned topic still gets its per-partition consumers.
        topic = cfg.topics[0]
    else:
        topic = list(cfg.topics)
    kwargs: dict[str, Any] = {
        "topic": topic,
        "subscription_name": cfg.subscription_name,
        "consumer_type": _CONSUMER_TYPES[cfg.subscription_type],
        "initial_position": _POSITIONS[cfg.initial_position],
        "receiver_queue_size": cfg.receiver_queue_size,
        "negative_ack_redelivery_delay_ms": cfg.negative_ack_redelivery_delay_ms,
        "batch_receive_policy": pulsar.ConsumerBatchReceivePolicy(
            batch_receive_max(cfg), -1, _BATCH_RECEIVE_WAIT_MS
        ),
    }
    # No `dead_letter_policy`: the failure policy (attempts.py, deadletter.py) replaces it, on
    # every subscription type and with counts that survive restarts.
    return kwargs
