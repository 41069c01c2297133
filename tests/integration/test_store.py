"""The store contract, with real embeddings of real photos, on every backend: Qdrant in
qdrant-client's local mode, a real Qdrant server (started by the ``qdrant_server`` fixture;
these skip where there is no binary), and Qdrant Edge. Each test starts from an empty index."""

import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cli_checks import as_json, ok
from qdrant_client import QdrantClient

from facesearch.devstack.qdrant import QdrantServer
from facesearch.edge_store import EdgeFaceStore
from facesearch.errors import StoreError
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, to_records
from facesearch.records import (
    Erasure,
    FaceRecord,
    Filters,
    FrameFaces,
    ImageMeta,
    ImageRecord,
    Selector,
    Tombstone,
)
from facesearch.settings import HnswSettings
from facesearch.store import (
    FACES_ALIAS,
    FRAMES_COLLECTION,
    IMAGES_COLLECTION,
    TOMBSTONES_COLLECTION,
    FaceStore,
    QdrantFaceStore,
    faces_collection_name,
    optouts_collection_name,
)
from facesearch.stores import Copied, copy_index

Analyzed = dict[str, tuple[AnalyzedImage, np.ndarray]]
Item = tuple[ImageRecord, list[FaceRecord]]


def records(
    analyzed: Analyzed,
    name: str,
    model_id: str,
    label: str = "",
    collection: str = "default",
    source_uri: str = "",
) -> Item:
    image, vectors = analyzed[name]
    path = f"/photos/{name}.jpg"
    meta = ImageMeta(source_uri or path, path, label, collection)
    return to_records(image, vectors, meta, model_id)


@dataclass(frozen=True)
class Backend:
    """Where a test's index lives: a local-mode folder, a server (``url``), or a Qdrant Edge
    folder (``edge``)."""

    path: Path
    url: str = ""
    edge: bool = False

    @property
    def location(self) -> str:
        return self.url or str(self.path)

    def open(self, model_id: str, dim: int) -> FaceStore:
        if self.edge:
            return EdgeFaceStore.open(model_id, dim, self.path)
        return QdrantFaceStore.open(model_id, dim, self.path, self.url)


@pytest.fixture(params=["local", "server", "edge"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield Backend(tmp_path / "qdrant")
        return
    if request.param == "edge":
        yield Backend(tmp_path / "edge", edge=True)
        return
    url = request.getfixturevalue("qdrant_server").url
    yield Backend(tmp_path / "unused", url)
    wipe(url)


def wipe(url: str) -> None:
    """Every collection and alias of the server gone: the next test starts empty."""
    client = QdrantClient(url=url, check_compatibility=False)
    try:
        for collection in client.get_collections().collections:
            client.delete_collection(collection.name)
    finally:
        client.close()


@pytest.fixture
def store(face_models: FaceModels, backend: Backend) -> Iterator[FaceStore]:
    opened = backend.open(face_models.model_id, face_models.dim)
    yield opened
    opened.close()


def face_total(items: list[Item]) -> int:
    return sum(len(faces) for _, faces in items)


def test_put_then_query_finds_each_face_itself_with_score_one(
    store: FaceStore, analyzed: Analyzed
) -> None:
    image, faces = records(analyzed, "players", store.model_id, label="team", collection="nba")
    store.put_images([(image, faces)])
    vectors = np.array([face.vector for face in faces], dtype=np.float32)

    results = store.query(vectors, 1, -1.0, Filters())

    assert len(results) == len(faces) == 22
    for face, matches in zip(faces, results, strict=True):
        assert len(matches) == 1
        best = matches[0]
        assert best.score == pytest.approx(1.0, abs=1e-3)
        assert best.image_id == image.image_id
        assert best.face_index == face.face_index
        assert best.box == pytest.approx(face.box, abs=1e-3)
        assert best.det_score == pytest.approx(face.det_score, abs=1e-6)
        assert (best.path, best.source_uri) == ("/photos/players.jpg", "/photos/players.jpg")
        assert (best.label, best.collection) == ("team", "nba")


def test_query_orders_by_score_and_respects_top_k_and_threshold(
    store: FaceStore, analyzed: Analyzed
) -> None:
    items = [records(analyzed, name, store.model_id) for name in ("players", "gdp", "t1")]
    store.put_images(items)
    query = analyzed["yaoming"][1]

    everything = store.query(query, 100, -1.0, Filters())[0]
    top3 = store.query(query, 3, -1.0, Filters())[0]
    above = store.query(query, 100, 0.5, Filters())[0]

    assert len(everything) == face_total(items) == 33
    scores = [m.score for m in everything]
    assert scores == sorted(scores, reverse=True)
    assert [(m.image_id, m.face_index) for m in top3] == [
        (m.image_id, m.face_index) for m in everything[:3]
    ]
    assert len(above) == 1
    assert above[0].score > 0.5
    assert above[0].path == "/photos/players.jpg"


def test_putting_the_same_records_again_changes_no_count(
    store: FaceStore, analyzed: Analyzed
) -> None:
    items = [
        records(analyzed, "players", store.model_id, label="team"),
        records(analyzed, "gdp", store.model_id),
        records(analyzed, "t1", store.model_id, label="family"),
    ]
    store.put_images(items)
    first = store.stats()

    store.put_images(items)
    store.put_images(items[1:])
    second = store.stats()

    assert (first.images, first.images_with_faces, first.faces) == (3, 3, 33)
    assert second == first


def test_reputting_an_image_with_fewer_faces_drops_its_stale_faces(
    store: FaceStore, analyzed: Analyzed
) -> None:
    image, faces = records(analyzed, "players", store.model_id)
    store.put_images([(image, faces)])
    assert store.stats().faces == 22

    fewer = replace(image, faces=2)
    store.put_images([(fewer, faces[:2])])

    assert store.stats().faces == 2
    stored = store.get_image(image.image_id)
    assert stored is not None
    assert stored.faces == 2
    vectors = np.array([face.vector for face in faces], dtype=np.float32)
    results = store.query(vectors, 100, -1.0, Filters())
    for matches in results:
        assert sorted(m.face_index for m in matches) == [0, 1]


def test_reputting_an_image_keeps_exactly_its_new_faces_whatever_their_indexes(
    store: FaceStore, analyzed: Analyzed
) -> None:
    # The quality gate keeps faces under their own indexes: gaps are normal.
    image, faces = records(analyzed, "players", store.model_id)
    store.put_images([(replace(image, faces=3), [faces[0], faces[1], faces[5]])])
    store.put_images([(replace(image, faces=2), [faces[0], faces[3]])])

    assert [f.face_index for f in store.get_faces(image.image_id)] == [0, 3]
    assert store.stats().faces == 2


def test_reputting_an_image_with_no_face_drops_all_its_faces(
    store: FaceStore, analyzed: Analyzed
) -> None:
    image, faces = records(analyzed, "gdp", store.model_id)
    store.put_images([(image, faces)])

    store.put_images([(replace(image, faces=0), [])])

    stats = store.stats()
    assert (stats.images, stats.images_with_faces, stats.faces) == (1, 0, 0)


def test_query_filters_by_label_and_by_collection(store: FaceStore, analyzed: Analyzed) -> None:
    store.put_images(
        [
            records(analyzed, "players", store.model_id, label="yao", collection="sports"),
            records(analyzed, "gdp", store.model_id, label="econ", collection="news"),
            records(analyzed, "t1", store.model_id, label="", collection="news"),
        ]
    )
    query = analyzed["yaoming"][1]

    def paths(filters: Filters) -> set[str]:
        return {m.path for m in store.query(query, 100, -1.0, filters)[0]}

    by_label = store.query(query, 100, -1.0, Filters(label="econ"))[0]
    assert len(by_label) == 5
    assert {(m.label, m.collection, m.path) for m in by_label} == {
        ("econ", "news", "/photos/gdp.jpg")
    }
    assert paths(Filters(collection="news")) == {"/photos/gdp.jpg", "/photos/t1.jpg"}
    assert len(store.query(query, 100, -1.0, Filters(collection="news"))[0]) == 11
    assert paths(Filters(collection="sports")) == {"/photos/players.jpg"}
    assert paths(Filters(label="yao", collection="news")) == set()
    assert paths(Filters(label="nobody")) == set()
    assert paths(Filters(source_uri="/photos/t1.jpg")) == {"/photos/t1.jpg"}
    best = store.query(query, 1, -1.0, Filters(label="yao"))[0][0]
    assert best.score > 0.5


def test_count_faces_counts_the_gallery_a_query_with_those_filters_searches(
    store: FaceStore, analyzed: Analyzed
) -> None:
    assert store.count_faces(Filters()) == 0
    store.put_images(
        [
            records(analyzed, "players", store.model_id, label="yao", collection="sports"),
            records(analyzed, "gdp", store.model_id, label="econ", collection="news"),
            records(analyzed, "t1", store.model_id, label="", collection="news"),
        ]
    )
    query = analyzed["yaoming"][1]

    for filters in (
        Filters(),
        Filters(collection="news"),
        Filters(label="econ"),
        Filters(source_uri="/photos/t1.jpg"),
        Filters(label="yao", collection="news"),
    ):
        everything = store.query(query, 1000, -1.0, filters)[0]  # every face a query can reach
        assert store.count_faces(filters) == len(everything), filters
    assert store.count_faces(Filters()) == 33


@pytest.mark.parametrize(
    ("selector", "gone"),
    [
        (Selector(image_id="players"), "players"),
        (Selector(label="economists"), "gdp"),
        (Selector(source_uri="https://example.org/t1.jpg"), "t1"),
    ],
    ids=["image_id", "label", "source_uri"],
)
def test_delete_returns_counts_and_removes_what_it_names(
    store: FaceStore, analyzed: Analyzed, selector: Selector, gone: str
) -> None:
    items = {
        "players": records(analyzed, "players", store.model_id, label="team"),
        "gdp": records(analyzed, "gdp", store.model_id, label="economists"),
        "t1": records(analyzed, "t1", store.model_id, source_uri="https://example.org/t1.jpg"),
    }
    store.put_images(list(items.values()))
    image, faces = items[gone]
    if selector.image_id:
        selector = Selector(image_id=image.image_id)

    deleted = store.delete(selector)

    assert (deleted.images, deleted.faces) == (1, len(faces))
    assert store.get_image(image.image_id) is None
    kept = [items[name] for name in items if name != gone]
    stats = store.stats()
    assert (stats.images, stats.faces) == (2, face_total(kept))
    vectors = np.array([face.vector for face in faces], dtype=np.float32)
    for matches in store.query(vectors, 100, -1.0, Filters()):
        assert image.image_id not in {m.image_id for m in matches}
    for other, other_faces in kept:
        assert store.get_image(other.image_id) == other
        assert len(other_faces) > 0
    assert counts(store.delete(selector)) == (0, 0)


def counts(erasure: Erasure) -> tuple[int, int]:
    return erasure.images, erasure.faces


def test_delete_answers_a_receipt_and_leaves_a_tombstone(
    store: FaceStore, analyzed: Analyzed
) -> None:
    store.put_images(
        [
            records(analyzed, "players", store.model_id, label="ann", collection="team"),
            records(analyzed, "gdp", store.model_id, label="ann", collection="news"),
            records(analyzed, "t1", store.model_id, label="ann", collection="news"),
            records(analyzed, "yaoming", store.model_id, label="bob", collection="news"),
        ]
    )
    at = datetime(2026, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)

    erased = store.delete(Selector(label="ann"), at=at)
    again = store.delete(Selector(label="ann"))

    assert erased == Erasure(
        Selector(label="ann"), 3, 22 + 5 + 6, {"team": 1, "news": 2}, at, erased.receipt_id
    )
    assert len(erased.receipt_id) == 32 and again.receipt_id != erased.receipt_id
    assert (again.images, again.faces, again.collections) == (0, 0, {})
    assert again.deleted_at > at  # now
    (kept,) = store.tombstones([("label", "ann"), ("label", "bob"), ("image_id", "0" * 64)])
    assert kept == Tombstone("label", "ann", again.deleted_at, again.receipt_id)
    assert store.stats().labels == {"bob": 1}


def test_a_delete_of_what_is_not_indexed_yet_leaves_its_tombstone(store: FaceStore) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)

    erased = store.delete(Selector(image_id="e" * 64), at=at)
    store.delete(Selector(source_uri="https://example.org/x.jpg"), at=at)

    assert (erased.images, erased.faces, erased.collections) == (0, 0, {})
    found = store.tombstones([("image_id", "e" * 64), ("source_uri", "https://example.org/x.jpg")])
    assert sorted((t.field, t.deleted_at) for t in found) == [("image_id", at), ("source_uri", at)]


def test_tombstones_recorded_before_a_time_are_pruned(store: FaceStore) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    for hours, label in enumerate(["a", "b", "c"]):
        store.delete(Selector(label=label), at=at + timedelta(hours=hours))

    assert store.prune_tombstones(at + timedelta(hours=1)) == 1
    assert store.prune_tombstones(at + timedelta(hours=1)) == 0
    pairs = [("label", "a"), ("label", "b"), ("label", "c")]
    assert sorted(t.value for t in store.tombstones(pairs)) == ["b", "c"]


def test_a_delete_by_video_id_drops_its_staged_frames(store: FaceStore) -> None:
    video = "d" * 64
    store.stage_frame(FrameFaces(video, 0, 0, True, []))

    store.delete(Selector(image_id=video))

    assert store.staged_frames(video) == []


def test_delete_of_something_never_stored_deletes_nothing(
    store: FaceStore, analyzed: Analyzed
) -> None:
    store.put_images([records(analyzed, "gdp", store.model_id, label="economists")])

    assert counts(store.delete(Selector(label="nobody"))) == (0, 0)
    assert counts(store.delete(Selector(image_id="0" * 64))) == (0, 0)
    assert store.stats().faces == 5


def test_delete_with_an_empty_selector_is_refused(store: FaceStore, analyzed: Analyzed) -> None:
    store.put_images([records(analyzed, "gdp", store.model_id)])

    with pytest.raises(StoreError, match="nothing selected"):
        store.delete(Selector())
    with pytest.raises(StoreError, match="exactly one"):
        store.delete(Selector(label="economists", source_uri="/photos/gdp.jpg"))
    assert store.stats().faces == 5


def test_stats_counts_images_faces_and_labels(
    store: FaceStore, backend: Backend, analyzed: Analyzed, grey: tuple[Item, ...]
) -> None:
    store.put_images(
        [
            records(analyzed, "players", store.model_id, label="alice"),
            records(analyzed, "gdp", store.model_id, label="alice"),
            records(analyzed, "t1", store.model_id, label="bob"),
            records(analyzed, "yaoming", store.model_id),
            *grey,
        ]
    )

    stats = store.stats()

    assert stats.images == 5
    assert stats.images_with_faces == 4
    assert stats.faces == 22 + 5 + 6 + 1
    assert stats.labels == {"alice": 2, "bob": 1}
    assert stats.model == store.model_id
    assert stats.collection == faces_collection_name(store.model_id)
    assert stats.location == backend.location


@pytest.fixture
def grey(face_models: FaceModels) -> tuple[Item, ...]:
    """The records of an image without a face."""
    image = AnalyzedImage("f" * 64, 200, 200, [])
    meta = ImageMeta("/photos/grey.jpg", "/photos/grey.jpg", "", "default")
    empty = np.zeros((0, face_models.dim), dtype=np.float32)
    return (to_records(image, empty, meta, face_models.model_id),)


def test_an_index_reopened_keeps_everything(
    face_models: FaceModels, backend: Backend, analyzed: Analyzed
) -> None:
    store = backend.open(face_models.model_id, face_models.dim)
    image, faces = records(analyzed, "t1", store.model_id, label="family")
    store.put_images([(image, faces)])
    before = store.stats()
    store.close()

    reopened = backend.open(face_models.model_id, face_models.dim)
    try:
        assert reopened.stats() == before
        assert reopened.get_image(image.image_id) == image
        best = reopened.query(np.array([faces[3].vector]), 1, -1.0, Filters())[0][0]
        assert (best.image_id, best.face_index) == (image.image_id, 3)
        assert best.score == pytest.approx(1.0, abs=1e-3)
    finally:
        reopened.close()


def test_opening_an_index_with_another_model_is_refused(
    face_models: FaceModels, backend: Backend, analyzed: Analyzed
) -> None:
    store = backend.open("model-a", face_models.dim)
    store.put_images([records(analyzed, "gdp", "model-a")])
    store.close()

    with pytest.raises(StoreError) as refused:
        backend.open("model-b", face_models.dim)

    message = str(refused.value)
    assert "holds faces of model-a" in message
    assert "the configured model is model-b" in message
    assert backend.location in message


def test_a_refused_open_releases_the_data_directory(
    face_models: FaceModels, backend: Backend, analyzed: Analyzed
) -> None:
    """The caller keeps the error (as a service that logs or reports it does): the refused
    store must not keep the directory locked meanwhile."""
    store = backend.open("model-a", face_models.dim)
    store.put_images([records(analyzed, "gdp", "model-a")])
    store.close()
    with pytest.raises(StoreError, match="model-a") as refused:
        backend.open("model-b", face_models.dim)

    again = backend.open("model-a", face_models.dim)
    try:
        assert again.stats().faces == 5
    finally:
        again.close()
    assert refused.value.code == "store"


def test_a_refused_open_leaves_the_index_as_it_was(
    face_models: FaceModels, backend: Backend
) -> None:
    store = backend.open("model-a", face_models.dim)
    store.close()

    with pytest.raises(StoreError, match="model-a"):
        backend.open("model-b", face_models.dim)

    again = backend.open("model-a", face_models.dim)
    try:
        names = again.collection_names()
        aliases = again.aliases()
    finally:
        again.close()
    assert names == {
        faces_collection_name("model-a"),
        IMAGES_COLLECTION,
        FRAMES_COLLECTION,
        optouts_collection_name("model-a"),
        TOMBSTONES_COLLECTION,
    }
    assert aliases == {FACES_ALIAS: faces_collection_name("model-a")}


@pytest.mark.parametrize("edge", [False, True], ids=["local", "edge"])
def test_a_second_open_of_a_local_folder_in_use_is_refused_with_a_clear_error(
    tmp_path: Path, face_models: FaceModels, edge: bool
) -> None:
    """Folders only (one process per folder); a server takes any number of clients."""
    folder = Backend(tmp_path / "index", edge=edge)
    store = folder.open(face_models.model_id, face_models.dim)
    try:
        with pytest.raises(StoreError, match="in use by another facesearch process"):
            folder.open(face_models.model_id, face_models.dim)
    finally:
        store.close()
    folder.open(face_models.model_id, face_models.dim).close()  # closing let it go


def staged(rng: np.random.Generator, video: str, sample: int, faces: int, dim: int) -> FrameFaces:
    """A sampled frame of ``video`` with ``faces`` random faces."""
    vectors = rng.normal(size=(faces, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = [
        FaceRecord(video, i, (i, 2.0, 30.0, 40.0), 0.9, 0.8, v.tolist())
        for i, v in enumerate(vectors)
    ]
    return FrameFaces(video, sample, sample * 500, sample == 2, found)


def test_video_frames_are_kept_in_order_overwritten_by_redelivery_and_dropped(
    store: FaceStore,
) -> None:
    rng = np.random.default_rng(5)
    video = "ab" * 32

    def frame(sample: int, faces: int) -> FrameFaces:
        return staged(rng, video, sample, faces, store.dim)

    frames = [frame(2, 1), frame(0, 2), frame(1, 0)]  # a frame without a face is kept too
    for kept in frames:
        store.stage_frame(kept)
    store.stage_frame(frames[1])  # delivered again: the same point
    store.stage_frame(replace(frames[0], video_id="cd" * 32))  # another video

    got = store.staged_frames(video)
    assert [(f.sample, f.ms, f.cut, len(f.faces)) for f in got] == [
        (0, 0, False, 2),
        (1, 500, False, 0),
        (2, 1000, True, 1),
    ]
    assert got[0].faces[1].box == frames[1].faces[1].box
    assert np.allclose(got[0].faces[1].vector, frames[1].faces[1].vector)
    assert store.stats().faces == 0  # kept apart from the searchable faces

    store.drop_staged(video)
    assert store.staged_frames(video) == []
    assert len(store.staged_frames("cd" * 32)) == 1  # another video's frames stay


def exported_faces(pages: list[list[Item]]) -> dict[str, Item]:
    return {image.image_id: (image, faces) for page in pages for image, faces in page}


def test_export_gives_every_image_record_with_its_faces_and_their_vectors(
    store: FaceStore, analyzed: Analyzed
) -> None:
    items = [records(analyzed, name, store.model_id, label=name) for name in ("players", "gdp")]
    items += [records(analyzed, name, store.model_id) for name in ("t1", "yaoming")]
    faceless = replace(items[1][0], image_id="ef" * 32, faces=0)
    store.put_images([*items, (faceless, [])])

    pages = list(store.export(2))

    assert [len(page) for page in pages] == [2, 2, 1]
    got = exported_faces(pages)
    assert got[faceless.image_id] == (faceless, [])
    for image, faces in items:
        got_image, got_faces = got[image.image_id]
        assert got_image == image
        assert [face.face_index for face in got_faces] == [face.face_index for face in faces]
        for mine, theirs in zip(faces, got_faces, strict=True):
            assert theirs.box == pytest.approx(mine.box, abs=1e-3)
            assert np.allclose(theirs.vector, mine.vector, atol=1e-5)


def test_export_staged_gives_every_staged_frame_of_every_video(store: FaceStore) -> None:
    rng = np.random.default_rng(6)
    videos = ("ab" * 32, "cd" * 32)
    frames = [staged(rng, video, n, n + 1, store.dim) for video in videos for n in (0, 1)]
    for frame in frames:
        store.stage_frame(frame)

    got = [frame for page in store.export_staged() for frame in page]

    assert sorted((f.video_id, f.sample, f.ms, len(f.faces)) for f in got) == [
        (f.video_id, f.sample, f.ms, len(f.faces)) for f in frames
    ]
    for frame in got:
        (mine,) = [f for f in frames if (f.video_id, f.sample) == (frame.video_id, frame.sample)]
        assert np.allclose([face.vector for face in frame.faces], [f.vector for f in mine.faces])


def test_copy_index_into_edge_gives_the_same_answers_and_doubles_nothing_when_repeated(
    store: FaceStore, analyzed: Analyzed, tmp_path: Path
) -> None:
    names = ("players", "gdp", "t1")
    items = [records(analyzed, name, store.model_id, label=name) for name in names]
    store.put_images(items)
    store.stage_frame(staged(np.random.default_rng(7), "ab" * 32, 0, 2, store.dim))
    target = EdgeFaceStore.open(store.model_id, store.dim, tmp_path / "copy")
    try:
        copied = copy_index(store, target)
        again = copy_index(store, target)

        assert copied == again == Copied(images=3, faces=face_total(items), frames=1)
        assert replace(target.stats(), location="") == replace(store.stats(), location="")
        assert len(target.staged_frames("ab" * 32)) == 1
        query = analyzed["yaoming"][1]
        theirs = target.query(query, 10, -1.0, Filters())[0]
        mine = store.query(query, 10, -1.0, Filters())[0]
        assert [(m.image_id, m.face_index) for m in theirs] == [
            (m.image_id, m.face_index) for m in mine
        ]
        assert [m.score for m in theirs] == pytest.approx([m.score for m in mine], abs=1e-4)
    finally:
        target.close()


def test_stores_opening_one_empty_server_at_once_all_succeed(
    qdrant_server: QdrantServer, face_models: FaceModels, tmp_path: Path
) -> None:
    """Search replicas may start together: each creates what is missing (collections, payload
    indexes, the alias), racing the others; all open, and the server holds one of each."""
    url = qdrant_server.url

    def opened(_: int) -> QdrantFaceStore:
        return QdrantFaceStore.open(face_models.model_id, face_models.dim, tmp_path, url)

    for _ in range(3):
        wipe(url)
        with ThreadPoolExecutor(4) as pool:
            stores = list(pool.map(opened, range(4)))
        names = stores[0].collection_names()
        aliases = set(stores[0].aliases())
        for store in stores:
            store.close()
        assert names == {
            stores[0].collection,
            IMAGES_COLLECTION,
            FRAMES_COLLECTION,
            optouts_collection_name(face_models.model_id),
            TOMBSTONES_COLLECTION,
        }
        assert aliases == {FACES_ALIAS}
    wipe(url)


def test_migrate_copies_the_embedded_index_into_a_server_that_then_answers_the_same(
    qdrant_server: QdrantServer,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    run_with_env: Callable[..., subprocess.CompletedProcess[str]],
    home: Path,
    demo: dict[str, Path],
) -> None:
    ok(run_cli("index", demo["players"], demo["gdp"], demo["t1"], "--label", "gallery"))
    embedded = as_json(run_cli("stats", "--json"))
    url = qdrant_server.url
    served = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    served.update(FACESEARCH_HOME=str(home / "unused"), QDRANT_URL=url)
    try:
        first = as_json(run_cli("migrate", "--to", url, "--json"))
        again = as_json(run_cli("migrate", "--to", url, "--json"))
        on_server = as_json(run_with_env(served, "stats", "--json"))
        asked = ("search", demo["yaoming"], "--json", "--threshold", "-1")
        there = as_json(run_with_env(served, *asked))
        here = as_json(run_cli(*asked))
    finally:
        wipe(url)

    copied = {"images": 3, "faces": 33, "frames": 0}
    assert first == again == {"from": str(home / "edge"), "to": url, **copied}
    assert {**on_server, "location": url} == {**embedded, "location": url}
    (mine,), (theirs,) = here["faces"], there["faces"]
    assert [m["image_id"] for m in theirs["matches"]] == [m["image_id"] for m in mine["matches"]]
    scores = [m["score"] for m in theirs["matches"]]
    assert scores == pytest.approx([m["score"] for m in mine["matches"]], abs=1e-4)


def test_a_server_collection_takes_the_hnsw_settings_when_it_is_created(
    qdrant_server: QdrantServer, analyzed: Analyzed, face_models: FaceModels
) -> None:
    url = qdrant_server.url
    hnsw = HnswSettings(m=8, ef_construct=40, ef=20)
    store = QdrantFaceStore.open(face_models.model_id, face_models.dim, Path(), url, hnsw=hnsw)
    try:
        store.put_images([records(analyzed, "players", store.model_id)])
        client = QdrantClient(url=url, check_compatibility=False)
        try:
            graph = client.get_collection(store.collection).config.hnsw_config
        finally:
            client.close()
        (matches,) = store.query(analyzed["yaoming"][1], 1, -1.0, Filters())
    finally:
        store.close()
        wipe(url)
    assert (graph.m, graph.ef_construct) == (8, 40)
    assert matches[0].image_id == analyzed["players"][0].image_id
