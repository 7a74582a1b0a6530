"""How `subscribe_kwargs` shapes the consumer for the receive path (no broker needed)."""

from __future__ import annotations

import re

import pulsar

from lambdasink_runtime.config import PulsarConfig
from lambdasink_runtime.consumer import BATCH_RECEIVE_MAX, subscribe_kwargs

ONE = "persistent://public/default/one"


def test_one_topic_is_subscribed_by_name() -> None:
    # A one-element list would make the C++ client run a (costlier) multi-topic consumer.
    assert subscribe_kwargs(PulsarConfig(topics=(ONE,)))["topic"] == ONE


def test_several_topics_and_a_pattern_keep_their_forms() -> None:
    two = (ONE, "persistent://public/default/two")
    assert subscribe_kwargs(PulsarConfig(topics=two))["topic"] == list(two)
    topic = subscribe_kwargs(PulsarConfig(topics_pattern="persistent://public/default/o.*"))[
        "topic"
    ]
    assert isinstance(topic, re.Pattern)


def test_batch_receive_policy_is_capped_by_the_receiver_queue() -> None:
    for queue, expected in [(1000, BATCH_RECEIVE_MAX), (5, 5), (1, 1)]:
        kw = subscribe_kwargs(PulsarConfig(topics=(ONE,), receiver_queue_size=queue))
        policy = kw["batch_receive_policy"]
        assert isinstance(policy, pulsar.ConsumerBatchReceivePolicy)
        assert policy.policy().getMaxNumMessages() == expected
        assert policy.policy().getMaxNumBytes() < 0  # no byte cap: count only
        assert policy.policy().getTimeoutMs() > 0  # 0 would wait for a full batch
