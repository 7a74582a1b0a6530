"""The pulsar, sink, runtime, failurePolicy and adaptiveInFlight parts of the CLI help, written
from the property declarations so the defaults the help shows are the ones the parser applies."""

from __future__ import annotations

from .config_failure import BREAKER_PROPS, CIRCUIT_BREAKER_KEY, FAILURE_PROPS
from .config_fields import help_block, help_columns, help_items
from .config_inflight import INFLIGHT_PROPS
from .config_pulsar import PULSAR_PROPS, TLS_PROPS
from .config_server import RUNTIME_PROPS
from .config_sink import SINK_PROPS

_INDENT = 4


def sink_help() -> str:
    """The reference's properties, then our extensions, each with its default."""
    reference = help_items(p for p in SINK_PROPS if not p.extension)
    extensions = help_items(p for p in SINK_PROPS if p.extension)
    return help_block([*reference, "extensions: " + extensions[0], *extensions[1:]], _INDENT)


def failure_help() -> str:
    """failurePolicy's properties, then circuitBreaker's inside braces."""
    breaker = help_items(BREAKER_PROPS)
    items = [
        *help_items(FAILURE_PROPS),
        f"{CIRCUIT_BREAKER_KEY}: {{{breaker[0]}",
        *breaker[1:-1],
        breaker[-1] + "}",
    ]
    return help_block(items, _INDENT)


def adaptive_help() -> str:
    """adaptiveInFlight's properties, one per line with what it does."""
    return help_columns(INFLIGHT_PROPS)


def runtime_help() -> str:
    """The worker process's properties, each with its default."""
    return help_block(help_items(RUNTIME_PROPS), _INDENT)


def pulsar_help() -> str:
    """The pulsar section's scalar properties, one per line with what it does."""
    return help_columns(PULSAR_PROPS)


def tls_help() -> str:
    """The pulsar section's transport settings, one per line."""
    return help_columns(TLS_PROPS)
