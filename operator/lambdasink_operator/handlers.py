"""Thin kopf handlers: each trigger finds the LambdaSink concerned and runs one reconcile pass.

Triggers: the sink itself (create/update/resume), its Deployment (drift: edited or deleted by
someone else), its pods (a failing worker's termination message), and referenced Secrets
(rotation rolls the workers; a late Secret clears `SecretNotFound`). No delete handler, timer or
daemon is registered, so kopf adds no finalizer: the Deployment goes by garbage collection.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from . import manifests, spec
from .kube import Kube, KubeError
from .reconcile import DEFAULT_RUNTIME_IMAGE, Reconciler

ENV_RUNTIME_IMAGE = "LAMBDASINK_RUNTIME_IMAGE"
SINKS = (spec.GROUP, spec.VERSION, spec.PLURAL)
MANAGED = {manifests.LABEL_MANAGED_BY: manifests.OPERATOR}
RETRY_DELAY_S = 10


def configure(settings: kopf.OperatorSettings) -> None:
    """Settings that keep kopf's API footprint small (see RBAC.md)."""
    # No CRD/namespace watching: resources are discovered once, namespaces come from the CLI.
    settings.scanning.disabled = True
    # kopf's bookkeeping in our annotation namespace, none of it in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=spec.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=spec.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    configure(settings)
    image = getattr(memo, "runtime_image", None) or os.environ.get(ENV_RUNTIME_IMAGE, "")
    memo.reconciler = Reconciler(Kube(), runtime_image=image or DEFAULT_RUNTIME_IMAGE)


@kopf.index(*SINKS)
def secret_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], str]:
    """(namespace, Secret name) → names of the LambdaSinks reading it."""
    sink_spec: Mapping[str, Any] = body.get("spec") or {}
    return {(namespace, secret): name for secret in spec.referenced_secrets(sink_spec)}


def _run(action: Callable[[], object]) -> None:
    try:
        action()
    except KubeError as exc:
        if exc.retriable:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from exc
        raise kopf.PermanentError(str(exc)) from exc


@kopf.on.resume(*SINKS)
@kopf.on.create(*SINKS)
@kopf.on.update(*SINKS)
def sink_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    _run(lambda: reconciler.reconcile(dict(body)))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "pods", labels=MANAGED)
def child_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    sink = manifests.owner_sink_name(body)
    if sink and namespace:
        reconciler: Reconciler = memo.reconciler
        _run(lambda: reconciler.reconcile_by_name(namespace, sink))


def _is_referenced(namespace: str | None, name: str, **kwargs: Any) -> bool:
    """Only Secrets some LambdaSink reads wake the handler (kopf still watches them all)."""
    index: kopf.Index[tuple[str | None, str], str] = kwargs["secret_index"]
    return (namespace, name) in index


@kopf.on.event("v1", "secrets", when=_is_referenced)
def secret_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    index: kopf.Index[tuple[str | None, str], str] = kwargs["secret_index"]
    reconciler: Reconciler = memo.reconciler
    if not namespace:
        return
    for sink in sorted(set(index.get((namespace, name), []))):
        _run(functools.partial(reconciler.reconcile_by_name, namespace, sink))
