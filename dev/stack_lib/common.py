"""Paths, pinned versions and small utilities shared by the stack modules."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localhost import free_port, port_open

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO / "dev" / "stack_versions.env"


__all__ = ["free_port", "port_open"]  # the stack modules take them from here


class StackError(RuntimeError):
    """A stack step failed; the message says what and where the log is."""


def log(msg: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


VERSIONS = load_versions()


def state_dir() -> Path:
    return Path(os.environ.get("LAMBDASINK_STATE_DIR") or REPO / ".stack").resolve()


def cache_dir() -> Path:
    return Path(
        os.environ.get("LAMBDASINK_CACHE") or Path.home() / ".cache" / "lambda-sink"
    ).resolve()


def builds_dir() -> Path:
    return cache_dir() / "builds"


def bin_dir() -> Path:
    return cache_dir() / "bin"


def python_exe() -> str:
    """The project's venv interpreter (awslambdaric, boto3 live there)."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Run build(tmp) and rename tmp to final: an interrupted build leaves no partial `final`."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per artefact across processes: a second `up` waits instead of building twice.
    with (final.parent / f".{final.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process building {final.name}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():
            return final
        return _build_locked(final, build)


def _build_locked(final: Path, build: Callable[[Path], None]) -> Path:
    # We hold the lock: any other temp dir of this artefact is an interrupted build's leftover.
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    try:
        build(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def link_bin(name: str, target: Path) -> Path:
    """Point cache bin/<name> at a versioned binary (atomic symlink swap)."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    link = bin_dir() / name
    tmp = bin_dir() / f".{name}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return link


def http_get(
    url: str, timeout: float = 3.0, headers: dict[str, str] | None = None, context: Any = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], bool] | None = None,
    logfile: Path | None = None,
) -> float:
    """Poll check() until true; fail early if alive() says the process died. Returns seconds."""
    t0 = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - t0
        except Exception:
            pass
        if alive is not None and not alive():
            raise StackError(f"{what} exited while starting; see {logfile}{tail(logfile)}")
        if time.monotonic() - t0 > timeout:
            raise StackError(f"{what} not ready after {timeout:.0f}s; see {logfile}{tail(logfile)}")
        time.sleep(interval)


def tail(path: Path | None, lines: int = 25) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(path) + " ---\n" + "\n".join(text)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
