"""Opt-out by face: people who asked never to be indexed or found.

Each opt-out is one face embedding in the opt-out gallery, stored with the index (its own
collection, ``optouts__<model id>``, in every store), so every search replica and the embedded
CLI see the same gallery. A face "matches" an opt-out when its similarity to any entry reaches
``optout_threshold``; such a face

- is not indexed: it joins its image's unindexed faces with reason ``opted_out``
  (``screen_records``, called by the embedded indexer and the search service's handler);
- is erased from the index when the opt-out is added (``add_optout``: the faces a query with
  the opt-out's vector finds at the threshold, each image record told which faces went);
- as a query face, gets no results (``withhold``): a search with a photo of someone who opted
  out finds nothing for that face, and Compare leaves such faces out.

The gallery is small (people who opted out), so the processes that check it keep its vectors
in memory (``OptOutCheck``) and read it again when they change it or when it is older than a
few seconds (another replica may have changed it).
"""

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from facesearch.audit import embedding_hash
from facesearch.calibration import Calibration
from facesearch.errors import BadMessageError, NoFaceError
from facesearch.records import (
    Box,
    FaceRecord,
    Filters,
    ImageRecord,
    Match,
    OptOut,
    OptOutErasure,
    Rejection,
    UnindexedFace,
)

# The share of other people's faces allowed to match some opt-out, whatever the gallery's size
# (the calibration's FPIR, taken per face against the whole opt-out gallery). The `match`
# level's 1% would keep 1 face in 100 of everyone else out of the index and out of results: on
# lfw-devtest, with 180 people opted out, that cost the others 1.3 points of rank-1. At 0.05%
# (0.352 for 180 opt-outs) it costs them at most 0.43 points, and a lower threshold catches
# hardly more of the opted-out people's other photos (577 of 586 at 1%, 571 at 0.05%): those
# it misses are photos the model does not see as that person's at any usable threshold
# (bench/optout.py, README).
OPTOUT_FPIR = 5e-4
RELOAD_SECONDS = 5.0  # how stale a process's copy of the gallery may get (another replica's add)
ERASE_PAGE = 1000  # faces found and erased at a time
OPTED_OUT = "opted_out"  # the reason of a face kept out because it matches an opt-out
_NAMESPACE = uuid.UUID("0b5e3c1e-7f0a-5d55-8c0e-6a4f3f1d2c77")


class OptOutStore(Protocol):
    """What the opt-outs need of a face store (``store.FaceStore`` offers it)."""

    model_id: str
    collection: str

    def optouts(self) -> list[OptOut]: ...
    def put_optout(self, entry: OptOut) -> None: ...
    def get_image(self, image_id: str) -> ImageRecord | None: ...
    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> list[list[Match]]: ...
    def erase_faces(
        self, faces: Sequence[tuple[str, int]], images: Sequence[ImageRecord]
    ) -> None: ...


def optout_threshold(calibration: Calibration, optouts: int, fpir: float = OPTOUT_FPIR) -> float:
    """The similarity at which a face matches one of ``optouts`` opt-outs: ``fpir`` of other
    people's faces reach it, and never below the `match` decision for a gallery of that many
    faces."""
    size = max(1, optouts)
    strict = calibration.threshold_for(fpir, size)
    return max(strict, calibration.decisions(size).match_threshold)


@dataclass(frozen=True)
class OptOutGallery:
    """The opt-outs' vectors (rows, L2-normalised) and the threshold they are matched at."""

    vectors: np.ndarray
    threshold: float

    @classmethod
    def of(cls, entries: Sequence[OptOut], calibration: Calibration, dim: int) -> "OptOutGallery":
        vectors = np.array([e.vector for e in entries], dtype=np.float32).reshape(-1, dim)
        return cls(vectors, optout_threshold(calibration, len(entries)))

    @classmethod
    def empty(cls, dim: int) -> "OptOutGallery":
        return cls(np.zeros((0, dim), np.float32), 1.0)

    def best(self, vectors: np.ndarray) -> np.ndarray:
        """Per vector, its highest similarity to an opt-out (-1 with no opt-out)."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        if not len(self.vectors) or not len(vectors):
            return np.full(len(vectors), -1.0, np.float32)
        return np.asarray((vectors @ self.vectors.T).max(axis=1))

    def matching(self, vectors: np.ndarray) -> np.ndarray:
        """Per vector, whether it matches an opt-out."""
        return self.best(vectors) >= self.threshold


class OptOutCheck:
    """A process's copy of a store's opt-out gallery: read at first use, again after
    ``changed`` (this process added or removed one) and once it is ``reload_s`` old."""

    def __init__(
        self,
        store: OptOutStore,
        calibration: Calibration,
        dim: int,
        reload_s: float = RELOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.calibration = calibration
        self.dim = dim
        self.reload_s = reload_s
        self.clock = clock
        self._gallery: OptOutGallery | None = None
        self._read_at = 0.0

    def gallery(self) -> OptOutGallery:
        now = self.clock()
        if self._gallery is None or now - self._read_at >= self.reload_s:
            entries = self.store.optouts()
            self._gallery = OptOutGallery.of(entries, self.calibration, self.dim)
            self._read_at = now
        return self._gallery

    def changed(self) -> None:
        self._gallery = None


def optout_id(vector: Sequence[float] | np.ndarray, model_id: str) -> str:
    """The entry's id: the same face vector opted out twice is one entry."""
    return str(uuid.uuid5(_NAMESPACE, f"optout/{embedding_hash(vector)}/{model_id}"))


def require_optout_id(text: str) -> str:
    """An opt-out id as the stores take it (a UUID, lower case); anything else is refused."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError as exc:
        raise BadMessageError(
            f"{text!r} is not an opt-out id (a UUID); `facesearch optout list` shows them"
        ) from exc


def new_optout(vector: np.ndarray, note: str, model_id: str) -> OptOut:
    created = datetime.now(UTC).isoformat(timespec="seconds")
    values = [float(v) for v in np.asarray(vector, dtype=np.float32)]
    return OptOut(optout_id(values, model_id), values, note, created, model_id)


def add_optout(
    store: OptOutStore, check: OptOutCheck, vector: np.ndarray, note: str
) -> tuple[OptOut, OptOutErasure]:
    """Add the face to the opt-out gallery, then erase every indexed face that matches it.
    The entry is written first: a crash before the erasure ends leaves the faces still to
    erase findable by adding the same photo again (the same id)."""
    entry = new_optout(vector, note, store.model_id)
    store.put_optout(entry)
    check.changed()
    return entry, erase_matching(store, np.asarray(entry.vector), check.gallery().threshold)


def erase_matching(store: OptOutStore, vector: np.ndarray, threshold: float) -> OptOutErasure:
    """Erase the indexed faces scoring ``threshold`` or more against ``vector``, a page at a
    time until none is left; each image record keeps the face among its unindexed ones."""
    images, collections = set[str](), Counter[str]()
    query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    while True:
        found = store.query(query, ERASE_PAGE, threshold, Filters())[0]
        if not found:
            break
        records = _records_without(store, found, threshold)
        store.erase_faces([(m.image_id, m.face_index) for m in found], records)
        images.update(m.image_id for m in found)
        collections.update(m.collection or "default" for m in found)
    return OptOutErasure(
        faces=sum(collections.values()),
        images=len(images),
        collections=dict(sorted(collections.items())),
        erased_at=datetime.now(UTC).isoformat(timespec="seconds"),
        receipt_id=str(uuid.uuid4()),
    )


def _records_without(
    store: OptOutStore, found: Sequence[Match], threshold: float
) -> list[ImageRecord]:
    """The records of the images these faces belong to, with them moved to ``unindexed``."""
    by_image: dict[str, list[Match]] = defaultdict(list)
    for match in found:
        by_image[match.image_id].append(match)
    records = []
    for image_id, matches in by_image.items():
        record = store.get_image(image_id)
        if record is None:  # faces written, record not yet (a crash between): faces only
            continue
        gone = tuple(_unindexed(m.face_index, m.box, m.score, threshold) for m in matches)
        records.append(
            replace(
                record, faces=max(0, record.faces - len(gone)), unindexed=record.unindexed + gone
            )
        )
    return records


def _unindexed(index: int, box: Box, score: float, threshold: float) -> UnindexedFace:
    return UnindexedFace(index, box, Rejection(OPTED_OUT, round(score, 4), round(threshold, 4)))


def screen_records(
    image: ImageRecord, faces: Sequence[FaceRecord], gallery: OptOutGallery
) -> tuple[ImageRecord, list[FaceRecord]]:
    """The image's records with the faces that match an opt-out left out, listed among its
    unindexed faces (reason ``opted_out``)."""
    if not faces or not len(gallery.vectors):
        return image, list(faces)
    best = gallery.best(np.array([face.vector for face in faces], dtype=np.float32))
    kept = [face for face, score in zip(faces, best, strict=True) if score < gallery.threshold]
    if len(kept) == len(faces):
        return image, kept
    out = tuple(
        _unindexed(face.face_index, face.box, float(score), gallery.threshold)
        for face, score in zip(faces, best, strict=True)
        if score >= gallery.threshold
    )
    return replace(image, faces=len(kept), unindexed=image.unindexed + out), kept


def withhold(
    results: list[list[Match]], vectors: np.ndarray, gallery: OptOutGallery
) -> tuple[list[list[Match]], int]:
    """The results with those of query faces matching an opt-out emptied, and how many were."""
    if not len(gallery.vectors) or not results:
        return results, 0
    matching = gallery.matching(vectors)
    kept = [[] if hit else found for found, hit in zip(results, matching, strict=True)]
    return kept, int(matching.sum())


@dataclass(frozen=True)
class PhotoFace:
    """A face of an opt-out photo, as the detector saw it."""

    index: int
    box: Box
    det_score: float


def pick_face(faces: Sequence[PhotoFace], face_index: int | None) -> int:
    """The position in ``faces`` of the face to opt out: the only one, or the one
    ``face_index`` names. No face, or several without a choice, is an error listing them."""
    if not faces:
        raise NoFaceError("no face found in the opt-out photo; send a photo that shows the face")
    if face_index is None:
        if len(faces) == 1:
            return 0
        raise BadMessageError(
            f"the opt-out photo has {len(faces)} faces; say which with --face-index "
            f"(face_index in the API): {describe_faces(faces)}"
        )
    for position, face in enumerate(faces):
        if face.index == face_index:
            return position
    raise BadMessageError(
        f"the opt-out photo has no face {face_index}; its faces: {describe_faces(faces)}"
    )


def describe_faces(faces: Sequence[PhotoFace]) -> str:
    return "; ".join(
        f"{f.index} at ({', '.join(f'{v:.0f}' for v in f.box)}), det_score {f.det_score:.2f}"
        for f in faces
    )
