"""The consumer's pure parts: subscribe and client arguments built from the configuration.

Receiving, acking and nacking against a real broker belong to the integration tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pulsar

from lambdasink_runtime.config import PulsarAuth, PulsarConfig
from lambdasink_runtime.consumer import build_authentication, client_kwargs, subscribe_kwargs


def test_topics_subscription_without_dead_letter_policy() -> None:
    cfg = PulsarConfig(
        topics=("persistent://public/default/a", "persistent://public/default/b"),
        subscription_name="s",
        subscription_type="Key_Shared",
        initial_position="Earliest",
        negative_ack_redelivery_delay_ms=1500,
        receiver_queue_size=77,
    )
    kw = subscribe_kwargs(cfg)
    assert kw["topic"] == ["persistent://public/default/a", "persistent://public/default/b"]
    assert kw["subscription_name"] == "s"
    assert kw["consumer_type"] == pulsar.ConsumerType.KeyShared
    assert kw["initial_position"] == pulsar.InitialPosition.Earliest
    assert kw["negative_ack_redelivery_delay_ms"] == 1500
    assert kw["receiver_queue_size"] == 77
    assert "dead_letter_policy" not in kw


def test_pattern_subscription_without_pulsars_dead_letter_policy() -> None:
    # The failure policy replaces Pulsar's consumer DLQ (broker-memory counts, skipped on
    # Exclusive/Failover), so the subscription never carries one.
    cfg = PulsarConfig(
        topics_pattern="persistent://public/default/orders-.*",
        subscription_type="Failover",
        max_redeliver_count=3,
        dead_letter_topic="persistent://public/default/orders-dlq",
    )
    kw = subscribe_kwargs(cfg)
    assert isinstance(kw["topic"], re.Pattern)
    assert kw["topic"].pattern == "persistent://public/default/orders-.*"
    assert kw["consumer_type"] == pulsar.ConsumerType.Failover
    assert "dead_letter_policy" not in kw


def test_every_subscription_type_maps() -> None:
    for name, expected in [
        ("Shared", pulsar.ConsumerType.Shared),
        ("Failover", pulsar.ConsumerType.Failover),
        ("Key_Shared", pulsar.ConsumerType.KeyShared),
        ("Exclusive", pulsar.ConsumerType.Exclusive),
    ]:
        cfg = PulsarConfig(topics=("t",), subscription_type=name)  # type: ignore[arg-type]
        assert subscribe_kwargs(cfg)["consumer_type"] == expected


def test_no_auth() -> None:
    assert client_kwargs(PulsarConfig(topics=("t",))) == {"authentication": None}


def test_token_auth_and_tls_transport() -> None:
    auth = PulsarAuth(
        kind="token",
        token="t0k",
        trust_certs_file="/etc/ca.pem",
        allow_insecure_connection=True,
        hostname_verification=True,
    )
    kw = client_kwargs(PulsarConfig(topics=("t",), auth=auth))
    assert isinstance(kw["authentication"], pulsar.AuthenticationToken)
    assert kw["tls_trust_certs_file_path"] == "/etc/ca.pem"
    assert kw["tls_allow_insecure_connection"] is True
    assert kw["tls_validate_hostname"] is True


def test_token_file_is_a_supplier(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    auth = PulsarAuth(kind="token", token_file=str(path))
    assert isinstance(build_authentication(auth), pulsar.AuthenticationToken)
    path.write_text("rotated\n")
    assert auth.read_token() == "rotated"


def test_oauth2_and_tls_auth(tmp_path: Path) -> None:
    oauth = PulsarAuth(
        kind="oauth2",
        issuer_url="https://issuer.example",
        private_key=str(tmp_path / "creds.json"),
        audience="urn:pulsar",
    )
    assert isinstance(build_authentication(oauth), pulsar.AuthenticationOauth2)
    tls = PulsarAuth(kind="tls", cert_file="/c.pem", key_file="/k.pem")
    assert isinstance(build_authentication(tls), pulsar.AuthenticationTLS)
