"""Pure backlog arithmetic: Pulsar admin stats (dicts) → one sink's `status.backlog`.

The I/O is `pulsar_admin.py`; this module decides which URL to ask, what a stats answer says
about our subscription, and how partitions and topics add up, so all of it is unit-tested
without a broker. Pulsar's subscription stats carry `msgBacklog`, `msgRateOut` and, when asked
with `getEarliestTimeInBacklog=true`, `earliestMsgPublishTimeInBacklog` (epoch ms; 0 or absent
when the backlog is empty or the broker cannot tell).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lambdasink_runtime.errors import LambdaSinkError
from lambdasink_runtime.schemas import TopicName, parse_topic

from . import conditions

BACKLOG_KNOWN = "BacklogKnown"
#: The runtime's own default, used when neither adminUrl nor a derivable serviceUrl is given.
FALLBACK_ADMIN_URL = "http://localhost:8080"
_PARTITION = re.compile(r"-partition-\d+$")


def admin_url(pulsar_spec: Mapping[str, Any]) -> str:
    """`spec.pulsar.adminUrl`, else derived from `serviceUrl`: the same host on Pulsar's
    default web ports (pulsar://h:6650 → http://h:8080, pulsar+ssl://h:6651 → https://h:8443)."""
    given = pulsar_spec.get("adminUrl")
    if isinstance(given, str) and given.strip():
        return given.strip().rstrip("/")
    service = pulsar_spec.get("serviceUrl")
    if not isinstance(service, str) or "://" not in service:
        return FALLBACK_ADMIN_URL
    scheme, _, rest = service.partition("://")
    host = rest.split(",", 1)[0].split("/", 1)[0].rsplit(":", 1)[0] if rest else ""
    if not host:
        return FALLBACK_ADMIN_URL
    if scheme == "pulsar+ssl":
        return f"https://{host}:8443"
    return f"http://{host}:8080"


def topic_base(topic: TopicName) -> str:
    """`/admin/v2/{domain}/{tenant}/{namespace}/{topic}`, each part URL-encoded."""
    return f"/admin/v2/{topic.domain}/{topic.schema_path}"


def parse_topics(names: Iterable[str]) -> list[TopicName]:
    """The sink's topics, named as the admin API wants them (duplicates dropped); a malformed
    name raises `BacklogError`."""
    out: list[TopicName] = []
    for name in names:
        try:
            topic = parse_topic(str(name))
        except LambdaSinkError as exc:
            raise BacklogError(str(exc), reachable=True) from None
        if topic not in out:
            out.append(topic)
    return out


@dataclass(frozen=True)
class Backlog:
    """One subscription's backlog on one topic, or the sum over several (messages add up,
    the oldest message is the earliest of all, rates add up)."""

    messages: int = 0
    earliest_publish_ms: int | None = None  # None: empty, or the broker did not say
    rate_out: float = 0.0
    missing: tuple[str, ...] = ()  # topics where the subscription does not exist (yet)

    def plus(self, other: Backlog) -> Backlog:
        earliest = [t for t in (self.earliest_publish_ms, other.earliest_publish_ms) if t]
        return Backlog(
            messages=self.messages + other.messages,
            earliest_publish_ms=min(earliest) if earliest else None,
            rate_out=self.rate_out + other.rate_out,
            missing=self.missing + other.missing,
        )


def summed(parts: Iterable[Backlog]) -> Backlog:
    total = Backlog()
    for part in parts:
        total = total.plus(part)
    return total


def _subscription(stats: Mapping[str, Any], subscription: str) -> Mapping[str, Any] | None:
    subs = stats.get("subscriptions")
    found = subs.get(subscription) if isinstance(subs, Mapping) else None
    return found if isinstance(found, Mapping) else None


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(float(value)) else 0.0  # type: ignore[arg-type]


def from_topic_stats(stats: Mapping[str, Any], subscription: str, topic: str) -> Backlog:
    """One (non-partitioned) topic's `/stats` answer → our subscription's backlog. A topic
    without the subscription counts as missing (it will be created when a worker subscribes)."""
    sub = _subscription(stats, subscription)
    if sub is None:
        return Backlog(missing=(topic,))
    messages = max(0, _int(sub.get("msgBacklog")))
    earliest = _int(sub.get("earliestMsgPublishTimeInBacklog"))
    return Backlog(
        messages=messages,
        earliest_publish_ms=earliest if earliest > 0 and messages > 0 else None,
        rate_out=max(0.0, _float(sub.get("msgRateOut"))),
    )


def from_partitioned_stats(stats: Mapping[str, Any], subscription: str, topic: str) -> Backlog:
    """A `/partitioned-stats?perPartition=true` answer: summed per partition ourselves (the
    aggregate's earliest-message field is not reliable across versions). Missing only when no
    partition has the subscription."""
    partitions = stats.get("partitions")
    if not isinstance(partitions, Mapping) or not partitions:
        return from_topic_stats(stats, subscription, topic)
    parts = [
        from_topic_stats(p, subscription, str(name))
        for name, p in sorted(partitions.items())
        if isinstance(p, Mapping)
    ]
    total = summed(Backlog(p.messages, p.earliest_publish_ms, p.rate_out) for p in parts)
    if parts and all(p.missing for p in parts):
        return Backlog(missing=(topic,))
    return total


def partition_count(metadata: Mapping[str, Any]) -> int:
    """The `/partitions` answer ({"partitions": N}); 0 for a non-partitioned topic."""
    return max(0, _int(metadata.get("partitions")))


def split_pattern(pattern: str) -> tuple[str, str]:
    """A `topicsPattern` → (the namespace's admin path `/admin/v2/{domain}/{tenant}/{ns}`, the
    full-name regex). Short patterns live in public/default, as the Pulsar client has it."""
    domain, rest = ("persistent", pattern)
    if "://" in pattern:
        domain, rest = pattern.split("://", 1)
    parts = rest.split("/", 2)
    if len(parts) < 3:
        parts = ["public", "default", rest]
    tenant, namespace, local = parts
    if domain not in ("persistent", "non-persistent") or not tenant or not namespace:
        raise BacklogError(
            f"topicsPattern {pattern!r}: expected domain://tenant/ns/regex", reachable=True
        )
    return f"/admin/v2/{domain}/{tenant}/{namespace}", f"{domain}://{tenant}/{namespace}/{local}"


def matching(topics: Iterable[str], full_regex: str) -> list[str]:
    """Full topic names of a namespace listing that the pattern matches, partitions folded
    into their partitioned parent (asked once, via partitioned-stats)."""
    try:
        regex = re.compile(full_regex)
    except re.error as exc:
        raise BacklogError(f"topicsPattern {full_regex!r}: {exc}", reachable=True) from None
    out: list[str] = []
    for name in topics:
        parent = _PARTITION.sub("", str(name))
        if regex.fullmatch(parent) and parent not in out:
            out.append(parent)
    return sorted(out)


class BacklogError(Exception):
    """The backlog could not be read. `reachable`: Pulsar answered, but not usefully (401/403,
    a bad topic name: a spec or Secret must change); else it was not reached (try again)."""

    def __init__(self, message: str, *, reachable: bool) -> None:
        super().__init__(message)
        self.reachable = reachable


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_doc(total: Backlog, now: dt.datetime) -> dict[str, Any]:
    """`status.backlog`: what `kubectl get` shows and the autoscaler reads. A None is sent
    as JSON null, which a merge patch turns into "no such key" (the last age is removed)."""
    age = None
    if total.earliest_publish_ms and total.messages:
        age = max(0, int(now.timestamp() - total.earliest_publish_ms / 1000.0))
    doc: dict[str, Any] = {
        "messages": total.messages,
        "oldestAgeSeconds": age,
        "deliveredPerSecond": round(total.rate_out, 3),
        "observedAt": _iso(now),
    }
    if total.missing:
        doc["subscriptionMissingOn"] = list(total.missing)[:20]
    return doc


def known(total: Backlog, generation: int | None) -> dict[str, Any]:
    if total.missing:
        message = (
            f"{total.messages} messages; subscription not created yet on "
            f"{len(total.missing)} topic(s) (e.g. {total.missing[0]}): a worker creates it"
        )
        return conditions.condition(
            BACKLOG_KNOWN, conditions.TRUE, "SubscriptionMissing", message, generation
        )
    return conditions.condition(
        BACKLOG_KNOWN, conditions.TRUE, "Read", f"{total.messages} messages", generation
    )


def unknown(error: str, generation: int | None, *, reachable: bool) -> dict[str, Any]:
    """The backlog could not be read: PulsarUnreachable (network, 5xx, timeouts) or
    PulsarAdminError (an answer we cannot use: 401/403, a bad topic name)."""
    reason = "PulsarUnreachable" if not reachable else "PulsarAdminError"
    return conditions.condition(BACKLOG_KNOWN, conditions.FALSE, reason, error, generation)
