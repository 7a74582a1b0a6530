#!/usr/bin/env python3
"""A Lambda-API-compatible HTTP front for AWS's runtime interface emulator (RIE).

Why: RIE runs real handler code through awslambdaric, but serves one invocation at a time,
ignores InvocationType, never sends X-Amz-Function-Error and has no GetFunction. This gateway
speaks the Lambda REST wire protocol (what boto3 uses with `endpoint_url`) and forwards each
invocation to a pool of RIE processes per function:

- POST /2015-03-31/functions/{name}/invocations   Invoke (RequestResponse, Event, DryRun)
- GET  /2015-03-31/functions/{name}                GetFunction
- GET  /2015-03-31/functions/{name}/configuration  GetFunctionConfiguration
- GET  /2015-03-31/functions/                      ListFunctions

Errors use the rest-json shape botocore parses: status, `x-amzn-ErrorType` header, JSON body.

What RIE cannot produce (throttles, 5xx, 413, a Handled function error, slow responses) is
injected through a control API under /_gateway/ -- a fake by design, used only for those cases:

- POST   /_gateway/faults   {"function", "kind": throttle|server_error|too_large|function_error|
                             delay, "count": 1 (-1 = until cleared), "retryAfterSeconds",
                             "reason", "status", "errorType", "message", "delayMs"}
- GET    /_gateway/faults ; DELETE /_gateway/faults[?function=NAME][&id=ID]
- POST   /_gateway/denies   {"accessKeyId", "function": "*", "actions": ["lambda:InvokeFunction",
                             "lambda:GetFunction"]}: a fake for IAM, calls signed with that key
                             get 403 AccessDeniedException; GET; DELETE [?accessKeyId=][&id=]
- POST   /_gateway/latency  {"function", "ms"}  fixed added latency per call (benchmarks)
- GET    /_gateway/requests[?function=NAME]  recent invocations (metadata, no payloads)
- DELETE /_gateway/requests
- GET    /_gateway/health   200 once every pool is up
- GET    /_gateway/functions ; POST /_gateway/functions {"name", "handler": "module.fn",
                             "concurrency", "timeout", "environment"}: add a function at run time
                             (tests use their own, isolated from suites sharing the stack);
                             DELETE /_gateway/functions/NAME removes such a function

Stdlib only. Run by dev/stack; `--help` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from lambda_gateway_lib import log
from lambda_gateway_lib.handler import Handler
from lambda_gateway_lib.pool import Gateway


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--registry", required=True, help="functions.json")
    ap.add_argument("--handlers", required=True, help="directory with handler modules")
    ap.add_argument("--rie", required=True, help="aws-lambda-rie binary")
    ap.add_argument("--python", default=sys.executable, help="interpreter with awslambdaric")
    ap.add_argument("--record-dir", required=True)
    ap.add_argument("--function-log", default="/dev/stderr")
    ap.add_argument("--pool-size", type=int, default=4)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="000000000000")
    args = ap.parse_args()

    gw = Gateway(args)
    Handler.gw = gw
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def shutdown(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    gw.start()
    log(
        f"listening on http://{args.host}:{server.server_address[1]}"
        f" functions={sorted(gw.functions)}"
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        gw.stop()
        with contextlib.suppress(Exception):
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
