"""Run one pod's containers as local processes and report them as a kubelet would.

A PodWorker thread owns one pod: it starts each container's command (with the pod's environment,
a private port per declared port, a termination-log file), runs the probes, restarts per
restartPolicy with back-off, writes the pod's status, and on deletion stops the processes
(SIGTERM, grace period, SIGKILL) before removing the pod from the API.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localhost import free_port, proc_start_time

from . import podspec
from .kube import JSON, Kube, KubeError

LOG = logging.getLogger("node-agent")
POD_IP = "127.0.0.1"
# Variables handed down from the agent's environment; everything else comes from the pod spec.
INHERITED_ENV = ("LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kill_recorded(pid_file: Path, node: str, sig: int = signal.SIGKILL) -> bool:
    """Kill the process group a pid file recorded, if that very process of `node` still lives."""
    try:
        pid_s, start, owner = pid_file.read_text().split()[:3]
        pid = int(pid_s)
    except (OSError, ValueError):
        return False
    if owner != node or proc_start_time(pid) != start:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
        return True
    return False


@dataclass
class AgentSettings:
    node_name: str
    state_dir: Path
    repo_root: Path
    path: str  # PATH for pods: the venv first
    image_table: dict[str, tuple[list[str], list[str]]]
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    token_expiration: int = 86400
    default_grace: float = 30.0


@dataclass
class Probe:
    spec: JSON
    kind: str  # readiness | liveness | startup
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0
    last_message: str = ""

    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))


@dataclass
class ContainerRunner:
    """One container: its process, restarts, probes and reported status."""

    pod_key: str
    spec: JSON
    log_path: Path
    work_dir: Path
    ports: dict[int, int]  # container port -> host port
    named: dict[str, int]  # port name -> container port
    node_name: str = ""
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    consecutive_exits: int = 0
    next_start: float = 0.0
    finished: bool = False  # terminated and not to be restarted
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    kill_reason: str | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def term_log(self) -> Path:
        return self.work_dir / f"{self.name}.termination-log"

    @property
    def pid_file(self) -> Path:
        return self.work_dir / f"{self.name}.pid"

    def host_port(self, port: Any) -> int:
        if isinstance(port, str) and not port.isdigit():
            if port not in self.named:
                raise podspec.ContainerConfigError(f"probe names unknown port {port!r}")
            port = self.named[port]
        return self.ports.get(int(port), int(port))

    # -- process -------------------------------------------------------------------------------

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        self.term_log.write_text("")
        with self.log_path.open("ab") as log:
            log.write(
                f"--- {now_rfc3339()} node-agent: starting container {self.name} "
                f"(restart {self.restart_count}): {podspec.describe_argv(argv)}\n".encode()
            )
            log.flush()
            workdir = self.spec.get("workingDir")
            cwd = workdir if workdir and Path(workdir).is_dir() else str(self.work_dir)
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = proc_start_time(self.proc.pid)
        self.pid_file.write_text(f"{self.proc.pid} {start} {self.node_name}\n")
        self.started_at = now_rfc3339()
        self.started_mono = time.monotonic()
        self.state = {"running": {"startedAt": self.started_at}}
        self.ready = False
        self.kill_reason = None
        self.started = "startupProbe" not in self.spec
        self.probes = {}
        for kind in ("startup", "readiness", "liveness"):
            spec = self.spec.get(f"{kind}Probe")
            if spec:
                delay = float(spec.get("initialDelaySeconds", 0))
                self.probes[kind] = Probe(spec, kind, next_at=time.monotonic() + delay)
        LOG.info("%s/%s started pid %d", self.pod_key, self.name, self.proc.pid)

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def reap(self, restart_policy: str, backoff_base: float, backoff_max: float) -> bool:
        """Record an exited process; returns True if it exited just now."""
        if self.proc is None or self.proc.poll() is None:
            return False
        code = self.proc.returncode
        if code < 0:  # killed by a signal: report as a shell would (128 + signal)
            code = 128 - code
        message = ""
        with contextlib.suppress(OSError):
            message = self.term_log.read_text(errors="replace").strip()
        if (
            not message
            and code != 0
            and (self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError")
        ):
            with contextlib.suppress(OSError):
                message = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-80:])
        terminated: JSON = {
            "exitCode": code,
            "reason": self.kill_reason or ("Completed" if code == 0 else "Error"),
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": f"nodeagent://{self.proc.pid}",
        }
        if message:
            terminated["message"] = message[-4096:]
        LOG.info("%s/%s exited with %d", self.pod_key, self.name, code)
        with self.log_path.open("ab") as log:
            log.write(f"--- {now_rfc3339()} node-agent: {self.name} exited {code}\n".encode())
        self.proc = None
        self.pid_file.unlink(missing_ok=True)
        self.ready = False
        ran = time.monotonic() - self.started_mono
        restart = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
        if not restart:
            self.finished = True
            self.state = {"terminated": terminated}
            return True
        self.last_state = {"terminated": terminated}
        self.consecutive_exits = 1 if ran > 2 * backoff_max else self.consecutive_exits + 1
        # kubelet restarts at once after the first exit, then backs off exponentially
        delay = (
            0.0
            if self.consecutive_exits == 1
            else min(backoff_max, backoff_base * 2 ** (self.consecutive_exits - 2))
        )
        self.next_start = time.monotonic() + delay
        if delay > 0:
            self.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={self.name} "
                    f"pod={self.pod_key}",
                }
            }
        else:
            self.state = {"terminated": terminated}
        return True

    # -- probes --------------------------------------------------------------------------------

    def run_probe(self, probe: Probe, env: dict[str, str]) -> tuple[bool, str]:
        spec = probe.spec
        timeout = float(spec.get("timeoutSeconds", 1))
        try:
            if "httpGet" in spec:
                hg = spec["httpGet"]
                port = self.host_port(hg.get("port"))
                path = hg.get("path", "/") or "/"
                url = f"{hg.get('scheme', 'HTTP').lower()}://{POD_IP}:{port}{path}"
                req = urllib.request.Request(url)
                for h in hg.get("httpHeaders", []) or []:
                    req.add_header(h["name"], h["value"])
                try:
                    with urllib.request.urlopen(req, timeout=timeout) as resp:
                        ok = 200 <= resp.status < 400
                        return ok, f"HTTP probe failed with statuscode: {resp.status}"
                except urllib.error.HTTPError as exc:
                    return 200 <= exc.code < 400, f"HTTP probe failed with statuscode: {exc.code}"
            if "tcpSocket" in spec:
                port = self.host_port(spec["tcpSocket"].get("port"))
                with socket.create_connection((POD_IP, port), timeout=timeout):
                    return True, ""
            if "exec" in spec:
                res = subprocess.run(
                    spec["exec"].get("command", []),
                    env=env,
                    cwd=str(self.work_dir),
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                return res.returncode == 0, res.stdout.decode(errors="replace")[-500:]
        except (OSError, subprocess.TimeoutExpired, podspec.ContainerConfigError) as exc:
            return False, f"probe failed: {exc}"
        return True, "unsupported probe type treated as success"

    def tick_probes(self, env: dict[str, str]) -> str | None:
        """Run due probes; returns a reason when liveness/startup says kill the container."""
        now = time.monotonic()
        for kind in ("startup", "readiness", "liveness"):
            probe = self.probes.get(kind)
            if probe is None or now < probe.next_at:
                continue
            if kind != "startup" and not self.started:
                continue
            if kind == "startup" and self.started:
                continue
            probe.next_at = now + probe.period()
            ok, msg = self.run_probe(probe, env)
            if ok:
                probe.successes += 1
                probe.failures = 0
            else:
                probe.failures += 1
                probe.successes = 0
                probe.last_message = msg
            threshold_ok = int(probe.spec.get("successThreshold", 1))
            threshold_fail = int(probe.spec.get("failureThreshold", 3))
            if kind == "startup":
                if ok:
                    self.started = True
                elif probe.failures >= threshold_fail:
                    return f"Startup probe failed: {msg}"
            elif kind == "readiness":
                if ok and probe.successes >= threshold_ok:
                    self.ready = True
                elif not ok and probe.failures >= threshold_fail:
                    self.ready = False
            elif not ok and probe.failures >= threshold_fail:
                return f"Liveness probe failed: {msg}"
        if "readiness" not in self.probes and self.started:
            self.ready = True
        return None

    def status(self) -> JSON:
        st: JSON = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready and self.proc is not None,
            "started": self.proc is not None and self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            st["containerID"] = f"nodeagent://{self.proc.pid}"
        return st


#: Host ports handed to pods (port -> pod uid): two pods never get the same one, even before
#: either has bound it.
_RESERVED: dict[int, str] = {}
_RESERVED_LOCK = threading.Lock()


def reserve_port(declared: int, uid: str) -> int:
    """The declared port when no other pod holds it and it is free (so `status.podIP:port`
    reaches a single replica, as the operator's worker-status read expects), else a private
    one."""
    with _RESERVED_LOCK:
        preferred: int | None = declared if declared not in _RESERVED else None
        while True:
            port = free_port(preferred, host=POD_IP)
            if port not in _RESERVED:
                _RESERVED[port] = uid
                return port
            preferred = None


def release_ports(uid: str) -> None:
    with _RESERVED_LOCK:
        for port in [p for p, owner in _RESERVED.items() if owner == uid]:
            del _RESERVED[port]


class PodWorker(threading.Thread):
    """Owns one pod from binding to deletion."""

    def __init__(self, kube: Kube, settings: AgentSettings, pod: JSON) -> None:
        meta = pod["metadata"]
        self.ns = str(meta["namespace"])
        self.pod_name = str(meta["name"])
        self.uid = str(meta["uid"])
        super().__init__(name=f"pod-{self.ns}/{self.pod_name}", daemon=True)
        self.kube = kube
        self.settings = settings
        self.pod = pod
        self.gone = False  # the pod no longer exists in the API
        self.shutdown = False  # the agent stops: stop processes, keep the pod
        self.wake = threading.Event()
        self.key = f"{self.ns}_{self.pod_name}"
        pods_dir = settings.state_dir / "pods"
        self.work_dir = pods_dir / self.key
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.containers: list[ContainerRunner] = []
        for i, c in enumerate(pod["spec"].get("containers", [])):
            log_name = f"{self.key}.log" if i == 0 else f"{self.key}.{c['name']}.log"
            ports, named = self._map_ports(c, self.uid)
            self.containers.append(
                ContainerRunner(
                    pod_key=f"{self.ns}/{self.pod_name}",
                    spec=c,
                    log_path=pods_dir / log_name,
                    work_dir=self.work_dir,
                    ports=ports,
                    named=named,
                    node_name=settings.node_name,
                )
            )
        # carry restart counts over an agent restart
        for cs in pod.get("status", {}).get("containerStatuses", []) or []:
            for runner in self.containers:
                if runner.name == cs.get("name"):
                    runner.restart_count = int(cs.get("restartCount", 0))
        self.transitions: dict[str, tuple[str, str]] = {}
        self.start_time = pod.get("status", {}).get("startTime") or now_rfc3339()
        self.last_status: JSON | None = None
        self.token_kubeconfig: Path | None = None
        self.volumes = {v["name"]: v for v in pod["spec"].get("volumes", []) or []}
        if pod["spec"].get("initContainers"):
            LOG.warning("%s: initContainers are not run by the node agent", self.key)

    # -- setup ---------------------------------------------------------------------------------

    @staticmethod
    def _map_ports(c: JSON, uid: str) -> tuple[dict[int, int], dict[str, int]]:
        """A private host port for every declared port and every numeric probe port."""
        wanted: list[int] = []
        named: dict[str, int] = {}
        for p in c.get("ports", []) or []:
            wanted.append(int(p["containerPort"]))
            if p.get("name"):
                named[str(p["name"])] = int(p["containerPort"])
        for kind in ("startup", "readiness", "liveness"):
            probe = c.get(f"{kind}Probe") or {}
            for key in ("httpGet", "tcpSocket"):
                port = (probe.get(key) or {}).get("port")
                if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
                    wanted.append(int(port))
        return {p: reserve_port(p, uid) for p in dict.fromkeys(wanted)}, named

    def _lookup(self, kind: str, ns: str, name: str) -> dict[str, str] | None:
        path = f"/api/v1/namespaces/{ns}/{kind}/{name}"
        obj = self.kube.get_or_none(path)
        if obj is None:
            return None
        return podspec.decode_secret(obj) if kind == "secrets" else podspec.decode_config_map(obj)

    def _service_account_kubeconfig(self) -> Path | None:
        """A kubeconfig carrying a TokenRequest token for the pod's ServiceAccount (its RBAC)."""
        spec = self.pod["spec"]
        sa_name = spec.get("serviceAccountName") or "default"
        sa = self.kube.get_or_none(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa_name}")
        if sa is None:
            raise podspec.ContainerConfigError(f'serviceaccount "{sa_name}" not found')
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken", True)
        if not automount:
            return None
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": self.settings.token_expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod_name,
                    "uid": self.uid,
                },
            },
        }
        try:
            tr = self.kube.post(
                f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa_name}/token", body
            )
        except KubeError as exc:
            raise podspec.ContainerConfigError(f"TokenRequest for {sa_name} failed: {exc}") from exc
        cluster: JSON = {"server": self.kube.host}
        if self.kube.ca_file:  # embedded: the client's temp CA file dies with the agent
            ca = Path(self.kube.ca_file).read_bytes()
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": sa_name, "user": {"token": tr["status"]["token"]}}],
            "contexts": [
                {
                    "name": "pod",
                    "context": {"cluster": "local", "user": sa_name, "namespace": self.ns},
                }
            ],
            "current-context": "pod",
        }
        path = self.work_dir / "kubeconfig"
        path.write_text(json.dumps(cfg, indent=1))
        path.chmod(0o600)
        return path

    def _materialize(self, name: str) -> tuple[Path, bool]:
        """Write a volume's files under the pod's directory; (host dir, rewrite paths to it?).

        Secret, ConfigMap and projected volumes hold files the process is told about by path
        (e.g. TLS keys in the worker's config), so those paths are rewritten to the host copy;
        an emptyDir is only a scratch directory and stays where the process puts it.
        """
        vol = self.volumes.get(name)
        if vol is None:
            raise podspec.ContainerConfigError(f'volume "{name}" is not defined in the pod')
        host = self.work_dir / "volumes" / name
        host.mkdir(parents=True, exist_ok=True)
        sources: list[tuple[str, JSON]] = []
        if "secret" in vol:
            sources.append(("secrets", {**vol["secret"], "name": vol["secret"].get("secretName")}))
        elif "configMap" in vol:
            sources.append(("configmaps", vol["configMap"]))
        elif "projected" in vol:
            for src in vol["projected"].get("sources", []) or []:
                if "secret" in src:
                    sources.append(("secrets", src["secret"]))
                elif "configMap" in src:
                    sources.append(("configmaps", src["configMap"]))
        else:
            return host, False
        for kind, ref in sources:
            data = self._lookup(kind, self.ns, str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                what = "secret" if kind == "secrets" else "configmap"
                raise podspec.ContainerConfigError(
                    f'MountVolume.SetUp failed for volume "{name}": {what} "{ref.get("name")}" '
                    "not found"
                )
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise podspec.ContainerConfigError(
                        f'volume "{name}": key {item["key"]} not found in {ref.get("name")}'
                    )
                target = host / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])
                target.chmod(0o600)
        return host, True

    def _mount_map(self, runner: ContainerRunner) -> dict[str, str]:
        """Container mountPath -> host directory, for the volumes whose paths get rewritten."""
        out: dict[str, str] = {}
        for mount in runner.spec.get("volumeMounts", []) or []:
            host, rewrite = self._materialize(str(mount["name"]))
            if mount.get("subPath"):
                host = host / mount["subPath"]
            if rewrite:
                out[str(mount["mountPath"]).rstrip("/")] = str(host)
        return out

    def _prepare(self, runner: ContainerRunner) -> tuple[list[str], dict[str, str]]:
        base = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        base.update(
            {
                "PATH": self.settings.path,
                "HOME": str(self.work_dir),
                "HOSTNAME": self.pod_name,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env = podspec.resolve_env(
            self.pod,
            runner.spec,
            secret=lambda ns, n: self._lookup("secrets", ns, n),
            config_map=lambda ns, n: self._lookup("configmaps", ns, n),
            pod_ip=POD_IP,
            base=base,
        )
        # Paths and ports that only make sense inside a container are mapped to this host.
        term_path = runner.spec.get("terminationMessagePath", "/dev/termination-log")
        for k, v in list(env.items()):
            if v == term_path:
                env[k] = str(runner.term_log)
        env["LAMBDASINK_TERMINATION_LOG"] = str(runner.term_log)
        http_port = runner.named.get("http")
        if http_port is None and len(runner.ports) == 1:
            http_port = next(iter(runner.ports))
        if http_port is not None:
            env["LAMBDASINK_HTTP_PORT"] = str(runner.ports[http_port])
        for cport, hport in runner.ports.items():
            env[f"NODE_AGENT_PORT_{cport}"] = str(hport)
        if self.token_kubeconfig is None:
            self.token_kubeconfig = self._service_account_kubeconfig()
        if self.token_kubeconfig is not None:
            env["KUBECONFIG"] = str(self.token_kubeconfig)
        for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(k, None)  # not in-cluster: clients must use KUBECONFIG
        argv = podspec.container_argv(runner.spec, env, self.settings.image_table, env["PATH"])
        mounts = self._mount_map(runner)
        env = {k: podspec.remap_paths(v, mounts) for k, v in env.items()}
        argv = [argv[0]] + [podspec.remap_paths(a, mounts) for a in argv[1:]]
        return podspec.remap_ports(argv, runner.ports), env

    # -- main loop -----------------------------------------------------------------------------

    def update(self, pod: JSON) -> None:
        self.pod = pod
        self.wake.set()

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            LOG.exception("%s: worker crashed", self.key)
            self._stop_all(2.0)
        finally:
            release_ports(self.uid)

    def _loop(self) -> None:
        restart_policy = self.pod["spec"].get("restartPolicy", "Always")
        envs: dict[str, dict[str, str]] = {}
        while True:
            if self.gone or self.shutdown:
                self._stop_all(min(self._grace(), 10.0) if self.shutdown else 2.0)
                return
            if self.pod["metadata"].get("deletionTimestamp"):
                self._terminate_and_finalize()
                return
            now = time.monotonic()
            for r in self.containers:
                if r.proc is not None:
                    reason = r.tick_probes(envs.get(r.name, {}))
                    if reason:
                        LOG.info("%s/%s: %s; killing", self.key, r.name, reason)
                        r.kill_reason = "Error"
                        self._stop_runners(
                            [r], float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                        )
                    r.reap(restart_policy, self.settings.backoff_base, self.settings.backoff_max)
                elif not r.finished and now >= r.next_start:
                    try:
                        argv, env = self._prepare(r)
                    except (podspec.ContainerConfigError, KubeError) as exc:
                        reason = (
                            "CreateContainerConfigError"
                            if isinstance(exc, podspec.ContainerConfigError)
                            else "CreateContainerError"
                        )
                        r.state = {"waiting": {"reason": reason, "message": str(exc)}}
                        r.next_start = now + 2.0
                        self.token_kubeconfig = None
                    else:
                        if r.last_state:
                            r.restart_count += 1
                        envs[r.name] = env
                        try:
                            r.start(argv, env)
                        except OSError as exc:
                            r.state = {
                                "waiting": {"reason": "CreateContainerError", "message": str(exc)}
                            }
                            r.next_start = now + 2.0
            self._write_status()
            self.wake.wait(0.5)
            self.wake.clear()

    def _grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _stop_runners(self, runners: list[ContainerRunner], grace: float) -> None:
        live = [r for r in runners if r.proc is not None and r.proc.poll() is None]
        for r in live:
            LOG.info("%s/%s: SIGTERM (grace %gs)", self.key, r.name, grace)
            r.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(r.proc and r.proc.poll() is None for r in live):
            time.sleep(0.1)
        for r in live:
            if r.proc and r.proc.poll() is None:
                LOG.info("%s/%s: SIGKILL after grace period", self.key, r.name)
                r.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    r.proc.wait(5)
            # the whole process group: children that outlived their parent
            if r.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(r.proc.pid, signal.SIGKILL)

    def _stop_all(self, grace: float) -> None:
        self._stop_runners(self.containers, grace)
        for r in self.containers:
            r.reap("Never", 0, 0)

    def _terminate_and_finalize(self) -> None:
        self._stop_all(self._grace())
        self._write_status()
        try:
            self.kube.delete(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except KubeError as exc:
            if exc.status not in (404, 409):
                LOG.warning("%s: final delete failed: %s", self.key, exc)
        LOG.info("%s: terminated and deleted", self.key)

    # -- status --------------------------------------------------------------------------------

    def _condition(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        status = "True" if ok else "False"
        prev = self.transitions.get(ctype)
        if prev is None or prev[0] != status:
            self.transitions[ctype] = (status, now_rfc3339())
        cond: JSON = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.transitions[ctype][1],
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _phase(self) -> str:
        if all(r.finished for r in self.containers):
            codes = [r.state.get("terminated", {}).get("exitCode", 1) for r in self.containers]
            return "Succeeded" if all(c == 0 for c in codes) else "Failed"
        if any(r.proc is not None or r.last_state or r.finished for r in self.containers):
            return "Running"
        return "Pending"

    def _write_status(self) -> None:
        statuses = [r.status() for r in self.containers]
        not_ready = [s["name"] for s in statuses if not s["ready"]]
        all_ready = not not_ready
        why = "" if all_ready else "ContainersNotReady"
        msg = "" if all_ready else f"containers with unready status: [{' '.join(not_ready)}]"
        status: JSON = {
            "phase": self._phase(),
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", True),
                self._condition("Ready", all_ready, why, msg),
                self._condition("ContainersReady", all_ready, why, msg),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }
        if status == self.last_status:
            return
        try:
            self.kube.merge_patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self.last_status = status
        except KubeError as exc:
            if exc.status == 404:
                self.gone = True
            else:
                LOG.warning("%s: status update failed: %s", self.key, exc)
