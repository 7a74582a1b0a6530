"""Lambda handler that returns its event (after sleeping `sleepMs` if the event asks)."""

from __future__ import annotations

import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and isinstance(event.get("sleepMs"), int | float):
        time.sleep(event["sleepMs"] / 1000)
    return event
