"""Records <-> the payloads the face stores keep (``store`` on qdrant-client, ``edge_store`` on
Qdrant Edge), and the payload fields that filters and selectors match: one definition, so both
stores write and read the same points."""

from datetime import UTC, datetime, timedelta
from typing import Any

from facesearch.errors import StoreError
from facesearch.records import (
    Box,
    FaceRecord,
    Filters,
    FrameFaces,
    ImageRecord,
    Match,
    Selector,
    Tombstone,
)


def face_payload(image: ImageRecord, face: FaceRecord, model_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "image_id": image.image_id,
        "face_index": face.face_index,
        "source_uri": image.meta.source_uri,
        "path": image.meta.path,
        "label": image.meta.label,
        "collection": image.meta.collection,
        "bbox": list(face.box),
        "det_score": face.det_score,
        "quality": face.quality,
        "ingested_at": image.ingested_at,
        "model": model_id,
    }
    if face.video is not None:
        payload.update(face.video.payload())
    return payload


def frame_payload(frame: FrameFaces, model_id: str) -> dict[str, Any]:
    """A staged frame: its faces with their vectors, in the payload."""
    faces = [
        {
            "face_index": face.face_index,
            "bbox": list(face.box),
            "det_score": face.det_score,
            "quality": face.quality,
            "vector": face.vector,
        }
        for face in frame.faces
    ]
    return {
        "video_id": frame.video_id,
        "sample": frame.sample,
        "ms": frame.ms,
        "cut": frame.cut,
        "model": model_id,
        "faces": faces,
    }


def filter_pairs(filters: Filters) -> list[tuple[str, str]]:
    """The (field, value) pairs a query's faces must all match; blank values match anything."""
    pairs = (
        ("label", filters.label),
        ("source_uri", filters.source_uri),
        ("collection", filters.collection),
    )
    return [(key, value) for key, value in pairs if value]


def selector_pairs(selector: Selector) -> list[tuple[str, str]]:
    """The (field, value) pairs of what a delete names; an empty selector is refused."""
    chosen = selector.pairs()
    if not chosen:
        raise StoreError("nothing selected: give an image, a label or a source URL")
    return chosen


def tombstone_payload(tombstone: Tombstone) -> dict[str, Any]:
    """A tombstone's time in whole microseconds, as events' timestamps compare exactly."""
    return {
        "field": tombstone.field,
        "value": tombstone.value,
        "deleted_at_us": to_microseconds(tombstone.deleted_at),
        "receipt_id": tombstone.receipt_id,
    }


def tombstone_from_payload(payload: dict[str, Any]) -> Tombstone:
    return Tombstone(
        str(payload.get("field", "")),
        str(payload.get("value", "")),
        from_microseconds(int(payload.get("deleted_at_us", 0))),
        str(payload.get("receipt_id", "")),
    )


def to_microseconds(moment: datetime) -> int:
    delta = moment - datetime.fromtimestamp(0, UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_microseconds(micros: int) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=micros)


def _box(payload: dict[str, Any]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in payload.get("bbox", (0, 0, 0, 0)))
    return (x1, y1, x2, y2)


def face_from_payload(payload: dict[str, Any]) -> FaceRecord:
    """A stored face, without its vector."""
    return FaceRecord(
        payload.get("image_id", ""),
        int(payload.get("face_index", 0)),
        _box(payload),
        float(payload.get("det_score", 0.0)),
        float(payload.get("quality", 0.0)),
        [],
    )


def match_from_payload(score: float, payload: dict[str, Any]) -> Match:
    return Match(
        score=float(score),
        image_id=payload.get("image_id", ""),
        face_index=int(payload.get("face_index", 0)),
        box=_box(payload),
        source_uri=payload.get("source_uri", ""),
        path=payload.get("path", ""),
        label=payload.get("label", ""),
        collection=payload.get("collection", "default"),
        det_score=float(payload.get("det_score", 0.0)),
        video_id=payload.get("video_id", ""),
        t_start_ms=int(payload.get("t_start_ms", -1)),
        t_end_ms=int(payload.get("t_end_ms", -1)),
        best_ms=int(payload.get("best_ms", -1)),
        track_id=int(payload.get("track_id", -1)),
    )


def frame_from_payload(video_id: str, payload: dict[str, Any]) -> FrameFaces:
    faces = [
        FaceRecord(
            video_id,
            int(face.get("face_index", 0)),
            _box(face),
            float(face.get("det_score", 0.0)),
            float(face.get("quality", 0.0)),
            [float(v) for v in face.get("vector", [])],
        )
        for face in payload.get("faces", [])
    ]
    return FrameFaces(
        video_id,
        int(payload.get("sample", 0)),
        int(payload.get("ms", 0)),
        bool(payload.get("cut")),
        faces,
    )
