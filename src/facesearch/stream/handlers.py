"""The services' work as Kafka handlers: the bytes of one event in, the next event's bytes out
(see ``worker.StreamWorker``); the embedder's takes a micro-batch of events, to embed all
their crops in one model call. Each wraps the same core functions the embedded CLI calls;
none holds any Kafka code. A bad event is a ``FaceSearchError`` (dead-lettered), a store
that is down a ``TransientError`` (retried, then paused)."""

import functools
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC

import numpy as np
from prometheus_client import Histogram

from facesearch.codec import events as event_codec
from facesearch.erasure import TombstoneCheck
from facesearch.errors import BadMessageError, StoreError, TransientError
from facesearch.faces import embed_faces
from facesearch.ids import image_id
from facesearch.metrics import WorkMetrics
from facesearch.models import FaceModels, file_model_id
from facesearch.optout import OptOutCheck, screen_records
from facesearch.pipeline import AnalyzedImage, analyze, apply_gate
from facesearch.proto.v1 import events_pb2
from facesearch.records import FaceRecord, ImageRecord, Selector, Tombstone
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore
from facesearch.stream.video_events import (
    Records,
    check_id,
    frame_events,
    open_video_event,
    take_frame,
)
from facesearch.stream.worker import BatchHandler, Handler, Message, Outcome
from facesearch.tracking import TrackerSettings
from facesearch.uris import read_uri

log = logging.getLogger(__name__)
Parsed = tuple[events_pb2.FacesEvent, AnalyzedImage]


def detector_handler(
    models: FaceModels, settings: CoreSettings, *, metrics: WorkMetrics | None = None
) -> Handler:
    """ImageEvent -> FacesEvent: decode within the limits, detect, align; the faces that fail
    the quality gate are left out (and counted), as the embedded index leaves them out."""
    detector = file_model_id(models.files.detector)
    gate = settings.quality
    timer = metrics.inference_seconds.labels("detect") if metrics else None

    def handle(key: bytes | None, value: bytes) -> Iterable[Message]:
        event = event_codec.parse(events_pb2.ImageEvent, value)
        video = open_video_event(event, settings)
        if video is not None:
            return frame_events(event, video, models, settings, detector)
        if event.WhichOneof("image") == "uri":
            data = read_uri(event.uri, settings.uri_roots, settings.limits)
        else:
            data = event.data
        check_id(image_id(data), event)
        with _timed(timer):
            analyzed, unindexed = apply_gate(analyze(data, models, settings), gate)
        if metrics is not None:
            metrics.faces_per_image.observe(len(analyzed.faces))
            for face in unindexed:
                metrics.faces_unindexed.labels(face.rejection.reason).inc()
        out = event_codec.faces_event(analyzed, event.meta, detector, event.submitted_at, unindexed)
        return [(event.image_id.encode(), out.SerializeToString())]

    return handle


def embedder_batch_handler(
    models: FaceModels, *, metrics: WorkMetrics | None = None
) -> BatchHandler:
    """FacesEvents -> EmbeddingsEvents: one L2-normalised vector per aligned crop, the crops
    of every valid event of the batch in one model call. An event that does not parse is
    refused alone (its ``BadMessageError`` is its outcome); the others go on."""

    def handle(messages: list[Message]) -> list[Outcome]:
        parsed = [_parse_faces(value) for _, value in messages]
        valid = [item for item in parsed if not isinstance(item, BadMessageError)]
        faces = [face for _, image in valid for face in image.faces]
        # No face, no model call: nothing to time.
        with _timed(metrics.inference_seconds.labels("embed") if metrics and faces else None):
            vectors = embed_faces(models, faces)
        return _split(parsed, vectors, models.model_id)

    return handle


def _parse_faces(value: bytes) -> Parsed | BadMessageError:
    try:
        event = event_codec.parse(events_pb2.FacesEvent, value)
        return event, event_codec.analyzed_from_event(event)
    except BadMessageError as exc:
        return exc


def _timed(histogram: Histogram | None) -> AbstractContextManager[object]:
    """Time the block into ``histogram`` (a labelled child), or not at all."""
    return nullcontext() if histogram is None else histogram.time()


def _split(
    parsed: list[Parsed | BadMessageError], vectors: np.ndarray, model: str
) -> list[Outcome]:
    """Each event's EmbeddingsEvent from its rows of ``vectors`` (in the events' order)."""
    outcomes: list[Outcome] = []
    start = 0
    for item in parsed:
        if isinstance(item, BadMessageError):
            outcomes.append(item)
            continue
        event, image = item
        end = start + len(image.faces)
        out = event_codec.embeddings_event(event, vectors[start:end], model)
        outcomes.append([(event.image_id.encode(), out.SerializeToString())])
        start = end
    return outcomes


def _screened(
    records: tuple[ImageRecord, list[FaceRecord]],
    optouts: OptOutCheck | None,
    metrics: WorkMetrics | None,
) -> tuple[ImageRecord, list[FaceRecord]]:
    """The image's records without the faces that match an opt-out (counted)."""
    if optouts is None:
        return records
    image, faces = screen_records(*records, optouts.gallery())
    if metrics is not None and len(faces) < len(records[1]):
        metrics.optout_faces.labels("kept_out").inc(len(records[1]) - len(faces))
    return image, faces


def store_handler(
    store: FaceStore,
    *,
    metrics: WorkMetrics | None = None,
    tracking: TrackerSettings | None = None,
    erased: TombstoneCheck | None = None,
    optouts: OptOutCheck | None = None,
) -> Handler:
    """EmbeddingsEvent -> Qdrant, over the same point ids the embedded CLI writes (a video's
    frames are kept until its last, then tracked: ``video_events.take_frame``). An event that a
    Delete's tombstone covers is dropped (``erasure``); checked again once written, since a
    Delete answered by another replica in between would otherwise miss it. An image's faces
    that match an opt-out are left out (``optout.screen_records``)."""
    timer = metrics.qdrant_seconds.labels("upsert") if metrics else None
    tracking = tracking or TrackerSettings()
    erased = erased or TombstoneCheck(store, CoreSettings().tombstone_keep)

    def handle(key: bytes | None, value: bytes) -> list[Message]:
        event = event_codec.parse(events_pb2.EmbeddingsEvent, value)
        if event.model != store.model_id:
            raise BadMessageError(
                f"{event.image_id}: vectors of model {event.model!r}, but this index holds "
                f"{store.model_id!r}"
            )
        try:
            with _timed(timer):
                if _drop_erased(store, event, erased, metrics):
                    return []
                screen = functools.partial(_screened, optouts=optouts, metrics=metrics)
                if not _write(store, event, tracking, screen):
                    return []  # a frame kept: the video is not stored yet
                if _unwrite_erased(store, event, erased, metrics):
                    return []
        except StoreError as exc:
            raise TransientError(str(exc)) from exc
        if metrics and event.HasField("submitted_at"):
            age = time.time() - event.submitted_at.ToMicroseconds() / 1e6
            metrics.indexing_latency.observe(max(age, 0.0))
        return []

    return handle


def _write(
    store: FaceStore,
    event: events_pb2.EmbeddingsEvent,
    tracking: TrackerSettings,
    screen: Callable[[Records], Records],
) -> bool:
    """Store the event, without the faces ``screen`` leaves out; False for a video frame kept
    until the video's last."""
    if event.HasField("frame"):
        return take_frame(store, event, tracking, screen)
    store.put_images([screen(event_codec.records_from_embeddings(event, store.dim))])
    return True


def _covering(event: events_pb2.EmbeddingsEvent, erased: TombstoneCheck) -> Tombstone | None:
    submitted = (
        event.submitted_at.ToDatetime(tzinfo=UTC) if event.HasField("submitted_at") else None
    )
    return erased(event.image_id, event_codec.meta_from_proto(event.meta), submitted)


def _drop_erased(
    store: FaceStore,
    event: events_pb2.EmbeddingsEvent,
    erased: TombstoneCheck,
    metrics: WorkMetrics | None,
) -> bool:
    """Whether a tombstone covers the event, which is then not written (nor a video's frames
    kept so far)."""
    tombstone = _covering(event, erased)
    if tombstone is None:
        return False
    if event.HasField("frame"):
        store.drop_staged(event.image_id)
    _count_erased(event, tombstone, metrics, "dropped")
    return True


def _unwrite_erased(
    store: FaceStore,
    event: events_pb2.EmbeddingsEvent,
    erased: TombstoneCheck,
    metrics: WorkMetrics | None,
) -> bool:
    """Delete what was just written if a Delete covering it came meanwhile (True then)."""
    tombstone = _covering(event, erased)
    if tombstone is None:
        return False
    store.delete(Selector(image_id=event.image_id), at=tombstone.deleted_at)
    _count_erased(event, tombstone, metrics, "removed again once written")
    return True


def _count_erased(
    event: events_pb2.EmbeddingsEvent,
    tombstone: Tombstone,
    metrics: WorkMetrics | None,
    what: str,
) -> None:
    # The image id and the receipt, never the selector's value (a label names a person).
    log.info(
        "%s %s, submitted %s: erased by delete %s (by %s at %s)",
        what,
        event.image_id,
        event.submitted_at.ToJsonString() if event.HasField("submitted_at") else "(unknown)",
        tombstone.receipt_id,
        tombstone.field,
        tombstone.deleted_at.isoformat(),
    )
    if metrics is not None:
        metrics.events_erased.labels(tombstone.field).inc()
