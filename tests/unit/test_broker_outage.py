"""A broker that does not answer, without the network: a stream worker waits for its
acknowledgements instead of ending (within bounds, and briefly once stopping), and the gateway
answers IndexImages with UNAVAILABLE instead of OK with an error per image; an image the broker
refuses for good is still one error result. (On the real broker: tests/integration/
test_faults.py.)"""

import io
import time
from typing import Any

import grpc
import pytest
from gateway_fakes import fake_backends, gateway_servicer
from kafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)
from PIL import Image
from prometheus_client import CollectorRegistry
from stream_fakes import P0, RECORD, RecordingProducer, ScriptedConsumer

from facesearch.errors import DeliveryError
from facesearch.metrics import StreamMetrics
from facesearch.proto.v1 import api_pb2
from facesearch.stream import worker as streaming
from facesearch.stream.worker import Handler, Message, StreamWorker
from facesearch_services.gateway.servicer import GatewayServicer

DEADLINE = {"FACESEARCH_GATEWAY_DEADLINE_SECONDS": "0.01"}


class SlowBroker(RecordingProducer):
    """A producer whose flush times out ``times`` times, then succeeds."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.flushes = 0
        self.acknowledged_at: int | None = None  # the flush that first succeeded

    def flush(self, timeout: float) -> None:
        self.flushes += 1
        if self.flushes <= self.times:
            time.sleep(0.001)
            raise KafkaTimeoutError("Timeout waiting for future")
        if self.acknowledged_at is None:
            self.acknowledged_at = self.flushes


def one_record() -> ScriptedConsumer:
    """A consumer whose first poll brings RECORD (offset 7) and whose next stops the worker."""
    return ScriptedConsumer([[RECORD]], position=8, end=8)


def echo(key: bytes | None, value: bytes) -> list[Message]:
    return [(key, value)]


def worker(
    producer: SlowBroker, consumer: ScriptedConsumer, handler: Handler = echo
) -> StreamWorker:
    metrics = StreamMetrics(CollectorRegistry())
    made = StreamWorker(
        "127.0.0.1:1",
        "in",
        "g",
        "out",
        handler,
        metrics=metrics,
        consumer_factory=lambda: consumer,
        producer_factory=lambda: producer,
    )
    consumer.stop = made.stop
    return made


def test_a_worker_waits_for_a_broker_that_comes_back() -> None:
    producer, consumer = SlowBroker(times=20), one_record()
    running = worker(producer, consumer)
    running.run()
    assert producer.acknowledged_at == 21
    assert (running.produced, consumer.committed) == (1, [{P0: 8}])


def test_a_stopping_worker_waits_the_flush_timeout_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "FLUSH_TIMEOUT_S", 0.05)
    consumer = one_record()

    def stopped_meanwhile(key: bytes | None, value: bytes) -> list[Message]:
        consumer.stop()  # as a stop signal during the batch
        return echo(key, value)

    stopping = worker(SlowBroker(times=10**9), consumer, stopped_meanwhile)
    begun = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        stopping.run()
    assert isinstance(raised.value.__cause__, KafkaTimeoutError)
    assert time.monotonic() - begun < 1.0
    assert consumer.committed == []


def test_a_running_worker_gives_up_after_the_delivery_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "DELIVERY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(streaming, "FLUSH_SLICE_S", 0.01)
    consumer = one_record()
    with pytest.raises(DeliveryError) as raised:
        worker(SlowBroker(times=10**9), consumer).run()
    assert isinstance(raised.value.__cause__, KafkaTimeoutError)
    assert consumer.committed == []


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> object:
        if self.error is not None:
            raise self.error
        return object()


class Producer:
    """Each send fails with ``on_send``, or its future with ``on_ack``."""

    def __init__(self, on_send: Exception | None = None, on_ack: Exception | None = None):
        self.on_send = on_send
        self.on_ack = on_ack

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        if self.on_send is not None:
            raise self.on_send
        return Future(self.on_ack)

    def flush(self, timeout: float) -> None:
        if self.on_ack is not None:
            raise KafkaTimeoutError("Timeout waiting for future")


def gateway(producer: Producer) -> GatewayServicer:
    return gateway_servicer(fake_backends(producer=producer), DEADLINE)


def request() -> api_pb2.IndexRequest:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return api_pb2.IndexRequest(data=buffer.getvalue(), path="a.png")


class Aborted(Exception):
    pass


class Context:
    code: grpc.StatusCode

    def time_remaining(self) -> float | None:
        return None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted


def index(producer: Producer) -> Any:
    context = Context()
    try:
        return gateway(producer).IndexImages(iter([request(), request()]), context)  # type: ignore[arg-type]
    except Aborted:
        return context


@pytest.mark.parametrize(
    "producer",
    [
        Producer(on_ack=KafkaTimeoutError("Timeout waiting for future")),
        Producer(on_send=KafkaTimeoutError("Failed to update metadata after 0.0 secs")),
    ],
    ids=["not acknowledged", "no metadata"],
)
def test_indexing_while_the_broker_is_down_is_unavailable(producer: Producer) -> None:
    answer = index(producer)
    assert isinstance(answer, Context)
    assert answer.code == grpc.StatusCode.UNAVAILABLE
    assert answer.details.startswith("transient: the Kafka broker did not take the images")


def test_an_image_the_broker_refuses_for_good_is_one_error_result() -> None:
    answer = index(Producer(on_send=MessageSizeTooLargeError("too large")))
    assert [r.error.split(":")[0] for r in answer.results] == ["transient", "transient"]
