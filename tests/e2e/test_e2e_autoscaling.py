"""Backlog in status and autoscaling, end to end: chart → operator → Pulsar admin API (real
broker) → spec.replicas through the scale subresource → worker pods (real kubelet) → the real
Lambda handler. The gateway's added latency (a fake: the emulator has no such knob) keeps the
backlog long enough for the scale-out to be seen."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from e2e_support import Product, demo, wait_for

pytestmark = pytest.mark.e2e
JSON = dict[str, Any]


def create_subscription(product: Product, topic: str, subscription: str) -> None:
    """The subscription exists before any worker runs (as after a pause), so the backlog has a
    cursor to count from."""
    import pulsar  # noqa: PLC0415

    client = pulsar.Client(product.stack.pulsar_service_url)
    try:
        client.subscribe(topic, subscription, consumer_type=pulsar.ConsumerType.Shared).close()
    finally:
        client.close()


def produce(product: Product, topic: str, count: int) -> None:
    import pulsar  # noqa: PLC0415

    client = pulsar.Client(product.stack.pulsar_service_url)
    try:
        producer = client.create_producer(topic, schema=pulsar.schema.StringSchema())
        for n in range(count):
            producer.send_async(f"seq-{n}", None)
        producer.flush()
    finally:
        client.close()


def delivered(recorder: Any) -> set[int]:
    text = json.dumps([e["event"] for e in recorder.entries()])
    return {int(m) for m in re.findall(r"seq-(\d+)", text)}


def sink(
    product: Product, namespace: str, name: str, topic: str, function: str, **spec: Any
) -> JSON:
    manifest: JSON = demo.sink_manifest(
        product.stack,
        name=name,
        namespace=namespace,
        topics=[topic],
        function=function,
        replicas=0,
        sink_config={"batchMaxSize": 1, "batchMaxTimeMs": 50, "maxInFlight": 1},
    )
    manifest["spec"].update(spec)
    product.stack.apply(manifest)
    return manifest


def status(product: Product, namespace: str, name: str) -> JSON:
    doc: JSON = demo.sink_status(product.stack, namespace, name)
    return doc


def replicas(product: Product, namespace: str, name: str) -> int:
    doc = product.stack.kubectl_json("get", "lambdasink", name, "-n", namespace)
    return int(doc["spec"].get("replicas", 1))


def condition(doc: JSON, type_: str) -> JSON:
    return next((c for c in doc.get("conditions") or [] if c.get("type") == type_), {})


def test_backlog_shows_in_status_and_follows_the_worker(
    product: Product, namespace: str, lambda_functions: Any
) -> None:
    st = product.stack
    recorder = lambda_functions.recorder()
    topic = demo.topic_url(namespace, "lag")
    create_subscription(product, topic, "lag-sub")
    sink(product, namespace, "lag", topic, recorder.function)
    produce(product, topic, 40)

    def forty() -> JSON | None:
        backlog = status(product, namespace, "lag").get("backlog") or {}
        return backlog if backlog.get("messages") == 40 else None

    backlog = wait_for("status.backlog.messages == 40 with no worker", forty, 120)
    assert backlog.get("oldestAgeSeconds", -1) >= 0, backlog
    assert condition(status(product, namespace, "lag"), "BacklogKnown")["status"] == "True"
    printed = st.kubectl("get", "lambdasink", "lag", "-n", namespace).stdout
    assert "BACKLOG" in printed and " 40 " in printed, printed

    st.kubectl("scale", "lambdasink/lag", "-n", namespace, "--replicas=1")

    def drained() -> JSON | None:
        backlog = status(product, namespace, "lag").get("backlog") or {}
        return backlog if backlog.get("messages") == 0 else None

    backlog = wait_for("status.backlog.messages back to 0", drained, 180)
    assert "oldestAgeSeconds" not in backlog, backlog  # null in the merge patch: removed
    assert delivered(recorder) == set(range(40))


def test_unreachable_pulsar_admin_is_a_condition(product: Product, namespace: str) -> None:
    manifest = demo.sink_manifest(
        product.stack,
        name="nowhere",
        namespace=namespace,
        topics=[demo.topic_url(namespace, "x")],
        replicas=0,
    )
    manifest["spec"]["pulsar"]["adminUrl"] = "http://127.0.0.1:9"  # discard port: refused
    product.stack.apply(manifest)

    def unknown() -> JSON | None:
        cond = condition(status(product, namespace, "nowhere"), "BacklogKnown")
        return cond if cond.get("status") == "False" else None

    cond = wait_for("BacklogKnown=False", unknown, 120)
    assert cond["reason"] == "PulsarUnreachable" and "127.0.0.1:9" in cond["message"], cond


def test_autoscaling_scales_out_to_max_and_back_to_zero(
    product: Product, namespace: str, lambda_functions: Any, lambda_faults: Any
) -> None:
    recorder = lambda_functions.recorder(concurrency=4)
    lambda_faults.set_latency(recorder.function, 200)
    topic = demo.topic_url(namespace, "auto")
    create_subscription(product, topic, "auto-sub")
    produce(product, topic, 300)
    sink(
        product,
        namespace,
        "auto",
        topic,
        recorder.function,
        autoscaling={
            "minReplicas": 0,
            "maxReplicas": 3,
            "targetBacklogPerReplica": 20,
            "scaleDownStabilizationSeconds": 20,
        },
    )
    wait_for(
        "spec.replicas == maxReplicas 3", lambda: replicas(product, namespace, "auto") == 3, 120
    )
    product.wait_workers(namespace, "auto", 3, timeout=180)
    auto = status(product, namespace, "auto")["autoscaling"]
    assert auto["desiredReplicas"] == 3 and "maxReplicas 3" in auto["reason"], auto

    wait_for("every message delivered", lambda: delivered(recorder) == set(range(300)), 300)
    wait_for(
        "scaled to zero after the window", lambda: replicas(product, namespace, "auto") == 0, 180
    )
    product.wait_workers(namespace, "auto", 0, timeout=120)
    events = product.stack.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=auto"
    ).stdout
    assert "ScaledUp" in events and "ScaledDown" in events, events

    produce(product, topic, 5)  # messages arrive: one worker comes back
    wait_for("back to 1 replica", lambda: replicas(product, namespace, "auto") >= 1, 120)
    wait_for("the new messages delivered", lambda: len(recorder.entries()) >= 305, 180)


def test_max_concurrency_caps_the_scale_out(
    product: Product, namespace: str, lambda_functions: Any, lambda_faults: Any
) -> None:
    recorder = lambda_functions.recorder(concurrency=4)
    lambda_faults.set_latency(recorder.function, 500)
    topic = demo.topic_url(namespace, "capped")
    create_subscription(product, topic, "capped-sub")
    produce(product, topic, 200)
    sink(
        product,
        namespace,
        "capped",
        topic,
        recorder.function,
        autoscaling={
            "minReplicas": 0,
            "maxReplicas": 5,
            "targetBacklogPerReplica": 10,
            "maxConcurrency": 2,  # x maxInFlight 1: two workers
            "scaleDownStabilizationSeconds": 600,
        },
    )

    def capped() -> JSON | None:
        auto = status(product, namespace, "capped").get("autoscaling") or {}
        return auto if auto.get("concurrencyCapReplicas") == 2 else None

    auto = wait_for("the autoscaler reports the concurrency cap", capped, 120)
    assert auto["desiredReplicas"] == 2 and "concurrency" in auto["reason"], auto
    assert replicas(product, namespace, "capped") == 2


def test_scale_subresource_accepts_an_external_writer(product: Product, namespace: str) -> None:
    """What KEDA or an HPA does: write /scale. With autoscaling off the operator keeps it."""
    st = product.stack
    topic = demo.topic_url(namespace, "keda")
    demo_manifest = demo.sink_manifest(
        st, name="keda", namespace=namespace, topics=[topic], replicas=0
    )
    st.apply(demo_manifest)
    st.kubectl(
        "patch",
        "lambdasink",
        "keda",
        "-n",
        namespace,
        "--subresource=scale",
        "--type=merge",
        "-p",
        '{"spec":{"replicas":2}}',
    )
    scale = json.loads(
        st.kubectl(
            "get",
            "--raw",
            f"/apis/lambdasink.dev/v1alpha1/namespaces/{namespace}/lambdasinks/keda/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 2
    product.wait_workers(namespace, "keda", 2, timeout=180)
    first = (status(product, namespace, "keda").get("backlog") or {}).get("observedAt")

    def later() -> str | None:
        at = (status(product, namespace, "keda").get("backlog") or {}).get("observedAt")
        return at if at and at != first else None

    wait_for("a later backlog round", later, 180)  # the operator had its chance to interfere
    assert replicas(product, namespace, "keda") == 2
    assert status(product, namespace, "keda")["replicas"] == 2


def test_no_scale_up_while_the_function_throttles(
    product: Product, namespace: str, lambda_functions: Any, lambda_faults: Any
) -> None:
    st = product.stack
    recorder = lambda_functions.recorder(concurrency=4)
    # Injected: the emulator cannot answer 429 on demand.
    lambda_faults.inject(recorder.function, "throttle", count=-1)
    topic = demo.topic_url(namespace, "throttled")
    create_subscription(product, topic, "throttled-sub")
    produce(product, topic, 100)
    auto = {"minReplicas": 1, "maxReplicas": 3, "targetBacklogPerReplica": 100000}
    sink(product, namespace, "throttled", topic, recorder.function, autoscaling=auto)
    st.kubectl("scale", "lambdasink/throttled", "-n", namespace, "--replicas=1")

    def throttled() -> JSON | None:
        doc = status(product, namespace, "throttled").get("autoscaling") or {}
        return doc if doc.get("throttled") else None

    wait_for("the autoscaler sees sustained throttling", throttled, 180)
    st.kubectl(
        "patch",
        "lambdasink",
        "throttled",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"autoscaling": {**auto, "targetBacklogPerReplica": 10}}}),
    )

    def held() -> JSON | None:
        doc = status(product, namespace, "throttled").get("autoscaling") or {}
        return doc if "held: the workers are being throttled" in doc.get("reason", "") else None

    doc = wait_for("a round that wanted more replicas and held", held, 120)
    assert doc["desiredReplicas"] == 1, doc
    assert replicas(product, namespace, "throttled") == 1

    lambda_faults.clear(recorder.function)
    wait_for(
        "every message delivered once 429s stop",
        lambda: delivered(recorder) == set(range(100)),
        240,
    )
