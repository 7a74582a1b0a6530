"""Every use of pulsar-client's private internals, checked at import, with the public API behind.

Why private at all (consumer's docstring, bench/receive_ab.py): calling the C++ consumer behind
`pulsar.Consumer` directly spares a `pulsar.Message` wrapper per message, and the wrapper does
not offer the C++ client's schema lookup, which answers a topic's latest schema over the
broker connection. Internals can change in any release, so at import each one is checked: it
exists and pybind11 reports the signature we call. If one fails, or `LAMBDASINK_PULSAR_API` is
`public`, the consumer uses only the public API: `pulsar.Consumer.receive/batch_receive/
acknowledge/negative_acknowledge`, `pulsar.Message` accessors, and for a message without a
schema version the topic's latest schema from the admin REST registry (`schemas.py`), or no
schema at all when there is no registry, said once in the log. So on the fallback, such
messages depend on the admin URL (the fast path asks over the broker connection): when the
registry fails they are rejected, hence nacked, like any failed schema lookup. The runtime's
integration tests pass on the fallback (LAMBDASINK_PULSAR_API=public) except the one that
checks exactly that independence (test_messages_without_schema_version_need_no_admin_url).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pulsar

from .errors import PulsarError
from .record import SchemaInfo

if TYPE_CHECKING:
    from .schemas import SchemaRegistry

log = logging.getLogger("lambdasink.consumer")

#: `public` forces the public API (for a pulsar-client whose internals changed in a way the
#: import check cannot see); anything else lets the check decide.
API_ENV = "LAMBDASINK_PULSAR_API"

#: Schema.Type of Pulsar's wire protocol (PulsarApi.proto), as the C++ client reports it; the
#: Python enum names only some of them. -1 is the C++ client's BYTES.
WIRE_SCHEMA_TYPES = {
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

#: What the fast path calls: (class in _pulsar, method, the rest of the pybind11 signature it
#: must show after "method(self: _pulsar.Class", as a regex).
_SHAPES = [
    ("Consumer", "receive", r", arg0: [\w.]+\) -> _pulsar\.Message"),
    ("Consumer", "batch_receive", r"\) -> \w+\[_pulsar\.Message\]"),
    ("Consumer", "acknowledge", r", arg0: _pulsar\.Message\)"),
    ("Consumer", "negative_acknowledge", r", arg0: _pulsar\.Message\)"),
    ("Client", "get_schema_info", r", arg0: str, arg1: [\w.]+\) -> "),
    ("SchemaInfo", "schema_type", r"\) -> "),
    ("SchemaInfo", "schema", r"\) -> str"),
    ("Message", "int_schema_version", r"\) -> int"),
    ("Message", "topic_name", r"\) -> str"),
    ("Message", "data", r"\) -> bytes"),
    ("Message", "message_id", r"\) -> _pulsar\.MessageId"),
    ("Message", "partition_key", r"\) -> str"),
    ("Message", "properties", r"\) -> "),
    ("Message", "event_timestamp", r"\) -> int"),
    ("Message", "publish_timestamp", r"\) -> int"),
]


def private_api_problem() -> str | None:
    """Why this pulsar-client's internals do not fit the fast path, or None when they do."""
    try:
        import _pulsar  # noqa: PLC0415 - inside the check: its absence is a finding, not a crash
    except ImportError as exc:
        return f"no _pulsar module ({exc})"
    for cls_name, method, rest in _SHAPES:
        cls = getattr(_pulsar, cls_name, None)
        func = getattr(cls, method, None)
        if not callable(func):
            return f"_pulsar.{cls_name}.{method} is missing"
        shape = rf"(?<!\w){method}\(self: _pulsar\.{cls_name}{rest}"
        if not re.search(shape, func.__doc__ or ""):
            return f"_pulsar.{cls_name}.{method} has another signature than expected"
    return None


#: The import-time capability check; None means the fast path may be used.
PRIVATE_API_PROBLEM = private_api_problem()


def bytes_version(msg: Any) -> int:
    """A message's schema version from the public `schema_version()` (8 bytes big-endian, as a
    str of one char per byte); -1 when it has none."""
    data = msg.schema_version()
    if not data:
        return -1
    blob = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    return int.from_bytes(blob, "big", signed=True)


class ClientAccess:
    """How one consumer reaches the client: the C++ objects (fast) or the public wrappers.

    `consumer` has receive(timeout_ms) / batch_receive() / acknowledge(msg) /
    negative_acknowledge(msg); the messages it returns have the `pulsar.Message` accessors and
    are the handles to ack and nack with. `schema_version(msg)` is -1 for none.
    """

    def __init__(
        self,
        consumer: Any,
        schema_version: Callable[[Any], int],
        latest: Callable[[str], SchemaInfo | None],
        *,
        private: bool,
    ) -> None:
        self.consumer = consumer
        self.schema_version = schema_version
        self.latest_schema = latest
        self.private = private

    @classmethod
    def open(
        cls,
        client: pulsar.Client,
        consumer: pulsar.Consumer,
        registry: SchemaRegistry | None,
        *,
        public: bool | None = None,
    ) -> ClientAccess:
        """The fast path when the internals fit, else the public API (`public`: force it;
        None: the `LAMBDASINK_PULSAR_API` environment variable decides)."""
        problem = PRIVATE_API_PROBLEM
        if public:
            problem = "asked for by the caller"
        elif public is None and os.environ.get(API_ENV, "").strip().lower() == "public":
            problem = f"{API_ENV}=public"
        raw_consumer = getattr(consumer, "_consumer", None)
        raw_client = getattr(client, "_client", None)
        if problem is None:
            import _pulsar  # noqa: PLC0415 - only when the check found it

            if not isinstance(raw_consumer, _pulsar.Consumer):
                problem = "pulsar.Consumer no longer wraps a _pulsar.Consumer as _consumer"
            elif not isinstance(raw_client, _pulsar.Client):
                problem = "pulsar.Client no longer wraps a _pulsar.Client as _client"
            else:
                return cls(
                    raw_consumer,
                    _pulsar.Message.int_schema_version,
                    lambda topic: _client_latest(raw_client, topic),
                    private=True,
                )
        log.info("pulsar-client %s: public API only (%s)", _version(), problem)
        if registry is None:
            return cls(consumer, bytes_version, _no_latest(), private=False)
        return cls(consumer, bytes_version, registry.latest, private=False)


def _client_latest(raw_client: Any, topic: str) -> SchemaInfo | None:
    """The topic's latest schema over the client's broker connection; None when it has none."""
    try:
        info = raw_client.get_schema_info(topic, -1)  # -1: the latest version
    except pulsar.TopicNotFound:
        return None  # what the broker answers for a topic without a schema
    except pulsar.PulsarException as exc:
        raise PulsarError(f"cannot look up the schema of {topic}: {exc}") from exc
    kind = WIRE_SCHEMA_TYPES.get(int(info.schema_type()), "UNKNOWN")
    if kind == "NONE":
        return None
    return SchemaInfo(type=kind, definition=info.schema(), name=topic.rsplit("/", maxsplit=1)[-1])


def _no_latest() -> Callable[[str], SchemaInfo | None]:
    """Without the fast path nor an admin URL, messages without a schema version go as bytes."""
    told: set[str] = set()

    def latest(topic: str) -> SchemaInfo | None:
        if topic not in told:
            told.add(topic)
            log.warning(
                "%s: a message without a schema version, and no admin URL to look up the "
                "topic's latest schema (public API only): its value is passed as bytes",
                topic,
            )
        return None

    return latest


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - log only

    try:
        return version("pulsar-client")
    except PackageNotFoundError:
        return "(unknown version)"


def schema_type(name: str) -> Any | None:
    """The C++ client's SchemaType for a Pulsar schema type name, None when it has none: the
    public `pulsar.schema.Schema` base takes one, but the package does not export the enum.
    Used by the dead-letter producer to keep a record's writer schema."""
    try:
        import _pulsar  # noqa: PLC0415 - the extension module the public package is built on
    except ImportError:
        return None
    return getattr(_pulsar.SchemaType, name, None)


def schema_info(type_name: str, name: str, definition: str) -> Any | None:
    """A C++ SchemaInfo carrying `definition` as it is. The public `Schema` base JSON-encodes
    the definition it is given (fine for its own record classes, wrong for a writer schema
    that is already text), so the dead-letter producer sets the info itself."""
    kind = schema_type(type_name)
    if kind is None:
        return None
    import _pulsar  # noqa: PLC0415 - schema_type found it

    return _pulsar.SchemaInfo(kind, name, definition)
