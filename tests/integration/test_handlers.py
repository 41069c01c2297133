"""The services' handlers chained by hand (detector -> embedder -> search service) on the real
models and a local Qdrant: the same faces, ids and answers as the embedded CLI, and bad events
refused where they enter."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from facesearch import codec
from facesearch.errors import BadImageError, BadMessageError
from facesearch.handlers import detector_handler, embedder_handler, store_handler
from facesearch.ids import image_id
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.models import FaceModels
from facesearch.proto.v1 import events_pb2
from facesearch.records import Filters, ImageMeta
from facesearch.searching import search_image
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

YAO_BOX = (720.0, 142.0, 764.0, 192.0)


@pytest.fixture
def store(tmp_path: Path, face_models: FaceModels) -> Iterator[QdrantFaceStore]:
    opened = QdrantFaceStore.open(face_models.model_id, face_models.dim, tmp_path / "qdrant")
    yield opened
    opened.close()


def image_event(path: Path) -> bytes:
    data = path.read_bytes()
    meta = codec.meta_to_proto(ImageMeta(str(path.resolve()), str(path.resolve())))
    event = events_pb2.ImageEvent(image_id=image_id(data), data=data, meta=meta)
    event.submitted_at.CopyFrom(codec.now())
    return event.SerializeToString()


def through_pipeline(
    path: Path, models: FaceModels, settings: CoreSettings, store: QdrantFaceStore
) -> None:
    detect, embed, save = (
        detector_handler(models, settings),
        embedder_handler(models),
        store_handler(store),
    )
    [(key, faces)] = detect(None, image_event(path))
    [(same_key, embeddings)] = embed(key, faces)
    assert key == same_key == image_id(path.read_bytes()).encode()
    assert save(key, embeddings) == []


def test_the_handlers_index_what_the_embedded_cli_indexes(
    demo: dict[str, Path],
    face_models: FaceModels,
    settings: CoreSettings,
    store: QdrantFaceStore,
) -> None:
    gallery = [demo["players"], demo["gdp"], demo["t1"]]
    for path in gallery:
        through_pipeline(path, face_models, settings, store)
    stored = store.stats()

    faces = search_image(
        demo["yaoming"].read_bytes(), face_models, store, settings, 5, -1.0, Filters()
    )
    best = faces[0].matches[0]
    assert Path(best.path).name == "players.jpg"
    assert all(abs(a - b) <= 6 for a, b in zip(best.box, YAO_BOX, strict=True))
    assert best.score > 0.5 > faces[0].matches[1].score

    # The embedded indexer finds every image already there, under the same ids.
    outcomes: list[Outcome] = []
    inputs, _ = collect_inputs(gallery, "", False)
    Indexer(face_models, store, settings).run(inputs, outcomes.append)
    assert [o.status for o in outcomes] == ["unchanged"] * 3
    assert store.stats() == stored
    assert stored.faces == 33


def test_bad_events_are_refused_where_they_enter(
    demo: dict[str, Path], face_models: FaceModels, settings: CoreSettings
) -> None:
    detect = detector_handler(face_models, settings)
    forged = events_pb2.ImageEvent(image_id="0" * 64, data=demo["players"].read_bytes())
    not_an_image = events_pb2.ImageEvent(image_id=image_id(b"hello"), data=b"hello")

    with pytest.raises(BadMessageError, match="sha256"):
        detect(None, forged.SerializeToString())
    with pytest.raises(BadImageError):
        detect(None, not_an_image.SerializeToString())
    with pytest.raises(BadMessageError):
        embedder_handler(face_models)(None, b"\xff garbage")


def test_the_search_service_refuses_vectors_of_another_model(
    demo: dict[str, Path],
    face_models: FaceModels,
    settings: CoreSettings,
    store: QdrantFaceStore,
) -> None:
    [(key, faces)] = detector_handler(face_models, settings)(None, image_event(demo["t1"]))
    [(_, embeddings)] = embedder_handler(face_models)(key, faces)
    event = events_pb2.EmbeddingsEvent.FromString(embeddings)
    event.model = "another-model"

    with pytest.raises(BadMessageError, match="another-model"):
        store_handler(store)(key, event.SerializeToString())
    assert store.stats().faces == 0
