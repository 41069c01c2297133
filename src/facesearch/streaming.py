"""The one consume-process-produce loop of the services, with DESIGN's delivery guarantees.

A handler is a pure function from one message to the messages it produces. ``StreamWorker``
is the thin Kafka shell around it:

- outputs go to the output topic; offsets are committed (per partition, offset + 1) only
  after the broker acknowledged every message produced for the records up to that offset;
- a ``FaceSearchError`` from the handler marks a poison message: it goes to
  ``<input_topic>.dlq`` with its reason and origin in its headers, then counts as done;
  except the errors of the service itself (``ConfigError``, ``ModelError``, ``StoreError``),
  which are no fault of the message and end ``run`` like any other exception;
- a ``TransientError`` is retried with exponential backoff; when the retries run out the
  partition is paused and rewound to the failed record, and resumed ``pause_s`` later, so no
  record is ever skipped;
- any other exception ends ``run`` (the orchestrator restarts the process; the records not
  committed are delivered again).

Delivery is at least once: handlers must be idempotent.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    KafkaError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from facesearch.errors import ConfigError, FaceSearchError, ModelError, StoreError
from facesearch.metrics import StreamMetrics

log = logging.getLogger(__name__)

Message = tuple[bytes | None, bytes]
Handler = Callable[[bytes | None, bytes], list[Message]]

DLQ_SUFFIX = ".dlq"
FLUSH_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 10.0
SLEEP_SLICE_S = 0.05  # how often a backoff looks at the stop flag
# Faults of the service, not of the message: dead-lettering would lose good messages.
NOT_POISON = (ConfigError, ModelError, StoreError)


class TransientError(FaceSearchError):
    """A temporary fault (a dependency down, a timeout): the same message may succeed later."""

    code = "transient"


class DeliveryError(FaceSearchError):
    """The broker did not acknowledge a produced message; nothing after it was committed."""

    code = "delivery"


def dlq_topic(input_topic: str) -> str:
    """The dead-letter topic of ``input_topic``."""
    return input_topic + DLQ_SUFFIX


def dead_letter_headers(record: Any, exc: FaceSearchError) -> list[tuple[str, bytes]]:
    """Why the record was refused and where it came from, as Kafka headers."""
    fields = {
        "reason": f"{exc.code}: {exc}",
        "original_topic": record.topic,
        "original_partition": str(record.partition),
        "original_offset": str(record.offset),
    }
    return [(name, value.encode("utf-8")) for name, value in fields.items()]


class StreamWorker:
    """Consume ``input_topic`` as ``group_id``, apply ``handler``, produce to ``output_topic``.

    ``run()`` loops until ``stop()``; ``stop()`` only sets a flag, so it is safe from a signal
    handler or another thread, and ``run()`` returns within about ``poll_timeout_ms`` (or the
    handler call in progress). The counters are plain attributes, written by ``run()`` only.
    """

    def __init__(
        self,
        bootstrap: str,
        input_topic: str,
        group_id: str,
        output_topic: str,
        handler: Handler,
        *,
        max_retries: int = 3,
        backoff_s: float = 0.2,
        pause_s: float = 5.0,
        batch: int = 100,
        poll_timeout_ms: int = 500,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.input_topic = input_topic
        self.group_id = group_id
        self.output_topic = output_topic
        self.handler = handler
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.pause_s = pause_s
        self.batch = batch
        self.poll_timeout_ms = poll_timeout_ms
        # A service passes the metrics of its default registry; elsewhere they go unexported.
        self.metrics = metrics or StreamMetrics(CollectorRegistry())
        self.consumed = 0  # records done: processed or dead-lettered
        self.produced = 0  # outputs acknowledged by the broker
        self.dead_lettered = 0
        self.retries = 0
        self.pauses = 0
        # A plain bool: setting it is atomic and takes no lock, unlike threading.Event.set,
        # which could deadlock in a signal handler that interrupts a wait on the same Event.
        self._stopping = False
        self._sent: list[Any] = []  # futures of the sends since the last commit
        self._done: dict[Any, int] = {}  # partition -> next offset to commit
        self._paused: dict[Any, float] = {}  # partition -> monotonic time to resume it

    def stop(self) -> None:
        """Ask ``run()`` to finish the record in hand, flush, commit, close and return."""
        self._stopping = True

    def run(self) -> None:
        """Consume until ``stop()``; raise ``DeliveryError`` if the broker refuses an output."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch,
        )
        # Know the topic's partitions before joining the group: a member that joins first is
        # given nothing, and kafka-python 3.0's rejoin after the metadata arrives was seen to
        # stall for good (assignment never delivered).
        consumer.partitions_for_topic(self.input_topic)
        consumer.subscribe([self.input_topic])
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        except BaseException:
            consumer.close(autocommit=False)
            raise
        try:
            self._loop(consumer, producer)
            self._commit(consumer, producer)
        finally:
            producer.close(timeout=CLOSE_TIMEOUT_S)
            consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))

    def _loop(self, consumer: Any, producer: Any) -> None:
        while not self._stopping:
            self._resume_due(consumer)
            polled = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.batch)
            for partition, records in polled.items():
                self._process_partition(consumer, producer, partition, records)
            self._commit(consumer, producer)

    def _process_partition(
        self, consumer: Any, producer: Any, partition: Any, records: list[Any]
    ) -> None:
        """Handle ``records`` in order; stop early when stopping or the partition pauses."""
        for record in records:
            if self._stopping:
                return
            with self.metrics.processing_seconds.labels(self.input_topic).time():
                done = self._process(producer, record)
            if not done:
                if not self._stopping:
                    self._pause(consumer, partition, record.offset)
                return
            self._done[partition] = record.offset + 1
            self.consumed += 1
            self.metrics.consumed.labels(self.input_topic).inc()

    def _process(self, producer: Any, record: Any) -> bool:
        """Handle one record and send what it yields; False when it is still to be done."""
        try:
            outputs = self._call(record)
        except TransientError:
            return False
        except NOT_POISON:
            raise
        except FaceSearchError as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
            )
            headers = dead_letter_headers(record, exc)
            future = producer.send(
                dlq_topic(self.input_topic), value=record.value, key=record.key, headers=headers
            )
            self._sent.append(future)
            self.dead_lettered += 1
            self.metrics.dead_lettered.labels(self.input_topic, exc.code).inc()
            return True
        for key, value in outputs:
            self._sent.append(producer.send(self.output_topic, value=value, key=key))
        return True

    def _call(self, record: Any) -> list[Message]:
        """The handler's outputs, retrying a ``TransientError`` with exponential backoff; the
        last ``TransientError`` propagates when the retries run out or the worker stops."""
        attempt = 0
        while True:
            try:
                return self.handler(record.key, record.value)
            except TransientError as exc:
                if attempt >= self.max_retries or not self._sleep(self.backoff_s * 2**attempt):
                    log.warning(
                        "%s[%d]@%d still failing after %d retries: %s",
                        *(record.topic, record.partition, record.offset, attempt, exc),
                    )
                    raise
                attempt += 1
                self.retries += 1
                self.metrics.retries.labels(self.input_topic).inc()

    def _sleep(self, seconds: float) -> bool:
        """Sleep in short slices; False as soon as ``stop()`` was called."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, SLEEP_SLICE_S))
        return False

    def _pause(self, consumer: Any, partition: Any, offset: int) -> None:
        """Stop fetching ``partition`` for ``pause_s`` and rewind it to the failed record (the
        records fetched after it are dropped and fetched again)."""
        log.warning("pausing %s for %.1f s at offset %d", partition, self.pause_s, offset)
        consumer.pause(partition)
        consumer.seek(partition, offset)
        self._paused[partition] = time.monotonic() + self.pause_s
        self.pauses += 1
        self.metrics.pauses.labels(self.input_topic).inc()

    def _resume_due(self, consumer: Any) -> None:
        now = time.monotonic()
        due = [p for p, until in self._paused.items() if until <= now]
        for partition in due:
            del self._paused[partition]
        assigned = consumer.assignment()  # a rebalance may have taken some away
        resumable = [p for p in due if p in assigned]
        if resumable:
            log.info("resuming %s", ", ".join(str(p) for p in resumable))
            consumer.resume(*resumable)

    def _commit(self, consumer: Any, producer: Any) -> None:
        """Wait for the broker to acknowledge every send, then commit the records done."""
        sent, self._sent = self._sent, []
        try:
            producer.flush(timeout=FLUSH_TIMEOUT_S)
            for future in sent:
                metadata = future.get(timeout=0)
                if metadata.topic == self.output_topic:
                    self.produced += 1
                    self.metrics.produced.labels(self.output_topic).inc()
        except KafkaError as exc:
            raise DeliveryError(f"the broker did not acknowledge an output: {exc}") from exc
        done, self._done = self._done, {}
        if not done:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done.items()}
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # The group is rebalancing or has: the partitions' owner processes these records
            # again (handlers are idempotent).
            log.warning("commit failed, records will be delivered again: %s", exc)
