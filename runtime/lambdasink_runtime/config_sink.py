"""The `sink` section: the reference connector's `--sink-config` object plus our extensions.

`SINK_PROPS` declares every property once; `SinkConfig`'s field defaults and its parser both
come from it, and tests check the CRD's `spec.sinkConfig` schema against it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .config_fields import Prop, by_key
from .config_values import INT32_MAX, Reader, as_mapping, as_str, check_keys, split_list
from .errors import ConfigError

SYNC_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT_BYTES = 1024 * 1024

METADATA_FIELDS: tuple[str, ...] = (
    "topic",
    "key",
    "partitionIndex",
    "sequence",
    "properties",
    "eventTime",
    "messageId",
    "publishTime",
)
DEFAULT_METADATA_FIELDS: tuple[str, ...] = (
    "topic",
    "key",
    "partitionIndex",
    "sequence",
    "properties",
    "eventTime",
)

#: The reference's credential plugins (StreamNative/Apache pulsar-io-aws); the `kinesis` package
#: names are the older spelling of the same plugins and are accepted as aliases.
PLUGIN_DEFAULT_CHAIN = "org.apache.pulsar.io.aws.AwsDefaultProviderChainPlugin"
PLUGIN_STS_ASSUME_ROLE = "org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin"
_PLUGIN_ALIASES = {
    PLUGIN_DEFAULT_CHAIN: PLUGIN_DEFAULT_CHAIN,
    PLUGIN_STS_ASSUME_ROLE: PLUGIN_STS_ASSUME_ROLE,
    "org.apache.pulsar.io.kinesis.AwsDefaultProviderChainPlugin": PLUGIN_DEFAULT_CHAIN,
    "org.apache.pulsar.io.kinesis.STSAssumeRoleProviderPlugin": PLUGIN_STS_ASSUME_ROLE,
}
_PYTHON_PLUGIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*$")

#: Keys each credential plugin's JSON parameter takes: (required, optional).
_PLUGIN_PARAM_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "": (frozenset({"accessKey", "secretKey"}), frozenset()),
    PLUGIN_DEFAULT_CHAIN: (frozenset(), frozenset()),
    PLUGIN_STS_ASSUME_ROLE: (frozenset({"roleArn", "roleSessionName"}), frozenset({"externalId"})),
}

ENV_AWS_ACCESS_KEY = "LAMBDASINK_AWS_ACCESS_KEY"
ENV_AWS_SECRET_KEY = "LAMBDASINK_AWS_SECRET_KEY"  # noqa: S105 - a variable name
ENV_AWS_CREDENTIAL_PLUGIN_PARAM = "LAMBDASINK_AWS_CREDENTIAL_PLUGIN_PARAM"
#: The files of awsCredentialsDirectory.
AWS_ACCESS_KEY_FILE = "accessKeyId"
AWS_SECRET_KEY_FILE = "secretAccessKey"  # noqa: S105 - a file name

PayloadFormat = Literal["V1", "V2"]


def _parse_metadata_fields(name: str, value: object) -> tuple[str, ...]:
    allowed = "a comma-separated string or list of: " + ", ".join(METADATA_FIELDS)
    out: list[str] = []
    for item in split_list(name, value, allowed):
        if item == "":
            continue
        if not isinstance(item, str) or item not in METADATA_FIELDS:
            raise ConfigError(name, item, allowed)
        if item not in out:
            out.append(item)
    return tuple(out)


def _plugin_param_text(name: str, value: object) -> str:
    """The parameter is a JSON string in the reference; a mapping is accepted and re-encoded."""
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    return as_str(name, value, sensitive=True)


def _plugin_name(name: str, value: object) -> str:
    """The canonical spelling of a reference plugin; other names are checked after loading."""
    text = as_str(name, value).strip()
    return _PLUGIN_ALIASES.get(text, text)


def _endpoint(name: str, value: object) -> str:
    """Like the Java SDK, an endpoint without a scheme means https."""
    url = as_str(name, value).strip()
    return url if not url or "://" in url else f"https://{url}"


def _int32(key: str, attr: str, default: int, lo: int, description: str, **kw: Any) -> Prop:
    return Prop(key, attr, "integer", default, description, lo, kw.pop("maximum", INT32_MAX), **kw)


SINK_PROPS: tuple[Prop, ...] = (
    # the reference's table
    Prop(
        "awsEndpoint",
        "aws_endpoint",
        "string",
        "",
        "The AWS Lambda endpoint URL; empty uses the region's public endpoint.",
        parse=_endpoint,
    ),
    Prop(
        "awsRegion",
        "aws_region",
        "string",
        "",
        "The AWS region, for example us-west-2.",
        required="a non-empty AWS region",
    ),
    Prop(
        "awsAccessKey",
        "aws_access_key",
        "string",
        "",
        "AWS access key ID for static credentials (sensitive), or env " + ENV_AWS_ACCESS_KEY,
        sensitive=True,
        env=ENV_AWS_ACCESS_KEY,
    ),
    Prop(
        "awsSecretKey",
        "aws_secret_key",
        "string",
        "",
        "AWS secret access key for static credentials (sensitive), or env " + ENV_AWS_SECRET_KEY,
        sensitive=True,
        env=ENV_AWS_SECRET_KEY,
    ),
    Prop(
        "awsCredentialsDirectory",
        "aws_credentials_directory",
        "string",
        "",
        "Extension. A directory holding the files accessKeyId and secretAccessKey (static "
        "keys; the operator mounts spec.aws.credentialsSecret there). Read again when they "
        "change, so a rotated Secret is used without a restart.",
        extension=True,
    ),
    Prop(
        "lambdaFunctionName",
        "lambda_function_name",
        "string",
        "",
        "The Lambda function invoked (name, ARN or partial ARN).",
        required="a non-empty function name, ARN or partial ARN",
    ),
    Prop(
        "awsCredentialPluginName",
        "aws_credential_plugin_name",
        "string",
        "",
        "Credential provider plugin: empty (static keys or the default chain), "
        f"{PLUGIN_DEFAULT_CHAIN}, {PLUGIN_STS_ASSUME_ROLE}, "
        "or a Python plugin 'package.module:ClassName'.",
        parse=_plugin_name,
    ),
    Prop(
        "awsCredentialPluginParam",
        "aws_credential_plugin_param",
        "string",
        "",
        "The plugin's JSON parameter (sensitive), or env " + ENV_AWS_CREDENTIAL_PLUGIN_PARAM,
        sensitive=True,
        env=ENV_AWS_CREDENTIAL_PLUGIN_PARAM,
        parse=_plugin_param_text,
    ),
    Prop(
        "synchronousInvocation",
        "synchronous_invocation",
        "boolean",
        True,
        "true invokes synchronously (RequestResponse), false asynchronously (Event).",
    ),
    Prop(
        "payloadFormat",
        "payload_format",
        "string",
        "V1",
        "Payload format sent to the function, V1 (default) or V2.",
        choices=("V1", "V2"),
    ),
    Prop(
        "metadataFields",
        "metadata_fields",
        "string",
        DEFAULT_METADATA_FIELDS,
        "Comma-separated metadata fields of V2 payloads: " + ", ".join(METADATA_FIELDS) + ".",
        parse=_parse_metadata_fields,
    ),
    _int32(
        "batchMaxSize",
        "batch_max_size",
        10,
        1,
        "Maximum records per invocation (V2); 1 disables batching.",
    ),
    _int32(
        "batchMaxBytesSize",
        "batch_max_bytes_size",
        262144,
        1,
        "Maximum payload bytes per invocation (V2); at most the Lambda payload limit "
        f"({SYNC_PAYLOAD_LIMIT_BYTES} synchronous, {ASYNC_PAYLOAD_LIMIT_BYTES} asynchronous).",
        maximum=SYNC_PAYLOAD_LIMIT_BYTES,
        bound_note="the Lambda payload limit for synchronous invocations",
    ),
    _int32(
        "batchMaxTimeMs",
        "batch_max_time_ms",
        5000,
        0,
        "Maximum time a batch waits for more records (ms, V2).",
    ),
    # extensions
    Prop(
        "awsAssumeRoleArn",
        "aws_assume_role_arn",
        "string",
        "",
        "Extension. IAM role to assume (STS) on top of the base credentials.",
        extension=True,
    ),
    Prop(
        "awsAssumeRoleSessionName",
        "aws_assume_role_session_name",
        "string",
        "lambda-sink",
        "Extension. STS session name when assuming awsAssumeRoleArn.",
        empty_is_default=True,
        extension=True,
    ),
    Prop(
        "awsAssumeRoleExternalId",
        "aws_assume_role_external_id",
        "string",
        "",
        "Extension. STS external ID when assuming awsAssumeRoleArn.",
        sensitive=True,
        extension=True,
    ),
    _int32(
        "maxInFlight",
        "max_in_flight",
        4,
        1,
        "Extension. Concurrent invocations per worker; the upper bound when adaptiveInFlight "
        "is enabled.",
        maximum=1024,
        extension=True,
    ),
    _int32(
        "invokeMaxRetries",
        "invoke_max_retries",
        5,
        0,
        "Extension. Retries of a retriable invocation failure before the batch is negatively "
        "acknowledged.",
        extension=True,
    ),
    _int32(
        "invokeBackoffInitialMs",
        "invoke_backoff_initial_ms",
        200,
        0,
        "Extension. First retry backoff (ms), doubled per retry.",
        extension=True,
    ),
    _int32(
        "invokeBackoffMaxMs",
        "invoke_backoff_max_ms",
        20000,
        0,
        "Extension. Backoff cap (ms).",
        extension=True,
    ),
    _int32(
        "invokeTimeoutMs",
        "invoke_timeout_ms",
        60000,
        1,
        "Extension. Read timeout of one Invoke call (ms).",
        extension=True,
    ),
)
SINK = by_key(SINK_PROPS)
SINK_ALIASES = {"metaDataField": "metadataFields"}


def _secret(key: str) -> Any:
    """A sensitive field: its declared default, hidden from repr and `redacted_dict()`."""
    prop = SINK[key]
    if not prop.sensitive:
        raise TypeError(f"{key} is not declared sensitive")
    return field(default=prop.default, repr=False, metadata={"sensitive": True})


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """The reference connector's properties (and our extensions), typed and validated."""

    aws_region: str
    lambda_function_name: str
    aws_endpoint: str = SINK["awsEndpoint"].default
    aws_access_key: str = _secret("awsAccessKey")
    aws_secret_key: str = _secret("awsSecretKey")
    aws_credentials_directory: str = SINK["awsCredentialsDirectory"].default
    aws_credential_plugin_name: str = SINK["awsCredentialPluginName"].default
    aws_credential_plugin_param: str = _secret("awsCredentialPluginParam")
    synchronous_invocation: bool = SINK["synchronousInvocation"].default
    payload_format: PayloadFormat = SINK["payloadFormat"].default
    metadata_fields: tuple[str, ...] = SINK["metadataFields"].default
    batch_max_size: int = SINK["batchMaxSize"].default
    batch_max_bytes_size: int = SINK["batchMaxBytesSize"].default
    batch_max_time_ms: int = SINK["batchMaxTimeMs"].default
    aws_assume_role_arn: str = SINK["awsAssumeRoleArn"].default
    aws_assume_role_session_name: str = SINK["awsAssumeRoleSessionName"].default
    aws_assume_role_external_id: str = _secret("awsAssumeRoleExternalId")
    max_in_flight: int = SINK["maxInFlight"].default
    invoke_max_retries: int = SINK["invokeMaxRetries"].default
    invoke_backoff_initial_ms: int = SINK["invokeBackoffInitialMs"].default
    invoke_backoff_max_ms: int = SINK["invokeBackoffMaxMs"].default
    invoke_timeout_ms: int = SINK["invokeTimeoutMs"].default

    @property
    def payload_limit_bytes(self) -> int:
        """Lambda's request payload quota for the configured invocation type."""
        return (
            SYNC_PAYLOAD_LIMIT_BYTES if self.synchronous_invocation else ASYNC_PAYLOAD_LIMIT_BYTES
        )

    @property
    def credential_plugin_params(self) -> dict[str, Any]:
        """The plugin parameter decoded (validated at load); empty when not set."""
        text = self.aws_credential_plugin_param.strip()
        return cast(dict[str, Any], json.loads(text)) if text else {}

    @classmethod
    def from_mapping(
        cls,
        doc: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        section: str = "sink",
    ) -> SinkConfig:
        """Validate a `--sink-config` object; `env` supplies sensitive values left empty.

        The operator validates `spec.sinkConfig` with the default `env=None` (no secrets read).
        """
        doc = as_mapping(section, doc)
        check_keys(section, doc, [*SINK, *SINK_ALIASES])
        r = Reader(section, doc)

        if doc.get("metadataFields") is not None and doc.get("metaDataField") is not None:
            raise ConfigError(
                r.name("metaDataField"),
                doc["metaDataField"],
                "give either metadataFields or its alias metaDataField, not both",
            )
        given = {key: alias for alias, key in SINK_ALIASES.items() if doc.get(alias) is not None}
        # Required properties first, so a missing region is the error a bare object gets.
        ordered = sorted(SINK_PROPS, key=lambda p: not p.required)
        values = {p.attr: p.read(r, env, key=given.get(p.key, "")) for p in ordered}
        cfg = cls(**values)
        cfg._validate(r)
        return cfg

    def _validate(self, r: Reader) -> None:
        if self.batch_max_bytes_size > self.payload_limit_bytes:
            kind = "synchronous" if self.synchronous_invocation else "asynchronous"
            raise ConfigError(
                r.name("batchMaxBytesSize"),
                self.batch_max_bytes_size,
                f"an integer from 1 to {self.payload_limit_bytes} (the Lambda payload limit "
                f"for {kind} invocations)",
            )
        if bool(self.aws_access_key) != bool(self.aws_secret_key):
            missing = "awsSecretKey" if self.aws_access_key else "awsAccessKey"
            raise ConfigError(
                r.name(missing),
                "",
                "awsAccessKey and awsSecretKey must be given together "
                f"(in the file or via {ENV_AWS_ACCESS_KEY}/{ENV_AWS_SECRET_KEY})",
                sensitive=True,
            )
        if self.invoke_backoff_max_ms < self.invoke_backoff_initial_ms:
            raise ConfigError(
                r.name("invokeBackoffMaxMs"),
                self.invoke_backoff_max_ms,
                f"an integer >= invokeBackoffInitialMs ({self.invoke_backoff_initial_ms})",
            )
        self._validate_plugin(r)

    def _validate_plugin(self, r: Reader) -> None:
        name = self.aws_credential_plugin_name
        key = _PLUGIN_ALIASES.get(name)
        if name and key is None and not _PYTHON_PLUGIN_RE.match(name):
            raise ConfigError(
                r.name("awsCredentialPluginName"),
                name,
                f"empty, {PLUGIN_DEFAULT_CHAIN}, {PLUGIN_STS_ASSUME_ROLE}, "
                "or a Python plugin as 'package.module:ClassName'",
            )
        if key == PLUGIN_STS_ASSUME_ROLE and self.aws_assume_role_arn:
            raise ConfigError(
                r.name("awsAssumeRoleArn"),
                self.aws_assume_role_arn,
                f"leave empty when awsCredentialPluginName is {PLUGIN_STS_ASSUME_ROLE} "
                "(its roleArn already names the role)",
            )
        param_name = r.name("awsCredentialPluginParam")
        text = self.aws_credential_plugin_param
        if not text:
            if key == PLUGIN_STS_ASSUME_ROLE:
                raise ConfigError(
                    param_name,
                    "",
                    'a JSON object {"roleArn": ..., "roleSessionName": ...} for the STS plugin',
                    sensitive=True,
                )
            return
        try:
            params = json.loads(text)
        except ValueError:
            params = None
        if not isinstance(params, dict):
            raise ConfigError(param_name, text, "a JSON object", sensitive=True)
        if key is None and name:  # a Python plugin: any JSON object
            return
        required, optional = _PLUGIN_PARAM_KEYS[key or ""]
        allowed = required | optional
        plugin_label = key or "the default (static keys) plugin"
        unknown = sorted(set(params) - allowed)
        missing = sorted(k for k in required if not _nonempty_str(params.get(k)))
        wrong_type = sorted(k for k in optional if k in params and not isinstance(params[k], str))
        if unknown or missing or wrong_type:
            expected = (
                "keys " + ", ".join(sorted(allowed)) if allowed else "no keys (use '' or '{}')"
            )
            raise ConfigError(
                param_name,
                text,
                f"a JSON object for {plugin_label} with {expected}"
                + (f"; required: {', '.join(sorted(required))}" if required else ""),
                sensitive=True,
            )


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
