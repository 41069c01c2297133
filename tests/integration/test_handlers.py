"""The services' handlers chained by hand (detector -> embedder -> search service) on the real
models and a local Qdrant: the same faces, ids and answers as the embedded CLI, bad events
refused where they enter, and the embedder's micro-batches giving each event its own vectors."""

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from facesearch.calibration import LFW
from facesearch.codec import events as event_codec
from facesearch.errors import BadImageError, BadMessageError, BadUriError
from facesearch.ids import image_id
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.metrics import WorkMetrics
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import events_pb2
from facesearch.records import Filters, ImageMeta
from facesearch.searching import LocalSteps, search_image
from facesearch.settings import CoreSettings, QualityGate
from facesearch.store import QdrantFaceStore
from facesearch.stream.handlers import detector_handler, embedder_batch_handler, store_handler

YAO_BOX = (720.0, 142.0, 764.0, 192.0)


@pytest.fixture
def store(tmp_path: Path, face_models: FaceModels) -> Iterator[QdrantFaceStore]:
    opened = QdrantFaceStore.open(face_models.model_id, face_models.dim, tmp_path / "qdrant")
    yield opened
    opened.close()


def image_event(path: Path) -> bytes:
    data = path.read_bytes()
    meta = event_codec.meta_to_proto(ImageMeta(str(path.resolve()), str(path.resolve())))
    event = events_pb2.ImageEvent(image_id=image_id(data), data=data, meta=meta)
    event.submitted_at.CopyFrom(event_codec.now())
    return event.SerializeToString()


def embed_one(
    models: FaceModels, key: bytes | None, faces: bytes
) -> Iterable[tuple[bytes | None, bytes]]:
    """The embedder's outputs for one FacesEvent, as a batch of one."""
    [outputs] = embedder_batch_handler(models)([(key, faces)])
    assert not isinstance(outputs, Exception)
    return outputs


def through_pipeline(
    path: Path, models: FaceModels, settings: CoreSettings, store: QdrantFaceStore
) -> None:
    detect, save = detector_handler(models, settings), store_handler(store)
    [(key, faces)] = detect(None, image_event(path))
    [(same_key, embeddings)] = embed_one(models, key, faces)
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

    steps = LocalSteps(face_models, store, settings)
    faces = search_image(steps, demo["yaoming"].read_bytes(), 5, -1.0, Filters(), LFW).faces
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
    [refused] = embedder_batch_handler(face_models)([(None, b"\xff garbage")])
    assert isinstance(refused, BadMessageError)


def test_the_search_service_refuses_vectors_of_another_model(
    demo: dict[str, Path],
    face_models: FaceModels,
    settings: CoreSettings,
    store: QdrantFaceStore,
) -> None:
    [(key, faces)] = detector_handler(face_models, settings)(None, image_event(demo["t1"]))
    [(_, embeddings)] = embed_one(face_models, key, faces)
    event = events_pb2.EmbeddingsEvent.FromString(embeddings)
    event.model = "another-model"

    with pytest.raises(BadMessageError, match="another-model"):
        store_handler(store)(key, event.SerializeToString())
    assert store.stats().faces == 0


def faces_event(image: AnalyzedImage) -> bytes:
    meta = event_codec.meta_to_proto(ImageMeta(image.image_id, image.image_id))
    return event_codec.faces_event(image, meta, "detector", event_codec.now()).SerializeToString()


def short_crop(event: bytes) -> bytes:
    """A FacesEvent whose first crop lost its last row: parses, but is no aligned face."""
    parsed = events_pb2.FacesEvent.FromString(event)
    parsed.faces[0].crop = parsed.faces[0].crop[: -112 * 3]
    return parsed.SerializeToString()


def test_the_batch_embedder_gives_each_event_the_vectors_of_its_own_faces(
    analyzed: dict[str, tuple[AnalyzedImage, np.ndarray]],
    face_models: FaceModels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crops_per_call: list[int] = []
    embed = face_models.embed

    def counting_embed(crops: list[np.ndarray]) -> np.ndarray:
        crops_per_call.append(len(crops))
        return embed(crops)

    monkeypatch.setattr(face_models, "embed", counting_embed)
    names = ["players", "gdp", "t1"]
    events = {name: faces_event(analyzed[name][0]) for name in names}
    no_faces = AnalyzedImage("f" * 64, 640, 480, [])
    batch = [
        events["players"],
        b"\xff garbage",
        events["gdp"],
        short_crop(events["t1"]),
        faces_event(no_faces),
        events["t1"],
    ]
    registry = CollectorRegistry()
    handle = embedder_batch_handler(face_models, metrics=WorkMetrics(registry))

    outcomes = handle([(b"key", value) for value in batch])

    refused = [isinstance(outcome, BadMessageError) for outcome in outcomes]
    assert refused == [False, True, False, True, False, False]
    for name, outcome in zip(names, [outcomes[0], outcomes[2], outcomes[5]], strict=True):
        image, expected = analyzed[name]
        assert not isinstance(outcome, Exception)
        [(key, value)] = outcome
        event = events_pb2.EmbeddingsEvent.FromString(value)
        assert key == image.image_id.encode() and event.model == face_models.model_id
        assert [f.face_index for f in event.faces] == [f.index for f in image.faces]
        vectors = np.array([list(f.vector) for f in event.faces], dtype=np.float32)
        assert vectors.shape == expected.shape == (len(image.faces), face_models.dim)
        assert np.allclose(vectors, expected, atol=1e-5)
    assert not isinstance(outcomes[4], Exception)
    [(key, value)] = outcomes[4]
    empty = events_pb2.EmbeddingsEvent.FromString(value)
    assert (key, empty.image_id, len(empty.faces)) == (b"f" * 64, "f" * 64, 0)
    # One model call for the crops of every valid event.
    assert crops_per_call == [sum(len(analyzed[name][0].faces) for name in names)]
    labels = {"stage": "embed"}
    assert registry.get_sample_value("facesearch_inference_seconds_count", labels) == 1.0


def test_the_detector_leaves_out_the_faces_the_quality_gate_refuses(
    face_models: FaceModels,
    settings: CoreSettings,
    demo: dict[str, Path],
    analyzed: Any,
    store: QdrantFaceStore,
) -> None:
    strict = replace(settings, quality=QualityGate(min_face_px=32.0))
    registry = CollectorRegistry()
    [(key, value)] = detector_handler(face_models, strict, metrics=WorkMetrics(registry))(
        None, image_event(demo["players"])
    )
    event = events_pb2.FacesEvent.FromString(value)
    every = analyzed["players"][0].faces
    small = [f.index for f in every if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) < 32]
    assert small, "players.jpg was expected to hold faces under 32 px"
    assert sorted(f.index for f in event.faces) == sorted(set(range(len(every))) - set(small))
    assert [f.face_index for f in event.unindexed] == small
    assert {f.rejection.reason for f in event.unindexed} == {"too_small"}
    counted = registry.get_sample_value("facesearch_faces_unindexed_total", {"reason": "too_small"})
    assert counted == len(small)

    # The faces left out travel on with the image and are recorded with it, reason and all.
    [(_, embeddings)] = embed_one(face_models, key, value)
    store_handler(store)(key, embeddings)
    record = store.get_image(event.image_id)
    assert record is not None
    assert [(f.index, f.rejection.reason) for f in record.unindexed] == [
        (i, "too_small") for i in small
    ]
    assert all(f.rejection.value < f.rejection.limit == 32.0 for f in record.unindexed)


def test_the_detector_reads_images_by_uri_only_inside_its_roots(
    face_models: FaceModels, settings: CoreSettings, demo: dict[str, Path], tmp_path: Path
) -> None:
    data = demo["t1"].read_bytes()
    (tmp_path / "t1.jpg").write_bytes(data)
    event = events_pb2.ImageEvent(image_id=image_id(data), uri=(tmp_path / "t1.jpg").as_uri())
    allowed = replace(settings, uri_roots=(tmp_path,))

    [(_, value)] = detector_handler(face_models, allowed)(None, event.SerializeToString())
    assert events_pb2.FacesEvent.FromString(value).faces
    with pytest.raises(BadUriError, match="outside the folders"):
        elsewhere = replace(settings, uri_roots=(tmp_path / "other",))
        detector_handler(face_models, elsewhere)(None, event.SerializeToString())
    (tmp_path / "t1.jpg").write_bytes(demo["gdp"].read_bytes())  # changed after submission
    with pytest.raises(BadMessageError, match="not the sha256"):
        detector_handler(face_models, allowed)(None, event.SerializeToString())
