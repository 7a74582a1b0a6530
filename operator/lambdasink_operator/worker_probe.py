"""Read each worker's `/status` over HTTP (the operator's only traffic to worker pods).

Why over HTTP and not the Kubernetes API: the failure-policy outcomes live in the worker
process; a worker writing them to the API would need RBAC of its own on pods. The operator
asks `http://<podIP>:<HTTP_PORT>/status` with a short timeout instead; a worker that does not
answer is reported as such (condition `Delivering` Unknown), never an error of the pass. Where
a NetworkPolicy isolates the workers, allow the operator's pods to reach port 8081.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from .spec import HTTP_PORT
from .worker_status import WorkerReport

TIMEOUT_S = 2.0


async def read_one(session: aiohttp.ClientSession, pod: Mapping[str, Any]) -> WorkerReport:
    name = str((pod.get("metadata") or {}).get("name") or "?")
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return WorkerReport(name, error="no pod IP yet")
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    try:
        async with session.get(f"http://{host}:{HTTP_PORT}/status") as resp:
            text = await resp.text()
            if resp.status != 200:
                return WorkerReport(name, error=f"HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return WorkerReport(name, error=f"{type(exc).__name__}: {exc}"[:200])
    try:
        doc = json.loads(text)
    except ValueError:
        return WorkerReport(name, error="not JSON")
    if not isinstance(doc, dict):
        return WorkerReport(name, error="not a JSON object")
    if doc.get("pod") and doc["pod"] != name:  # a pod IP reused, or a shared host (dev)
        return WorkerReport(name, error=f"pod {doc['pod']!r} answered at {ip}:{HTTP_PORT}")
    return WorkerReport(name, status=doc)


async def read_all(pods: Sequence[Mapping[str, Any]]) -> list[WorkerReport]:
    """Every live worker pod's report, asked concurrently."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(read_one(session, p) for p in live)))
