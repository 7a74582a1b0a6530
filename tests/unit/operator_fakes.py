"""`MemoryKube`: an in-memory stand-in for kube-apiserver behind the reconciler's `KubeApi` seam.

The unit tests run no API server, so this small class keeps sinks, Deployments, pods and Secrets
as dicts, answers the reconciler's calls the way the server would (404 → None, server-side apply
creates or replaces what we own, `generation` moves when the spec does), records every call and
Event, and builds the indexes kopf would hold with the operator's own index functions. The real
API server is met in tests/cluster.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from lambdasink_operator import handlers as _handlers
from lambdasink_operator.kube import KubeError
from lambdasink_operator.observed import View

#: The index functions as plain callables: kopf's decorators retype them for its registry.
handlers: Any = _handlers

NS = "team-a"
_uids = itertools.count(100)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sink_body(name: str = "orders", *, uid: str = "uid-1", **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "replicas": 1,
        "pulsar": {"serviceUrl": "pulsar://broker:6650", "adminUrl": "http://broker:8080"},
        "input": {"topics": ["persistent://public/default/orders"]},
        "sinkConfig": {"awsRegion": "us-east-1", "lambdaFunctionName": "fn"},
        "aws": {"credentialsSecret": {"name": "aws"}},
    }
    doc.update(spec)
    return {
        "apiVersion": "lambdasink.dev/v1alpha1",
        "kind": "LambdaSink",
        "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1},
        "spec": doc,
    }


class MemoryKube:
    def __init__(self) -> None:
        self.sinks: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        #: a mutating admission webhook: changes every Deployment the server stores
        self.webhook: Callable[[dict[str, Any]], None] | None = None
        #: the server refuses applies with this error (e.g. an invalid pod field)
        self.refuse: KubeError | None = None

    # ------------------------------------------------------------------ the KubeApi seam

    async def patch_sink_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.calls.append(f"patch_sink_status {name}")
        sink = self.sinks.get((namespace, name))
        if sink is not None:
            sink.setdefault("status", {}).update(copy.deepcopy(dict(status)))

    async def scale_sink(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(f"scale_sink {name} {replicas}")
        sink = self.sinks.get((namespace, name))
        if sink is not None:
            sink.setdefault("spec", {})["replicas"] = replicas

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get_deployment {name}")
        found = self.deployments.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def apply_deployment(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        meta = desired["metadata"]
        self.calls.append(f"apply_deployment {meta['name']}")
        if self.refuse is not None:
            raise self.refuse
        key = (meta["namespace"], meta["name"])
        old = self.deployments.get(key)
        new = copy.deepcopy(dict(desired))
        if old is not None:  # what other writers added survives an apply
            merged = copy.deepcopy(old)
            merged["metadata"].update(new["metadata"])
            merged["spec"] = new["spec"]
            new = merged
        if self.webhook is not None:
            self.webhook(new)
        generation = int((old or {}).get("metadata", {}).get("generation", 0))
        if old is None or old["spec"] != new["spec"]:
            generation += 1
        new["metadata"]["generation"] = generation
        new["metadata"].setdefault("uid", f"dep-{next(_uids)}")
        new["status"] = (old or {}).get("status") or {"replicas": 0}
        self.deployments[key] = new
        return copy.deepcopy(new)

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self.calls.append(f"get_secret_data {name}")
        found = self.secrets.get((namespace, name))
        return dict(found.get("data") or {}) if found is not None else None

    def post_event(
        self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        self.events.append((type_, reason, message))

    # ------------------------------------------------------------------ test helpers

    def add_sink(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sinks[(body["metadata"]["namespace"], body["metadata"]["name"])] = body
        return body

    def add_secret(self, name: str, namespace: str = NS, **data: str) -> None:
        self.secrets[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: b64(v) for k, v in data.items()},
        }

    def sink(self, name: str = "orders") -> dict[str, Any]:
        return copy.deepcopy(self.sinks[(NS, name)])

    def view(self) -> View:
        """The indexes kopf would hold now, built by the operator's own index functions."""

        def index(items: list[dict[str, Any] | None]) -> dict[Any, list[Any]]:
            out: dict[Any, list[Any]] = {}
            for entry in items:
                for key, value in (entry or {}).items():
                    out.setdefault(key, []).append(value)
            return out

        def kw(obj: dict[str, Any]) -> dict[str, Any]:
            meta = obj["metadata"]
            return {"namespace": meta["namespace"], "name": meta["name"], "body": obj}

        managed = [
            d
            for d in self.deployments.values()
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
            == "lambdasink-operator"
        ]
        return View(
            sinks=index([handlers.sink_index(**kw(s)) for s in self.sinks.values()]),
            deployments=index([handlers.deployment_index(**kw(d)) for d in managed]),
            pods=index([handlers.pod_index(**kw(p)) for p in self.pods.values()]),
            secrets=index([handlers.secret_index(**kw(s)) for s in self.secrets.values()]),
        )

    def indexes(self) -> dict[str, Any]:
        """The same, as the keyword arguments kopf passes to handlers."""
        view = self.view()
        users: dict[Any, list[Any]] = {}
        for s in self.sinks.values():
            for key, value in handlers.secret_users(
                **{
                    "namespace": s["metadata"]["namespace"],
                    "name": s["metadata"]["name"],
                    "body": s,
                }
            ).items():
                users.setdefault(key, []).append(value)
        return {
            "sink_index": view.sinks,
            "deployment_index": view.deployments,
            "pod_index": view.pods,
            "secret_index": view.secrets,
            "secret_users": users,
        }
