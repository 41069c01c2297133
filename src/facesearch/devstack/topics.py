"""The topics the local stack configures itself instead of leaving them to auto-creation with
the broker's defaults (7 days), as deploy/k8s keeps them (docs/operations.md, "Personal
data"): the images topic holds raw photos and the faces topic crops of faces, which the
pipeline needs only until the next stage has read them; the gateways' quota usage is replayed
for a day; the audit trail is kept 400 days. The embeddings topic and the
dead-letter topics are still auto-created.
"""

import logging
from collections.abc import Mapping

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from facesearch.devstack.broker import BrokerError
from facesearch.rpc.settings import KafkaSettings
from facesearch.settings import EnvReader

log = logging.getLogger(__name__)

# A day: the next stage reads an event within seconds; the rest is room for an outage of it to
# be noticed and mended (deploy/k8s/base/kafka/topics.yaml says the same).
RETENTION_MS = 24 * 3600 * 1000
# Kafka deletes whole segments, and keeps the one being written: without a roll every hour, a
# quiet topic's photos could stay a week (the default segment.ms) whatever the retention.
SEGMENT_MS = 3600 * 1000
SHORT_LIVED = {"retention.ms": str(RETENTION_MS), "segment.ms": str(SEGMENT_MS)}
# A replica replays the last day of usage when it starts: two days leave room.
USAGE = {"retention.ms": str(2 * RETENTION_MS), "segment.ms": str(SEGMENT_MS)}
# The audit trail: append-only, kept 400 days (a year and a margin; set your own policy).
KEPT = {"retention.ms": str(400 * RETENTION_MS)}


def stack_topics(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The topics the stack configures, under the names the services will use, each with its
    settings."""
    settings = KafkaSettings.read(EnvReader({"FACESEARCH_KAFKA_BOOTSTRAP": "-", **env}))
    return {
        settings.images_topic: SHORT_LIVED,
        settings.faces_topic: SHORT_LIVED,
        settings.usage_topic: USAGE,
        settings.audit_topic: KEPT,
    }


def ensure_topics(bootstrap: str, topics: dict[str, dict[str, str]]) -> None:
    """Create each topic with its settings, or set them on one that exists (an older
    stack's, auto-created with the broker's defaults). Idempotent."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="facesearch-stack")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=configs)
            for topic, configs in topics.items()
            if topic not in existing
        ]
        if new:
            admin.create_topics(new)
        old = [
            ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)
            for topic, configs in topics.items()
            if topic in existing
        ]
        if old:
            admin.alter_configs(old)
        log.info("topics configured: %s", ", ".join(topics))
    except KafkaError as exc:
        raise BrokerError(f"cannot configure the topics {topics} at {bootstrap}: {exc}") from exc
    finally:
        admin.close()
