"""StreamWorker against a real Kafka broker: outputs in order and committed, poison messages
dead-lettered with their origin, transient failures retried then paused without skipping,
restarts resuming from the committed offset, a clean stop under load; the same of
micro-batches across messages; and a 50 MiB message through the loop."""

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from facesearch.broker import Broker, free_port, jars_ready
from facesearch.errors import BadImageError
from facesearch.metrics import StreamMetrics
from facesearch.streaming import (
    BatchHandler,
    Message,
    Outcome,
    StreamWorker,
    TransientError,
    dlq_topic,
)

DEADLINE_S = 20.0
JOIN_S = 10.0
FAST = {"poll_timeout_ms": 100, "backoff_s": 0.01}
BATCHED = {"max_batch": 8, "max_wait_s": 0.2}
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the module, on free ports. Without Java or the jars the tests fail:
    scripts/setup, part of the test command, provides both."""
    if shutil.which("java") is None or not jars_ready():
        pytest.fail("java or the Kafka jars are missing: run scripts/setup")
    with Broker(
        tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port()
    ) as b:
        yield b


@pytest.fixture
def topics(broker: Broker) -> tuple[str, str]:
    """Fresh input and output topics (and the input's dead-letter topic), 3 partitions each."""
    base = f"stream-{uuid.uuid4().hex[:12]}"
    names = (f"{base}.in", f"{base}.out")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        new = [
            NewTopic(n, num_partitions=3, replication_factor=1)
            for n in (*names, dlq_topic(names[0]))
        ]
        admin.create_topics(new)
    finally:
        admin.close()
    return names


def transform(key: bytes | None, value: bytes) -> list[Message]:
    return [(key, b"out:" + value)]


def produce(broker: Broker, topic: str, messages: list[Message], **config: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **config)
    try:
        for key, value in messages:
            producer.send(topic, value=value, key=key)
        producer.flush(timeout=DEADLINE_S)
    finally:
        producer.close()


def numbered(start: int, stop: int, keys: int = 5) -> list[Message]:
    return [(f"k{i % keys}".encode(), f"m{i}".encode()) for i in range(start, stop)]


def read(
    broker: Broker,
    topic: str,
    count: int,
    timeout: float = DEADLINE_S,
    drain: bool = True,
    **config: Any,
) -> list[Any]:
    """Every record of ``topic`` from the start, once at least ``count`` came and (with
    ``drain``) all present at that moment were read, or the deadline passed. Without ``drain``
    for a topic still being written to, whose end keeps moving."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, **config)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            ends = consumer.end_offsets(parts)
            drained = not drain or all(consumer.position(p) >= ends[p] for p in parts)
            if len(records) >= count and drained:
                break
        return records
    finally:
        consumer.close()


def committed(broker: Broker, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset for each partition of ``topic`` (0 where none)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {p.partition: consumer.committed(p) or 0 for p in parts}
    finally:
        consumer.close(autocommit=False)


def end_offsets(broker: Broker, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {p.partition: offset for p, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


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


def worker(broker: Broker, topics: tuple[str, str], handler: Any, **options: Any) -> StreamWorker:
    source, sink = topics
    group = f"group-{source}"
    return StreamWorker(broker.bootstrap, source, group, sink, handler, **{**FAST, **options})


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
    broker: Broker, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 50)
    produce(broker, topics[0], sent)
    registry = CollectorRegistry()
    with running(worker(broker, topics, transform, metrics=StreamMetrics(registry))) as w:
        out = read(broker, topics[1], 50)
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert (w.consumed, w.produced, w.dead_lettered, w.retries) == (50, 50, 0, 0)
    assert committed(broker, w.group_id, topics[0]) == end_offsets(broker, topics[0])
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


def test_poison_messages_go_to_the_dead_letter_topic(
    broker: Broker, topics: tuple[str, str]
) -> None:
    bad = [(b"k0", b"bad0"), (b"k0", b"bad1")]
    sent = [bad[0], *numbered(0, 5, keys=1), bad[1], *numbered(5, 10, keys=1)]
    produce(broker, topics[0], sent)
    with running(worker(broker, topics, refuse_bad)) as w:
        out = read(broker, topics[1], 10)
        dead = read(broker, dlq_topic(topics[0]), 2)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    assert [(r.key, r.value) for r in dead] == bad
    source = read(broker, topics[0], 12)
    for letter, original in zip(dead, [source[0], source[6]], strict=True):
        headers = dict(letter.headers)
        assert headers["reason"] == f"bad_image: not an image: {letter.value.decode()}".encode()
        assert headers["original_topic"] == topics[0].encode()
        assert headers["original_partition"] == str(original.partition).encode()
        assert headers["original_offset"] == str(original.offset).encode()
    assert (w.consumed, w.produced, w.dead_lettered) == (12, 10, 2)
    assert committed(broker, w.group_id, topics[0]) == end_offsets(broker, topics[0])


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
    broker: Broker, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 10, keys=1)
    produce(broker, topics[0], sent)
    handler, calls = flaky({b"m4": 2})
    with running(worker(broker, topics, handler)) as w:
        out = read(broker, topics[1], 10)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    assert calls[b"m4"] == 3
    assert (w.retries, w.pauses, w.produced) == (2, 0, 10)


def test_a_new_worker_resumes_from_the_committed_offset(
    broker: Broker, topics: tuple[str, str]
) -> None:
    produce(broker, topics[0], numbered(0, 20))
    with running(worker(broker, topics, transform)) as first:
        assert len(read(broker, topics[1], 20)) == 20
    assert first.consumed == 20
    produce(broker, topics[0], numbered(20, 30))
    seen: list[bytes] = []

    def record_and_transform(key: bytes | None, value: bytes) -> list[Message]:
        seen.append(value)
        return transform(key, value)

    with running(worker(broker, topics, record_and_transform)) as second:
        out = read(broker, topics[1], 30)
    assert sorted(seen) == sorted(value for _, value in numbered(20, 30))
    assert second.consumed == 10
    assert len(out) == 30
    assert committed(broker, second.group_id, topics[0]) == end_offsets(broker, topics[0])


def test_a_long_transient_failure_pauses_then_resumes_without_skipping(
    broker: Broker, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 8, keys=1)
    produce(broker, topics[0], sent)
    # max_retries=1: two calls per round; rounds 1 and 2 fail, round 3 succeeds on its retry.
    handler, calls = flaky({b"m3": 5})
    started = time.monotonic()
    with running(worker(broker, topics, handler, max_retries=1, pause_s=0.5)) as w:
        out = read(broker, topics[1], 8)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(8)]
    assert calls[b"m3"] == 6
    assert all(calls[value] == 1 for _, value in sent if value != b"m3")
    assert (w.pauses, w.retries, w.consumed) == (2, 3, 8)
    assert time.monotonic() - started >= 1.0  # two pauses of 0.5 s


def test_stop_under_load_returns_quickly_with_consistent_offsets(
    broker: Broker, topics: tuple[str, str]
) -> None:
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
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
        w = worker(broker, topics, transform)
        with running(w):
            assert len(read(broker, topics[1], 200, drain=False)) >= 200
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5.0
    finally:
        feeding.clear()
        feeder.join(JOIN_S)
    offsets = committed(broker, w.group_id, topics[0])
    source = read(broker, topics[0], sum(end_offsets(broker, topics[0]).values()))
    outputs = {r.value for r in read(broker, topics[1], w.produced)}
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
    broker: Broker, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 50)
    produce(broker, topics[0], sent)
    sizes: list[int] = []
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with running(
        worker(
            broker, topics, None, batch_handler=transform_batch(sizes), **BATCHED, metrics=metrics
        )
    ) as w:
        read(broker, topics[1], 50)
    out = read(broker, topics[1], 50)
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert (w.consumed, w.produced, w.dead_lettered, len(out)) == (50, 50, 0, 50)
    assert committed(broker, w.group_id, topics[0]) == end_offsets(broker, topics[0])
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
    broker: Broker, topics: tuple[str, str]
) -> None:
    bad = (b"k0", b"bad0")
    sent = [*numbered(0, 3, keys=1), bad, *numbered(3, 10, keys=1)]
    produce(broker, topics[0], sent)
    batches: list[list[bytes]] = []

    def refuse_bad_batch(messages: list[Message]) -> list[Outcome]:
        batches.append([value for _, value in messages])
        return [
            BadImageError("not an image") if value.startswith(b"bad") else transform(key, value)
            for key, value in messages
        ]

    with running(worker(broker, topics, None, batch_handler=refuse_bad_batch, **BATCHED)) as w:
        read(broker, topics[1], 10)
        read(broker, dlq_topic(topics[0]), 1)
    out, dead = read(broker, topics[1], 10), read(broker, dlq_topic(topics[0]), 1)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(10)]
    [letter] = dead
    assert (letter.key, letter.value) == bad
    assert dict(letter.headers)["original_offset"] == b"3"
    assert dict(letter.headers)["reason"] == b"bad_image: not an image"
    assert any(bad[1] in values and len(values) > 1 for values in batches)
    assert (w.consumed, w.produced, w.dead_lettered) == (11, 10, 1)
    assert committed(broker, w.group_id, topics[0]) == end_offsets(broker, topics[0])


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
    broker: Broker, topics: tuple[str, str]
) -> None:
    produce(broker, topics[0], numbered(0, 20, keys=1))
    handler, calls = flaky_batch(b"m4", 2)
    with running(worker(broker, topics, None, batch_handler=handler, **BATCHED)) as w:
        read(broker, topics[1], 20)
    out = read(broker, topics[1], 20)
    assert [r.value for r in out] == [f"out:m{i}".encode() for i in range(20)]
    with_m4 = [call for call in calls if b"m4" in call]
    assert len(with_m4) == 3 and with_m4[0] == with_m4[1] == with_m4[2]
    assert len(with_m4[0]) > 1
    assert (w.retries, w.pauses, w.produced, w.consumed) == (2, 0, 20, 20)


def test_a_batch_failing_for_long_pauses_its_partitions_and_skips_nothing(
    broker: Broker, topics: tuple[str, str]
) -> None:
    sent = numbered(0, 30)
    produce(broker, topics[0], sent)
    # max_retries=1: two calls per round; rounds 1 and 2 fail, round 3 succeeds on its retry.
    handler, calls = flaky_batch(b"m7", 5)
    options = {**BATCHED, "max_retries": 1, "pause_s": 0.3}
    with running(worker(broker, topics, None, batch_handler=handler, **options)) as w:
        read(broker, topics[1], 30)
    out = read(broker, topics[1], 30)
    assert len(out) == 30
    assert values_by_key(out) == values_by_key_of(transform_all(sent))
    assert sum(b"m7" in call for call in calls) == 6
    assert w.pauses >= 2 and w.retries == 3 and w.consumed == 30
    assert committed(broker, w.group_id, topics[0]) == end_offsets(broker, topics[0])


def test_a_50_mib_message_travels_through_the_worker(
    broker: Broker, topics: tuple[str, str]
) -> None:
    image = bytes(range(256)) * (50 * MIB // 256)
    produce(broker, topics[0], [(b"big", image)], max_request_size=64 * MIB)
    # Without the crc32c package kafka-python checksums in pure Python: seconds per 50 MiB.
    with running(worker(broker, topics, transform)) as w:
        [out] = read(broker, topics[1], 1, timeout=3 * DEADLINE_S, check_crcs=False)
    assert out.value == b"out:" + image
    assert (w.consumed, w.produced, w.dead_lettered) == (1, 1, 0)
