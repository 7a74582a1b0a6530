"""The runtime's property declarations against the CRD: a default, bound or description that
differs between `spec.sinkConfig`/`spec.failurePolicy`/`spec.adaptiveInFlight`/`spec.logLevel`
and what the worker applies fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdasink_runtime.config import (
    AdaptiveInFlightConfig,
    CircuitBreakerConfig,
    FailurePolicyConfig,
    SinkConfig,
)
from lambdasink_runtime.config_failure import BREAKER_PROPS, CIRCUIT_BREAKER_KEY, FAILURE_PROPS
from lambdasink_runtime.config_fields import Prop
from lambdasink_runtime.config_inflight import INFLIGHT_PROPS
from lambdasink_runtime.config_pulsar import PULSAR, STRUCTURE_KEYS
from lambdasink_runtime.config_server import RUNTIME
from lambdasink_runtime.config_sink import SINK_ALIASES, SINK_PROPS

CRD_PATH = Path(__file__).resolve().parents[2] / "deploy/crds/lambdasink.dev_lambdasinks.yaml"

#: Each declared section, the CRD schema path holding it, and the dataclass it fills.
SECTIONS: list[tuple[str, tuple[Prop, ...], type[Any], tuple[str, ...]]] = [
    ("sinkConfig", SINK_PROPS, SinkConfig, ()),
    ("failurePolicy", FAILURE_PROPS, FailurePolicyConfig, (CIRCUIT_BREAKER_KEY,)),
    ("failurePolicy.circuitBreaker", BREAKER_PROPS, CircuitBreakerConfig, ()),
    ("adaptiveInFlight", INFLIGHT_PROPS, AdaptiveInFlightConfig, ()),
]
IDS = [s[0] for s in SECTIONS]


@pytest.fixture(scope="module")
def spec_schema() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    (version,) = doc["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def crd_node(spec: dict[str, Any], path: str) -> dict[str, Any]:
    node = spec
    for part in path.split("."):
        node = node["properties"][part]
    return node


def declared(props: tuple[Prop, ...]) -> list[tuple[str, Prop]]:
    return [(p.key, p) for p in props]


def all_props() -> list[tuple[str, Prop]]:
    return [(path, p) for path, props, _, _ in SECTIONS for p in props]


@pytest.mark.parametrize(("path", "props", "model", "nested"), SECTIONS, ids=IDS)
def test_every_crd_property_is_declared_and_every_declared_one_is_in_the_crd(
    spec_schema: dict[str, Any],
    path: str,
    props: tuple[Prop, ...],
    model: type[Any],
    nested: tuple[str, ...],
) -> None:
    crd_keys = set(crd_node(spec_schema, path)["properties"])
    assert crd_keys == {p.key for p in props} | set(nested)


@pytest.mark.parametrize(
    ("path", "prop"), all_props(), ids=[f"{path}.{p.key}" for path, p in all_props()]
)
def test_crd_property_matches_its_declaration(
    spec_schema: dict[str, Any], path: str, prop: Prop
) -> None:
    node = crd_node(spec_schema, f"{path}.{prop.key}")
    where = f"spec.{path}.{prop.key}"
    assert node["type"] == prop.type, where
    if "default" in node:
        assert node["default"] == prop.crd_default, where
    assert node.get("enum", []) == list(prop.choices), where
    if prop.type in ("integer", "number"):
        assert (node.get("minimum"), node.get("maximum")) == (prop.minimum, prop.maximum), where
        assert node.get("exclusiveMinimum", False) == prop.exclusive_minimum, where
    assert str(node.get("description", "")).strip(), where
    if refused_by_crd(spec_schema, path, prop.key):
        # Secrets come from Kubernetes Secrets: the CRD says where instead of what it is.
        assert prop.sensitive, where
        assert "Refused when non-empty (sensitive)" in node["description"], where
    elif path == "sinkConfig":
        assert node["description"] == prop.description, where


def refused_by_crd(spec: dict[str, Any], path: str, key: str) -> bool:
    rules = crd_node(spec, path).get("x-kubernetes-validations", [])
    return any(r["rule"] == f"!has(self.{key}) || self.{key} == ''" for r in rules)


def test_crd_required_sink_properties_are_the_declared_required_ones(
    spec_schema: dict[str, Any],
) -> None:
    node = crd_node(spec_schema, "sinkConfig")
    assert set(node["required"]) == {p.key for p in SINK_PROPS if p.required}
    for key in node["required"]:
        assert node["properties"][key]["minLength"] == 1


def test_crd_defaults_cover_every_declared_constant_default(spec_schema: dict[str, Any]) -> None:
    """A declared default the CRD leaves out is applied by the runtime anyway; only defaults
    computed from other settings, and secrets and required values, may be absent from it."""
    missing = [
        f"{path}.{p.key}"
        for path, p in all_props()
        if not (p.default_doc or p.sensitive or p.required)
        and "default" not in crd_node(spec_schema, f"{path}.{p.key}")
    ]
    # The CRD states this one in its description ("0 (default): no limit") instead.
    assert missing == ["failurePolicy.maxRecordAgeMs"]
    description = crd_node(spec_schema, "failurePolicy.maxRecordAgeMs")["description"]
    assert "0 (default)" in description


def test_crd_log_level_is_the_runtime_log_level(spec_schema: dict[str, Any]) -> None:
    """spec.logLevel becomes runtime.logLevel; the CRD states the same choices and default."""
    node = spec_schema["properties"]["logLevel"]
    prop = RUNTIME["logLevel"]
    assert (node["enum"], node["default"]) == (list(prop.choices), prop.default)


def test_crd_input_properties_are_the_declared_pulsar_ones(spec_schema: dict[str, Any]) -> None:
    """spec.input's keys pass to the pulsar section unchanged, so they must agree with it."""
    crd = crd_node(spec_schema, "input")["properties"]
    assert set(crd) <= set(PULSAR) | set(STRUCTURE_KEYS)
    for key in set(crd) & set(PULSAR):
        node, prop = crd[key], PULSAR[key]
        assert node["type"] == prop.type, key
        assert node.get("enum", []) == list(prop.choices), key
        if "default" in node:
            assert node["default"] == prop.default, key
        if prop.type == "integer":
            assert (node["minimum"], node["maximum"]) == (prop.minimum, prop.maximum), key
        assert str(node.get("description", "")).strip(), key


def test_sink_aliases_name_declared_properties() -> None:
    assert set(SINK_ALIASES.values()) <= {p.key for p in SINK_PROPS}


def test_sink_defaults_from_an_empty_object_are_the_declared_ones() -> None:
    cfg = SinkConfig.from_mapping({"awsRegion": "r", "lambdaFunctionName": "f"})
    for prop in SINK_PROPS:
        if not prop.required:
            assert getattr(cfg, prop.attr) == prop.default, prop.key
