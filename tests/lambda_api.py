"""A small local AWS Lambda API endpoint (plus STS AssumeRole) for the invoker's unit tests.

This is a FAKE, on purpose and only for what the real local emulator cannot produce: the AWS
runtime interface emulator never answers 429, 5xx or 413, never sets `X-Amz-Function-Error`,
ignores `InvocationType` and has no GetFunction or STS. It speaks the real wire protocols
(Lambda rest-json: `/2015-03-31/functions/{name}/invocations`, `X-Amzn-ErrorType`,
`Retry-After`, `X-Amz-Function-Error`; STS query/XML for AssumeRole), so boto3/botocore's real
HTTP, signing and parsing stack runs unchanged against it via `awsEndpoint`.

Behaviour: replies scripted with `script()` are served first, in order; otherwise a sync invoke
answers 200 with the body "null", an async one 202; a body larger than `max_body` gets 413 as
real Lambda would. Every request is recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"null"
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (to provoke client read timeouts).
    delay_s: float = 0.0

    @classmethod
    def error(
        cls, status: int, code: str, message: str = "", retry_after: float | None = None
    ) -> Reply:
        body: dict[str, Any] = {"Type": "User", "message": message or code}
        headers = {"X-Amzn-ErrorType": code}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
            body["retryAfterSeconds"] = str(retry_after)
            body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded"
        return cls(status, json.dumps(body).encode(), headers)

    @classmethod
    def function_error(cls, kind: str = "Unhandled") -> Reply:
        body = {"errorMessage": "boom", "errorType": "RuntimeError", "stackTrace": []}
        return cls(200, json.dumps(body).encode(), {"X-Amz-Function-Error": kind})


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    #: The client's (host, port): which kept-alive connection carried the request.
    peer: tuple[str, int] = ("", 0)


class LambdaApi:
    """Start with `with LambdaApi() as api:`; `api.url` is the `awsEndpoint`."""

    def __init__(
        self,
        functions: tuple[str, ...] = ("fn",),
        max_body: int = 6 * 1024 * 1024,
        tls: tuple[str, str] | None = None,
    ):
        """`tls` = (certificate file, key file): serve HTTPS instead of HTTP."""
        self.functions = set(functions)
        self.denied: set[str] = set()
        self.max_body = max_body
        self.requests: list[Request] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.assume_role_calls: list[dict[str, str]] = []
        self.sts_ttl_s = 3600
        self._connections: set[Any] = set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def setup(self) -> None:
                super().setup()
                with api._lock:
                    api._connections.add(self.connection)

            def do_GET(self) -> None:
                api._handle(self, "GET")

            def do_POST(self) -> None:
                api._handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LambdaApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def drop_connections(self) -> None:
        """Close every client connection, as a server does with idle kept-alive ones."""
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def invocations(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/invocations")]

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = urllib.parse.urlparse(h.path).path
        headers = {k.lower(): v for k, v in h.headers.items()}
        req = Request(method, path, headers, body, time.time(), h.client_address[:2])
        with self._lock:
            self.requests.append(req)
        reply = self._sts(body) if method == "POST" and path == "/" else self._lambda(req)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json"))
            h.send_header("Content-Length", str(len(reply.body)))
            h.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (timeout test)

    def _lambda(self, req: Request) -> Reply:
        parts = req.path.strip("/").split("/")
        # /2015-03-31/functions/{name}[/invocations]
        if len(parts) < 3 or parts[1] != "functions":
            return Reply.error(404, "UnknownOperationException")
        name = urllib.parse.unquote(parts[2])
        if name in self.denied:
            return Reply.error(403, "AccessDeniedException", f"not authorized on {name}")
        if name not in self.functions:
            return Reply.error(404, "ResourceNotFoundException", f"Function not found: {name}")
        if req.method == "GET" and len(parts) == 3:
            config = {"FunctionName": name, "FunctionArn": f"arn:aws:lambda:::function:{name}"}
            return Reply(200, json.dumps({"Configuration": config}).encode())
        if req.method != "POST" or parts[-1] != "invocations":
            return Reply.error(400, "InvalidRequestContentException")
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        if len(req.body) > self.max_body:
            return Reply.error(413, "RequestTooLargeException", "Request must be smaller")
        if req.headers.get("x-amz-invocation-type") == "Event":
            return Reply(202, b"")
        return Reply(200, b"null")

    def _sts(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        with self._lock:
            self.assume_role_calls.append(form)
            n = len(self.assume_role_calls)
        expiry = datetime.now(UTC) + timedelta(seconds=self.sts_ttl_s)
        xml = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAFAKE{n:04d}</AccessKeyId>
      <SecretAccessKey>assumed-secret-{n}</SecretAccessKey>
      <SessionToken>assumed-token-{n}</SessionToken>
      <Expiration>{expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>{form.get("RoleArn", "")}/{form.get("RoleSessionName", "")}</Arn>
      <AssumedRoleId>AROAFAKE:{form.get("RoleSessionName", "")}</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""
        return Reply(200, xml.encode(), {"Content-Type": "text/xml"})
