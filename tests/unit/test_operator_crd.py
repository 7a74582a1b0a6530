"""The LambdaSink CRD: structural, described everywhere, and in step with the runtime's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdasink_runtime.config import SinkConfig

CRD_PATH = Path(__file__).resolve().parents[2] / "deploy/crds/lambdasink.dev_lambdasinks.yaml"

#: The reference connector's table: name → (JSON-schema type, default).
REFERENCE_TABLE: dict[str, tuple[str, Any]] = {
    "awsEndpoint": ("string", ""),
    "awsRegion": ("string", None),  # required
    "awsAccessKey": ("string", None),  # sensitive: refused
    "awsSecretKey": ("string", None),  # sensitive: refused
    "lambdaFunctionName": ("string", None),  # required
    "awsCredentialPluginName": ("string", ""),
    "awsCredentialPluginParam": ("string", None),  # sensitive: refused
    "synchronousInvocation": ("boolean", True),
    "payloadFormat": ("string", "V1"),
    "metadataFields": ("string", "topic,key,partitionIndex,sequence,properties,eventTime"),
    "batchMaxSize": ("integer", 10),
    "batchMaxBytesSize": ("integer", 262144),
    "batchMaxTimeMs": ("integer", 5000),
}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    v: dict[str, Any] = only
    return v


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return s


def walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema node under `node` with its path (properties, items, additionalProperties)."""
    out = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_names_group_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "lambdasinks.lambdasink.dev"
    spec = crd["spec"]
    assert spec["group"] == "lambdasink.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "LambdaSink"
    assert spec["names"]["plural"] == "lambdasinks"
    assert {"ls", "lsink"} <= set(spec["names"]["shortNames"])
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    nodes = walk(schema, "")
    missing = [
        path or "(root)"
        for path, node in nodes
        if not str(node.get("description", "")).strip()
        and path != ".metadata"  # the API server forbids anything but `type` here
    ]
    assert missing == []
    assert len(nodes) > 100  # the walk really went through the tree
    undocumented = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "string"}}},
    }
    assert [p for p, n in walk(undocumented, "") if "description" not in n] == ["", ".a", ".a[]"]


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    """Every node has a type (or preserves unknown fields, which still needs type object)."""
    for path, node in walk(schema, ""):
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert "properties" in node or "additionalProperties" in node or path == ".metadata", (
                path
            )


def test_subresources_and_printer_columns(version: dict[str, Any]) -> None:
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Replicas", "Function", "Age"} <= set(columns)
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Function"]["jsonPath"] == ".spec.sinkConfig.lambdaFunctionName"
    assert columns["Age"]["type"] == "date"


def test_sink_config_matches_the_reference_table(schema: dict[str, Any]) -> None:
    sink = schema["properties"]["spec"]["properties"]["sinkConfig"]
    props = sink["properties"]
    for name, (type_, default) in REFERENCE_TABLE.items():
        assert props[name]["type"] == type_, name
        assert props[name].get("default") == default, name
    assert set(sink["required"]) == {"awsRegion", "lambdaFunctionName"}
    assert props["payloadFormat"]["enum"] == ["V1", "V2"]
    assert props["batchMaxSize"]["minimum"] == 1


def test_sink_config_defaults_equal_the_runtime_defaults(schema: dict[str, Any]) -> None:
    """What the API server fills in is what the worker would assume anyway."""
    props = schema["properties"]["spec"]["properties"]["sinkConfig"]["properties"]
    defaults = {k: p["default"] for k, p in props.items() if "default" in p}
    with_defaults = SinkConfig.from_mapping(
        {"awsRegion": "r", "lambdaFunctionName": "f", **defaults}
    )
    bare = SinkConfig.from_mapping({"awsRegion": "r", "lambdaFunctionName": "f"})
    assert with_defaults == bare
    runtime_keys = {
        "maxInFlight",
        "awsAssumeRoleArn",
        "awsAssumeRoleSessionName",
        "awsAssumeRoleExternalId",
        "invokeMaxRetries",
        "invokeBackoffInitialMs",
        "invokeBackoffMaxMs",
        "invokeTimeoutMs",
    }
    assert runtime_keys <= set(props)


def test_sensitive_keys_are_refused_by_cel_rules_that_say_where_to_go(
    schema: dict[str, Any],
) -> None:
    rules = schema["properties"]["spec"]["properties"]["sinkConfig"]["x-kubernetes-validations"]
    for key, target in (
        ("awsAccessKey", "spec.aws.credentialsSecret"),
        ("awsSecretKey", "spec.aws.credentialsSecret"),
        ("awsCredentialPluginParam", "spec.aws.credentialPluginParamSecretRef"),
    ):
        (rule,) = [r for r in rules if f"self.{key}" in r["rule"]]
        assert f"!has(self.{key})" in rule["rule"]
        assert target in " ".join(rule["message"].split())


def test_exactly_one_of_topics_and_pattern(schema: dict[str, Any]) -> None:
    rules = schema["properties"]["spec"]["properties"]["input"]["x-kubernetes-validations"]
    assert any(r["rule"] == "has(self.topics) != has(self.topicsPattern)" for r in rules)


def test_status_has_no_phase_and_conditions_are_a_map(schema: dict[str, Any]) -> None:
    status = schema["properties"]["status"]["properties"]
    assert "phase" not in status
    assert {"observedGeneration", "replicas", "readyReplicas", "selector", "conditions"} <= set(
        status
    )
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) >= {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
