"""The pieces a pipeline benchmark runs: its own Lambda endpoint, a producer, a runtime process.

The bench starts a private instance of dev/lambda_gateway.py (same code as the stack's) with its
own registry and handlers (bench/lambda/), so it can size the emulator pool per function (the
gateway runs one RIE process per unit of `concurrency`, and RIE serves one invocation at a time)
without touching the shared gateway other suites use. Optionally (`LeanEndpoint`) it starts
bench/endpoint.py instead, a cheap stand-in for a remote endpoint. Pulsar is the stack's real
broker; every run uses fresh topic and subscription names.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pulsar

from .common import REPO, free_port, proc_cpu_s, proc_rss_mib

GATEWAY = REPO / "dev" / "lambda_gateway.py"
ENDPOINT = REPO / "bench" / "endpoint.py"
HANDLERS = REPO / "bench" / "lambda"
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin"


def _http(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _launch(
    cmd: list[str], log: IO[bytes], health_url: str, what: str, timeout: float
) -> subprocess.Popen[bytes]:
    """Start an endpoint process and wait until its health URL answers `{"healthy": true}`."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bench {what} exited; see {log.name}")
        with contextlib.suppress(OSError, ValueError):
            if _http("GET", health_url, timeout=2)["healthy"]:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"bench {what} not healthy after {timeout}s")


def _stop(
    proc: subprocess.Popen[bytes] | None, log: IO[bytes], workdir: Path, wait_s: float
) -> None:
    """Terminate an endpoint process (kill after `wait_s`), close its log, remove its dir."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(Exception):
        log.close()
    shutil.rmtree(workdir, ignore_errors=True)


class Gateway:
    """A private Lambda gateway: functions name → (handler, concurrency)."""

    kind = "emulator"

    def __init__(
        self,
        stack: dict[str, Any],
        functions: dict[str, tuple[str, int]],
        *,
        queue_timeout_s: dict[str, float] | None = None,
    ) -> None:
        """`queue_timeout_s`: per function, how long a call waits for a free emulator before
        the gateway answers 429 (default 60; 0: at once, as Lambda throttles a function whose
        concurrency is used up)."""
        self.stack = stack
        self.functions = functions
        self.queue_timeout_s = queue_timeout_s or {}
        self.dir = Path(tempfile.mkdtemp(prefix="lambdasink-bench-gw-"))
        self.record_dir = self.dir / "records"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> Gateway:
        registry = {
            "functions": {
                name: {
                    "handler": h,
                    "concurrency": c,
                    "timeout": 30,
                    "queueTimeout": self.queue_timeout_s.get(name, 60),
                }
                for name, (h, c) in self.functions.items()
            }
        }
        (self.dir / "functions.json").write_text(json.dumps(registry))
        self.record_dir.mkdir()
        lam = self.stack["lambda"]
        cmd = [
            str(VENV_BIN / "python"),
            str(GATEWAY),
            "--port",
            str(self.port),
            "--registry",
            str(self.dir / "functions.json"),
            "--handlers",
            str(HANDLERS),
            "--rie",
            self.stack["bin"]["aws-lambda-rie"],
            "--python",
            str(VENV_BIN / "python"),
            "--record-dir",
            str(self.record_dir),
            "--function-log",
            str(self.dir / "functions.log"),
            "--region",
            lam["region"],
            "--account",
            lam["accountId"],
        ]
        self.log = (self.dir / "gateway.log").open("ab")
        self.proc = _launch(cmd, self.log, self.url + "/_gateway/health", "gateway", timeout)
        return self

    def warm(self, function: str, rounds: int = 3) -> int:
        """Start awslambdaric in every emulator process; returns how many run one.

        A round is one invocation per emulator, all at once: awslambdaric starts on the first.
        "At once" matters: the gateway's pool is LIFO (a warm emulator that finished is taken
        first) and its listen backlog is small (5, connections beyond it are reset), so the
        connections are opened one by one first and the requests then sent together.
        """
        n = self.functions[function][1]
        path = f"/2015-03-31/functions/{function}/invocations"
        warm = 0
        for _ in range(rounds):
            conns = [
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=60) for _ in range(n)
            ]
            for c in conns:
                c.connect()
            go = threading.Barrier(n)

            def one(c: http.client.HTTPConnection, go: threading.Barrier) -> None:
                go.wait()
                c.request("POST", path, body=b"[]", headers={"Content-Type": "application/json"})
                c.getresponse().read()

            threads = [threading.Thread(target=one, args=(c, go)) for c in conns]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for c in conns:
                c.close()
            warm = self.runtimes()
            if warm >= n:
                break
        return warm

    def runtimes(self) -> int:
        """Handler runtime processes (python -m awslambdaric) under this gateway."""
        count = 0
        for pid in _descendants(self.proc.pid) if self.proc is not None else []:
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if "python" in Path(argv[0].decode()).name and b"awslambdaric" in argv:
                    count += 1
        return count

    def set_latency(self, function: str, ms: float) -> None:
        _http("POST", self.url + "/_gateway/latency", {"function": function, "ms": ms})

    def counted(self, function: str) -> int:
        total = 0
        for f in self.record_dir.glob(f"count-{function}-*"):
            with contextlib.suppress(ValueError):
                total += int(f.read_text().strip() or 0)
        return total

    def reset_counts(self, function: str) -> None:
        # The handler keeps a running total per process: remember it as an offset instead.
        pass

    def arrivals(self, function: str) -> list[tuple[float, float]]:
        out = []
        for f in self.record_dir.glob(f"arrival-{function}-*"):
            for line in f.read_text().splitlines():
                a, _, b = line.partition(" ")
                out.append((float(a), float(b)))
        return out

    def pids(self) -> list[int]:
        """The gateway and every process under it (RIE and the handler runtimes)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *_descendants(self.proc.pid)]

    def stop(self) -> None:
        _stop(self.proc, self.log, self.dir, 20)  # RIE processes shut down behind it


class LeanEndpoint:
    """bench/endpoint.py as a subprocess: the Lambda API at a remote endpoint's cost profile.

    Same interface as `Gateway` for the pipeline bench (url, warm, set_latency, counted, pids,
    stop); nothing runs behind it, so its CPU is the wire protocol's alone.
    """

    kind = "lean"

    def __init__(self, stack: dict[str, Any], functions: dict[str, tuple[str, int]]) -> None:
        self.stack = stack
        self.functions = functions
        self.dir = Path(tempfile.mkdtemp(prefix="lambdasink-bench-ep-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> LeanEndpoint:
        lam = self.stack["lambda"]
        cmd = [
            str(VENV_BIN / "python"),
            str(ENDPOINT),
            "--port",
            str(self.port),
            "--latency-ms",
            "0",
            "--region",
            lam["region"],
            "--account",
            lam["accountId"],
        ]
        self.log = (self.dir / "endpoint.log").open("ab")
        self.proc = _launch(cmd, self.log, self.url + "/_bench/health", "endpoint", timeout)
        return self

    def warm(self, function: str) -> int:
        """Nothing to start behind it; one call checks the invoke path."""
        _http("POST", f"{self.url}/2015-03-31/functions/{function}/invocations", [])
        return self.functions[function][1]

    def set_latency(self, function: str, ms: float) -> None:
        _http("POST", self.url + "/_bench/latency", {"function": function, "ms": ms})

    def counted(self, function: str) -> int:
        q = urllib.parse.urlencode({"function": function})
        return int(_http("GET", f"{self.url}/_bench/count?{q}")["count"])

    def pids(self) -> list[int]:
        return [] if self.proc is None else [self.proc.pid]

    def stop(self) -> None:
        _stop(self.proc, self.log, self.dir, 10)


AnyEndpoint = Gateway | LeanEndpoint
#: What `--endpoint` names: the emulator path (real handler code) or the lean stand-in.
ENDPOINTS: dict[str, type[Gateway] | type[LeanEndpoint]] = {
    "emulator": Gateway,
    "lean": LeanEndpoint,
}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def group_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += proc_cpu_s(p)
    return total


# --- Pulsar ----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def topic_name(prefix: str) -> str:
    return f"persistent://public/default/{unique(prefix)}"


def payload(i: int, size: int) -> str:
    """A JSON text of about `size` bytes carrying its produce time (`t`) and index."""
    head = json.dumps({"t": time.time(), "i": i, "pad": ""})
    pad = "x" * max(0, size - len(head))
    return json.dumps({"t": time.time(), "i": i, "pad": pad})


def prefill(stack: dict[str, Any], topic: str, n: int, size: int) -> float:
    """Produce `n` STRING messages (batched, async) behind a keeper subscription; seconds taken."""
    client = pulsar.Client(stack["pulsar"]["serviceUrl"], logger=_quiet_logger())
    try:
        # A durable subscription keeps the backlog until the measured subscriptions read it.
        client.subscribe(
            topic, "bench-keeper", initial_position=pulsar.InitialPosition.Earliest
        ).close()
        producer = client.create_producer(
            topic,
            schema=pulsar.schema.StringSchema(),
            batching_enabled=True,
            batching_max_messages=1000,
            batching_max_publish_delay_ms=5,
            max_pending_messages=20000,
            block_if_queue_full=True,
        )
        t0 = time.monotonic()
        errors: list[Any] = []

        def done(res: Any, _mid: Any) -> None:
            if res != pulsar.Result.Ok:
                errors.append(res)

        for i in range(n):
            producer.send_async(payload(i, size), done, event_timestamp=int(time.time() * 1000))
        producer.flush()
        took = time.monotonic() - t0
        producer.close()
        if errors:
            raise RuntimeError(f"{len(errors)} sends failed: {errors[:3]}")
        return took
    finally:
        client.close()


def delete_topic(stack: dict[str, Any], topic: str) -> None:
    """Best effort: drop a bench topic and its backlog (the keeper subscription holds it)."""
    path = topic.replace("persistent://", "persistent/")
    url = f"{stack['pulsar']['adminUrl']}/admin/v2/{path}?force=true"
    with contextlib.suppress(OSError, ValueError):
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).close()


def _quiet_logger() -> Any:
    log = logging.getLogger("bench.pulsar")
    log.setLevel(logging.WARNING)
    return log


# --- the runtime process -----------------------------------------------------------------------


class Runtime:
    """`lambdasink-runtime --config FILE` as a child process, with its /metrics."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.port = int(config["runtime"]["httpPort"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Runtime:
        path = self.workdir / f"runtime-{self.port}.json"
        path.write_text(json.dumps(self.config, indent=1))
        self.log_path = self.workdir / f"runtime-{self.port}.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "lambdasink-runtime"), "--config", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def acked(self) -> float:
        return self.metrics().get("lambdasink_messages_acked_total", 0.0)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"runtime exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("runtime not ready")

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def rss_mib(self) -> float:
        return proc_rss_mib(self.pid)

    def stop(self, timeout: float = 40) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self.log.close()
        return int(self.proc.returncode or 0)


def runtime_config(
    stack: dict[str, Any],
    gateway: AnyEndpoint,
    *,
    topic: str,
    function: str,
    batch_size: int | None,
    max_in_flight: int | None,
    batch_time_ms: int | None = None,
    initial: str = "Earliest",
) -> dict[str, Any]:
    """A runtime configuration; None for a sink setting means: leave the default."""
    lam = stack["lambda"]
    sink: dict[str, Any] = {
        "awsRegion": lam["region"],
        "lambdaFunctionName": function,
        "awsEndpoint": gateway.url,
        "awsAccessKey": lam["accessKeyId"],
        "awsSecretKey": lam["secretAccessKey"],
        "payloadFormat": "V2",
    }
    if batch_size is not None:
        sink["batchMaxSize"] = batch_size
    if max_in_flight is not None:
        sink["maxInFlight"] = max_in_flight
    if batch_time_ms is not None:
        sink["batchMaxTimeMs"] = batch_time_ms
    return {
        "pulsar": {
            "serviceUrl": stack["pulsar"]["serviceUrl"],
            "adminUrl": stack["pulsar"]["adminUrl"],
            "topics": [topic],
            "subscriptionName": unique("bench"),
            "subscriptionType": "Shared",
            "subscriptionInitialPosition": initial,
        },
        "sink": sink,
        "runtime": {"httpHost": "127.0.0.1", "httpPort": free_port(), "logLevel": "WARNING"},
    }


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lambdasink-bench-") as d:
        yield Path(d)
