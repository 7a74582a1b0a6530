"""The container images, without a Docker engine: the Dockerfile's structure (its install steps
run for real in tests/integration/test_image_install.py).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
CHART = REPO / "deploy" / "helm" / "lambda-sink"

# The final images and the console script each runs.
TARGETS = {"runtime": "lambdasink-runtime", "operator": "lambdasink-operator"}
NON_ROOT_UID = 10001


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert m, line
            stages.append(Stage(base=m.group(1), name=m.group(2) or str(len(stages))))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse_dockerfile(DOCKERFILE)
BY_NAME = {s.name: s for s in STAGES}


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = [BY_NAME[name]]
    while out[-1].base in BY_NAME:
        out.append(BY_NAME[out[-1].base])
    return out


def test_base_image_is_a_pinned_slim_python() -> None:
    image = ARGS["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    for stage in STAGES:
        assert stage.base in ("${PYTHON_IMAGE}", *BY_NAME), (stage.name, stage.base)


def test_multi_stage_final_targets() -> None:
    assert set(TARGETS) <= set(BY_NAME)
    assert len(STAGES) >= 4
    # A build without --target gets the operator (the last stage).
    assert STAGES[-1].name == "operator"


@pytest.mark.parametrize(("target", "script"), TARGETS.items())
def test_final_image_runs_its_console_script_as_non_root(target: str, script: str) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts
    stage = BY_NAME[target]
    assert json.loads(stage.all("ENTRYPOINT")[-1]) == [script]
    assert stage.all("CMD") == []
    users = [u for s in reversed(chain(target)) for u in s.all("USER")]
    assert users, f"{target} sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert int(uid) == NON_ROOT_UID and int(gid or uid) != 0


@pytest.mark.parametrize("target", TARGETS)
def test_final_image_has_no_build_tools(target: str) -> None:
    for stage in chain(target):
        runs = " ".join(stage.all("RUN"))
        for tool in ("pip install", "pip wheel", "apt-get", "gcc", "build-venv.sh"):
            assert tool not in runs, (target, stage.name, tool)
    copies = BY_NAME[target].all("COPY")
    assert copies == [f"--from={target}-venv /opt/venv /opt/venv"]
    base_runs = " ".join(BY_NAME["base"].all("RUN"))
    assert "pip uninstall --yes --quiet pip setuptools wheel" in base_runs


def test_venv_stages_install_the_wheel_with_the_right_extras() -> None:
    assert BY_NAME["runtime-venv"].all("RUN") == ["build-venv.sh /wheels /opt/venv"]
    assert BY_NAME["operator-venv"].all("RUN") == ["build-venv.sh /wheels /opt/venv operator"]
    assert "pyproject.toml" in " ".join(BY_NAME["wheel"].all("COPY"))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; "!" re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").rstrip("/")
        pat = pat.removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) for p in prefixes) or any(
            fnmatch.fnmatch(part, pat) for part in parts
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for stage in STAGES:
        for copy in stage.all("COPY"):
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            if not any(w.startswith("--from") for w in shlex.split(copy)):
                sources += words[:-1]
    assert sources
    for src in sources:
        assert not _ignored(src.rstrip("/"), patterns), src
        assert (REPO / src).exists(), src
    for unwanted in (
        ".venv/bin/python",
        ".git/config",
        ".stack/stack.json",
        "tests/unit",
        "runtime/lambdasink_runtime/__pycache__/x.pyc",
        "dev/stack",
    ):
        assert _ignored(unwanted, patterns), unwanted


def test_operator_deployment_uses_the_image_entrypoint() -> None:
    """The chart passes flags only; the command is the image's ENTRYPOINT (lambdasink-operator)."""
    text = (CHART / "templates" / "deployment.yaml").read_text()
    assert "command:" not in text
    assert "args:" in text


def test_worker_deployment_runs_the_runtime_images_entrypoint() -> None:
    """The operator's worker container command is the runtime image's ENTRYPOINT, and its user
    is numeric and non-root so the workers' runAsNonRoot can be verified by the kubelet."""
    from lambdasink_operator import manifests, spec  # noqa: PLC0415

    body = yaml.safe_load((REPO / "examples" / "lambdasink-local.yaml").read_text())
    body["metadata"].update(namespace="ns", uid="00000000-0000-0000-0000-000000000000")
    plan = spec.plan_worker(body["metadata"]["name"], body["spec"])
    deployment = manifests.build_deployment(
        body, plan, image="lambda-sink/runtime:0.1.0", config_hash="x"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == json.loads(BY_NAME["runtime"].all("ENTRYPOINT")[-1])
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_security.get("runAsNonRoot") is True
    base_run = " ".join(BY_NAME["base"].all("RUN"))
    assert f"groupadd --system --gid {NON_ROOT_UID}" in base_run
    assert f"useradd --system --uid {NON_ROOT_UID} --gid {NON_ROOT_UID}" in base_run
