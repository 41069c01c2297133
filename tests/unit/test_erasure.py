"""Tombstones: which events a delete's tombstone covers (by image id, label or source, submitted
at or before it, while it is kept), pruning, and the search stage's handler dropping what a
delete covers while indexing what came after. The store is a real local-mode index in a
temporary folder (no network); the clock is the test's."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from facesearch.codec import events as event_codec
from facesearch.erasure import PRUNE_EVERY, TombstoneCheck, erase, erased_by, tombstone_keys
from facesearch.errors import StoreError
from facesearch.faces import DetectedFace
from facesearch.metrics import WorkMetrics
from facesearch.payloads import from_microseconds, to_microseconds
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.records import ImageMeta, Selector, Tombstone
from facesearch.store import QdrantFaceStore
from facesearch.stream.handlers import store_handler

MODEL, DIM = "test-model", 8
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEEP = timedelta(days=7)
IMAGE = "ab" * 32


def tombstone(field: str = "label", value: str = "ann", at: datetime = T) -> Tombstone:
    return Tombstone(field, value, at, "r1")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantFaceStore]:
    opened = QdrantFaceStore.open(MODEL, DIM, tmp_path / "qdrant")
    yield opened
    opened.close()


def embeddings(
    submitted: datetime | None, label: str = "ann", image: str = IMAGE, source: str = "/a.jpg"
) -> bytes:
    face = DetectedFace(
        0, (1.0, 2.0, 3.0, 4.0), 0.9, np.zeros((5, 2)), np.zeros((112, 112, 3), np.uint8), 0.5
    )
    stamp = Timestamp()
    if submitted is not None:
        stamp.FromDatetime(submitted)
    meta = api_pb2.ImageMeta(source_uri=source, label=label)
    faces = event_codec.faces_event(AnalyzedImage(image, 10, 10, [face]), meta, "d", stamp)
    if submitted is None:
        faces.ClearField("submitted_at")
    event = event_codec.embeddings_event(faces, np.ones((1, DIM), np.float32), MODEL)
    return event.SerializeToString()


# -- which events a tombstone covers ---------------------------------------------------------


def test_a_tombstone_covers_submissions_up_to_its_time_and_not_after() -> None:
    since = T - KEEP
    assert erased_by([tombstone()], T - timedelta(seconds=1), since) == tombstone()
    assert erased_by([tombstone()], T, since) == tombstone()  # the same microsecond: erased
    assert erased_by([tombstone()], T + timedelta(microseconds=1), since) is None


def test_an_event_without_a_submission_time_is_taken_as_submitted_before() -> None:
    assert erased_by([tombstone()], None, T - KEEP) == tombstone()


def test_an_expired_tombstone_covers_nothing_even_before_it_is_pruned() -> None:
    assert erased_by([tombstone()], T - timedelta(days=1), T + timedelta(seconds=1)) is None


def test_the_latest_covering_tombstone_is_the_one_reported() -> None:
    first = tombstone("image_id", IMAGE, T - timedelta(hours=1))
    second = tombstone("label", "ann", T)
    found = erased_by([second, first], T - timedelta(hours=2), T - KEEP)
    assert found == second
    # Submitted between the two: only the later one covers it.
    assert erased_by([first, second], T - timedelta(minutes=30), T - KEEP) == second


def test_an_event_is_looked_up_by_its_image_id_label_and_source() -> None:
    meta = ImageMeta("https://example.org/a.jpg", "/a.jpg", "ann")
    assert tombstone_keys(IMAGE, meta) == [
        ("image_id", IMAGE),
        ("label", "ann"),
        ("source_uri", "https://example.org/a.jpg"),
    ]
    assert tombstone_keys(IMAGE, ImageMeta("", "", "")) == [("image_id", IMAGE)]


def test_tombstone_times_keep_every_microsecond() -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)
    assert from_microseconds(to_microseconds(moment)) == moment
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    assert stamp.ToMicroseconds() == to_microseconds(moment)


# -- kept in the store, and pruned -----------------------------------------------------------


def test_a_delete_records_its_tombstone_even_when_nothing_matched(store: QdrantFaceStore) -> None:
    erased = erase(store, Selector(label="ann"), KEEP, now=T)

    assert (erased.images, erased.faces, erased.collections) == (0, 0, {})
    (kept,) = store.tombstones([("label", "ann"), ("image_id", IMAGE)])
    assert kept == Tombstone("label", "ann", T, erased.receipt_id)


def test_a_later_delete_of_the_same_selector_replaces_its_tombstone(
    store: QdrantFaceStore,
) -> None:
    first = store.delete(Selector(label="ann"), at=T)
    second = store.delete(Selector(label="ann"), at=T + timedelta(hours=1))
    store.delete(Selector(label="ann"), at=T - timedelta(hours=1))  # a replica's slower clock

    assert first.receipt_id != second.receipt_id
    (kept,) = store.tombstones([("label", "ann")])
    assert (kept.deleted_at, kept.receipt_id) == (T + timedelta(hours=1), second.receipt_id)


def test_tombstones_older_than_the_retention_are_pruned_and_no_others(
    store: QdrantFaceStore,
) -> None:
    store.delete(Selector(label="old"), at=T - KEEP - timedelta(seconds=1))
    store.delete(Selector(label="kept"), at=T - KEEP + timedelta(seconds=1))

    erase(store, Selector(label="new"), KEEP, now=T)

    pairs = [("label", "old"), ("label", "kept"), ("label", "new")]
    assert sorted(t.value for t in store.tombstones(pairs)) == ["kept", "new"]


def test_the_check_prunes_at_first_then_once_every_prune_interval(
    store: QdrantFaceStore,
) -> None:
    clock = Clock(T)
    check = TombstoneCheck(store, KEEP, clock)
    store.delete(Selector(label="ann"), at=T - KEEP + timedelta(minutes=1))
    meta = ImageMeta("/a.jpg", "/a.jpg", "ann")

    assert check(IMAGE, meta, T - KEEP) is not None
    clock.now = T + timedelta(minutes=2)  # expired, not yet pruned: covers nothing all the same
    assert check(IMAGE, meta, T - KEEP) is None
    assert store.tombstones([("label", "ann")]) != []
    clock.now = T + PRUNE_EVERY
    check(IMAGE, meta, None)
    assert store.tombstones([("label", "ann")]) == []


def test_a_delete_by_several_fields_at_once_is_refused_and_records_nothing(
    store: QdrantFaceStore,
) -> None:
    with pytest.raises(StoreError, match="exactly one"):
        store.delete(Selector(label="ann", image_id=IMAGE))
    assert store.tombstones([("label", "ann"), ("image_id", IMAGE)]) == []


# -- the search stage's handler --------------------------------------------------------------


def test_the_handler_drops_what_a_delete_covers_and_indexes_a_later_submission(
    store: QdrantFaceStore,
) -> None:
    registry = CollectorRegistry()
    metrics = WorkMetrics(registry)
    erased = ("facesearch_events_erased_total", {"field": "label"})
    clock = Clock(T + timedelta(seconds=5))
    save = store_handler(store, metrics=metrics, erased=TombstoneCheck(store, KEEP, clock))
    store.delete(Selector(label="ann"), at=T)

    assert save(b"k", embeddings(T - timedelta(seconds=1))) == []
    assert store.get_image(IMAGE) is None
    assert registry.get_sample_value(*erased) == 1

    save(b"k", embeddings(T + timedelta(seconds=1)))  # a new consent after the delete
    assert store.get_image(IMAGE) is not None
    assert registry.get_sample_value(*erased) == 1


def test_the_handler_keeps_what_no_tombstone_names(store: QdrantFaceStore) -> None:
    save = store_handler(store, erased=TombstoneCheck(store, KEEP, Clock(T)))
    store.delete(Selector(label="bob"), at=T)
    store.delete(Selector(source_uri="/b.jpg"), at=T)

    save(b"k", embeddings(T - timedelta(days=1), label="ann", source="/a.jpg"))

    assert store.get_image(IMAGE) is not None


def test_the_handler_removes_an_image_a_delete_covered_while_it_was_being_written(
    store: QdrantFaceStore,
) -> None:
    """A Delete answered by another replica between this one's check and its write: the
    check after the write removes the image."""
    checks: list[int] = []

    class RacingCheck(TombstoneCheck):
        def __call__(
            self, image_id: str, meta: ImageMeta, submitted_at: datetime | None
        ) -> Tombstone | None:
            checks.append(1)
            if len(checks) == 1:  # the first check passes; then the Delete lands
                answer = super().__call__(image_id, meta, submitted_at)
                store.delete(Selector(image_id=IMAGE), at=T)
                return answer
            return super().__call__(image_id, meta, submitted_at)

    save = store_handler(store, erased=RacingCheck(store, KEEP, Clock(T)))

    save(b"k", embeddings(T - timedelta(seconds=1)))

    assert len(checks) == 2
    assert store.get_image(IMAGE) is None
    assert store.stats().faces == 0


def frame(sample: int, submitted: datetime, last: bool = False) -> bytes:
    event = events_pb2.EmbeddingsEvent.FromString(embeddings(submitted))
    event.frame.CopyFrom(events_pb2.VideoFrame(ms=sample * 500, sample=sample, last=last))
    return event.SerializeToString()


def test_a_video_deleted_while_its_frames_arrive_keeps_none_of_them(
    store: QdrantFaceStore,
) -> None:
    save = store_handler(store, erased=TombstoneCheck(store, KEEP, Clock(T)))
    submitted = T - timedelta(minutes=1)
    save(b"k", frame(0, submitted))
    assert len(store.staged_frames(IMAGE)) == 1

    store.delete(Selector(label="ann"), at=T)  # by label: the staged frames carry none
    save(b"k", frame(1, submitted))
    save(b"k", frame(2, submitted, last=True))

    assert store.staged_frames(IMAGE) == []
    assert store.get_image(IMAGE) is None
