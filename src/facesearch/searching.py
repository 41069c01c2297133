"""Search a query image: every face in it, each with its best matches and what their scores
mean. One function, ``search_image``, for every way to run: its three steps (detect, embed,
query) run in this process (``LocalSteps``) or through the services (the gateway's steps)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from facesearch.calibration import decide
from facesearch.errors import NoFaceError
from facesearch.faces import check_quality
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, analyze, embed
from facesearch.records import Box, Filters, Match, Rejection
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore

D = TypeVar("D")  # the detected faces, as the embed step takes them
V = TypeVar("V")  # their vectors, as the query step takes them


@dataclass(frozen=True)
class SeenFace:
    """A face of the query image as the detector saw it; ``warning`` is set when it fails the
    indexing quality gate: it is searched all the same, but its matches deserve less trust."""

    index: int
    box: Box
    det_score: float
    quality: float
    warning: Rejection | None = None


@dataclass(frozen=True)
class QueryFace:
    index: int
    box: Box
    det_score: float
    quality: float
    matches: list[Match]
    warning: Rejection | None = None


class Found(NamedTuple):
    """A search's answer: every query face with its matches, the model and the threshold."""

    faces: list[QueryFace]
    model: str
    threshold: float


class QuerySteps(Protocol, Generic[D, V]):
    """The three steps of a query, wherever they run."""

    def detect(self, image: bytes) -> tuple[list[SeenFace], D]: ...

    def embed(self, detected: D) -> V: ...

    def query(
        self, vectors: V, top_k: int, threshold: float, filters: Filters
    ) -> tuple[list[list[Match]], str]:
        """Per face, its matches at or above ``threshold``; and the model id of the vectors."""
        ...


def search_image(
    steps: QuerySteps[D, V],
    image: bytes,
    top_k: int,
    threshold: float,
    filters: Filters,
    points: Mapping[float, float],
) -> Found:
    """Every face of ``image`` with its ``top_k`` best matches, each carrying its decision at
    the operating points ``points``; no face at all is an error."""
    seen, detected = steps.detect(image)
    require_faces(seen)
    results, model = steps.query(steps.embed(detected), top_k, threshold, filters)
    faces = [
        QueryFace(f.index, f.box, f.det_score, f.quality, decided(matches, points), f.warning)
        for f, matches in zip(seen, results, strict=True)
    ]
    return Found(faces, model, threshold)


def decided(matches: list[Match], points: Mapping[float, float]) -> list[Match]:
    return [replace(match, decision=decide(match.score, points)) for match in matches]


def require_faces(faces: Sequence[object]) -> None:
    if not faces:
        raise NoFaceError("no face found in the query image")


class LocalSteps:
    """The steps in this process: the models and the store."""

    def __init__(self, models: FaceModels, store: FaceStore, settings: CoreSettings) -> None:
        self.models = models
        self.store = store
        self.settings = settings

    def detect(self, image: bytes) -> tuple[list[SeenFace], AnalyzedImage]:
        analyzed = analyze(image, self.models, self.settings)
        gate = self.settings.quality
        seen = [
            SeenFace(f.index, f.box, f.det_score, f.quality, check_quality(f, gate))
            for f in analyzed.faces
        ]
        return seen, analyzed

    def embed(self, detected: AnalyzedImage) -> np.ndarray:
        return embed(self.models, detected)

    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> tuple[list[list[Match]], str]:
        return self.store.query(vectors, top_k, threshold, filters), self.models.model_id


def query_faces(
    data: bytes, models: FaceModels, settings: CoreSettings
) -> tuple[AnalyzedImage, np.ndarray]:
    """The faces of a query image and their embeddings; no face at all is an error."""
    analyzed = analyze(data, models, settings)
    require_faces(analyzed.faces)
    return analyzed, embed(models, analyzed)
