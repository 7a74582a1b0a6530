"""The operator's counters, rendered by prometheus_client on an optional port (--metrics-port).

A registry of our own (not the library's global one), so /metrics shows exactly these series;
`_created` samples are switched off to keep the exposition as it always was.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge
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

DESIRED_REPLICAS = Gauge(
    "lambdasink_operator_autoscaler_desired_replicas",
    "Replicas the autoscaler wants for a sink (after caps and stabilisation).",
    ["namespace", "sink"],
    registry=REGISTRY,
)
ACTUAL_REPLICAS = Gauge(
    "lambdasink_operator_worker_replicas",
    "Worker pods of a sink that exist (the Deployment's status.replicas).",
    ["namespace", "sink"],
    registry=REGISTRY,
)
BACKLOG_MESSAGES = Gauge(
    "lambdasink_operator_backlog_messages",
    "Messages in a sink's subscription backlog, summed over its topics and partitions.",
    ["namespace", "sink"],
    registry=REGISTRY,
)
BACKLOG_READS = Counter(
    "lambdasink_operator_backlog_reads_total",
    "Reads of the Pulsar admin API for backlogs, by result (ok, unreachable, error).",
    ["result"],
    registry=REGISTRY,
)


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - pod endpoint
    """Serve /metrics from a daemon thread; returns the server (tests close it)."""
    server = ThreadingHTTPServer((host, port), MetricsHandler.factory(REGISTRY))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
