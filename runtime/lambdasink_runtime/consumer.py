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
#: Schema.Type of Pulsar's wire protocol (PulsarApi.proto), as the C++ client reports it; the
#: Python enum names only some of them. -1 is the C++ client's BYTES.
_WIRE_SCHEMA_TYPES = {
    -1: "BYTES",
    0: "NONE",
    1: "STRING",
    2: "JSON",
    3: "PROTOBUF",
    4: "AVRO",
    5: "BOOLEAN",
    6: "INT8",
    7: "INT16",
    8: "INT32",
    9: "INT64",
    10: "FLOAT",
    11: "DOUBLE",
    12: "DATE",
    13: "TIME",
    14: "TIMESTAMP",
    15: "KEY_VALUE",
    16: "INSTANT",
    17: "LOCAL_DATE",
    18: "LOCAL_TIME",
    19: "LOCAL_DATE_TIME",
    20: "PROTOBUF_NATIVE",
}


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
        self._latest_schemas: dict[str, SchemaInfo | None] = {}
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
        # Per message, so: the schema is looked up first and the (frozen) Record built once, and
        # the C++ message is read directly (pulsar.Message's accessors only delegate to it).
        raw = msg._message
        topic = raw.topic_name()
        version = _schema_version(msg)
        schema: SchemaInfo | None = None
        error: LambdaSinkError | None = None
        try:
            if version is None:
                schema = self._latest(topic)
            elif self._registry is not None:
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
            properties=dict(raw.properties()),
            event_time_ms=raw.event_timestamp() or None,
            publish_time_ms=raw.publish_timestamp() or None,
            schema=schema,
            handle=msg,
        )
        return record if error is None else Rejected(record, error)

    def _latest(self, topic: str) -> SchemaInfo | None:
        """The schema for a message without a schema version (the broker's REST producer sends
        such messages, so do clients writing raw bytes to a topic that has a schema): the
        topic's current schema, as the reference's AUTO_CONSUME decodes them; None when the
        topic has no schema. Asked once per topic over the client's own broker connection, so
        schemaless topics need no admin URL."""
        if topic in self._latest_schemas:  # per message: no regex on the hot path
            return self._latest_schemas[topic]
        base = _PARTITION_SUFFIX.sub("", topic)
        if base in self._latest_schemas:
            self._latest_schemas[topic] = self._latest_schemas[base]
            return self._latest_schemas[base]
        schema: SchemaInfo | None = None
        try:
            # The public wrapper does not expose the C++ client's schema lookup; -1 = latest.
            info = self._client._client.get_schema_info(base, -1)
        except pulsar.TopicNotFound:
            pass  # what the broker answers for a topic without a schema
        except pulsar.PulsarException as exc:
            raise PulsarError(f"cannot look up the schema of {base}: {exc}") from exc
        else:
            kind = _WIRE_SCHEMA_TYPES.get(int(info.schema_type()), "UNKNOWN")
            if kind != "NONE":
                schema = SchemaInfo(type=kind, definition=info.schema(), name=base.split("/")[-1])
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
