"""Thin kopf handlers: each trigger finds the LambdaSink concerned and runs one reconcile pass.

Triggers: the sink itself (create/update/resume), its Deployment (drift: edited or deleted by
someone else), its pods (a failing worker's termination message), and referenced Secrets
(rotation rolls the workers; a late Secret clears `SecretNotFound`). Indexes keep what a pass
reads (sinks, our Deployments, worker pod summaries, Secret key digests), so a pod event costs
no API read. No delete handler, timer or daemon is registered, so kopf adds no finalizer: the
Deployment goes by garbage collection; a sink's DELETED event only drops its lock. The workers'
/status (failure-policy outcomes, circuit breaker) is read by one background task started at
start-up, for the same reason; so are the pre-flight checks (`preflight`), which also run on
every create/update of a sink and change of a Secret it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Mapping
from typing import Any

import kopf

from . import manifests, observed, sizing, spec, worker_probe
from .kube import Kube, KubeError
from .preflight import Preflight
from .reconcile import DEFAULT_RUNTIME_IMAGE, Reconciler

ENV_RUNTIME_IMAGE = "LAMBDASINK_RUNTIME_IMAGE"
#: Seconds between reads of the workers' /status (0: never); default DEFAULT_WORKER_STATUS_S.
ENV_WORKER_STATUS_INTERVAL = "LAMBDASINK_OPERATOR_WORKER_STATUS_INTERVAL"
DEFAULT_WORKER_STATUS_S = 15.0
SINKS = (spec.GROUP, spec.VERSION, spec.PLURAL)
DEPLOYMENTS = ("apps", "v1", "deployments")
PODS = ("v1", "pods")
SECRETS = ("v1", "secrets")
MANAGED = {manifests.LABEL_MANAGED_BY: manifests.OPERATOR}
MANAGED_SELECTOR = f"{manifests.LABEL_MANAGED_BY}={manifests.OPERATOR}"
RETRY_DELAY_S = 10

Key = tuple[str | None, str]
log = logging.getLogger("lambdasink.operator")


def configure(settings: kopf.OperatorSettings, *, secret_selector: str = "") -> None:
    """Settings that keep kopf's API footprint small (see RBAC.md)."""
    # No CRD/namespace watching: resources are discovered once, namespaces come from the CLI.
    settings.scanning.disabled = True
    # kopf's bookkeeping in our annotation namespace, none of it in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=spec.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=spec.GROUP, key="last-handled-configuration"
    )
    # Only our Deployments and worker pods are sent by the API server (server-side filter).
    settings.watching.label_selectors[DEPLOYMENTS] = MANAGED_SELECTOR
    settings.watching.label_selectors[PODS] = MANAGED_SELECTOR
    if secret_selector:
        settings.watching.label_selectors[SECRETS] = secret_selector
    # kopf's own log lines become Events from WARNING up; ours are posted explicitly.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    configure(settings, secret_selector=getattr(memo, "secret_selector", "") or "")
    image = getattr(memo, "runtime_image", None) or os.environ.get(ENV_RUNTIME_IMAGE, "")
    memo.reconciler = Reconciler(Kube(), runtime_image=image or DEFAULT_RUNTIME_IMAGE)
    # Resource handlers get shallow copies of this memo: a shared holder carries the live view
    # they see to the worker-status task, which the first of them starts (see `view`).
    interval = float(os.environ.get(ENV_WORKER_STATUS_INTERVAL, "") or DEFAULT_WORKER_STATUS_S)
    backlog_every = os.environ.get(sizing.ENV_BACKLOG_INTERVAL, "")
    memo.live = {
        "view": None,
        "task": None,
        "interval": interval,
        "sizing": None,
        "preflight_task": None,
        "backlog_interval": float(backlog_every or sizing.DEFAULT_INTERVAL_S),
    }
    memo.preflight = Preflight.from_env(memo.reconciler)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    live = getattr(memo, "live", None) or {}
    for key in ("task", "preflight_task", "sizing"):
        task: asyncio.Task[None] | None = live.get(key)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    preflight: Preflight | None = getattr(memo, "preflight", None)
    if preflight is not None:
        await preflight.stop()


async def poll_workers(live: dict[str, Any], reconciler: Reconciler, interval: float) -> None:
    """Every `interval` s, read each sink's worker /status into its Delivering / DeadLettering
    conditions, from the live indexes the handlers last saw. A failure for one sink is logged
    and the loop goes on."""
    while True:
        await asyncio.sleep(interval)
        current: observed.View | None = live["view"]
        if current is None:
            continue
        for namespace, name in [k for k in list(current.sinks) if k[0]]:
            pods = current.worker_pods(str(namespace), name)
            if not pods:
                continue
            try:
                reports = await worker_probe.read_all(pods)
                await reconciler.report_workers(str(namespace), name, reports, current)
            except KubeError as exc:
                log.warning("worker status of %s/%s not written: %s", namespace, name, exc)
            except Exception:
                log.exception("worker status of %s/%s failed", namespace, name)


# ---------------------------------------------------------------------- indexes


@kopf.index(*SINKS)
def sink_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """(namespace, name) → the sink."""
    return {(namespace, name): observed.snapshot(body)}


@kopf.index(*SINKS)
def secret_users(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, str]:
    """(namespace, Secret name) → names of the LambdaSinks reading it."""
    sink_spec: Mapping[str, Any] = body.get("spec") or {}
    return {(namespace, secret): name for secret in spec.referenced_secrets(sink_spec)}


@kopf.index(*DEPLOYMENTS, labels=MANAGED)
def deployment_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """(namespace, Deployment name) → our Deployment."""
    return {(namespace, name): observed.snapshot(body)}


@kopf.index(*PODS, labels=MANAGED)
def pod_index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
    """(namespace, sink name) → a summary of each worker pod."""
    sink = manifests.owner_sink_name(body)
    return {(namespace, sink): observed.pod_summary(body)} if sink else None


@kopf.index(*SECRETS)
def secret_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """(namespace, Secret name) → a digest of each key (never a value). Every watched Secret,
    not only referenced ones: a sink may start referencing one at any time, and the index must
    already know it (a miss means absent)."""
    return {(namespace, name): observed.secret_digests(body.get("data"))}


def view(memo: Any, kwargs: Mapping[str, Any]) -> observed.View:
    """The indexes kopf passes to every handler, as the reconciler reads them (kept in
    `memo.live` for the worker-status task: the indexes are live, so the last stays current)."""
    current = observed.View(
        sinks=kwargs["sink_index"],
        deployments=kwargs["deployment_index"],
        pods=kwargs["pod_index"],
        secrets=kwargs["secret_index"],
        secrets_complete=not getattr(memo, "secret_selector", ""),
    )
    live = getattr(memo, "live", None)
    if live is not None:
        live["view"] = current
        if live["task"] is None and live["interval"] > 0:
            # Started from a resource handler, not at start-up: the task inherits the handler's
            # context, which kopf's Event posting needs. A task, not a kopf timer: timers need
            # a finalizer on every sink (see the module doc).
            live["task"] = asyncio.get_running_loop().create_task(
                poll_workers(live, memo.reconciler, live["interval"])
            )
        preflight: Preflight | None = getattr(memo, "preflight", None)
        if live.get("preflight_task") is None and preflight and preflight.interval_s > 0:
            live["preflight_task"] = asyncio.get_running_loop().create_task(
                preflight.run_forever(live)
            )
        if live.get("sizing") is None and live.get("backlog_interval", 0) > 0:
            # The backlog loop (sizing.py), started the same way for the same reasons.
            live["sizing"] = asyncio.get_running_loop().create_task(
                sizing.Sizer(memo.reconciler).run(live, live["backlog_interval"])
            )
    return current


# ---------------------------------------------------------------------- handlers


async def _run(action: Awaitable[object]) -> None:
    try:
        await action
    except KubeError as exc:
        if exc.retriable:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from exc
        raise kopf.PermanentError(str(exc)) from exc


@kopf.on.resume(*SINKS)
@kopf.on.create(*SINKS)
@kopf.on.update(*SINKS)
async def sink_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    current = view(memo, kwargs)
    _preflight(memo, body.get("metadata") or {}, current)
    await _run(reconciler.reconcile(observed.snapshot(body), current))


def _preflight(memo: Any, meta: Mapping[str, Any], current: observed.View) -> None:
    """Start the sink's pre-flight checks in the background (they report on their own)."""
    preflight: Preflight | None = getattr(memo, "preflight", None)
    if preflight is not None and meta.get("namespace") and meta.get("name"):
        preflight.schedule(str(meta["namespace"]), str(meta["name"]), current)


@kopf.on.event(*SINKS, when=lambda type, **_: type == "DELETED")
async def sink_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    if namespace:
        reconciler.forget(namespace, name)


@kopf.on.event(*DEPLOYMENTS, labels=MANAGED)
@kopf.on.event(*PODS, labels=MANAGED)
async def child_changed(body: kopf.Body, namespace: str | None, memo: Any, **kwargs: Any) -> None:
    sink = manifests.owner_sink_name(body)
    if sink and namespace:
        reconciler: Reconciler = memo.reconciler
        await _run(reconciler.reconcile_by_name(namespace, sink, view(memo, kwargs)))


def _is_referenced(namespace: str | None, name: str, **kwargs: Any) -> bool:
    """Only Secrets some LambdaSink reads wake the handler."""
    users: kopf.Index[Key, str] = kwargs["secret_users"]
    return (namespace, name) in users


@kopf.on.event(*SECRETS, when=_is_referenced)
async def secret_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    users: kopf.Index[Key, str] = kwargs["secret_users"]
    reconciler: Reconciler = memo.reconciler
    if not namespace:
        return
    for sink in sorted(set(users.get((namespace, name), []))):
        current = view(memo, kwargs)
        _preflight(memo, {"namespace": namespace, "name": sink}, current)
        await _run(reconciler.reconcile_by_name(namespace, sink, current))
