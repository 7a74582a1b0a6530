"""A small blocking client for Pulsar's admin REST API, with the sink's own authentication:
which topics exist and which subscriptions they have (the pre-flight checks).

Why blocking (urllib) and not aiohttp: authentication reuses the runtime's own helpers
(`schemas.headers_provider_for`: token or the OAuth2 client-credentials flow;
`schemas.ssl_context_for`: trust store, client certificate), which are blocking; callers run
each call in a thread. Every call has a timeout. What is read: topic lists of a namespace and a
topic's subscriptions; nothing is written.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from lambdasink_runtime.config_pulsar import PulsarAuth
from lambdasink_runtime.errors import SchemaRegistryError
from lambdasink_runtime.schemas import (
    TopicName,
    headers_provider_for,
    parse_topic,
    ssl_context_for,
)

TIMEOUT_S = 5.0
_PARTITION_RE = re.compile(r"-partition-\d+$")
_NAMESPACE_RE = re.compile(r"^(persistent|non-persistent)://([^/]+)/([^/]+)/")


class PulsarAdminError(Exception):
    """An admin call failed: `status` is the HTTP status (None: no answer); `retriable` says
    whether asking again later may help."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable


def topic_name(topic: str) -> TopicName:
    """`name`, `tenant/ns/name` or `persistent://tenant/ns/name` (partition suffix dropped)."""
    try:
        return parse_topic(topic)
    except SchemaRegistryError as exc:
        raise PulsarAdminError(str(exc), retriable=False) from exc


def pattern_namespace(pattern: str) -> tuple[str, str, str]:
    """(domain, tenant, namespace) a topicsPattern lists from; short patterns: public/default."""
    m = _NAMESPACE_RE.match(pattern)
    return (m.group(1), m.group(2), m.group(3)) if m else ("persistent", "public", "default")


class PulsarAdmin:
    def __init__(
        self,
        admin_url: str,
        *,
        headers: Callable[[], Mapping[str, str]] = dict,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._headers = headers
        self._ssl = ssl_context
        self._timeout_s = timeout_s

    @classmethod
    def for_auth(
        cls, admin_url: str, auth: PulsarAuth, *, timeout_s: float = TIMEOUT_S
    ) -> PulsarAdmin:
        """With the consumer's authentication (token, OAuth2, TLS client certificate)."""
        context = ssl_context_for(auth) if admin_url.startswith("https://") else None
        return cls(
            admin_url,
            headers=headers_provider_for(auth, timeout_s=timeout_s),
            ssl_context=context,
            timeout_s=timeout_s,
        )

    # ------------------------------------------------------------------ transport

    def get_json(self, path: str) -> Any:
        """GET `path` (under the admin URL) → the parsed JSON; PulsarAdminError otherwise."""
        url = self.admin_url + path
        try:
            headers = {"Accept": "application/json", **self._headers()}
        except Exception as exc:  # an OAuth2 token endpoint, a token file
            raise PulsarAdminError(f"authentication: {exc}", retriable=True) from exc
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(  # noqa: S310 - the admin URL is validated http(s)
                request, timeout=self._timeout_s, context=self._ssl
            ) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            detail = _server_reason(exc)
            raise PulsarAdminError(
                f"GET {path}: HTTP {exc.code} {detail}".rstrip(),
                status=exc.code,
                retriable=exc.code in (401, 403, 429) or exc.code >= 500,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PulsarAdminError(
                f"{self.admin_url} cannot be reached: {reason}", retriable=True
            ) from exc
        try:
            return json.loads(text) if text else None
        except ValueError as exc:
            raise PulsarAdminError(f"GET {path}: not JSON", retriable=False) from exc

    # ------------------------------------------------------------------ reads

    def namespace_topics(self, domain: str, tenant: str, namespace: str) -> list[str]:
        """Every topic of the namespace, full names, a partitioned topic once (no partitions)."""
        base = f"/admin/v2/{domain}/{_q(tenant)}/{_q(namespace)}"
        names = set(_strings(self.get_json(base)))
        names.update(_strings(self.get_json(base + "/partitioned")))
        return sorted({_PARTITION_RE.sub("", n) for n in names})

    def topic_exists(self, topic: str) -> bool:
        """Whether the topic (partitioned or not) exists; a missing namespace is False."""
        name = topic_name(topic)
        try:
            known = self.namespace_topics(name.domain, name.tenant, name.namespace)
        except PulsarAdminError as exc:
            if exc.status == 404:
                return False
            raise
        return name.full in known

    def subscriptions(self, topic: str) -> list[str]:
        """The topic's subscriptions (of all partitions); [] when the topic does not exist."""
        name = topic_name(topic)
        path = f"/admin/v2/{name.domain}/{name.schema_path}/subscriptions"
        try:
            return _strings(self.get_json(path))
        except PulsarAdminError as exc:
            if exc.status == 404:
                return []
            raise


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _strings(doc: Any) -> list[str]:
    return [str(x) for x in doc] if isinstance(doc, list) else []


def _server_reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        return str(exc.reason or "")
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200] or str(exc.reason or "")
    if isinstance(doc, dict) and doc.get("reason"):
        return str(doc["reason"])[:200]
    return str(exc.reason or "")
