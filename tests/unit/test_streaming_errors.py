"""Which handler errors dead-letter a message and which end the worker (no broker needed: the
producer is a stand-in that records sends; the loop itself is tested on a real broker)."""

from types import SimpleNamespace
from typing import Any

import pytest

from facesearch.errors import BadImageError, ConfigError, FaceSearchError, ModelError, StoreError
from facesearch.streaming import Message, StreamWorker


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, topic: str, **kwargs: Any) -> object:
        self.sent.append((topic, kwargs))
        return object()


def worker_raising(error: FaceSearchError) -> StreamWorker:
    def handler(key: bytes | None, value: bytes) -> list[Message]:
        raise error

    return StreamWorker("127.0.0.1:1", "in", "group", "out", handler)


RECORD = SimpleNamespace(topic="in", partition=0, offset=7, key=b"k", value=b"v")


def test_a_bad_message_goes_to_the_dead_letter_topic() -> None:
    producer = RecordingProducer()
    worker = worker_raising(BadImageError("not an image"))

    assert worker._process(producer, RECORD) is True

    [(topic, sent)] = producer.sent
    assert topic == "in.dlq"
    assert (sent["key"], sent["value"]) == (b"k", b"v")
    assert dict(sent["headers"])["reason"] == b"bad_image: not an image"
    assert worker.dead_lettered == 1


@pytest.mark.parametrize("error", [StoreError("down"), ConfigError("unset"), ModelError("gone")])
def test_a_fault_of_the_service_is_raised_not_dead_lettered(error: FaceSearchError) -> None:
    producer = RecordingProducer()
    worker = worker_raising(error)

    with pytest.raises(type(error)):
        worker._process(producer, RECORD)

    assert producer.sent == []
    assert worker.dead_lettered == 0
