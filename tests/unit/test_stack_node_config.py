"""What dev/stack writes for its node, checked without starting it: containerd's and the CNI's
configuration, and the OCI archives of the locally built images."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from stack_lib import node, node_images

NET = {
    "id": "abc123",
    "bridge": "lskabc123",
    "network": "lambdasink-abc123",
    "subnet": "10.244.7.0/24",
    "gateway": "10.244.7.1",
    "rangeStart": "10.244.7.10",
    "rangeEnd": "10.244.7.253",
}


def paths(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "containerd"
    return {
        "dir": d,
        "root": d / "root",
        "state": d / "state",
        "socket": d / "containerd.sock",
        "cni_conf": tmp_path / "net.d",
        "cni_data": tmp_path / "ipam",
    }


def test_containerd_config_is_private_and_fits_this_kind_of_machine(tmp_path: Path) -> None:
    p = paths(tmp_path)
    cfg = tomllib.loads(node.containerd_config(p, "lambdasink.local/pause:x"))
    assert (cfg["root"], cfg["state"], cfg["grpc"]["address"]) == (
        str(p["root"]),
        str(p["state"]),
        str(p["socket"]),
    )
    runtime = cfg["plugins"]["io.containerd.cri.v1.runtime"]
    # root cannot lower oom_score_adj here; no systemd: cgroupfs
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False
    assert runtime["cni"]["conf_dir"] == str(p["cni_conf"])
    images = cfg["plugins"]["io.containerd.cri.v1.images"]
    assert images["snapshotter"] == "overlayfs"
    assert images["pinned_images"]["sandbox"] == "lambdasink.local/pause:x"
    assert cfg["plugins"]["io.containerd.grpc.v1.cri"]["stream_server_address"] == "127.0.0.1"


def test_every_registry_resolves_to_a_closed_local_port(tmp_path: Path) -> None:
    node.write_registry_hosts(tmp_path)
    hosts = tomllib.loads((tmp_path / "_default" / "hosts.toml").read_text())
    assert hosts["server"] == node.NO_REGISTRY
    assert list(hosts["host"]) == [node.NO_REGISTRY]
    assert node.NO_REGISTRY.startswith("http://127.0.0.1:")


def test_cni_config_is_a_bridge_on_the_stacks_subnet_without_masquerade(tmp_path: Path) -> None:
    cfg = node.cni_config(NET, paths(tmp_path))
    bridge, portmap = cfg["plugins"]
    assert cfg["name"] == NET["network"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"]) == ("bridge", "lskabc123", True)
    assert bridge["ipMasq"] is False
    (rng,) = bridge["ipam"]["ranges"][0:1]
    assert rng[0]["subnet"] == NET["subnet"] and rng[0]["gateway"] == NET["gateway"]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert portmap["type"] == "portmap"


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        out = {}
        for m in tf.getmembers():
            f = tf.extractfile(m)
            if f is not None:
                out[m.name] = f.read()
        return out


def test_an_oci_archive_names_its_image_and_its_digests_match(tmp_path: Path) -> None:
    layer = node_images._tar_bytes({"bin/tool": (b"#!/bin/sh\n", 0o755), "bin/alias": "bin/tool"})
    archive = tmp_path / "img.tar"
    node_images.write_oci_archive(archive, "lambdasink.local/t:1", layer, {"Cmd": ["tool"]})
    files = read_archive(archive)
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "lambdasink.local/t:1"

    def blob(desc: dict[str, Any]) -> bytes:
        data = files["blobs/sha256/" + desc["digest"].split(":")[1]]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
        assert len(data) == desc["size"]
        return data

    manifest = json.loads(blob(entry))
    config = json.loads(blob(manifest["config"]))
    (layer_desc,) = manifest["layers"]
    assert blob(layer_desc) == layer
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"] == {"Cmd": ["tool"]}
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        link = tf.getmember("bin/alias")
        assert link.islnk() and link.linkname == "bin/tool"
