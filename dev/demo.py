#!/usr/bin/env python3
"""`make demo`: lambda-sink end to end on the local stack, shown as a person would want to see it.

    python dev/demo.py          # stack up (a real kubelet node), Helm chart, a LambdaSink, messages
    python dev/demo.py down     # stop the stack and its containers (`make demo-down`)

Everything is left running when the demo ends, so you can look around with kubectl.
The helpers below (stack details, chart install, manifests, producing, reading what the Lambda
handler received) are also what the e2e tests (tests/e2e) drive, so the demo's path is tested.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

CHART = REPO / "deploy" / "helm" / "lambda-sink"
EXAMPLES = REPO / "examples"
RELEASE = "lambda-sink"
OPERATOR_NS = "lambdasink-system"
DEMO_NS = "lambdasink-demo"
DEMO_SINK = "orders-to-lambda"
DEMO_SECRET = "lambdasink-aws"  # the name examples/aws-credentials-secret.yaml uses
JSON = dict[str, Any]


# -- the stack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """What dev/stack wrote to .stack/stack.json, the parts the demo and the e2e tests use."""

    state_dir: Path
    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    pulsar_service_url: str
    pulsar_admin_url: str
    lambda_endpoint: str
    lambda_region: str
    access_key: str
    secret_key: str
    record_dir: Path

    @classmethod
    def load(cls, path: Path | None = None) -> Stack:
        state_dir = Path(os.environ.get("LAMBDASINK_STATE_DIR") or REPO / ".stack")
        doc = json.loads((path or state_dir / "stack.json").read_text())
        kube, lam, pulsar = doc["kubernetes"], doc["lambda"], doc["pulsar"]
        return cls(
            state_dir=Path(doc.get("stateDir", state_dir)),
            kubeconfig=Path(kube["kubeconfig"]),
            kubectl_bin=kube["kubectl"],
            helm_bin=kube["helm"],
            pulsar_service_url=pulsar["serviceUrl"],
            pulsar_admin_url=pulsar["adminUrl"],
            lambda_endpoint=lam["endpointUrl"],
            lambda_region=lam["region"],
            access_key=lam["accessKeyId"],
            secret_key=lam["secretAccessKey"],
            record_dir=Path(lam["recordDir"]),
        )

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def kubectl_json(self, *args: str) -> JSON:
        out: JSON = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return out

    def apply(self, *objects: JSON) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.helm_bin, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc


def build_images() -> None:
    """`make images` (cached by a digest of the sources: a no-op when nothing changed)."""
    subprocess.run([sys.executable, str(REPO / "dev" / "images.py")], check=True)


def import_images() -> None:
    """Import the built operator and runtime images into the running node's containerd."""
    subprocess.run([sys.executable, str(REPO / "dev" / "stack"), "import-images"], check=True)


def stack_up() -> Stack:
    """The images, then `dev/stack up` (installs what is missing, starts what is not running,
    imports the images into the node's containerd)."""
    build_images()
    subprocess.run([sys.executable, str(REPO / "dev" / "stack"), "up"], check=True)
    return Stack.load()


# -- the product -------------------------------------------------------------------------------


def install_chart(
    stack: Stack, *, watch_namespaces: Iterable[str] = (), timeout: str = "5m"
) -> None:
    """Install (or upgrade) the chart: CRD + operator, whose pod runs on the stack's node from
    the operator image with the ServiceAccount token the kubelet mounts: the chart's RBAC."""
    namespaces = list(watch_namespaces)
    scope = (
        ["--set-json", f"watchNamespaces={json.dumps(namespaces)}"]
        if namespaces
        else ["--set", "watchAllNamespaces=true"]
    )
    stack.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        *scope,
        "--wait",
        "--timeout",
        timeout,
    )


def ensure_namespace(stack: Stack, name: str, labels: dict[str, str] | None = None) -> None:
    meta: JSON = {"name": name, "labels": labels or {}}
    stack.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})


def aws_secret(stack: Stack, namespace: str, name: str = DEMO_SECRET) -> JSON:
    """The Lambda gateway's (fake-account) keys, as a Secret the LambdaSink references."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"accessKeyId": stack.access_key, "secretAccessKey": stack.secret_key},
    }


def example_sink() -> JSON:
    """The first LambdaSink of examples/*.yaml (quick-start ones first)."""
    files = sorted(
        EXAMPLES.glob("*.yaml"),
        key=lambda p: (not any(w in p.name for w in ("local", "quick", "demo")), p.name),
    )
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "LambdaSink":
                return doc
    raise RuntimeError(f"no LambdaSink manifest in {EXAMPLES}/*.yaml")


def topic_url(namespace: str, topic: str) -> str:
    return f"persistent://public/default/{namespace}-{topic}"


def sink_manifest(
    stack: Stack,
    *,
    name: str,
    namespace: str,
    topics: list[str],
    function: str = "recorder",
    secret: str = DEMO_SECRET,
    replicas: int = 1,
    sink_config: JSON | None = None,
) -> JSON:
    """The example LambdaSink pointed at this stack's Pulsar and Lambda gateway."""
    doc = copy.deepcopy(example_sink())
    doc["metadata"] = {"name": name, "namespace": namespace}
    spec = doc.setdefault("spec", {})
    spec["replicas"] = replicas
    spec["pulsar"] = {
        **{
            k: v
            for k, v in (spec.get("pulsar") or {}).items()
            if k not in ("authentication", "tls")
        },
        "serviceUrl": stack.pulsar_service_url,
        "adminUrl": stack.pulsar_admin_url,
    }
    inp = spec.setdefault("input", {})
    inp.pop("topicsPattern", None)
    inp["topics"] = topics
    inp["subscriptionName"] = f"{name}-sub"
    inp["subscriptionType"] = "Shared"
    inp["subscriptionInitialPosition"] = "Earliest"
    sink = spec.setdefault("sinkConfig", {})
    sink.update(
        {
            "awsEndpoint": stack.lambda_endpoint,
            "awsRegion": stack.lambda_region,
            "lambdaFunctionName": function,
            "payloadFormat": "V2",
            "batchMaxSize": 10,
            "batchMaxTimeMs": 500,
        }
    )
    for key in ("awsCredentialPluginName", "awsAssumeRoleArn"):
        sink.pop(key, None)
    sink.update(sink_config or {})
    spec["aws"] = {"credentialsSecret": {"name": secret}}
    return doc


def sink_status(stack: Stack, namespace: str, name: str) -> JSON:
    obj = stack.kubectl_json("get", "lambdasink", name, "-n", namespace)
    status: JSON = obj.get("status") or {}
    return status


def ready_condition(status: JSON) -> JSON:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def wait_sink_ready(stack: Stack, namespace: str, name: str, timeout: float = 180) -> JSON:
    deadline = time.monotonic() + timeout
    status: JSON = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            status = sink_status(stack, namespace, name)
            if ready_condition(status).get("status") == "True":
                return status
        time.sleep(1)
    raise TimeoutError(f"LambdaSink {namespace}/{name} not Ready after {timeout:.0f}s: {status}")


def worker_pods(stack: Stack, namespace: str, name: str) -> list[JSON]:
    pods: list[JSON] = stack.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return pods


# -- producing ---------------------------------------------------------------------------------


def demo_messages() -> tuple[list[str], list[JSON], list[JSON]]:
    strings = [f"hello, lambda #{i}" for i in range(1, 4)]
    orders = [
        {"orderId": 1001 + i, "item": item, "quantity": q, "price": p}
        for i, (item, q, p) in enumerate([("coffee", 2, 3.5), ("bagel", 1, 2.25), ("tea", 3, 1.75)])
    ]
    readings = [
        {"sensor": s, "celsius": c, "ok": ok}
        for s, c, ok in [("boiler", 71.5, True), ("fridge", 3.0, True), ("oven", 250.0, False)]
    ]
    return strings, orders, readings


def produce_demo(stack: Stack, topics: dict[str, str]) -> None:
    """A string, a JSON-schema and an Avro topic, with the pulsar-client's own schemas."""
    import pulsar  # noqa: PLC0415 - only the producing side needs the client
    from pulsar.schema import AvroSchema, Boolean, Double, Integer, JsonSchema, Record, String  # noqa: PLC0415

    class Order(Record):  # type: ignore[misc]
        orderId = Integer()
        item = String()
        quantity = Integer()
        price = Double()

    class Reading(Record):  # type: ignore[misc]
        sensor = String()
        celsius = Double()
        ok = Boolean()

    strings, orders, readings = demo_messages()
    client = pulsar.Client(stack.pulsar_service_url, logger=_quiet_logger())
    try:
        producer = client.create_producer(topics["strings"], schema=pulsar.schema.StringSchema())
        for i, text in enumerate(strings):
            producer.send(text, partition_key=f"k{i}")
        producer = client.create_producer(topics["json"], schema=JsonSchema(Order))
        for order in orders:
            producer.send(Order(**order), partition_key=str(order["orderId"]))
        producer = client.create_producer(topics["avro"], schema=AvroSchema(Reading))
        for reading in readings:
            producer.send(Reading(**reading), partition_key=reading["sensor"])
    finally:
        client.close()


def _quiet_logger() -> Any:
    import logging  # noqa: PLC0415

    logger = logging.getLogger("pulsar-client")
    logger.setLevel(logging.WARNING)
    return logger


# -- what the Lambda handler received ----------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    ts: float
    request_id: str | None
    items: list[JSON]  # V2: one item per record


class RecordTail:
    """Follows the recorder's JSON-lines file, keeping every line ever seen.

    Other test suites clear the file (unlink) between their tests; holding it open and following
    the replacement keeps what this session's sinks delivered.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._buf = b""
        self._lines: list[JSON] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _drain(self) -> None:
        data = self._fh.read()
        if not data:
            return
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for raw in complete:
            with contextlib.suppress(ValueError):
                self._lines.append(json.loads(raw))

    def poll(self) -> None:
        with self._lock:
            if self._fh is None:
                try:
                    self._fh = self.path.open("rb")
                except FileNotFoundError:
                    return
            self._drain()
            try:
                replaced = self.path.stat().st_ino != os.fstat(self._fh.fileno()).st_ino
            except FileNotFoundError:
                replaced = True
            if replaced:
                self._drain()
                self._fh.close()
                self._fh, self._buf = None, b""

    def lines(self) -> list[JSON]:
        self.poll()
        with self._lock:
            return list(self._lines)

    def start(self, every: float = 0.2) -> RecordTail:
        def loop() -> None:
            while not self._stop.wait(every):
                self.poll()

        self._thread = threading.Thread(target=loop, name="record-tail", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def record_lines(stack: Stack, function: str = "recorder") -> list[JSON]:
    path = stack.record_dir / f"{function}.jsonl"
    out: list[JSON] = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def invocations(
    stack: Stack, topics: Iterable[str], tail: RecordTail | None = None
) -> list[Invocation]:
    """Invocations of the recorder whose records came from `topics` (in arrival order)."""
    wanted = set(topics)
    out: list[Invocation] = []
    for rec in tail.lines() if tail is not None else record_lines(stack):
        event = rec.get("event")
        items = event if isinstance(event, list) else [event]
        mine = [i for i in items if isinstance(i, dict) and i.get("topic") in wanted]
        if mine:
            out.append(Invocation(rec.get("ts", 0.0), rec.get("requestId"), mine))
    return out


def received_items(
    stack: Stack, topics: Iterable[str], tail: RecordTail | None = None
) -> list[JSON]:
    return [item for inv in invocations(stack, topics, tail) for item in inv.items]


def wait_received(
    stack: Stack,
    topics: Iterable[str],
    count: int,
    timeout: float = 120,
    tail: RecordTail | None = None,
) -> list[JSON]:
    topics = list(topics)
    deadline = time.monotonic() + timeout
    items: list[JSON] = []
    while time.monotonic() < deadline:
        items = received_items(stack, topics, tail)
        if len(items) >= count:
            return items
        time.sleep(0.5)
    raise TimeoutError(f"the handler received {len(items)} of {count} records after {timeout:.0f}s")


# -- the show ----------------------------------------------------------------------------------


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(stack: Stack, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}")
    proc = stack.kubectl(*args, check=False)
    print((proc.stdout or proc.stderr).rstrip(), flush=True)


def demo() -> int:
    t0 = time.monotonic()
    step(
        "Starting the local stack (Pulsar, Kubernetes with a real kubelet node and containerd, "
        "Lambda; the operator and runtime images are built and imported)"
    )
    stack = stack_up()
    show(stack, "get", "nodes", "-o", "wide")

    step(f"Installing the Helm chart (CRD + operator) into {OPERATOR_NS}")
    ensure_namespace(stack, DEMO_NS)
    install_chart(stack, watch_namespaces=[DEMO_NS])
    show(stack, "get", "deploy,pods", "-n", OPERATOR_NS)

    topics = {k: topic_url(DEMO_NS, k) for k in ("strings", "json", "avro")}
    step(f"Creating the AWS credentials Secret and the LambdaSink {DEMO_NS}/{DEMO_SINK}")
    manifest = sink_manifest(stack, name=DEMO_SINK, namespace=DEMO_NS, topics=list(topics.values()))
    stack.apply(aws_secret(stack, DEMO_NS), manifest)
    print(yaml.safe_dump(manifest["spec"], sort_keys=False).rstrip())
    wait_sink_ready(stack, DEMO_NS, DEMO_SINK)
    show(stack, "get", "lambdasinks", "-n", DEMO_NS)
    show(stack, "get", "pods", "-n", DEMO_NS, "-o", "wide")

    step("Producing messages: 3 strings, 3 JSON-schema orders, 3 Avro sensor readings")
    before = len(received_items(stack, topics.values()))
    produce_demo(stack, topics)
    items = wait_received(stack, topics.values(), before + 9)

    step("What the Lambda function `recorder` received (V2 payload, batched)")
    for inv in invocations(stack, topics.values())[-6:]:
        print(f"-- invocation {inv.request_id} with {len(inv.items)} record(s)")
        print(json.dumps(inv.items, indent=2))
    print(f"\n{len(items)} record(s) delivered so far; all 9 of this run arrived.")

    step("Status")
    show(stack, "get", "lambdasinks", "-A")
    show(
        stack, "get", "lambdasink", DEMO_SINK, "-n", DEMO_NS, "-o", "jsonpath={.status.conditions}"
    )
    kc = stack.kubeconfig
    print(
        f"""
Done in {time.monotonic() - t0:.0f}s. Everything keeps running. Look around:

  export KUBECONFIG={kc}
  {stack.kubectl_bin} get lambdasinks -A
  {stack.kubectl_bin} describe lambdasink {DEMO_SINK} -n {DEMO_NS}
  {stack.kubectl_bin} scale lambdasink/{DEMO_SINK} -n {DEMO_NS} --replicas=3
  {stack.kubectl_bin} get pods -A -o wide

  {stack.kubectl_bin} logs -n {DEMO_NS} -l app.kubernetes.io/instance={DEMO_SINK}
  what the handler received: {stack.record_dir}/recorder.jsonl
  stack details:             {stack.state_dir}/stack.json ; dev/stack status

Stop everything: make demo-down
"""
    )
    return 0


def down() -> int:
    """Stop the stack (`dev/stack down` stops every container and sandbox of its node)."""
    return subprocess.run(
        [sys.executable, str(REPO / "dev" / "stack"), "down"], check=False
    ).returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["down"]:
        return down()
    if argv:
        print(__doc__)
        return 2
    return demo()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
