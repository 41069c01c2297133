"""Micro-batches of StreamWorker without a broker: the per-record adapter, when a batch is
due, what a failed batch pauses and drops, what a batch handler may return, and the lag and
batch-size metrics (stand-ins for the consumer and producer record what the worker asks of
them; the loop on a real broker is in tests/integration/test_streaming.py)."""

import time
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from prometheus_client import CollectorRegistry

from facesearch.errors import BadImageError, FaceSearchError, StoreError, TransientError
from facesearch.metrics import StreamMetrics
from facesearch.stream.worker import (
    BatchHandler,
    Message,
    Outcome,
    StreamWorker,
    _RewindRevoked,
    batched,
)

P0, P1, P2 = (TopicPartition("in", p) for p in range(3))


def record(partition: int, offset: int) -> SimpleNamespace:
    value = f"p{partition}@{offset}".encode()
    return SimpleNamespace(topic="in", partition=partition, offset=offset, key=b"k", value=value)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, **kwargs: Any) -> object:
        self.sent.append((topic, kwargs["value"]))
        return object()


class Consumer:
    def __init__(self, highwater: dict[Any, int | None] | None = None) -> None:
        self.highwaters = highwater or {}
        self.paused: list[Any] = []
        self.seeks: dict[Any, int] = {}

    def pause(self, *partitions: Any) -> None:
        self.paused.extend(partitions)

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks[partition] = offset

    def assignment(self) -> set[Any]:
        return set(self.highwaters)

    def highwater(self, partition: Any) -> int | None:
        return self.highwaters[partition]

    def position(self, partition: Any, timeout_ms: int | None = None) -> int:
        return 4


def worker(handle: BatchHandler, registry: CollectorRegistry, **options: Any) -> StreamWorker:
    metrics = StreamMetrics(registry)
    options = {"max_retries": 0, "backoff_s": 0.0, **options}
    return StreamWorker(
        "127.0.0.1:1", "in", "g", "out", batch_handler=handle, metrics=metrics, **options
    )


def echo(messages: list[Message]) -> list[Outcome]:
    return [[(key, b"out:" + value)] for key, value in messages]


def test_the_adapter_turns_a_poison_error_into_that_records_outcome() -> None:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        if value == b"bad":
            raise BadImageError("not an image")
        return [(key, value.upper())]

    outcomes = batched(handler)([(b"a", b"x"), (b"b", b"bad"), (b"c", b"y")])

    assert outcomes[0] == [(b"a", b"X")] and outcomes[2] == [(b"c", b"Y")]
    assert isinstance(outcomes[1], BadImageError)


@pytest.mark.parametrize("error", [TransientError("later"), StoreError("down")])
def test_the_adapter_lets_transient_and_service_faults_fail_the_batch(
    error: FaceSearchError,
) -> None:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        raise error

    with pytest.raises(type(error)):
        batched(handler)([(b"a", b"x")])


def test_a_worker_takes_exactly_one_kind_of_handler() -> None:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        return []

    with pytest.raises(TypeError):
        StreamWorker("127.0.0.1:1", "in", "g", "out")
    with pytest.raises(TypeError):
        StreamWorker("127.0.0.1:1", "in", "g", "out", handler, batch_handler=echo)
    with pytest.raises(ValueError):
        StreamWorker("127.0.0.1:1", "in", "g", "out", handler, max_batch=0)


def test_a_batch_is_due_when_full_or_when_its_first_record_waited_long_enough() -> None:
    w = worker(echo, CollectorRegistry(), max_batch=3, max_wait_s=0.5, poll_timeout_ms=1000)
    now = time.monotonic()
    assert not w._batch_ready() and w._poll_timeout_ms() == 1000

    w._buffer = [(now, record(0, 0)), (now, record(0, 1))]
    assert not w._batch_ready()
    assert 400 <= w._poll_timeout_ms() <= 500  # the poll ends when the wait does

    w._buffer.append((now, record(1, 0)))
    assert w._batch_ready()

    w._buffer = [(now - 0.6, record(0, 0))]
    assert w._batch_ready() and w._poll_timeout_ms() == 0


def test_a_batch_failing_for_good_pauses_its_partitions_at_their_first_record() -> None:
    def failing(messages: list[Message]) -> list[Outcome]:
        raise TransientError("down")

    registry, consumer, producer = CollectorRegistry(), Consumer(), Producer()
    w = worker(failing, registry, max_batch=3)
    later = [record(0, 6), record(1, 3), record(2, 9)]
    w._buffer = [(0.0, r) for r in later]

    w._process_batch(consumer, producer, [record(0, 5), record(1, 2), record(0, 6)])

    assert consumer.seeks == {P0: 5, P1: 2}
    assert set(consumer.paused) == {P0, P1} and w.pauses == 2
    # Buffered records of the paused partitions come again after the resume; others stay.
    assert [r for _, r in w._buffer] == [later[2]]
    assert producer.sent == [] and w.consumed == 0 and w._done == {}


def test_outcomes_are_sent_in_order_and_the_batch_is_measured() -> None:
    def some_poison(messages: list[Message]) -> list[Outcome]:
        return [BadImageError("no") if v.startswith(b"p1") else [(k, v)] for k, v in messages]

    registry, producer = CollectorRegistry(), Producer()
    w = worker(some_poison, registry, max_batch=3)
    batch = [record(0, 5), record(1, 2), record(0, 6)]

    w._process_batch(Consumer(), producer, batch)

    assert producer.sent == [("out", b"p0@5"), ("in.dlq", b"p1@2"), ("out", b"p0@6")]
    assert w._done == {P0: 7, P1: 3}
    assert (w.consumed, w.dead_lettered) == (3, 1)
    sample = registry.get_sample_value
    assert sample("facesearch_batch_size_sum", {"topic": "in"}) == 3.0
    assert sample("facesearch_batch_size_count", {"topic": "in"}) == 1.0
    assert sample("facesearch_processing_seconds_count", {"topic": "in"}) == 1.0
    assert sample("facesearch_messages_consumed_total", {"topic": "in"}) == 3.0


@pytest.mark.parametrize(
    ("outcomes", "error"),
    [([[]], ValueError), ([StoreError("down"), []], StoreError)],
)
def test_a_wrong_count_or_a_service_fault_among_the_outcomes_ends_the_worker(
    outcomes: list[Outcome], error: type[Exception]
) -> None:
    producer = Producer()
    w = worker(lambda messages: outcomes, CollectorRegistry())

    with pytest.raises(error):
        w._process_batch(Consumer(), producer, [record(0, 0), record(0, 1)])

    assert producer.sent == [] and w.consumed == 0


def test_a_transient_fault_among_the_outcomes_retries_the_batch() -> None:
    calls: list[int] = []

    def once_transient(messages: list[Message]) -> list[Outcome]:
        calls.append(len(messages))
        first: Outcome = TransientError("later") if len(calls) == 1 else []
        return [first, []]

    w = worker(once_transient, CollectorRegistry(), max_retries=1)
    w._process_batch(Consumer(), Producer(), [record(0, 0), record(0, 1)])

    assert calls == [2, 2] and w.retries == 1 and w.consumed == 2


def test_the_lag_of_each_partition_whose_end_is_known_is_recorded() -> None:
    registry = CollectorRegistry()
    w = worker(echo, registry)

    w._record_lag(Consumer({P0: 10, P1: None}))

    lag = "facesearch_consumer_lag"
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "0"}) == 6.0
    assert registry.get_sample_value(lag, {"topic": "in", "partition": "1"}) is None


def test_a_revoked_partition_is_rewound_to_its_first_buffered_record() -> None:
    # kafka-python keeps the position of a partition that stays assigned across a rebalance:
    # dropping its buffered records without a seek would skip them.
    consumer = Consumer()
    w = worker(echo, CollectorRegistry())
    w._buffer = [(0.0, record(0, 3)), (0.0, record(2, 9)), (0.0, record(0, 4))]

    _RewindRevoked(w, consumer).on_partitions_revoked({P0, P1})

    assert consumer.seeks == {P0: 3}
    assert [r for _, r in w._buffer] == [record(2, 9)]
