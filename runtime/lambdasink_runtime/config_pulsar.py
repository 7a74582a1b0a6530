"""The `pulsar` section: where and how the worker consumes, and how it authenticates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from .config_values import Reader, as_choice, as_mapping, check_keys, is_absent, split_list
from .errors import ConfigError

ENV_PULSAR_TOKEN = "LAMBDASINK_PULSAR_TOKEN"  # noqa: S105 - a variable name

SubscriptionType = Literal["Shared", "Failover", "Key_Shared", "Exclusive"]
InitialPosition = Literal["Earliest", "Latest"]
AuthKind = Literal["none", "token", "oauth2", "tls"]

_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")


def _namespace_of(topic: str) -> str:
    """`persistent://tenant/ns` of a full or short topic name (short names: public/default)."""
    m = re.match(r"^(persistent|non-persistent)://([^/]+)/([^/]+)/", topic)
    if m:
        return f"{m.group(1)}://{m.group(2)}/{m.group(3)}"
    return "persistent://public/default"


def _secret(default: str = "") -> Any:
    """A dataclass field hidden from repr and redacted in `redacted_dict()`."""
    return field(default=default, repr=False, metadata={"sensitive": True})


@dataclass(frozen=True, slots=True)
class PulsarAuth:
    """How the consumer authenticates to Pulsar, and the TLS transport settings.

    A token is resolved at load time from (in order) `authentication.token.value`/a literal
    string (discouraged), `authentication.token.env` (an env variable name) or the env variable
    LAMBDASINK_PULSAR_TOKEN; `token_file` is read when used (`read_token()`), so rotated files
    are picked up.
    """

    kind: AuthKind = "none"
    token: str = _secret()
    token_file: str = ""
    issuer_url: str = ""
    audience: str = ""
    scope: str = ""
    private_key: str = ""
    cert_file: str = ""
    key_file: str = ""
    trust_certs_file: str = ""
    allow_insecure_connection: bool = False
    hostname_verification: bool = False

    def read_token(self) -> str:
        """The current token (re-reading `token_file`); '' when the kind is not token."""
        if self.kind != "token":
            return ""
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token

    def http_headers(self) -> dict[str, str]:
        """Headers for the admin REST API (token auth only; others need the caller's help)."""
        token = self.read_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


_AUTH_KINDS = ("token", "oauth2", "tls")


def _parse_auth(
    section: str, auth_doc: object, pulsar: Reader, env: Mapping[str, str]
) -> PulsarAuth:
    return replace(
        _parse_auth_kind(section, auth_doc, env),
        trust_certs_file=pulsar.text("tlsTrustCertsFile").strip(),
        allow_insecure_connection=pulsar.flag("tlsAllowInsecureConnection", False),
        hostname_verification=pulsar.flag("tlsHostnameVerification", False),
    )


def _parse_auth_kind(section: str, auth_doc: object, env: Mapping[str, str]) -> PulsarAuth:
    if is_absent(auth_doc) or auth_doc == {}:
        token = env.get(ENV_PULSAR_TOKEN, "").strip()
        if token:
            return PulsarAuth(kind="token", token=token)
        return PulsarAuth()
    doc = as_mapping(section, auth_doc)
    check_keys(section, doc, _AUTH_KINDS)
    given = [k for k in _AUTH_KINDS if doc.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(
            section, ",".join(given) or "nothing", "exactly one of token, oauth2, tls"
        )
    kind = given[0]
    name = f"{section}.{kind}"
    if kind == "token":
        tok = doc["token"]
        if isinstance(tok, str):  # a literal token: accepted, discouraged
            if not tok.strip():
                raise ConfigError(
                    name, "", "a token, or {file: path} / {env: NAME}", sensitive=True
                )
            return PulsarAuth(kind="token", token=tok.strip())
        t = Reader(name, as_mapping(name, tok))
        check_keys(name, t.doc, ("file", "env", "value"))
        file_ = t.text("file").strip()
        value = t.text("value", sensitive=True).strip()
        env_name = t.text("env").strip()
        if sum(bool(x) for x in (file_, value, env_name)) > 1:
            raise ConfigError(name, "several sources", "exactly one of file, env, value")
        if env_name:
            value = env.get(env_name, "").strip()
            if not value:
                raise ConfigError(f"{name}.env", env_name, "the name of a set, non-empty variable")
        elif not file_ and not value:
            value = env.get(ENV_PULSAR_TOKEN, "").strip()
            if not value:
                raise ConfigError(
                    name, "", f"file, env or value, or the variable {ENV_PULSAR_TOKEN}"
                )
        return PulsarAuth(kind="token", token=value, token_file=file_)
    if kind == "oauth2":
        o = Reader(name, as_mapping(name, doc["oauth2"]))
        check_keys(name, o.doc, ("issuerUrl", "audience", "scope", "privateKey"))
        issuer = o.text("issuerUrl").strip()
        key = o.text("privateKey").strip()
        if not issuer:
            raise ConfigError(o.name("issuerUrl"), issuer, "the OAuth2 issuer URL")
        if not key:
            raise ConfigError(
                o.name("privateKey"), key, "the path (or file:// URL) of the credentials JSON file"
            )
        return PulsarAuth(
            kind="oauth2",
            issuer_url=issuer,
            audience=o.text("audience").strip(),
            scope=o.text("scope").strip(),
            private_key=key,
        )
    c = Reader(name, as_mapping(name, doc["tls"]))
    check_keys(name, c.doc, ("certFile", "keyFile"))
    cert, keyf = c.text("certFile").strip(), c.text("keyFile").strip()
    if not cert or not keyf:
        missing = "certFile" if not cert else "keyFile"
        raise ConfigError(c.name(missing), "", "the path of the client certificate / key (PEM)")
    return PulsarAuth(kind="tls", cert_file=cert, key_file=keyf)


_PULSAR_KEYS = (
    "serviceUrl",
    "adminUrl",
    "topics",
    "inputs",
    "topicsPattern",
    "subscriptionName",
    "subscriptionType",
    "subscriptionInitialPosition",
    "deadLetterTopic",
    "maxRedeliverCount",
    "negativeAckRedeliveryDelayMs",
    "receiverQueueSize",
    "authentication",
    "tlsTrustCertsFile",
    "tlsAllowInsecureConnection",
    "tlsHostnameVerification",
)


def _parse_topics(name: str, value: object) -> tuple[str, ...]:
    allowed = "a non-empty list of topic names (or a comma-separated string)"
    out: list[str] = []
    for topic in split_list(name, value, allowed):
        if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
            raise ConfigError(name, topic, allowed)
        if topic not in out:
            out.append(topic)
    if not out:
        raise ConfigError(name, value, allowed)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PulsarConfig:
    """Where and how the worker consumes."""

    service_url: str = "pulsar://localhost:6650"
    admin_url: str = "http://localhost:8080"
    topics: tuple[str, ...] = ()
    topics_pattern: str | None = None
    subscription_name: str = "lambda-sink"
    subscription_type: SubscriptionType = "Shared"
    initial_position: InitialPosition = "Latest"
    dead_letter_topic: str | None = None
    max_redeliver_count: int = 0
    negative_ack_redelivery_delay_ms: int = 60000
    receiver_queue_size: int = 1000
    auth: PulsarAuth = field(default_factory=PulsarAuth)

    @property
    def dead_letter_requested(self) -> bool:
        """The reference's way of asking for dead letters: a DLQ topic or a redelivery cap."""
        return self.max_redeliver_count > 0 or self.dead_letter_topic is not None

    def dead_letter_topic_for(self, topic: str) -> str:
        """The DLQ a message of `topic` goes to: the configured one or Pulsar's default name."""
        return (
            self.dead_letter_topic
            or f"{_PARTITION_SUFFIX.sub('', topic)}-{self.subscription_name}-DLQ"
        )

    @property
    def namespace(self) -> str:
        """`persistent://tenant/namespace` of the first topic (or the pattern)."""
        first = self.topics[0] if self.topics else (self.topics_pattern or "")
        return _namespace_of(first)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> PulsarConfig:
        section = "pulsar"
        doc = as_mapping(section, doc)
        check_keys(section, doc, _PULSAR_KEYS)
        r = Reader(section, doc)
        env = env or {}
        if doc.get("topics") is not None and doc.get("inputs") is not None:
            raise ConfigError(r.name("inputs"), doc["inputs"], "give topics or inputs, not both")
        topics_key = "inputs" if doc.get("inputs") is not None else "topics"
        no_topics: tuple[str, ...] = ()
        topics = r.get(topics_key, _parse_topics, no_topics)
        pattern = r.opt_str("topicsPattern")
        if bool(topics) == bool(pattern):
            raise ConfigError(
                r.name("topics"),
                "both" if topics else "neither",
                "exactly one of pulsar.topics (or inputs) and pulsar.topicsPattern",
            )
        if pattern is not None:
            try:
                re.compile(pattern.split("/")[-1])
            except re.error:
                raise ConfigError(r.name("topicsPattern"), pattern, "a valid regex") from None
        subscription = r.text("subscriptionName", "lambda-sink").strip()
        if not subscription:
            raise ConfigError(r.name("subscriptionName"), subscription, "a non-empty name")
        max_redeliver = r.integer("maxRedeliverCount", 0, 0)
        dlq = r.opt_str("deadLetterTopic")
        service_url = r.text("serviceUrl", "pulsar://localhost:6650").strip()
        if not re.match(r"^pulsar(\+ssl)?://", service_url):
            raise ConfigError(r.name("serviceUrl"), service_url, "a pulsar:// or pulsar+ssl:// URL")
        admin_url = r.text("adminUrl", "http://localhost:8080").strip().rstrip("/")
        if not re.match(r"^https?://", admin_url):
            raise ConfigError(r.name("adminUrl"), admin_url, "an http:// or https:// URL")
        return cls(
            service_url=service_url,
            admin_url=admin_url,
            topics=topics,
            topics_pattern=pattern,
            subscription_name=subscription,
            subscription_type=cast(
                SubscriptionType,
                r.get(
                    "subscriptionType",
                    lambda n, v: as_choice(n, v, ("Shared", "Failover", "Key_Shared", "Exclusive")),
                    "Shared",
                ),
            ),
            initial_position=cast(
                InitialPosition,
                r.get(
                    "subscriptionInitialPosition",
                    lambda n, v: as_choice(n, v, ("Earliest", "Latest")),
                    "Latest",
                ),
            ),
            dead_letter_topic=dlq,
            max_redeliver_count=max_redeliver,
            negative_ack_redelivery_delay_ms=r.integer("negativeAckRedeliveryDelayMs", 60000, 0),
            receiver_queue_size=r.integer("receiverQueueSize", 1000, 1),
            auth=_parse_auth(r.name("authentication"), doc.get("authentication"), r, env),
        )
