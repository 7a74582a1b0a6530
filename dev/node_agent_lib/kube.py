"""A small dict-in/dict-out client for the Kubernetes REST API.

The generated `kubernetes` client validates every object into pydantic models, which is slow and
gets in the way of a tool that only moves JSON around; we borrow its kubeconfig loader (certs,
tokens, exec plugins) and speak plain JSON over urllib3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

JSON = dict[str, Any]


class KubeError(Exception):
    """An API call answered with an HTTP error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            self.reason = str(json.loads(body).get("reason", ""))
            message = str(json.loads(body).get("message", body))
        except ValueError:
            self.reason = ""
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message[:500]}")


class Kube:
    """Thread-safe JSON access to one apiserver, authenticated as a kubeconfig says."""

    def __init__(self, kubeconfig: str, context: str | None = None) -> None:
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
        )
        self.host = cfg.host.rstrip("/")
        self.ca_file: str | None = cfg.ssl_ca_cert
        self._headers: dict[str, str] = {}
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if token:
            self._headers["Authorization"] = token if " " in token else f"Bearer {token}"
        kwargs: dict[str, Any] = {"maxsize": 16, "retries": False}
        if self.host.startswith("https"):
            kwargs["cert_reqs"] = "CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE"
            if cfg.ssl_ca_cert:
                kwargs["ca_certs"] = cfg.ssl_ca_cert
            if cfg.cert_file:
                kwargs["cert_file"] = cfg.cert_file
                kwargs["key_file"] = cfg.key_file
        self._pool = urllib3.PoolManager(num_pools=4, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> JSON:
        """One call; returns the decoded JSON answer or raises KubeError."""
        url = self.host + path
        headers = {**self._headers, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(
            method,
            url + _query(params),
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
        )
        text = resp.data.decode("utf-8", "replace")
        if resp.status >= 400:
            raise KubeError(resp.status, method, path, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **params: str) -> JSON:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def post(self, path: str, body: Any) -> JSON:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> JSON:
        return self.request("PUT", path, body)

    def merge_patch(self, path: str, body: Any) -> JSON:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Any = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(self, path: str, timeout_seconds: int = 60, **params: str) -> Iterator[JSON]:
        """Stream watch events (dicts with type/object) until the server closes the stream."""
        query = {"watch": "true", "timeoutSeconds": str(timeout_seconds), **params}
        resp = self._pool.request(
            "GET",
            self.host + path + _query(query),
            headers={**self._headers, "Accept": "application/json"},
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 10),
            preload_content=False,
        )
        try:
            if resp.status >= 400:
                raise KubeError(resp.status, "WATCH", path, resp.read().decode())
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()


def _query(params: dict[str, str] | None) -> str:
    return "?" + urlencode(params) if params else ""
