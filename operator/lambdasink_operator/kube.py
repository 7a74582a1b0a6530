"""The only module that talks to the Kubernetes API (kopf's own watching aside).

Objects go in and come out as plain dicts exactly as the API serves them (camelCase), through
the client's low-level request path, so the pure builders and this module share one shape.
404 on read means "absent" (None); 404 on status writes and 409 on events are tolerated.
Every verb used here is listed in RBAC.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets as _random
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

import kubernetes
import urllib3

from .spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

FIELD_MANAGER = "lambdasink-operator"
_TIMEOUT = (10.0, 30.0)


class KubeError(Exception):
    """An API call failed; `retriable` says whether the same call may succeed later."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable


def _server_message(status: int, data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return f"HTTP {status}"


class Kube:
    """Blocking API calls for the reconciler; one instance per operator process."""

    def __init__(self, api_client: Any | None = None) -> None:
        self._api = api_client if api_client is not None else _default_client()

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any] | None]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*params, _request_timeout=_TIMEOUT)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{method} {path}: {exc}", retriable=True) from exc
        data: bytes = response.read() or b""
        status = int(response.status)
        if status >= 300:
            if status in (404, 409):
                return status, None
            message = f"{method} {path}: {status} {_server_message(status, data)}"
            raise KubeError(message, status=status, retriable=status in (403, 429) or status >= 500)
        return status, cast(dict[str, Any], json.loads(data)) if data else {}

    def _get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        status, doc = self._call("GET", path, query=query)
        return None if status == 404 else doc

    # ------------------------------------------------------------------ LambdaSinks

    @staticmethod
    def _sink_path(namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
        return f"{base}/{quote(name)}" if name else base

    def get_sink(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self._sink_path(namespace, name))

    def patch_sink_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
        self._call(
            "PATCH",
            self._sink_path(namespace, name) + "/status",
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    # ------------------------------------------------------------------ Deployments

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}")

    def apply_deployment(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (create or update in one idempotent call; fields we no longer set
        are removed; fields someone else took over are taken back)."""
        meta = desired["metadata"]
        path = (
            f"/apis/apps/v1/namespaces/{quote(meta['namespace'])}/deployments/{quote(meta['name'])}"
        )
        try:
            status, doc = self._call(
                "PATCH",
                path,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=dict(desired),
                content_type="application/apply-patch+yaml",
            )
        except KubeError as exc:
            # Server-side apply answers 500 when the object does not fit the schema (e.g. an
            # unknown field passed through spec.pod.affinity): retrying cannot help.
            if exc.status == 500 and "failed to create typed patch object" in str(exc):
                raise KubeError(str(exc), status=exc.status, retriable=False) from exc
            raise
        if doc is None:  # 404/409 on apply: the namespace is going away or a race; retry later
            raise KubeError(f"apply {path}: HTTP {status}", status=status, retriable=True)
        return doc

    # ------------------------------------------------------------------ Pods, Secrets, Events

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = self._get(f"/api/v1/namespaces/{quote(namespace)}/pods", {"labelSelector": selector})
        return list((doc or {}).get("items") or [])

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 `data` (plus `stringData` never comes back); None when absent."""
        doc = self._get(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")
        if doc is None:
            return None
        return {str(k): str(v) for k, v in (doc.get("data") or {}).items()}

    def create_event(
        self,
        involved: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
    ) -> None:
        """A core/v1 Event about `involved`; failures are logged, never raised (best effort)."""
        meta = involved["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = meta["namespace"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{_random.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=event)
        except KubeError as exc:
            log.warning("could not post event %s for %s: %s", reason, meta["name"], exc)


def _default_client() -> Any:
    """In-cluster service account when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()
