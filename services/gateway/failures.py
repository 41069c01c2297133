"""What the gateway remembers about images it queued: which are still on their way, and why the
pipeline dropped the others (read from the dead-letter topics), so GetImage can answer QUEUED
or FAILED for an image the index does not hold."""

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

POLL_MS = 500
RETRY_S = 2.0


class RecentIds:
    """image id -> text, keeping the newest ``capacity`` entries (memory stays bounded)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, image_id: str, text: str) -> None:
        with self._lock:
            self._items[image_id] = text
            self._items.move_to_end(image_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, image_id: str) -> str | None:
        with self._lock:
            return self._items.get(image_id)


class DeadLetterWatcher:
    """A thread that reads every dead-letter topic of the pipeline from its beginning (no
    consumer group: each gateway replica keeps its own complete view) and records the reason
    of each dead letter under its key, the image id."""

    def __init__(self, bootstrap: str, topics: list[str], failures: RecentIds) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.failures = failures
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dead-letters", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._consume()
            except Exception:  # whatever it was, GetImage must keep learning of failures
                log.exception("reading the dead-letter topics failed; retrying")
                time.sleep(RETRY_S)

    def _consume(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            enable_incremental_fetch_sessions=False,  # see kafka_consumer_factory
        )
        try:
            partitions = self._partitions(consumer)
            if not partitions:
                return
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            while not self._stopping:
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for record in records:
                        self._record(record.key, dict(record.headers or []))
        finally:
            consumer.close(autocommit=False)

    def _partitions(self, consumer: Any) -> list[Any]:
        """Every partition of the dead-letter topics, once the broker knows them all (asking
        creates them where the broker auto-creates topics)."""
        while not self._stopping:
            found = {topic: consumer.partitions_for_topic(topic) for topic in self.topics}
            if all(found.values()):
                return [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps)]
            time.sleep(RETRY_S)
        return []

    def _record(self, key: bytes | None, headers: dict[str, bytes]) -> None:
        if not key:
            return
        reason = headers.get("reason", b"dead-lettered").decode("utf-8", "replace")
        self.failures.put(key.decode("utf-8", "replace"), reason)
