"""What kopf's indexes hold about each sink's world, so a trigger costs no API reads.

The index functions in `handlers` store what these pure helpers return: the sinks, our
Deployments, a summary of our worker pods, and for Secrets only a digest of each key's value
and whether it is blank (never a value). `View` reads them back for one reconcile pass; an index
is any mapping of key → stored values (kopf's `Index`, or a dict of lists in the tests).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import manifests

Key = tuple[str | None, str]
Index = Mapping[Key, Iterable[Any]]


@dataclass(frozen=True)
class KeyDigest:
    """One Secret key: a digest of its value (for the config hash) and whether it is blank
    (what validation needs to know)."""

    digest: str
    blank: bool


def secret_digests(data: Mapping[str, Any] | None) -> dict[str, KeyDigest]:
    """A Secret's base64 `data` → a KeyDigest per key."""
    out: dict[str, KeyDigest] = {}
    for key, encoded in (data or {}).items():
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        text = raw.decode("utf-8", "replace")
        out[str(key)] = KeyDigest(manifests.secret_digest(raw), not text.strip())
    return out


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the conditions read from a worker pod: its name, deletion, container states, and
    its IP (the operator reads the worker's /status there)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "status": {
            "containerStatuses": copy.deepcopy(status.get("containerStatuses") or []),
            "podIP": status.get("podIP"),
        },
    }


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of an object for an index (kopf's bodies are live views)."""
    return copy.deepcopy(dict(body))


def _first(index: Index | None, key: Key) -> Any | None:
    values = (index or {}).get(key)
    return next(iter(values), None) if values is not None else None


@dataclass(frozen=True)
class View:
    """The indexes of one handler call. A missing entry means "not seen": the reconciler then
    asks the API where it must (a foreign Deployment is not indexed). `secrets_complete` says
    the Secret index holds every Secret of the watched namespaces (no label selector narrows
    the watch), so a Secret missing there is absent and need not be asked for."""

    sinks: Index = field(default_factory=dict)
    deployments: Index = field(default_factory=dict)
    pods: Index = field(default_factory=dict)
    secrets: Index = field(default_factory=dict)
    secrets_complete: bool = False

    def sink(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = _first(self.sinks, (namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = _first(self.deployments, (namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def worker_pods(self, namespace: str, sink: str) -> list[dict[str, Any]]:
        return [dict(p) for p in (self.pods.get((namespace, sink)) or ())]

    def secret(self, namespace: str, name: str) -> dict[str, KeyDigest] | None:
        found = _first(self.secrets, (namespace, name))
        return dict(found) if found is not None else None
