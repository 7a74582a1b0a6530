"""The node: registration, heartbeats, binding pending pods, and one PodWorker per bound pod."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import threading
import time
from pathlib import Path

from . import podspec
from .kube import JSON, Kube, KubeError
from .runner import POD_IP, AgentSettings, PodWorker, kill_recorded, now_rfc3339

LOG = logging.getLogger("node-agent")


# The stack's real node (dev/stack_lib/node.py's NODE_NAME) and the annotation each running agent
# leaves on it while it keeps it cordoned.
REAL_NODE = "lambdasink-node"
CORDON_ANNOTATION = "lambdasink.dev/cordoned-by-node-agent-"


def kill_orphans(state_dir: Path, node: str) -> int:
    """Kill processes a previous agent of `node` (killed hard) left behind; returns how many."""
    killed = 0
    for pid_file in (state_dir / "pods").glob("*/*.pid"):
        if kill_recorded(pid_file, node):
            LOG.info("killed orphan process from %s", pid_file)
            killed += 1
            pid_file.unlink(missing_ok=True)
    return killed


LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10.0


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """A kubelet stand-in for one Node, with a scheduler for the pods it may take."""

    def __init__(
        self,
        kube: Kube,
        settings: AgentSettings,
        *,
        namespace: str | None = None,
        pod_selector: str | None = None,
        namespace_selector: str | None = None,
        node_labels: dict[str, str] | None = None,
        resync_seconds: float = 2.0,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.namespace = namespace
        self.pod_selector = pod_selector
        self.namespace_selector = namespace_selector
        self.node_labels = node_labels or {}
        self.resync = resync_seconds
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.node: JSON = {}
        self.unbindable: dict[str, str] = {}
        self.delete_node_on_exit = False
        self._transitions: dict[str, tuple[str, str]] = {}

    # -- node ----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.node_name

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
            "node.kubernetes.io/instance-type": "node-agent",
            **self.node_labels,
        }
        existing = self.kube.get_or_none(f"/api/v1/nodes/{self.name}")
        if existing is None:
            self.node = self.kube.post(
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.name, "labels": labels},
                },
            )
            LOG.info("registered node %s", self.name)
        else:
            self.node = self.kube.merge_patch(
                f"/api/v1/nodes/{self.name}", {"metadata": {"labels": labels}}
            )
            LOG.info("re-using node %s", self.name)
        self.post_node_status(first=True)
        self.renew_lease()

    def post_node_status(self, first: bool = False) -> None:
        now = now_rfc3339()
        version = "v0.0.0-node-agent"
        with contextlib.suppress(KubeError):
            version = str(self.kube.get("/version").get("gitVersion", version))
        mem_kib = 8 * 1024 * 1024
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        cap = {
            "cpu": str(os.cpu_count() or 2),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": "50Gi",
        }

        def cond(ctype: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition(ctype, status, now),
            }

        status: JSON = {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "node-agent"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node-agent"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "node-agent"),
                cond("Ready", "True", "KubeletReady", "node-agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }
        if first:
            status.update(
                capacity=cap,
                allocatable=cap,
                nodeInfo={
                    "machineID": "node-agent",
                    "systemUUID": "node-agent",
                    "bootID": str(os.getpid()),
                    "kernelVersion": platform.release(),
                    "osImage": "lambda-sink dev node agent",
                    "containerRuntimeVersion": "process://local",
                    "kubeletVersion": version,
                    "kubeProxyVersion": version,
                    "operatingSystem": "linux",
                    "architecture": self.node["metadata"]["labels"]["kubernetes.io/arch"],
                },
            )
        self.node = self.kube.merge_patch(f"/api/v1/nodes/{self.name}/status", {"status": status})

    def _transition(self, ctype: str, status: str, now: str) -> str:
        prev = self._transitions.get(ctype)
        if prev is None or prev[0] != status:
            self._transitions[ctype] = (status, now)
        return self._transitions[ctype][1]

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(),
        }
        try:
            self.kube.merge_patch(path, {"spec": spec})
        except KubeError as exc:
            if exc.status != 404:
                raise
            if self.kube.get_or_none("/api/v1/namespaces/kube-node-lease") is None:
                with contextlib.suppress(KubeError):
                    self.kube.post(
                        "/api/v1/namespaces",
                        {
                            "apiVersion": "v1",
                            "kind": "Namespace",
                            "metadata": {"name": "kube-node-lease"},
                        },
                    )
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self.name,
                "uid": self.node["metadata"]["uid"],
            }
            self.kube.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "ownerReferences": [owner]},
                    "spec": spec,
                },
            )

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= 2 * HEARTBEAT_SECONDS:
                    self.post_node_status()
                    last_status = time.monotonic()
            except Exception as exc:
                LOG.warning("heartbeat failed: %s", exc)

    # -- pods ----------------------------------------------------------------------------------

    def _pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods" if self.namespace else "/api/v1/pods"

    def _watch_loop(self) -> None:
        """Wake the reconcile loop on any pod event (the loop itself lists)."""
        params = {"labelSelector": self.pod_selector} if self.pod_selector else {}
        while not self.stopping.is_set():
            try:
                for _ in self.kube.watch(self._pods_path(), timeout_seconds=60, **params):
                    self.wake.set()
                    if self.stopping.is_set():
                        return
            except Exception as exc:
                LOG.debug("watch ended: %s", exc)
                self.stopping.wait(1.0)

    def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        ok, why = podspec.fits_node(pod, self.node)
        uid = str(meta["uid"])
        if not ok:
            if self.unbindable.get(uid) != why:
                LOG.info("not binding %s/%s: %s", meta["namespace"], meta["name"], why)
                self.unbindable[uid] = why
            return
        try:
            self.kube.post(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta["name"], "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
                },
            )
            LOG.info("bound %s/%s to %s", meta["namespace"], meta["name"], self.name)
        except KubeError as exc:
            if exc.status not in (404, 409):
                LOG.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def reconcile(self) -> None:
        params = {"labelSelector": self.pod_selector} if self.pod_selector else {}
        pods = self.kube.get(self._pods_path(), **params).get("items", [])
        allowed: set[str] | None = None
        if self.namespace_selector:
            allowed = {
                n["metadata"]["name"]
                for n in self.kube.get(
                    "/api/v1/namespaces", labelSelector=self.namespace_selector
                ).get("items", [])
            }
        seen: set[str] = set()
        for pod in pods:
            spec = pod.get("spec", {})
            uid = pod["metadata"]["uid"]
            node_name = spec.get("nodeName")
            if not node_name:
                if allowed is not None and pod["metadata"]["namespace"] not in allowed:
                    continue
                if not pod["metadata"].get("deletionTimestamp"):
                    self._bind(pod)
                continue
            if node_name != self.name:
                continue
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not pod[
                    "metadata"
                ].get("deletionTimestamp"):
                    continue  # finished before we (re)started: nothing to run
                worker = PodWorker(self.kube, self.settings, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.gone = True
                worker.wake.set()
            if not worker.is_alive() and (uid not in seen or worker.gone):
                del self.workers[uid]
        # a finished worker whose pod still exists (deleted by us, or completed) stays recorded
        self.unbindable = {
            k: v for k, v in self.unbindable.items() if k in {p["metadata"]["uid"] for p in pods}
        }

    def kill_orphans(self) -> None:
        """Processes a previous agent (killed hard) left behind."""
        kill_orphans(self.settings.state_dir, self.name)

    def cordon_real_node(self) -> None:
        """Cordon the stack's real node (dev/stack's kubelet) while this agent runs: its
        scheduler would bind the pending pods this agent is meant to run."""
        path = f"/api/v1/nodes/{REAL_NODE}"
        if self.kube.get_or_none(path) is None:
            return
        self.kube.merge_patch(
            path,
            {
                "metadata": {"annotations": {CORDON_ANNOTATION + self.name: "true"}},
                "spec": {"unschedulable": True},
            },
        )
        LOG.info("cordoned the real node %s while this agent runs", REAL_NODE)

    def uncordon_real_node(self) -> None:
        """Undo `cordon_real_node` once no other agent holds it cordoned."""
        path = f"/api/v1/nodes/{REAL_NODE}"
        node = self.kube.get_or_none(path)
        if node is None:
            return
        annotations = node["metadata"].get("annotations") or {}
        mine = CORDON_ANNOTATION + self.name
        if mine not in annotations:
            return
        others = [k for k in annotations if k.startswith(CORDON_ANNOTATION) and k != mine]
        patch: JSON = {"metadata": {"annotations": {mine: None}}}
        if not others:
            patch["spec"] = {"unschedulable": None}
        self.kube.merge_patch(path, patch)
        LOG.info("released the real node %s%s", REAL_NODE, "" if others else " (uncordoned)")

    def run(self, ready_file: Path | None = None) -> None:
        self.kill_orphans()
        self.register()
        self.cordon_real_node()
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._watch_loop, name="watch", daemon=True),
        ]
        for t in threads:
            t.start()
        if ready_file is not None:
            ready_file.write_text(f"{os.getpid()}\n")
        LOG.info("node %s ready; pods from %s", self.name, self._pods_path())
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception as exc:
                LOG.warning("reconcile failed: %s", exc)
            self.wake.wait(self.resync)
            self.wake.clear()
        self.shutdown(self.delete_node_on_exit)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def shutdown(self, delete_node: bool = False) -> None:
        LOG.info("stopping %d pod worker(s)", len(self.workers))
        for worker in self.workers.values():
            worker.shutdown = True
            worker.wake.set()
        for worker in self.workers.values():
            worker.join(timeout=20)
        with contextlib.suppress(KubeError):
            self.uncordon_real_node()
        if delete_node:
            self.delete_node()

    def delete_node(self) -> None:
        for path in (
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}",
            f"/api/v1/nodes/{self.name}",
        ):
            with contextlib.suppress(KubeError):
                self.kube.delete(path)
        LOG.info("deleted node %s", self.name)
