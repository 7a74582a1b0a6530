"""The container images' install steps run for real in a clean virtualenv, without a Docker
engine: the wheel the Dockerfile builds and the same deploy/docker/build-venv.sh the image build
runs (pip, new venvs, the console scripts: processes, so not a unit test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_VENV = REPO / "deploy" / "docker" / "build-venv.sh"
# The final images and the console script each runs.
TARGETS = {"runtime": "lambdasink-runtime", "operator": "lambdasink-operator"}

pytestmark = pytest.mark.integration


def _copy_build_context(dest: Path) -> Path:
    """What the Dockerfile's `wheel` stage copies, into a scratch dir (keeps the tree clean)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for tree in ("runtime", "operator"):
        shutil.copytree(
            REPO / tree, dest / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    return dest


@pytest.mark.timeout(900)
def test_image_install_steps_in_a_clean_venv(tmp_path: Path) -> None:
    """Build the wheel, run build-venv.sh for both targets, run each image's entrypoint."""
    python = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = python
    context = tmp_path / "context"
    context.mkdir()
    src = _copy_build_context(context)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(src)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert [w.name for w in wheels.glob("*.whl")] == ["lambda_sink-0.1.0-py3-none-any.whl"]

    venvs = {"runtime": tmp_path / "runtime-venv", "operator": tmp_path / "operator-venv"}
    for target, venv in venvs.items():
        extras = ["operator"] if target == "operator" else []
        proc = subprocess.run(
            ["sh", str(BUILD_VENV), str(wheels), str(venv), *extras],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert not (venv / "bin" / "pip").exists(), "the image's venv must carry no pip"

    for target, venv in venvs.items():
        script = venv / "bin" / TARGETS[target]
        proc = subprocess.run(
            [str(script), "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "usage" in proc.stdout.lower()

    # The worker image carries no Kubernetes client: kopf comes only with the operator extra.
    def has(venv: Path, module: str) -> bool:
        code = f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        return out == "True"

    assert not has(venvs["runtime"], "kopf")
    assert has(venvs["operator"], "kopf")
    for venv in venvs.values():
        assert has(venv, "pulsar") and has(venv, "boto3") and has(venv, "fastavro")
    # Operator flags the chart passes are accepted by the installed CLI.
    help_text = subprocess.run(
        [str(venvs["operator"] / "bin" / "lambdasink-operator"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    for flag in ("--standalone", "--log-level", "--liveness", "--namespace", "--all-namespaces"):
        assert flag in help_text, flag
