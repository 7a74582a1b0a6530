"""Helpers for the operator's tests on the local stack's real kube-apiserver + controller-manager.

The stack comes from `dev/stack up` (details in .stack/stack.json). These tests never skip: a
missing stack is a failure that says how to start it. Each test gets its own namespace and its
own operator process (`lambdasink-operator --namespace <ns> --standalone`), so tests do not see
each other's resources. (A cluster-wide operator of another suite on the same API server would
still see them: the samples set spec.image so that both operators build the same Deployment.)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.stack import wait_for

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "deploy/crds/lambdasink.dev_lambdasinks.yaml"
EXAMPLES = REPO / "examples"
T = TypeVar("T")


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    server: str

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl_bin, "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        out = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}"
            )
        return out

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr or "not found" in out.stderr:
                return None
            raise AssertionError(out.stderr)
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def apply(self, doc: dict[str, Any] | str, namespace: str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        self.kubectl("apply", "-n", namespace, "-f", "-", stdin=text)


_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ ")
_DENIED = re.compile(r"Forbidden|\b403\b")


def denied_lines(log: str) -> list[str]:
    """Lines of an operator log that report an API call refused by RBAC (timestamps ignored)."""
    return [line for line in log.splitlines() if _DENIED.search(_LOG_PREFIX.sub("", line))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """`lambdasink-operator` as a subprocess, as a user (or the chart) runs it."""

    def __init__(
        self, kubeconfig: str, namespace: str, log_path: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.health_port = free_port()
        self.metrics_port = free_port()
        args = [
            "--namespace",
            namespace,
            "--standalone",
            "--log-level",
            "DEBUG",
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
            *extra_args,
        ]
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "LAMBDASINK_RUNTIME_IMAGE": "lambdasink-runtime:test",
        }
        self._start(args, env, log_path)

    def _start(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        """Start the process on `self.health_port`/`self.metrics_port`; wait until it is alive."""
        self.log_path = log_path
        self._log = log_path.open("w")
        exe = Path(sys.executable).with_name("lambdasink-operator")
        self.proc = subprocess.Popen(
            [str(exe), *args], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        wait_for("the operator's liveness endpoint", self._healthy, timeout=60)

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text: str = r.read().decode()
            return text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
