"""kube.py's error mapping: the client library's real exceptions → absent / KubeError, and
whether kopf should retry. (The calls themselves meet kube-apiserver in tests/cluster.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError, api_exception

from lambdasink_operator.kube import Kube, KubeError


def answer(status: int, body: bytes = b"", reason: str = "") -> Callable[[], object]:
    """A call that fails the way the dynamic client does when the server answers `status`."""

    def call() -> object:
        exc = ApiException(status=status, reason=reason)
        exc.body = body  # type: ignore[assignment]  # the client sets bytes too
        raise api_exception(exc)  # type: ignore[no-untyped-call]

    return call


def run(call: Callable[[], object]) -> object:
    kube = Kube(api_client=object())  # no request is made: `call` stands for one
    return asyncio.run(kube._call("get Thing ns/x", call))


def test_not_found_is_absent() -> None:
    assert run(answer(404, b'{"message": "not found"}')) is None


@pytest.mark.parametrize(("status", "retriable"), [(403, True), (409, True), (429, True),
                                                   (500, True), (503, True), (422, False),
                                                   (400, False)])  # fmt: skip
def test_http_errors_say_whether_a_retry_can_help(status: int, retriable: bool) -> None:
    with pytest.raises(KubeError) as caught:
        run(answer(status, b'{"kind": "Status", "message": "the server says why"}'))
    assert caught.value.status == status
    assert caught.value.retriable is retriable
    assert str(caught.value) == f"get Thing ns/x: {status} the server says why"


def test_an_error_without_a_body_gives_its_reason() -> None:
    with pytest.raises(KubeError, match="Cannot prepare a request message"):
        run(answer(0, reason="Cannot prepare a request message for provided arguments"))


@pytest.mark.parametrize(
    "error",
    [urllib3.exceptions.ProtocolError("connection reset"), ConnectionRefusedError(111, "no"),
     ResourceNotFoundError("No matches found for {'kind': 'LambdaSink'}")],
)  # fmt: skip
def test_transport_errors_and_a_missing_api_are_retried(error: Exception) -> None:
    def call() -> object:
        raise error

    with pytest.raises(KubeError) as caught:
        run(call)
    assert caught.value.retriable
