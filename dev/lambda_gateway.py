#!/usr/bin/env python3
"""A Lambda-API-compatible HTTP front for AWS's runtime interface emulator (RIE).

Why: RIE runs real handler code through awslambdaric, but serves one invocation at a time,
ignores InvocationType, never sends X-Amz-Function-Error and has no GetFunction. This gateway
speaks the Lambda REST wire protocol (what boto3 uses with `endpoint_url`) and forwards each
invocation to a pool of RIE processes per function:

- POST /2015-03-31/functions/{name}/invocations   Invoke (RequestResponse, Event, DryRun)
- GET  /2015-03-31/functions/{name}                GetFunction
- GET  /2015-03-31/functions/                      ListFunctions

Errors use the rest-json shape botocore parses: status, `x-amzn-ErrorType` header, JSON body.

What RIE cannot produce (throttles, 5xx, 413, a Handled function error, slow responses) is
injected through a control API under /_gateway/ -- a fake by design, used only for those cases:

- POST   /_gateway/faults   {"function", "kind": throttle|server_error|too_large|function_error|
                             delay, "count": 1 (-1 = until cleared), "retryAfterSeconds",
                             "reason", "status", "errorType", "message", "delayMs"}
- GET    /_gateway/faults ; DELETE /_gateway/faults[?function=NAME][&id=ID]
- POST   /_gateway/latency  {"function", "ms"}  fixed added latency per call (benchmarks)
- GET    /_gateway/requests[?function=NAME]  recent invocations (metadata, no payloads)
- DELETE /_gateway/requests
- GET    /_gateway/health   200 once every pool is up
- GET    /_gateway/functions ; POST /_gateway/functions {"name", "handler": "module.fn",
                             "concurrency", "timeout", "environment"}: add a function at run time
                             (tests use their own, isolated from suites sharing the stack);
                             DELETE /_gateway/functions/NAME removes such a function

Stdlib only. Run by dev/stack; `--help` for the options.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import http.client
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SYNC_LIMIT = 6 * 1024 * 1024  # 6 MB (6291456 bytes) for RequestResponse
ASYNC_LIMIT = 1024 * 1024  # 1 MB for Event since late 2025
INVOKE_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
FUNCTION_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/?$")
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CREDENTIAL_RE = re.compile(r"Credential=(?P<akid>[^/]+)/\d+/(?P<region>[^/]+)/")


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gateway: {msg}", file=sys.stderr, flush=True)


def child_pids(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(stat.parent.name))
    return out


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+), so outgoing connections cannot take
    it between this check and the emulator's bind; a rare clash is retried by `launch`."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


# --- function instances (RIE processes) -------------------------------------------------------


@dataclass
class Instance:
    """One RIE process (which starts one awslambdaric runtime on first invoke)."""

    fn: Function
    index: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        api_port = free_port()
        cfg = self.fn.spec
        env = dict(os.environ)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": self.fn.name,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(cfg.get("timeout", 30)),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.get("memorySize", 128)),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_REGION": self.fn.gw.region,
                "AWS_DEFAULT_REGION": self.fn.gw.region,
                "LAMBDA_TASK_ROOT": str(self.fn.gw.handlers_dir),
                "PYTHONPATH": str(self.fn.gw.handlers_dir),
                "PYTHONDONTWRITEBYTECODE": "1",
                "LAMBDASINK_RECORD_DIR": str(self.fn.gw.record_dir),
                "LOG_LEVEL": "warn",
            }
        )
        env.update({k: str(v) for k, v in cfg.get("environment", {}).items()})
        cmd = [
            self.fn.gw.rie,
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            self.fn.gw.python,
            "-m",
            "awslambdaric",
            cfg["handler"],
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.fn.gw.handlers_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.fn.gw.fn_log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # RIE runs the runtime in a session of its own: stop it explicitly, or a runtime
            # busy in a timed-out handler would outlive its emulator.
            children = child_pids(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def launch(self, attempts: int = 5) -> bool:
        """Start and wait until the emulator listens; new ports if it died (port clash)."""
        for _ in range(attempts):
            self.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.alive():
                if self.ready():
                    return True
                time.sleep(0.05)
            self.stop()
        log(f"{self.fn.name}[{self.index}]: emulator did not start; see the function log")
        return False

    def restart(self) -> None:
        self.stop()
        self.launch()

    def invoke(self, payload: bytes, request_id: str, timeout: float) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(
                "POST",
                "/2015-03-31/functions/function/invocations",
                body=payload,
                headers={"X-Amzn-RequestId": request_id, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@dataclass
class Function:
    gw: Gateway
    name: str
    spec: dict[str, Any]
    # LIFO: reuse the most recently used (warm) runtime first, like Lambda does.
    pool: queue.LifoQueue[Instance] = field(default_factory=queue.LifoQueue)
    instances: list[Instance] = field(default_factory=list)
    latency_ms: float = 0.0
    dynamic: bool = False

    def start(self) -> None:
        size = int(self.spec.get("concurrency", self.gw.pool_size))
        for i in range(size):
            inst = Instance(self, i)
            inst.launch()
            self.instances.append(inst)
            self.pool.put(inst)

    def wait_ready(self, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i.alive() and i.ready() for i in self.instances):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        for inst in self.instances:
            inst.stop()

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.gw.region}:{self.gw.account}:function:{self.name}"

    def configuration(self) -> dict[str, Any]:
        code = self.gw.handlers_dir / (self.spec["handler"].rsplit(".", 1)[0] + ".py")
        data = code.read_bytes() if code.exists() else b""
        return {
            "FunctionName": self.name,
            "FunctionArn": self.arn,
            "Runtime": self.spec.get("runtime", "python3.11"),
            "Role": f"arn:aws:iam::{self.gw.account}:role/lambda-sink-local",
            "Handler": self.spec["handler"],
            "CodeSize": len(data),
            "Description": self.spec.get("description", ""),
            "Timeout": int(self.spec.get("timeout", 30)),
            "MemorySize": int(self.spec.get("memorySize", 128)),
            "LastModified": time.strftime(
                "%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(self.gw.started)
            ),
            "CodeSha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            "Version": "$LATEST",
            "Environment": {"Variables": dict(self.spec.get("environment", {}))},
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.arn)),
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "EphemeralStorage": {"Size": 512},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{self.name}"},
        }


# --- faults ----------------------------------------------------------------------------------

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


# --- the gateway -----------------------------------------------------------------------------


class Gateway:
    def __init__(self, args: argparse.Namespace) -> None:
        self.rie: str = os.path.abspath(args.rie)
        self.python: str = os.path.abspath(args.python)  # no resolve: keep the venv symlink
        self.handlers_dir = Path(args.handlers).resolve()
        self.record_dir = Path(args.record_dir).resolve()
        self.record_dir.mkdir(parents=True, exist_ok=True)
        self.pool_size: int = args.pool_size
        self.region: str = args.region
        self.account: str = args.account
        self.started = time.time()
        self.fn_log = open(args.function_log, "ab")  # noqa: SIM115 - lives as long as the process
        registry = json.loads(Path(args.registry).read_text())
        self.functions = {
            name: Function(self, name, spec) for name, spec in registry["functions"].items()
        }
        self.faults: list[Fault] = []
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.lock = threading.Lock()
        self.async_threads: set[threading.Thread] = set()

    def start(self) -> None:
        for fn in self.functions.values():
            fn.start()

    def healthy(self) -> bool:
        fns = list(self.functions.values())
        return all(i.alive() and i.ready() for f in fns for i in f.instances)

    def stop(self) -> None:
        for fn in list(self.functions.values()):
            fn.stop()

    def add_function(self, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Register a function at run time (tests get their own, isolated from other suites)."""
        name = str(spec.get("name", ""))
        handler = str(spec.get("handler", ""))
        if not FUNCTION_NAME_RE.match(name):
            return 400, {"error": f"invalid function name {name!r}: 1-64 of [A-Za-z0-9_-]"}
        module = handler.rsplit(".", 1)[0]
        if "." not in handler or not (self.handlers_dir / f"{module}.py").exists():
            return 400, {
                "error": f"handler {handler!r} is not <module>.<function> of a module in "
                f"{self.handlers_dir}"
            }
        fn_spec = {k: v for k, v in spec.items() if k != "name"}
        fn_spec.setdefault("concurrency", 2)
        with self.lock:
            existing = self.functions.get(name)
            if existing is not None:
                if existing.spec == fn_spec:
                    return 200, {"name": name, "arn": existing.arn, "created": False}
                return 409, {"error": f"function {name!r} exists with a different spec"}
            fn = Function(self, name, fn_spec, dynamic=True)
            self.functions[name] = fn
        fn.start()
        if not fn.wait_ready():
            return 500, {"error": f"function {name!r}: emulator processes did not start"}
        log(f"function {name} added ({handler}, concurrency {fn_spec['concurrency']})")
        return 201, {"name": name, "arn": fn.arn, "created": True}

    def remove_function(self, name: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            fn = self.functions.get(name)
            if fn is None:
                return 404, {"error": f"no function {name!r}"}
            if not fn.dynamic:
                return 400, {"error": f"{name!r} comes from the registry file; not removable"}
            del self.functions[name]
            self.faults = [f for f in self.faults if f.function != name]
        fn.stop()
        log(f"function {name} removed")
        return 200, {"name": name, "removed": True}

    # faults
    def take_fault(self, function: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.function in (function, "*") and f.count != 0:
                    if f.count > 0:
                        f.count -= 1
                    self.faults = [x for x in self.faults if x.count != 0]
                    return f
        return None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    # invocation
    def run_invocation(
        self, fn: Function, payload: bytes, request_id: str
    ) -> tuple[int, bytes, str | None]:
        """Run one invocation on a free instance: (status, body, function_error)."""
        timeout = float(fn.spec.get("timeout", 30)) + 5
        try:
            inst = fn.pool.get(timeout=float(fn.spec.get("queueTimeout", 60)))
        except queue.Empty:
            return 429, throttle_body("No free execution environment"), "throttle"
        try:
            if not inst.alive():
                inst.restart()
            try:
                status, body = inst.invoke(payload or b"{}", request_id, timeout)
            except (OSError, http.client.HTTPException) as e:
                inst.restart()
                return (
                    200,
                    error_json(
                        request_id,
                        "Runtime.ExitError",
                        f"RequestId: {request_id} Error: Runtime exited ({e})",
                    ),
                    "Unhandled",
                )
            if status == 200 and body.startswith(b"Task timed out"):
                inst.restart()  # the runtime is still busy with the timed-out call
                now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
                msg = f"{now} {request_id} {body.decode()}"
                return (
                    200,
                    json.dumps({"errorMessage": msg, "errorType": "Sandbox.Timedout"}).encode(),
                    "Unhandled",
                )
            if status >= 500:
                # Init failure or runtime crash: Lambda reports these as Unhandled function errors.
                if not inst.alive() or status == 502:
                    inst.restart()
                if is_error_body(body, request_id, strict=False):
                    return 200, body, "Unhandled"
                return (
                    200,
                    error_json(
                        request_id,
                        "Runtime.ExitError",
                        f"RequestId: {request_id} Error: Runtime exited",
                    ),
                    "Unhandled",
                )
            if is_error_body(body, request_id):
                return 200, body, "Unhandled"
            return 200, body, None
        finally:
            fn.pool.put(inst)


def is_error_body(body: bytes, request_id: str, strict: bool = True) -> bool:
    """awslambdaric reports a raised exception as {errorMessage, errorType, requestId, stackTrace}.

    RIE passes it on as a plain 200; the request id we sent tells it apart from a handler that
    merely returns a dict with those keys.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or "errorType" not in data or "errorMessage" not in data:
        return False
    if not set(data) <= {"errorMessage", "errorType", "requestId", "stackTrace"}:
        return False
    return data.get("requestId") == request_id or not strict


def error_json(request_id: str, error_type: str, message: str) -> bytes:
    return json.dumps(
        {"errorType": error_type, "errorMessage": message, "requestId": request_id}
    ).encode()


def throttle_body(
    message: str, reason: str = "ConcurrentInvocationLimitExceeded", retry_after: str = "1"
) -> bytes:
    return json.dumps(
        {"message": message, "Reason": reason, "retryAfterSeconds": retry_after, "Type": "User"}
    ).encode()


def parse_function_name(raw: str) -> tuple[str, str | None]:
    """name | name:qualifier | [arn:aws:lambda:region:]account:function:name[:qualifier]."""
    raw = urllib.parse.unquote(raw)
    if ":function:" in raw:
        raw = raw.split(":function:", 1)[1]
    name, _, qualifier = raw.partition(":")
    return name, qualifier or None


class Handler(BaseHTTPRequestHandler):
    server_version = "lambda-sink-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every response.
    disable_nagle_algorithm = True
    gw: Gateway  # set on the class by main()

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")

    # --- helpers
    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            # The caller went away mid-request (e.g. a SIGKILLed runtime): never run the
            # function with a truncated payload; closing the connection is all AWS would do.
            raise ConnectionAbortedError(f"request body ended after {len(data)} of {n} bytes")
        return data

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": content_type, "Content-Length": str(len(body))}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def aws_error(
        self,
        status: int,
        error_type: str,
        message: str,
        request_id: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        message_key: str = "message",
    ) -> None:
        body = {
            "Type": "User" if status < 500 else "Service",
            message_key: message,
            **(extra or {}),
        }
        hdrs = {
            "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazonaws.awsgirl/",
            "x-amzn-RequestId": request_id,
            **(headers or {}),
        }
        self.send(status, json.dumps(body).encode(), hdrs)

    def not_found(self, name: str, request_id: str) -> None:
        arn = f"arn:aws:lambda:{self.gw.region}:{self.gw.account}:function:{name}"
        self.aws_error(
            404,
            "ResourceNotFoundException",
            f"Function not found: {arn}",
            request_id,
            message_key="Message",
        )

    # --- routing
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        rid = str(uuid.uuid4())
        if url.path.startswith("/_gateway/"):
            return self.control("GET", url)
        if url.path.rstrip("/") == "/2015-03-31/functions":
            confs = [f.configuration() for f in self.gw.functions.values()]
            return self.send(
                200, json.dumps({"Functions": confs}).encode(), {"x-amzn-RequestId": rid}
            )
        m = FUNCTION_RE.match(url.path)
        if not m:
            return self.aws_error(404, "UnknownOperationException", "Unknown operation", rid)
        name, _ = parse_function_name(m["name"])
        fn = self.gw.functions.get(name)
        if fn is None:
            return self.not_found(name, rid)
        body = {
            "Configuration": fn.configuration(),
            "Code": {
                "RepositoryType": "S3",
                "Location": f"http://127.0.0.1/lambda-sink-local/{name}.zip",
            },
            "Tags": {"lambda-sink": "local"},
        }
        self.send(200, json.dumps(body).encode(), {"x-amzn-RequestId": rid})

    def do_DELETE(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_gateway/"):
            return self.control("DELETE", url)
        self.send(404, b"{}")

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_gateway/"):
            return self.control("POST", url)
        rid = str(uuid.uuid4())
        m = INVOKE_RE.match(url.path)
        if not m:
            self.body()
            return self.aws_error(404, "UnknownOperationException", "Unknown operation", rid)
        self.invoke(m["name"], url, rid)

    # --- Invoke
    def invoke(self, raw_name: str, url: urllib.parse.SplitResult, rid: str) -> None:
        t0 = time.monotonic()
        payload = self.body()
        name, qualifier = parse_function_name(raw_name)
        query = urllib.parse.parse_qs(url.query)
        if query.get("Qualifier"):
            qualifier = query["Qualifier"][0]
        itype = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        cred = CREDENTIAL_RE.search(self.headers.get("Authorization") or "")
        entry: dict[str, Any] = {
            "requestId": rid,
            "function": name,
            "invocationType": itype,
            "bytes": len(payload),
            "time": time.time(),
            "accessKeyId": cred["akid"] if cred else None,
            "signingRegion": cred["region"] if cred else None,
        }

        def done(status: int, outcome: str) -> None:
            entry.update(
                status=status, outcome=outcome, durationMs=round((time.monotonic() - t0) * 1000, 2)
            )
            self.gw.record(entry)

        fn = self.gw.functions.get(name)
        if fn is None:
            done(404, "ResourceNotFoundException")
            return self.not_found(name, rid)
        if itype not in ("RequestResponse", "Event", "DryRun"):
            done(400, "InvalidParameterValueException")
            return self.aws_error(
                400,
                "InvalidParameterValueException",
                f"Invalid invocation type: {itype}",
                rid,
                message_key="message",
            )
        version = qualifier if qualifier and qualifier.isdigit() else "$LATEST"
        if itype == "DryRun":
            done(204, "DryRun")
            return self.send(204, b"", {"x-amzn-RequestId": rid}, content_type="application/json")
        limit = SYNC_LIMIT if itype == "RequestResponse" else ASYNC_LIMIT
        if len(payload) > limit:
            done(413, "RequestTooLargeException")
            op = "Invoke" if itype == "RequestResponse" else "InvokeAsync"
            return self.aws_error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the {op} operation",
                rid,
            )
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                done(400, "InvalidRequestContentException")
                return self.aws_error(
                    400,
                    "InvalidRequestContentException",
                    "Could not parse request body into json: Could not parse payload into json",
                    rid,
                )
        if fn.latency_ms:
            time.sleep(fn.latency_ms / 1000)
        fault = self.gw.take_fault(name)
        if fault is not None and fault.kind == "delay":
            time.sleep(float(fault.params.get("delayMs", 1000)) / 1000)
            fault = None
        if fault is not None:
            return self.apply_fault(fault, rid, version, done)

        if itype == "Event":
            t = threading.Thread(
                target=self.run_async, args=(fn, payload, rid, entry, t0), daemon=True
            )
            t.start()
            return self.send(202, b"", {"x-amzn-RequestId": rid})

        status, body, ferr = self.gw.run_invocation(fn, payload, rid)
        if ferr == "throttle":
            done(429, "TooManyRequestsException")
            return self.throttle(rid, "Rate Exceeded.", "ConcurrentInvocationLimitExceeded", "1")
        headers = {"x-amzn-RequestId": rid, "X-Amz-Executed-Version": version}
        if ferr:
            headers["X-Amz-Function-Error"] = ferr
        if self.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(
                f"START RequestId: {rid} Version: {version}\nEND RequestId: {rid}\n".encode()
            ).decode()
        done(200, f"FunctionError:{ferr}" if ferr else "Success")
        self.send(status, body, headers)

    def run_async(
        self, fn: Function, payload: bytes, rid: str, entry: dict[str, Any], t0: float
    ) -> None:
        _status, _body, ferr = self.gw.run_invocation(fn, payload, rid)
        entry.update(
            status=202,
            outcome=f"Async:{ferr or 'Success'}",
            durationMs=round((time.monotonic() - t0) * 1000, 2),
        )
        self.gw.record(entry)

    def throttle(self, rid: str, message: str, reason: str, retry_after: str) -> None:
        self.aws_error(
            429,
            "TooManyRequestsException",
            message,
            rid,
            extra={"Reason": reason, "retryAfterSeconds": retry_after},
            headers={"Retry-After": retry_after},
        )

    def apply_fault(self, fault: Fault, rid: str, version: str, done: Any) -> None:
        p = fault.params
        kind = fault.kind
        if kind == "throttle":
            done(429, "TooManyRequestsException(injected)")
            return self.throttle(
                rid,
                p.get("message", "Rate Exceeded."),
                p.get("reason", "ConcurrentInvocationLimitExceeded"),
                str(p.get("retryAfterSeconds", "1")),
            )
        if kind == "server_error":
            status = int(p.get("status", 500))
            etype = p.get("errorType", SERVER_ERROR_TYPES.get(status, "ServiceException"))
            done(status, f"{etype}(injected)")
            return self.aws_error(
                status, etype, p.get("message", "Service Unavailable"), rid, message_key="Message"
            )
        if kind == "too_large":
            done(413, "RequestTooLargeException(injected)")
            return self.aws_error(
                413,
                "RequestTooLargeException",
                p.get(
                    "message",
                    f"Request must be smaller than {SYNC_LIMIT} bytes for the Invoke operation",
                ),
                rid,
            )
        # function_error
        ferr = "Unhandled" if p.get("unhandled") else "Handled"
        body = {
            "errorMessage": p.get("message", "injected function error"),
            "errorType": p.get("errorType", "InjectedError"),
        }
        done(200, f"FunctionError:{ferr}(injected)")
        self.send(
            200,
            json.dumps(body).encode(),
            {
                "x-amzn-RequestId": rid,
                "X-Amz-Executed-Version": version,
                "X-Amz-Function-Error": ferr,
            },
        )

    # --- control API
    def control(self, method: str, url: urllib.parse.SplitResult) -> None:
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        gw = self.gw
        try:
            data = json.loads(self.body() or b"{}") if method == "POST" else {}
        except ValueError:
            return self.send(400, b'{"error": "body is not JSON"}')
        if path == "/_gateway/health":
            ok = gw.healthy()
            return self.send(
                200 if ok else 503,
                json.dumps({"healthy": ok, "functions": sorted(gw.functions)}).encode(),
            )
        if path == "/_gateway/functions":
            if method == "POST":
                status, result = gw.add_function(data)
                return self.send(status, json.dumps(result).encode())
            fns = list(gw.functions.items())
            listing = {
                n: {**f.spec, "latencyMs": f.latency_ms, "arn": f.arn, "dynamic": f.dynamic}
                for n, f in fns
            }
            return self.send(200, json.dumps(listing).encode())
        if path.startswith("/_gateway/functions/") and method == "DELETE":
            status, result = gw.remove_function(path.rsplit("/", 1)[1])
            return self.send(status, json.dumps(result).encode())
        if path == "/_gateway/faults":
            if method == "GET":
                with gw.lock:
                    return self.send(200, json.dumps([f.as_json() for f in gw.faults]).encode())
            if method == "DELETE":
                with gw.lock:
                    gw.faults = [
                        f
                        for f in gw.faults
                        if not (
                            q.get("function") in (None, f.function) and q.get("id") in (None, f.id)
                        )
                    ]
                return self.send(200, b"{}")
            fn, kind = data.get("function"), data.get("kind")
            if fn != "*" and fn not in gw.functions:
                return self.send(
                    400,
                    json.dumps(
                        {"error": f"unknown function {fn!r}; known: {sorted(gw.functions)} or '*'"}
                    ).encode(),
                )
            if kind not in FAULT_KINDS:
                return self.send(
                    400,
                    json.dumps({"error": f"kind {kind!r} not in {sorted(FAULT_KINDS)}"}).encode(),
                )
            params = {k: v for k, v in data.items() if k not in ("function", "kind", "count")}
            fault = Fault(str(uuid.uuid4()), str(fn), kind, int(data.get("count", 1)), params)
            with gw.lock:
                gw.faults.append(fault)
            return self.send(200, json.dumps(fault.as_json()).encode())
        if path == "/_gateway/latency" and method == "POST":
            fn = gw.functions.get(data.get("function", ""))
            if fn is None:
                return self.send(
                    400,
                    json.dumps({"error": f"unknown function {data.get('function')!r}"}).encode(),
                )
            fn.latency_ms = float(data.get("ms", 0))
            return self.send(200, json.dumps({"function": fn.name, "ms": fn.latency_ms}).encode())
        if path == "/_gateway/requests":
            if method == "DELETE":
                with gw.lock:
                    gw.requests.clear()
                return self.send(200, b"{}")
            with gw.lock:
                items = [r for r in gw.requests if q.get("function") in (None, r["function"])]
            return self.send(200, json.dumps(items).encode())
        return self.send(
            404, json.dumps({"error": f"no control endpoint {method} {path}"}).encode()
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--registry", required=True, help="functions.json")
    ap.add_argument("--handlers", required=True, help="directory with handler modules")
    ap.add_argument("--rie", required=True, help="aws-lambda-rie binary")
    ap.add_argument("--python", default=sys.executable, help="interpreter with awslambdaric")
    ap.add_argument("--record-dir", required=True)
    ap.add_argument("--function-log", default="/dev/stderr")
    ap.add_argument("--pool-size", type=int, default=4)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="000000000000")
    args = ap.parse_args()

    gw = Gateway(args)
    Handler.gw = gw
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def shutdown(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    gw.start()
    log(
        f"listening on http://{args.host}:{server.server_address[1]}"
        f" functions={sorted(gw.functions)}"
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        gw.stop()
        with contextlib.suppress(Exception):
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
