"""Install what the stack runs: Pulsar through Maven, Go-built binaries through the Go toolchain.

Both clients fetch as this machine configures them (Maven settings, GOPROXY, GOTOOLCHAIN): no
registry address is spelled out here.

Every artefact lands in <cache>/builds/<name>-<version>[-<flavour>]/, built in a temp dir and
renamed, so an interrupted build never leaves a half-built cache entry. <cache>/bin/<tool> links
the pinned one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    VERSIONS,
    StackError,
    atomic_dir,
    bin_dir,
    builds_dir,
    cache_dir,
    link_bin,
    log,
)

# How a tool is built, beyond its version: part of its cache directory's name, so changing a
# recipe (bump its flavour) rebuilds instead of reusing binaries built the old way. "release":
# the version ldflags of the upstream Makefile / hack/lib/version.sh.
FLAVOURS = {"kubernetes": "release", "kubernetes-node": "release", "helm": "release"}


def artefact_dir(name: str, version: str) -> Path:
    flavour = FLAVOURS.get(name)
    return builds_dir() / (f"{name}-{version}-{flavour}" if flavour else f"{name}-{version}")


def go_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOFLAGS="-buildvcs=false -mod=mod", GOWORK="off")
    env["TMPDIR"] = str(work)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], logfile: Path) -> None:
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise StackError(f"failed ({rc}): {' '.join(cmd)}; see {logfile}")


def build_log(name: str) -> Path:
    d = cache_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"build-{name}.log"


# --- Pulsar ------------------------------------------------------------------------------------


def pulsar_home() -> Path:
    return builds_dir() / f"pulsar-{VERSIONS['PULSAR_VERSION']}"


def install_pulsar() -> Path:
    ver = VERSIONS["PULSAR_VERSION"]

    def build(tmp: Path) -> None:
        dl = cache_dir() / "downloads" / f"pulsar-{ver}.tar.gz"
        dl.parent.mkdir(parents=True, exist_ok=True)
        if not dl.exists() or sha1(dl) != VERSIONS["PULSAR_SHA1"]:
            fetch_pulsar(ver, dl)
        log(f"unpacking {dl.name}")
        with tarfile.open(dl) as tf:
            tf.extractall(tmp, filter="data")
        (top,) = list(tmp.iterdir())
        for child in top.iterdir():
            child.rename(tmp / child.name)
        top.rmdir()
        # Keep only what standalone needs: drop bundled offloaders/connectors if present.
        for extra in ("offloaders", "connectors"):
            shutil.rmtree(tmp / extra, ignore_errors=True)

    return atomic_dir(pulsar_home(), build)


def fetch_pulsar(ver: str, dl: Path) -> None:
    """The server distribution through `mvn dependency:copy` (so the machine's Maven settings
    decide where from), checked against the pinned SHA1 before it takes the name `dl`."""
    artifact = f"org.apache.pulsar:pulsar-server-distribution:{ver}:tar.gz:bin"
    for stale in dl.parent.glob(f".{dl.name}.mvn-*"):  # interrupted downloads
        shutil.rmtree(stale, ignore_errors=True)
    out = dl.parent / f".{dl.name}.mvn-{os.getpid()}"
    logfile = build_log("pulsar")
    log(f"fetching {artifact} with mvn (log {logfile})")
    try:
        run(
            ["mvn", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={out}"],
            dl.parent,
            dict(os.environ),
            logfile,
        )
        (got_file,) = out.glob("*.tar.gz")
        got = sha1(got_file)
        if got != VERSIONS["PULSAR_SHA1"]:
            raise StackError(f"pulsar download sha1 {got} != pinned {VERSIONS['PULSAR_SHA1']}")
        os.replace(got_file, dl)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- Go builds -----------------------------------------------------------------------------------


def go_install(
    name: str,
    pkg: str | list[str],
    version: str,
    binaries: list[str],
    ldflags: Callable[[], str] = str,
) -> Path:
    """`go install pkg@version` (one or more packages of one module) into a versioned cache dir
    (for modules without replaces); `ldflags()` is only asked when a build is due (it may fetch
    module metadata)."""
    final = artefact_dir(name, version)
    pkgs = [pkg] if isinstance(pkg, str) else pkg

    def build(tmp: Path) -> None:
        logfile = build_log(name)
        log(f"building {' '.join(pkgs)} @{version} (log {logfile})")
        env = go_env(tmp)
        env["GOBIN"] = str(tmp / "bin")
        env["GOFLAGS"] = "-buildvcs=false"
        flags = ["-trimpath", "-buildvcs=false", f"-ldflags=-s -w {ldflags()}".strip()]
        t0 = time.monotonic()
        run(["go", "install", *flags, *(f"{p}@{version}" for p in pkgs)], tmp, env, logfile)
        log(f"built {name} in {time.monotonic() - t0:.0f}s")
        for b in binaries:
            if not (tmp / "bin" / b).exists():
                raise StackError(f"{b} missing after go install {pkg}")

    return atomic_dir(final, build)


def wrapper_build(
    name: str,
    version: str,
    requires: dict[str, str],
    replaces: dict[str, str],
    packages: dict[str, str],
    ldflags: str = "",
    godebug: str = "",
) -> Path:
    """Build main packages of a module that has local replaces, via a generated wrapper module.

    `packages` maps output binary name -> import path.
    """
    final = artefact_dir(name, version)

    def build(tmp: Path) -> None:
        logfile = build_log(name)
        src = tmp / "src"
        src.mkdir()
        lines = [f"module lambdasink.local/stackbuild/{name}", "", "go 1.25.0", ""]
        if godebug:
            lines += [f"godebug {godebug}", ""]
        lines += ["require ("] + [f"\t{m} {v}" for m, v in sorted(requires.items())] + [")", ""]
        if replaces:
            lines += ["replace ("]
            lines += [f"\t{m} => {m} {v}" for m, v in sorted(replaces.items())]
            lines += [")", ""]
        (src / "go.mod").write_text("\n".join(lines))
        imports = "\n".join(f'\t_ "{p}"' for p in sorted(set(packages.values())))
        (src / "tools.go").write_text(
            f"//go:build tools\n\n// Package tools pins the commands this module builds.\n"
            f"package tools\n\nimport (\n{imports}\n)\n"
        )
        env = go_env(tmp)
        log(f"building {name} {version}: resolving modules (log {logfile})")
        run(["go", "mod", "tidy"], src, env, logfile)
        out = tmp / "bin"
        out.mkdir()
        flags = ["-trimpath", "-buildvcs=false", f"-ldflags=-s -w {ldflags}".strip()]
        t0 = time.monotonic()
        for binary, pkg in packages.items():
            log(f"building {name}: {binary}")
            run(["go", "build", *flags, "-o", str(out / binary), pkg], src, env, logfile)
        log(f"built {name} in {time.monotonic() - t0:.0f}s")

    return atomic_dir(final, build)


def module_download(module: str, version: str) -> dict[str, Any]:
    """`go mod download -json` of a module (fetched as the Go toolchain is configured)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        env=go_env(Path("/tmp")),
        cwd="/tmp",
    )
    if out.returncode != 0:
        raise StackError(f"go mod download {module}@{version}: {out.stdout}{out.stderr}")
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def module_gomod(module: str, version: str) -> str:
    """Text of a module's go.mod."""
    return Path(module_download(module, version)["GoMod"]).read_text()


def module_time(module: str, version: str) -> str:
    """The version's commit time (UTC, the format of upstream's buildDate): a reproducible build
    date, as upstream's SOURCE_DATE_EPOCH gives."""
    info = json.loads(Path(module_download(module, version)["Info"]).read_text())
    stamp = str(info["Time"])  # RFC 3339, UTC
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))


def install_kubernetes() -> Path:
    """The control plane and kubectl."""
    return kubernetes_build(
        "kubernetes",
        {
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
    )


def install_kubernetes_node() -> Path:
    """The node's binaries, from the same pinned source as the control plane (a cache entry of
    their own, so adding them does not rebuild the control plane)."""
    return kubernetes_build(
        "kubernetes-node",
        {
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        },
    )


def kubernetes_build(name: str, packages: dict[str, str]) -> Path:
    ver = VERSIONS["KUBERNETES_VERSION"]
    if artefact_dir(name, ver).exists():
        return artefact_dir(name, ver)
    _, minor, patch = ver.lstrip("v").split(".", 2)
    staging = f"v0.{minor}.{patch}"
    gomod = module_gomod("k8s.io/kubernetes", ver)
    replaces = {
        m: staging for m in re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod, re.M)
    }
    godebug = (re.findall(r"^godebug\s+(\S+)", gomod, re.M) or [""])[0]
    return wrapper_build(
        name,
        ver,
        requires={"k8s.io/kubernetes": ver, **replaces},
        replaces=replaces,
        packages=packages,
        ldflags=kubernetes_ldflags(ver, module_time("k8s.io/kubernetes", ver)),
        godebug=godebug,
    )


def kubernetes_ldflags(ver: str, build_date: str) -> str:
    """hack/lib/version.sh's `kube::version::ldflags` for a release: each key set in both
    k8s.io/client-go/pkg/version and k8s.io/component-base/version (what `kubectl version` and
    the apiserver's /version report); gitCommit/gitTreeState only with a pinned commit."""
    major, minor, _ = ver.lstrip("v").split(".", 2)
    keys = {"buildDate": build_date}
    if VERSIONS.get("KUBERNETES_GIT_COMMIT"):
        keys.update(gitCommit=VERSIONS["KUBERNETES_GIT_COMMIT"], gitTreeState="clean")
    keys.update(gitVersion=ver, gitMajor=major, gitMinor=minor)
    return " ".join(
        f"-X {pkg}.{key}={value}"
        for key, value in keys.items()
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
    )


def helm_ldflags(ver: str) -> str:
    """helm's Makefile for a tagged release: version, commit, tree state, and the Kubernetes
    version helm assumes without a cluster (`helm template`, `helm lint`) derived from its
    k8s.io/client-go like the Makefile does (v0.X.Y -> 1.X). Without these a helm built from
    source claims Kubernetes v1.20 and charts requiring a newer kubeVersion fail to render."""
    gomod = module_gomod("helm.sh/helm/v3", ver)
    found = re.search(r"^\s*k8s\.io/client-go\s+v(\d+)\.(\d+)\.", gomod, re.M)
    if found is None:
        raise StackError(f"k8s.io/client-go missing from helm {ver}'s go.mod")
    k8s_major, k8s_minor = str(int(found[1]) + 1), found[2]
    x = {
        "helm.sh/helm/v3/internal/version.version": ver,
        "helm.sh/helm/v3/internal/version.metadata": "",
        "helm.sh/helm/v3/internal/version.gitCommit": VERSIONS.get("HELM_GIT_COMMIT", ""),
        "helm.sh/helm/v3/internal/version.gitTreeState": "clean",
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor": k8s_major,
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor": k8s_minor,
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor": k8s_major,
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor": k8s_minor,
    }
    return " ".join(f"-X {var}={value}" for var, value in x.items())


def install_etcd() -> Path:
    ver = VERSIONS["ETCD_VERSION"]
    mods = ["api/v3", "client/pkg/v3", "client/v3", "pkg/v3", "server/v3", "etcdutl/v3"]
    req = {f"go.etcd.io/etcd/{m}": ver for m in mods}
    return wrapper_build(
        "etcd",
        ver,
        requires=req,
        replaces={},
        packages={"etcd": "go.etcd.io/etcd/server/v3"},
    )


def install_rie() -> Path:
    return go_install(
        "aws-lambda-rie",
        "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie",
        VERSIONS["RIE_VERSION"],
        ["aws-lambda-rie"],
    )


def install_containerd() -> Path:
    """containerd, its runc shim and ctr, built static (CGO_ENABLED=0, no btrfs/devmapper
    snapshotters: the node uses overlayfs). See CONTAINERD_VERSION for why not Debian's."""
    return go_install(
        "containerd",
        [
            "github.com/containerd/containerd/v2/cmd/containerd",
            "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "github.com/containerd/containerd/v2/cmd/ctr",
        ],
        VERSIONS["CONTAINERD_VERSION"],
        ["containerd", "containerd-shim-runc-v2", "ctr"],
        ldflags=lambda: (
            "-X github.com/containerd/containerd/v2/version.Version="
            + VERSIONS["CONTAINERD_VERSION"]
        ),
    )


def install_crictl() -> Path:
    """crictl: `dev/stack down` removes pod sandboxes through the CRI (CNI DEL, netns, shims)
    even when the kubelet is gone (a killed `up`); ctr cannot reach the CRI's sandboxes."""
    return go_install(
        "crictl",
        "sigs.k8s.io/cri-tools/cmd/crictl",
        VERSIONS["CRICTL_VERSION"],
        ["crictl"],
        ldflags=lambda: (
            f"-X sigs.k8s.io/cri-tools/pkg/version.Version={VERSIONS['CRICTL_VERSION']}"
        ),
    )


def install_helm() -> Path:
    ver = VERSIONS["HELM_VERSION"]
    return go_install(
        "helm", "helm.sh/helm/v3/cmd/helm", ver, ["helm"], ldflags=lambda: helm_ldflags(ver)
    )


INSTALLERS = {
    "pulsar": install_pulsar,
    "rie": install_rie,
    "etcd": install_etcd,
    "kubernetes": install_kubernetes,
    "kubernetes-node": install_kubernetes_node,
    "containerd": install_containerd,
    "crictl": install_crictl,
    "helm": install_helm,
}


def binaries() -> dict[str, str]:
    """Paths of the pinned binaries (whether built yet or not)."""
    v = VERSIONS
    kube = artefact_dir("kubernetes", v["KUBERNETES_VERSION"]) / "bin"
    node = artefact_dir("kubernetes-node", v["KUBERNETES_VERSION"]) / "bin"
    ctrd = artefact_dir("containerd", v["CONTAINERD_VERSION"]) / "bin"
    return {
        "kubelet": str(node / "kubelet"),
        "kube-scheduler": str(node / "kube-scheduler"),
        "containerd": str(ctrd / "containerd"),
        "containerd-shim-runc-v2": str(ctrd / "containerd-shim-runc-v2"),
        "ctr": str(ctrd / "ctr"),
        "crictl": str(artefact_dir("crictl", v["CRICTL_VERSION"]) / "bin" / "crictl"),
        "etcd": str(artefact_dir("etcd", v["ETCD_VERSION"]) / "bin" / "etcd"),
        "kube-apiserver": str(kube / "kube-apiserver"),
        "kube-controller-manager": str(kube / "kube-controller-manager"),
        "kubectl": str(kube / "kubectl"),
        "helm": str(artefact_dir("helm", v["HELM_VERSION"]) / "bin" / "helm"),
        "aws-lambda-rie": str(
            artefact_dir("aws-lambda-rie", v["RIE_VERSION"]) / "bin" / "aws-lambda-rie"
        ),
        "pulsar": str(pulsar_home() / "bin" / "pulsar"),
        "pulsar-admin": str(pulsar_home() / "bin" / "pulsar-admin"),
    }


def install(names: list[str] | None = None) -> dict[str, str]:
    """Install the named components (default all) and link their binaries into <cache>/bin."""
    for name in names or list(INSTALLERS):
        t0 = time.monotonic()
        existed = {
            "pulsar": pulsar_home().exists(),
        }.get(name)
        INSTALLERS[name]()
        if existed is False or time.monotonic() - t0 > 2:
            log(f"{name} installed in {time.monotonic() - t0:.0f}s")
    return link_all()


def link_all() -> dict[str, str]:
    """Link every pinned binary that exists into <cache>/bin; returns all pinned paths."""
    paths = binaries()
    for tool, path in paths.items():
        if not Path(path).exists():
            continue
        if tool.startswith("pulsar"):
            # Pulsar's scripts find their home from $0: a wrapper, not a symlink.
            write_wrapper(tool, Path(path))
        else:
            link_bin(tool, Path(path))
    return paths


def write_wrapper(name: str, target: Path) -> None:
    bin_dir().mkdir(parents=True, exist_ok=True)
    tmp = bin_dir() / f".{name}.{os.getpid()}"
    tmp.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
    tmp.chmod(0o755)
    os.replace(tmp, bin_dir() / name)
