"""The audit topic from the reader's side: every record of ``facesearch.audit.v1`` (or those
from a time on), read without a consumer group, up to the end the topic had when reading
began. ``facesearch audit --kafka`` uses it."""

from collections.abc import Iterator
from datetime import datetime

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from facesearch.audit import AuditRecord
from facesearch.codec.events import parse_audit
from facesearch.errors import BadMessageError, TransientError

AUDIT_TOPIC = "facesearch.audit.v1"
POLL_MS = 1000


def read_audit_topic(
    bootstrap: str, topic: str = AUDIT_TOPIC, since: datetime | None = None
) -> Iterator[AuditRecord]:
    """The topic's records, partition after partition, each in order; one that cannot be
    decoded is skipped (the topic is append-only: nothing to repair there)."""
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    except KafkaError as exc:
        raise TransientError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        _seek(consumer, partitions, since)
        for partition in partitions:
            yield from _read_partition(consumer, partition, ends[partition])
    finally:
        consumer.close()


def _seek(
    consumer: KafkaConsumer, partitions: list[TopicPartition], since: datetime | None
) -> None:
    if since is None:
        consumer.seek_to_beginning(*partitions)
        return
    found = consumer.offsets_for_times({p: int(since.timestamp() * 1000) for p in partitions})
    ends = consumer.end_offsets(partitions)
    for partition in partitions:
        at = found.get(partition)
        consumer.seek(partition, at.offset if at is not None else ends[partition])


def _read_partition(
    consumer: KafkaConsumer, partition: TopicPartition, end: int
) -> Iterator[AuditRecord]:
    others = [p for p in consumer.assignment() if p != partition]
    consumer.pause(*others)
    consumer.resume(partition)
    while consumer.position(partition) < end:
        for message in consumer.poll(timeout_ms=POLL_MS).get(partition, []):
            if message.offset >= end:
                return
            try:
                yield parse_audit(message.value)
            except BadMessageError:
                continue
