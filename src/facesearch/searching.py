"""Search a query image: every face in it, each with its best matches in the store."""

from dataclasses import dataclass

import numpy as np

from facesearch.errors import NoFaceError
from facesearch.faces import check_quality
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, analyze, embed
from facesearch.records import Box, Filters, Match, Rejection
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore


@dataclass(frozen=True)
class QueryFace:
    index: int
    box: Box
    det_score: float
    quality: float
    matches: list[Match]
    # Set when the face fails the indexing quality gate: it is searched all the same, but its
    # matches deserve less trust (through a gateway: the detector's verdict, QueryFace.warning).
    warning: Rejection | None = None


def query_faces(
    data: bytes, models: FaceModels, settings: CoreSettings
) -> tuple[AnalyzedImage, np.ndarray]:
    """The faces of a query image and their embeddings; no face at all is an error."""
    analyzed = analyze(data, models, settings)
    if not analyzed.faces:
        raise NoFaceError("no face found in the query image")
    return analyzed, embed(models, analyzed)


def search_image(
    data: bytes,
    models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
    top_k: int,
    threshold: float,
    filters: Filters,
) -> list[QueryFace]:
    analyzed, vectors = query_faces(data, models, settings)
    results = store.query(vectors, top_k, threshold, filters)
    gate = settings.quality
    return [
        QueryFace(
            face.index, face.box, face.det_score, face.quality, matches, check_quality(face, gate)
        )
        for face, matches in zip(analyzed.faces, results, strict=True)
    ]
