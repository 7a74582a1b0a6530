"""The worker's HTTP port: /healthz (liveness), /readyz (readiness), /metrics (Prometheus) and
/status (JSON for the operator: breaker state, where given-up records went).

A stdlib HTTP server (prometheus_client only renders /metrics) on its own thread, so probes
answer even while the event loop is busy; the checks are callables that read plain attributes
and never block.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from .metrics import Metrics

log = logging.getLogger("lambdasink.server")

#: A probe: (ok, one-line reason).
Check = Callable[[], tuple[bool, str]]
#: The /status document.
Status = Callable[[], dict[str, object]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            # prometheus_client's own negotiation (as its MetricsHandler, the operator's):
            # text 0.0.4 unless the scraper asks for OpenMetrics or text 1.0.0.
            encode, ctype = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encode(self.server.metrics.registry), ctype)
        elif path == "/healthz":
            self._probe(self.server.healthy)
        elif path == "/readyz":
            self._probe(self.server.ready)
        elif path == "/status":
            try:
                doc = self.server.status()
            except Exception as exc:  # noqa: BLE001 - never a 500 from a status read
                doc = {"error": type(exc).__name__}
            self._reply(200, json.dumps(doc, sort_keys=True) + "\n", "application/json")
        else:
            self._reply(404, "not found\n")

    def _probe(self, check: Check) -> None:
        try:
            ok, reason = check()
        except Exception as exc:  # noqa: BLE001 - a broken check reports "not ok", never 500s
            ok, reason = False, f"check failed: {type(exc).__name__}"
        self._reply(200 if ok else 503, f"{'ok' if ok else 'not ok'}: {reason}\n")

    def _reply(self, status: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
        self._send(status, body.encode("utf-8"), ctype)

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, addr: tuple[str, int], metrics: Metrics, healthy: Check, ready: Check, status: Status
    ) -> None:
        super().__init__(addr, _Handler)
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self.status = status


class HttpServer:
    """Serves the three endpoints on a background thread until `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        healthy: Check,
        ready: Check,
        status: Status = dict,
    ) -> None:
        self._server = _Server((host, port), metrics, healthy, ready, status)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", kwargs={"poll_interval": 0.2}
        )
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        log.info("serving /healthz /readyz /metrics /status on port %d", self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
