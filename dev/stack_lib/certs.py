"""Certificates and keys for the local Kubernetes API, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .common import StackError


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise StackError(f"openssl {' '.join(args)} failed: {out.stderr}")


def ensure_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> dict[str, Path]:
    """CA, apiserver serving cert (SAN 127.0.0.1/localhost, the `kubernetes` ClusterIP and
    `extra_ips`: where the apiserver binds for pods), service-account key pair.

    Kept across restarts (so tokens and kubeconfigs stay valid); `down --purge` removes them.
    A serving cert that lacks one of the wanted addresses is issued again (same CA).
    """
    pki.mkdir(parents=True, exist_ok=True)
    files = {
        "ca_crt": pki / "ca.crt",
        "ca_key": pki / "ca.key",
        "apiserver_crt": pki / "apiserver.crt",
        "apiserver_key": pki / "apiserver.key",
        "sa_key": pki / "sa.key",
        "sa_pub": pki / "sa.pub",
    }
    if not (files["ca_crt"].exists() and files["ca_key"].exists()):
        _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
        _openssl(
            "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "3650",
            "-subj", "/CN=lambda-sink-local-ca", "-out", "ca.crt",
            cwd=pki,
        )  # fmt: skip
    ips = ("127.0.0.1", "10.0.0.1", *extra_ips)
    dns = (
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )  # fmt: skip
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", ips, dns, "serverAuth")
    if not (files["sa_key"].exists() and files["sa_pub"].exists()):
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for p in pki.glob("*.key"):
        p.chmod(0o600)
    return files


def issue_cert(
    pki: Path, name: str, subject: str, ips: tuple[str, ...], dns: tuple[str, ...], usage: str
) -> tuple[Path, Path]:
    """<name>.crt/.key signed by the stack's CA; issued again when its SANs differ."""
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    sans = ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{d}" for d in dns)])
    ext = pki / f"{name}.ext"
    wanted = (
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n" + (f"subjectAltName={sans}\n" if sans else "")
    )
    if crt.exists() and key.exists() and ext.exists() and ext.read_text() == wanted:
        return crt, key
    ext.write_text(wanted)
    _openssl("genrsa", "-out", key.name, "2048", cwd=pki)
    _openssl("req", "-new", "-key", key.name, "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", ext.name, "-out", crt.name,
        cwd=pki,
    )  # fmt: skip
    key.chmod(0o600)
    return crt, key
