"""The topics the local stack configures itself instead of leaving them to auto-creation with
the broker's defaults (7 days): the images topic holds raw photos, which the pipeline needs only
until the detector has read them, so it keeps them as long as deploy/k8s does (see
docs/operations.md, "Personal data"). The other topics are still auto-created.
"""

import logging
from collections.abc import Mapping

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from facesearch.devstack.broker import BrokerError
from facesearch.rpc.settings import KafkaSettings

log = logging.getLogger(__name__)

# A day: the detector reads an image within seconds; the rest is room for a detector outage to
# be noticed and mended (deploy/k8s/base/kafka/topics.yaml says the same).
IMAGES_RETENTION_MS = 24 * 3600 * 1000
# Kafka deletes whole segments, and keeps the one being written: without a roll every hour, a
# quiet topic's photos could stay a week (the default segment.ms) whatever the retention.
IMAGES_SEGMENT_MS = 3600 * 1000
IMAGES_CONFIG = {"retention.ms": str(IMAGES_RETENTION_MS), "segment.ms": str(IMAGES_SEGMENT_MS)}


def images_topic(env: Mapping[str, str]) -> str:
    return env.get("FACESEARCH_TOPIC_IMAGES", "").strip() or KafkaSettings.images_topic


def ensure_images_topic(bootstrap: str, topic: str) -> None:
    """Create the images topic with ``IMAGES_CONFIG``, or set it on one that exists (an older
    stack's, auto-created with the broker's defaults). Idempotent."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="facesearch-stack")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        if topic in admin.list_topics():
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=IMAGES_CONFIG)
            admin.alter_configs([resource])
            log.info("set %s on %s", IMAGES_CONFIG, topic)
        else:
            new = NewTopic(
                topic, num_partitions=1, replication_factor=1, topic_configs=IMAGES_CONFIG
            )
            admin.create_topics([new])
            log.info("created %s with %s", topic, IMAGES_CONFIG)
    except KafkaError as exc:
        raise BrokerError(f"cannot configure the topic {topic} at {bootstrap}: {exc}") from exc
    finally:
        admin.close()
