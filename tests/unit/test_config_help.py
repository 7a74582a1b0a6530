"""The CLI help's property lines show the defaults the parser applies."""

from __future__ import annotations

import re

import pytest

from lambdasink_runtime.cli import EPILOG
from lambdasink_runtime.config import RuntimeConfig
from lambdasink_runtime.config_failure import BREAKER_PROPS, FAILURE_PROPS
from lambdasink_runtime.config_fields import Prop
from lambdasink_runtime.config_inflight import INFLIGHT_PROPS
from lambdasink_runtime.config_pulsar import PULSAR_PROPS, TLS_PROPS
from lambdasink_runtime.config_server import RUNTIME_PROPS
from lambdasink_runtime.config_sink import SINK_PROPS

DOC = {
    "pulsar": {"topics": ["persistent://public/default/in"]},
    "sink": {"awsRegion": "us-east-1", "lambdaFunctionName": "f"},
}
HELP = re.sub(r"\s+", " ", EPILOG)


def shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def applied() -> list[tuple[Prop, object]]:
    """Every declared property with the value the parser gives it when the key is absent."""
    cfg = RuntimeConfig.from_mapping(DOC)
    return [
        *((p, getattr(cfg.sink, p.attr)) for p in SINK_PROPS),
        *((p, getattr(cfg.runtime, p.attr)) for p in RUNTIME_PROPS),
        *((p, getattr(cfg.failure, p.attr)) for p in FAILURE_PROPS),
        *((p, getattr(cfg.failure.circuit_breaker, p.attr)) for p in BREAKER_PROPS),
    ]


@pytest.mark.parametrize(("prop", "value"), applied(), ids=[p.key for p, _ in applied()])
def test_help_names_each_property_with_the_applied_default(prop: Prop, value: object) -> None:
    assert re.search(rf"\b{prop.key}\b", HELP), prop.key
    if prop.required or prop.default_doc:
        # Required values have no default; computed ones are described, e.g. maxAttempts.
        expected = "required" if prop.required else prop.default_doc
        assert f"{prop.key} ({expected})" in HELP
    elif value in ("", None):
        assert re.search(rf"\b{prop.key}\b(?! \()", HELP), prop.key
    elif prop.choices:
        assert f"{prop.key} ({' | '.join(prop.choices)}; default {shown(value)}" in HELP
    else:
        assert f"{prop.key} ({shown(value)}" in HELP
    if prop.help_note:
        assert f"; {prop.help_note})" in HELP


def pulsar_applied() -> list[tuple[Prop, object]]:
    cfg = RuntimeConfig.from_mapping(DOC)
    return [
        *((p, getattr(cfg.pulsar, p.attr)) for p in PULSAR_PROPS),
        *((p, getattr(cfg.pulsar.auth, p.attr)) for p in TLS_PROPS),
        *((p, getattr(cfg.adaptive, p.attr)) for p in INFLIGHT_PROPS),
    ]


@pytest.mark.parametrize(
    ("prop", "value"), pulsar_applied(), ids=[p.key for p, _ in pulsar_applied()]
)
def test_column_help_lines_say_what_and_the_applied_default(prop: Prop, value: object) -> None:
    assert f" {prop.key} {prop.description}" in HELP, prop.key
    if prop.choices:
        assert f"{shown(value)} (default)" in HELP
    elif prop.default_doc:
        assert f"{prop.description} (default {prop.default_doc})" in HELP
    elif value not in ("", None):
        assert f"{prop.description} (default {shown(value)})" in HELP
