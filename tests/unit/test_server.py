"""The worker's HTTP endpoints and the Prometheus exposition of its metrics."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from lambdasink_runtime.metrics import Metrics
from lambdasink_runtime.server import HttpServer


class Probe:
    def __init__(self) -> None:
        self.ok = True
        self.reason = "fine"

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.reason


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, Metrics, Probe, Probe]]:
    metrics, healthy, ready = Metrics(), Probe(), Probe()
    server = HttpServer("127.0.0.1", 0, metrics=metrics, healthy=healthy, ready=ready).start()
    try:
        yield server, metrics, healthy, ready
    finally:
        server.close()


def get(server: HttpServer, path: str, accept: str = "") -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_healthz_and_readyz_follow_their_checks(
    served: tuple[HttpServer, Metrics, Probe, Probe],
) -> None:
    server, _, healthy, ready = served
    assert get(server, "/healthz")[0] == 200
    ready.ok, ready.reason = False, "draining"
    status, _, body = get(server, "/readyz")
    assert status == 503 and "draining" in body
    healthy.ok, healthy.reason = False, "receive loop stuck for 40s"
    status, _, body = get(server, "/healthz")
    assert status == 503 and "stuck" in body


def test_broken_check_is_not_ok(served: tuple[HttpServer, Metrics, Probe, Probe]) -> None:
    server = HttpServer(
        "127.0.0.1",
        0,
        metrics=Metrics(),
        healthy=lambda: (True, ""),
        ready=lambda: 1 / 0,  # type: ignore[arg-type,return-value]
    ).start()
    try:
        status, _, body = get(server, "/readyz")
    finally:
        server.close()
    assert status == 503 and "ZeroDivisionError" in body


def test_unknown_path_is_404(served: tuple[HttpServer, Metrics, Probe, Probe]) -> None:
    assert get(served[0], "/nope")[0] == 404


def test_metrics_exposition(served: tuple[HttpServer, Metrics, Probe, Probe]) -> None:
    server, m, _, _ = served
    m.messages_received.inc(3)
    m.invocations.labels("success").inc()
    m.invocations.labels("throttled").inc(2)
    m.messages_acked.inc(3)
    m.messages_nacked.labels("oversize").inc()
    m.invoke_retries.labels('we"ird\\').inc()
    m.batch_records.observe(3)
    m.batch_bytes.observe(5000)
    m.invoke_latency.observe(0.02)
    m.invoke_latency.observe(100)
    m.inflight.set(2)
    m.oversize.inc()
    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"  # no Accept header: as before
    lines = body.splitlines()
    for name, kind in [
        ("lambdasink_messages_received_total", "counter"),
        ("lambdasink_invocations_total", "counter"),
        ("lambdasink_messages_acked_total", "counter"),
        ("lambdasink_messages_nacked_total", "counter"),
        ("lambdasink_invoke_retries_total", "counter"),
        ("lambdasink_batch_records", "histogram"),
        ("lambdasink_batch_bytes", "histogram"),
        ("lambdasink_invoke_latency_seconds", "histogram"),
        ("lambdasink_inflight_invocations", "gauge"),
        ("lambdasink_oversize_records_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}" in lines
        assert any(line.startswith(f"# HELP {name} ") for line in lines)
    assert "lambdasink_messages_received_total 3.0" in lines
    assert 'lambdasink_invocations_total{outcome="success"} 1.0' in lines
    assert 'lambdasink_invocations_total{outcome="throttled"} 2.0' in lines
    assert 'lambdasink_messages_nacked_total{reason="oversize"} 1.0' in lines
    assert 'lambdasink_invoke_retries_total{reason="we\\"ird\\\\"} 1.0' in lines
    assert 'lambdasink_batch_records_bucket{le="2.0"} 0.0' in lines
    assert 'lambdasink_batch_records_bucket{le="5.0"} 1.0' in lines
    assert 'lambdasink_invoke_latency_seconds_bucket{le="0.025"} 1.0' in lines
    assert 'lambdasink_invoke_latency_seconds_bucket{le="60.0"} 1.0' in lines
    assert 'lambdasink_invoke_latency_seconds_bucket{le="+Inf"} 2.0' in lines
    assert "lambdasink_invoke_latency_seconds_count 2.0" in lines
    assert "lambdasink_invoke_latency_seconds_sum 100.02" in lines
    assert "lambdasink_inflight_invocations 2.0" in lines
    assert not [line for line in lines if "_created" in line]
    # Every sample line is `name{labels} value` with a numeric value.
    sample = re.compile(r'^[a-z_]+(\{[a-z]+="([^"\\]|\\.)*"(,[a-z]+="([^"\\]|\\.)*")*\})? \S+$')
    for line in lines:
        if not line.startswith("#"):
            assert sample.match(line), line
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))
    assert body.endswith("\n")


def test_metrics_follow_the_scrapers_accept_header(
    served: tuple[HttpServer, Metrics, Probe, Probe],
) -> None:
    server, m, _, _ = served
    m.messages_acked.inc(2)
    status, ctype, body = get(
        server, "/metrics", accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert status == 200 and ctype.startswith("application/openmetrics-text;")
    assert "lambdasink_messages_acked_total 2.0" in body.splitlines()
    assert body.endswith("# EOF\n")
    status, ctype, body = get(server, "/metrics", accept="text/plain;version=1.0.0")
    assert ctype.startswith(CONTENT_TYPE_LATEST)  # 1.0.0 from prometheus_client 0.22 on
    assert "lambdasink_messages_acked_total 2.0" in body.splitlines()


def test_counter_without_samples_renders_only_header() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert "# TYPE lambdasink_messages_nacked_total counter" in text
    assert "lambdasink_messages_nacked_total{" not in text
    assert "lambdasink_messages_acked_total 0.0" in text
