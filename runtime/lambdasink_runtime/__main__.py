"""`python -m lambdasink_runtime` and the `lambdasink-runtime` console script (see cli.py)."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
