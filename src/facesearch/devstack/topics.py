"""The topics the local stack configures itself instead of leaving them to auto-creation with
the broker's defaults (7 days): the images topic holds raw photos and the faces topic crops of
faces, which the pipeline needs only until the next stage has read them, so they are kept as
long as deploy/k8s keeps them (see docs/operations.md, "Personal data"). The embeddings topic
and the dead-letter topics are still auto-created.
"""

import logging
from collections.abc import Mapping

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from facesearch.devstack.broker import BrokerError
from facesearch.rpc.settings import KafkaSettings

log = logging.getLogger(__name__)

# A day: the next stage reads an event within seconds; the rest is room for an outage of it to
# be noticed and mended (deploy/k8s/base/kafka/topics.yaml says the same).
RETENTION_MS = 24 * 3600 * 1000
# Kafka deletes whole segments, and keeps the one being written: without a roll every hour, a
# quiet topic's photos could stay a week (the default segment.ms) whatever the retention.
SEGMENT_MS = 3600 * 1000
SHORT_LIVED = {"retention.ms": str(RETENTION_MS), "segment.ms": str(SEGMENT_MS)}


def short_lived_topics(env: Mapping[str, str]) -> list[str]:
    """The images and faces topics, under the names the services will use."""
    images = env.get("FACESEARCH_TOPIC_IMAGES", "").strip() or KafkaSettings.images_topic
    faces = env.get("FACESEARCH_TOPIC_FACES", "").strip() or KafkaSettings.faces_topic
    return [images, faces]


def ensure_short_lived(bootstrap: str, topics: list[str]) -> None:
    """Create each topic with ``SHORT_LIVED``, or set it on one that exists (an older stack's,
    auto-created with the broker's defaults). Idempotent."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="facesearch-stack")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=SHORT_LIVED)
            for topic in topics
            if topic not in existing
        ]
        if new:
            admin.create_topics(new)
        old = [t for t in topics if t in existing]
        if old:
            admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs=SHORT_LIVED) for t in old]
            )
        log.info("topics %s keep records %d h", ", ".join(topics), RETENTION_MS // 3_600_000)
    except KafkaError as exc:
        raise BrokerError(f"cannot configure the topics {topics} at {bootstrap}: {exc}") from exc
    finally:
        admin.close()
