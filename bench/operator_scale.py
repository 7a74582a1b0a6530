"""Operator scale: N LambdaSinks → N Deployments with conditions; operator RSS at rest.

One namespace per N, one `lambdasink-operator --namespace NS --standalone` process watching it.
The clock starts with the first create and stops when every LambdaSink has a Deployment and a
status whose `observedGeneration` equals its generation and which carries the `Ready` and
`ConfigValid` conditions. Sinks use `replicas: 0` (Deployments at 0 replicas), so no worker
pod is started on the stack's node and only the operator's work is timed.
RSS is taken before any resource exists (the baseline) and after everything settled.

Caveat: a cluster-wide operator of another suite on the same API server (if one runs) also
sees these sinks; the result records such processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import REPO, Row, load, median, proc_cpu_s, proc_rss_mib

CRD = REPO / "deploy" / "crds" / "lambdasink.dev_lambdasinks.yaml"
GROUP, VERSION, PLURAL = "lambdasink.dev", "v1alpha1", "lambdasinks"


def _kubectl(stack: dict[str, Any], *args: str) -> str:
    out = subprocess.run(
        [stack["bin"]["kubectl"], "--kubeconfig", stack["kubernetes"]["kubeconfig"], *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _samples(read: Callable[[], float], count: int, every_s: float) -> list[float]:
    """`count` readings, `every_s` apart (the first after one wait)."""
    out = []
    for _ in range(count):
        time.sleep(every_s)
        out.append(read())
    return out


def _sink(name: str, stack: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LambdaSink",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "image": "lambda-sink-runtime:bench",
            "pulsar": {
                "serviceUrl": stack["pulsar"]["serviceUrl"],
                "adminUrl": stack["pulsar"]["adminUrl"],
            },
            "input": {"topics": [f"persistent://public/default/{name}"]},
            "sinkConfig": {
                "awsEndpoint": stack["lambda"]["endpointUrl"],
                "awsRegion": "us-east-1",
                "lambdaFunctionName": "recorder",
                "payloadFormat": "V2",
            },
            "aws": {"credentialsSecret": {"name": "lambdasink-aws"}},
        },
    }


def _other_operators(own: int) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == own:
            continue
        with contextlib.suppress(OSError):
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "lambdasink-operator" in cmd and "--all-namespaces" in cmd:
                out.append(f"{d.name}: {cmd.strip()[:160]}")
    return out


def _done(sinks: list[dict[str, Any]], deployments: set[str]) -> int:
    n = 0
    for s in sinks:
        st = s.get("status") or {}
        types = {c.get("type") for c in st.get("conditions") or []}
        if (
            st.get("deploymentName", "lambdasink-" + s["metadata"]["name"]) in deployments
            and st.get("observedGeneration") == s["metadata"].get("generation")
            and {"Ready", "ConfigValid"} <= types
        ):
            n += 1
    return n


def run_n(stack: dict[str, Any], n: int, workdir: Path, timeout_s: float) -> dict[str, Any]:
    from kubernetes import client, config  # noqa: PLC0415 - the operator extra

    ns = f"bench-op-{n}-{uuid.uuid4().hex[:6]}"
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
    api_client = config.new_client_from_config(kubeconfig)  # type: ignore[no-untyped-call]
    custom = client.CustomObjectsApi(api_client)
    apps = client.AppsV1Api(api_client)
    log = (workdir / f"operator-{n}.log").open("ab")
    op = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "lambdasink-operator"),
            "--namespace",
            ns,
            "--standalone",
            "--log-level",
            "WARNING",
        ],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(8)  # start-up: kopf's watches are established
        if op.poll() is not None:
            raise RuntimeError(f"operator exited {op.returncode}; see {log.name}")
        rss_idle = median(_samples(lambda: proc_rss_mib(op.pid), 3, 0.5))
        cpu0 = proc_cpu_s(op.pid)
        t0 = time.monotonic()

        def create(i: int) -> None:
            body = _sink(f"sink-{i:04d}", stack)
            for attempt in range(5):
                try:
                    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
                    return
                except client.ApiException as exc:
                    if exc.status == 409:
                        return
                    if attempt == 4:
                        raise
                    time.sleep(1)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        created_s = time.monotonic() - t0
        done = 0
        progress: list[tuple[float, int]] = []
        while time.monotonic() - t0 < timeout_s:
            listed: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, ns, PLURAL
            )
            sinks = listed["items"]
            deps = {
                str(d.metadata.name)
                for d in apps.list_namespaced_deployment(ns).items
                if d.metadata
            }
            done = _done(sinks, deps)
            progress.append((round(time.monotonic() - t0, 1), done))
            if done >= n:
                break
            time.sleep(1)
        all_s = time.monotonic() - t0
        cpu = proc_cpu_s(op.pid) - cpu0
        time.sleep(15)  # at rest
        rss_rest = median(_samples(lambda: proc_rss_mib(op.pid), 5, 1.0))
        return {
            "n": n,
            "namespace": ns,
            "done": done,
            "createSeconds": round(created_s, 2),
            "allReadySeconds": round(all_s, 2) if done >= n else None,
            "operatorCpuSeconds": round(cpu, 2),
            "rssIdleMiB": round(rss_idle, 1),
            "rssRestMiB": round(rss_rest, 1),
            "progress": progress[:: max(1, len(progress) // 30)],
            "otherClusterWideOperators": _other_operators(op.pid),
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


def run(stack: dict[str, Any], *, sizes: list[int], workdir: Path) -> list[Row]:
    _kubectl(stack, "apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    _kubectl(stack, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    rows: list[Row] = []
    for n in sizes:
        try:
            r = run_n(stack, n, workdir, timeout_s=max(300, n * 2))
        except Exception as exc:  # the harness reports what it could not measure
            print(f"  N={n}: not measured: {type(exc).__name__}: {exc}")
            rows.append(
                Row(
                    "operator",
                    f"N={n}: all Deployments + conditions",
                    None,
                    "s",
                    goal="not measured",
                    extra={"error": str(exc)},
                )
            )
            continue
        print(f"  N={n}: {json.dumps({k: v for k, v in r.items() if k != 'progress'})}")
        ok = r["allReadySeconds"] is not None
        rows.append(
            Row(
                "operator",
                f"N={n}: all Deployments + conditions",
                r["allReadySeconds"],
                "s",
                goal="all N done",
                ok=ok,
                extra=r,
            )
        )
        rows.append(
            Row(
                "operator",
                f"N={n}: operator RSS at rest",
                r["rssRestMiB"],
                "MiB",
                baseline=r["rssIdleMiB"],
                ratio=r["rssRestMiB"] / r["rssIdleMiB"],
                extra={"baselineIs": "RSS of the same process before any LambdaSink existed"},
            )
        )
    return rows
