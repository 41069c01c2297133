"""The opt-out gallery's contract on every store: qdrant-client's local mode, a real Qdrant
server and Qdrant Edge (the ``backend`` and ``store`` fixtures of test_store), and the erasure
an opt-out makes on real faces."""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from facesearch.calibration import LFW
from facesearch.edge_store import EdgeFaceStore
from facesearch.models import FaceModels
from facesearch.optout import OPTED_OUT, OptOutCheck, add_optout, new_optout, screen_records
from facesearch.pipeline import AnalyzedImage, to_records
from facesearch.records import FaceRecord, Filters, ImageMeta, ImageRecord
from facesearch.store import FaceStore, QdrantFaceStore, optouts_collection_name

Analyzed = dict[str, tuple[AnalyzedImage, np.ndarray]]


def records(
    analyzed: Analyzed, name: str, model_id: str, collection: str = "default"
) -> tuple[ImageRecord, list[FaceRecord]]:
    image, vectors = analyzed[name]
    meta = ImageMeta(f"/photos/{name}.jpg", f"/photos/{name}.jpg", "", collection)
    return to_records(image, vectors, meta, model_id)


@dataclass(frozen=True)
class Backend:
    """Where a test's index lives, as in test_store: local mode, a server, or Qdrant Edge."""

    path: Path
    url: str = ""
    edge: bool = False

    def open(self, model_id: str, dim: int) -> FaceStore:
        if self.edge:
            return EdgeFaceStore.open(model_id, dim, self.path)
        return QdrantFaceStore.open(model_id, dim, self.path, self.url)


@pytest.fixture(params=["local", "server", "edge"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param != "server":
        yield Backend(tmp_path / request.param, edge=request.param == "edge")
        return
    url = request.getfixturevalue("qdrant_server").url
    yield Backend(tmp_path / "unused", url)
    client = QdrantClient(url=url, check_compatibility=False)
    try:  # the next test starts empty
        for collection in client.get_collections().collections:
            client.delete_collection(collection.name)
    finally:
        client.close()


@pytest.fixture
def store(face_models: FaceModels, backend: Backend) -> Iterator[FaceStore]:
    opened = backend.open(face_models.model_id, face_models.dim)
    yield opened
    opened.close()


def test_opt_outs_are_kept_listed_with_their_vectors_and_removed(
    store: FaceStore, analyzed: Analyzed
) -> None:
    _, vectors = analyzed["yaoming"]
    entry = new_optout(vectors[0], "ticket 1", store.model_id)
    other = new_optout(analyzed["t1"][1][0], "", store.model_id)
    store.put_optout(entry)
    store.put_optout(entry)  # the same entry again: one entry
    store.put_optout(other)

    listed = {e.optout_id: e for e in store.optouts()}

    assert set(listed) == {entry.optout_id, other.optout_id}
    kept = listed[entry.optout_id]
    assert (kept.note, kept.created_at, kept.model) == (
        "ticket 1",
        entry.created_at,
        store.model_id,
    )
    assert np.allclose(kept.vector, entry.vector, atol=1e-6)
    assert store.remove_optout(entry.optout_id) is True
    assert store.remove_optout(entry.optout_id) is False
    assert [e.optout_id for e in store.optouts()] == [other.optout_id]


def test_the_gallery_is_apart_from_the_faces(store: FaceStore, analyzed: Analyzed) -> None:
    store.put_optout(new_optout(analyzed["yaoming"][1][0], "", store.model_id))
    assert store.stats().faces == 0
    assert store.query(analyzed["yaoming"][1], 10, -1.0, Filters()) == [[]]
    assert optouts_collection_name(store.model_id) in store.collection_names()


def test_opting_out_erases_the_indexed_face_and_tells_its_image(
    store: FaceStore, analyzed: Analyzed
) -> None:
    players = records(analyzed, "players", store.model_id, collection="nba")
    t1 = records(analyzed, "t1", store.model_id)
    store.put_images([players, t1])
    check = OptOutCheck(store, LFW, store.dim)
    yao = analyzed["yaoming"][1][0]

    entry, erased = add_optout(store, check, yao, "ticket 2")

    assert (erased.faces, erased.images, erased.collections) == (1, 1, {"nba": 1})
    image = store.get_image(players[0].image_id)
    assert image is not None and image.faces == len(players[1]) - 1
    (gone,) = image.unindexed
    assert gone.rejection.reason == OPTED_OUT and gone.rejection.value >= check.gallery().threshold
    assert gone.index not in {f.face_index for f in store.get_faces(image.image_id)}
    assert store.stats().faces == len(players[1]) + len(t1[1]) - 1
    assert store.query(yao[None, :], 5, check.gallery().threshold, Filters()) == [[]]
    assert add_optout(store, check, yao, "again")[1].faces == 0  # nothing left to erase
    assert [e.optout_id for e in store.optouts()] == [entry.optout_id]


def test_an_image_indexed_after_keeps_its_opted_out_face_out(
    store: FaceStore, analyzed: Analyzed
) -> None:
    check = OptOutCheck(store, LFW, store.dim)
    add_optout(store, check, analyzed["yaoming"][1][0], "")
    image, faces = screen_records(*records(analyzed, "players", store.model_id), check.gallery())
    store.put_images([(image, faces)])

    stored = store.get_image(image.image_id)
    assert stored is not None and [u.rejection.reason for u in stored.unindexed] == [OPTED_OUT]
    assert len(store.get_faces(image.image_id)) == len(analyzed["players"][0].faces) - 1


@pytest.fixture
def reopened(face_models: FaceModels, backend: Backend) -> Iterator[FaceStore]:
    """The store closed and opened again (a server keeps its collections anyway)."""
    first = backend.open(face_models.model_id, face_models.dim)
    first.put_optout(new_optout(np.eye(face_models.dim)[0], "kept", face_models.model_id))
    first.close()
    again = backend.open(face_models.model_id, face_models.dim)
    yield again
    again.close()


def test_opt_outs_survive_reopening(reopened: FaceStore) -> None:
    assert [e.note for e in reopened.optouts()] == ["kept"]


def test_an_edge_index_made_before_opt_outs_gains_the_gallery_when_opened(
    tmp_path: Path, analyzed: Analyzed, face_models: FaceModels
) -> None:
    path = tmp_path / "edge"
    old = EdgeFaceStore.open(face_models.model_id, face_models.dim, path)
    old.put_images([records(analyzed, "t1", face_models.model_id)])
    old.close()
    name = optouts_collection_name(face_models.model_id)
    shutil.rmtree(path / name)  # as an older facesearch left it: no gallery

    store = EdgeFaceStore.open(face_models.model_id, face_models.dim, path)
    try:
        assert store.optouts() == [] and store.stats().images == 1
        assert name in store.collection_names()
    finally:
        store.close()
