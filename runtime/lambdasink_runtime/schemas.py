"""Writer-schema lookup from the broker's schema registry (admin REST API), cached. Stdlib only.

A message carries only its schema *version*; decoding Avro needs the exact writer schema of that
version, so we ask `GET {admin}/admin/v2/schemas/{tenant}/{namespace}/{topic}/schema/{version}`
once per (topic, version) and keep the answer in a bounded LRU cache. Schemas belong to the
topic, not to a partition: `-partition-N` is stripped before asking.

Errors: network failures, 5xx, 408 and 429 are retriable `SchemaRegistryError`s; other 4xx
(404: the version is unknown or was deleted; 401/403: credentials) are not.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SchemaRegistryError
from .record import SchemaInfo

if TYPE_CHECKING:
    from .config import PulsarAuth

__all__ = [
    "SchemaRegistry",
    "TopicName",
    "headers_provider_for",
    "parse_schema_version",
    "parse_topic",
    "schema_info_from_response",
    "ssl_context_for",
]

HeadersProvider = Callable[[], Mapping[str, str]]

_PARTITION_RE = re.compile(r"-partition-\d+$")


class TopicName:
    """A topic name split the way the admin API wants it (partition suffix removed)."""

    __slots__ = ("domain", "local", "namespace", "tenant")

    def __init__(self, domain: str, tenant: str, namespace: str, local: str) -> None:
        self.domain = domain
        self.tenant = tenant
        self.namespace = namespace
        self.local = local

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicName) and self.full == other.full

    def __hash__(self) -> int:
        return hash(self.full)

    def __repr__(self) -> str:
        return f"TopicName({self.full!r})"

    @property
    def full(self) -> str:
        return f"{self.domain}://{self.tenant}/{self.namespace}/{self.local}"

    @property
    def schema_path(self) -> str:
        """`{tenant}/{namespace}/{topic}` with each part URL-encoded."""
        q = urllib.parse.quote
        return f"{q(self.tenant, safe='')}/{q(self.namespace, safe='')}/{q(self.local, safe='')}"


def parse_topic(topic: str) -> TopicName:
    """Accept Pulsar's forms: `name`, `tenant/ns/name`, `persistent://tenant/ns/name`."""
    domain = "persistent"
    rest = topic.strip()
    if "://" in rest:
        domain, rest = rest.split("://", 1)
        if domain not in ("persistent", "non-persistent"):
            raise SchemaRegistryError(
                f"topic {topic!r}: unknown domain {domain!r}", retriable=False
            )
    parts = rest.split("/")
    if len(parts) == 1 and parts[0]:
        parts = ["public", "default", parts[0]]
    if len(parts) < 3 or not all(parts[:3]):
        raise SchemaRegistryError(
            f"topic {topic!r}: expected [persistent://]tenant/namespace/topic", retriable=False
        )
    local = "/".join(parts[2:])  # v1-style names may contain more slashes
    return TopicName(domain, parts[0], parts[1], _PARTITION_RE.sub("", local))


def parse_schema_version(version: bytes | int | str) -> int:
    """The version as an integer.

    Pulsar carries it as 8 bytes, big-endian. The Python client's `Message.schema_version()`
    returns those bytes decoded into a `str` (one char per byte); `int_schema_version()` on the
    underlying message gives the integer. All three forms are accepted, as well as a decimal
    string.
    """
    if isinstance(version, bool):
        raise SchemaRegistryError(f"schema version {version!r} is not valid", retriable=False)
    if isinstance(version, int):
        value = version
    else:
        if isinstance(version, str):
            if version.isdigit():
                return int(version)
            try:
                version = version.encode("latin-1")
            except UnicodeEncodeError:
                raise SchemaRegistryError(
                    f"schema version {version!r} is not valid", retriable=False
                ) from None
        if len(version) != 8:
            raise SchemaRegistryError(
                f"schema version of {len(version)} bytes; expected 8 (big-endian long)",
                retriable=False,
            )
        value = int.from_bytes(version, "big", signed=True)
    if value < 0:
        raise SchemaRegistryError(f"schema version {value} is negative", retriable=False)
    return value


def schema_info_from_response(topic: TopicName, doc: Mapping[str, Any]) -> SchemaInfo:
    """Map the admin API's GetSchemaResponse to our `SchemaInfo`."""
    kind = doc.get("type")
    data = doc.get("data", "")
    props = doc.get("properties") or {}
    if not isinstance(kind, str) or not isinstance(data, str) or not isinstance(props, dict):
        raise SchemaRegistryError(
            f"schema of {topic.full}: unexpected response shape", retriable=False
        )
    return SchemaInfo(
        type=kind.upper(),
        definition=data,
        name=topic.local,
        properties={str(k): str(v) for k, v in props.items()},
    )


class SchemaRegistry:
    """Fetches and caches writer schemas; safe to share between threads."""

    def __init__(
        self,
        admin_url: str,
        auth_headers_provider: HeadersProvider | None = None,
        *,
        timeout_s: float = 10.0,
        max_entries: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        auth: PulsarAuth | None = None,
    ) -> None:
        """`auth` (the consumer's Pulsar authentication) supplies headers and TLS settings
        unless `auth_headers_provider` / `ssl_context` are given explicitly."""
        self.admin_url = admin_url.rstrip("/")
        if auth_headers_provider is None and auth is not None:
            auth_headers_provider = headers_provider_for(auth, timeout_s=timeout_s)
        if ssl_context is None and auth is not None and self.admin_url.startswith("https://"):
            ssl_context = ssl_context_for(auth)
        self._headers: HeadersProvider = auth_headers_provider or dict
        self._timeout_s = timeout_s
        self._max_entries = max(1, max_entries)
        self._ssl_context = ssl_context
        self._cache: OrderedDict[tuple[TopicName, int], SchemaInfo] = OrderedDict()
        self._lock = threading.Lock()
        self.fetches = 0  # how many times the broker was asked (for metrics and tests)

    def url_for(self, topic: str, version: bytes | int | str) -> str:
        return self._url(parse_topic(topic), parse_schema_version(version))

    def _url(self, name: TopicName, version: int) -> str:
        return f"{self.admin_url}/admin/v2/schemas/{name.schema_path}/schema/{version}"

    def get(self, topic: str, version: bytes | int | str) -> SchemaInfo:
        """The schema `version` of `topic` (a partition of it is fine)."""
        key = (parse_topic(topic), parse_schema_version(version))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        info = self._fetch(*key)
        with self._lock:
            self._cache[key] = info
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return info

    def latest(self, topic: str) -> SchemaInfo | None:
        """The topic's current schema, None when it has none: for messages without a schema
        version. Not cached here (the consumer asks once per topic and keeps the answer)."""
        name = parse_topic(topic)
        url = f"{self.admin_url}/admin/v2/schemas/{name.schema_path}/schema"
        info = self._get(url, f"the latest schema of {name.full}", name, absent_ok=True)
        return None if info is None or info.type == "NONE" else info

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def _fetch(self, name: TopicName, version: int) -> SchemaInfo:
        what = f"schema version {version} of {name.full}"
        info = self._get(self._url(name, version), what, name, absent_ok=False)
        assert info is not None  # absent_ok=False: a 404 raised
        return info

    def _get(self, url: str, what: str, name: TopicName, *, absent_ok: bool) -> SchemaInfo | None:
        """GET one schema; None for HTTP 404 when `absent_ok` (a topic without a schema)."""
        headers = {"Accept": "application/json", **self._headers()}
        request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - http(s) admin URL from config
        self.fetches += 1
        try:
            with urllib.request.urlopen(  # noqa: S310 - http(s) admin URL from config
                request, timeout=self._timeout_s, context=self._ssl_context
            ) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            if absent_ok and exc.code == 404:
                return None
            retriable = exc.code >= 500 or exc.code in (408, 429)
            raise SchemaRegistryError(
                f"{what}: the broker answered HTTP {exc.code} {exc.reason}", retriable=retriable
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SchemaRegistryError(f"{what}: broker unreachable ({reason})") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise SchemaRegistryError(f"{what}: the answer is not JSON", retriable=False) from None
        if not isinstance(doc, dict):
            raise SchemaRegistryError(f"{what}: unexpected response shape", retriable=False)
        return schema_info_from_response(name, doc)


# --------------------------------------------------------------------------- admin API auth


def ssl_context_for(auth: PulsarAuth) -> ssl.SSLContext:
    """The admin API's TLS settings, mirroring the consumer's (trust store, client cert)."""
    ctx = ssl.create_default_context(cafile=auth.trust_certs_file or None)
    if auth.allow_insecure_connection:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if auth.kind == "tls":
        ctx.load_cert_chain(auth.cert_file, auth.key_file)
    return ctx


def headers_provider_for(auth: PulsarAuth, *, timeout_s: float = 10.0) -> HeadersProvider:
    """Authorization headers for the admin API: a bearer token (token, oauth2) or none (tls)."""
    if auth.kind == "token":
        return auth.http_headers
    if auth.kind == "oauth2":
        return _OAuth2ClientCredentials(auth, timeout_s=timeout_s).headers
    return dict


class _OAuth2ClientCredentials:
    """The client-credentials flow Pulsar's OAuth2 plugin uses, for the admin REST calls.

    `privateKey` is a JSON file {"client_id", "client_secret"[, "issuer_url"]}; the token
    endpoint comes from the issuer's OpenID discovery document. Tokens are reused until shortly
    before they expire.
    """

    def __init__(self, auth: PulsarAuth, *, timeout_s: float) -> None:
        self._auth = auth
        self._timeout_s = timeout_s
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if not self._token or time.monotonic() >= self._expires_at:
                self._refresh()
            return {"Authorization": f"Bearer {self._token}"}

    def _json(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                doc = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            raise SchemaRegistryError(f"OAuth2 token request failed: {exc}") from None
        if not isinstance(doc, dict):
            raise SchemaRegistryError("OAuth2 token request failed: unexpected answer")
        return doc

    def _refresh(self) -> None:
        path = self._auth.private_key.removeprefix("file://")
        try:
            creds = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaRegistryError(
                f"OAuth2 credentials file {path!r} unreadable ({type(exc).__name__})",
                retriable=False,
            ) from None
        issuer = (self._auth.issuer_url or str(creds.get("issuer_url", ""))).rstrip("/")
        discovery = self._json(
            urllib.request.Request(f"{issuer}/.well-known/openid-configuration")  # noqa: S310
        )
        form = {
            "grant_type": "client_credentials",
            "client_id": str(creds.get("client_id", "")),
            "client_secret": str(creds.get("client_secret", "")),
        }
        if self._auth.audience:
            form["audience"] = self._auth.audience
        if self._auth.scope:
            form["scope"] = self._auth.scope
        answer = self._json(
            urllib.request.Request(  # noqa: S310 - the issuer's token endpoint
                str(discovery.get("token_endpoint", "")),
                data=urllib.parse.urlencode(form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                method="POST",
            )
        )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise SchemaRegistryError("OAuth2 token request failed: no access_token")
        expires_in = answer.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._token = token
        self._expires_at = time.monotonic() + max(0.0, lifetime - 30.0)
