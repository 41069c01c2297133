"""The face store on Qdrant Edge (qdrant-edge-py): Qdrant's segment engine in this process, with
HNSW, int8 scalar quantization, payload indexes and facets, its data on disk. The same
collections, payloads, point ids and behaviour as ``store.QdrantFaceStore`` (both are a
``store.FaceStore``). Each collection is one Edge shard, a folder of the index's folder:

    <path>/manifest.json        format version, model id and dimension; written once the shards
                                exist, so an index without one was left half-written
    <path>/.lock                held (flock) while a process has the index open
    <path>/faces__<model id>/   one point per face: cosine, HNSW, int8 quantized with rescoring
    <path>/images/              one point per image or video
    <path>/video_frames/        the staged frames of videos still arriving
    <path>/optouts__<model id>/ the opt-out gallery (``optout``): exact search, no quantization;
                                created when missing, so an older index gains it when opened
    <path>/tombstones/          one point per recent delete (created when missing: an index
                                written before tombstones has none)

The manifest does the alias ``faces``'s work: it names the model whose faces the index holds,
and the index refuses to open for another model.

Edge runs no optimizer on its own: after each write the store asks it to optimize, which does
nothing (microseconds) until the segment taking new faces outgrows the indexing threshold
(``INDEXING_THRESHOLD_KB``, about 20,000 faces of 512 dimensions; until then they are searched
exactly); then that write pays for building the segment's HNSW graph, or merging it into a
larger one (seconds, under the store's lock, and holding Python's GIL).

Edge writes through memory-mapped files, and a write that finds the disk full kills the process
(SIGBUS) instead of failing. So every write first checks that the disk has room for it
(``MIN_FREE_BYTES`` and ``BYTES_PER_FACE`` for each point written) and is refused with a
``StoreError`` when it has not: the search service then retries and pauses as for any outage.
"""

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import numpy as np
import qdrant_edge as qe

from facesearch.edge_folder import (
    FORMAT_VERSION,
    FolderLock,
    Manifest,
    check_manifest,
    damaged,
)
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
from facesearch.store import (
    FACE_INDEXES,
    FACES_ALIAS,
    FRAME_INDEXES,
    FRAMES_COLLECTION,
    IMAGE_INDEXES,
    IMAGES_COLLECTION,
    MAX_FACES_LISTED,
    TOMBSTONES_COLLECTION,
    ImageItem,
    count_exactly,
    erasure,
    faces_collection_name,
    later,
    optout_from_point,
    optouts_collection_name,
    paged,
    staged_from_payload,
    tombstone_for,
    tombstone_ids,
    with_faces,
    with_vector,
)

if TYPE_CHECKING:
    from qdrant_edge import ConditionType

# Edge refuses a shard without any vector (EdgeConfig needs a dense or a sparse one): images
# and staged frames get one sparse vector that no point ever has, which costs nothing.
NO_VECTOR = "none"
# Faces are taken in by a segment searched exactly until it holds this much vector data
# (about 20,000 faces); then the write that passed it builds its graph, merged into the
# largest segment below MAX_SEGMENT_KB (about 200,000 faces), at a cost that grows with that
# segment (11 s at first, 30 s near the cap, on this machine). Without the cap a merge's cost
# keeps growing with the whole index; without merges, a search visits a graph per 20,000 faces.
INDEXING_THRESHOLD_KB = 40_000
MAX_SEGMENT_KB = 400_000
SEGMENTS = 2  # merged while there are more, within MAX_SEGMENT_KB
FULL_SCAN_KB = 10_000  # below this much vector data, a filtered search scans (Qdrant's default)
# Room a write needs on the index's disk: measured, a fresh index takes 23 MiB and 2,000 faces
# of 512 dimensions 10 MiB more (about 5 KiB a face, with the write-ahead log); three times
# that a face, above a reserve.
MIN_FREE_BYTES = 16 * 2**20
BYTES_PER_FACE = 16 * 2**10
# Shards a newer facesearch added: created in an existing index that lacks them.
ADDED_LATER = frozenset({TOMBSTONES_COLLECTION})
OVERSAMPLING = 2.0  # quantized candidates per result, rescored with the original vectors
_SCHEMAS = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
T = TypeVar("T", bound=Callable[..., Any])


def _edge_failure(exc: BaseException) -> bool:
    """Edge raises bare ``Exception`` (and ``ValueError`` for what it cannot parse), and a Rust
    panic arrives as pyo3's ``PanicException``; the disk, as ``OSError``."""
    return (
        type(exc) is Exception
        or isinstance(exc, OSError | ValueError)
        or type(exc).__name__ == "PanicException"
    )


def _locked(method: T) -> T:
    """Serialise the call, and turn Edge's own failures into a ``StoreError``."""

    @functools.wraps(method)
    def wrapper(self: "EdgeFaceStore", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except StoreError:
                raise
            except BaseException as exc:
                if not _edge_failure(exc):
                    raise
                raise StoreError(f"Qdrant Edge at {self.location} failed: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _faces_config(dim: int, hnsw: HnswSettings, quantization: bool) -> qe.EdgeConfig:
    # The int8 copies are searched in RAM; the float32 originals, read only to rescore the
    # best candidates, stay on disk (Cold: mapped, not loaded; 110 MiB less at 10^5 faces).
    # None leaves an existing shard's quantization as it was built.
    quantized = (
        qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
        if quantization
        else None
    )
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(dim, qe.Distance.Cosine, memory=qe.Memory.Cold),
        hnsw_config=qe.HnswIndexConfig(hnsw.m, hnsw.ef_construct, FULL_SCAN_KB),
        quantization_config=quantized,
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=INDEXING_THRESHOLD_KB,
            max_segment_size=MAX_SEGMENT_KB,
            default_segment_number=SEGMENTS,
        ),
    )


def _vectorless_config() -> qe.EdgeConfig:
    return qe.EdgeConfig(sparse_vectors={NO_VECTOR: qe.EdgeSparseVectorParams()})


def _optouts_config(dim: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(vectors=qe.EdgeVectorParams(dim, qe.Distance.Cosine))


def _open_optouts(folder: Path, model_id: str, dim: int, shards: dict[str, qe.EdgeShard]) -> None:
    """The opt-out gallery's shard: loaded, or created where an index made before opt-outs
    existed has none (the caller closes what was opened when this fails)."""
    name = optouts_collection_name(model_id)
    _open_shards(folder, {name: _optouts_config(dim)}, not (folder / name).is_dir(), shards)


def _open_shards(
    folder: Path, configs: dict[str, qe.EdgeConfig], new: bool, shards: dict[str, qe.EdgeShard]
) -> None:
    """Create the shards of a new index, or load those of an existing one, into ``shards``
    (the caller closes what was opened when this fails)."""
    for name, config in configs.items():
        try:
            if new or (name in ADDED_LATER and not (folder / name).exists()):
                shards[name] = qe.EdgeShard.create(str(folder / name), config)
            else:
                # The config is checked against the stored one, and HNSW settings updated.
                shards[name] = qe.EdgeShard.load(str(folder / name), config)
        except BaseException as exc:
            if not _edge_failure(exc):
                raise
            if new:
                raise StoreError(f"cannot create Qdrant Edge's {name} in {folder}: {exc}") from exc
            raise damaged(folder, f"{name}: {exc}") from exc


class EdgeFaceStore:
    """Upsert, query, delete and count faces of one model, in a Qdrant Edge folder.

    Safe to share between threads: calls are serialised by one lock, as ``QdrantFaceStore``'s.
    """

    def __init__(
        self,
        shards: dict[str, qe.EdgeShard],
        folder_lock: FolderLock,
        model_id: str,
        dim: int,
        path: Path,
        ef: int,
        quantization: bool,
    ) -> None:
        self._lock = threading.RLock()
        self._shards = shards
        self._folder_lock = folder_lock
        self.model_id = model_id
        self.dim = dim
        self.path = path
        self.location = str(path)
        self.collection = faces_collection_name(model_id)
        self.optouts_collection = optouts_collection_name(model_id)
        rescoring = qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
        self._search = qe.SearchParams(
            hnsw_ef=ef,
            quantization=rescoring if quantization else qe.QuantizationSearchParams(ignore=True),
        )
        self._ensure_indexes()

    @classmethod
    def open(
        cls,
        model_id: str,
        dim: int,
        path: Path,
        *,
        hnsw: HnswSettings | None = None,
        quantization: bool = True,
    ) -> "EdgeFaceStore":
        """Open the index in ``path``, creating it if the folder holds none. A refused open
        (in use, another model, damaged) leaves the folder as it was, and unlocked."""
        hnsw = hnsw or HnswSettings()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open Qdrant Edge at {path}: {exc}") from exc
        folder_lock = FolderLock.acquire(path)
        shards: dict[str, qe.EdgeShard] = {}
        try:
            manifest = Manifest.read(path)
            check_manifest(manifest, path, model_id, dim)
            configs = {
                faces_collection_name(model_id): _faces_config(dim, hnsw, quantization),
                IMAGES_COLLECTION: _vectorless_config(),
                FRAMES_COLLECTION: _vectorless_config(),
                TOMBSTONES_COLLECTION: _vectorless_config(),
            }
            _open_shards(path, configs, manifest is None, shards)
            _open_optouts(path, model_id, dim, shards)
            store = cls(shards, folder_lock, model_id, dim, path, hnsw.ef, quantization)
            if manifest is None:
                Manifest(FORMAT_VERSION, model_id, dim).write(path)
            return store
        except BaseException as exc:
            for shard in shards.values():
                with contextlib.suppress(Exception):  # the error that refused the open wins
                    shard.close()
            folder_lock.release()
            if isinstance(exc, StoreError) or not _edge_failure(exc):
                raise
            raise StoreError(f"cannot open Qdrant Edge at {path}: {exc}") from exc

    @_locked
    def close(self) -> None:
        shards, self._shards = self._shards, {}
        # Every shard closed and the folder let go, whatever fails.
        with contextlib.ExitStack() as closing:
            closing.callback(self._folder_lock.release)
            for shard in shards.values():
                closing.callback(shard.close)
            for shard in shards.values():
                shard.flush()

    @property
    def _faces(self) -> qe.EdgeShard:
        return self._shard(self.collection)

    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            raise StoreError(f"the index at {self.location} is closed")
        return shard

    def _ensure_indexes(self) -> None:
        """The payload indexes filters, deletes and the label facet use (a facet needs one).
        Idempotent: only the missing ones are created."""
        wanted = {
            self.collection: FACE_INDEXES,
            IMAGES_COLLECTION: IMAGE_INDEXES,
            FRAMES_COLLECTION: FRAME_INDEXES,
        }
        for name, fields in wanted.items():
            shard = self._shard(name)
            have = shard.info().payload_schema
            for field, schema in fields.items():
                if field not in have:
                    index = qe.UpdateOperation.create_field_index(field, _SCHEMAS[schema.value])
                    shard.update(index)

    @_locked
    def collection_names(self) -> set[str]:
        """The shard folders the index holds (what opening created)."""
        return {child.name for child in self.path.iterdir() if child.is_dir()}

    @_locked
    def aliases(self) -> dict[str, str]:
        """As a server's aliases: ``faces`` names the faces collection of the manifest's model."""
        manifest = Manifest.read(self.path)
        return {FACES_ALIAS: faces_collection_name(manifest.model)} if manifest else {}

    @_locked
    def get_image(self, image_id: str) -> ImageRecord | None:
        return self._image(image_id)

    def _image(self, image_id: str) -> ImageRecord | None:
        shard = self._shard(IMAGES_COLLECTION)
        found = shard.retrieve([image_point_id(image_id)], True, False)
        return ImageRecord.from_payload(found[0].payload or {}) if found else None

    @_locked
    def get_faces(self, image_id: str) -> list[FaceRecord]:
        """The stored faces of one image, in face_index order, without their vectors."""
        request = qe.ScrollRequest(
            limit=MAX_FACES_LISTED,
            filter=_match_all([("image_id", image_id)]),
            with_payload=True,
            with_vector=False,
        )
        points, _ = self._faces.scroll(request)
        faces = [face_from_payload(p.payload or {}) for p in points]
        return sorted(faces, key=lambda face: face.face_index)

    def _check_room(self, points: int) -> None:
        """Refuse a write of ``points`` points that the disk has no room for (see above)."""
        needed = MIN_FREE_BYTES + points * BYTES_PER_FACE
        try:
            disk = os.statvfs(self.path)
        except OSError as exc:
            raise StoreError(f"cannot read the free space of {self.path}: {exc}") from exc
        free = disk.f_bavail * disk.f_frsize
        if free < needed:
            raise StoreError(
                f"the disk holding the index at {self.path} has {free / 2**20:.0f} MiB free and "
                f"this write needs {needed / 2**20:.0f} MiB; free some space on it"
            )

    @_locked
    def put_images(self, items: Sequence[tuple[ImageRecord, Sequence[FaceRecord]]]) -> None:
        """Write faces, then image records; drop the faces an earlier run of an image stored
        that this one does not have (face indexes need not be contiguous)."""
        self._check_room(len(items) + sum(len(faces) for _, faces in items))
        points = [
            qe.Point(
                face_point_id(image.image_id, face.face_index, self.model_id),
                list(face.vector),
                face_payload(image, face, self.model_id),
            )
            for image, faces in items
            for face in faces
        ]
        if points:
            self._faces.update(qe.UpdateOperation.upsert_points(points))
        stored = self._stored([image.image_id for image, _ in items])
        for image, faces in items:
            if image.image_id in stored:  # stored before: may have more faces
                self._drop_faces_but(image.image_id, [face.face_index for face in faces])
        records = [
            qe.Point(image_point_id(image.image_id), {}, image.payload()) for image, _ in items
        ]
        if records:
            self._shard(IMAGES_COLLECTION).update(qe.UpdateOperation.upsert_points(records))
        self._optimize(self.collection, IMAGES_COLLECTION)

    def _stored(self, image_ids: list[str]) -> set[str]:
        """Which of these images have a record already (one call for the whole batch)."""
        points = {image_point_id(image): image for image in image_ids}
        found = self._shard(IMAGES_COLLECTION).retrieve(list(points), False, False)
        return {points[str(point.id)] for point in found}

    def _drop_faces_but(self, image_id: str, kept: list[int]) -> None:
        others = qe.FieldCondition("face_index", match=qe.MatchAny(kept))
        condition = qe.Filter(
            must=[qe.FieldCondition("image_id", match=qe.MatchValue(image_id))],
            must_not=[others] if kept else None,
        )
        self._faces.update(qe.UpdateOperation.delete_points_by_filter(condition))

    def _optimize(self, *names: str) -> None:
        for name in names:
            shard = self._shard(name)
            # An optimisation leaves the segments it replaced on disk until a flush (or the
            # shard's close): without one, a long-running process filled the disk with them.
            if shard.optimize():
                shard.flush()

    @_locked
    def stage_frame(self, frame: FrameFaces) -> None:
        """Keep one sampled frame's faces until its video's last frame (idempotent)."""
        self._check_room(1 + len(frame.faces))
        point_id = frame_point_id(frame.video_id, frame.sample, self.model_id)
        point = qe.Point(point_id, {}, frame_payload(frame, self.model_id))
        self._shard(FRAMES_COLLECTION).update(qe.UpdateOperation.upsert_points([point]))

    @_locked
    def staged_frames(self, video_id: str) -> list[FrameFaces]:
        """The frames of a video kept so far, in sample order."""
        shard = self._shard(FRAMES_COLLECTION)
        frames: list[FrameFaces] = []
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=256, filter=self._staged(video_id), with_payload=True
            )
            points, offset = shard.scroll(request)
            frames.extend(frame_from_payload(video_id, p.payload or {}) for p in points)
            if offset is None:
                return sorted(frames, key=lambda frame: frame.sample)

    @_locked
    def drop_staged(self, video_id: str) -> None:
        self._check_room(0)
        operation = qe.UpdateOperation.delete_points_by_filter(self._staged(video_id))
        self._shard(FRAMES_COLLECTION).update(operation)
        self._optimize(FRAMES_COLLECTION)

    def _staged(self, video_id: str) -> qe.Filter:
        condition = _match_all([("video_id", video_id), ("model", self.model_id)])
        assert condition is not None
        return condition

    @_locked
    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> list[list[Match]]:
        """For each query vector, up to ``top_k`` faces scoring at least ``threshold``."""
        condition = _match_all(filter_pairs(filters))
        requests = [
            qe.QueryRequest(
                limit=top_k,
                query=qe.Query.Nearest(vector.tolist()),
                filter=condition,
                score_threshold=threshold,
                with_payload=True,
                params=self._search,
            )
            for vector in vectors
        ]
        if not requests:
            return []
        responses = self._faces.query_batch(qe.QueryBatchRequest(requests))
        return [[match_from_payload(p.score, p.payload or {}) for p in r] for r in responses]

    @_locked
    def count_faces(self, filters: Filters) -> int:
        """The faces a query with these filters compares with: the gallery its decisions are
        calibrated for."""
        pairs = filter_pairs(filters)
        request = qe.CountRequest(exact=count_exactly(pairs), filter=_match_all(pairs))
        return int(self._faces.count(request))

    @_locked
    def delete(self, selector: Selector, at: datetime | None = None) -> Erasure:
        """Record the tombstone, then delete what the selector names (an image id's staged
        video frames too); the receipt says what went. The tombstone comes first, as in
        ``QdrantFaceStore.delete``."""
        tombstone = tombstone_for(selector, at)
        condition = _match_all(selector_pairs(selector))
        assert condition is not None  # selector_pairs refuses an empty selector
        self._check_room(1)
        self._put_tombstone(tombstone)
        images_shard = self._shard(IMAGES_COLLECTION)
        faces = self._faces.count(qe.CountRequest(exact=True, filter=condition))
        collections = [
            str((point.payload or {}).get("collection", ""))
            for page in paged(functools.partial(self._images_page, condition))
            for point in page
        ]
        self._faces.update(qe.UpdateOperation.delete_points_by_filter(condition))
        images_shard.update(qe.UpdateOperation.delete_points_by_filter(condition))
        if selector.image_id:
            of_video = _match_all([("video_id", selector.image_id)])
            assert of_video is not None
            operation = qe.UpdateOperation.delete_points_by_filter(of_video)
            self._shard(FRAMES_COLLECTION).update(operation)
        self._optimize(self.collection, IMAGES_COLLECTION, FRAMES_COLLECTION)
        return erasure(tombstone, selector, faces, collections)

    def _images_page(self, condition: qe.Filter, offset: Any) -> tuple[list[Any], Any]:
        request = qe.ScrollRequest(
            offset=offset, limit=MAX_FACES_LISTED, filter=condition, with_payload=True
        )
        points, offset = self._shard(IMAGES_COLLECTION).scroll(request)
        return list(points), offset

    def _put_tombstone(self, tombstone: Tombstone) -> None:
        kept = later(tombstone, self._tombstones([(tombstone.field, tombstone.value)]))
        point_id = tombstone_point_id(kept.field, kept.value)
        point = qe.Point(point_id, {}, tombstone_payload(kept))
        self._shard(TOMBSTONES_COLLECTION).update(qe.UpdateOperation.upsert_points([point]))

    @_locked
    def tombstones(self, pairs: Sequence[tuple[str, str]]) -> list[Tombstone]:
        """The tombstones of these (field, value) pairs, kept or expired (one read by id)."""
        return self._tombstones(pairs)

    def _tombstones(self, pairs: Sequence[tuple[str, str]]) -> list[Tombstone]:
        ids = tombstone_ids(pairs)
        shard = self._shard(TOMBSTONES_COLLECTION)
        found = shard.retrieve(list(ids), True, False) if ids else []
        return [tombstone_from_payload(point.payload or {}) for point in found]

    @_locked
    def prune_tombstones(self, before: datetime) -> int:
        """Forget the tombstones recorded before ``before``; returns how many."""
        shard = self._shard(TOMBSTONES_COLLECTION)
        old = qe.FieldCondition("deleted_at_us", range=qe.RangeFloat(lt=to_microseconds(before)))
        condition = qe.Filter(must=[old])
        count = int(shard.count(qe.CountRequest(exact=True, filter=condition)))
        if count:
            self._check_room(0)
            shard.update(qe.UpdateOperation.delete_points_by_filter(condition))
            self._optimize(TOMBSTONES_COLLECTION)
        return count

    def export(self, batch: int) -> Iterator[list[ImageItem]]:
        """Every image record of this model, ``batch`` at a time, each with its faces and their
        vectors: what ``stores.copy_index`` writes into another store."""
        return paged(functools.partial(self._export_page, batch))

    @_locked
    def _export_page(self, batch: int, offset: Any) -> tuple[list[ImageItem], Any]:
        request = qe.ScrollRequest(
            offset=offset, limit=batch, filter=self._mine(), with_payload=True
        )
        points, offset = self._shard(IMAGES_COLLECTION).scroll(request)
        images = [ImageRecord.from_payload(p.payload or {}) for p in points]
        return with_faces(images, self._faces_page), offset

    def _faces_page(self, image_ids: list[str], offset: Any) -> tuple[list[FaceRecord], Any]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=MAX_FACES_LISTED,
            filter=qe.Filter(must=[qe.FieldCondition("image_id", match=qe.MatchAny(image_ids))]),
            with_payload=True,
            with_vector=True,
        )
        found, offset = self._faces.scroll(request)
        return [with_vector(p.payload, p.vector) for p in found], offset

    def export_staged(self) -> Iterator[list[FrameFaces]]:
        """Every staged frame of this model (of videos still arriving), a page at a time."""
        return paged(self._staged_page)

    @_locked
    def _staged_page(self, offset: Any) -> tuple[list[FrameFaces], Any]:
        request = qe.ScrollRequest(offset=offset, limit=256, filter=self._mine(), with_payload=True)
        points, offset = self._shard(FRAMES_COLLECTION).scroll(request)
        return [staged_from_payload(p.payload) for p in points], offset

    def _mine(self) -> qe.Filter | None:
        return _match_all([("model", self.model_id)])

    @_locked
    def optouts(self) -> list[OptOut]:
        """Every entry of the opt-out gallery, with its vector."""
        entries: list[OptOut] = []
        for page in paged(self._optouts_page):
            entries.extend(page)
        return entries

    def _optouts_page(self, offset: Any) -> tuple[list[OptOut], Any]:
        request = qe.ScrollRequest(offset=offset, limit=256, with_payload=True, with_vector=True)
        points, offset = self._shard(self.optouts_collection).scroll(request)
        return [optout_from_point(p.payload, p.vector) for p in points], offset

    @_locked
    def put_optout(self, entry: OptOut) -> None:
        self._check_room(1)
        point = qe.Point(entry.optout_id, list(entry.vector), entry.payload())
        self._shard(self.optouts_collection).update(qe.UpdateOperation.upsert_points([point]))
        self._optimize(self.optouts_collection)

    @_locked
    def remove_optout(self, optout_id: str) -> bool:
        """Remove one entry; False when there is none of that id."""
        shard = self._shard(self.optouts_collection)
        if not shard.retrieve([optout_id], False, False):
            return False
        self._check_room(0)
        shard.update(qe.UpdateOperation.delete_points([optout_id]))
        self._optimize(self.optouts_collection)
        return True

    @_locked
    def erase_faces(self, faces: Sequence[tuple[str, int]], images: Sequence[ImageRecord]) -> None:
        """Delete these faces (image id, face index), then write their images' records as
        given (telling which faces went): an opt-out's erasure."""
        self._check_room(len(images))
        ids: list[int | UUID | str] = [
            face_point_id(image_id, index, self.model_id) for image_id, index in faces
        ]
        if ids:
            self._faces.update(qe.UpdateOperation.delete_points(ids))
        records = [qe.Point(image_point_id(i.image_id), {}, i.payload()) for i in images]
        if records:
            self._shard(IMAGES_COLLECTION).update(qe.UpdateOperation.upsert_points(records))
        self._optimize(self.collection, IMAGES_COLLECTION)

    @_locked
    def stats(self) -> StoreStats:
        images_shard = self._shard(IMAGES_COLLECTION)
        mine = qe.FieldCondition("model", match=qe.MatchValue(self.model_id))
        with_faces = qe.FieldCondition("faces", range=qe.RangeFloat(gte=1))
        # A deleted label stays in a segment's payload index, counted 0, until the segment is
        # optimised: left out, so that stats do not name someone erased.
        facets = images_shard.facet(qe.FacetRequest("label", limit=100_000, exact=True))
        return StoreStats(
            images=images_shard.count(qe.CountRequest(exact=True, filter=qe.Filter(must=[mine]))),
            images_with_faces=images_shard.count(
                qe.CountRequest(exact=True, filter=qe.Filter(must=[mine, with_faces]))
            ),
            faces=self._faces.count(qe.CountRequest(exact=True)),
            labels={str(h.value): h.count for h in facets.hits if h.value and h.count},
            model=self.model_id,
            collection=self.collection,
            location=self.location,
        )


def _match_all(pairs: Sequence[tuple[str, str]]) -> qe.Filter | None:
    conditions: list[ConditionType] = [
        qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in pairs
    ]
    return qe.Filter(must=conditions) if conditions else None
