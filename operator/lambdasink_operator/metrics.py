"""A few operator counters in Prometheus text format, on an optional port (--metrics-port)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HELP = {
    "lambdasink_operator_reconciles_total": "Reconcile passes by result (ok, invalid, error).",
    "lambdasink_operator_deployment_applies_total": "Worker Deployments written (create, repair).",
}
_lock = threading.Lock()
_counts: Counter[tuple[str, str]] = Counter()


def inc(name: str, label: str = "") -> None:
    """Add one to `name{result=label}` (no label when empty)."""
    with _lock:
        _counts[(name, label)] += 1


def render() -> str:
    with _lock:
        items = sorted(_counts.items())
    lines: list[str] = []
    for name, help_text in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for (metric, label), value in items:
            if metric == name:
                labels = f'{{result="{label}"}}' if label else ""
                lines.append(f"{name}{labels} {value}")
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - pod endpoint
    """Serve /metrics from a daemon thread; returns the server (tests close it)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
