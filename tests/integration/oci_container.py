"""Run a container of an image `make images` built, with runc (a real OCI runtime), as a pod would.

The OCI bundle is made the way a container runtime makes it from the image: the root filesystem
is the image's own (`buildah from` + `buildah mount` in the project's image storage), and the
process takes the image config's Entrypoint, Cmd, Env, WorkingDir and numeric User. What a pod
spec adds is explicit: a read-only root (readOnlyRootFilesystem), a tmpfs on /tmp (the emptyDir
the operator mounts), every capability dropped, no new privileges. The container shares the
host's network namespace (as a hostNetwork pod), so it reaches the stack on 127.0.0.1 and the
test reaches its HTTP port there.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from stack_lib.images import buildah, image_config


class OciContainer:
    """One container; stdout/stderr are kept in files under `workdir`."""

    def __init__(
        self,
        ref: str,
        workdir: Path,
        *,
        args: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        read_only: bool = True,
    ) -> None:
        self.ref = ref
        self.id = f"lambdasink-test-{uuid.uuid4().hex[:10]}"
        self.workdir = workdir / self.id
        self.config = image_config(ref)
        self.args = args
        self.entrypoint = entrypoint
        self.env = dict(env or {})
        self.read_only = read_only
        self.state_root = self.workdir / "runc"
        self.bundle = self.workdir / "bundle"
        self.stdout_path = self.workdir / "stdout"
        self.stderr_path = self.workdir / "stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.working_container = ""
        self._files: list[IO[bytes]] = []

    # -- the bundle
    def _user(self) -> tuple[int, int]:
        user = str(self.config.get("User") or "0")
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and (not gid or gid.isdigit()), f"non-numeric image User {user!r}"
        return int(uid), int(gid or 0)

    def process_args(self) -> list[str]:
        entrypoint = list(self.entrypoint or _str_list(self.config.get("Entrypoint")))
        if self.entrypoint is not None:
            args = list(self.args or [])
        else:
            args = list(self.args if self.args is not None else _str_list(self.config.get("Cmd")))
        return entrypoint + args

    def _spec(self, rootfs: str) -> dict[str, Any]:
        subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], check=True)
        spec: dict[str, Any] = json.loads((self.bundle / "config.json").read_text())
        uid, gid = self._user()
        env = _str_list(self.config.get("Env")) + [f"{k}={v}" for k, v in self.env.items()]
        spec["root"] = {"path": rootfs, "readonly": self.read_only}
        spec["hostname"] = self.id[:63]
        process = spec["process"]
        process.update(
            terminal=False,
            args=self.process_args(),
            env=env,
            cwd=str(self.config.get("WorkingDir") or "/"),
            user={"uid": uid, "gid": gid},
            noNewPrivileges=True,
        )
        process["capabilities"] = {k: [] for k in process.get("capabilities", {})}
        spec["mounts"].append(
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=64m"],
            }
        )
        linux = spec["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        return spec

    # -- lifecycle
    def start(self) -> OciContainer:
        assert self.proc is None, "already started"
        self.bundle.mkdir(parents=True)
        self.working_container = buildah("from", "--pull-never", "--quiet", self.ref).strip()
        rootfs = buildah("mount", self.working_container).strip()
        spec = self._spec(rootfs)
        (self.bundle / "config.json").write_text(json.dumps(spec, indent=2))
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        self.proc = subprocess.Popen(
            ["runc", "--root", str(self.state_root), "run", "--bundle", str(self.bundle), self.id],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        return self

    def run(self, timeout: float = 120) -> int:
        """Start, wait for the exit, clean up; the exit code."""
        self.start()
        try:
            return self.wait(timeout)
        finally:
            self.remove()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def host_pid(self) -> int:
        """The container's init process as the host sees it (from `runc state`)."""
        state = self._runc("state", self.id)
        return int(json.loads(state.stdout)["pid"])

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run argv in the running container, as the image's user."""
        uid, gid = self._user()
        return self._runc("exec", "--user", f"{uid}:{gid}", self.id, *argv, check=False)

    def signal(self, name: str) -> None:
        self._runc("kill", self.id, name, check=False)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as the kubelet stops a container; SIGKILL after `timeout`."""
        assert self.proc is not None
        self.signal("TERM")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal("KILL")
            return self.proc.wait(10)

    def remove(self) -> None:
        if self.alive():
            self.signal("KILL")
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert self.proc is not None
                self.proc.wait(10)
        self._runc("delete", "--force", self.id, check=False)
        for f in self._files:
            f.close()
        if self.working_container:
            buildah("rm", self.working_container)
            self.working_container = ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", str(self.state_root), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )


def _str_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
