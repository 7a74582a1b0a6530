"""The images `make images` builds keep the Dockerfile's promises in a running container.

Each test runs a container of the real image with runc (oci_container.py): the image's own root
filesystem, entrypoint, environment and user, a read-only root and a tmpfs /tmp as the operator's
pods have. The images are built first if the cache has none for the current sources.
"""

from __future__ import annotations

import base64
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from oci_container import OciContainer
from runtime_support import free_port, runtime_config, unique_topic, wait_for
from tests.stack import Recorder, Stack

from stack_lib import images

pytestmark = pytest.mark.integration

NON_ROOT = 10001
ENTRYPOINTS = {"runtime": "lambdasink-runtime", "operator": "lambdasink-operator"}

# Runs inside the image, as its user: what an installer or a compiler would leave behind.
PROBE = r"""
import importlib.util, json, os, shutil
tools = ["pip", "pip3", "pip3.11", "easy_install", "gcc", "cc", "c++", "g++", "clang", "make",
         "ld", "as"]
wheels = [os.path.join(d, f) for top in ("/usr", "/opt") for d, _, fs in os.walk(top) for f in fs
          if f.endswith(".whl")]
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "root_writable": os.access("/", os.W_OK),
    "modules": {m: importlib.util.find_spec(m) is not None for m in ("pip", "setuptools", "wheel")},
    "tools": {t: shutil.which(t) for t in tools if shutil.which(t)},
    "wheels": wheels,
}))
"""


@pytest.fixture(scope="module")
def archives() -> dict[str, Path]:
    """Image reference -> archive; builds the images when the cache has none for these sources."""
    return images.ensure_images()


@pytest.fixture(scope="module")
def refs(archives: dict[str, Path]) -> dict[str, str]:
    """Target -> the ID of this build's image (the tags are shared with other clones' builds)."""
    out = images.image_refs()
    assert set(out.values()) == set(archives)
    return {target: images.storage_image(ref, archives[ref]) for target, ref in out.items()}


@pytest.mark.parametrize("target", sorted(ENTRYPOINTS))
def test_entrypoint_runs_as_the_non_root_user(
    refs: dict[str, str], tmp_path: Path, target: str
) -> None:
    config = images.image_config(refs[target])
    assert config["User"] == f"{NON_ROOT}:{NON_ROOT}"
    assert config["Entrypoint"] == [ENTRYPOINTS[target]]
    box = OciContainer(refs[target], tmp_path, args=["--help"])
    assert box.run() == 0, box.stderr()
    assert "usage" in box.stdout().lower()


@pytest.mark.parametrize("target", sorted(ENTRYPOINTS))
def test_no_installer_and_no_compiler_in_the_image(
    refs: dict[str, str], tmp_path: Path, target: str
) -> None:
    box = OciContainer(refs[target], tmp_path, entrypoint=["python", "-c", PROBE])
    assert box.run() == 0, box.stderr()
    found = json.loads(box.stdout())
    assert (found["uid"], found["gid"]) == (NON_ROOT, NON_ROOT)
    assert found["root_writable"] is False
    assert found["modules"] == {"pip": False, "setuptools": False, "wheel": False}
    assert found["tools"] == {}
    assert found["wheels"] == []
    # ... and no installer the entrypoint's own venv could run.
    box = OciContainer(refs[target], tmp_path, entrypoint=["python", "-m", "pip", "--version"])
    assert box.run() != 0
    assert "No module named pip" in box.stderr()


def _probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def test_worker_serves_and_delivers_on_a_read_only_root(
    stack: Stack, refs: dict[str, str], recorder: Recorder, client: object, tmp_path: Path
) -> None:
    topic = unique_topic("image")
    port = free_port()
    cfg = runtime_config(stack, recorder.function, topics=[topic])
    box = OciContainer(
        refs["runtime"],
        tmp_path,
        env={
            "LAMBDASINK_CONFIG": json.dumps(cfg),
            "LAMBDASINK_HTTP_PORT": str(port),
            "LAMBDASINK_AWS_ACCESS_KEY": stack.access_key,
            "LAMBDASINK_AWS_SECRET_KEY": stack.secret_key,
        },
    ).start()
    try:
        wait_for(
            "the worker's /readyz", lambda: _probe(port, "/readyz") == 200 or not box.alive(), 90
        )
        assert box.alive(), box.stderr()
        assert _probe(port, "/healthz") == 200
        assert _uids(box.host_pid()) == [NON_ROOT] * 4  # real, effective, saved, filesystem

        denied = box.exec("python", "-c", "open('/opt/venv/written', 'w')")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        assert box.exec("python", "-c", "open('/tmp/written', 'w').write('x')").returncode == 0

        producer = client.create_producer(topic)  # type: ignore[attr-defined]
        producer.send(b"from-the-image")
        producer.close()
        entries = recorder.wait_for(1, timeout=60)
        # V2 payloads carry the value base64-encoded.
        assert base64.b64encode(b"from-the-image").decode() in json.dumps(entries)

        assert box.stop(timeout=30) == 0, box.stderr()  # SIGTERM: drained, clean exit
    finally:
        box.remove()


def test_archives_carry_their_names_and_sizes_are_reported(
    archives: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = images.image_report(archives)
    lines = []
    for ref, archive in sorted(archives.items()):
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            assert member is not None
            manifest = json.loads(member.read())
        assert [m["RepoTags"] for m in manifest] == [[ref]]
        size = int(str(report[ref]["size_bytes"]))
        assert size == archive.stat().st_size
        lines.append(f"image size: {ref} {size / 1e6:.0f} MB (uncompressed layers)")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
