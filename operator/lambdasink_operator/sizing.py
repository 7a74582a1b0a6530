"""The backlog loop: every interval, for every sink, read its subscription backlog from Pulsar
into `status.backlog` (and the `BacklogKnown` condition), and, where `spec.autoscaling` is on,
set its replicas through the scale subresource.

A background task like the worker-status poll in handlers.py, not a kopf timer (a timer adds a
finalizer to every sink). At most `SINK_CONCURRENCY` sinks are read at once; a failure for one
sink is a condition on that sink (PulsarUnreachable) and the loop goes on. The autoscaler's
memory (recommendations of the stabilisation window, the last throttle counts) lives here, per
sink, and goes with the sink.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import autoscale, backlog, lambda_concurrency, metrics, observed, pulsar_admin, worker_probe
from .backlog import Backlog, BacklogError
from .kube import KubeError
from .reconcile import Reconciler
from .worker_status import WorkerReport

log = logging.getLogger("lambdasink.operator.sizing")

#: Seconds between backlog reads (0: never); the environment variable overrides it.
ENV_BACKLOG_INTERVAL = "LAMBDASINK_OPERATOR_BACKLOG_INTERVAL"
DEFAULT_INTERVAL_S = 10.0
SINK_CONCURRENCY = 4
#: status.backlog is rewritten at least this often even when nothing but the time changed.
REFRESH_S = 60.0
RESERVED_TTL_S = 60.0
#: Rounds in a row with new 429s that count as sustained throttling.
THROTTLED_ROUNDS = 2
DEFAULT_MAX_IN_FLIGHT = 4


@dataclass
class SinkMemory:
    scale: autoscale.Memory = field(default_factory=autoscale.Memory)
    throttles: float | None = None  # the workers' summed 429 count last round
    throttled_rounds: int = 0
    reserved: int | None = None
    reserved_at: float = -1e9


def throttle_total(reports: Sequence[WorkerReport]) -> float | None:
    """The workers' 429s so far (their /status `throttled`); None when none answered."""
    read = [r.status for r in reports if r.status is not None]
    if not read:
        return None
    return float(sum(float(s.get("throttled") or 0) for s in read))


def breaker_throttled(reports: Sequence[WorkerReport]) -> bool:
    return any(
        ((r.status or {}).get("breaker") or {}).get("state") not in (None, "closed")
        and "throttl" in str(((r.status or {}).get("breaker") or {}).get("reason", ""))
        for r in reports
    )


def next_throttled(memory: SinkMemory, reports: Sequence[WorkerReport]) -> bool:
    """Sustained throttling: the 429 count grew in THROTTLED_ROUNDS rounds in a row (or a
    breaker is open on throttles). Updates `memory`."""
    total = throttle_total(reports)
    grew = total is not None and memory.throttles is not None and total > memory.throttles
    memory.throttled_rounds = memory.throttled_rounds + 1 if grew else 0
    if total is not None:
        memory.throttles = total
    return memory.throttled_rounds >= THROTTLED_ROUNDS or breaker_throttled(reports)


def _max_in_flight(sink_spec: Mapping[str, Any]) -> int:
    value = (sink_spec.get("sinkConfig") or {}).get("maxInFlight")
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_IN_FLIGHT


class Sizer:
    def __init__(self, reconciler: Reconciler, clock: Any = time.monotonic) -> None:
        self.reconciler = reconciler
        self.clock = clock
        self.memory: dict[tuple[str, str, str], SinkMemory] = {}

    async def run(self, live: dict[str, Any], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            current: observed.View | None = live["view"]
            if current is not None:
                await self.round(current)

    async def round(self, view: observed.View) -> None:
        keys = [(str(ns), name) for ns, name in list(view.sinks) if ns]
        gate = asyncio.Semaphore(SINK_CONCURRENCY)
        seen: set[tuple[str, str, str]] = set()

        async def one(namespace: str, name: str) -> None:
            body = view.sink(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            seen.add((namespace, name, str(body["metadata"].get("uid"))))
            async with gate:
                try:
                    await self.sink(namespace, name, body, view)
                except KubeError as exc:
                    log.warning("backlog of %s/%s not written: %s", namespace, name, exc)
                except Exception:
                    log.exception("backlog of %s/%s failed", namespace, name)

        await asyncio.gather(*(one(ns, n) for ns, n in keys))
        for key in [k for k in self.memory if k not in seen]:  # the sink went away
            del self.memory[key]

    async def sink(
        self, namespace: str, name: str, body: Mapping[str, Any], view: observed.View
    ) -> None:
        sink_spec: Mapping[str, Any] = body.get("spec") or {}
        generation = body["metadata"].get("generation")
        memory = self.memory.setdefault(
            (namespace, name, str(body["metadata"].get("uid"))), SinkMemory()
        )
        kube = self.reconciler.kube

        async def read(secret: str) -> dict[str, str] | None:
            return await kube.get_secret_data(namespace, secret)

        now = dt.datetime.now(dt.UTC)
        try:
            total: Backlog = await pulsar_admin.read_sink_backlog(sink_spec, name, read)
        except BacklogError as exc:
            metrics.BACKLOG_READS.labels("error" if exc.reachable else "unreachable").inc()
            cond = backlog.unknown(str(exc), generation, reachable=exc.reachable)
            old = await self.reconciler.report_status(namespace, name, [cond], {}, view)
            if old is not None and _status_changed(old, cond):
                kube.post_event(body, type_="Warning", reason=cond["reason"], message=str(exc))
            return
        metrics.BACKLOG_READS.labels("ok").inc()
        metrics.BACKLOG_MESSAGES.labels(namespace, name).set(total.messages)
        doc = backlog.status_doc(total, now)
        last = (body.get("status") or {}).get("backlog") or {}
        fields: dict[str, Any] = {}
        if _worth_writing(last, doc, now):
            fields["backlog"] = doc
        status = body.get("status") or {}
        metrics.ACTUAL_REPLICAS.labels(namespace, name).set(int(status.get("replicas") or 0))

        policy = autoscale.policy(sink_spec)
        if policy is not None:
            fields["autoscaling"] = await self.autoscale(
                namespace, name, body, view, policy=policy, total=total, memory=memory
            )
            if fields["autoscaling"] == status.get("autoscaling"):
                del fields["autoscaling"]
        await self.reconciler.report_status(
            namespace, name, [backlog.known(total, generation)], fields, view
        )

    async def autoscale(
        self,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        view: observed.View,
        *,
        policy: autoscale.Policy,
        total: Backlog,
        memory: SinkMemory,
    ) -> dict[str, Any]:
        """One autoscaling round; returns `status.autoscaling`."""
        sink_spec: Mapping[str, Any] = body.get("spec") or {}
        kube = self.reconciler.kube
        now = self.clock()
        if now - memory.reserved_at >= RESERVED_TTL_S:

            async def read(secret: str) -> dict[str, str] | None:
                return await kube.get_secret_data(namespace, secret)

            memory.reserved = await lambda_concurrency.reserved_concurrency(sink_spec, read)
            memory.reserved_at = now
        pods = view.worker_pods(namespace, name)
        reports = await worker_probe.read_all(pods) if pods else []
        throttled = next_throttled(memory, reports)
        current = int(sink_spec.get("replicas", 1))
        inputs = autoscale.Inputs(
            backlog=total.messages,
            current=current,
            max_in_flight=_max_in_flight(sink_spec),
            subscription_missing=bool(total.missing),
            reserved_concurrency=memory.reserved,
            throttled=throttled,
        )
        decision, memory.scale = autoscale.decide(policy, inputs, memory.scale, now)
        metrics.DESIRED_REPLICAS.labels(namespace, name).set(decision.replicas)
        if decision.replicas != current:
            await kube.scale_sink(namespace, name, decision.replicas)
            log.info(
                "scaled %s/%s %d -> %d: %s",
                namespace,
                name,
                current,
                decision.replicas,
                decision.reason,
            )
            kube.post_event(
                body,
                type_="Normal",
                reason="ScaledUp" if decision.replicas > current else "ScaledDown",
                message=f"replicas {current} -> {decision.replicas}: {decision.reason}",
            )
        doc: dict[str, Any] = {
            "desiredReplicas": decision.replicas,
            "reason": decision.reason[:512],
            "throttled": throttled,
        }
        if decision.cap is not None:
            doc["concurrencyCapReplicas"] = decision.cap
        if memory.reserved is not None:
            doc["reservedConcurrency"] = memory.reserved
        return doc


def _status_changed(old: Sequence[Mapping[str, Any]], cond: Mapping[str, Any]) -> bool:
    before = next((c for c in old if c.get("type") == cond["type"]), None)
    return before is None or before.get("status") != cond["status"]


def _worth_writing(last: Mapping[str, Any], doc: Mapping[str, Any], now: dt.datetime) -> bool:
    """A status write when a figure changed, or the last is older than REFRESH_S."""

    def figures(d: Mapping[str, Any]) -> dict[str, Any]:
        # None deletes a key in a merge patch: the stored status has no key for it
        return {k: v for k, v in d.items() if k != "observedAt" and v is not None}

    if figures(last) != figures(doc):
        return True
    try:
        at = dt.datetime.strptime(str(last.get("observedAt")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return True
    return (now - at.replace(tzinfo=dt.UTC)).total_seconds() >= REFRESH_S
