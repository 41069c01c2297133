"""Videos through the services: IndexImages takes the file, the detector streams its sampled
frames with their times, the search service tracks them at the last frame; the stored video is
the one the embedded index makes of the same file, and Search says where and when."""

from pathlib import Path
from typing import Any

import pytest
from gateway_checks import index, settled

from facesearch.ids import image_id
from facesearch.models import FaceModels
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.records import ImageMeta
from facesearch.settings import CoreSettings
from facesearch.video_indexing import VideoIndexed, index_video


@pytest.fixture(scope="module")
def examples(face_data: Path) -> Path:
    return face_data / "face_recognition" / "examples"


@pytest.fixture(scope="module")
def embedded(examples: Path, face_models: FaceModels, settings: CoreSettings) -> VideoIndexed:
    """The embedded index's reading of the Hamilton clip, to compare the services' with."""
    clip = examples / "short_hamilton_clip.mp4"
    video_id = image_id(clip.read_bytes())
    return index_video(clip, video_id, ImageMeta(str(clip)), face_models, settings, settings.video)


def test_a_video_is_stored_as_the_embedded_index_stores_it_and_found_with_times(
    gateway: api_pb2_grpc.FaceSearchStub, examples: Path, embedded: VideoIndexed
) -> None:
    clip = (examples / "short_hamilton_clip.mp4").read_bytes()
    (queued,) = index(gateway, api_pb2.IndexRequest(data=clip, path="hamilton.mp4"))
    assert queued.image_id == image_id(clip) == embedded.image.image_id

    stored = settled(gateway, queued.image_id)
    assert stored.status == api_pb2.IMAGE_STATUS_INDEXED, stored.error
    assert stored.image.kind == "video"
    assert stored.image.tracks == embedded.image.tracks
    assert stored.image.faces == len(stored.faces) == len(embedded.faces)
    assert stored.image.duration_ms == embedded.image.duration_ms
    assert (stored.image.width, stored.image.height) == (
        embedded.image.width,
        embedded.image.height,
    )

    for query in ("lin-manuel-miranda.png", "alex-lacamoire.png"):
        request = api_pb2.SearchRequest(image=(examples / query).read_bytes(), top_k=5)
        (face,) = gateway.Search(request).faces
        best = face.matches[0]
        assert best.image_id == queued.image_id, query
        assert best.HasField("video")
        span = best.video
        assert span.video_id == queued.image_id
        assert span.t_start_ms <= span.best_ms <= span.t_end_ms
        expected = [
            f for f in embedded.faces if f.video is not None and f.face_index == best.face_index
        ]
        (same,) = expected  # the services stored the embedded index's face under this index
        assert same.video is not None
        assert (span.track_id, span.t_start_ms, span.t_end_ms, span.best_ms) == (
            same.video.track_id,
            same.video.t_start_ms,
            same.video.t_end_ms,
            same.video.best_ms,
        )


def test_a_video_cut_short_fails_with_its_reason_and_the_pipeline_goes_on(
    gateway: api_pb2_grpc.FaceSearchStub, examples: Path, demo: dict[str, Path]
) -> None:
    clip = (examples / "short_hamilton_clip.mp4").read_bytes()
    cut = clip[: len(clip) // 2]
    photo = demo["players"].read_bytes()
    results: list[Any] = index(
        gateway,
        api_pb2.IndexRequest(data=cut, path="cut.mp4"),
        api_pb2.IndexRequest(data=photo, path="players.jpg"),
    )
    assert [r.WhichOneof("result") for r in results] == ["image_id", "image_id"]
    failed = settled(gateway, results[0].image_id)
    assert failed.status == api_pb2.IMAGE_STATUS_FAILED
    assert "video" in failed.error, failed.error
    assert settled(gateway, results[1].image_id).status == api_pb2.IMAGE_STATUS_INDEXED
