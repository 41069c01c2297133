"""The face store: the one place that talks to Qdrant, through qdrant-client (its local mode, or
a Qdrant server). ``edge_store`` keeps the same collections on Qdrant Edge; ``FaceStore`` is
what both offer, and ``stores.open_store`` picks one from the settings.

Two collections: ``faces__<model id>`` (one point per face, cosine, behind the alias ``faces``)
and ``images`` (one vector-less point per image: where it came from and how many faces it had).
A third, ``video_frames``, keeps the faces of the sampled frames of videos the services are
still receiving (vector-less points, the vectors in the payload), until a video's last frame
arrives and its faces are tracked; then they are dropped. A fourth, ``tombstones``, keeps one
vector-less point per recent delete (its selector and time): the search stage drops what it
names that was submitted before it (see ``erasure``), and ``prune_tombstones`` forgets it once
no such event can be left in Kafka. A fifth, ``optouts__<model id>``, is the opt-out gallery
(``optout``): one point per face of a person who opted out, cosine, with its note and time.
Point ids are derived from content (see ``ids``), so every write is idempotent. Faces are
written before their image record: a crash in between leaves the image unrecorded, and the next
run indexes it again over the same ids.
"""

import dataclasses
import functools
import re
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from facesearch.errors import StoreError
from facesearch.ids import face_point_id, frame_point_id, image_point_id, tombstone_point_id
from facesearch.payloads import (
    face_from_payload,
    face_payload,
    filter_pairs,
    frame_from_payload,
    frame_payload,
    match_from_payload,
    selector_pairs,
    to_microseconds,
    tombstone_from_payload,
    tombstone_payload,
)
from facesearch.records import (
    Erasure,
    FaceRecord,
    Filters,
    FrameFaces,
    ImageRecord,
    Match,
    OptOut,
    Selector,
    StoreStats,
    Tombstone,
)
from facesearch.settings import HnswSettings

FACES_ALIAS = "faces"
IMAGES_COLLECTION = "images"
FRAMES_COLLECTION = "video_frames"
TOMBSTONES_COLLECTION = "tombstones"
KEYWORD, INTEGER = models.PayloadSchemaType.KEYWORD, models.PayloadSchemaType.INTEGER
# Payload indexes by field (a server's, and Qdrant Edge's): what filters, deletes and facets
# look at.
FACE_INDEXES = {name: KEYWORD for name in ("image_id", "label", "source_uri", "collection")}
IMAGE_INDEXES = {
    **{name: KEYWORD for name in ("image_id", "label", "source_uri", "model")},
    "faces": INTEGER,
}
FRAME_INDEXES = {"video_id": KEYWORD, "model": KEYWORD}
T = TypeVar("T", bound=Callable[..., Any])
P = TypeVar("P")
ImageItem = tuple[ImageRecord, list[FaceRecord]]  # an image record and its faces, with vectors
MAX_FACES_LISTED = 1000  # above the detector's per-image limit


class FaceStore(Protocol):
    """What every face store offers (``QdrantFaceStore``, ``edge_store.EdgeFaceStore``), with the
    same behaviour: the contract tests in tests/integration/test_store.py run on each. Opening
    is each store's own classmethod ``open``; ``stores.open_store`` chooses."""

    model_id: str
    dim: int
    location: str  # the folder or the server's URL, for messages and stats
    collection: str  # the faces collection: faces__<model id>

    def close(self) -> None: ...
    def get_image(self, image_id: str) -> ImageRecord | None: ...
    def get_faces(self, image_id: str) -> list[FaceRecord]: ...
    def put_images(self, items: Sequence[tuple[ImageRecord, Sequence[FaceRecord]]]) -> None: ...
    def stage_frame(self, frame: FrameFaces) -> None: ...
    def staged_frames(self, video_id: str) -> list[FrameFaces]: ...
    def drop_staged(self, video_id: str) -> None: ...
    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> list[list[Match]]: ...
    def count_faces(self, filters: Filters) -> int: ...
    def delete(self, selector: Selector, at: datetime | None = None) -> Erasure: ...
    def tombstones(self, pairs: Sequence[tuple[str, str]]) -> list[Tombstone]: ...
    def prune_tombstones(self, before: datetime) -> int: ...
    def stats(self) -> StoreStats: ...
    def collection_names(self) -> set[str]: ...
    def aliases(self) -> dict[str, str]: ...
    def export(self, batch: int) -> Iterator[list["ImageItem"]]: ...
    def export_staged(self) -> Iterator[list[FrameFaces]]: ...
    def optouts(self) -> list[OptOut]: ...
    def put_optout(self, entry: OptOut) -> None: ...
    def remove_optout(self, optout_id: str) -> bool: ...
    def erase_faces(
        self, faces: Sequence[tuple[str, int]], images: Sequence[ImageRecord]
    ) -> None: ...


def _locked(method: T) -> T:
    """Serialise the call, and turn Qdrant's own failures into a ``StoreError``."""

    @functools.wraps(method)
    def wrapper(self: "QdrantFaceStore", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except (ResponseHandlingException, UnexpectedResponse, sqlite3.Error, OSError) as exc:
                # A server's failure, or local mode's storage failing (disk full, read-only).
                raise StoreError(f"Qdrant at {self.location} failed: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def in_use(path: Path) -> StoreError:
    """An embedded index that another process holds (one process at a time per folder)."""
    return StoreError(
        f"the index at {path} is in use by another facesearch process; wait for it to finish "
        "or use another --data-dir"
    )


def with_vector(payload: dict[str, Any] | None, vector: Any) -> FaceRecord:
    """A stored face with its vector, as either client returns a point's vector."""
    if isinstance(vector, dict):  # named vectors; a face's is the unnamed one
        vector = vector.get("")
    return dataclasses.replace(face_from_payload(payload or {}), vector=list(vector or []))


FacesPage = Callable[[list[str], Any], tuple[list[FaceRecord], Any]]


def with_faces(images: list[ImageRecord], faces_page: FacesPage) -> list[ImageItem]:
    """Each image of a page with its faces, in face_index order; ``faces_page(image_ids,
    offset)`` reads the faces of those images a page at a time."""
    ids = [image.image_id for image in images]
    pages = paged(functools.partial(faces_page, ids)) if ids else iter([])
    faces = [face for page in pages for face in page]
    by_image: dict[str, list[FaceRecord]] = {image_id: [] for image_id in ids}
    for face in faces:
        by_image.setdefault(face.image_id, []).append(face)
    return [
        (image, sorted(by_image[image.image_id], key=lambda face: face.face_index))
        for image in images
    ]


def optout_from_point(payload: dict[str, Any] | None, vector: Any) -> OptOut:
    """An opt-out entry as either client returns its point."""
    if isinstance(vector, dict):
        vector = vector.get("")
    return OptOut.from_payload(payload or {}, [float(v) for v in vector or []])


def staged_from_payload(payload: dict[str, Any] | None) -> FrameFaces:
    payload = payload or {}
    return frame_from_payload(str(payload.get("video_id", "")), payload)


def paged(fetch: Callable[[Any], tuple[list[P], Any]]) -> Iterator[list[P]]:
    """The pages ``fetch(offset)`` returns, from the first until it gives no next offset."""
    offset: Any = None
    while True:
        page, offset = fetch(offset)
        if page:
            yield page
        if offset is None:
            return


def tombstone_for(selector: Selector, at: datetime | None) -> Tombstone:
    """The tombstone a delete records (a new receipt id; ``at`` defaults to now), or a
    ``StoreError`` for a selector of none or several fields."""
    pairs = selector_pairs(selector)
    if len(pairs) != 1:
        raise StoreError("a delete selects by exactly one of image id, label or source URL")
    (field, value), moment = pairs[0], at or datetime.now(UTC)
    return Tombstone(field, value, moment, uuid.uuid4().hex)


def later(tombstone: Tombstone, found: Sequence[Tombstone]) -> Tombstone:
    """The tombstone to keep: a delete of the same selector recorded later (by another replica's
    clock) already covers more submissions."""
    return max([tombstone, *found], key=lambda t: t.deleted_at)


def erasure(
    tombstone: Tombstone, selector: Selector, faces: int, collections: Iterable[str]
) -> Erasure:
    """The receipt of a delete: ``collections`` has one entry per image removed."""
    counted = Counter(collection or "default" for collection in collections)
    return Erasure(
        selector,
        sum(counted.values()),
        faces,
        dict(counted),
        tombstone.deleted_at,
        tombstone.receipt_id,
    )


def tombstone_ids(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [tombstone_point_id(field, value) for field, value in pairs if value]


def faces_collection_name(model_id: str) -> str:
    return "faces__" + re.sub(r"[^A-Za-z0-9_-]", "_", model_id)


def optouts_collection_name(model_id: str) -> str:
    """The opt-out gallery of a model: its vectors only compare with that model's faces."""
    return "optouts__" + re.sub(r"[^A-Za-z0-9_-]", "_", model_id)


class QdrantFaceStore:
    """Upsert, query, delete and count faces of one model.

    Safe to share between threads: qdrant-client's local mode is not, so calls are serialised.
    """

    def __init__(
        self,
        client: QdrantClient,
        model_id: str,
        dim: int,
        location: str,
        hnsw: HnswSettings | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.client = client
        self.model_id = model_id
        self.dim = dim
        self.location = location
        self.collection = faces_collection_name(model_id)
        self.optouts_collection = optouts_collection_name(model_id)
        local = not location.startswith(("http://", "https://"))
        # A server's HNSW graph and search ef (local mode searches exactly).
        self._hnsw = hnsw or HnswSettings()
        self._search = None if local else models.SearchParams(hnsw_ef=self._hnsw.ef)
        self._ensure_collections(local)
        if local:
            _fast_local_commits(client)

    @classmethod
    def open(
        cls, model_id: str, dim: int, path: Path, url: str = "", hnsw: HnswSettings | None = None
    ) -> "QdrantFaceStore":
        try:
            if url:
                # The client's version check only warns (this client is ahead of the servers it
                # is tested with, v1.18); the store's own calls fail clearly when unsupported.
                client = QdrantClient(url=url, timeout=30, check_compatibility=False)
            else:
                path.mkdir(parents=True, exist_ok=True)
                client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        except RuntimeError as exc:  # local mode's lock: one process per data directory
            raise in_use(path) from exc
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant at {url or path}: {exc}") from exc
        try:
            return cls(client, model_id, dim, url or str(path), hnsw)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            client.close()
            raise StoreError(f"cannot open Qdrant at {url or path}: {exc}") from exc
        except BaseException:
            client.close()  # releases local mode's lock on the folder
            raise

    @_locked
    def close(self) -> None:
        self.client.close()

    def _ensure_collections(self, local: bool) -> None:
        target = self._aliases().get(FACES_ALIAS, self.collection)
        if target != self.collection:
            raise StoreError(
                f"the index at {self.location} holds faces of {target.removeprefix('faces__')}, "
                f"but the configured model is {self.model_id}; use another --data-dir or the "
                "model the index was built with"
            )
        existing = {c.name for c in self.client.get_collections().collections}
        if self.collection not in existing:
            graph = models.HnswConfigDiff(m=self._hnsw.m, ef_construct=self._hnsw.ef_construct)
            vectors = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
            self._create_collection(self.collection, vectors, None if local else graph)
        for name in (IMAGES_COLLECTION, FRAMES_COLLECTION, TOMBSTONES_COLLECTION):
            if name not in existing:
                self._create_collection(name, {})
        if self.optouts_collection not in existing:  # small: searched exactly, no graph
            vectors = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
            self._create_collection(self.optouts_collection, vectors)
        if not local:
            self._ensure_indexes()
        self._ensure_alias()

    def _create_collection(
        self,
        name: str,
        vectors: models.VectorParams | dict[str, Any],
        graph: models.HnswConfigDiff | None = None,
    ) -> None:
        """Create a collection; one that another process (a search replica starting beside this
        one) created meanwhile is as good."""
        try:
            self.client.create_collection(name, vectors_config=vectors, hnsw_config=graph)
        except (UnexpectedResponse, ValueError):
            if not self.client.collection_exists(name):
                raise

    def _ensure_indexes(self) -> None:
        """A server's payload indexes on the fields filters and facets use (a facet needs one;
        local mode has none and scans). Idempotent: only the missing ones are created."""
        wanted = {
            self.collection: FACE_INDEXES,
            IMAGES_COLLECTION: IMAGE_INDEXES,
            FRAMES_COLLECTION: FRAME_INDEXES,
        }
        for collection, fields in wanted.items():
            have = self.client.get_collection(collection).payload_schema
            for field, schema in fields.items():
                if field not in have:
                    self.client.create_payload_index(collection, field, schema, wait=True)

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    @_locked
    def collection_names(self) -> set[str]:
        """The collections the index holds (what opening created, whatever the backend)."""
        return {c.name for c in self.client.get_collections().collections}

    @_locked
    def aliases(self) -> dict[str, str]:
        """Alias -> collection: ``faces`` names the faces collection of the index's model."""
        return self._aliases()

    def _ensure_alias(self) -> None:
        if FACES_ALIAS in self._aliases():
            return
        create = models.CreateAlias(collection_name=self.collection, alias_name=FACES_ALIAS)
        operation = models.CreateAliasOperation(create_alias=create)
        try:
            self.client.update_collection_aliases(change_aliases_operations=[operation])
        except (UnexpectedResponse, ValueError):
            if self._aliases().get(FACES_ALIAS) != self.collection:  # made meanwhile, alike
                raise

    @_locked
    def get_image(self, image_id: str) -> ImageRecord | None:
        found = self.client.retrieve(IMAGES_COLLECTION, [image_point_id(image_id)])
        return ImageRecord.from_payload(found[0].payload or {}) if found else None

    @_locked
    def get_faces(self, image_id: str) -> list[FaceRecord]:
        """The stored faces of one image, in face_index order, without their vectors."""
        condition = _match_all([("image_id", image_id)])
        points, _ = self.client.scroll(
            self.collection, scroll_filter=condition, limit=MAX_FACES_LISTED, with_vectors=False
        )
        faces = [face_from_payload(p.payload or {}) for p in points]
        return sorted(faces, key=lambda face: face.face_index)

    @_locked
    def put_images(self, items: Sequence[tuple[ImageRecord, Sequence[FaceRecord]]]) -> None:
        """Write faces, then image records; drop the faces an earlier run of an image stored
        that this one does not have (face indexes need not be contiguous: the quality gate
        and video tracks leave gaps)."""
        points = [self._face_point(image, face) for image, faces in items for face in faces]
        if points:
            self.client.upsert(self.collection, points, wait=True)
        stored = self._stored([image.image_id for image, _ in items])
        for image, faces in items:
            if image.image_id in stored:  # stored before: may have more faces
                self._drop_faces_but(image.image_id, [face.face_index for face in faces])
        records = [
            models.PointStruct(
                id=image_point_id(image.image_id), vector={}, payload=image.payload()
            )
            for image, _ in items
        ]
        if records:
            self.client.upsert(IMAGES_COLLECTION, records, wait=True)

    def _stored(self, image_ids: list[str]) -> set[str]:
        """Which of these images have a record already (one call for the whole batch)."""
        points = {image_point_id(image): image for image in image_ids}
        found = self.client.retrieve(IMAGES_COLLECTION, list(points), with_payload=False)
        return {points[str(point.id)] for point in found}

    def _drop_faces_but(self, image_id: str, kept: list[int]) -> None:
        others = models.FieldCondition(key="face_index", match=models.MatchAny(any=kept))
        condition = models.Filter(
            must=[models.FieldCondition(key="image_id", match=models.MatchValue(value=image_id))],
            must_not=[others] if kept else None,
        )
        self.client.delete(self.collection, models.FilterSelector(filter=condition), wait=True)

    def _face_point(self, image: ImageRecord, face: FaceRecord) -> models.PointStruct:
        point_id = face_point_id(image.image_id, face.face_index, self.model_id)
        payload = face_payload(image, face, self.model_id)
        return models.PointStruct(id=point_id, vector=face.vector, payload=payload)

    @_locked
    def stage_frame(self, frame: FrameFaces) -> None:
        """Keep one sampled frame's faces until its video's last frame (idempotent)."""
        payload = frame_payload(frame, self.model_id)
        point_id = frame_point_id(frame.video_id, frame.sample, self.model_id)
        point = models.PointStruct(id=point_id, vector={}, payload=payload)
        self.client.upsert(FRAMES_COLLECTION, [point], wait=True)

    @_locked
    def staged_frames(self, video_id: str) -> list[FrameFaces]:
        """The frames of a video kept so far, in sample order."""
        condition = self._staged(video_id)
        frames: list[FrameFaces] = []
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                FRAMES_COLLECTION, scroll_filter=condition, limit=256, offset=offset
            )
            frames.extend(frame_from_payload(video_id, p.payload or {}) for p in points)
            if offset is None:
                return sorted(frames, key=lambda frame: frame.sample)

    @_locked
    def drop_staged(self, video_id: str) -> None:
        selector = models.FilterSelector(filter=self._staged(video_id))
        self.client.delete(FRAMES_COLLECTION, selector, wait=True)

    def _staged(self, video_id: str) -> models.Filter:
        pairs = (("video_id", video_id), ("model", self.model_id))
        return models.Filter(
            must=[models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in pairs]
        )

    @_locked
    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> list[list[Match]]:
        """For each query vector, up to ``top_k`` faces scoring at least ``threshold``."""
        condition = _filter(filters)
        requests = [
            models.QueryRequest(
                query=vector.tolist(),
                limit=top_k,
                score_threshold=threshold,
                filter=condition,
                with_payload=True,
                params=self._search,
            )
            for vector in vectors
        ]
        if not requests:
            return []
        responses = self.client.query_batch_points(self.collection, requests)
        return [[match_from_payload(p.score, p.payload or {}) for p in r.points] for r in responses]

    @_locked
    def count_faces(self, filters: Filters) -> int:
        """The faces a query with these filters compares with: the gallery its decisions are
        calibrated for (``count_exactly`` says how it is counted)."""
        pairs = filter_pairs(filters)
        condition = _match_all(pairs)
        exact = count_exactly(pairs)
        return self.client.count(self.collection, count_filter=condition, exact=exact).count

    @_locked
    def delete(self, selector: Selector, at: datetime | None = None) -> Erasure:
        """Record the tombstone, then delete what the selector names (an image id's staged
        video frames too); the receipt says what went. The tombstone comes first, so an event
        the search stage checks after this began is dropped."""
        tombstone = tombstone_for(selector, at)
        self._put_tombstone(tombstone)
        condition = _selector_filter(selector)
        faces = self.client.count(self.collection, count_filter=condition, exact=True).count
        collections = [
            str((point.payload or {}).get("collection", ""))
            for page in paged(functools.partial(self._collections_page, condition))
            for point in page
        ]
        selector_ = models.FilterSelector(filter=condition)
        self.client.delete(self.collection, selector_, wait=True)
        self.client.delete(IMAGES_COLLECTION, selector_, wait=True)
        if selector.image_id:
            self.client.delete(FRAMES_COLLECTION, self._of_video(selector.image_id), wait=True)
        return erasure(tombstone, selector, faces, collections)

    def _collections_page(self, condition: models.Filter, offset: Any) -> tuple[list[Any], Any]:
        return self.client.scroll(
            IMAGES_COLLECTION,
            scroll_filter=condition,
            limit=MAX_FACES_LISTED,
            offset=offset,
            with_payload=["collection"],
        )

    def _of_video(self, video_id: str) -> models.FilterSelector:
        condition = _match_all([("video_id", video_id)])
        assert condition is not None
        return models.FilterSelector(filter=condition)

    def _put_tombstone(self, tombstone: Tombstone) -> None:
        kept = later(tombstone, self._tombstones([(tombstone.field, tombstone.value)]))
        point = models.PointStruct(
            id=tombstone_point_id(kept.field, kept.value),
            vector={},
            payload=tombstone_payload(kept),
        )
        self.client.upsert(TOMBSTONES_COLLECTION, [point], wait=True)

    @_locked
    def tombstones(self, pairs: Sequence[tuple[str, str]]) -> list[Tombstone]:
        """The tombstones of these (field, value) pairs, kept or expired (one read by id)."""
        return self._tombstones(pairs)

    def _tombstones(self, pairs: Sequence[tuple[str, str]]) -> list[Tombstone]:
        ids = tombstone_ids(pairs)
        found = self.client.retrieve(TOMBSTONES_COLLECTION, ids) if ids else []
        return [tombstone_from_payload(point.payload or {}) for point in found]

    @_locked
    def prune_tombstones(self, before: datetime) -> int:
        """Forget the tombstones recorded before ``before``; returns how many."""
        old = models.FieldCondition(
            key="deleted_at_us", range=models.Range(lt=to_microseconds(before))
        )
        condition = models.Filter(must=[old])
        count = self.client.count(TOMBSTONES_COLLECTION, count_filter=condition, exact=True).count
        if count:
            selector = models.FilterSelector(filter=condition)
            self.client.delete(TOMBSTONES_COLLECTION, selector, wait=True)
        return count

    def export(self, batch: int) -> Iterator[list[ImageItem]]:
        """Every image record of this model, ``batch`` at a time, each with its faces and their
        vectors: what ``stores.copy_index`` writes into another store."""
        return paged(functools.partial(self._export_page, batch))

    @_locked
    def _export_page(self, batch: int, offset: Any) -> tuple[list[ImageItem], Any]:
        points, offset = self.client.scroll(
            IMAGES_COLLECTION, scroll_filter=self._mine(), limit=batch, offset=offset
        )
        images = [ImageRecord.from_payload(p.payload or {}) for p in points]
        return with_faces(images, self._faces_page), offset

    def _faces_page(self, image_ids: list[str], offset: Any) -> tuple[list[FaceRecord], Any]:
        of_images = models.FieldCondition(key="image_id", match=models.MatchAny(any=image_ids))
        found, offset = self.client.scroll(
            self.collection,
            scroll_filter=models.Filter(must=[of_images]),
            limit=MAX_FACES_LISTED,
            offset=offset,
            with_vectors=True,
        )
        return [with_vector(p.payload, p.vector) for p in found], offset

    def export_staged(self) -> Iterator[list[FrameFaces]]:
        """Every staged frame of this model (of videos still arriving), a page at a time."""
        return paged(self._staged_page)

    @_locked
    def _staged_page(self, offset: Any) -> tuple[list[FrameFaces], Any]:
        points, offset = self.client.scroll(
            FRAMES_COLLECTION, scroll_filter=self._mine(), limit=256, offset=offset
        )
        return [staged_from_payload(p.payload) for p in points], offset

    def _mine(self) -> models.Filter | None:
        return _match_all([("model", self.model_id)])

    @_locked
    def optouts(self) -> list[OptOut]:
        """Every entry of the opt-out gallery, with its vector."""
        entries: list[OptOut] = []
        for page in paged(self._optouts_page):
            entries.extend(page)
        return entries

    def _optouts_page(self, offset: Any) -> tuple[list[OptOut], Any]:
        points, offset = self.client.scroll(
            self.optouts_collection, limit=256, offset=offset, with_vectors=True
        )
        return [optout_from_point(p.payload, p.vector) for p in points], offset

    @_locked
    def put_optout(self, entry: OptOut) -> None:
        point = models.PointStruct(id=entry.optout_id, vector=entry.vector, payload=entry.payload())
        self.client.upsert(self.optouts_collection, [point], wait=True)

    @_locked
    def remove_optout(self, optout_id: str) -> bool:
        """Remove one entry; False when there is none of that id."""
        if not self.client.retrieve(self.optouts_collection, [optout_id], with_payload=False):
            return False
        selector = models.PointIdsList(points=[optout_id])
        self.client.delete(self.optouts_collection, selector, wait=True)
        return True

    @_locked
    def erase_faces(self, faces: Sequence[tuple[str, int]], images: Sequence[ImageRecord]) -> None:
        """Delete these faces (image id, face index), then write their images' records as
        given (telling which faces went): an opt-out's erasure."""
        ids: list[models.ExtendedPointId] = [
            face_point_id(image_id, index, self.model_id) for image_id, index in faces
        ]
        if ids:
            self.client.delete(self.collection, models.PointIdsList(points=ids), wait=True)
        records = [
            models.PointStruct(id=image_point_id(i.image_id), vector={}, payload=i.payload())
            for i in images
        ]
        if records:
            self.client.upsert(IMAGES_COLLECTION, records, wait=True)

    @_locked
    def stats(self) -> StoreStats:
        mine = models.FieldCondition(key="model", match=models.MatchValue(value=self.model_id))
        with_faces = models.FieldCondition(key="faces", range=models.Range(gte=1))
        images = self._count(IMAGES_COLLECTION, [mine])
        facets = self.client.facet(IMAGES_COLLECTION, key="label", limit=100_000)
        return StoreStats(
            images=images,
            images_with_faces=self._count(IMAGES_COLLECTION, [mine, with_faces]),
            faces=self._count(self.collection, []),
            labels={str(h.value): h.count for h in facets.hits if h.value},
            model=self.model_id,
            collection=self.collection,
            location=self.location,
        )

    def _count(self, collection: str, conditions: list[models.Condition]) -> int:
        condition = models.Filter(must=conditions) if conditions else None
        return self.client.count(collection, count_filter=condition, exact=True).count


def count_exactly(pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether a gallery is counted point by point: only for a filter of several conditions,
    whose size Qdrant's estimate can miss by far (it multiplies the conditions' shares). All
    faces, or one payload condition, are counted from the index (0.02 ms for 20,000 faces in
    Edge, against 1.5 ms point by point, a cost that grows with the gallery), which can still
    count faces deleted since the last optimisation: a gallery size, not an inventory."""
    return len(pairs) > 1


def _fast_local_commits(client: QdrantClient) -> None:
    """qdrant-client's local mode commits every point in its own SQLite transaction with a full
    fsync (0.7 ms each on this machine, most of the cost of indexing a small photo). Write-ahead
    logging with synchronous=NORMAL keeps each commit atomic and safe when the process dies, at
    a twentieth of the cost; a power cut may lose the last commits, which indexing the same
    files again restores, since ids are idempotent. This reaches into the client's private
    state, so it does nothing where that state looks different."""
    collections = getattr(getattr(client, "_client", None), "collections", {})
    for collection in collections.values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")


def _filter(filters: Filters) -> models.Filter | None:
    return _match_all(filter_pairs(filters))


def _selector_filter(selector: Selector) -> models.Filter:
    condition = _match_all(selector_pairs(selector))
    assert condition is not None  # selector_pairs refuses an empty selector
    return condition


def _match_all(pairs: Sequence[tuple[str, str]]) -> models.Filter | None:
    conditions: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in pairs
        if value
    ]
    return models.Filter(must=conditions) if conditions else None
