"""Receive A/B: drain a prefilled topic through `PulsarSource` with each receive strategy.

`python -m bench.receive_ab [--messages 100000] [--rounds 3] [--max-records 1000] [--no-ack]`
`python -m bench.receive_ab --pipeline [--baseline-ref HEAD] [--messages 100000] [--rounds 2]`

Same process, same topic, strategies interleaved round by round (a fresh Exclusive subscription
from Earliest each time), against the stack's real broker:

- `before`: the previous consumer, kept here verbatim: the topic subscribed as a one-element
  list (a C++ multi-topic consumer), one `pulsar.Consumer.receive` per message (a
  `pulsar.Message` wrapper each, a `pulsar.Timeout` to end each drain), the previous `_convert`,
  acked through the wrapper;
- `loop`: the same per-message loop on a consumer subscribed by topic name, as now;
- `batch`: `PulsarSource.receive` as it is in the tree (by name; one blocking receive, then
  `batch_receive` of up to `BATCH_RECEIVE_MAX`, raw messages), acked with `PulsarSource.ack`;
- `batch500` (`BATCH_RECEIVE_MAX` = 500) and `batch-list` (one-element list) on request.

Each drain is timed on the draining thread's CPU (the Python side: receive, convert, ack; what
competes for the runtime's GIL) and on the process CPU (adds the C++ client's I/O threads).
Drain speed is mostly the broker's dispatch rate here, so msg/s is given but CPU per 1,000
messages is the figure to compare. Prints medians and the ratio to the first strategy.

`--pipeline` compares whole runtime processes instead (bench.pipeline's case, batch 100 and 16
in flight by default, one warmed private gateway, +20 ms): `base` runs with consumer.py as it is
at `--baseline-ref` (a copy of the runtime package with that one file swapped in, put first on
PYTHONPATH), `tree` with the working tree; cases alternate. Same figures as bench.pipeline:
msg/s and runtime CPU ms per 1,000 messages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulsar

from lambdasink_runtime import consumer as consumer_mod
from lambdasink_runtime.config import PulsarConfig
from lambdasink_runtime.consumer import PulsarSource
from lambdasink_runtime.errors import LambdaSinkError
from lambdasink_runtime.record import Record, Rejected, SchemaInfo
from lambdasink_runtime.schemas import SchemaRegistry

from . import env, pipeline
from .common import REPO, stack_json
from .env import delete_topic, prefill

Receive = Callable[[PulsarSource, int, float], list[Any]]
Ack = Callable[[PulsarSource, Any], None]


# --- the previous strategy, verbatim (consumer.py before batch receive) -------------------------


def _legacy_schema_version(msg: Any) -> int | None:
    raw = msg._message
    version = raw.int_schema_version() if hasattr(raw, "int_schema_version") else None
    if version is None:
        data = msg.schema_version()
        if not data:
            return None
        blob = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        version = int.from_bytes(blob, "big", signed=True)
    return None if version < 0 else int(version)


def _legacy_convert(src: PulsarSource, msg: Any) -> Record | Rejected:
    raw = msg._message
    topic = raw.topic_name()
    version = _legacy_schema_version(msg)
    schema: SchemaInfo | None = None
    error: LambdaSinkError | None = None
    try:
        if version is None:
            schema = src._latest(topic)
        elif src._registry is not None:
            schema = src._schema(topic, version)
    except LambdaSinkError as exc:
        error = exc
    mid = raw.message_id()
    record = Record(
        topic=topic,
        value=raw.data() or b"",
        ledger_id=mid.ledger_id(),
        entry_id=mid.entry_id(),
        partition=mid.partition(),
        batch_index=mid.batch_index(),
        key=raw.partition_key() or None,
        properties=dict(raw.properties()),
        event_time_ms=raw.event_timestamp() or None,
        publish_time_ms=raw.publish_timestamp() or None,
        schema=schema,
        handle=msg,
    )
    return record if error is None else Rejected(record, error)


def legacy_receive(src: PulsarSource, max_records: int, timeout_s: float) -> list[Any]:
    wrapper = src._consumer
    try:
        first = wrapper.receive(timeout_millis=max(1, int(timeout_s * 1000)))
    except pulsar.Timeout:
        return []
    out = [_legacy_convert(src, first)]
    while len(out) < max_records:
        try:
            msg = wrapper.receive(timeout_millis=0)
        except pulsar.Timeout:
            break
        except pulsar.PulsarException:
            break
        out.append(_legacy_convert(src, msg))
    return out


def legacy_ack(src: PulsarSource, record: Any) -> None:
    src._consumer.acknowledge(record.handle)


def current_receive(src: PulsarSource, max_records: int, timeout_s: float) -> list[Any]:
    return list(src.receive(max_records, timeout_s))


def current_ack(src: PulsarSource, record: Any) -> None:
    src.ack(record)


# --- the drain ------------------------------------------------------------------------------------


class Contender:
    """A second Python thread that wants the GIL, as the runtime's event loop does: `busy`
    seconds of pure-Python work, then `idle` seconds asleep (GIL released), in a loop."""

    def __init__(self, busy: float, idle: float) -> None:
        self.busy, self.idle = busy, idle
        self.units = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contender", daemon=True)

    def _run(self) -> None:
        doc = {"topic": "t", "key": "k", "value": list(range(8))}
        while not self._stop.is_set():
            end = time.perf_counter() + self.busy
            while time.perf_counter() < end:
                json.dumps(doc)
                self.units += 1
            if self.idle > 0:
                time.sleep(self.idle)

    def __enter__(self) -> Contender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def subscribing(batch_max: int | None, as_list: bool) -> Iterator[None]:
    """Subscribe with another `BATCH_RECEIVE_MAX`, and/or with the topic as a one-element list
    (as before: the C++ client then runs a multi-topic consumer)."""
    saved_max, saved_kwargs = consumer_mod.BATCH_RECEIVE_MAX, consumer_mod.subscribe_kwargs

    def listed(cfg: PulsarConfig) -> dict[str, Any]:
        kwargs = saved_kwargs(cfg)
        if isinstance(kwargs["topic"], str):
            kwargs["topic"] = [kwargs["topic"]]
        return kwargs

    if batch_max is not None:
        consumer_mod.BATCH_RECEIVE_MAX = batch_max
    if as_list:
        consumer_mod.subscribe_kwargs = listed
    try:
        yield
    finally:
        consumer_mod.BATCH_RECEIVE_MAX, consumer_mod.subscribe_kwargs = saved_max, saved_kwargs


#: name → (receive, ack, BATCH_RECEIVE_MAX override, subscribe with a one-topic list)
STRATEGIES: dict[str, tuple[Receive, Ack, int | None, bool]] = {
    "before": (legacy_receive, legacy_ack, None, True),
    "loop": (legacy_receive, legacy_ack, None, False),
    "batch": (current_receive, current_ack, None, False),
    "batch500": (current_receive, current_ack, 500, False),
    "batch-list": (current_receive, current_ack, None, True),
}


def drain(
    stack: dict[str, Any],
    registry: SchemaRegistry,
    topic: str,
    n: int,
    strategy: str,
    *,
    max_records: int,
    ack: bool,
    receiver_queue_size: int,
    settle_s: float,
    contend: tuple[float, float] | None,
) -> dict[str, float]:
    receive, acker, bmax, as_list = STRATEGIES[strategy]
    cfg = PulsarConfig(
        service_url=stack["pulsar"]["serviceUrl"],
        admin_url=stack["pulsar"]["adminUrl"],
        topics=(topic,),
        subscription_name=f"rxab-{strategy}-{uuid.uuid4().hex[:6]}",
        subscription_type="Exclusive",
        initial_position="Earliest",
        receiver_queue_size=receiver_queue_size,
    )
    with subscribing(bmax, as_list):
        src = PulsarSource(cfg, registry)
    try:
        got = len(receive(src, 1, 10.0))  # warm: connection, schema fetch, queue filling
        time.sleep(settle_s)  # lets the client's receiver queue fill
        with contextlib.ExitStack() as stack_:
            other = stack_.enter_context(Contender(*contend)) if contend else None
            c0, t0, w0 = time.process_time(), time.thread_time(), time.monotonic()
            u0 = other.units if other else 0
            calls = 0
            while got < n:
                items = receive(src, max_records, 0.1)
                calls += 1
                if not items:
                    break
                got += len(items)
                if ack:
                    for item in items:
                        acker(src, item.record if isinstance(item, Rejected) else item)
            c1, t1, w1 = time.process_time(), time.thread_time(), time.monotonic()
            u1 = other.units if other else 0
    finally:
        src.close()
    if got != n:
        raise RuntimeError(f"{strategy}: drained {got} of {n} messages")
    k = (n - 1) / 1000
    return {
        "msgs_per_s": (n - 1) / (w1 - w0),
        "proc_ms_per_1k": (c1 - c0) * 1000 / k,
        "thread_ms_per_1k": (t1 - t0) * 1000 / k,
        "records_per_call": (n - 1) / max(1, calls),
        "contender_units_per_s": (u1 - u0) / (w1 - w0),
    }


# --- whole runtime processes ---------------------------------------------------------------------


@contextlib.contextmanager
def baseline_package(ref: str) -> Iterator[Path]:
    """A directory holding lambdasink_runtime with consumer.py as at git `ref` (read-only git)."""
    old = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:runtime/lambdasink_runtime/consumer.py"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="lambdasink-rxab-") as d:
        pkg = Path(d) / "lambdasink_runtime"
        shutil.copytree(
            REPO / "runtime" / "lambdasink_runtime",
            pkg,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        (pkg / "consumer.py").write_bytes(old)
        yield Path(d)


def pipeline_ab(args: argparse.Namespace) -> None:
    stack = stack_json()
    case = pipeline.Case(
        f"batch {args.batch} maxInFlight {args.inflight}", args.batch, args.inflight
    )
    topic = env.topic_name("bench-rxab-pipeline")
    took = prefill(stack, topic, args.messages, 200)
    print(f"prefilled {args.messages} x ~200 B in {took:.1f}s; case {case.name}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"base": [], "tree": []}
    saved = os.environ.get("PYTHONPATH")
    with (
        contextlib.ExitStack() as cleanup,
        env.workdir() as wd,
        baseline_package(args.baseline_ref) as base_dir,
    ):
        cleanup.callback(delete_topic, stack, topic)
        gateway = env.Gateway(stack, {pipeline.FUNCTION: ("bench_handlers.count", args.inflight)})
        gateway.start()
        cleanup.callback(gateway.stop)
        gateway.warm(pipeline.FUNCTION)
        gateway.set_latency(pipeline.FUNCTION, pipeline.LATENCY_MS)
        for r in range(args.rounds):
            for side in ("base", "tree") if r % 2 == 0 else ("tree", "base"):
                if side == "base":
                    os.environ["PYTHONPATH"] = os.pathsep.join(
                        [str(base_dir), *([saved] if saved else [])]
                    )
                elif saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
                try:
                    res = pipeline.run_case(stack, gateway, topic, case, args.messages, wd)
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
                results[side].append(res)
                print(
                    f"round {r} {side}: {res['rate']:.0f} msg/s, runtime "
                    f"{res['runtimeCpuPer1000'] * 1000:.1f} CPU ms/1k, "
                    f"{res['runtimeCores']:.2f} cores, machine busy {res['machineBusy']:.0%}, "
                    f"exit {res['exitCode']}",
                    flush=True,
                )

    def med(side: str, key: str) -> float:
        return float(statistics.median(x[key] for x in results[side]))

    print(
        f"\nmedians of {args.rounds} rounds ({case.name}); base = consumer.py at "
        f"{args.baseline_ref}, tree = working tree"
    )
    print("| side | msg/s | runtime CPU ms/1k |")
    print("|---|---|---|")
    for side in ("base", "tree"):
        print(f"| {side} | {med(side, 'rate'):.0f} | {med(side, 'runtimeCpuPer1000') * 1000:.1f} |")
    print(
        f"tree/base: rate {med('tree', 'rate') / med('base', 'rate'):.2f}, CPU/msg "
        f"{med('tree', 'runtimeCpuPer1000') / med('base', 'runtimeCpuPer1000'):.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.receive_ab", description=__doc__)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=100, help="payload bytes")
    p.add_argument("--max-records", type=int, default=1000, help="as the pipeline's receive_max")
    p.add_argument("--receiver-queue-size", type=int, default=1000)
    p.add_argument("--strategies", default="before,loop,batch", help=",".join(STRATEGIES))
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds between subscribing and timing; with --receiver-queue-size >= --messages "
        "and a long enough settle the drain reads only the client's queue (no broker in the loop)",
    )
    p.add_argument("--no-ack", action="store_true")
    p.add_argument("--pipeline", action="store_true", help="whole runtime processes instead")
    p.add_argument("--baseline-ref", default="HEAD", help="--pipeline: git ref of the A side")
    p.add_argument("--batch", type=int, default=100, help="--pipeline: batchMaxSize")
    p.add_argument("--inflight", type=int, default=16, help="--pipeline: maxInFlight")
    p.add_argument(
        "--contend",
        metavar="BUSY_MS,IDLE_MS",
        help="run a second Python thread that is busy BUSY_MS then asleep IDLE_MS, in a loop "
        "(the event loop's share of the GIL); e.g. 2,1",
    )
    args = p.parse_args(argv)
    contend = None
    if args.contend:
        busy_ms, idle_ms = (float(x) for x in args.contend.split(","))
        contend = (busy_ms / 1000, idle_ms / 1000)
    if args.pipeline:
        pipeline_ab(args)
        return
    names = [s for s in args.strategies.split(",") if s]
    stack = stack_json()
    topic = f"persistent://public/default/bench-rxab-{uuid.uuid4().hex[:8]}"
    took = prefill(stack, topic, args.messages, args.size)
    print(f"prefilled {args.messages} x {args.size} B in {took:.1f}s", flush=True)
    registry = SchemaRegistry(stack["pulsar"]["adminUrl"])
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in names}
    try:
        for r in range(args.rounds):
            for name in names:
                row = drain(
                    stack,
                    registry,
                    topic,
                    args.messages,
                    name,
                    max_records=args.max_records,
                    ack=not args.no_ack,
                    receiver_queue_size=args.receiver_queue_size,
                    settle_s=args.settle,
                    contend=contend,
                )
                rows[name].append(row)
                print(
                    f"round {r} {name:9s} {row['msgs_per_s']:8.0f} msg/s  "
                    f"thread {row['thread_ms_per_1k']:5.1f}  proc {row['proc_ms_per_1k']:5.1f} "
                    f"CPU ms/1k  {row['records_per_call']:6.1f} rec/call"
                    + (f"  contender {row['contender_units_per_s']:8.0f}/s" if contend else ""),
                    flush=True,
                )
    finally:
        delete_topic(stack, topic)

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in rows[name])

    base = names[0]
    print(f"\nmedians of {args.rounds} rounds, ratio = strategy / {base} (lower CPU is better)")
    print("| strategy | msg/s | thread CPU ms/1k | ratio | process CPU ms/1k | ratio |")
    print("|---|---|---|---|---|---|")
    for name in names:
        th, pr = med(name, "thread_ms_per_1k"), med(name, "proc_ms_per_1k")
        print(
            f"| {name} | {med(name, 'msgs_per_s'):.0f} | {th:.1f} | "
            f"{th / med(base, 'thread_ms_per_1k'):.2f} | {pr:.1f} | "
            f"{pr / med(base, 'proc_ms_per_1k'):.2f} |"
        )


if __name__ == "__main__":
    main()
