"""The local real stack (dev/stack) does what the other suites rely on.

Pulsar and the schema registry, and the Lambda gateway in front of real handler code (RIE +
awslambdaric). The only faked responses are the injected 429 /
5xx / 413 (RIE cannot produce them) and the per-access-key deny (a fake for IAM); the tests that
use them say so.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import botocore.exceptions
import pulsar
import pytest
from botocore.config import Config
from pulsar.schema import AvroSchema, Integer, JsonSchema, Record, String
from tests.stack import (
    LambdaFaults,
    LambdaFunctions,
    Recorder,
    Stack,
    pulsar_admin_get,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- Pulsar ------------------------------------------------------------------------------------


@pytest.fixture
def pulsar_client(stack: Stack) -> Any:
    client = pulsar.Client(stack.pulsar_service_url, operation_timeout_seconds=30)
    yield client
    client.close()


class Order(Record):  # type: ignore[misc]  # pulsar ships no type hints
    id = String()
    quantity = Integer()


@pytest.mark.integration
def test_pulsar_produce_consume_round_trip(pulsar_client: Any) -> None:
    topic = f"persistent://public/default/{unique('stack-rt')}"
    consumer = pulsar_client.subscribe(
        topic, "rt", initial_position=pulsar.InitialPosition.Earliest
    )
    producer = pulsar_client.create_producer(topic)
    sent = [f"message-{i}".encode() for i in range(5)]
    for body in sent:
        producer.send(body, properties={"k": "v"})
    received = []
    for _ in sent:
        msg = consumer.receive(timeout_millis=10_000)
        received.append(msg.data())
        assert msg.properties() == {"k": "v"}
        consumer.acknowledge(msg)
    assert received == sent


@pytest.mark.integration
def test_avro_schema_is_readable_from_the_schema_registry(pulsar_client: Any, stack: Stack) -> None:
    name = unique("stack-avro")
    producer = pulsar_client.create_producer(
        f"persistent://public/default/{name}", schema=AvroSchema(Order)
    )
    producer.send(Order(id="o-1", quantity=3))
    status, info = pulsar_admin_get(stack, f"/admin/v2/schemas/public/default/{name}/schema")
    assert status == 200, info
    assert info["type"] == "AVRO"
    definition = json.loads(info["data"])
    assert definition["type"] == "record"
    assert [f["name"] for f in definition["fields"]] == ["id", "quantity"]
    status, v0 = pulsar_admin_get(stack, f"/admin/v2/schemas/public/default/{name}/schema/0")
    assert status == 200 and v0["type"] == "AVRO"


@pytest.mark.integration
def test_json_schema_is_readable_from_the_schema_registry(pulsar_client: Any, stack: Stack) -> None:
    name = unique("stack-json")
    producer = pulsar_client.create_producer(
        f"persistent://public/default/{name}", schema=JsonSchema(Order)
    )
    producer.send(Order(id="o-2", quantity=1))
    status, info = pulsar_admin_get(stack, f"/admin/v2/schemas/public/default/{name}/schema")
    assert status == 200, info
    assert info["type"] == "JSON"


# --- Lambda ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_invoke_reaches_the_real_handler_and_the_recorder_sees_the_event(
    lambda_client_factory: Any, recorder: Recorder
) -> None:
    client = lambda_client_factory()
    event = [{"value": unique("evt"), "n": 1}, {"value": "second", "n": 2}]
    resp = client.invoke(FunctionName=recorder.function, Payload=json.dumps(event).encode())
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert json.loads(resp["Payload"].read()) == {"recorded": 2}
    (entry,) = recorder.wait_for(1)
    assert entry["event"] == event
    assert entry["requestId"] == resp["ResponseMetadata"]["RequestId"]


@pytest.mark.integration
def test_async_invoke_is_accepted_and_delivered(
    lambda_client_factory: Any, recorder: Recorder
) -> None:
    client = lambda_client_factory()
    fn_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{recorder.function}"
    event = {"async": unique("evt")}
    resp = client.invoke(
        FunctionName=fn_arn, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
    assert recorder.wait_for(1)[0]["event"] == event
    dry = client.invoke(FunctionName=recorder.function, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert dry["Payload"].read() == b""


@pytest.mark.integration
def test_a_raising_handler_is_a_function_error(lambda_client_factory: Any) -> None:
    resp = lambda_client_factory().invoke(FunctionName="failing", Payload=b'{"x": 1}')
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorType"] == "DeliberateFailure"
    assert "dict event" in body["errorMessage"]


@pytest.mark.integration
def test_get_function_known_and_unknown(lambda_client_factory: Any) -> None:
    client = lambda_client_factory()
    conf = client.get_function(FunctionName="recorder")["Configuration"]  # from functions.json
    assert conf["FunctionName"] == "recorder"
    assert conf["State"] == "Active"
    assert conf["FunctionArn"].endswith(":function:recorder")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as err:
        client.get_function(FunctionName=unique("no-such-function"))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=unique("no-such-function"), Payload=b"{}")


@pytest.mark.integration
def test_oversized_sync_payload_is_rejected_like_aws(lambda_client_factory: Any) -> None:
    client = lambda_client_factory()
    payload = json.dumps("x" * (6 * 1024 * 1024)).encode()  # just over 6 MB once quoted
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="recorder", Payload=payload)


@pytest.mark.integration
def test_injected_throttle_surfaces_as_too_many_requests(
    lambda_client_factory: Any, lambda_faults: LambdaFaults, recorder: Recorder
) -> None:
    # Injected (a fake): RIE cannot answer 429.
    client = lambda_client_factory()
    lambda_faults.inject(recorder.function, "throttle", count=1, retryAfterSeconds="2")
    with pytest.raises(client.exceptions.TooManyRequestsException) as err:
        client.invoke(FunctionName=recorder.function, Payload=b'{"throttled": true}')
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert response["retryAfterSeconds"] == "2"
    # The fault was used up: the next call reaches the handler.
    ok = client.invoke(FunctionName=recorder.function, Payload=b'{"after": true}')
    assert "FunctionError" not in ok
    assert json.loads(ok["Payload"].read()) == {"recorded": 1}
    assert [e["event"] for e in recorder.wait_for(1)] == [{"after": True}]
    outcomes = [r["outcome"] for r in lambda_faults.requests(recorder.function)]
    assert outcomes == ["TooManyRequestsException(injected)", "Success"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "params", "code", "status"),
    [
        ("server_error", {"status": 500}, "ServiceException", 500),
        (
            "server_error",
            {"status": 502, "errorType": "ENILimitReachedException"},
            "ENILimitReachedException",
            502,
        ),
        ("too_large", {}, "RequestTooLargeException", 413),
    ],
)
def test_injected_service_errors_are_parsed_by_botocore(
    lambda_client_factory: Any,
    lambda_faults: LambdaFaults,
    lambda_functions: LambdaFunctions,
    kind: str,
    params: dict[str, Any],
    code: str,
    status: int,
) -> None:
    # Injected (a fake): RIE cannot produce these.
    client = lambda_client_factory()
    fn = lambda_functions.create("echo.handler", concurrency=1)
    lambda_faults.inject(fn, kind, **params)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.invoke(FunctionName=fn, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(err.value, getattr(client.exceptions, code))


@pytest.mark.integration
def test_injected_handled_function_error(
    lambda_client_factory: Any, lambda_faults: LambdaFaults, lambda_functions: LambdaFunctions
) -> None:
    # Injected (a fake): a Python runtime only produces Unhandled errors.
    fn = lambda_functions.create("echo.handler", concurrency=1)
    lambda_faults.inject(fn, "function_error", message="bad record", errorType="Validation")
    resp = lambda_client_factory().invoke(FunctionName=fn, Payload=b"{}")
    assert resp["FunctionError"] == "Handled"
    assert json.loads(resp["Payload"].read()) == {
        "errorMessage": "bad record",
        "errorType": "Validation",
    }


@pytest.mark.integration
def test_gateway_logs_the_signing_identity(
    lambda_client_factory: Any,
    lambda_faults: LambdaFaults,
    lambda_functions: LambdaFunctions,
    stack: Stack,
) -> None:
    fn = lambda_functions.create("echo.handler", concurrency=1)
    resp = lambda_client_factory().invoke(FunctionName=fn, Payload=b'{"who": 1}')
    assert json.loads(resp["Payload"].read()) == {"who": 1}  # read: frees the connection
    (req,) = lambda_faults.requests(fn)
    assert req["accessKeyId"] == stack.access_key
    assert req["signingRegion"] == stack.lambda_region
    assert req["invocationType"] == "RequestResponse"


@pytest.mark.integration
def test_dry_run_and_get_function_configuration_as_lambda_answers(
    lambda_client_factory: Any, lambda_functions: LambdaFunctions
) -> None:
    fn = lambda_functions.create("echo.handler", concurrency=1, timeout=7)
    client = lambda_client_factory()
    assert client.invoke(FunctionName=fn, InvocationType="DryRun")["StatusCode"] == 204
    assert client.get_function_configuration(FunctionName=fn)["Timeout"] == 7
    assert client.get_function(FunctionName=fn)["Configuration"]["Timeout"] == 7
    missing = unique("no-such-function")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=missing, InvocationType="DryRun")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_configuration(FunctionName=missing)


@pytest.mark.integration
def test_a_denied_access_key_gets_access_denied_until_lifted(
    lambda_client_factory: Any,
    lambda_faults: LambdaFaults,
    lambda_functions: LambdaFunctions,
    stack: Stack,
) -> None:
    """The deny is a fake for IAM (the emulator checks no policy): only our own access key."""
    fn = lambda_functions.create("echo.handler", concurrency=1)
    key = unique("AKIATEST")
    denied = boto3.client(
        "lambda",
        endpoint_url=stack.lambda_endpoint,
        region_name=stack.lambda_region,
        aws_access_key_id=key,
        aws_secret_access_key="irrelevant",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    deny_id = lambda_faults.deny(key, function=fn, actions=["lambda:InvokeFunction"])
    with pytest.raises(denied.exceptions.ClientError) as err:
        denied.invoke(FunctionName=fn, InvocationType="DryRun")
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "lambda:InvokeFunction on resource: " in err.value.response["Error"]["Message"]
    assert denied.get_function(FunctionName=fn)["Configuration"]["FunctionName"] == fn
    # another identity is not affected
    assert (
        lambda_client_factory().invoke(FunctionName=fn, InvocationType="DryRun")["StatusCode"]
        == 204
    )
    lambda_faults.lift(deny_id)
    assert denied.invoke(FunctionName=fn, InvocationType="DryRun")["StatusCode"] == 204
    denied.close()
