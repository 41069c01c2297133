"""StreamWorker against a real Kafka broker: outputs in order and committed, poison messages
dead-lettered with their origin, transient failures retried then paused without skipping,
restarts resuming from the committed offset, a clean stop under load; the same of
micro-batches across messages; and a 50 MiB message through the loop."""

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from facesearch.errors import BadImageError, TransientError
from facesearch.metrics import StreamMetrics
from facesearch.stream.worker import (
    BatchHandler,
    Message,
    Outcome,
    StreamWorker,
    dlq_topic,
    kafka_consumer_factory,
)

BIG_READ_S = 60.0
JOIN_S = 10.0
FAST = {"poll_timeout_ms": 100, "backoff_s": 0.01}
BATCHED = {"max_batch": 8, "max_wait_s": 0.2}
MIB = 1024 * 1024


@pytest.fixture
def topics(kafka: Any) -> tuple[str, str]:
    """Fresh input and output topics (and the input's dead-letter topic), 3 partitions each,
    on the session's broker."""
    base = f"stream-{uuid.uuid4().hex[:12]}"
    names = (f"{base}.in", f"{base}.out")
    kafka.new_topics(*names, dlq_topic(names[0]))
    return names


def transform(key: bytes | None, value: bytes) -> list[Message]:
    return [(key, b"out:" + value)]


def numbered(start: int, stop: int, keys: int = 5) -> list[Message]:
    return [(f"k{i % keys}".encode(), f"m{i}".encode()) for i in range(start, stop)]


@contextmanager
def running(worker: StreamWorker) -> Iterator[StreamWorker]:
    """Run ``worker`` in a thread; on exit stop it, join it, and re-raise what it raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(JOIN_S)
    assert not thread.is_alive(), "the worker did not stop"
    if errors:
        raise errors[0]


def group_of(topics: tuple[str, str]) -> str:
    return f"group-{topics[0]}"


def worker(kafka: Any, topics: tuple[str, str], handler: Any, **options: Any) -> StreamWorker:
    source, sink = topics
    group = group_of(topics)
    return StreamWorker(kafka.bootstrap, source, group, sink, handler, **{**FAST, **options})


def transform_all(messages: list[Message]) -> list[Message]:
    return [out for key, value in messages for out in transform(key, value)]


def values_by_key_of(messages: list[Message]) -> dict[bytes, list[bytes]]:
    result: dict[bytes, list[bytes]] = {}
    for key, value in messages:
        assert key is not None
        result.setdefault(key, []).append(value)
    return result


def values_by_key(records: list[Any]) -> dict[bytes, list[bytes]]:
    result: dict[bytes, list[bytes]] = {}
    for record in records:
        result.setdefault(record.key, []).append(record.value)
    return result


def test_every_message_is_transformed_in_order_and_committed(
    kafka: Any, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 50)
    kafka.produce(topics[0], sent)
    registry = CollectorRegistry()
    with running(worker(kafka, topics, transform, metrics=StreamMetrics(registry))) as w:
        out = kafka.read(topics[1], 50)
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert (w.consumed, w.produced, w.dead_lettered, w.retries) == (50, 50, 0, 0)
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])
    exported = {
        "facesearch_messages_consumed_total": {"topic": topics[0]},
        "facesearch_messages_produced_total": {"topic": topics[1]},
        "facesearch_processing_seconds_count": {"topic": topics[0]},
    }
    assert {name: registry.get_sample_value(name, labels) for name, labels in exported.items()} == {
        name: 50.0 for name in exported
    }


def refuse_bad(key: bytes | None, value: bytes) -> list[Message]:
    if value.startswith(b"bad"):
        raise BadImageError(f"not an image: {value.decode()}")
    return transform(key, value)


def test_poison_messages_go_to_the_dead_letter_topic(kafka: Any, topics: tuple[str, str]) -> None:
    bad = [(b"k0", b"bad0"), (b"k0", b"bad1")]
    sent = [bad[0], *numbered(0, 5, keys=1), bad[1], *numbered(5, 10, keys=1)]
    kafka.produce(topics[0], sent)
    with running(worker(kafka, topics, refuse_bad)) as w:
        out = kafka.read(topics[1], 10)
        dead = kafka.read(dlq_topic(topics[0]), 2)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    assert [(r.key, r.value) for r in dead] == bad
    source = kafka.read(topics[0], 12)
    for letter, original in zip(dead, [source[0], source[6]], strict=True):
        headers = dict(letter.headers)
        assert headers["reason"] == f"bad_image: not an image: {letter.value.decode()}".encode()
        assert headers["original_topic"] == topics[0].encode()
        assert headers["original_partition"] == str(original.partition).encode()
        assert headers["original_offset"] == str(original.offset).encode()
    assert (w.consumed, w.produced, w.dead_lettered) == (12, 10, 2)
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])


def flaky(failures: dict[bytes, int]) -> tuple[Any, dict[bytes, int]]:
    """A handler that raises TransientError for a value as many times as ``failures`` says,
    then transforms it; and the count of calls by value."""
    calls: dict[bytes, int] = {}

    def handle(key: bytes | None, value: bytes) -> list[Message]:
        calls[value] = calls.get(value, 0) + 1
        if calls[value] <= failures.get(value, 0):
            raise TransientError(f"try {calls[value]} of {value.decode()} failed")
        return transform(key, value)

    return handle, calls


def test_a_transient_failure_is_retried_and_its_output_appears_once(
    kafka: Any, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 10, keys=1)
    kafka.produce(topics[0], sent)
    handler, calls = flaky({b"m4": 2})
    with running(worker(kafka, topics, handler)) as w:
        out = kafka.read(topics[1], 10)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    assert calls[b"m4"] == 3
    assert (w.retries, w.pauses, w.produced) == (2, 0, 10)


def test_a_new_worker_resumes_from_the_committed_offset(
    kafka: Any, topics: tuple[str, str]
) -> None:
    kafka.produce(topics[0], numbered(0, 20))
    with running(worker(kafka, topics, transform)) as first:
        assert len(kafka.read(topics[1], 20)) == 20
    assert first.consumed == 20
    kafka.produce(topics[0], numbered(20, 30))
    seen: list[bytes] = []

    def record_and_transform(key: bytes | None, value: bytes) -> list[Message]:
        seen.append(value)
        return transform(key, value)

    with running(worker(kafka, topics, record_and_transform)) as second:
        out = kafka.read(topics[1], 30)
    assert sorted(seen) == sorted(value for _, value in numbered(20, 30))
    assert second.consumed == 10
    assert len(out) == 30
    assert kafka.committed(second.group_id, topics[0]) == kafka.end_offsets(topics[0])


def test_a_long_transient_failure_pauses_then_resumes_without_skipping(
    kafka: Any, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 8, keys=1)
    kafka.produce(topics[0], sent)
    # max_retries=1: two calls per round; rounds 1 and 2 fail, round 3 succeeds on its retry.
    handler, calls = flaky({b"m3": 5})
    started = time.monotonic()
    with running(worker(kafka, topics, handler, max_retries=1, pause_s=0.5)) as w:
        out = kafka.read(topics[1], 8)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(8)]
    assert calls[b"m3"] == 6
    assert all(calls[value] == 1 for _, value in sent if value != b"m3")
    assert (w.pauses, w.retries, w.consumed) == (2, 3, 8)
    assert time.monotonic() - started >= 1.0  # two pauses of 0.5 s


def test_stop_under_load_returns_quickly_with_consistent_offsets(
    kafka: Any, topics: tuple[str, str]
) -> None:
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
        try:
            i = 0
            while feeding.is_set():
                producer.send(topics[0], key=f"k{i % 5}".encode(), value=f"m{i}".encode())
                i += 1
                time.sleep(0.002)
        finally:
            producer.close(timeout=JOIN_S)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        w = worker(kafka, topics, transform)
        with running(w):
            assert len(kafka.read(topics[1], 200, drain=False)) >= 200
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5.0
    finally:
        feeding.clear()
        feeder.join(JOIN_S)
    offsets = kafka.committed(w.group_id, topics[0])
    source = kafka.read(topics[0], sum(kafka.end_offsets(topics[0]).values()))
    outputs = {r.value for r in kafka.read(topics[1], w.produced)}
    done = [r for r in source if r.offset < offsets[r.partition]]
    assert len(done) == w.consumed >= 200
    assert all(b"out:" + r.value in outputs for r in done)


def transform_batch(sizes: list[int]) -> BatchHandler:
    """A batch handler doing ``transform`` to each record; it notes each batch's size."""

    def handle(messages: list[Message]) -> list[Outcome]:
        sizes.append(len(messages))
        return [transform(key, value) for key, value in messages]

    return handle


def test_a_batch_worker_transforms_everything_in_order_and_commits(
    kafka: Any, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 50)
    kafka.produce(topics[0], sent)
    sizes: list[int] = []
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with running(
        worker(
            kafka, topics, None, batch_handler=transform_batch(sizes), **BATCHED, metrics=metrics
        )
    ) as w:
        kafka.read(topics[1], 50)
    out = kafka.read(topics[1], 50)
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert (w.consumed, w.produced, w.dead_lettered, len(out)) == (50, 50, 0, 50)
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])
    assert sum(sizes) == 50 and max(sizes) == 8 and len(sizes) < 25
    sample = registry.get_sample_value
    assert sample("facesearch_batch_size_count", {"topic": topics[0]}) == len(sizes)
    assert sample("facesearch_batch_size_sum", {"topic": topics[0]}) == 50
    assert sample("facesearch_processing_seconds_count", {"topic": topics[0]}) == len(sizes)
    lags = [
        sample("facesearch_consumer_lag", {"topic": topics[0], "partition": str(p)})
        for p in range(3)
    ]
    assert set(lags) - {None} == {0.0}  # every record of a partition fetched was consumed


def test_a_poison_record_in_a_batch_is_dead_lettered_alone(
    kafka: Any, topics: tuple[str, str]
) -> None:
    bad = (b"k0", b"bad0")
    sent = [*numbered(0, 3, keys=1), bad, *numbered(3, 10, keys=1)]
    kafka.produce(topics[0], sent)
    batches: list[list[bytes]] = []

    def refuse_bad_batch(messages: list[Message]) -> list[Outcome]:
        batches.append([value for _, value in messages])
        return [
            BadImageError("not an image") if value.startswith(b"bad") else transform(key, value)
            for key, value in messages
        ]

    with running(worker(kafka, topics, None, batch_handler=refuse_bad_batch, **BATCHED)) as w:
        kafka.read(topics[1], 10)
        kafka.read(dlq_topic(topics[0]), 1)
    out, dead = kafka.read(topics[1], 10), kafka.read(dlq_topic(topics[0]), 1)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    [letter] = dead
    assert (letter.key, letter.value) == bad
    assert dict(letter.headers)["original_offset"] == b"3"
    assert dict(letter.headers)["reason"] == b"bad_image: not an image"
    assert any(bad[1] in values and len(values) > 1 for values in batches)
    assert (w.consumed, w.produced, w.dead_lettered) == (11, 10, 1)
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])


def flaky_batch(failing: bytes, failures: int) -> tuple[BatchHandler, list[list[bytes]]]:
    """A batch handler that raises TransientError for the first ``failures`` batches holding
    ``failing``, else transforms; and the values of each batch it was called with."""
    calls: list[list[bytes]] = []

    def handle(messages: list[Message]) -> list[Outcome]:
        values = [value for _, value in messages]
        calls.append(values)
        if failing in values and sum(failing in call for call in calls) <= failures:
            raise TransientError(f"a batch with {failing.decode()} failed")
        return [transform(key, value) for key, value in messages]

    return handle, calls


def test_a_transient_failure_of_a_batch_retries_it_and_each_output_appears_once(
    kafka: Any, topics: tuple[str, str]
) -> None:
    kafka.produce(topics[0], numbered(0, 20, keys=1))
    handler, calls = flaky_batch(b"m4", 2)
    with running(worker(kafka, topics, None, batch_handler=handler, **BATCHED)) as w:
        kafka.read(topics[1], 20)
    out = kafka.read(topics[1], 20)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(20)]
    with_m4 = [call for call in calls if b"m4" in call]
    assert len(with_m4) == 3 and with_m4[0] == with_m4[1] == with_m4[2]
    assert len(with_m4[0]) > 1
    assert (w.retries, w.pauses, w.produced, w.consumed) == (2, 0, 20, 20)


def test_a_batch_failing_for_long_pauses_its_partitions_and_skips_nothing(
    kafka: Any, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 30)
    kafka.produce(topics[0], sent)
    # max_retries=1: two calls per round; rounds 1 and 2 fail, round 3 succeeds on its retry.
    handler, calls = flaky_batch(b"m7", 5)
    options = {**BATCHED, "max_retries": 1, "pause_s": 0.3}
    with running(worker(kafka, topics, None, batch_handler=handler, **options)) as w:
        kafka.read(topics[1], 30)
    out = kafka.read(topics[1], 30)
    assert len(out) == 30
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert sum(b"m7" in call for call in calls) == 6
    assert w.pauses >= 2 and w.retries == 3 and w.consumed == 30
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])


def test_a_50_mib_message_travels_through_the_worker(kafka: Any, topics: tuple[str, str]) -> None:
    image = bytes(range(256)) * (50 * MIB // 256)
    kafka.produce(topics[0], [(b"big", image)])
    # The record checksums are checked, in C by the crc32c package (pure Python: seconds).
    with running(worker(kafka, topics, transform)) as w:
        [out] = kafka.read(topics[1], 1, timeout=BIG_READ_S)
    assert out.value == b"out:" + image
    assert (w.consumed, w.produced, w.dead_lettered) == (1, 1, 0)


def test_a_consumer_whose_fetches_bring_nothing_is_replaced_and_nothing_is_lost(
    kafka: Any, topics: tuple[str, str]
) -> None:
    """kafka-python 3.0.12 was seen to stop delivering a partition's records to a consumer;
    simulated here: the polls of the first consumer the real factory makes hand nothing over
    (and keep its position), so records wait past its position until the worker replaces it."""
    sent = numbered(0, 6, keys=1)
    kafka.produce(topics[0], sent)
    made: list[Any] = []
    new_consumer = kafka_consumer_factory(kafka.bootstrap, group_of(topics))

    def consumer() -> Any:
        made.append(created := new_consumer())
        if len(made) == 1:
            poll = created.poll

            def deaf(*args: Any, **kwargs: Any) -> dict[Any, list[Any]]:
                for partition, records in poll(*args, **kwargs).items():
                    created.seek(partition, records[0].offset)  # as if never fetched
                return {}

            created.poll = deaf
        return created

    w = worker(kafka, topics, transform, stuck_s=1.0, consumer_factory=consumer)
    with running(w):
        out = kafka.read(topics[1], len(sent))
    assert sorted(r.value for r in out) == sorted(b"out:" + v for _, v in sent)
    assert (len(made), w.restarts, w.consumed) == (2, 1, len(sent))
    assert kafka.committed(w.group_id, topics[0]) == kafka.end_offsets(topics[0])
