"""Quota usage shared by the gateway replicas through the Kafka topic ``facesearch.usage.v1``.

Each replica decides calls on its own ``QuotaBook`` at once. Every ``SHARE_S`` it produces
what it let each key do since the last time (one ``UsageEvent`` per key, keyed by key id),
and it reads the topic from the start of the last day (no consumer group: every replica reads
everything) and applies the other replicas' events to its buckets. So the replicas share one
quota per key, and a key can overdraw it only by what the others let pass in the time an
event takes to arrive (about ``SHARE_S`` plus a fetch). A replica that starts replays the last
day first, so its daily buckets begin where the others' are."""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from facesearch.proto.v1 import events_pb2
from facesearch.quotas import DAY_S, Limits, QuotaBook, Usage

logger = logging.getLogger(__name__)

SHARE_S = 0.1  # how often a replica sends its usage
POLL_MS = 100
RETRY_S = 2.0


class UsageSync:
    """The thread that sends this replica's usage and applies the others'. ``limits_of``
    gives a key's limits (None for a key this replica does not know: its usage is skipped)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        book: QuotaBook,
        limits_of: Callable[[str], Limits | None],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.book = book
        self.limits_of = limits_of
        self.replica = f"{uuid.uuid4().hex[:12]}"
        self._producer: Any = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-usage", daemon=True)

    def start(self, producer: Any) -> None:
        self._producer = producer
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._share()  # the last interval's usage

    def _run(self) -> None:
        consumer: KafkaConsumer | None = None
        while not self._stopping.is_set():
            try:
                consumer = consumer or self._open()
                self._share()
                if consumer.assignment():
                    self._apply(consumer.poll(timeout_ms=POLL_MS))
                else:
                    consumer.close()
                    consumer = None  # the topic does not exist yet: the first send makes it
                    self._stopping.wait(SHARE_S)
            except KafkaError as exc:
                logger.warning("quota usage: %s; retrying in %.0f s", exc, RETRY_S)
                if consumer is not None:
                    consumer.close()
                consumer = None
                self._stopping.wait(RETRY_S)
        if consumer is not None:
            consumer.close()

    def _open(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=POLL_MS
        )
        parts = [
            TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic) or ()
        ]
        if parts:
            consumer.assign(parts)
            since = int((time.time() - DAY_S) * 1000)
            found = consumer.offsets_for_times({p: since for p in parts})
            ends = consumer.end_offsets(parts)
            for part in parts:
                at = found.get(part)
                consumer.seek(part, at.offset if at is not None else ends[part])
        return consumer

    def _share(self) -> None:
        for usage in self.book.drain():
            event = events_pb2.UsageEvent(
                key_id=usage.key_id,
                replica=self.replica,
                at_ms=int(usage.at * 1000),
                requests=usage.requests,
                searches=usage.searches,
            )
            try:
                self._producer.send(
                    self.topic, key=usage.key_id.encode(), value=event.SerializeToString()
                )
            except KafkaError as exc:  # the buckets of the other replicas miss these calls
                logger.warning("quota usage of key %s not shared: %s", usage.key_id, exc)

    def _apply(self, fetched: dict[Any, list[Any]]) -> None:
        for messages in fetched.values():
            for message in messages:
                event = events_pb2.UsageEvent()
                try:
                    event.ParseFromString(message.value)
                except Exception:  # not ours to repair: skip it
                    continue
                limits = self.limits_of(event.key_id)
                if event.replica == self.replica or limits is None:
                    continue
                usage = Usage(event.key_id, event.requests, event.searches, event.at_ms / 1000)
                self.book.apply(usage, limits)
