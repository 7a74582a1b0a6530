"""The stack's components: how each starts, when it is really ready, what it publishes.

Each `start_*` is idempotent: a component whose process is alive and passes its readiness check
is left alone and its recorded connection details are reused.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import build, procs
from .certs import ensure_pki, issue_cert
from .common import (
    REPO,
    VERSIONS,
    StackError,
    free_port,
    http_get,
    log,
    python_exe,
    state_dir,
    wait_until,
)
from .node import NODE_NAME

HANDLERS_DIR = REPO / "tests" / "lambda_handlers"
GATEWAY = REPO / "dev" / "lambda_gateway.py"
LAMBDA_REGION = "us-east-1"
LAMBDA_ACCOUNT = "000000000000"


def reuse(name: str, ready: Any) -> dict[str, Any] | None:
    """The recorded details of a running, ready component; None if it must be (re)started."""
    rec = procs.record(name)
    if rec is None or not procs.running(name):
        if procs.pid_of(name) is not None:
            procs.stop(name)  # stale pid file or a half-dead group
        return None
    try:
        wait_until(
            name,
            lambda: ready(rec),
            timeout=60,
            alive=lambda: procs.running(name),
            logfile=procs.log_file(name),
        )
    except StackError:
        log(f"{name}: running but not ready; restarting")
        procs.stop(name)
        return None
    log(f"{name}: already running (pid {procs.pid_of(name)})")
    return rec


# --- Pulsar --------------------------------------------------------------------------------------


def java_home() -> str:
    """The first pinned JDK that exists; else $JAVA_HOME; else the `java` on PATH."""
    candidates = VERSIONS["PULSAR_JAVA_HOMES"].split()
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java:
        candidates.append(str(Path(java).resolve().parent.parent))
    for cand in candidates:
        if Path(cand, "bin", "java").exists():
            return cand
    raise StackError(f"no JDK (17+) found among {candidates}")


def pulsar_admin_ready(rec: dict[str, Any]) -> bool:
    status, _ = http_get(f"{rec['adminUrl']}/admin/v2/namespaces/public/default", timeout=3)
    return status == 200


ROUND_TRIP = r"""
import sys, uuid, pulsar
c = pulsar.Client(sys.argv[1], operation_timeout_seconds=20, connection_timeout_ms=5000)
try:
    topic = "persistent://public/default/__stack-readiness"
    sub = c.subscribe(topic, "stack-readiness-" + uuid.uuid4().hex[:8],
                      initial_position=pulsar.InitialPosition.Latest)
    p = c.create_producer(topic)
    body = uuid.uuid4().bytes
    p.send(body)
    while True:
        m = sub.receive(timeout_millis=15000)
        sub.acknowledge(m)
        if m.data() == body:
            break
    sub.unsubscribe()
finally:
    c.close()
"""


def pulsar_round_trip(rec: dict[str, Any]) -> bool:
    out = subprocess.run(
        [python_exe(), "-c", ROUND_TRIP, rec["serviceUrl"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise StackError(f"pulsar produce/consume round trip failed: {out.stderr[-2000:]}")
    return True


def pulsar_ready(rec: dict[str, Any]) -> bool:
    return pulsar_admin_ready(rec) and pulsar_round_trip(rec)


def start_pulsar(host: str) -> dict[str, Any]:
    """Pulsar bound on `host` (the pod network's gateway) and ADVERTISING it: a client's topic
    lookup returns the advertised address, which must be one pods can reach."""
    rec = reuse("pulsar", pulsar_ready)
    if rec and rec.get("host") == host:
        return rec
    if rec:
        procs.stop("pulsar")
    home = build.install_pulsar()
    base = state_dir() / "pulsar"
    # A clean broker on every (re)start: tests never see a previous run's topics or schemas.
    shutil.rmtree(base, ignore_errors=True)
    (base / "data").mkdir(parents=True)
    broker_port, web_port = free_port(6650, host=host), free_port(8080, host=host)
    overrides = {
        "bindAddress": host,
        "advertisedAddress": host,
        "brokerServicePort": str(broker_port),
        "webServicePort": str(web_port),
        # Topics a test created must not vanish a minute after its producer closed.
        "brokerDeleteInactiveTopicsEnabled": "false",
        "isSchemaValidationEnforced": "false",
        "managedLedgerDefaultEnsembleSize": "1",
        "managedLedgerDefaultWriteQuorum": "1",
        "managedLedgerDefaultAckQuorum": "1",
        "functionsWorkerEnabled": "false",
        # The embedded bookie reads this file too: bind it to loopback, not 0.0.0.0.
        "listeningInterface": "lo",
        "allowLoopback": "true",
    }
    lines = []
    seen = set()
    for line in (home / "conf" / "standalone.conf").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in overrides:
            lines.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items() if k not in seen]
    conf = base / "standalone.conf"
    conf.write_text("\n".join(lines) + "\n")
    jhome = java_home()
    env = {
        "JAVA_HOME": jhome,
        "PULSAR_MEM": VERSIONS["PULSAR_MEM"],
        "PULSAR_GC": "-XX:+UseG1GC -XX:+PerfDisableSharedMem",
        "PULSAR_GC_LOG": " ",
        "PULSAR_LOG_DIR": str(procs.log_dir() / "pulsar"),
        "PULSAR_LOG_APPENDER": "Console",
        "PULSAR_STANDALONE_CONF": str(conf),
        "PULSAR_EXTRA_OPTS": "-Djava.net.preferIPv4Stack=true",
    }
    cmd = [
        str(home / "bin" / "pulsar"),
        "standalone",
        "-nfw",
        "-nss",
        "--wipe-data",
        "-a",
        host,
        "--bookkeeper-dir",
        str(base / "data" / "bookkeeper"),
        "--metadata-dir",
        str(base / "data" / "metadata"),
    ]
    log(
        f"pulsar: starting {VERSIONS['PULSAR_VERSION']} (java {jhome})"
        f" on :{broker_port}/:{web_port}"
    )
    t0 = time.monotonic()
    procs.start("pulsar", cmd, env=env, cwd=base)
    rec = {
        "version": VERSIONS["PULSAR_VERSION"],
        # What `restart_pulsar` needs to start the same broker on the same data.
        "command": [c for c in cmd if c != "--wipe-data"],
        "environment": env,
        "cwd": str(base),
        "host": host,
        "serviceUrl": f"pulsar://{host}:{broker_port}",
        "adminUrl": f"http://{host}:{web_port}",
        "brokerPort": broker_port,
        "webPort": web_port,
        "home": str(home),
        "javaHome": jhome,
        "pulsarAdmin": str(home / "bin" / "pulsar-admin"),
        "dataDir": str(base / "data"),
    }
    alive = lambda: procs.running("pulsar")  # noqa: E731
    wait_until(
        "pulsar admin API",
        lambda: pulsar_admin_ready(rec),
        timeout=240,
        alive=alive,
        logfile=procs.log_file("pulsar"),
    )
    wait_until(
        "pulsar round trip",
        lambda: pulsar_round_trip(rec),
        timeout=60,
        interval=2,
        alive=alive,
        logfile=procs.log_file("pulsar"),
    )
    log(f"pulsar: ready in {time.monotonic() - t0:.0f}s")
    procs.save_record("pulsar", rec)
    return rec


def restart_pulsar() -> dict[str, Any]:
    """Stop the broker and start it again on the same ports and data: a broker restart, as
    tests of what survives one need (the normal start wipes the data)."""
    rec = procs.record("pulsar")
    if rec is None or "command" not in rec:
        raise StackError("pulsar was not started by this stack (run `dev/stack up` first)")
    procs.stop("pulsar")
    t0 = time.monotonic()
    procs.start("pulsar", list(rec["command"]), env=dict(rec["environment"]), cwd=Path(rec["cwd"]))
    alive = lambda: procs.running("pulsar")  # noqa: E731
    for what, ready in (("admin API", pulsar_admin_ready), ("round trip", pulsar_round_trip)):
        wait_until(
            f"pulsar {what}",
            lambda ready=ready: ready(rec),  # type: ignore[misc]
            timeout=240,
            interval=1,
            alive=alive,
            logfile=procs.log_file("pulsar"),
        )
    log(f"pulsar: restarted in {time.monotonic() - t0:.0f}s")
    procs.save_record("pulsar", rec)  # stopping removed it
    return rec


# --- etcd ----------------------------------------------------------------------------------------


def etcd_ready(rec: dict[str, Any]) -> bool:
    status, body = http_get(f"{rec['endpoint']}/health", timeout=3)
    return status == 200 and json.loads(body).get("health") == "true"


def start_etcd() -> dict[str, Any]:
    rec = reuse("etcd", etcd_ready)
    if rec:
        return rec
    build.install_etcd()
    binary = build.binaries()["etcd"]
    data = state_dir() / "etcd"
    shutil.rmtree(data, ignore_errors=True)  # a fresh cluster state each start
    client, peer = free_port(2379), free_port(2380)
    cmd = [
        binary,
        "--name",
        "lambdasink",
        "--data-dir",
        str(data),
        "--listen-client-urls",
        f"http://127.0.0.1:{client}",
        "--advertise-client-urls",
        f"http://127.0.0.1:{client}",
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        f"lambdasink=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync",
        "--quota-backend-bytes",
        str(2 * 1024**3),
        "--log-level",
        "warn",
    ]
    log(f"etcd: starting {VERSIONS['ETCD_VERSION']} on :{client}")
    procs.start("etcd", cmd)
    rec = {
        "version": VERSIONS["ETCD_VERSION"],
        "endpoint": f"http://127.0.0.1:{client}",
        "dataDir": str(data),
        "startedAt": time.time(),
    }
    wait_until(
        "etcd",
        lambda: etcd_ready(rec),
        timeout=60,
        alive=lambda: procs.running("etcd"),
        logfile=procs.log_file("etcd"),
    )
    procs.save_record("etcd", rec)
    return rec


# --- kube-apiserver + kube-controller-manager ----------------------------------------------------


def kubeconfig(server: str, ca_file: Path, user: str, token: str) -> str:
    ca = base64.b64encode(ca_file.read_bytes()).decode()
    return (
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "lambda-sink-local",
                        "cluster": {"server": server, "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "lambda-sink-local",
                        "context": {
                            "cluster": "lambda-sink-local",
                            "user": user,
                            "namespace": "default",
                        },
                    }
                ],
                "current-context": "lambda-sink-local",
            },
            indent=2,
        )
        + "\n"
    )


def kube_get(rec: dict[str, Any], path: str, timeout: float = 3) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=rec["caFile"])
    return http_get(
        f"{rec['server']}{path}",
        timeout=timeout,
        context=ctx,
        headers={"Authorization": f"Bearer {rec['adminToken']}"},
    )


def apiserver_ready(rec: dict[str, Any]) -> bool:
    return kube_get(rec, "/readyz")[0] == 200


# Users of the static token file: name -> groups.
TOKEN_USERS = {
    "lambdasink-admin": "system:masters",
    "system:kube-controller-manager": "",
    "system:kube-scheduler": "",
    f"system:node:{NODE_NAME}": "system:nodes",
}


def ensure_tokens(path: Path) -> dict[str, str]:
    """The token file (kept across restarts; users added by a newer stack are appended)."""
    tokens: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            token, user = line.split(",")[:2]
            tokens[user] = token
    missing = [u for u in TOKEN_USERS if u not in tokens]
    if missing:
        with path.open("a") as f:
            for user in missing:
                tokens[user] = secrets.token_hex(24)
                groups = f',"{TOKEN_USERS[user]}"' if TOKEN_USERS[user] else ""
                f.write(f"{tokens[user]},{user},{user}{groups}\n")
        path.chmod(0o600)
    return tokens


def start_apiserver(etcd: dict[str, Any], net: dict[str, Any]) -> dict[str, Any]:
    rec = reuse("kube-apiserver", apiserver_ready)
    # An apiserver outlives no etcd restart: a fresh etcd (wiped data) means a fresh apiserver.
    if (
        rec
        and rec.get("etcdStartedAt") == etcd.get("startedAt")
        and rec.get("address") == net["gateway"]
    ):
        return rec
    if rec:
        procs.stop("kube-apiserver")
    build.install_kubernetes()
    bins = build.binaries()
    kdir = state_dir() / "kube"
    kdir.mkdir(parents=True, exist_ok=True)
    pki = kdir / "pki"
    ensure_pki(pki, extra_ips=(net["gateway"],))
    kubelet_client = issue_cert(
        pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
        (), (), "clientAuth",
    )  # fmt: skip
    token_file = kdir / "tokens.csv"
    tokens = ensure_tokens(token_file)
    admin_token = tokens["lambdasink-admin"]
    kcm_token = tokens["system:kube-controller-manager"]
    # Bound on the pod network's gateway: pods reach it (through the `kubernetes` Service's
    # DNAT), and so does this machine, as it is a local address.
    port = free_port(6443, host=net["gateway"])
    issuer = "https://kubernetes.default.svc.cluster.local"
    cmd = [
        bins["kube-apiserver"],
        "--etcd-servers",
        etcd["endpoint"],
        "--etcd-prefix",
        "/registry",
        "--bind-address",
        net["gateway"],
        "--advertise-address",
        net["gateway"],
        "--secure-port",
        str(port),
        "--cert-dir",
        str(pki),
        "--tls-cert-file",
        str(pki / "apiserver.crt"),
        "--tls-private-key-file",
        str(pki / "apiserver.key"),
        "--client-ca-file",
        str(pki / "ca.crt"),
        "--token-auth-file",
        str(token_file),
        "--authorization-mode",
        "Node,RBAC",
        "--service-account-issuer",
        issuer,
        "--api-audiences",
        issuer,
        "--service-account-key-file",
        str(pki / "sa.pub"),
        "--service-account-signing-key-file",
        str(pki / "sa.key"),
        "--service-cluster-ip-range",
        "10.0.0.0/24",
        "--kubelet-certificate-authority",
        str(pki / "ca.crt"),
        "--kubelet-client-certificate",
        str(kubelet_client[0]),
        "--kubelet-client-key",
        str(kubelet_client[1]),
        "--kubelet-preferred-address-types",
        "InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]
    log(f"kube-apiserver: starting {VERSIONS['KUBERNETES_VERSION']} on :{port}")
    t0 = time.monotonic()
    procs.start("kube-apiserver", cmd)
    rec = {
        "version": VERSIONS["KUBERNETES_VERSION"],
        "server": f"https://{net['gateway']}:{port}",
        "address": net["gateway"],
        "port": port,
        "caFile": str(pki / "ca.crt"),
        "adminToken": admin_token,
        "adminUser": "lambdasink-admin",
        "controllerManagerToken": kcm_token,
        "schedulerToken": tokens["system:kube-scheduler"],
        "nodeToken": tokens[f"system:node:{NODE_NAME}"],
        "serviceAccountIssuer": issuer,
        "etcd": etcd["endpoint"],
        "etcdStartedAt": etcd.get("startedAt"),
        "startedAt": time.time(),
    }
    wait_until(
        "kube-apiserver",
        lambda: apiserver_ready(rec),
        timeout=180,
        alive=lambda: procs.running("kube-apiserver"),
        logfile=procs.log_file("kube-apiserver"),
    )
    log(f"kube-apiserver: ready in {time.monotonic() - t0:.0f}s")
    procs.save_record("kube-apiserver", rec)
    return rec


def kcm_ready(rec: dict[str, Any], api: dict[str, Any]) -> bool:
    ctx = ssl._create_unverified_context()  # kcm serves a self-signed cert on loopback
    if http_get(f"https://127.0.0.1:{rec['port']}/healthz", timeout=3, context=ctx)[0] != 200:
        return False
    # The serviceaccount controller has created the default ServiceAccount: controllers run.
    return kube_get(api, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200


def start_controller_manager(api: dict[str, Any]) -> dict[str, Any]:
    rec = reuse("kube-controller-manager", lambda r: kcm_ready(r, api))
    if rec and rec.get("apiStartedAt") == api.get("startedAt"):
        return rec
    if rec:
        procs.stop("kube-controller-manager")
    bins = build.binaries()
    kdir = state_dir() / "kube"
    pki = kdir / "pki"
    kcfg = kdir / "controller-manager.kubeconfig"
    kcfg.write_text(
        kubeconfig(
            api["server"],
            Path(api["caFile"]),
            "system:kube-controller-manager",
            api["controllerManagerToken"],
        )
    )
    kcfg.chmod(0o600)
    port = free_port(10257)
    cmd = [
        bins["kube-controller-manager"],
        "--kubeconfig",
        str(kcfg),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(port),
        "--cert-dir",
        str(kdir / "kcm-serving"),
        "--service-account-private-key-file",
        str(pki / "sa.key"),
        "--root-ca-file",
        str(pki / "ca.crt"),
        "--cluster-signing-cert-file",
        str(pki / "ca.crt"),
        "--cluster-signing-key-file",
        str(pki / "ca.key"),
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--controllers",
        "*",
        "--service-cluster-ip-range",
        "10.0.0.0/24",
        "--profiling=false",
        "--v=1",
    ]
    log(f"kube-controller-manager: starting on :{port}")
    procs.start("kube-controller-manager", cmd)
    rec = {
        "port": port,
        "server": api["server"],
        "kubeconfig": str(kcfg),
        "apiStartedAt": api.get("startedAt"),
    }
    wait_until(
        "kube-controller-manager",
        lambda: kcm_ready(rec, api),
        timeout=120,
        alive=lambda: procs.running("kube-controller-manager"),
        logfile=procs.log_file("kube-controller-manager"),
    )
    procs.save_record("kube-controller-manager", rec)
    return rec


def write_admin_kubeconfig(api: dict[str, Any]) -> Path:
    path = state_dir() / "kubeconfig"
    path.write_text(
        kubeconfig(api["server"], Path(api["caFile"]), api["adminUser"], api["adminToken"])
    )
    path.chmod(0o600)
    return path


def sa_kubeconfig(namespace: str, sa: str, outfile: Path, duration: str = "24h") -> Path:
    """Mint a kubeconfig for a ServiceAccount through the TokenRequest API."""
    api = procs.record("kube-apiserver")
    if api is None or not procs.running("kube-apiserver"):
        raise StackError("kube-apiserver is not running: run `dev/stack up` first")
    kubectl = build.binaries()["kubectl"]
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(state_dir() / "kubeconfig"),
            "create",
            "token",
            sa,
            "-n",
            namespace,
            "--duration",
            duration,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise StackError(f"TokenRequest for {namespace}/{sa} failed: {out.stderr.strip()}")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(
        kubeconfig(
            api["server"],
            Path(api["caFile"]),
            f"system:serviceaccount:{namespace}:{sa}",
            out.stdout.strip(),
        )
    )
    cfg["contexts"][0]["context"]["namespace"] = namespace
    outfile.write_text(json.dumps(cfg, indent=2) + "\n")
    outfile.chmod(0o600)
    return outfile


# --- Lambda gateway ------------------------------------------------------------------------------


def gateway_ready(rec: dict[str, Any]) -> bool:
    if http_get(f"{rec['controlUrl']}/health", timeout=3)[0] != 200:
        return False
    # A real invocation through RIE and awslambdaric (echo does not record anything).
    req = urllib.request.Request(
        f"{rec['endpointUrl']}/2015-03-31/functions/echo/invocations",
        data=b'{"readiness": true}',
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return (
            resp.status == 200
            and resp.headers.get("X-Amz-Function-Error") is None
            and json.loads(resp.read()) == {"readiness": True}
        )


def start_gateway(host: str) -> dict[str, Any]:
    """The Lambda gateway on `host` (the pod network's gateway: pods and this machine reach it)."""
    rec = reuse("lambda-gateway", gateway_ready)
    if rec and rec.get("host") == host:
        return rec
    if rec:
        procs.stop("lambda-gateway")
    build.install_rie()
    rie = build.binaries()["aws-lambda-rie"]
    ldir = state_dir() / "lambda"
    records = ldir / "records"
    shutil.rmtree(records, ignore_errors=True)  # a fresh gateway starts with no recorded events
    records.mkdir(parents=True, exist_ok=True)
    registry = HANDLERS_DIR / "functions.json"
    port = free_port(9070, host=host)
    cmd = [
        python_exe(),
        str(GATEWAY),
        "--host",
        host,
        "--port",
        str(port),
        "--registry",
        str(registry),
        "--handlers",
        str(HANDLERS_DIR),
        "--rie",
        rie,
        "--python",
        python_exe(),
        "--record-dir",
        str(records),
        "--function-log",
        str(procs.log_file("lambda-functions")),
        "--pool-size",
        VERSIONS.get("LAMBDA_POOL_SIZE", "4"),
        "--region",
        LAMBDA_REGION,
        "--account",
        LAMBDA_ACCOUNT,
    ]
    log(f"lambda-gateway: starting on :{port}")
    procs.start("lambda-gateway", cmd, env={"PYTHONUNBUFFERED": "1"})
    functions = json.loads(registry.read_text())["functions"]
    rec = {
        "host": host,
        "endpointUrl": f"http://{host}:{port}",
        "controlUrl": f"http://{host}:{port}/_gateway",
        "port": port,
        "region": LAMBDA_REGION,
        "accountId": LAMBDA_ACCOUNT,
        "accessKeyId": "lambdasink-local",
        "secretAccessKey": "lambdasink-local-secret",
        "recordDir": str(records),
        "registry": str(registry),
        "functions": {
            name: {
                "arn": f"arn:aws:lambda:{LAMBDA_REGION}:{LAMBDA_ACCOUNT}:function:{name}",
                "handler": spec["handler"],
            }
            for name, spec in functions.items()
        },
        "rieVersion": VERSIONS["RIE_VERSION"],
    }
    wait_until(
        "lambda-gateway",
        lambda: gateway_ready(rec),
        timeout=60,
        alive=lambda: procs.running("lambda-gateway"),
        logfile=procs.log_file("lambda-gateway"),
    )
    procs.save_record("lambda-gateway", rec)
    return rec


COMPONENTS = ["pulsar", "etcd", "kube-apiserver", "kube-controller-manager", "lambda-gateway"]
# The node (dev/stack_lib/node.py), started after the control plane unless LAMBDASINK_NODE=agent.
NODE_COMPONENTS = ["containerd", "kube-scheduler", "kubelet"]


__all__ = [
    "COMPONENTS",
    "sa_kubeconfig",
    "start_apiserver",
    "start_controller_manager",
    "start_etcd",
    "start_gateway",
    "start_pulsar",
    "write_admin_kubeconfig",
]
