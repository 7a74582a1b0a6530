"""The emulator pool: per function, RIE processes (each starting one awslambdaric runtime),
handed out one invocation at a time, warm first, restarted when they die or time out."""

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
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localhost import child_pids, free_port, port_open

from . import log
from .control import Denies, Faults
from .wire import FUNCTION_NAME_RE, error_json, is_error_body, throttle_body


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
        return port_open(self.port)

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
        self.faults = Faults()
        self.denies = Denies()
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
        self.faults.drop_function(name)
        fn.stop()
        log(f"function {name} removed")
        return 200, {"name": name, "removed": True}

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
