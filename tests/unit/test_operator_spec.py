"""LambdaSink spec → worker plan: config document without secrets, Secret references, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdasink_operator import spec
from lambdasink_operator.spec import SecretKey

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sample(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "replicas": 1,
        "pulsar": {"serviceUrl": "pulsar://127.0.0.1:6650", "adminUrl": "http://127.0.0.1:8080"},
        "input": {"topics": ["persistent://public/default/orders"], "subscriptionType": "Shared"},
        "sinkConfig": {
            "awsRegion": "us-east-1",
            "lambdaFunctionName": "recorder",
            "payloadFormat": "V2",
        },
        "aws": {"credentialsSecret": {"name": "aws"}},
    }
    doc.update(overrides)
    return doc


AWS_VALUES = {
    SecretKey("aws", "accessKeyId"): "AKIA",
    SecretKey("aws", "secretAccessKey"): "s3cr3t",
}


def test_plan_builds_the_runtime_document() -> None:
    plan = spec.plan_worker("orders", sample())
    assert plan.config["pulsar"] == {
        "serviceUrl": "pulsar://127.0.0.1:6650",
        "adminUrl": "http://127.0.0.1:8080",
        "topics": ["persistent://public/default/orders"],
        "subscriptionName": "orders",  # defaults to the LambdaSink's name
        "subscriptionType": "Shared",
    }
    assert plan.config["sink"] == {
        "awsRegion": "us-east-1",
        "lambdaFunctionName": "recorder",
        "payloadFormat": "V2",
        # the credentials Secret is mounted there as files accessKeyId and secretAccessKey
        "awsCredentialsDirectory": "/etc/lambdasink/secrets/aws",
    }
    assert plan.config["runtime"] == {
        "httpPort": 8081,
        "logLevel": "INFO",
        "drainTimeoutSeconds": 65,  # grace 70: the 60 s invokeTimeoutMs + 10 (drain.py)
    }
    assert plan.env == ()
    assert plan.secret_keys == (
        SecretKey("aws", "accessKeyId"),
        SecretKey("aws", "secretAccessKey"),
    )
    assert spec.validate(plan, AWS_VALUES) is None


def test_adaptive_in_flight_passes_to_the_worker_unchanged() -> None:
    block = {"enabled": True, "minInFlight": 2, "backoffRatio": 0.7, "latencyTolerance": None}
    plan = spec.plan_worker("orders", sample(adaptiveInFlight=block))
    assert plan.config["adaptiveInFlight"] == {
        "enabled": True,
        "minInFlight": 2,
        "backoffRatio": 0.7,
    }
    assert spec.validate(plan, AWS_VALUES) is None
    assert "adaptiveInFlight" not in spec.plan_worker("orders", sample()).config


def test_config_json_is_stable_and_carries_no_secret() -> None:
    plan = spec.plan_worker("orders", sample())
    text = plan.config_json()
    assert json.loads(text) == plan.config
    assert text == spec.plan_worker("orders", sample()).config_json()
    assert "AKIA" not in text and "s3cr3t" not in text


def test_sensitive_sink_keys_never_reach_the_document_and_are_reported() -> None:
    s = sample(sinkConfig={"awsRegion": "r", "lambdaFunctionName": "f", "awsSecretKey": "leak"})
    plan = spec.plan_worker("x", s)
    assert "awsSecretKey" not in plan.config["sink"]
    message = spec.check_spec(s)
    assert message is not None and "spec.aws.credentialsSecret" in message and "leak" not in message
    # the reference's empty-string defaults paste in fine
    pasted = sample(
        sinkConfig={
            "awsRegion": "r",
            "lambdaFunctionName": "f",
            "awsAccessKey": "",
            "awsSecretKey": "",
        }
    )
    assert spec.check_spec(pasted) is None


def test_authentication_and_tls_become_env_and_files() -> None:
    s = sample(
        pulsar={
            "serviceUrl": "pulsar+ssl://broker:6651",
            "authentication": {
                "oauth2": {
                    "issuerUrl": "https://auth",
                    "audience": "urn:x",
                    "privateKeySecretRef": {"name": "oauth", "key": "key.json"},
                }
            },
            "tls": {
                "trustCertsSecretRef": {"name": "ca", "key": "ca.crt"},
                "hostnameVerification": True,
            },
        }
    )
    plan = spec.plan_worker("x", s)
    pulsar = plan.config["pulsar"]
    assert pulsar["authentication"] == {
        "oauth2": {
            "issuerUrl": "https://auth",
            "audience": "urn:x",
            "privateKey": "/etc/lambdasink/secrets/pulsar-oauth2/key.json",
        }
    }
    assert pulsar["tlsTrustCertsFile"] == "/etc/lambdasink/secrets/pulsar-ca/ca.crt"
    assert pulsar["tlsHostnameVerification"] is True
    assert {(m.secret, m.keys, m.mount_path) for m in plan.mounts} == {
        ("aws", ("accessKeyId", "secretAccessKey"), "/etc/lambdasink/secrets/aws"),
        ("oauth", ("key.json",), "/etc/lambdasink/secrets/pulsar-oauth2"),
        ("ca", ("ca.crt",), "/etc/lambdasink/secrets/pulsar-ca"),
    }
    assert plan.secret_names == ("aws", "ca", "oauth")
    assert spec.validate(plan, AWS_VALUES) is None

    token = spec.plan_worker(
        "x",
        sample(
            pulsar={
                "serviceUrl": "pulsar://b:6650",
                "authentication": {"token": {"secretRef": {"name": "tok"}}},
            }
        ),
    )
    assert token.config["pulsar"]["authentication"] == {"token": {"env": "LAMBDASINK_PULSAR_TOKEN"}}
    assert SecretKey("tok", "token") in token.secret_keys
    # an unreadable token gets a placeholder: its absence is SecretsResolved's business
    assert spec.validate(token, AWS_VALUES) is None


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        (
            {"sinkConfig": {"awsRegion": "r", "lambdaFunctionName": "f", "payloadFormat": "V3"}},
            "spec.sinkConfig.payloadFormat",
            "one of V1, V2",
        ),
        (
            {"sinkConfig": {"awsRegion": "r", "lambdaFunctionName": "f", "batchMaxSize": 0}},
            "spec.sinkConfig.batchMaxSize",
            "from 1",
        ),
        (
            {"sinkConfig": {"awsRegion": "", "lambdaFunctionName": "f"}},
            "spec.sinkConfig.awsRegion",
            "non-empty",
        ),
        ({"input": {"topics": ["a"], "topicsPattern": "b.*"}}, "spec.input.topics", "exactly one"),
        ({"pulsar": {"serviceUrl": "http://broker"}}, "spec.pulsar.serviceUrl", "pulsar://"),
        ({"logLevel": "LOUD"}, "spec.logLevel", "INFO"),
        (
            {"adaptiveInFlight": {"enabled": True, "minInFlight": 5}},
            "spec.adaptiveInFlight.minInFlight",
            "at most sink.maxInFlight (4)",
        ),
    ],
)
def test_invalid_specs_name_the_spec_field(
    overrides: dict[str, Any], field: str, fragment: str
) -> None:
    message = spec.validate(spec.plan_worker("x", sample(**overrides)), AWS_VALUES)
    assert message is not None
    assert message.startswith(field + ":"), message
    assert fragment in message


def test_plugin_param_from_a_secret_is_validated_and_redacted() -> None:
    s = sample(
        sinkConfig={
            "awsRegion": "r",
            "lambdaFunctionName": "f",
            "awsCredentialPluginName": "org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin",
        },
        aws={"credentialPluginParamSecretRef": {"name": "plugin"}},
    )
    plan = spec.plan_worker("x", s)
    good = {
        SecretKey(
            "plugin", "awsCredentialPluginParam"
        ): '{"roleArn": "arn:aws:iam::1:role/r", "roleSessionName": "s"}'
    }
    assert spec.validate(plan, good) is None
    bad = {SecretKey("plugin", "awsCredentialPluginParam"): '{"roleArn": "top-secret-arn"}'}
    message = spec.validate(plan, bad)
    assert message is not None and message.startswith("spec.sinkConfig.awsCredentialPluginParam")
    assert "top-secret-arn" not in message


def test_referenced_secrets_tolerates_a_malformed_spec() -> None:
    assert spec.referenced_secrets({"pulsar": "nonsense", "aws": []}) == ()
    assert spec.referenced_secrets(sample()) == ("aws",)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("lambdasink-*.yaml")), ids=lambda p: p.name)
def test_every_example_is_a_valid_sink(path: Path) -> None:
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    assert doc["kind"] == "LambdaSink"
    plan = spec.plan_worker(doc["metadata"]["name"], doc["spec"])
    placeholders = dict.fromkeys(plan.secret_keys, "x")
    assert spec.check_spec(doc["spec"]) is None
    assert spec.validate(plan, placeholders) is None


def test_drain_fits_in_the_grace_period() -> None:
    def drain(grace: int) -> int:
        s = sample(pod={"terminationGracePeriodSeconds": grace})
        value: int = spec.plan_worker("x", s).config["runtime"]["drainTimeoutSeconds"]
        return value

    assert (drain(60), drain(6), drain(1), drain(0)) == (55, 3, 1, 0)
