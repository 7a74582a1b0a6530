"""What only a real node shows about the worker pods: `kubectl logs`, the kernel's memory limit,
a Secret volume updated in place, the SIGTERM drain of `kubectl delete pod`, and the liveness
probe restarting a wedged worker."""

from __future__ import annotations

import base64
import collections
import json
import signal
import threading
from typing import Any

import pytest
from e2e_support import Product, demo, signal_container, wait_for

pytestmark = pytest.mark.e2e
JSON = dict[str, Any]


def _apply(product: Product, namespace: str, name: str, **kw: Any) -> tuple[JSON, str]:
    topic = demo.topic_url(namespace, name)
    manifest: JSON = demo.sink_manifest(
        product.stack, name=name, namespace=namespace, topics=[topic], **kw
    )
    return manifest, topic


def _one_worker(product: Product, namespace: str, name: str) -> tuple[str, str]:
    (item,) = product.wait_workers(namespace, name, 1).items()
    cid = product.worker_containers(namespace, name)[item[0]]
    return item[0], cid


def _restarts(product: Product, namespace: str, pod: str) -> int:
    obj = product.stack.kubectl_json("get", "pod", pod, "-n", namespace)
    return sum(int(cs.get("restartCount", 0)) for cs in obj["status"]["containerStatuses"])


def test_kubectl_logs_shows_the_workers_start_up_line(product: Product, namespace: str) -> None:
    st = product.stack
    manifest, _ = _apply(product, namespace, "logs")
    st.apply(manifest)
    demo.wait_sink_ready(st, namespace, "logs")
    pod, _ = _one_worker(product, namespace, "logs")
    out = st.kubectl("logs", "-n", namespace, pod, "-c", "worker").stdout
    assert "starting: function=recorder" in out, out[-2000:]
    assert "static keys from files in /etc/lambdasink/secrets/aws" in out, out[-2000:]


def test_a_tiny_memory_limit_is_oom_killed_and_the_condition_says_so(
    product: Product, namespace: str
) -> None:
    st = product.stack
    manifest, _ = _apply(product, namespace, "tiny")
    manifest["spec"]["pod"] = {"resources": {"limits": {"memory": "40Mi"}}}
    st.apply(manifest)

    def oom_reported() -> JSON | None:
        cond = demo.ready_condition(demo.sink_status(st, namespace, "tiny"))
        return cond if cond.get("reason") == "WorkerOOMKilled" else None

    cond = wait_for("Ready=False (WorkerOOMKilled)", oom_reported, 180)
    assert cond["status"] == "False"
    pods = [p["metadata"]["name"] for p in demo.worker_pods(st, namespace, "tiny")]
    assert any(f"pod {p}:" in cond["message"] for p in pods), (pods, cond)
    assert "OOMKilled" in cond["message"]


def test_a_rotated_secret_reaches_the_pods_files_and_the_calls(
    product: Product, namespace: str, lambda_faults: Any
) -> None:
    st = product.stack
    manifest, topic = _apply(product, namespace, "rotate")
    st.apply(manifest)
    demo.wait_sink_ready(st, namespace, "rotate")
    pod, _ = _one_worker(product, namespace, "rotate")
    path = "/etc/lambdasink/secrets/aws/accessKeyId"
    before = st.kubectl("exec", "-n", namespace, pod, "--", "cat", path).stdout.strip()
    assert before == st.access_key

    rotated = "AKIAROTATEDE2E00001"
    st.kubectl(
        "patch",
        "secret",
        demo.DEMO_SECRET,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"accessKeyId": base64.b64encode(rotated.encode()).decode()}}),
    )

    def files_rotated() -> str | None:
        # the kubelet swaps the volume in place; the hash also rolls the workers onto it
        for name in product.worker_containers(namespace, "rotate", ready_only=True):
            got = st.kubectl("exec", "-n", namespace, name, "--", "cat", path, check=False)
            if got.returncode == 0 and got.stdout.strip() == rotated:
                return name
        return None

    wait_for("the rotated key in a worker's files", files_rotated, 180)
    demo.wait_sink_ready(st, namespace, "rotate")
    producer_numbers = [f"after-rotation-{n}" for n in range(3)]
    import pulsar  # noqa: PLC0415

    client = pulsar.Client(st.pulsar_service_url)
    try:
        producer = client.create_producer(topic, schema=pulsar.schema.StringSchema())
        for text in producer_numbers:
            producer.send(text)
    finally:
        client.close()
    items = product.wait_received([topic], 3)
    assert {i["value"] for i in items} >= set(producer_numbers)
    # the gateway saw the rotated access key sign the calls (its request log; nothing injected)
    requests = lambda_faults.requests("recorder")
    assert rotated in {r.get("accessKeyId") for r in requests}


def test_deleting_a_pod_drains_the_worker_without_duplicates(
    product: Product, namespace: str
) -> None:
    st = product.stack
    manifest, topic = _apply(product, namespace, "drain", sink_config={"batchMaxTimeMs": 200})
    st.apply(manifest)
    demo.wait_sink_ready(st, namespace, "drain")
    pod, _ = _one_worker(product, namespace, "drain")

    stop = threading.Event()
    sent: list[int] = []

    def produce() -> None:
        import pulsar  # noqa: PLC0415

        client = pulsar.Client(st.pulsar_service_url)
        try:
            producer = client.create_producer(topic, schema=pulsar.schema.StringSchema())
            n = 0
            while not stop.is_set():
                producer.send(f"seq-{n}")
                sent.append(n)
                n += 1
                stop.wait(0.02)
        finally:
            client.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        wait_for("records flowing", lambda: len(product.items([topic])) > 50, 60)
        st.kubectl("delete", "pod", pod, "-n", namespace, "--wait=true")
        new = product.wait_workers(namespace, "drain", 1)
        assert pod not in new
        at = len(sent)
        wait_for("records produced to the new worker", lambda: len(sent) > at + 50, 30)
    finally:
        stop.set()
        thread.join(30)

    def everything() -> list[int] | None:
        got = [int(str(i["value"]).removeprefix("seq-")) for i in product.items([topic])]
        return got if set(sent) <= set(got) else None

    got = wait_for("every produced number at the handler", everything, 120)
    duplicates = {n: c for n, c in collections.Counter(got).items() if c > 1}
    assert duplicates == {}, f"{len(duplicates)} duplicated after kubectl delete pod"


def test_the_liveness_probe_restarts_a_wedged_worker(product: Product, namespace: str) -> None:
    """Wedged: the worker's processes stopped (SIGSTOP from the host), so /healthz stops
    answering; the kubelet's liveness probe times out and restarts the container."""
    st = product.stack
    manifest, _ = _apply(product, namespace, "wedged")
    st.apply(manifest)
    demo.wait_sink_ready(st, namespace, "wedged")
    pod, cid = _one_worker(product, namespace, "wedged")
    assert _restarts(product, namespace, pod) == 0
    stopped = signal_container(cid, signal.SIGSTOP)
    assert stopped, f"no process found for container {cid}"
    try:
        wait_for(
            "the kubelet to restart the wedged worker",
            lambda: _restarts(product, namespace, pod) >= 1,
            240,
        )
    finally:
        signal_container(cid, signal.SIGCONT)
    events = st.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}"
    )["items"]
    assert any("Liveness probe failed" in (e.get("message") or "") for e in events), [
        e.get("message") for e in events
    ]
    demo.wait_sink_ready(st, namespace, "wedged")
    product.wait_workers(namespace, "wedged", 1)
