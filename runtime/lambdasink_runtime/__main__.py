"""`python -m lambdasink_runtime` and the `lambdasink-runtime` console script (see cli.py)."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from . import cli

__all__ = ["end_process", "main"]


def main() -> NoReturn:
    """Run the worker, then end the process (see `end_process`)."""
    end_process(cli.main())


def end_process(code: int) -> NoReturn:
    """Flush the logs and exit with `code`, skipping interpreter finalization.

    By then everything that matters is done: batches settled, consumer and client closed, the
    last line logged. Finalization would only add two hazards:
    - the Pulsar client's C++ threads, exiting after `close()`, destroy a thread-local wrapper
      of our Python logger, which takes the GIL; once the interpreter is finalizing, CPython
      ends such a thread with pthread_exit, and the forced unwind calls std::terminate (SIGABRT,
      "terminate called without an active exception"; apache/pulsar-client-python#256; seen
      under gdb). tests/integration/test_runtime_exit.py: 10 of 120 close-then-exit processes
      aborted with `sys.exit`, 0 of 200 with this function;
    - after a drain timeout, blocking Lambda calls keep invoker threads alive, and joining them
      would overrun drainTimeoutSeconds and the pod's grace period.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
