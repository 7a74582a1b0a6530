"""Lambda handler that always raises: Lambda reports an Unhandled function error."""

from __future__ import annotations

from typing import Any


class DeliberateFailure(Exception):
    """Raised on every invocation."""


def handler(event: Any, context: Any) -> None:
    raise DeliberateFailure(f"failing function received a {type(event).__name__} event")
