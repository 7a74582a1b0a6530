"""Pure translations from a Pod spec to what a local process needs (no I/O except Dockerfiles).

Kept apart from the process supervision so the Kubernetes semantics (env precedence, `$(VAR)`
expansion, command/args vs ENTRYPOINT/CMD, nodeSelector, tolerations) can be read in one place.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

# Fallback when deploy/docker/ holds no Dockerfile naming an entrypoint for an image.
DEFAULT_IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    "runtime": ["lambdasink-runtime"],
    "operator": ["lambdasink-operator"],
}


class ContainerConfigError(Exception):
    """The container cannot be started as specified (kubelet: CreateContainerConfigError)."""


# -- $(VAR) expansion --------------------------------------------------------------------------


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


# -- environment -------------------------------------------------------------------------------


def field_ref(pod: JSON, path: str, pod_ip: str) -> str:
    """The downward API's fieldRef values."""
    meta = pod.get("metadata", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod.get("spec", {}).get("nodeName"),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": pod_ip,
        "status.hostIPs": pod_ip,
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path] or "")


def _resource_ref(container: JSON, ref: JSON) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    value = container.get("resources", {}).get(kind, {}).get(name)
    if value is None:
        return "0" if kind == "requests" else {"cpu": "2", "memory": str(8 << 30)}.get(name, "0")
    return str(value)


Lookup = Callable[[str, str], "dict[str, str] | None"]
"""(namespace, name) -> decoded data of a Secret/ConfigMap, or None when it does not exist."""


def resolve_env(
    pod: JSON,
    container: JSON,
    *,
    secret: Lookup,
    config_map: Lookup,
    pod_ip: str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment with kubelet's precedence: envFrom, then env (later wins)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})

    def source(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        data = (secret if kind == "secret" else config_map)(ns, name)
        if data is None and not optional:
            raise ContainerConfigError(f'{kind} "{name}" not found')
        return data

    for item in container.get("envFrom", []) or []:
        prefix = item.get("prefix", "")
        for kind, key in (("secret", "secretRef"), ("configmap", "configMapRef")):
            if key in item:
                ref = item[key]
                data = source(kind, ref["name"], bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v
    for var in container.get("env", []) or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        vf = var["valueFrom"]
        if "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind = "secret" if "secretKeyRef" in vf else "configmap"
            ref = vf["secretKeyRef" if kind == "secret" else "configMapKeyRef"]
            optional = bool(ref.get("optional"))
            data = source(kind, ref["name"], optional)
            if data is None:
                continue
            if ref["key"] not in data:
                if optional:
                    continue
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {kind.capitalize()} {ns}/{ref['name']}"
                )
            env[name] = data[ref["key"]]
        elif "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"], pod_ip)
        elif "resourceFieldRef" in vf:
            env[name] = _resource_ref(container, vf["resourceFieldRef"])
        else:
            raise ContainerConfigError(f"unsupported valueFrom in env {name}: {sorted(vf)}")
    return env


def decode_secret(obj: JSON) -> dict[str, str]:
    out = {
        k: base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (obj.get("data") or {}).items()
    }
    out.update(obj.get("stringData") or {})
    return out


def decode_config_map(obj: JSON) -> dict[str, str]:
    out = dict(obj.get("data") or {})
    for k, v in (obj.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v).decode("utf-8", "replace")
    return out


# -- images and commands -----------------------------------------------------------------------


def _parse_instruction(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return [str(x) for x in parsed]
        except ValueError:
            pass
    return ["/bin/sh", "-c", value]


def dockerfile_entrypoints(docker_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Image key -> (ENTRYPOINT, CMD) read from the Dockerfiles under deploy/docker/.

    The key is a stage name (`FROM x AS runtime`) or what the file name says besides
    "Dockerfile" (`runtime.Dockerfile`, `Dockerfile.runtime`, `runtime/Dockerfile`).
    """
    found: dict[str, tuple[list[str], list[str]]] = {}
    if not docker_dir.is_dir():
        return found
    for path in sorted(docker_dir.rglob("*")):
        if not path.is_file() or "dockerfile" not in path.name.lower():
            continue
        rel = str(path.relative_to(docker_dir))
        file_key = re.sub(r"(?i)dockerfile", "", rel).strip("./-_").replace("/", "")
        stage: str | None = None
        stages: dict[str | None, tuple[list[str], list[str]]] = {}
        text = re.sub(r"\\\n", " ", path.read_text(errors="replace"))
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "FROM":
                parts = rest.split()
                stage = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
                # a stage starts from its base's entrypoint if the base is an earlier stage
                stages[stage] = stages.get(parts[0] if parts else None, ([], []))
            elif word == "ENTRYPOINT":
                stages[stage] = (_parse_instruction(rest), [])
            elif word == "CMD":
                stages[stage] = (stages.get(stage, ([], []))[0], _parse_instruction(rest))
        for name, value in stages.items():
            if name and value[0]:
                found[name] = value
        if stages and file_key:
            last = list(stages.values())[-1]
            if last[0]:
                found[file_key] = last
    return found


def image_key(image: str) -> str:
    """`registry:5000/org/lambda-sink-runtime:0.1@sha256:..` -> `lambda-sink-runtime`."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def image_entrypoint(
    image: str, table: Mapping[str, tuple[list[str], list[str]]]
) -> tuple[list[str], list[str]] | None:
    """The (ENTRYPOINT, CMD) for an image: exact key, then the longest key it ends with."""
    key = image_key(image)
    if key in table:
        return table[key]
    for cand in sorted(table, key=len, reverse=True):
        if key.endswith(cand):
            return table[cand]
    return None


def resolve_executable(cmd0: str, path: str) -> str:
    """An executable for argv[0], searching `path` (the venv first) and mapping container paths.

    `/usr/local/bin/lambdasink-runtime` does not exist on this host; its basename on our PATH does.
    """
    if "/" in cmd0:
        if Path(cmd0).exists():
            return cmd0
        found = shutil.which(Path(cmd0).name, path=path)
    else:
        found = shutil.which(cmd0, path=path)
    if not found:
        raise ContainerConfigError(f'executable "{cmd0}" not found on PATH {path}')
    return found


def container_argv(
    container: JSON,
    env: Mapping[str, str],
    table: Mapping[str, tuple[list[str], list[str]]],
    path: str,
) -> list[str]:
    """argv by Kubernetes' rules: command replaces ENTRYPOINT (drops CMD); args replaces CMD."""
    command = list(container.get("command") or [])
    args = container.get("args")
    if command:
        argv = command + list(args or [])
    else:
        entry = image_entrypoint(str(container.get("image", "")), table)
        if entry is None:
            raise ContainerConfigError(
                f"image {container.get('image')!r} has no known entrypoint; set `command` "
                f"or map it (known: {', '.join(sorted(table)) or 'none'})"
            )
        argv = entry[0] + list(args if args is not None else entry[1])
    argv = [expand(str(a), env) for a in argv]
    argv[0] = resolve_executable(argv[0], path)
    return argv


def remap_ports(argv: list[str], ports: Mapping[int, int]) -> list[str]:
    """Rewrite `:<containerPort>` in arguments to the pod's private host port.

    Every pod shares this host's network, so `--liveness=http://0.0.0.0:8080/healthz` would
    collide with Pulsar's 8080 (and with the next replica); declared ports are moved instead.
    """

    def sub(m: re.Match[str]) -> str:
        port = int(m.group(1))
        return f":{ports[port]}" if port in ports else m.group(0)

    return argv[:1] + [re.sub(r":(\d{2,5})(?!\d)", sub, a) for a in argv[1:]]


def remap_paths(value: str, mounts: Mapping[str, str]) -> str:
    """Point paths under a volume's mountPath at the host copy of that volume.

    Works inside larger strings too (the worker's JSON config names its TLS files).
    """
    for mount_path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount_path:
            return host
        value = value.replace(mount_path + "/", host + "/")
    return value


def describe_argv(argv: list[str]) -> str:
    return shlex.join(argv)


# -- placement ---------------------------------------------------------------------------------


def tolerates(pod: JSON, taint: JSON) -> bool:
    for tol in pod.get("spec", {}).get("tolerations", []) or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        op = tol.get("operator", "Equal")
        if op == "Exists" and (not tol.get("key") or tol["key"] == taint.get("key")):
            return True
        if (
            op == "Equal"
            and tol.get("key") == taint.get("key")
            and tol.get("value", "") == taint.get("value", "")
        ):
            return True
    return False


def fits_node(pod: JSON, node: JSON) -> tuple[bool, str]:
    """Whether a pod may go to this node: nodeSelector and (user) taints; affinity is ignored."""
    labels = node.get("metadata", {}).get("labels", {}) or {}
    for key, value in (pod.get("spec", {}).get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False, f"nodeSelector {key}={value} does not match"
    for taint in node.get("spec", {}).get("taints", []) or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if str(taint.get("key", "")).startswith("node.kubernetes.io/"):
            continue  # transient, controller-managed; a local dev node is always usable
        if not tolerates(pod, taint):
            return False, f"taint {taint.get('key')} not tolerated"
    return True, ""
