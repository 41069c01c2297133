"""A video file -> its face tracks -> records for the store.

The video's id is the sha256 of its bytes; it is the ``image_id`` of its one ``ImageRecord``
(kind "video") and of every face stored for it, so ``delete --image`` and re-indexing work as
for a photo. Each track stores only its best faces (``TrackerSettings.keep``), numbered in
track order: the same file always gives the same point ids, and indexing it again overwrites.
"""

import logging
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from facesearch.faces import detect_faces, embed_faces
from facesearch.models import FaceModels
from facesearch.pipeline import image_record
from facesearch.records import FaceRecord, FrameFaces, ImageMeta, ImageRecord, VideoSpan
from facesearch.settings import CoreSettings, VideoSettings
from facesearch.tracking import Observation, Track, Tracker, TrackerSettings
from facesearch.video import Frame, VideoInfo, open_video, prefetched

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoIndexed:
    """A video's records and how it was read."""

    image: ImageRecord
    faces: list[FaceRecord]
    samples: int  # frames looked at
    cuts: int  # of which taken because the scene changed
    faces_seen: int  # faces detected in all samples
    info: VideoInfo


def observe(models: FaceModels, frame: Frame, max_faces: int) -> list[Observation]:
    """The faces of one sampled frame, embedded, as the tracker takes them."""
    faces = detect_faces(models, frame.bgr, max_faces)
    if not faces:
        return []
    vectors = embed_faces(models, faces)
    return [
        Observation(frame.ms, face.box, face.quality, face.det_score, np.asarray(vector))
        for face, vector in zip(faces, vectors, strict=True)
    ]


def observations(frame: FrameFaces) -> list[Observation]:
    """A staged frame's faces (the services' path) as the tracker takes them."""
    return [
        Observation(frame.ms, face.box, face.quality, face.det_score, np.asarray(face.vector))
        for face in frame.faces
    ]


def track_faces(video_id: str, tracks: list[Track]) -> list[FaceRecord]:
    """The stored faces: each track's best, numbered 0.. in track order (deterministic)."""
    records: list[FaceRecord] = []
    for number, track in enumerate(tracks):
        for observation in track.best:
            span = VideoSpan(video_id, number, track.first_ms, track.last_ms, observation.ms)
            records.append(
                FaceRecord(
                    image_id=video_id,
                    face_index=len(records),
                    box=observation.box,
                    det_score=observation.det_score,
                    quality=observation.quality,
                    vector=[float(v) for v in observation.vector],
                    video=span,
                )
            )
    return records


def video_records(
    video_id: str,
    meta: ImageMeta,
    model_id: str,
    size: tuple[int, int],
    duration_ms: int,
    tracks: list[Track],
) -> tuple[ImageRecord, list[FaceRecord]]:
    """The video's one record (kind "video", ``size`` = width, height, stamped with the time
    it is stored) and its tracks' faces: what the embedded index and the search service
    store alike."""
    faces = track_faces(video_id, tracks)
    image = image_record(video_id, meta, len(faces), model_id, *size)
    image = replace(image, kind="video", duration_ms=duration_ms, tracks=len(tracks))
    return image, faces


def index_video(
    path: Path,
    video_id: str,
    meta: ImageMeta,
    models: FaceModels,
    settings: CoreSettings,
    video: VideoSettings,
    tracking: TrackerSettings | None = None,
) -> VideoIndexed:
    """Read the sampled frames of ``path``, track their faces, make the records (raises
    FaceSearchError for a video that cannot be used; nothing is returned for half of one)."""
    tracker = Tracker(tracking or TrackerSettings())
    samples = cuts = seen = 0
    # Closing the frames first stops and joins their thread before the capture is released.
    with open_video(path, video) as reader, closing(prefetched(reader.frames())) as frames:
        for frame in frames:
            observations = observe(models, frame, settings.max_faces_per_image)
            tracker.update(observations, frame.cut)
            samples += 1
            cuts += frame.cut
            seen += len(observations)
        info = reader.info
    tracks = tracker.finish()
    size = (info.width, info.height)
    image, faces = video_records(video_id, meta, models.model_id, size, info.duration_ms, tracks)
    logger.info(
        "%s: %d samples (%d at cuts), %d faces seen, %d tracks, %d faces stored",
        path,
        samples,
        cuts,
        seen,
        len(tracks),
        len(faces),
    )
    return VideoIndexed(image, faces, samples, cuts, seen, info)
