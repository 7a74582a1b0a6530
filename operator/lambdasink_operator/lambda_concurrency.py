"""The function's reserved concurrency (Lambda GetFunctionConcurrency), read with the sink's
own AWS credentials Secret, region and endpoint: the autoscaler never runs more workers than
the function can serve at once. boto3 blocks, so the call runs in a thread.

Only a sink with `spec.aws.credentialsSecret` is asked: the operator's own identity is never
used for AWS (RBAC.md). Without one, or when the call fails, the answer is "unknown" (None)
and only `maxConcurrency` caps the replicas; the failure is logged, never raised.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

log = logging.getLogger(__name__)
ReadSecret = Callable[[str], Awaitable[dict[str, str] | None]]
TIMEOUT_S = 5.0


def _text(data: Mapping[str, str], key: str) -> str:
    try:
        return base64.b64decode(data.get(key, ""), validate=True).decode("utf-8").strip()
    except (binascii.Error, ValueError):
        return ""


async def reserved_concurrency(sink_spec: Mapping[str, Any], read: ReadSecret) -> int | None:
    """ReservedConcurrentExecutions of `sinkConfig.lambdaFunctionName`; None when it has none
    or it cannot be read."""
    sink = sink_spec.get("sinkConfig") or {}
    aws = sink_spec.get("aws") or {}
    ref = aws.get("credentialsSecret") if isinstance(aws, Mapping) else None
    function = sink.get("lambdaFunctionName") if isinstance(sink, Mapping) else None
    if not isinstance(ref, Mapping) or not ref.get("name") or not function:
        return None
    data = await read(str(ref["name"]))
    if not data:
        return None
    access = _text(data, str(ref.get("accessKeyIdKey") or "accessKeyId"))
    secret = _text(data, str(ref.get("secretAccessKeyKey") or "secretAccessKey"))
    if not access or not secret:
        return None

    def call() -> int | None:
        client = boto3.client(
            "lambda",
            region_name=str(sink.get("awsRegion") or "us-east-1"),
            endpoint_url=str(sink.get("awsEndpoint") or "") or None,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            config=botocore.config.Config(
                connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1}
            ),
        )
        answer = client.get_function_concurrency(FunctionName=str(function))
        value = answer.get("ReservedConcurrentExecutions")
        return int(value) if value is not None else None

    try:
        return await asyncio.to_thread(call)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        log.info("reserved concurrency of %s not known: %s", function, exc)
        return None
