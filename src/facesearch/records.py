"""Plain records that cross module (and later service) boundaries."""

from dataclasses import asdict, dataclass, field
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
class FaceRecord:
    """One indexed face; ``vector`` is L2-normalised."""

    image_id: str
    face_index: int
    box: Box
    det_score: float
    quality: float
    vector: list[float] = field(repr=False)


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    meta: ImageMeta
    faces: int
    model: str
    width: int
    height: int
    ingested_at: str  # ISO 8601, UTC

    def payload(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            **asdict(self.meta),
            "faces": self.faces,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "ingested_at": self.ingested_at,
        }

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
        )


@dataclass(frozen=True)
class Match:
    """A stored face that resembles a query face; ``score`` is cosine similarity."""

    score: float
    image_id: str
    face_index: int
    box: Box
    source_uri: str
    path: str
    label: str
    collection: str
    det_score: float


@dataclass(frozen=True)
class Selector:
    """What to delete: exactly one of image id, label or source URI."""

    image_id: str = ""
    label: str = ""
    source_uri: str = ""


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
