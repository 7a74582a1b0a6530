"""The HTTP side: Lambda's REST API (Invoke, GetFunction, GetFunctionConfiguration,
ListFunctions) in the rest-json shape botocore parses (status, `x-amzn-ErrorType`, JSON body),
injected faults rendered as AWS would answer, and /_gateway/ handed to `control`."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import concurrency, control, log
from .control import SERVER_ERROR_TYPES, Fault
from .pool import Function, Gateway
from .wire import (
    ASYNC_LIMIT,
    CONFIGURATION_RE,
    CREDENTIAL_RE,
    FUNCTION_RE,
    INVOKE_RE,
    SYNC_LIMIT,
    parse_function_name,
)


class Handler(BaseHTTPRequestHandler):
    server_version = "lambda-sink-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every response.
    disable_nagle_algorithm = True
    gw: Gateway  # set on the class by main()

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")

    # --- helpers
    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            # The caller went away mid-request (e.g. a SIGKILLed runtime): never run the
            # function with a truncated payload; closing the connection is all AWS would do.
            raise ConnectionAbortedError(f"request body ended after {len(data)} of {n} bytes")
        return data

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": content_type, "Content-Length": str(len(body))}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def aws_error(
        self,
        status: int,
        error_type: str,
        message: str,
        request_id: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        message_key: str = "message",
    ) -> None:
        body = {
            "Type": "User" if status < 500 else "Service",
            message_key: message,
            **(extra or {}),
        }
        hdrs = {
            "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazonaws.awsgirl/",
            "x-amzn-RequestId": request_id,
            **(headers or {}),
        }
        self.send(status, json.dumps(body).encode(), hdrs)

    def not_found(self, name: str, request_id: str) -> None:
        arn = f"arn:aws:lambda:{self.gw.region}:{self.gw.account}:function:{name}"
        self.aws_error(
            404,
            "ResourceNotFoundException",
            f"Function not found: {arn}",
            request_id,
            message_key="Message",
        )

    def access_key(self) -> str | None:
        cred = CREDENTIAL_RE.search(self.headers.get("Authorization") or "")
        return cred["akid"] if cred else None

    def denied(self, action: str, name: str, request_id: str) -> bool:
        """Answer 403 as Lambda does when a deny policy (`/_gateway/denies`) covers the call."""
        key = self.access_key()
        if not self.gw.denies.denies(key, name, action):
            return False
        arn = f"arn:aws:lambda:{self.gw.region}:{self.gw.account}:function:{name}"
        self.aws_error(
            403,
            "AccessDeniedException",
            f"User: arn:aws:iam::{self.gw.account}:user/{key} is not authorized to perform: "
            f"{action} on resource: {arn} because no identity-based policy allows the "
            f"{action} action",
            request_id,
            message_key="Message",
        )
        return True

    def function_concurrency(self, method: str, url: urllib.parse.SplitResult) -> bool:
        """Reserved concurrency (concurrency.py); True when the request was one of those."""
        body = self.body() if method == "PUT" else b""
        answer = concurrency.handle(method, url.path, body, set(self.gw.functions))
        if answer is None:
            return False
        status, doc = answer
        rid = str(uuid.uuid4())
        if "__type" in doc:
            kind = doc.pop("__type")
            self.aws_error(status, kind, str(doc.get("message") or doc.get("Message")), rid)
        else:
            self.send(
                status,
                json.dumps(doc).encode() if status != 204 else b"",
                {"x-amzn-RequestId": rid},
            )
        return True

    # --- routing
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        rid = str(uuid.uuid4())
        if url.path.startswith("/_gateway/"):
            return self.control("GET", url)
        if self.function_concurrency("GET", url):
            return None
        if url.path.rstrip("/") == "/2015-03-31/functions":
            confs = [f.configuration() for f in self.gw.functions.values()]
            return self.send(
                200, json.dumps({"Functions": confs}).encode(), {"x-amzn-RequestId": rid}
            )
        m = FUNCTION_RE.match(url.path) or CONFIGURATION_RE.match(url.path)
        if not m:
            return self.aws_error(404, "UnknownOperationException", "Unknown operation", rid)
        name, _ = parse_function_name(m["name"])
        action = "lambda:GetFunction"  # GetFunctionConfiguration is authorised by it too
        if self.denied(action, name, rid):
            return None
        fn = self.gw.functions.get(name)
        if fn is None:
            return self.not_found(name, rid)
        if m.re is CONFIGURATION_RE:
            conf = json.dumps(fn.configuration()).encode()
            return self.send(200, conf, {"x-amzn-RequestId": rid})
        body = {
            "Configuration": fn.configuration(),
            "Code": {
                "RepositoryType": "S3",
                "Location": f"http://127.0.0.1/lambda-sink-local/{name}.zip",
            },
            "Tags": {"lambda-sink": "local"},
        }
        self.send(200, json.dumps(body).encode(), {"x-amzn-RequestId": rid})

    def do_DELETE(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_gateway/"):
            return self.control("DELETE", url)
        if self.function_concurrency("DELETE", url):
            return
        self.send(404, b"{}")

    def do_PUT(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if not self.function_concurrency("PUT", url):
            self.body()
            self.send(404, b"{}")

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_gateway/"):
            return self.control("POST", url)
        rid = str(uuid.uuid4())
        m = INVOKE_RE.match(url.path)
        if not m:
            self.body()
            return self.aws_error(404, "UnknownOperationException", "Unknown operation", rid)
        self.invoke(m["name"], url, rid)

    # --- Invoke
    def invoke(self, raw_name: str, url: urllib.parse.SplitResult, rid: str) -> None:
        t0 = time.monotonic()
        payload = self.body()
        name, qualifier = parse_function_name(raw_name)
        query = urllib.parse.parse_qs(url.query)
        if query.get("Qualifier"):
            qualifier = query["Qualifier"][0]
        itype = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        cred = CREDENTIAL_RE.search(self.headers.get("Authorization") or "")
        entry: dict[str, Any] = {
            "requestId": rid,
            "function": name,
            "invocationType": itype,
            "bytes": len(payload),
            "time": time.time(),
            "accessKeyId": cred["akid"] if cred else None,
            "signingRegion": cred["region"] if cred else None,
        }

        def done(status: int, outcome: str) -> None:
            entry.update(
                status=status, outcome=outcome, durationMs=round((time.monotonic() - t0) * 1000, 2)
            )
            self.gw.record(entry)

        if self.denied("lambda:InvokeFunction", name, rid):
            return done(403, "AccessDeniedException")
        fn = self.gw.functions.get(name)
        if fn is None:
            done(404, "ResourceNotFoundException")
            return self.not_found(name, rid)
        if itype not in ("RequestResponse", "Event", "DryRun"):
            done(400, "InvalidParameterValueException")
            return self.aws_error(
                400,
                "InvalidParameterValueException",
                f"Invalid invocation type: {itype}",
                rid,
                message_key="message",
            )
        version = qualifier if qualifier and qualifier.isdigit() else "$LATEST"
        if itype == "DryRun":
            done(204, "DryRun")
            return self.send(204, b"", {"x-amzn-RequestId": rid}, content_type="application/json")
        limit = SYNC_LIMIT if itype == "RequestResponse" else ASYNC_LIMIT
        if len(payload) > limit:
            done(413, "RequestTooLargeException")
            op = "Invoke" if itype == "RequestResponse" else "InvokeAsync"
            return self.aws_error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the {op} operation",
                rid,
            )
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                done(400, "InvalidRequestContentException")
                return self.aws_error(
                    400,
                    "InvalidRequestContentException",
                    "Could not parse request body into json: Could not parse payload into json",
                    rid,
                )
        if fn.latency_ms:
            time.sleep(fn.latency_ms / 1000)
        fault = self.gw.faults.take(name)
        if fault is not None and fault.kind == "delay":
            time.sleep(float(fault.params.get("delayMs", 1000)) / 1000)
            fault = None
        if fault is not None:
            return self.apply_fault(fault, rid, version, done)

        if itype == "Event":
            t = threading.Thread(
                target=self.run_async, args=(fn, payload, rid, entry, t0), daemon=True
            )
            t.start()
            return self.send(202, b"", {"x-amzn-RequestId": rid})

        status, body, ferr = self.gw.run_invocation(fn, payload, rid)
        if ferr == "throttle":
            done(429, "TooManyRequestsException")
            return self.throttle(rid, "Rate Exceeded.", "ConcurrentInvocationLimitExceeded", "1")
        headers = {"x-amzn-RequestId": rid, "X-Amz-Executed-Version": version}
        if ferr:
            headers["X-Amz-Function-Error"] = ferr
        if self.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(
                f"START RequestId: {rid} Version: {version}\nEND RequestId: {rid}\n".encode()
            ).decode()
        done(200, f"FunctionError:{ferr}" if ferr else "Success")
        self.send(status, body, headers)

    def run_async(
        self, fn: Function, payload: bytes, rid: str, entry: dict[str, Any], t0: float
    ) -> None:
        _status, _body, ferr = self.gw.run_invocation(fn, payload, rid)
        entry.update(
            status=202,
            outcome=f"Async:{ferr or 'Success'}",
            durationMs=round((time.monotonic() - t0) * 1000, 2),
        )
        self.gw.record(entry)

    def throttle(self, rid: str, message: str, reason: str, retry_after: str) -> None:
        self.aws_error(
            429,
            "TooManyRequestsException",
            message,
            rid,
            extra={"Reason": reason, "retryAfterSeconds": retry_after},
            headers={"Retry-After": retry_after},
        )

    def apply_fault(self, fault: Fault, rid: str, version: str, done: Any) -> None:
        p = fault.params
        kind = fault.kind
        if kind == "throttle":
            done(429, "TooManyRequestsException(injected)")
            return self.throttle(
                rid,
                p.get("message", "Rate Exceeded."),
                p.get("reason", "ConcurrentInvocationLimitExceeded"),
                str(p.get("retryAfterSeconds", "1")),
            )
        if kind == "server_error":
            status = int(p.get("status", 500))
            etype = p.get("errorType", SERVER_ERROR_TYPES.get(status, "ServiceException"))
            done(status, f"{etype}(injected)")
            return self.aws_error(
                status, etype, p.get("message", "Service Unavailable"), rid, message_key="Message"
            )
        if kind == "too_large":
            done(413, "RequestTooLargeException(injected)")
            return self.aws_error(
                413,
                "RequestTooLargeException",
                p.get(
                    "message",
                    f"Request must be smaller than {SYNC_LIMIT} bytes for the Invoke operation",
                ),
                rid,
            )
        # function_error
        ferr = "Unhandled" if p.get("unhandled") else "Handled"
        body = {
            "errorMessage": p.get("message", "injected function error"),
            "errorType": p.get("errorType", "InjectedError"),
        }
        done(200, f"FunctionError:{ferr}(injected)")
        self.send(
            200,
            json.dumps(body).encode(),
            {
                "x-amzn-RequestId": rid,
                "X-Amz-Executed-Version": version,
                "X-Amz-Function-Error": ferr,
            },
        )

    # --- control API

    # --- control API
    def control(self, method: str, url: urllib.parse.SplitResult) -> None:
        try:
            data = json.loads(self.body() or b"{}") if method == "POST" else {}
        except ValueError:
            return self.send(400, b'{"error": "body is not JSON"}')
        self.send(*control.handle(self.gw, method, url, data))
