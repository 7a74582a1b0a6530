"""Helpers of the e2e suite (shared by its conftest and tests).

The product-level helpers are dev/demo.py's, so the suite drives exactly what `make demo` does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.stack import wait_for as _wait_for

import demo  # dev/demo.py: dev/ is on pytest's pythonpath
from localhost import pid_alive

T = TypeVar("T")
JSON = dict[str, Any]


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 120.0) -> T:
    """The e2e flavour: processes start through the node agent, so the default wait is longer."""
    return _wait_for(what, fn, timeout, every=0.5)


def exited(pid: int) -> Callable[[], bool]:
    """A wait_for condition: the process is gone."""
    return functools.partial(_exited, pid)


def _exited(pid: int) -> bool:
    return not pid_alive(pid)


@dataclass
class Product:
    """The running product: stack details, the node agent and the operator from the chart."""

    stack: Any  # demo.Stack
    agent: Any  # node_agent.AgentHandle
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

    def worker_pids(self, namespace: str, sink: str, *, ready_only: bool = False) -> dict[str, int]:
        """pod name -> pid of its running worker process (the node agent's containerID)."""
        out: dict[str, int] = {}
        for pod in demo.worker_pods(self.stack, namespace, sink):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                cid = cs.get("containerID", "")
                if "running" in (cs.get("state") or {}) and cid.startswith("nodeagent://"):
                    if ready_only and not cs.get("ready"):
                        continue
                    out[pod["metadata"]["name"]] = int(cid.removeprefix("nodeagent://"))
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


__all__ = ["JSON", "Product", "demo", "exited", "pid_alive", "wait_for"]
