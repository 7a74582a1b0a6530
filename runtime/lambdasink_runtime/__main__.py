"""`python -m lambdasink_runtime` and the `lambdasink-runtime` console script (see cli.py)."""

from __future__ import annotations

import logging
import os
import sys
import threading

from . import cli

__all__ = ["main"]


def main() -> int:
    """Run the worker; exit without waiting for Lambda calls the drain has given up on.

    When the drain times out, the batches of the invocations still running have been nacked and
    nothing waits for them any more, but their blocking boto3 calls keep their worker threads
    alive, and the interpreter would join those at exit (up to invokeTimeoutMs), overrunning
    drainTimeoutSeconds and the pod's grace period.
    """
    code = cli.main()
    if _invocations_running():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _invocations_running() -> bool:
    return any(
        t.is_alive() and not t.daemon and t.name.startswith("invoke") for t in threading.enumerate()
    )


if __name__ == "__main__":
    sys.exit(main())
