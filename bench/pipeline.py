"""End to end: real Pulsar → `lambdasink-runtime` (a process) → a Lambda endpoint (+20 ms).

The endpoint is either the emulator path (dev/lambda_gateway.py → RIE → awslambdaric running
bench/lambda/bench_handlers.count: real handler code, the default) or bench/endpoint.py (a lean
asyncio stand-in with a remote endpoint's cost profile: it costs the machine next to nothing,
so the runtime's own limit shows). `--endpoint both` runs every case against each, interleaved.

A topic is pre-filled once; every case is a fresh runtime process on a fresh Shared
subscription reading it from the start, stopped (SIGTERM, drain) after `n` acknowledgements.
Throughput is taken between 5 % and 95 % of those acks (start-up excluded) from the runtime's
own /metrics; CPU from /proc/<pid>/stat over the same window; RSS sampled all along.

The baseline behaves like the reference connector: one invocation in flight (maxInFlight=1) at
the same batch size (and the same endpoint). The ceiling of a case is
maxInFlight * batchMaxSize / latency.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from . import env
from .common import Row, free_port, load

LATENCY_MS = 20.0
FUNCTION = "count"
MIN_SPEEDUP = 10.0
MIN_EFFICIENCY = 0.8
#: A case counts as CPU-bound when the machine's cores are this busy during it, or when the
#: runtime process uses this many cores (one Python process: the GIL caps it near one core).
CPU_BOUND_BUSY = 0.9
CPU_BOUND_RUNTIME_CORES = 0.75
LABELS = {"emulator": "emulator", "lean": "lean endpoint"}


@dataclass
class Case:
    name: str
    batch: int | None  # None: the runtime's default (10)
    inflight: int | None  # None: the runtime's default (4)
    #: Runtime processes on one Shared subscription, as `replicas` pods would be.
    replicas: int = 1

    @property
    def eff_batch(self) -> int:
        return self.batch or 10

    @property
    def eff_inflight(self) -> int:
        return self.inflight or 4

    @property
    def ceiling(self) -> float:
        return self.replicas * self.eff_inflight * self.eff_batch / (LATENCY_MS / 1000)


def default_cases(
    batches: list[int], inflights: list[int], replicas: list[int] | None = None
) -> list[Case]:
    """Per batch size: the baseline, each in-flight value, then scale-out (replicas > 1) at the
    largest in-flight value."""
    out = [Case("defaults (batch 10, maxInFlight 4)", None, None)]
    for b in batches:
        out.append(Case(f"baseline batch {b} maxInFlight 1", b, 1))
        for f in inflights:
            if f > 1:
                out.append(Case(f"batch {b} maxInFlight {f}", b, f))
        top = max(inflights)
        for n in replicas or []:
            if n > 1 and top > 1:
                out.append(Case(f"batch {b} maxInFlight {top} x {n} replicas", b, top, n))
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of all CPUs from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def run_case(
    stack: dict[str, Any],
    gateway: env.AnyEndpoint,
    topic: str,
    case: Case,
    n: int,
    workdir: Path,
    timeout_s: float = 600,
) -> dict[str, Any]:
    cfg = env.runtime_config(
        stack,
        gateway,
        topic=topic,
        function=FUNCTION,
        batch_size=case.batch,
        max_in_flight=case.inflight,
    )
    counted_before = gateway.counted(FUNCTION)
    runtimes = []
    for i in range(case.replicas):  # same subscription (Shared), own HTTP port each
        own = {**cfg, "runtime": {**cfg["runtime"], "httpPort": free_port()}} if i else cfg
        runtimes.append(env.Runtime(own, workdir).start())
    samples: list[tuple[float, float, float, float, float, float, float]] = []
    try:
        for rt in runtimes:
            rt.wait_ready()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy, total = _machine_busy()
            samples.append(
                (
                    time.monotonic(),
                    sum(rt.acked() for rt in runtimes),
                    sum(rt.cpu_s() for rt in runtimes),
                    max(rt.rss_mib() for rt in runtimes),
                    env.group_cpu_s(gateway.pids()),
                    busy,
                    total,
                )
            )
            if samples[-1][1] >= n:
                break
            time.sleep(0.25)
        metrics = runtimes[0].metrics()
    finally:
        code = max(rt.stop() for rt in runtimes)
    counted = gateway.counted(FUNCTION) - counted_before
    acked_final = samples[-1][1] if samples else 0
    lo = next((s for s in samples if s[1] >= 0.05 * n), samples[0])
    hi = next((s for s in samples if s[1] >= 0.95 * n), samples[-1])
    dt = max(1e-9, hi[0] - lo[0])
    msgs = max(1.0, hi[1] - lo[1])
    rate = msgs / dt
    cpu = hi[2] - lo[2]
    gw_cpu = hi[4] - lo[4]
    busy = (hi[5] - lo[5]) / max(1, hi[6] - lo[6])
    rss = [s[3] for s in samples]
    k = "lambdasink_invoke_latency_seconds"
    invoke_ms = metrics.get(k + "_sum", 0) / max(1, metrics.get(k + "_count", 0)) * 1000
    return {
        "case": case.name,
        "endpoint": gateway.kind,
        "batch": case.eff_batch,
        "maxInFlight": case.eff_inflight,
        "replicas": case.replicas,
        "messages": n,
        "acked": acked_final,
        "counted": counted,
        "exitCode": code,
        "window_s": round(dt, 2),
        "rate": rate,
        "ceiling": case.ceiling,
        "efficiency": rate / case.ceiling,
        "runtimeCpuPer1000": cpu / msgs * 1000,
        "invokeLatencyMsMean": round(invoke_ms, 1),
        "runtimeCores": cpu / dt / case.replicas,  # per process: the GIL caps each near 1
        "gatewayCores": gw_cpu / dt,  # the endpoint's processes, whichever kind
        "machineBusy": busy,
        "rssMiB": {
            "min": round(min(rss), 1),
            "max": round(max(rss), 1),
            "final": round(rss[-1], 1),
        },
        "rssSeries": [round(s[3], 1) for s in samples[:: max(1, len(samples) // 40)]],
        "load": load(),
    }


def probe(
    stack: dict[str, Any], gateway: env.AnyEndpoint, inflight: int, batch: int, seconds: float
) -> tuple[float, int]:
    """Invocations/s a bare boto3 client reaches on this endpoint with `inflight` threads.

    The practical ceiling: the endpoint's real latency (20 ms + gateway + emulator, or 20 ms +
    the lean endpoint) and the cost of boto3 itself, without Pulsar, serialization or batching.
    Same payload size as the case. Returns (successful invocations/s, failed calls): a failed
    call is counted and the thread goes on (one error must not silently end a thread's share).
    """
    lam = stack["lambda"]
    client = boto3.client(
        "lambda",
        endpoint_url=gateway.url,
        region_name=lam["region"],
        aws_access_key_id=lam["accessKeyId"],
        aws_secret_access_key=lam["secretAccessKey"],
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=inflight),
    )
    item = {"topic": "persistent://public/default/x", "properties": {}, "value": "x" * 250}
    body = json.dumps([item] * batch).encode()
    stop = time.monotonic() + seconds
    counts = [0] * inflight
    errors = [0] * inflight

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            try:
                client.invoke(FunctionName=FUNCTION, Payload=body)["Payload"].read()
            except Exception:
                errors[i] += 1
                continue
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(inflight)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0), sum(errors)


def run(
    stack: dict[str, Any],
    *,
    batches: list[int],
    inflights: list[int],
    seconds: float,
    max_messages: int,
    endpoints: list[str] | None = None,
    replicas: list[int] | None = None,
    size: int = 200,
) -> list[Row]:
    kinds = endpoints or ["emulator"]
    cases = default_cases(batches, inflights, replicas)
    # Messages per case: enough for `seconds` at the case's ceiling (capped; CPU caps the rest).
    per_case = {c.name: int(min(max_messages, max(1000, c.ceiling * seconds))) for c in cases}
    results: list[dict[str, Any]] = []
    topic = env.topic_name("bench-pipeline")
    total = max(per_case.values())
    produce_s = env.prefill(stack, topic, total, size)
    print(f"  pre-filled {topic} with {total} messages of ~{size} B in {produce_s:.1f}s")
    with contextlib.ExitStack() as cleanup, env.workdir() as wd:
        cleanup.callback(env.delete_topic, stack, topic)
        for c in cases:
            for kind in kinds:  # interleaved: both endpoints see the same machine drift
                # An endpoint per case; the emulator runs one RIE per invocation in flight.
                pool = c.eff_inflight * c.replicas
                fns = {FUNCTION: ("bench_handlers.count", pool)}
                gateway = env.ENDPOINTS[kind](stack, fns).start()
                try:
                    warmed = gateway.warm(FUNCTION)
                    gateway.set_latency(FUNCTION, LATENCY_MS)
                    probe_ips, probe_errors = probe(
                        stack, gateway, pool, c.eff_batch, min(4.0, seconds / 2)
                    )
                    r = run_case(stack, gateway, topic, c, per_case[c.name], wd)
                finally:
                    gateway.stop()
                r["probeCeiling"] = probe_ips * c.eff_batch
                r["probeErrors"] = probe_errors
                r["warmedRuntimes"] = warmed
                r["probeEfficiency"] = r["rate"] / r["probeCeiling"]
                results.append(r)
                print(
                    f"  [{kind}] {c.name}: {r['rate']:.0f} msg/s = {r['efficiency']:.0%} of "
                    f"ceiling {c.ceiling:.0f}, {r['probeEfficiency']:.0%} of bare-boto3 probe "
                    f"{r['probeCeiling']:.0f} ({probe_errors} failed calls); "
                    f"runtime {r['runtimeCores']:.2f} cores "
                    f"({r['runtimeCpuPer1000'] * 1000:.0f} CPU ms/1000 msgs), endpoint "
                    f"{r['gatewayCores']:.2f} cores, machine busy {r['machineBusy']:.0%}, "
                    f"acked {r['acked']:.0f} counted {r['counted']}, warmed {warmed}/{pool}, "
                    f"rss {r['rssMiB']}",
                    flush=True,
                )
    rows: list[Row] = []
    for kind in kinds:
        rows.extend(_rows([r for r in results if r["endpoint"] == kind], LABELS[kind]))
    return rows


def _rows(results: list[dict[str, Any]], label: str) -> list[Row]:
    """Table rows of one endpoint's cases, each against that endpoint's own baseline."""
    bench = f"pipeline e2e ({label})"
    rows: list[Row] = []
    baselines = {r["batch"]: r["rate"] for r in results if r["maxInFlight"] == 1}
    for r in results:
        base = baselines.get(r["batch"])
        is_base = r["maxInFlight"] == 1
        ratio = None if base is None or is_base else r["rate"] / base
        cpu_bound = (
            r["machineBusy"] >= CPU_BOUND_BUSY or r["runtimeCores"] >= CPU_BOUND_RUNTIME_CORES
        )
        extra = {k: v for k, v in r.items() if k not in ("case",)}
        extra["cpuBound"] = cpu_bound
        if is_base:
            goal, ok = "baseline", None
        elif r["maxInFlight"] < MIN_SPEEDUP:
            goal, ok = f"(at most {r['maxInFlight']}x)", None
        else:
            goal, ok = f">= {MIN_SPEEDUP:.0f}x baseline", ratio is not None and ratio >= MIN_SPEEDUP
        bound = f"; CPU-bound (runtime {r['runtimeCores']:.2f} cores)" if cpu_bound else ""
        if r["probeErrors"]:
            bound += f"; {r['probeErrors']} probe calls failed"
        rows.append(
            Row(
                bench=bench,
                case=r["case"],
                value=r["rate"],
                unit="msg/s",
                baseline=None if is_base else base,
                ratio=ratio,
                goal=goal,
                ok=ok,
                extra=extra,
            )
        )
        rows.append(
            Row(
                bench=bench,
                case=r["case"] + ": share of nominal ceiling",
                value=r["efficiency"] * 100,
                unit=f"% of {r['ceiling']:.0f} msg/s",
                extra={"cpuBound": cpu_bound, "machineBusy": round(r["machineBusy"], 2)},
            )
        )
        rows.append(
            Row(
                bench=bench,
                case=r["case"] + ": share of bare-boto3 probe" + bound,
                value=r["probeEfficiency"] * 100,
                unit=f"% of {r['probeCeiling']:.0f} msg/s",
                goal=f">= {MIN_EFFICIENCY:.0%} unless CPU-bound",
                ok=r["probeEfficiency"] >= MIN_EFFICIENCY or cpu_bound,
                extra={
                    "probeCeiling": r["probeCeiling"],
                    "probeErrors": r["probeErrors"],
                    "cpuBound": cpu_bound,
                },
            )
        )
        rows.append(
            Row(
                bench=bench,
                case=r["case"] + ": runtime CPU",
                value=r["runtimeCpuPer1000"] * 1000,
                unit=(
                    f"CPU ms / 1000 msgs (runtime {r['runtimeCores']:.2f} cores, "
                    f"endpoint {r['gatewayCores']:.2f}, machine busy {r['machineBusy']:.0%})"
                ),
                extra={"runtimeCores": r["runtimeCores"], "endpointCores": r["gatewayCores"]},
            )
        )
    return rows


def run_memory(
    stack: dict[str, Any], *, messages: int, batch: int, inflight: int, size: int = 200
) -> list[Row]:
    """Sustained load: RSS of the runtime sampled over a long drain; min / max / final."""
    gateway = env.Gateway(stack, {FUNCTION: ("bench_handlers.count", inflight)}).start()
    try:
        gateway.warm(FUNCTION)
        gateway.set_latency(FUNCTION, LATENCY_MS)
        topic = env.topic_name("bench-memory")
        env.prefill(stack, topic, messages, size)
        case = Case(f"batch {batch} maxInFlight {inflight}", batch, inflight)
        with env.workdir() as wd:
            r = run_case(stack, gateway, topic, case, messages, wd, timeout_s=1800)
        env.delete_topic(stack, topic)
    finally:
        gateway.stop()
    series = r["rssSeries"]
    half = len(series) // 2
    first, second = max(series[: max(1, half)]), max(series[half:] or series)
    bounded = second <= first * 1.10 + 2  # no growth beyond noise in the second half
    print(
        f"  memory: {messages} msgs over {r['window_s']}s at {r['rate']:.0f} msg/s, "
        f"RSS {r['rssMiB']} MiB, max 1st half {first}, 2nd half {second}"
    )
    extra = {**r, "maxFirstHalf": first, "maxSecondHalf": second}
    return [
        Row(
            "memory",
            f"runtime RSS, {messages} msgs ({case.name}): min / max / final "
            f"{r['rssMiB']['min']} / {r['rssMiB']['max']} / {r['rssMiB']['final']}",
            r["rssMiB"]["max"],
            "MiB (max)",
            baseline=first,
            ratio=second / first,
            goal="2nd-half max <= 1st-half max +10%",
            ok=bounded,
            extra=extra,
        )
    ]
