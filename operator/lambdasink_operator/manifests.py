"""Pure builders: a LambdaSink (dict) and its WorkerPlan → the worker Deployment (dict).

No I/O here. Names, labels, the owner reference and the configuration hash live here too, so the
unit tests can check the whole Deployment without a cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from . import drain
from .spec import API_VERSION, HTTP_PORT, KIND, SecretKey, WorkerPlan

APP = "lambdasink"
OPERATOR = "lambdasink-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
HASH_ANNOTATION = "lambdasink.dev/config-hash"
CONTAINER = "worker"
CONFIG_ENV = "LAMBDASINK_CONFIG"

DEFAULT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment_name(sink_name: str) -> str:
    return f"lambdasink-{sink_name}"


def selector_labels(sink_name: str) -> dict[str, str]:
    """The immutable selector of the Deployment (and of the scale subresource)."""
    return {LABEL_NAME: APP, LABEL_INSTANCE: sink_name}


def labels(sink_name: str) -> dict[str, str]:
    return {
        **selector_labels(sink_name),
        LABEL_COMPONENT: "worker",
        LABEL_PART_OF: "lambda-sink",
        LABEL_MANAGED_BY: OPERATOR,
    }


def selector_string(sink_name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(sink_name).items()))


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    ref: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return ref


def secret_digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def config_hash(plan: WorkerPlan, secret_digests: Mapping[SecretKey, str | None]) -> str:
    """Hash of the effective config and of every referenced Secret key's content (None when
    missing): a rotated Secret changes the pod template and so rolls the workers."""
    doc = {
        "config": plan.config,
        "secrets": {f"{k.secret}/{k.key}": secret_digests.get(k) for k in plan.secret_keys},
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


POD_NAME_ENV = "LAMBDASINK_POD_NAME"


def _container(spec: Mapping[str, Any], plan: WorkerPlan, image: str) -> dict[str, Any]:
    pod = spec.get("pod") or {}
    env: list[dict[str, Any]] = [
        {"name": CONFIG_ENV, "value": plan.config_json()},
        # The worker names itself in /status, so the operator knows who answered at the pod IP.
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    env += [
        {
            "name": item.env,
            "valueFrom": {"secretKeyRef": {"name": item.source.secret, "key": item.source.key}},
        }
        for item in plan.env
    ]
    env += [dict(e) for e in pod.get("env") or []]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir, not a shared /tmp
    mounts += [{"name": m.volume, "mountPath": m.mount_path, "readOnly": True} for m in plan.mounts]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.get("image") or image,
        "command": ["lambdasink-runtime"],
        "env": env,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(pod.get("securityContext") or DEFAULT_SECURITY_CONTEXT),
        "volumeMounts": mounts,
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    if pod.get("resources"):
        container["resources"] = dict(pod["resources"])
    return container


def _pod_spec(spec: Mapping[str, Any], plan: WorkerPlan, image: str) -> dict[str, Any]:
    pod = spec.get("pod") or {}
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    volumes += [
        {
            "name": m.volume,
            "secret": {"secretName": m.secret, "items": m.items()},
        }
        for m in plan.mounts
    ]
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, plan, image)],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": dict(pod.get("podSecurityContext") or DEFAULT_POD_SECURITY_CONTEXT),
    }
    passthrough = (
        "serviceAccountName",
        "nodeSelector",
        "tolerations",
        "affinity",
        "imagePullSecrets",
        "priorityClassName",
    )
    for key in passthrough:
        if pod.get(key) not in (None, "", [], {}):
            pod_spec[key] = pod[key]
    # the user's value, else long enough for the longest call to finish (drain.py)
    pod_spec["terminationGracePeriodSeconds"] = drain.grace_seconds(spec)
    return pod_spec


def build_deployment(
    body: Mapping[str, Any], plan: WorkerPlan, *, image: str, config_hash: str
) -> dict[str, Any]:
    """The complete desired Deployment (applied with server-side apply, so fields we stop
    setting are removed)."""
    meta = body["metadata"]
    name = meta["name"]
    spec = body.get("spec") or {}
    pod = spec.get("pod") or {}
    own_labels = labels(name)
    exclusive = (spec.get("input") or {}).get("subscriptionType") == "Exclusive"
    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if exclusive  # a second Exclusive consumer cannot subscribe while the old one runs
        else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name),
            "namespace": meta["namespace"],
            "labels": own_labels,
            "annotations": {HASH_ANNOTATION: config_hash},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": strategy,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": {**dict(pod.get("labels") or {}), **own_labels},
                    "annotations": {
                        **dict(pod.get("annotations") or {}),
                        HASH_ANNOTATION: config_hash,
                    },
                },
                "spec": _pod_spec(spec, plan, image),
            },
        },
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """UID of the object's controlling owner, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_sink_name(obj: Mapping[str, Any]) -> str | None:
    """Name of the LambdaSink controlling a Deployment (or labelling a Pod)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith("lambdasink.dev/"):
            return str(ref["name"])
    labels_ = meta.get("labels") or {}
    if labels_.get(LABEL_MANAGED_BY) == OPERATOR and labels_.get(LABEL_INSTANCE):
        return str(labels_[LABEL_INSTANCE])
    return None
