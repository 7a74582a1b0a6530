"""Images the node needs without any image registry: built here, imported into containerd.

- the pause image (the pod sandbox): a tiny static C program that sleeps until signalled;
- `lambdasink.local/toolbox`: Debian's static busybox (a shell, nc, wget, httpd) and
  `kube-probe`, an in-cluster API client in Go, in a scratch image: for tests and debugging;
- the project's operator and runtime images, when `make images` built them for the current
  sources (see `project_archives`).

Archives are OCI image layouts written by hand (one uncompressed layer), cached under
<cache>/node-images/ by a digest of their inputs.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .common import StackError, atomic_dir, cache_dir, log

PAUSE_C = r"""
/* The pod sandbox's process: holds the pod's namespaces, reaps zombies, ends on a signal. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction term = {.sa_handler = stop}, chld = {.sa_handler = reap};
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGCHLD, &chld, NULL);
    for (;;) pause();
}
"""

RECIPE = "2"  # bump when the way an image is made changes


def images_dir() -> Path:
    return cache_dir() / "node-images"


Files = dict[str, tuple[bytes, int] | str]  # path -> (content, mode), or the path it hard-links


def _tar_bytes(files: Files) -> bytes:
    """An image layer with fixed owner and times (a reproducible digest)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for path, entry in sorted(files.items(), key=lambda kv: (isinstance(kv[1], str), kv[0])):
            info = tarfile.TarInfo(path)
            if isinstance(entry, str):
                info.type, info.linkname, info.mode = tarfile.LNKTYPE, entry, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(entry[0]), entry[1]
                tf.addfile(info, io.BytesIO(entry[0]))
    return buf.getvalue()


def _blob(out: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size, info.mode = len(data), 0o644
    out.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def js(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def write_oci_archive(path: Path, ref: str, layer: bytes, config: dict[str, Any]) -> None:
    """An OCI image layout tar holding one image named `ref` (containerd reads the name from
    the io.containerd.image.name annotation)."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(path, "w") as out:
        layout = js({"imageLayoutVersion": "1.0.0"})
        info = tarfile.TarInfo("oci-layout")
        info.size = len(layout)
        out.addfile(info, io.BytesIO(layout))
        cfg = _blob(out, js(image_config))
        lay = _blob(out, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **lay}],
        }
        man = _blob(out, js(manifest))
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **man,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        data = js(index)
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))


def _image(name: str, key: str, make: Any) -> tuple[str, Path]:
    """(ref, archive) of a locally built image; `make(tmpdir)` returns (layer files, config)."""
    tag = hashlib.sha256(f"{RECIPE}\n{key}".encode()).hexdigest()[:12]
    ref = f"lambdasink.local/{name}:{tag}"

    def build(tmp: Path) -> None:
        files, config = make(tmp)
        write_oci_archive(tmp / f"{name}-{tag}.tar", ref, _tar_bytes(files), config)

    final = atomic_dir(images_dir() / f"{name}-{tag}", build)
    return ref, final / f"{name}-{tag}.tar"


def pause_image() -> tuple[str, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise StackError("gcc is missing (apt-get install gcc libc6-dev)")

    def make(tmp: Path) -> tuple[Files, dict[str, Any]]:
        src = tmp / "pause.c"
        src.write_text(PAUSE_C)
        out = subprocess.run(
            [gcc, "-static", "-Os", "-s", "-o", str(tmp / "pause"), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise StackError(f"building the pause program failed: {out.stderr}")
        data = (tmp / "pause").read_bytes()
        (tmp / "pause").unlink()
        src.unlink()
        return {"pause": (data, 0o755)}, {"Entrypoint": ["/pause"], "User": "65535:65535"}

    version = subprocess.run(
        [gcc, "-dumpfullversion"], capture_output=True, text=True, check=False
    ).stdout
    return _image("pause", PAUSE_C + version, make)


BUSYBOX = Path("/bin/busybox")

KUBE_PROBE_GO = r"""// kube-probe GETs an API path the way in-cluster clients do: through the
// `kubernetes` Service (KUBERNETES_SERVICE_HOST/PORT, set by the kubelet) with the
// ServiceAccount token and CA the kubelet mounts.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	dir := "/var/run/secrets/kubernetes.io/serviceaccount"
	token, err := os.ReadFile(dir + "/token")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ca, err := os.ReadFile(dir + "/ca.crt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	host := net.JoinHostPort(
		os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	req, _ := http.NewRequest("GET", "https://"+host+os.Args[1], nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s\n", resp.StatusCode, body)
	if resp.StatusCode != 200 {
		os.Exit(1)
	}
}
"""


def _go_build(tmp: Path, source: str, name: str) -> bytes:
    src = tmp / f"{name}-src"
    src.mkdir()
    (src / "go.mod").write_text(f"module lambdasink.local/{name}\n\ngo 1.22\n")
    (src / "main.go").write_text(source)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOWORK": "off"}
    out = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp / name), "."],
        cwd=src, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(f"building {name} failed: {out.stderr}")
    data = (tmp / name).read_bytes()
    shutil.rmtree(src)
    (tmp / name).unlink()
    return data


def toolbox_image() -> tuple[str, Path]:
    """Debian's static busybox with its applets linked in /bin, and kube-probe."""
    if not BUSYBOX.exists():
        raise StackError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    data = BUSYBOX.read_bytes()
    if b"ld-linux" in data[:4096]:
        raise StackError(f"{BUSYBOX} is dynamically linked; the image needs busybox-static")
    go = subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout

    def make(tmp: Path) -> tuple[Files, dict[str, Any]]:
        files: Files = {
            "bin/busybox": (data, 0o755),
            "bin/kube-probe": (_go_build(tmp, KUBE_PROBE_GO, "kube-probe"), 0o755),
        }
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                files[f"bin/{applet}"] = "bin/busybox"
        files["etc/passwd"] = (
            b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
            0o644,
        )
        files["etc/group"] = (b"root:x:0:\nnogroup:x:65534:\n", 0o644)
        files["tmp/.keep"] = (b"", 0o644)
        return files, {"Cmd": ["sh"], "Env": ["PATH=/bin"]}

    key = hashlib.sha256(data).hexdigest() + KUBE_PROBE_GO + go
    return _image("toolbox", key, make)


def project_archives() -> list[Path]:
    """The docker archives of the operator and runtime images for the current sources, if
    `make images` built them (nothing is built here: `up` must not wait for an image build).

    Contract with stack_lib/images.py (`make images`, images branch): `built_images()` returns
    {image reference: archive} for the current inputs, {} when not built; each archive carries
    its reference, so `ctr images import` names the image as the chart and the operator do.
    """
    try:
        images = importlib.import_module(f"{__package__}.images")
    except ModuleNotFoundError:
        return []
    return sorted(Path(p) for p in images.built_images().values())


def import_images(ctr: list[str], archives: list[Path], done_file: Path) -> list[str]:
    """`ctr -n k8s.io images import` each archive not imported into this containerd yet (by
    path, size and mtime, remembered in done_file next to containerd's root, which keeps its
    images across restarts). Returns the archives imported now."""
    try:
        done: dict[str, str] = json.loads(done_file.read_text())
    except (OSError, ValueError):
        done = {}
    imported = []
    for archive in archives:
        st = archive.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        if done.get(str(archive)) == stamp:
            continue
        out = subprocess.run(
            [*ctr, "-n", "k8s.io", "images", "import", str(archive)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise StackError(f"importing {archive} into containerd failed: {out.stderr.strip()}")
        done[str(archive)] = stamp
        imported.append(str(archive))
        log(f"node: imported {archive.parent.name}/{archive.name}")
    with tempfile.NamedTemporaryFile("w", dir=done_file.parent, delete=False) as tmp:
        json.dump(done, tmp)
    os.replace(tmp.name, done_file)
    return imported
