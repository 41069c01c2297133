"""Which handler errors dead-letter a message and which end the worker, and what the metrics
record of it (no broker needed: the worker is handed a scripted consumer and a producer that
records sends; the loop itself is tested on a real broker in
tests/integration/test_streaming.py)."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry
from stream_fakes import P0, RECORD, RecordingProducer, ScriptedConsumer

from facesearch.errors import (
    BadImageError,
    ConfigError,
    FaceSearchError,
    ModelError,
    StoreError,
    TransientError,
)
from facesearch.metrics import StreamMetrics
from facesearch.stream.worker import Handler, Message, StreamWorker


def worker_on(
    consumers: list[ScriptedConsumer],
    producer: RecordingProducer,
    handler: Handler,
    registry: CollectorRegistry,
    **options: Any,
) -> StreamWorker:
    """A worker handed ``consumers`` in turn (each stops it when its polls run out) and
    ``producer``."""
    members = iter(consumers)
    worker = StreamWorker(
        "127.0.0.1:1",
        "in",
        "group",
        "out",
        handler,
        metrics=StreamMetrics(registry),
        consumer_factory=lambda: next(members),
        producer_factory=lambda: producer,
        **options,
    )
    for consumer in consumers:
        consumer.stop = worker.stop
    return worker


def worker_raising(
    error: FaceSearchError,
    registry: CollectorRegistry,
    consumer: ScriptedConsumer,
    producer: RecordingProducer,
) -> StreamWorker:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        raise error

    return worker_on([consumer], producer, handler, registry)


def test_a_bad_message_goes_to_the_dead_letter_topic_and_is_counted() -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    consumer = ScriptedConsumer([[RECORD]])
    worker = worker_raising(BadImageError("not an image"), registry, consumer, producer)

    worker.run()

    [(topic, sent)] = producer.sent
    assert topic == "in.dlq"
    assert (sent["key"], sent["value"]) == (b"k", b"v")
    assert dict(sent["headers"])["reason"] == b"bad_image: not an image"
    assert (worker.dead_lettered, worker.consumed) == (1, 1)
    labels = {"topic": "in", "reason": "bad_image"}
    assert registry.get_sample_value("facesearch_messages_dead_lettered_total", labels) == 1.0
    # Only a transient failure pauses or rewinds a partition; the record counts as done.
    assert (consumer.paused, consumer.seeks, consumer.committed) == ([], [], [{P0: 8}])


@pytest.mark.parametrize("error", [StoreError("down"), ConfigError("unset"), ModelError("gone")])
def test_a_fault_of_the_service_is_raised_not_dead_lettered(error: FaceSearchError) -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    consumer = ScriptedConsumer([[RECORD]])
    worker = worker_raising(error, registry, consumer, producer)

    with pytest.raises(type(error)):
        worker.run()

    assert producer.sent == []
    assert (worker.dead_lettered, worker.consumed) == (0, 0)
    assert registry.get_sample_value("facesearch_messages_dead_lettered_total", {}) is None
    assert (consumer.paused, consumer.seeks, consumer.committed) == ([], [], [])


def test_every_metric_is_named_for_facesearch_and_explained() -> None:
    registry = CollectorRegistry()
    StreamMetrics(registry)

    families = list(registry.collect())

    assert {f.name for f in families} == {
        "facesearch_messages_consumed",
        "facesearch_messages_produced",
        "facesearch_messages_dead_lettered",
        "facesearch_handler_retries",
        "facesearch_partition_pauses",
        "facesearch_consumer_lag",
        "facesearch_stalled_partitions",
        "facesearch_consumer_restarts",
        "facesearch_batch_size",
        "facesearch_processing_seconds",
    }
    assert all(f.documentation.endswith(".") and len(f.documentation) > 20 for f in families)


def test_an_output_too_large_for_a_message_dead_letters_its_record() -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    consumer = ScriptedConsumer([[RECORD]])

    def handler(key: bytes | None, value: bytes) -> list[Message]:
        return [(key, b"x" * 5000)]

    worker = worker_on([consumer], producer, handler, registry, max_message_bytes=4096)
    worker.run()

    [(topic, sent)] = producer.sent
    assert (topic, sent["value"]) == ("in.dlq", b"v")
    assert dict(sent["headers"])["reason"].startswith(b"too_large: its output of 5001 bytes")
    assert (worker.dead_lettered, worker.consumed) == (1, 1)
    assert (consumer.paused, consumer.seeks, consumer.committed) == ([], [], [{P0: 8}])


def test_a_stream_of_outputs_is_sent_as_it_is_made_and_a_too_large_one_ends_it() -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    consumer = ScriptedConsumer([[RECORD]])
    made: list[int] = []

    def handler(key: bytes | None, value: bytes) -> Iterator[Message]:
        for size in (10, 20, 5000, 30):
            made.append(size)
            assert len(producer.sent) == len(made) - 1  # each sent before the next is made
            yield key, b"x" * size

    worker = worker_on([consumer], producer, handler, registry, max_message_bytes=4096)
    worker.run()

    assert made == [10, 20, 5000]  # the stream was not asked for more
    assert [(topic, len(sent["value"])) for topic, sent in producer.sent] == [
        ("out", 10),
        ("out", 20),
        ("in.dlq", 1),
    ]
    assert dict(producer.sent[-1][1]["headers"])["reason"].startswith(b"too_large")
    assert (worker.dead_lettered, worker.consumed) == (1, 1)
    assert (consumer.paused, consumer.seeks, consumer.committed) == ([], [], [{P0: 8}])


def test_a_partition_failing_on_a_dependency_is_stalled_until_a_batch_of_it_succeeds() -> None:
    registry, producer = CollectorRegistry(), RecordingProducer()
    down = [True]
    told: list[bool] = []

    def handler(key: bytes | None, value: bytes) -> list[Message]:
        if down[0]:
            raise TransientError("Qdrant is down")
        return [(key, value)]

    def stalled() -> float | None:
        return registry.get_sample_value("facesearch_stalled_partitions", {"topic": "in"})

    def polls() -> Iterator[list[Any]]:
        assert stalled() == 0
        yield [RECORD]
        yield [RECORD]  # still down: no news
        assert (consumer.paused, told, stalled()) == ([P0] * 2, [True], 1)
        assert consumer.seeks == [(P0, 7)] * 2  # each pause rewinds to the record
        assert producer.sent == []
        down[0] = False
        yield [RECORD]

    consumer = ScriptedConsumer(polls())
    # pause_s=0: the partition is resumed at the next poll, which brings the record again.
    worker = worker_on(
        [consumer], producer, handler, registry, max_retries=1, backoff_s=0.0, pause_s=0.0
    )
    worker.on_stalled = told.append

    worker.run()

    assert (told, stalled(), len(producer.sent)) == ([True, False], 0, 1)
    assert consumer.committed == [{P0: 8}]


def idle(polls: int) -> Iterator[list[Any]]:
    """``polls`` polls that bring nothing."""
    for _ in range(polls):
        time.sleep(0.01)
        yield []


@pytest.mark.parametrize(("position", "stuck"), [(8, True), (11, False)])
def test_a_consumer_that_fetches_nothing_while_records_wait_is_replaced(
    position: int, stuck: bool
) -> None:
    registry = CollectorRegistry()
    first = ScriptedConsumer(idle(49), position=position, end=11)
    second = ScriptedConsumer(idle(0), position=11, end=11)
    worker = worker_on(
        [first, second], RecordingProducer(), lambda k, v: [], registry, stuck_s=0.05
    )

    worker.run()

    restarts = registry.get_sample_value("facesearch_consumer_restarts_total", {"topic": "in"})
    assert (worker.restarts, restarts or 0.0) == (int(stuck), float(stuck))
    assert (second.listener is not None) is stuck  # a new member replaced the first
    assert first.polled < 49 if stuck else first.polled == 49  # stopped, not replaced


def test_the_lag_of_a_revoked_partition_is_no_longer_reported() -> None:
    registry = CollectorRegistry()

    def polls() -> Iterator[list[Any]]:  # a rebalance takes partitions 2 and 9 away
        consumer.listener.on_partitions_revoked({TopicPartition("in", 2), TopicPartition("in", 9)})
        yield []

    consumer = ScriptedConsumer(polls())
    worker = worker_raising(BadImageError("unused"), registry, consumer, RecordingProducer())
    worker.metrics.consumer_lag.labels("in", "2").set(5)
    worker.metrics.consumer_lag.labels("in", "3").set(1)

    worker.run()

    lag = "facesearch_consumer_lag"
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "2"}) is None
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "3"}) == 1.0
