"""One V2 batch item: the selected metadata fields, then "value" (the serializer's hot path).

The field order and omission rules are in the serializer's docstring.
"""

from __future__ import annotations

from collections.abc import Callable

from . import timefmt
from .json_text import dumps, encode_str
from .primitive_values import PRIMITIVE_TEXTS
from .record import Record
from .record_fields import name_partition, unconvertible


class _Fragments:
    """Bounded caches of V2 metadata fragments ('"name":<json>,'): messages repeat them."""

    def __init__(self) -> None:
        self.topics: dict[str, tuple[str, str]] = {}  # topic → (topic, name-derived partition)
        self.properties: dict[tuple[tuple[str, str], ...], str] = {}
        self.event_seconds: dict[int, str] = {}  # epoch second → '"eventTime":"yyyy-…:ss.'
        self.publish_seconds: dict[int, str] = {}

    def topic(self, topic: str) -> tuple[str, str]:
        if len(self.topics) >= _FRAGMENT_LIMIT:
            self.topics.clear()
        index = name_partition(topic)
        part = "" if index is None else f'"partitionIndex":{index},'
        frags = self.topics[topic] = (f'"topic":{encode_str(topic)},', part)
        return frags

    def props(self, key: tuple[tuple[str, str], ...]) -> str:
        if len(self.properties) >= _FRAGMENT_LIMIT:
            self.properties.clear()
        text = self.properties[key] = f'"properties":{dumps(dict(key))},'
        return text

    @staticmethod
    def time(cache: dict[int, str], name: str, ms: int) -> str:
        """'"name":"yyyy-MM-ddTHH:mm:ss.SSSZ",', or the raw millis outside the years 1..9999."""
        seconds, fraction = divmod(ms, 1000)
        prefix = cache.get(seconds)
        if prefix is None:
            try:
                prefix = f'"{name}":"{timefmt.second_prefix(seconds)}'
            except ValueError:
                return f'"{name}":{ms},'
            if len(cache) >= _FRAGMENT_LIMIT:
                cache.clear()
            cache[seconds] = prefix
        return f'{prefix}{_MILLIS[fraction]}Z",'


_FRAGMENT_LIMIT = 4096
_MILLIS = timefmt.MILLIS_DIGITS
_NO_PROPERTIES = '"properties":{},'


def v2_renderer(
    fields: frozenset[str], value_text: Callable[[Record], str]
) -> Callable[[Record], bytes]:
    """The V2 item of one metadata selection, as one function: '{' + fragments + value + '}'.

    Every field is '"name":<json>,' or '' (absent or not selected), in the canonical order;
    repeated parts (topic, properties, the second of a time) come from caches, the rest is
    formatted in place. This is the serializer's hot path: no dict is built per message.
    """
    want_topic = "topic" in fields
    want_key = "key" in fields
    want_partition = "partitionIndex" in fields
    want_sequence = "sequence" in fields
    want_properties = "properties" in fields
    want_event = "eventTime" in fields
    want_id = "messageId" in fields
    want_publish = "publishTime" in fields
    frags = _Fragments()
    topics, props_cache = frags.topics, frags.properties
    event_seconds, publish_seconds = frags.event_seconds, frags.publish_seconds
    time = frags.time
    millis = _MILLIS
    primitive_texts = PRIMITIVE_TEXTS

    # The previous message's properties, their key order and fragment: producers repeat them,
    # and comparing with the last is cheaper than hashing a tuple of the items (bench: ~0.3 µs a
    # record). One tuple, replaced whole, so that a concurrent caller never pairs one message's
    # properties with another's text.
    last: tuple[dict[str, str], list[str], str] = ({}, [], _NO_PROPERTIES)

    def render(r: Record) -> bytes:
        nonlocal last
        schema = r.schema
        if schema is not None and (text := primitive_texts.get(schema.type)) is not None:
            try:
                value = text(r.value)
            except Exception as exc:  # every decoding failure means the same thing
                raise unconvertible(r, exc) from exc
        else:
            value = value_text(r)
        topic = part = key = sequence = props = event = mid = publish = ""
        if want_topic or want_partition:
            t = r.topic
            topic, part = topics.get(t) or frags.topic(t)
            if not want_topic:
                topic = ""
            if not want_partition:
                part = ""
            elif r.partition >= 0:
                part = f'"partitionIndex":{r.partition},'
        if want_key and (k := r.key) is not None:
            key = f'"key":{encode_str(k)},'
        if want_sequence:
            sequence = f'"sequence":{(r.ledger_id << 28) | r.entry_id},'
        if want_properties:
            p = r.properties
            last_props, last_keys, props = last
            if not p:
                props = _NO_PROPERTIES
            elif p != last_props or (len(p) > 1 and list(p) != last_keys):  # not the same, in order
                items = tuple(p.items())
                props = props_cache.get(items) or frags.props(items)
                last = (dict(items), list(p), props)
        if want_event and (ms := r.event_time_ms):
            prefix = event_seconds.get(ms // 1000)
            if prefix is None:
                event = time(event_seconds, "eventTime", ms)
            else:
                event = f'{prefix}{millis[ms % 1000]}Z",'
        if want_id:
            mid = f'"messageId":"{r.ledger_id}:{r.entry_id}:{r.partition}:{r.batch_index}",'
        if want_publish and (ms := r.publish_time_ms):
            publish = time(publish_seconds, "publishTime", ms)
        return (
            f'{{{topic}{key}{part}{sequence}{props}{event}{mid}{publish}"value":{value}}}'
        ).encode()

    return render
