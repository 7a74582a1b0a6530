"""Certificates and keys for the local Kubernetes API, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .common import StackError


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise StackError(f"openssl {' '.join(args)} failed: {out.stderr}")


def ensure_pki(pki: Path) -> dict[str, Path]:
    """CA, apiserver serving cert (SAN 127.0.0.1/localhost), service-account key pair.

    Kept across restarts (so tokens and kubeconfigs stay valid); `down --purge` removes them.
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
    if all(p.exists() for p in files.values()):
        return files
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=lambda-sink-local-ca",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    (pki / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    )
    _openssl(
        "req",
        "-new",
        "-key",
        "apiserver.key",
        "-subj",
        "/CN=kube-apiserver",
        "-out",
        "apiserver.csr",
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        "apiserver.ext",
        "-out",
        "apiserver.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for p in pki.glob("*.key"):
        p.chmod(0o600)
    return files
