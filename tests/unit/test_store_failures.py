"""Qdrant failing under a running service: the store says StoreError, the search service's
handler turns it into a TransientError (retried, then the partition paused), never a dead
letter. Qdrant's failure is injected into a real local-mode client; no server is needed."""

from pathlib import Path

import numpy as np
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException

from facesearch.codec import events as event_codec
from facesearch.errors import StoreError, TransientError
from facesearch.faces import DetectedFace
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.store import QdrantFaceStore
from facesearch.stream.handlers import store_handler

MODEL, DIM = "test-model", 8


def embeddings() -> bytes:
    face = DetectedFace(
        0, (1.0, 2.0, 3.0, 4.0), 0.9, np.zeros((5, 2)), np.zeros((112, 112, 3), np.uint8), 0.5
    )
    faces = event_codec.faces_event(
        AnalyzedImage("cd" * 32, 10, 10, [face]), api_pb2.ImageMeta(), "d", event_codec.now()
    )
    return event_codec.embeddings_event(
        faces, np.ones((1, DIM), np.float32), MODEL
    ).SerializeToString()


def refusing(store: QdrantFaceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ResponseHandlingException(ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(store.client, "upsert", down)


def test_a_failing_qdrant_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = QdrantFaceStore.open(MODEL, DIM, tmp_path / "qdrant")
    refusing(store, monkeypatch)
    image, faces = event_codec.records_from_embeddings(
        event_codec.parse(events_pb2.EmbeddingsEvent, embeddings()), DIM
    )

    with pytest.raises(StoreError, match="connection refused"):
        store.put_images([(image, faces)])
    store.close()


def test_the_search_service_retries_a_failing_qdrant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = QdrantFaceStore.open(MODEL, DIM, tmp_path / "qdrant")
    save = store_handler(store)
    refusing(store, monkeypatch)

    with pytest.raises(TransientError, match="connection refused"):
        save(b"key", embeddings())
    monkeypatch.undo()
    assert save(b"key", embeddings()) == []
    assert store.stats().faces == 1
    store.close()
