"""The work of one image, as functions from bytes to records: decode and detect (the detector's
step), embed (the embedder's step) and records for the store (the search service's step)."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from facesearch.detection import DetectorInput
from facesearch.faces import DetectedFace, check_quality, detect_faces, embed_faces
from facesearch.ids import image_id as compute_image_id
from facesearch.images import decode_image
from facesearch.models import FaceModels
from facesearch.records import FaceRecord, ImageMeta, ImageRecord, UnindexedFace
from facesearch.settings import CoreSettings, QualityGate


@dataclass(frozen=True)
class AnalyzedImage:
    image_id: str
    width: int
    height: int
    faces: list[DetectedFace]


def analyze(data: bytes, models: FaceModels, settings: CoreSettings) -> AnalyzedImage:
    """Decode the bytes within the limits and find every face (raises FaceSearchError)."""
    return analyze_decoded(
        compute_image_id(data), decode_image(data, settings.limits), models, settings
    )


def analyze_decoded(
    image_id: str,
    bgr: np.ndarray,
    models: FaceModels,
    settings: CoreSettings,
    prepared: DetectorInput | None = None,
) -> AnalyzedImage:
    """Find every face of an image already decoded (see ``images.decode_image``), from its
    detector input if that was made ahead (see ``detection.prepare_input``)."""
    faces = detect_faces(models, bgr, settings.max_faces_per_image, prepared)
    return AnalyzedImage(image_id, bgr.shape[1], bgr.shape[0], faces)


def apply_gate(
    analyzed: AnalyzedImage, gate: QualityGate
) -> tuple[AnalyzedImage, list[UnindexedFace]]:
    """The image with only the faces that pass the gate (their indexes unchanged, so point ids
    stay stable), and the others with the reason each failed."""
    kept: list[DetectedFace] = []
    unindexed: list[UnindexedFace] = []
    for face in analyzed.faces:
        rejection = check_quality(face, gate)
        if rejection is None:
            kept.append(face)
        else:
            unindexed.append(UnindexedFace(face.index, face.box, rejection))
    return replace(analyzed, faces=kept), unindexed


def image_record(
    image_id: str, meta: ImageMeta, faces: int, model_id: str, width: int, height: int
) -> ImageRecord:
    """An image's record, stamped with the time it is stored."""
    ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
    return ImageRecord(image_id, meta, faces, model_id, width, height, ingested_at)


def to_records(
    analyzed: AnalyzedImage,
    vectors: np.ndarray,
    meta: ImageMeta,
    model_id: str,
    unindexed: Sequence[UnindexedFace] = (),
) -> tuple[ImageRecord, list[FaceRecord]]:
    """The image record (with the faces the quality gate kept out) and one face record per
    detected face, ready for the store."""
    image = image_record(
        analyzed.image_id, meta, len(analyzed.faces), model_id, analyzed.width, analyzed.height
    )
    image = replace(image, unindexed=tuple(unindexed))
    faces = [
        FaceRecord(
            image_id=analyzed.image_id,
            face_index=face.index,
            box=face.box,
            det_score=face.det_score,
            quality=face.quality,
            vector=vector.tolist(),
        )
        for face, vector in zip(analyzed.faces, vectors, strict=True)
    ]
    return image, faces


def embed(models: FaceModels, analyzed: AnalyzedImage) -> np.ndarray:
    return embed_faces(models, analyzed.faces)
