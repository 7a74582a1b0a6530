"""Invoke A/B: CPU per Lambda call, the runtime's lean HTTP path against boto3's `invoke`.

`python -m bench.invoke_ab [--calls 3000] [--rounds 5] [--items 10]`

Same process, same endpoint, paths interleaved round by round: an `Invoker` with
`transport="http"` (`lambda_http.py`: botocore credentials + SigV4, a kept-alive `http.client`
connection) and one with `transport="botocore"` (`client.invoke`, retries and parameter
validation off, as the runtime configures it). Each makes `--calls` sequential `invoke_once`
calls with a V2-sized payload of `--items` items to a minimal keep-alive Lambda endpoint served
from a thread of this process, answering 200 at once. Timed on the calling thread's CPU
(`time.thread_time`), so the endpoint's own work is not counted. Needs no stack.
Prints the median CPU µs per call of each path and the ratio boto3 / lean.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.invoker import Invoker, Transport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"null"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def payload(items: int) -> bytes:
    item = (
        b'{"topic":"persistent://public/default/bench","key":"k-1","sequence":268435457,'
        b'"properties":{"a":"1"},"eventTime":"2026-11-28T03:00:00.000Z","value":"'
        + b"x" * 120
        + b'"}'
    )
    return b"[" + b",".join([item] * items) + b"]"


def cpu_per_call_us(inv: Invoker, body: bytes, calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        inv.invoke_once(body)
    return (time.thread_time() - start) / calls * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--items", type=int, default=10)
    a = p.parse_args()
    body = payload(a.items)
    with endpoint() as url:
        sink = SinkConfig(
            aws_region="us-east-1",
            lambda_function_name="bench",
            aws_endpoint=url,
            aws_access_key="AKIDEXAMPLE",
            aws_secret_key="not-a-real-secret",
            max_in_flight=1,
        )
        paths: dict[str, Transport] = {"lean": "http", "boto3": "botocore"}
        invokers = {name: Invoker(sink, transport=t) for name, t in paths.items()}
        try:
            for inv in invokers.values():  # warm: connections, credential and signer caches
                cpu_per_call_us(inv, body, 50)
            samples: dict[str, list[float]] = {name: [] for name in invokers}
            for _ in range(a.rounds):
                for name, inv in invokers.items():
                    samples[name].append(cpu_per_call_us(inv, body, a.calls))
        finally:
            for inv in invokers.values():
                inv.close()
    lean, boto = statistics.median(samples["lean"]), statistics.median(samples["boto3"])
    print(f"payload {len(body)} B ({a.items} items), {a.calls} calls x {a.rounds} rounds")
    print("| path | CPU µs per call (median) | rounds |")
    print("|---|---|---|")
    for name, values in samples.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):.0f} | {rounds} |")
    print(f"boto3 / lean = {boto / lean:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
