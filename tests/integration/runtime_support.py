"""Run `lambdasink-runtime` as its own process, as a pod would, against the local real stack.

`RuntimeProcess` writes a configuration file, starts the console script with a free
LAMBDASINK_HTTP_PORT and the stack's Lambda keys in LAMBDASINK_AWS_*, waits for /readyz, keeps
stdout/stderr in files and stops it with SIGTERM or SIGKILL. The rest are small helpers to
produce messages (the Python client, or the broker's REST producer for the schema types the
Python client cannot produce) and to compute the exact JSON the reference says a Lambda receives.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import pulsar
from tests.stack import Recorder, Stack, wait_for

from lambdasink_runtime.config import PulsarConfig
from lambdasink_runtime.consumer import PulsarSource
from lambdasink_runtime.schemas import SchemaRegistry

__all__ = ["wait_for"]  # re-exported: the runtime tests import it from here

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALL_METADATA = "topic,key,partitionIndex,sequence,properties,eventTime,messageId,publishTime"


def runtime_command() -> list[str]:
    """The installed console script of this interpreter's environment (the .venv's)."""
    script = Path(sys.executable).parent / "lambdasink-runtime"
    if not script.exists():
        script = REPO / ".venv" / "bin" / "lambdasink-runtime"
    return [str(script)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unique_topic(prefix: str) -> str:
    return f"persistent://public/default/{unique(prefix)}"


# --- the runtime process -------------------------------------------------------------------------


def runtime_config(
    stack: Stack,
    function: str,
    *,
    topics: Iterable[str] | None = None,
    topics_pattern: str | None = None,
    subscription: str | None = None,
    pulsar: Mapping[str, Any] | None = None,
    sink: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole runtime document for the stack: Earliest position, short timers for tests.

    The Lambda keys are not in the document; `RuntimeProcess` passes them in the environment.
    """
    pulsar_doc: dict[str, Any] = {
        "serviceUrl": stack.pulsar_service_url,
        "adminUrl": stack.pulsar_admin_url,
        "subscriptionName": subscription or unique("sub"),
        "subscriptionInitialPosition": "Earliest",
        "negativeAckRedeliveryDelayMs": 500,
    }
    if topics_pattern is not None:
        pulsar_doc["topicsPattern"] = topics_pattern
    else:
        pulsar_doc["topics"] = list(topics or [])
    pulsar_doc.update(pulsar or {})
    sink_doc: dict[str, Any] = {
        "awsRegion": stack.lambda_region,
        "awsEndpoint": stack.lambda_endpoint,
        "lambdaFunctionName": function,
        "payloadFormat": "V2",
        "batchMaxTimeMs": 200,
        "invokeBackoffInitialMs": 50,
        "invokeBackoffMaxMs": 1000,
    }
    sink_doc.update(sink or {})
    runtime_doc: dict[str, Any] = {"logLevel": "INFO", "drainTimeoutSeconds": 20}
    runtime_doc.update(runtime or {})
    return {"pulsar": pulsar_doc, "sink": sink_doc, "runtime": runtime_doc}


class RuntimeProcess:
    """One `lambdasink-runtime` process; stdout/stderr are kept in files under `workdir`."""

    def __init__(
        self,
        stack: Stack,
        config: Mapping[str, Any] | str,
        workdir: Path,
        *,
        name: str = "runtime",
        config_in_env: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.stack = stack
        self.config = config
        self.workdir = workdir
        self.name = name
        self.config_in_env = config_in_env
        self.extra_env = dict(extra_env or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._files: list[IO[bytes]] = []
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.config_path = workdir / f"{name}.json"

    # -- lifecycle
    def start(self) -> RuntimeProcess:
        assert self.proc is None, "already started"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        text = self.config if isinstance(self.config, str) else json.dumps(self.config, indent=2)
        env = {
            **os.environ,
            "LAMBDASINK_HTTP_PORT": str(self.port),
            "LAMBDASINK_AWS_ACCESS_KEY": self.stack.access_key,
            "LAMBDASINK_AWS_SECRET_KEY": self.stack.secret_key,
            "LAMBDASINK_TERMINATION_LOG": str(self.workdir / f"{self.name}.termination-log"),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.extra_env)
        cmd = runtime_command()
        if self.config_in_env:
            env["LAMBDASINK_CONFIG"] = text
        else:
            self.config_path.write_text(text, encoding="utf-8")
            cmd += ["--config", str(self.config_path)]
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.workdir
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def probe(self, path: str = "/readyz") -> tuple[int, str]:
        """(status, body) of the runtime's HTTP endpoint; (0, error) when not answering."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def wait_ready(self, timeout: float = 60.0) -> RuntimeProcess:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.wait(1)} before /readyz:\n{self.stderr_tail()}"
                )
            status, _ = self.probe("/readyz")
            if status == 200:
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.stderr_tail()}")
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code (negative: killed by that signal)."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s:\n{self.stderr_tail()}"
            ) from None
        self.returncode = rc
        self._close_files()
        return rc

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (what Kubernetes sends first) and wait for the exit code."""
        assert self.proc is not None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        """SIGKILL (`kill -9`): no drain, no goodbye to the broker."""
        assert self.proc is not None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.wait(30)

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    # -- output
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 40) -> str:
        if not self.stderr_path.exists():
            return "(no stderr)"
        return "\n".join(self.stderr().splitlines()[-lines:])


@dataclass
class Runtimes:
    """Launches runtime processes for one test and stops whatever is left at the end."""

    stack: Stack
    workdir: Path
    started: list[RuntimeProcess] = field(default_factory=list)

    def process(
        self, config: Mapping[str, Any] | str, *, name: str | None = None, **kw: Any
    ) -> RuntimeProcess:
        name = name or f"runtime{len(self.started) + 1}"
        proc = RuntimeProcess(self.stack, config, self.workdir, name=name, **kw)
        self.started.append(proc)
        return proc

    def start(self, config: Mapping[str, Any] | str, **kw: Any) -> RuntimeProcess:
        """Start a runtime and wait until /readyz says it is subscribed and checked."""
        return self.process(config, **kw).start().wait_ready()

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.proc is None:
                continue
            if proc.alive():
                proc.kill()
            else:
                proc.wait(5)
            # Shown by pytest only when the test failed.
            print(f"--- {proc.name} (exit {proc.returncode}) stderr tail ---\n{proc.stderr_tail()}")


# --- producing -----------------------------------------------------------------------------------


def pulsar_client(stack: Stack) -> Any:
    return pulsar.Client(
        stack.pulsar_service_url,
        operation_timeout_seconds=30,
        logger=logging.getLogger("tests.pulsar"),
    )


@dataclass(frozen=True)
class Sent:
    """A produced message as the producer knows it (what the expected JSON is computed from)."""

    topic: str  # the topic the message is in (a partition's name on partitioned topics)
    ledger: int
    entry: int
    partition: int
    batch_index: int
    key: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    event_time_ms: int | None = None

    @property
    def message_id(self) -> str:
        return f"{self.ledger}:{self.entry}:{self.partition}:{self.batch_index}"

    @property
    def sequence(self) -> int:
        """Pulsar IO's record sequence: (ledgerId << 28) | entryId."""
        return (self.ledger << 28) | self.entry


def send(producer: Any, topic: str, value: Any, **kw: Any) -> Sent:
    """Send one message with the Python client; `kw`: partition_key, properties, event_timestamp."""
    mid = producer.send(value, **kw)
    partition = mid.partition()
    return Sent(
        topic=f"{topic}-partition-{partition}" if partition >= 0 else topic,
        ledger=mid.ledger_id(),
        entry=mid.entry_id(),
        partition=partition,
        batch_index=mid.batch_index(),
        key=kw.get("partition_key"),
        properties=dict(kw.get("properties") or {}),
        event_time_ms=kw.get("event_timestamp"),
    )


def admin(stack: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The broker's admin/REST API: (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        stack.pulsar_admin_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def backlog(stack: Stack, topic: str, subscription: str) -> int:
    """Unacknowledged messages of `subscription` on a non-partitioned topic (admin stats)."""
    status, stats = admin(stack, "GET", f"/admin/v2/persistent/{_topic_path(topic)}/stats")
    assert status == 200, stats
    return int(stats["subscriptions"][subscription]["msgBacklog"])


def _topic_path(topic: str) -> str:
    rest = topic.split("://", 1)[1]
    return "/".join(urllib.parse.quote(p, safe="") for p in rest.split("/"))


def create_topic(stack: Stack, topic: str, partitions: int = 0) -> None:
    path = f"/admin/v2/persistent/{_topic_path(topic)}"
    if partitions:
        status, body = admin(stack, "PUT", path + "/partitions", partitions)
    else:
        status, body = admin(stack, "PUT", path)
    assert status in (200, 204), (status, body)


def rest_produce(
    stack: Stack, topic: str, schema_type: str, messages: list[dict[str, Any]]
) -> list[Sent]:
    """Produce with the broker's REST producer (PIP-64, POST /topics/...), which sets the given
    primitive schema type on the topic and encodes each payload string with Pulsar's own Java
    schema (e.g. `LocalDateTime.parse`). The Python client cannot produce BOOLEAN, DATE, TIME,
    TIMESTAMP, LOCAL_DATE, LOCAL_TIME, LOCAL_DATE_TIME or INSTANT: its C++ core knows no such
    schema types. messages: [{payload, key?, properties?, eventTime?}]. Non-partitioned topics.
    """
    create_topic(stack, topic)
    schema = json.dumps({"name": schema_type, "schema": "", "type": schema_type, "properties": {}})
    body = {
        "valueSchema": schema,
        "messages": [
            {**m, "eventTime": str(m["eventTime"])} if "eventTime" in m else m for m in messages
        ],
    }
    status, result = admin(stack, "POST", f"/topics/persistent/{_topic_path(topic)}", body)
    assert status == 200, (status, result)
    out = []
    for m, res in zip(messages, result["messagePublishResults"], strict=True):
        assert res["errorCode"] == 0, res
        ledger, entry, partition = (int(x) for x in res["messageId"].split(":")[:3])
        out.append(
            Sent(
                topic=topic,
                ledger=ledger,
                entry=entry,
                partition=partition,
                batch_index=-1,
                key=m.get("key"),
                properties=dict(m.get("properties") or {}),
                event_time_ms=m.get("eventTime"),
            )
        )
    return out


# --- expected JSON -------------------------------------------------------------------------------


def iso_millis(ms: int) -> str:
    """The reference's `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, in UTC (offset `Z`)."""
    t = EPOCH + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def v2_item(
    sent: Sent,
    value: Any,
    fields: str = "topic,key,partitionIndex,sequence,properties,eventTime",
    *,
    publish_time_ms: int | None = None,
) -> dict[str, Any]:
    """The V2 item the reference describes for `sent` with the selected metadata fields."""
    selected = {f.strip() for f in fields.split(",") if f.strip()}
    item: dict[str, Any] = {}
    if "topic" in selected:
        item["topic"] = sent.topic
    if "key" in selected and sent.key is not None:
        item["key"] = sent.key
    if "partitionIndex" in selected and sent.partition >= 0:
        item["partitionIndex"] = sent.partition
    if "sequence" in selected:
        item["sequence"] = sent.sequence
    if "properties" in selected:
        item["properties"] = dict(sent.properties)
    if "eventTime" in selected and sent.event_time_ms:
        item["eventTime"] = iso_millis(sent.event_time_ms)
    if "messageId" in selected:
        item["messageId"] = sent.message_id
    if "publishTime" in selected and publish_time_ms:
        item["publishTime"] = iso_millis(publish_time_ms)
    item["value"] = value
    return item


def received_items(recorder: Recorder) -> list[dict[str, Any]]:
    """Every V2 item the recording function received, invocation by invocation."""
    out: list[dict[str, Any]] = []
    for event in recorder.events():
        assert isinstance(event, list), f"not a V2 payload: {event!r}"
        out.extend(event)
    return out


def wait_items(recorder: Recorder, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the function has received at least `n` V2 items."""

    def enough() -> list[dict[str, Any]] | None:
        items = received_items(recorder)
        return items if len(items) >= n else None

    return wait_for(f"{n} items at {recorder.function}", enough, timeout)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def publish_times(stack: Stack, topic: str, count: int) -> dict[str, int]:
    """messageId → publish time of the first `count` messages of `topic` (partitioned or not),
    read back with a consumer of its own subscription: only the broker side knows them."""
    client = pulsar_client(stack)
    try:
        consumer = client.subscribe(
            topic, unique("publish-times"), initial_position=pulsar.InitialPosition.Earliest
        )
        out: dict[str, int] = {}
        for _ in range(count):
            msg = consumer.receive(15_000)
            mid = msg.message_id()
            key = f"{mid.ledger_id()}:{mid.entry_id()}:{mid.partition()}:{mid.batch_index()}"
            out[key] = msg.publish_timestamp()
            consumer.acknowledge(msg)
        consumer.close()
        return out
    finally:
        client.close()


def pulsar_source(
    stack: Stack,
    topics: list[str],
    *,
    public_api: bool | None = None,
    registry: bool = True,
    **cfg: Any,
) -> PulsarSource:
    """A `PulsarSource` on the stack's broker: Exclusive, from Earliest, a fresh subscription
    unless `subscription_name` is given; `public_api` as `pulsar_compat` takes it."""
    settings: dict[str, Any] = {
        "service_url": stack.pulsar_service_url,
        "admin_url": stack.pulsar_admin_url,
        "topics": tuple(topics),
        "subscription_name": cfg.pop("subscription_name", unique("rx")),
        "subscription_type": "Exclusive",
        "initial_position": "Earliest",
        **cfg,
    }
    reg = SchemaRegistry(stack.pulsar_admin_url) if registry else None
    return PulsarSource(PulsarConfig(**settings), reg, public_api=public_api)


def produce_strings(client: Any, topic: str, values: list[str], *, batching: bool = True) -> None:
    """STRING-schema messages, sent asynchronously (batched unless `batching` is False)."""
    producer = client.create_producer(
        topic,
        schema=pulsar.schema.StringSchema(),
        batching_enabled=batching,
        batching_max_messages=50,
        batching_max_publish_delay_ms=10,
    )
    for v in values:
        producer.send_async(v, None)
    producer.flush()
    producer.close()
