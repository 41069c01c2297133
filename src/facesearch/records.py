"""Plain records that cross module (and later service) boundaries."""

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageMeta:
    """Where an image came from and how the user labelled it."""

    source_uri: str  # the URL the user gave, or the file's absolute path
    path: str = ""  # the local file it was read from, if any
    label: str = ""
    collection: str = "default"


@dataclass(frozen=True)
class VideoSpan:
    """Where a face of a video was seen: its track's first and last sampled frame and the
    frame this face was taken from (milliseconds from the start)."""

    video_id: str
    track_id: int
    t_start_ms: int
    t_end_ms: int
    best_ms: int

    def payload(self) -> dict[str, Any]:
        # frame_ms: the time of the frame a point was taken from (docs/architecture.md).
        return {**asdict(self), "frame_ms": self.best_ms}


@dataclass(frozen=True)
class FaceRecord:
    """One indexed face; ``vector`` is L2-normalised. ``video`` is set for a face of a video
    (its ``image_id`` is then the video's id)."""

    image_id: str
    face_index: int
    box: Box
    det_score: float
    quality: float
    vector: list[float] = field(repr=False)
    video: VideoSpan | None = None


@dataclass(frozen=True)
class Rejection:
    """Why a face fails the quality gate: the measured value and the limit it missed."""

    reason: str  # too_small | blurred | extreme_pose | low_confidence | opted_out
    value: float
    limit: float

    def describe(self) -> str:
        # opted_out: the similarity to an opt-out at or above the opt-out threshold.
        side = "above" if self.reason in ("extreme_pose", "opted_out") else "below"
        return f"{self.reason} ({self.value:.3g} {side} {self.limit:.3g})"


@dataclass(frozen=True)
class UnindexedFace:
    """A face kept out of the index (Rekognition's UnindexedFaces): by the quality gate, or
    because it matches an opt-out (``optout``)."""

    index: int
    box: Box
    rejection: Rejection


@dataclass(frozen=True)
class FrameFaces:
    """The faces of one sampled frame of a video, as the search service keeps them until the
    video's last frame arrives and its faces can be tracked (``faces``: image_id is the
    video's id, face_index the face's place in the frame)."""

    video_id: str
    sample: int  # 0, 1, 2... in order
    ms: int
    cut: bool
    faces: list[FaceRecord]


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    meta: ImageMeta
    faces: int
    model: str
    width: int
    height: int
    ingested_at: str  # ISO 8601, UTC
    kind: str = "image"  # image | video
    duration_ms: int = 0  # videos only
    tracks: int = 0  # videos only: face tracks found; ``faces`` counts the points stored
    unindexed: tuple[UnindexedFace, ...] = ()  # faces the quality gate kept out

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "image_id": self.image_id,
            **asdict(self.meta),
            "faces": self.faces,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "ingested_at": self.ingested_at,
        }
        if self.kind != "image":  # still images keep the payload they always had
            payload.update(kind=self.kind, duration_ms=self.duration_ms, tracks=self.tracks)
        if self.unindexed:
            payload["unindexed"] = [
                {"face_index": f.index, "bbox": list(f.box), **asdict(f.rejection)}
                for f in self.unindexed
            ]
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ImageRecord":
        meta = ImageMeta(
            source_uri=payload.get("source_uri", ""),
            path=payload.get("path", ""),
            label=payload.get("label", ""),
            collection=payload.get("collection", "default"),
        )
        return cls(
            image_id=payload["image_id"],
            meta=meta,
            faces=int(payload.get("faces", 0)),
            model=payload.get("model", ""),
            width=int(payload.get("width", 0)),
            height=int(payload.get("height", 0)),
            ingested_at=payload.get("ingested_at", ""),
            kind=payload.get("kind", "image"),
            duration_ms=int(payload.get("duration_ms", 0)),
            tracks=int(payload.get("tracks", 0)),
            unindexed=tuple(_unindexed(f) for f in payload.get("unindexed", [])),
        )


@dataclass(frozen=True)
class Match:
    """A stored face that resembles a query face; ``score`` is cosine similarity. A face of a
    video has its ``video_id`` (empty for still images) and times in milliseconds: its track's
    first and last sampled frame and the frame of this face (``best_ms``); -1 for images.
    ``decision`` is what a gateway said the score means ("match", "possible", "no_match");
    empty where nobody said (the embedded search: output decides with the local calibration)."""

    score: float
    image_id: str
    face_index: int
    box: Box
    source_uri: str
    path: str
    label: str
    collection: str
    det_score: float
    video_id: str = ""
    t_start_ms: int = -1
    t_end_ms: int = -1
    best_ms: int = -1
    track_id: int = -1
    decision: str = ""


@dataclass(frozen=True)
class Selector:
    """What to delete: exactly one of image id, label or source URI."""

    image_id: str = ""
    label: str = ""
    source_uri: str = ""

    def pairs(self) -> list[tuple[str, str]]:
        """The (field, value) pairs given, in field order (payload field names)."""
        given = (
            ("image_id", self.image_id),
            ("label", self.label),
            ("source_uri", self.source_uri),
        )
        return [(key, value) for key, value in given if value]


@dataclass(frozen=True)
class Erasure:
    """The receipt of a delete: what was asked, when the index recorded it, and what it removed.
    Whoever asked keeps it as proof; nothing stores it (the search service logs the id and the
    counts, never the selector)."""

    selector: Selector
    images: int  # image (and video) records removed
    faces: int
    collections: dict[str, int]  # images removed, by collection
    deleted_at: datetime  # timezone-aware UTC: the tombstone's time
    receipt_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "deleted_at": self.deleted_at.isoformat().replace("+00:00", "Z"),
            "selector": {key: value for key, value in self.selector.pairs()},
            "images": self.images,
            "faces": self.faces,
            "collections": dict(sorted(self.collections.items())),
        }


@dataclass(frozen=True)
class Tombstone:
    """A delete as the search stage remembers it: events of this image id, label or source
    submitted at or before ``deleted_at`` are dropped, not indexed."""

    field: str  # image_id | label | source_uri
    value: str
    deleted_at: datetime  # timezone-aware UTC
    receipt_id: str


@dataclass(frozen=True)
class OptOut:
    """One entry of the opt-out gallery: the face of a person who asked never to be indexed or
    found (``optout``). ``vector`` is L2-normalised, of the index's model."""

    optout_id: str
    vector: list[float] = field(repr=False)
    note: str = ""
    created_at: str = ""  # ISO 8601, UTC
    model: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "optout_id": self.optout_id,
            "note": self.note,
            "created_at": self.created_at,
            "model": self.model,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], vector: list[float]) -> "OptOut":
        return cls(
            optout_id=str(payload.get("optout_id", "")),
            vector=vector,
            note=str(payload.get("note", "")),
            created_at=str(payload.get("created_at", "")),
            model=str(payload.get("model", "")),
        )


@dataclass(frozen=True)
class OptOutErasure:
    """The receipt of an opt-out's erasure, as a delete's (``Erasure``) is of a delete: how many
    faces of how many images (their records stay, telling which faces went), faces by
    collection, when, and an id to quote. Whoever asked keeps it; nothing stores it."""

    faces: int = 0
    images: int = 0
    collections: dict[str, int] = field(default_factory=dict)  # faces erased, by collection
    erased_at: str = ""  # ISO 8601, UTC
    receipt_id: str = ""


@dataclass(frozen=True)
class Filters:
    """Restrict a search to a label, a source or a collection (empty means any)."""

    label: str = ""
    source_uri: str = ""
    collection: str = ""


@dataclass(frozen=True)
class StoreStats:
    images: int
    images_with_faces: int
    faces: int
    labels: dict[str, int]
    model: str
    collection: str
    location: str


def _unindexed(payload: dict[str, Any]) -> UnindexedFace:
    x1, y1, x2, y2 = (float(v) for v in payload.get("bbox", (0, 0, 0, 0)))
    rejection = Rejection(
        str(payload.get("reason", "")),
        float(payload.get("value", 0.0)),
        float(payload.get("limit", 0.0)),
    )
    return UnindexedFace(int(payload.get("face_index", 0)), (x1, y1, x2, y2), rejection)
