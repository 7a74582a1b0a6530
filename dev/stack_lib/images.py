"""The project's container images, built locally from deploy/docker/Dockerfile with no registry.

Contract with the stack (the node imports what this returns into containerd):

    ensure_images() -> {image reference: docker-archive path}   (builds what is missing)
        e.g. {"docker.io/lambda-sink/runtime:0.1.0": <cache>/images/<key>/runtime.tar, ...}
    built_images() -> the same for the current sources if built, else {} (never builds)

Each archive is a `docker save`-style tar carrying its full reference, so
`ctr -n k8s.io images import <archive>` names the image exactly as the chart and the operator
expect it (`lambda-sink/runtime:0.1.0` normalises to `docker.io/lambda-sink/runtime:0.1.0`).
`image_refs()` gives the same names without building anything.

How: no image registry is reachable, so the Dockerfile's base (`FROM ${PYTHON_IMAGE}`,
python:3.11.14-slim-bookworm) is a local stand-in made with debootstrap (Debian bookworm, minbase)
plus Debian's Python 3.11 and an ensurepip'd pip, committed under exactly that name; then
`buildah bud` builds both targets from the Dockerfile unchanged. buildah keeps its images in a
storage of its own under the cache (never the machine's default one).

Caching: the base is keyed by its recipe (BASE_RECIPE, the suite, the packages); the archives by
a digest of every build input (Dockerfile, .dockerignore, build-venv.sh, pyproject.toml,
README.md, runtime/ and operator/ sources) and the base's key, under <cache>/images/<digest>/.
A warm call only hashes the inputs and finds the archives.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from .common import REPO, StackError, atomic_dir, cache_dir, log, write_json

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
# The Dockerfile's targets and the repository each is tagged with (the chart's defaults).
TARGETS = {"runtime": "lambda-sink/runtime", "operator": "lambda-sink/operator"}
# Debian packages the build needs, installed by ensure_tools() when missing.
TOOL_PACKAGES = {"buildah": "buildah", "debootstrap": "debootstrap", "runc": "runc"}

# The base stand-in: bump BASE_RECIPE whenever make_base_rootfs() changes what it produces.
BASE_RECIPE = "3"
# Bump when build_images() changes how the images are built from the same inputs.
IMAGES_RECIPE = "1"
# Archive sets kept in the shared cache (~700 MB each; other clones may use older ones).
KEEP_ARCHIVE_SETS = 4
DEBIAN_SUITE = "bookworm"
# python3-venv brings python3.11-venv (ensurepip's pip and setuptools wheels) and /usr/bin/python3.
BASE_PACKAGES = ("python3-venv", "ca-certificates")
# Where the host keeps locally added CA certificates: build steps must trust what the host trusts.
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")

# Build inputs hashed into the images' key (besides the Dockerfile and the base), as the
# .dockerignore lets them into the build context.
INPUT_FILES = ("pyproject.toml", "README.md", ".dockerignore", "deploy/docker/build-venv.sh")
INPUT_TREES = ("runtime", "operator")
IGNORED = re.compile(
    r"(^|/)(__pycache__|[^/]*\.egg-info|\.mypy_cache|\.ruff_cache|\.pytest_cache)(/|$)|\.pyc$"
)


class ImageError(StackError):
    """An image build step failed; the message names the command and its log."""


# --- names ---------------------------------------------------------------------------------------


def project_version() -> str:
    """The images' tag: the project's version (also the chart's appVersion)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def image_refs() -> dict[str, str]:
    """Target -> fully qualified reference `make images` tags (no build)."""
    return {t: f"docker.io/{repo}:{project_version()}" for t, repo in TARGETS.items()}


def base_image() -> str:
    """The Dockerfile's default PYTHON_IMAGE, fully qualified as a registry would resolve it."""
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    if not m:
        raise ImageError(f"no `ARG PYTHON_IMAGE=` default in {DOCKERFILE}")
    name = m.group(1)
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def base_key() -> str:
    recipe = json.dumps([BASE_RECIPE, DEBIAN_SUITE, BASE_PACKAGES, base_image()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _input_files() -> Iterator[Path]:
    yield DOCKERFILE
    for name in INPUT_FILES:
        yield REPO / name
    for tree in INPUT_TREES:
        for path in sorted((REPO / tree).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_file() and not IGNORED.search(rel):
                yield path


def inputs_digest() -> str:
    """sha256 over the base's key and every build input's path, mode and content."""
    h = hashlib.sha256(f"base={base_key()} recipe={IMAGES_RECIPE}\n".encode())
    for path in _input_files():
        rel = path.relative_to(REPO).as_posix()
        h.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def images_dir() -> Path:
    return cache_dir() / "images"


# --- tools ---------------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Install buildah, debootstrap and runc from Debian's packages when missing."""
    missing = [pkg for tool, pkg in TOOL_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ImageError(f"missing {missing}; install these Debian packages (as root)")
    log(f"installing Debian packages {missing}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logfile = _logfile("apt")
    _run(["apt-get", "update", "-q"], logfile, env=env)
    # Another developer's apt-get may hold the dpkg lock: wait for it rather than fail.
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    _run(
        ["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *missing],
        logfile,
        env=env,
    )


def storage_args() -> list[str]:
    """buildah's global options: a storage of the project's own, under the cache."""
    root = cache_dir() / "containers"
    return ["--root", str(root / "storage"), "--runroot", str(root / "run")]


def buildah(*args: str, logfile: Path | None = None) -> str:
    """Run buildah on the project's storage; stdout, or ImageError naming the log."""
    cmd = ["buildah", *storage_args(), *args]
    if logfile is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
        return proc.stdout
    _run(cmd, logfile)
    return ""


def _logfile(name: str) -> Path:
    d = cache_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"images-{name}.log"


def _run(cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> None:
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if rc != 0:
        raise ImageError(f"failed ({rc}): {' '.join(cmd)}; see {logfile}")


def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of an image in the project's storage, or None when it is not there."""
    proc = subprocess.run(
        ["buildah", *storage_args(), "inspect", "--type", "image", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    labels = data.get("OCIv1", {}).get("config", {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def image_config(ref: str) -> dict[str, object]:
    """The OCI image config (User, Env, Entrypoint, Cmd, WorkingDir) of an image."""
    data = json.loads(buildah("inspect", "--type", "image", ref))
    config = data.get("OCIv1", {}).get("config", {})
    return dict(config)


# --- the base ------------------------------------------------------------------------------------

BASE_LABEL = "dev.lambda-sink.base-key"


def make_base_rootfs(rootfs: Path, logfile: Path) -> None:
    """Debian minbase + Python 3.11 arranged like the official slim image (pip in /usr/local)."""
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            DEBIAN_SUITE,
            str(rootfs),
        ],
        logfile,
    )
    certs = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    for cert in certs:
        shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    chroot = [
        "chroot",
        str(rootfs),
        "/usr/bin/env",
        "-i",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    _run([*chroot, "update-ca-certificates"], logfile)
    # pip and setuptools from the wheels python3.11-venv ships, installed by pip run from its own
    # wheel (Debian disables ensurepip): they land in /usr/local with their RECORD, as in the
    # official image, so the Dockerfile's `pip uninstall pip setuptools wheel` works.
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    wheels = sorted((rootfs / "usr/share/python-wheels").glob("*.whl"))
    pip_whl = [w for w in wheels if w.name.startswith("pip-")]
    wanted = [
        f"/usr/share/python-wheels/{w.name}"
        for w in wheels
        if w.name.startswith(("pip-", "setuptools-"))
    ]
    if not pip_whl:
        raise ImageError(f"no pip wheel in {rootfs}/usr/share/python-wheels; see {logfile}")
    pip = f"/usr/share/python-wheels/{pip_whl[0].name}/pip"
    _run([*chroot, "python3.11", pip, "install", "--no-index", "--no-cache-dir", *wanted], logfile)
    # The official image carries no spare wheels either: a pip wheel left here would be an
    # installer in the final images.
    shutil.rmtree(rootfs / "usr/share/python-wheels")
    local_bin = rootfs / "usr/local/bin"
    for name, target in {"python": "/usr/bin/python3.11", "python3": "/usr/bin/python3.11"}.items():
        (local_bin / name).unlink(missing_ok=True)
        (local_bin / name).symlink_to(target)
    # pip (in build steps) trusts the system store, where the host's CA certificates now are.
    (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    # Like the official slim image: no manuals or package docs (copyright files stay).
    for docs in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / docs, ignore_errors=True)
    for entry in (rootfs / "usr/share/doc").rglob("*"):
        if entry.is_file() and entry.name != "copyright":
            entry.unlink()
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / junk).glob("*"):
            if entry.is_file():
                entry.unlink()
    shutil.rmtree(rootfs / "var/cache/apt/archives/partial", ignore_errors=True)


def ensure_base() -> str:
    """The Dockerfile's FROM image in the project's storage; built when missing or stale."""
    ref = base_image()
    key = base_key()
    labels = image_labels(ref)
    if labels is not None and labels.get(BASE_LABEL) == key:
        return ref
    recipe = f"debootstrap {DEBIAN_SUITE} minbase + {' '.join(BASE_PACKAGES)}, r{BASE_RECIPE}"
    t0 = time.monotonic()
    log(f"building the base {ref} (debootstrap {DEBIAN_SUITE} + Debian's Python 3.11)")
    logfile = _logfile("base")
    logfile.write_text("")
    images_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".base-", dir=images_dir()))
    container = ""
    try:
        rootfs = work / "rootfs"
        make_base_rootfs(rootfs, logfile)
        container = buildah("from", "scratch").strip()
        mount = Path(buildah("mount", container).strip())
        _run(["cp", "-a", f"{rootfs}/.", f"{mount}/"], logfile)
        buildah("umount", container)
        buildah(
            "config",
            "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8",
            "--cmd", "python3",
            "--label", f"{BASE_LABEL}={key}",
            "--label", f"dev.lambda-sink.base-recipe={recipe}",
            container,
        )  # fmt: skip
        buildah("commit", "--rm", "--quiet", container, ref)
        container = ""
    finally:
        if container:
            subprocess.run(
                ["buildah", *storage_args(), "rm", container], capture_output=True, check=False
            )
        shutil.rmtree(work, ignore_errors=True)
    log(f"base {ref} built in {time.monotonic() - t0:.0f}s")
    return ref


# --- the images ----------------------------------------------------------------------------------


def _cached(final: Path) -> dict[str, Path] | None:
    manifest = final / "images.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    out = {ref: final / entry["archive"] for ref, entry in data["images"].items()}
    return out if all(p.exists() for p in out.values()) else None


def build_images(out: Path) -> None:
    """Build every target from the Dockerfile and save each as a docker archive in `out`."""
    base = ensure_base()
    logfile = _logfile("build")
    logfile.write_text("")
    entries: dict[str, dict[str, object]] = {}
    for target, ref in image_refs().items():
        t0 = time.monotonic()
        _run(
            [
                "buildah", *storage_args(), "bud",
                "--pull-never", "--layers", "--network", "host",
                "--build-arg", f"PYTHON_IMAGE={base}",
                "-f", str(DOCKERFILE), "--target", target, "-t", ref, str(REPO),
            ],
            logfile,
        )  # fmt: skip
        archive = out / f"{target}.tar"
        buildah("push", "--quiet", ref, f"docker-archive:{archive}:{ref}")
        image_id = buildah(
            "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref
        ).strip()
        # The uncompressed size of its layers: what a node stores (a registry's is gzipped).
        size = archive.stat().st_size
        entries[ref] = {
            "target": target,
            "archive": archive.name,
            "image_id": image_id,
            "size_bytes": size,
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        log(f"{ref}: {size / 1e6:.0f} MB, built in {time.monotonic() - t0:.0f}s")
    write_json(out / "images.json", {"base": base, "base_key": base_key(), "images": entries})
    # Layers of earlier sources are only disk: keep the tagged images and their chains. Best
    # effort: an image another clone's test container still uses stays.
    subprocess.run(["buildah", *storage_args(), "rmi", "--prune"], capture_output=True, check=False)


def built_images() -> dict[str, Path]:
    """Image reference -> archive for the current sources if already built, else {} (no build):
    what `dev/stack up` imports into the node's containerd without waiting for a build."""
    return _cached(images_dir() / inputs_digest()[:24]) or {}


def ensure_images() -> dict[str, Path]:
    """Image reference -> docker archive, built when the inputs' digest has no archives yet."""
    digest = inputs_digest()
    final = images_dir() / digest[:24]
    cached = _cached(final)
    if cached is not None:
        return cached
    ensure_tools()
    images_dir().mkdir(parents=True, exist_ok=True)
    # One build at a time across clones: buildah's layer cache and the base are shared.
    with (images_dir() / ".build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for another image build")
            fcntl.flock(lock, fcntl.LOCK_EX)
        atomic_dir(final, build_images)
        if inputs_digest() != digest:
            # A source changed while it was being built: the archives match neither version.
            shutil.rmtree(final, ignore_errors=True)
            raise ImageError("the image inputs changed during the build; run it again")
        _prune(keep=final)
    cached = _cached(final)
    if cached is None:
        raise ImageError(f"{final} has no complete images.json after the build")
    return cached


def _prune(keep: Path) -> None:
    """Remove all but the newest KEEP_ARCHIVE_SETS archive sets (never `keep`)."""
    sets = [d for d in images_dir().iterdir() if d.is_dir() and not d.name.startswith(".")]
    sets.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for old in sets[KEEP_ARCHIVE_SETS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def storage_image(ref: str, archive: Path) -> str:
    """The ID of the image `archive` holds, in buildah's storage (loaded from the archive when
    missing). Tags are shared by every clone's builds, so this, not `ref`, names our build."""
    image_id = str(image_report({ref: archive})[ref]["image_id"])
    if image_labels(image_id) is None:
        pulled = buildah("pull", "--quiet", f"docker-archive:{archive}").strip()
        if pulled != image_id:
            raise ImageError(f"{archive} holds image {pulled}, images.json says {image_id}")
    return image_id


def image_report(archives: dict[str, Path]) -> dict[str, dict[str, object]]:
    """What the build recorded of each image (size, id, build time), by reference."""
    out: dict[str, dict[str, object]] = {}
    for ref, archive in archives.items():
        data = json.loads((archive.parent / "images.json").read_text())
        out[ref] = dict(data["images"][ref])
    return out
