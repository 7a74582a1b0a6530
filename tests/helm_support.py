"""Helpers for the Helm chart tests: the pinned helm binary and rendering the chart.

helm comes from the project's own installer (dev/stack_lib, pinned in dev/stack_versions.env and
cached under ~/.cache/lambda-sink), so a fresh machine builds it once instead of the test skipping.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "lambda-sink"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "ls"
NAMESPACE = "lambdasink-system"

Manifest = dict[str, Any]


def pinned(key: str) -> str:
    """A value of dev/stack_versions.env (what the stack builds and runs)."""
    for line in (REPO / "dev" / "stack_versions.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    raise RuntimeError(f"{key} missing from dev/stack_versions.env")


def kube_version() -> str:
    """The stack's pinned Kubernetes version: template and lint render for the cluster the
    tests run against rather than helm's built-in default."""
    return pinned("KUBERNETES_VERSION")


@functools.cache
def helm_binary() -> str:
    """Path of the pinned helm, built by dev/stack_lib if this machine has not built it yet."""
    from stack_lib import build  # noqa: PLC0415  # dev/ is on pytest's pythonpath

    path = str(build.install(["helm"])["helm"])
    if not Path(path).is_file():
        raise RuntimeError(f"helm was not built at {path}")
    return path


def helm(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run helm; on failure the exception carries helm's stderr."""
    proc = subprocess.run(
        [helm_binary(), *args], check=False, capture_output=True, text=True, timeout=300, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def value_args(values_files: Iterable[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


def template_text(
    values_files: Iterable[Path] = (),
    sets: Sequence[str] = (),
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` (CRDs included) as text."""
    return helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        "--kube-version",
        kube_version(),
        *value_args(values_files, sets),
        check=check,
    )


def render(
    values_files: Iterable[Path] = (),
    sets: Sequence[str] = (),
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """The chart's objects (CRDs included) for these values."""
    text = template_text(values_files, sets, release=release, namespace=namespace).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[Manifest], kind: str) -> Manifest:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
