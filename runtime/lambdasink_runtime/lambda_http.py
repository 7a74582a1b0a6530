"""Invoke over one kept-alive HTTP connection per worker thread, signed by botocore's SigV4.

Why not `client.invoke`: botocore spends ~1.7 ms of CPU per call under load, mostly in its
event hooks, request/response model machinery and urllib3 (bench/README.md). At tens of
invocations in flight that, not Lambda, caps a pod. This path keeps what matters from botocore
(the credential chain with refresh, the resolved endpoint URL, SigV4 signing, the CA bundle)
and does the one REST call itself: `POST /2015-03-31/functions/{name}/invocations`.

It is used only when no HTTP(S) proxy applies to the endpoint (botocore's own proxy rules);
otherwise the invoker stays on `client.invoke`. Errors come back as the same `InvokeError`s as
the botocore path, from the same rest-json fields (`x-amzn-ErrorType`, `message`,
`Retry-After`/`retryAfterSeconds`).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import urllib.parse
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies, percent_encode

from . import __version__
from .errors import InvokeError

_OK = (200, 202, 204)


def proxied(endpoint_url: str) -> bool:
    """Whether botocore would send requests for `endpoint_url` through a proxy."""
    return bool(get_environ_proxies(endpoint_url))


def http_error(
    status: int | None, code: str, message: str, retry_after: float | None
) -> InvokeError:
    """The error for a non-2xx answer: 5xx, 409 and 429 may succeed later, other 4xx not."""
    retriable = status is None or status >= 500 or status in (409, 429)
    return InvokeError(
        f"{code} (HTTP {status}): {message[:300]}",
        retriable=retriable,
        code=code,
        status=status,
        retry_after_s=retry_after,
    )


def parse_retry_after(raw: object, cap_s: float) -> float | None:
    if raw in (None, ""):
        return None
    try:
        return max(0.0, min(float(str(raw)), cap_s))
    except ValueError:
        return None


def error_from_response(
    status: int, headers: http.client.HTTPMessage, body: bytes, cap_s: float
) -> InvokeError:
    """Decode a rest-json error the way botocore does: header type first, then the body."""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    code = (headers.get("x-amzn-ErrorType") or "").split(":")[0]
    if not code:
        code = str(doc.get("__type") or doc.get("code") or doc.get("Code") or "")
        code = code.rsplit("#", 1)[-1] or str(status)
    message = str(doc.get("message") or doc.get("Message") or "")
    retry_after = parse_retry_after(
        headers.get("Retry-After") or doc.get("retryAfterSeconds"), cap_s
    )
    err = http_error(status, code, message, retry_after)
    err.request_id = headers.get("x-amzn-RequestId") or ""
    return err


class LambdaHttp:
    """`invoke(payload) -> (function_error, body, request_id)`; raises `InvokeError` on
    HTTP/network errors.

    Thread-safe: each thread of the invoker's pool owns one connection, reopened after any
    error or when the server has closed it while idle.
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        function: str,
        invocation_type: str,
        credentials: Credentials | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        ca_bundle: str | None = None,
        retry_after_cap_s: float = 300.0,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"unsupported endpoint URL {endpoint_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._path = f"{url.path.rstrip('/')}/2015-03-31/functions/{percent_encode(function)}"
        self._path += "/invocations"
        self._url = f"{url.scheme}://{url.netloc}{self._path}"
        self._region = region
        self._credentials = credentials
        self._invocation_type = invocation_type
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._retry_after_cap_s = retry_after_cap_s
        self._user_agent = f"lambdasink/{__version__} lean-invoke"
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            cafile = ca_bundle or get_cert_path(True)
            self._ssl = ssl.create_default_context(
                cafile=cafile if isinstance(cafile, str) else None
            )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout_s, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self._connect_timeout_s
            )
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self._read_timeout_s)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.add(conn)
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.sock is None or _dropped(conn.sock)):
            self._discard(conn)
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _discard(self, conn: http.client.HTTPConnection | None) -> None:
        if conn is None:
            return
        conn.close()
        with self._lock:
            self._open.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def close(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()

    # -- the call -------------------------------------------------------------------------

    def _signed_headers(self, payload: bytes) -> dict[str, str]:
        if self._credentials is None:
            raise InvokeError("no AWS credentials found", retriable=False, code="Credentials")
        frozen = self._credentials.get_frozen_credentials()
        request = AWSRequest(
            "POST",
            self._url,
            data=payload,
            headers={
                "X-Amz-Invocation-Type": self._invocation_type,
                "User-Agent": self._user_agent,
            },
        )
        SigV4Auth(frozen, "lambda", self._region).add_auth(request)
        return dict(request.headers.items())

    def invoke(self, payload: bytes) -> tuple[str | None, bytes, str]:
        """One attempt. Returns (`X-Amz-Function-Error` or None, response body, request id)."""
        headers = self._signed_headers(payload)
        conn: http.client.HTTPConnection | None = None
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=payload, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError as exc:
            self._discard(conn)
            raise InvokeError(f"timed out: {exc}", retriable=True, code="Timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._discard(conn)
            raise InvokeError(
                f"connection failed: {type(exc).__name__}: {exc}",
                retriable=True,
                code="ConnectionError",
            ) from exc
        if resp.will_close:
            self._discard(conn)
        if resp.status in _OK:
            return (
                resp.getheader("X-Amz-Function-Error"),
                body,
                resp.getheader("x-amzn-RequestId") or "",
            )
        raise error_from_response(resp.status, resp.msg, body, self._retry_after_cap_s)


def _dropped(sock: socket.socket) -> bool:
    """An idle kept-alive socket that is readable has been closed (or sent junk) by the peer."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
