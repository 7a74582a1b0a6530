"""The control API under /_gateway/: faults the emulator cannot produce (throttles, 5xx, 413, a
Handled function error, delays, IAM denies per access key), added latency, recent requests,
health, run-time functions.
A fake by design, used only for those cases; its routes and JSON are what tests and bench use."""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import Gateway

FAULT_KINDS = {"throttle", "server_error", "too_large", "function_error", "delay"}
SERVER_ERROR_TYPES = {
    500: "ServiceException",
    502: "EC2UnexpectedException",
    503: "ServiceException",
    504: "ServiceException",
}


@dataclass
class Fault:
    id: str
    function: str
    kind: str
    count: int
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": self.function,
            "kind": self.kind,
            "count": self.count,
            **self.params,
        }


class Faults:
    """The injected faults, taken one per invocation in the order they were added."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.items.append(fault)

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f.as_json() for f in self.items]

    def remove(self, function: str | None, fault_id: str | None) -> None:
        """Those matching both filters (None matches all)."""
        with self.lock:
            self.items = [
                f
                for f in self.items
                if not (function in (None, f.function) and fault_id in (None, f.id))
            ]

    def drop_function(self, name: str) -> None:
        with self.lock:
            self.items = [f for f in self.items if f.function != name]

    def take(self, function: str) -> Fault | None:
        """The first fault for `function` (or '*'), counted down; None if there is none."""
        with self.lock:
            for f in self.items:
                if f.function in (function, "*") and f.count != 0:
                    if f.count > 0:
                        f.count -= 1
                    self.items = [x for x in self.items if x.count != 0]
                    return f
        return None


class Denies:
    """Per-access-key deny policies: a fake for IAM (the emulator checks no signature or policy).

    A request signed with a denied access key gets the 403 AccessDeniedException Lambda sends.
    """

    ACTIONS = frozenset({"lambda:InvokeFunction", "lambda:GetFunction"})

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []

    def add(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = data.get("accessKeyId")
        actions = data.get("actions") or sorted(self.ACTIONS)
        if not isinstance(key, str) or not key:
            return 400, {"error": "accessKeyId: a non-empty access key id"}
        if not isinstance(actions, list) or not set(actions) <= self.ACTIONS:
            return 400, {"error": f"actions: a list of {sorted(self.ACTIONS)}"}
        item = {
            "id": str(uuid.uuid4()),
            "accessKeyId": key,
            "function": str(data.get("function") or "*"),
            "actions": sorted(actions),
        }
        with self.lock:
            self.items.append(item)
        return 200, item

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(i) for i in self.items]

    def remove(self, key: str | None, deny_id: str | None) -> None:
        with self.lock:
            self.items = [
                i
                for i in self.items
                if not (key in (None, i["accessKeyId"]) and deny_id in (None, i["id"]))
            ]

    def denies(self, key: str | None, function: str, action: str) -> bool:
        with self.lock:
            return any(
                i["accessKeyId"] == key
                and i["function"] in ("*", function)
                and action in i["actions"]
                for i in self.items
            )


def handle(
    gw: Gateway, method: str, url: urllib.parse.SplitResult, data: dict[str, Any]
) -> tuple[int, bytes]:
    """One control request (`data`: the POST body) -> (status, JSON body)."""
    q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    path = url.path.rstrip("/")
    if path == "/_gateway/health":
        ok = gw.healthy()
        return 200 if ok else 503, json.dumps(
            {"healthy": ok, "functions": sorted(gw.functions)}
        ).encode()
    if path == "/_gateway/functions":
        if method == "POST":
            status, result = gw.add_function(data)
            return status, json.dumps(result).encode()
        fns = list(gw.functions.items())
        listing = {
            n: {**f.spec, "latencyMs": f.latency_ms, "arn": f.arn, "dynamic": f.dynamic}
            for n, f in fns
        }
        return 200, json.dumps(listing).encode()
    if path.startswith("/_gateway/functions/") and method == "DELETE":
        status, result = gw.remove_function(path.rsplit("/", 1)[1])
        return status, json.dumps(result).encode()
    if path == "/_gateway/faults":
        if method == "GET":
            return 200, json.dumps(gw.faults.listing()).encode()
        if method == "DELETE":
            gw.faults.remove(q.get("function"), q.get("id"))
            return 200, b"{}"
        fn, kind = data.get("function"), data.get("kind")
        if fn != "*" and fn not in gw.functions:
            return 400, json.dumps(
                {"error": f"unknown function {fn!r}; known: {sorted(gw.functions)} or '*'"}
            ).encode()
        if kind not in FAULT_KINDS:
            return 400, json.dumps(
                {"error": f"kind {kind!r} not in {sorted(FAULT_KINDS)}"}
            ).encode()
        params = {k: v for k, v in data.items() if k not in ("function", "kind", "count")}
        fault = Fault(str(uuid.uuid4()), str(fn), kind, int(data.get("count", 1)), params)
        gw.faults.add(fault)
        return 200, json.dumps(fault.as_json()).encode()
    if path == "/_gateway/denies":
        if method == "GET":
            return 200, json.dumps(gw.denies.listing()).encode()
        if method == "DELETE":
            gw.denies.remove(q.get("accessKeyId"), q.get("id"))
            return 200, b"{}"
        status, item = gw.denies.add(data)
        return status, json.dumps(item).encode()
    if path == "/_gateway/latency" and method == "POST":
        function = gw.functions.get(data.get("function", ""))
        if function is None:
            return 400, json.dumps({"error": f"unknown function {data.get('function')!r}"}).encode()
        function.latency_ms = float(data.get("ms", 0))
        return 200, json.dumps({"function": function.name, "ms": function.latency_ms}).encode()
    if path == "/_gateway/requests":
        if method == "DELETE":
            with gw.lock:
                gw.requests.clear()
            return 200, b"{}"
        with gw.lock:
            items = [r for r in gw.requests if q.get("function") in (None, r["function"])]
        return 200, json.dumps(items).encode()
    return 404, json.dumps({"error": f"no control endpoint {method} {path}"}).encode()
