"""Qdrant Edge's own behaviour beyond the store contract (tests/integration/test_store.py runs the
contract on Edge too): the folder's layout and manifest, a newer or damaged folder refused with a
clear error, the HNSW graph built as the index grows, and the settings that select Edge."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge

from facesearch.edge_folder import FORMAT_VERSION, MANIFEST
from facesearch.edge_store import EdgeFaceStore
from facesearch.errors import StoreError
from facesearch.records import FaceRecord, Filters, ImageMeta, ImageRecord
from facesearch.settings import CoreSettings, HnswSettings
from facesearch.store import QdrantFaceStore
from facesearch.stores import open_store

MODEL, DIM = "test-model", 8
FACES = "faces__test-model"


def random_items(
    count: int, per_image: int, dim: int, seed: int = 3
) -> list[tuple[ImageRecord, list[FaceRecord]]]:
    """``count`` images of ``per_image`` faces with random unit vectors."""
    rng = np.random.default_rng(seed)
    items = []
    for n in range(count):
        image_id = f"{n:064x}"
        vectors = rng.normal(size=(per_image, dim))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faces = [
            FaceRecord(image_id, i, (0.0, 0.0, 9.0, 9.0), 0.9, 0.8, v.tolist())
            for i, v in enumerate(vectors)
        ]
        meta = ImageMeta(f"/photos/{n}.jpg", f"/photos/{n}.jpg", f"person{n % 3}")
        image = ImageRecord(image_id, meta, per_image, MODEL, 100, 100, "2024-01-01T00:00:00Z")
        items.append((image, faces))
    return items


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """An Edge index with one image in it, closed."""
    path = tmp_path / "edge"
    store = EdgeFaceStore.open(MODEL, DIM, path)
    store.put_images(random_items(1, 2, DIM))
    store.close()
    return path


def test_each_collection_is_a_shard_folder_beside_the_manifest(index: Path) -> None:
    assert sorted(child.name for child in index.iterdir()) == [
        ".lock",
        FACES,
        "images",
        MANIFEST,
        "video_frames",
    ]
    manifest = json.loads((index / MANIFEST).read_text())
    assert manifest == {"format": FORMAT_VERSION, "model": MODEL, "dim": DIM}


def test_an_index_of_a_newer_format_is_refused_naming_its_version(index: Path) -> None:
    manifest = json.loads((index / MANIFEST).read_text())
    (index / MANIFEST).write_text(json.dumps({**manifest, "format": FORMAT_VERSION + 1}))

    with pytest.raises(StoreError) as refused:
        EdgeFaceStore.open(MODEL, DIM, index)

    message = str(refused.value)
    assert f"index format {FORMAT_VERSION + 1}" in message
    assert "newer facesearch" in message
    assert str(index) in message
    (index / MANIFEST).write_text(json.dumps(manifest))
    EdgeFaceStore.open(MODEL, DIM, index).close()  # the refusal kept nothing locked


def garbage_manifest(index: Path) -> None:
    (index / MANIFEST).write_text('{"format": 1, "mod')


def manifest_without_model(index: Path) -> None:
    (index / MANIFEST).write_text('{"format": 1}')


def shards_without_manifest(index: Path) -> None:
    (index / MANIFEST).unlink()  # as a crash while creating the index leaves it


def shard_missing(index: Path) -> None:
    shutil.rmtree(index / "images")


def segment_garbage(index: Path) -> None:
    for state in (index / FACES / "segments").glob("*/segment.json"):
        state.write_text("{")


@pytest.mark.parametrize(
    "damage",
    [
        garbage_manifest,
        manifest_without_model,
        shards_without_manifest,
        shard_missing,
        segment_garbage,
    ],
)
def test_a_damaged_folder_is_refused_saying_how_to_rebuild_it(
    index: Path, damage: Callable[[Path], None]
) -> None:
    damage(index)

    for _ in range(2):  # the same answer again: the refusal kept nothing locked
        with pytest.raises(StoreError) as refused:
            EdgeFaceStore.open(MODEL, DIM, index)
        message = str(refused.value)
        assert "damaged or was left half-written" in message
        assert f"delete {index} and index the files again" in message


def test_a_closed_store_answers_with_a_store_error(index: Path) -> None:
    store = EdgeFaceStore.open(MODEL, DIM, index)
    store.close()
    store.close()  # closing twice is harmless

    with pytest.raises(StoreError, match="closed"):
        store.stats()


def test_the_hnsw_graph_is_built_as_the_index_grows_and_finds_every_face(tmp_path: Path) -> None:
    """Past Edge's indexing threshold (about 5,000 faces of 512 dimensions) the faces move into
    an HNSW-indexed, quantized segment; with the default settings every face still finds itself
    first, at score 1 (random vectors, HNSW's hardest case: m=8, ef=64 miss about 0.3%)."""
    dim, path = 512, tmp_path / "edge"
    items = random_items(60, 100, dim)
    store = EdgeFaceStore.open(MODEL, dim, path)  # the default HNSW settings
    try:
        for start in range(0, len(items), 10):
            store.put_images(items[start : start + 10])
        queries = np.array([faces[7].vector for _, faces in items], dtype=np.float32)
        results = store.query(queries, 1, -1.0, Filters())
        labelled = store.query(queries[:3], 100, -1.0, Filters(label="person1"))
        stats = store.stats()
    finally:
        store.close()

    assert [(m[0].image_id, m[0].face_index) for m in results] == [
        (image.image_id, 7) for image, _ in items
    ]
    assert all(m[0].score == pytest.approx(1.0, abs=1e-3) for m in results)
    assert {m.label for matches in labelled for m in matches} == {"person1"}
    assert (stats.images, stats.faces) == (60, 6000)
    assert stats.labels == {"person0": 20, "person1": 20, "person2": 20}
    shard = qdrant_edge.EdgeShard.load(str(path / FACES))
    try:
        assert shard.info().indexed_vectors_count >= 5000
    finally:
        shard.close()
    # Other HNSW settings apply to the segments built from now on (smaller ones find less).
    reopened = EdgeFaceStore.open(MODEL, dim, path, hnsw=HnswSettings(m=8, ef_construct=64, ef=64))
    try:
        assert reopened.stats() == stats
    finally:
        reopened.close()


def test_open_store_opens_edge_beside_local_mode_when_the_settings_say_so(tmp_path: Path) -> None:
    edge = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path), "FACESEARCH_STORE": "edge"})
    local = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path)})

    for settings, kind, folder in (
        (edge, EdgeFaceStore, "edge"),
        (local, QdrantFaceStore, "qdrant"),
    ):
        store = open_store(settings, MODEL, DIM)
        try:
            assert isinstance(store, kind)
            assert store.location == str(tmp_path / folder)
            assert store.stats().faces == 0
        finally:
            store.close()
