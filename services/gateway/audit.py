"""The gateway's audit trail: each call's record produced to ``facesearch.audit.v1`` (keyed by
the key id, so one key's records stay in order) by a thread of its own, so a call never waits
on the broker for its record. Records of calls made before the producer is connected wait for
it; a record that cannot be queued or sent is counted (FacesearchAuditRecordsLost alerts)."""

import logging
import queue
import threading
from typing import Any

from facesearch.audit import AuditRecord
from facesearch.codec.events import audit_to_proto
from facesearch.metrics import AccessMetrics

logger = logging.getLogger(__name__)

QUEUE_RECORDS = 100_000  # records waiting for the producer, at most
STOP_WAIT_S = 10.0


class AuditTrail:
    def __init__(self, topic: str, metrics: AccessMetrics) -> None:
        self.topic = topic
        self.metrics = metrics
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(QUEUE_RECORDS)
        self._producer: Any = None  # kafka.KafkaProducer, once connected
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def write(self, record: AuditRecord) -> None:
        """Queue a record (never blocks: a full queue loses it, counted)."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._lost(record, "the queue is full")

    def connect(self, producer: Any) -> None:
        self._producer = producer
        self._connected.set()

    def stop(self) -> None:
        """Send what is queued (up to STOP_WAIT_S), then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=STOP_WAIT_S)

    def _run(self) -> None:
        while (record := self._queue.get()) is not None:
            self._connected.wait()
            try:
                future = self._producer.send(
                    self.topic,
                    key=record.key_id.encode(),
                    value=audit_to_proto(record).SerializeToString(),
                )
            except Exception as exc:  # no metadata in time, buffer full, closed
                self._lost(record, str(exc))
                continue
            future.add_callback(lambda _: self.metrics.audit_records.labels("written").inc())
            future.add_errback(lambda exc, r=record: self._lost(r, str(exc)))

    def _lost(self, record: AuditRecord, why: str) -> None:
        self.metrics.audit_records.labels("lost").inc()
        logger.error("audit record of %s at %s lost: %s", record.method, record.time, why)
