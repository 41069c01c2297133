"""Between the core's records and the Kafka events of protos/ (and the Box and ImageMeta
messages every API shares): one function per direction, so the services convert 1:1 and a
message that breaks the schema's rules is refused here, where it enters, as a
``BadMessageError``. The API's own messages convert in ``codec.api``."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from facesearch.audit import AuditRecord
from facesearch.errors import BadMessageError
from facesearch.faces import ALIGNED_SIZE, DetectedFace
from facesearch.pipeline import AnalyzedImage, image_record
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.records import (
    Box,
    FaceRecord,
    FrameFaces,
    ImageMeta,
    ImageRecord,
    Rejection,
    UnindexedFace,
)

CROP_BYTES = ALIGNED_SIZE * ALIGNED_SIZE * 3  # 112 x 112 BGR, uint8
M = TypeVar("M", events_pb2.ImageEvent, events_pb2.FacesEvent, events_pb2.EmbeddingsEvent)


def parse(kind: type[M], data: bytes) -> M:
    """Decode a message of ``kind`` from Kafka bytes; garbage is a ``BadMessageError``."""
    message = kind()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise BadMessageError(f"not a {kind.__name__}: {exc}") from exc
    if not message.image_id:
        raise BadMessageError(f"{kind.__name__} without an image_id")
    return message


def meta_to_proto(meta: ImageMeta) -> api_pb2.ImageMeta:
    return api_pb2.ImageMeta(
        source_uri=meta.source_uri, path=meta.path, label=meta.label, collection=meta.collection
    )


def meta_from_proto(meta: api_pb2.ImageMeta) -> ImageMeta:
    return ImageMeta(meta.source_uri, meta.path, meta.label, meta.collection or "default")


def box_to_proto(box: Box) -> api_pb2.Box:
    return api_pb2.Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def box_from_proto(box: api_pb2.Box) -> Box:
    return (box.x1, box.y1, box.x2, box.y2)


def rejection_to_proto(rejection: Rejection) -> api_pb2.Rejection:
    return api_pb2.Rejection(reason=rejection.reason, value=rejection.value, limit=rejection.limit)


def rejection_from_proto(rejection: api_pb2.Rejection) -> Rejection:
    return Rejection(rejection.reason, rejection.value, rejection.limit)


def unindexed_to_proto(face: UnindexedFace) -> api_pb2.UnindexedFace:
    return api_pb2.UnindexedFace(
        face_index=face.index,
        box=box_to_proto(face.box),
        rejection=rejection_to_proto(face.rejection),
    )


def unindexed_from_proto(face: api_pb2.UnindexedFace) -> UnindexedFace:
    return UnindexedFace(
        face.face_index, box_from_proto(face.box), rejection_from_proto(face.rejection)
    )


def faces_event(
    analyzed: AnalyzedImage,
    meta: api_pb2.ImageMeta,
    detector: str,
    submitted: Timestamp,
    unindexed: Sequence[UnindexedFace] = (),
) -> events_pb2.FacesEvent:
    """What the detector publishes for one image: every face with its aligned crop, and the
    faces the quality gate kept out, without."""
    event = events_pb2.FacesEvent(
        image_id=analyzed.image_id,
        meta=meta,
        width=analyzed.width,
        height=analyzed.height,
        model=detector,
        unindexed=[unindexed_to_proto(face) for face in unindexed],
    )
    event.submitted_at.CopyFrom(submitted)
    for face in analyzed.faces:
        event.faces.add(
            index=face.index,
            box=box_to_proto(face.box),
            det_score=face.det_score,
            quality=face.quality,
            landmarks=[events_pb2.Point(x=x, y=y) for x, y in face.landmarks.tolist()],
            crop=np.ascontiguousarray(face.crop, dtype=np.uint8).tobytes(),
        )
    return event


def analyzed_from_event(event: events_pb2.FacesEvent) -> AnalyzedImage:
    """The detector's result back as the core's ``AnalyzedImage`` (crops included)."""
    faces = []
    for face in event.faces:
        if len(face.crop) != CROP_BYTES or len(face.landmarks) != 5:
            raise BadMessageError(
                f"face {face.index} of {event.image_id}: a crop must be {CROP_BYTES} bytes "
                f"and there must be 5 landmarks"
            )
        crop = np.frombuffer(face.crop, dtype=np.uint8).reshape(ALIGNED_SIZE, ALIGNED_SIZE, 3)
        landmarks = np.array([(p.x, p.y) for p in face.landmarks], dtype=np.float32)
        box = box_from_proto(face.box)
        faces.append(DetectedFace(face.index, box, face.det_score, landmarks, crop, face.quality))
    return AnalyzedImage(event.image_id, event.width, event.height, faces)


def embeddings_event(
    event: events_pb2.FacesEvent, vectors: np.ndarray, model: str
) -> events_pb2.EmbeddingsEvent:
    """What the embedder publishes: the detector's event with a vector per face."""
    out = events_pb2.EmbeddingsEvent(
        image_id=event.image_id,
        meta=event.meta,
        width=event.width,
        height=event.height,
        model=model,
        submitted_at=event.submitted_at,
        unindexed=event.unindexed,
    )
    if event.HasField("frame"):
        out.frame.CopyFrom(event.frame)
    for face, vector in zip(event.faces, vectors, strict=True):
        out.faces.add(
            face_index=face.index,
            box=face.box,
            det_score=face.det_score,
            quality=face.quality,
            vector=vector.tolist(),
        )
    return out


def records_from_embeddings(
    event: events_pb2.EmbeddingsEvent, dim: int
) -> tuple[ImageRecord, list[FaceRecord]]:
    """The image record and face records the search service stores."""
    meta = meta_from_proto(event.meta)
    image = image_record(
        event.image_id, meta, len(event.faces), event.model, event.width, event.height
    )
    unindexed = tuple(unindexed_from_proto(face) for face in event.unindexed)
    return replace(image, unindexed=unindexed), _embedded_faces(event, dim)


def frame_from_embeddings(event: events_pb2.EmbeddingsEvent, dim: int) -> FrameFaces:
    """The faces of one video frame, as the search service keeps them until the last."""
    frame = event.frame
    return FrameFaces(
        event.image_id, frame.sample, frame.ms, frame.cut, _embedded_faces(event, dim)
    )


def _embedded_faces(event: events_pb2.EmbeddingsEvent, dim: int) -> list[FaceRecord]:
    if any(len(face.vector) != dim for face in event.faces):
        raise BadMessageError(f"{event.image_id}: every vector must have {dim} values")
    return [
        FaceRecord(
            event.image_id,
            f.face_index,
            box_from_proto(f.box),
            f.det_score,
            f.quality,
            list(f.vector),
        )
        for f in event.faces
    ]


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def audit_to_proto(record: AuditRecord) -> events_pb2.AuditRecord:
    return events_pb2.AuditRecord(**record.to_json())


def audit_from_proto(message: events_pb2.AuditRecord) -> AuditRecord:
    fields = {name: getattr(message, name) for name in AuditRecord.__dataclass_fields__}
    fields["face_hashes"] = list(message.face_hashes)
    fields["decisions"] = dict(message.decisions)
    return AuditRecord(**fields)


def parse_audit(data: bytes) -> AuditRecord:
    """An audit record from Kafka bytes; garbage is a ``BadMessageError``."""
    message = events_pb2.AuditRecord()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise BadMessageError(f"not an AuditRecord: {exc}") from exc
    if not message.method:
        raise BadMessageError("an AuditRecord without a method")
    return audit_from_proto(message)
