"""The reconciler's Kubernetes API calls (kopf's own watching and indexing aside).

Public APIs only: `kubernetes.dynamic.DynamicClient` (server-side apply through
`server_side_apply`, merge patches of the status subresource), and `kopf.event`/`kopf.warn`
for Events. Objects go in and come out as plain dicts exactly as the API serves them (camelCase),
so the pure builders and this module share one shape. The client blocks, so every call runs in a
worker thread (`asyncio.to_thread`): kopf's event loop keeps serving watches meanwhile.
404 on read means "absent" (None); 404 on a status write is tolerated (the sink went away).
Every verb used here is listed in RBAC.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import kopf
import kubernetes
import urllib3
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from .spec import API_VERSION, KIND

log = logging.getLogger(__name__)

FIELD_MANAGER = "lambdasink-operator"
_TIMEOUT = (10.0, 30.0)
T = TypeVar("T")


class KubeError(Exception):
    """An API call failed; `retriable` says whether the same call may succeed later."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable


def _server_message(exc: DynamicApiError) -> str:
    body = exc.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    if not text:
        return str(exc.reason or f"HTTP {exc.status}")
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500] or f"HTTP {exc.status}"
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return f"HTTP {exc.status}"


class Kube:
    """The API seam of the reconciler; one instance per operator process.

    Credentials are loaded at once (a bad kubeconfig fails the start); the DynamicClient, whose
    construction already asks the API server (discovery), is made on first use, in a thread.
    """

    def __init__(self, api_client: Any | None = None) -> None:
        self._api_client = api_client if api_client is not None else _default_api_client()
        self._client: Any | None = None
        self._resources: dict[tuple[str, str], Any] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ transport

    def _resource(self, api_version: str, kind: str) -> Any:
        """The discovered API resource (discovery is lazy and cached by the client)."""
        with self._guard:
            if self._client is None:
                self._client = DynamicClient(self._api_client)  # type: ignore[no-untyped-call]
            key = (api_version, kind)
            if key not in self._resources:
                self._resources[key] = self._client.resources.get(
                    api_version=api_version, kind=kind
                )
            return self._resources[key]

    async def _call(self, what: str, call: Callable[[], T]) -> T | None:
        """Run one blocking call in a thread; None on 404, KubeError on anything else."""
        try:
            return await asyncio.to_thread(call)
        except DynamicApiError as exc:
            if exc.status == 404:
                return None
            status = int(exc.status or 0)
            message = f"{what}: {status} {_server_message(exc)}"
            raise KubeError(
                message, status=status, retriable=status in (403, 409, 429) or status >= 500
            ) from exc
        except ResourceNotFoundError as exc:  # the CRD is not (yet) served
            raise KubeError(f"{what}: {exc}", retriable=True) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{what}: {exc}", retriable=True) from exc

    def _read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        resource = self._resource(api_version, kind)
        found = resource.get(name=name, namespace=namespace, _request_timeout=_TIMEOUT)
        doc: dict[str, Any] = found.to_dict()
        return doc

    # ------------------------------------------------------------------ LambdaSinks

    async def patch_sink_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource (lists such as conditions are replaced whole)."""

        def patch() -> None:
            sinks = self._resource(API_VERSION, KIND)
            sinks.status.patch(
                body={"status": dict(status)},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                _request_timeout=_TIMEOUT,
            )

        await self._call(f"patch {KIND} {namespace}/{name} status", patch)

    async def scale_sink(self, namespace: str, name: str, replicas: int) -> None:
        """Set spec.replicas through the scale subresource, as `kubectl scale` or an HPA would
        (the autoscaler's only write to the spec)."""

        def patch() -> None:
            sinks = self._resource(API_VERSION, KIND)
            sinks.scale.patch(
                body={"spec": {"replicas": int(replicas)}},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                _request_timeout=_TIMEOUT,
            )

        await self._call(f"scale {KIND} {namespace}/{name} to {replicas}", patch)

    # ------------------------------------------------------------------ Deployments

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call(
            f"get Deployment {namespace}/{name}",
            lambda: self._read("apps/v1", "Deployment", namespace, name),
        )

    async def apply_deployment(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (create or update in one idempotent call; fields we no longer set
        are removed; fields someone else took over are taken back)."""
        meta = desired["metadata"]
        what = f"apply Deployment {meta['namespace']}/{meta['name']}"

        def apply() -> dict[str, Any]:
            deployments = self._resource("apps/v1", "Deployment")
            applied = deployments.server_side_apply(
                body=dict(desired),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                _request_timeout=_TIMEOUT,
            )
            doc: dict[str, Any] = applied.to_dict()
            return doc

        try:
            doc = await self._call(what, apply)
        except KubeError as exc:
            # Server-side apply answers 500 when the object does not fit the schema (e.g. an
            # unknown field passed through spec.pod.affinity): retrying cannot help.
            if exc.status == 500 and "failed to create typed patch object" in str(exc):
                raise KubeError(str(exc), status=exc.status, retriable=False) from exc
            raise
        if doc is None:  # 404 on apply: the namespace is going away; retry later
            raise KubeError(f"{what}: HTTP 404", status=404, retriable=True)
        return doc

    # ------------------------------------------------------------------ Secrets, Events

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 `data` (`stringData` never comes back); None when absent."""
        doc = await self._call(
            f"get Secret {namespace}/{name}",
            lambda: self._read("v1", "Secret", namespace, name),
        )
        if doc is None:
            return None
        return {str(k): str(v) for k, v in (doc.get("data") or {}).items()}

    def post_event(
        self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about `involved`, queued to kopf's poster (best effort, never
        raises). Only from inside a kopf handler: the poster's queue is the handler's context.
        Normal Events go by `kopf.event`: `kopf.info` is muted by `settings.posting.level`,
        which stays at WARNING so kopf's own INFO log lines do not become Events."""
        body = kopf.Body(cast(kopf.RawBody, dict(involved)))
        if type_ == "Warning":
            kopf.warn(body, reason=reason, message=message)
        else:
            kopf.event(body, type=type_, reason=reason, message=message)


def _default_api_client() -> Any:
    """In-cluster service account when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()
