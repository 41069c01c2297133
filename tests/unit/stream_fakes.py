"""Stand-ins for the Kafka clients a ``StreamWorker`` is handed through its factories, shared
by the unit tests of the worker (importable because pyproject puts tests/unit on pytest's
pythonpath). Partition 0 of topic "in" is the only one."""

from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from kafka.structs import TopicPartition

P0 = TopicPartition("in", 0)
RECORD = SimpleNamespace(topic="in", partition=0, offset=7, key=b"k", value=b"v")


class Acknowledged:
    """A send's future, acknowledged: its metadata names the topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def get(self, timeout: float) -> "Acknowledged":
        return self


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, topic: str, **kwargs: Any) -> Acknowledged:
        self.sent.append((topic, kwargs))
        return Acknowledged(topic)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


class ScriptedConsumer:
    """A member assigned partition 0 of "in", its end at ``end`` and its position at
    ``position``: each poll hands over the next records ``polls`` yields (a generator can look
    at the worker between polls), and the poll after the last stops the worker. It records
    what the worker asks of it."""

    def __init__(self, polls: Iterable[list[Any]], position: int = 8, end: int = 8) -> None:
        self.polls, self.at, self.end = iter(polls), position, end
        self.stop: Callable[[], None] = lambda: None  # the worker's, once it is handed over
        self.listener: Any = None  # given when the worker subscribes
        self.polled = 0
        self.paused: list[Any] = []
        self.seeks: list[tuple[Any, int]] = []
        self.committed: list[dict[Any, int]] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == ["in"]
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        records = next(self.polls, None)
        if records is None:
            self.stop()
            return {}
        self.polled += 1
        return {P0: records} if records else {}

    def assignment(self) -> set[Any]:
        return {P0}

    def highwater(self, partition: Any) -> int:
        return self.end

    def position(self, partition: Any, timeout_ms: int | None = None) -> int:
        return self.at

    def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return {partition: self.end for partition in partitions}

    def pause(self, partition: Any) -> None:
        self.paused.append(partition)

    def resume(self, *partitions: Any) -> None:
        pass

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset))

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.committed.append({tp: meta.offset for tp, meta in offsets.items()})

    def close(self, autocommit: bool, timeout_ms: int | None = None) -> None:
        assert not autocommit
