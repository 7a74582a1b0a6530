"""Reserved concurrency on the dev gateway through boto3 (the shapes botocore parses), and the
operator's reader of it, with a sink's credentials Secret as the API would hand it over."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import botocore.exceptions
import pytest
from tests.stack import LambdaFunctions, Stack, lambda_client

from lambdasink_operator import lambda_concurrency

pytestmark = pytest.mark.integration


def sink_spec(stack: Stack, function: str) -> dict[str, Any]:
    return {
        "sinkConfig": {
            "lambdaFunctionName": function,
            "awsRegion": stack.lambda_region,
            "awsEndpoint": stack.lambda_endpoint,
        },
        "aws": {"credentialsSecret": {"name": "aws"}},
    }


def reader(stack: Stack) -> Any:
    async def read(name: str) -> dict[str, str] | None:
        enc = {
            "accessKeyId": stack.access_key,
            "secretAccessKey": stack.secret_key,
        }
        return (
            {k: base64.b64encode(v.encode()).decode() for k, v in enc.items()}
            if name == "aws"
            else None
        )

    return read


def test_put_get_delete_reserved_concurrency(
    stack: Stack, lambda_functions: LambdaFunctions
) -> None:
    function = lambda_functions.create("echo.handler", prefix="conc")
    client = lambda_client(stack)
    assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(
        FunctionName=function
    )
    got = asyncio.run(
        lambda_concurrency.reserved_concurrency(sink_spec(stack, function), reader(stack))
    )
    assert got is None

    client.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=8)
    answer = client.get_function_concurrency(FunctionName=function)
    assert answer["ReservedConcurrentExecutions"] == 8
    got = asyncio.run(
        lambda_concurrency.reserved_concurrency(sink_spec(stack, function), reader(stack))
    )
    assert got == 8

    client.delete_function_concurrency(FunctionName=function)
    assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(
        FunctionName=function
    )
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.get_function_concurrency(FunctionName="no-such-function")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
