"""Pre-flight checks: ask Lambda and Pulsar, as the sink, what would stop its workers.

Run on create/update of a sink (and a change of a Secret it reads), and for every sink on a
bounded background schedule (a task like the worker-status poll, not a kopf timer, which would
add a finalizer), at most `CONCURRENCY` sinks at a time, each round within `ROUND_TIMEOUT_S`.
The probes block (boto3, urllib), so they run on a small executor of their own: a slow endpoint
never takes the threads the Kubernetes calls (`kube.py`) run on. The probes use the sink's own
Secrets only: its AWS keys for a DryRun Invoke and GetFunction
(`lambda_check`), its Pulsar authentication for the admin API (`pulsar_topics`); file-based
Secrets (OAuth2 key, TLS client certificate, CA) are written to a private temporary directory
for the round and removed after it. Results fold into conditions through
`preflight_rules.fold`; a change to False posts one Warning Event; a change of what blocks
Ready re-runs the sink's reconcile pass so that Ready follows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from lambdasink_runtime import config as runtime_config
from lambdasink_runtime.config_pulsar import PulsarConfig
from lambdasink_runtime.errors import ConfigError

from . import lambda_check, preflight_rules, spec
from .kube import KubeError
from .observed import View
from .preflight_rules import FunctionProbe, Settings, TopicProbe
from .pulsar_topics import PulsarAdmin, PulsarAdminError, pattern_namespace, topic_name
from .reconcile import Reconciler

#: Seconds between background rounds over every sink (0: only on create/update).
ENV_PREFLIGHT_INTERVAL = "LAMBDASINK_OPERATOR_PREFLIGHT_INTERVAL"
DEFAULT_INTERVAL_S = 60.0
CONCURRENCY = 4
ROUND_TIMEOUT_S = 30.0
#: Subscriptions are asked of at most this many matched topics per round.
SUBSCRIPTION_LOOKUPS = 20

log = logging.getLogger("lambdasink.operator.preflight")
T = TypeVar("T")


def settings_of(cfg: runtime_config.RuntimeConfig) -> Settings:
    return Settings(
        synchronous=cfg.sink.synchronous_invocation,
        invoke_timeout_ms=cfg.sink.invoke_timeout_ms,
        drain_timeout_s=cfg.runtime.drain_timeout_s,
        payload_format=cfg.sink.payload_format,
        batch_max_size=cfg.sink.batch_max_size,
        batch_max_time_ms=cfg.sink.batch_max_time_ms,
        max_record_age_ms=cfg.failure.max_record_age_ms,
        subscription=cfg.pulsar.subscription_name,
        initial_position=cfg.pulsar.initial_position,
    )


def probe_topics(pulsar: PulsarConfig, admin: PulsarAdmin | None = None) -> TopicProbe:
    """The input topics (or the pattern's matches) and which of them have the subscription."""
    admin = admin or PulsarAdmin.for_auth(pulsar.admin_url, pulsar.auth)
    sub = pulsar.subscription_name
    listed: dict[tuple[str, str, str], list[str]] = {}

    def names_in(domain: str, tenant: str, namespace: str) -> list[str]:
        key = (domain, tenant, namespace)
        if key not in listed:
            try:
                listed[key] = admin.namespace_topics(*key)
            except PulsarAdminError as exc:
                if exc.status != 404:  # a missing namespace has no topics
                    raise
                listed[key] = []
        return listed[key]

    try:
        if pulsar.topics_pattern:
            pattern = pulsar.topics_pattern
            full = pattern if "://" in pattern else f"persistent://public/default/{pattern}"
            regex = re.compile(full)
            matched = tuple(n for n in names_in(*pattern_namespace(full)) if regex.fullmatch(n))
            subscribed = tuple(
                t for t in matched[:SUBSCRIPTION_LOOKUPS] if sub in admin.subscriptions(t)
            )
            return TopicProbe(pattern=pattern, matched=matched, subscribed=subscribed)
        missing: list[str] = []
        subscribed_list: list[str] = []
        for topic in pulsar.topics:
            name = topic_name(topic)
            if name.full not in names_in(name.domain, name.tenant, name.namespace):
                missing.append(topic)
            elif sub in admin.subscriptions(topic):
                subscribed_list.append(topic)
        return TopicProbe(
            topics=tuple(pulsar.topics), missing=tuple(missing), subscribed=tuple(subscribed_list)
        )
    except PulsarAdminError as exc:
        return TopicProbe(
            topics=tuple(pulsar.topics), pattern=pulsar.topics_pattern, error=str(exc)
        )
    except re.error as exc:
        return TopicProbe(
            pattern=pulsar.topics_pattern, error=f"topicsPattern: {exc}", skipped=True
        )


def _decoded(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""


class Preflight:
    """The checks of every sink; one per operator process."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        concurrency: int = CONCURRENCY,
        round_timeout_s: float = ROUND_TIMEOUT_S,
    ) -> None:
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.round_timeout_s = round_timeout_s
        self._slots = asyncio.Semaphore(max(1, concurrency))
        # two probes per round; threads a timed-out round leaves behind end on their own
        # socket timeouts and only delay later rounds
        self._threads = ThreadPoolExecutor(
            max_workers=2 * max(1, concurrency), thread_name_prefix="preflight"
        )
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()

    @classmethod
    def from_env(cls, reconciler: Reconciler) -> Preflight:
        raw = os.environ.get(ENV_PREFLIGHT_INTERVAL, "")
        return cls(reconciler, interval_s=float(raw) if raw else DEFAULT_INTERVAL_S)

    # ------------------------------------------------------------------ scheduling

    def schedule(self, namespace: str, name: str, view: View) -> None:
        """Check the sink soon, without holding up the caller; a check already running for it
        runs once more when it ends (it may have read the old spec)."""
        key = (namespace, name)
        if key in self._running:
            self._again.add(key)
            return
        task = asyncio.get_running_loop().create_task(self._guarded(key, view))
        self._running[key] = task

    async def _guarded(self, key: tuple[str, str], view: View) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self.check(key[0], key[1], view)
                except KubeError as exc:
                    log.warning("pre-flight of %s/%s not written: %s", key[0], key[1], exc)
                except TimeoutError:
                    log.warning(
                        "pre-flight of %s/%s took over %g s; next round later",
                        key[0],
                        key[1],
                        self.round_timeout_s,
                    )
                except Exception:
                    log.exception("pre-flight of %s/%s failed", key[0], key[1])
                if key not in self._again:
                    return
        finally:
            self._running.pop(key, None)

    async def run_forever(self, live: Mapping[str, Any]) -> None:
        """Every `interval_s`, schedule every sink the live view knows."""
        while True:
            await asyncio.sleep(self.interval_s)
            current: View | None = live.get("view")
            if current is None:
                continue
            for namespace, name in [k for k in list(current.sinks) if k[0]]:
                self.schedule(str(namespace), name, current)

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    # ------------------------------------------------------------------ one sink

    async def check(self, namespace: str, name: str, view: View) -> list[dict[str, Any]] | None:
        """One round for one sink; the conditions written, or None when nothing was checked
        (the sink is gone, or its spec is invalid: ConfigValid says why)."""
        body = view.sink(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        async with self._slots:
            updates = await asyncio.wait_for(
                self._probe(namespace, name, body), self.round_timeout_s
            )
        if updates is None:
            return None
        return await self._report(namespace, name, updates, view)

    async def _probe(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> list[dict[str, Any]] | None:
        sink_spec: Mapping[str, Any] = body.get("spec") or {}
        generation = body["metadata"].get("generation")
        if spec.check_spec(sink_spec):
            return None
        plan = spec.plan_worker(name, sink_spec)
        with tempfile.TemporaryDirectory(prefix="lambdasink-preflight-") as tmp:
            doc, env, missing = await self._materialise(namespace, plan, Path(tmp))
            try:
                cfg = runtime_config.RuntimeConfig.from_mapping(doc, env=env)
            except ConfigError:
                return None
            settings = settings_of(cfg)
            function_name = cfg.sink.lambda_function_name
            if missing:
                why = "; ".join(missing) + " (see SecretsResolved)"
                function = FunctionProbe(function_name, "skipped", why)
                topics = TopicProbe(error=why, skipped=True)
            else:
                function, topics = await asyncio.gather(
                    self._in_thread(lambda_check.probe, cfg.sink),
                    self._in_thread(probe_topics, cfg.pulsar),
                )
        return preflight_rules.fold(function, topics, settings, generation)

    async def _materialise(
        self, namespace: str, plan: spec.WorkerPlan, tmp: Path
    ) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        """The worker's config document and env with the sink's Secrets as the worker would
        see them: env values decoded, mounted keys written under `tmp` (mode 0600)."""
        kube = self.reconciler.kube
        data: dict[str, dict[str, str] | None] = {}
        missing: list[str] = []
        for secret in plan.secret_names:
            data[secret] = await kube.get_secret_data(namespace, secret) if secret else None

        def value(ref: spec.SecretKey) -> bytes | None:
            found = (data.get(ref.secret) or {}).get(ref.key)
            if found is None:
                missing.append(ref.describe() + " not found")
                return None
            return _decoded(found)

        env: dict[str, str] = {}
        for item in plan.env:
            raw = value(item.source)
            if raw is not None:
                env[item.env] = raw.decode("utf-8", "replace")
        text = json.dumps(plan.config)
        for mount in plan.mounts:
            folder = tmp / mount.volume
            folder.mkdir(mode=0o700)
            for entry in mount.items():
                raw = value(spec.SecretKey(mount.secret, entry["key"]))
                path = folder / entry["path"]
                path.write_bytes(raw or b"")
                path.chmod(0o600)
            text = text.replace(json.dumps(mount.mount_path)[1:-1], str(folder))
        doc: dict[str, Any] = json.loads(text)
        return doc, env, missing

    async def _report(
        self, namespace: str, name: str, updates: list[dict[str, Any]], view: View
    ) -> list[dict[str, Any]] | None:
        written = await self.reconciler.report_conditions(namespace, name, updates, view)
        if written is None:
            return None
        old, merged, body = written
        for cond in preflight_rules.turned_bad(old, updates):
            self.reconciler.kube.post_event(
                body, type_="Warning", reason=cond["reason"], message=cond["message"]
            )
        if preflight_rules.blocking(old) != preflight_rules.blocking(merged):
            await self.reconciler.reconcile_by_name(namespace, name, view)
        return merged
