"""How one declared property is read: the rules every section's parser now shares."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

import pytest

from lambdasink_runtime.config import (
    CircuitBreakerConfig,
    FailurePolicyConfig,
    PulsarAuth,
    PulsarConfig,
    RuntimeConfig,
    ServerConfig,
    SinkConfig,
)
from lambdasink_runtime.config_failure import BREAKER_PROPS, FAILURE_PROPS
from lambdasink_runtime.config_fields import Prop
from lambdasink_runtime.config_inflight import INFLIGHT_PROPS, AdaptiveInFlightConfig
from lambdasink_runtime.config_pulsar import PULSAR_PROPS, TLS_PROPS
from lambdasink_runtime.config_server import RUNTIME_PROPS
from lambdasink_runtime.config_sink import SINK_PROPS
from lambdasink_runtime.config_values import Reader
from lambdasink_runtime.errors import ConfigError

TEXT = Prop("name", "name", "string", "dflt", "A text.", empty_is_default=True)
SECRET = Prop("key", "key", "string", "", "A secret.", sensitive=True, env="THE_KEY")
NEEDED = Prop("region", "region", "string", "", "Required.", required="a non-empty region")
COUNT = Prop("count", "count", "integer", 5, "A count.", 1, 10, bound_note="why ten")
RATIO = Prop(
    "ratio", "ratio", "number", 0.5, "A ratio.", minimum=0.0, maximum=1.0, exclusive_minimum=True
)
MODE = Prop("mode", "mode", "string", "Alpha", "A mode.", choices=("Alpha", "Beta"))


def read(prop: Prop, doc: dict[str, object], env: dict[str, str] | None = None) -> object:
    return prop.read(Reader("s", doc), env)


def error(prop: Prop, doc: dict[str, object], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        read(prop, doc, env)
    return info.value


@pytest.mark.parametrize("prop", [TEXT, SECRET, COUNT, RATIO, MODE])
def test_absent_and_null_mean_the_declared_default(prop: Prop) -> None:
    assert read(prop, {}) == prop.default
    assert read(prop, {prop.key: None}) == prop.default


def test_strings_are_stripped_and_empty_can_mean_the_default() -> None:
    assert read(TEXT, {"name": "  x "}) == "x"
    assert read(TEXT, {"name": "  "}) == "dflt"


def test_env_fills_an_empty_secret_only() -> None:
    env = {"THE_KEY": " from-env "}
    assert read(SECRET, {}, env) == "from-env"
    assert read(SECRET, {"key": ""}, env) == "from-env"
    assert read(SECRET, {"key": "given"}, env) == "given"
    assert read(SECRET, {}, None) == ""


def test_a_bad_secret_is_named_but_not_shown() -> None:
    err = error(SECRET, {"key": ["hunter2"]})
    assert err.field == "s.key"
    assert "hunter2" not in str(err)


def test_required_names_the_field_and_what_is_allowed() -> None:
    err = error(NEEDED, {"region": " "})
    assert (err.field, err.allowed) == ("s.region", "a non-empty region")
    assert "' '" in str(err)


@pytest.mark.parametrize(("value", "out"), [(7, 7), ("7", 7), (7.0, 7), (" +7 ", 7)])
def test_integers_take_jackson_style_coercions(value: object, out: int) -> None:
    assert read(COUNT, {"count": value}) == out


@pytest.mark.parametrize("value", [0, 11, 7.5, "seven", True])
def test_integer_bounds_say_why(value: object) -> None:
    err = error(COUNT, {"count": value})
    assert err.field == "s.count"
    assert err.allowed == "an integer from 1 to 10 (why ten)"


@pytest.mark.parametrize("value", [0, 0.0, -1, 1.5, "nan", "inf", "x", False])
def test_number_bounds_exclusive_minimum(value: object) -> None:
    assert error(RATIO, {"ratio": value}).allowed == "a number in (0, 1]"


def test_number_inclusive_maximum_and_numeric_strings() -> None:
    assert read(RATIO, {"ratio": 1}) == 1.0
    assert read(RATIO, {"ratio": "0.25"}) == 0.25


def test_choices_return_the_canonical_spelling() -> None:
    assert read(MODE, {"mode": " beta "}) == "Beta"
    assert error(MODE, {"mode": "gamma"}).allowed == "one of Alpha, Beta"


def test_an_alias_key_is_named_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        COUNT.read(Reader("s", {"cnt": 0}), key="cnt")
    assert info.value.field == "s.cnt"


def test_a_computed_default_replaces_the_declared_one() -> None:
    assert COUNT.read(Reader("s", {}), default=3) == 3
    assert COUNT.read(Reader("s", {"count": 8}), default=3) == 8


def test_batch_bytes_type_error_states_the_payload_limit() -> None:
    """The declared maximum is the synchronous payload limit, with the reason in every error."""
    with pytest.raises(ConfigError) as info:
        SinkConfig.from_mapping(
            {"awsRegion": "r", "lambdaFunctionName": "f", "batchMaxBytesSize": "x"}
        )
    assert info.value.allowed == (
        "an integer from 1 to 6291456 (the Lambda payload limit for synchronous invocations)"
    )


def test_runtime_http_port_from_env_uses_the_declared_bounds() -> None:
    doc = {"pulsar": {"topics": ["t"]}, "sink": {"awsRegion": "r", "lambdaFunctionName": "f"}}
    assert (
        RuntimeConfig.from_mapping(doc, env={"LAMBDASINK_HTTP_PORT": "9100"}).runtime.http_port
        == 9100
    )
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc, env={"LAMBDASINK_HTTP_PORT": "70000"})
    assert (info.value.field, info.value.allowed) == (
        "LAMBDASINK_HTTP_PORT",
        "an integer from 0 to 65535",
    )


#: Each model, its declared properties, and its fields that have a structure of their own.
MODELS: list[tuple[type[Any], tuple[Prop, ...], set[str]]] = [
    (SinkConfig, SINK_PROPS, set()),
    (PulsarConfig, PULSAR_PROPS, {"topics", "topics_pattern", "auth"}),
    (
        PulsarAuth,
        TLS_PROPS,
        {"kind", "token", "token_file", "issuer_url", "audience", "scope", "private_key"}
        | {"cert_file", "key_file"},
    ),
    (ServerConfig, RUNTIME_PROPS, set()),
    (FailurePolicyConfig, FAILURE_PROPS, {"circuit_breaker"}),
    (CircuitBreakerConfig, BREAKER_PROPS, set()),
    (AdaptiveInFlightConfig, INFLIGHT_PROPS, set()),
]


@pytest.mark.parametrize(
    ("model", "props", "structured"), MODELS, ids=[m.__name__ for m, *_ in MODELS]
)
def test_dataclass_fields_and_defaults_come_from_the_declarations(
    model: type[Any], props: tuple[Prop, ...], structured: set[str]
) -> None:
    by_attr = {p.attr: p for p in props}
    model_fields = {f.name: f for f in fields(model)}
    assert set(model_fields) == set(by_attr) | structured, "one declaration per field"
    assert len(by_attr) == len(props), "one field per declaration"
    for attr, prop in by_attr.items():
        f = model_fields[attr]
        if f.default is not MISSING:
            assert f.default == prop.default, attr
        assert bool(f.metadata.get("sensitive")) == prop.sensitive, attr
