"""The one typed configuration model of the runtime, validated once at start-up.

The `sink` section is exactly the reference connector's `--sink-config` object (camelCase keys,
same types and defaults) plus a few extensions; the `pulsar` and `runtime` sections describe the
consumer side and the worker process. Every problem raises `ConfigError(field, value, allowed)`;
secret values never appear in errors, `repr` or `redacted_dict()`.

Choices where the reference is silent:
- Payload limits use binary units, as AWS's quota page counts them: synchronous invocations
  6 MB = 6,291,456 bytes, asynchronous 1 MB = 1,048,576 bytes.
- Scalars are coerced like Pulsar's Jackson-based loader: "true"/"false" strings for booleans,
  numeric strings and integral floats for integers. Unknown keys are errors (typos must not
  pass silently); `null` means "use the default".
- `awsEndpoint` without a scheme gets `https://`, as the Java SDK's endpoint configuration does.
- `metadataFields` may be a comma-separated string or a list; the prose name `metaDataField` is
  accepted as an alias (giving both is an error). An empty value selects no metadata field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import yaml

from .errors import ConfigError

__all__ = [
    "ASYNC_PAYLOAD_LIMIT_BYTES",
    "DEFAULT_METADATA_FIELDS",
    "METADATA_FIELDS",
    "PLUGIN_DEFAULT_CHAIN",
    "PLUGIN_STS_ASSUME_ROLE",
    "SYNC_PAYLOAD_LIMIT_BYTES",
    "CircuitBreakerConfig",
    "FailurePolicyConfig",
    "PulsarAuth",
    "PulsarConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SinkConfig",
    "load_config",
]

SYNC_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT_BYTES = 1024 * 1024
INT32_MAX = 2**31 - 1
REDACTED = "<redacted>"

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

ENV_CONFIG = "LAMBDASINK_CONFIG"
ENV_HTTP_PORT = "LAMBDASINK_HTTP_PORT"
ENV_PULSAR_TOKEN = "LAMBDASINK_PULSAR_TOKEN"  # noqa: S105 - a variable name
ENV_AWS_ACCESS_KEY = "LAMBDASINK_AWS_ACCESS_KEY"
ENV_AWS_SECRET_KEY = "LAMBDASINK_AWS_SECRET_KEY"  # noqa: S105 - a variable name
ENV_AWS_CREDENTIAL_PLUGIN_PARAM = "LAMBDASINK_AWS_CREDENTIAL_PLUGIN_PARAM"

PayloadFormat = Literal["V1", "V2"]
SubscriptionType = Literal["Shared", "Failover", "Key_Shared", "Exclusive"]
InitialPosition = Literal["Earliest", "Latest"]
AuthKind = Literal["none", "token", "oauth2", "tls"]

_T = TypeVar("_T")


def _secret(default: str = "") -> Any:
    """A dataclass field hidden from repr and redacted in `redacted_dict()`."""
    return field(default=default, repr=False, metadata={"sensitive": True})


# --------------------------------------------------------------------------- value coercion


def _is_absent(value: object) -> bool:
    return value is None


def _as_str(name: str, value: object, *, sensitive: bool = False) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(name, value, "a string", sensitive=sensitive)


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(name, value, "a boolean (true/false, or the strings 'true'/'false')")


def _as_int(name: str, value: object, lo: int, hi: int = INT32_MAX) -> int:
    allowed = f"an integer from {lo} to {hi}"
    out: int
    if isinstance(value, bool):
        raise ConfigError(name, value, allowed)
    if isinstance(value, int):
        out = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)
    ):
        out = int(value)
    else:
        raise ConfigError(name, value, allowed)
    if not lo <= out <= hi:
        raise ConfigError(name, value, allowed)
    return out


def _as_float(name: str, value: object, lo: float) -> float:
    allowed = f"a number >= {lo:g}"
    if isinstance(value, bool):
        raise ConfigError(name, value, allowed)
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            raise ConfigError(name, value, allowed) from None
    else:
        raise ConfigError(name, value, allowed)
    if not out >= lo or out == float("inf"):
        raise ConfigError(name, value, allowed)
    return out


def _as_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Match case-insensitively and return the canonical spelling."""
    options = tuple(choices)
    if isinstance(value, str):
        for option in options:
            if value.strip().lower() == option.lower():
                return option
    raise ConfigError(name, value, "one of " + ", ".join(options))


def _as_mapping(name: str, value: object) -> Mapping[str, Any]:
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return cast(Mapping[str, Any], value)
    raise ConfigError(name, type(value).__name__, "a mapping with string keys")


def _check_keys(section: str, doc: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed_list = sorted(allowed)
    unknown = sorted(k for k in doc if k not in allowed_list)
    if unknown:
        name = f"{section}.{unknown[0]}" if section else unknown[0]
        raise ConfigError(name, unknown[0], "unknown key; allowed keys: " + ", ".join(allowed_list))


class _Reader:
    """Reads one section: typed getters that name `section.key` in every error."""

    def __init__(self, section: str, doc: Mapping[str, Any]) -> None:
        self.section = section
        self.doc = doc

    def name(self, key: str) -> str:
        return f"{self.section}.{key}" if self.section else key

    def get(self, key: str, conv: Callable[[str, object], _T], default: _T) -> _T:
        value = self.doc.get(key)
        if _is_absent(value):
            return default
        return conv(self.name(key), value)

    def text(self, key: str, default: str = "", *, sensitive: bool = False) -> str:
        value = self.doc.get(key)
        if _is_absent(value):
            return default
        return _as_str(self.name(key), value, sensitive=sensitive)

    def opt_str(self, key: str) -> str | None:
        value = self.doc.get(key)
        if _is_absent(value):
            return None
        out = _as_str(self.name(key), value).strip()
        return out or None

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, _as_bool, default)

    def integer(self, key: str, default: int, lo: int, hi: int = INT32_MAX) -> int:
        return self.get(key, lambda n, v: _as_int(n, v, lo, hi), default)


# --------------------------------------------------------------------------- sink


_SINK_KEYS = {
    # the reference's table
    "awsEndpoint": "aws_endpoint",
    "awsRegion": "aws_region",
    "awsAccessKey": "aws_access_key",
    "awsSecretKey": "aws_secret_key",
    "lambdaFunctionName": "lambda_function_name",
    "awsCredentialPluginName": "aws_credential_plugin_name",
    "awsCredentialPluginParam": "aws_credential_plugin_param",
    "synchronousInvocation": "synchronous_invocation",
    "payloadFormat": "payload_format",
    "metadataFields": "metadata_fields",
    "batchMaxSize": "batch_max_size",
    "batchMaxBytesSize": "batch_max_bytes_size",
    "batchMaxTimeMs": "batch_max_time_ms",
    # extensions
    "awsAssumeRoleArn": "aws_assume_role_arn",
    "awsAssumeRoleSessionName": "aws_assume_role_session_name",
    "awsAssumeRoleExternalId": "aws_assume_role_external_id",
    "maxInFlight": "max_in_flight",
    "invokeMaxRetries": "invoke_max_retries",
    "invokeBackoffInitialMs": "invoke_backoff_initial_ms",
    "invokeBackoffMaxMs": "invoke_backoff_max_ms",
    "invokeTimeoutMs": "invoke_timeout_ms",
}
_SINK_ALIASES = {"metaDataField": "metadataFields"}

#: Keys each credential plugin's JSON parameter takes: (required, optional).
_PLUGIN_PARAM_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "": (frozenset({"accessKey", "secretKey"}), frozenset()),
    PLUGIN_DEFAULT_CHAIN: (frozenset(), frozenset()),
    PLUGIN_STS_ASSUME_ROLE: (frozenset({"roleArn", "roleSessionName"}), frozenset({"externalId"})),
}


def _split_list(name: str, value: object, allowed: str) -> list[object]:
    """A list given as Pulsar IO writes it (comma-separated string) or as a YAML/JSON list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, list | tuple):
        return [part.strip() if isinstance(part, str) else part for part in value]
    raise ConfigError(name, value, allowed)


def _parse_metadata_fields(name: str, value: object) -> tuple[str, ...]:
    allowed = "a comma-separated string or list of: " + ", ".join(METADATA_FIELDS)
    out: list[str] = []
    for item in _split_list(name, value, allowed):
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
    return _as_str(name, value, sensitive=True)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """The reference connector's properties (and our extensions), typed and validated."""

    aws_region: str
    lambda_function_name: str
    aws_endpoint: str = ""
    aws_access_key: str = _secret()
    aws_secret_key: str = _secret()
    aws_credential_plugin_name: str = ""
    aws_credential_plugin_param: str = _secret()
    synchronous_invocation: bool = True
    payload_format: PayloadFormat = "V1"
    metadata_fields: tuple[str, ...] = DEFAULT_METADATA_FIELDS
    batch_max_size: int = 10
    batch_max_bytes_size: int = 262144
    batch_max_time_ms: int = 5000
    aws_assume_role_arn: str = ""
    aws_assume_role_session_name: str = "lambda-sink"
    aws_assume_role_external_id: str = _secret()
    max_in_flight: int = 4
    invoke_max_retries: int = 5
    invoke_backoff_initial_ms: int = 200
    invoke_backoff_max_ms: int = 20000
    invoke_timeout_ms: int = 60000

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
        doc = _as_mapping(section, doc)
        _check_keys(section, doc, [*_SINK_KEYS, *_SINK_ALIASES])
        r = _Reader(section, doc)
        env = env or {}

        if doc.get("metadataFields") is not None and doc.get("metaDataField") is not None:
            raise ConfigError(
                r.name("metaDataField"),
                doc["metaDataField"],
                "give either metadataFields or its alias metaDataField, not both",
            )
        meta_key = "metaDataField" if doc.get("metaDataField") is not None else "metadataFields"

        def secret(key: str, env_name: str) -> str:
            value = r.text(key, sensitive=True)
            if not value.strip():
                value = env.get(env_name, "") if env else ""
            return value.strip()

        region = r.text("awsRegion").strip()
        if not region:
            raise ConfigError(r.name("awsRegion"), doc.get("awsRegion"), "a non-empty AWS region")
        function = r.text("lambdaFunctionName").strip()
        if not function:
            raise ConfigError(
                r.name("lambdaFunctionName"),
                doc.get("lambdaFunctionName"),
                "a non-empty function name, ARN or partial ARN",
            )
        plugin_param_raw = doc.get("awsCredentialPluginParam")
        plugin_param = (
            ""
            if _is_absent(plugin_param_raw)
            else _plugin_param_text(r.name("awsCredentialPluginParam"), plugin_param_raw)
        )
        if not plugin_param.strip():
            plugin_param = env.get(ENV_AWS_CREDENTIAL_PLUGIN_PARAM, "")
        plugin_name = r.text("awsCredentialPluginName").strip()

        cfg = cls(
            aws_region=region,
            lambda_function_name=function,
            aws_endpoint=_endpoint(r.text("awsEndpoint").strip()),
            aws_access_key=secret("awsAccessKey", ENV_AWS_ACCESS_KEY),
            aws_secret_key=secret("awsSecretKey", ENV_AWS_SECRET_KEY),
            aws_credential_plugin_name=_PLUGIN_ALIASES.get(plugin_name, plugin_name),
            aws_credential_plugin_param=plugin_param.strip(),
            synchronous_invocation=r.flag("synchronousInvocation", True),
            payload_format=cast(
                PayloadFormat,
                r.get("payloadFormat", lambda n, v: _as_choice(n, v, ("V1", "V2")), "V1"),
            ),
            metadata_fields=r.get(meta_key, _parse_metadata_fields, DEFAULT_METADATA_FIELDS),
            batch_max_size=r.integer("batchMaxSize", 10, 1),
            batch_max_bytes_size=r.integer("batchMaxBytesSize", 262144, 1),
            batch_max_time_ms=r.integer("batchMaxTimeMs", 5000, 0),
            aws_assume_role_arn=r.text("awsAssumeRoleArn").strip(),
            aws_assume_role_session_name=r.text("awsAssumeRoleSessionName", "lambda-sink").strip()
            or "lambda-sink",
            aws_assume_role_external_id=r.text("awsAssumeRoleExternalId", sensitive=True).strip(),
            max_in_flight=r.integer("maxInFlight", 4, 1, 1024),
            invoke_max_retries=r.integer("invokeMaxRetries", 5, 0),
            invoke_backoff_initial_ms=r.integer("invokeBackoffInitialMs", 200, 0),
            invoke_backoff_max_ms=r.integer("invokeBackoffMaxMs", 20000, 0),
            invoke_timeout_ms=r.integer("invokeTimeoutMs", 60000, 1),
        )
        cfg._validate(r)
        return cfg

    def _validate(self, r: _Reader) -> None:
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

    def _validate_plugin(self, r: _Reader) -> None:
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


def _endpoint(url: str) -> str:
    """Like the Java SDK, an endpoint without a scheme means https."""
    return url if not url or "://" in url else f"https://{url}"


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --------------------------------------------------------------------------- pulsar


@dataclass(frozen=True, slots=True)
class PulsarAuth:
    """How the consumer authenticates to Pulsar, and the TLS transport settings.

    A token is resolved at load time from (in order) `authentication.token.value`/a literal
    string (discouraged), `authentication.token.env` (an env variable name) or the env variable
    LAMBDASINK_PULSAR_TOKEN; `token_file` is read when used (`read_token()`), so rotated files
    are picked up.
    """

    kind: AuthKind = "none"
    token: str = _secret()
    token_file: str = ""
    issuer_url: str = ""
    audience: str = ""
    scope: str = ""
    private_key: str = ""
    cert_file: str = ""
    key_file: str = ""
    trust_certs_file: str = ""
    allow_insecure_connection: bool = False
    hostname_verification: bool = False

    def read_token(self) -> str:
        """The current token (re-reading `token_file`); '' when the kind is not token."""
        if self.kind != "token":
            return ""
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token

    def http_headers(self) -> dict[str, str]:
        """Headers for the admin REST API (token auth only; others need the caller's help)."""
        token = self.read_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


_AUTH_KINDS = ("token", "oauth2", "tls")


def _parse_auth(
    section: str, auth_doc: object, pulsar: _Reader, env: Mapping[str, str]
) -> PulsarAuth:
    return replace(
        _parse_auth_kind(section, auth_doc, env),
        trust_certs_file=pulsar.text("tlsTrustCertsFile").strip(),
        allow_insecure_connection=pulsar.flag("tlsAllowInsecureConnection", False),
        hostname_verification=pulsar.flag("tlsHostnameVerification", False),
    )


def _parse_auth_kind(section: str, auth_doc: object, env: Mapping[str, str]) -> PulsarAuth:
    if _is_absent(auth_doc) or auth_doc == {}:
        token = env.get(ENV_PULSAR_TOKEN, "").strip()
        if token:
            return PulsarAuth(kind="token", token=token)
        return PulsarAuth()
    doc = _as_mapping(section, auth_doc)
    _check_keys(section, doc, _AUTH_KINDS)
    given = [k for k in _AUTH_KINDS if doc.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(
            section, ",".join(given) or "nothing", "exactly one of token, oauth2, tls"
        )
    kind = given[0]
    name = f"{section}.{kind}"
    if kind == "token":
        tok = doc["token"]
        if isinstance(tok, str):  # a literal token: accepted, discouraged
            if not tok.strip():
                raise ConfigError(
                    name, "", "a token, or {file: path} / {env: NAME}", sensitive=True
                )
            return PulsarAuth(kind="token", token=tok.strip())
        t = _Reader(name, _as_mapping(name, tok))
        _check_keys(name, t.doc, ("file", "env", "value"))
        file_ = t.text("file").strip()
        value = t.text("value", sensitive=True).strip()
        env_name = t.text("env").strip()
        if sum(bool(x) for x in (file_, value, env_name)) > 1:
            raise ConfigError(name, "several sources", "exactly one of file, env, value")
        if env_name:
            value = env.get(env_name, "").strip()
            if not value:
                raise ConfigError(f"{name}.env", env_name, "the name of a set, non-empty variable")
        elif not file_ and not value:
            value = env.get(ENV_PULSAR_TOKEN, "").strip()
            if not value:
                raise ConfigError(
                    name, "", f"file, env or value, or the variable {ENV_PULSAR_TOKEN}"
                )
        return PulsarAuth(kind="token", token=value, token_file=file_)
    if kind == "oauth2":
        o = _Reader(name, _as_mapping(name, doc["oauth2"]))
        _check_keys(name, o.doc, ("issuerUrl", "audience", "scope", "privateKey"))
        issuer = o.text("issuerUrl").strip()
        key = o.text("privateKey").strip()
        if not issuer:
            raise ConfigError(o.name("issuerUrl"), issuer, "the OAuth2 issuer URL")
        if not key:
            raise ConfigError(
                o.name("privateKey"), key, "the path (or file:// URL) of the credentials JSON file"
            )
        return PulsarAuth(
            kind="oauth2",
            issuer_url=issuer,
            audience=o.text("audience").strip(),
            scope=o.text("scope").strip(),
            private_key=key,
        )
    c = _Reader(name, _as_mapping(name, doc["tls"]))
    _check_keys(name, c.doc, ("certFile", "keyFile"))
    cert, keyf = c.text("certFile").strip(), c.text("keyFile").strip()
    if not cert or not keyf:
        missing = "certFile" if not cert else "keyFile"
        raise ConfigError(c.name(missing), "", "the path of the client certificate / key (PEM)")
    return PulsarAuth(kind="tls", cert_file=cert, key_file=keyf)


_PULSAR_KEYS = (
    "serviceUrl",
    "adminUrl",
    "topics",
    "inputs",
    "topicsPattern",
    "subscriptionName",
    "subscriptionType",
    "subscriptionInitialPosition",
    "deadLetterTopic",
    "maxRedeliverCount",
    "negativeAckRedeliveryDelayMs",
    "receiverQueueSize",
    "authentication",
    "tlsTrustCertsFile",
    "tlsAllowInsecureConnection",
    "tlsHostnameVerification",
)


def _parse_topics(name: str, value: object) -> tuple[str, ...]:
    allowed = "a non-empty list of topic names (or a comma-separated string)"
    out: list[str] = []
    for topic in _split_list(name, value, allowed):
        if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
            raise ConfigError(name, topic, allowed)
        if topic not in out:
            out.append(topic)
    if not out:
        raise ConfigError(name, value, allowed)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PulsarConfig:
    """Where and how the worker consumes."""

    service_url: str = "pulsar://localhost:6650"
    admin_url: str = "http://localhost:8080"
    topics: tuple[str, ...] = ()
    topics_pattern: str | None = None
    subscription_name: str = "lambda-sink"
    subscription_type: SubscriptionType = "Shared"
    initial_position: InitialPosition = "Latest"
    dead_letter_topic: str | None = None
    max_redeliver_count: int = 0
    negative_ack_redelivery_delay_ms: int = 60000
    receiver_queue_size: int = 1000
    auth: PulsarAuth = field(default_factory=PulsarAuth)

    @property
    def dead_letter_requested(self) -> bool:
        """The reference's way of asking for dead letters: a DLQ topic or a redelivery cap."""
        return self.max_redeliver_count > 0 or self.dead_letter_topic is not None

    def dead_letter_topic_for(self, topic: str) -> str:
        """The DLQ a message of `topic` goes to: the configured one or Pulsar's default name."""
        return (
            self.dead_letter_topic
            or f"{_PARTITION_SUFFIX.sub('', topic)}-{self.subscription_name}-DLQ"
        )

    @property
    def namespace(self) -> str:
        """`persistent://tenant/namespace` of the first topic (or the pattern)."""
        first = self.topics[0] if self.topics else (self.topics_pattern or "")
        return _namespace_of(first)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> PulsarConfig:
        section = "pulsar"
        doc = _as_mapping(section, doc)
        _check_keys(section, doc, _PULSAR_KEYS)
        r = _Reader(section, doc)
        env = env or {}
        if doc.get("topics") is not None and doc.get("inputs") is not None:
            raise ConfigError(r.name("inputs"), doc["inputs"], "give topics or inputs, not both")
        topics_key = "inputs" if doc.get("inputs") is not None else "topics"
        no_topics: tuple[str, ...] = ()
        topics = r.get(topics_key, _parse_topics, no_topics)
        pattern = r.opt_str("topicsPattern")
        if bool(topics) == bool(pattern):
            raise ConfigError(
                r.name("topics"),
                "both" if topics else "neither",
                "exactly one of pulsar.topics (or inputs) and pulsar.topicsPattern",
            )
        if pattern is not None:
            try:
                re.compile(pattern.split("/")[-1])
            except re.error:
                raise ConfigError(r.name("topicsPattern"), pattern, "a valid regex") from None
        subscription = r.text("subscriptionName", "lambda-sink").strip()
        if not subscription:
            raise ConfigError(r.name("subscriptionName"), subscription, "a non-empty name")
        max_redeliver = r.integer("maxRedeliverCount", 0, 0)
        dlq = r.opt_str("deadLetterTopic")
        service_url = r.text("serviceUrl", "pulsar://localhost:6650").strip()
        if not re.match(r"^pulsar(\+ssl)?://", service_url):
            raise ConfigError(r.name("serviceUrl"), service_url, "a pulsar:// or pulsar+ssl:// URL")
        admin_url = r.text("adminUrl", "http://localhost:8080").strip().rstrip("/")
        if not re.match(r"^https?://", admin_url):
            raise ConfigError(r.name("adminUrl"), admin_url, "an http:// or https:// URL")
        return cls(
            service_url=service_url,
            admin_url=admin_url,
            topics=topics,
            topics_pattern=pattern,
            subscription_name=subscription,
            subscription_type=cast(
                SubscriptionType,
                r.get(
                    "subscriptionType",
                    lambda n, v: _as_choice(
                        n, v, ("Shared", "Failover", "Key_Shared", "Exclusive")
                    ),
                    "Shared",
                ),
            ),
            initial_position=cast(
                InitialPosition,
                r.get(
                    "subscriptionInitialPosition",
                    lambda n, v: _as_choice(n, v, ("Earliest", "Latest")),
                    "Latest",
                ),
            ),
            dead_letter_topic=dlq,
            max_redeliver_count=max_redeliver,
            negative_ack_redelivery_delay_ms=r.integer("negativeAckRedeliveryDelayMs", 60000, 0),
            receiver_queue_size=r.integer("receiverQueueSize", 1000, 1),
            auth=_parse_auth(r.name("authentication"), doc.get("authentication"), r, env),
        )


# --------------------------------------------------------------------------- runtime / server


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The worker process: health/metrics endpoint, logging, shutdown drain."""

    http_host: str = "0.0.0.0"  # noqa: S104 - the pod's probe/metrics endpoint
    http_port: int = 8081
    log_level: str = "INFO"
    drain_timeout_s: float = 30.0

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        section = "runtime"
        doc = _as_mapping(section, doc)
        _check_keys(section, doc, ("httpHost", "httpPort", "logLevel", "drainTimeoutSeconds"))
        r = _Reader(section, doc)
        env = env or {}
        port = r.integer("httpPort", 8081, 0, 65535)
        if env.get(ENV_HTTP_PORT, "").strip():
            port = _as_int(ENV_HTTP_PORT, env[ENV_HTTP_PORT], 0, 65535)
        level = r.get("logLevel", lambda n, v: _as_choice(n, v, _LOG_LEVELS), "INFO")
        return cls(
            http_host=r.text("httpHost", "0.0.0.0").strip() or "0.0.0.0",  # noqa: S104
            http_port=port,
            log_level=level,
            drain_timeout_s=r.get("drainTimeoutSeconds", lambda n, v: _as_float(n, v, 0.0), 30.0),
        )


# --------------------------------------------------------------------------- failure policy


OnExhausted = Literal["deadLetter", "drop", "block"]
_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")


def _namespace_of(topic: str) -> str:
    """`persistent://tenant/ns` of a full or short topic name (short names: public/default)."""
    m = re.match(r"^(persistent|non-persistent)://([^/]+)/([^/]+)/", topic)
    if m:
        return f"{m.group(1)}://{m.group(2)}/{m.group(3)}"
    return "persistent://public/default"


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """When most calls fail for lack of a working function, stop pulling instead of burning
    every record's attempts (function down, permission revoked, region outage)."""

    enabled: bool = True
    failure_ratio: float = 0.5
    minimum_calls: int = 10
    window_ms: int = 30000
    probe_interval_initial_ms: int = 1000
    probe_interval_max_ms: int = 60000

    @classmethod
    def from_mapping(cls, section: str, doc: Mapping[str, Any]) -> CircuitBreakerConfig:
        doc = _as_mapping(section, doc)
        _check_keys(section, doc, _BREAKER_KEYS)
        r = _Reader(section, doc)
        ratio = r.get("failureRatio", lambda n, v: _as_float(n, v, 0.0), 0.5)
        if not 0 < ratio <= 1:
            raise ConfigError(r.name("failureRatio"), ratio, "a number in (0, 1]")
        initial = r.integer("probeIntervalInitialMs", 1000, 1)
        most = r.integer("probeIntervalMaxMs", 60000, 1)
        if most < initial:
            raise ConfigError(
                r.name("probeIntervalMaxMs"), most, f"at least probeIntervalInitialMs ({initial})"
            )
        return cls(
            enabled=r.flag("enabled", True),
            failure_ratio=ratio,
            minimum_calls=r.integer("minimumCalls", 10, 1),
            window_ms=r.integer("windowMs", 30000, 1000),
            probe_interval_initial_ms=initial,
            probe_interval_max_ms=most,
        )


_BREAKER_KEYS = (
    "enabled",
    "failureRatio",
    "minimumCalls",
    "windowMs",
    "probeIntervalInitialMs",
    "probeIntervalMaxMs",
)
_FAILURE_KEYS = (
    "maxAttempts",
    "onExhausted",
    "maxRecordAgeMs",
    "retryBackoffInitialMs",
    "retryBackoffMaxMs",
    "reportBatchItemFailures",
    "bisectOnFunctionError",
    "attemptsTopic",
    "circuitBreaker",
)
#: maxAttempts when neither it nor the reference's pulsar.maxRedeliverCount is given.
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class FailurePolicyConfig:
    """What happens to a record whose invocations fail: lambda-sink's own policy, counted
    durably (attemptsTopic) and applied on every subscription type.

    Defaults follow the reference's settings where it has them: `maxAttempts` is
    pulsar.maxRedeliverCount + 1 when that is set (the first delivery plus its redeliveries),
    else 3; `onExhausted` is deadLetter when pulsar.deadLetterTopic or maxRedeliverCount is
    set, else block (never a silent gap).
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    on_exhausted: OnExhausted = "block"
    max_record_age_ms: int = 0
    retry_backoff_initial_ms: int = 1000
    retry_backoff_max_ms: int = 30000
    report_batch_item_failures: bool = False
    bisect_on_function_error: bool = False
    attempts_topic: str = ""
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], pulsar: PulsarConfig, sink: SinkConfig
    ) -> FailurePolicyConfig:
        section = "failurePolicy"
        doc = _as_mapping(section, doc)
        _check_keys(section, doc, _FAILURE_KEYS)
        r = _Reader(section, doc)
        default_attempts = (
            pulsar.max_redeliver_count + 1
            if pulsar.max_redeliver_count > 0
            else DEFAULT_MAX_ATTEMPTS
        )
        default_outcome = "deadLetter" if pulsar.dead_letter_requested else "block"
        outcome = cast(
            OnExhausted,
            r.get(
                "onExhausted",
                lambda n, v: _as_choice(n, v, ("deadLetter", "drop", "block")),
                default_outcome,
            ),
        )
        max_age = r.integer("maxRecordAgeMs", 0, 0)
        if max_age and outcome == "block":
            raise ConfigError(
                r.name("maxRecordAgeMs"),
                max_age,
                "0 with failurePolicy.onExhausted block (a blocked record is never given up); "
                "use deadLetter or drop to expire old records",
            )
        initial = r.integer("retryBackoffInitialMs", 1000, 0)
        most = r.integer("retryBackoffMaxMs", 30000, 0)
        if most < initial:
            raise ConfigError(
                r.name("retryBackoffMaxMs"), most, f"at least retryBackoffInitialMs ({initial})"
            )
        partial = r.flag("reportBatchItemFailures", False)
        if partial and not sink.synchronous_invocation:
            raise ConfigError(
                r.name("reportBatchItemFailures"),
                True,
                "false with sink.synchronousInvocation false (an asynchronous invocation "
                "returns no response to read failures from)",
            )
        topic = r.text("attemptsTopic", "").strip()
        if not topic:
            topic = f"{pulsar.namespace}/{pulsar.subscription_name}-lambdasink-attempts"
        for name, value in (("attemptsTopic", topic),):
            if pulsar.topics_pattern and re.fullmatch(
                pulsar.topics_pattern.split("/")[-1], value.split("/")[-1]
            ):
                raise ConfigError(
                    r.name(name), value, "a topic that pulsar.topicsPattern does not match"
                )
        return cls(
            max_attempts=r.integer("maxAttempts", default_attempts, 1),
            on_exhausted=outcome,
            max_record_age_ms=max_age,
            retry_backoff_initial_ms=initial,
            retry_backoff_max_ms=most,
            report_batch_item_failures=partial,
            bisect_on_function_error=r.flag("bisectOnFunctionError", False),
            attempts_topic=topic,
            circuit_breaker=CircuitBreakerConfig.from_mapping(
                r.name("circuitBreaker"), doc.get("circuitBreaker") or {}
            ),
        )


# --------------------------------------------------------------------------- whole document


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """The whole worker configuration: the `pulsar`, `sink`, `runtime` and `failurePolicy`
    sections."""

    pulsar: PulsarConfig
    sink: SinkConfig
    runtime: ServerConfig = field(default_factory=ServerConfig)
    failure: FailurePolicyConfig = field(default_factory=FailurePolicyConfig)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> RuntimeConfig:
        """Validate a whole document; `env` (default: none) supplies secrets and overrides."""
        doc = _as_mapping("(document)", doc)
        _check_keys("", doc, ("pulsar", "sink", "runtime", "failurePolicy"))
        env = env if env is not None else {}
        if doc.get("sink") is None:
            raise ConfigError("sink", None, "the sink section (a --sink-config object)")
        sink_doc: object = doc["sink"]
        if isinstance(sink_doc, str):  # the --sink-config JSON string itself
            try:
                sink_doc = json.loads(sink_doc)
            except ValueError:
                raise ConfigError("sink", "<unparsable JSON>", "a JSON object") from None
        pulsar = PulsarConfig.from_mapping(doc.get("pulsar") or {}, env=env)
        sink = SinkConfig.from_mapping(_as_mapping("sink", sink_doc), env=env)
        if pulsar.topics_pattern:
            probe = pulsar.dead_letter_topic_for(pulsar.namespace + "/x")
            if pulsar.dead_letter_topic and re.fullmatch(
                pulsar.topics_pattern.split("/")[-1], probe.split("/")[-1]
            ):
                raise ConfigError(
                    "pulsar.deadLetterTopic",
                    probe,
                    "a topic that pulsar.topicsPattern does not match",
                )
        failure = FailurePolicyConfig.from_mapping(doc.get("failurePolicy") or {}, pulsar, sink)
        if failure.report_batch_item_failures and "messageId" not in sink.metadata_fields:
            # The function names failed items by messageId, so V2 items always carry it then.
            sink = replace(sink, metadata_fields=(*sink.metadata_fields, "messageId"))
        return cls(
            pulsar=pulsar,
            sink=sink,
            runtime=ServerConfig.from_mapping(doc.get("runtime") or {}, env=env),
            failure=failure,
        )

    def redacted_dict(self) -> dict[str, Any]:
        """Everything, for a start-up log line; non-empty secrets replaced by '<redacted>'."""
        return cast(dict[str, Any], _redact(self))


def _redact(obj: object) -> object:
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("sensitive"):
                out[f.name] = REDACTED if value else ""
            else:
                out[f.name] = _redact(value)
        return out
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _parse_document(text: str, origin: str) -> Mapping[str, Any]:
    """JSON first (exact), then YAML; never echo the text (it may hold secrets)."""
    try:
        doc: object = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(origin, f"<unparsable{where}>", "a JSON or YAML document") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(origin, type(doc).__name__, "a mapping with pulsar, sink, runtime")
    return cast(Mapping[str, Any], doc)


def load_config(path: str | None, *, env: Mapping[str, str] = os.environ) -> RuntimeConfig:
    """Read the configuration from a YAML/JSON file, or from env LAMBDASINK_CONFIG when no path."""
    if path is None:
        text = env.get(ENV_CONFIG, "")
        if not text.strip():
            raise ConfigError(
                ENV_CONFIG, None, "a config file path, or the document in this variable"
            )
        return RuntimeConfig.from_mapping(_parse_document(text, ENV_CONFIG), env=env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config file", path, f"a readable file ({exc.strerror})") from None
    return RuntimeConfig.from_mapping(_parse_document(text, path), env=env)
