"""Which handler errors dead-letter a message and which end the worker, and what the metrics
record of it (no broker needed: the producer is a stand-in that records sends; the loop itself
is tested on a real broker in tests/integration/test_streaming.py)."""

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from facesearch.errors import (
    BadImageError,
    ConfigError,
    FaceSearchError,
    ModelError,
    StoreError,
    TransientError,
)
from facesearch.metrics import StreamMetrics
from facesearch.stream.worker import Message, StreamWorker

RECORD = SimpleNamespace(topic="in", partition=0, offset=7, key=b"k", value=b"v")


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, topic: str, **kwargs: Any) -> object:
        self.sent.append((topic, kwargs))
        return object()

    def flush(self, timeout: float) -> None:
        pass


class UntouchedConsumer:
    """The consumer a batch that succeeds or fails for good never touches (only a transient
    failure pauses partitions)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the consumer was used: {name}")


def worker_raising(error: FaceSearchError, registry: CollectorRegistry) -> StreamWorker:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        raise error

    metrics = StreamMetrics(registry)
    return StreamWorker("127.0.0.1:1", "in", "group", "out", handler, metrics=metrics)


def test_a_bad_message_goes_to_the_dead_letter_topic_and_is_counted() -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    worker = worker_raising(BadImageError("not an image"), registry)

    worker._process_batch(UntouchedConsumer(), producer, [RECORD])

    [(topic, sent)] = producer.sent
    assert topic == "in.dlq"
    assert (sent["key"], sent["value"]) == (b"k", b"v")
    assert dict(sent["headers"])["reason"] == b"bad_image: not an image"
    assert (worker.dead_lettered, worker.consumed) == (1, 1)
    labels = {"topic": "in", "reason": "bad_image"}
    assert registry.get_sample_value("facesearch_messages_dead_lettered_total", labels) == 1.0


@pytest.mark.parametrize("error", [StoreError("down"), ConfigError("unset"), ModelError("gone")])
def test_a_fault_of_the_service_is_raised_not_dead_lettered(error: FaceSearchError) -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    worker = worker_raising(error, registry)

    with pytest.raises(type(error)):
        worker._process_batch(UntouchedConsumer(), producer, [RECORD])

    assert producer.sent == []
    assert (worker.dead_lettered, worker.consumed) == (0, 0)
    assert registry.get_sample_value("facesearch_messages_dead_lettered_total", {}) is None


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

    def handler(key: bytes | None, value: bytes) -> list[Message]:
        return [(key, b"x" * 5000)]

    metrics = StreamMetrics(registry)
    worker = StreamWorker(
        "127.0.0.1:1", "in", "group", "out", handler, metrics=metrics, max_message_bytes=4096
    )
    worker._process_batch(UntouchedConsumer(), producer, [RECORD])

    [(topic, sent)] = producer.sent
    assert (topic, sent["value"]) == ("in.dlq", b"v")
    assert dict(sent["headers"])["reason"].startswith(b"too_large: its output of 5001 bytes")
    assert (worker.dead_lettered, worker.consumed) == (1, 1)


def test_a_stream_of_outputs_is_sent_as_it_is_made_and_a_too_large_one_ends_it() -> None:
    producer, registry = RecordingProducer(), CollectorRegistry()
    made: list[int] = []

    def handler(key: bytes | None, value: bytes) -> Iterator[Message]:
        for size in (10, 20, 5000, 30):
            made.append(size)
            assert len(producer.sent) == len(made) - 1  # each sent before the next is made
            yield key, b"x" * size

    metrics = StreamMetrics(registry)
    worker = StreamWorker(
        "127.0.0.1:1", "in", "group", "out", handler, metrics=metrics, max_message_bytes=4096
    )
    worker._process_batch(UntouchedConsumer(), producer, [RECORD])

    assert made == [10, 20, 5000]  # the stream was not asked for more
    assert [(topic, len(sent["value"])) for topic, sent in producer.sent] == [
        ("out", 10),
        ("out", 20),
        ("in.dlq", 1),
    ]
    assert dict(producer.sent[-1][1]["headers"])["reason"].startswith(b"too_large")
    assert (worker.dead_lettered, worker.consumed) == (1, 1)


class PausingConsumer:
    """Records the partitions a failing batch pauses (and where it seeks them back to)."""

    def __init__(self) -> None:
        self.paused: list[Any] = []

    def pause(self, partition: Any) -> None:
        self.paused.append(partition)

    def seek(self, partition: Any, offset: int) -> None:
        pass


def test_a_partition_failing_on_a_dependency_is_stalled_until_a_batch_of_it_succeeds() -> None:
    registry, producer, consumer = CollectorRegistry(), RecordingProducer(), PausingConsumer()
    down = [True]

    def handler(key: bytes | None, value: bytes) -> list[Message]:
        if down[0]:
            raise TransientError("Qdrant is down")
        return [(key, value)]

    worker = StreamWorker(
        "127.0.0.1:1",
        "in",
        "group",
        "out",
        handler,
        metrics=StreamMetrics(registry),
        max_retries=1,
        backoff_s=0.0,
    )
    told: list[bool] = []
    worker.on_stalled = told.append

    def stalled() -> float | None:
        return registry.get_sample_value("facesearch_stalled_partitions", {"topic": "in"})

    assert stalled() == 0

    worker._process_batch(consumer, producer, [RECORD])
    worker._process_batch(consumer, producer, [RECORD])  # still down: no news
    assert (consumer.paused, told, stalled()) == ([TopicPartition("in", 0)] * 2, [True], 1)
    assert producer.sent == []

    down[0] = False
    worker._process_batch(consumer, producer, [RECORD])
    assert (told, stalled(), len(producer.sent)) == ([True, False], 0, 1)


class IdleConsumer:
    """A consumer whose polls bring nothing while its partition's end lies at ``end``."""

    def __init__(self, position: int, end: int, worker: StreamWorker, polls: int = 1000) -> None:
        self.tp, self.at, self.end = TopicPartition("in", 0), position, end
        self.worker, self.polls = worker, polls

    def assignment(self) -> set[Any]:
        return {self.tp}

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.polls -= 1
        if self.polls <= 0:
            self.worker.stop()
        time.sleep(0.01)
        return {}

    def highwater(self, tp: Any) -> int:
        return self.end

    def position(self, tp: Any, timeout_ms: int | None = None) -> int:
        return self.at

    def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return {tp: self.end for tp in partitions}


@pytest.mark.parametrize(("position", "stuck"), [(8, True), (11, False)])
def test_a_consumer_that_fetches_nothing_while_records_wait_is_replaced(
    position: int, stuck: bool
) -> None:
    registry = CollectorRegistry()
    worker = StreamWorker(
        "127.0.0.1:1",
        "in",
        "group",
        "out",
        lambda k, v: [],
        metrics=StreamMetrics(registry),
        stuck_s=0.05,
    )
    consumer = IdleConsumer(position, 11, worker, polls=50)

    assert worker._loop(consumer, RecordingProducer()) is stuck

    restarts = registry.get_sample_value("facesearch_consumer_restarts_total", {"topic": "in"})
    assert (worker.restarts, restarts or 0.0) == (int(stuck), float(stuck))
    assert consumer.polls > 0 if stuck else consumer.polls <= 0  # stopped, not replaced


def test_the_lag_of_a_revoked_partition_is_no_longer_reported() -> None:
    registry = CollectorRegistry()
    worker = worker_raising(BadImageError("unused"), registry)
    worker.metrics.consumer_lag.labels("in", "2").set(5)
    worker.metrics.consumer_lag.labels("in", "3").set(1)

    worker._forget_lag({TopicPartition("in", 2), TopicPartition("in", 9)})

    lag = "facesearch_consumer_lag"
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "2"}) is None
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "3"}) == 1.0
