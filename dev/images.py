#!/usr/bin/env python3
"""`make images`: build the operator and runtime images (see stack_lib/images.py), print them.

dev/images.py           build what is missing; print reference, archive, size
dev/images.py --json    the same as JSON (reference -> archive path, size, image id)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack_lib import images
from stack_lib.common import StackError, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        archives = images.ensure_images()
    except StackError as e:
        print(f"images: {e}", file=sys.stderr)
        return 1
    report = images.image_report(archives)
    log(f"images ready in {time.monotonic() - t0:.1f}s")
    if args.json:
        out = {ref: {**report[ref], "archive": str(path)} for ref, path in archives.items()}
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    for ref, path in sorted(archives.items()):
        size = int(str(report[ref]["size_bytes"]))
        print(f"{ref:40} {size / 1e6:6.0f} MB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
