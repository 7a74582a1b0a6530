"""The operator's counters, rendered by prometheus_client on an optional port (--metrics-port).

A registry of our own (not the library's global one), so /metrics shows exactly these series;
`_created` samples are switched off to keep the exposition as it always was.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import MetricsHandler

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter(
    "lambdasink_operator_reconciles_total",
    "Reconcile passes by result (ok, invalid, error).",
    ["result"],
    registry=REGISTRY,
)
DEPLOYMENT_APPLIES = Counter(
    "lambdasink_operator_deployment_applies_total",
    "Worker Deployments written (create, repair).",
    registry=REGISTRY,
)


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - pod endpoint
    """Serve /metrics from a daemon thread; returns the server (tests close it)."""
    server = ThreadingHTTPServer((host, port), MetricsHandler.factory(REGISTRY))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
