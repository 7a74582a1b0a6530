"""Schema registry client: the pure parts, and HTTP error classification.

Fetching real schemas from a real broker is in tests/integration/test_schemas_broker.py. Here a
tiny loopback HTTP server stands in for the broker only for answers a healthy standalone broker
cannot be made to give (503, 500, 429, a non-JSON body).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambdasink_runtime.config import PulsarConfig
from lambdasink_runtime.errors import SchemaRegistryError
from lambdasink_runtime.record import SchemaInfo
from lambdasink_runtime.schemas import (
    SchemaRegistry,
    headers_provider_for,
    parse_schema_version,
    parse_topic,
    schema_info_from_response,
    ssl_context_for,
)


@pytest.mark.parametrize(
    ("topic", "full", "path"),
    [
        (
            "persistent://public/default/orders",
            "persistent://public/default/orders",
            "public/default/orders",
        ),
        (
            "persistent://public/default/orders-partition-12",
            "persistent://public/default/orders",
            "public/default/orders",
        ),
        ("non-persistent://t/ns/x", "non-persistent://t/ns/x", "t/ns/x"),
        ("orders", "persistent://public/default/orders", "public/default/orders"),
        ("t/ns/orders", "persistent://t/ns/orders", "t/ns/orders"),
        ("persistent://t/ns/a b%", "persistent://t/ns/a b%", "t/ns/a%20b%25"),
        (
            "persistent://t/ns/x-partition-2-partition-3",
            "persistent://t/ns/x-partition-2",
            "t/ns/x-partition-2",
        ),
    ],
)
def test_parse_topic(topic: str, full: str, path: str) -> None:
    name = parse_topic(topic)
    assert name.full == full
    assert name.schema_path == path


@pytest.mark.parametrize("topic", ["", "t/ns", "kafka://t/ns/x", "persistent://t//x"])
def test_parse_topic_errors(topic: str) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        parse_topic(topic)
    assert info.value.retriable is False


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (0, 0),
        (7, 7),
        (b"\x00" * 7 + b"\x05", 5),
        (b"\x00\x00\x00\x01\x00\x00\x00\x00", 2**32),
        ("\x00" * 7 + "\x03", 3),  # the Python client's str form of the 8 bytes
        ("\x00" * 7 + "\xff", 255),
        ("12", 12),
    ],
)
def test_parse_schema_version(version: bytes | int | str, expected: int) -> None:
    assert parse_schema_version(version) == expected


@pytest.mark.parametrize("version", [-1, b"\x01", b"", "\u0100" * 8, b"\xff" * 8, True])
def test_parse_schema_version_errors(version: bytes | int | str) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        parse_schema_version(version)
    assert info.value.retriable is False


def test_schema_info_from_response() -> None:
    doc = {
        "version": 0,
        "type": "avro",
        "timestamp": 1,
        "data": '{"type":"record","name":"R","fields":[]}',
        "properties": {"__alwaysAllowNull": "true"},
    }
    info = schema_info_from_response(parse_topic("persistent://public/default/o"), doc)
    assert info == SchemaInfo(
        "AVRO", '{"type":"record","name":"R","fields":[]}', "o", {"__alwaysAllowNull": "true"}
    )


def test_schema_info_from_response_shape_error() -> None:
    with pytest.raises(SchemaRegistryError):
        schema_info_from_response(parse_topic("o"), {"type": 3})


def test_url_for() -> None:
    reg = SchemaRegistry("http://127.0.0.1:8080/")
    assert reg.url_for("persistent://public/default/o-partition-1", b"\x00" * 7 + b"\x02") == (
        "http://127.0.0.1:8080/admin/v2/schemas/public/default/o/schema/2"
    )


def test_token_auth_headers() -> None:
    cfg = PulsarConfig.from_mapping(
        {"topics": ["t"], "authentication": {"token": {"value": "tok"}}}
    )
    assert headers_provider_for(cfg.auth)() == {"Authorization": "Bearer tok"}
    assert headers_provider_for(PulsarConfig.from_mapping({"topics": ["t"]}).auth)() == {}


def test_ssl_context_follows_the_consumers_tls_settings() -> None:
    strict = ssl_context_for(PulsarConfig.from_mapping({"topics": ["t"]}).auth)
    assert strict.verify_mode == ssl.CERT_REQUIRED
    assert strict.check_hostname is True
    lax = PulsarConfig.from_mapping({"topics": ["t"], "tlsAllowInsecureConnection": True}).auth
    ctx = ssl_context_for(lax)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False


def test_https_registry_gets_a_tls_context() -> None:
    auth = PulsarConfig.from_mapping({"topics": ["t"], "tlsAllowInsecureConnection": True}).auth
    reg = SchemaRegistry("https://broker:8443", auth=auth)
    assert reg._ssl_context is not None
    assert reg._ssl_context.verify_mode == ssl.CERT_NONE
    assert SchemaRegistry("http://broker:8080", auth=auth)._ssl_context is None


# --------------------------------------------------------------------------- HTTP errors


class _Canned(BaseHTTPRequestHandler):
    status = 503
    body = b"{}"
    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "retriable"),
    [(500, True), (503, True), (429, True), (408, True), (404, False), (401, False)],
)
def test_http_errors_classified(
    canned: tuple[str, type[_Canned]], status: int, retriable: bool
) -> None:
    url, handler = canned
    handler.status = status
    reg = SchemaRegistry(url, lambda: {"Authorization": "Bearer secret-token"})
    with pytest.raises(SchemaRegistryError) as info:
        reg.get("persistent://public/default/o", 3)
    assert info.value.retriable is retriable
    assert f"HTTP {status}" in str(info.value)
    assert "secret-token" not in str(info.value)
    assert handler.seen == [("/admin/v2/schemas/public/default/o/schema/3", "Bearer secret-token")]


def test_non_json_answer(canned: tuple[str, type[_Canned]]) -> None:
    url, handler = canned
    handler.status = 200
    handler.body = b"<html>"
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistry(url).get("o", 0)
    assert info.value.retriable is False


def test_errors_are_not_cached(canned: tuple[str, type[_Canned]]) -> None:
    url, handler = canned
    handler.status = 503
    reg = SchemaRegistry(url)
    for _ in range(2):
        with pytest.raises(SchemaRegistryError):
            reg.get("o", 0)
    assert len(handler.seen) == 2


def test_unreachable_broker_is_retriable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistry(f"http://127.0.0.1:{port}", timeout_s=2).get("o", 0)
    assert info.value.retriable is True
    assert "unreachable" in str(info.value)
