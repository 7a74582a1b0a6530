"""lambda-sink end to end: Helm chart → operator pod → worker pods from the runtime image, run by
the stack's real kubelet → real Pulsar → real Lambda handler (the gateway's `recorder`, which logs
every event it receives).
"""

from __future__ import annotations

import base64
import collections
import json
import threading
from typing import Any

import pytest
import yaml
from e2e_support import Product, demo, exited, wait_for

pytestmark = pytest.mark.e2e
JSON = dict[str, Any]


def apply_sink(product: Product, namespace: str, name: str, topics: list[str], **kw: Any) -> JSON:
    manifest: JSON = demo.sink_manifest(
        product.stack, name=name, namespace=namespace, topics=topics, **kw
    )
    product.stack.apply(manifest)
    return manifest


def produce_numbered(product: Product, topic: str, numbers: range, *, burst: bool) -> None:
    import pulsar  # noqa: PLC0415

    client = pulsar.Client(product.stack.pulsar_service_url)
    try:
        producer = client.create_producer(topic, schema=pulsar.schema.StringSchema())
        for n in numbers:
            if burst:
                producer.send_async(f"seq-{n}", None)
            else:
                producer.send(f"seq-{n}")
        producer.flush()
    finally:
        client.close()


def numbers_in(items: list[JSON]) -> list[int]:
    return [int(str(i["value"]).removeprefix("seq-")) for i in items]


def test_demo_path_delivers_exactly_the_produced_messages(product: Product, namespace: str) -> None:
    st = product.stack
    topics = {k: demo.topic_url(namespace, k) for k in ("strings", "json", "avro")}
    apply_sink(product, namespace, "orders", list(topics.values()))
    status = demo.wait_sink_ready(st, namespace, "orders")
    assert status["readyReplicas"] == 1
    assert status["readyDisplay"] == "1/1"
    assert demo.ready_condition(status)["status"] == "True"
    assert len(product.wait_workers(namespace, "orders", 1)) == 1

    demo.produce_demo(st, topics)
    items = product.wait_received(list(topics.values()), 9)
    strings, orders, readings = demo.demo_messages()
    expected = sorted(
        [(topics["strings"], s) for s in strings]
        + [(topics["json"], o) for o in orders]
        + [(topics["avro"], r) for r in readings],
        key=repr,
    )
    got = sorted(((i["topic"], i["value"]) for i in items), key=repr)
    assert got == expected
    # the partition keys travel as V2 metadata (default metadataFields include `key`)
    assert {i["key"] for i in items if i["topic"] == topics["json"]} == {
        str(o["orderId"]) for o in orders
    }
    status = demo.sink_status(st, namespace, "orders")
    assert demo.ready_condition(status)["status"] == "True"
    assert status["readyReplicas"] == 1


def test_scaling_follows_processes_and_loses_nothing(
    product: Product, namespace: str, record_property: Any
) -> None:
    st = product.stack
    topic = demo.topic_url(namespace, "numbers")
    apply_sink(product, namespace, "numbers", [topic], sink_config={"batchMaxTimeMs": 200})
    demo.wait_sink_ready(st, namespace, "numbers")
    first = product.wait_workers(namespace, "numbers", 1)

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

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        st.kubectl("scale", "lambdasink/numbers", "-n", namespace, "--replicas=3")
        three = product.wait_workers(namespace, "numbers", 3)
        assert set(first) <= set(three), "scaling up must not replace the running worker"
        wait_for(
            "LambdaSink readyReplicas 3",
            lambda: demo.sink_status(st, namespace, "numbers").get("readyReplicas") == 3,
        )

        st.kubectl("scale", "lambdasink/numbers", "-n", namespace, "--replicas=0")
        product.wait_workers(namespace, "numbers", 0)
        for pid in three.values():
            wait_for(f"worker process {pid} to exit", exited(pid), 60)
        paused_at = len(sent)
        wait_for("messages produced while paused", lambda: len(sent) > paused_at + 50, 30)

        st.kubectl("scale", "lambdasink/numbers", "-n", namespace, "--replicas=1")
        product.wait_workers(namespace, "numbers", 1)
        wait_for(
            "LambdaSink Ready with 1 replica",
            lambda: (
                (s := demo.sink_status(st, namespace, "numbers")).get("readyReplicas") == 1
                and demo.ready_condition(s).get("status") == "True"
            ),
        )
    finally:
        stop.set()
        producer.join(30)
    assert len(sent) > 100

    def all_numbers() -> list[int] | None:
        got = numbers_in(product.items([topic]))
        return got if set(sent) <= set(got) else None

    try:
        got = wait_for("every produced number at the handler", all_numbers, 120)
    except AssertionError:
        received = set(numbers_in(product.items([topic])))
        missing = sorted(set(sent) - received)
        raise AssertionError(
            f"{len(missing)} of {len(sent)} numbers lost: {missing[:50]}"
        ) from None
    counts = collections.Counter(got)
    duplicates = {n: c for n, c in counts.items() if c > 1}
    record_property("produced", len(sent))
    record_property("duplicates", len(duplicates))
    print(f"scale 1→3→0→1: {len(sent)} produced, all delivered, {len(duplicates)} duplicated")
    assert set(got) <= set(sent)


def test_config_change_rolls_workers_and_takes_effect(product: Product, namespace: str) -> None:
    st = product.stack
    topic = demo.topic_url(namespace, "batches")
    apply_sink(
        product,
        namespace,
        "batches",
        [topic],
        sink_config={"batchMaxSize": 2, "batchMaxTimeMs": 1000},
    )
    demo.wait_sink_ready(st, namespace, "batches")
    before = product.wait_workers(namespace, "batches", 1)
    hash_before = demo.sink_status(st, namespace, "batches")["configHash"]

    produce_numbered(product, topic, range(0, 12), burst=True)
    product.wait_received([topic], 12)
    sizes_before = [len(inv.items) for inv in product.invocations([topic])]
    assert max(sizes_before) == 2, sizes_before

    st.kubectl(
        "patch",
        "lambdasink",
        "batches",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"sinkConfig":{"batchMaxSize":7}}}',
    )

    def rolled() -> JSON | None:
        s: JSON = demo.sink_status(st, namespace, "batches")
        gen = st.kubectl_json("get", "lambdasink", "batches", "-n", namespace)["metadata"]
        done = (
            s.get("configHash") not in (None, hash_before)
            and s.get("observedGeneration") == gen["generation"]
            and demo.ready_condition(s).get("status") == "True"
        )
        return s if done else None

    wait_for("the new configuration rolled out", rolled, 180)
    after = product.wait_workers(namespace, "batches", 1)
    assert not set(after.values()) & set(before.values()), "the worker must be replaced"
    for pid in before.values():
        wait_for(f"old worker {pid} to exit", exited(pid), 60)

    seen = len(product.invocations([topic]))
    produce_numbered(product, topic, range(100, 128), burst=True)
    items = product.wait_received([topic], 12 + 28)
    assert set(range(100, 128)) <= set(numbers_in(items))
    sizes_after = [
        len([i for i in inv.items if int(i["value"].removeprefix("seq-")) >= 100])
        for inv in product.invocations([topic])[seen:]
    ]
    sizes_after = [s for s in sizes_after if s]
    assert max(sizes_after) <= 7, sizes_after
    assert max(sizes_after) > 2, f"batchMaxSize=7 not visible in the batches: {sizes_after}"


def test_wrong_function_name_is_reported(product: Product, namespace: str) -> None:
    st = product.stack
    topic = demo.topic_url(namespace, "nowhere")
    apply_sink(product, namespace, "nowhere", [topic], function="no-such-function-e2e")

    def not_ready() -> JSON | None:
        cond: JSON = demo.ready_condition(demo.sink_status(st, namespace, "nowhere"))
        if cond.get("status") == "False" and "no-such-function-e2e" in cond.get("message", ""):
            return cond
        return None

    cond = wait_for("Ready=False naming the function", not_ready, 180)
    assert cond["reason"], cond
    status = demo.sink_status(st, namespace, "nowhere")
    assert not status.get("readyReplicas")


def test_deleting_the_sink_stops_its_workers(product: Product, namespace: str) -> None:
    st = product.stack
    topic = demo.topic_url(namespace, "doomed")
    apply_sink(product, namespace, "doomed", [topic], replicas=2)
    demo.wait_sink_ready(st, namespace, "doomed")
    pids = product.wait_workers(namespace, "doomed", 2)
    st.kubectl("delete", "lambdasink", "doomed", "-n", namespace)
    wait_for("worker pods gone", lambda: not demo.worker_pods(st, namespace, "doomed"), 120)
    for pid in pids.values():
        wait_for(f"worker process {pid} to exit", exited(pid), 30)
    deployments = st.kubectl_json("get", "deployments", "-n", namespace)["items"]
    assert deployments == []


def test_operator_runs_with_the_charts_service_account(product: Product) -> None:
    """The operator pod talks to the API with the ServiceAccount token the kubelet mounted
    (the chart's RBAC), not with the stack's admin credentials."""
    st = product.stack
    pods = st.kubectl_json("get", "pods", "-n", demo.OPERATOR_NS)["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    token = st.kubectl(
        "exec",
        "-n",
        demo.OPERATOR_NS,
        pod["metadata"]["name"],
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ).stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    sa = pod["spec"]["serviceAccountName"]
    assert claims["sub"] == f"system:serviceaccount:{demo.OPERATOR_NS}:{sa}"
    assert claims["kubernetes.io"]["pod"]["name"] == pod["metadata"]["name"]
    admin = yaml.safe_load(st.kubeconfig.read_text())
    assert token != admin["users"][0]["user"].get("token")
    # the operator runs from the operator image, as the Dockerfile's non-root user
    (container,) = pod["spec"]["containers"]
    assert container["image"].split("/")[-1].startswith("operator:")
    uid = st.kubectl(
        "exec", "-n", demo.OPERATOR_NS, pod["metadata"]["name"], "--", "id", "-u"
    ).stdout.strip()
    assert uid == "10001"
    # what that identity may do is the chart's RBAC: it may never create namespaces
    can = st.kubectl(
        "auth",
        "can-i",
        "create",
        "namespaces",
        f"--as=system:serviceaccount:{demo.OPERATOR_NS}:{sa}",
        check=False,
    )
    assert can.stdout.strip() == "no"


def _condition(product: Product, namespace: str, name: str, type_: str) -> JSON:
    for cond in demo.sink_status(product.stack, namespace, name).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def test_dead_lettering_shows_in_the_sinks_conditions(product: Product, namespace: str) -> None:
    """The failing handler raises for every record; the policy dead-letters each after one
    attempt, and the operator, reading the worker's /status, says so on the LambdaSink."""
    st = product.stack
    topic = demo.topic_url(namespace, "poison")
    manifest = demo.sink_manifest(
        st, name="poison", namespace=namespace, topics=[topic], function="failing"
    )
    manifest["spec"]["input"]["deadLetterTopic"] = demo.topic_url(namespace, "poison-dlq")
    manifest["spec"]["failurePolicy"] = {"maxAttempts": 1, "onExhausted": "deadLetter"}
    st.apply(manifest)
    demo.wait_sink_ready(st, namespace, "poison")
    produce_numbered(product, topic, range(3), burst=False)

    def dead_lettering() -> JSON | None:
        cond = _condition(product, namespace, "poison", "DeadLettering")
        return cond if cond.get("status") == "True" else None

    cond = wait_for("DeadLettering=True", dead_lettering, 120)
    assert cond["reason"] == "RecordsDeadLettered"
    assert "function_error: 3" in cond["message"], cond
    status = demo.sink_status(st, namespace, "poison")
    assert status["failures"]["deadLettered"] == {"function_error": 3}
    assert _condition(product, namespace, "poison", "Delivering")["status"] == "True"


def test_open_circuit_breaker_shows_in_the_sinks_conditions(
    product: Product, namespace: str, lambda_functions: Any, lambda_faults: Any
) -> None:
    st = product.stack
    function = lambda_functions.create("recorder.handler", prefix="e2e-cb")
    # Injected: the emulator cannot fail every call on demand (the function is "down").
    lambda_faults.inject(function, "server_error", count=-1, status=503)
    topic = demo.topic_url(namespace, "breaker")
    manifest = demo.sink_manifest(
        st,
        name="breaker",
        namespace=namespace,
        topics=[topic],
        function=function,
        sink_config={"batchMaxSize": 1, "invokeMaxRetries": 0},
    )
    manifest["spec"]["failurePolicy"] = {
        "circuitBreaker": {"minimumCalls": 3, "probeIntervalInitialMs": 500},
    }
    st.apply(manifest)
    produce_numbered(product, topic, range(10), burst=False)

    def breaker_open() -> JSON | None:
        cond = _condition(product, namespace, "breaker", "Delivering")
        return cond if cond.get("reason") == "CircuitBreakerOpen" else None

    cond = wait_for("Delivering=False (CircuitBreakerOpen)", breaker_open, 120)
    assert cond["status"] == "False" and "circuit breaker" in cond["message"], cond
    lambda_faults.clear(function)

    def delivering() -> JSON | None:
        cond = _condition(product, namespace, "breaker", "Delivering")
        return cond if cond.get("status") == "True" else None

    wait_for("Delivering=True once the function answers", delivering, 120)
    demo.wait_sink_ready(st, namespace, "breaker")
