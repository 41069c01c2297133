"""Erasure that sticks, on the real broker with the search service as its own process: an image
whose EmbeddingsEvent is still in Kafka when its Delete comes (produced after the Delete with an
earlier submitted_at, as the gateway would have stamped it) is dropped, not indexed; one
submitted after the Delete is indexed. On the default embedded index, and on a Qdrant server
shared by two search replicas (the Delete answered by one, the events read by the other)."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from facesearch.codec import events as event_codec
from facesearch.devstack.broker import free_port
from facesearch.devstack.qdrant import QdrantServer
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import api_pb2, internal_pb2_grpc

Analyzed = dict[str, tuple[AnalyzedImage, np.ndarray]]
DEADLINE_S = 60.0
LABEL = "anna.lindqvist"  # someone who asked to be erased


def embeddings(
    name: str, analyzed: Analyzed, model: str, submitted: datetime, label: str = ""
) -> tuple[bytes, bytes]:
    """The EmbeddingsEvent of a demo photo, as the embedder would produce it."""
    image, vectors = analyzed[name]
    meta = api_pb2.ImageMeta(source_uri=f"/photos/{name}.jpg", label=label, collection=name)
    stamp = Timestamp()
    stamp.FromDatetime(submitted)
    faces = event_codec.faces_event(image, meta, "detector-test", stamp)
    event = event_codec.embeddings_event(faces, vectors, model)
    return event.image_id.encode(), event.SerializeToString()


def status(stub: internal_pb2_grpc.SearchIndexStub, image_id: str) -> grpc.StatusCode:
    try:
        stub.GetImage(api_pb2.GetImageRequest(image_id=image_id))
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def erased(metric: Callable[..., float], port: int) -> float:
    name = "facesearch_events_erased_total"
    return sum(metric(port, name, field=field) for field in ("image_id", "label", "source_uri"))


def until(what: str, test: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not test():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.2)


def check_erasure_sticks(
    kafka: Any,
    env: dict[str, str],
    deleting: Any,
    consuming: Any,
    analyzed: Analyzed,
    model: str,
    metric: Callable[..., float],
    between: Callable[[], object] = lambda: None,
) -> None:
    """``deleting`` answers the Deletes; ``consuming`` (the same service, or a replica) reads
    the events that were still in Kafka, produced once ``between`` has run."""
    topic = env["FACESEARCH_TOPIC_EMBEDDINGS"]
    ids = {name: analyzed[name][0].image_id for name in ("players", "gdp", "t1", "yaoming")}
    before = datetime.now(UTC) - timedelta(seconds=30)  # submitted, still queued
    with grpc.insecure_channel(deleting.target) as channel:
        stub = internal_pb2_grpc.SearchIndexStub(channel)
        kafka.produce(topic, [embeddings("gdp", analyzed, model, before, label=LABEL)])
        until("gdp.jpg indexed", lambda: status(stub, ids["gdp"]) == grpc.StatusCode.OK)

        by_label = stub.Delete(api_pb2.DeleteRequest(label=LABEL))
        by_id = stub.Delete(api_pb2.DeleteRequest(image_id=ids["yaoming"].upper()))
        with pytest.raises(grpc.RpcError) as refused:
            stub.Delete(api_pb2.DeleteRequest(image_id="yaoming.jpg"))

    assert (by_label.images, by_label.faces, dict(by_label.collections)) == (1, 5, {"gdp": 1})
    assert by_label.selector == api_pb2.DeleteRequest(label=LABEL)
    assert len(by_label.receipt_id) == 32
    deleted_at = by_label.deleted_at.ToDatetime(tzinfo=UTC)
    assert abs(deleted_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert (by_id.images, by_id.faces, by_id.selector.image_id) == (0, 0, ids["yaoming"])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "64 hex digits" in (refused.value.details() or "")

    between()
    after = datetime.now(UTC) + timedelta(seconds=1)  # a new consent
    kafka.produce(
        topic,
        [
            embeddings("players", analyzed, model, before, label=LABEL),  # erased by label
            embeddings("yaoming", analyzed, model, before),  # erased by its id
            embeddings("t1", analyzed, model, before, label="bob"),  # not named: indexed
            embeddings("gdp", analyzed, model, after, label=LABEL),  # after the delete
        ],
    )
    port = consuming.metrics_port
    with grpc.insecure_channel(consuming.target) as channel:
        stub = internal_pb2_grpc.SearchIndexStub(channel)
        until(
            "t1.jpg and gdp.jpg indexed, players.jpg and yaoming.jpg dropped",
            lambda: (
                status(stub, ids["t1"]) == status(stub, ids["gdp"]) == grpc.StatusCode.OK
                and erased(metric, port) == 2
            ),
        )
        assert status(stub, ids["players"]) == grpc.StatusCode.NOT_FOUND
        assert status(stub, ids["yaoming"]) == grpc.StatusCode.NOT_FOUND
        assert status(stub, ids["t1"]) == grpc.StatusCode.OK
        assert status(stub, ids["gdp"]) == grpc.StatusCode.OK
        stats = stub.Stats(api_pb2.StatsRequest())
    assert (stats.images, dict(stats.labels)) == (2, {LABEL: 1, "bob": 1})
    assert metric(port, "facesearch_events_erased_total", field="label") == 1
    assert metric(port, "facesearch_events_erased_total", field="image_id") == 1


def test_an_image_still_in_kafka_when_deleted_does_not_reappear(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    analyzed: Analyzed,
    face_models: Any,
    metric: Callable[..., float],
) -> None:
    search = start_service("search", service_env)
    check_erasure_sticks(kafka, service_env, search, search, analyzed, face_models.model_id, metric)
    assert search.stop() == 0
    assert "erased by delete" in search.log_text()
    assert LABEL not in search.log_text()  # the log names receipts and ids, never a label


def test_a_delete_answered_by_one_search_replica_holds_for_another(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    analyzed: Analyzed,
    face_models: Any,
    metric: Callable[..., float],
    tmp_path: Path,
    qdrant_binary: Path,
) -> None:
    with QdrantServer(qdrant_binary, tmp_path / "qdrant-server", free_port(), free_port()) as qd:
        env = {**service_env, "QDRANT_URL": qd.url}
        first = start_service("search", env)
        second = start_service("search", env)
        check_erasure_sticks(
            kafka,
            env,
            first,
            second,
            analyzed,
            face_models.model_id,
            metric,
            between=lambda: first.stop(),  # the other replica then reads every partition
        )
        assert second.stop() == 0
