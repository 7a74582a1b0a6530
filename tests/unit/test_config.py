"""The configuration model: the reference's property table, our extensions, every error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdasink_runtime.config import (
    ASYNC_PAYLOAD_LIMIT_BYTES,
    PLUGIN_DEFAULT_CHAIN,
    PLUGIN_STS_ASSUME_ROLE,
    SYNC_PAYLOAD_LIMIT_BYTES,
    PulsarConfig,
    RuntimeConfig,
    ServerConfig,
    SinkConfig,
    load_config,
)
from lambdasink_runtime.errors import ConfigError

MIN_SINK = {"awsRegion": "us-west-2", "lambdaFunctionName": "my-fn"}
SECRET = "S3cr3t-Value-Never-Shown"


def sink(**extra: Any) -> SinkConfig:
    return SinkConfig.from_mapping({**MIN_SINK, **extra})


def sink_error(doc: dict[str, Any], **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        SinkConfig.from_mapping(doc, **kw)
    return info.value


def doc(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pulsar": {"topics": ["persistent://public/default/in"]},
        "sink": MIN_SINK,
    }
    base.update(sections)
    return base


# --------------------------------------------------------------------------- reference table


def test_reference_defaults() -> None:
    cfg = sink()
    assert cfg.aws_endpoint == ""
    assert cfg.aws_region == "us-west-2"
    assert cfg.aws_access_key == ""
    assert cfg.aws_secret_key == ""
    assert cfg.lambda_function_name == "my-fn"
    assert cfg.aws_credential_plugin_name == ""
    assert cfg.aws_credential_plugin_param == ""
    assert cfg.synchronous_invocation is True
    assert cfg.payload_format == "V1"
    assert cfg.metadata_fields == (
        "topic",
        "key",
        "partitionIndex",
        "sequence",
        "properties",
        "eventTime",
    )
    assert cfg.batch_max_size == 10
    assert cfg.batch_max_bytes_size == 262144
    assert cfg.batch_max_time_ms == 5000


def test_extension_defaults() -> None:
    cfg = sink()
    assert cfg.aws_assume_role_arn == ""
    assert cfg.aws_assume_role_session_name == "lambda-sink"
    assert cfg.aws_assume_role_external_id == ""
    assert cfg.max_in_flight == 4
    assert cfg.invoke_max_retries == 5
    assert cfg.invoke_backoff_initial_ms == 200
    assert cfg.invoke_backoff_max_ms == 20000
    assert cfg.invoke_timeout_ms == 60000


def test_readme_example_sink_config() -> None:
    """The reference's quick-start `--sink-config` (with its missing comma fixed)."""
    cfg = SinkConfig.from_mapping(
        json.loads(
            '{"awsAccessKey": "AKIA", "awsSecretKey": "sk", "awsRegion": "us-east-1",'
            ' "lambdaFunctionName": "fn", "payloadFormat": "V2"}'
        )
    )
    assert (cfg.aws_access_key, cfg.aws_secret_key, cfg.payload_format) == ("AKIA", "sk", "V2")


def test_every_property_set() -> None:
    cfg = sink(
        awsEndpoint="http://127.0.0.1:9001",
        awsAccessKey="AK",
        awsSecretKey="SK",
        synchronousInvocation=False,
        payloadFormat="V2",
        metadataFields="topic,messageId,publishTime",
        batchMaxSize=1,
        batchMaxBytesSize=1000,
        batchMaxTimeMs=0,
        awsAssumeRoleArn="arn:aws:iam::1:role/r",
        awsAssumeRoleSessionName="s",
        awsAssumeRoleExternalId="ext",
        maxInFlight=16,
        invokeMaxRetries=0,
        invokeBackoffInitialMs=0,
        invokeBackoffMaxMs=0,
        invokeTimeoutMs=1,
    )
    assert cfg.aws_endpoint == "http://127.0.0.1:9001"
    assert cfg.synchronous_invocation is False
    assert cfg.metadata_fields == ("topic", "messageId", "publishTime")
    assert (cfg.batch_max_size, cfg.batch_max_bytes_size, cfg.batch_max_time_ms) == (1, 1000, 0)
    assert cfg.aws_assume_role_arn == "arn:aws:iam::1:role/r"
    assert cfg.aws_assume_role_session_name == "s"
    assert cfg.aws_assume_role_external_id == "ext"
    assert (cfg.max_in_flight, cfg.invoke_max_retries) == (16, 0)
    assert (cfg.invoke_backoff_initial_ms, cfg.invoke_backoff_max_ms) == (0, 0)
    assert cfg.invoke_timeout_ms == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("lambda.us-west-2.amazonaws.com", "https://lambda.us-west-2.amazonaws.com"),
        ("http://127.0.0.1:9070", "http://127.0.0.1:9070"),
        (" ", ""),
    ],
)
def test_aws_endpoint_without_scheme_is_https(given: str, expected: str) -> None:
    assert sink(awsEndpoint=given).aws_endpoint == expected


def test_payload_limits_are_binary_megabytes() -> None:
    assert SYNC_PAYLOAD_LIMIT_BYTES == 6_291_456
    assert ASYNC_PAYLOAD_LIMIT_BYTES == 1_048_576
    assert sink().payload_limit_bytes == 6_291_456
    assert sink(synchronousInvocation=False).payload_limit_bytes == 1_048_576


# --------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("TRUE", True),
        (" False ", False),
    ],
)
def test_booleans_as_pulsar_accepts_them(given: object, expected: bool) -> None:
    assert sink(synchronousInvocation=given).synchronous_invocation is expected


@pytest.mark.parametrize("given", ["yes", 1, 0, "1", [], 1.0])
def test_bad_boolean(given: object) -> None:
    err = sink_error({**MIN_SINK, "synchronousInvocation": given})
    assert err.field == "sink.synchronousInvocation"
    assert "boolean" in str(err)


@pytest.mark.parametrize(
    ("given", "expected"), [(7, 7), ("7", 7), (" 12 ", 12), (3.0, 3), ("+5", 5)]
)
def test_integers_as_pulsar_accepts_them(given: object, expected: int) -> None:
    assert sink(batchMaxSize=given).batch_max_size == expected


@pytest.mark.parametrize("given", [0, -1, "0", "ten", 2.5, True, {}, [1], 2**31])
def test_bad_batch_max_size(given: object) -> None:
    err = sink_error({**MIN_SINK, "batchMaxSize": given})
    assert err.field == "sink.batchMaxSize"
    assert err.allowed == "an integer from 1 to 2147483647"


def test_batch_max_size_zero_message_names_field_value_and_range() -> None:
    err = sink_error({**MIN_SINK, "batchMaxSize": 0})
    assert str(err) == "sink.batchMaxSize: 0 is not valid; an integer from 1 to 2147483647"


def test_null_means_default() -> None:
    cfg = sink(batchMaxSize=None, payloadFormat=None, awsEndpoint=None, metadataFields=None)
    assert (cfg.batch_max_size, cfg.payload_format, cfg.aws_endpoint) == (10, "V1", "")
    assert cfg.metadata_fields[0] == "topic"


def test_numeric_function_name_from_yaml_is_a_string() -> None:
    assert sink(lambdaFunctionName=123).lambda_function_name == "123"


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize("fmt", ["V3", "v3", "", 2, "JSON"])
def test_payload_format_v3_rejected(fmt: object) -> None:
    err = sink_error({**MIN_SINK, "payloadFormat": fmt})
    assert err.field == "sink.payloadFormat"
    assert err.allowed == "one of V1, V2"


def test_payload_format_case_insensitive() -> None:
    assert sink(payloadFormat="v2").payload_format == "V2"


@pytest.mark.parametrize("key", ["awsRegion", "lambdaFunctionName"])
@pytest.mark.parametrize("value", [None, "", " "])
def test_required_properties(key: str, value: object) -> None:
    d: dict[str, Any] = dict(MIN_SINK)
    if value is None:
        del d[key]
    else:
        d[key] = value
    assert sink_error(d).field == f"sink.{key}"


def test_unknown_key_lists_allowed_keys() -> None:
    err = sink_error({**MIN_SINK, "batchMaxSzie": 5})
    assert err.field == "sink.batchMaxSzie"
    assert "allowed keys:" in err.allowed
    for key in ("awsEndpoint", "batchMaxSize", "metadataFields", "maxInFlight"):
        assert key in err.allowed


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        SinkConfig.from_mapping(["awsRegion"])  # type: ignore[arg-type]
    assert info.value.field == "sink"


@pytest.mark.parametrize("value", [0, -5, "x"])
def test_batch_max_bytes_size_bounds(value: object) -> None:
    assert sink_error({**MIN_SINK, "batchMaxBytesSize": value}).field == "sink.batchMaxBytesSize"


def test_batch_max_bytes_size_above_sync_limit() -> None:
    assert sink(batchMaxBytesSize=6_291_456).batch_max_bytes_size == 6_291_456
    err = sink_error({**MIN_SINK, "batchMaxBytesSize": 6_291_457})
    assert err.field == "sink.batchMaxBytesSize"
    assert "6291456" in err.allowed
    assert "synchronous" in err.allowed


def test_batch_max_bytes_size_above_async_limit() -> None:
    assert sink(synchronousInvocation=False, batchMaxBytesSize=1_048_576)
    err = sink_error({**MIN_SINK, "synchronousInvocation": "false", "batchMaxBytesSize": 1_048_577})
    assert err.field == "sink.batchMaxBytesSize"
    assert "1048576" in err.allowed
    assert "asynchronous" in err.allowed


def test_batch_max_time_ms_negative() -> None:
    assert sink_error({**MIN_SINK, "batchMaxTimeMs": -1}).field == "sink.batchMaxTimeMs"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("maxInFlight", 0),
        ("invokeMaxRetries", -1),
        ("invokeBackoffInitialMs", -1),
        ("invokeTimeoutMs", 0),
    ],
)
def test_extension_bounds(key: str, value: int) -> None:
    assert sink_error({**MIN_SINK, key: value}).field == f"sink.{key}"


def test_backoff_max_below_initial() -> None:
    err = sink_error({**MIN_SINK, "invokeBackoffInitialMs": 500, "invokeBackoffMaxMs": 100})
    assert err.field == "sink.invokeBackoffMaxMs"


# --------------------------------------------------------------------------- metadata fields


def test_metadata_fields_list_and_string() -> None:
    assert sink(metadataFields=["key", "topic"]).metadata_fields == ("key", "topic")
    assert sink(metadataFields=" key , topic ,,key").metadata_fields == ("key", "topic")


def test_metadata_fields_empty_selects_none() -> None:
    assert sink(metadataFields="").metadata_fields == ()


def test_metadata_fields_every_allowed_name() -> None:
    names = "topic,key,partitionIndex,sequence,properties,eventTime,messageId,publishTime"
    assert sink(metadataFields=names).metadata_fields == tuple(names.split(","))


def test_metadata_field_prose_alias() -> None:
    assert sink(metaDataField="topic,messageId").metadata_fields == ("topic", "messageId")


def test_metadata_field_alias_and_name_together() -> None:
    err = sink_error({**MIN_SINK, "metaDataField": "topic", "metadataFields": "key"})
    assert err.field == "sink.metaDataField"


@pytest.mark.parametrize("value", ["topic,offset", ["topic", 3], 5, "Topic"])
def test_unknown_metadata_field(value: object) -> None:
    err = sink_error({**MIN_SINK, "metadataFields": value})
    assert err.field == "sink.metadataFields"
    assert "publishTime" in err.allowed


# --------------------------------------------------------------------------- credentials


def test_access_key_without_secret_key() -> None:
    err = sink_error({**MIN_SINK, "awsAccessKey": SECRET})
    assert err.field == "sink.awsSecretKey"
    assert SECRET not in str(err)


def test_secret_key_without_access_key() -> None:
    err = sink_error({**MIN_SINK, "awsSecretKey": SECRET})
    assert err.field == "sink.awsAccessKey"
    assert SECRET not in str(err)


def test_sensitive_values_from_env_when_absent_or_empty() -> None:
    env = {
        "LAMBDASINK_AWS_ACCESS_KEY": "AK-env",
        "LAMBDASINK_AWS_SECRET_KEY": "SK-env",
        "LAMBDASINK_AWS_CREDENTIAL_PLUGIN_PARAM": '{"accessKey":"a","secretKey":"b"}',
    }
    cfg = SinkConfig.from_mapping({**MIN_SINK, "awsAccessKey": ""}, env=env)
    assert (cfg.aws_access_key, cfg.aws_secret_key) == ("AK-env", "SK-env")
    assert cfg.credential_plugin_params == {"accessKey": "a", "secretKey": "b"}


def test_file_values_win_over_env() -> None:
    env = {"LAMBDASINK_AWS_ACCESS_KEY": "AK-env", "LAMBDASINK_AWS_SECRET_KEY": "SK-env"}
    cfg = SinkConfig.from_mapping({**MIN_SINK, "awsAccessKey": "A", "awsSecretKey": "S"}, env=env)
    assert (cfg.aws_access_key, cfg.aws_secret_key) == ("A", "S")


def test_no_env_read_without_env_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASINK_AWS_ACCESS_KEY", "AK-env")
    assert sink().aws_access_key == ""


def test_secrets_hidden_from_repr() -> None:
    cfg = sink(
        awsAccessKey=SECRET + "A",
        awsSecretKey=SECRET + "B",
        awsCredentialPluginParam='{"accessKey":"' + SECRET + '","secretKey":"x"}',
        awsAssumeRoleExternalId=SECRET + "C",
    )
    assert SECRET not in repr(cfg)
    assert "us-west-2" in repr(cfg)


@pytest.mark.parametrize(
    "name", ["", PLUGIN_DEFAULT_CHAIN, "mypkg.plugins:MyProvider", "plugin:Cls"]
)
def test_credential_plugin_names_allowed(name: str) -> None:
    assert sink(awsCredentialPluginName=name).aws_credential_plugin_name == name


def test_legacy_kinesis_plugin_names_are_normalised() -> None:
    cfg = sink(
        awsCredentialPluginName="org.apache.pulsar.io.kinesis.STSAssumeRoleProviderPlugin",
        awsCredentialPluginParam='{"roleArn":"arn:aws:iam::1:role/r","roleSessionName":"s"}',
    )
    assert cfg.aws_credential_plugin_name == PLUGIN_STS_ASSUME_ROLE


@pytest.mark.parametrize(
    "name", ["org.example.MyPlugin", "com.amazonaws.auth.DefaultAWSCredentialsProviderChain", "x y"]
)
def test_unknown_credential_plugin(name: str) -> None:
    err = sink_error({**MIN_SINK, "awsCredentialPluginName": name})
    assert err.field == "sink.awsCredentialPluginName"
    assert PLUGIN_STS_ASSUME_ROLE in err.allowed
    assert "module:ClassName" in err.allowed


def test_sts_plugin_params() -> None:
    cfg = sink(
        awsCredentialPluginName=PLUGIN_STS_ASSUME_ROLE,
        awsCredentialPluginParam='{"roleArn":"arn:aws:iam::1:role/r","roleSessionName":"s",'
        '"externalId":"e"}',
    )
    assert cfg.credential_plugin_params["externalId"] == "e"


def test_plugin_param_as_mapping_is_reencoded() -> None:
    cfg = sink(
        awsCredentialPluginName=PLUGIN_STS_ASSUME_ROLE,
        awsCredentialPluginParam={"roleArn": "arn:aws:iam::1:role/r", "roleSessionName": "s"},
    )
    assert json.loads(cfg.aws_credential_plugin_param)["roleSessionName"] == "s"


@pytest.mark.parametrize(
    "param",
    [
        "",
        "not json",
        "[1]",
        '{"roleArn":"arn"}',
        '{"roleArn":"arn","roleSessionName":""}',
        '{"roleArn":"arn","roleSessionName":"s","role":"typo"}',
        '{"roleArn":"arn","roleSessionName":"s","externalId":5}',
    ],
)
def test_sts_plugin_bad_params(param: str) -> None:
    err = sink_error(
        {
            **MIN_SINK,
            "awsCredentialPluginName": PLUGIN_STS_ASSUME_ROLE,
            "awsCredentialPluginParam": param + SECRET if param == "not json" else param,
        }
    )
    assert err.field == "sink.awsCredentialPluginParam"
    assert SECRET not in str(err)
    assert "<redacted>" in str(err)


@pytest.mark.parametrize("param", ['{"accessKey":"a"}', '{"accessKey":"a","secretKey":"b","x":1}'])
def test_default_plugin_params_need_both_keys(param: str) -> None:
    err = sink_error({**MIN_SINK, "awsCredentialPluginParam": param})
    assert err.field == "sink.awsCredentialPluginParam"
    assert "accessKey" in err.allowed


def test_default_chain_plugin_takes_no_params() -> None:
    assert sink(awsCredentialPluginName=PLUGIN_DEFAULT_CHAIN, awsCredentialPluginParam="{}")
    err = sink_error(
        {
            **MIN_SINK,
            "awsCredentialPluginName": PLUGIN_DEFAULT_CHAIN,
            "awsCredentialPluginParam": '{"accessKey":"a"}',
        }
    )
    assert err.field == "sink.awsCredentialPluginParam"


def test_python_plugin_param_must_be_json_object() -> None:
    assert sink(awsCredentialPluginName="m:C", awsCredentialPluginParam='{"any": 1}')
    err = sink_error(
        {**MIN_SINK, "awsCredentialPluginName": "m:C", "awsCredentialPluginParam": "[]"}
    )
    assert err.field == "sink.awsCredentialPluginParam"


def test_assume_role_extension_conflicts_with_sts_plugin() -> None:
    err = sink_error(
        {
            **MIN_SINK,
            "awsCredentialPluginName": PLUGIN_STS_ASSUME_ROLE,
            "awsCredentialPluginParam": '{"roleArn":"a","roleSessionName":"s"}',
            "awsAssumeRoleArn": "arn:aws:iam::1:role/other",
        }
    )
    assert err.field == "sink.awsAssumeRoleArn"


# --------------------------------------------------------------------------- pulsar section


def test_pulsar_defaults() -> None:
    cfg = PulsarConfig.from_mapping({"topics": ["t"]})
    assert cfg.service_url == "pulsar://localhost:6650"
    assert cfg.admin_url == "http://localhost:8080"
    assert cfg.topics == ("t",)
    assert cfg.topics_pattern is None
    assert cfg.subscription_name == "lambda-sink"
    assert cfg.subscription_type == "Shared"
    assert cfg.initial_position == "Latest"
    assert cfg.dead_letter_topic is None
    assert cfg.max_redeliver_count == 0
    assert cfg.negative_ack_redelivery_delay_ms == 60000
    assert cfg.receiver_queue_size == 1000
    assert cfg.auth.kind == "none"
    assert cfg.dead_letter_requested is False
    assert cfg.dead_letter_topic_for("t") == "t-lambda-sink-DLQ"


def test_pulsar_everything() -> None:
    cfg = PulsarConfig.from_mapping(
        {
            "serviceUrl": "pulsar+ssl://broker:6651",
            "adminUrl": "https://broker:8443/",
            "inputs": "a, b",
            "subscriptionName": "sub",
            "subscriptionType": "key_shared",
            "subscriptionInitialPosition": "earliest",
            "maxRedeliverCount": "3",
            "negativeAckRedeliveryDelayMs": 1000,
            "receiverQueueSize": 10,
            "tlsTrustCertsFile": "/ca.pem",
            "tlsAllowInsecureConnection": "true",
            "tlsHostnameVerification": True,
        }
    )
    assert cfg.service_url == "pulsar+ssl://broker:6651"
    assert cfg.admin_url == "https://broker:8443"
    assert cfg.topics == ("a", "b")
    assert (cfg.subscription_type, cfg.initial_position) == ("Key_Shared", "Earliest")
    assert cfg.max_redeliver_count == 3
    assert cfg.dead_letter_topic_for("persistent://public/default/a") == (
        "persistent://public/default/a-sub-DLQ"
    )
    assert (cfg.negative_ack_redelivery_delay_ms, cfg.receiver_queue_size) == (1000, 10)
    assert cfg.auth.trust_certs_file == "/ca.pem"
    assert cfg.auth.allow_insecure_connection is True
    assert cfg.auth.hostname_verification is True


def test_dead_letter_topic_explicit() -> None:
    cfg = PulsarConfig.from_mapping(
        {"topics": ["t"], "maxRedeliverCount": 2, "deadLetterTopic": "dlq"}
    )
    assert cfg.dead_letter_topic_for("t") == "dlq"


def test_dead_letter_topic_alone_asks_for_dead_letters() -> None:
    # The failure policy counts attempts itself, so a DLQ no longer needs maxRedeliverCount.
    cfg = PulsarConfig.from_mapping({"topics": ["t"], "deadLetterTopic": "dlq"})
    assert cfg.dead_letter_requested is True
    assert cfg.dead_letter_topic_for("persistent://public/default/t-partition-3") == "dlq"


def test_default_dead_letter_topic_drops_the_partition_suffix() -> None:
    cfg = PulsarConfig.from_mapping({"topics": ["t"], "subscriptionName": "s"})
    assert cfg.dead_letter_topic_for("persistent://p/q/t-partition-3") == "persistent://p/q/t-s-DLQ"


def test_topics_pattern() -> None:
    cfg = PulsarConfig.from_mapping({"topicsPattern": "persistent://public/default/in-.*"})
    assert cfg.topics == ()
    assert cfg.topics_pattern == "persistent://public/default/in-.*"


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"topics": []},
        {"topics": ["a"], "topicsPattern": "b.*"},
        {"topics": "", "topicsPattern": ""},
    ],
)
def test_exactly_one_of_topics_and_pattern(section: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        PulsarConfig.from_mapping(section)
    assert info.value.field in ("pulsar.topics", "pulsar.inputs")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("topics", ["a b"]),
        ("topics", [3]),
        ("topicsPattern", "persistent://public/default/(unclosed"),
        ("subscriptionType", "Broadcast"),
        ("subscriptionInitialPosition", "Middle"),
        ("subscriptionName", " "),
        ("maxRedeliverCount", -1),
        ("receiverQueueSize", -1),
        ("receiverQueueSize", 0),  # the client never delivers with a zero queue
        ("negativeAckRedeliveryDelayMs", "soon"),
        ("serviceUrl", "http://broker:6650"),
        ("adminUrl", "pulsar://broker:6650"),
        ("tlsAllowInsecureConnection", "maybe"),
        ("topic", "singular-typo"),
    ],
)
def test_pulsar_errors(key: str, value: object) -> None:
    section: dict[str, Any] = {"topics": ["t"]} if key != "topics" else {}
    if key == "topicsPattern":
        section = {}
    section[key] = value
    with pytest.raises(ConfigError) as info:
        PulsarConfig.from_mapping(section)
    assert info.value.field == f"pulsar.{key}"


def test_topics_and_inputs_together() -> None:
    with pytest.raises(ConfigError) as info:
        PulsarConfig.from_mapping({"topics": ["a"], "inputs": ["b"]})
    assert info.value.field == "pulsar.inputs"


# --------------------------------------------------------------------------- pulsar auth


def auth_of(auth: Any, env: dict[str, str] | None = None, **extra: Any) -> Any:
    return PulsarConfig.from_mapping(
        {"topics": ["t"], "authentication": auth, **extra}, env=env or {}
    ).auth


def test_token_from_env_without_any_file_entry() -> None:
    auth = auth_of(None, {"LAMBDASINK_PULSAR_TOKEN": SECRET})
    assert (auth.kind, auth.token, auth.read_token()) == ("token", SECRET, SECRET)
    assert SECRET not in repr(auth)
    assert auth.http_headers() == {"Authorization": f"Bearer {SECRET}"}


def test_token_from_named_env() -> None:
    auth = auth_of({"token": {"env": "MY_TOKEN"}}, {"MY_TOKEN": "tok"})
    assert auth.read_token() == "tok"


def test_token_named_env_missing() -> None:
    with pytest.raises(ConfigError) as info:
        auth_of({"token": {"env": "MY_TOKEN"}})
    assert info.value.field == "pulsar.authentication.token.env"


def test_token_file_is_read_when_used(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("first\n")
    auth = auth_of({"token": {"file": str(f)}})
    assert auth.kind == "token"
    assert auth.read_token() == "first"
    f.write_text("rotated")
    assert auth.read_token() == "rotated"


def test_token_literal_accepted() -> None:
    assert auth_of({"token": SECRET}).read_token() == SECRET
    assert auth_of({"token": {"value": SECRET}}).read_token() == SECRET


def test_token_section_falls_back_to_default_env() -> None:
    assert auth_of({"token": {}}, {"LAMBDASINK_PULSAR_TOKEN": "t"}).read_token() == "t"


def test_token_section_with_nothing() -> None:
    with pytest.raises(ConfigError) as info:
        auth_of({"token": {}})
    assert info.value.field == "pulsar.authentication.token"


def test_token_two_sources() -> None:
    with pytest.raises(ConfigError) as info:
        auth_of({"token": {"file": "/t", "value": SECRET}})
    assert SECRET not in str(info.value)


def test_oauth2() -> None:
    auth = auth_of(
        {
            "oauth2": {
                "issuerUrl": "https://issuer",
                "audience": "urn:pulsar",
                "scope": "s",
                "privateKey": "/creds.json",
            }
        }
    )
    assert (auth.kind, auth.issuer_url, auth.audience, auth.scope, auth.private_key) == (
        "oauth2",
        "https://issuer",
        "urn:pulsar",
        "s",
        "/creds.json",
    )
    assert auth.read_token() == ""


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"privateKey": "/c"}, "pulsar.authentication.oauth2.issuerUrl"),
        ({"issuerUrl": "https://i"}, "pulsar.authentication.oauth2.privateKey"),
        (
            {"issuerUrl": "https://i", "privateKey": "/c", "clientId": "x"},
            "pulsar.authentication.oauth2.clientId",
        ),
    ],
)
def test_oauth2_errors(section: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        auth_of({"oauth2": section})
    assert info.value.field == field


def test_tls_auth() -> None:
    auth = auth_of({"tls": {"certFile": "/c.pem", "keyFile": "/k.pem"}}, tlsTrustCertsFile="/ca")
    assert (auth.kind, auth.cert_file, auth.key_file, auth.trust_certs_file) == (
        "tls",
        "/c.pem",
        "/k.pem",
        "/ca",
    )


def test_tls_auth_missing_key() -> None:
    with pytest.raises(ConfigError) as info:
        auth_of({"tls": {"certFile": "/c.pem"}})
    assert info.value.field == "pulsar.authentication.tls.keyFile"


@pytest.mark.parametrize(
    "auth",
    [
        {"token": "a", "tls": {"certFile": "c", "keyFile": "k"}},
        {"kerberos": {}},
        "token",
    ],
)
def test_auth_shape_errors(auth: object) -> None:
    with pytest.raises(ConfigError) as info:
        auth_of(auth)
    assert info.value.field.startswith("pulsar.authentication")


# --------------------------------------------------------------------------- runtime section


def test_runtime_defaults_and_values() -> None:
    assert ServerConfig.from_mapping({}) == ServerConfig("0.0.0.0", 8081, "INFO", 30.0)
    cfg = ServerConfig.from_mapping(
        {
            "httpHost": "127.0.0.1",
            "httpPort": "9000",
            "logLevel": "debug",
            "drainTimeoutSeconds": 2.5,
        }
    )
    assert cfg == ServerConfig("127.0.0.1", 9000, "DEBUG", 2.5)


def test_http_port_env_overrides() -> None:
    cfg = ServerConfig.from_mapping({"httpPort": 9000}, env={"LAMBDASINK_HTTP_PORT": "9100"})
    assert cfg.http_port == 9100


@pytest.mark.parametrize(
    ("section", "env", "field"),
    [
        ({"httpPort": 70000}, {}, "runtime.httpPort"),
        ({}, {"LAMBDASINK_HTTP_PORT": "http"}, "LAMBDASINK_HTTP_PORT"),
        ({"logLevel": "LOUD"}, {}, "runtime.logLevel"),
        ({"drainTimeoutSeconds": -1}, {}, "runtime.drainTimeoutSeconds"),
        ({"drainTimeoutSeconds": "long"}, {}, "runtime.drainTimeoutSeconds"),
        ({"port": 1}, {}, "runtime.port"),
    ],
)
def test_runtime_errors(section: dict[str, Any], env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig.from_mapping(section, env=env)
    assert info.value.field == field


# --------------------------------------------------------------------------- whole document


def test_document_from_mapping() -> None:
    cfg = RuntimeConfig.from_mapping(doc(runtime={"httpPort": 8090}))
    assert cfg.pulsar.topics == ("persistent://public/default/in",)
    assert cfg.sink.lambda_function_name == "my-fn"
    assert cfg.runtime.http_port == 8090


def test_document_sink_as_json_string() -> None:
    cfg = RuntimeConfig.from_mapping(doc(sink=json.dumps({**MIN_SINK, "payloadFormat": "V2"})))
    assert cfg.sink.payload_format == "V2"


def test_document_errors() -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc(extra={}))
    assert info.value.field == "extra"
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping({"pulsar": {"topics": ["t"]}})
    assert info.value.field == "sink"
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc(sink="{not json"))
    assert info.value.field == "sink"
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc(sink={"awsRegion": "r"}))
    assert info.value.field == "sink.lambdaFunctionName"


def test_redacted_dict() -> None:
    cfg = RuntimeConfig.from_mapping(
        doc(
            sink={
                **MIN_SINK,
                "awsAccessKey": SECRET,
                "awsSecretKey": SECRET,
                "awsAssumeRoleExternalId": SECRET,
            }
        ),
        env={"LAMBDASINK_PULSAR_TOKEN": SECRET},
    )
    red = cfg.redacted_dict()
    assert SECRET not in json.dumps(red)
    assert red["sink"]["aws_access_key"] == "<redacted>"
    assert red["sink"]["aws_credential_plugin_param"] == ""
    assert red["pulsar"]["auth"]["token"] == "<redacted>"
    assert red["pulsar"]["topics"] == ["persistent://public/default/in"]
    assert red["runtime"]["http_port"] == 8081


YAML_DOC = """
pulsar:
  serviceUrl: pulsar://127.0.0.1:6650
  topics: [persistent://public/default/in]
  subscriptionType: Failover
sink:
  awsRegion: us-east-1
  lambdaFunctionName: function
  payloadFormat: V2
  batchMaxSize: "20"
  synchronousInvocation: "true"
runtime:
  logLevel: WARNING
"""


def test_load_config_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(YAML_DOC)
    cfg = load_config(str(path), env={})
    assert cfg.pulsar.subscription_type == "Failover"
    assert cfg.sink.batch_max_size == 20
    assert cfg.runtime.log_level == "WARNING"


def test_load_config_json_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc()))
    assert load_config(str(path), env={}).sink.aws_region == "us-west-2"


def test_load_config_from_env_document() -> None:
    env = {
        "LAMBDASINK_CONFIG": YAML_DOC,
        "LAMBDASINK_AWS_ACCESS_KEY": "AK",
        "LAMBDASINK_AWS_SECRET_KEY": "SK",
        "LAMBDASINK_HTTP_PORT": "9999",
    }
    cfg = load_config(None, env=env)
    assert (cfg.sink.aws_access_key, cfg.runtime.http_port) == ("AK", 9999)
    assert load_config(None, env={"LAMBDASINK_CONFIG": json.dumps(doc())}).sink.aws_region


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={})
    assert info.value.field == "LAMBDASINK_CONFIG"
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yaml"), env={})
    assert info.value.field == "config file"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sink: [unclosed {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad), env={})
    assert SECRET not in str(info.value)
    assert "line" in str(info.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError):
        load_config(str(scalar), env={})


# --------------------------------------------------------------------------- adaptiveInFlight


def test_adaptive_in_flight_is_off_by_default_and_read_when_given() -> None:
    assert RuntimeConfig.from_mapping(doc()).adaptive.enabled is False
    block = {"enabled": True, "minInFlight": 2, "backoffRatio": 0.7, "latencyTolerance": 0}
    cfg = RuntimeConfig.from_mapping(doc(adaptiveInFlight=block))
    adaptive = cfg.adaptive
    assert (adaptive.enabled, adaptive.min_in_flight) == (True, 2)
    assert (adaptive.backoff_ratio, adaptive.latency_tolerance) == (0.7, 0.0)


@pytest.mark.parametrize(
    ("block", "field", "fragment"),
    [
        ({"minInFlight": 5}, "adaptiveInFlight.minInFlight", "at most sink.maxInFlight (4)"),
        ({"minInFlight": 0}, "adaptiveInFlight.minInFlight", "from 1"),
        ({"backoffRatio": 1}, "adaptiveInFlight.backoffRatio", "0.9"),
        ({"latencyTolerance": 0.5}, "adaptiveInFlight.latencyTolerance", "above 1"),
        ({"enable": True}, "adaptiveInFlight.enable", "allowed keys"),
    ],
)
def test_adaptive_in_flight_errors_name_the_field(
    block: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc(adaptiveInFlight=block))
    assert info.value.field == field
    assert fragment in str(info.value)
