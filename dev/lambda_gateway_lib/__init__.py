"""The Lambda gateway's parts (dev/lambda_gateway.py is the command): `pool` runs the emulator
processes, `wire` and `handler` speak Lambda's REST protocol, `control` is the /_gateway/ API
that injects what the emulator cannot produce."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gateway: {msg}", file=sys.stderr, flush=True)
