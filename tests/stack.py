"""Helpers for tests that use the local real stack started by `dev/stack up`.

Everything here reads `.stack/stack.json` (or $LAMBDASINK_STATE_DIR/stack.json); nothing starts
or fakes a component. The Lambda fault control (`LambdaFaults`) exists only for what the runtime
interface emulator cannot produce (429, 5xx, 413, a Handled function error, slow responses).
Other suites may use the same stack at the same time: a test gets its own Lambda functions
(`LambdaFunctions`) rather than clearing or injecting faults into shared ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from localhost import pid_alive

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]


class StackNotUp(RuntimeError):
    """The local stack is not running (or stack.json is stale)."""


def state_dir() -> Path:
    return Path(os.environ.get("LAMBDASINK_STATE_DIR") or REPO / ".stack").resolve()


def stack_json_path() -> Path:
    return state_dir() / "stack.json"


class Stack(dict[str, Any]):
    """stack.json as a dict, plus attribute shortcuts (same names as dev/demo.py's Stack)."""

    @property
    def state_dir(self) -> Path:
        return Path(self["stateDir"])

    @property
    def kubeconfig(self) -> Path:
        return Path(self["kubernetes"]["kubeconfig"])

    @property
    def kubectl_bin(self) -> str:
        return str(self["bin"]["kubectl"])

    @property
    def helm_bin(self) -> str:
        return str(self["bin"]["helm"])

    @property
    def kube_server(self) -> str:
        return str(self["kubernetes"]["server"])

    @property
    def pulsar_service_url(self) -> str:
        return str(self["pulsar"]["serviceUrl"])

    @property
    def pulsar_admin_url(self) -> str:
        return str(self["pulsar"]["adminUrl"])

    @property
    def lambda_endpoint(self) -> str:
        return str(self["lambda"]["endpointUrl"])

    @property
    def lambda_control_url(self) -> str:
        return str(self["lambda"]["controlUrl"])

    @property
    def lambda_region(self) -> str:
        return str(self["lambda"]["region"])

    @property
    def access_key(self) -> str:
        return str(self["lambda"]["accessKeyId"])

    @property
    def secret_key(self) -> str:
        return str(self["lambda"]["secretAccessKey"])

    @property
    def record_dir(self) -> Path:
        return Path(self["lambda"]["recordDir"])


def load_stack(check_alive: bool = True) -> Stack:
    """The stack's connection details; StackNotUp with a how-to-fix message if it is not up."""
    path = stack_json_path()
    if not path.exists():
        raise StackNotUp(
            f"the local stack is not up ({path} is missing). Start it with `make stack-up` "
            f"(or `.venv/bin/python dev/stack up`); `make test` does this for you."
        )
    data = Stack(json.loads(path.read_text()))
    if check_alive:
        dead = [name for name, pid in data.get("pids", {}).items() if not pid_alive(pid)]
        if dead:
            raise StackNotUp(
                f"stack components not running: {', '.join(dead)} (stale {path}). "
                "Run `.venv/bin/python dev/stack up` "
                "(see `dev/stack status` and `dev/stack logs`)."
            )
    return data


# --- Lambda --------------------------------------------------------------------------------------


def lambda_client(stack: dict[str, Any], **config: Any) -> Any:
    """A boto3 Lambda client for the stack's gateway. botocore retries are off unless given."""
    lam = stack["lambda"]
    config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
    return boto3.client(
        "lambda",
        endpoint_url=lam["endpointUrl"],
        region_name=lam["region"],
        aws_access_key_id=lam["accessKeyId"],
        aws_secret_access_key=lam["secretAccessKey"],
        config=Config(**config),
    )


def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


@dataclass
class Recorder:
    """Events the `recorder` Lambda handler (and any function using recorder.handler) received."""

    record_dir: Path
    function: str = "recorder"

    @property
    def path(self) -> Path:
        return self.record_dir / f"{self.function}.jsonl"

    def entries(self) -> list[dict[str, Any]]:
        """[{ts, function, requestId, event}], oldest first."""
        try:
            with self.path.open(encoding="utf-8") as f:
                # The handler appends under LOCK_EX: never read half a line while it writes.
                fcntl.flock(f, fcntl.LOCK_SH)
                text = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self) -> list[Any]:
        return [e["event"] for e in self.entries()]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def wait_for(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until at least n entries are recorded; returns them (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries()
            if len(entries) >= n:
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.function}: expected at least {n} recorded events within {timeout}s, "
                    f"got {len(entries)} ({self.path})"
                )
            time.sleep(0.1)

    def for_function(self, function: str) -> Recorder:
        return Recorder(self.record_dir, function)


@dataclass
class LambdaFaults:
    """The gateway's control API: injected faults, added latency, the invocation log.

    The stack is shared with other suites running at the same time: inject faults only on
    functions your test owns (see `LambdaFunctions`), and `cleanup()` removes only what this
    object injected.
    """

    control_url: str
    injected: list[str] = field(default_factory=list)
    latency_set: set[str] = field(default_factory=set)
    denies: list[str] = field(default_factory=list)

    def inject(self, function: str, kind: str, count: int = 1, **params: Any) -> dict[str, Any]:
        """kind: throttle | server_error | too_large | function_error | delay.

        params: retryAfterSeconds, reason, status, errorType, message, delayMs, unhandled.
        count=-1 keeps the fault until cleared.
        """
        result: dict[str, Any] = _http(
            "POST",
            f"{self.control_url}/faults",
            {"function": function, "kind": kind, "count": count, **params},
        )
        self.injected.append(result["id"])
        return result

    def active(self, function: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _http("GET", f"{self.control_url}/faults")
        return [f for f in result if function in (None, f["function"])]

    def clear(self, function: str) -> None:
        _http("DELETE", f"{self.control_url}/faults?function={function}")

    def set_latency(self, function: str, ms: float) -> None:
        """Fixed added latency on every invocation of `function` (benchmarks)."""
        _http("POST", f"{self.control_url}/latency", {"function": function, "ms": ms})
        self.latency_set.add(function)

    def requests(self, function: str) -> list[dict[str, Any]]:
        """Invocations of `function` the gateway saw, oldest first: requestId, invocationType,
        bytes, status, outcome, accessKeyId, signingRegion, durationMs (no payloads)."""
        result: list[dict[str, Any]] = _http(
            "GET", f"{self.control_url}/requests?function={function}"
        )
        return result

    def deny(self, access_key: str, function: str = "*", actions: list[str] | None = None) -> str:
        """A fake for IAM: calls signed with `access_key` get 403 AccessDeniedException
        (actions: lambda:InvokeFunction, lambda:GetFunction; default both). Returns its id.
        Use an access key of the test's own: the stack is shared."""
        body: dict[str, Any] = {"accessKeyId": access_key, "function": function}
        if actions is not None:
            body["actions"] = actions
        result: dict[str, Any] = _http("POST", f"{self.control_url}/denies", body)
        self.denies.append(result["id"])
        return str(result["id"])

    def lift(self, deny_id: str) -> None:
        _http("DELETE", f"{self.control_url}/denies?id={deny_id}")

    def cleanup(self) -> None:
        for deny_id in self.denies:
            _http("DELETE", f"{self.control_url}/denies?id={deny_id}")
        self.denies.clear()
        for fault_id in self.injected:
            _http("DELETE", f"{self.control_url}/faults?id={fault_id}")
        self.injected.clear()
        for fn in self.latency_set:
            _http("POST", f"{self.control_url}/latency", {"function": fn, "ms": 0})
        self.latency_set.clear()


@dataclass
class LambdaFunctions:
    """Functions registered on the running gateway for one test (unique names, removed after)."""

    control_url: str
    record_dir: Path
    created: list[str] = field(default_factory=list)

    def create(
        self,
        handler: str = "recorder.handler",
        prefix: str = "t",
        name: str | None = None,
        **spec: Any,
    ) -> str:
        """Register `handler` (module.function in tests/lambda_handlers) under a fresh name
        (or `name`, e.g. one `unused_name` gave earlier).

        spec: concurrency (default 2), timeout, memorySize, environment. Returns the name.
        """
        name = name or self.unused_name(prefix)
        _http("POST", f"{self.control_url}/functions", {"name": name, "handler": handler, **spec})
        self.created.append(name)
        return name

    @staticmethod
    def unused_name(prefix: str = "t") -> str:
        """A name no function has (yet)."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def recorder(self, **spec: Any) -> Recorder:
        """A fresh recording function; `.function` is the name to invoke."""
        return Recorder(self.record_dir, self.create("recorder.handler", prefix="rec", **spec))

    def cleanup(self) -> None:
        for name in self.created:
            with contextlib.suppress(urllib.error.HTTPError):
                _http("DELETE", f"{self.control_url}/functions/{name}")
            (self.record_dir / f"{name}.jsonl").unlink(missing_ok=True)
        self.created.clear()


# --- Kubernetes and Pulsar -----------------------------------------------------------------------


def kubectl(
    stack: dict[str, Any],
    *args: str,
    kubeconfig: str | Path | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the stack's kubectl (admin kubeconfig unless another is given)."""
    cfg = str(kubeconfig or stack["kubernetes"]["kubeconfig"])
    out = subprocess.run(
        [stack["bin"]["kubectl"], "--kubeconfig", cfg, *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return out


def sa_kubeconfig(namespace: str, serviceaccount: str, outfile: Path) -> Path:
    """A kubeconfig for a ServiceAccount, minted by `dev/stack sa-kubeconfig` (TokenRequest)."""
    out = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            str(REPO / "dev" / "stack"),
            "sa-kubeconfig",
            namespace,
            serviceaccount,
            str(outfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"dev/stack sa-kubeconfig failed: {out.stderr}")
    return outfile


def pulsar_admin_get(stack: dict[str, Any], path: str) -> tuple[int, Any]:
    """GET on the broker's admin REST API; (status, parsed JSON or text)."""
    url = stack["pulsar"]["adminUrl"] + path
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 60.0, every: float = 0.25
) -> T:
    """Poll `fn` until it returns something truthy; the failure names `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
