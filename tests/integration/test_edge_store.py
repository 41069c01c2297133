"""Qdrant Edge's own behaviour beyond the store contract (tests/integration/test_store.py runs the
contract on Edge too): the folder's layout and manifest, a newer or damaged folder refused with a
clear error, the HNSW graph built as the index grows, and the settings that select Edge."""

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge
from disk_checks import fill

from facesearch.edge_folder import FORMAT_VERSION, MANIFEST
from facesearch.edge_store import INDEXING_THRESHOLD_KB, EdgeFaceStore
from facesearch.errors import StoreError
from facesearch.records import (
    FaceRecord,
    Filters,
    FrameFaces,
    ImageMeta,
    ImageRecord,
    Selector,
    StoreStats,
)
from facesearch.settings import CoreSettings, HnswSettings
from facesearch.store import QdrantFaceStore, optouts_collection_name
from facesearch.stores import Copied, open_store

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
        optouts_collection_name(MODEL),
        "tombstones",
        "video_frames",
    ]
    manifest = json.loads((index / MANIFEST).read_text())
    assert manifest == {"format": FORMAT_VERSION, "model": MODEL, "dim": DIM}


def test_an_index_written_before_tombstones_gets_their_shard_and_keeps_its_faces(
    index: Path,
) -> None:
    shutil.rmtree(index / "tombstones")

    store = EdgeFaceStore.open(MODEL, DIM, index)
    try:
        assert store.stats().faces == 2
        store.delete(Selector(label="nobody"))
        assert [t.value for t in store.tombstones([("label", "nobody")])] == ["nobody"]
    finally:
        store.close()


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
    """Past the indexing threshold (about 20,000 faces of 512 dimensions) the faces move into
    an HNSW-indexed, quantized segment; with the default settings every face still finds itself
    first, at score 1 (random vectors, HNSW's hardest case: m=8, ef=64 miss about 0.3%)."""
    dim, path = 512, tmp_path / "edge"
    assert 210 * 100 * dim * 4 > INDEXING_THRESHOLD_KB * 1024
    items = random_items(210, 100, dim)
    store = EdgeFaceStore.open(MODEL, dim, path)  # the default HNSW settings
    try:
        for start in range(0, len(items), 10):
            store.put_images(items[start : start + 10])
        queries = np.array([faces[7].vector for _, faces in items[::3]], dtype=np.float32)
        results = store.query(queries, 1, -1.0, Filters())
        labelled = store.query(queries[:3], 100, -1.0, Filters(label="person1"))
        stats = store.stats()
        on_disk = len(list((path / FACES / "segments").iterdir()))
    finally:
        store.close()

    assert [(m[0].image_id, m[0].face_index) for m in results] == [
        (image.image_id, 7) for image, _ in items[::3]
    ]
    assert all(m[0].score == pytest.approx(1.0, abs=1e-3) for m in results)
    assert {m.label for matches in labelled for m in matches} == {"person1"}
    assert (stats.images, stats.faces) == (210, 21000)
    assert stats.labels == {"person0": 70, "person1": 70, "person2": 70}
    shard = qdrant_edge.EdgeShard.load(str(path / FACES))
    try:
        assert shard.info().indexed_vectors_count >= 20_000
        assert shard.info().segments_count == on_disk  # none replaced left behind while open
    finally:
        shard.close()
    # Other HNSW settings apply to the segments built from now on (smaller ones find less).
    reopened = EdgeFaceStore.open(MODEL, dim, path, hnsw=HnswSettings(m=8, ef_construct=64, ef=64))
    try:
        assert reopened.stats() == stats
    finally:
        reopened.close()


def test_open_store_opens_edge_by_default_and_local_mode_when_the_settings_say_so(
    tmp_path: Path,
) -> None:
    edge = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path)})
    local = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path), "FACESEARCH_STORE": "local"})

    for settings, kind, folder in (
        (local, QdrantFaceStore, "qdrant"),
        (edge, EdgeFaceStore, "edge"),  # and moves local mode's (empty) index in
    ):
        store = open_store(settings, MODEL, DIM)
        try:
            assert isinstance(store, kind)
            assert store.location == str(tmp_path / folder)
            assert store.stats().faces == 0
        finally:
            store.close()


def local_mode_index(home: Path, items: list[tuple[ImageRecord, list[FaceRecord]]]) -> StoreStats:
    """A local-mode index in ``home/qdrant`` holding ``items`` and a staged frame, closed."""
    store = QdrantFaceStore.open(MODEL, DIM, home / "qdrant")
    try:
        store.put_images(items)
        _, faces = items[0]
        store.stage_frame(FrameFaces("ab" * 32, 0, 0, False, faces))
        return store.stats()
    finally:
        store.close()


def test_a_local_mode_index_is_moved_into_edge_when_edge_opens_the_data_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = random_items(300, 2, DIM)  # more than one batch of the copy
    before = local_mode_index(tmp_path, items)
    settings = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path)})
    seen: list[Copied] = []

    with caplog.at_level(logging.WARNING, "facesearch.stores"):
        store = open_store(settings, MODEL, DIM, seen.append)
    try:
        assert replace(store.stats(), location="") == replace(before, location="")
        assert len(store.staged_frames("ab" * 32)) == 1
        image, faces = items[7]
        (matches,) = store.query(np.array([faces[1].vector]), 1, -1.0, Filters())
        assert (matches[0].image_id, matches[0].face_index) == (image.image_id, 1)
        assert matches[0].score == pytest.approx(1.0, abs=1e-4)
    finally:
        store.close()
    assert [copied.images for copied in seen] == [256, 300]
    assert seen[-1].faces == 600
    assert not (tmp_path / "qdrant").exists()
    assert (tmp_path / "qdrant.migrated" / "meta.json").is_file()  # kept, not emptied
    text = caplog.text
    assert f"moving the index at {tmp_path / 'qdrant'}" in text
    assert "moved 300 images, 600 faces and 1 staged video frames" in text

    caplog.clear()
    with caplog.at_level(logging.WARNING, "facesearch.stores"):
        open_store(settings, MODEL, DIM).close()  # once only
    assert caplog.text == ""


def test_a_move_cut_short_is_done_again_without_doubling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = random_items(300, 1, DIM)
    before = local_mode_index(tmp_path, items)
    settings = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path)})
    writes = EdgeFaceStore.put_images
    calls: list[int] = []

    def fail_the_second(self: EdgeFaceStore, batch: list[Any]) -> None:
        calls.append(len(batch))
        if len(calls) == 2:
            raise StoreError("disk full")
        writes(self, batch)

    monkeypatch.setattr(EdgeFaceStore, "put_images", fail_the_second)
    with pytest.raises(StoreError, match="disk full"):
        open_store(settings, MODEL, DIM)
    monkeypatch.undo()
    assert (tmp_path / "qdrant" / "meta.json").is_file()  # not renamed: the move is not done

    store = open_store(settings, MODEL, DIM)  # the failed open let the folder go
    try:
        assert replace(store.stats(), location="") == replace(before, location="")
    finally:
        store.close()
    assert (tmp_path / "qdrant.migrated").is_dir()


def test_a_local_mode_index_of_another_model_is_refused_and_kept(tmp_path: Path) -> None:
    store = QdrantFaceStore.open("other-model", DIM, tmp_path / "qdrant")
    store.close()
    settings = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path)})

    with pytest.raises(StoreError, match="holds faces of other-model"):
        open_store(settings, MODEL, DIM)

    assert (tmp_path / "qdrant" / "meta.json").is_file()
    EdgeFaceStore.open(MODEL, DIM, tmp_path / "edge").close()  # and let go


def test_a_write_the_disk_has_no_room_for_is_refused_and_the_index_goes_on_after(
    small_disk: Path,
) -> None:
    """Edge would die of SIGBUS writing to a full disk through its memory maps; the store
    refuses the write first, with a StoreError naming the folder, and the same process writes
    again once there is room."""
    path = small_disk / "edge"
    items = random_items(40, 2, DIM)
    store = EdgeFaceStore.open(MODEL, DIM, path)
    try:
        store.put_images(items[:20])
        filler = fill(small_disk)
        for write in (
            lambda: store.put_images(items[20:]),
            lambda: store.stage_frame(FrameFaces("ab" * 32, 0, 0, False, items[0][1])),
            lambda: store.delete(Selector(label="person1")),
        ):
            with pytest.raises(StoreError, match=f"the disk holding the index at {path} has 0 MiB"):
                write()
        assert store.stats().faces == 40  # reads go on
        filler.unlink()
        store.put_images(items[20:])
        assert store.stats().faces == 80
    finally:
        store.close()
