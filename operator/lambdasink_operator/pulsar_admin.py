"""Read a sink's subscription backlog from the Pulsar admin REST API (the operator's only
traffic to Pulsar), with the sink's own authentication.

Per topic: `GET .../partitions` (0 = not partitioned), then `.../stats` or
`.../partitioned-stats?perPartition=true`, both with `getEarliestTimeInBacklog=true`; a
`topicsPattern` first lists its namespace. What the answers mean is `backlog.py`'s business.
Credentials come from the sink's Secrets, as its workers get them: a token as a bearer header,
OAuth2 client credentials exchanged for one (the runtime's own flow), a TLS client certificate
and trust store as files in a private temporary directory (Python's ssl module reads only
files), removed after the call. Every failure is a `backlog.BacklogError`, never a crash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from lambdasink_runtime.config_pulsar import PulsarAuth
from lambdasink_runtime.errors import LambdaSinkError
from lambdasink_runtime.schemas import headers_provider_for, ssl_context_for

from . import backlog
from .backlog import Backlog, BacklogError

TIMEOUT_S = 5.0
#: How many topics of one sink are asked at once.
TOPIC_CONCURRENCY = 4
ReadSecret = Callable[[str], Awaitable[dict[str, str] | None]]


@dataclass
class AdminAuth:
    headers: dict[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


async def _secret_value(read: ReadSecret, ref: Mapping[str, Any], default_key: str) -> bytes:
    name = str(ref.get("name") or ref.get("secretName") or "")
    key = str(ref.get("key") or default_key)
    data = await read(name) if name else None
    if data is None or key not in data:
        raise BacklogError(f'Secret "{name}" key "{key}" not found', reachable=True)
    try:
        return base64.b64decode(data[key], validate=True)
    except (binascii.Error, ValueError):
        raise BacklogError(f'Secret "{name}" key "{key}" is not base64', reachable=True) from None


async def auth_for(pulsar_spec: Mapping[str, Any], read: ReadSecret, workdir: Path) -> AdminAuth:
    """Headers and TLS settings for the admin API from `spec.pulsar`, secret material written
    under `workdir` (private, removed by the caller)."""
    auth_spec = _map(pulsar_spec.get("authentication"))
    tls = _map(pulsar_spec.get("tls"))

    def write(name: str, data: bytes) -> str:
        path = workdir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    trust = ""
    if "trustCertsSecretRef" in tls:
        trust = write(
            "ca.crt", await _secret_value(read, _map(tls["trustCertsSecretRef"]), "ca.crt")
        )
    common: dict[str, Any] = {
        "trust_certs_file": trust,
        "allow_insecure_connection": bool(tls.get("allowInsecureConnection", False)),
    }
    auth = PulsarAuth(**common)
    if "token" in auth_spec:
        ref = _map(_map(auth_spec["token"]).get("secretRef"))
        token = (await _secret_value(read, ref, "token")).decode("utf-8", "replace").strip()
        auth = PulsarAuth(kind="token", token=token, **common)
    elif "oauth2" in auth_spec:
        oauth = _map(auth_spec["oauth2"])
        ref = _map(oauth.get("privateKeySecretRef"))
        key = write("oauth2.json", await _secret_value(read, ref, "credentials.json"))
        auth = PulsarAuth(
            kind="oauth2",
            issuer_url=str(oauth.get("issuerUrl") or ""),
            audience=str(oauth.get("audience") or ""),
            scope=str(oauth.get("scope") or ""),
            private_key=key,
            **common,
        )
    elif "tls" in auth_spec:
        client = _map(auth_spec["tls"])
        ref = {"name": client.get("secretName")}
        cert = write(
            "tls.crt", await _secret_value(read, {**ref, "key": client.get("certKey")}, "tls.crt")
        )
        keyf = write(
            "tls.key", await _secret_value(read, {**ref, "key": client.get("keyKey")}, "tls.key")
        )
        auth = PulsarAuth(kind="tls", cert_file=cert, key_file=keyf, **common)

    def build() -> AdminAuth:
        headers = headers_provider_for(auth, timeout_s=TIMEOUT_S)()  # oauth2: a token request
        return AdminAuth(dict(headers), ssl_context_for(auth))

    try:
        return await asyncio.to_thread(build)
    except LambdaSinkError as exc:
        raise BacklogError(str(exc), reachable=not exc.retriable) from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BacklogError(f"Pulsar TLS material unusable: {exc}", reachable=True) from None


class _Admin:
    def __init__(self, session: aiohttp.ClientSession, base: str, auth: AdminAuth) -> None:
        self.session = session
        self.base = base
        self.auth = auth

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer; None for 404; BacklogError otherwise."""
        url = self.base + path
        headers = {"Accept": "application/json", **self.auth.headers}
        ssl_arg: ssl.SSLContext | bool = self.auth.ssl_context or True
        try:
            async with self.session.get(url, params=params, headers=headers, ssl=ssl_arg) as resp:
                text = await resp.text()
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    reachable = resp.status < 500
                    raise BacklogError(
                        f"GET {url}: HTTP {resp.status} {text[:200]}", reachable=reachable
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BacklogError(
                f"Pulsar admin {self.base} unreachable: {type(exc).__name__}: {exc}"[:300],
                reachable=False,
            ) from None
        try:
            return json.loads(text)
        except ValueError:
            raise BacklogError(f"GET {url}: the answer is not JSON", reachable=True) from None


async def _topic(admin: _Admin, full: str, subscription: str) -> Backlog:
    topic = backlog.parse_topics([full])[0]
    base = backlog.topic_base(topic)
    params = {"getEarliestTimeInBacklog": "true"}
    meta = await admin.get(base + "/partitions")
    if isinstance(meta, Mapping) and backlog.partition_count(meta) > 0:
        stats = await admin.get(base + "/partitioned-stats", {**params, "perPartition": "true"})
        if isinstance(stats, Mapping):
            return backlog.from_partitioned_stats(stats, subscription, topic.full)
    else:
        stats = await admin.get(base + "/stats", params)
        if isinstance(stats, Mapping):
            return backlog.from_topic_stats(stats, subscription, topic.full)
    return Backlog(missing=(topic.full,))  # the topic does not exist (yet)


async def read_backlog(
    admin_url: str,
    input_spec: Mapping[str, Any],
    subscription: str,
    auth: AdminAuth,
) -> Backlog:
    """The subscription's backlog summed over the sink's topics (or its pattern's matches)."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        admin = _Admin(session, admin_url.rstrip("/"), auth)
        names = [str(t) for t in input_spec.get("topics") or []]
        pattern = input_spec.get("topicsPattern")
        if not names and isinstance(pattern, str) and pattern:
            ns_path, regex = backlog.split_pattern(pattern)
            listing = await admin.get(ns_path)
            names = backlog.matching(listing if isinstance(listing, list) else [], regex)
        topics = [t.full for t in backlog.parse_topics(names)]
        gate = asyncio.Semaphore(TOPIC_CONCURRENCY)

        async def one(full: str) -> Backlog:
            async with gate:
                return await _topic(admin, full, subscription)

        return backlog.summed(await asyncio.gather(*(one(t) for t in topics)))


async def read_sink_backlog(sink_spec: Mapping[str, Any], name: str, read: ReadSecret) -> Backlog:
    """The whole read for one sink, its secret material in a private directory meanwhile."""
    pulsar_spec = _map(sink_spec.get("pulsar"))
    input_spec = _map(sink_spec.get("input"))
    subscription = str(input_spec.get("subscriptionName") or name)
    with tempfile.TemporaryDirectory(prefix="lambdasink-pulsar-") as tmp:
        auth = await auth_for(pulsar_spec, read, Path(tmp))
        return await read_backlog(backlog.admin_url(pulsar_spec), input_spec, subscription, auth)
