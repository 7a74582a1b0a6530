"""The image names agree everywhere: what `make images` tags (dev/stack_lib/images.py), the
chart's defaults, the operator's default worker image and the project's version."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from lambdasink_operator.reconcile import DEFAULT_RUNTIME_IMAGE
from stack_lib import images

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "lambda-sink"


def _qualified(ref: str) -> str:
    """How containerd names a short reference (the kubelet pulls `docker.io/...`)."""
    return ref if "." in ref.split("/", 1)[0] else f"docker.io/{ref}"


def test_make_images_tags_the_chart_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    refs = images.image_refs()
    assert refs["operator"] == _qualified(f"{values['image']['repository']}:{version}")
    assert refs["runtime"] == _qualified(f"{values['runtimeImage']['repository']}:{version}")


def test_the_operators_default_worker_image_is_the_runtime_image() -> None:
    assert _qualified(DEFAULT_RUNTIME_IMAGE) == images.image_refs()["runtime"]


def test_the_base_is_the_dockerfiles_from() -> None:
    """The local stand-in base carries exactly the name the Dockerfile's FROM resolves to."""
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm" in text
    assert images.base_image() == "docker.io/library/python:3.11.14-slim-bookworm"
