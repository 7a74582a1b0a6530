"""The `pulsar` section: where and how the worker consumes, and how it authenticates.

`PULSAR_PROPS` and `TLS_PROPS` declare its scalar properties once (defaults, bounds, help);
topics, topicsPattern and authentication have a structure of their own and are read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .config_fields import Prop, by_key
from .config_values import (
    INT32_MAX,
    Reader,
    as_mapping,
    as_str,
    check_keys,
    is_absent,
    split_list,
)
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


def _service_url(name: str, value: object) -> str:
    url = as_str(name, value).strip()
    if not re.match(r"^pulsar(\+ssl)?://", url):
        raise ConfigError(name, url, "a pulsar:// or pulsar+ssl:// URL")
    return url


def _admin_url(name: str, value: object) -> str:
    url = as_str(name, value).strip().rstrip("/")
    if not re.match(r"^https?://", url):
        raise ConfigError(name, url, "an http:// or https:// URL")
    return url


PULSAR_PROPS: tuple[Prop, ...] = (
    Prop(
        "serviceUrl",
        "service_url",
        "string",
        "pulsar://localhost:6650",
        "pulsar:// or pulsar+ssl:// URL",
        parse=_service_url,
    ),
    Prop(
        "adminUrl",
        "admin_url",
        "string",
        "http://localhost:8080",
        "admin REST URL for schema lookups",
        parse=_admin_url,
    ),
    Prop(
        "subscriptionName",
        "subscription_name",
        "string",
        "lambda-sink",
        "the subscription",
        required="a non-empty name",
    ),
    Prop(
        "subscriptionType",
        "subscription_type",
        "string",
        "Shared",
        "how consumers share the subscription",
        choices=("Shared", "Failover", "Key_Shared", "Exclusive"),
    ),
    Prop(
        "subscriptionInitialPosition",
        "initial_position",
        "string",
        "Latest",
        "where a new subscription starts",
        choices=("Earliest", "Latest"),
    ),
    Prop(
        "maxRedeliverCount",
        "max_redeliver_count",
        "integer",
        0,
        "> 0: failurePolicy.maxAttempts defaults to it + 1",
        0,
        INT32_MAX,
    ),
    Prop(
        "deadLetterTopic",
        "dead_letter_topic",
        "string",
        None,
        "where failurePolicy sends given-up records",
        empty_is_default=True,
        default_doc="<topic>-<subscription>-DLQ",
    ),
    Prop(
        "negativeAckRedeliveryDelayMs",
        "negative_ack_redelivery_delay_ms",
        "integer",
        60000,
        "delay before a negatively acknowledged message comes again (ms)",
        0,
        INT32_MAX,
    ),
    Prop(
        "receiverQueueSize",
        "receiver_queue_size",
        "integer",
        1000,
        "messages prefetched by the consumer",
        1,
        INT32_MAX,
    ),
)
PULSAR = by_key(PULSAR_PROPS)

#: Transport settings of the `pulsar` section, kept on `PulsarAuth`.
TLS_PROPS: tuple[Prop, ...] = (
    Prop(
        "tlsTrustCertsFile",
        "trust_certs_file",
        "string",
        "",
        "CA certificates (PEM) that verify the broker",
    ),
    Prop(
        "tlsAllowInsecureConnection",
        "allow_insecure_connection",
        "boolean",
        False,
        "accept a broker certificate that does not verify",
    ),
    Prop(
        "tlsHostnameVerification",
        "hostname_verification",
        "boolean",
        False,
        "check the broker's host name against its certificate",
    ),
)
TLS = by_key(TLS_PROPS)
#: Keys of the section that are not scalar properties.
STRUCTURE_KEYS = ("topics", "inputs", "topicsPattern", "authentication")


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
    trust_certs_file: str = TLS["tlsTrustCertsFile"].default
    allow_insecure_connection: bool = TLS["tlsAllowInsecureConnection"].default
    hostname_verification: bool = TLS["tlsHostnameVerification"].default

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
        _parse_auth_kind(section, auth_doc, env), **{p.attr: p.read(pulsar) for p in TLS_PROPS}
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

    service_url: str = PULSAR["serviceUrl"].default
    admin_url: str = PULSAR["adminUrl"].default
    topics: tuple[str, ...] = ()
    topics_pattern: str | None = None
    subscription_name: str = PULSAR["subscriptionName"].default
    subscription_type: SubscriptionType = PULSAR["subscriptionType"].default
    initial_position: InitialPosition = PULSAR["subscriptionInitialPosition"].default
    dead_letter_topic: str | None = PULSAR["deadLetterTopic"].default
    max_redeliver_count: int = PULSAR["maxRedeliverCount"].default
    negative_ack_redelivery_delay_ms: int = PULSAR["negativeAckRedeliveryDelayMs"].default
    receiver_queue_size: int = PULSAR["receiverQueueSize"].default
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
        check_keys(section, doc, [*PULSAR, *TLS, *STRUCTURE_KEYS])
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
        return cls(
            topics=topics,
            topics_pattern=pattern,
            auth=_parse_auth(r.name("authentication"), doc.get("authentication"), r, env),
            **{p.attr: p.read(r) for p in PULSAR_PROPS},
        )
