"""The services' one consume-process-produce loop, with docs/architecture.md's delivery guarantees.

A handler is a pure function from messages to the messages they produce: a ``Handler`` takes
one record; a ``BatchHandler`` takes a micro-batch (the embedder embeds the crops of many
events in one model call) and returns one outcome per record, in order. ``StreamWorker`` is
the thin Kafka shell around either (it runs a ``Handler`` through ``batched``):

- records are handled in batches of up to ``max_batch``, across partitions; the first record
  buffered waits at most ``max_wait_s`` for the others;
- outputs go to the output topic; offsets are committed (per partition, offset + 1) only
  after the broker acknowledged every message produced for the records up to that offset. A
  handler may return its outputs as a stream (any iterable but a list), sent as it yields
  them: the detector streams a video's frames, never holding them all;
- a ``FaceSearchError`` as a record's outcome (or raised by a ``Handler``) marks it poison:
  it goes to ``<input_topic>.dlq`` with its reason and origin in its headers, then counts as
  done; except the errors of the service itself (``ConfigError``, ``ModelError``,
  ``StoreError``), which are no fault of the message and end ``run`` like any other exception;
- a ``TransientError`` fails the whole batch, which is retried with exponential backoff; when
  the retries run out each partition of the batch is paused, rewound to its first record in
  the batch and resumed ``pause_s`` later, so no record is ever skipped;
- a broker that does not acknowledge (stopped, restarting) is waited for, up to the producer's
  delivery timeout, with nothing committed meanwhile; after that the outputs count as lost
  and ``run`` ends with a ``DeliveryError``;
- any other exception ends ``run`` (the records not committed are delivered again).

The worker makes its clients with the factories it is given (``kafka_consumer_factory`` and
``kafka_producer_factory`` by default), so a test hands in fakes; it subscribes each consumer
itself.

Delivery is at least once: handlers must be idempotent.
"""

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from facesearch.errors import (
    ConfigError,
    DeliveryError,
    FaceSearchError,
    ImageTooLargeError,
    ModelError,
    StoreError,
    TransientError,
)
from facesearch.metrics import StreamMetrics
from facesearch.settings import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

Message = tuple[bytes | None, bytes]
Handler = Callable[[bytes | None, bytes], Iterable[Message]]
# What became of one record: its outputs (a list, or a stream), or the error that makes it
# poison.
Outcome = Iterable[Message] | FaceSearchError
BatchHandler = Callable[[list[Message]], list[Outcome]]
# Each call makes a new client: a consumer not yet subscribed (the worker calls its
# partitions_for_topic, subscribe, poll, assignment, highwater, position, end_offsets, pause,
# resume, seek, commit and close), or a producer (send, flush and close), as kafka-python's.
ConsumerFactory = Callable[[], Any]
ProducerFactory = Callable[[], Any]

DLQ_SUFFIX = ".dlq"
RECORD_OVERHEAD_BYTES = 1024  # a record's framing and headers, within the producer's limit
FLUSH_TIMEOUT_S = 30.0
# How long the producer re-sends an output the broker does not acknowledge (its
# delivery_timeout_ms); a worker waits that long for a broker that is down or restarting.
DELIVERY_TIMEOUT_S = 120.0
FLUSH_SLICE_S = 1.0  # how often a wait for acknowledgements looks at the stop flag
# A member that dies without leaving (kill -9, a crashed node) holds its partitions until this
# much time passed without its heartbeat, so a restarted stage waits that long (heartbeats come
# from a background thread: a long batch does not count against it, max_poll_interval_ms
# does). 10 s was tried: the poison-in-a-batch test then stalled twice in full runs, its
# member unknown to the coordinator at the end (expelled, and kafka-python's rejoin never
# completed). Back to the client's default, 45 s, under which it was not seen to stall.
SESSION_TIMEOUT_MS = 45_000
CLOSE_TIMEOUT_S = 10.0
# No record for this long while an assigned partition has records past the position: the
# consumer's fetches have stopped, and a new consumer replaces it (``StreamWorker._unfetched``).
STUCK_S = 10.0
SLEEP_SLICE_S = 0.05  # how often a backoff looks at the stop flag
MAX_POLL_RECORDS = 100  # the most records one poll returns, by default
# Faults of the service, not of the message: dead-lettering would lose good messages.
NOT_POISON = (ConfigError, ModelError, StoreError)


def kafka_consumer_factory(
    bootstrap: str,
    group_id: str,
    *,
    max_poll_records: int = MAX_POLL_RECORDS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> ConsumerFactory:
    """Makes kafka-python consumers of the group, committing only when told."""
    return functools.partial(
        KafkaConsumer,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        max_partition_fetch_bytes=max_message_bytes,
        fetch_max_bytes=max_message_bytes,
        # With kafka-python 3.0's incremental fetch sessions a partition's newer records were
        # seen never to arrive (the poison-in-a-batch test stalled in the first run of 3 out
        # of 4 series); with full fetch requests, which cost a little bandwidth, it has not.
        enable_incremental_fetch_sessions=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )


def kafka_producer_factory(
    bootstrap: str, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> ProducerFactory:
    """Makes kafka-python producers acknowledged by every in-sync replica."""
    return functools.partial(
        KafkaProducer,
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=max_message_bytes,
        delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
    )


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


def batched(handler: Handler) -> BatchHandler:
    """``handler`` as a batch handler: a record's poison error becomes its outcome, while a
    ``TransientError`` or a fault of the service propagates and fails the whole batch."""

    def outcome(key: bytes | None, value: bytes) -> Outcome:
        try:
            return handler(key, value)
        except (TransientError, *NOT_POISON):
            raise
        except FaceSearchError as exc:
            return exc

    return lambda messages: [outcome(key, value) for key, value in messages]


def _one_handler(handler: Handler | None, batch_handler: BatchHandler | None) -> BatchHandler:
    if handler is not None and batch_handler is None:
        return batched(handler)
    if batch_handler is not None and handler is None:
        return batch_handler
    raise TypeError("StreamWorker takes a handler or a batch_handler, exactly one")


def partition_of(record: Any) -> Any:
    return TopicPartition(record.topic, record.partition)


def first_offsets(records: list[Any]) -> dict[Any, int]:
    """The offset of the first of ``records`` in each of their partitions."""
    first: dict[Any, int] = {}
    for record in records:
        first.setdefault(partition_of(record), record.offset)
    return first


class _RewindRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Gives back the buffered records of the partitions a rebalance takes away."""

    def __init__(self, worker: "StreamWorker", consumer: Any) -> None:
        self.worker = worker
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker._rewind(self.consumer, set(revoked))
        if not self.worker._stopping:  # a rebalance: another member now reports their lag
            self.worker._forget_lag(set(revoked))
            self.worker._set_stalled(self.worker._stalled - set(revoked))  # and their stalls

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker._seek_rewound(self.consumer, set(assigned))


class StreamWorker:
    """Consume ``input_topic`` as ``group_id``, apply ``handler`` (one record at a time) or
    ``batch_handler`` (up to ``max_batch`` records at a time), produce to ``output_topic``.

    ``batch`` is the most records one poll returns; ``max_message_bytes`` the largest message
    produced or fetched. ``run()`` loops until ``stop()``; ``stop()`` only sets a flag, so it
    is safe from a signal handler or another thread, and ``run()`` returns within about
    ``poll_timeout_ms`` (or the handler call in progress). The counters are plain attributes,
    written by ``run()`` only.

    ``consumer_factory`` and ``producer_factory`` make its clients (one producer per ``run()``,
    a consumer per member of the group it becomes); by default kafka-python's, made by
    ``kafka_consumer_factory`` and ``kafka_producer_factory`` from ``bootstrap``, ``group_id``,
    ``batch`` and ``max_message_bytes``.
    """

    def __init__(
        self,
        bootstrap: str,
        input_topic: str,
        group_id: str,
        output_topic: str,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 1,
        max_wait_s: float = 0.0,
        max_retries: int = 3,
        backoff_s: float = 0.2,
        pause_s: float = 5.0,
        batch: int = MAX_POLL_RECORDS,
        poll_timeout_ms: int = 500,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        metrics: StreamMetrics | None = None,
        stuck_s: float = STUCK_S,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch {max_batch} must be >= 1, max_wait_s {max_wait_s} >= 0")
        self.bootstrap = bootstrap
        self.input_topic = input_topic
        self.group_id = group_id
        self.output_topic = output_topic
        self.handle = _one_handler(handler, batch_handler)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.pause_s = pause_s
        self.batch = batch
        self.poll_timeout_ms = poll_timeout_ms
        self.max_message_bytes = max_message_bytes
        self.stuck_s = stuck_s
        self._new_consumer = consumer_factory or kafka_consumer_factory(
            bootstrap, group_id, max_poll_records=batch, max_message_bytes=max_message_bytes
        )
        self._new_producer = producer_factory or kafka_producer_factory(
            bootstrap, max_message_bytes=max_message_bytes
        )
        # A service passes the metrics of its default registry; elsewhere they go unexported.
        self.metrics = metrics or StreamMetrics(CollectorRegistry())
        self.consumed = 0  # records done: processed or dead-lettered
        self.produced = 0  # outputs acknowledged by the broker
        self.dead_lettered = 0
        self.retries = 0
        self.pauses = 0
        self.restarts = 0  # consumers replaced because their fetches stopped
        # A plain bool: setting it is atomic and takes no lock, unlike threading.Event.set,
        # which could deadlock in a signal handler that interrupts a wait on the same Event.
        self._stopping = False
        self._buffer: list[tuple[float, Any]] = []  # (monotonic time polled, record)
        self._sent: list[Any] = []  # futures of the sends since the last commit
        self._done: dict[Any, int] = {}  # partition -> next offset to commit
        self._paused: dict[Any, float] = {}  # partition -> monotonic time to resume it
        self._rewound: dict[Any, int] = {}  # partition -> first dropped offset, since a revoke
        self._stalled: set[Any] = set()  # partitions paused and not yet through a batch since
        # Told True when a partition stalls and none was, False when the last one recovers (the
        # runtime reports it in health); called from run()'s thread.
        self.on_stalled: Callable[[bool], None] | None = None
        self.metrics.stalled_partitions.labels(input_topic).set(0)

    def stop(self) -> None:
        """Ask ``run()`` to finish the batch in hand, flush, commit, close and return (the
        records buffered for the next batch are not committed: they are delivered again)."""
        self._stopping = True

    def run(self) -> None:
        """Consume until ``stop()``; raise ``DeliveryError`` if the broker refuses an output."""
        producer = self._new_producer()
        try:
            while True:
                consumer = self._consumer()
                try:
                    stuck = self._loop(consumer, producer)
                    self._buffer.clear()  # neither done nor committed: delivered again
                    self._commit(consumer, producer)
                finally:
                    consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
                if not stuck:
                    return
                self._forget_consumer()
        finally:
            producer.close(timeout=CLOSE_TIMEOUT_S)

    def _consumer(self) -> Any:
        """A new member of the group, subscribed to the input topic."""
        consumer = self._new_consumer()
        try:
            # Know the topic's partitions before joining the group: a member that joins first
            # is given nothing, and kafka-python 3.0's rejoin after the metadata arrives was
            # seen to stall for good (assignment never delivered).
            consumer.partitions_for_topic(self.input_topic)
            consumer.subscribe([self.input_topic], listener=_RewindRevoked(self, consumer))
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return consumer

    def _loop(self, consumer: Any, producer: Any) -> bool:
        """Consume until stopped (False), or until the consumer is stuck (True)."""
        last_record = time.monotonic()
        while not self._stopping:
            self._resume_due(consumer)
            polled = consumer.poll(timeout_ms=self._poll_timeout_ms(), max_records=self.batch)
            now = time.monotonic()
            for records in polled.values():
                self._buffer.extend((now, record) for record in records)
                last_record = now
            self._record_lag(consumer)
            while self._batch_ready() and not self._stopping:
                batch = [record for _, record in self._buffer[: self.max_batch]]
                del self._buffer[: self.max_batch]
                self._process_batch(consumer, producer, batch)
            self._commit(consumer, producer)
            if now - last_record >= self.stuck_s and not self._buffer:
                if self._unfetched(consumer):
                    return True
                last_record = now  # nothing waits: look again one period later
        return False

    def _unfetched(self, consumer: Any) -> list[Any]:
        """The partitions assigned here and not paused whose end lies past this consumer's
        position, after ``stuck_s`` without a record: records wait that its fetches do not
        bring. kafka-python 3.0.12 was seen to stop fetching a partition for good (the
        poison-in-a-batch test, in full runs: the last 3 of 11 records never came); a new
        consumer starts from the committed offsets, so nothing is lost or skipped."""
        mine = [tp for tp in consumer.assignment() if tp not in self._paused]
        if not mine:
            return []
        try:
            ends = consumer.end_offsets(mine)
            positions = {tp: consumer.position(tp, timeout_ms=0) for tp in mine}
            waiting = [
                tp for tp in mine if positions[tp] is not None and ends.get(tp, 0) > positions[tp]
            ]
        except KafkaError as exc:
            log.warning("could not look for unfetched records: %s", exc)
            return []
        if waiting:
            self.restarts += 1
            self.metrics.consumer_restarts.labels(self.input_topic).inc()
            log.warning(
                "no record for %.0f s although %s have more: a new consumer takes over",
                self.stuck_s,
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in waiting),
            )
        return waiting

    def _forget_consumer(self) -> None:
        """What belonged to the consumer just closed: its pauses, rewinds, stalls and lags."""
        self._forget_lag(set(self._paused) | set(self._stalled))
        self._paused.clear()
        self._rewound.clear()
        self._set_stalled(set())

    def _poll_timeout_ms(self) -> int:
        """The poll timeout, cut short so a buffered record waits no more than ``max_wait_s``."""
        if not self._buffer:
            return self.poll_timeout_ms
        left = self._buffer[0][0] + self.max_wait_s - time.monotonic()
        return max(0, min(self.poll_timeout_ms, int(left * 1000)))

    def _batch_ready(self) -> bool:
        if len(self._buffer) >= self.max_batch:
            return True
        return bool(self._buffer) and time.monotonic() - self._buffer[0][0] >= self.max_wait_s

    def _record_lag(self, consumer: Any) -> None:
        """Lag of each assigned partition whose end the last fetch told (none before that)."""
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            # Known whenever the highwater is (it comes with a fetch): no round-trip here.
            position = consumer.position(partition, timeout_ms=0)
            if position is not None:
                gauge = self.metrics.consumer_lag.labels(partition.topic, str(partition.partition))
                gauge.set(highwater - position)

    def _forget_lag(self, partitions: set[Any]) -> None:
        """Another consumer reports the lag of partitions this one no longer owns."""
        for partition in partitions:
            with contextlib.suppress(KeyError):  # never measured here
                self.metrics.consumer_lag.remove(partition.topic, str(partition.partition))

    def _rewind(self, consumer: Any, partitions: set[Any]) -> None:
        """Drop the buffered records of ``partitions`` and seek each back to the first of them:
        kafka-python keeps the position of a partition that stays assigned across a rebalance,
        and a new owner starts from the committed offset, so they are fetched again either way."""
        buffered = [record for _, record in self._buffer if partition_of(record) in partitions]
        for partition, offset in first_offsets(buffered).items():
            consumer.seek(partition, offset)
            self._rewound[partition] = offset
        self._drop(partitions)

    def _seek_rewound(self, consumer: Any, assigned: set[Any]) -> None:
        """Seek the partitions given back to this consumer to the records it dropped when they
        were revoked: the seek made then may not survive the new assignment (the partition's
        state can be renewed), and nothing fetched past them must be skipped."""
        rewound, self._rewound = self._rewound, {}
        for partition, offset in rewound.items():
            if partition in assigned:
                consumer.seek(partition, offset)

    def _drop(self, partitions: set[Any]) -> None:
        self._buffer = [(t, r) for t, r in self._buffer if partition_of(r) not in partitions]

    def _process_batch(self, consumer: Any, producer: Any, batch: list[Any]) -> None:
        """Handle ``batch`` and send what it yields, or pause its partitions when it is still
        to be done."""
        self.metrics.batch_size.labels(self.input_topic).observe(len(batch))
        with self.metrics.processing_seconds.labels(self.input_topic).time():
            outcomes = self._outcomes(batch)
            if outcomes is None:
                if not self._stopping:
                    self._pause_batch(consumer, batch)
                return
            self._set_stalled(self._stalled - {partition_of(record) for record in batch})
            for record, outcome in zip(batch, outcomes, strict=True):
                self._send(producer, record, outcome)  # a stream's work happens here
                self._done[partition_of(record)] = record.offset + 1
                self.consumed += 1
                self.metrics.consumed.labels(self.input_topic).inc()

    def _outcomes(self, batch: list[Any]) -> list[Outcome] | None:
        """The batch's outcomes, retrying a ``TransientError`` with exponential backoff; None
        when the retries run out or the worker stops first."""
        messages: list[Message] = [(record.key, record.value) for record in batch]
        attempt = 0
        while True:
            try:
                return self._attempt(messages)
            except TransientError as exc:
                if attempt >= self.max_retries or not self._sleep(self.backoff_s * 2**attempt):
                    first = batch[0]
                    log.warning(
                        "batch of %d from %s[%d]@%d still failing after %d retries: %s",
                        *(len(batch), first.topic, first.partition, first.offset, attempt, exc),
                    )
                    return None
                attempt += 1
                self.retries += 1
                self.metrics.retries.labels(self.input_topic).inc()

    def _attempt(self, messages: list[Message]) -> list[Outcome]:
        """One call of the handler; a transient or service fault as an outcome is raised, as
        if the handler had raised it (neither is the fault of that one record)."""
        outcomes = self.handle(messages)
        if len(outcomes) != len(messages):
            raise ValueError(f"the handler gave {len(outcomes)} outcomes for {len(messages)}")
        for outcome in outcomes:
            if isinstance(outcome, (TransientError, *NOT_POISON)):
                raise outcome
        return outcomes

    def _send(self, producer: Any, record: Any, outcome: Outcome) -> None:
        """Send a record's outputs, or the record itself to the dead-letter topic (also when
        an output is too large for a message: the broker would refuse it on every retry; a
        stream's outputs before that one have been sent)."""
        if isinstance(outcome, list):
            outcome = self._oversized(outcome) or outcome
        if not isinstance(outcome, FaceSearchError):
            too_large = self._send_all(producer, outcome)
            if too_large is None:
                return
            outcome = too_large
        log.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, outcome
        )
        headers = dead_letter_headers(record, outcome)
        future = producer.send(
            dlq_topic(self.input_topic), value=record.value, key=record.key, headers=headers
        )
        self._sent.append(future)
        self.dead_lettered += 1
        self.metrics.dead_lettered.labels(self.input_topic, outcome.code).inc()

    def _send_all(self, producer: Any, outputs: Iterable[Message]) -> ImageTooLargeError | None:
        for key, value in outputs:
            too_large = self._oversized([(key, value)])
            if too_large is not None:
                return too_large
            self._sent.append(producer.send(self.output_topic, value=value, key=key))
        return None

    def _oversized(self, outputs: list[Message]) -> ImageTooLargeError | None:
        limit = self.max_message_bytes - RECORD_OVERHEAD_BYTES
        size = max((len(value) + len(key or b"") for key, value in outputs), default=0)
        if size <= limit:
            return None
        return ImageTooLargeError(
            f"its output of {size} bytes exceeds the {limit} bytes a message may carry "
            "(FACESEARCH_KAFKA_MAX_MESSAGE_BYTES)"
        )

    def _sleep(self, seconds: float) -> bool:
        """Sleep in short slices; False as soon as ``stop()`` was called."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, SLEEP_SLICE_S))
        return False

    def _pause_batch(self, consumer: Any, batch: list[Any]) -> None:
        """Pause every partition of ``batch``, rewound to its first record in it; the records
        after those, buffered or fetched, are dropped and fetched again on resume."""
        first = first_offsets(batch)
        for partition, offset in first.items():
            log.warning("pausing %s for %.1f s at offset %d", partition, self.pause_s, offset)
            consumer.pause(partition)
            consumer.seek(partition, offset)
            self._paused[partition] = time.monotonic() + self.pause_s
        self._drop(set(first))
        self._set_stalled(self._stalled | set(first))
        self.pauses += len(first)
        self.metrics.pauses.labels(self.input_topic).inc(len(first))

    def _set_stalled(self, stalled: set[Any]) -> None:
        """Record which partitions are stalled; tell ``on_stalled`` when that starts or ends."""
        before, self._stalled = bool(self._stalled), stalled
        self.metrics.stalled_partitions.labels(self.input_topic).set(len(stalled))
        if bool(stalled) != before and self.on_stalled is not None:
            self.on_stalled(bool(stalled))

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

    def _flush(self, producer: Any) -> None:
        """Wait for the broker to acknowledge every send. While it does not answer (stopped,
        restarting) the producer keeps re-sending for ``DELIVERY_TIMEOUT_S``, and so this waits:
        nothing could be consumed or committed meanwhile anyway, and giving up after
        ``FLUSH_TIMEOUT_S``, as it did, ended the detector and embedder on a broker restart.
        Once stopping it waits ``FLUSH_TIMEOUT_S`` at most, as it always did."""
        begun = time.monotonic()
        warned = begun
        while True:
            try:
                producer.flush(timeout=FLUSH_SLICE_S)
                return
            except KafkaTimeoutError:
                now = time.monotonic()
                limit = FLUSH_TIMEOUT_S if self._stopping else DELIVERY_TIMEOUT_S + FLUSH_SLICE_S
                if now - begun >= limit:
                    raise
                if now - warned >= FLUSH_TIMEOUT_S:
                    warned = now
                    log.warning("no acknowledgement from the broker for %.0f s", now - begun)

    def _commit(self, consumer: Any, producer: Any) -> None:
        """Wait for the broker to acknowledge every send, then commit the records done."""
        sent, self._sent = self._sent, []
        try:
            self._flush(producer)
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
        except (CommitFailedError, RebalanceInProgressError, KafkaTimeoutError) as exc:
            # The group is rebalancing or has: the partitions' owner processes these records
            # again (handlers are idempotent). Or the broker went down after it acknowledged
            # the outputs: the next commit covers these offsets too, as a restart would.
            log.warning("commit failed, records will be delivered again: %s", exc)
