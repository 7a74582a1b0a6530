"""The Pulsar side (the only module importing `pulsar`): subscribe, receive → Record, ack, nack.

The client's calls are blocking; the pipeline runs `receive` on one dedicated thread and calls
`ack`/`nack` (individual, never cumulative: Shared and Key_Shared forbid it) from its loop.
A message whose writer schema cannot be fetched is handed back as `Rejected` so the pipeline
negatively acknowledges it (the dead-letter policy then applies).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

import pulsar

from .errors import LambdaSinkError, PulsarError
from .pipeline import Rejected
from .record import Record, SchemaInfo

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

    def __init__(self, cfg: PulsarConfig, registry: SchemaRegistry | None = None) -> None:
        self._registry = registry
        self._schemas: dict[tuple[str, int], SchemaInfo] = {}
        try:
            self._client = pulsar.Client(
                cfg.service_url, logger=logging.getLogger("lambdasink.pulsar"), **client_kwargs(cfg)
            )
            self._consumer = self._client.subscribe(**subscribe_kwargs(cfg))
        except pulsar.PulsarException as exc:
            self._close_client()
            raise PulsarError(f"cannot subscribe on {cfg.service_url}: {exc}") from exc
        self.connected = True

    # -- Source protocol ------------------------------------------------------------------

    def receive(self, max_records: int, timeout_s: float) -> list[Record | Rejected]:
        """Block up to `timeout_s` for a first message, then take what is already queued."""
        try:
            first = self._consumer.receive(timeout_millis=max(1, int(timeout_s * 1000)))
        except pulsar.Timeout:
            return []
        except pulsar.PulsarException as exc:
            raise PulsarError(f"receive failed: {exc}") from exc
        out = [self._convert(first)]
        while len(out) < max_records:
            try:
                msg = self._consumer.receive(timeout_millis=0)
            except pulsar.Timeout:
                break
            except pulsar.PulsarException:
                break  # a real failure shows up on the next blocking receive
            out.append(self._convert(msg))
        return out

    def ack(self, record: Record) -> None:
        try:
            self._consumer.acknowledge(record.handle)
        except pulsar.PulsarException as exc:
            # The broker will redeliver it: at-least-once still holds.
            log.warning("ack failed for %s: %s", record.message_id, exc)

    def nack(self, record: Record) -> None:
        try:
            self._consumer.negative_acknowledge(record.handle)
        except pulsar.PulsarException as exc:
            log.warning("nack failed for %s: %s", record.message_id, exc)

    def close(self) -> None:
        try:
            self._consumer.close()
        except pulsar.PulsarException as exc:
            log.warning("consumer close failed: %s", exc)
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

    def _convert(self, msg: pulsar.Message) -> Record | Rejected:
        mid = msg.message_id()
        topic = msg.topic_name()
        record = Record(
            topic=topic,
            value=msg.data() or b"",
            ledger_id=mid.ledger_id(),
            entry_id=mid.entry_id(),
            partition=mid.partition(),
            batch_index=mid.batch_index(),
            key=msg.partition_key() or None,
            properties=dict(msg.properties()),
            event_time_ms=msg.event_timestamp() or None,
            publish_time_ms=msg.publish_timestamp() or None,
            handle=msg,
        )
        version = _schema_version(msg)
        if version is None or self._registry is None:
            return record
        try:
            schema = self._schema(topic, version)
        except LambdaSinkError as exc:
            return Rejected(record, exc)
        return _with_schema(record, schema)

    def _schema(self, topic: str, version: int) -> SchemaInfo:
        base = _PARTITION_SUFFIX.sub("", topic)
        key = (base, version)
        cached = self._schemas.get(key)
        if cached is None:
            assert self._registry is not None
            cached = self._registry.get(base, version)
            self._schemas[key] = cached
        return cached


def _with_schema(record: Record, schema: SchemaInfo) -> Record:
    return Record(
        topic=record.topic,
        value=record.value,
        ledger_id=record.ledger_id,
        entry_id=record.entry_id,
        partition=record.partition,
        batch_index=record.batch_index,
        key=record.key,
        properties=record.properties,
        event_time_ms=record.event_time_ms,
        publish_time_ms=record.publish_time_ms,
        schema=schema,
        handle=record.handle,
    )


def _schema_version(msg: pulsar.Message) -> int | None:
    raw = msg._message  # the C++ message: exposes the version as an integer
    version = raw.int_schema_version() if hasattr(raw, "int_schema_version") else None
    if version is None:
        data = msg.schema_version()
        if not data:
            return None
        blob = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        version = int.from_bytes(blob, "big", signed=True)
    return None if version < 0 else int(version)


def subscribe_kwargs(cfg: PulsarConfig) -> dict[str, Any]:
    """Arguments for `pulsar.Client.subscribe` (pure, so it is unit-testable)."""
    topic: Any = re.compile(cfg.topics_pattern) if cfg.topics_pattern else list(cfg.topics)
    kwargs: dict[str, Any] = {
        "topic": topic,
        "subscription_name": cfg.subscription_name,
        "consumer_type": _CONSUMER_TYPES[cfg.subscription_type],
        "initial_position": _POSITIONS[cfg.initial_position],
        "receiver_queue_size": cfg.receiver_queue_size,
        "negative_ack_redelivery_delay_ms": cfg.negative_ack_redelivery_delay_ms,
    }
    if cfg.max_redeliver_count > 0:
        kwargs["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
            max_redeliver_count=cfg.max_redeliver_count,
            dead_letter_topic=cfg.dead_letter_topic or None,
        )
    return kwargs
