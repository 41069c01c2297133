"""The local stack's images and faces topics keep records a day, as deploy/k8s's do, on the real
broker: created so when missing, and set so on topics an older stack auto-created with the
broker's default week."""

import uuid
from pathlib import Path
from typing import Any

import yaml
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from facesearch.devstack.topics import SHORT_LIVED, ensure_short_lived, short_lived_topics

TOPICS_YAML = Path(__file__).parents[2] / "deploy" / "k8s" / "base" / "kafka" / "topics.yaml"


def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        # {resource type: {topic: {key: {the config's data}}}}
        (by_topic,) = admin.describe_configs(resources, config_filter="all").values()
        return {
            topic: {
                key: str(data.get("value", data.get("config_value"))) for key, data in found.items()
            }
            for topic, found in by_topic.items()
        }
    finally:
        admin.close()


def test_the_stack_creates_or_sets_the_short_lived_topics(kafka: Any) -> None:
    base = f"t{uuid.uuid4().hex[:10]}"
    env = {"FACESEARCH_TOPIC_IMAGES": f"{base}.images", "FACESEARCH_TOPIC_FACES": f"{base}.faces"}
    images, faces = short_lived_topics(env)
    kafka.new_topics(faces, partitions=1)  # as auto-creation left it: the broker's default week

    ensure_short_lived(kafka.bootstrap, [images, faces])
    ensure_short_lived(kafka.bootstrap, [images, faces])  # again: nothing changes

    configs = topic_configs(kafka.bootstrap, [images, faces])
    for topic in (images, faces):
        assert configs[topic]["retention.ms"] == "86400000", topic
        assert configs[topic]["segment.ms"] == "3600000", topic


def test_the_stack_keeps_them_as_long_as_kubernetes_does() -> None:
    topics = {
        doc["spec"]["topicName"]: doc["spec"]["config"]
        for doc in yaml.safe_load_all(TOPICS_YAML.read_text())
    }
    for name in ("facesearch.images.v1", "facesearch.faces.v1"):
        config = {key: str(value) for key, value in topics[name].items()}
        assert {key: config[key] for key in SHORT_LIVED} == SHORT_LIVED, name
    assert short_lived_topics({}) == ["facesearch.images.v1", "facesearch.faces.v1"]
