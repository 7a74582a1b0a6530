"""The reconciler writes the workers' /status reports into the sink's status, once per change,
and the probe reads a real worker-like HTTP endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.unit.operator_fakes import NS, MemoryKube, sink_body

from lambdasink_operator import worker_probe
from lambdasink_operator.reconcile import Reconciler
from lambdasink_operator.worker_status import WorkerReport


def closed(**extra: Any) -> dict[str, Any]:
    return {"breaker": {"state": "closed", "reason": "", "openForSeconds": 0}, **extra}


def test_reports_become_conditions_and_events_once() -> None:
    kube = MemoryKube()
    kube.add_sink(sink_body())
    r = Reconciler(kube, runtime_image="img:1", clock=lambda: "2026-01-01T00:00:00Z")

    async def scenario() -> None:
        dead = [WorkerReport("w-1", closed(deadLettered={"function_error": 2}))]
        assert await r.report_workers(NS, "orders", dead, kube.view())
        assert not await r.report_workers(NS, "orders", dead, kube.view())  # nothing changed
        broken = [
            WorkerReport(
                "w-1",
                {
                    "breaker": {"state": "open", "reason": "down"},
                    "deadLettered": {"function_error": 2},
                },
            )
        ]
        assert await r.report_workers(NS, "orders", broken, kube.view())

    asyncio.run(scenario())
    status = kube.sink()["status"]
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Delivering"]["reason"] == "CircuitBreakerOpen"
    assert by_type["DeadLettering"]["status"] == "True"
    assert status["failures"]["lastGivenUpTime"]
    assert [e[1] for e in kube.events] == ["RecordsDeadLettered", "CircuitBreakerOpen"]
    assert kube.calls.count("patch_sink_status orders") == 2


class _Worker(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(closed(pod="up", deadLettered={"too_old": 1})).encode()
        self.send_response(200 if self.path == "/status" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_probe_reads_status_and_reports_unreachable_workers(monkeypatch: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(worker_probe, "HTTP_PORT", server.server_address[1])
    pods = [
        {"metadata": {"name": "up"}, "status": {"podIP": "127.0.0.1"}},
        {"metadata": {"name": "other"}, "status": {"podIP": "127.0.0.1"}},
        {"metadata": {"name": "pending"}, "status": {}},
        {"metadata": {"name": "gone", "deletionTimestamp": "x"}, "status": {"podIP": "1.2.3.4"}},
    ]
    try:
        reports = asyncio.run(worker_probe.read_all(pods))
    finally:
        server.shutdown()
        server.server_close()
    assert [r.pod for r in reports] == ["up", "other", "pending"]
    assert reports[0].status is not None and reports[0].status["deadLettered"] == {"too_old": 1}
    assert reports[1].status is None and "pod 'up' answered" in reports[1].error
    assert reports[2].error == "no pod IP yet"
