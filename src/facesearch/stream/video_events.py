"""A video through the services: the detector streams its sampled frames as FacesEvents, and
the search service tracks their faces once the last frame has arrived.

Every event of a video carries the video's id (sha256 of its bytes) as image_id and key, so its
frames travel one partition of each topic in order. The detector publishes each frame as it is
read (a frame's crops, never the decoded video, and never all frames at once); the embedder
embeds them as any other faces. The search service keeps each frame's faces in Qdrant (a
restart loses nothing) until the event marked ``last``, then runs the same tracker as the
embedded ``index_video`` and stores the same points, and drops the frames it kept.
Redelivery is harmless: frames are kept under ids of (video, sample, model), and frames that
arrive again after their video was stored are not kept.
"""

import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path

from facesearch.codec import events as event_codec
from facesearch.errors import BadMessageError, FaceSearchError
from facesearch.faces import detect_faces
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import events_pb2
from facesearch.records import FaceRecord, FrameFaces, ImageRecord
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore
from facesearch.stream.worker import Message
from facesearch.tracking import Tracker, TrackerSettings
from facesearch.uris import resolve_uri
from facesearch.video import (
    HEAD_BYTES,
    VideoReader,
    file_head,
    file_sha256,
    looks_like_video,
    open_video,
    prefetched,
)
from facesearch.video_indexing import observations, video_records


def check_id(actual: str, event: events_pb2.ImageEvent) -> None:
    """The event's image_id is the sha256 of the bytes the detector reads."""
    if actual != event.image_id:
        raise BadMessageError(
            f"{event.image_id} is not the sha256 of the image bytes (a file sent by URI "
            "changed after it was submitted?)"
        )


def open_video_event(
    event: events_pb2.ImageEvent, settings: CoreSettings
) -> tuple[ExitStack, VideoReader] | None:
    """The opened video of an ImageEvent (its file, or its bytes written to a temporary file,
    held by the returned stack), or None when the event holds a still image. A video that
    cannot be used is a ``FaceSearchError`` here, before any frame is published."""
    by_uri = event.WhichOneof("image") == "uri"
    path = resolve_uri(event.uri, settings.uri_roots) if by_uri else None
    head = file_head(path) if path is not None else event.data[:HEAD_BYTES]
    if not looks_like_video(head):
        return None
    stack = ExitStack()
    try:
        if path is None:
            # Closed (and deleted) with the stack, once the last frame is read.
            handle = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".video"))  # noqa: SIM115
            handle.write(event.data)
            handle.flush()
            path = Path(handle.name)
        else:
            check_id(file_sha256(path), event)
        reader = stack.enter_context(open_video(path, settings.video))
    except BaseException:
        stack.close()
        raise
    return stack, reader


def frame_events(
    event: events_pb2.ImageEvent,
    opened: tuple[ExitStack, VideoReader],
    models: FaceModels,
    settings: CoreSettings,
    detector: str,
) -> Iterator[Message]:
    """One FacesEvent per sampled frame, each sent as soon as it is made; the last is marked
    (held back one frame to know it), and a video that stops reading well midway ends with
    an event that carries the error instead."""
    stack, reader = opened
    key = event.image_id.encode()
    size = (reader.info.width, reader.info.height)
    duration_ms = reader.info.duration_ms
    held: events_pb2.FacesEvent | None = None
    with stack, closing(prefetched(reader.frames())) as frames:
        try:
            for sample, frame in enumerate(frames):
                if held is not None:
                    yield key, held.SerializeToString()
                faces = detect_faces(models, frame.bgr, settings.max_faces_per_image)
                analyzed = AnalyzedImage(event.image_id, *size, faces)
                held = event_codec.faces_event(analyzed, event.meta, detector, event.submitted_at)
                held.frame.CopyFrom(
                    events_pb2.VideoFrame(
                        ms=frame.ms, cut=frame.cut, sample=sample, duration_ms=duration_ms
                    )
                )
        except FaceSearchError as exc:
            held = held or event_codec.faces_event(
                AnalyzedImage(event.image_id, *size, []), event.meta, detector, event.submitted_at
            )
            del held.faces[:]
            held.frame.error = f"{exc.code}: {exc}"
    if held is not None:  # always: frames() raises (and held is made) when none decodes
        held.frame.last = True
        yield key, held.SerializeToString()


Records = tuple[ImageRecord, list[FaceRecord]]


def take_frame(
    store: FaceStore,
    event: events_pb2.EmbeddingsEvent,
    tracking: TrackerSettings,
    screen: Callable[[Records], Records] = lambda records: records,
) -> bool:
    """Keep one frame of a video; at its last, track the faces of every frame kept, store the
    video as the embedded index does (``screen`` leaving out faces that match an opt-out), and
    drop the frames. True once the video is stored."""
    frame, video_id = event.frame, event.image_id
    if frame.error:
        store.drop_staged(video_id)
        raise BadMessageError(f"{video_id}: the video could not be read to its end: {frame.error}")
    stored_before = store.get_image(video_id) is not None
    if not stored_before:
        store.stage_frame(event_codec.frame_from_embeddings(event, store.dim))
    if not frame.last:
        return False
    kept = store.staged_frames(video_id)
    if kept or not stored_before:
        store.put_images([screen(_tracked(event, kept, tracking))])
    store.drop_staged(video_id)
    return True


def _tracked(
    event: events_pb2.EmbeddingsEvent,
    frames: list[FrameFaces],
    tracking: TrackerSettings,
) -> tuple[ImageRecord, list[FaceRecord]]:
    tracker = Tracker(tracking)
    for frame in frames:
        tracker.update(observations(frame), frame.cut)
    meta = event_codec.meta_from_proto(event.meta)
    size = (event.width, event.height)
    tracks = tracker.finish()
    return video_records(event.image_id, meta, event.model, size, event.frame.duration_ms, tracks)
