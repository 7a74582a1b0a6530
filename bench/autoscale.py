"""Autoscaling reaction time: from a backlog appearing to spec.replicas at maxReplicas.

One namespace, one `lambdasink-operator --namespace NS --standalone` process (backlog interval
`interval` s), one LambdaSink with `spec.autoscaling` {min 0, max 4, target 10 per replica} and
`replicas: 0`, its subscription created beforehand. The clock starts when `messages` are
produced; the baseline is when `status.backlog.messages` first shows them (the read alone),
the value when spec.replicas reaches 4 (read + decision + scale write). Only the operator is
timed: no node agent runs, so no worker drains the backlog meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from .common import REPO, Row, load
from .operator_scale import CRD, GROUP, PLURAL, _kubectl, _sink

MAX_REPLICAS = 4


def _produce(stack: dict[str, Any], topic: str, subscription: str, count: int) -> None:
    import pulsar  # noqa: PLC0415

    client = pulsar.Client(stack["pulsar"]["serviceUrl"])
    try:
        client.subscribe(topic, subscription, consumer_type=pulsar.ConsumerType.Shared).close()
        producer = client.create_producer(topic)
        for n in range(count):
            producer.send_async(f"m-{n}".encode(), None)
        producer.flush()
    finally:
        client.close()


def run_once(
    stack: dict[str, Any], workdir: Path, interval: float, messages: int
) -> dict[str, Any]:
    ns = f"bench-as-{uuid.uuid4().hex[:6]}"
    _kubectl(stack, "create", "namespace", ns)
    _kubectl(
        stack,
        "create",
        "secret",
        "generic",
        "lambdasink-aws",
        "-n",
        ns,
        "--from-literal=accessKeyId=bench",
        "--from-literal=secretAccessKey=bench",
    )
    kubeconfig = stack["kubernetes"]["kubeconfig"]
    log = (workdir / f"operator-autoscale-{ns}.log").open("ab")
    op = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "lambdasink-operator"),
            "--namespace",
            ns,
            "--standalone",
            "--log-level",
            "WARNING",
        ],
        env={
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "LAMBDASINK_OPERATOR_BACKLOG_INTERVAL": str(interval),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        name = "auto"
        topic = f"persistent://public/default/{ns}-auto"
        body = _sink(name, stack)
        body["metadata"]["namespace"] = ns
        body["spec"]["input"] = {"topics": [topic], "subscriptionName": "auto-sub"}
        body["spec"]["autoscaling"] = {
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "targetBacklogPerReplica": 10,
            "scaleDownStabilizationSeconds": 600,
        }
        subprocess.run(
            [stack["bin"]["kubectl"], "--kubeconfig", kubeconfig, "apply", "-f", "-"],
            input=json.dumps(body),
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        time.sleep(max(8.0, 2 * interval))  # start-up, and a first round with an empty backlog
        t0 = time.monotonic()
        _produce(stack, topic, "auto-sub", messages)
        seen_s = scaled_s = None
        while time.monotonic() - t0 < 120 and scaled_s is None:
            doc = json.loads(
                _kubectl(stack, "get", f"{PLURAL}.{GROUP}", name, "-n", ns, "-o", "json")
            )
            now = time.monotonic() - t0
            if (
                seen_s is None
                and ((doc.get("status") or {}).get("backlog") or {}).get("messages") == messages
            ):
                seen_s = now
            if int(doc["spec"].get("replicas", 0)) >= MAX_REPLICAS:
                scaled_s = now
                seen_s = seen_s if seen_s is not None else now
            time.sleep(0.2)
        return {
            "interval": interval,
            "backlogSeenSeconds": seen_s,
            "scaledOutSeconds": scaled_s,
            "load": load(),
        }
    finally:
        op.terminate()
        try:
            op.wait(30)
        except subprocess.TimeoutExpired:
            op.kill()
            op.wait()
        log.close()
        with contextlib.suppress(RuntimeError):
            _kubectl(stack, "delete", "namespace", ns, "--wait=false")


def run(
    stack: dict[str, Any], *, workdir: Path, interval: float = 2.0, messages: int = 100
) -> list[Row]:
    _kubectl(stack, "apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    r = run_once(stack, workdir, interval, messages)
    print(f"  autoscale: {json.dumps(r)}")
    value, base = r["scaledOutSeconds"], r["backlogSeenSeconds"]
    return [
        Row(
            "autoscale",
            f"backlog {messages} -> replicas 0 to {MAX_REPLICAS} (interval {interval:g}s)",
            value,
            "s",
            baseline=base,
            ratio=(value / base) if value and base else None,
            goal="scaled out within one round of the backlog showing",
            ok=value is not None,
            extra={**r, "baselineIs": "time until status.backlog showed the messages (same run)"},
        )
    ]
