"""Start and stop a node agent in the background (for tests, the demo and `make demo-down`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localhost import pid_alive

from .agent import kill_orphans

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path(os.environ.get("LAMBDASINK_STATE_DIR") or REPO_ROOT / ".stack").resolve()
DEFAULT_NODE = "local-node"


# Agents this process started: kept referenced (a collected running Popen warns) and reaped
# by stop() (else they linger as zombies of this process).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class NodeAgentError(Exception):
    """The agent did not come up (the message carries the tail of its log)."""


@dataclass(frozen=True)
class AgentHandle:
    node_name: str
    pid: int
    log_file: Path
    pid_file: Path
    state_dir: Path

    def pod_log(self, namespace: str, pod: str) -> Path:
        return self.state_dir / "pods" / f"{namespace}_{pod}.log"


def _paths(state_dir: Path, node: str) -> tuple[Path, Path, Path]:
    base = state_dir / "node-agent"
    return base / f"{node}.pid", base / f"{node}.log", base / f"{node}.ready"


def running(state_dir: Path = DEFAULT_STATE_DIR, node: str = DEFAULT_NODE) -> int | None:
    pid_file, _, _ = _paths(state_dir, node)
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def start(
    kubeconfig: Path,
    *,
    node: str = DEFAULT_NODE,
    state_dir: Path = DEFAULT_STATE_DIR,
    extra_args: list[str] | None = None,
    timeout: float = 60.0,
) -> AgentHandle:
    """Start `dev/node_agent.py run` detached; return once its Node is registered and Ready."""
    pid_file, log_file, ready_file = _paths(state_dir, node)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    existing = running(state_dir, node)
    if existing:
        return AgentHandle(node, existing, log_file, pid_file, state_dir)
    ready_file.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(REPO_ROOT / "dev" / "node_agent.py"),
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--node-name",
        node,
        "--state-dir",
        str(state_dir),
        "--ready-file",
        str(ready_file),
        *(extra_args or []),
    ]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(REPO_ROOT),
        )
    pid_file.write_text(f"{proc.pid}\n")
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return AgentHandle(node, proc.pid, log_file, pid_file, state_dir)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    _CHILDREN.pop(proc.pid, None)
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
    raise NodeAgentError(f"node agent {node} did not become ready; log {log_file}:\n{tail}")


def stop(
    *, node: str = DEFAULT_NODE, state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 60.0
) -> bool:
    """SIGTERM the agent (it stops its pods' processes), SIGKILL after `timeout`.

    Returns whether an agent was running.
    """

    pid_file, _, ready_file = _paths(state_dir, node)
    pid = running(state_dir, node)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait()
    kill_orphans(state_dir, node)
    pid_file.unlink(missing_ok=True)
    ready_file.unlink(missing_ok=True)
    return pid is not None


def stop_all(*, state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 60.0) -> list[str]:
    """Stop every agent recorded under `state_dir` (for `dev/stack down`); returns their nodes."""
    stopped = []
    for pid_file in sorted((state_dir / "node-agent").glob("*.pid")):
        if stop(node=pid_file.stem, state_dir=state_dir, timeout=timeout):
            stopped.append(pid_file.stem)
    return stopped
