"""One level-triggered pass over one LambdaSink: read → validate → apply → report.

Every trigger (the sink changed, its Deployment or pods changed, a referenced Secret changed,
the operator restarted) calls the same `Reconciler.reconcile`, so the outcome depends only on
the current state. What the pass reads comes from kopf's indexes (`observed.View`); the API is
asked only for what they cannot hold (a Deployment that is not ours, a Secret not seen yet, the
one Secret value validation must parse). Passes over the same sink are serialised by a per-sink
`asyncio.Lock` (kopf runs handlers of different objects concurrently); the sink's state goes
when the sink does (`forget`), so nothing accumulates.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambdasink_runtime import config as runtime_config

from . import conditions, drift, manifests, metrics, preflight_rules, spec, worker_status
from .kube import KubeError
from .observed import KeyDigest, View, secret_digests
from .worker_status import WorkerReport

log = logging.getLogger(__name__)

# The chart's default runtimeImage and what `make images` tags (tests/unit/test_image_names.py).
DEFAULT_RUNTIME_IMAGE = "lambda-sink/runtime:0.1.0"
#: What validation sees for a Secret key that is set: the runtime only checks it is not blank.
SET_PLACEHOLDER = "<set>"


class KubeApi(Protocol):
    """The API calls a pass makes (`kube.Kube`; an in-memory fake in the unit tests)."""

    async def patch_sink_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None: ...

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def apply_deployment(self, desired: Mapping[str, Any]) -> dict[str, Any]: ...

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def post_event(
        self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None: ...

    async def scale_sink(self, namespace: str, name: str, replicas: int) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What one pass did; used by handlers (retry?) and tests."""

    applied: bool
    config_error: str | None
    status: dict[str, Any]


@dataclass
class SinkState:
    """Per sink, while it exists: its lock, the status we last wrote (an index may not have
    seen it yet: it decides which Events are new) and the Deployment our last apply returned."""

    uid: str | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generation(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


def _uid(obj: Mapping[str, Any] | None) -> str | None:
    uid = ((obj or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None


@dataclass(frozen=True)
class SecretRead:
    """The referenced Secret keys as a pass sees them."""

    values: dict[spec.SecretKey, str]  # for validation: placeholders, real text only if parsed
    digests: dict[spec.SecretKey, str | None]  # for the config hash; None when missing
    missing: list[str]


class Reconciler:
    def __init__(
        self, kube: KubeApi, *, runtime_image: str, clock: Callable[[], str] = _now
    ) -> None:
        self.kube = kube
        self.runtime_image = runtime_image or DEFAULT_RUNTIME_IMAGE
        self.clock = clock
        self._sinks: dict[tuple[str, str], SinkState] = {}

    # ------------------------------------------------------------------ per-sink state

    def tracked(self) -> list[tuple[str, str]]:
        """The sinks that have state (a lock) now."""
        return sorted(self._sinks)

    def forget(self, namespace: str, name: str) -> None:
        """The sink is gone: drop its lock and memory."""
        self._sinks.pop((namespace, name), None)

    def _state(self, namespace: str, name: str, uid: str | None) -> SinkState:
        state = self._sinks.get((namespace, name))
        if state is None or (uid and state.uid and state.uid != uid):  # new, or recreated
            state = self._sinks[(namespace, name)] = SinkState(uid)
        elif state.uid is None:
            state.uid = uid
        return state

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, body: Mapping[str, Any], view: View | None = None) -> Outcome:
        meta = body["metadata"]
        state = self._state(meta["namespace"], meta["name"], _uid(body))
        async with state.lock:
            return await self._counted(body, state, view or View())

    async def reconcile_by_name(self, namespace: str, name: str, view: View) -> Outcome | None:
        """For triggers from children and Secrets: the sink as its index holds it, read once
        the lock is held (the index is live, so this is the newest seen); none when it is gone."""
        current = view.sink(namespace, name)
        if current is None:
            self.forget(namespace, name)
            return None
        state = self._state(namespace, name, _uid(current))
        async with state.lock:
            body = view.sink(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.forget(namespace, name)
                return None
            return await self._counted(body, state, view)

    async def _counted(self, body: Mapping[str, Any], state: SinkState, view: View) -> Outcome:
        try:
            outcome = await self._reconcile(body, state, view)
        except KubeError as exc:
            metrics.RECONCILES.labels("error").inc()
            await self._report_failure(body, state, exc)
            raise
        metrics.RECONCILES.labels("invalid" if outcome.config_error else "ok").inc()
        if outcome.applied:
            metrics.DEPLOYMENT_APPLIES.inc()
        return outcome

    @staticmethod
    def _last_status(body: Mapping[str, Any], state: SinkState) -> dict[str, Any]:
        """The status we last wrote, else the one the body carries."""
        if state.status is not None:
            return state.status
        return dict(body.get("status") or {})

    async def _report_failure(
        self, body: Mapping[str, Any], state: SinkState, exc: KubeError
    ) -> None:
        """Best effort: a pass that failed half-way still leaves conditions (the first visit
        included); kopf retries the pass."""
        meta = body["metadata"]
        generation = meta.get("generation")
        last = self._last_status(body, state)
        old = last.get("conditions") or []
        updates = [
            conditions.condition(
                conditions.READY, conditions.UNKNOWN, "ReconcileError", str(exc), generation
            )
        ]
        if conditions.find(old, conditions.CONFIG_VALID) is None:
            updates.append(
                conditions.condition(
                    conditions.CONFIG_VALID,
                    conditions.UNKNOWN,
                    "ReconcileError",
                    "not validated yet",
                    generation,
                )
            )
        merged = conditions.merge(old, updates, self.clock())
        try:
            await self.kube.patch_sink_status(
                meta["namespace"], meta["name"], {"conditions": merged}
            )
        except KubeError as again:
            log.warning("could not report the failure on %s: %s", meta["name"], again)
            return
        state.status = {**last, "conditions": merged}

    async def report_workers(
        self, namespace: str, name: str, reports: Sequence[WorkerReport], view: View
    ) -> bool:
        """Fold the workers' /status into Delivering / DeadLettering and `status.failures`;
        patch only on a change. One Warning Event when either turns bad. True if patched."""
        current = view.sink(namespace, name)
        if current is None:
            return False
        state = self._state(namespace, name, _uid(current))
        async with state.lock:
            body = view.sink(namespace, name) or current
            generation = body["metadata"].get("generation")
            last = self._last_status(body, state)
            old = last.get("conditions") or []
            updates, failures = worker_status.fold(reports, last.get("failures"), generation)
            merged = conditions.merge(old, updates, self.clock())
            if merged == old and failures == last.get("failures"):
                return False
            await self.kube.patch_sink_status(
                namespace, name, {"conditions": merged, "failures": failures}
            )
            state.status = {**last, "conditions": merged, "failures": failures}
            for cond in updates:
                before = conditions.find(old, cond["type"])
                bad = (cond["type"], cond["status"]) in (
                    (worker_status.DELIVERING, conditions.FALSE),
                    (worker_status.DEAD_LETTERING, conditions.TRUE),
                )
                if bad and (before is None or before.get("status") != cond["status"]):
                    self.kube.post_event(
                        body, type_="Warning", reason=cond["reason"], message=cond["message"]
                    )
            return True

    async def report_conditions(
        self, namespace: str, name: str, updates: Sequence[Mapping[str, Any]], view: View
    ) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]], Mapping[str, Any]] | None:
        """Merge conditions of a check outside the pass (pre-flight) into the status; patch
        only on a change. (old, merged, sink body), or None when the sink is gone."""
        done = await self._merge_status(namespace, name, updates, {}, view)
        if done is None:
            return None
        old, merged, body, _ = done
        return list(old), merged, body

    async def report_status(
        self,
        namespace: str,
        name: str,
        updates: Sequence[Mapping[str, Any]],
        fields: Mapping[str, Any],
        view: View,
    ) -> list[dict[str, Any]] | None:
        """Merge condition `updates` and top-level `fields` into the sink's status (one merge
        patch, only on a change). Returns the conditions as they were before when patched (for
        Events), else None."""
        done = await self._merge_status(namespace, name, updates, fields, view)
        return done[0] if done is not None and done[3] else None

    async def _merge_status(
        self,
        namespace: str,
        name: str,
        updates: Sequence[Mapping[str, Any]],
        fields: Mapping[str, Any],
        view: View,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Mapping[str, Any], bool] | None:
        """(old conditions, merged, sink body, patched) under the sink's lock; None when the
        sink is gone. The one place status is written from outside the pass."""
        current = view.sink(namespace, name)
        if current is None:
            return None
        state = self._state(namespace, name, _uid(current))
        async with state.lock:
            body = view.sink(namespace, name) or current
            last = self._last_status(body, state)
            old = list(last.get("conditions") or [])
            merged = conditions.merge(old, updates, self.clock())
            if merged == old and all(last.get(k) == v for k, v in fields.items()):
                return old, merged, body, False
            await self.kube.patch_sink_status(namespace, name, {**fields, "conditions": merged})
            state.status = {**last, **fields, "conditions": merged}
            return old, merged, body, True

    # ------------------------------------------------------------------ what the pass reads

    async def _read_secrets(self, namespace: str, plan: spec.WorkerPlan, view: View) -> SecretRead:
        """Digests from the Secret index; the API only for a Secret a narrowed watch may have
        missed, and for the one value validation parses (the credential plugin's parameter)."""
        summaries: dict[str, dict[str, KeyDigest] | None] = {}
        fetched: dict[str, dict[str, str] | None] = {}

        async def data(name: str) -> dict[str, str] | None:
            if name not in fetched:
                fetched[name] = await self.kube.get_secret_data(namespace, name)
            return fetched[name]

        for name in plan.secret_names:
            summary = view.secret(namespace, name) if name else None
            if summary is None and name and not view.secrets_complete:
                raw = await data(name)
                summary = secret_digests(raw) if raw is not None else None
            summaries[name] = summary
        parsed = {
            e.source for e in plan.env if e.env == runtime_config.ENV_AWS_CREDENTIAL_PLUGIN_PARAM
        }
        values: dict[spec.SecretKey, str] = {}
        digests: dict[spec.SecretKey, str | None] = {}
        missing: list[str] = []
        for ref in plan.secret_keys:
            summary = summaries[ref.secret]
            if summary is None:
                message = f'Secret "{ref.secret}" not found in namespace {namespace}'
                if message not in missing:
                    missing.append(message)
                digests[ref] = None
                continue
            if ref.key not in summary:
                missing.append(f"{ref.describe()} not found")
                digests[ref] = None
                continue
            digests[ref] = summary[ref.key].digest
            if summary[ref.key].blank:
                values[ref] = ""
            elif ref in parsed:
                values[ref] = _decoded((await data(ref.secret) or {}).get(ref.key, ""))
            else:
                values[ref] = SET_PLACEHOLDER
        return SecretRead(values, digests, missing)

    async def _deployment(
        self, namespace: str, name: str, state: SinkState, view: View
    ) -> dict[str, Any] | None:
        """Ours from the index (or our last apply's answer when the index lags behind it); a
        name the index does not hold is read: absent, not ours, or not seen yet."""
        seen = view.deployment(namespace, name)
        if seen is None:
            return await self.kube.get_deployment(namespace, name)
        mine = state.deployment
        if mine is not None and _uid(mine) == _uid(seen) and _generation(mine) > _generation(seen):
            return mine
        return seen

    # ------------------------------------------------------------------ the pass

    async def _reconcile(self, body: Mapping[str, Any], state: SinkState, view: View) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        sink_spec: Mapping[str, Any] = body.get("spec") or {}
        old_status = self._last_status(body, state)
        old_conditions = old_status.get("conditions") or []
        plan = spec.plan_worker(name, sink_spec)

        secrets = await self._read_secrets(namespace, plan, view)
        config_error = spec.check_spec(sink_spec) or spec.validate(plan, secrets.values)
        deployment_name = manifests.deployment_name(name)
        current = await self._deployment(namespace, deployment_name, state, view)
        applied = False
        blocked: str | None = None
        config_hash = manifests.config_hash(plan, secrets.digests)

        if current is not None and manifests.controller_uid(current) != meta.get("uid"):
            blocked = (
                f'Deployment "{deployment_name}" exists and is not controlled by this LambdaSink'
            )
        elif config_error is None:
            desired = manifests.build_deployment(
                body, plan, image=self.runtime_image, config_hash=config_hash
            )
            where = "absent" if current is None else drift.drifted(desired, current)
            if where:
                try:
                    current = state.deployment = await self.kube.apply_deployment(desired)
                    applied = True
                    log.info(
                        "applied Deployment %s/%s (hash %s; drift at %s)",
                        namespace,
                        deployment_name,
                        config_hash,
                        where,
                    )
                except KubeError as exc:
                    if exc.retriable:
                        raise
                    blocked = f"the API server refused the worker Deployment: {exc}"

        desired_replicas = int(sink_spec.get("replicas", 1))
        dep_status: Mapping[str, Any] = (current or {}).get("status") or {}
        pods = view.worker_pods(namespace, name) if current is not None else []
        problem = conditions.worker_problem(pods)
        workers = conditions.Workers(
            desired=desired_replicas,
            exists=current is not None,
            replicas=int(dep_status.get("replicas") or 0),
            ready=int(dep_status.get("readyReplicas") or 0),
            updated=int(dep_status.get("updatedReplicas") or 0),
            failing=problem[1] if problem else None,
            failing_reason=problem[0] if problem else "WorkerFailing",
        )
        updates = [
            conditions.ready(
                generation=generation,
                config_error=config_error,
                blocked=blocked,
                missing_secrets=secrets.missing,
                workers=workers,
                preflight=preflight_rules.blocking(old_conditions),
            ),
            conditions.config_valid(config_error, generation),
            conditions.secrets_resolved(secrets.missing, generation),
        ]
        new_conditions = conditions.merge(old_conditions, updates, self.clock())
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": workers.replicas,
            "readyReplicas": workers.ready,
            "readyDisplay": f"{workers.ready}/{desired_replicas}",
            "selector": manifests.selector_string(name),
            "deploymentName": deployment_name,
            "conditions": new_conditions,
        }
        if current is not None:
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            status["configHash"] = annotations.get(manifests.HASH_ANNOTATION, "")
        if any(old_status.get(k) != v for k, v in status.items()):
            await self.kube.patch_sink_status(namespace, name, status)
        state.status = {**old_status, **status}
        self._emit_events(body, old_conditions, new_conditions, applied=applied)
        return Outcome(applied=applied, config_error=config_error, status=status)

    def _emit_events(
        self,
        body: Mapping[str, Any],
        old: list[Mapping[str, Any]],
        new: list[dict[str, Any]],
        *,
        applied: bool,
    ) -> None:
        """One Event per change of a problem (not per pass), plus one per Deployment write."""
        for cond in new:
            before = conditions.find(old, cond["type"])
            same = before is not None and (before.get("status"), before.get("message")) == (
                cond["status"],
                cond["message"],
            )
            if cond["status"] == conditions.FALSE and not same:
                if cond["type"] == conditions.READY and cond["reason"] in (
                    "InvalidSpec",
                    "SecretNotFound",
                    "WorkersNotReady",
                    "RollingOut",
                    "PreflightFailed",
                ):
                    continue  # said by its own condition, or not a problem
                self.kube.post_event(
                    body, type_="Warning", reason=cond["reason"], message=cond["message"]
                )
        if applied:
            name = manifests.deployment_name(body["metadata"]["name"])
            self.kube.post_event(
                body,
                type_="Normal",
                reason="DeploymentApplied",
                message=f"worker Deployment {name} applied",
            )


def _decoded(encoded: str) -> str:
    """A Secret's base64 value as text (for validation only; never logged or stored)."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""
