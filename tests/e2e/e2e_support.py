"""Helpers of the e2e suite (shared by its conftest and tests).

The product-level helpers are dev/demo.py's, so the suite drives exactly what `make demo` does.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.stack import wait_for as _wait_for

import demo  # dev/demo.py: dev/ is on pytest's pythonpath
from localhost import pid_alive

T = TypeVar("T")
JSON = dict[str, Any]


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 120.0) -> T:
    """The e2e flavour: pods start through the kubelet, so the default wait is longer."""
    return _wait_for(what, fn, timeout, every=0.5)


def exited(pid: int) -> Callable[[], bool]:
    """A wait_for condition: the process is gone."""
    return functools.partial(_exited, pid)


def _exited(pid: int) -> bool:
    return not pid_alive(pid)


def container_pids(container_id: str) -> list[int]:
    """Host pids of a container's processes, found by its cgroup (the kubelet's cgroupfs driver
    names the container's cgroup after its id); the tests run as root on the node, so
    they can see and signal them."""
    cid = container_id.split("://", 1)[-1]
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if cid in (entry / "cgroup").read_text():
                out.append(int(entry.name))
        except OSError:
            continue
    return sorted(out)


def main_pid(container_id: str) -> int | None:
    """The container's first process (its pid 1): the one whose parent is not in it."""
    pids = container_pids(container_id)
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid not in pids:
            return pid
    return None


def signal_container(container_id: str, sig: int) -> list[int]:
    """Send `sig` to every process of the container (from the host, as the node would)."""
    pids = container_pids(container_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


@dataclass
class Product:
    """The running product: stack details and the operator pod from the chart."""

    stack: Any  # demo.Stack
    tail: Any  # demo.RecordTail: every event the recorder got during the session

    def invocations(self, topics: list[str]) -> list[Any]:
        out: list[Any] = demo.invocations(self.stack, topics, self.tail)
        return out

    def items(self, topics: list[str]) -> list[JSON]:
        out: list[JSON] = demo.received_items(self.stack, topics, self.tail)
        return out

    def wait_received(self, topics: list[str], count: int, timeout: float = 120) -> list[JSON]:
        out: list[JSON] = demo.wait_received(self.stack, topics, count, timeout, self.tail)
        return out

    def worker_containers(
        self, namespace: str, sink: str, *, ready_only: bool = False
    ) -> dict[str, str]:
        """pod name -> containerID of its running worker container."""
        out: dict[str, str] = {}
        for pod in demo.worker_pods(self.stack, namespace, sink):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                cid = cs.get("containerID", "")
                if "running" in (cs.get("state") or {}) and cid:
                    if ready_only and not cs.get("ready"):
                        continue
                    out[pod["metadata"]["name"]] = cid
        return out

    def worker_pids(self, namespace: str, sink: str, *, ready_only: bool = False) -> dict[str, int]:
        """pod name -> host pid of its running worker process (the container's pid 1)."""
        out: dict[str, int] = {}
        for name, cid in self.worker_containers(namespace, sink, ready_only=ready_only).items():
            pid = main_pid(cid)
            if pid is not None:
                out[name] = pid
        return out

    def wait_workers(
        self, namespace: str, sink: str, count: int, timeout: float = 120
    ) -> dict[str, int]:
        """Wait until exactly `count` ready workers run (and no other worker pod exists)."""

        def settled() -> dict[str, int] | None:
            pids = self.worker_pids(namespace, sink, ready_only=True)
            pods = demo.worker_pods(self.stack, namespace, sink)
            if len(pids) == count and len(pods) == count and all(map(pid_alive, pids.values())):
                return pids if count else {"none": 0}
            return None

        result = wait_for(f"{count} ready worker(s) of {namespace}/{sink}", settled, timeout)
        return {} if count == 0 else result


__all__ = [
    "JSON",
    "Product",
    "container_pids",
    "demo",
    "exited",
    "main_pid",
    "pid_alive",
    "signal_container",
    "wait_for",
]
