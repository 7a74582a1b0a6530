"""Background processes of the stack: each in its own session/process group, tracked by a
pid file plus a small JSON record (ports etc.) under <state>/run/."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from localhost import pid_alive, proc_table, rss_kib

from .common import log, state_dir


def run_dir() -> Path:
    d = state_dir() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_dir() -> Path:
    d = state_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_file(name: str) -> Path:
    return log_dir() / f"{name}.log"


def pid_of(name: str) -> int | None:
    try:
        return int((run_dir() / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    return pid_alive(pid)


def running(name: str) -> bool:
    return alive(pid_of(name))


def record(name: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir() / f"{name}.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def save_record(name: str, data: dict[str, Any]) -> None:
    path = run_dir() / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def start(
    name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start cmd detached (new session = own process group), output appended to logs/<name>.log."""
    logf = log_file(name)
    with logf.open("ab") as out:
        out.write(
            f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
        )
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    (run_dir() / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def tree_pids(pgid: int) -> set[int]:
    """Live processes of the group plus all their descendants, even those that moved to a
    session of their own (RIE starts each runtime with setsid)."""
    table = proc_table()
    pids = {pid for pid, (_, g, st) in table.items() if g == pgid and st != "Z"}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, st) in table.items():
            if ppid in pids and pid not in pids and st != "Z":
                pids.add(pid)
                changed = True
    return pids


def _signal_tree(pgid: int, sig: int) -> None:
    for pid in tree_pids(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the component's process tree, SIGKILL what is left after `timeout`.

    True if something was stopped; safe to call when nothing runs.
    """
    pid = pid_of(name)
    stopped = False
    if pid is not None and tree_pids(pid):
        stopped = True
        # Descendants first seen now: a dying parent must not orphan them out of reach.
        leftovers = tree_pids(pid)
        _signal_tree(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in leftovers | tree_pids(pid)):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        rest = {p for p in leftovers | tree_pids(pid) if alive(p)}
        if rest:
            log(f"{name}: {len(rest)} process(es) still running after SIGTERM; sending SIGKILL")
            for p in rest:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
    for suffix in (".pid", ".json"):
        with contextlib.suppress(FileNotFoundError):
            (run_dir() / f"{name}{suffix}").unlink()
    return stopped


def group_rss_kib(pgid: int) -> int:
    """Resident memory of the component's process tree (KiB)."""
    return sum(rss_kib(pid) for pid in tree_pids(pgid))
