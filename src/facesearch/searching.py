"""Search a query image: every face in it, each with its best matches and what their scores
mean. One function, ``search_image``, for every way to run: its three steps (detect, embed,
query) run in this process (``LocalSteps``) or through the services (the gateway's steps).
Decisions are taken for the gallery the query ran against: the faces its filters leave
(``calibration.Calibration.decisions``)."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from facesearch.audit import AuditRecord, embedding_hash
from facesearch.calibration import Calibration, Decisions
from facesearch.errors import NoFaceError
from facesearch.faces import check_quality
from facesearch.models import FaceModels
from facesearch.optout import OptOutCheck, withhold
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
    """A search's answer: every query face with its matches, the model, the lowest score shown
    and the decisions of the gallery searched; where it ran, the hash of each query face's
    embedding (audit.embedding_hash: what the audit trail keeps of the query)."""

    faces: list[QueryFace]
    model: str
    threshold: float
    decisions: Decisions
    face_hashes: tuple[str, ...] = ()


class Queried(NamedTuple):
    """Per query vector its matches, the model id of the vectors, the faces the filters left
    to compare with, and the hash of each query vector."""

    results: list[list[Match]]
    model: str
    gallery_faces: int
    face_hashes: tuple[str, ...] = ()


class QuerySteps(Protocol, Generic[D, V]):
    """The three steps of a query, wherever they run."""

    def detect(self, image: bytes) -> tuple[list[SeenFace], D]: ...

    def embed(self, detected: D) -> V: ...

    def query(self, vectors: V, top_k: int, threshold: float, filters: Filters) -> Queried:
        """Per face, its matches at or above ``threshold``."""
        ...


def search_image(
    steps: QuerySteps[D, V],
    image: bytes,
    top_k: int,
    threshold: float | None,
    filters: Filters,
    calibration: Calibration,
) -> Found:
    """Every face of ``image`` with its ``top_k`` best matches scoring ``threshold`` or more
    (None: the ``possible`` threshold of the gallery searched), each carrying its decision for
    that gallery; no face at all is an error."""
    seen, detected = steps.detect(image)
    require_faces(seen)
    # The gallery's size is known with the answer: ask from the lowest threshold any gallery
    # has, then cut. The best top_k from there, cut, are the best top_k above the cut.
    asked = calibration.lowest_possible() if threshold is None else threshold
    queried = steps.query(steps.embed(detected), top_k, asked, filters)
    decisions = calibration.decisions(queried.gallery_faces)
    shown = decisions.possible_threshold if threshold is None else threshold
    faces = [
        QueryFace(
            f.index,
            f.box,
            f.det_score,
            f.quality,
            [replace(m, decision=decisions.decide(m.score)) for m in matches if m.score >= shown],
            f.warning,
        )
        for f, matches in zip(seen, queried.results, strict=True)
    ]
    return Found(faces, queried.model, shown, decisions, queried.face_hashes)


def note_search(note: AuditRecord, found: Found) -> None:
    """What a search's audit record keeps of its answer: the query faces as hashes, the
    matches shown and their decisions."""
    note.query_faces, note.face_hashes = len(found.faces), list(found.face_hashes)
    shown = [m.decision for face in found.faces for m in face.matches]
    note.results = len(shown)
    note.count_decisions(shown)


def require_faces(faces: Sequence[object]) -> None:
    if not faces:
        raise NoFaceError("no face found in the query image")


class LocalSteps:
    """The steps in this process: the models and the store; a query face that matches an
    opt-out gets no results (``optout.withhold``)."""

    def __init__(
        self,
        models: FaceModels,
        store: FaceStore,
        settings: CoreSettings,
        optouts: OptOutCheck | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.settings = settings
        self.optouts = optouts

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

    def query(self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters) -> Queried:
        matches = self.store.query(vectors, top_k, threshold, filters)
        if self.optouts is not None:
            matches, _ = withhold(matches, vectors, self.optouts.gallery())
        hashes = tuple(embedding_hash(v) for v in vectors)
        return Queried(matches, self.models.model_id, self.store.count_faces(filters), hashes)


def query_faces(
    data: bytes, models: FaceModels, settings: CoreSettings
) -> tuple[AnalyzedImage, np.ndarray]:
    """The faces of a query image and their embeddings; no face at all is an error."""
    analyzed = analyze(data, models, settings)
    require_faces(analyzed.faces)
    return analyzed, embed(models, analyzed)
