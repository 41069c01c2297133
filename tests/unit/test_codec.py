"""Records <-> protobuf events, and events that break the schema's rules (no models)."""

import numpy as np
import pytest

from facesearch.codec import events as event_codec
from facesearch.errors import BadMessageError
from facesearch.faces import DetectedFace
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.records import ImageMeta

IMAGE_ID = "ab" * 32


def analyzed(faces: int = 2) -> AnalyzedImage:
    rng = np.random.default_rng(0)
    found = [
        DetectedFace(
            index=i,
            box=(10.0 + i, 20.0, 50.5, 70.25),
            det_score=0.9 - i / 10,
            landmarks=rng.uniform(0, 100, (5, 2)).astype(np.float32),
            crop=rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
            quality=0.5,
        )
        for i in range(faces)
    ]
    return AnalyzedImage(IMAGE_ID, 640, 480, found)


def test_a_faces_event_carries_the_crops_and_landmarks_exactly() -> None:
    meta = event_codec.meta_to_proto(ImageMeta("https://x/y.jpg", "/tmp/y.jpg", "alice", "news"))
    sent = event_codec.faces_event(analyzed(), meta, "scrfd-1", event_codec.now())

    event = event_codec.parse(events_pb2.FacesEvent, sent.SerializeToString())
    back = event_codec.analyzed_from_event(event)

    original = analyzed()
    assert (back.image_id, back.width, back.height) == (IMAGE_ID, 640, 480)
    for mine, theirs in zip(back.faces, original.faces, strict=True):
        assert mine.index == theirs.index
        assert mine.box == pytest.approx(theirs.box)
        assert np.array_equal(mine.crop, theirs.crop)
        assert mine.landmarks == pytest.approx(theirs.landmarks)
    assert event_codec.meta_from_proto(event.meta) == ImageMeta(
        "https://x/y.jpg", "/tmp/y.jpg", "alice", "news"
    )


def test_embeddings_become_the_records_the_store_writes() -> None:
    faces = event_codec.faces_event(
        analyzed(), api_pb2.ImageMeta(path="/a.jpg"), "d", event_codec.now()
    )
    vectors = np.eye(2, 512, dtype=np.float32)

    event = event_codec.embeddings_event(faces, vectors, "w600k_mbf-1")
    image, records = event_codec.records_from_embeddings(event, 512)

    assert (image.image_id, image.faces, image.model) == (IMAGE_ID, 2, "w600k_mbf-1")
    assert image.meta == ImageMeta("", "/a.jpg", "", "default")
    assert [r.face_index for r in records] == [0, 1]
    assert records[1].vector == pytest.approx(vectors[1].tolist())
    assert records[0].box == pytest.approx((10.0, 20.0, 50.5, 70.25))


@pytest.mark.parametrize("data", [b"\xff\x00garbage", b"\x0a\x05hello\x99"])
def test_garbage_is_a_bad_message(data: bytes) -> None:
    with pytest.raises(BadMessageError):
        event_codec.parse(events_pb2.FacesEvent, data)


def test_an_event_without_an_image_id_is_a_bad_message() -> None:
    with pytest.raises(BadMessageError, match="without an image_id"):
        event_codec.parse(
            events_pb2.ImageEvent, events_pb2.ImageEvent(data=b"x").SerializeToString()
        )


def test_a_truncated_crop_is_a_bad_message() -> None:
    event = event_codec.faces_event(analyzed(1), api_pb2.ImageMeta(), "d", event_codec.now())
    event.faces[0].crop = event.faces[0].crop[:100]

    with pytest.raises(BadMessageError, match="crop"):
        event_codec.analyzed_from_event(event)


def test_vectors_of_the_wrong_size_are_a_bad_message() -> None:
    faces = event_codec.faces_event(analyzed(1), api_pb2.ImageMeta(), "d", event_codec.now())
    event = event_codec.embeddings_event(faces, np.ones((1, 128), dtype=np.float32), "m")

    with pytest.raises(BadMessageError, match="512"):
        event_codec.records_from_embeddings(event, 512)
