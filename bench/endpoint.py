#!/usr/bin/env python3
"""A lean Lambda-API endpoint for benchmarks: a stand-in for a *remote* endpoint's cost profile.

This is not a Lambda emulation. The real local path, and the bench's default, is
dev/lambda_gateway.py in front of AWS's runtime interface emulator running real handler code
with awslambdaric. On a 2-core machine that path costs ~2.4 ms of CPU per invocation (gateway
thread + RIE + awslambdaric) which competes with the runtime under test, whereas in production
the endpoint is remote and costs the sink nothing. This server answers the same wire protocol
as cheaply as a stdlib server can -- one asyncio process, no thread per request, HTTP/1.1
keep-alive, the added latency an `asyncio.sleep` -- so the runtime's own limit shows. Its CPU
is measured separately, like the gateway's.

- POST /2015-03-31/functions/{name}/invocations   RequestResponse → 200 `{"count": n}`;
                                                   Event → 202; DryRun → 204. The payload is
                                                   parsed as JSON (a bad one → 400, as Lambda)
                                                   and, when it is an array, its elements are
                                                   counted per function (else 1).
- GET  /2015-03-31/functions/{name}                GetFunction: a minimal Configuration.
- GET  /_bench/count?function=NAME                 {"count": items received by NAME}
- POST /_bench/latency {"function"?, "ms"}          added latency (all functions if no name)
- GET  /_bench/health                              {"healthy": true}

Any function name exists. No signature check, no faults, no limits but the 6 MB body cap.
Stdlib only; `python bench/endpoint.py --port N [--latency-ms 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import sys
import urllib.parse

INVOKE_RE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
FUNCTION_RE = re.compile(r"^/2015-03-31/functions/([^/]+)/?$")
MAX_BODY = 6 * 1024 * 1024
REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    413: "Payload Too Large",
}


class Endpoint:
    def __init__(self, latency_ms: float, region: str, account: str) -> None:
        self.default_latency_s = latency_ms / 1000
        self.latency_s: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.invocations = 0
        self.region = region
        self.account = account
        self._ids = itertools.count(1)
        self._prefix = f"{id(self) & 0xFFFFFFFF:08x}-0000-4000-8000-"

    def request_id(self) -> str:
        return f"{self._prefix}{next(self._ids):012x}"

    # --- connection loop ------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                conn = headers.get("connection", "").lower()
                keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
                if "transfer-encoding" in headers:
                    await self.respond(writer, 411, b"", {}, keep=False)
                    return
                n = int(headers.get("content-length") or 0)
                if n > MAX_BODY:
                    await self.respond(
                        writer,
                        413,
                        *self.error("RequestTooLargeException", "Request too large"),
                        keep=False,
                    )
                    return
                if n and headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(n) if n else b""
                status, out, extra = await self.route(method, target, headers, body)
                await self.respond(writer, status, out, extra, keep=keep)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: dict[str, str],
        *,
        keep: bool,
    ) -> None:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
        head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}")
        if not keep:
            head.append("Connection: close")
        head.extend(f"{k}: {v}" for k, v in headers.items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    def error(self, error_type: str, message: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"Type": "User", "message": message}).encode()
        return body, {"x-amzn-ErrorType": error_type, "x-amzn-RequestId": self.request_id()}

    # --- routes -----------------------------------------------------------------------------

    async def route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        path, _, query = target.partition("?")
        if method == "POST":
            m = INVOKE_RE.match(path)
            if m:
                return await self.invoke(name_of(m[1]), headers, body)
            if path == "/_bench/latency":
                doc = json.loads(body or b"{}")
                if doc.get("function"):
                    self.latency_s[doc["function"]] = float(doc["ms"]) / 1000
                else:
                    self.default_latency_s = float(doc["ms"]) / 1000
                    self.latency_s.clear()
                return 200, b"{}", {}
        elif method == "GET":
            if path == "/_bench/count":
                fn = urllib.parse.parse_qs(query).get("function", [""])[0]
                count = self.counts.get(fn, 0) if fn else sum(self.counts.values())
                out = {"count": count, "invocations": self.invocations}
                return 200, json.dumps(out).encode(), {}
            if path == "/_bench/health":
                return 200, b'{"healthy": true}', {}
            m = FUNCTION_RE.match(path)
            if m:
                return (
                    200,
                    self.get_function(name_of(m[1])),
                    {"x-amzn-RequestId": self.request_id()},
                )
        return 404, *self.error("UnknownOperationException", "Unknown operation")

    async def invoke(
        self, name: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        itype = headers.get("x-amz-invocation-type") or "RequestResponse"
        if itype == "DryRun":
            return 204, b"", {"x-amzn-RequestId": self.request_id()}
        try:
            event = json.loads(body) if body else None
        except ValueError:
            return 400, *self.error("InvalidRequestContentException", "Could not parse payload")
        n = len(event) if isinstance(event, list) else 1
        await asyncio.sleep(self.latency_s.get(name, self.default_latency_s))
        self.counts[name] = self.counts.get(name, 0) + n
        self.invocations += 1
        rid = self.request_id()
        if itype == "Event":
            return 202, b"", {"x-amzn-RequestId": rid}
        return (
            200,
            b'{"count": %d}' % n,
            {"x-amzn-RequestId": rid, "X-Amz-Executed-Version": "$LATEST"},
        )

    def get_function(self, name: str) -> bytes:
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        conf = {
            "FunctionName": name,
            "FunctionArn": arn,
            "Runtime": "python3.11",
            "Role": f"arn:aws:iam::{self.account}:role/lambda-sink-bench",
            "Handler": "bench.endpoint",
            "CodeSize": 0,
            "Timeout": 30,
            "MemorySize": 128,
            "Version": "$LATEST",
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
        }
        return json.dumps({"Configuration": conf}).encode()


def name_of(raw: str) -> str:
    """name | name:qualifier | [arn:aws:lambda:region:]account:function:name[:qualifier]."""
    raw = urllib.parse.unquote(raw)
    if ":function:" in raw:
        raw = raw.split(":function:", 1)[1]
    return raw.partition(":")[0]


async def main_async(args: argparse.Namespace) -> None:
    ep = Endpoint(args.latency_ms, args.region, args.account)
    server = await asyncio.start_server(ep.serve, args.host, args.port, backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bench endpoint on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--account", default="000000000000")
    asyncio.run(main_async(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
