"""One level-triggered pass over one LambdaSink: read → validate → apply → report.

Every trigger (the sink changed, its Deployment or pods changed, a referenced Secret changed,
the operator restarted) calls the same `Reconciler.reconcile`, so the outcome depends only on
the current state. Passes over the same sink are serialised by a per-sink lock (kopf runs
handlers of different objects concurrently in threads).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import conditions, drift, manifests, metrics, spec
from .kube import Kube, KubeError

log = logging.getLogger(__name__)

DEFAULT_RUNTIME_IMAGE = "lambdasink-runtime:0.1.0"


@dataclass(frozen=True)
class Outcome:
    """What one pass did; used by handlers (retry?) and tests."""

    applied: bool
    config_error: str | None
    status: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, kube: Kube, *, runtime_image: str, clock: Callable[[], str] = _now) -> None:
        self.kube = kube
        self.runtime_image = runtime_image or DEFAULT_RUNTIME_IMAGE
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile_by_name(self, namespace: str, name: str) -> Outcome | None:
        """Re-read the sink first: a trigger from a child may outlive its parent."""
        with self._lock(namespace, name):
            body = self.kube.get_sink(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            return self._counted(body)

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        with self._lock(meta["namespace"], meta["name"]):
            return self._counted(body)

    def _counted(self, body: Mapping[str, Any]) -> Outcome:
        try:
            outcome = self._reconcile(body)
        except KubeError as exc:
            metrics.RECONCILES.labels("error").inc()
            self._report_failure(body, exc)
            raise
        metrics.RECONCILES.labels("invalid" if outcome.config_error else "ok").inc()
        if outcome.applied:
            metrics.DEPLOYMENT_APPLIES.inc()
        return outcome

    def _report_failure(self, body: Mapping[str, Any], exc: KubeError) -> None:
        """Best effort: a pass that failed half-way still leaves conditions (the first visit
        included); kopf retries the pass."""
        meta = body["metadata"]
        generation = meta.get("generation")
        old = (body.get("status") or {}).get("conditions") or []
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
            self.kube.patch_sink_status(meta["namespace"], meta["name"], {"conditions": merged})
        except KubeError as again:
            log.warning("could not report the failure on %s: %s", meta["name"], again)

    # ------------------------------------------------------------------ the pass

    def _read_secrets(
        self, namespace: str, plan: spec.WorkerPlan
    ) -> tuple[dict[spec.SecretKey, str], dict[spec.SecretKey, str | None], list[str]]:
        """Values (text, for validation), digests (for the hash) and what is missing."""
        values: dict[spec.SecretKey, str] = {}
        digests: dict[spec.SecretKey, str | None] = {}
        missing: list[str] = []
        cache: dict[str, dict[str, str] | None] = {}
        for ref in plan.secret_keys:
            if ref.secret not in cache:
                cache[ref.secret] = self.kube.get_secret_data(namespace, ref.secret)
            data = cache[ref.secret]
            if data is None:
                message = f'Secret "{ref.secret}" not found in namespace {namespace}'
                if message not in missing:
                    missing.append(message)
                digests[ref] = None
                continue
            if ref.key not in data:
                missing.append(f"{ref.describe()} not found")
                digests[ref] = None
                continue
            try:
                raw = base64.b64decode(data[ref.key], validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            digests[ref] = manifests.secret_digest(raw)
            values[ref] = raw.decode("utf-8", "replace")
        return values, digests, missing

    def _reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        sink_spec: Mapping[str, Any] = body.get("spec") or {}
        old_status: Mapping[str, Any] = body.get("status") or {}
        old_conditions = old_status.get("conditions") or []
        plan = spec.plan_worker(name, sink_spec)

        values, digests, missing = self._read_secrets(namespace, plan)
        config_error = spec.check_spec(sink_spec) or spec.validate(plan, values)
        deployment_name = manifests.deployment_name(name)
        current = self.kube.get_deployment(namespace, deployment_name)
        applied = False
        blocked: str | None = None
        config_hash = manifests.config_hash(plan, digests)

        if current is not None and manifests.controller_uid(current) != meta.get("uid"):
            blocked = (
                f'Deployment "{deployment_name}" exists and is not controlled by this LambdaSink'
            )
        elif config_error is None:
            desired = manifests.build_deployment(
                body, plan, image=self.runtime_image, config_hash=config_hash
            )
            if current is None or drift.drifted(desired, current):
                try:
                    current = self.kube.apply_deployment(desired)
                    applied = True
                    log.info(
                        "applied Deployment %s/%s (hash %s)",
                        namespace,
                        deployment_name,
                        config_hash,
                    )
                except KubeError as exc:
                    if exc.retriable:
                        raise
                    blocked = f"the API server refused the worker Deployment: {exc}"

        desired_replicas = int(sink_spec.get("replicas", 1))
        dep_status: Mapping[str, Any] = (current or {}).get("status") or {}
        pods = (
            self.kube.list_pods(namespace, manifests.selector_string(name))
            if current is not None
            else []
        )
        workers = conditions.Workers(
            desired=desired_replicas,
            exists=current is not None,
            replicas=int(dep_status.get("replicas") or 0),
            ready=int(dep_status.get("readyReplicas") or 0),
            updated=int(dep_status.get("updatedReplicas") or 0),
            failing=conditions.worker_failure(pods),
        )
        updates = [
            conditions.ready(
                generation=generation,
                config_error=config_error,
                blocked=blocked,
                missing_secrets=missing,
                workers=workers,
            ),
            conditions.config_valid(config_error, generation),
            conditions.secrets_resolved(missing, generation),
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
            self.kube.patch_sink_status(namespace, name, status)
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
                ):
                    continue  # said by its own condition, or not a problem
                self.kube.create_event(
                    body, type_="Warning", reason=cond["reason"], message=cond["message"]
                )
        if applied:
            name = manifests.deployment_name(body["metadata"]["name"])
            self.kube.create_event(
                body,
                type_="Normal",
                reason="DeploymentApplied",
                message=f"worker Deployment {name} applied",
            )
